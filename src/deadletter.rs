//! Dead letters: every message herald gives up on, in one record shape, written
//! to the dead-letter topic and acknowledged before the offset passes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// The dead-letter record. `kind` is `invalid_input` or `delivery_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub kind: String,
    pub reason: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When herald gave up, RFC 3339.
    pub time: String,
    /// The original message value when it is UTF-8 …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// … otherwise base64 of its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Set when the value did not fit the record (`kafka.dead_letter_max_bytes`):
    /// `value` / `value_base64` then hold only its first bytes, and
    /// `value_size` and `value_sha256` identify the whole original, which
    /// stays at `topic`/`partition`/`offset` for as long as the topic keeps it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_sha256: Option<String>,
}

/// The most of a value a truncated record keeps.
const HEAD_BYTES: usize = 64 << 10;

/// `value` as the record carries it: text when UTF-8, else base64.
fn carried(value: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(value) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(value)),
        ),
    }
}

/// The longest prefix of `b` of at most `n` bytes that does not split a
/// UTF-8 character (of valid UTF-8; other bytes are cut at `n`).
fn head(b: &[u8], n: usize) -> &[u8] {
    let mut end = n.min(b.len());
    if std::str::from_utf8(b).is_ok() {
        while end > 0 && end < b.len() && (b[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    &b[..end]
}

impl DeadLetter {
    pub fn new(kind: &str, reason: String, origin: &Origin) -> DeadLetter {
        let (value, value_base64) = carried(&origin.value);
        DeadLetter {
            kind: kind.to_string(),
            reason,
            topic: origin.topic.clone(),
            partition: origin.partition,
            offset: origin.offset,
            destination: None,
            attempts: 0,
            first_error: None,
            last_error: None,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            value,
            value_base64,
            value_truncated: false,
            value_size: None,
            value_sha256: None,
        }
    }

    /// The record as JSON, at most `max` bytes: with the whole value when it
    /// fits, else with its first bytes (at most 64 KiB, fewer until the record
    /// fits), its size and its SHA-256.
    pub fn to_bounded_json(&self, max: usize) -> Vec<u8> {
        let whole = serde_json::to_vec(self).expect("dead letter serialises");
        if whole.len() <= max || self.value_truncated {
            return whole;
        }
        let decoded;
        let original: &[u8] = match (&self.value, &self.value_base64) {
            (Some(v), _) => v.as_bytes(),
            (None, Some(b)) => {
                decoded = base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_default();
                &decoded
            }
            (None, None) => &[],
        };
        use sha2::{Digest, Sha256};
        let mut r = self.clone();
        r.value_truncated = true;
        r.value_size = Some(original.len() as u64);
        r.value_sha256 = Some(
            Sha256::digest(original)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        );
        // Errors quote no payload, but keep them short too.
        for e in [&mut r.first_error, &mut r.last_error]
            .into_iter()
            .flatten()
        {
            if e.len() > 1024 {
                *e = String::from_utf8_lossy(head(e.as_bytes(), 1024)).into_owned();
            }
        }
        let mut keep = HEAD_BYTES;
        loop {
            (r.value, r.value_base64) = carried(head(original, keep));
            let json = serde_json::to_vec(&r).expect("dead letter serialises");
            if json.len() <= max || keep == 0 {
                return json;
            }
            keep /= 2;
        }
    }
}

/// Whether the broker (or the producer) refuses a record for its size: no
/// retry can change that, only a smaller record.
fn too_large(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidRecord)
    )
}

/// Writes dead letters to the topic, retrying until the broker acknowledges.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    /// The largest record written (`kafka.dead_letter_max_bytes`).
    max_bytes: usize,
    /// Optional local copy, one JSON record per line.
    file: Option<Arc<std::sync::Mutex<std::fs::File>>>,
    metrics: Arc<Metrics>,
}

impl DeadLetters {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        max_bytes: usize,
        file: Option<std::path::PathBuf>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<DeadLetters> {
        let file = match file {
            Some(path) => Some(Arc::new(std::sync::Mutex::new(
                crate::files::private_append(&path).map_err(|e| {
                    anyhow::anyhow!(
                        "kafka.dead_letter_file: cannot open {}: {e}",
                        path.display()
                    )
                })?,
            ))),
            None => None,
        };
        Ok(DeadLetters {
            producer,
            topic,
            max_bytes,
            file,
            metrics,
        })
    }

    /// Whether a broker answers this producer (a client separate from the
    /// consumer) with the dead-letter topic's metadata within `timeout`.
    pub async fn brokers_answer(&self, timeout: Duration) -> bool {
        use rdkafka::producer::Producer;
        let (producer, topic) = (self.producer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Produces `payload`, retrying every error but a size error, which it
    /// returns.
    async fn produce(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let attempt = || async {
            let mut rec = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(payload);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            self.producer
                .send(rec, Timeout::After(Duration::from_secs(30)))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .without_max_times(),
            )
            .when(|e| !too_large(e))
            .notify(|e, _| tracing::warn!(error = %e, topic = %self.topic, "dead-letter write failed; retrying"))
            .await
    }

    /// Returns `true` once the broker acknowledged the record, `false` if
    /// `cancel` fired first (the message then stays uncommitted). A record
    /// the broker refuses for its size is written again with the value cut
    /// to its coordinates, size and SHA-256, so no message stalls its
    /// partition for being large.
    pub async fn write(
        &self,
        record: &DeadLetter,
        key: Option<&[u8]>,
        cancel: &CancellationToken,
    ) -> bool {
        let started = Instant::now();
        let written = async {
            let payload = record.to_bounded_json(self.max_bytes);
            match self.produce(&payload, key).await {
                Ok(()) => payload,
                Err(e) => {
                    let minimal = record.to_bounded_json(0);
                    tracing::warn!(error = %e, topic = %self.topic, bytes = payload.len(), "dead-letter record refused for its size; writing it without the value");
                    match self.produce(&minimal, key).await {
                        Ok(()) => minimal,
                        Err(e) => {
                            // Even the bare coordinates are refused: the
                            // topic's limit is below any record. Say where
                            // the message is, and let the partition move on.
                            tracing::error!(error = %e, topic = %self.topic, record = %String::from_utf8_lossy(&minimal), "dead-letter topic refuses even a minimal record; the message stays only in its source topic");
                            self.metrics.dead_letter_refused.inc();
                            minimal
                        }
                    }
                }
            }
        };
        let payload = tokio::select! {
            p = written => p,
            _ = cancel.cancelled() => return false,
        };
        if let Some(f) = &self.file {
            let f = f.clone();
            let appended = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                let mut line = payload;
                line.push(b'\n');
                f.write_all(&line).and_then(|_| f.sync_data())
            })
            .await;
            if let Ok(Err(e)) = appended {
                tracing::error!(error = %e, "cannot append to dead_letter_file");
            }
        }
        self.metrics
            .dead_letters
            .with_label_values(&[&record.kind])
            .inc();
        self.metrics
            .dead_letter_write_duration
            .observe(started.elapsed().as_secs_f64());
        true
    }

    /// Waits for queued records to be acknowledged, at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "dead-letter producer flush did not finish");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn origin(value: &[u8]) -> Origin {
        Origin {
            topic: "in".into(),
            partition: 2,
            offset: 7,
            key: None,
            value: value.to_vec(),
        }
    }

    #[test]
    fn a_record_that_fits_carries_the_whole_value() {
        let r = DeadLetter::new("invalid_input", "not_json: x".into(), &origin(b"{oops"));
        let json: serde_json::Value = serde_json::from_slice(&r.to_bounded_json(1 << 20)).unwrap();
        assert_eq!(json["value"], "{oops");
        assert!(json.get("value_truncated").is_none());
        assert!(json.get("value_sha256").is_none());
    }

    #[test]
    fn a_large_value_is_cut_to_a_bounded_record_with_size_and_digest() {
        // 2 MiB of JSON-hostile text (each control byte takes 6 bytes escaped)
        // and a multi-byte character at the cut.
        let mut value = "\u{1}".repeat(1 << 20).into_bytes();
        value.extend("é".repeat(1 << 19).as_bytes());
        let r = DeadLetter::new("invalid_input", "too_large: x".into(), &origin(&value));
        for max in [900_000, 10_000, 500] {
            let bytes = r.to_bounded_json(max);
            assert!(bytes.len() <= max, "{} > {max}", bytes.len());
            let back: DeadLetter = serde_json::from_slice(&bytes).unwrap();
            assert!(back.value_truncated);
            assert_eq!(back.value_size, Some(value.len() as u64));
            assert_eq!(
                back.value_sha256.as_deref(),
                Some(
                    sha2::Sha256::digest(&value)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                        .as_str()
                )
            );
            let kept = back.value.unwrap();
            assert!(value.starts_with(kept.as_bytes()));
            assert_eq!(
                (back.topic.as_str(), back.partition, back.offset),
                ("in", 2, 7)
            );
        }
        // The minimal record: no value at all, still valid and identifying.
        let minimal: DeadLetter = serde_json::from_slice(&r.to_bounded_json(0)).unwrap();
        assert_eq!(minimal.value.as_deref(), Some(""));
        assert_eq!(minimal.reason, "too_large: x");
        // Binary values are cut before base64, on a byte boundary.
        let binary = vec![0xffu8; 300_000];
        let r = DeadLetter::new("invalid_input", "not_utf8".into(), &origin(&binary));
        let back: DeadLetter = serde_json::from_slice(&r.to_bounded_json(100_000)).unwrap();
        assert!(back.value.is_none() && back.value_truncated);
        let head = base64::engine::general_purpose::STANDARD
            .decode(back.value_base64.unwrap())
            .unwrap();
        assert!(!head.is_empty() && head.iter().all(|b| *b == 0xff));
    }
}
