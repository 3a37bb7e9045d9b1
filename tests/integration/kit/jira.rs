//! A recording Jira (no Jira runs here) answering the calls herald makes in
//! either the Server/DC or the Cloud response shape, with a configurable
//! priority scheme, paging, and Basic auth that can be refused so the Bearer
//! fallback shows. It refuses what Jira refuses: an issue without project,
//! summary or issue type, a priority that is not in the scheme (or `{}`),
//! and a field that is not on the create screen (`labels`, optionally off).
//! [`Options`] make it impolite the way real servers are: one that ignores
//! `startAt`, a priority field without `allowedValues`, no `serverInfo`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    ServerDc,
    Cloud,
}

#[derive(Default)]
struct Inner {
    issues: Vec<Value>,
    /// (issue key, comment body)
    comments: Vec<(String, String)>,
    /// (issue key, transition id)
    transitions: Vec<(String, String)>,
    /// (method, path and query, Authorization header)
    calls: Vec<(String, String, String)>,
    /// Answering 503 to everything (Jira unreachable at herald's start).
    down: bool,
}

/// How this Jira differs from a well-behaved one.
#[derive(Clone, Copy)]
pub struct Options {
    /// `labels` is on the create screen (Jira refuses it otherwise).
    pub labels_on_screen: bool,
    /// Answers every page request with the first page (a server that
    /// ignores `startAt`); `total` stays right.
    pub ignore_start_at: bool,
    /// The priority field lists its `allowedValues`; without, herald must
    /// ask `GET /rest/api/2/priority`.
    pub priority_allowed_values: bool,
    /// `GET /rest/api/2/serverInfo` exists (404 otherwise).
    pub server_info: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            labels_on_screen: true,
            ignore_start_at: false,
            priority_allowed_values: true,
            server_info: true,
        }
    }
}

#[derive(Clone)]
pub struct Jira {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
    shape: Shape,
    priorities: Vec<String>,
    basic_ok: bool,
    user: String,
    password: String,
    options: Options,
}

impl Jira {
    pub async fn start(shape: Shape, priorities: &[&str], basic_ok: bool) -> Jira {
        Jira::start_with(shape, priorities, basic_ok, Options::default()).await
    }

    pub async fn start_with(
        shape: Shape,
        priorities: &[&str],
        basic_ok: bool,
        options: Options,
    ) -> Jira {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let j = Jira {
            inner: Arc::default(),
            addr: listener.local_addr().unwrap(),
            shape,
            priorities: priorities.iter().map(|s| s.to_string()).collect(),
            basic_ok,
            user: "bot".into(),
            password: "jira-token-1".into(),
            options,
        };
        let app = Router::new().fallback(handle).with_state(j.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        j
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn issues(&self) -> Vec<Value> {
        self.inner.lock().unwrap().issues.clone()
    }

    pub fn comments(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().comments.clone()
    }

    pub fn transitions(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().transitions.clone()
    }

    /// Answers 503 to every call while `down`.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn calls(&self) -> Vec<(String, String, String)> {
        self.inner.lock().unwrap().calls.clone()
    }

    fn authorised(&self, auth: &str) -> bool {
        use base64::Engine;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.password))
        );
        (self.basic_ok && auth == basic) || auth == format!("Bearer {}", self.password)
    }
}

fn page(items: Vec<Value>, start: usize, key: &str) -> Value {
    // One item per page, to make herald page.
    let item: Vec<Value> = items.iter().skip(start).take(1).cloned().collect();
    json!({ key: item, "startAt": start, "maxResults": 1, "total": items.len(), "isLast": start + 1 >= items.len() })
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn handle(
    State(j): State<Jira>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path_q = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    j.inner
        .lock()
        .unwrap()
        .calls
        .push((method.to_string(), path_q, auth.clone()));
    if j.inner.lock().unwrap().down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if !j.authorised(&auth) {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"errorMessages": ["Unauthorized"]}).to_string(),
        )
            .into_response();
    }
    let path = uri.path();
    let ok = |v: Value| (StatusCode::OK, v.to_string()).into_response();
    let start: usize = if j.options.ignore_start_at {
        0
    } else {
        query_param(&uri, "startAt")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    // Cloud retired /rest/api/2/search: it answers 410 Gone there.
    if j.shape == Shape::Cloud && path == "/rest/api/2/search" {
        return (
            StatusCode::GONE,
            json!({"errorMessages": ["use /rest/api/3/search/jql"]}).to_string(),
        )
            .into_response();
    }
    let path = if j.shape == Shape::Cloud && path == "/rest/api/3/search/jql" {
        "/rest/api/2/search"
    } else {
        path
    };
    let segments: Vec<&str> = path.trim_start_matches("/rest/api/2/").split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["configuration"]) => ok(json!({"votingEnabled": true})),
        ("GET", ["serverInfo"]) if !j.options.server_info => (
            StatusCode::NOT_FOUND,
            json!({"errorMessages": ["null for uri: /rest/api/2/serverInfo"]}).to_string(),
        )
            .into_response(),
        ("GET", ["priority"]) => ok(Value::Array(
            j.priorities
                .iter()
                .enumerate()
                .map(|(i, n)| json!({"id": (i + 1).to_string(), "name": n}))
                .collect(),
        )),
        ("GET", ["serverInfo"]) => ok(json!({
            "baseUrl": j.url(),
            "deploymentType": if j.shape == Shape::Cloud { "Cloud" } else { "Server" },
            "version": "9.12.0"
        })),
        ("GET", ["mypermissions"]) => {
            if query_param(&uri, "projectKey").as_deref() == Some("NOPE") {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"errorMessages": ["No project could be found with key 'NOPE'."]})
                        .to_string(),
                )
                    .into_response();
            }
            ok(
                json!({"permissions": {"CREATE_ISSUES": {"id": "11", "key": "CREATE_ISSUES", "havePermission": true}}}),
            )
        }
        ("GET", ["issue", "createmeta", _, "issuetypes"]) => {
            let types = vec![
                json!({"id": "10004", "name": "Bug"}),
                json!({"id": "10001", "name": "Task"}),
            ];
            ok(page(
                types,
                start,
                if j.shape == Shape::Cloud {
                    "issueTypes"
                } else {
                    "values"
                },
            ))
        }
        ("GET", ["issue", "createmeta", _, "issuetypes", _]) => {
            let allowed: Vec<Value> = j
                .priorities
                .iter()
                .enumerate()
                .map(|(i, n)| json!({"id": (i + 1).to_string(), "name": n}))
                .collect();
            let mut priority =
                json!({"fieldId": "priority", "name": "Priority", "required": false});
            if j.options.priority_allowed_values {
                priority["allowedValues"] = json!(allowed);
            }
            let mut fields = vec![
                json!({"fieldId": "summary", "name": "Summary", "required": true}),
                priority,
            ];
            if j.options.labels_on_screen {
                fields.push(json!({"fieldId": "labels", "name": "Labels", "required": false}));
            }
            ok(page(
                fields,
                start,
                if j.shape == Shape::Cloud {
                    "fields"
                } else {
                    "values"
                },
            ))
        }
        ("GET", ["search"]) => {
            let jql = query_param(&uri, "jql").unwrap_or_default();
            let label = jql.split('"').nth(1).unwrap_or("").to_string();
            let inner = j.inner.lock().unwrap();
            let found: Vec<Value> = inner
                .issues
                .iter()
                .filter(|i| {
                    i["fields"]["labels"]
                        .as_array()
                        .is_some_and(|ls| ls.iter().any(|l| l == &json!(label)))
                })
                .map(|i| json!({"key": i["key"]}))
                .collect();
            ok(json!({"issues": found, "total": found.len()}))
        }
        ("POST", ["issue"]) => {
            let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
                return (StatusCode::BAD_REQUEST, "{}").into_response();
            };
            let f = &v["fields"];
            let mut errors = serde_json::Map::new();
            for (field, present) in [
                ("project", f["project"]["key"].is_string()),
                (
                    "summary",
                    f["summary"].as_str().is_some_and(|s| !s.is_empty()),
                ),
                ("issuetype", f["issuetype"]["name"].is_string()),
            ] {
                if !present {
                    errors.insert(field.into(), json!(format!("{field} is required.")));
                }
            }
            if let Some(p) = f.get("priority") {
                let known = p["name"]
                    .as_str()
                    .is_some_and(|n| j.priorities.iter().any(|q| q == n));
                if !known {
                    errors.insert(
                        "priority".into(),
                        json!("Specify a valid value for priority"),
                    );
                }
            }
            if f.get("labels").is_some() && !j.options.labels_on_screen {
                errors.insert(
                    "labels".into(),
                    json!("Field 'labels' cannot be set. It is not on the appropriate screen, or unknown."),
                );
            }
            if !errors.is_empty() {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"errorMessages": [], "errors": errors}).to_string(),
                )
                    .into_response();
            }
            let mut inner = j.inner.lock().unwrap();
            let project = v["fields"]["project"]["key"]
                .as_str()
                .unwrap_or("X")
                .to_string();
            let key = format!("{project}-{}", inner.issues.len() + 1);
            v["key"] = json!(key);
            v["raw"] = json!(String::from_utf8_lossy(&body));
            inner.issues.push(v);
            (
                StatusCode::CREATED,
                json!({"id": inner.issues.len().to_string(), "key": key}).to_string(),
            )
                .into_response()
        }
        ("GET", ["issue", _key, "transitions"]) => ok(json!({"transitions": [
            {"id": "11", "name": "In Progress"},
            {"id": "31", "name": "Done"}
        ]})),
        ("POST", ["issue", key, "transitions"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = v["transition"]["id"].as_str().unwrap_or("").to_string();
            j.inner
                .lock()
                .unwrap()
                .transitions
                .push((key.to_string(), id));
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["issue", key, "comment"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let text = v["body"].as_str().unwrap_or("").to_string();
            j.inner
                .lock()
                .unwrap()
                .comments
                .push((key.to_string(), text));
            (StatusCode::CREATED, json!({"id": "1"}).to_string()).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"errorMessages": [format!("no {method} {path}")]}).to_string(),
        )
            .into_response(),
    }
}
