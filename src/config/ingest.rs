//! `[ingest]`: the `POST /v1/ingest` listener for the sidecar pattern
//! (Central's generic webhook → herald → Kafka → herald's dispatch).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{read_secret, Dur, Errors, KafkaConfig, Secret};

#[derive(Debug, Deserialize)]
pub struct RawIngest {
    #[serde(default = "default_ingest_listen")]
    listen: SocketAddr,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default = "default_produce_timeout")]
    produce_timeout: Dur,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    bearer_token: Option<Secret>,
    #[serde(default)]
    bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    tls_key_file: Option<PathBuf>,
    /// Explicit opt-out: without credentials anyone who reaches the port can
    /// inject alerts.
    #[serde(default)]
    allow_unauthenticated: bool,
}

fn default_ingest_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9465))
}
fn default_produce_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}

/// The validated ingest settings, secrets resolved.
#[derive(Debug)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    pub topic: String,
    pub max_body_bytes: usize,
    pub produce_timeout: std::time::Duration,
    pub basic: Option<(String, Secret)>,
    pub bearer: Option<Secret>,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl RawIngest {
    pub fn validate(self, kafka: Option<&KafkaConfig>, errs: &mut Errors) -> Option<IngestConfig> {
        let before = errs.list.len();
        let topic = match (self.topic, kafka.and_then(|k| k.topics.first())) {
            (Some(t), _) if t.trim().is_empty() => {
                errs.push("ingest.topic", "must not be empty");
                String::new()
            }
            (Some(t), _) => t,
            (None, Some(t)) => t.clone(),
            (None, None) => String::new(),
        };
        let max_body_bytes = self
            .max_body_bytes
            .or(kafka.map(|k| k.max_message_bytes))
            .unwrap_or(4 << 20);
        if max_body_bytes == 0 {
            errs.push("ingest.max_body_bytes", "must be at least 1");
        }
        if self.produce_timeout.0.is_zero() {
            errs.push("ingest.produce_timeout", "must be greater than 0");
        }
        let password = read_secret(&self.password, &self.password_file, "ingest.password", errs);
        let basic = match (self.username, password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                errs.push("ingest.password", "is required with ingest.username");
                None
            }
            _ => {
                errs.push("ingest.username", "is required with ingest.password");
                None
            }
        };
        let bearer = read_secret(
            &self.bearer_token,
            &self.bearer_token_file,
            "ingest.bearer_token",
            errs,
        );
        if bearer.as_ref().is_some_and(|b| b.expose().is_empty()) {
            errs.push("ingest.bearer_token", "must not be empty");
        }
        if basic.is_none()
            && bearer.is_none()
            && !self.allow_unauthenticated
            && errs.list.len() == before
        {
            errs.push(
                "ingest.username",
                "set username and password, or bearer_token (or allow_unauthenticated = true)",
            );
        }
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                errs.push(
                    "ingest.tls_key_file",
                    "tls_cert_file and tls_key_file must be given together",
                );
                None
            }
        };
        (errs.list.len() == before).then_some(IngestConfig {
            listen: self.listen,
            topic,
            max_body_bytes,
            produce_timeout: self.produce_timeout.0,
            basic,
            bearer,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;

    const BASE: &str = "[kafka]\nbrokers = \"k:9092\"\ngroup_id = \"g\"\ntopics = [\"in\"]\ndead_letter_topic = \"dlq\"\n";

    fn errors(ingest: &str) -> Vec<String> {
        match Config::parse(&format!("{BASE}[ingest]\n{ingest}"), &HashMap::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e.list.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_to_the_first_input_topic_and_the_message_limit() {
        let c = Config::parse(
            &format!("{BASE}max_message_bytes = 1000\n[ingest]\nbearer_token = \"t\"\n"),
            &HashMap::new(),
        )
        .unwrap();
        let i = c.ingest.unwrap();
        assert_eq!(i.topic, "in");
        assert_eq!(i.max_body_bytes, 1000);
        assert_eq!(i.listen.to_string(), "127.0.0.1:9465");
        assert_eq!(format!("{:?}", i.bearer.unwrap()), "<redacted>");
    }

    #[test]
    fn credentials_are_required_unless_turned_off_and_errors_name_fields() {
        assert_eq!(
            errors(""),
            vec!["ingest.username: set username and password, or bearer_token (or allow_unauthenticated = true)"]
        );
        assert_eq!(
            errors("allow_unauthenticated = true\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            errors("username = \"u\"\n"),
            vec!["ingest.password: is required with ingest.username"]
        );
        assert_eq!(
            errors("bearer_token = \"t\"\ntls_cert_file = \"/nonexistent.pem\"\n"),
            vec!["ingest.tls_key_file: tls_cert_file and tls_key_file must be given together"]
        );
        assert_eq!(
            errors("bearer_token = \"t\"\nlisten = \"nope\"\n"),
            vec!["ingest.listen: invalid socket address syntax"]
        );
        assert_eq!(
            errors("bearer_token = \"t\"\ntopic = \"\"\nbogus = 1\n"),
            vec![
                "ingest.bogus: unknown key",
                "ingest.topic: must not be empty"
            ]
        );
    }
}
