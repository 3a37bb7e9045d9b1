//! Jira issues (central-compat §2.4, REST API v2): Central's start-up checks, priority
//! mapping (or `auto` from the issue type's allowed priorities), the summary
//! and wiki-markup description, default fields merged into `fields`, the
//! project by annotation. Beyond Central: a label searched before creating,
//! so a crash or a lost ledger never makes a second ticket; a comment on
//! runtime re-notifications; a transition on resolve.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use futures::future::BoxFuture;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, TlsSettings};
use super::target::{Annotation, TargetKind};
use super::{BuildContext, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, read_secret, redact_url, Errors, Secret};
use crate::formats::{gojson, jira, text};
use crate::model::{AlertState, Event, Severity};

#[derive(Deserialize)]
#[serde(untagged)]
enum MappingSetting {
    Auto(String),
    Map(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DefaultFields {
    Json(String),
    Table(toml::Table),
}

#[derive(Deserialize)]
pub struct Settings {
    url: String,
    username: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    issue_type: String,
    /// The default project key.
    default_target: String,
    #[serde(default)]
    annotation_key: String,
    /// Project keys an annotation may name; empty: any well-formed key.
    #[serde(default)]
    allowed_targets: Vec<String>,
    /// LOW/MEDIUM/HIGH/CRITICAL → priority name, or "auto".
    #[serde(default)]
    priority_mapping: Option<MappingSetting>,
    #[serde(default)]
    disable_priority: bool,
    /// Merged into `fields`, overriding the built-in keys: a table, or a
    /// JSON object as text (Central's defaultFieldsJson).
    #[serde(default)]
    default_fields: Option<DefaultFields>,
    /// A label `<prefix><alert id>` added to each issue and searched before
    /// creating one, so a crash or a lost ledger never makes a second ticket.
    /// Off (empty) by default, as Central adds no label: the `labels` field
    /// must be on the project's create screen, which the start-up checks
    /// verify when this is on.
    #[serde(default)]
    idempotency_label_prefix: String,
    /// Comment on the issue when a runtime alert is re-notified.
    #[serde(default)]
    comment_on_update: bool,
    /// A transition (by name) to apply when the alert is resolved.
    #[serde(default)]
    resolve_transition: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
}

/// Central's UI defaults.
fn default_mapping() -> BTreeMap<Severity, String> {
    BTreeMap::from([
        (Severity::Critical, "Highest".to_string()),
        (Severity::High, "High".to_string()),
        (Severity::Medium, "Medium".to_string()),
        (Severity::Low, "Low".to_string()),
    ])
}

pub struct Jira {
    client: reqwest::Client,
    base: String,
    target: String,
    username: String,
    password: Secret,
    /// Set once `configuration` answered 401/403 to Basic (Central's fallback).
    bearer: OnceLock<bool>,
    /// Jira Cloud (from `serverInfo`): it searches with /rest/api/3/search/jql.
    cloud: OnceLock<bool>,
    /// What the start-up checks found, once they passed.
    checked: OnceLock<String>,
    /// Start-up checks run one at a time (deliveries wait for the first).
    checking: tokio::sync::Mutex<()>,
    issue_type: String,
    default_project: String,
    annotation: Option<Annotation>,
    auto_mapping: bool,
    mapping: RwLock<BTreeMap<Severity, String>>,
    disable_priority: bool,
    default_fields: serde_json::Map<String, Value>,
    label_prefix: String,
    comment_on_update: bool,
    resolve_transition: Option<String>,
    ui_endpoint: String,
}

super::debug_target_only!(Jira);

fn severity_name(s: &str) -> Option<Severity> {
    match s.to_ascii_uppercase().as_str() {
        "LOW" => Some(Severity::Low),
        "MEDIUM" => Some(Severity::Medium),
        "HIGH" => Some(Severity::High),
        "CRITICAL" => Some(Severity::Critical),
        _ => None,
    }
}

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let base = format!("{}/", http::with_scheme(&self.url).trim_end_matches('/'));
        if self.url.trim().is_empty() || reqwest::Url::parse(&base).is_err() {
            errs.push(&join(path, "url"), "is required and must be a URL");
        }
        for (name, v) in [
            ("username", &self.username),
            ("issue_type", &self.issue_type),
            ("default_target", &self.default_target),
        ] {
            if v.trim().is_empty() {
                errs.push(&join(path, name), "is required");
            }
        }
        let password = read_secret(
            &self.password,
            &self.password_file,
            &join(path, "password"),
            errs,
        );
        if password.is_none() && errs.list.len() == before {
            errs.push(
                &join(path, "password"),
                "is required (a password or API token, inline or as password_file)",
            );
        }
        let (auto_mapping, mapping) = match self.priority_mapping {
            None => (false, default_mapping()),
            Some(MappingSetting::Auto(s)) if s == "auto" => (true, BTreeMap::new()),
            Some(MappingSetting::Auto(s)) => {
                errs.push(
                    &join(path, "priority_mapping"),
                    format!("{s:?}: use \"auto\" or a table of LOW, MEDIUM, HIGH, CRITICAL"),
                );
                (false, BTreeMap::new())
            }
            Some(MappingSetting::Map(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match severity_name(&k) {
                        Some(s) => {
                            out.insert(s, v);
                        }
                        None => errs.push(
                            &format!("{}.{k}", join(path, "priority_mapping")),
                            "not one of LOW, MEDIUM, HIGH, CRITICAL",
                        ),
                    }
                }
                for s in [
                    Severity::Low,
                    Severity::Medium,
                    Severity::High,
                    Severity::Critical,
                ] {
                    if !out.contains_key(&s) {
                        errs.push(
                            &join(path, "priority_mapping"),
                            format!("mapping for severity {} required", s.title().to_uppercase()),
                        );
                    }
                }
                (false, out)
            }
        };
        let default_fields = match self.default_fields {
            None => serde_json::Map::new(),
            Some(d) => {
                let v = match d {
                    DefaultFields::Json(text) => {
                        serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())
                    }
                    DefaultFields::Table(t) => serde_json::to_value(t).map_err(|e| e.to_string()),
                };
                match v {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => {
                        errs.push(
                            &join(path, "default_fields"),
                            "must be a JSON object or a table of Jira fields",
                        );
                        serde_json::Map::new()
                    }
                    Err(e) => {
                        errs.push(
                            &join(path, "default_fields"),
                            format!("could not unmarshal default fields JSON: {e}"),
                        );
                        serde_json::Map::new()
                    }
                }
            }
        };
        let tls = TlsSettings {
            ca_file: &self.ca_file,
            skip_tls_verify: self.skip_tls_verify,
        };
        let client = http::client(tls, ctx.timeout, path, errs);
        if errs.list.len() > before {
            return None;
        }
        Some(Arc::new(Jira {
            client: client?,
            target: redact_url(&base),
            base,
            username: self.username,
            password: password?,
            bearer: OnceLock::new(),
            cloud: OnceLock::new(),
            checked: OnceLock::new(),
            checking: tokio::sync::Mutex::new(()),
            issue_type: self.issue_type,
            default_project: self.default_target.clone(),
            annotation: (!self.annotation_key.is_empty()).then(|| Annotation {
                key: self.annotation_key,
                kind: TargetKind::JiraProject {
                    allowed: self.allowed_targets,
                },
                default_shown: self.default_target.clone(),
                metadata: ctx.metadata.clone(),
            }),
            auto_mapping,
            mapping: RwLock::new(mapping),
            disable_priority: self.disable_priority,
            default_fields,
            label_prefix: self.idempotency_label_prefix,
            comment_on_update: self.comment_on_update,
            resolve_transition: self.resolve_transition,
            ui_endpoint: ctx.ui_endpoint.clone(),
        }))
    }
}

/// Picks CRITICAL, HIGH, MEDIUM, LOW from a scheme's allowed priorities:
/// well-known names first, otherwise the scheme's order (most urgent first).
pub fn auto_mapping(allowed: &[String]) -> BTreeMap<Severity, String> {
    let has = |n: &str| allowed.iter().any(|a| a == n);
    let order = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];
    for names in [
        ["Highest", "High", "Medium", "Low"],
        ["Blocker", "Critical", "Major", "Minor"],
    ] {
        if names.iter().all(|n| has(n)) {
            return order
                .into_iter()
                .zip(names.iter().map(|n| n.to_string()))
                .collect();
        }
    }
    order
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            allowed
                .get(i.min(allowed.len().saturating_sub(1)))
                .map(|n| (s, n.clone()))
        })
        .collect()
}

impl Jira {
    fn auth(&self) -> HeaderValue {
        let v = if self.bearer.get() == Some(&true) {
            format!("Bearer {}", self.password.expose())
        } else {
            use base64::Engine;
            let raw = format!("{}:{}", self.username, self.password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        };
        let mut h = HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        h.set_sensitive(true);
        h
    }

    /// One API call; Jira's error text (never the credentials) in the error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), SendError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.auth());
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| http::transport_error(&e, &self.target))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        if let Err(mut e) = http::status_outcome(status, &headers, &self.target) {
            let text = String::from_utf8_lossy(&bytes);
            e.message = format!(
                "{} {path}: {}",
                e.message,
                text.chars().take(500).collect::<String>()
            );
            return Err(e);
        }
        Ok((
            status.as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Central's start-up checks; fills the `auto` mapping. Runs once: a
    /// success is kept, so every later delivery renders with the mapping.
    pub async fn preflight(&self) -> Result<String, SendError> {
        if let Some(done) = self.checked.get() {
            return Ok(done.clone());
        }
        let _one_at_a_time = self.checking.lock().await;
        if let Some(done) = self.checked.get() {
            return Ok(done.clone());
        }
        let found = self.checks().await?;
        let _ = self.checked.set(found.clone());
        Ok(found)
    }

    async fn checks(&self) -> Result<String, SendError> {
        if self.bearer.get().is_none() {
            match self
                .call(Method::GET, "rest/api/2/configuration", None)
                .await
            {
                Ok(_) => {
                    let _ = self.bearer.set(false);
                }
                Err(e) if e.reason == FailureReason::AuthError => {
                    let _ = self.bearer.set(true);
                    self.call(Method::GET, "rest/api/2/configuration", None)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        if self.cloud.get().is_none() {
            // Only Cloud needs telling apart (its search moved); a Jira
            // without serverInfo (a proxy, a test server) is taken as
            // Server/DC, as Central never asks.
            let cloud = match self.call(Method::GET, "rest/api/2/serverInfo", None).await {
                Ok((_, info)) => info["deploymentType"].as_str() == Some("Cloud"),
                Err(e) if e.status == Some(404) => false,
                Err(e) => return Err(e),
            };
            let _ = self.cloud.set(cloud);
        }
        let project = &self.default_project;
        let perms = self
            .call(
                Method::GET,
                &format!(
                    "rest/api/2/mypermissions?projectKey={}&permissions=CREATE_ISSUES",
                    url_encode(project)
                ),
                None,
            )
            .await
            .map_err(|e| {
                if e.status == Some(404) {
                    SendError::permanent(
                        FailureReason::ClientError,
                        format!("Project {project} not found"),
                    )
                } else {
                    e
                }
            })?
            .1;
        if perms["permissions"]["CREATE_ISSUES"]["havePermission"].as_bool() != Some(true) {
            return Err(SendError::permanent(
                FailureReason::AuthError,
                format!(
                    "user {} has no CREATE_ISSUES permission in project {project}",
                    self.username
                ),
            ));
        }
        let labels = !self.label_prefix.is_empty();
        if self.disable_priority && !labels {
            return Ok(format!(
                "project {project}: CREATE_ISSUES granted; priority not set"
            ));
        }
        let type_id = self.issue_type_id(project).await?;
        let fields = self.create_fields(project, &type_id).await?;
        let on_screen = |id: &str| {
            fields.iter().any(|f| {
                [&f["fieldId"], &f["key"], &f["name"]]
                    .iter()
                    .any(|v| v.as_str().is_some_and(|n| n.eq_ignore_ascii_case(id)))
            })
        };
        let mut found = format!("project {project}: CREATE_ISSUES granted");
        let labels_found = format!(
            "; labels on the create screen ({}<alert id>)",
            self.label_prefix
        );
        if labels && !on_screen("labels") {
            return Err(SendError::permanent(
                FailureReason::ClientError,
                format!(
                    "the labels field is not on the create screen of issue type {:?} in project {project}: add it, or turn idempotency_label_prefix off",
                    self.issue_type
                ),
            ));
        }
        if self.disable_priority {
            found.push_str("; priority not set");
            if labels {
                found.push_str(&labels_found);
            }
            return Ok(found);
        }
        let Some(priority) = fields.iter().find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("priority"))
        }) else {
            return Err(SendError::permanent(
                FailureReason::ClientError,
                format!("Priority field not found on requested issue type {:?}. Consider checking the 'Disable setting priority' box (disable_priority = true).", self.issue_type),
            ));
        };
        let names = |list: &Value| -> Vec<String> {
            list.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut allowed = names(&priority["allowedValues"]);
        if allowed.is_empty() {
            // No scheme on the screen: every priority of the instance, as
            // Central validates.
            allowed = names(&self.call(Method::GET, "rest/api/2/priority", None).await?.1);
        }
        if self.auto_mapping {
            let m = auto_mapping(&allowed);
            if m.len() < 4 {
                return Err(SendError::permanent(
                    FailureReason::ClientError,
                    "the issue type allows no priorities; set disable_priority = true",
                ));
            }
            *self.mapping.write().unwrap_or_else(|p| p.into_inner()) = m;
        }
        let mapping = self
            .mapping
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let missing: Vec<&String> = mapping.values().filter(|n| !allowed.contains(n)).collect();
        if !missing.is_empty() {
            return Err(SendError::permanent(
                FailureReason::ClientError,
                format!("Priority mappings that do not exist in Jira: {missing:?} (allowed for {}: {allowed:?})", self.issue_type),
            ));
        }
        let shown: Vec<String> = mapping
            .iter()
            .rev()
            .map(|(s, n)| format!("{}={n}", s.title().to_uppercase()))
            .collect();
        found.push_str(&format!("; priority mapping {}", shown.join(", ")));
        if labels {
            found.push_str(&labels_found);
        }
        Ok(found)
    }

    /// Pages `createmeta/<project>/issuetypes` (`values` on Server/DC,
    /// `issueTypes` on Cloud) for the issue type's id.
    async fn issue_type_id(&self, project: &str) -> Result<String, SendError> {
        let types = self
            .pages(
                &format!(
                    "rest/api/2/issue/createmeta/{}/issuetypes",
                    url_encode(project)
                ),
                &["values", "issueTypes"],
            )
            .await?;
        types
            .iter()
            .find(|t| {
                t["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&self.issue_type))
            })
            .map(|t| t["id"].as_str().unwrap_or_default().to_string())
            .ok_or_else(|| {
                SendError::permanent(
                    FailureReason::ClientError,
                    format!(
                        "issue type {:?} not found in project {project}",
                        self.issue_type
                    ),
                )
            })
    }

    /// The fields on the issue type's create screen (`values` or `fields` pages).
    async fn create_fields(&self, project: &str, type_id: &str) -> Result<Vec<Value>, SendError> {
        self.pages(
            &format!(
                "rest/api/2/issue/createmeta/{}/issuetypes/{}",
                url_encode(project),
                url_encode(type_id)
            ),
            &["values", "fields", "issueTypes"],
        )
        .await
    }

    /// Every item of a paged createmeta list. Stops at the last page, at
    /// `total`, on a page that repeats the one before (a server that ignores
    /// `startAt`), or after 1,000 pages.
    async fn pages(&self, path: &str, keys: &[&str]) -> Result<Vec<Value>, SendError> {
        let mut all = Vec::new();
        let mut previous: Option<Vec<Value>> = None;
        for _ in 0..1000 {
            let page = self
                .call(Method::GET, &format!("{path}?startAt={}", all.len()), None)
                .await?
                .1;
            let items = keys
                .iter()
                .find_map(|k| page[*k].as_array())
                .cloned()
                .unwrap_or_default();
            if previous.as_ref() == Some(&items) {
                break;
            }
            all.extend(items.iter().cloned());
            if last_page(&page, &items, all.len()) {
                break;
            }
            previous = Some(items);
        }
        Ok(all)
    }

    /// The project: the annotation's, else the default.
    fn project<'a>(&'a self, target: &'a Target) -> &'a str {
        target.value.as_deref().unwrap_or(&self.default_project)
    }

    /// The issue body (`formats::jira`) with this destination's settings.
    fn issue_body(&self, event: &Event, target: &Target) -> Result<Vec<u8>, String> {
        let Event::Alert(a) = event else {
            return Err("Jira takes no audit messages".into());
        };
        if !self.disable_priority && self.auto_mapping && self.checked.get().is_none() {
            // Never a body with a priority to be filled in later.
            return Err("the priority mapping is not known until the start-up checks pass".into());
        }
        let mapping = self.mapping.read().unwrap_or_else(|p| p.into_inner());
        let priority = (!self.disable_priority)
            .then(|| mapping.get(&a.fields.policy.severity).map(String::as_str));
        Ok(jira::issue_body(
            a,
            &jira::Issue {
                ui_endpoint: &self.ui_endpoint,
                issue_type: &self.issue_type,
                project: self.project(target),
                priority,
                label: (!self.label_prefix.is_empty()).then(|| self.label(&a.fields.id)),
                default_fields: &self.default_fields,
            },
        ))
    }

    fn label(&self, id: &str) -> String {
        format!("{}{id}", self.label_prefix)
    }

    /// The key of the issue carrying this alert's label, if one exists.
    async fn existing_issue(&self, id: &str) -> Result<Option<String>, SendError> {
        if self.label_prefix.is_empty() {
            return Ok(None);
        }
        let jql = format!("labels = {}", jql_string(&self.label(id)));
        let q: String = url_encode(&jql);
        // Cloud retired /rest/api/2/search for /rest/api/3/search/jql (which
        // can lag a just-created issue by seconds; the ledger covers that).
        let search = if self.cloud.get() == Some(&true) {
            "rest/api/3/search/jql"
        } else {
            "rest/api/2/search"
        };
        let found = self
            .call(
                Method::GET,
                &format!("{search}?jql={q}&fields=key&maxResults=1"),
                None,
            )
            .await?
            .1;
        Ok(found["issues"][0]["key"].as_str().map(str::to_string))
    }

    async fn deliver(&self, event: &Event, payload: &[u8]) -> Result<(), SendError> {
        // Normally done already (`prepare` runs before render); a no-op then.
        self.preflight().await?;
        let Event::Alert(a) = event else {
            return Ok(());
        };
        let id = &a.fields.id;
        match a.fields.state {
            AlertState::Resolved => {
                let Some(transition) = &self.resolve_transition else {
                    return Ok(());
                };
                let Some(key) = self.existing_issue(id).await? else {
                    return Err(SendError::permanent(
                        FailureReason::ClientError,
                        format!("no issue labelled {} to resolve", self.label(id)),
                    ));
                };
                let list = self
                    .call(
                        Method::GET,
                        &format!("rest/api/2/issue/{key}/transitions"),
                        None,
                    )
                    .await?
                    .1;
                let tid = list["transitions"]
                    .as_array()
                    .and_then(|ts| {
                        ts.iter().find(|t| {
                            t["name"]
                                .as_str()
                                .is_some_and(|n| n.eq_ignore_ascii_case(transition))
                        })
                    })
                    .and_then(|t| t["id"].as_str().map(str::to_string))
                    .ok_or_else(|| {
                        SendError::permanent(
                            FailureReason::ClientError,
                            format!("issue {key} has no transition {transition:?}"),
                        )
                    })?;
                let body = serde_json::to_vec(&json!({ "transition": { "id": tid } }))
                    .expect("serialises");
                self.call(
                    Method::POST,
                    &format!("rest/api/2/issue/{key}/transitions"),
                    Some(body),
                )
                .await?;
                Ok(())
            }
            _ => {
                if let Some(key) = self.existing_issue(id).await? {
                    if self.comment_on_update {
                        let note = format!(
                            "Updated: {}\r\n{}",
                            text::readable_time(&a.fields),
                            text::summary(&a.fields)
                        );
                        let body =
                            serde_json::to_vec(&json!({ "body": note })).expect("serialises");
                        self.call(
                            Method::POST,
                            &format!("rest/api/2/issue/{key}/comment"),
                            Some(body),
                        )
                        .await?;
                    }
                    tracing::debug!(issue = %key, alert = %id, "issue already exists; not creating another");
                    return Ok(());
                }
                self.call(Method::POST, "rest/api/2/issue", Some(payload.to_vec()))
                    .await
                    .map(|_| ())
            }
        }
    }
}

/// Whether a createmeta page was the last: empty, `isLast`, or `total` reached
/// (a server that repeats its page must not make herald page forever).
fn last_page(page: &Value, items: &[Value], next_start: usize) -> bool {
    items.is_empty()
        || page["isLast"].as_bool() == Some(true)
        || page["total"]
            .as_u64()
            .is_some_and(|t| next_start as u64 >= t)
}

/// A JQL string literal: quoted, with `"` and `\` escaped, so an alert id
/// cannot add clauses to the search.
fn jql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Central's Jira test issue.
const TEST_SUMMARY: &str = "This is a test issue created to test integration with StackRox.";

impl Notifier for Jira {
    fn can_resolve(&self) -> bool {
        self.resolve_transition.is_some()
    }

    fn cleartext_credentials(&self) -> Option<String> {
        http::cleartext_warning(&self.base, "the Jira password or API token")
    }

    fn annotation(&self) -> Option<&Annotation> {
        self.annotation.as_ref()
    }

    fn render(
        &self,
        event: &Event,
        target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        self.issue_body(event, target)
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver(event, payload))
    }

    fn preflight(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(Jira::preflight(self))
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move { Jira::preflight(self).await.map(|_| ()) })
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            self.preflight().await?;
            let mut fields = serde_json::Map::new();
            fields.insert("description".into(), json!("StackRox Test Issue"));
            fields.insert("issuetype".into(), json!({ "name": self.issue_type }));
            if !self.disable_priority {
                let low = self
                    .mapping
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&Severity::Low)
                    .cloned();
                fields.insert(
                    "priority".into(),
                    low.map_or(json!({}), |n| json!({ "name": n })),
                );
            }
            fields.insert("project".into(), json!({ "key": self.default_project }));
            fields.insert("summary".into(), json!(TEST_SUMMARY));
            let mut out = String::new();
            gojson::write_value(&mut out, &json!({ "fields": fields }));
            out.push('\n');
            let (_, created) = self
                .call(Method::POST, "rest/api/2/issue", Some(out.into_bytes()))
                .await?;
            Ok(format!(
                "created test issue {}",
                created["key"].as_str().unwrap_or("?")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn jql_strings_cannot_add_clauses() {
        assert_eq!(jql_string("herald-a1"), r#""herald-a1""#);
        assert_eq!(
            jql_string(r#"herald-x" OR project = "SECRET\"#),
            r#""herald-x\" OR project = \"SECRET\\""#
        );
    }

    #[test]
    fn auto_mapping_prefers_well_known_names_then_scheme_order() {
        let m = auto_mapping(&names(&["Lowest", "Low", "Medium", "High", "Highest"]));
        assert_eq!(m[&Severity::Critical], "Highest");
        assert_eq!(m[&Severity::Low], "Low");
        let m = auto_mapping(&names(&[
            "Trivial", "Minor", "Major", "Critical", "Blocker",
        ]));
        assert_eq!(
            (
                m[&Severity::Critical].as_str(),
                m[&Severity::High].as_str(),
                m[&Severity::Medium].as_str(),
                m[&Severity::Low].as_str()
            ),
            ("Blocker", "Critical", "Major", "Minor")
        );
        let m = auto_mapping(&names(&["P1", "P2", "P3"]));
        assert_eq!(
            (
                m[&Severity::Critical].as_str(),
                m[&Severity::High].as_str(),
                m[&Severity::Medium].as_str(),
                m[&Severity::Low].as_str()
            ),
            ("P1", "P2", "P3", "P3")
        );
        assert!(auto_mapping(&[]).is_empty());
    }
}
