//! The outcome of one failed attempt.

use std::fmt;
use std::time::Duration;

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
    /// Parked behind an earlier delivery of the same key.
    Ordering,
    /// The target's queue was full.
    QueueFull,
    /// `max_targets` lanes were busy: no lane for another target.
    TargetsFull,
    /// The circuit breaker was open.
    BreakerOpen,
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
            FailureReason::Ordering => "ordering",
            FailureReason::QueueFull => "queue_full",
            FailureReason::TargetsFull => "targets_full",
            FailureReason::BreakerOpen => "breaker_open",
        }
    }
}

/// A failed attempt. `message` is safe to log: notifiers redact secrets.
#[derive(Debug, Clone)]
pub struct SendError {
    pub reason: FailureReason,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// The HTTP status, for per-destination overrides.
    pub status: Option<u16>,
    pub message: String,
    /// The call that failed, when several deliveries shared it (a batch):
    /// the circuit breaker counts one failed call once.
    pub call: Option<u64>,
}

impl SendError {
    pub fn retryable(reason: FailureReason, message: impl Into<String>) -> Self {
        SendError {
            reason,
            retryable: true,
            retry_after: None,
            status: None,
            message: message.into(),
            call: None,
        }
    }

    pub fn permanent(reason: FailureReason, message: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            ..SendError::retryable(reason, message)
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}

impl FailureReason {
    /// Whether a failure says the destination itself is unwell (unreachable,
    /// slow, failing), which is what the circuit breaker counts. A refused
    /// message, refused credentials and a throttle (its `Retry-After` is
    /// honoured) do not open it.
    pub fn counts_for_breaker(self) -> bool {
        matches!(
            self,
            FailureReason::Connect | FailureReason::Timeout | FailureReason::ServerError
        )
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason.as_str())
    }
}
