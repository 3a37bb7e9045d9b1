//! PagerDuty Events API v2 (central-compat §2.7): `trigger` for active alerts and
//! `resolve` for resolved ones, `dedup_key` = alert id, Central's mapping of
//! severity, source, component and class, the alert as `custom_details`.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, TlsSettings};
use super::{BuildContext, Notifier, RenderContext, SendMeta, Target};
use super::{FailureReason, SendError};
use crate::config::{join, read_secret, redact_url, Errors, Secret};
use crate::formats::pagerduty as format;
use crate::model::Event;

#[derive(Deserialize)]
pub struct Settings {
    #[serde(default)]
    routing_key: Option<Secret>,
    #[serde(default)]
    routing_key_file: Option<PathBuf>,
    /// The Events API endpoint (a proxy or a test server may stand in).
    #[serde(default = "default_api_url")]
    api_url: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
}

fn default_api_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

pub struct PagerDuty {
    client: reqwest::Client,
    routing_key: Secret,
    api_url: String,
    target: String,
    ui_endpoint: String,
}

super::debug_target_only!(PagerDuty);

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let key = read_secret(
            &self.routing_key,
            &self.routing_key_file,
            &join(path, "routing_key"),
            errs,
        );
        if key.as_ref().is_none_or(|k| k.expose().is_empty()) && errs.list.len() == before {
            errs.push(
                &join(path, "routing_key"),
                "is required (the Events v2 integration key, inline or as routing_key_file)",
            );
        }
        if reqwest::Url::parse(&self.api_url).is_err() {
            errs.push(&join(path, "api_url"), "not a valid URL");
        }
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        Some(Arc::new(PagerDuty {
            client: client?,
            routing_key: key?,
            target: redact_url(&self.api_url),
            api_url: self.api_url,
            ui_endpoint: ctx.ui_endpoint.clone(),
        }))
    }
}

impl PagerDuty {
    async fn post(&self, body: Vec<u8>) -> Result<(), SendError> {
        http::post_json(&self.client, &self.api_url, body, &self.target).await
    }
}

/// PagerDuty's documented Events API v2 limit per integration key.
const EVENTS_PER_MINUTE: u32 = 120;

/// Central's PagerDuty test event.
const TEST_ALERT: &str = r#"{"id":"testalert","policy":{"name":"Test PagerDuty Policy","severity":"HIGH_SEVERITY","categories":["Privileges"]},"deployment":{"name":"Test Deployment","clusterName":"Test Cluster"},"violations":[{"message":"This is a sample pagerduty alert message created to test integration with StackRox."}]}"#;

impl Notifier for PagerDuty {
    fn payload_secrets(&self) -> Vec<&str> {
        vec![self.routing_key.expose()]
    }

    fn can_resolve(&self) -> bool {
        true
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(&self.api_url, "the routing key")
    }

    /// PagerDuty accepts 120 events a minute per integration key and answers
    /// 429 beyond that; one destination is one routing key.
    fn default_rate_limit(&self) -> Option<governor::Quota> {
        std::num::NonZeroU32::new(EVENTS_PER_MINUTE).map(governor::Quota::per_minute)
    }

    fn render(
        &self,
        event: &Event,
        _target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        match event {
            Event::Alert(a) => Ok(format::pagerduty_event(
                a,
                self.routing_key.expose(),
                &self.ui_endpoint,
            )),
            Event::Audit(_) => Err("PagerDuty takes no audit messages".into()),
        }
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

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let event =
                crate::model::decode(TEST_ALERT.as_bytes(), &crate::model::Limits::default())
                    .expect("test alert decodes");
            let ctx = RenderContext {
                now: chrono::Utc::now(),
            };
            let body = self
                .render(&event, &Target::default(), &ctx)
                .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
            self.post(body).await?;
            Ok(format!("{} accepted the test event", self.target))
        })
    }
}

#[cfg(test)]
mod tests {
    /// A destination's own `rate_limit`, when set, is what its lane uses
    /// (delivery prefers the policy over the notifier's default).
    #[test]
    fn paces_to_pagerdutys_limit() {
        let n = crate::notifiers::parse_one(
            "[[destinations]]\nname = \"pd\"\nid = \"n1\"\ntype = \"pagerduty\"\nrouting_key = \"R0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(
            n.default_rate_limit(),
            Some(governor::Quota::per_minute(
                std::num::NonZeroU32::new(120).unwrap()
            ))
        );
    }

    #[test]
    fn a_missing_routing_key_names_the_field() {
        let msgs = crate::notifiers::parse_one(
            "[[destinations]]\nname = \"pd\"\nid = \"n1\"\ntype = \"pagerduty\"\n",
        )
        .expect_err("no routing key");
        assert_eq!(
            msgs,
            ["destinations[0].routing_key: is required (the Events v2 integration key, inline or as routing_key_file)"]
        );
    }
}
