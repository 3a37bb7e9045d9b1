//! One log line per interval for a failing destination, not one per alert
//! (Central floods its log this way; stackrox PR #12844).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::SendError;

pub struct FailureLog {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    pub fn new(interval: Duration) -> FailureLog {
        FailureLog {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Logs now if the interval has passed (with the count of failures held
    /// back since), otherwise counts it. Returns whether it logged.
    pub fn record(&self, destination: &str, e: &SendError) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = s.last_logged.is_none_or(|t| t.elapsed() >= self.interval);
        if !due {
            s.suppressed += 1;
            return false;
        }
        let suppressed = std::mem::take(&mut s.suppressed);
        s.last_logged = Some(Instant::now());
        drop(s);
        tracing::warn!(
            destination,
            reason = e.reason.as_str(),
            retryable = e.retryable,
            failures_since_last_report = suppressed,
            error = %e.message,
            "delivery failing"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifiers::FailureReason;

    #[test]
    fn logs_once_per_interval() {
        let log = FailureLog::new(Duration::from_secs(3600));
        let e = SendError::retryable(FailureReason::Connect, "x");
        assert!(log.record("d", &e));
        assert!(!(0..100).any(|_| log.record("d", &e)));
        assert_eq!(log.state.lock().unwrap().suppressed, 100);
    }
}
