//! Generic webhook (central-compat §2.3): the way to QRadar, ServiceNow and any JSON receiver.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use indexmap::IndexMap;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Deserialize;

use super::http::{self, Clients, TlsSettings};
use super::target::{self, Annotation, TargetKind};
use super::{BuildContext, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, read_secret, redact_url, Errors, Secret};
use crate::formats;
use crate::model::Event;

#[derive(Deserialize)]
pub struct Settings {
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// Added after `Content-Type`, as Central does; values may hold tokens.
    #[serde(default)]
    headers: IndexMap<String, Secret>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
    #[serde(default)]
    extra_fields: IndexMap<String, String>,
    /// `Idempotency-Key: <alert id>:<state>` (or the audit key) on each request.
    #[serde(default = "yes")]
    idempotency_key: bool,
    /// Also send RESOLVED alerts (once, after the alert was notified here).
    /// Central's generic notifier never sends them.
    #[serde(default)]
    send_resolved: bool,
    /// Route by annotation, as Slack does: a deployment (or namespace)
    /// annotated with this key sends its alerts to the URL in the annotation;
    /// `url` is the default.
    #[serde(default)]
    annotation_key: String,
    /// The URLs an annotation may name (`https://hooks.example.com/team-`,
    /// `https://*.example.com/`); none by default, so an annotation alone
    /// never sends alerts, credentials or headers anywhere else.
    #[serde(default)]
    allowed_targets: Vec<String>,
}

fn yes() -> bool {
    true
}

pub struct Webhook {
    clients: Clients,
    url: Secret,
    target: String,
    basic_auth: Option<(String, Secret)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    extra_fields: Vec<(String, String)>,
    idempotency_key: bool,
    send_resolved: bool,
    annotation: Option<Annotation>,
}

super::debug_target_only!(Webhook);

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let url = http::secret_url(&self.url, &self.url_file, path, errs);
        let password = read_secret(
            &self.password,
            &self.password_file,
            &join(path, "password"),
            errs,
        );
        let basic_auth = match (self.username.filter(|u| !u.is_empty()), password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                errs.push(&join(path, "password"), "is required when username is set");
                None
            }
            (None, Some(_)) => {
                errs.push(&join(path, "username"), "is required when password is set");
                None
            }
        };
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            let at = format!("{}.{k}", join(path, "headers"));
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v.expose()),
            ) {
                (Ok(name), Ok(mut value)) if !v.expose().is_empty() => {
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                (Err(_), _) => errs.push(&at, "not a valid header name"),
                _ => errs.push(&at, "value must be non-empty printable ASCII"),
            }
        }
        for (k, v) in &self.extra_fields {
            if k.is_empty() || v.is_empty() {
                errs.push(
                    &join(path, "extra_fields"),
                    "all extra fields must have both a key and a value",
                );
                break;
            }
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let clients = Clients::build(tls, ctx.timeout, path, errs);
        let allowed = target::allow_list(&self.allowed_targets, true, path, errs);
        if errs.list.len() > before {
            return None;
        }
        let url = url?;
        let annotation = (!self.annotation_key.is_empty()).then(|| Annotation {
            key: self.annotation_key,
            kind: TargetKind::Url {
                allowed,
                format: http::with_scheme,
            },
            default_shown: redact_url(url.expose()),
            metadata: ctx.metadata.clone(),
        });
        Some(Arc::new(Webhook {
            clients: clients?,
            target: redact_url(url.expose()),
            url,
            basic_auth,
            headers,
            extra_fields: self.extra_fields.into_iter().collect(),
            idempotency_key: self.idempotency_key,
            send_resolved: self.send_resolved,
            annotation,
        }))
    }
}

/// Central's generic-webhook test alert.
const TEST_ALERT: &str = r#"{"alert": {"id":"testalert","policy":{"name":"This is a test message created to test integration with StackRox."}}}"#;

impl Notifier for Webhook {
    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let event =
                crate::model::decode(TEST_ALERT.as_bytes(), &crate::model::Limits::default())
                    .expect("test alert decodes");
            let now = RenderContext {
                now: chrono::Utc::now(),
            };
            let body = self
                .render(&event, &Target::default(), &now)
                .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
            let meta = SendMeta {
                idempotency_key: "testalert:ACTIVE".into(),
            };
            self.send(&event, &Target::default(), &body, &meta).await?;
            Ok(format!("{} accepted the test message", self.target))
        })
    }

    fn can_resolve(&self) -> bool {
        self.send_resolved
    }

    fn cleartext_credentials(&self) -> Option<String> {
        let what = match (self.basic_auth.is_some(), self.headers.is_empty()) {
            (true, true) => "the basic-auth password",
            (true, false) => "the basic-auth password and the configured headers",
            (false, false) => "the configured headers (which may hold a token)",
            (false, true) => return None,
        };
        http::cleartext_warning(self.url.expose(), what)
    }

    fn annotation(&self) -> Option<&Annotation> {
        self.annotation.as_ref()
    }

    fn render(
        &self,
        event: &Event,
        _target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        let extra = self
            .extra_fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(formats::webhook::body(event, extra))
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        to: &'a Target,
        payload: &'a [u8],
        meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // An annotation's URL arrives here only allow-listed (checked
            // when the delivery was dispatched): credentials may go along.
            let (url, target) = match &to.value {
                Some(u) => (u.as_str(), to.shown.as_str()),
                None => (self.url.expose(), self.target.as_str()),
            };
            let mut req = self
                .clients
                .for_target(to)
                .post(url)
                .header(CONTENT_TYPE, "application/json");
            for (name, value) in &self.headers {
                req = req.header(name.clone(), value.clone());
            }
            if self.idempotency_key {
                req = req.header("Idempotency-Key", meta.idempotency_key.as_str());
            }
            if let Some((user, pass)) = &self.basic_auth {
                req = req.basic_auth(user, Some(pass.expose()));
            }
            let resp = req
                .body(payload.to_vec())
                .send()
                .await
                .map_err(|e| http::transport_error(&e, target))?;
            http::status_outcome(resp.status(), resp.headers(), target)
        })
    }
}
