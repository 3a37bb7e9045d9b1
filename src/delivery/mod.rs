//! The delivery layer: everything around a [`Notifier`] that every destination
//! shares — the bounded queue and workers, the per-attempt timeout, retries
//! with backoff that honour `Retry-After`, dead-lettering of permanent
//! failures, metrics and rate-limited failure logs. Notifiers only format and
//! send.

mod failure_log;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Destination;
use crate::deadletter::{DeadLetter, DeadLetters, Origin};
use crate::http::Metrics;
use crate::model::Event;
use crate::notifiers::{Notifier, RenderContext};
use crate::source::tracker::Ticket;
use failure_log::FailureLog;

/// Why an attempt failed, as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    ClientError,
    ServerError,
    AuthError,
    RateLimited,
    Timeout,
    Connect,
    Render,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::ClientError => "client_error",
            FailureReason::ServerError => "server_error",
            FailureReason::AuthError => "auth_error",
            FailureReason::RateLimited => "rate_limited",
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::Render => "render",
        }
    }
}

/// A failed attempt. `message` is safe to log: notifiers redact secrets.
#[derive(Debug, Clone)]
pub struct DeliveryError {
    pub reason: FailureReason,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl DeliveryError {
    pub fn retryable(reason: FailureReason, message: impl Into<String>) -> Self {
        DeliveryError {
            reason,
            retryable: true,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn permanent(reason: FailureReason, message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: false,
            ..DeliveryError::retryable(reason, message)
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason.as_str())
    }
}

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

/// Backoff between attempts of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What every pool shares.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub dead_letters: Arc<DeadLetters>,
    /// Fired at the end of the shutdown grace period: unfinished deliveries
    /// are abandoned, and their messages stay uncommitted.
    pub abandon: CancellationToken,
    pub failure_log_interval: Duration,
    pub retry: RetryPolicy,
}

/// A destination's bounded queue and its workers.
pub struct Pool {
    pub name: String,
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

struct Worker {
    name: String,
    notifier: Arc<dyn Notifier>,
    timeout: Duration,
    shared: Shared,
    failures: FailureLog,
}

impl Pool {
    pub fn start(dest: &Destination, shared: Shared) -> Pool {
        let name = dest.common.name.clone();
        shared.metrics.register_destination(&name);
        let (tx, rx) = mpsc::channel::<Job>(dest.common.queue_size);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let worker = Arc::new(Worker {
            name: name.clone(),
            notifier: dest.notifier.clone(),
            timeout: dest.common.timeout,
            failures: FailureLog::new(shared.failure_log_interval),
            shared: shared.clone(),
        });
        for _ in 0..dest.common.workers {
            let (rx, worker) = (rx.clone(), worker.clone());
            tokio::spawn(async move {
                loop {
                    let job = {
                        let mut rx = rx.lock().await;
                        tokio::select! {
                            j = rx.recv() => j,
                            _ = worker.shared.abandon.cancelled() => None,
                        }
                    };
                    let Some(job) = job else { break };
                    worker.queue_depth().dec();
                    worker.deliver(job).await;
                }
            });
        }
        Pool {
            name,
            tx,
            metrics: shared.metrics,
        }
    }

    /// Queues a delivery, waiting while the queue is full (backpressure). On
    /// `stop` the job is dropped: its message stays uncommitted.
    pub async fn enqueue(&self, job: Job, stop: &CancellationToken) {
        let depth = self
            .metrics
            .destination_queue_depth
            .with_label_values(&[&self.name]);
        depth.inc();
        let sent = tokio::select! {
            r = self.tx.send(job) => r.is_ok(),
            _ = stop.cancelled() => false,
        };
        if !sent {
            depth.dec();
        }
    }
}

enum Outcome {
    Delivered,
    Failed {
        attempts: u32,
        first: DeliveryError,
        last: DeliveryError,
    },
    Abandoned,
}

impl Worker {
    fn queue_depth(&self) -> prometheus::IntGauge {
        self.shared
            .metrics
            .destination_queue_depth
            .with_label_values(&[&self.name])
    }

    async fn deliver(&self, job: Job) {
        let m = &self.shared.metrics;
        let in_flight = m.destination_in_flight.with_label_values(&[&self.name]);
        in_flight.inc();
        let outcome = self.attempt(&job.message.event).await;
        in_flight.dec();
        match outcome {
            Outcome::Delivered => {
                m.deliveries
                    .with_label_values(&[&self.name, "delivered"])
                    .inc();
                m.delivery_duration
                    .with_label_values(&[&self.name])
                    .observe(job.enqueued.elapsed().as_secs_f64());
                job.ticket.done();
            }
            Outcome::Failed {
                attempts,
                first,
                last,
            } => {
                let mut record = DeadLetter::new(
                    "delivery_failed",
                    last.reason.as_str().to_string(),
                    &job.message.origin,
                );
                record.destination = Some(self.name.clone());
                record.attempts = attempts;
                record.first_error = Some(first.to_string());
                record.last_error = Some(last.to_string());
                let key = job.message.origin.key.as_deref();
                if self
                    .shared
                    .dead_letters
                    .write(&record, key, &self.shared.abandon)
                    .await
                {
                    m.deliveries
                        .with_label_values(&[&self.name, "dead_lettered"])
                        .inc();
                    m.delivery_duration
                        .with_label_values(&[&self.name])
                        .observe(job.enqueued.elapsed().as_secs_f64());
                    job.ticket.done();
                }
            }
            Outcome::Abandoned => {}
        }
    }

    /// Renders once, then sends until delivered, a permanent failure, or shutdown.
    async fn attempt(&self, event: &Event) -> Outcome {
        let ctx = RenderContext {
            now: chrono::Utc::now(),
        };
        let payload = match self.notifier.render(event, &ctx) {
            Ok(p) => p,
            Err(e) => {
                let err = DeliveryError::permanent(FailureReason::Render, e);
                self.record_failure(&err);
                return Outcome::Failed {
                    attempts: 0,
                    first: err.clone(),
                    last: err,
                };
            }
        };
        let attempts = AtomicU32::new(0);
        let first: Mutex<Option<DeliveryError>> = Mutex::new(None);
        let send_once = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let result =
                match tokio::time::timeout(self.timeout, self.notifier.send(event, &payload)).await
                {
                    Ok(r) => r,
                    Err(_) => Err(DeliveryError::retryable(
                        FailureReason::Timeout,
                        format!(
                            "no answer within {}",
                            humantime::format_duration(self.timeout)
                        ),
                    )),
                };
            if let Err(e) = &result {
                self.record_failure(e);
                first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| e.clone());
            }
            result
        };
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.shared.retry.min_delay)
            .with_max_delay(self.shared.retry.max_delay)
            .without_max_times();
        let retried = send_once
            .retry(backoff)
            .when(|e: &DeliveryError| e.retryable)
            .adjust(|e: &DeliveryError, planned| e.retry_after.or(planned))
            .notify(|_, _| {
                self.shared
                    .metrics
                    .delivery_retries
                    .with_label_values(&[&self.name])
                    .inc()
            });
        let result = tokio::select! {
            r = retried => r,
            _ = self.shared.abandon.cancelled() => return Outcome::Abandoned,
        };
        match result {
            Ok(()) => Outcome::Delivered,
            Err(last) => Outcome::Failed {
                attempts: attempts.load(Ordering::Relaxed),
                first: first
                    .into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_else(|| last.clone()),
                last,
            },
        }
    }

    fn record_failure(&self, e: &DeliveryError) {
        self.shared
            .metrics
            .delivery_failures
            .with_label_values(&[&self.name, e.reason.as_str()])
            .inc();
        self.failures.record(&self.name, e);
    }
}
