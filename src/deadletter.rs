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

use crate::http::Metrics;

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
}

impl DeadLetter {
    pub fn new(kind: &str, reason: String, origin: &Origin) -> DeadLetter {
        let (value, value_base64) = match std::str::from_utf8(&origin.value) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&origin.value)),
            ),
        };
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
        }
    }
}

/// Writes dead letters to the topic, retrying until the broker acknowledges.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    /// Optional local copy, one JSON record per line.
    file: Option<std::sync::Mutex<std::fs::File>>,
    metrics: Arc<Metrics>,
}

impl DeadLetters {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        file: Option<std::path::PathBuf>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<DeadLetters> {
        let file = match file {
            Some(path) => Some(std::sync::Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "kafka.dead_letter_file: cannot open {}: {e}",
                            path.display()
                        )
                    })?,
            )),
            None => None,
        };
        Ok(DeadLetters {
            producer,
            topic,
            file,
            metrics,
        })
    }

    /// Returns `true` once the broker acknowledged the record, `false` if
    /// `cancel` fired first (the message then stays uncommitted).
    pub async fn write(
        &self,
        record: &DeadLetter,
        key: Option<&[u8]>,
        cancel: &CancellationToken,
    ) -> bool {
        let payload = serde_json::to_vec(record).expect("dead letter serialises");
        let started = Instant::now();
        let attempt = || async {
            let mut rec = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(&payload);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            self.producer
                .send(rec, Timeout::After(Duration::from_secs(30)))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        };
        let retried = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .without_max_times(),
            )
            .notify(|e, _| tracing::warn!(error = %e, topic = %self.topic, "dead-letter write failed; retrying"));
        tokio::select! {
            r = retried => {
                r.expect("retries without limit");
                if let Some(f) = &self.file {
                    use std::io::Write;
                    let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                    let mut line = payload.clone();
                    line.push(b'\n');
                    if let Err(e) = f.write_all(&line).and_then(|_| f.sync_data()) {
                        tracing::error!(error = %e, "cannot append to dead_letter_file");
                    }
                }
                self.metrics.dead_letters.with_label_values(&[&record.kind]).inc();
                self.metrics.dead_letter_write_duration.observe(started.elapsed().as_secs_f64());
                true
            }
            _ = cancel.cancelled() => false,
        }
    }

    /// Waits for queued records to be acknowledged, at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "dead-letter producer flush did not finish");
        }
    }
}
