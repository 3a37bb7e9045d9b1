//! AWS Security Hub (central-compat §2.12): each alert as an ASFF finding,
//! imported with `BatchImportFindings` and signed with SigV4.
//!
//! Credentials are static keys from the config, or the AWS SDK's default
//! chain (environment, web identity token file as on EKS and OpenShift with
//! an OIDC provider, profile, container and instance metadata), optionally
//! assuming `role_arn`. They are cached until five minutes before they
//! expire; a 401/403 refreshes them once before it counts as `auth_error`.
//!
//! Unlike Central, nothing waits in memory: a finding is imported while its
//! delivery runs, so notify-once, parking and dead letters hold per alert,
//! and RESOLVED archives the finding.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::batch::{BatchLimits, Batcher, PostBatch};
use super::http::{self, TlsSettings};
use super::{BuildContext, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, read_secret, redact_url, Dur, Errors, Secret};
use crate::formats::securityhub;
use crate::model::Event;

#[derive(Deserialize)]
pub struct Settings {
    region: String,
    account_id: String,
    /// Static keys; without them, the default AWS credential chain.
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<Secret>,
    #[serde(default)]
    secret_access_key_file: Option<PathBuf>,
    /// A role to assume with the credentials above.
    #[serde(default)]
    role_arn: Option<String>,
    /// The Security Hub endpoint (default `https://securityhub.<region>.amazonaws.com`).
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
    /// Findings per `BatchImportFindings` call (1..100; 1: no batching).
    /// Batches form from concurrent deliveries, so raise `workers` with it.
    #[serde(default = "default_batch_findings")]
    batch_max_findings: usize,
    #[serde(default = "default_linger")]
    batch_linger: Dur,
}

fn default_batch_findings() -> usize {
    MAX_BATCH
}
fn default_linger() -> Dur {
    Dur(Duration::from_millis(20))
}

/// What one `BatchImportFindings` call may carry (the API's limits: 100
/// findings, 6 MB; room left for the wrapper).
const MAX_BATCH: usize = 100;
const MAX_BATCH_BYTES: usize = 5_000_000;

/// Where credentials come from.
enum Source {
    Static(Credentials),
    /// The default chain, or `role_arn` assumed with the static keys or the
    /// chain; built on first use (the SDK's loaders are async).
    Chain {
        region: String,
        keys: Option<Credentials>,
        role_arn: Option<String>,
        provider: tokio::sync::OnceCell<SharedCredentialsProvider>,
    },
}

pub struct SecurityHub {
    hub: Arc<Hub>,
    /// Joins concurrent findings into one call.
    batcher: Option<Batcher>,
    target: String,
}

super::debug_target_only!(SecurityHub);

/// The account's endpoint, credentials and pacing, shared with the batcher.
struct Hub {
    client: reqwest::Client,
    region: String,
    account_id: String,
    ui_endpoint: String,
    /// `…/findings/import`.
    url: String,
    target: String,
    source: Source,
    cached: Mutex<Option<Credentials>>,
    /// Security Hub's documented limit: 10 requests a second, bursts of 30.
    pace: governor::DefaultDirectRateLimiter,
}

/// Credentials are renewed this long before they expire.
const RENEW_AHEAD: Duration = Duration::from_secs(300);
/// The longest wait for the credential chain (STS, instance metadata).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(20);

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        if !valid_region(&self.region) {
            errs.push(
                &join(path, "region"),
                "must be an AWS region such as eu-west-1",
            );
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            errs.push(&join(path, "account_id"), "must be 12 digits");
        }
        if ctx.audit {
            errs.push(
                &join(path, "audit"),
                "AWS Security Hub takes no audit messages",
            );
        }
        let secret = read_secret(
            &self.secret_access_key,
            &self.secret_access_key_file,
            &join(path, "secret_access_key"),
            errs,
        );
        let source =
            match (&self.access_key_id, secret) {
                (Some(id), Some(secret)) if !id.is_empty() => Some(Source::Static(
                    Credentials::new(id, secret.expose(), None, None, "herald config"),
                )),
                (None, None) => Some(Source::Chain {
                    region: self.region.clone(),
                    keys: None,
                    role_arn: None,
                    provider: Default::default(),
                }),
                (Some(_), _) => {
                    errs.push(
                        &join(path, "secret_access_key"),
                        "is required with access_key_id (inline or as secret_access_key_file)",
                    );
                    None
                }
                (None, Some(_)) => {
                    errs.push(
                        &join(path, "access_key_id"),
                        "is required with secret_access_key",
                    );
                    None
                }
            };
        let source = match (source, self.role_arn) {
            (Some(_), Some(arn)) if !arn.starts_with("arn:") => {
                errs.push(&join(path, "role_arn"), "must be an IAM role ARN (arn:…)");
                None
            }
            (Some(Source::Static(c)), Some(arn)) => Some(Source::Chain {
                region: self.region.clone(),
                keys: Some(c),
                role_arn: Some(arn),
                provider: Default::default(),
            }),
            (
                Some(Source::Chain {
                    region, provider, ..
                }),
                Some(arn),
            ) => Some(Source::Chain {
                region,
                keys: None,
                role_arn: Some(arn),
                provider,
            }),
            (s, None) => s,
            (None, Some(_)) => None,
        };
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://securityhub.{}.amazonaws.com", self.region));
        let url = match reqwest::Url::parse(&endpoint) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                format!("{}/findings/import", endpoint.trim_end_matches('/'))
            }
            // A bad region is reported once, above.
            _ if self.endpoint.is_none() => String::new(),
            _ => {
                errs.push(&join(path, "endpoint"), "must be an http(s) URL");
                String::new()
            }
        };
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        if !(1..=MAX_BATCH).contains(&self.batch_max_findings) {
            errs.push(
                &join(path, "batch_max_findings"),
                format!("must be 1..{MAX_BATCH}"),
            );
        }
        if errs.list.len() > before {
            return None;
        }
        let target = redact_url(&url);
        let hub = Arc::new(Hub {
            client: client?,
            target: target.clone(),
            url,
            region: self.region,
            account_id: self.account_id,
            ui_endpoint: ctx.ui_endpoint.clone(),
            source: source?,
            cached: Mutex::new(None),
            pace: governor::RateLimiter::direct(
                governor::Quota::per_second(NonZeroU32::new(10)?).allow_burst(NonZeroU32::new(30)?),
            ),
        });
        let batcher = (self.batch_max_findings > 1).then(|| {
            let limits = BatchLimits {
                items: self.batch_max_findings,
                bytes: MAX_BATCH_BYTES,
                linger: self.batch_linger.0,
            };
            let hub = hub.clone();
            let post: PostBatch = Arc::new(move |bodies: Vec<Vec<u8>>| {
                let hub = hub.clone();
                Box::pin(async move { hub.import_all(bodies).await })
            });
            Batcher::new(limits, post)
        });
        Some(Arc::new(SecurityHub {
            hub,
            batcher,
            target,
        }))
    }
}

/// Errors from the credential providers carry no secrets, but can be long;
/// the chain's own message names what it tried.
fn auth_error(what: &str, e: impl std::fmt::Display) -> SendError {
    SendError::retryable(FailureReason::AuthError, format!("{what}: {e}"))
}

impl Hub {
    fn finding_target(&self) -> securityhub::Target<'_> {
        securityhub::Target {
            account_id: &self.account_id,
            region: &self.region,
            ui_endpoint: &self.ui_endpoint,
        }
    }

    /// The SDK's provider: its default loader (which reads `AWS_*` settings
    /// such as `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN` and
    /// `AWS_ENDPOINT_URL_STS`) with rustls on ring, as the rest of herald.
    async fn provider(&self) -> Result<SharedCredentialsProvider, SendError> {
        let Source::Chain {
            region,
            keys,
            role_arn,
            provider,
        } = &self.source
        else {
            unreachable!("static keys need no provider");
        };
        provider
            .get_or_try_init(|| async {
                use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(http)
                    .region(aws_config::Region::new(region.clone()));
                if let Some(k) = keys {
                    loader = loader.credentials_provider(k.clone());
                }
                let conf = loader.load().await;
                match role_arn {
                    Some(arn) => Ok(SharedCredentialsProvider::new(
                        aws_config::sts::AssumeRoleProvider::builder(arn)
                            .session_name("herald")
                            .configure(&conf)
                            .build()
                            .await,
                    )),
                    None => conf.credentials_provider().ok_or_else(|| {
                        auth_error("no AWS credentials", "the default chain has no provider")
                    }),
                }
            })
            .await
            .cloned()
    }

    /// Cached credentials, renewed ahead of expiry or when `renew`.
    async fn credentials(&self, renew: bool) -> Result<Credentials, SendError> {
        if let Source::Static(c) = &self.source {
            return Ok(c.clone());
        }
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().filter(|c| {
            !renew
                && c.expiry()
                    .is_none_or(|t| t > SystemTime::now() + RENEW_AHEAD)
        });
        if let Some(c) = fresh {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(CREDENTIALS_TIMEOUT, async {
            self.provider()
                .await?
                .provide_credentials()
                .await
                .map_err(|e| auth_error("no AWS credentials", super::error_chain(&e)))
        })
        .await
        .map_err(|_| {
            auth_error(
                "no AWS credentials",
                format!("the credential chain did not answer within {CREDENTIALS_TIMEOUT:?}"),
            )
        })??;
        *cached = Some(c.clone());
        Ok(c)
    }

    async fn import(&self, body: &[u8], renew: bool) -> Result<reqwest::Response, SendError> {
        let creds = self.credentials(renew).await?;
        self.pace.until_ready().await;
        let identity = creds.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("securityhub")
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| auth_error("cannot sign", e))?
            .into();
        let headers = [("content-type", "application/json")];
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            &self.url,
            headers.iter().copied(),
            aws_sigv4::http_request::SignableBody::Bytes(body),
        )
        .map_err(|e| auth_error("cannot sign", e))?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| auth_error("cannot sign", e))?
            .into_parts();
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
        req.body(body.to_vec())
            .send()
            .await
            .map_err(|e| http::transport_error(&e, &self.target))
    }

    /// Imports the body; a 401/403 renews the credentials and tries once more.
    async fn send_body(&self, body: &[u8]) -> Result<ImportResult, SendError> {
        let mut resp = self.import(body, false).await?;
        if matches!(resp.status().as_u16(), 401 | 403) && !matches!(self.source, Source::Static(_))
        {
            resp = self.import(body, true).await?;
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let mut e = match http::status_outcome(status, &headers, &self.target) {
                Err(e) => e,
                Ok(()) => unreachable!("not a success"),
            };
            let kind = aws_error_type(&headers, &text);
            if !kind.is_empty() {
                e.message = format!("{} ({kind})", e.message);
            }
            if e.reason == FailureReason::AuthError {
                // Credentials can be fixed (a policy attached, a key rotated):
                // park rather than dead-letter.
                e.retryable = true;
            }
            return Err(e);
        }
        serde_json::from_str(&text).map_err(|e| {
            SendError::retryable(
                FailureReason::ServerError,
                format!(
                    "{} answered an unreadable BatchImportFindings result: {e}",
                    self.target
                ),
            )
        })
    }
}

impl Hub {
    /// Imports the findings of several rendered bodies (one finding each) in
    /// as few calls as their ids allow (an id twice waits for the next call,
    /// so its versions arrive in order); one outcome per body.
    async fn import_all(&self, bodies: Vec<Vec<u8>>) -> Vec<Result<(), SendError>> {
        let mut outcomes: Vec<Option<Result<(), SendError>>> = vec![None; bodies.len()];
        let mut findings = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            match single_finding(body) {
                Some(f) => findings.push((i, f)),
                None => {
                    outcomes[i] = Some(Err(SendError::permanent(
                        FailureReason::Render,
                        "not a BatchImportFindings body of one finding",
                    )))
                }
            }
        }
        while !findings.is_empty() {
            let mut ids = std::collections::HashSet::new();
            let (call, later): (Vec<_>, Vec<_>) = findings
                .into_iter()
                .partition(|(_, f)| ids.insert(finding_id(f).to_string()));
            let body =
                securityhub::import_body(&call.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>());
            for (i, outcome) in self.import_call(body, &call).await {
                outcomes[i] = Some(outcome);
            }
            findings = later;
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(SendError::retryable(
                        FailureReason::ServerError,
                        "no outcome",
                    ))
                })
            })
            .collect()
    }
}

impl Hub {
    /// One call for `call` (bodies' indexes and findings, ids distinct); a
    /// call refused as a whole for good (too large, one finding the service
    /// cannot parse) is halved, both halves at once, until what is wrong is
    /// alone: about 2·log2(n) more calls for one bad finding of n.
    fn import_call<'a>(
        &'a self,
        body: Vec<u8>,
        call: &'a [(usize, serde_json::Value)],
    ) -> BoxFuture<'a, Vec<(usize, Result<(), SendError>)>> {
        Box::pin(async move {
            match self.send_body(&body).await {
                Err(e) if !e.retryable && call.len() > 1 => {
                    let (left, right) = call.split_at(call.len() / 2);
                    let halves = [left, right].map(|half| {
                        let body = securityhub::import_body(
                            &half.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
                        );
                        self.import_call(body, half)
                    });
                    let [l, r] = halves;
                    let (mut l, r) = futures::join!(l, r);
                    l.extend(r);
                    l
                }
                answer => call
                    .iter()
                    .map(|(i, f)| {
                        let outcome = match &answer {
                            Ok(r) => r.outcome_of(finding_id(f), &self.target),
                            Err(e) => Err(e.clone()),
                        };
                        (*i, outcome)
                    })
                    .collect(),
            }
        })
    }
}

/// The one finding of a rendered body.
fn single_finding(body: &[u8]) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.get_mut("Findings")?.as_array_mut()?.as_mut_slice() {
        [f] => Some(f.take()),
        _ => None,
    }
}

fn finding_id(f: &serde_json::Value) -> &str {
    f.get("Id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// The AWS error type of a failed call (`x-amzn-ErrorType` or the body's
/// `__type`), without its namespace.
fn aws_error_type(headers: &reqwest::header::HeaderMap, body: &str) -> String {
    let raw = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("__type")?.as_str().map(str::to_string))
        })
        .unwrap_or_default();
    let name = raw.split(':').next().unwrap_or("");
    let name = name.rsplit('#').next().unwrap_or("");
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportResult {
    #[serde(default)]
    failed_count: u64,
    #[serde(default)]
    failed_findings: Vec<FailedFinding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FailedFinding {
    #[serde(default)]
    id: String,
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    error_message: String,
}

impl ImportResult {
    /// Whether the service took the finding `id`: invalid input is
    /// permanent, anything else (throttling, an internal error) is tried
    /// again. A failure count without the failed ids fails every finding.
    fn outcome_of(&self, id: &str, target: &str) -> Result<(), SendError> {
        if self.failed_count == 0 && self.failed_findings.is_empty() {
            return Ok(());
        }
        let f = self.failed_findings.iter().find(|f| f.id == id);
        if f.is_none() && !self.failed_findings.is_empty() {
            return Ok(());
        }
        let code = f.map(|f| f.error_code.as_str()).unwrap_or("");
        let message = format!(
            "{target} refused the finding: {code} {}",
            f.map(|f| f.error_message.as_str()).unwrap_or("")
        )
        .trim_end()
        .to_string();
        let lower = code.to_ascii_lowercase();
        Err(
            if lower.contains("invalid") || lower.contains("validation") {
                SendError::permanent(FailureReason::ClientError, message)
            } else if lower.contains("limit") || lower.contains("throttl") {
                SendError::retryable(FailureReason::RateLimited, message)
            } else if lower.contains("access") || lower.contains("denied") {
                SendError::retryable(FailureReason::AuthError, message)
            } else {
                SendError::retryable(FailureReason::ServerError, message)
            },
        )
    }
}

impl Notifier for SecurityHub {
    fn can_resolve(&self) -> bool {
        true
    }

    fn refuses(&self, event: &Event) -> Option<String> {
        match event {
            Event::Alert(a) => securityhub::supported(&a.fields).err().map(str::to_string),
            Event::Audit(_) => Some("AWS Security Hub takes no audit messages".into()),
        }
    }

    fn render(
        &self,
        event: &Event,
        _target: &Target,
        ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        let Event::Alert(a) = event else {
            return Err("AWS Security Hub takes no audit messages".into());
        };
        securityhub::supported(&a.fields)?;
        let t = self.hub.finding_target();
        Ok(securityhub::import_body(&[securityhub::finding(
            &a.fields, &t, ctx.now,
        )]))
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            match &self.batcher {
                Some(b) => b.submit(payload.to_vec()).await,
                None => self
                    .hub
                    .import_all(vec![payload.to_vec()])
                    .await
                    .pop()
                    .unwrap_or(Ok(())),
            }
        })
    }

    /// A delivery waits for its batch, the pace and, when a call is refused
    /// as a whole, the halving that finds the bad finding.
    fn attempt_timeout(&self, timeout: Duration) -> Duration {
        timeout * 3
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(
            &self.hub.url,
            "findings (signed with SigV4; the key itself is never sent)",
        )
    }

    /// Central's test: a finding for an example alert, imported, then
    /// archived so that it does not stay among the active findings.
    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let now = chrono::Utc::now();
            let id = format!("herald-test-{}", now.format("%Y%m%dT%H%M%S%.6fZ"));
            let t = self.hub.finding_target();
            for state in ["ACTIVE", "RESOLVED"] {
                let alert = securityhub::test_alert(&id, state);
                let body = securityhub::import_body(&[securityhub::finding(&alert, &t, now)]);
                self.hub
                    .send_body(&body)
                    .await?
                    .outcome_of(&id, &self.target)?;
            }
            Ok(format!(
                "{} imported the test finding {id} and archived it",
                self.target
            ))
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let c = self.hub.credentials(false).await?;
            let expiry = match c.expiry() {
                Some(t) => format!(", expiring at {}", humantime::format_rfc3339_seconds(t)),
                None => String::new(),
            };
            Ok(format!(
                "AWS credentials from {}{expiry}",
                match &self.hub.source {
                    Source::Static(_) => "the config (static keys)",
                    Source::Chain {
                        role_arn: Some(_), ..
                    } => "an assumed role",
                    Source::Chain { .. } => "the default AWS credential chain",
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
            "[[destinations]]\nname = \"sh\"\ntype = \"aws_security_hub\"\n{extra}"
        ))
        .err()
        .unwrap_or_default()
    }

    #[test]
    fn settings_name_the_wrong_field() {
        assert_eq!(
            errors("region = \"eu-west-1\"\naccount_id = \"123456789012\"\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            errors("region = \"EU west\"\naccount_id = \"12345\"\n"),
            vec![
                "destinations[0].region: must be an AWS region such as eu-west-1",
                "destinations[0].account_id: must be 12 digits"
            ]
        );
        assert_eq!(
            errors("region = \"eu-west-1\"\naccount_id = \"123456789012\"\naccess_key_id = \"AKIA\"\n"),
            vec!["destinations[0].secret_access_key: is required with access_key_id (inline or as secret_access_key_file)"]
        );
        assert_eq!(
            errors("region = \"eu-west-1\"\naccount_id = \"123456789012\"\nrole_arn = \"herald\"\nendpoint = \"ftp://x\"\n"),
            vec![
                "destinations[0].role_arn: must be an IAM role ARN (arn:…)",
                "destinations[0].endpoint: must be an http(s) URL"
            ]
        );
    }

    #[test]
    fn failed_findings_are_classified_by_error_code() {
        let r = |code: &str| ImportResult {
            failed_count: 1,
            failed_findings: vec![FailedFinding {
                id: "a".into(),
                error_code: code.into(),
                error_message: "m".into(),
            }],
        };
        assert!(r("InvalidInput").outcome_of("b", "t").is_ok());
        let e = r("InvalidInput").outcome_of("a", "t").unwrap_err();
        assert_eq!((e.reason, e.retryable), (FailureReason::ClientError, false));
        assert_eq!(e.message, "t refused the finding: InvalidInput m");
        let e = r("LimitExceeded").outcome_of("a", "t").unwrap_err();
        assert_eq!((e.reason, e.retryable), (FailureReason::RateLimited, true));
        let e = r("AccessDeniedException").outcome_of("a", "t").unwrap_err();
        assert_eq!((e.reason, e.retryable), (FailureReason::AuthError, true));
        let e = r("InternalException").outcome_of("a", "t").unwrap_err();
        assert_eq!((e.reason, e.retryable), (FailureReason::ServerError, true));
        let ok = ImportResult {
            failed_count: 0,
            failed_findings: vec![],
        };
        assert!(ok.outcome_of("a", "t").is_ok());
    }

    /// A Security Hub stand-in for one behaviour the real service has and
    /// moto lacks: a batch where some findings fail. It checks the SigV4
    /// headers are there, refuses ids starting with "bad" as InvalidInput,
    /// and records the ids of each call.
    async fn partial_hub() -> (String, Arc<std::sync::Mutex<Vec<Vec<String>>>>) {
        use axum::routing::post;
        let calls: Arc<std::sync::Mutex<Vec<Vec<String>>>> = Arc::default();
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/findings/import",
            post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    assert!(
                        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
                            && auth.contains("/us-east-1/securityhub/aws4_request"),
                        "{auth}"
                    );
                    assert!(headers.contains_key("x-amz-date"));
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let ids: Vec<String> = v["Findings"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f["Id"].as_str().unwrap().to_string())
                        .collect();
                    let failed: Vec<serde_json::Value> = ids
                        .iter()
                        .filter(|i| i.starts_with("bad"))
                        .map(|i| serde_json::json!({"Id": i, "ErrorCode": "InvalidInput", "ErrorMessage": "Finding must contain at least one resource"}))
                        .collect();
                    seen.lock().unwrap().push(ids.clone());
                    serde_json::json!({
                        "FailedCount": failed.len(),
                        "SuccessCount": ids.len() - failed.len(),
                        "FailedFindings": failed,
                    })
                    .to_string()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), calls)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_with_a_refused_finding_fails_only_that_delivery() {
        let (endpoint, calls) = partial_hub().await;
        let n = parse_one(&format!(
            "[[destinations]]\nname = \"sh\"\ntype = \"aws_security_hub\"\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"AKIDTEST\"\nsecret_access_key = \"s3cr3t\"\nbatch_linger = \"300ms\"\n"
        ))
        .unwrap();
        let ctx = RenderContext {
            now: chrono::Utc::now(),
        };
        // a1 twice: its second version waits for a call of its own.
        let ids = ["a1", "bad2", "a3", "a1", "a4"];
        let events: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let event = crate::model::test_event(&format!(
                    r#"{{"id":"{id}","policy":{{"name":"p"}},"deployment":{{"name":"d"}},"violations":[{{"message":"v{i}"}}]}}"#
                ));
                let body = n.render(&event, &Target::default(), &ctx).unwrap();
                (event, body)
            })
            .collect();
        let meta = SendMeta {
            idempotency_key: String::new(),
        };
        let target = Target::default();
        // join_all polls in order, so the batch receives them in order.
        let outcomes: Vec<_> = futures::future::join_all(
            events
                .iter()
                .map(|(event, body)| n.send(event, &target, body, &meta)),
        )
        .await
        .into_iter()
        .map(|r| r.map_err(|e| (e.reason, e.retryable, e.message)))
        .collect();
        let refused = Err((
            FailureReason::ClientError,
            false,
            format!("{endpoint} refused the finding: InvalidInput Finding must contain at least one resource"),
        ));
        assert_eq!(outcomes, vec![Ok(()), refused, Ok(()), Ok(()), Ok(())]);
        assert_eq!(
            *calls.lock().unwrap(),
            vec![
                vec!["a1".to_string(), "bad2".into(), "a3".into(), "a4".into()],
                vec!["a1".to_string()]
            ]
        );
    }

    #[test]
    fn error_types_lose_their_namespace_and_anything_odd() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(
            aws_error_type(
                &h,
                r#"{"__type":"com.amazonaws#InvalidAccessException","message":"x"}"#
            ),
            "InvalidAccessException"
        );
        h.insert(
            "x-amzn-errortype",
            "UnrecognizedClientException:http://internal.amazon.com/"
                .parse()
                .unwrap(),
        );
        assert_eq!(aws_error_type(&h, ""), "UnrecognizedClientException");
        assert_eq!(aws_error_type(&Default::default(), "<html>"), "");
    }
}
