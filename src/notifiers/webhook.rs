//! Generic webhook (spec §2.3): the way to QRadar, ServiceNow and any JSON receiver.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use indexmap::IndexMap;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Deserialize;

use super::http::{self, TlsSettings};
use super::{FailureReason, SendError};
use super::{Notifier, RenderContext, SendMeta, Target};
use crate::config::{join, read_secret, redact_url, Common, Errors, Secret};
use crate::formats;
use crate::model::Event;
use crate::routing::annotations;

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
}

fn yes() -> bool {
    true
}

pub struct Webhook {
    client: reqwest::Client,
    url: Secret,
    target: String,
    basic_auth: Option<(String, Secret)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    extra_fields: Vec<(String, String)>,
    idempotency_key: bool,
    send_resolved: bool,
    annotation_key: String,
}

super::debug_target_only!(Webhook);

impl super::Settings for Settings {
    fn build(self, common: &Common, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
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
        let client = http::client(tls, common.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        let url = url?;
        Some(Arc::new(Webhook {
            client: client?,
            target: redact_url(url.expose()),
            url,
            basic_auth,
            headers,
            extra_fields: self.extra_fields.into_iter().collect(),
            idempotency_key: self.idempotency_key,
            send_resolved: self.send_resolved,
            annotation_key: self.annotation_key,
        }))
    }
}

impl Webhook {
    /// The URL for `event`: from its annotation when one routes it, else the default.
    fn url_for(&self, event: &Event) -> Option<String> {
        let Event::Alert(a) = event else { return None };
        if self.annotation_key.is_empty() {
            return None;
        }
        let (value, step) =
            annotations::resolve(&a.fields, &self.annotation_key, self.url.expose(), None);
        (step != annotations::Step::Default).then(|| http::with_scheme(value))
    }
}

/// Central's generic-webhook test alert.
const TEST_ALERT: &str = r#"{"alert": {"id":"testalert","policy":{"name":"This is a test message created to test integration with StackRox."}}}"#;

impl Notifier for Webhook {
    fn route(&self, event: &Event) -> Option<super::Route> {
        super::Route::of(event, &self.annotation_key, self.url.expose(), None, true)
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let event =
                crate::model::decode(TEST_ALERT.as_bytes(), &crate::model::Limits::default())
                    .expect("test alert decodes");
            let now = RenderContext {
                now: chrono::Utc::now(),
            };
            let body = self
                .render(&event, &now)
                .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
            let meta = SendMeta {
                idempotency_key: "testalert:ACTIVE".into(),
            };
            self.send(&event, &body, &meta).await?;
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

    fn target(&self, event: &Event) -> Option<Target> {
        self.url_for(event).map(|u| Target::url(&u))
    }

    fn render(&self, event: &Event, _ctx: &RenderContext) -> Result<Vec<u8>, String> {
        let extra = self
            .extra_fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(formats::webhook::body(event, extra))
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        payload: &'a [u8],
        meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let annotated = self.url_for(event);
            let (url, target) = match &annotated {
                Some(u) => (u.as_str(), redact_url(u)),
                None => (self.url.expose(), self.target.clone()),
            };
            if reqwest::Url::parse(url).is_err() {
                return Err(SendError::permanent(
                    FailureReason::ClientError,
                    format!(
                        "annotation {} holds no valid URL ({target})",
                        self.annotation_key
                    ),
                ));
            }
            let mut req = self
                .client
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
                .map_err(|e| http::transport_error(&e, &target))?;
            http::status_outcome(resp.status(), resp.headers(), &target)
        })
    }
}
