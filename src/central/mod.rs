//! Central's REST API (`[central]`): an API client with the token read from
//! its file (again whenever the file changes), and what herald reads there —
//! namespace and cluster metadata ([`metadata`]).
//!
//! Errors name the call and, for a refused token, the token file; they never
//! carry the token.

pub mod metadata;
pub mod reconcile;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use reqwest::{StatusCode, Url};

use crate::config::central::CentralConfig;
use crate::config::{redact_url, Errors, Secret};
use crate::notifiers::http::{self, TlsSettings};
use crate::telemetry::metrics::Metrics;

/// The most a response body may hold (a page of namespaces is far less).
const MAX_BODY: usize = 64 << 20;
/// The most an API token file may hold.
const MAX_TOKEN: u64 = 64 << 10;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// 401: the token is wrong, expired or revoked.
    Unauthorized(String),
    /// 403: the token's role lacks a permission.
    Forbidden(String),
    /// 404: no such object.
    NotFound(String),
    /// Anything else: unreachable, timed out, 5xx, an answer that does not read.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unauthorized(m)
            | CallError::Forbidden(m)
            | CallError::NotFound(m)
            | CallError::Failed(m) => f.write_str(m),
        }
    }
}

impl CallError {
    fn outcome(&self) -> &'static str {
        match self {
            CallError::Unauthorized(_) => "unauthorized",
            CallError::Forbidden(_) => "forbidden",
            CallError::NotFound(_) => "not_found",
            CallError::Failed(_) => "error",
        }
    }
}

/// An API token read from its file, read again when the file changes.
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(Option<SystemTime>, u64, Secret)>>,
}

impl TokenFile {
    async fn current(&self) -> Result<Secret, CallError> {
        let unreadable = |e: std::io::Error| {
            CallError::Failed(format!(
                "cannot read the API token file {}: {e}",
                self.path.display()
            ))
        };
        let meta = tokio::fs::metadata(&self.path).await.map_err(unreadable)?;
        let stamp = (meta.modified().ok(), meta.len());
        if let Some((m, l, t)) = &*self.cached.lock().unwrap_or_else(|p| p.into_inner()) {
            if (*m, *l) == stamp {
                return Ok(t.clone());
            }
        }
        if meta.len() > MAX_TOKEN {
            return Err(CallError::Failed(format!(
                "the API token file {} is larger than {MAX_TOKEN} bytes",
                self.path.display()
            )));
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(unreadable)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CallError::Failed(format!(
                "the API token file {} is empty",
                self.path.display()
            )));
        }
        let token = Secret::new(token);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((stamp.0, stamp.1, token.clone()));
        Ok(token)
    }

    /// Forgets the token read: the next call reads the file again (after a
    /// 401, whatever the file's time stamp says).
    fn forget(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Central's API, as herald calls it.
pub struct Client {
    base: Url,
    http: reqwest::Client,
    token: TokenFile,
    metrics: Option<Arc<Metrics>>,
    shown: String,
}

/// `endpoint` as a base URL: `https://` unless it says otherwise, no path.
pub fn base_url(endpoint: &str) -> Result<Url, String> {
    if endpoint.contains("://") && !endpoint.trim_start().starts_with("http") {
        return Err("must be an https:// address of Central".into());
    }
    let full = http::with_scheme(endpoint);
    let url = Url::parse(&full).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err("must be an https:// address of Central".into());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if url.scheme() == "http" && !loopback {
        return Err(
            "must be https:// (the API token would travel in clear); http:// only to a loopback address".into(),
        );
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a query or credentials (the token is api_token_file)".into());
    }
    Ok(url)
}

impl Client {
    /// The client for `cfg`; problems are reported by field.
    pub fn build(
        cfg: &CentralConfig,
        metrics: Option<Arc<Metrics>>,
        errs: &mut Errors,
    ) -> Option<Client> {
        let base = match base_url(&cfg.endpoint) {
            Ok(u) => u,
            Err(e) => {
                errs.push("central.endpoint", e);
                return None;
            }
        };
        let tls = TlsSettings {
            ca_file: &cfg.ca_file,
            skip_tls_verify: cfg.skip_tls_verify,
        };
        let client = http::client(tls, cfg.timeout.0, "central", errs)?;
        Some(Client {
            shown: redact_url(base.as_str().trim_end_matches('/')),
            base,
            http: client,
            token: TokenFile {
                path: cfg.api_token_file.clone(),
                cached: Mutex::new(None),
            },
            metrics,
        })
    }

    /// The endpoint as logs show it.
    pub fn endpoint(&self) -> &str {
        &self.shown
    }

    /// `GET path?query` with the token; the body of a 200.
    pub async fn get(
        &self,
        call: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, CallError> {
        let result = self.get_once(call, path, query).await;
        if let Some(m) = &self.metrics {
            let outcome = result.as_ref().map_or_else(CallError::outcome, |_| "ok");
            m.central_requests.with_label_values(&[call, outcome]).inc();
        }
        result
    }

    async fn get_once(
        &self,
        call: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, CallError> {
        let token = self.token.current().await?;
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let what = format!("Central's {call} (GET {}{path})", self.shown);
        let failed = |e: reqwest::Error| {
            // The chain says why (refused, a certificate not trusted, …);
            // without the URL, which the message already names.
            let (timeout, connect) = (e.is_timeout(), e.is_connect());
            let chain = crate::notifiers::error_chain(&e.without_url());
            let why = if timeout {
                "timed out".to_string()
            } else if connect {
                format!("connection failed: {chain}")
            } else {
                chain
            };
            CallError::Failed(format!("{what}: {why}"))
        };
        let mut resp = self
            .http
            .get(url)
            .bearer_auth(token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(CallError::Failed(format!(
                    "{what}: the answer is larger than {} MiB",
                    MAX_BODY >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
                .unwrap_or_default()
        };
        match status {
            s if s.is_success() => Ok(body),
            StatusCode::UNAUTHORIZED => Err({
                self.token.forget();
                CallError::Unauthorized(format!(
                "{what}: Central refused the API token in {} (401: wrong, expired or revoked){}",
                self.token.path.display(),
                message()
            ))
            }),
            StatusCode::FORBIDDEN => Err(CallError::Forbidden(format!(
                "{what}: the API token in {} lacks a permission this call needs (403){}",
                self.token.path.display(),
                message()
            ))),
            StatusCode::NOT_FOUND => Err(CallError::NotFound(format!(
                "{what}: HTTP 404{}",
                message()
            ))),
            s => Err(CallError::Failed(format!(
                "{what}: HTTP {}{}",
                s.as_u16(),
                message()
            ))),
        }
    }
}

/// The wall clock in ms (what Central's times are compared with).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One API call herald makes, with the permission it needs.
pub struct Check {
    pub path: &'static str,
    /// The permission set's resource that must be readable.
    pub resource: &'static str,
    pub result: Result<(), CallError>,
}

impl Check {
    /// The line `check-config --online` prints.
    pub fn line(&self) -> String {
        match &self.result {
            Ok(()) => format!(
                "central: ok: GET {} (read access to {})",
                self.path, self.resource
            ),
            Err(CallError::Forbidden(m)) => format!(
                "central: failed: {m}; grant the token's role read access to {}",
                self.resource
            ),
            Err(e) => format!("central: failed: {e}"),
        }
    }
}

/// Tries each call herald makes (one item each; the alerts only with
/// `reconcile`), so a token's missing permission is found before it matters.
pub async fn checks(client: &Client, reconcile: bool) -> Vec<Check> {
    let mut out = Vec::new();
    let calls = [
        (
            "namespaces",
            "/v1/namespaces",
            "Namespace",
            vec![("query.pagination.limit", "1".to_string())],
        ),
        ("clusters", "/v1/clusters", "Cluster", vec![]),
        (
            "alerts",
            "/v1/alerts",
            "Alert",
            vec![("pagination.limit", "1".to_string())],
        ),
    ];
    for (call, path, resource, query) in calls {
        if call == "alerts" && !reconcile {
            continue;
        }
        let result = client.get(call, path, &query).await.map(|_| ());
        out.push(Check {
            path,
            resource,
            result,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_read_as_central_writes_them() {
        assert_eq!(
            base_url("central.stackrox.svc:443").unwrap().as_str(),
            "https://central.stackrox.svc/"
        );
        assert_eq!(
            base_url("https://c.example:8443/").unwrap().as_str(),
            "https://c.example:8443/"
        );
        assert!(base_url("https://u:p@c.example").is_err());
        assert!(base_url("https://c.example/?token=x").is_err());
        assert!(base_url("ftp://c.example").is_err());
        assert!(base_url("http://central.example").is_err());
        assert!(base_url("http://127.0.0.1:8080").is_ok());
    }

    #[tokio::test]
    async fn the_token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "one\n").unwrap();
        let t = TokenFile {
            path: p.clone(),
            cached: Mutex::new(None),
        };
        assert_eq!(t.current().await.unwrap().expose(), "one");
        std::fs::write(&p, "second\n").unwrap();
        assert_eq!(t.current().await.unwrap().expose(), "second");
        std::fs::write(&p, "\n").unwrap();
        let e = t.current().await.unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("token"), "{e}");
        std::fs::remove_file(&p).unwrap();
        assert!(t
            .current()
            .await
            .unwrap_err()
            .to_string()
            .contains("cannot read the API token file"));
    }
}
