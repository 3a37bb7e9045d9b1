//! Google Cloud Security Command Center (central-compat §2.11): each alert
//! as a finding of the configured source, created or updated with one
//! `PATCH v1/{source}/findings/{id}?updateMask=…`, so a re-send after a crash
//! is an update, not an error, and RESOLVED sets the finding `INACTIVE`.
//!
//! Credentials come from Google's own auth crate (`google-cloud-auth`):
//! `credentials_file` is a service-account key (a JWT signed with its key
//! for every hour) or an `external_account` file (workload identity
//! federation: the subject token file, read again for every exchange, then
//! Google's STS, then optional service-account impersonation); without it,
//! Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, then
//! the GKE/GCE metadata server). The crate caches tokens and renews them
//! ahead of expiry; a 401 rebuilds the credentials (a new exchange) and
//! tries once more, then the delivery parks as `auth_error`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
use crate::routing::clusters::ClusterMetadata;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_ENDPOINT: &str = "https://securitycenter.googleapis.com";
/// The permission a finding's PATCH needs (create or update).
const PERMISSION: &str = "securitycenter.findings.update";
/// A token exchange (STS, impersonation, metadata server) that takes longer
/// fails the attempt; the crate's own HTTP clients have no timeout.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);
/// The most of a response body herald reads.
const MAX_RESPONSE: usize = 64 * 1024;

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

impl Source {
    fn describe(&self) -> &'static str {
        match self {
            Source::File(_) => "credentials_file",
            Source::Default => "Application Default Credentials",
        }
    }

    /// Checks what can be checked before the first token: the file is
    /// readable, JSON, of a supported type, with the fields that type needs.
    fn check(&self) -> Result<(), String> {
        let Source::File(path) = self else {
            return match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
                Some(p) if std::fs::metadata(&p).is_err() => Err(format!(
                    "not set, and GOOGLE_APPLICATION_CREDENTIALS names {}, which cannot be read",
                    PathBuf::from(p).display()
                )),
                _ => Ok(()),
            };
        };
        let json = read_file(path)?;
        let needs: &[&str] = match json.get("type").and_then(Value::as_str) {
            Some("service_account") => {
                use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
                let pem = json
                    .get("private_key")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if PrivateKeyDer::from_pem_slice(pem.as_bytes()).is_err() {
                    return Err(format!(
                        "{}: private_key is not a PEM private key",
                        path.display()
                    ));
                }
                &["client_email"]
            }
            Some("external_account") => &[
                "audience",
                "subject_token_type",
                "token_url",
                "credential_source",
            ],
            other => {
                return Err(format!(
                    "{}: type {} is not supported (service_account or external_account)",
                    path.display(),
                    other.map_or_else(|| "(none)".to_string(), |t| format!("{t:?}"))
                ))
            }
        };
        for field in needs {
            if json.get(field).is_none_or(Value::is_null) {
                return Err(format!("{}: {field} is missing", path.display()));
            }
        }
        Ok(())
    }

    /// New credentials, with an empty token cache (whose refresh task needs
    /// the runtime: built at the first token, not with the config).
    fn credentials(&self) -> Result<AccessTokenCredentials, String> {
        let Source::File(path) = self else {
            return AdcBuilder::default()
                .with_scopes([SCOPE])
                .build_access_token_credentials()
                .map_err(|e| format!("Application Default Credentials: {}", chain(&e)));
        };
        self.check()?;
        let json = read_file(path)?;
        let built = if json["type"] == "service_account" {
            service_account::Builder::new(json.clone())
                .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
                .build_access_token_credentials()
        } else {
            external_account::Builder::new(json.clone())
                .with_scopes([SCOPE])
                .build_access_token_credentials()
        };
        built.map_err(|e| format!("{}: {}", path.display(), withhold(&chain(&e), &json)))
    }
}

fn read_file(path: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|_| format!("{} is not a JSON credential file", path.display()))
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out.chars().take(300).collect()
}

/// `message` without any string of the credential file that could be a
/// secret (every value of 8 characters or more).
fn withhold(message: &str, file: &Value) -> String {
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) if s.len() >= 8 => out.push(s),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    strings(file, &mut found);
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

struct Current {
    credentials: AccessTokenCredentials,
    /// The last token they gave: a 401 with it rebuilds them.
    last: Option<Secret>,
}

struct Auth {
    source: Source,
    /// Built at the first token; dropped after a failed one, so that the
    /// next attempt starts afresh (the crate's cache gives up for good on an
    /// error it deems permanent).
    current: std::sync::Mutex<Option<Current>>,
}

fn auth_error(message: String) -> SendError {
    SendError::retryable(FailureReason::AuthError, message)
}

impl Auth {
    /// A token; `refused` is one the API refused, and when the credentials
    /// still hand it out they are rebuilt first (once for all concurrent
    /// deliveries refused with it).
    async fn token(&self, refused: Option<&Secret>) -> Result<Secret, SendError> {
        let credentials = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let stale = |c: &Current| matches!((refused, &c.last), (Some(r), Some(l)) if r.expose() == l.expose());
            match current.as_ref().filter(|c| !stale(c)) {
                Some(c) => c.credentials.clone(),
                None => {
                    let credentials = self.source.credentials().map_err(auth_error)?;
                    *current = Some(Current {
                        credentials: credentials.clone(),
                        last: None,
                    });
                    credentials
                }
            }
        };
        let answer = tokio::time::timeout(TOKEN_TIMEOUT, credentials.access_token()).await;
        if !matches!(answer, Ok(Ok(_))) {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        let token = match answer {
            Err(_) => {
                return Err(SendError::retryable(
                    FailureReason::Timeout,
                    format!(
                        "no Google access token from {} within {}s",
                        self.source.describe(),
                        TOKEN_TIMEOUT.as_secs()
                    ),
                ))
            }
            Ok(Err(e)) => {
                let reason = if e.is_transient() {
                    FailureReason::Connect
                } else {
                    FailureReason::AuthError
                };
                return Err(SendError::retryable(
                    reason,
                    format!(
                        "no Google access token from {}: {}",
                        self.source.describe(),
                        chain(&e)
                    ),
                ));
            }
            Ok(Ok(t)) => Secret::new(t.token),
        };
        if let Some(c) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            c.last = Some(token.clone());
        }
        Ok(token)
    }
}

pub struct GoogleScc {
    source_id: String,
    endpoint: String,
    ui_endpoint: String,
    clusters: Arc<ClusterMetadata>,
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
            clusters: ctx.clusters.clone(),
            client: client?,
            auth: Auth {
                source,
                current: std::sync::Mutex::new(None),
            },
        }))
    }
}

impl GoogleScc {
    fn finding(&self, event: &Event, now: chrono::DateTime<chrono::Utc>) -> Result<Value, String> {
        let Event::Alert(a) = event else {
            return Err("Cloud SCC takes no audit messages".into());
        };
        let a = &a.fields;
        let meta = self.clusters.get(scc::cluster_id(a), a.cluster_name());
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
                refused = Some(token);
                continue;
            }
            return Ok(resp);
        }
    }

    /// Creates or updates the finding.
    async fn patch(&self, name: &str, body: &[u8]) -> Result<(), SendError> {
        let url = format!(
            "{}/v1/{name}?updateMask={}",
            self.endpoint,
            scc::UPDATE_MASK
        );
        let resp = self.call(reqwest::Method::PATCH, &url, body).await?;
        let status = resp.status().as_u16();
        let mut outcome = http::status_outcome(resp.status(), resp.headers(), &self.target);
        if let Err(e) = &mut outcome {
            // Credentials, permissions and a source not there (yet) can be
            // fixed without changing the finding: park. A 400 is this
            // finding: dead-letter it.
            if e.reason == FailureReason::AuthError || status == 404 {
                e.retryable = true;
            }
            let detail = google_error(resp).await;
            if !detail.is_empty() {
                e.message = format!("{}: {detail}", e.message);
            }
        }
        outcome
    }

    /// Whether the credentials may create and update findings in the source.
    async fn check_permission(&self) -> Result<String, SendError> {
        let url = format!("{}/v1/{}:testIamPermissions", self.endpoint, self.source_id);
        let body = serde_json::to_vec(&serde_json::json!({ "permissions": [PERMISSION] }))
            .unwrap_or_default();
        let resp = self.call(reqwest::Method::POST, &url, &body).await?;
        if !resp.status().is_success() {
            let mut e = http::status_outcome(resp.status(), resp.headers(), &self.target)
                .err()
                .unwrap_or_else(|| SendError::permanent(FailureReason::ClientError, "?"));
            let detail = google_error(resp).await;
            if !detail.is_empty() {
                e.message = format!("{}: {detail}", e.message);
            }
            return Err(e);
        }
        let answer: Value = serde_json::from_slice(&http::read_limited(resp, MAX_RESPONSE).await)
            .unwrap_or_default();
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
        Ok(format!(
            "{} lets these credentials ({}) create and update findings in {}",
            self.target,
            self.auth.source.describe(),
            self.source_id
        ))
    }
}

/// Google's error message (`{"error": {"message": …}}`), cut short.
async fn google_error(resp: reqwest::Response) -> String {
    let body = http::read_limited(resp, MAX_RESPONSE).await;
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
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
            self.patch(&format!("{}/findings/{id}", self.source_id), payload)
                .await
        })
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
    fn withheld_strings_of_the_credential_file_never_reach_a_message() {
        let file = serde_json::json!({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAABBBBCCCCDDDDEEEE\n-----END PRIVATE KEY-----", "n": 5, "short": "abc"});
        assert_eq!(
            withhold("bad key AAAABBBBCCCCDDDDEEEE and abc", &file),
            "bad key (withheld) and abc"
        );
    }
}
