//! The delivery layer: everything around a [`Notifier`] that every destination
//! shares — per-key ordered lanes, notify-once against the ledger, the rate
//! limit, per-attempt timeouts, retry passes with backoff that honour
//! `Retry-After`, the circuit breaker, parking, dead letters, metrics and
//! rate-limited failure logs. Notifiers only format and send.

mod breaker;
mod failure_log;
pub mod parking;
mod retry;

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::notifiers::{FailureReason, SendError};

use crate::config::{Common, Destination};
use crate::deadletter::{DeadLetter, DeadLetters, Origin};
use crate::ledger::{self, Entry, Ledger, Parked, Plan};
use crate::model::Event;
use crate::notifiers::{Notifier, RenderContext, SendMeta, Target};
use crate::source::tracker::Ticket;
use crate::telemetry::Metrics;
use breaker::Breaker;
use failure_log::FailureLog;
use retry::PassOutcome;

/// A consumed message: where it came from and what it decoded to.
pub struct Inbound {
    pub origin: Origin,
    pub event: Event,
}

/// One delivery of one message to one destination.
pub struct Job {
    pub message: Arc<Inbound>,
    pub ticket: Ticket,
    pub enqueued: Instant,
}

/// What every destination shares.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub dead_letters: Arc<DeadLetters>,
    /// `None`: ledger off — at-least-once only, no parking.
    pub ledger: Option<Ledger>,
    /// Fired at the end of the shutdown grace period: unfinished deliveries
    /// are abandoned, and their messages stay uncommitted.
    pub abandon: CancellationToken,
    pub failure_log_interval: Duration,
}

/// One lane's delivery machinery.
pub struct Deliverer {
    pub common: Common,
    notifier: Arc<dyn Notifier>,
    target: Target,
    shared: Shared,
    breaker: Breaker,
    limiter: Option<DefaultDirectRateLimiter>,
    failures: FailureLog,
    /// Fired when a reload removes or replaces the destination.
    retired: CancellationToken,
    /// Fired once the sweeper may retry parked deliveries.
    sweep_ready: CancellationToken,
}

/// A destination's delivery lanes: one per target (the default one, plus one
/// per annotation-routed target such as a team's webhook), each with its own
/// bounded queue, workers, rate limit and breaker, so one team's dead target
/// does not park every other team's alerts.
pub struct Pool {
    pub common: Common,
    notifier: Arc<dyn Notifier>,
    shared: Shared,
    lanes: std::sync::Mutex<HashMap<String, Lane>>,
    /// Workers and sweepers, awaited when the pool is retired.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    retired: CancellationToken,
    sweep_ready: CancellationToken,
    /// The config fingerprint the pool was built from (reload compares it).
    pub fingerprint: u64,
}

#[derive(Clone)]
struct Lane {
    deliverer: Arc<Deliverer>,
    tx: mpsc::Sender<Job>,
}

/// Keys being delivered now, each with the jobs waiting behind it: deliveries
/// of one ledger key never run at once and keep their order (a RESOLVED waits
/// behind its trigger), while other keys flow past a slow one.
#[derive(Default)]
struct KeyGate {
    active: std::sync::Mutex<HashMap<String, VecDeque<Job>>>,
}

impl KeyGate {
    /// Takes the key, or queues the job behind the delivery holding it.
    fn enter(&self, key: &str, job: Job) -> Option<Job> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        match active.get_mut(key) {
            Some(waiting) => {
                waiting.push_back(job);
                None
            }
            None => {
                active.insert(key.to_string(), VecDeque::new());
                Some(job)
            }
        }
    }

    /// The next job of the key, or releases it.
    fn next(&self, key: &str) -> Option<Job> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let next = active.get_mut(key).and_then(VecDeque::pop_front);
        if next.is_none() {
            active.remove(key);
        }
        next
    }
}

impl Pool {
    pub fn start(dest: &Destination, shared: Shared) -> Pool {
        let pool = Pool::start_paused(dest, shared);
        pool.allow_sweep();
        pool
    }

    /// A pool whose sweepers wait for `allow_sweep` (a reload's replacement
    /// waits until its predecessor's sweepers have stopped).
    pub fn start_paused(dest: &Destination, shared: Shared) -> Pool {
        shared.metrics.register_destination(&dest.common.name);
        let pool = Pool {
            common: dest.common.clone(),
            notifier: dest.notifier.clone(),
            shared,
            lanes: std::sync::Mutex::new(HashMap::new()),
            tasks: std::sync::Mutex::new(Vec::new()),
            retired: CancellationToken::new(),
            sweep_ready: CancellationToken::new(),
            fingerprint: dest.fingerprint,
        };
        pool.lane(&Target::default());
        // Parked deliveries of annotation targets need their lane back.
        if let Some(l) = &pool.shared.ledger {
            if let Ok(parked) = l.parked() {
                for (_, p) in parked
                    .into_iter()
                    .filter(|(_, p)| p.destination == pool.common.name)
                {
                    pool.lane(&Target {
                        key: p.target.clone(),
                        label: p.target_label.clone(),
                    });
                }
            }
        }
        pool
    }

    pub fn allow_sweep(&self) {
        self.sweep_ready.cancel();
    }

    /// Stops taking deliveries: the workers finish what is queued, the
    /// sweepers stop. Returns the tasks to await.
    pub fn retire(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.retired.cancel();
        // Dropping the senders ends each worker once its queue is empty.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner()).clear();
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn can_resolve(&self) -> bool {
        self.notifier.can_resolve()
    }

    /// Closes the notifier's connections cleanly (at shutdown).
    pub async fn close(&self) {
        self.notifier.close().await;
    }

    /// The lane of `target`, started on first use.
    fn lane(&self, target: &Target) -> Lane {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lanes.get(&target.key) {
            return l.clone();
        }
        let c = &self.common;
        let limiter = c
            .policy
            .rate_limit
            .map(|(rate, burst)| {
                let per_sec = NonZeroU32::new(rate).expect("validated >= 1");
                let burst = NonZeroU32::new(burst).expect("validated >= 1");
                Quota::per_second(per_sec).allow_burst(burst)
            })
            .or_else(|| self.notifier.default_rate_limit())
            .map(RateLimiter::direct);
        let deliverer = Arc::new(Deliverer {
            breaker: Breaker::new(c.policy.breaker_failures, c.policy.breaker_cooldown),
            failures: FailureLog::new(self.shared.failure_log_interval),
            common: c.clone(),
            notifier: self.notifier.clone(),
            target: target.clone(),
            limiter,
            shared: self.shared.clone(),
            retired: self.retired.clone(),
            sweep_ready: self.sweep_ready.clone(),
        });
        deliverer.update_breaker_gauge();
        let (tx, rx) = mpsc::channel::<Job>(c.queue_size);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let gate = Arc::new(KeyGate::default());
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..c.workers {
            let (d, rx, gate) = (deliverer.clone(), rx.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let job = {
                        let mut rx = rx.lock().await;
                        tokio::select! {
                            j = rx.recv() => j,
                            _ = d.shared.abandon.cancelled() => None,
                        }
                    };
                    let Some(job) = job else { break };
                    d.queue_depth().dec();
                    let key = ledger::key_of(&job.message.event);
                    let mut next = gate.enter(&key, job);
                    while let Some(job) = next {
                        d.process(job, &key).await;
                        next = gate.next(&key);
                    }
                }
            }));
        }
        if deliverer.shared.ledger.is_some() {
            tasks.push(tokio::spawn(parking::sweeper(deliverer.clone())));
        }
        drop(tasks);
        if !target.key.is_empty() {
            tracing::debug!(destination = %c.name, target = %target.label, "new target lane");
        }
        let lane = Lane { deliverer, tx };
        lanes.insert(target.key.clone(), lane.clone());
        lane
    }

    /// Queues a delivery on its target's lane, waiting while the queue is
    /// full. Past `park_queue_wait` the delivery is parked instead (with a
    /// ledger). On `stop` the job is dropped: its message stays uncommitted.
    pub async fn enqueue(&self, job: Job, stop: &CancellationToken) {
        let target = self.notifier.target(&job.message.event).unwrap_or_default();
        let Lane { deliverer: d, tx } = self.lane(&target);
        d.queue_depth().inc();
        let job = match tx.try_send(job) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                d.queue_depth().dec();
                return;
            }
            Err(mpsc::error::TrySendError::Full(job)) => job,
        };
        if d.shared.ledger.is_none() {
            // No store to park in: wait for room.
            let sent = tokio::select! {
                r = tx.send(job) => r.is_ok(),
                _ = stop.cancelled() => false,
            };
            if !sent {
                d.queue_depth().dec();
            }
            return;
        }
        let wait = d.common.policy.park_queue_wait;
        let result = tokio::select! {
            r = tx.send_timeout(job, wait) => r,
            _ = stop.cancelled() => {
                d.queue_depth().dec();
                return;
            }
        };
        match result {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(job)) => {
                d.queue_depth().dec();
                let key = ledger::key_of(&job.message.event);
                let err = SendError::retryable(
                    FailureReason::QueueFull,
                    format!("queue full for {}", humantime::format_duration(wait)),
                );
                d.park_job(job, &key, 0, &err, None).await;
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => d.queue_depth().dec(),
        }
    }
}

impl Deliverer {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn queue_depth(&self) -> prometheus::IntGauge {
        self.shared
            .metrics
            .destination_queue_depth
            .with_label_values(&[self.name()])
    }

    fn outcome(&self, outcome: &str, job_enqueued: Instant) {
        let m = &self.shared.metrics;
        m.deliveries
            .with_label_values(&[self.name(), outcome])
            .inc();
        m.delivery_duration
            .with_label_values(&[self.name()])
            .observe(job_enqueued.elapsed().as_secs_f64());
    }

    /// One job from the source: check the ledger, send, then record, park or
    /// dead-letter. The ticket is done only once the outcome is durable.
    async fn process(&self, job: Job, key: &str) {
        let event = &job.message.event;
        let key = key.to_string();
        let now = now_ms();
        let plan = match &self.shared.ledger {
            None => Plan::Deliver(Entry {
                state: crate::model::AlertState::Active,
                delivered_ms: now,
                last_seen_ms: now,
                newest_violation_ms: 0,
            }),
            Some(l) => {
                let entry = match l.get(self.name(), &key) {
                    Ok(e) => e,
                    Err(_) => return, // store failure: abandon, nothing commits
                };
                ledger::plan(
                    event,
                    entry,
                    l.is_parked(self.name(), &key),
                    self.common.policy.renotify_runtime_updates,
                    now,
                )
            }
        };
        let record = match plan {
            Plan::Skip(why, touch) => {
                tracing::debug!(destination = self.name(), key = %key, reason = why, "skipped");
                if let (Some(l), Some(e)) = (&self.shared.ledger, touch) {
                    if l.record(self.name(), &key, e).await.is_err() {
                        return;
                    }
                }
                self.outcome("skipped", job.enqueued);
                job.ticket.done();
                return;
            }
            Plan::ParkBehind => {
                let err = SendError::retryable(
                    FailureReason::Ordering,
                    "an earlier delivery of this alert is parked",
                );
                self.park_job(job, &key, 0, &err, None).await;
                return;
            }
            Plan::Deliver(e) => e,
        };
        let outcome = loop {
            let outcome = self.pass(event, &key).await;
            // Without a ledger nothing can be parked: keep trying (at least once).
            match (&outcome, &self.shared.ledger) {
                (PassOutcome::Exhausted { .. } | PassOutcome::BreakerOpen { .. }, None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.common.policy.park_retry_min) => continue,
                        _ = self.shared.abandon.cancelled() => break PassOutcome::Abandoned,
                    }
                }
                _ => break outcome,
            }
        };
        match outcome {
            PassOutcome::Delivered => {
                self.outcome("delivered", job.enqueued);
                let Some(l) = &self.shared.ledger else {
                    job.ticket.done();
                    return;
                };
                // The worker moves on once the record is queued; the offset
                // waits until it is durable (a store failure leaves it
                // uncommitted).
                let Ok(durable) = l.record_pending(self.name(), &key, record).await else {
                    return;
                };
                tokio::spawn(async move {
                    if durable.await.is_ok() {
                        job.ticket.done();
                    }
                });
            }
            PassOutcome::Permanent {
                attempts,
                first,
                last,
            } => {
                self.dead_letter(&job.message.origin, attempts, &first, &last)
                    .await;
                if !self.shared.abandon.is_cancelled() {
                    self.outcome("dead_lettered", job.enqueued);
                    job.ticket.done();
                }
            }
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
                self.park_job(job, &key, attempts, &first, Some((&last, retry_after)))
                    .await;
            }
            PassOutcome::Abandoned => {}
        }
    }

    /// Parks a job durably, then marks it final.
    async fn park_job(
        &self,
        job: Job,
        key: &str,
        attempts: u32,
        first: &SendError,
        last: Option<(&SendError, Option<Duration>)>,
    ) {
        let Some(l) = &self.shared.ledger else {
            return; // unreachable without a ledger; the job is abandoned
        };
        let now = now_ms();
        let retry_after = last.and_then(|(_, ra)| ra).unwrap_or(Duration::ZERO);
        let wait = retry_after.max(self.common.policy.park_retry_min);
        let o = &job.message.origin;
        let parked = Parked {
            destination: self.name().to_string(),
            target: self.target.key.clone(),
            target_label: self.target.label.clone(),
            key: key.to_string(),
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.offset,
            message_key: o.key.clone(),
            value: o.value.clone(),
            attempts,
            rounds: 0,
            first_error: first.to_string(),
            last_error: last
                .map(|(e, _)| e.to_string())
                .unwrap_or_else(|| first.to_string()),
            parked_at_ms: now,
            next_attempt_ms: now + wait.as_millis() as i64,
        };
        if l.park(&parked).await.is_err() {
            return;
        }
        self.parked_gauge().inc();
        tracing::debug!(destination = self.name(), key = %key, reason = %first, "parked");
        self.outcome("parked", job.enqueued);
        job.ticket.done();
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
        record.destination = Some(self.name().to_string());
        record.attempts = attempts;
        record.first_error = Some(first.to_string());
        record.last_error = Some(last.to_string());
        self.shared
            .dead_letters
            .write(&record, origin.key.as_deref(), &self.shared.abandon)
            .await
    }

    /// Renders once and runs one bounded retry pass.
    async fn pass(&self, event: &Event, key: &str) -> PassOutcome {
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
            now: chrono::Utc::now(),
        };
        let payload = match self.notifier.render(event, &ctx) {
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
        retry::pass(self, event, &payload, &meta).await
    }

    /// Applies the destination's status overrides to a failure.
    fn classify(&self, mut e: SendError) -> SendError {
        if let Some(status) = e.status {
            if self.common.policy.retry_statuses.contains(&status) {
                e.retryable = true;
            }
            if self.common.policy.permanent_statuses.contains(&status) {
                e.retryable = false;
            }
        }
        e
    }

    fn record_failure(&self, e: &SendError) {
        let m = &self.shared.metrics;
        m.delivery_failures
            .with_label_values(&[self.name(), e.reason.as_str()])
            .inc();
        m.last_failure
            .with_label_values(&[self.name()])
            .set(now_secs());
        self.failures.record(self.name(), e);
    }

    fn record_success(&self) {
        self.shared
            .metrics
            .last_success
            .with_label_values(&[self.name()])
            .set(now_secs());
    }

    fn update_breaker_gauge(&self) {
        self.shared
            .metrics
            .breaker_state
            .with_label_values(&[self.name(), &self.target.label])
            .set(self.breaker.gauge());
    }

    fn parked_gauge(&self) -> prometheus::IntGauge {
        self.shared
            .metrics
            .parked
            .with_label_values(&[self.name(), &self.target.label])
    }

    fn parked_age_gauge(&self) -> prometheus::Gauge {
        self.shared
            .metrics
            .parked_oldest_age
            .with_label_values(&[self.name(), &self.target.label])
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now_secs() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}
