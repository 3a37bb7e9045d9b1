//! Sumo Logic HTTP source (central-compat §2.10): the bare alert, pruned to 10,000
//! bytes, to the collector URL (which carries its token, so it is a secret).

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, TlsSettings};
use super::SendError;
use super::{BuildContext, Notifier, RenderContext, SendMeta, Target};
use crate::config::{join, redact_url, Errors, Secret};
use crate::formats::sumologic;
use crate::model::Event;

#[derive(Deserialize)]
pub struct Settings {
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
}

pub struct SumoLogic {
    client: reqwest::Client,
    url: Secret,
    target: String,
}

super::debug_target_only!(SumoLogic);

/// Central's Sumo Logic test body.
const TEST_BODY: &str = r#"{"testID":"testalert","testMessage":"This is a test message created to test integration with StackRox."}"#;

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let url = http::secret_url(&self.url, &self.url_file, path, errs);
        if ctx.audit {
            errs.push(&join(path, "audit"), "Sumo Logic takes no audit messages");
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        let url = url?;
        Some(Arc::new(SumoLogic {
            client: client?,
            target: redact_url(url.expose()),
            url,
        }))
    }
}

impl SumoLogic {
    async fn post(&self, body: Vec<u8>) -> Result<(), SendError> {
        http::post_json(&self.client, self.url.expose(), body, &self.target).await
    }
}

impl Notifier for SumoLogic {
    fn render(
        &self,
        event: &Event,
        _target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        sumologic::sumo_body(event)
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.post(payload.to_vec()))
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(
            self.url.expose(),
            "the collector URL (it carries its token)",
        )
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            self.post(TEST_BODY.as_bytes().to_vec()).await?;
            Ok(format!("{} accepted the test message", self.target))
        })
    }
}
