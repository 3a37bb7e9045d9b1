//! One retry pass: attempts spaced by backon's exponential schedule with full
//! jitter, bounded by attempts and elapsed time, honouring `Retry-After`, and
//! cut short by the circuit breaker.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{Deliverer, FailureReason, SendError};
use crate::model::Event;
use crate::notifiers::SendMeta;

pub enum PassOutcome {
    Delivered,
    Permanent {
        attempts: u32,
        first: SendError,
        last: SendError,
    },
    /// Attempts or time ran out; park and retry later.
    Exhausted {
        attempts: u32,
        first: Option<SendError>,
        last: SendError,
        retry_after: Option<Duration>,
    },
    /// The breaker is open; park without (further) attempts.
    BreakerOpen {
        attempts: u32,
        first: Option<SendError>,
        last: SendError,
        retry_after: Option<Duration>,
    },
    Abandoned,
}

/// Full jitter: a uniformly random wait in [0, d].
fn full_jitter(d: Duration) -> Duration {
    d.mul_f64(fastrand::f64())
}

pub async fn pass(d: &Deliverer, event: &Event, payload: &[u8], meta: &SendMeta) -> PassOutcome {
    let p = &d.common.policy;
    let mut schedule = ExponentialBuilder::default()
        .with_min_delay(p.retry_min_delay)
        .with_max_delay(p.retry_max_delay)
        .with_max_times(p.retry_max_attempts.saturating_sub(1) as usize)
        .build();
    let started = Instant::now();
    let attempt_timeout = d.notifier.attempt_timeout(d.common.timeout);
    let mut attempts = 0u32;
    let mut first: Option<SendError> = None;
    loop {
        if !d.breaker.allow() {
            d.update_breaker_gauge();
            let last = first.clone().unwrap_or_else(|| {
                SendError::retryable(FailureReason::BreakerOpen, "circuit breaker open")
            });
            return PassOutcome::BreakerOpen {
                attempts,
                first,
                last,
                retry_after: None,
            };
        }
        if let Some(limiter) = &d.limiter {
            let waited = Instant::now();
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = d.shared.abandon.cancelled() => return PassOutcome::Abandoned,
            }
            d.shared
                .metrics
                .rate_limit_wait
                .with_label_values(&[d.name()])
                .inc_by(waited.elapsed().as_secs_f64());
        }
        attempts += 1;
        let in_flight = d
            .shared
            .metrics
            .destination_in_flight
            .with_label_values(&[d.name()]);
        in_flight.inc();
        let sent = tokio::select! {
            r = tokio::time::timeout(attempt_timeout, d.notifier.send(event, payload, meta)) => Some(r),
            _ = d.shared.abandon.cancelled() => None,
        };
        in_flight.dec();
        let result = match sent {
            None => return PassOutcome::Abandoned,
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(SendError::retryable(
                FailureReason::Timeout,
                format!(
                    "no answer within {}",
                    humantime::format_duration(attempt_timeout)
                ),
            )),
        };
        let err = match result {
            Ok(()) => {
                d.breaker.success();
                d.update_breaker_gauge();
                d.record_success();
                return PassOutcome::Delivered;
            }
            Err(e) => d.classify(e),
        };
        d.record_failure(&err);
        d.breaker.failure();
        d.update_breaker_gauge();
        let first_err = first.get_or_insert_with(|| err.clone()).clone();
        if !err.retryable {
            return PassOutcome::Permanent {
                attempts,
                first: first_err,
                last: err,
            };
        }
        let retry_after = err.retry_after;
        let Some(planned) = schedule.next() else {
            return PassOutcome::Exhausted {
                attempts,
                first,
                last: err,
                retry_after,
            };
        };
        let wait = retry_after.unwrap_or_else(|| full_jitter(planned));
        if started.elapsed() + wait > p.retry_max_pass {
            return PassOutcome::Exhausted {
                attempts,
                first,
                last: err,
                retry_after,
            };
        }
        d.shared
            .metrics
            .delivery_retries
            .with_label_values(&[d.name()])
            .inc();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = d.shared.abandon.cancelled() => return PassOutcome::Abandoned,
        }
    }
}
