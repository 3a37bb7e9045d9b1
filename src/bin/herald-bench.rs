//! herald-bench: end-to-end throughput of the release binary against the real
//! broker and an in-process webhook receiver. `make bench` runs it.
//!
//! Mode `ledger` (the default) runs the same backlog twice — durable ledger on,
//! then off — and prints alerts per second for each.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Router;
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Parser)]
#[command(about = "End-to-end benchmark of herald against a real Kafka broker")]
struct Args {
    /// Alerts in the backlog.
    #[arg(long, default_value_t = 20_000)]
    alerts: usize,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The herald binary to measure (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/herald")]
    herald: PathBuf,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long, default_value_t = 16)]
    workers: usize,
}

#[derive(Default)]
struct Seen {
    keys: HashSet<String>,
    requests: usize,
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    _body: Bytes,
) -> &'static str {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut s = seen.lock().unwrap();
    s.requests += 1;
    s.keys.insert(key);
    "ok"
}

fn alert(template: &serde_json::Value, i: usize) -> Vec<u8> {
    let mut a = template.clone();
    a["id"] = serde_json::Value::String(format!("bench-{i:08}"));
    a["time"] = serde_json::Value::String(chrono::Utc::now().to_rfc3339());
    serde_json::to_vec(&serde_json::json!({ "alert": a })).unwrap()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.herald.is_file(),
        "{} not found: run `cargo build --release` first",
        args.herald.display()
    );
    let run_id = std::process::id();
    let topic = format!("bench-{run_id}");
    let dlq = format!("bench-{run_id}-dlq");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in admin
        .create_topics(
            [
                &NewTopic::new(&topic, args.partitions, TopicReplication::Fixed(1)),
                &NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
            ],
            &opts,
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alert-deployment-runtime.json"
    ))?;
    let template: serde_json::Value = serde_json::from_str(&fixture)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let produce_started = Instant::now();
    let mut pending = Vec::new();
    let mut bytes = 0usize;
    for i in 0..args.alerts {
        let value = alert(&template, i);
        bytes += value.len();
        let key = format!("bench-{i:08}");
        let p = producer.clone();
        let t = topic.clone();
        pending.push(tokio::spawn(async move {
            p.send(
                FutureRecord::to(&t).key(&key).payload(&value),
                Duration::from_secs(60),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
        }));
        if pending.len() >= 5000 {
            for h in pending.drain(..) {
                h.await??;
            }
        }
    }
    for h in pending {
        h.await??;
    }
    println!(
        "produced {} alerts ({} bytes each on average) in {:.1}s",
        args.alerts,
        bytes / args.alerts.max(1),
        produce_started.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    for ledger in [true, false] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new().fallback(receive).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir()?;
        let config = format!(
            r#"state_dir = "{state}"
[kafka]
brokers = "{brokers}"
group_id = "bench-{run_id}-{ledger}"
topics = ["{topic}"]
dead_letter_topic = "{dlq}"
start_from = "earliest"
max_in_flight = 20000
max_in_flight_per_partition = 5000
[http]
listen = "127.0.0.1:0"
[ledger]
enabled = {ledger}
[log]
level = "warn"
[[destinations]]
name = "bench"
type = "webhook"
all_alerts = true
url = "http://{addr}/"
workers = {workers}
queue_size = 5000
"#,
            state = dir.path().join("state").display(),
            brokers = args.brokers,
            workers = args.workers,
        );
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, config)?;
        let started = Instant::now();
        let mut child = Command::new(&args.herald)
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()?;
        let deadline = started + Duration::from_secs(600);
        let mut first: Option<Instant> = None;
        loop {
            let n = seen.lock().unwrap().keys.len();
            if n > 0 && first.is_none() {
                first = Some(Instant::now());
            }
            if n >= args.alerts || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let done = Instant::now();
        let (distinct, requests) = {
            let s = seen.lock().unwrap();
            (s.keys.len(), s.requests)
        };
        // SIGTERM, so herald stops as in production.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let _ = child.wait();
        server.abort();
        let from_first = first.map(|f| done - f).unwrap_or_default();
        rows.push((ledger, distinct, requests, done - started, from_first));
    }
    println!("\n| ledger | delivered | requests | wall (from start) | alerts/s (first to last) |");
    println!("|---|---|---|---|---|");
    for (ledger, distinct, requests, wall, busy) in &rows {
        println!(
            "| {} | {distinct} | {requests} | {:.2}s | {:.0} |",
            if *ledger { "on" } else { "off" },
            wall.as_secs_f64(),
            *distinct as f64 / busy.as_secs_f64().max(1e-9)
        );
    }
    let _ = admin.delete_topics(&[&topic, &dlq], &opts).await;
    Ok(())
}
