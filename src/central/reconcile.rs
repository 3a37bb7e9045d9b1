//! Reconciliation with Central (`[central.reconcile]`): what Central has and
//! the topic did not carry is produced to the topic, so the normal pipeline
//! (and its ledger: notify-once whatever path an alert took) delivers it.
//! It closes two gaps of Central's generic webhook: a post Central gave up on
//! (herald's ingest down for over an hour, or Central restarted), and
//! resolutions, which Central sends only to its own resolvable notifiers.
//!
//! Every `interval`:
//! 1. the open (ACTIVE, ATTEMPTED) alerts violated since the watermark, less
//!    `lookback` (alerts Central stores late, clocks apart), keyset-paged by
//!    violation time; each one the topic has not carried, or carried with an
//!    older violation, is fetched whole (`GET /v1/alerts/{id}`) and produced,
//!    keyed by alert id, with the header `herald-reconciled`;
//! 2. the state in Central of up to `max_resolution_checks_per_poll` alerts
//!    carried as open, checked longest ago first: a resolution is produced
//!    (its body is what was fetched), an alert Central no longer has is
//!    forgotten.
//!
//! The watermark follows Central's own violation times, advances only past
//! what the broker acknowledged, and is saved in `state_dir` with what the
//! topic carried (alert id → state, violation time, last check; at most
//! `max_tracked`; closed alerts older than `max_alert_age` are forgotten,
//! open ones stay until resolved). A first start looks back `max_alert_age`
//! and no further. Each poll looks at `max_alerts_per_poll` alerts at most,
//! at `max_requests_per_second`. An alert that does not read, or is larger
//! than the producer takes, is passed over and counted
//! (`herald_reconcile_skipped_total`), never retried for ever.

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
/// Central's sort field for alerts.
const SORT: &str = "Violation Time";

/// What the topic carried for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    /// `AlertState` number.
    state: i32,
    /// Violation time (ms).
    time_ms: i64,
    /// When its state in Central was last checked (ms; 0: never).
    #[serde(default)]
    checked_ms: i64,
}

impl Seen {
    fn open(&self) -> bool {
        self.state == AlertState::Active.number() || self.state == AlertState::Attempted.number()
    }
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<String, Seen>,
    dirty: bool,
}

/// What the topic carried, by alert id: the dispatcher reports every alert
/// it reads; the reconciler what it produced. At most `cap` alerts (twice
/// `max_tracked`: the poll prunes it back).
#[derive(Debug, Default)]
pub struct Carried {
    inner: Mutex<Table>,
    cap: usize,
}

impl Carried {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An alert the topic carried. A resolution stays (Central never
    /// re-opens a resolved alert); otherwise the newest violation counts.
    pub fn observe(&self, id: &str, state: AlertState, time_ms: i64) {
        if state == AlertState::Snoozed || !plain_id(id) {
            return;
        }
        let mut g = self.lock();
        let old = g.by_id.get(id).copied();
        let keep = match old {
            Some(old) if old.state == AlertState::Resolved.number() => old,
            Some(old) if state != AlertState::Resolved && old.time_ms >= time_ms => old,
            _ => Seen {
                state: state.number(),
                time_ms,
                checked_ms: old.map_or(0, |o| o.checked_ms),
            },
        };
        if old == Some(keep) || (old.is_none() && self.cap > 0 && g.by_id.len() >= self.cap) {
            return;
        }
        g.by_id.insert(id.to_string(), keep);
        g.dirty = true;
    }

    fn get(&self, id: &str) -> Option<Seen> {
        self.lock().by_id.get(id).copied()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Up to `n` alerts carried as open, those checked longest ago first.
    fn to_check(&self, n: usize) -> Vec<String> {
        let g = self.lock();
        let mut open: Vec<(i64, &String)> = g
            .by_id
            .iter()
            .filter(|(_, s)| s.open())
            .map(|(id, s)| (s.checked_ms, id))
            .collect();
        if open.len() > n && n > 0 {
            open.select_nth_unstable(n - 1);
            open.truncate(n);
        }
        open.sort();
        open.into_iter().take(n).map(|(_, id)| id.clone()).collect()
    }

    fn checked(&self, id: &str, at_ms: i64) {
        let mut g = self.lock();
        if let Some(s) = g.by_id.get_mut(id) {
            s.checked_ms = at_ms;
            g.dirty = true;
        }
    }

    fn forget(&self, id: &str) {
        let mut g = self.lock();
        if g.by_id.remove(id).is_some() {
            g.dirty = true;
        }
    }

    /// Forgets closed alerts older than `floor` (open ones stay: their
    /// resolution is still awaited), then the oldest beyond `max`.
    fn prune(&self, floor: i64, max: usize) {
        let mut g = self.lock();
        let before = g.by_id.len();
        g.by_id.retain(|_, s| s.open() || s.time_ms >= floor);
        if g.by_id.len() > max {
            let mut times: Vec<i64> = g.by_id.values().map(|s| s.time_ms).collect();
            let cut = g.by_id.len() - max;
            times.select_nth_unstable(cut - 1);
            let limit = times[cut - 1];
            let mut over = cut;
            g.by_id.retain(|_, s| {
                if over > 0 && s.time_ms <= limit {
                    over -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if g.by_id.len() != before {
            g.dirty = true;
        }
    }

    /// A copy to save, if anything changed since the last one.
    fn changed(&self) -> Option<HashMap<String, Seen>> {
        let mut g = self.lock();
        std::mem::take(&mut g.dirty).then(|| g.by_id.clone())
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

/// The saved state (blocking).
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

/// One alert of `GET /v1/alerts` (`storage.ListAlert`), read leniently: an
/// item that does not read is passed over, not the whole page.
struct Listed {
    id: String,
    state: AlertState,
    time_ms: i64,
}

impl Listed {
    fn read(v: &Value) -> Option<Listed> {
        let id = v.get("id")?.as_str()?.to_string();
        let state = match v.get("state") {
            None | Some(Value::Null) => AlertState::Active,
            Some(Value::String(s)) => AlertState::from_name(s)?,
            Some(Value::Number(n)) => AlertState::from_number(n.as_i64()?)?,
            Some(_) => return None,
        };
        let time_ms = v
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())?;
        plain_id(&id).then_some(Listed { id, state, time_ms })
    }
}

/// What a poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Polled {
    pub listed: usize,
    pub missing: usize,
    pub updated: usize,
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
    /// The largest record the producer takes.
    max_bytes: usize,
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

/// The second `ms` falls in, in ms (Central compares times to the second).
fn second_of(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
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
    /// The reconciler, with the watermark and what was carried as saved
    /// (blocking: it reads `state_dir`).
    pub fn new(
        cfg: &ReconcileConfig,
        page_size: u32,
        max_bytes: usize,
        client: Arc<Client>,
        producer: FutureProducer,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
    ) -> (Reconciler, Arc<Carried>) {
        let saved = load(&state_dir);
        let carried = Arc::new(Carried {
            inner: Mutex::new(Table {
                by_id: saved.carried,
                dirty: false,
            }),
            cap: (cfg.max_tracked as usize).saturating_mul(2),
        });
        let rate = std::num::NonZeroU32::new(cfg.max_requests_per_second.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        for reason in ["unreadable", "too_large"] {
            metrics.reconcile_skipped.with_label_values(&[reason]);
        }
        let r = Reconciler {
            client,
            producer,
            topic: cfg.topic.clone().unwrap_or_default(),
            cfg: cfg.clone(),
            page_size,
            max_bytes,
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
    ) -> Result<Vec<u8>, CallError> {
        self.pace.until_ready().await;
        self.client.get(call, path, query).await
    }

    /// One page of the open alerts violated in `[from, to)`, sorted by
    /// violation time, oldest first.
    async fn page(&self, from: i64, to: i64, offset: u64) -> Result<Vec<Value>, Stop> {
        let query = format!("Violation State:ACTIVE,ATTEMPTED+Violation Time:tr/{from}-{to}");
        let body = self
            .get(
                "alerts",
                "/v1/alerts",
                &[
                    ("query", query),
                    ("pagination.limit", self.page_size.to_string()),
                    ("pagination.offset", offset.to_string()),
                    ("pagination.sortOption.field", SORT.to_string()),
                    ("pagination.sortOption.reversed", "false".to_string()),
                ],
            )
            .await
            .map_err(Stop::Central)?;
        super::metadata::items(&body, "alerts").map_err(Stop::Central)
    }

    /// Alert `id` whole, with its state and violation time; `None` when
    /// Central no longer has it.
    async fn fetch(&self, id: &str) -> Result<Option<(Value, Listed)>, Stop> {
        let body = match self.get("alert", &format!("/v1/alerts/{id}"), &[]).await {
            Ok(b) => b,
            Err(CallError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(Stop::Central(e)),
        };
        let alert: Value = serde_json::from_slice(&body).map_err(|e| {
            Stop::Central(CallError::Failed(format!(
                "Central's alert {id}: the answer is not JSON: {e}"
            )))
        })?;
        match Listed::read(&alert) {
            Some(l) if l.id == id => Ok(Some((alert, l))),
            _ => {
                self.skipped("unreadable", id);
                Ok(None)
            }
        }
    }

    fn skipped(&self, reason: &str, id: &str) {
        self.metrics
            .reconcile_skipped
            .with_label_values(&[reason])
            .inc();
        tracing::warn!(alert = id, reason, "reconciliation passed over an alert");
    }

    /// Produces `alert` keyed by `id`; returns once the broker acknowledged
    /// it, or `false` if it is too large to produce (passed over).
    async fn send(&self, id: &str, alert: Value) -> Result<bool, Stop> {
        let value = serde_json::json!({ "alert": alert }).to_string();
        if value.len() > self.max_bytes {
            self.skipped("too_large", id);
            return Ok(false);
        }
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
            .map(|_| true)
            .map_err(|(e, _)| Stop::Broker(e.to_string()))
    }

    /// Fetches `id` and produces it as Central has it now.
    async fn reconcile_one(&self, id: &str, polled: &mut Polled) -> Result<(), Stop> {
        match self.fetch(id).await? {
            Some((alert, now)) => self.produce(id, alert, &now, polled).await,
            None => Ok(()),
        }
    }

    /// Produces `alert` (as `now` reads it) unless the topic carried it
    /// already; counts it and records it as carried.
    async fn produce(
        &self,
        id: &str,
        alert: Value,
        now: &Listed,
        polled: &mut Polled,
    ) -> Result<(), Stop> {
        let before = self.carried.get(id);
        if now.state == AlertState::Snoozed
            || before.is_some_and(|b| {
                b.state == AlertState::Resolved.number()
                    || (now.state != AlertState::Resolved && b.time_ms >= now.time_ms)
            })
        {
            return Ok(());
        }
        if self.send(id, alert).await? {
            let kind = match (now.state, before) {
                (AlertState::Resolved, _) => {
                    polled.resolved += 1;
                    "resolved"
                }
                (_, Some(_)) => {
                    polled.updated += 1;
                    "updated"
                }
                (_, None) => {
                    polled.missing += 1;
                    "missing"
                }
            };
            self.metrics
                .reconcile_found
                .with_label_values(&[kind])
                .inc();
        }
        self.carried.observe(id, now.state, now.time_ms);
        Ok(())
    }

    /// Step 1: the open alerts violated in `[from, to)`, keyset-paged by
    /// violation time (a page starts at the second of the last one seen,
    /// passing over ids seen already this poll, so alerts that leave the
    /// list meanwhile shift nothing out of sight). Returns the newest
    /// violation time handled, whether the window ended, and why it stopped.
    async fn changed(
        &self,
        from: i64,
        to: i64,
        budget: &mut usize,
        polled: &mut Polled,
    ) -> (Option<i64>, bool, Option<Stop>) {
        let mut seen = std::collections::HashSet::new();
        let (mut cursor, mut offset) = (from, 0u64);
        let mut newest: Option<i64> = None;
        loop {
            let items = match self.page(cursor, to, offset).await {
                Ok(i) => i,
                Err(e) => return (newest, false, Some(e)),
            };
            let full = items.len() >= self.page_size as usize;
            let mut last: Option<i64> = None;
            for v in &items {
                let Some(a) = Listed::read(v) else {
                    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
                    self.skipped("unreadable", &id.chars().take(64).collect::<String>());
                    continue;
                };
                last = Some(a.time_ms);
                if !seen.insert(a.id.clone()) {
                    continue;
                }
                if *budget == 0 {
                    return (newest, false, None);
                }
                *budget -= 1;
                polled.listed += 1;
                let wanted = match self.carried.get(&a.id) {
                    None => true,
                    Some(s) => s.open() && s.time_ms < a.time_ms,
                };
                if wanted {
                    if let Err(e) = self.reconcile_one(&a.id, polled).await {
                        return (newest, false, Some(e));
                    }
                }
                newest = Some(newest.map_or(a.time_ms, |n| n.max(a.time_ms)));
                self.progress
                    .fetch_max(a.time_ms, std::sync::atomic::Ordering::Relaxed);
            }
            if !full {
                return (newest, true, None);
            }
            match last {
                Some(t) if second_of(t) > second_of(cursor) => {
                    cursor = second_of(t);
                    offset = 0;
                }
                // A whole page within one second: page on by offset.
                _ => offset += u64::from(self.page_size),
            }
        }
    }

    /// Step 2: the state in Central of alerts carried as open, those checked
    /// longest ago first; a resolution is produced.
    async fn resolutions(&self, polled: &mut Polled) -> Option<Stop> {
        let now = super::now_ms();
        for id in self
            .carried
            .to_check(self.cfg.max_resolution_checks_per_poll as usize)
        {
            let result = match self.fetch(&id).await {
                Ok(None) => {
                    self.carried.forget(&id);
                    Ok(())
                }
                Ok(Some((alert, a))) => {
                    self.carried.checked(&id, now);
                    if a.state == AlertState::Resolved {
                        self.produce(&id, alert, &a, polled).await
                    } else {
                        Ok(())
                    }
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                return Some(e);
            }
        }
        None
    }

    /// One poll: the open alerts changed past the watermark, then the state
    /// of alerts carried as open. The watermark and what was carried are
    /// saved.
    pub async fn poll(&mut self) -> Result<Polled, String> {
        let now = super::now_ms();
        let floor = now.saturating_sub(self.cfg.max_alert_age.0.as_millis() as i64);
        let lookback = self.cfg.lookback.0.as_millis() as i64;
        let from = match (self.watermark_ms, self.resume) {
            (0, _) => floor,
            (w, true) => w.max(floor),
            (w, false) => w.saturating_sub(lookback).max(floor),
        };
        self.progress
            .store(from, std::sync::atomic::Ordering::Relaxed);
        let mut budget = self.cfg.max_alerts_per_poll as usize;
        let mut polled = Polled::default();
        // Up to a second past now: Central's clock may be ahead of ours.
        let (newest, ended, mut stop) = self
            .changed(from, now + 1000, &mut budget, &mut polled)
            .await;
        polled.complete = ended && stop.is_none();
        let before = (self.watermark_ms, self.resume);
        if polled.complete {
            // By Central's own times: the next poll lists again a lookback
            // before the newest violation seen.
            if let Some(t) = newest {
                self.watermark_ms = self.watermark_ms.max(t);
            }
            self.resume = false;
        } else if let Some(t) = newest {
            // Cut short: the next poll resumes at the second of the last
            // alert handled (its others are passed over as carried). A
            // budget spent within one second moves on to the next.
            let t = if stop.is_none() && second_of(t) <= second_of(from) {
                tracing::warn!(
                    at_ms = from,
                    "more open alerts of one violation second than max_alerts_per_poll; moving past it"
                );
                second_of(from) + 1000
            } else {
                second_of(t)
            };
            self.watermark_ms = self.watermark_ms.max(t);
            self.resume = true;
        }
        if stop.is_none() {
            stop = self.resolutions(&mut polled).await;
        }
        self.carried.prune(floor, self.cfg.max_tracked as usize);
        self.save((self.watermark_ms, self.resume) != before).await;
        self.metrics
            .reconcile_watermark
            .set(self.watermark_ms as f64 / 1000.0);
        match stop {
            None => Ok(polled),
            Some(e) => Err(e.to_string()),
        }
    }

    /// Saves the watermark and what was carried, if either changed.
    async fn save(&self, moved: bool) {
        let carried = self.carried.changed();
        if carried.is_none() && !moved {
            return;
        }
        let changed = carried.is_some();
        let carried = match carried {
            Some(c) => c,
            None => self.carried.lock().by_id.clone(),
        };
        let saved = Saved {
            watermark_ms: self.watermark_ms,
            resume: self.resume,
            carried,
        };
        let path = self.state_dir.join(SAVED);
        let written = tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
            crate::files::replace(&path, &bytes)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            if changed {
                self.carried.lock().dirty = true;
            }
            tracing::warn!(
                error = %written.map_or_else(|e| e.to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default()),
                "cannot save the reconciliation state in state_dir"
            );
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
                    let moved = done > self.watermark_ms;
                    if moved {
                        self.watermark_ms = second_of(done);
                        self.resume = true;
                    }
                    self.save(moved).await;
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
                    if p.missing + p.updated + p.resolved > 0 {
                        tracing::info!(
                            listed = p.listed,
                            missing = p.missing,
                            updated = p.updated,
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
        let c = Carried {
            cap: 14,
            ..Carried::default()
        };
        c.observe("a", AlertState::Active, 10);
        c.observe("a", AlertState::Active, 5);
        assert_eq!(c.get("a").unwrap().time_ms, 10);
        c.observe("a", AlertState::Resolved, 10);
        c.observe("a", AlertState::Active, 20);
        assert_eq!(c.get("a").unwrap().state, AlertState::Resolved.number());
        c.observe("b", AlertState::Attempted, 3);
        c.observe("s", AlertState::Snoozed, 3);
        c.observe("../x", AlertState::Active, 3);
        assert!(c.get("s").is_none() && c.get("../x").is_none());
        for i in 0..20 {
            c.observe(&format!("x{i:02}"), AlertState::Active, 100 + i);
        }
        // At most `cap`: later ids are not recorded.
        assert_eq!(c.len(), 14);
        // Checked longest ago first; open alerts only.
        c.checked("b", 50);
        let first = c.to_check(3);
        assert_eq!(first.len(), 3);
        assert!(!first.contains(&"b".to_string()) && !first.contains(&"a".to_string()));
        assert_eq!(c.to_check(100).last().unwrap(), "b");
        // Closed alerts older than the floor go, open ones stay; then the
        // oldest beyond the bound.
        c.prune(50, 100);
        assert!(c.get("a").is_none() && c.get("b").is_some());
        c.prune(50, 5);
        assert_eq!(c.len(), 5);
        assert!(c.get("b").is_none() && c.get("x11").is_some() && c.get("x06").is_none());
        assert!(c.changed().is_some() && c.changed().is_none());
    }

    #[test]
    fn listed_alerts_are_read_one_by_one() {
        let ok =
            serde_json::json!({"id": "a-1", "state": "RESOLVED", "time": "2026-12-08T01:00:00.5Z"});
        let l = Listed::read(&ok).unwrap();
        assert_eq!(
            (l.id.as_str(), l.state, l.time_ms),
            ("a-1", AlertState::Resolved, 1_796_691_600_500)
        );
        let absent_state = serde_json::json!({"id": "a-2", "time": "2026-12-08T01:00:00Z"});
        assert_eq!(
            Listed::read(&absent_state).unwrap().state,
            AlertState::Active
        );
        for bad in [
            serde_json::json!({"id": "a", "state": "NEW_STATE", "time": "2026-12-08T01:00:00Z"}),
            serde_json::json!({"id": "a/b", "time": "2026-12-08T01:00:00Z"}),
            serde_json::json!({"id": "a", "time": "yesterday"}),
            serde_json::json!({"id": 7}),
            serde_json::json!([]),
        ] {
            assert!(Listed::read(&bad).is_none(), "{bad}");
        }
        assert_eq!(second_of(1_999), 1_000);
        assert_eq!(second_of(-1), -1_000);
    }

    #[test]
    fn only_plain_ids_become_a_path() {
        assert!(plain_id("6f0b1c2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e"));
        assert!(!plain_id("..") && !plain_id("a/b") && !plain_id("") && !plain_id("a?b"));
    }
}
