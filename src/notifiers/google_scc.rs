//! Google Cloud Security Command Center (central-compat §2.11): each alert
//! as a finding of the configured source. A finding is created as Central
//! creates it (`POST v1/{source}/findings?findingId=…`); when it exists
//! already (a re-send after a crash, an update, RESOLVED) the same finding
//! is updated with `PATCH …/findings/{id}?updateMask=…`, so a re-send is an
//! update, not an error, and RESOLVED sets the finding `INACTIVE`.
//!
//! Credentials come from Google's own auth crate (`google-cloud-auth`):
//! `credentials_file` is a service-account key (a JWT signed with its key
//! for every hour) or an `external_account` file (workload identity
//! federation: the subject token file, read again for every exchange, then
//! Google's STS, then optional service-account impersonation); without it,
//! Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, then
//! gcloud's own file, then the GKE/GCE metadata server). The crate caches
//! tokens and renews them ahead of expiry. A 401 builds new credentials (a
//! new exchange, once for all the deliveries refused with that token) and
//! tries once more; a token that does not come within 20 s, or a failed
//! one, drops the credentials so that the next attempt starts afresh, and a
//! failure is remembered for 5 s so that a broken credential does not cause
//! an exchange per delivery.
//!
//! The crate's own HTTP clients (STS, IAM, metadata server) verify TLS with
//! the system's roots, not with `ca_file`/`skip_tls_verify`, which apply to
//! the Security Command Center endpoint.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use google_cloud_auth::credentials::{
    external_account, service_account, AccessTokenCredentials, Builder as AdcBuilder,
};
use serde::Deserialize;
use serde_json::Value;

use super::http::{self, TlsSettings};
use super::{BuildContext, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, redact_url, Errors, Secret};
use crate::formats::scc;
use crate::model::Event;
use crate::routing::metadata::Metadata;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_ENDPOINT: &str = "https://securitycenter.googleapis.com";
/// The permission creating and updating findings needs.
const PERMISSION: &str = "securitycenter.findings.update";
/// A token exchange (STS, impersonation, metadata server) that takes longer
/// fails the attempt; the crate's own HTTP clients have no timeout.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failed token fetch answers for the credentials.
const FAIL_HOLD: Duration = Duration::from_secs(5);
/// The most of a response body herald reads.
const MAX_RESPONSE: usize = 64 * 1024;
/// Keys of a credential file whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "private_key",
    "private_key_id",
    "client_secret",
    "refresh_token",
    "headers",
];

#[derive(Deserialize)]
pub struct Settings {
    /// `organizations/<n>/sources/<n>`.
    source_id: String,
    /// A service-account key or an `external_account` (workload identity
    /// federation) file; without it, Application Default Credentials.
    #[serde(default)]
    credentials_file: Option<PathBuf>,
    /// The API's address (default `https://securitycenter.googleapis.com`).
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
}

/// Where the credentials come from.
#[derive(Clone)]
enum Source {
    /// A key or external-account file, read again whenever the credentials
    /// are rebuilt (a rotated key takes effect at the next 401 or reload).
    File(PathBuf),
    /// Application Default Credentials.
    Default,
}

/// Whether a URL may carry a token: https, or http to this host (tests).
fn token_url_ok(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => true,
        Ok(u) if u.scheme() == "http" => {
            matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        }
        _ => false,
    }
}

impl Source {
    fn describe(&self) -> &'static str {
        match self {
            Source::File(_) => "credentials_file",
            Source::Default => "Application Default Credentials",
        }
    }

    /// Checks what can be checked before the first token: the file is
    /// readable, JSON, of a supported type, with the fields that type needs
    /// (as the crate reads them), and the URLs that get tokens are https.
    /// For Application Default Credentials, the file that
    /// `GOOGLE_APPLICATION_CREDENTIALS` names, if any, is checked the same
    /// way (other types that ADC takes are let through).
    fn check(&self) -> Result<Value, String> {
        match self {
            Source::File(path) => check_file(path, false),
            Source::Default => match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
                Some(p) => check_file(&PathBuf::from(p), true).map_err(|e| {
                    format!("not set, and GOOGLE_APPLICATION_CREDENTIALS names a file that will not do: {e}")
                }),
                None => Ok(Value::Null),
            },
        }
    }

    /// New credentials, with an empty token cache. Blocking (it reads
    /// files), and it needs the runtime (the cache's refresh task): called
    /// on a blocking thread, at the first token, not with the config.
    fn credentials(&self) -> Result<(AccessTokenCredentials, Value), String> {
        let json = self.check()?;
        let Source::File(path) = self else {
            return AdcBuilder::default()
                .with_scopes([SCOPE])
                .build_access_token_credentials()
                .map(|c| (c, json.clone()))
                .map_err(|e| {
                    format!("Application Default Credentials: {}", safe_error(&e, &json))
                });
        };
        let built = if json["type"] == "service_account" {
            service_account::Builder::new(json.clone())
                .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
                .build_access_token_credentials()
        } else {
            external_account::Builder::new(json.clone())
                .with_scopes([SCOPE])
                .build_access_token_credentials()
        };
        built
            .map(|c| (c, json.clone()))
            .map_err(|e| format!("{}: {}", path.display(), safe_error(&e, &json)))
    }
}

/// One credential file's checks (see [`Source::check`]); `adc`: other
/// types than the two herald names are let through.
fn check_file(path: &PathBuf, adc: bool) -> Result<Value, String> {
    let json = read_file(path)?;
    let at = path.display();
    let needs: &[&str] = match json.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
            let pem = json
                .get("private_key")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(
                PrivateKeyDer::from_pem_slice(pem.as_bytes()),
                Ok(PrivateKeyDer::Pkcs8(_))
            ) {
                return Err(format!(
                    "{at}: private_key is not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)"
                ));
            }
            &["client_email", "private_key_id", "project_id"]
        }
        Some("external_account") => {
            for key in ["token_url", "service_account_impersonation_url"] {
                if let Some(url) = json.get(key).and_then(Value::as_str) {
                    if !token_url_ok(url) {
                        return Err(format!("{at}: {key} must be an https URL"));
                    }
                }
            }
            let source = &json["credential_source"];
            let kind = ["file", "url", "executable", "environment_id"]
                .into_iter()
                .find(|k| source.get(k).is_some());
            match kind {
                None => {
                    return Err(format!(
                        "{at}: credential_source names no file, url, executable or environment_id"
                    ))
                }
                Some("executable")
                    if std::env::var("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES").as_deref()
                        != Ok("1") =>
                {
                    return Err(format!(
                        "{at}: an executable credential_source runs only with GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"
                    ))
                }
                _ => {}
            }
            &[
                "audience",
                "subject_token_type",
                "token_url",
                "credential_source",
            ]
        }
        _ if adc => &[],
        other => {
            return Err(format!(
                "{at}: type {} is not supported (service_account or external_account)",
                other.map_or_else(|| "(none)".to_string(), |t| format!("{t:?}"))
            ))
        }
    };
    for field in needs {
        if json.get(field).is_none_or(|v| v.is_null() || v == "") {
            return Err(format!("{at}: {field} is missing"));
        }
    }
    Ok(json)
}

fn read_file(path: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|_| format!("{} is not a JSON credential file", path.display()))
}

/// An error and its sources as one line, safe to log: the crate quotes
/// response bodies (`body=<…>`, which can hold a subject token) and an
/// executable's `stderr=<…>`, so the text stops before them; the secret
/// values of the credential file `file` are withheld; at most 300
/// characters.
fn safe_error(e: &dyn std::error::Error, file: &Value) -> String {
    let mut out = super::error_chain(e);
    for quote in ["body=", "stderr=", "stdout="] {
        if let Some(i) = out.find(quote) {
            out.truncate(i);
            out.push_str("(response withheld)");
        }
    }
    without_queries(&withhold(&out, file))
        .chars()
        .take(300)
        .collect()
}

/// `text` with the query of every URL in it cut (`?…` up to a space,
/// quote or parenthesis): a URL the crate quotes can carry a token.
fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_query = false;
    let mut in_url = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || matches!(c, ')' | '(' | '"' | '\'' | '<' | '>' | ',') {
            in_url = false;
            in_query = false;
        } else if !in_url && (text[i..].starts_with("http://") || text[i..].starts_with("https://"))
        {
            in_url = true;
        } else if in_url && c == '?' {
            in_query = true;
            out.push_str("?…");
        }
        if !in_query {
            out.push(c);
        }
    }
    out
}

/// `message` without the secret values of a credential file.
fn withhold(message: &str, file: &Value) -> String {
    fn secrets<'a>(v: &'a Value, secret: bool, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) if secret && !s.is_empty() => out.push(s),
            Value::Array(a) => a.iter().for_each(|v| secrets(v, secret, out)),
            Value::Object(o) => o
                .iter()
                .for_each(|(k, v)| secrets(v, secret || SECRET_KEYS.contains(&k.as_str()), out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    secrets(file, false, &mut found);
    let mut out = message.to_string();
    for s in found {
        out = out.replace(s, "(withheld)");
        // A key's PEM lines can appear on their own.
        for line in s.lines().filter(|l| l.len() >= 16) {
            out = out.replace(line, "(withheld)");
        }
    }
    out
}

/// Credentials as built, with the last token they gave.
struct Current {
    generation: u64,
    credentials: AccessTokenCredentials,
    last: Option<Secret>,
}

/// A failed token fetch.
struct Failure {
    at: Instant,
    error: SendError,
}

struct Auth {
    source: Source,
    current: std::sync::Mutex<Option<Current>>,
    /// The credential file as last read: its secret values are withheld
    /// from error messages.
    file: std::sync::Mutex<Value>,
    /// One build at a time.
    building: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    /// The last failed fetch: it answers for [`FAIL_HOLD`].
    failed: std::sync::Mutex<Option<Failure>>,
}

fn auth_error(message: String) -> SendError {
    SendError::retryable(FailureReason::AuthError, message)
}

impl Auth {
    fn new(source: Source) -> Auth {
        Auth {
            source,
            current: std::sync::Mutex::new(None),
            file: std::sync::Mutex::new(Value::Null),
            building: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            failed: std::sync::Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current_generation(&self) -> Option<u64> {
        self.lock().as_ref().map(|c| c.generation)
    }

    /// The current credentials, unless they handed out `refused`; else new
    /// ones, built off the async workers, one build at a time.
    async fn credentials(
        &self,
        refused: Option<&Secret>,
    ) -> Result<(u64, AccessTokenCredentials), SendError> {
        let usable = |c: &Current| !matches!((refused, &c.last), (Some(r), Some(l)) if r.expose() == l.expose());
        let now = |auth: &Auth| {
            auth.lock()
                .as_ref()
                .filter(|c| usable(c))
                .map(|c| (c.generation, c.credentials.clone()))
        };
        if let Some(c) = now(self) {
            return Ok(c);
        }
        let _one = self.building.lock().await;
        // Another delivery may have built them while this one waited.
        if let Some(c) = now(self) {
            return Ok(c);
        }
        let source = self.source.clone();
        let (built, file) = tokio::task::spawn_blocking(move || source.credentials())
            .await
            .map_err(|_| auth_error("building the Google credentials failed".into()))?
            .map_err(auth_error)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.lock() = Some(Current {
            generation,
            credentials: built.clone(),
            last: None,
        });
        Ok((generation, built))
    }

    /// A token; `refused` is one the API refused (see [`Auth::credentials`]).
    /// A failure is remembered for [`FAIL_HOLD`], renewals included, so a
    /// broken credential costs one exchange per 5 s, not one per delivery;
    /// the replay is marked shared (the failure counted once for the
    /// breaker) and asks to wait out the rest of the 5 s.
    async fn token(&self, refused: Option<&Secret>) -> Result<Secret, SendError> {
        if let Some(f) = self.failed().as_ref() {
            let left = FAIL_HOLD.saturating_sub(f.at.elapsed());
            if !left.is_zero() {
                let mut e = f.error.clone();
                e.shared = true;
                e.retry_after = Some(left);
                e.message = format!("{} (again within {}s)", e.message, FAIL_HOLD.as_secs());
                return Err(e);
            }
        }
        let (generation, result) = self.fetch(refused).await;
        let mut failed = self.failed();
        match &result {
            Ok(_) if generation == self.current_generation() => *failed = None,
            Ok(_) => {}
            // Not when newer credentials were built meanwhile: this failure
            // is theirs no longer.
            Err(e) if generation.is_none() || self.current_generation().is_none() => {
                *failed = Some(Failure {
                    at: Instant::now(),
                    error: e.clone(),
                })
            }
            Err(_) => {}
        }
        result
    }

    /// A token from the current credentials; on failure or after
    /// [`TOKEN_TIMEOUT`] they are dropped (the crate's cache may be wedged:
    /// its clients have no timeout), so the next fetch builds new ones.
    async fn fetch(&self, refused: Option<&Secret>) -> (Option<u64>, Result<Secret, SendError>) {
        let (generation, credentials) = match self.credentials(refused).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e)),
        };
        let answer = tokio::time::timeout(TOKEN_TIMEOUT, credentials.access_token()).await;
        let result = match answer {
            Err(_) => Err(SendError::retryable(
                FailureReason::Timeout,
                format!(
                    "no Google access token from {} within {}s",
                    self.source.describe(),
                    TOKEN_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(e)) => {
                let reason = if e.is_transient() {
                    FailureReason::Connect
                } else {
                    FailureReason::AuthError
                };
                let file = self.file.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Err(SendError::retryable(
                    reason,
                    format!(
                        "no Google access token from {}: {}",
                        self.source.describe(),
                        safe_error(&e, &file)
                    ),
                ))
            }
            Ok(Ok(t)) => Ok(Secret::new(t.token)),
        };
        let mut current = self.lock();
        match (&result, current.as_mut()) {
            (Ok(token), Some(c)) if c.generation == generation => c.last = Some(token.clone()),
            (Err(_), Some(c)) if c.generation == generation => *current = None,
            _ => {}
        }
        (Some(generation), result)
    }
}

pub struct GoogleScc {
    source_id: String,
    endpoint: String,
    ui_endpoint: String,
    metadata: Arc<Metadata>,
    client: reqwest::Client,
    auth: Auth,
    target: String,
}

super::debug_target_only!(GoogleScc);

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        if !scc::valid_source_id(&self.source_id) {
            errs.push(
                &join(path, "source_id"),
                "must be a source name: organizations/<number>/sources/<number>",
            );
        }
        let endpoint = self
            .endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_string();
        match reqwest::Url::parse(&endpoint) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.query().is_none() => {}
            _ => errs.push(&join(path, "endpoint"), "must be an http(s) URL"),
        }
        // google-cloud-auth signs and connects with the process's rustls
        // provider (herald's is ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let source = match &self.credentials_file {
            Some(p) => Source::File(p.clone()),
            None => Source::Default,
        };
        if let Err(e) = source.check() {
            errs.push(&join(path, "credentials_file"), e);
        }
        // The finding's externalUri: Cloud SCC takes an absolute URL only.
        if !ctx.ui_endpoint.is_empty()
            && !reqwest::Url::parse(&ctx.ui_endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            errs.push(
                &join(path, "ui_endpoint"),
                "must be an absolute http(s) URL (Cloud SCC refuses a relative externalUri)",
            );
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        Some(Arc::new(GoogleScc {
            source_id: self.source_id,
            target: redact_url(&endpoint),
            endpoint,
            ui_endpoint: ctx.ui_endpoint.clone(),
            metadata: ctx.metadata.clone(),
            client: client?,
            auth: Auth::new(source),
        }))
    }
}

/// Google's error (`{"error": {"status": …, "message": …}}`): its status
/// name and its message, cut short.
async fn google_error(resp: reqwest::Response) -> (String, String) {
    let body = http::read_limited(resp, MAX_RESPONSE).await;
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |v: &Value| -> String {
        v.as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect()
    };
    (text(&v["error"]["status"]), text(&v["error"]["message"]))
}

impl GoogleScc {
    fn finding(&self, event: &Event, now: chrono::DateTime<chrono::Utc>) -> Result<Value, String> {
        let Event::Alert(a) = event else {
            return Err("Cloud SCC takes no audit messages".into());
        };
        let a = &a.fields;
        let snapshot = self.metadata.snapshot();
        let meta = self
            .metadata
            .provider(&snapshot, a.cluster_id(), a.cluster_name());
        scc::finding(a, &self.source_id, &self.ui_endpoint, meta, now)
    }

    /// One call with a token; a 401 renews the token and calls once more.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &[u8],
    ) -> Result<reqwest::Response, SendError> {
        let target = redact_url(url);
        let mut refused: Option<Secret> = None;
        loop {
            let token = self.auth.token(refused.as_ref()).await?;
            let resp = self
                .client
                .request(method.clone(), url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .bearer_auth(token.expose())
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| http::transport_error(&e, &target))?;
            if resp.status().as_u16() == 401 && refused.is_none() {
                drop(http::read_limited(resp, MAX_RESPONSE).await);
                refused = Some(token);
                continue;
            }
            return Ok(resp);
        }
    }

    /// The outcome of an answer, its body read (so the connection is kept).
    async fn outcome(&self, resp: reqwest::Response) -> Result<(), SendError> {
        if resp.status().is_success() {
            drop(http::read_limited(resp, MAX_RESPONSE).await);
            return Ok(());
        }
        let (status, headers) = (resp.status(), resp.headers().clone());
        let (kind, message) = google_error(resp).await;
        Err(self.refusal(status, &headers, &kind, &message))
    }

    /// A refusal as a failure. Credentials, permissions, a source not there
    /// (yet), Security Command Center not ready, a conflict and an
    /// `eventTime` refused for a clock ahead of Google's can be fixed
    /// without changing the finding: park. Another invalid finding is
    /// dead-lettered.
    fn refusal(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        kind: &str,
        message: &str,
    ) -> SendError {
        let mut e = match http::status_outcome(status, headers, &self.target) {
            Err(e) => e,
            Ok(()) => SendError::retryable(FailureReason::ServerError, "?"),
        };
        if e.reason == FailureReason::AuthError
            || status.as_u16() == 404
            || matches!(kind, "FAILED_PRECONDITION" | "ABORTED" | "NOT_FOUND")
            || message.contains("event_time")
            || message.contains("eventTime")
        {
            e.retryable = true;
        }
        if !kind.is_empty() || !message.is_empty() {
            e.message = format!("{}: {kind} {message}", e.message);
        }
        e
    }

    /// Creates the finding as Central does; if it exists, updates it.
    async fn write(&self, id: &str, body: &[u8]) -> Result<(), SendError> {
        let create = format!(
            "{}/v1/{}/findings?findingId={id}",
            self.endpoint, self.source_id
        );
        let resp = self.call(reqwest::Method::POST, &create, body).await?;
        if resp.status().as_u16() != 409 {
            return self.outcome(resp).await;
        }
        let headers = resp.headers().clone();
        let (kind, message) = google_error(resp).await;
        // 409 is also ABORTED (a concurrent change): that one is retried.
        if !matches!(kind.as_str(), "ALREADY_EXISTS" | "") {
            return Err(self.refusal(reqwest::StatusCode::CONFLICT, &headers, &kind, &message));
        }
        let update = format!(
            "{}/v1/{}/findings/{id}?updateMask={}",
            self.endpoint,
            self.source_id,
            scc::UPDATE_MASK
        );
        let resp = self.call(reqwest::Method::PATCH, &update, body).await?;
        self.outcome(resp).await
    }

    /// Whether the credentials may create and update findings in the source.
    async fn check_permission(&self) -> Result<String, SendError> {
        let url = format!("{}/v1/{}:testIamPermissions", self.endpoint, self.source_id);
        let body = serde_json::to_vec(&serde_json::json!({ "permissions": [PERMISSION] }))
            .unwrap_or_default();
        let resp = self.call(reqwest::Method::POST, &url, &body).await?;
        if !resp.status().is_success() {
            return self.outcome(resp).await.map(|()| String::new());
        }
        let answer: Value = serde_json::from_slice(&http::read_limited(resp, MAX_RESPONSE).await)
            .map_err(|_| {
            SendError::retryable(
                FailureReason::ServerError,
                format!("{} answered testIamPermissions with no JSON", self.target),
            )
        })?;
        let granted = answer["permissions"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == PERMISSION));
        if !granted {
            return Err(SendError::permanent(
                FailureReason::AuthError,
                format!(
                    "the credentials ({}) lack {PERMISSION} on {} (grant roles/securitycenter.findingsEditor)",
                    self.auth.source.describe(),
                    self.source_id
                ),
            ));
        }
        let clusters = if self.metadata.snapshot().clusters.is_empty() {
            "; no cluster metadata yet (cluster_metadata or [central]), so resourceName is UNSPECIFIED/<cluster name>"
        } else {
            ""
        };
        Ok(format!(
            "{} lets these credentials ({}) create and update findings in {}{clusters}",
            self.target,
            self.auth.source.describe(),
            self.source_id
        ))
    }
}

impl Notifier for GoogleScc {
    fn can_resolve(&self) -> bool {
        true
    }

    fn refuses(&self, event: &Event) -> Option<String> {
        match event {
            Event::Alert(a) => scc::supported(&a.fields).err().map(str::to_string),
            Event::Audit(_) => Some("Cloud SCC takes no audit messages".into()),
        }
    }

    fn render(
        &self,
        event: &Event,
        _target: &Target,
        ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        let f = self.finding(event, ctx.now)?;
        serde_json::to_vec(&f).map_err(|e| e.to_string())
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let Event::Alert(a) = event else {
                return Err(SendError::permanent(
                    FailureReason::Render,
                    "Cloud SCC takes no audit messages",
                ));
            };
            let id = scc::finding_id(&a.fields.id)
                .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
            self.write(&id, payload).await
        })
    }

    /// The longest attempt: a token, the create refused with 401, a new
    /// token, the create again (409), the update ([`TOKEN_TIMEOUT`] for
    /// each token, the destination's timeout for each call).
    fn attempt_timeout(&self, timeout: Duration) -> Duration {
        timeout
            .saturating_mul(4)
            .saturating_add(TOKEN_TIMEOUT.saturating_mul(2))
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(&self.endpoint, "the Google access token")
    }

    /// Central has no test for Cloud SCC. A test finding would stay among
    /// the source's findings, so herald asks the API whether these
    /// credentials may write findings there (`testIamPermissions`).
    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(self.check_permission())
    }

    fn preflight(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(self.check_permission())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifiers::parse_one;

    fn errors(extra: &str) -> Vec<String> {
        parse_one(&format!(
            "[[destinations]]\nname = \"scc\"\ntype = \"google_scc\"\n{extra}"
        ))
        .err()
        .unwrap_or_default()
    }

    #[test]
    fn settings_name_the_wrong_field() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let wif = write(
            "wif.json",
            r#"{"type":"external_account","audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k","subject_token_type":"urn:ietf:params:oauth:token-type:jwt","token_url":"https://sts.googleapis.com/v1/token","credential_source":{"file":"/var/run/token"}}"#,
        );
        assert_eq!(
            errors(&format!(
                "source_id = \"organizations/12/sources/34\"\ncredentials_file = \"{wif}\"\n"
            )),
            Vec::<String>::new()
        );
        let empty_source = write(
            "empty.json",
            r#"{"type":"external_account","audience":"a","subject_token_type":"t","token_url":"https://sts.googleapis.com/v1/token","credential_source":{}}"#,
        );
        assert_eq!(
            errors(&format!(
                "source_id = \"organizations/1/sources/2\"\nui_endpoint = \"central:443\"\ncredentials_file = \"{empty_source}\"\n"
            )),
            vec![
                format!("destinations[0].credentials_file: {empty_source}: credential_source names no file, url, executable or environment_id"),
                "destinations[0].ui_endpoint: must be an absolute http(s) URL (Cloud SCC refuses a relative externalUri)".to_string(),
            ]
        );
        let user = write(
            "user.json",
            r#"{"type":"authorized_user","client_secret":"very-secret-value"}"#,
        );
        let bad_key = write(
            "key.json",
            r#"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nnot a key at all, but secret\n-----END PRIVATE KEY-----\n"}"#,
        );
        assert_eq!(
            errors(&format!(
                "source_id = \"projects/1/sources/2\"\nendpoint = \"ftp://x\"\ncredentials_file = \"{user}\"\n"
            )),
            vec![
                "destinations[0].source_id: must be a source name: organizations/<number>/sources/<number>".to_string(),
                "destinations[0].endpoint: must be an http(s) URL".to_string(),
                format!("destinations[0].credentials_file: {user}: type \"authorized_user\" is not supported (service_account or external_account)"),
            ]
        );
        let e = errors(&format!(
            "source_id = \"organizations/1/sources/2\"\ncredentials_file = \"{bad_key}\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("destinations[0].credentials_file: "),
            "{e:?}"
        );
        assert!(!e[0].contains("secret"), "{e:?}");
    }

    #[test]
    fn secrets_of_the_credential_file_and_quoted_bodies_never_reach_a_message() {
        let file = serde_json::json!({
            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAABBBBCCCCDDDDEEEE\n-----END PRIVATE KEY-----",
            "client_email": "a@b.iam.gserviceaccount.com",
            "credential_source": {"url": "http://x", "headers": {"Authorization": "Bearer s3cr3t"}},
        });
        assert_eq!(
            withhold(
                "bad key AAAABBBBCCCCDDDDEEEE of a@b.iam.gserviceaccount.com, Bearer s3cr3t",
                &file
            ),
            "bad key (withheld) of a@b.iam.gserviceaccount.com, (withheld)"
        );
        #[derive(Debug)]
        struct E(&'static str);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {}
        assert_eq!(
            safe_error(&E("failed to read subject token field id_token, body=<{\"id_token\":\"eyJsecret\"}>"), &Value::Null),
            "failed to read subject token field id_token, (response withheld)"
        );
        assert_eq!(
            safe_error(&E("error sending request for url (https://idp.example/token?key=s3cr3t&x=1): refused"), &Value::Null),
            "error sending request for url (https://idp.example/token?…): refused"
        );
    }
}
