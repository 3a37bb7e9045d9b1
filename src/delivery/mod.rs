//! The delivery layer: everything around a [`Notifier`] that every destination
//! shares, in one place — per-target lanes, notify-once against the ledger,
//! the rate limit, per-attempt timeouts, retry passes with backoff that
//! honour `Retry-After`, the circuit breaker, parking, dead letters, metrics
//! and rate-limited failure logs. Notifiers only format and send.
//!
//! A destination's [`Pool`] takes each delivery without waiting: it resolves
//! the target once, checks it, and offers the delivery to that target's lane;
//! a full lane, or no room for another target's lane, parks the delivery
//! durably instead. The consume loop never waits on a destination.

mod breaker;
mod clock;
mod failure_log;
mod lane;
pub mod machine;
pub mod policy;
mod retry;
pub mod sweeper;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, SystemClock};
pub use machine::{Delivery, Outcome};
pub use policy::Policy;

use crate::deadletter::{DeadLetter, DeadLetters, Origin};
use crate::ledger::Ledger;
use crate::model::{Event, Limits};
use crate::notifiers::{FailureReason, Notifier, SendError, Target};
use crate::source::tracker::Ticket;
use crate::telemetry::Metrics;
use lane::Lane;
use machine::Machine;

/// A consumed message: where it came from, what it decoded to, and its
/// ledger key (computed once).
pub struct Inbound {
    pub origin: Origin,
    pub event: Event,
    pub key: String,
}

/// Where dead letters go (the topic, in production).
pub trait DeadLetterSink: Send + Sync {
    /// `true` once written; `false` if `cancel` fired first.
    fn write<'a>(
        &'a self,
        record: &'a DeadLetter,
        key: Option<&'a [u8]>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, bool>;
}

impl DeadLetterSink for DeadLetters {
    fn write<'a>(
        &'a self,
        record: &'a DeadLetter,
        key: Option<&'a [u8]>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, bool> {
        Box::pin(DeadLetters::write(self, record, key, cancel))
    }
}

/// Something that must stop herald (a panicked worker): the first reason,
/// and a token that fires with it.
#[derive(Clone, Default)]
pub struct Fatal {
    token: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl Fatal {
    pub fn trigger(&self, why: String) {
        tracing::error!("fatal: {why}; stopping so that herald is restarted");
        self.why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.token.cancel();
    }

    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    pub fn reason(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Parked rows being retried now (so the sweeper offers each once).
#[derive(Clone, Default)]
pub struct Retrying(Arc<Mutex<HashSet<u64>>>);

impl Retrying {
    pub(crate) fn claim(&self, id: u64) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id)
    }

    pub(crate) fn release(&self, id: u64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// What every destination shares.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// `None`: ledger off — at-least-once only, no parking.
    pub ledger: Option<Ledger>,
    /// Fired at the end of the shutdown grace period: unfinished deliveries
    /// are abandoned, and their messages stay uncommitted.
    pub abandon: CancellationToken,
    pub clock: Arc<dyn Clock>,
    pub failure_log_interval: Duration,
    /// What a parked value may be when decoded again.
    pub limits: Limits,
    pub fatal: Fatal,
    pub retrying: Retrying,
}

/// How long a lane must stay idle before it may be evicted to make room for
/// another target.
const LANE_IDLE: Duration = Duration::from_secs(2);

/// One destination: its lanes (the default target's and one per
/// annotation-chosen target, at most `max_targets`), each with its own queue,
/// workers, rate limit and breaker, so one team's dead webhook does not park
/// every other team's alerts; and its sweeper, which retries what is parked.
pub struct Pool {
    pub name: String,
    notifier: Arc<dyn Notifier>,
    policy: Policy,
    shared: Shared,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    retired: CancellationToken,
    sweep_ready: CancellationToken,
    /// The config fingerprint the pool was built from (reload compares it).
    pub fingerprint: u64,
}

impl Pool {
    pub fn start(
        name: &str,
        notifier: Arc<dyn Notifier>,
        policy: Policy,
        fingerprint: u64,
        shared: Shared,
    ) -> Arc<Pool> {
        let pool = Pool::start_paused(name, notifier, policy, fingerprint, shared);
        pool.allow_sweep();
        pool
    }

    /// A pool whose sweeper waits for `allow_sweep` (a reload's replacement
    /// waits until its predecessor has stopped, so no parked delivery is
    /// tried twice at once).
    pub fn start_paused(
        name: &str,
        notifier: Arc<dyn Notifier>,
        policy: Policy,
        fingerprint: u64,
        shared: Shared,
    ) -> Arc<Pool> {
        shared.metrics.register_destination(name);
        let pool = Arc::new(Pool {
            name: name.to_string(),
            notifier,
            policy,
            shared,
            lanes: Mutex::new(HashMap::new()),
            sweeper: Mutex::new(None),
            retired: CancellationToken::new(),
            sweep_ready: CancellationToken::new(),
            fingerprint,
        });
        pool.lane(&Target::default());
        if pool.shared.ledger.is_some() {
            let task = tokio::spawn(sweeper::run(pool.clone()));
            *pool.sweeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        pool
    }

    pub fn allow_sweep(&self) {
        self.sweep_ready.cancel();
    }

    pub fn can_resolve(&self) -> bool {
        self.notifier.can_resolve()
    }

    /// Stops retrying parked deliveries and waits until every lane has
    /// finished what it holds (or shutdown abandons it).
    pub async fn retire(&self) {
        self.retired.cancel();
        let task = self
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
        loop {
            let lanes: Vec<Arc<Lane>> = self.lanes().values().cloned().collect();
            if lanes.iter().all(|l| l.idle(Duration::ZERO)) || self.shared.abandon.is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the notifier's connections cleanly (at shutdown).
    pub async fn close(&self) {
        self.notifier.close().await;
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Lane>>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lane of `target`, started on first use; `None` when `max_targets`
    /// lanes are busy (an idle one gives way).
    fn lane(&self, target: &Target) -> Option<Arc<Lane>> {
        let mut lanes = self.lanes();
        if let Some(l) = lanes.get(target.key()) {
            return Some(l.clone());
        }
        if lanes.len() >= self.policy.max_targets {
            let idle = lanes
                .iter()
                .find(|(k, l)| !k.is_empty() && l.idle(LANE_IDLE))
                .map(|(k, _)| k.clone())?;
            if let Some(gone) = lanes.remove(&idle) {
                gone.machine.forget_series();
                tracing::debug!(destination = %self.name, target = %gone.machine.target.label, "idle target lane evicted");
            }
        }
        let machine = Machine::new(
            &self.name,
            self.notifier.clone(),
            self.policy.clone(),
            target.clone(),
            self.shared.clone(),
        );
        let lane = Arc::new(Lane::new(machine));
        if let Some(l) = &self.shared.ledger {
            // The parked count of a returning target, read off the async workers.
            let (l, lane, name, key) = (
                l.clone(),
                lane.clone(),
                self.name.clone(),
                target.key().to_string(),
            );
            tokio::spawn(async move {
                if let Ok(Ok(n)) =
                    tokio::task::spawn_blocking(move || l.count_target(&name, &key)).await
                {
                    lane.machine.set_parked(n as i64);
                }
            });
        }
        if !target.key().is_empty() {
            // The value only at debug level: metrics and info logs carry the label.
            tracing::debug!(destination = %self.name, target = %target.label, value = %target.shown, "new target lane");
        }
        lanes.insert(target.key().to_string(), lane.clone());
        Some(lane)
    }

    /// Takes one fresh delivery without waiting: to its target's lane, or,
    /// when the lane is full or no lane can be had, into the store. The
    /// ticket is done once the outcome is durable.
    pub fn dispatch(self: &Arc<Self>, message: Arc<Inbound>, ticket: Ticket) {
        let target = match self.notifier.annotation() {
            None => Target::default(),
            Some(a) => match a.resolve(&message.event).target {
                Ok(t) => t,
                Err(why) => return self.refuse(message, ticket, why),
            },
        };
        let d = Delivery {
            message,
            target,
            ticket: Some(ticket),
            parked: None,
            enqueued: tokio::time::Instant::now(),
        };
        let (lane, d) = match self.lane(&d.target) {
            None => (None, d),
            Some(lane) => match lane.offer(d) {
                Ok(()) => return,
                Err(d) => (Some(lane), d),
            },
        };
        let reason = if lane.is_some() {
            FailureReason::QueueFull
        } else {
            FailureReason::TargetsFull
        };
        self.park_later(lane, d, reason);
    }

    /// Parks a delivery that found no room, in a task of its own; its place
    /// among the key's parked deliveries is taken now, in dispatch order.
    fn park_later(self: &Arc<Self>, lane: Option<Arc<Lane>>, d: Delivery, reason: FailureReason) {
        let Some(l) = self.shared.ledger.clone() else {
            // Nowhere to park: wait for room (the in-flight bound holds the
            // source back meanwhile).
            let pool = self.clone();
            tokio::spawn(async move {
                let mut d = d;
                loop {
                    if let Some(lane) = pool.lane(&d.target) {
                        match lane.offer(d) {
                            Ok(()) => return,
                            Err(back) => d = back,
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        _ = pool.shared.abandon.cancelled() => return,
                    }
                }
            });
            return;
        };
        let id = l.reserve(&self.name, d.key());
        let (pool, now) = (self.clone(), self.shared.clock.now_ms());
        tokio::spawn(async move {
            let err = SendError::retryable(
                reason,
                match reason {
                    FailureReason::QueueFull => "the target's queue is full",
                    _ => "max_targets lanes are busy",
                },
            );
            let next = now.saturating_add(pool.policy.park_retry_min.as_millis() as i64);
            let row = machine::parked_row(&pool.name, &d, 0, (&err, &err), now, next);
            if l.park_reserved(id, &row).await.is_err() {
                return; // the store failed: the message stays uncommitted
            }
            pool.shared
                .metrics
                .deliveries
                .with_label_values(&[&pool.name, "parked"])
                .inc();
            if let Some(lane) = lane {
                lane.machine.parked_elsewhere();
            }
            if let Some(t) = d.ticket {
                t.done();
            }
        });
    }

    /// A target an annotation asks for that this destination may not send
    /// to: dead-lettered (`target_not_allowed`), nothing sent.
    fn refuse(self: &Arc<Self>, message: Arc<Inbound>, ticket: Ticket, why: String) {
        tracing::warn!(destination = %self.name, reason = %why, "annotation target refused; dead-lettering");
        let pool = self.clone();
        tokio::spawn(async move {
            let mut record = DeadLetter::new(
                "delivery_failed",
                "target_not_allowed".into(),
                &message.origin,
            );
            record.destination = Some(pool.name.clone());
            record.last_error = Some(why);
            let sh = &pool.shared;
            if sh
                .dead_letters
                .write(&record, message.origin.key.as_deref(), &sh.abandon)
                .await
            {
                sh.metrics
                    .deliveries
                    .with_label_values(&[&pool.name, "dead_lettered"])
                    .inc();
                ticket.done();
            }
        });
    }

    /// Deliveries queued in this destination's lanes now.
    pub fn depth(&self) -> usize {
        self.lanes().values().map(|l| l.depth()).sum()
    }
}
