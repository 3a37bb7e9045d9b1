//! herald-bench: herald end to end on one machine, against the machine's own
//! limit. `make bench` runs it (see the README's Performance section).
//!
//! Modes:
//! - `throughput`: a backlog of N realistic alerts (3–6 KiB, built from
//!   Central's default policies) on the real broker; herald (release build,
//!   durable ledger) delivers each to three destinations — syslog over TCP to
//!   rsyslog, Splunk HEC with batching, a webhook. Measured: alerts/s until
//!   every destination has everything, herald's peak RSS and CPU time, and
//!   the limit: a bare consumer's read rate of the same topic and each
//!   receiver's rate from a bare sender pushing the same payloads.
//! - `latency`: alerts produced at a fixed rate while herald runs; latency
//!   from produce to receipt per destination (p50, p99, max).
//! - `ledger-size`: N distinct small alerts through herald to a webhook;
//!   herald's RSS and the ledger file's size afterwards.
//! - `drain`: a webhook receiver down while N realistic alerts (default
//!   50,000) park; then it comes back. Measured: how fast the parked backlog
//!   drains against the receiver's own rate (a bare sender, same payloads),
//!   and herald's peak RSS while it does.
//!
//! Every mode also reports how long herald takes from process start to
//! `/healthz` (listening) and `/readyz` (broker connected, partitions assigned).

mod alerts;
mod limits;
mod receivers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Throughput,
    Latency,
    LedgerSize,
    Drain,
}

#[derive(Parser)]
#[command(about = "herald end to end against a real broker, rsyslog and HTTP receivers")]
struct Args {
    #[arg(long, value_enum, default_value = "throughput")]
    mode: Mode,
    /// Alerts: the backlog (throughput) or the distinct ids (ledger-size;
    /// default there 1,000,000).
    #[arg(long)]
    alerts: Option<u64>,
    /// Latency mode: alerts per second, and for how long.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// rsyslog's plain TCP input and the file it writes (scripts/rsyslog.sh info).
    #[arg(long, default_value = "127.0.0.1:10514")]
    syslog: String,
    #[arg(long)]
    syslog_out: PathBuf,
    /// The herald binary to measure (`cargo build --release`).
    #[arg(long, default_value = "target/release/herald")]
    herald: PathBuf,
    #[arg(long, default_value = "data/rhacs-default-policies.json")]
    policies: PathBuf,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Skip measuring the limit (throughput mode).
    #[arg(long)]
    no_limit: bool,
}

const NOTIFIERS: &[&str] = &["n-siem", "n-splunk", "n-webhook", "n-jira", "n-slack"];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.herald.is_file(),
        "{} not found: run `cargo build --release` first",
        args.herald.display()
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// One row of the report: a figure, and the limit it is judged against.
struct Row {
    what: String,
    value: String,
    limit: Option<(String, f64)>,
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
        limit: None,
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
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
    let result = match args.mode {
        Mode::Throughput => throughput(&args, &topic, &dlq).await,
        Mode::Latency => latency(&args, &topic, &dlq).await,
        Mode::LedgerSize => ledger_size(&args, &topic, &dlq).await,
        Mode::Drain => drain(&args, &topic, &dlq).await,
    };
    let _ = admin.delete_topics(&[&topic, &dlq], &opts).await;
    let rows = result?;
    println!("\n| figure | herald | limit | herald / limit |");
    println!("|---|---|---|---|");
    for r in rows {
        match r.limit {
            Some((text, ratio)) => println!(
                "| {} | {} | {text} | {:.0} % |",
                r.what,
                r.value,
                ratio * 100.0
            ),
            None => println!("| {} | {} | | |", r.what, r.value),
        }
    }
    Ok(())
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .create()?)
}

/// Sends one keyed record in its own task (acknowledged or failed within 60 s).
fn spawn_send(
    p: &FutureProducer,
    topic: &str,
    key: String,
    value: Vec<u8>,
) -> tokio::task::JoinHandle<Result<(), rdkafka::error::KafkaError>> {
    let (p, t) = (p.clone(), topic.to_string());
    tokio::spawn(async move {
        p.send(
            FutureRecord::to(&t).key(&key).payload(&value),
            Duration::from_secs(60),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
    })
}

/// Produces bodies with keys, at most 5,000 awaiting acknowledgement.
async fn produce_all(
    p: &FutureProducer,
    topic: &str,
    items: impl Iterator<Item = (String, Vec<u8>)>,
) -> anyhow::Result<u64> {
    let mut pending = Vec::new();
    let mut n = 0;
    for (key, value) in items {
        pending.push(spawn_send(p, topic, key, value));
        n += 1;
        if pending.len() >= 5_000 {
            for h in pending.drain(..) {
                h.await??;
            }
        }
    }
    for h in pending {
        h.await??;
    }
    Ok(n)
}

/// The destinations' TOML: syslog to rsyslog, HEC with batching (100 events,
/// so 100 workers, as the README advises), webhook.
fn destinations(args: &Args, hec: std::net::SocketAddr, webhook: std::net::SocketAddr) -> String {
    let (host, port) = args.syslog.rsplit_once(':').expect("host:port");
    format!(
        r#"[[destinations]]
name = "siem"
type = "syslog"
all_alerts = true
host = "{host}"
port = {port}
workers = {workers}
[[destinations]]
name = "splunk"
type = "splunk"
all_alerts = true
url = "http://{hec}"
token = "{token}"
batch_max_events = 100
batch_linger = "5ms"
# One delivery waits for its batch: as many workers as a batch holds.
workers = 100
[[destinations]]
name = "webhook"
type = "webhook"
all_alerts = true
url = "http://{webhook}/"
workers = {workers}
"#,
        token = receivers::HEC_TOKEN,
        workers = args.workers,
    )
}

fn config(
    args: &Args,
    dir: &Path,
    topic: &str,
    dlq: &str,
    http: u16,
    destinations: &str,
) -> String {
    format!(
        r#"state_dir = "{state}"
[kafka]
brokers = "{brokers}"
group_id = "{topic}-herald"
topics = ["{topic}"]
dead_letter_topic = "{dlq}"
start_from = "earliest"
max_in_flight = 20000
max_in_flight_per_partition = 5000
[http]
listen = "127.0.0.1:{http}"
[log]
level = "warn"
{destinations}"#,
        state = dir.join("state").display(),
        brokers = args.brokers,
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// herald as a child process, with its start-up times.
struct Herald {
    child: Child,
    http: u16,
    healthy_after: Duration,
    ready_after: Duration,
}

impl Herald {
    /// Writes a config with `dests` into a new directory (which also holds
    /// the ledger; keep it while herald runs) and starts herald on it.
    async fn launch(
        args: &Args,
        topic: &str,
        dlq: &str,
        dests: &str,
    ) -> anyhow::Result<(tempfile::TempDir, Herald)> {
        let dir = tempfile::tempdir()?;
        let http = free_port();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, config(args, dir.path(), topic, dlq, http, dests))?;
        let herald = Herald::start(args, &path, http).await?;
        Ok((dir, herald))
    }

    async fn start(args: &Args, config_path: &Path, http: u16) -> anyhow::Result<Herald> {
        let started = Instant::now();
        let child = Command::new(&args.herald)
            .args(["run", "--config"])
            .arg(config_path)
            .stdout(Stdio::null())
            .spawn()?;
        let client = reqwest::Client::new();
        let ok = |path: &'static str| {
            let client = client.clone();
            async move {
                matches!(client.get(format!("http://127.0.0.1:{http}{path}")).send().await,
                    Ok(r) if r.status().is_success())
            }
        };
        let deadline = started + Duration::from_secs(60);
        while !ok("/healthz").await {
            anyhow::ensure!(
                Instant::now() < deadline,
                "herald did not listen within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let healthy_after = started.elapsed();
        while !ok("/readyz").await {
            anyhow::ensure!(Instant::now() < deadline, "herald not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Herald {
            child,
            http,
            healthy_after,
            ready_after: started.elapsed(),
        })
    }

    /// (peak RSS in MiB, current RSS in MiB, CPU seconds) from /proc.
    fn usage(&self) -> (f64, f64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(") ").map_or("", |x| x.1);
        let f: Vec<&str> = after.split(' ').collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (
            kib("VmHWM:") / 1024.0,
            kib("VmRSS:") / 1024.0,
            (ticks(11) + ticks(12)) / hz,
        )
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = match reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    fn startup_rows(&self) -> Vec<Row> {
        vec![
            row(
                "start to listening (/healthz)",
                format!("{} ms", self.healthy_after.as_millis()),
            ),
            row(
                "start to consuming (/readyz: broker connected, partitions assigned)",
                format!("{} ms", self.ready_after.as_millis()),
            ),
        ]
    }
}

/// Waits until every receiver has `n` distinct alerts.
async fn wait_all(
    receivers: &[(&str, &receivers::Receipts)],
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if receivers.iter().all(|(_, r)| r.distinct() >= n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let got: Vec<String> = receivers
                .iter()
                .map(|(name, r)| format!("{name} {}", r.distinct()))
                .collect();
            anyhow::bail!(
                "not all delivered within {limit:?}: {} of {n}",
                got.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn throughput(args: &Args, topic: &str, dlq: &str) -> anyhow::Result<Vec<Row>> {
    let n = args.alerts.unwrap_or(200_000);
    let generator = alerts::Generator::load(&args.policies)?;
    let seed = 7;
    let p = producer(&args.brokers)?;
    let started = Instant::now();
    let mut bytes = 0usize;
    let produced = produce_all(
        &p,
        topic,
        (0..n).map(|i| {
            let (id, body) = generator.alert(i, seed, NOTIFIERS);
            bytes += body.len();
            (id, body)
        }),
    )
    .await?;
    println!(
        "produced {produced} alerts, {} bytes on average, in {:.1} s",
        bytes as u64 / produced.max(1),
        started.elapsed().as_secs_f64()
    );

    let (webhook_addr, webhook) = receivers::webhook().await?;
    let (hec_addr, hec) = receivers::hec().await?;
    let stop_tail = Arc::new(AtomicBool::new(false));
    let syslog = receivers::syslog_tail(args.syslog_out.clone(), stop_tail.clone());
    let launched = Instant::now();
    let (dir, herald) = Herald::launch(
        args,
        topic,
        dlq,
        &destinations(args, hec_addr, webhook_addr),
    )
    .await?;
    let all = [("syslog", &*syslog), ("hec", &*hec), ("webhook", &*webhook)];
    let waited = wait_all(&all, n as usize, Duration::from_secs(1800)).await;
    stop_tail.store(true, Ordering::Relaxed);
    let (peak_rss, _, cpu) = herald.usage();
    let dead = herald
        .metric(r#"herald_dead_letters_total{kind="delivery_failed"}"#)
        .await;
    let mut rows = herald.startup_rows();
    herald.stop();
    waited?;
    let done = all
        .iter()
        .filter_map(|(_, r)| r.last())
        .max()
        .unwrap_or_else(Instant::now);
    let busy = (done - launched).as_secs_f64();
    let herald_rate = n as f64 / busy;
    println!("herald delivered {n} alerts to each of 3 destinations in {busy:.1} s (from process start); {dead} dead letters");
    for (name, r) in &all {
        if let Some(last) = r.last() {
            println!(
                "  {name}: all {n} by {:.1} s",
                (last - launched).as_secs_f64()
            );
        }
    }

    let mut limit: Option<(String, f64)> = None;
    let mut limit_rows = Vec::new();
    if !args.no_limit {
        let raw = {
            let (b, t) = (args.brokers.clone(), topic.to_string());
            tokio::task::spawn_blocking(move || limits::raw_consume(&b, &t, n)).await??
        };
        // The same payloads herald sends, rendered by herald's own notifiers.
        let text = std::fs::read_to_string(dir.path().join("herald.toml"))?;
        let cfg = herald::config::Config::parse(&text, &std::collections::HashMap::new())
            .map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
        let dests =
            herald::destinations::build(&cfg).map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
        let ctx = herald::notifiers::RenderContext {
            now: chrono::Utc::now(),
        };
        let render = |name: &str| -> anyhow::Result<Vec<Vec<u8>>> {
            let d = dests
                .iter()
                .find(|d| d.name == name)
                .expect("bench destination");
            (0..n)
                .map(|i| {
                    let (_, body) = generator.alert(i, seed, NOTIFIERS);
                    let event = herald::model::decode(
                        &body,
                        &herald::model::Limits {
                            max_bytes: usize::MAX,
                            ..Default::default()
                        },
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                    d.notifier
                        .render(&event, &herald::notifiers::Target::default(), &ctx)
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
                })
                .collect()
        };
        let webhook_rate = limits::webhook(&render("webhook")?, args.workers).await?;
        let hec_rate = limits::hec(&render("splunk")?, 100, args.workers).await?;
        let syslog_rate = limits::syslog(&render("siem")?, &args.syslog, &args.syslog_out).await?;
        let parts = [
            ("bare consumer reading the topic", raw),
            ("bare sender to the webhook receiver", webhook_rate),
            ("bare sender to the HEC receiver (batches of 100)", hec_rate),
            ("bare sender to rsyslog over TCP", syslog_rate),
        ];
        for (what, rate) in parts {
            limit_rows.push(row(
                format!("limit part: {what}"),
                format!("{rate:.0} alerts/s"),
            ));
        }
        let (what, slowest) = parts
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .copied()
            .unwrap();
        limit = Some((
            format!("{slowest:.0} alerts/s ({what})"),
            herald_rate / slowest,
        ));
    }
    rows.insert(
        0,
        Row {
            what: format!("throughput, {n} alerts to syslog + HEC + webhook, ledger on"),
            value: format!("{herald_rate:.0} alerts/s"),
            limit,
        },
    );
    rows.push(row("herald peak RSS", format!("{peak_rss:.1} MiB")));
    rows.push(row(
        "herald CPU time",
        format!(
            "{cpu:.1} s ({:.0} µs per alert for 3 destinations)",
            cpu * 1e6 / n as f64
        ),
    ));
    rows.extend(limit_rows);
    Ok(rows)
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms[((ms.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(ms.len() - 1)]
    };
    (at(0.50), at(0.99), ms[ms.len() - 1])
}

async fn latency(args: &Args, topic: &str, dlq: &str) -> anyhow::Result<Vec<Row>> {
    let generator = alerts::Generator::load(&args.policies)?;
    let (webhook_addr, webhook) = receivers::webhook().await?;
    let (hec_addr, hec) = receivers::hec().await?;
    let stop_tail = Arc::new(AtomicBool::new(false));
    let syslog = receivers::syslog_tail(args.syslog_out.clone(), stop_tail.clone());
    let (_dir, herald) = Herald::launch(
        args,
        topic,
        dlq,
        &destinations(args, hec_addr, webhook_addr),
    )
    .await?;

    // A fixed rate: one send every 1/rate s, each stamped when handed to the
    // producer (linger 0, so the stamp is the send).
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "0")
        .create()?;
    let total = args.rate * args.seconds;
    let mut sent = std::collections::HashMap::with_capacity(total as usize);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = Vec::new();
    for i in 0..total {
        tick.tick().await;
        let (id, body) = generator.alert(i, 11, NOTIFIERS);
        sent.insert(id.clone(), Instant::now());
        pending.push(spawn_send(&p, topic, id, body));
    }
    for h in pending {
        h.await??;
    }
    let all = [("syslog", &*syslog), ("hec", &*hec), ("webhook", &*webhook)];
    let waited = wait_all(&all, total as usize, Duration::from_secs(300)).await;
    stop_tail.store(true, Ordering::Relaxed);
    let (peak_rss, _, cpu) = herald.usage();
    let mut rows = Vec::new();
    for (name, r) in all {
        let ms: Vec<f64> = r
            .times()
            .iter()
            .filter_map(|(id, at)| {
                sent.get(id)
                    .map(|s| at.saturating_duration_since(*s).as_secs_f64() * 1000.0)
            })
            .collect();
        let (p50, p99, max) = percentiles(ms);
        let note = if name == "syslog" {
            " (read from rsyslog's file every 2 ms)"
        } else {
            ""
        };
        rows.push(row(
            format!(
                "latency to {name}, {} alerts/s for {} s{note}",
                args.rate, args.seconds
            ),
            format!("p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"),
        ));
    }
    rows.push(row("herald peak RSS", format!("{peak_rss:.1} MiB")));
    rows.push(row(
        "herald CPU time",
        format!("{cpu:.1} s over {} s", args.seconds),
    ));
    rows.extend(herald.startup_rows());
    herald.stop();
    waited?;
    Ok(rows)
}

async fn ledger_size(args: &Args, topic: &str, dlq: &str) -> anyhow::Result<Vec<Row>> {
    let n = args.alerts.unwrap_or(1_000_000);
    // Small alerts: what grows here is the ledger, one entry per id.
    let p = producer(&args.brokers)?;
    let started = Instant::now();
    produce_all(
        &p,
        topic,
        (0..n).map(|i| {
            let id = format!("ledger-{i:09}");
            let body = format!(
                r#"{{"alert":{{"id":"{id}","policy":{{"id":"p1","name":"Bench","severity":"HIGH_SEVERITY","notifiers":["n-webhook"]}},"clusterName":"c1","namespace":"ns1","deployment":{{"name":"d1","namespace":"ns1"}},"state":"ACTIVE"}}}}"#
            );
            (id, body.into_bytes())
        }),
    )
    .await?;
    println!(
        "produced {n} alerts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (webhook_addr, webhook) = receivers::webhook().await?;
    let dests = format!(
        "[[destinations]]\nname = \"webhook\"\ntype = \"webhook\"\nall_alerts = true\nurl = \"http://{webhook_addr}/\"\nworkers = {}\n",
        args.workers
    );
    let (dir, herald) = Herald::launch(args, topic, dlq, &dests).await?;
    let waited = wait_all(
        &[("webhook", &*webhook)],
        n as usize,
        Duration::from_secs(3600),
    )
    .await;
    // Let the ledger's writer and gauges settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (peak_rss, rss, cpu) = herald.usage();
    let entries = herald.metric("herald_ledger_entries").await;
    let file = std::fs::metadata(dir.path().join("state/herald.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut rows = vec![
        row(
            format!("ledger entries after {n} distinct alerts"),
            format!("{entries:.0}"),
        ),
        row(
            "herald RSS after",
            format!("{rss:.1} MiB (peak {peak_rss:.1} MiB)"),
        ),
        row(
            "ledger file size",
            format!(
                "{:.1} MiB ({:.0} bytes per entry)",
                file as f64 / 1048576.0,
                file as f64 / entries.max(1.0)
            ),
        ),
        row("herald CPU time", format!("{cpu:.1} s")),
    ];
    rows.extend(herald.startup_rows());
    herald.stop();
    waited?;
    Ok(rows)
}

/// A parked backlog draining: the receiver is down while every alert parks,
/// then it comes back.
async fn drain(args: &Args, topic: &str, dlq: &str) -> anyhow::Result<Vec<Row>> {
    let n = args.alerts.unwrap_or(50_000);
    let generator = alerts::Generator::load(&args.policies)?;
    let seed = 11;
    let p = producer(&args.brokers)?;
    produce_all(
        &p,
        topic,
        (0..n).map(|i| generator.alert(i, seed, NOTIFIERS)),
    )
    .await?;
    let (addr, webhook, down) = receivers::webhook_switched().await?;
    down.store(true, Ordering::Relaxed);
    let dests = format!(
        "[[destinations]]\nname = \"webhook\"\ntype = \"webhook\"\nall_alerts = true\nurl = \"http://{addr}/\"\nworkers = {}\nretry_max_attempts = 1\nbreaker_failures = 3\nbreaker_cooldown = \"1s\"\npark_retry_min = \"1s\"\npark_retry_max = \"2s\"\n",
        args.workers
    );
    let (_dir, herald) = Herald::launch(args, topic, dlq, &dests).await?;
    let parking = Instant::now();
    let parked = r#"herald_deliveries_total{destination="webhook",outcome="parked"}"#;
    while herald.metric(parked).await < n as f64 {
        anyhow::ensure!(
            parking.elapsed() < Duration::from_secs(1800),
            "only {} of {n} parked",
            herald.metric(parked).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let parked_in = parking.elapsed();
    println!(
        "{n} deliveries parked in {:.1} s; the receiver comes back",
        parked_in.as_secs_f64()
    );
    let back = Instant::now();
    down.store(false, Ordering::Relaxed);
    let mut peak = 0.0f64;
    let mut shown = Instant::now();
    let drained = loop {
        let (_, rss, _) = herald.usage();
        peak = peak.max(rss);
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            eprintln!(
                "{:5.1} s: {} delivered, RSS {rss:.0} MiB",
                back.elapsed().as_secs_f64(),
                webhook.distinct()
            );
        }
        if webhook.distinct() >= n as usize {
            break back.elapsed();
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(3600),
            "{} of {n} delivered",
            webhook.distinct()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (peak_rss, _, cpu) = herald.usage();
    herald.stop();
    let rate = n as f64 / drained.as_secs_f64();
    // The receiver's own rate for the same bodies, from a bare sender.
    let bodies: Vec<Vec<u8>> = (0..n.min(20_000))
        .map(|i| {
            let (_, body) = generator.alert(i, seed, NOTIFIERS);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let alert = v.get("alert").cloned().unwrap_or(v);
            format!("{{\"alert\": {alert}}}").into_bytes()
        })
        .collect();
    let limit = limits::webhook(&bodies, args.workers).await?;
    Ok(vec![
        row(
            format!("{n} deliveries parked (receiver down)"),
            format!("in {:.1} s", parked_in.as_secs_f64()),
        ),
        Row {
            what: "parked backlog drained once the receiver is back".into(),
            value: format!("{rate:.0} deliveries/s ({:.1} s)", drained.as_secs_f64()),
            limit: Some((
                format!(
                    "receiver {limit:.0}/s (bare sender, {} workers)",
                    args.workers
                ),
                rate / limit,
            )),
        },
        row(
            "herald RSS while draining",
            format!("peak {peak:.1} MiB sampled ({peak_rss:.1} MiB VmHWM over the run)"),
        ),
        row("herald CPU time, whole run", format!("{cpu:.1} s")),
    ])
}
