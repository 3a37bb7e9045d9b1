//! The shared test kit: the real broker, a recording HTTP receiver, and herald
//! as a child process. Every integration test builds on these.

#![allow(dead_code)]

pub mod azure;
pub mod central;
pub mod google;
pub mod hec;
pub mod jira;
pub mod proxy;
pub mod receiver;
pub mod service;
pub mod tls;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub use receiver::Receiver;

/// The alerting rules deploy/prometheus/herald-rules.yml must define.
pub const ALERT_RULES: &[&str] = &[
    "HeraldDown",
    "HeraldDeadLettersGrowing",
    "HeraldBreakerOpen",
    "HeraldConsumerLagHigh",
    "HeraldParkedDeliveriesOld",
    "HeraldLedgerUnhealthy",
    "HeraldConfigReloadFailed",
];

/// The broker `make test` starts (scripts/kafka.sh).
pub fn brokers() -> String {
    std::env::var("HERALD_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Creates a topic on the real broker and waits until it is usable.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&brokers(), name, partitions).await
}

/// Creates a topic on the given brokers (a test's private broker).
pub async fn create_topic_on(brokers: &str, name: &str, partitions: i32) {
    create_topic_with(brokers, name, partitions, &[]).await
}

/// Creates a topic with topic configs (`max.message.bytes`, say).
pub async fn create_topic_with(
    brokers: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let brokers = brokers.to_string();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let res = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let md = c
                .fetch_metadata(Some(&name), Duration::from_secs(5))
                .unwrap();
            let t = &md.topics()[0];
            if t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
            {
                return;
            }
            assert!(Instant::now() < deadline, "topic {name} not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
}

pub fn producer() -> FutureProducer {
    producer_on(&brokers())
}

/// A producer for other brokers (a test's private broker).
pub fn producer_on(brokers: &str) -> FutureProducer {
    producer_with(brokers, &[])
}

/// A producer with extra properties (`message.max.bytes`, say).
pub fn producer_with(brokers: &str, props: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5");
    for (k, v) in props {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// Produces one value; returns (partition, offset).
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
) -> (i32, i64) {
    let mut rec = FutureRecord::<str, [u8]>::to(topic).payload(value);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    let d = p
        .send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    (d.partition, d.offset)
}

/// Produces to one partition (tests that reason about one watermark).
pub async fn produce_to(p: &FutureProducer, topic: &str, partition: i32, value: &[u8]) -> i64 {
    let rec = FutureRecord::<str, [u8]>::to(topic)
        .partition(partition)
        .payload(value);
    p.send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce")
        .offset
}

/// The group's committed offset per partition (`-1` when none).
pub async fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let got = c
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match got.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect()
    })
    .await
    .unwrap()
}

/// Reads `n` records of a topic from the beginning (all partitions).
pub async fn read_records(topic: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    read_keyed_records(topic, n, timeout)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// As [`read_records`], with each record's key (lossy UTF-8, "" when none).
pub async fn read_keyed_records(
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<(String, Vec<u8>)> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
        out
    })
    .await
    .unwrap()
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// herald as a child process with its own config file and log.
pub struct Herald {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http_port: u16,
    /// The admin listener (`/v1/parked`, `/v1/ledger`).
    pub admin_port: u16,
    log: PathBuf,
    env: Vec<(String, String)>,
    _running: Option<Running>,
}

pub fn herald_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

impl Herald {
    /// Writes `config` (with `{http}` replaced by a free listen address) and starts `herald run`.
    pub fn start(config: &str) -> Herald {
        Herald::start_with_env(config, &[])
    }

    /// As [`Herald::start`], with extra environment variables for the process.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Herald {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let path = dir.path().join("herald.toml");
        let mut h = Herald {
            child: None,
            log: dir.path().join("herald.log"),
            config: path,
            dir,
            http_port,
            admin_port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _running: Running::start(),
        };
        h.rewrite_config(config);
        h.spawn();
        h
    }

    /// Replaces the config file (placeholders filled in as at start); the
    /// running process reads it on SIGHUP.
    pub fn rewrite_config(&self, config: &str) {
        let config = config
            .replace("{http}", &format!("127.0.0.1:{}", self.http_port))
            .replace("{admin}", &format!("127.0.0.1:{}", self.admin_port))
            .replace(
                "{state}",
                &self.dir.path().join("state").display().to_string(),
            );
        std::fs::write(&self.config, config).unwrap();
    }

    /// Starts (again) with the same config and state.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(herald_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,herald=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn herald");
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Waits until `/readyz` answers 200 (partitions assigned).
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = self.url("/readyz");
        let ok = eventually(timeout, || {
            let url = url.clone();
            async move { matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) }
        })
        .await;
        if !ok {
            panic!("herald not ready within {timeout:?}; log:\n{}", self.log());
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The exposition, or "" while the listener is not up (starting, stopped).
    pub async fn metrics(&self) -> String {
        match reqwest::get(self.url("/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of one sample, e.g. `herald_deliveries_total{destination="a",outcome="delivered"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for exit, at most `timeout`; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Parses one sample out of an exposition (0 when absent).
pub fn metric_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A test's own input topic, dead-letter topic and consumer group.
pub struct Stack {
    pub topic: String,
    pub dlq: String,
    pub group: String,
    pub brokers: String,
    /// Held while the stack lives, so a timing test run [`alone`] waits
    /// for it (and it for the timing test).
    pub running: Option<Running>,
}

/// How many stacks and heralds are in use, and whether a timing test runs
/// alone.
#[derive(Default)]
struct Quiet {
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

static QUIET: std::sync::LazyLock<Quiet> = std::sync::LazyLock::new(Default::default);

impl Quiet {
    /// Blocks until `take` (on the count and the flag) succeeds.
    fn when(&self, take: impl Fn(&mut (usize, bool)) -> bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !take(&mut state) {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn update(&self, f: impl FnOnce(&mut (usize, bool))) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_all();
    }
}

/// A stack or a herald in use. A new one waits while a timing test runs
/// alone (blocking its test's thread: each test has a runtime of its own);
/// a timing test waits for those in use, not for new ones, so a test that
/// holds one and opens another never waits on itself.
pub struct Running;

impl Running {
    fn start() -> Option<Running> {
        if ALONE.try_with(|_| ()).is_ok() {
            return None; // the timing test's own
        }
        QUIET.when(|(n, alone)| {
            let free = !*alone;
            if free {
                *n += 1;
            }
            free
        });
        Some(Running)
    }
}

/// Marks a test that starts no stack or herald but loads the machine
/// (kustomize, promtool, validators) as running, for as long as it holds
/// the guard.
pub fn busy() -> Option<Running> {
    Running::start()
}

impl Drop for Running {
    fn drop(&mut self) {
        QUIET.update(|(n, _)| *n -= 1);
    }
}

tokio::task_local! {
    static ALONE: ();
}

/// Runs `f` (a latency measurement) once no other test's stack or herald is
/// in use, and keeps new ones from starting meanwhile: the machine has 2 cores,
/// and a neighbour test's herald would measure in its place.
pub async fn alone<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::spawn_blocking(|| {
        QUIET.when(|(n, alone)| {
            let free = *n == 0 && !*alone;
            if free {
                *alone = true;
            }
            free
        })
    })
    .await
    .unwrap();
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            QUIET.update(|(_, alone)| *alone = false);
        }
    }
    let _done = Done;
    ALONE.scope((), f).await
}

impl Stack {
    pub async fn new(prefix: &str, partitions: i32) -> Stack {
        Stack::new_on(&brokers(), prefix, partitions).await
    }

    /// A stack on other brokers (a test's private broker).
    pub async fn new_on(brokers: &str, prefix: &str, partitions: i32) -> Stack {
        let running = Running::start();
        let s = Stack {
            topic: unique(&format!("{prefix}-in")),
            dlq: unique(&format!("{prefix}-dlq")),
            group: unique(&format!("{prefix}-g")),
            brokers: brokers.to_string(),
            running,
        };
        create_topic_on(brokers, &s.topic, partitions).await;
        create_topic_on(brokers, &s.dlq, 1).await;
        s
    }

    pub fn config(&self, extra_kafka: &str, destinations: &str) -> String {
        config_on(
            &self.brokers,
            &self.topic,
            &self.dlq,
            &self.group,
            extra_kafka,
            destinations,
        )
    }

    /// The committed offset of partition 0.
    pub async fn committed(&self) -> i64 {
        committed(&self.group, &self.topic, 1).await[0]
    }

    /// Whether, within `within`, the committed offsets of its `partitions`
    /// add up to `n` (every message of a run produced from offset 0).
    pub async fn committed_all(&self, partitions: i32, n: usize, within: Duration) -> bool {
        eventually(within, || async {
            committed(&self.group, &self.topic, partitions)
                .await
                .iter()
                .sum::<i64>()
                == n as i64
        })
        .await
    }
}

/// Runs `openssl <args>` in `dir` (it must succeed) and returns its stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `herald <args> --config <config>` and returns its output.
pub fn cli(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(herald_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("herald runs")
}

/// A minimal valid config for one input topic and a list of destination tables.
pub fn config(
    topic: &str,
    dlq: &str,
    group: &str,
    extra_kafka: &str,
    destinations: &str,
) -> String {
    config_on(&brokers(), topic, dlq, group, extra_kafka, destinations)
}

/// [`config`] for other brokers.
pub fn config_on(
    brokers: &str,
    topic: &str,
    dlq: &str,
    group: &str,
    extra_kafka: &str,
    destinations: &str,
) -> String {
    format!(
        r#"shutdown_grace = "5s"
state_dir = "{{state}}"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
group_instance_id = "{group}-1"
topics = ["{topic}"]
dead_letter_topic = "{dlq}"
start_from = "earliest"
commit_interval = "200ms"
session_timeout = "10s"
{extra_kafka}
[http]
listen = "{{http}}"
[admin]
listen = "{{admin}}"
[log]
failure_log_interval = "1s"
{destinations}
"#
    )
}

/// An alert with the given id, routed to notifier id `n1`, as one line of JSON.
pub fn alert(id: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"{id}","policy":{{"id":"p1","name":"Test Policy","severity":"HIGH_SEVERITY","notifiers":["n1"]}},"clusterName":"c1","namespace":"ns1","deployment":{{"name":"d1","namespace":"ns1"}}{extra}}}"#
    )
}
