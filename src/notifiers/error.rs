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
    /// Another delivery of the same failed call (a batch) carries this
    /// failure to the circuit breaker, which counts one failed call once.
    pub shared: bool,
}

impl SendError {
    pub fn retryable(reason: FailureReason, message: impl Into<String>) -> Self {
        SendError {
            reason,
            retryable: true,
            retry_after: None,
            status: None,
            message: message.into(),
            shared: false,
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

/// An error and its sources as one line (the top one alone often says
/// little); a source whose text the line already holds is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl FailureReason {
    /// Whether a failure says the destination cannot take anything now
    /// (unreachable, slow, failing, refusing the credentials), which is
    /// what the circuit breaker counts. A refused message does not open
    /// it, nor does a throttle: its `Retry-After` holds the target instead.
    pub fn counts_for_breaker(self) -> bool {
        matches!(
            self,
            FailureReason::Connect
                | FailureReason::Timeout
                | FailureReason::ServerError
                | FailureReason::AuthError
        )
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason.as_str())
    }
}
