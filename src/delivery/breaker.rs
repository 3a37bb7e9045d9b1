//! A circuit breaker per destination target: opens after N consecutive
//! failures, lets one probe through after a cool-down, closes on its success.
//! Monotonic time (tokio's, so tests can move it): a wall-clock jump neither
//! opens nor freezes it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

pub struct Breaker {
    state: Mutex<State>,
    /// The last failed call that was counted (see [`Breaker::failure`]).
    last_call: Mutex<Option<u64>>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            last_call: Mutex::new(None),
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

    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// A failure that does not count (a refusal, a throttle): the
    /// destination answered, so a half-open probe closes the breaker; a
    /// closed breaker's count of consecutive failures stays as it is.
    pub fn answered(&self) {
        let mut s = self.lock();
        if matches!(*s, State::HalfOpen { .. }) {
            *s = State::Closed { failures: 0 };
        }
    }

    /// A failed attempt. `call` names the call when deliveries shared it:
    /// the deliveries of one failed batch count as one failure.
    pub fn failure(&self, call: Option<u64>) {
        if let Some(c) = call {
            let mut last = self.last_call.lock().unwrap_or_else(|p| p.into_inner());
            if *last == Some(c) {
                return;
            }
            *last = Some(c);
        }
        let mut s = self.lock();
        *s = match *s {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: later(self.cooldown),
            },
        };
    }

    /// How long nothing may go out: the cool-down left while open, zero
    /// while the half-open probe is out (its answer decides); `None` when
    /// attempts may go.
    pub fn holds_back(&self) -> Option<Duration> {
        match *self.lock() {
            State::Open { until } => {
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

    /// 0 closed, 1 open, 2 half-open (the metric's encoding).
    pub fn gauge(&self) -> i64 {
        match *self.lock() {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
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
        b.failure(None);
        assert!(b.holds_back().is_some() && !b.allow());
    }

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            assert!(b.allow());
            b.failure(None);
        }
        assert_eq!(b.gauge(), 0);
        b.failure(None);
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
        b.failure(None);
        assert!(!b.allow(), "failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.success();
        assert_eq!(b.gauge(), 0);
        assert!(b.allow() && b.allow());
    }

    #[test]
    fn one_failed_batch_call_counts_once() {
        let b = Breaker::new(2, Duration::from_secs(60));
        for _ in 0..100 {
            b.failure(Some(7));
        }
        assert_eq!(b.gauge(), 0, "a hundred deliveries, one call");
        b.failure(Some(8));
        assert_eq!(b.gauge(), 1, "a second failed call opens it");
    }

    #[test]
    fn an_answer_closes_a_half_open_breaker_and_nothing_else() {
        let b = Breaker::new(2, Duration::from_millis(20));
        b.failure(None);
        b.answered();
        b.failure(None);
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
    fn only_an_unwell_destination_counts() {
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
        assert_eq!(counted, vec![R::ServerError, R::Timeout, R::Connect]);
    }
}
