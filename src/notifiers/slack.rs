//! Slack incoming webhooks (spec §2.8): the attachment and flat fields, to
//! the default webhook or the one a deployment's annotation names.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, TlsSettings};
use super::{Notifier, RenderContext, SendMeta, Target};
use crate::config::{redact_url, Common, Errors, Secret};
use crate::delivery::{DeliveryError, FailureReason};
use crate::formats::chat;
use crate::model::Event;
use crate::routing::annotations;

#[derive(Deserialize)]
pub struct Settings {
    #[serde(default)]
    webhook_url: Option<Secret>,
    #[serde(default)]
    webhook_url_file: Option<PathBuf>,
    #[serde(default)]
    annotation_key: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
}

pub struct Slack {
    client: reqwest::Client,
    default_url: Secret,
    annotation_key: String,
    ui_endpoint: String,
    namespaces: Arc<crate::config::namespaces::NamespaceMetadata>,
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("target", &redact_url(self.default_url.expose()))
            .finish_non_exhaustive()
    }
}

/// Central's URL formatting: `https://` unless it starts with `http`, no trailing `/`.
fn format_url(u: &str) -> String {
    http::with_scheme(u).trim_end_matches('/').to_string()
}

impl super::Settings for Settings {
    fn build(self, common: &Common, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let mut url_errs = Errors::default();
        let url = http::secret_url(
            &self.webhook_url,
            &self.webhook_url_file,
            path,
            &mut url_errs,
        );
        for e in url_errs.list {
            errs.push(&e.path.replace(".url", ".webhook_url"), e.message);
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, common.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        Some(Arc::new(Slack {
            client: client?,
            default_url: Secret::new(format_url(url?.expose())),
            annotation_key: self.annotation_key,
            ui_endpoint: common.ui_endpoint.clone(),
            namespaces: common.namespaces.clone(),
        }))
    }
}

impl Slack {
    fn url_for(&self, event: &Event) -> String {
        match event {
            Event::Alert(a) => {
                let (v, _) = annotations::resolve(
                    &a.fields,
                    &self.annotation_key,
                    self.default_url.expose(),
                    Some(&*self.namespaces),
                );
                format_url(v)
            }
            Event::Audit(_) => self.default_url.expose().to_string(),
        }
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<(), DeliveryError> {
        let target = redact_url(url);
        if reqwest::Url::parse(url).is_err() {
            return Err(DeliveryError::permanent(
                FailureReason::ClientError,
                format!("not a webhook URL ({target})"),
            ));
        }
        http::post_json(&self.client, url, body, &target).await
    }
}

const TEST_BODY: &str =
    r#"{"text":"This is a test message created to test integration with StackRox."}"#;

impl Notifier for Slack {
    fn target(&self, event: &Event) -> Option<Target> {
        (!self.annotation_key.is_empty()).then(|| Target::url(&self.url_for(event)))
    }

    fn render(&self, event: &Event, _ctx: &RenderContext) -> Result<Vec<u8>, String> {
        match event {
            Event::Alert(a) => Ok(chat::slack_body(a, &self.ui_endpoint)),
            Event::Audit(_) => Err("Slack takes no audit messages".into()),
        }
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move { self.post(&self.url_for(event), payload.to_vec()).await })
    }

    fn test(&self) -> BoxFuture<'_, Result<String, DeliveryError>> {
        Box::pin(async move {
            self.post(self.default_url.expose(), TEST_BODY.as_bytes().to_vec())
                .await?;
            Ok(format!(
                "{} accepted the test message",
                redact_url(self.default_url.expose())
            ))
        })
    }
}
