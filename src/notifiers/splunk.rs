//! Splunk HTTP Event Collector (central-compat §2.2): Central's envelope, pruning and
//! size rule; beyond Central, opt-in batching, gzip and indexer
//! acknowledgements (a delivery is final only once Splunk has indexed it).

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde::Deserialize;

use super::batch::{BatchLimits, Batcher, PostBatch};
use super::http::{self, TlsSettings};
use super::{BuildContext, Notifier, RenderContext, SendMeta, Target};
use super::{FailureReason, SendError};
use crate::config::{join, read_secret, redact_url, Dur, Errors, Secret};
use crate::formats::splunk;
use crate::model::Event;

#[derive(Deserialize)]
pub struct SourceTypes {
    alert: String,
    audit: String,
}

#[derive(Deserialize)]
pub struct Settings {
    url: String,
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    source_types: Option<SourceTypes>,
    /// Alerts are pruned to this size and larger events refused (Central: 10000).
    #[serde(default = "default_truncate")]
    truncate: usize,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
    /// Events per request (1: no batching). Batches form from concurrent
    /// deliveries, so raise `workers` with it.
    #[serde(default = "one")]
    batch_max_events: usize,
    #[serde(default = "default_batch_bytes")]
    batch_max_bytes: usize,
    #[serde(default = "default_linger")]
    batch_linger: Dur,
    #[serde(default)]
    gzip: bool,
    /// Wait for indexer acknowledgement before a delivery is final.
    #[serde(default)]
    indexer_ack: bool,
    #[serde(default = "default_ack_timeout")]
    ack_timeout: Dur,
}

fn default_truncate() -> usize {
    10_000
}
fn one() -> usize {
    1
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_linger() -> Dur {
    Dur(Duration::from_millis(20))
}
fn default_ack_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}

pub struct Splunk {
    inner: Arc<Inner>,
    /// Concatenates concurrent events into one request.
    batcher: Option<Batcher>,
    alert_type: String,
    audit_type: String,
    truncate: usize,
}

struct Inner {
    client: reqwest::Client,
    events_url: String,
    health_url: Option<String>,
    ack_url: Option<String>,
    target: String,
    token: Secret,
    gzip: bool,
    channel: Option<String>,
    ack_timeout: Duration,
}

impl fmt::Debug for Splunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Splunk")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// Central's endpoint rule: a URL without a path gets the collector path.
fn endpoints(url: &str) -> (String, Option<String>, String) {
    let url = http::with_scheme(url).trim_end_matches('/').to_string();
    let has_path = reqwest::Url::parse(&url)
        .map(|u| !u.path().trim_matches('/').is_empty())
        .unwrap_or(true);
    let base = match url.find("/services/collector") {
        Some(i) => url[..i].to_string(),
        None => url.clone(),
    };
    if has_path {
        (url, None, base)
    } else {
        (
            format!("{url}/services/collector/event/1.0"),
            Some(format!("{url}/services/collector/health/1.0")),
            base,
        )
    }
}

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        if self.url.trim().is_empty() {
            errs.push(&join(path, "url"), "is required");
        }
        let token = read_secret(&self.token, &self.token_file, &join(path, "token"), errs);
        if token.as_ref().is_none_or(|t| t.expose().is_empty()) && errs.list.len() == before {
            errs.push(
                &join(path, "token"),
                "is required (inline or as token_file)",
            );
        }
        if self.truncate < 100 {
            errs.push(&join(path, "truncate"), "must be at least 100 bytes");
        }
        if self.batch_max_events == 0 {
            errs.push(&join(path, "batch_max_events"), "must be at least 1");
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        let (events_url, health_url, base) = endpoints(&self.url);
        if reqwest::Url::parse(&events_url).is_err() {
            errs.push(&join(path, "url"), "not a valid URL");
        }
        if errs.list.len() > before {
            return None;
        }
        let types = self.source_types.unwrap_or(SourceTypes {
            alert: "stackrox-alert".into(),
            audit: "stackrox-audit-message".into(),
        });
        let inner = Arc::new(Inner {
            client: client?,
            target: redact_url(&events_url),
            events_url,
            health_url,
            ack_url: self
                .indexer_ack
                .then(|| format!("{base}/services/collector/ack")),
            token: token?,
            gzip: self.gzip,
            channel: self.indexer_ack.then(channel_id),
            ack_timeout: self.ack_timeout.0,
        });
        let batcher = (self.batch_max_events > 1).then(|| {
            let limits = BatchLimits {
                items: self.batch_max_events,
                bytes: self.batch_max_bytes,
                linger: self.batch_linger.0,
            };
            let inner = inner.clone();
            let post: PostBatch = Arc::new(move |events: Vec<Vec<u8>>| {
                let inner = inner.clone();
                Box::pin(async move {
                    let n = events.len();
                    let result = inner.post(events.concat()).await;
                    vec![result; n]
                })
            });
            Batcher::new(limits, post)
        });
        Some(Arc::new(Splunk {
            inner,
            batcher,
            alert_type: types.alert,
            audit_type: types.audit,
            truncate: self.truncate,
        }))
    }
}

/// A data channel id for indexer acknowledgement (a random UUID v4 form).
fn channel_id() -> String {
    let b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6] & 0x0f, b[7], 8 | (b[8] & 0x3), b[8] >> 4, b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

#[derive(Deserialize)]
struct HecAnswer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: i64,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
}

impl Inner {
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", self.token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Splunk"));
        auth.set_sensitive(true);
        h.insert(AUTHORIZATION, auth);
        if let Some(ch) = &self.channel {
            h.insert(
                "X-Splunk-Request-Channel",
                HeaderValue::from_str(ch).expect("uuid is ASCII"),
            );
        }
        h
    }

    /// Posts events; with indexer acks, returns once they are indexed.
    async fn post(&self, body: Vec<u8>) -> Result<(), SendError> {
        let mut headers = self.headers();
        let body = if self.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&body).expect("writing to memory");
            enc.finish().expect("writing to memory")
        } else {
            body
        };
        let resp = self
            .client
            .post(&self.events_url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e, &self.target))?;
        let status = resp.status();
        let resp_headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let answer: Option<HecAnswer> = serde_json::from_str(&text).ok();
        if let Err(mut e) = http::status_outcome(status, &resp_headers, &self.target) {
            if let Some(a) = &answer {
                e.message = format!("{}: HEC code {} {:?}", e.message, a.code, a.text);
            }
            return Err(e);
        }
        match (&self.ack_url, answer.and_then(|a| a.ack_id)) {
            (Some(url), Some(id)) => self.await_ack(url, id).await,
            (Some(_), None) => Err(SendError::permanent(
                FailureReason::ClientError,
                format!(
                    "{} returned no ackId: indexer acknowledgement is off for this token",
                    self.target
                ),
            )),
            (None, _) => Ok(()),
        }
    }

    async fn await_ack(&self, url: &str, id: u64) -> Result<(), SendError> {
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let body = format!("{{\"acks\":[{id}]}}");
        loop {
            let resp = self
                .client
                .post(url)
                .headers(self.headers())
                .body(body.clone())
                .send()
                .await
                .map_err(|e| http::transport_error(&e, &self.target))?;
            http::status_outcome(resp.status(), resp.headers(), &self.target)?;
            let v: serde_json::Value =
                serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
            if v["acks"][id.to_string()].as_bool() == Some(true) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SendError::retryable(
                    FailureReason::Timeout,
                    format!(
                        "{}: ack {id} not indexed within {}",
                        self.target,
                        humantime::format_duration(self.ack_timeout)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Splunk {
    /// Central's test: the health endpoint when the URL had no path,
    /// otherwise a test alert.
    pub async fn test(&self) -> Result<String, SendError> {
        let i = &self.inner;
        match &i.health_url {
            Some(url) => {
                let resp = i
                    .client
                    .get(url)
                    .headers(i.headers())
                    .send()
                    .await
                    .map_err(|e| http::transport_error(&e, &i.target))?;
                http::status_outcome(resp.status(), resp.headers(), &i.target)?;
                Ok(format!("{} is healthy", i.target))
            }
            None => {
                let event =
                    crate::model::decode(TEST_ALERT.as_bytes(), &crate::model::Limits::default())
                        .expect("test alert decodes");
                let body = self
                    .body(&event)
                    .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
                i.post(body)
                    .await
                    .map(|_| format!("{} accepted the test alert", i.target))
            }
        }
    }

    fn body(&self, event: &Event) -> Result<Vec<u8>, String> {
        splunk::hec_event(event, self.truncate, &self.alert_type, &self.audit_type)
    }
}

/// Central's Splunk test alert.
pub const TEST_ALERT: &str = r#"{"id":"testalert","policy":{"name":"Test Policy"},"deployment":{"name":"Test Deployment"},"violations":[{"message":"This is a sample Splunk alert message created to test integration with StackRox."}]}"#;

impl Notifier for Splunk {
    fn render(
        &self,
        event: &Event,
        _target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        self.body(event)
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            match &self.batcher {
                None => self.inner.post(payload.to_vec()).await,
                Some(b) => b.submit(payload.to_vec()).await,
            }
        })
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(Splunk::test(self))
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(&self.inner.events_url, "the HEC token")
    }

    /// A delivery waits for its batch's linger and the call (which has the
    /// destination's timeout, and counts once when it fails), and with
    /// indexer acknowledgement for the ack, up to `ack_timeout`.
    fn attempt_timeout(&self, timeout: Duration) -> Duration {
        let call = timeout.saturating_mul(2);
        match self.inner.ack_url {
            Some(_) => call.saturating_add(self.inner.ack_timeout),
            None => call,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rule() {
        assert_eq!(
            endpoints("splunk.example.com:8088/"),
            (
                "https://splunk.example.com:8088/services/collector/event/1.0".into(),
                Some("https://splunk.example.com:8088/services/collector/health/1.0".into()),
                "https://splunk.example.com:8088".into()
            )
        );
        assert_eq!(
            endpoints("https://h:8088/services/collector/event"),
            (
                "https://h:8088/services/collector/event".into(),
                None,
                "https://h:8088".into()
            )
        );
    }

    #[test]
    fn channel_ids_look_like_uuids() {
        let c = channel_id();
        assert_eq!(c.len(), 36);
        assert_eq!(c.matches('-').count(), 4);
        assert_eq!(&c[14..15], "4");
    }
}
