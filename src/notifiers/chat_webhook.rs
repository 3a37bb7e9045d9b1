//! Slack (central-compat §2.8) and Microsoft Teams (§2.9) incoming webhooks: one body
//! per alert, POSTed to the default webhook or the one a deployment's (or
//! namespace's) annotation names. They differ only in the body and test
//! message, so one notifier serves both.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, Clients, TlsSettings};
use super::target::{self, Annotation, TargetKind};
use super::{BuildContext, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, redact_url, Errors, Secret};
use crate::formats::{slack, teams};
use crate::model::{Alert, Event};

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
    /// The URLs an annotation may name; default: the service's own webhook
    /// hosts (Slack's, or Microsoft's for Teams).
    #[serde(default)]
    allowed_targets: Option<Vec<String>>,
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
    /// Where the service's webhooks live: an annotation may name these.
    hosts: &'static [&'static str],
    body: fn(&Alert, &str) -> Vec<u8>,
    test_body: &'static str,
}

const SLACK: Flavor = Flavor {
    service: "Slack",
    hosts: SLACK_HOSTS,
    body: slack::slack_body,
    test_body: r#"{"text":"This is a test message created to test integration with StackRox."}"#,
};

/// Slack's incoming webhooks and workflow triggers.
const SLACK_HOSTS: &[&str] = &["https://hooks.slack.com/"];

/// Teams connectors (`*.webhook.office.com`, the older
/// `outlook.office.com`) and Workflows (Power Automate: `*.logic.azure.com`,
/// `*.api.powerplatform.com`).
const TEAMS_HOSTS: &[&str] = &[
    "https://*.webhook.office.com/",
    "https://outlook.office.com/",
    "https://*.logic.azure.com/",
    "https://*.api.powerplatform.com/",
];

const TEAMS_MESSAGE_CARD: Flavor = Flavor {
    service: "Teams",
    hosts: TEAMS_HOSTS,
    body: teams::message_card,
    test_body: r#"{"themeColor":"","title":"","text":"This is a test message created to test teams integration with StackRox.","sections":null}"#,
};

const TEAMS_ADAPTIVE_CARD: Flavor = Flavor {
    service: "Teams",
    hosts: TEAMS_HOSTS,
    body: teams::adaptive_card,
    test_body: r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"This is a test message created to test teams integration with StackRox.","wrap":true}]}}]}"#,
};

pub struct ChatWebhook {
    flavor: Flavor,
    clients: Clients,
    default_url: Secret,
    annotation: Option<Annotation>,
    ui_endpoint: String,
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
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        if self.0.format.is_some() {
            errs.push(
                &join(path, "format"),
                "is a Teams setting (Slack has one body)",
            );
        }
        self.0.build(SLACK, ctx, path, errs)
    }
}

impl super::Settings for TeamsSettings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
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
        self.0.build(flavor, ctx, path, errs)
    }
}

impl WebhookSettings {
    fn build(
        self,
        flavor: Flavor,
        ctx: &BuildContext,
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
        let clients = Clients::build(tls, ctx.timeout, path, errs);
        let hosts: Vec<String> = match self.allowed_targets {
            Some(list) => list,
            None => flavor.hosts.iter().map(|h| h.to_string()).collect(),
        };
        let allowed = target::allow_list(&hosts, true, path, errs);
        if errs.list.len() > before {
            return None;
        }
        let default_url = Secret::new(format_url(url?.expose()));
        let annotation = (!self.annotation_key.is_empty()).then(|| Annotation {
            key: self.annotation_key,
            kind: TargetKind::Url {
                allowed,
                format: format_url,
            },
            default_shown: redact_url(default_url.expose()),
            metadata: ctx.metadata.clone(),
        });
        Some(Arc::new(ChatWebhook {
            flavor,
            clients: clients?,
            default_url,
            annotation,
            ui_endpoint: ctx.ui_endpoint.clone(),
        }))
    }
}

impl ChatWebhook {
    async fn post(&self, to: &Target, body: Vec<u8>) -> Result<(), SendError> {
        let url = to.value.as_deref().unwrap_or(self.default_url.expose());
        http::post_json(self.clients.for_target(to), url, body, &redact_url(url)).await
    }
}

impl Notifier for ChatWebhook {
    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(
            self.default_url.expose(),
            "the webhook URL (its path is the credential)",
        )
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
        match event {
            Event::Alert(a) => Ok((self.flavor.body)(a, &self.ui_endpoint)),
            Event::Audit(_) => Err(format!("{} takes no audit messages", self.flavor.service)),
        }
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.post(target, payload.to_vec()))
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            self.post(
                &Target::default(),
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

    fn errors(kind: &str, extra: &str) -> Vec<String> {
        crate::notifiers::parse_one(&format!(
            "[[destinations]]\nname = \"c\"\nid = \"n1\"\ntype = \"{kind}\"\n{extra}"
        ))
        .err()
        .unwrap_or_default()
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
