//! Configuration: one TOML file, `HERALD__SECTION__KEY` environment overrides,
//! `${VAR}` substitution and `*_file` secrets. Every error names its field.

pub mod ingest;
mod load;
mod types;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

pub use load::{field, join, section, Parsed};
pub use types::{redact_url, Dur, Secret};

use crate::notifiers::{self, Notifier};
use crate::routing::{Filter, RawFilter};

/// One configuration problem, printed as `path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Default)]
pub struct Errors {
    pub list: Vec<ConfigError>,
}

impl Errors {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

#[derive(Debug)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// How long SIGTERM waits for in-flight deliveries before abandoning them.
    pub shutdown_grace: Duration,
    /// Where the ledger (and its lock) live.
    pub state_dir: PathBuf,
    pub ledger: LedgerConfig,
    /// A hash of every setting a reload cannot change (all but destinations
    /// and namespace metadata), to warn that a restart is needed.
    pub static_fingerprint: u64,
    /// `POST /v1/ingest`, when the `[ingest]` section is present.
    pub ingest: Option<ingest::IngestConfig>,
    pub destinations: Vec<Destination>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            renotify_runtime_updates: false,
            rate_limit: None,
            retry_max_attempts: default_retry_attempts(),
            retry_max_pass: default_retry_pass().0,
            retry_min_delay: default_retry_min().0,
            retry_max_delay: default_retry_max().0,
            retry_statuses: Vec::new(),
            permanent_statuses: Vec::new(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown: default_breaker_cooldown().0,
            park_max_age: default_park_max_age().0,
            park_retry_min: default_park_retry_min().0,
            park_retry_max: default_park_retry_max().0,
            park_queue_wait: default_park_queue_wait().0,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LedgerConfig {
    /// Off: at-least-once only, no notify-once and no parking (benchmarks).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Entries expire this long after the alert was last seen …
    #[serde(default = "default_retention")]
    pub retention: Dur,
    /// … or this long after it was resolved, whichever comes first.
    #[serde(default = "default_resolved_retention")]
    pub resolved_retention: Dur,
    #[serde(default = "default_audit_retention")]
    pub audit_retention: Dur,
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: Dur,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            enabled: true,
            retention: default_retention(),
            resolved_retention: default_resolved_retention(),
            audit_retention: default_audit_retention(),
            sweep_interval: default_sweep_interval(),
        }
    }
}

impl LedgerConfig {
    pub fn retention(&self) -> crate::ledger::Retention {
        crate::ledger::Retention {
            alerts: self.retention.0,
            resolved: self.resolved_retention.0,
            audit: self.audit_retention.0,
        }
    }
}

/// How the delivery layer treats one destination.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Re-notify RUNTIME alerts carrying newer violations (Central's NOTIFY_EVERY_RUNTIME_EVENT).
    pub renotify_runtime_updates: bool,
    /// Deliveries per second and burst.
    pub rate_limit: Option<(u32, u32)>,
    pub retry_max_attempts: u32,
    pub retry_max_pass: Duration,
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// HTTP statuses to retry, or to give up on, whatever the default class.
    pub retry_statuses: Vec<u16>,
    pub permanent_statuses: Vec<u16>,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub park_max_age: Duration,
    pub park_retry_min: Duration,
    pub park_retry_max: Duration,
    pub park_queue_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Latest,
    Earliest,
}

#[derive(Debug, Deserialize)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub dead_letter_topic: String,
    /// The largest dead-letter record herald writes: a value that does not
    /// fit is cut to its first bytes, size and SHA-256. Below the broker's
    /// default `message.max.bytes` (1 MiB), so every message can be
    /// dead-lettered.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: usize,
    /// Dead letters are also appended to this JSONL file when set.
    #[serde(default)]
    pub dead_letter_file: Option<PathBuf>,
    /// Static membership id; defaults to `herald-<hostname>`.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    #[serde(default = "default_start_from")]
    pub start_from: StartFrom,
    /// Alerts whose `time` is older are counted and skipped.
    #[serde(default)]
    pub max_alert_age: Option<Dur>,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Messages whose JSON nests deeper are dead-lettered as `too_deep`.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Dur,
    #[serde(default = "default_in_flight_per_partition")]
    pub max_in_flight_per_partition: usize,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Dur,
    #[serde(default)]
    pub tls: Option<KafkaTls>,
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    /// Extra librdkafka properties, for settings herald does not name.
    #[serde(default)]
    pub properties: IndexMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct KafkaTls {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub key_password: Option<Secret>,
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
    #[serde(default)]
    pub skip_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
pub struct LogConfig {
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
    /// A failing destination logs one summary per interval, not one line per alert.
    #[serde(default = "default_failure_log_interval")]
    pub failure_log_interval: Dur,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::Text,
            failure_log_interval: default_failure_log_interval(),
        }
    }
}

/// One configured destination: settings every type shares, and its notifier.
#[derive(Debug)]
pub struct Destination {
    pub common: Common,
    pub notifier: Arc<dyn Notifier>,
    /// A hash of the destination's table, the files it names (secrets, CAs)
    /// and the namespace metadata: a reload rebuilds it only when this changes.
    pub fingerprint: u64,
}

/// Settings every destination type has.
#[derive(Debug, Clone)]
pub struct Common {
    /// Namespace labels and annotations from `namespace_metadata`, shared.
    pub namespaces: Arc<crate::routing::namespaces::NamespaceMetadata>,
    pub name: String,
    pub id: String,
    pub kind: String,
    pub ui_endpoint: String,
    pub audit: bool,
    pub timeout: Duration,
    pub workers: usize,
    pub queue_size: usize,
    pub filter: Filter,
    pub policy: DeliveryPolicy,
}

#[derive(Deserialize)]
struct RawCommon {
    name: String,
    #[serde(default)]
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    ui_endpoint: String,
    #[serde(default)]
    audit: Option<bool>,
    #[serde(default = "default_timeout")]
    timeout: Dur,
    #[serde(default = "default_workers")]
    workers: usize,
    #[serde(default = "default_queue_size")]
    queue_size: usize,
    #[serde(default)]
    all_alerts: bool,
    #[serde(default)]
    min_severity: Option<String>,
    #[serde(default)]
    lifecycle_stages: Vec<String>,
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    renotify_runtime_updates: bool,
    #[serde(default)]
    rate_limit: Option<u32>,
    #[serde(default)]
    rate_burst: Option<u32>,
    #[serde(default = "default_retry_attempts")]
    retry_max_attempts: u32,
    #[serde(default = "default_retry_pass")]
    retry_max_pass: Dur,
    #[serde(default = "default_retry_min")]
    retry_min_delay: Dur,
    #[serde(default = "default_retry_max")]
    retry_max_delay: Dur,
    #[serde(default)]
    retry_statuses: Vec<u16>,
    #[serde(default)]
    permanent_statuses: Vec<u16>,
    #[serde(default = "default_breaker_failures")]
    breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    breaker_cooldown: Dur,
    #[serde(default = "default_park_max_age")]
    park_max_age: Dur,
    #[serde(default = "default_park_retry_min")]
    park_retry_min: Dur,
    #[serde(default = "default_park_retry_max")]
    park_retry_max: Dur,
    #[serde(default = "default_park_queue_wait")]
    park_queue_wait: Dur,
}

fn default_start_from() -> StartFrom {
    StartFrom::Latest
}
fn default_max_message_bytes() -> usize {
    4 << 20
}
fn default_dead_letter_max_bytes() -> usize {
    900_000
}
fn default_max_json_depth() -> usize {
    crate::model::MAX_DEPTH
}
fn default_commit_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_in_flight_per_partition() -> usize {
    1000
}
fn default_in_flight() -> usize {
    10_000
}
fn default_session_timeout() -> Dur {
    Dur(Duration::from_secs(45))
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_log_level() -> String {
    "info".into()
}
fn default_failure_log_interval() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_workers() -> usize {
    4
}
fn default_queue_size() -> usize {
    1000
}
fn yes() -> bool {
    true
}
fn days(n: u64) -> Dur {
    Dur(Duration::from_secs(n * 86_400))
}
fn default_retention() -> Dur {
    days(30)
}
fn default_resolved_retention() -> Dur {
    days(1)
}
fn default_audit_retention() -> Dur {
    days(7)
}
fn default_sweep_interval() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_retry_attempts() -> u32 {
    5
}
fn default_retry_pass() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_retry_min() -> Dur {
    Dur(Duration::from_millis(250))
}
fn default_retry_max() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_park_max_age() -> Dur {
    Dur(Duration::from_secs(86_400))
}
fn default_park_retry_min() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_park_retry_max() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_park_queue_wait() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/herald")
}
fn default_shutdown_grace() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Config {
    /// Reads and validates the file, with the process environment.
    pub fn load(path: &Path) -> Result<Config, Errors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = Errors::default();
            errs.push("(file)", format!("cannot read {}: {e}", path.display()));
            errs
        })?;
        let vars: HashMap<String, String> = std::env::vars().collect();
        Config::parse(&text, &vars)
    }

    /// Validates `text` against `vars` (the environment), reporting every error.
    pub fn parse(text: &str, vars: &HashMap<String, String>) -> Result<Config, Errors> {
        let mut errs = Errors::default();
        let mut root: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| line_col(text, s.start))
                    .unwrap_or_else(|| "(toml)".into());
                errs.push(&at, format!("TOML syntax: {}", e.message().trim()));
                return Err(errs);
            }
        };
        load::apply_env_overrides(&mut root, vars);
        let mut tree = toml::Value::Table(root);
        load::substitute_env(&mut tree, "", vars, &mut errs);
        let toml::Value::Table(mut root) = tree else {
            unreachable!()
        };
        let static_fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut rest = root.clone();
            rest.remove("destinations");
            rest.remove("namespace_metadata");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            rest.to_string().hash(&mut h);
            h.finish()
        };

        let kafka = match root.remove("kafka") {
            Some(v) => section::<KafkaConfig>(v, "kafka", &mut errs),
            None => {
                errs.push("kafka", "is required");
                None
            }
        };
        if let Some(k) = &kafka {
            validate_kafka(k, &mut errs);
        }
        let http = root
            .remove("http")
            .map(|v| section::<HttpConfig>(v, "http", &mut errs))
            .unwrap_or_else(|| Some(HttpConfig::default()));
        let log = root
            .remove("log")
            .map(|v| section::<LogConfig>(v, "log", &mut errs))
            .unwrap_or_else(|| Some(LogConfig::default()));
        if let Some(l) = &log {
            if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
                errs.push(
                    "log.level",
                    format!("invalid level or filter {:?}", l.level),
                );
            }
        }
        let shutdown_grace = root
            .remove("shutdown_grace")
            .and_then(|v| field::<Dur>(v, "shutdown_grace", &mut errs).map(|p| p.value))
            .unwrap_or_else(default_shutdown_grace);

        let state_dir = root
            .remove("state_dir")
            .and_then(|v| field::<PathBuf>(v, "state_dir", &mut errs).map(|p| p.value))
            .unwrap_or_else(default_state_dir);
        let ledger = root
            .remove("ledger")
            .map(|v| section::<LedgerConfig>(v, "ledger", &mut errs))
            .unwrap_or_else(|| Some(LedgerConfig::default()));

        let ingest = root.remove("ingest").and_then(|v| {
            section::<ingest::RawIngest>(v, "ingest", &mut errs)
                .and_then(|raw| raw.validate(kafka.as_ref(), &mut errs))
        });

        let mut namespaces_fingerprint = 0;
        let namespaces = match root.remove("namespace_metadata") {
            None => Arc::new(crate::routing::namespaces::NamespaceMetadata::default()),
            Some(v) => match field::<PathBuf>(v, "namespace_metadata", &mut errs) {
                Some(p) => match crate::routing::namespaces::NamespaceMetadata::load(&p.value) {
                    Ok(m) => {
                        namespaces_fingerprint = file_fingerprint(&p.value);
                        Arc::new(m)
                    }
                    Err(e) => {
                        errs.push("namespace_metadata", e);
                        Arc::new(crate::routing::namespaces::NamespaceMetadata::default())
                    }
                },
                None => Arc::new(crate::routing::namespaces::NamespaceMetadata::default()),
            },
        };

        let mut destinations = Vec::new();
        match root.remove("destinations") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(d) = parse_destination(
                        item,
                        &format!("destinations[{i}]"),
                        (&namespaces, namespaces_fingerprint),
                        &mut errs,
                    ) {
                        destinations.push(d);
                    }
                }
            }
            Some(_) => errs.push(
                "destinations",
                "must be an array of tables ([[destinations]])",
            ),
        }
        let mut seen = HashSet::new();
        for (i, d) in destinations.iter().enumerate() {
            if !seen.insert(d.common.name.clone()) {
                errs.push(
                    &format!("destinations[{i}].name"),
                    format!("duplicate destination name {:?}", d.common.name),
                );
            }
        }
        for key in root.keys() {
            errs.push(key, "unknown key");
        }

        match (kafka, http, log, ledger) {
            (Some(kafka), Some(http), Some(log), Some(ledger)) if errs.is_empty() => Ok(Config {
                kafka,
                http,
                log,
                shutdown_grace: shutdown_grace.0,
                state_dir,
                ledger,
                static_fingerprint,
                ingest,
                destinations,
            }),
            _ => Err(errs),
        }
    }

    /// Credentials this configuration sends in clear, one line each; herald
    /// logs them at start and `check-config` prints them.
    pub fn cleartext_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let k = &self.kafka;
        if let Some(sasl) = &k.sasl {
            if sasl.mechanism == SaslMechanism::Plain && k.tls.is_none() {
                out.push("kafka.sasl: SASL PLAIN without kafka.tls: the broker password is sent in clear".to_string());
            }
        }
        if let Some(i) = &self.ingest {
            let credentials = i.basic.is_some() || i.bearer.is_some();
            if credentials && i.tls.is_none() && !i.listen.ip().is_loopback() {
                out.push(format!(
                    "ingest: credentials are accepted over plain http on {} (set tls_cert_file and tls_key_file)",
                    i.listen
                ));
            }
        }
        for d in &self.destinations {
            if let Some(w) = d.notifier.cleartext_credentials() {
                out.push(format!("destinations.{}: {w}", d.common.name));
            }
        }
        out
    }

    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.common.name == name)
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line} column {col}")
}

fn validate_kafka(k: &KafkaConfig, errs: &mut Errors) {
    if k.brokers.trim().is_empty() {
        errs.push("kafka.brokers", "must not be empty");
    }
    if k.group_id.trim().is_empty() {
        errs.push("kafka.group_id", "must not be empty");
    }
    if k.topics.is_empty() {
        errs.push("kafka.topics", "must list at least one topic");
    }
    for (i, t) in k.topics.iter().enumerate() {
        if t.trim().is_empty() {
            errs.push(&format!("kafka.topics[{i}]"), "must not be empty");
        }
    }
    if k.dead_letter_topic.trim().is_empty() {
        errs.push("kafka.dead_letter_topic", "must not be empty");
    } else if k.topics.contains(&k.dead_letter_topic) {
        errs.push(
            "kafka.dead_letter_topic",
            "must differ from the input topics",
        );
    }
    if k.max_message_bytes == 0 {
        errs.push("kafka.max_message_bytes", "must be at least 1");
    }
    if k.dead_letter_max_bytes < 4096 {
        errs.push("kafka.dead_letter_max_bytes", "must be at least 4096");
    }
    if !(1..=crate::model::MAX_DEPTH).contains(&k.max_json_depth) {
        errs.push(
            "kafka.max_json_depth",
            format!("must be 1..{}", crate::model::MAX_DEPTH),
        );
    }
    if k.max_in_flight_per_partition == 0 {
        errs.push("kafka.max_in_flight_per_partition", "must be at least 1");
    }
    if k.max_in_flight == 0 {
        errs.push("kafka.max_in_flight", "must be at least 1");
    }
    if k.commit_interval.0.is_zero() {
        errs.push("kafka.commit_interval", "must be greater than 0");
    }
    if let Some(sasl) = &k.sasl {
        secret_pair(
            &sasl.password,
            &sasl.password_file,
            "kafka.sasl.password",
            true,
            errs,
        );
    }
    if let Some(tls) = &k.tls {
        for (name, file) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    errs.push(
                        &format!("kafka.tls.{name}"),
                        format!("{} is not a readable file", f.display()),
                    );
                }
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            errs.push(
                "kafka.tls.key_file",
                "cert_file and key_file must be given together",
            );
        }
        secret_pair(
            &tls.key_password,
            &tls.key_password_file,
            "kafka.tls.key_password",
            false,
            errs,
        );
    }
}

/// Checks that a secret is given once, inline or as `<field>_file`, and that
/// the file is readable.
fn secret_pair(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    path: &str,
    required: bool,
    errs: &mut Errors,
) {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errs.push(path, format!("give either {path} or {path}_file, not both"))
        }
        (None, None) if required => errs.push(path, "is required (inline or as a _file)"),
        (None, Some(f)) => {
            if let Err(e) = std::fs::read_to_string(f) {
                errs.push(
                    &format!("{path}_file"),
                    format!("cannot read {}: {e}", f.display()),
                );
            }
        }
        _ => {}
    }
}

/// Resolves a secret given inline or as a file (trailing newline trimmed).
/// Call after validation; an unreadable file becomes an error at `path`.
pub fn read_secret(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    path: &str,
    errs: &mut Errors,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errs.push(path, format!("give either {path} or {path}_file, not both"));
            None
        }
        (Some(s), None) => Some(s.clone()),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']))),
            Err(e) => {
                errs.push(
                    &format!("{path}_file"),
                    format!("cannot read {}: {e}", f.display()),
                );
                None
            }
        },
        (None, None) => None,
    }
}

impl KafkaConfig {
    /// What a consumed message value may be.
    pub fn decode_limits(&self) -> crate::model::Limits {
        crate::model::Limits {
            max_bytes: self.max_message_bytes,
            max_depth: self.max_json_depth,
        }
    }

    /// The SASL password, from inline or file (validated at load).
    pub fn sasl_password(&self) -> Option<String> {
        let sasl = self.sasl.as_ref()?;
        let mut errs = Errors::default();
        read_secret(
            &sasl.password,
            &sasl.password_file,
            "kafka.sasl.password",
            &mut errs,
        )
        .map(|s| s.expose().to_string())
    }

    pub fn tls_key_password(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let mut errs = Errors::default();
        read_secret(
            &tls.key_password,
            &tls.key_password_file,
            "kafka.tls.key_password",
            &mut errs,
        )
        .map(|s| s.expose().to_string())
    }
}

/// A hash of a file's bytes (0 when unreadable).
fn file_fingerprint(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Hashes a destination table and the contents of every `*_file` it names,
/// so a rotated secret or CA file counts as a change.
fn destination_fingerprint(item: &toml::Value, namespaces: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    fn files(v: &toml::Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    match v {
                        toml::Value::String(f) if k.ends_with("_file") => {
                            file_fingerprint(Path::new(f)).hash(h)
                        }
                        _ => files(v, h),
                    }
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| files(v, h)),
            _ => {}
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    item.to_string().hash(&mut h);
    namespaces.hash(&mut h);
    files(item, &mut h);
    h.finish()
}

fn parse_destination(
    item: toml::Value,
    path: &str,
    (namespaces, namespaces_fingerprint): (
        &Arc<crate::routing::namespaces::NamespaceMetadata>,
        u64,
    ),
    errs: &mut Errors,
) -> Option<Destination> {
    let toml::Value::Table(table) = &item else {
        errs.push(path, "must be a table");
        return None;
    };
    let kind = match table.get("type") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => {
            errs.push(&join(path, "type"), "must be a string");
            return None;
        }
        None => {
            errs.push(&join(path, "type"), "is required");
            return None;
        }
    };
    let Some(entry) = notifiers::lookup(&kind) else {
        errs.push(
            &join(path, "type"),
            format!(
                "unknown type {kind:?} (expected one of: {})",
                notifiers::type_names().join(", ")
            ),
        );
        return None;
    };

    let before = errs.list.len();
    let fingerprint = destination_fingerprint(&item, namespaces_fingerprint);
    let raw = field::<RawCommon>(item.clone(), path, errs)?;
    let common = validate_common(
        raw.value,
        entry.default_audit,
        namespaces.clone(),
        path,
        errs,
    )?;
    let (notifier, type_ignored) = (entry.parse)(item, path, &common, errs)?;

    // A key is unknown when neither the shared settings nor the type's own know it.
    let nested = |p: &str| p.contains(['.', '[']);
    let type_top: HashSet<&String> = type_ignored.iter().filter(|p| !nested(p)).collect();
    for p in &raw.ignored {
        if nested(p) || type_top.contains(p) {
            errs.push(&join(path, p), "unknown key");
        }
    }
    // serde_ignored reports an unknown key once, without descending, so a nested
    // path means its parent table belongs to that pass.
    for p in type_ignored.iter().filter(|p| nested(p)) {
        errs.push(&join(path, p), "unknown key");
    }
    if errs.list.len() > before {
        return None;
    }
    Some(Destination {
        common,
        notifier,
        fingerprint,
    })
}

fn validate_common(
    raw: RawCommon,
    default_audit: bool,
    namespaces: Arc<crate::routing::namespaces::NamespaceMetadata>,
    path: &str,
    errs: &mut Errors,
) -> Option<Common> {
    let before = errs.list.len();
    let valid_name = !raw.name.is_empty()
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid_name {
        errs.push(
            &join(path, "name"),
            "must be non-empty and use only a-z, 0-9, _ and -",
        );
    }
    if raw.id.is_empty() && !raw.all_alerts && raw.audit != Some(true) && !default_audit {
        errs.push(
            &join(path, "id"),
            "is required unless all_alerts = true (policies route alerts by notifier id)",
        );
    }
    if raw.timeout.0.is_zero() {
        errs.push(&join(path, "timeout"), "must be greater than 0");
    }
    if raw.workers == 0 || raw.workers > 256 {
        errs.push(&join(path, "workers"), "must be 1..256");
    }
    if raw.queue_size == 0 {
        errs.push(&join(path, "queue_size"), "must be at least 1");
    }
    if raw.rate_limit == Some(0) {
        errs.push(
            &join(path, "rate_limit"),
            "must be at least 1 (per second), or absent for no limit",
        );
    }
    if raw.rate_burst == Some(0) {
        errs.push(&join(path, "rate_burst"), "must be at least 1");
    }
    if raw.retry_max_attempts == 0 {
        errs.push(&join(path, "retry_max_attempts"), "must be at least 1");
    }
    if raw.retry_min_delay.0 > raw.retry_max_delay.0 {
        errs.push(
            &join(path, "retry_min_delay"),
            "must not exceed retry_max_delay",
        );
    }
    if raw.breaker_failures == 0 {
        errs.push(&join(path, "breaker_failures"), "must be at least 1");
    }
    if raw.park_retry_min.0.is_zero() || raw.park_retry_min.0 > raw.park_retry_max.0 {
        errs.push(
            &join(path, "park_retry_min"),
            "must be greater than 0 and not exceed park_retry_max",
        );
    }
    for (name, list) in [
        ("retry_statuses", &raw.retry_statuses),
        ("permanent_statuses", &raw.permanent_statuses),
    ] {
        if let Some(bad) = list.iter().find(|s| !(100..=599).contains(*s)) {
            errs.push(
                &join(path, name),
                format!("{bad} is not an HTTP status (100..599)"),
            );
        }
    }
    let policy = DeliveryPolicy {
        renotify_runtime_updates: raw.renotify_runtime_updates,
        rate_limit: raw.rate_limit.map(|r| (r, raw.rate_burst.unwrap_or(r))),
        retry_max_attempts: raw.retry_max_attempts,
        retry_max_pass: raw.retry_max_pass.0,
        retry_min_delay: raw.retry_min_delay.0,
        retry_max_delay: raw.retry_max_delay.0,
        retry_statuses: raw.retry_statuses.clone(),
        permanent_statuses: raw.permanent_statuses.clone(),
        breaker_failures: raw.breaker_failures,
        breaker_cooldown: raw.breaker_cooldown.0,
        park_max_age: raw.park_max_age.0,
        park_retry_min: raw.park_retry_min.0,
        park_retry_max: raw.park_retry_max.0,
        park_queue_wait: raw.park_queue_wait.0,
    };
    let filter = Filter::build(
        &RawFilter {
            all_alerts: raw.all_alerts,
            min_severity: raw.min_severity.clone(),
            lifecycle_stages: raw.lifecycle_stages.clone(),
            clusters: raw.clusters.clone(),
            namespaces: raw.namespaces.clone(),
            policies: raw.policies.clone(),
            categories: raw.categories.clone(),
        },
        path,
        errs,
    );
    if errs.list.len() > before {
        return None;
    }
    Some(Common {
        namespaces,
        name: raw.name,
        id: raw.id,
        kind: raw.kind,
        ui_endpoint: raw.ui_endpoint,
        audit: raw.audit.unwrap_or(default_audit),
        timeout: raw.timeout.0,
        workers: raw.workers,
        queue_size: raw.queue_size,
        filter: filter?,
        policy,
    })
}
