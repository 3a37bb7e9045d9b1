//! Destinations: one module per type, registered in [`TYPES`].
//!
//! A notifier formats (purely, through `crate::formats`) and sends one event to
//! one destination, and says whether a failure is worth retrying. Retries, rate
//! limits, timeouts and metrics live once, in `crate::delivery`.

/// `Debug` for a notifier that holds secrets: its redacted target only.
macro_rules! debug_target_only {
    ($t:ident) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("target", &self.target)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_target_only;

pub mod aws_security_hub;
pub mod batch;
pub mod chat_webhook;
pub mod email;
pub mod error;
pub mod google_scc;
pub mod http;
pub mod jira;
pub mod microsoft_sentinel;
pub mod pagerduty;
pub mod splunk;
pub mod sumologic;
pub mod syslog;
pub mod target;
pub mod webhook;

pub use error::{error_chain, FailureReason, SendError};
pub use target::{Annotation, Target};

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::config::{field, Errors};
use crate::routing::metadata::Metadata;

use crate::model::Event;

/// What formatting may depend on besides the event and the settings.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext {
    pub now: DateTime<Utc>,
}

/// What the delivery layer hands a notifier besides the payload.
#[derive(Debug, Clone)]
pub struct SendMeta {
    /// Stable per (alert id, state) or audit content: receivers can de-duplicate by it.
    pub idempotency_key: String,
}

/// Formats and sends events to one destination.
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Whether RESOLVED alerts go to this destination (PagerDuty, Jira with a
    /// resolve transition); Central drops them for every other type.
    fn can_resolve(&self) -> bool {
        false
    }

    /// Why this type cannot take `event` at all (Security Hub takes no image
    /// alerts), checked after the routing rule; `None` when it can.
    fn refuses(&self, _event: &Event) -> Option<String> {
        None
    }

    /// How this destination picks a target by annotation (a team's webhook,
    /// a Jira project, a recipient); `None` for its one configured target.
    fn annotation(&self) -> Option<&Annotation> {
        None
    }

    /// The send rate the service itself enforces per target (PagerDuty's
    /// 120 events a minute per routing key), used when the destination sets
    /// no `rate_limit`, so herald waits instead of collecting 429s.
    fn default_rate_limit(&self) -> Option<governor::Quota> {
        None
    }

    /// Secret values that can appear in a rendered payload (PagerDuty's
    /// routing key), masked by `herald explain --render`.
    fn payload_secrets(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Exactly the bytes herald sends for `event` to `target`: the request
    /// body of an HTTP destination, the whole frame of a stream, the whole
    /// message of email. Pure: the same input gives the same bytes.
    fn render(
        &self,
        event: &Event,
        target: &Target,
        ctx: &RenderContext,
    ) -> Result<Vec<u8>, String>;

    /// Sends this type's test message (Central's test payload), returning
    /// what happened.
    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async {
            Err(SendError::permanent(
                FailureReason::ClientError,
                "this destination type has no test message",
            ))
        })
    }

    /// Start-up checks against the destination (Jira's permissions and
    /// priorities, say); what they found, for logs and `check-config --online`.
    fn preflight(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async { Ok("no start-up checks for this type".to_string()) })
    }

    /// Made ready to render, before each delivery: state that rendering
    /// depends on (Jira's priority mapping from its start-up checks) is
    /// complete once this succeeds. Cheap once done.
    fn prepare(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }

    /// How long one attempt may take, given the destination's `timeout`:
    /// more when the send waits for something beyond the request (Splunk's
    /// indexer acknowledgement).
    fn attempt_timeout(&self, timeout: std::time::Duration) -> std::time::Duration {
        timeout
    }

    /// A warning when this destination sends a credential in clear (a token
    /// over `http://`, SMTP AUTH without TLS), logged at start.
    fn cleartext_credentials(&self) -> Option<String> {
        None
    }

    /// Closes connections cleanly at shutdown (a TLS close_notify, say).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Sends a payload made by [`Notifier::render`] for `event` to `target`.
    fn send<'a>(
        &'a self,
        event: &'a Event,
        target: &'a Target,
        payload: &'a [u8],
        meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// What a type's settings are built with, besides their own table.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The destination's per-attempt timeout (its clients use it).
    pub timeout: std::time::Duration,
    /// Central's address, for alert links.
    pub ui_endpoint: String,
    /// Whether audit events go to this destination.
    pub audit: bool,
    /// Namespace labels and annotations (syslog `nslabels`, the namespace
    /// step of annotation routing) and where each cluster runs (Google SCC's
    /// `resourceName`).
    pub metadata: std::sync::Arc<Metadata>,
}

/// A type's own settings: deserialised from the destination's table and built
/// into its notifier, reporting errors by path.
pub trait Settings: DeserializeOwned {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>>;
}

type ParseFn =
    fn(toml::Value, &str, &BuildContext, &mut Errors) -> Option<(Arc<dyn Notifier>, Vec<String>)>;

/// One row of the registry.
pub struct NotifierType {
    pub name: &'static str,
    /// Whether audit events go to it unless `audit` says otherwise.
    pub default_audit: bool,
    /// Whether it reads `cluster_metadata` (a change to the file rebuilds it).
    pub cluster_metadata: bool,
    pub parse: ParseFn,
}

fn parse_as<S: Settings>(
    table: toml::Value,
    path: &str,
    ctx: &BuildContext,
    errs: &mut Errors,
) -> Option<(Arc<dyn Notifier>, Vec<String>)> {
    let parsed = field::<S>(table, path, errs)?;
    let notifier = parsed.value.build(ctx, path, errs)?;
    Some((notifier, parsed.ignored))
}

/// The registry: adding a destination type adds a row here.
pub static TYPES: &[NotifierType] = &[
    NotifierType {
        name: "webhook",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<webhook::Settings>,
    },
    NotifierType {
        name: "aws_security_hub",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<aws_security_hub::Settings>,
    },
    NotifierType {
        name: "email",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<email::Settings>,
    },
    NotifierType {
        name: "google_scc",
        default_audit: false,
        cluster_metadata: true,
        parse: parse_as::<google_scc::Settings>,
    },
    NotifierType {
        name: "jira",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<jira::Settings>,
    },
    NotifierType {
        name: "microsoft_sentinel",
        // Central sends audit messages when the audit data collection rule is set.
        default_audit: true,
        cluster_metadata: false,
        parse: parse_as::<microsoft_sentinel::Settings>,
    },
    NotifierType {
        name: "pagerduty",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<pagerduty::Settings>,
    },
    NotifierType {
        name: "slack",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<chat_webhook::SlackSettings>,
    },
    NotifierType {
        name: "splunk",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<splunk::Settings>,
    },
    NotifierType {
        name: "sumologic",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<sumologic::Settings>,
    },
    NotifierType {
        name: "syslog",
        // Central always sends audit messages to syslog.
        default_audit: true,
        cluster_metadata: false,
        parse: parse_as::<syslog::Settings>,
    },
    NotifierType {
        name: "teams",
        default_audit: false,
        cluster_metadata: false,
        parse: parse_as::<chat_webhook::TeamsSettings>,
    },
];

pub fn lookup(name: &str) -> Option<&'static NotifierType> {
    TYPES.iter().find(|t| t.name == name)
}

pub fn type_names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

/// Builds the notifier of the first `[[destinations]]` table in `text`, the
/// way a destination builds it with default delivery settings (unit tests of
/// a type's settings); errors as printed.
#[cfg(test)]
pub(crate) fn parse_one(text: &str) -> Result<Arc<dyn Notifier>, Vec<String>> {
    let doc: toml::Value = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
    let item = doc
        .get("destinations")
        .and_then(|d| d.get(0))
        .cloned()
        .ok_or_else(|| vec!["no [[destinations]] table".to_string()])?;
    let kind = item.get("type").and_then(toml::Value::as_str).unwrap_or("");
    let entry = lookup(kind).ok_or_else(|| vec![format!("unknown type {kind:?}")])?;
    let ctx = BuildContext {
        timeout: std::time::Duration::from_secs(5),
        ui_endpoint: item
            .get("ui_endpoint")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_string(),
        audit: entry.default_audit,
        metadata: Default::default(),
    };
    let mut errs = Errors::default();
    match (entry.parse)(item, "destinations[0]", &ctx, &mut errs) {
        Some((notifier, _)) if errs.is_empty() => Ok(notifier),
        _ => Err(errs.list.iter().map(|e| e.to_string()).collect()),
    }
}
