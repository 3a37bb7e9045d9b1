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

    pub fn failure(&self) {
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
}
