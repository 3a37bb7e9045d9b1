//! The delivery state machine: one function takes a fresh delivery or a
//! parked one's retry to its [`Outcome`], through the same steps:
//!
//! ```text
//!   ledger plan ── skip ─────────────────────────────────► Skipped
//!        │    └─── an earlier delivery of the key is parked ► Parked(ordering)
//!        ▼
//!   prepare + render ── permanent error ───────────────────► DeadLettered
//!        ▼
//!   retry pass ── delivered ──► record ────────────────────► Delivered
//!        │     └─ permanent ──► dead letter ───────────────► DeadLettered
//!        └─ attempts, time or breaker out ─► parked too long? ► DeadLettered
//!                                          └─ park / repark ─► Parked
//! ```
//!
//! A fresh delivery's ticket is done once its outcome is durable; a store or
//! shutdown failure abandons it (the offset waits, the message comes again).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::breaker::Breaker;
use super::failure_log::FailureLog;
use super::retry::{self, PassOutcome};
use super::{Inbound, Shared};
use crate::deadletter::{DeadLetter, Origin};
use crate::delivery::policy::Policy;
use crate::ledger::{self, Entry, Ledger, Parked, Plan};

use crate::notifiers::{FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::source::tracker::Ticket;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination accepted it; recorded in the ledger.
    Delivered,
    /// Nothing to send (already notified, resolved, …): why.
    Skipped(&'static str),
    /// Kept in the store for a later retry: why.
    Parked(FailureReason),
    /// Given up on, with the dead letter's reason.
    DeadLettered(String),
    /// Not finished (shutting down, or the store failed): its message stays
    /// uncommitted and is consumed again.
    Abandoned,
}

impl Outcome {
    /// The `outcome` label of `herald_deliveries_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Skipped(_) => "skipped",
            Outcome::Parked(_) => "parked",
            Outcome::DeadLettered(_) => "dead_lettered",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// One delivery of one message to one target of one destination.
pub struct Delivery {
    pub message: Arc<Inbound>,
    pub target: Target,
    /// A fresh delivery's share of its message; `None` for a parked retry.
    pub ticket: Option<Ticket>,
    /// A parked retry: its row.
    pub parked: Option<(u64, Box<Parked>)>,
    pub enqueued: tokio::time::Instant,
}

impl Delivery {
    pub fn key(&self) -> &str {
        &self.message.key
    }
}

/// Metric handles of one lane, resolved once.
struct LaneMetrics {
    delivered: prometheus::IntCounter,
    skipped: prometheus::IntCounter,
    parked: prometheus::IntCounter,
    dead_lettered: prometheus::IntCounter,
    duration: prometheus::Histogram,
    retries: prometheus::IntCounter,
    in_flight: prometheus::IntGauge,
    rate_limit_wait: prometheus::Counter,
    last_success: prometheus::Gauge,
    last_failure: prometheus::Gauge,
    breaker: prometheus::IntGauge,
    parked_now: prometheus::IntGauge,
}

/// One target's delivery machinery: the state machine and what it keeps
/// between deliveries (breaker, rate limit, failure log).
pub struct Machine {
    pub destination: String,
    pub notifier: Arc<dyn Notifier>,
    pub policy: Policy,
    pub target: Target,
    pub shared: Shared,
    pub(super) breaker: Breaker,
    pub(super) limiter: Option<DefaultDirectRateLimiter>,
    failures: FailureLog,
    m: LaneMetrics,
    /// Parked rows of this target (the gauge's value).
    parked_here: AtomicI64,
}

impl Machine {
    pub fn new(
        destination: &str,
        notifier: Arc<dyn Notifier>,
        policy: Policy,
        target: Target,
        shared: Shared,
    ) -> Machine {
        let limiter = policy
            .rate_limit
            .and_then(|(rate, burst)| {
                Some(
                    Quota::per_second(std::num::NonZeroU32::new(rate)?)
                        .allow_burst(std::num::NonZeroU32::new(burst)?),
                )
            })
            .or_else(|| notifier.default_rate_limit())
            .map(RateLimiter::direct);
        let mm = &shared.metrics;
        let d = destination;
        let outcome = |o: &str| mm.deliveries.with_label_values(&[d, o]);
        let m = LaneMetrics {
            delivered: outcome("delivered"),
            skipped: outcome("skipped"),
            parked: outcome("parked"),
            dead_lettered: outcome("dead_lettered"),
            duration: mm.delivery_duration.with_label_values(&[d]),
            retries: mm.delivery_retries.with_label_values(&[d]),
            in_flight: mm.destination_in_flight.with_label_values(&[d]),
            rate_limit_wait: mm.rate_limit_wait.with_label_values(&[d]),
            last_success: mm.last_success.with_label_values(&[d]),
            last_failure: mm.last_failure.with_label_values(&[d]),
            breaker: mm.breaker_state.with_label_values(&[d, &target.label]),
            parked_now: mm.parked.with_label_values(&[d, &target.label]),
        };
        let machine = Machine {
            breaker: Breaker::new(policy.breaker_failures, policy.breaker_cooldown),
            failures: FailureLog::new(shared.failure_log_interval),
            destination: destination.to_string(),
            notifier,
            policy,
            target,
            shared,
            limiter,
            m,
            parked_here: AtomicI64::new(0),
        };
        machine.update_breaker_gauge();
        machine
    }

    /// Drops this lane's labelled series (its lane was evicted).
    pub fn forget_series(&self) {
        let mm = &self.shared.metrics;
        let labels = [self.destination.as_str(), self.target.label.as_str()];
        let _ = mm.breaker_state.remove_label_values(&labels);
        let _ = mm.parked.remove_label_values(&labels);
    }

    /// Sets how many rows of this target are parked (counted from the store).
    pub fn set_parked(&self, n: i64) {
        self.parked_here.store(n, Ordering::Relaxed);
        self.m.parked_now.set(n);
    }

    pub(super) fn parked_delta(&self, d: i64) {
        let n = (self.parked_here.fetch_add(d, Ordering::Relaxed) + d).max(0);
        self.m.parked_now.set(n);
    }

    fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Takes one delivery to its outcome. Never panics on input: every
    /// failure is an outcome.
    pub async fn run(&self, d: Delivery) -> Outcome {
        let parked = d.parked.as_ref().map(|(id, _)| *id);
        let outcome = self.step(d).await;
        // A parked row stays claimed (not offered again) until its outcome
        // is durable: a delivered one's task releases it then.
        if let Some(id) = parked {
            if outcome != Outcome::Delivered {
                self.shared.retrying.release(id);
            }
        }
        match &outcome {
            Outcome::Delivered => self.m.delivered.inc(),
            Outcome::Skipped(why) => {
                self.m.skipped.inc();
                tracing::debug!(destination = %self.destination, reason = why, "skipped");
            }
            Outcome::Parked(_) => self.m.parked.inc(),
            Outcome::DeadLettered(_) => self.m.dead_lettered.inc(),
            Outcome::Abandoned => {}
        }
        outcome
    }

    async fn step(&self, d: Delivery) -> Outcome {
        let Some(l) = self.shared.ledger.clone() else {
            return self.without_ledger(d).await;
        };
        if !l.healthy() {
            return Outcome::Abandoned;
        }
        let now = self.now_ms();
        let key = d.key().to_string();
        let Ok(state) = l.key_state(&self.destination, &key) else {
            return Outcome::Abandoned;
        };
        // Deliveries of one key go in order: a fresh one waits behind any
        // parked one, a parked one behind any older parked one.
        let waits_behind = match &d.parked {
            None => state.oldest_parked.is_some(),
            Some((id, _)) => state.oldest_parked.is_some_and(|o| o != *id),
        };
        let record = match ledger::plan(
            &d.message.event,
            state.delivered,
            waits_behind,
            self.policy.renotify_runtime_updates,
            now,
        ) {
            Plan::Skip(why, touch) => {
                return match self.finish_skip(&l, d, &key, touch).await {
                    true => Outcome::Skipped(why),
                    false => Outcome::Abandoned,
                };
            }
            Plan::ParkBehind => {
                let err = SendError::retryable(
                    FailureReason::Ordering,
                    "an earlier delivery of this alert is parked",
                );
                return self.park(&l, d, 0, &err, None, None).await;
            }
            Plan::Deliver(e) => e,
        };
        match self.attempt(&d, &key).await {
            PassOutcome::Delivered => self.finish_delivered(&l, d, &key, record).await,
            PassOutcome::Permanent {
                attempts,
                first,
                last,
            } => self.give_up(&l, d, attempts, &first, &last).await,
            PassOutcome::Exhausted {
                attempts,
                first,
                last,
                retry_after,
            }
            | PassOutcome::BreakerOpen {
                attempts,
                first,
                last,
                retry_after,
            } => {
                let first = first.unwrap_or_else(|| last.clone());
                self.park(&l, d, attempts, &first, Some(&last), retry_after)
                    .await
            }
            PassOutcome::Abandoned => Outcome::Abandoned,
        }
    }

    /// Without a ledger nothing is recorded or parked: at least once, by
    /// retrying until delivered, given up on, or shut down.
    async fn without_ledger(&self, d: Delivery) -> Outcome {
        let key = d.key().to_string();
        loop {
            match self.attempt(&d, &key).await {
                PassOutcome::Delivered => {
                    self.observe(&d);
                    if let Some(t) = d.ticket {
                        t.done();
                    }
                    return Outcome::Delivered;
                }
                PassOutcome::Permanent {
                    attempts,
                    first,
                    last,
                } => {
                    return self.dead_letter_fresh(d, attempts, &first, &last).await;
                }
                PassOutcome::Abandoned => return Outcome::Abandoned,
                PassOutcome::Exhausted { .. } | PassOutcome::BreakerOpen { .. } => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.policy.park_retry_min) => {}
                        _ = self.shared.abandon.cancelled() => return Outcome::Abandoned,
                    }
                }
            }
        }
    }

    /// Prepare, render (once), then one bounded retry pass.
    async fn attempt(&self, d: &Delivery, key: &str) -> PassOutcome {
        let event = &d.message.event;
        if let Err(e) = self.notifier.prepare().await {
            let e = self.classify(e);
            self.record_failure(&e);
            return if e.retryable {
                PassOutcome::Exhausted {
                    attempts: 0,
                    first: Some(e.clone()),
                    retry_after: e.retry_after,
                    last: e,
                }
            } else {
                PassOutcome::Permanent {
                    attempts: 0,
                    first: e.clone(),
                    last: e,
                }
            };
        }
        let ctx = RenderContext {
            now: chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default(),
        };
        let payload = match self.notifier.render(event, &d.target, &ctx) {
            Ok(p) => p,
            Err(e) => {
                let err = SendError::permanent(FailureReason::Render, e);
                self.record_failure(&err);
                return PassOutcome::Permanent {
                    attempts: 0,
                    first: err.clone(),
                    last: err,
                };
            }
        };
        let meta = SendMeta {
            idempotency_key: ledger::idempotency_key(event, key),
        };
        retry::pass(self, event, &d.target, &payload, &meta).await
    }

    fn observe(&self, d: &Delivery) {
        self.m.duration.observe(d.enqueued.elapsed().as_secs_f64());
    }

    async fn finish_skip(&self, l: &Ledger, d: Delivery, key: &str, touch: Option<Entry>) -> bool {
        let written = match (&d.parked, touch) {
            (Some((id, p)), touch) => l.unpark(*id, p, touch).await.is_ok(),
            (None, Some(e)) => l.record(&self.destination, key, e).await.is_ok(),
            (None, None) => true,
        };
        if !written {
            return false;
        }
        if d.parked.is_some() {
            self.parked_delta(-1);
        }
        self.observe(&d);
        if let Some(t) = d.ticket {
            t.done();
        }
        true
    }

    async fn finish_delivered(&self, l: &Ledger, d: Delivery, key: &str, record: Entry) -> Outcome {
        self.observe(&d);
        if let Some((id, p)) = &d.parked {
            // The worker moves on once the removal is queued.
            let Ok(durable) = l.unpark_pending(*id, p, record).await else {
                self.shared.retrying.release(*id);
                return Outcome::Abandoned;
            };
            self.parked_delta(-1);
            tracing::debug!(destination = %self.destination, key = %key, "parked delivery delivered");
            let (retrying, id) = (self.shared.retrying.clone(), *id);
            tokio::spawn(async move {
                let _ = durable.await;
                retrying.release(id);
            });
            return Outcome::Delivered;
        }
        // The worker moves on once the record is queued; the offset waits
        // until it is durable (a store failure leaves it uncommitted).
        let Ok(durable) = l.record_pending(&self.destination, key, record).await else {
            return Outcome::Abandoned;
        };
        if let Some(ticket) = d.ticket {
            tokio::spawn(async move {
                if durable.await.is_ok() {
                    ticket.done();
                }
            });
        }
        Outcome::Delivered
    }

    /// A permanent failure: dead-lettered, and a parked row removed.
    async fn give_up(
        &self,
        l: &Ledger,
        d: Delivery,
        attempts: u32,
        first: &SendError,
        last: &SendError,
    ) -> Outcome {
        match &d.parked {
            None => self.dead_letter_fresh(d, attempts, first, last).await,
            Some((id, p)) => {
                let attempts = p.attempts.saturating_add(attempts);
                if !self
                    .dead_letter(&d.message.origin, attempts, first, last)
                    .await
                {
                    return Outcome::Abandoned;
                }
                if l.unpark(*id, p, None).await.is_err() {
                    return Outcome::Abandoned;
                }
                self.parked_delta(-1);
                self.observe(&d);
                Outcome::DeadLettered(last.reason.as_str().to_string())
            }
        }
    }

    async fn dead_letter_fresh(
        &self,
        d: Delivery,
        attempts: u32,
        first: &SendError,
        last: &SendError,
    ) -> Outcome {
        if !self
            .dead_letter(&d.message.origin, attempts, first, last)
            .await
        {
            return Outcome::Abandoned;
        }
        self.observe(&d);
        if let Some(t) = d.ticket {
            t.done();
        }
        Outcome::DeadLettered(last.reason.as_str().to_string())
    }

    /// Parks a fresh delivery, or reschedules a parked one: the next attempt
    /// after its round's interval (or a `Retry-After`, bounded), unless it
    /// has been parked longer than `park_max_age`, then it is dead-lettered.
    async fn park(
        &self,
        l: &Ledger,
        d: Delivery,
        attempts: u32,
        first: &SendError,
        last: Option<&SendError>,
        retry_after: Option<Duration>,
    ) -> Outcome {
        let now = self.now_ms();
        let last = last.unwrap_or(first);
        let reason = last.reason;
        let wait = |rounds: u32| {
            let asked = retry_after
                .map(|a| self.policy.bounded_retry_after(a))
                .unwrap_or(Duration::ZERO);
            let base = if rounds == 0 {
                self.policy.park_retry_min
            } else {
                self.policy.park_interval(rounds)
            };
            base.max(asked).as_millis().min(i64::MAX as u128) as i64
        };
        match &d.parked {
            None => {
                let parked = parked_row(
                    &self.destination,
                    &d,
                    attempts,
                    (first, last),
                    now,
                    now.saturating_add(wait(0)),
                );
                if l.park(&parked).await.is_err() {
                    return Outcome::Abandoned;
                }
                self.parked_delta(1);
                tracing::debug!(destination = %self.destination, key = %d.key(), reason = %first, "parked");
                self.observe(&d);
                if let Some(t) = d.ticket {
                    t.done();
                }
                Outcome::Parked(reason)
            }
            Some((id, old)) => {
                let mut p = old.clone();
                p.attempts = p.attempts.saturating_add(attempts);
                if attempts > 0 {
                    p.rounds = p.rounds.saturating_add(1);
                }
                p.last_error = last.to_string();
                let age = Duration::from_millis(now.saturating_sub(p.parked_at_ms).max(0) as u64);
                if age >= self.policy.park_max_age && reason != FailureReason::Ordering {
                    return self.expire(l, &d.message.origin, *id, &p, age, last).await;
                }
                p.next_attempt_ms = now.saturating_add(wait(p.rounds));
                if l.repark(*id, old, &p).await.is_err() {
                    return Outcome::Abandoned;
                }
                Outcome::Parked(reason)
            }
        }
    }

    /// Counts a delivery parked outside the machine (its lane was full).
    pub(super) fn parked_elsewhere(&self) {
        self.parked_delta(1);
    }

    /// A parked delivery older than `park_max_age`: dead-lettered.
    async fn expire(
        &self,
        l: &Ledger,
        origin: &Origin,
        id: u64,
        p: &Parked,
        age: Duration,
        last: &SendError,
    ) -> Outcome {
        let first = SendError::retryable(last.reason, p.first_error.clone());
        let mut last = last.clone();
        last.message = format!(
            "parked for {}: {}",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            last.message
        );
        if !self.dead_letter(origin, p.attempts, &first, &last).await {
            return Outcome::Abandoned;
        }
        if l.unpark(id, p, None).await.is_err() {
            return Outcome::Abandoned;
        }
        self.parked_delta(-1);
        Outcome::DeadLettered(last.reason.as_str().to_string())
    }

    async fn dead_letter(
        &self,
        origin: &Origin,
        attempts: u32,
        first: &SendError,
        last: &SendError,
    ) -> bool {
        let mut record =
            DeadLetter::new("delivery_failed", last.reason.as_str().to_string(), origin);
        record.destination = Some(self.destination.clone());
        record.attempts = attempts;
        record.first_error = Some(first.to_string());
        record.last_error = Some(last.to_string());
        self.shared
            .dead_letters
            .write(&record, origin.key.as_deref(), &self.shared.abandon)
            .await
    }

    /// Applies the destination's status overrides to a failure.
    pub(super) fn classify(&self, mut e: SendError) -> SendError {
        if let Some(status) = e.status {
            if self.policy.retry_statuses.contains(&status) {
                e.retryable = true;
            }
            if self.policy.permanent_statuses.contains(&status) {
                e.retryable = false;
            }
        }
        e
    }

    pub(super) fn record_failure(&self, e: &SendError) {
        self.shared
            .metrics
            .delivery_failures
            .with_label_values(&[&self.destination, e.reason.as_str()])
            .inc();
        self.m.last_failure.set(self.now_ms() as f64 / 1000.0);
        self.failures.record(&self.destination, e);
    }

    pub(super) fn record_success(&self) {
        self.m.last_success.set(self.now_ms() as f64 / 1000.0);
    }

    pub(super) fn update_breaker_gauge(&self) {
        self.m.breaker.set(self.breaker.gauge());
    }

    pub(super) fn retried(&self) {
        self.m.retries.inc();
    }

    pub(super) fn in_flight(&self) -> &prometheus::IntGauge {
        &self.m.in_flight
    }

    pub(super) fn waited_for_rate(&self, secs: f64) {
        self.m.rate_limit_wait.inc_by(secs);
    }

    /// Whether the target's next attempt is its breaker's probe.
    pub fn breaker_probe_next(&self) -> bool {
        self.breaker.probe_next()
    }

    /// How long the target's breaker keeps every attempt back, if it does.
    pub fn breaker_holds_back(&self) -> Option<std::time::Duration> {
        self.breaker.holds_back()
    }
}

/// The row a fresh delivery is parked as.
pub(super) fn parked_row(
    destination: &str,
    d: &Delivery,
    attempts: u32,
    (first, last): (&SendError, &SendError),
    now_ms: i64,
    next_attempt_ms: i64,
) -> Parked {
    let o = &d.message.origin;
    Parked {
        destination: destination.to_string(),
        target: d.target.key().to_string(),
        target_shown: d.target.shown.clone(),
        key: d.key().to_string(),
        topic: o.topic.clone(),
        partition: o.partition,
        offset: o.offset,
        message_key: o.key.clone(),
        value: o.value.clone(),
        attempts,
        rounds: 0,
        first_error: first.to_string(),
        last_error: last.to_string(),
        parked_at_ms: now_ms,
        next_attempt_ms,
    }
}
