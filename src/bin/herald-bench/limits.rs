//! The machine's own limit for a run: how fast a bare consumer reads the
//! topic, and how fast each receiver takes the same payloads from a bare
//! sender (no herald in between). The limit is the slowest of these.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::AsyncWriteExt;

use super::receivers::{self, HEC_TOKEN};

/// Messages per second a consumer that reads and drops gets from `topic`.
pub fn raw_consume(brokers: &str, topic: &str, n: u64) -> anyhow::Result<f64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-raw-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "16384")
        .create()?;
    c.subscribe(&[topic])?;
    let (mut got, mut started) = (0u64, None);
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < n && Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            started.get_or_insert_with(Instant::now);
            got += 1;
        }
    }
    anyhow::ensure!(got == n, "raw consumer read {got} of {n}");
    Ok(n as f64 / started.map_or(1e-9, |s| s.elapsed().as_secs_f64()))
}

async fn wait_for(r: &receivers::Receipts, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while r.distinct() < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "receiver got {} of {n}",
            r.distinct()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Webhook bodies POSTed by `concurrency` senders to a fresh receiver.
pub async fn webhook(bodies: &[Vec<u8>], concurrency: usize) -> anyhow::Result<f64> {
    let (addr, r) = receivers::webhook().await?;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = Arc::new(bodies.to_vec());
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, bodies) =
                (client.clone(), url.clone(), next.clone(), bodies.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = bodies.get(i) else { return };
                    let _ = client.post(&url).body(b.clone()).send().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    wait_for(&r, bodies.len()).await?;
    Ok(bodies.len() as f64 / started.elapsed().as_secs_f64())
}

/// HEC events in batches of `batch`, `concurrency` requests at a time.
pub async fn hec(events: &[Vec<u8>], batch: usize, concurrency: usize) -> anyhow::Result<f64> {
    let (addr, r) = receivers::hec().await?;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/services/collector/event/1.0");
    let batches: Arc<Vec<Vec<u8>>> = Arc::new(events.chunks(batch).map(|c| c.concat()).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, batches) =
                (client.clone(), url.clone(), next.clone(), batches.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = batches.get(i) else { return };
                    let _ = client
                        .post(&url)
                        .header("authorization", format!("Splunk {HEC_TOKEN}"))
                        .body(b.clone())
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    wait_for(&r, events.len()).await?;
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Syslog frames written over one TCP connection to rsyslog, until its
/// output file holds them all.
pub async fn syslog(
    frames: &[Vec<u8>],
    address: &str,
    out_file: &std::path::Path,
) -> anyhow::Result<f64> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = receivers::syslog_tail(out_file.to_path_buf(), stop.clone());
    let started = Instant::now();
    let mut tcp = tokio::io::BufWriter::new(tokio::net::TcpStream::connect(address).await?);
    for f in frames {
        tcp.write_all(f).await?;
    }
    tcp.flush().await?;
    let waited = wait_for(&r, frames.len()).await;
    stop.store(true, Ordering::Relaxed);
    waited?;
    Ok(frames.len() as f64 / started.elapsed().as_secs_f64())
}
