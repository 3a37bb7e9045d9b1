//! A circuit breaker per destination target: opens after N consecutive
//! failures, lets one probe through after a cool-down, closes on its success.
//! Monotonic time (tokio's, so tests can move it): a wall-clock jump neither
//! opens nor freezes it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// A throttle's `Retry-After`: nothing goes out until then, then the
    /// breaker is closed again with the failures it had (no probe).
    Held {
        until: Instant,
        failures: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: bool,
    },
}

pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold,
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an attempt may go out now. After the cool-down the first
    /// caller gets the single half-open probe.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => true,
            State::Held { until, failures } if Instant::now() >= until => {
                *s = State::Closed { failures };
                true
            }
            State::Held { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing } => {
                if probing {
                    false
                } else {
                    *s = State::HalfOpen { probing: true };
                    true
                }
            }
        }
    }

    /// A delivered attempt: closed, except that a throttle's hold lasts
    /// (an answer to a request sent before the 429 does not cancel it).
    pub fn success(&self) {
        let mut s = self.lock();
        *s = match *s {
            State::Held { until, .. } if Instant::now() < until => {
                State::Held { until, failures: 0 }
            }
            _ => State::Closed { failures: 0 },
        };
    }

    /// The destination answered with a refusal that does not count (a
    /// refused message): a half-open probe closes the breaker; a closed
    /// breaker's count of consecutive failures stays as it is.
    pub fn answered(&self) {
        let mut s = self.lock();
        if matches!(*s, State::HalfOpen { .. }) {
            *s = State::Closed { failures: 0 };
        }
    }

    /// An attempt that never reached the destination (it could not be
    /// rendered, say): if it was the half-open probe, another may go.
    pub fn unprobed(&self) {
        let mut s = self.lock();
        if matches!(*s, State::HalfOpen { probing: true }) {
            *s = State::HalfOpen { probing: false };
        }
    }

    /// A throttle with `Retry-After`: nothing goes out for `d`. Not a
    /// failure: afterwards the breaker is as it was (an open one stays open
    /// at least as long; a probe that was throttled closes it: the
    /// destination answered).
    pub fn hold(&self, d: Duration) {
        let until = later(d);
        let mut s = self.lock();
        *s = match *s {
            State::Open { until: u } => State::Open {
                until: u.max(until),
            },
            State::Closed { failures } => State::Held { until, failures },
            State::Held { until: u, failures } => State::Held {
                until: u.max(until),
                failures,
            },
            State::HalfOpen { .. } => State::Held { until, failures: 0 },
        };
    }

    pub fn failure(&self) {
        let mut s = self.lock();
        // Never shorter than a hold or cool-down already running.
        let until = match *s {
            State::Open { until } | State::Held { until, .. } => until.max(later(self.cooldown)),
            _ => later(self.cooldown),
        };
        let open = State::Open { until };
        *s = match *s {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            State::Held { until, failures } if failures + 1 < self.threshold => State::Held {
                until,
                failures: failures + 1,
            },
            _ => open,
        };
    }

    /// How long nothing may go out: the cool-down left while open, zero
    /// while the half-open probe is out (its answer decides); `None` when
    /// attempts may go.
    pub fn holds_back(&self) -> Option<Duration> {
        match *self.lock() {
            State::Open { until } | State::Held { until, .. } => {
                let left = until.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(left)
            }
            State::HalfOpen { probing: true } => Some(Duration::ZERO),
            _ => None,
        }
    }

    /// Open with its cool-down over: the next attempt is the probe.
    pub fn probe_next(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() >= until)
    }

    /// 0 closed, 1 open (or held by a throttle), 2 half-open (the metric's
    /// encoding).
    pub fn gauge(&self) -> i64 {
        match *self.lock() {
            State::Closed { .. } => 0,
            State::Held { until, .. } if Instant::now() >= until => 0,
            State::Open { .. } | State::Held { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// Now plus `d`, held at about a year from now when `d` is larger.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_absurd_cooldown_does_not_overflow() {
        let b = Breaker::new(1, Duration::MAX);
        b.failure();
        assert!(b.holds_back().is_some() && !b.allow());
    }

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            assert!(b.allow());
            b.failure();
        }
        assert_eq!(b.gauge(), 0);
        b.failure();
        assert_eq!(b.gauge(), 1);
        assert!(b.holds_back().is_some_and(|d| !d.is_zero()));
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.probe_next());
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.probe_next());
        assert_eq!(
            b.holds_back(),
            Some(Duration::ZERO),
            "while the probe is out"
        );
        assert!(!b.allow(), "only one");
        assert_eq!(b.gauge(), 2);
        b.failure();
        assert!(!b.allow(), "failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.success();
        assert_eq!(b.gauge(), 0);
        assert!(b.allow() && b.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_keeps_everything_back_then_probes_once() {
        let b = Breaker::new(5, Duration::from_secs(30));
        b.failure();
        b.hold(Duration::from_secs(2));
        assert_eq!(b.holds_back(), Some(Duration::from_secs(2)));
        b.hold(Duration::from_secs(1));
        assert_eq!(
            b.holds_back(),
            Some(Duration::from_secs(2)),
            "a shorter hold does not shorten it"
        );
        assert!(!b.allow());
        assert_eq!(b.gauge(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.allow() && b.allow(), "closed again, no probe");
        assert_eq!(b.gauge(), 0);
        // It kept its one failure: four more open it.
        for _ in 0..3 {
            b.failure();
        }
        assert_eq!(b.gauge(), 0);
        b.failure();
        assert_eq!(b.gauge(), 1);
        // A throttled probe: the destination answered.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.allow() && !b.allow(), "one probe");
        b.unprobed();
        assert!(b.allow(), "a probe that never went out lets another go");
        b.hold(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allow() && b.allow());
        assert_eq!(b.gauge(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn late_answers_neither_cancel_nor_shorten_a_hold() {
        let b = Breaker::new(1, Duration::from_secs(30));
        b.hold(Duration::from_secs(120));
        b.success();
        assert_eq!(
            b.holds_back(),
            Some(Duration::from_secs(120)),
            "a 200 sent before the 429"
        );
        b.failure();
        assert_eq!(
            b.holds_back(),
            Some(Duration::from_secs(120)),
            "a 503 sent before it"
        );
        assert_eq!(b.gauge(), 1);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(b.allow(), "then the probe");
        let held = Breaker::new(5, Duration::from_secs(30));
        held.hold(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(held.gauge(), 0, "a lapsed hold reads as closed");
    }

    #[test]
    fn an_answer_closes_a_half_open_breaker_and_nothing_else() {
        let b = Breaker::new(2, Duration::from_millis(20));
        b.failure();
        b.answered();
        b.failure();
        assert_eq!(
            b.gauge(),
            1,
            "an answer between failures does not reset the count"
        );
        b.answered();
        assert_eq!(b.gauge(), 1, "nor close an open breaker");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.answered();
        assert_eq!(b.gauge(), 0, "the probe got an answer (a 429, a 400)");
    }

    #[test]
    fn only_a_destination_that_cannot_take_anything_counts() {
        use crate::notifiers::FailureReason as R;
        let counted: Vec<R> = [
            R::ClientError,
            R::ServerError,
            R::AuthError,
            R::RateLimited,
            R::Timeout,
            R::Connect,
            R::Render,
        ]
        .into_iter()
        .filter(|r| r.counts_for_breaker())
        .collect();
        assert_eq!(
            counted,
            vec![R::ServerError, R::AuthError, R::Timeout, R::Connect]
        );
    }
}
