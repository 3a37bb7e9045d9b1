//! Reconciliation with Central (`[central.reconcile]`): what Central has and
//! the topic did not carry is produced to the topic, so the normal pipeline
//! (and its ledger: notify-once whatever path an alert took) delivers it.
//! It closes two gaps of Central's generic webhook: a post Central gave up on
//! (herald's ingest down for over an hour, or Central restarted), and
//! resolutions, which Central sends only to its own resolvable notifiers.
//!
//! Every `interval`:
//! 1. the alerts whose violation time is past the watermark (less a minute,
//!    for Central's late writes), paged and sorted by violation time; each
//!    one the topic has not carried — a new ACTIVE or ATTEMPTED alert, a newer
//!    violation, a RESOLVED state — is fetched whole (`GET /v1/alerts/{id}`)
//!    and produced, keyed by alert id, with the header `herald-reconciled`;
//! 2. the resolved alerts among those carried as open whose violation time
//!    is before that window, produced as their RESOLVED state.
//!
//! The watermark advances only past what the broker acknowledged, and is
//! saved in `state_dir` with what the topic carried (alert id → state and
//! violation time, at most `max_tracked`, none older than `max_alert_age`).
//! A first start looks back `max_alert_age` and no further. Each poll looks at
//! `max_alerts_per_poll` alerts at most, at `max_requests_per_second`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{CallError, Client};
use crate::config::central::ReconcileConfig;
use crate::model::AlertState;
use crate::telemetry::metrics::Metrics;

/// The watermark and what the topic carried, in `state_dir`.
pub const SAVED: &str = "central-reconcile.json";
/// The header that marks a reconciled record.
pub const HEADER: &str = "herald-reconciled";
/// Each poll lists again this much before its watermark.
const LOOKBACK_MS: i64 = 60_000;
/// Central's sort field for alerts.
const SORT: &str = "Violation Time";

/// What the topic carried for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    /// `AlertState` number.
    state: i32,
    /// Violation time (ms).
    time_ms: i64,
}

impl Seen {
    fn open(&self) -> bool {
        self.state == AlertState::Active.number() || self.state == AlertState::Attempted.number()
    }
}

/// What the topic carried, by alert id: the dispatcher reports every alert
/// it reads; the reconciler what it produced.
#[derive(Debug, Default)]
pub struct Carried {
    inner: Mutex<(HashMap<String, Seen>, bool)>,
}

impl Carried {
    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<String, Seen>, bool)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An alert the topic carried. A resolution stays (Central never
    /// re-opens a resolved alert); otherwise the newest violation counts.
    pub fn observe(&self, id: &str, state: AlertState, time_ms: i64) {
        if state == AlertState::Snoozed {
            return;
        }
        let mut g = self.lock();
        let new = Seen {
            state: state.number(),
            time_ms,
        };
        let keep = match g.0.get(id) {
            Some(old) if old.state == AlertState::Resolved.number() => *old,
            Some(old) if state != AlertState::Resolved && old.time_ms >= time_ms => *old,
            _ => new,
        };
        if g.0.get(id) != Some(&keep) {
            g.0.insert(id.to_string(), keep);
            g.1 = true;
        }
    }

    fn get(&self, id: &str) -> Option<Seen> {
        self.lock().0.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest violation time of an alert carried as open, if any
    /// before `before`.
    fn oldest_open_before(&self, before: i64) -> Option<i64> {
        self.lock()
            .0
            .values()
            .filter(|s| s.open() && s.time_ms < before)
            .map(|s| s.time_ms)
            .min()
    }

    /// Forgets alerts older than `floor`, then the oldest beyond `max`.
    fn prune(&self, floor: i64, max: usize) {
        let mut g = self.lock();
        let before = g.0.len();
        g.0.retain(|_, s| s.time_ms >= floor);
        if g.0.len() > max {
            let mut times: Vec<i64> = g.0.values().map(|s| s.time_ms).collect();
            let cut = g.0.len() - max;
            times.select_nth_unstable(cut - 1);
            let limit = times[cut - 1];
            let mut over = g.0.len() - max;
            g.0.retain(|_, s| {
                if over > 0 && s.time_ms <= limit {
                    over -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if g.0.len() != before {
            g.1 = true;
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    watermark_ms: i64,
    /// The last poll was cut short: the next one starts at the watermark
    /// itself, not a lookback before it.
    #[serde(default)]
    resume: bool,
    carried: HashMap<String, Seen>,
}

fn load(state_dir: &Path) -> Saved {
    let path = state_dir.join(SAVED);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "the reconciliation state does not read; starting anew (first-start window)");
            Saved::default()
        }),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the reconciliation state; starting anew");
            }
            Saved::default()
        }
    }
}

fn store(state_dir: &Path, saved: &Saved) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = state_dir.join(format!("{SAVED}.tmp"));
    let mut f = crate::files::private_write(&tmp)?;
    f.write_all(&serde_json::to_vec(saved).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, state_dir.join(SAVED))
}

/// One alert of `GET /v1/alerts` (`storage.ListAlert`): what reconciling needs.
#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    id: String,
    #[serde(default)]
    state: Option<AlertState>,
    #[serde(default)]
    time: Option<String>,
}

fn ms_of(time: &Option<String>) -> Option<i64> {
    time.as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
}

/// What a poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Polled {
    pub listed: usize,
    pub missing: usize,
    pub resolved: usize,
    /// Whether the whole window was looked at (not cut by the budget).
    pub complete: bool,
}

pub struct Reconciler {
    client: Arc<Client>,
    producer: FutureProducer,
    topic: String,
    cfg: ReconcileConfig,
    page_size: u32,
    carried: Arc<Carried>,
    watermark_ms: i64,
    resume: bool,
    /// The violation time up to which the running poll handled every alert
    /// of its window (kept if the poll is stopped midway).
    progress: std::sync::atomic::AtomicI64,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    pace: DefaultDirectRateLimiter,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Why a poll stopped early.
enum Stop {
    Central(CallError),
    Broker(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Central(e) => write!(f, "{e}"),
            Stop::Broker(e) => write!(f, "the broker did not take a reconciled alert: {e}"),
        }
    }
}

impl Reconciler {
    /// The reconciler, with the watermark and what was carried as saved.
    pub fn new(
        cfg: &ReconcileConfig,
        page_size: u32,
        client: Arc<Client>,
        producer: FutureProducer,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
    ) -> (Reconciler, Arc<Carried>) {
        let saved = load(&state_dir);
        let carried = Arc::new(Carried {
            inner: Mutex::new((saved.carried, false)),
        });
        let rate = std::num::NonZeroU32::new(cfg.max_requests_per_second.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let r = Reconciler {
            client,
            producer,
            topic: cfg.topic.clone().unwrap_or_default(),
            cfg: cfg.clone(),
            page_size,
            carried: carried.clone(),
            watermark_ms: saved.watermark_ms,
            resume: saved.resume,
            progress: std::sync::atomic::AtomicI64::new(0),
            state_dir,
            metrics,
            // No burst: the rate holds over any second.
            pace: RateLimiter::direct(
                Quota::per_second(rate).allow_burst(std::num::NonZeroU32::MIN),
            ),
        };
        (r, carried)
    }

    async fn get(
        &self,
        call: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, Stop> {
        self.pace.until_ready().await;
        self.client
            .get(call, path, query)
            .await
            .map_err(Stop::Central)
    }

    /// One page of `query`, sorted by violation time, oldest first.
    async fn page(&self, query: &str, page: u32) -> Result<Vec<Listed>, Stop> {
        let body = self
            .get(
                "alerts",
                "/v1/alerts",
                &[
                    ("query", query.to_string()),
                    ("pagination.limit", self.page_size.to_string()),
                    (
                        "pagination.offset",
                        (u64::from(page) * u64::from(self.page_size)).to_string(),
                    ),
                    ("pagination.sortOption.field", SORT.to_string()),
                    ("pagination.sortOption.reversed", "false".to_string()),
                ],
            )
            .await?;
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            alerts: Option<Vec<Listed>>,
        }
        serde_json::from_slice::<List>(&body)
            .map(|l| l.alerts.unwrap_or_default())
            .map_err(|e| {
                Stop::Central(CallError::Failed(format!(
                    "Central's alerts: the answer does not read: {e}"
                )))
            })
    }

    /// Fetches alert `id` whole and produces it; returns once the broker
    /// acknowledged it.
    async fn produce(&self, id: &str) -> Result<(), Stop> {
        let path = format!("/v1/alerts/{id}");
        let body = self.get("alert", &path, &[]).await?;
        let alert: Value = serde_json::from_slice(&body).map_err(|e| {
            Stop::Central(CallError::Failed(format!(
                "Central's alert {id}: the answer is not JSON: {e}"
            )))
        })?;
        if alert.get("id").and_then(Value::as_str) != Some(id) {
            return Err(Stop::Central(CallError::Failed(format!(
                "Central's alert {id}: the answer is another alert"
            ))));
        }
        let value = serde_json::json!({ "alert": alert }).to_string();
        let record = FutureRecord::to(&self.topic)
            .key(id)
            .payload(&value)
            .headers(OwnedHeaders::new().insert(Header {
                key: HEADER,
                value: Some("1"),
            }));
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| Stop::Broker(e.to_string()))
    }

    /// Walks `query`'s pages; `wanted` says whether a listed alert must be
    /// produced. Returns how many were listed and produced, the violation
    /// time up to which every alert was handled, and whether the walk ended
    /// (rather than the budget).
    async fn walk(
        &self,
        query: &str,
        budget: &mut usize,
        polled: &mut Polled,
        resolutions_only: bool,
    ) -> (Option<i64>, bool, Option<Stop>) {
        let mut done_to: Option<i64> = None;
        let mut page = 0u32;
        loop {
            let items = match self.page(query, page).await {
                Ok(i) => i,
                Err(e) => return (done_to, false, Some(e)),
            };
            let last_page = items.len() < self.page_size as usize;
            for a in items {
                if *budget == 0 {
                    return (done_to, false, None);
                }
                *budget -= 1;
                polled.listed += 1;
                let state = a.state.unwrap_or(AlertState::Active);
                let time = ms_of(&a.time).unwrap_or(0);
                let seen = self.carried.get(&a.id);
                let wanted = plain_id(&a.id)
                    && match state {
                        AlertState::Snoozed => false,
                        AlertState::Resolved if resolutions_only => seen.is_some_and(|s| s.open()),
                        AlertState::Resolved => {
                            seen.is_none_or(|s| s.state != AlertState::Resolved.number())
                        }
                        _ if resolutions_only => false,
                        _ => seen.is_none_or(|s| {
                            s.state != AlertState::Resolved.number() && s.time_ms < time
                        }),
                    };
                if wanted {
                    if let Err(e) = self.produce(&a.id).await {
                        return (done_to, false, Some(e));
                    }
                    self.carried.observe(&a.id, state, time);
                    let kind = if state == AlertState::Resolved {
                        polled.resolved += 1;
                        "resolved"
                    } else {
                        polled.missing += 1;
                        "missing"
                    };
                    self.metrics
                        .reconcile_found
                        .with_label_values(&[kind])
                        .inc();
                }
                done_to = Some(done_to.map_or(time, |d| d.max(time)));
                if !resolutions_only {
                    self.progress
                        .fetch_max(time, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if last_page {
                return (done_to, true, None);
            }
            page += 1;
        }
    }

    /// One poll: the changed alerts past the watermark, then older open
    /// alerts' resolutions. The watermark and what was carried are saved.
    pub async fn poll(&mut self) -> Result<Polled, String> {
        let now = now_ms();
        let floor = now - self.cfg.max_alert_age.0.as_millis() as i64;
        let from = match (self.watermark_ms, self.resume) {
            (0, _) => floor,
            (w, true) => w.max(floor),
            (w, false) => (w - LOOKBACK_MS).max(floor),
        };
        self.progress
            .store(from, std::sync::atomic::Ordering::Relaxed);
        let mut budget = self.cfg.max_alerts_per_poll as usize;
        let mut polled = Polled::default();
        let (done_to, ended, mut stop) = self
            .walk(
                &format!("Violation Time:tr/{from}-{now}"),
                &mut budget,
                &mut polled,
                false,
            )
            .await;
        polled.complete = ended && stop.is_none();
        if polled.complete {
            // The whole window: the next poll starts a lookback before now.
            self.watermark_ms = now;
            self.resume = false;
        } else if let Some(to) = done_to {
            // Cut short: the next poll resumes at the last violation time
            // handled (its other alerts are listed again and passed over as
            // carried). A budget spent within one millisecond moves on by one.
            let to = if stop.is_none() && to <= from {
                tracing::warn!(
                    at = from,
                    "more alerts of one violation time than max_alerts_per_poll; moving past it"
                );
                from + 1
            } else {
                to
            };
            self.watermark_ms = self.watermark_ms.max(to);
            self.resume = true;
        }
        if stop.is_none() && budget > 0 {
            if let Some(oldest) = self.carried.oldest_open_before(from) {
                let q = format!(
                    "Violation State:RESOLVED+Violation Time:tr/{}-{from}",
                    oldest.max(floor)
                );
                let (_, ended, s) = self.walk(&q, &mut budget, &mut polled, true).await;
                polled.complete &= ended && s.is_none();
                stop = s;
            }
        }
        self.carried.prune(floor, self.cfg.max_tracked as usize);
        self.save().await;
        self.metrics
            .reconcile_watermark
            .set(self.watermark_ms as f64 / 1000.0);
        match stop {
            None => Ok(polled),
            Some(e) => Err(e.to_string()),
        }
    }

    async fn save(&self) {
        let dirty = std::mem::take(&mut self.carried.lock().1);
        let saved = Saved {
            watermark_ms: self.watermark_ms,
            resume: self.resume,
            carried: self.carried.lock().0.clone(),
        };
        let dir = self.state_dir.clone();
        match tokio::task::spawn_blocking(move || store(&dir, &saved)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.carried.lock().1 |= dirty;
                tracing::warn!(error = %e, "cannot save the reconciliation state in state_dir");
            }
            Err(e) => tracing::warn!(error = %e, "saving the reconciliation state failed"),
        }
    }

    /// Polls every `interval` (at once when a poll was cut by its budget)
    /// until `stop`; a poll stopped midway keeps its progress.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut failing = false;
        // The first poll waits an interval: what the topic holds already is
        // read (and counted as carried) meanwhile.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(self.cfg.interval.0) => {}
        }
        loop {
            let polled = tokio::select! {
                p = self.poll() => p,
                _ = stop.cancelled() => {
                    let done = self.progress.load(std::sync::atomic::Ordering::Relaxed);
                    if done > self.watermark_ms {
                        self.watermark_ms = done;
                        self.resume = true;
                    }
                    self.save().await;
                    return;
                }
            };
            let wait = match polled {
                Ok(p) => {
                    self.metrics
                        .reconcile_polls
                        .with_label_values(&["ok"])
                        .inc();
                    if failing {
                        tracing::info!("reconciliation with Central works again");
                    }
                    failing = false;
                    if p.missing + p.resolved > 0 {
                        tracing::info!(
                            listed = p.listed,
                            missing = p.missing,
                            resolved = p.resolved,
                            "reconciled with Central"
                        );
                    }
                    if p.complete {
                        self.cfg.interval.0
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    self.metrics
                        .reconcile_polls
                        .with_label_values(&["error"])
                        .inc();
                    if failing {
                        tracing::debug!(error = %e, "reconciliation with Central failed again");
                    } else {
                        tracing::warn!(error = %e, "reconciliation with Central failed; the watermark stays where it was, the next poll tries again");
                    }
                    failing = true;
                    self.cfg.interval.0
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Whether `id` is an alert id that can be one path segment as it is
/// (Central's are UUIDs); any other is passed over.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_carried_keeps_resolutions_and_the_newest_violation() {
        let c = Carried::default();
        c.observe("a", AlertState::Active, 10);
        c.observe("a", AlertState::Active, 5);
        assert_eq!(c.get("a").unwrap().time_ms, 10);
        c.observe("a", AlertState::Resolved, 10);
        c.observe("a", AlertState::Active, 20);
        assert_eq!(c.get("a").unwrap().state, AlertState::Resolved.number());
        c.observe("b", AlertState::Attempted, 3);
        c.observe("s", AlertState::Snoozed, 3);
        assert!(c.get("s").is_none());
        assert_eq!(c.oldest_open_before(100), Some(3));
        assert_eq!(c.oldest_open_before(3), None);
        for i in 0..10 {
            c.observe(&format!("x{i}"), AlertState::Active, 100 + i);
        }
        // Older than the floor, then the oldest beyond the bound.
        c.prune(4, 5);
        assert_eq!(c.len(), 5);
        assert!(c.get("b").is_none() && c.get("a").is_none());
        assert!(c.get("x9").is_some() && c.get("x5").is_some() && c.get("x4").is_none());
    }

    #[test]
    fn only_plain_ids_become_a_path() {
        assert!(plain_id("6f0b1c2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e"));
        assert!(!plain_id("..") && !plain_id("a/b") && !plain_id("") && !plain_id("a?b"));
    }
}
