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
        if let Err(e) = std::fs::metadata(&self.api_token_file) {
            errs.push(
                "central.api_token_file",
                format!("cannot read {}: {e}", self.api_token_file.display()),
            );
        }
    }
}
