//! `[central]`: Central's REST API, where herald reads namespace and
//! cluster metadata (instead of the `namespace_metadata` and
//! `cluster_metadata` files).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Errors};

#[derive(Debug, Clone, Deserialize)]
pub struct CentralConfig {
    /// Central's address: `https://central.stackrox.svc:443` (a bare
    /// `host:port` means https).
    pub endpoint: String,
    /// An API token (Bearer), read again whenever the file changes.
    pub api_token_file: PathBuf,
    /// CA bundle for Central's certificate, added to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub skip_tls_verify: bool,
    /// Each API call's whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// How often the namespace and cluster metadata is read again.
    #[serde(default = "default_refresh")]
    pub metadata_refresh: Dur,
    /// A lookup of an unknown namespace or cluster reads the metadata
    /// again, at most this often.
    #[serde(default = "default_refresh_on_miss")]
    pub metadata_refresh_on_miss: Dur,
    /// Items per page of a paged API call.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// `[central.reconcile]`: what Central has and the topic did not carry.
    #[serde(default)]
    pub reconcile: Option<ReconcileConfig>,
}

/// `[central.reconcile]`: on an interval, herald lists the alerts Central
/// changed and produces to the input topic each one the topic has not
/// carried (a new alert, or a resolution).
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileConfig {
    #[serde(default = "default_reconcile_interval")]
    pub interval: Dur,
    /// The input topic to produce to (default: `[ingest] topic`, else the
    /// first of `kafka.topics`); it must be one herald reads.
    #[serde(default)]
    pub topic: Option<String>,
    /// A first start looks back this far, and no further.
    #[serde(default = "default_max_alert_age")]
    pub max_alert_age: Dur,
    /// Each poll lists again this much before the newest violation time it
    /// saw (alerts that Central stores late, clocks apart).
    #[serde(default = "default_lookback")]
    pub lookback: Dur,
    /// The most alerts carried as open whose state is checked per poll
    /// (a resolution in Central is found within open ÷ this polls).
    #[serde(default = "default_resolution_checks")]
    pub max_resolution_checks_per_poll: u32,
    /// The most alerts one poll looks at; the rest wait for the next.
    #[serde(default = "default_max_alerts_per_poll")]
    pub max_alerts_per_poll: u32,
    /// The most API calls per second.
    #[serde(default = "default_max_requests_per_second")]
    pub max_requests_per_second: u32,
    /// The most alerts remembered as carried by the topic.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: u32,
}

fn default_reconcile_interval() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_max_alert_age() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}
fn default_lookback() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_resolution_checks() -> u32 {
    200
}
fn default_max_alerts_per_poll() -> u32 {
    10_000
}
fn default_max_requests_per_second() -> u32 {
    20
}
fn default_max_tracked() -> u32 {
    200_000
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_refresh() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_refresh_on_miss() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_page_size() -> u32 {
    1000
}

impl CentralConfig {
    /// Checks what serde cannot.
    pub fn validate(&self, errs: &mut Errors) {
        if self.endpoint.trim().is_empty() {
            errs.push("central.endpoint", "must not be empty");
        }
        if self.timeout.0.is_zero() {
            errs.push("central.timeout", "must be greater than 0");
        }
        if self.metadata_refresh.0 < Duration::from_secs(1) {
            errs.push("central.metadata_refresh", "must be at least 1s");
        }
        if self.metadata_refresh_on_miss.0 < Duration::from_secs(1) {
            errs.push("central.metadata_refresh_on_miss", "must be at least 1s");
        }
        if !(1..=10_000).contains(&self.page_size) {
            errs.push("central.page_size", "must be between 1 and 10000");
        }
        if let Some(r) = &self.reconcile {
            if r.interval.0 < Duration::from_secs(1) {
                errs.push("central.reconcile.interval", "must be at least 1s");
            }
            if r.max_alert_age.0 < Duration::from_secs(60)
                || r.max_alert_age.0 > Duration::from_secs(366 * 86_400)
            {
                errs.push(
                    "central.reconcile.max_alert_age",
                    "must be between 1m and 366d",
                );
            }
            if r.lookback.0 > Duration::from_secs(86_400) {
                errs.push("central.reconcile.lookback", "must be at most 1d");
            }
            for (v, key) in [
                (r.max_alerts_per_poll, "max_alerts_per_poll"),
                (r.max_requests_per_second, "max_requests_per_second"),
                (r.max_tracked, "max_tracked"),
                (
                    r.max_resolution_checks_per_poll,
                    "max_resolution_checks_per_poll",
                ),
            ] {
                if v == 0 {
                    errs.push(&format!("central.reconcile.{key}"), "must be at least 1");
                }
            }
        }
        if let Err(e) = std::fs::metadata(&self.api_token_file) {
            errs.push(
                "central.api_token_file",
                format!("cannot read {}: {e}", self.api_token_file.display()),
            );
        }
    }
}
