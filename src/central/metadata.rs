//! Namespace and cluster metadata from Central's API: read at start, again
//! every `metadata_refresh` and, at most every `metadata_refresh_on_miss`,
//! when a lookup finds an unknown namespace or cluster. Each good read is
//! saved in `state_dir`, so a restart while Central is unreachable starts
//! from the last one; a failed read keeps the metadata in use and marks it
//! stale (`herald_central_metadata_stale`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{CallError, Client};
use crate::config::central::CentralConfig;
use crate::routing::clusters::ClusterMetadata;
use crate::routing::metadata::{Metadata, Snapshot};
use crate::routing::namespaces::NamespaceMetadata;
use crate::telemetry::metrics::Metrics;

/// The last good read, in `state_dir`.
pub const SAVED: &str = "central-metadata.json";

/// The most pages of namespaces one read follows.
const MAX_PAGES: usize = 1000;
/// The most bytes one read takes in, over all its pages.
const MAX_READ_BYTES: usize = 256 << 20;

/// What one read of Central gives: both answers as Central wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub namespaces: Value,
    pub clusters: Value,
}

impl Read {
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        snapshot_of(&self.namespaces, &self.clusters)
    }
}

fn snapshot_of(namespaces: &Value, clusters: &Value) -> Result<Snapshot, String> {
    Ok(Snapshot {
        namespaces: NamespaceMetadata::from_central(namespaces)?,
        clusters: ClusterMetadata::from_value(clusters)?,
    })
}

/// Reads every namespace (paged) and every cluster.
pub async fn read(client: &Client, page_size: u32) -> Result<Read, CallError> {
    let mut namespaces = Vec::new();
    let mut total = 0usize;
    for page in 0..MAX_PAGES {
        let body = client
            .get(
                "namespaces",
                "/v1/namespaces",
                &[
                    ("query.pagination.limit", page_size.to_string()),
                    (
                        "query.pagination.offset",
                        (page as u64 * page_size as u64).to_string(),
                    ),
                ],
            )
            .await?;
        total += body.len();
        if total > MAX_READ_BYTES {
            return Err(CallError::Failed(format!(
                "Central's namespaces: more than {} MiB in one read",
                MAX_READ_BYTES >> 20
            )));
        }
        let items = items(&body, "namespaces")?;
        let full = items.len() >= page_size as usize;
        namespaces.extend(items);
        if !full {
            let clusters = client.get("clusters", "/v1/clusters", &[]).await?;
            let clusters: Value = serde_json::from_slice(&clusters).map_err(|e| {
                CallError::Failed(format!("Central's clusters: the answer is not JSON: {e}"))
            })?;
            return Ok(Read {
                namespaces: json!({ "namespaces": namespaces }),
                clusters,
            });
        }
    }
    Err(CallError::Failed(format!(
        "Central's namespaces: more than {MAX_PAGES} pages of {page_size}; raise central.page_size"
    )))
}

/// The array `key` of a JSON answer (absent: empty, as protojson omits it).
pub(super) fn items(body: &[u8], key: &str) -> Result<Vec<Value>, CallError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| CallError::Failed(format!("Central's {key}: the answer is not JSON: {e}")))?;
    match v.get_mut(key).map(Value::take) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(CallError::Failed(format!(
            "Central's {key}: {key:?} is not a list"
        ))),
    }
}

/// The last good read saved in `state_dir`, and when it was made (ms).
pub fn saved(state_dir: &Path) -> Option<(Snapshot, i64)> {
    let path = state_dir.join(SAVED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved Central metadata");
            return None;
        }
    };
    let parsed = serde_json::from_str::<Value>(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            let part = |k: &str| v.get(k).unwrap_or(&Value::Null);
            let at = v.get("read_at_ms").and_then(Value::as_i64).unwrap_or(0);
            snapshot_of(part("namespaces"), part("clusters")).map(|s| (s, at))
        });
    match parsed {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the saved Central metadata does not read; starting without it");
            None
        }
    }
}

/// Saves `read` in `state_dir` (blocking).
fn save(state_dir: &Path, read: &Read, at_ms: i64) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Saved<'a> {
        read_at_ms: i64,
        namespaces: &'a Value,
        clusters: &'a Value,
    }
    let bytes = serde_json::to_vec(&Saved {
        read_at_ms: at_ms,
        namespaces: &read.namespaces,
        clusters: &read.clusters,
    })
    .map_err(std::io::Error::other)?;
    crate::files::replace(&state_dir.join(SAVED), &bytes)
}

/// Keeps `metadata` current until `stop`.
pub struct Refresher {
    pub client: Arc<Client>,
    pub metadata: Arc<Metadata>,
    pub state_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    pub refresh: Duration,
    pub on_miss: Duration,
    pub page_size: u32,
    /// When the metadata in use was read (ms; 0: never).
    pub read_at_ms: i64,
}

impl Refresher {
    pub fn new(
        cfg: &CentralConfig,
        client: Arc<Client>,
        metadata: Arc<Metadata>,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
        read_at_ms: i64,
    ) -> Refresher {
        Refresher {
            client,
            metadata,
            state_dir,
            metrics,
            refresh: cfg.metadata_refresh.0,
            on_miss: cfg.metadata_refresh_on_miss.0,
            page_size: cfg.page_size,
            read_at_ms,
        }
    }

    /// One read; on success the metadata is replaced and saved.
    /// `scheduled`: on the interval (or at start), not for a miss.
    pub async fn refresh_once(&mut self, scheduled: bool) -> Result<(), CallError> {
        let result = read(&self.client, self.page_size).await.and_then(|r| {
            r.snapshot()
                .map(|s| (r, s))
                .map_err(|e| CallError::Failed(format!("Central's metadata does not read: {e}")))
        });
        match result {
            Ok((read, snapshot)) => {
                let (ns, cl) = (snapshot.namespaces.len(), snapshot.clusters.len());
                self.metadata.replace(snapshot, scheduled);
                self.read_at_ms = super::now_ms();
                self.metrics.central_metadata_stale.set(0);
                let m = &self.metrics.central_metadata_entries;
                m.with_label_values(&["namespaces"]).set(ns as i64);
                m.with_label_values(&["clusters"]).set(cl as i64);
                let (dir, at) = (self.state_dir.clone(), self.read_at_ms);
                let saved = tokio::task::spawn_blocking(move || save(&dir, &read, at)).await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(error = %e, "cannot save Central's metadata in state_dir");
                }
                tracing::debug!(namespaces = ns, clusters = cl, "Central's metadata read");
                Ok(())
            }
            Err(e) => {
                self.metrics.central_metadata_stale.set(1);
                Err(e)
            }
        }
    }

    fn set_age(&self) {
        let age = if self.read_at_ms == 0 {
            0.0
        } else {
            (super::now_ms() - self.read_at_ms).max(0) as f64 / 1000.0
        };
        self.metrics.central_metadata_age.set(age);
    }

    /// After a first [`Refresher::refresh_once`] (`ok`: whether it worked):
    /// reads on the interval and on misses until `stop`. A failed read is
    /// tried again after `metadata_refresh_on_miss`, not a whole interval.
    pub async fn run(mut self, stop: CancellationToken, ok: bool) {
        let mut failing = !ok;
        loop {
            let last = tokio::time::Instant::now();
            let next = last
                + if failing {
                    self.on_miss.min(self.refresh)
                } else {
                    self.refresh
                };
            let mut scheduled = true;
            loop {
                self.set_age();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = self.metadata.next_miss() => {
                        // At most one read per on_miss for misses.
                        scheduled = false;
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep_until((last + self.on_miss).min(next)) => break,
                        }
                    }
                }
            }
            match self.refresh_once(scheduled).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(
                            endpoint = self.client.endpoint(),
                            "Central's metadata read again"
                        );
                    }
                    failing = false;
                }
                Err(e) => {
                    // Warned once per failure streak, then at debug level.
                    if failing {
                        tracing::debug!(error = %e, "Central's metadata: read failed again");
                    } else {
                        tracing::warn!(error = %e, "Central's metadata: read failed; the last good metadata stays in use (stale)");
                    }
                    failing = true;
                }
            }
        }
    }
}
