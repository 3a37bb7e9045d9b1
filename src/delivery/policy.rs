//! How the delivery layer treats one destination: every setting, its default
//! and what it does, in one place. A destination's table carries them next
//! to its type's own settings.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{join, Dur, Errors};

/// A destination's delivery settings, as written (defaults applied).
#[derive(Debug, Clone, Deserialize)]
pub struct RawPolicy {
    /// How long one attempt may take.
    #[serde(default = "default_timeout")]
    timeout: Dur,
    /// Deliveries in progress at once, per target.
    #[serde(default = "default_workers")]
    workers: usize,
    /// Deliveries waiting per target; a full queue parks the next ones.
    #[serde(default = "default_queue_size")]
    queue_size: usize,
    /// Targets (annotation values) with a lane of their own at once; idle
    /// lanes make room, otherwise deliveries to a new target park.
    #[serde(default = "default_max_targets")]
    max_targets: usize,
    /// Re-notify RUNTIME alerts carrying newer violations (Central's
    /// NOTIFY_EVERY_RUNTIME_EVENT).
    #[serde(default)]
    renotify_runtime_updates: bool,
    /// Deliveries per second, and burst (default: the rate).
    #[serde(default)]
    rate_limit: Option<u32>,
    #[serde(default)]
    rate_burst: Option<u32>,
    /// One retry pass: at most this many attempts within this long.
    #[serde(default = "default_retry_attempts")]
    retry_max_attempts: u32,
    #[serde(default = "default_retry_pass")]
    retry_max_pass: Dur,
    /// Exponential backoff between attempts, with full jitter.
    #[serde(default = "default_retry_min")]
    retry_min_delay: Dur,
    #[serde(default = "default_retry_max")]
    retry_max_delay: Dur,
    /// HTTP statuses to retry, or to give up on, whatever their class.
    #[serde(default)]
    retry_statuses: Vec<u16>,
    #[serde(default)]
    permanent_statuses: Vec<u16>,
    /// Consecutive failures that open the circuit breaker, and how long it
    /// stays open before one probe.
    #[serde(default = "default_breaker_failures")]
    breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    breaker_cooldown: Dur,
    /// Parked deliveries are tried again at growing intervals between these
    /// two, and dead-lettered once parked this long.
    #[serde(default = "default_park_retry_min")]
    park_retry_min: Dur,
    #[serde(default = "default_park_retry_max")]
    park_retry_max: Dur,
    #[serde(default = "default_park_max_age")]
    park_max_age: Dur,
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_workers() -> usize {
    4
}
fn default_queue_size() -> usize {
    1000
}
fn default_max_targets() -> usize {
    256
}
fn default_retry_attempts() -> u32 {
    5
}
fn default_retry_pass() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_retry_min() -> Dur {
    Dur(Duration::from_millis(250))
}
fn default_retry_max() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_park_retry_min() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_park_retry_max() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_park_max_age() -> Dur {
    Dur(Duration::from_secs(86_400))
}

/// The validated delivery settings of one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub timeout: Duration,
    pub workers: usize,
    pub queue_size: usize,
    pub max_targets: usize,
    pub renotify_runtime_updates: bool,
    /// Deliveries per second and burst.
    pub rate_limit: Option<(u32, u32)>,
    pub retry_max_attempts: u32,
    pub retry_max_pass: Duration,
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    pub retry_statuses: Vec<u16>,
    pub permanent_statuses: Vec<u16>,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub park_retry_min: Duration,
    pub park_retry_max: Duration,
    pub park_max_age: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let raw: RawPolicy =
            serde_json::from_str("{}").expect("every delivery setting has a default");
        let mut errs = Errors::default();
        Policy::build(raw, "", &mut errs).expect("the defaults are valid")
    }
}

/// Settings that existed once, with what to do instead.
pub const RETIRED: &[(&str, &str)] = &[(
    "park_queue_wait",
    "no longer used: a full queue parks deliveries at once, so no destination holds up another",
)];

impl Policy {
    pub fn build(raw: RawPolicy, path: &str, errs: &mut Errors) -> Option<Policy> {
        let before = errs.list.len();
        let mut check = |ok: bool, key: &str, msg: &str| {
            if !ok {
                errs.push(&join(path, key), msg);
            }
        };
        check(
            !raw.timeout.0.is_zero(),
            "timeout",
            "must be greater than 0",
        );
        check(
            (1..=256).contains(&raw.workers),
            "workers",
            "must be 1..256",
        );
        check(raw.queue_size >= 1, "queue_size", "must be at least 1");
        check(
            (1..=65_536).contains(&raw.max_targets),
            "max_targets",
            "must be 1..65536",
        );
        check(
            raw.rate_limit != Some(0),
            "rate_limit",
            "must be at least 1 (per second), or absent for no limit",
        );
        check(
            raw.rate_burst != Some(0),
            "rate_burst",
            "must be at least 1",
        );
        check(
            raw.retry_max_attempts >= 1,
            "retry_max_attempts",
            "must be at least 1",
        );
        check(
            raw.retry_min_delay.0 <= raw.retry_max_delay.0,
            "retry_min_delay",
            "must not exceed retry_max_delay",
        );
        check(
            raw.breaker_failures >= 1,
            "breaker_failures",
            "must be at least 1",
        );
        check(
            !raw.park_retry_min.0.is_zero() && raw.park_retry_min.0 <= raw.park_retry_max.0,
            "park_retry_min",
            "must be greater than 0 and not exceed park_retry_max",
        );
        for (name, list) in [
            ("retry_statuses", &raw.retry_statuses),
            ("permanent_statuses", &raw.permanent_statuses),
        ] {
            if let Some(bad) = list.iter().find(|s| !(100..=599).contains(*s)) {
                errs.push(
                    &join(path, name),
                    format!("{bad} is not an HTTP status (100..599)"),
                );
            }
        }
        if errs.list.len() > before {
            return None;
        }
        Some(Policy {
            timeout: raw.timeout.0,
            workers: raw.workers,
            queue_size: raw.queue_size,
            max_targets: raw.max_targets,
            renotify_runtime_updates: raw.renotify_runtime_updates,
            rate_limit: raw.rate_limit.map(|r| (r, raw.rate_burst.unwrap_or(r))),
            retry_max_attempts: raw.retry_max_attempts,
            retry_max_pass: raw.retry_max_pass.0,
            retry_min_delay: raw.retry_min_delay.0,
            retry_max_delay: raw.retry_max_delay.0,
            retry_statuses: raw.retry_statuses,
            permanent_statuses: raw.permanent_statuses,
            breaker_failures: raw.breaker_failures,
            breaker_cooldown: raw.breaker_cooldown.0,
            park_retry_min: raw.park_retry_min.0,
            park_retry_max: raw.park_retry_max.0,
            park_max_age: raw.park_max_age.0,
        })
    }

    /// The wait before parked round `rounds` (1, 2, …): doubling from
    /// `park_retry_min`, at most `park_retry_max`.
    pub fn park_interval(&self, rounds: u32) -> Duration {
        self.park_retry_min
            .saturating_mul(1u32 << rounds.min(20))
            .min(self.park_retry_max)
    }

    /// A receiver's `Retry-After`, bounded by the longest park interval: an
    /// absurd value cannot freeze a target for longer than its own backoff.
    pub fn bounded_retry_after(&self, after: Duration) -> Duration {
        after.min(self.park_retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_by_field() {
        let p = Policy::default();
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert_eq!((p.workers, p.queue_size, p.max_targets), (4, 1000, 256));
        assert_eq!(p.park_max_age, Duration::from_secs(86_400));
        let raw: RawPolicy = serde_json::from_str(
            r#"{"workers": 0, "rate_limit": 0, "retry_statuses": [42], "park_retry_min": "10m"}"#,
        )
        .unwrap();
        let mut errs = Errors::default();
        assert!(Policy::build(raw, "destinations[1]", &mut errs).is_none());
        let got: Vec<String> = errs.list.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "destinations[1].workers: must be 1..256",
                "destinations[1].rate_limit: must be at least 1 (per second), or absent for no limit",
                "destinations[1].park_retry_min: must be greater than 0 and not exceed park_retry_max",
                "destinations[1].retry_statuses: 42 is not an HTTP status (100..599)",
            ]
        );
    }

    #[test]
    fn retry_after_is_bounded_and_intervals_grow_to_the_max() {
        let p = Policy::default();
        assert_eq!(
            p.bounded_retry_after(Duration::from_secs(u64::MAX)),
            Duration::from_secs(300)
        );
        assert_eq!(p.park_interval(1), Duration::from_secs(10));
        assert_eq!(p.park_interval(5), Duration::from_secs(160));
        assert_eq!(p.park_interval(u32::MAX), Duration::from_secs(300));
    }
}
