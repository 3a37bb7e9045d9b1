//! Microsoft Sentinel through the Azure Monitor Logs Ingestion API
//! (central-compat §2.13): each alert or audit message as Central's record
//! `[{"msg": …}]`, posted to a data collection rule's stream with an Entra ID
//! token for `https://monitor.azure.com`.
//!
//! Credentials as Central tries them: workload identity (a federated token
//! file, `AZURE_FEDERATED_TOKEN_FILE`, re-read for every token), then a
//! client certificate (a JWT assertion signed with its key), then a client
//! secret; the OAuth2 client-credentials exchange is the `oauth2` crate's and
//! the assertion is signed by `jsonwebtoken`. Tokens are cached until five
//! minutes before they expire; a 401/403 renews the token once, then parks.
//! Concurrent records for one stream share a call up to the API's 1 MB.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::batch::{BatchLimits, Batcher, PostBatch};
use super::http::{self, TlsSettings};
use super::{BuildContext, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, read_secret, redact_url, Dur, Errors, Secret};
use crate::formats::sentinel;
use crate::model::Event;

const SCOPE: &str = "https://monitor.azure.com//.default";
const API_VERSION: &str = "2023-01-01";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Tokens are renewed this long before they expire.
const RENEW_AHEAD: Duration = Duration::from_secs(300);

#[derive(Deserialize, Clone)]
pub struct Dcr {
    rule_id: String,
    stream: String,
}

#[derive(Deserialize)]
pub struct Settings {
    /// The data collection endpoint (`https://<dce>.ingest.monitor.azure.com`).
    endpoint: String,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    /// PEM certificate and its PKCS#8 (or PKCS#1) RSA key.
    #[serde(default)]
    client_certificate_file: Option<PathBuf>,
    #[serde(default)]
    client_key_file: Option<PathBuf>,
    /// Workload identity: tenant, client and token file from `AZURE_*`
    /// unless given here.
    #[serde(default)]
    workload_identity: bool,
    #[serde(default)]
    federated_token_file: Option<PathBuf>,
    /// Entra ID's host (`AZURE_AUTHORITY_HOST`, else the public cloud).
    #[serde(default)]
    authority_host: Option<String>,
    #[serde(default)]
    alert_dcr: Option<Dcr>,
    #[serde(default)]
    audit_dcr: Option<Dcr>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
    #[serde(default = "default_linger")]
    batch_linger: Dur,
}

fn default_linger() -> Dur {
    Dur(Duration::from_millis(20))
}

/// How herald proves who it is to Entra ID.
enum Credential {
    Secret(Secret),
    /// The certificate's SHA-1 thumbprint (`x5t`) and its key.
    Certificate {
        x5t: String,
        key: Box<jsonwebtoken::EncodingKey>,
    },
    /// A federated token file, read for every exchange (it rotates).
    Federated(PathBuf),
}

struct Token {
    value: Secret,
    renew_at: Instant,
}

struct Auth {
    /// To the data collection endpoint.
    client: reqwest::Client,
    /// To Entra ID.
    entra: reqwest::Client,
    token_url: String,
    client_id: String,
    credential: Credential,
    cached: Mutex<Option<Token>>,
}

struct Stream {
    url: String,
    batcher: Batcher,
}

pub struct Sentinel {
    auth: Arc<Auth>,
    alerts: Option<Stream>,
    audits: Option<Stream>,
    target: String,
}

super::debug_target_only!(Sentinel);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

fn certificate(cert: &PathBuf, key: &PathBuf, path: &str, errs: &mut Errors) -> Option<Credential> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use sha1::Digest;
    let der = match CertificateDer::from_pem_file(cert) {
        Ok(d) => d,
        Err(e) => {
            errs.push(
                &join(path, "client_certificate_file"),
                format!("cannot read a PEM certificate from {}: {e}", cert.display()),
            );
            return None;
        }
    };
    let pem = match std::fs::read(key) {
        Ok(p) => p,
        Err(e) => {
            errs.push(
                &join(path, "client_key_file"),
                format!("cannot read {}: {e}", key.display()),
            );
            return None;
        }
    };
    let key = match jsonwebtoken::EncodingKey::from_rsa_pem(&pem) {
        Ok(k) => k,
        Err(_) => {
            errs.push(
                &join(path, "client_key_file"),
                "must be an RSA private key in PEM (PKCS#8 or PKCS#1)",
            );
            return None;
        }
    };
    use base64::Engine;
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
    Some(Credential::Certificate {
        x5t,
        key: Box::new(key),
    })
}

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let endpoint = self.endpoint.trim_end_matches('/').to_string();
        match reqwest::Url::parse(&endpoint) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => errs.push(&join(path, "endpoint"), "must be an http(s) URL"),
        }
        let wi = self.workload_identity;
        let tenant = self
            .tenant_id
            .clone()
            .or_else(|| wi.then(|| env("AZURE_TENANT_ID")).flatten());
        let client_id = self
            .client_id
            .clone()
            .or_else(|| wi.then(|| env("AZURE_CLIENT_ID")).flatten());
        match &tenant {
            Some(t) if valid_id(t) => {}
            Some(_) => errs.push(&join(path, "tenant_id"), "must be a tenant id or domain"),
            None => errs.push(
                &join(path, "tenant_id"),
                "is required (or AZURE_TENANT_ID with workload_identity)",
            ),
        }
        if client_id.is_none() {
            errs.push(
                &join(path, "client_id"),
                "is required (or AZURE_CLIENT_ID with workload_identity)",
            );
        }
        let secret = read_secret(
            &self.client_secret,
            &self.client_secret_file,
            &join(path, "client_secret"),
            errs,
        );
        // Central's order: workload identity, then a certificate, then a secret.
        let credential = if wi {
            match self
                .federated_token_file
                .clone()
                .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
            {
                Some(f) => Some(Credential::Federated(f)),
                None => {
                    errs.push(
                        &join(path, "federated_token_file"),
                        "is required with workload_identity (or AZURE_FEDERATED_TOKEN_FILE)",
                    );
                    None
                }
            }
        } else {
            match (&self.client_certificate_file, &self.client_key_file, secret) {
                (Some(c), Some(k), _) => certificate(c, k, path, errs),
                (Some(_), None, _) | (None, Some(_), _) => {
                    errs.push(
                        &join(path, "client_key_file"),
                        "client_certificate_file and client_key_file must be given together",
                    );
                    None
                }
                (None, None, Some(s)) => Some(Credential::Secret(s)),
                (None, None, None) => {
                    errs.push(
                        &join(path, "client_secret"),
                        "give a client secret, a client certificate or workload_identity = true",
                    );
                    None
                }
            }
        };
        for (name, dcr) in [
            ("alert_dcr", &self.alert_dcr),
            ("audit_dcr", &self.audit_dcr),
        ] {
            if let Some(d) = dcr {
                if !d.rule_id.starts_with("dcr-") || !valid_id(&d.rule_id) {
                    errs.push(
                        &join(path, &format!("{name}.rule_id")),
                        "must be a DCR immutable id (dcr-…)",
                    );
                }
                if !d.stream.starts_with("Custom-") || !valid_id(&d.stream) {
                    errs.push(
                        &join(path, &format!("{name}.stream")),
                        "must be a stream name (Custom-…)",
                    );
                }
            }
        }
        if self.alert_dcr.is_none() && self.audit_dcr.is_none() {
            errs.push(&join(path, "alert_dcr"), "set alert_dcr, audit_dcr or both");
        }
        let authority = self
            .authority_host
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
        let authority = authority.trim_end_matches('/').to_string();
        if !matches!(reqwest::Url::parse(&authority), Ok(u) if u.scheme() == "https" || u.scheme() == "http")
        {
            errs.push(&join(path, "authority_host"), "must be an http(s) URL");
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        // Entra gets the long-lived credential: its certificate is always
        // verified, whatever skip_tls_verify says for the endpoint.
        let entra_tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: false,
        };
        let entra = http::client(entra_tls, ctx.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        let client = client?;
        let auth = Arc::new(Auth {
            entra: entra?,
            client: client.clone(),
            token_url: format!("{authority}/{}/oauth2/v2.0/token", tenant?),
            client_id: client_id?,
            credential: credential?,
            cached: Mutex::new(None),
        });
        let stream = |dcr: &Option<Dcr>| {
            dcr.as_ref().map(|d| {
                let url = format!(
                    "{endpoint}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
                    d.rule_id, d.stream
                );
                let (auth, url2) = (auth.clone(), url.clone());
                let post: PostBatch = Arc::new(move |records: Vec<Vec<u8>>| {
                    let (auth, url) = (auth.clone(), url2.clone());
                    Box::pin(async move {
                        let n = records.len();
                        let result = auth.upload(&url, join_records(records)).await;
                        vec![result; n]
                    })
                });
                Stream {
                    url,
                    batcher: Batcher::new(
                        BatchLimits {
                            items: 500,
                            bytes: sentinel::MAX_BODY_BYTES / 2,
                            linger: self.batch_linger.0,
                        },
                        post,
                    ),
                }
            })
        };
        Some(Arc::new(Sentinel {
            alerts: stream(&self.alert_dcr),
            audits: stream(&self.audit_dcr),
            target: redact_url(&endpoint),
            auth,
        }))
    }
}

/// Records `[a]`, `[b]` as one array `[a,b]`.
fn join_records(records: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(Vec::len).sum::<usize>() + 2);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let inner = r.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]"));
        out.extend_from_slice(inner.unwrap_or(r));
    }
    out.push(b']');
    out
}

fn auth_error(message: String) -> SendError {
    SendError::retryable(FailureReason::AuthError, message)
}

impl Auth {
    /// The client assertion: the federated token as read now, or a JWT for
    /// the certificate valid ten minutes.
    fn assertion(&self) -> Result<Option<String>, SendError> {
        match &self.credential {
            Credential::Secret(_) => Ok(None),
            Credential::Federated(f) => std::fs::read_to_string(f)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| {
                    auth_error(format!(
                        "cannot read the federated token file {}: {e}",
                        f.display()
                    ))
                }),
            Credential::Certificate { x5t, key } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.x5t = Some(x5t.clone());
                let jti: String = (0..16)
                    .map(|_| format!("{:02x}", fastrand::u8(..)))
                    .collect();
                let claims = serde_json::json!({
                    "aud": self.token_url, "iss": self.client_id, "sub": self.client_id,
                    "jti": jti, "nbf": now, "iat": now, "exp": now + 600,
                });
                jsonwebtoken::encode(&header, &claims, key)
                    .map(Some)
                    .map_err(|e| auth_error(format!("cannot sign the client assertion: {e}")))
            }
        }
    }

    /// A cached token, or a new one when it is due or is `refused` (a token
    /// the service refused; concurrent calls refused with the same token
    /// renew it once).
    async fn token(&self, refused: Option<&Secret>) -> Result<Secret, SendError> {
        let mut cached = self.cached.lock().await;
        let usable = |t: &&Token| {
            Instant::now() < t.renew_at && refused.is_none_or(|r| r.expose() != t.value.expose())
        };
        if let Some(t) = cached.as_ref().filter(usable) {
            return Ok(t.value.clone());
        }
        let token_url = TokenUrl::new(self.token_url.clone())
            .map_err(|e| auth_error(format!("bad token URL: {e}")))?;
        let mut client = oauth2::basic::BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_token_uri(token_url)
            .set_auth_type(AuthType::RequestBody);
        if let Credential::Secret(s) = &self.credential {
            client = client.set_client_secret(ClientSecret::new(s.expose().to_string()));
        }
        let mut request = client
            .exchange_client_credentials()
            .add_scope(Scope::new(SCOPE.to_string()));
        let assertion = self.assertion()?;
        if let Some(a) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", a.clone());
        }
        let target = redact_url(&self.token_url);
        let answer = request
            .request_async(&self.entra)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    auth_error(format!("{target} refused the token request: {}", r.error()))
                }
                RequestTokenError::Request(e) => SendError::retryable(
                    FailureReason::Connect,
                    format!("token request to {target} failed: {e}"),
                ),
                RequestTokenError::Parse(_, _) => SendError::retryable(
                    FailureReason::ServerError,
                    format!("{target} answered an unreadable token response"),
                ),
                RequestTokenError::Other(e) => {
                    auth_error(format!("token request to {target}: {e}"))
                }
            })?;
        let lifetime = answer
            .expires_in()
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(24 * 3600));
        let token = Token {
            value: Secret::new(answer.access_token().secret().clone()),
            renew_at: Instant::now() + lifetime.saturating_sub(RENEW_AHEAD),
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn post(
        &self,
        url: &str,
        body: &[u8],
        refused: Option<&Secret>,
    ) -> Result<(Secret, reqwest::Response), SendError> {
        let token = self.token(refused).await?;
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(token.expose())
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| http::transport_error(&e, &redact_url(url)))?;
        Ok((token, resp))
    }

    /// Posts records to a stream; a 401/403 renews the token and tries once more.
    async fn upload(&self, url: &str, body: Vec<u8>) -> Result<(), SendError> {
        let target = redact_url(url);
        if body.len() > sentinel::MAX_BODY_BYTES {
            return Err(SendError::permanent(
                FailureReason::ClientError,
                format!(
                    "{} bytes is more than the Logs Ingestion API takes in one call ({})",
                    body.len(),
                    sentinel::MAX_BODY_BYTES
                ),
            ));
        }
        let (token, mut resp) = self.post(url, &body, None).await?;
        // 401: the token (expired, revoked); 403 is the role assignment,
        // which a new token does not change.
        if resp.status().as_u16() == 401 {
            resp = self.post(url, &body, Some(&token)).await?.1;
        }
        let status = resp.status().as_u16();
        let mut outcome = http::status_outcome(resp.status(), resp.headers(), &target);
        if let Err(e) = &mut outcome {
            // Credentials and a rule or stream not there yet (a new data
            // collection rule takes minutes to reach the endpoint) can be
            // fixed: park. herald's bodies are valid JSON, so a 400 is a
            // rule whose schema does not fit, fixed the same way.
            if e.reason == FailureReason::AuthError || matches!(status, 400 | 404) {
                e.retryable = true;
            }
        }
        outcome
    }
}

impl Sentinel {
    fn stream(&self, event: &Event) -> Result<&Stream, String> {
        match event {
            Event::Alert(_) => self.alerts.as_ref().ok_or_else(|| {
                "alert_dcr is not set: alerts do not go to this Sentinel destination".to_string()
            }),
            Event::Audit(_) => self.audits.as_ref().ok_or_else(|| {
                "audit_dcr is not set: audit messages do not go to this Sentinel destination"
                    .to_string()
            }),
        }
    }
}

impl Notifier for Sentinel {
    fn refuses(&self, event: &Event) -> Option<String> {
        self.stream(event).err()
    }

    fn render(
        &self,
        event: &Event,
        _target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        self.stream(event)?;
        sentinel::body(event)
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let stream = self
                .stream(event)
                .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
            if payload.len() > sentinel::MAX_BODY_BYTES / 2 {
                // Alone: a batch would only make it larger.
                return self.auth.upload(&stream.url, payload.to_vec()).await;
            }
            stream.batcher.submit(payload.to_vec()).await
        })
    }

    /// A delivery waits for its batch's linger, a token and the call: its
    /// own timeout must not fire before the call's, which counts once.
    fn attempt_timeout(&self, timeout: Duration) -> Duration {
        timeout.saturating_mul(3)
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(&self.target, "the Entra ID token")
            .or_else(|| http::cleartext_warning(&self.auth.token_url, "the client credential"))
    }

    /// Central's test records, to each stream that is set.
    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let mut sent = Vec::new();
            for (stream, raw, what) in [
                (&self.audits, sentinel::test_audit(), "audit"),
                (&self.alerts, sentinel::test_alert(), "alert"),
            ] {
                if let Some(s) = stream {
                    let body = sentinel::record(raw)
                        .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
                    self.auth.upload(&s.url, body).await?;
                    sent.push(what);
                }
            }
            Ok(format!(
                "{} took the test {} record(s)",
                self.target,
                sent.join(" and ")
            ))
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            self.auth.token(None).await?;
            Ok(format!(
                "an Entra ID token for Azure Monitor from {} ({})",
                redact_url(&self.auth.token_url),
                match self.auth.credential {
                    Credential::Secret(_) => "client secret",
                    Credential::Certificate { .. } => "client certificate",
                    Credential::Federated(_) => "workload identity",
                }
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifiers::parse_one;

    fn errors(extra: &str) -> Vec<String> {
        parse_one(&format!(
            "[[destinations]]\nname = \"s\"\ntype = \"microsoft_sentinel\"\n{extra}"
        ))
        .err()
        .unwrap_or_default()
    }

    #[test]
    fn settings_name_the_wrong_field() {
        let ok = "endpoint = \"https://dce.ingest.monitor.azure.com\"\ntenant_id = \"t-1\"\nclient_id = \"c-1\"\nclient_secret = \"s\"\nalert_dcr = { rule_id = \"dcr-123\", stream = \"Custom-Alerts\" }\n";
        assert_eq!(errors(ok), Vec::<String>::new());
        assert_eq!(
            errors("endpoint = \"ftp://x\"\nalert_dcr = { rule_id = \"123\", stream = \"Alerts\" }\n"),
            vec![
                "destinations[0].endpoint: must be an http(s) URL",
                "destinations[0].tenant_id: is required (or AZURE_TENANT_ID with workload_identity)",
                "destinations[0].client_id: is required (or AZURE_CLIENT_ID with workload_identity)",
                "destinations[0].client_secret: give a client secret, a client certificate or workload_identity = true",
                "destinations[0].alert_dcr.rule_id: must be a DCR immutable id (dcr-…)",
                "destinations[0].alert_dcr.stream: must be a stream name (Custom-…)",
            ]
        );
        assert_eq!(
            errors("endpoint = \"https://d\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_certificate_file = \"/nonexistent.pem\"\n"),
            vec![
                "destinations[0].client_key_file: client_certificate_file and client_key_file must be given together",
                "destinations[0].alert_dcr: set alert_dcr, audit_dcr or both",
            ]
        );
    }

    #[test]
    fn records_join_into_one_array() {
        assert_eq!(
            join_records(vec![b"[{\"msg\":1}]".to_vec(), b"[{\"msg\":2}]".to_vec()]),
            b"[{\"msg\":1},{\"msg\":2}]".to_vec()
        );
    }
}
