//! One retry pass: attempts spaced by backon's exponential schedule with full
//! jitter, bounded by attempts and elapsed time, honouring `Retry-After`
//! (bounded by the longest park interval), cut short by the circuit breaker.
//! Each attempt has the notifier's timeout; time is monotonic (tokio's).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

use super::machine::Machine;
use crate::model::Event;
use crate::notifiers::{FailureReason, SendError, SendMeta, Target};

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

pub async fn pass(
    m: &Machine,
    event: &Event,
    target: &Target,
    payload: &[u8],
    meta: &SendMeta,
) -> PassOutcome {
    let p = &m.policy;
    let mut schedule = ExponentialBuilder::default()
        .with_min_delay(p.retry_min_delay)
        .with_max_delay(p.retry_max_delay)
        .with_max_times(p.retry_max_attempts.saturating_sub(1) as usize)
        .build();
    let started = Instant::now();
    let attempt_timeout = m.notifier.attempt_timeout(p.timeout);
    let abandon = &m.shared.abandon;
    let mut attempts = 0u32;
    let mut first: Option<SendError> = None;
    loop {
        if !m.breaker.allow() {
            m.update_breaker_gauge();
            let last = first.clone().unwrap_or_else(|| {
                SendError::retryable(FailureReason::BreakerOpen, "circuit breaker open")
            });
            return PassOutcome::BreakerOpen {
                attempts,
                first,
                last,
                // What is left of the hold (the cool-down, or a throttle's
                // Retry-After), not a whole new cool-down.
                retry_after: Some(m.breaker.holds_back().unwrap_or(Duration::ZERO)),
            };
        }
        if let Some(limiter) = &m.limiter {
            let waited = Instant::now();
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = abandon.cancelled() => return PassOutcome::Abandoned,
            }
            m.waited_for_rate(waited.elapsed().as_secs_f64());
        }
        attempts += 1;
        m.in_flight().inc();
        let sent = tokio::select! {
            r = tokio::time::timeout(attempt_timeout, m.notifier.send(event, target, payload, meta)) => Some(r),
            _ = abandon.cancelled() => None,
        };
        m.in_flight().dec();
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
                m.breaker.success();
                m.update_breaker_gauge();
                m.record_success();
                return PassOutcome::Delivered;
            }
            Err(e) => m.classify(e),
        };
        m.record_failure(&err);
        // A receiver's Retry-After is taken, but never beyond the longest
        // park interval: `Retry-After: 18446744073709551615` parks for
        // park_retry_max, it does not overflow or freeze the target.
        let retry_after = err.retry_after.map(|a| p.bounded_retry_after(a));
        match (err.reason, retry_after) {
            (r, _) if r.counts_for_breaker() => {
                if !err.shared {
                    m.breaker.failure();
                }
            }
            // A throttle holds the whole target, not only this delivery,
            // for its Retry-After or, without one, the shortest park.
            (FailureReason::RateLimited, after) => {
                m.breaker.hold(after.unwrap_or(p.park_retry_min))
            }
            _ if err.status.is_some() => m.breaker.answered(),
            _ => m.breaker.unprobed(),
        }
        m.update_breaker_gauge();
        let first_err = first.get_or_insert_with(|| err.clone()).clone();
        if !err.retryable {
            return PassOutcome::Permanent {
                attempts,
                first: first_err,
                last: err,
            };
        }
        let Some(planned) = schedule.next() else {
            return PassOutcome::Exhausted {
                attempts,
                first,
                last: err,
                retry_after,
            };
        };
        let wait = retry_after.unwrap_or_else(|| full_jitter(planned));
        if started.elapsed().saturating_add(wait) > p.retry_max_pass {
            return PassOutcome::Exhausted {
                attempts,
                first,
                last: err,
                retry_after,
            };
        }
        m.retried();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abandon.cancelled() => return PassOutcome::Abandoned,
        }
    }
}
