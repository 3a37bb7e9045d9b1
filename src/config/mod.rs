//! Configuration: one TOML file, `HERALD__SECTION__KEY` environment overrides,
//! `${VAR}` substitution and `*_file` secrets. Every error names its field.

pub mod central;
pub mod ingest;
mod load;
mod types;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

pub use load::{field, join, section, Parsed};
pub use types::{redact_url, Dur, Secret};

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
    pub admin: AdminConfig,
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
    /// Central's API (`[central]`): namespace and cluster metadata.
    pub central: Option<central::CentralConfig>,
    /// The `[[destinations]]` tables; `crate::destinations` builds them.
    pub destinations: DestinationTables,
}

/// What the destinations are built from: each `[[destinations]]` table as
/// written (`${VAR}` substituted, environment overrides applied) and the
/// namespace-metadata file. Read even from a file with errors elsewhere, so
/// `check-config` reports every error at once.
#[derive(Debug, Clone, Default)]
pub struct DestinationTables {
    pub tables: Vec<toml::Value>,
    /// Labels and annotations of namespaces (`namespace_metadata`).
    pub namespace_metadata: Option<PathBuf>,
    /// Where each cluster runs (`cluster_metadata`: Central's `/v1/clusters`).
    pub cluster_metadata: Option<PathBuf>,
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
    /// Bytes of message values in flight before every partition pauses.
    #[serde(default = "default_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Dur,
    /// How long the consumer may stay out of its group (rejoining after a
    /// broker restart or a rebalance) while a broker answers, before herald
    /// replaces it with a new consumer.
    #[serde(default = "default_rejoin_timeout")]
    pub rejoin_timeout: Dur,
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

/// `[http]`: the listener of `/metrics`, `/healthz` and `/readyz`, and the
/// limits every herald listener (this one, `[admin]`, `[ingest]`) applies
/// to its clients.
#[derive(Debug, Deserialize)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A client must send a request's headers within this (also the most an
    /// idle keep-alive connection waits for the next request).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// A request, its body included, must be answered within this.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// Connections each listener holds at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        toml::from_str("").expect("[http] has defaults")
    }
}

/// `[admin]`: the listener of `/v1/parked` and `/v1/ledger`, which show alert
/// data: on loopback unless moved, with an optional bearer token.
#[derive(Debug, Deserialize)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        toml::from_str("").expect("[admin] has defaults")
    }
}

impl AdminConfig {
    /// The bearer token clients must present, if one is set.
    pub fn token(&self) -> Option<Secret> {
        let mut errs = Errors::default();
        read_secret(&self.token, &self.token_file, "admin.token", &mut errs)
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
fn default_in_flight_bytes() -> usize {
    32 << 20
}
fn default_session_timeout() -> Dur {
    Dur(Duration::from_secs(45))
}
fn default_rejoin_timeout() -> Dur {
    Dur(Duration::from_secs(180))
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_header_read_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_request_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_max_connections() -> usize {
    256
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9466))
}
fn default_log_level() -> String {
    "info".into()
}
fn default_failure_log_interval() -> Dur {
    Dur(Duration::from_secs(60))
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
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/herald")
}
fn default_shutdown_grace() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Config {
    /// Reads and validates the file, with the process environment.
    pub fn load(path: &Path) -> Result<Config, Errors> {
        Config::load_with_destinations(path).0
    }

    /// [`Config::load`], and the destination tables even when the rest of
    /// the file has errors.
    pub fn load_with_destinations(path: &Path) -> (Result<Config, Errors>, DestinationTables) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let mut errs = Errors::default();
                errs.push("(file)", format!("cannot read {}: {e}", path.display()));
                return (Err(errs), DestinationTables::default());
            }
        };
        let vars: HashMap<String, String> = std::env::vars().collect();
        Config::parse_with_destinations(&text, &vars)
    }

    /// Validates `text` against `vars` (the environment), reporting every error.
    pub fn parse(text: &str, vars: &HashMap<String, String>) -> Result<Config, Errors> {
        Config::parse_with_destinations(text, vars).0
    }

    /// [`Config::parse`], and the destination tables even when the rest of
    /// the file has errors.
    pub fn parse_with_destinations(
        text: &str,
        vars: &HashMap<String, String>,
    ) -> (Result<Config, Errors>, DestinationTables) {
        let mut errs = Errors::default();
        let mut root: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| line_col(text, s.start))
                    .unwrap_or_else(|| "(toml)".into());
                errs.push(&at, format!("TOML syntax: {}", e.message().trim()));
                return (Err(errs), DestinationTables::default());
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
            rest.remove("cluster_metadata");
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
        let admin = root
            .remove("admin")
            .map(|v| section::<AdminConfig>(v, "admin", &mut errs))
            .unwrap_or_else(|| Some(AdminConfig::default()));
        if let Some(a) = &admin {
            secret_pair(&a.token, &a.token_file, "admin.token", false, &mut errs);
            if !a.listen.ip().is_loopback() && a.token.is_none() && a.token_file.is_none() {
                errs.push(
                    "admin.listen",
                    "off loopback the admin API needs a token (admin.token or admin.token_file): it shows alert data",
                );
            }
        }
        if let Some(h) = &http {
            if h.header_read_timeout.0.is_zero() || h.request_timeout.0.is_zero() {
                errs.push(
                    "http.header_read_timeout",
                    "timeouts must be greater than 0",
                );
            }
            if h.max_connections == 0 {
                errs.push("http.max_connections", "must be at least 1");
            }
        }
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

        let central = root
            .remove("central")
            .and_then(|v| section::<central::CentralConfig>(v, "central", &mut errs));
        if let Some(c) = &central {
            c.validate(&mut errs);
        }
        // Reconciled alerts go to a topic herald reads.
        let mut central = central;
        if let Some(r) = central.as_mut().and_then(|c| c.reconcile.as_mut()) {
            let default = ingest
                .as_ref()
                .map(|i| i.topic.clone())
                .or_else(|| kafka.as_ref().and_then(|k| k.topics.first().cloned()));
            let topic = r.topic.clone().or(default).unwrap_or_default();
            if kafka.as_ref().is_some_and(|k| !k.topics.contains(&topic)) {
                errs.push(
                    "central.reconcile.topic",
                    format!("{topic:?} is not one of kafka.topics: herald would never read what it produces"),
                );
            }
            r.topic = Some(topic);
        }

        let namespace_metadata = root
            .remove("namespace_metadata")
            .and_then(|v| field::<PathBuf>(v, "namespace_metadata", &mut errs))
            .map(|p| p.value);
        let cluster_metadata = root
            .remove("cluster_metadata")
            .and_then(|v| field::<PathBuf>(v, "cluster_metadata", &mut errs))
            .map(|p| p.value);
        let destinations = DestinationTables {
            tables: match root.remove("destinations") {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => items,
                Some(_) => {
                    errs.push(
                        "destinations",
                        "must be an array of tables ([[destinations]])",
                    );
                    Vec::new()
                }
            },
            namespace_metadata,
            cluster_metadata,
        };
        for key in root.keys() {
            errs.push(key, "unknown key");
        }
        if central.is_some() {
            for (set, key) in [
                (
                    destinations.namespace_metadata.is_some(),
                    "namespace_metadata",
                ),
                (destinations.cluster_metadata.is_some(), "cluster_metadata"),
            ] {
                if set {
                    errs.push(
                        key,
                        "give either this file or [central] (which reads the same from Central's API), not both",
                    );
                }
            }
        }

        let tables = destinations.clone();
        let config = match (kafka, http, admin, log, ledger) {
            (Some(kafka), Some(http), Some(admin), Some(log), Some(ledger)) if errs.is_empty() => {
                Ok(Config {
                    kafka,
                    http,
                    admin,
                    log,
                    shutdown_grace: shutdown_grace.0,
                    state_dir,
                    ledger,
                    static_fingerprint,
                    ingest,
                    central,
                    destinations,
                })
            }
            _ => Err(errs),
        };
        (config, tables)
    }

    /// Credentials the broker and ingest settings send in clear, one line
    /// each (`crate::destinations` adds the destinations').
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
        out
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
    if !(1..=crate::model::MAX_MESSAGE_BYTES).contains(&k.max_message_bytes) {
        errs.push(
            "kafka.max_message_bytes",
            format!("must be 1..{}", crate::model::MAX_MESSAGE_BYTES),
        );
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
    if k.max_in_flight_bytes < k.max_message_bytes {
        errs.push(
            "kafka.max_in_flight_bytes",
            "must be at least kafka.max_message_bytes (one message must fit)",
        );
    }
    if k.rejoin_timeout.0 < k.session_timeout.0 {
        errs.push(
            "kafka.rejoin_timeout",
            "must be at least kafka.session_timeout",
        );
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
pub fn file_fingerprint(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Hashes a destination table and the contents of every `*_file` it names,
/// so a rotated secret or CA file counts as a change.
pub fn destination_fingerprint(item: &toml::Value, namespaces: u64) -> u64 {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::Config;

    #[test]
    fn rejoin_timeout_defaults_to_three_minutes_and_is_not_below_the_session_timeout() {
        let base = "[kafka]\nbrokers = \"k:9092\"\ngroup_id = \"g\"\ntopics = [\"in\"]\ndead_letter_topic = \"dlq\"\n";
        let c = Config::parse(base, &HashMap::new()).unwrap();
        assert_eq!(c.kafka.rejoin_timeout.0.as_secs(), 180);
        let e = Config::parse(
            &format!("{base}session_timeout = \"45s\"\nrejoin_timeout = \"30s\"\n"),
            &HashMap::new(),
        )
        .unwrap_err();
        let list: Vec<String> = e.list.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            list,
            vec!["kafka.rejoin_timeout: must be at least kafka.session_timeout"]
        );
    }
}
