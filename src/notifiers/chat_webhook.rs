//! Slack (spec §2.8) and Microsoft Teams (§2.9) incoming webhooks: one body
//! per alert, POSTed to the default webhook or the one a deployment's (or
//! namespace's) annotation names. They differ only in the body and test
//! message, so one notifier serves both.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, TlsSettings};
use super::{FailureReason, SendError};
use super::{Notifier, RenderContext, SendMeta, Target};
use crate::config::{join, redact_url, Common, Errors, Secret};
use crate::formats::{chat, teams};
use crate::model::{Alert, Event};
use crate::routing::annotations;

/// The settings of both types; `format` is Teams' only.
#[derive(Deserialize)]
pub struct WebhookSettings {
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
    #[serde(default)]
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(transparent)]
pub struct SlackSettings(WebhookSettings);

#[derive(Deserialize)]
#[serde(transparent)]
pub struct TeamsSettings(WebhookSettings);

/// What differs between the chat services.
struct Flavor {
    service: &'static str,
    body: fn(&Alert, &str) -> Vec<u8>,
    test_body: &'static str,
}

const SLACK: Flavor = Flavor {
    service: "Slack",
    body: chat::slack_body,
    test_body: r#"{"text":"This is a test message created to test integration with StackRox."}"#,
};

const TEAMS_MESSAGE_CARD: Flavor = Flavor {
    service: "Teams",
    body: teams::message_card,
    test_body: r#"{"themeColor":"","title":"","text":"This is a test message created to test teams integration with StackRox.","sections":null}"#,
};

const TEAMS_ADAPTIVE_CARD: Flavor = Flavor {
    service: "Teams",
    body: teams::adaptive_card,
    test_body: r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"This is a test message created to test teams integration with StackRox.","wrap":true}]}}]}"#,
};

pub struct ChatWebhook {
    flavor: Flavor,
    client: reqwest::Client,
    default_url: Secret,
    annotation_key: String,
    ui_endpoint: String,
    namespaces: Arc<crate::routing::namespaces::NamespaceMetadata>,
}

impl fmt::Debug for ChatWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.flavor.service)
            .field("target", &redact_url(self.default_url.expose()))
            .finish_non_exhaustive()
    }
}

/// Central's URL formatting: `https://` unless it starts with `http`, no trailing `/`.
fn format_url(u: &str) -> String {
    http::with_scheme(u).trim_end_matches('/').to_string()
}

impl super::Settings for SlackSettings {
    fn build(self, common: &Common, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        if self.0.format.is_some() {
            errs.push(
                &join(path, "format"),
                "is a Teams setting (Slack has one body)",
            );
        }
        self.0.build(SLACK, common, path, errs)
    }
}

impl super::Settings for TeamsSettings {
    fn build(self, common: &Common, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let flavor = match self.0.format.as_deref() {
            None | Some("message_card") => TEAMS_MESSAGE_CARD,
            Some("adaptive_card") => TEAMS_ADAPTIVE_CARD,
            Some(other) => {
                errs.push(
                    &join(path, "format"),
                    format!("unknown format {other:?} (expected message_card or adaptive_card)"),
                );
                TEAMS_MESSAGE_CARD
            }
        };
        self.0.build(flavor, common, path, errs)
    }
}

impl WebhookSettings {
    fn build(
        self,
        flavor: Flavor,
        common: &Common,
        path: &str,
        errs: &mut Errors,
    ) -> Option<Arc<dyn Notifier>> {
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
        Some(Arc::new(ChatWebhook {
            flavor,
            client: client?,
            default_url: Secret::new(format_url(url?.expose())),
            annotation_key: self.annotation_key,
            ui_endpoint: common.ui_endpoint.clone(),
            namespaces: common.namespaces.clone(),
        }))
    }
}

impl ChatWebhook {
    fn url_for(&self, event: &Event) -> String {
        let ns: &dyn annotations::NamespaceAnnotations = &*self.namespaces;
        let (v, _) = annotations::resolve_event(
            event,
            &self.annotation_key,
            self.default_url.expose(),
            Some(ns),
        );
        format_url(v)
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<(), SendError> {
        let target = redact_url(url);
        if reqwest::Url::parse(url).is_err() {
            return Err(SendError::permanent(
                FailureReason::ClientError,
                format!("not a webhook URL ({target})"),
            ));
        }
        http::post_json(&self.client, url, body, &target).await
    }
}

impl Notifier for ChatWebhook {
    fn route(&self, event: &Event) -> Option<super::Route> {
        super::Route::of(
            event,
            &self.annotation_key,
            self.default_url.expose(),
            Some(&*self.namespaces),
            true,
        )
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(
            self.default_url.expose(),
            "the webhook URL (its path is the credential)",
        )
    }

    fn target(&self, event: &Event) -> Option<Target> {
        (!self.annotation_key.is_empty()).then(|| Target::url(&self.url_for(event)))
    }

    fn render(&self, event: &Event, _ctx: &RenderContext) -> Result<Vec<u8>, String> {
        match event {
            Event::Alert(a) => Ok((self.flavor.body)(a, &self.ui_endpoint)),
            Event::Audit(_) => Err(format!("{} takes no audit messages", self.flavor.service)),
        }
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move { self.post(&self.url_for(event), payload.to_vec()).await })
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            self.post(
                self.default_url.expose(),
                self.flavor.test_body.as_bytes().to_vec(),
            )
            .await?;
            Ok(format!(
                "{} accepted the test message",
                redact_url(self.default_url.expose())
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::HashMap;

    fn errors(kind: &str, extra: &str) -> Vec<String> {
        let text = format!(
            "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\ndead_letter_topic = \"d\"\n\
             [[destinations]]\nname = \"c\"\nid = \"n1\"\ntype = \"{kind}\"\n{extra}"
        );
        match Config::parse(&text, &HashMap::new()) {
            Ok(_) => vec![],
            Err(e) => e.list.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn settings_errors_name_the_field_and_never_the_url() {
        assert_eq!(
            errors(
                "teams",
                "webhook_url = \"https://x.example.com/K\"\nformat = \"adaptive_card\"\n"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            errors("teams", "webhook_url = \"https://x.example.com/K\"\nformat = \"card\"\n"),
            ["destinations[0].format: unknown format \"card\" (expected message_card or adaptive_card)"]
        );
        assert_eq!(
            errors(
                "slack",
                "webhook_url = \"https://x.example.com/K\"\nformat = \"adaptive_card\"\n"
            ),
            ["destinations[0].format: is a Teams setting (Slack has one body)"]
        );
        assert_eq!(
            errors("slack", ""),
            ["destinations[0].webhook_url: is required"]
        );
        let bad = errors(
            "teams",
            "webhook_url = \"https://exa mple.com/SECRETPART\"\n",
        );
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].starts_with("destinations[0].webhook_url: not a valid URL")
                && !bad[0].contains("SECRETPART"),
            "{bad:?}"
        );
    }
}
