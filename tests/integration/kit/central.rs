//! A recording stand-in for Central's REST API v1, as strict as Central where
//! herald touches it (tests/contracts/stackrox/*.swagger.json):
//! - every call needs `Authorization: Bearer <the current token>`: 401 with
//!   grpc-gateway's error body otherwise; a call listed as forbidden gets 403;
//! - `GET /v1/namespaces` pages with `query.pagination.limit` and
//!   `query.pagination.offset` (integers, or 400), in a stable order;
//! - a query parameter the API does not declare, or any other path or
//!   method, is refused (400 / 404 / 405);
//! - `GET /v1/alerts` takes `query` in Central's search syntax, of which it
//!   knows `Violation Time:tr/<from ms>-<to ms>` (compared, as Central does,
//!   to the second: both ends cut to their second, from ≤ time < to) and
//!   `Violation State:<STATE>[,<STATE>]`, joined by `+` (anything else: 400);
//!   like Central it lists only ACTIVE and ATTEMPTED alerts unless the query
//!   names a state; it pages with `pagination.limit`/`offset` and sorts by
//!   `Violation Time` only (400 for another field), alerts of one time in no
//!   promised order (here: ids descending); it answers `storage.ListAlert`s;
//!   `GET /v1/alerts/{id}` the whole alert, or 404;
//! - while "down", every call answers 503; while "hanging", none is
//!   answered; while "throttling", every call gets 429 with an absurd
//!   `Retry-After`.
//!
//! It records each call (path, query, whether the token was right, when).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    token: String,
    forbidden: HashSet<String>,
    down: bool,
    /// Calls hang (never answered) while set.
    hang: bool,
    /// Calls get 429 with an absurd Retry-After while set.
    throttle: bool,
    namespaces: Vec<Value>,
    clusters: Vec<Value>,
    alerts: BTreeMap<String, Value>,
    calls: Vec<Call>,
}

/// One call as the stand-in saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub authorized: bool,
    pub at: std::time::Instant,
}

#[derive(Clone)]
pub struct Central {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
    scheme: &'static str,
}

/// A namespace as `GET /v1/namespaces` lists it.
pub fn namespace(
    id: &str,
    name: &str,
    cluster_id: &str,
    cluster: &str,
    labels: Value,
    annotations: Value,
) -> Value {
    json!({
        "metadata": {
            "id": id, "name": name, "clusterId": cluster_id, "clusterName": cluster,
            "labels": labels, "annotations": annotations,
            "creationTime": "2026-01-05T10:00:00Z", "priority": "0"
        },
        "numDeployments": 1, "numSecrets": 0, "numNetworkPolicies": 0
    })
}

impl Central {
    pub async fn start(token: &str) -> Central {
        Central::serve(token, None).await
    }

    /// Over HTTPS with the given server certificate, as Central serves.
    pub async fn start_tls(token: &str, certs: &super::tls::Certs) -> Central {
        Central::serve(token, Some(super::tls::acceptor(certs))).await
    }

    async fn serve(token: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Central {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = Central {
            inner: Arc::new(Mutex::new(Inner {
                token: token.to_string(),
                ..Inner::default()
            })),
            addr: listener.local_addr().unwrap(),
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        let app = Router::new().fallback(handle).with_state(c.clone());
        super::tls::serve(listener, app, tls);
        c
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn set_token(&self, token: &str) {
        self.inner.lock().unwrap().token = token.to_string();
    }

    /// Calls (`namespaces`, `clusters`, `alerts`, `alert`) the token may not make.
    pub fn forbid(&self, calls: &[&str]) {
        self.inner.lock().unwrap().forbidden = calls.iter().map(|c| c.to_string()).collect();
    }

    pub fn set_hang(&self, hang: bool) {
        self.inner.lock().unwrap().hang = hang;
    }

    pub fn set_throttle(&self, throttle: bool) {
        self.inner.lock().unwrap().throttle = throttle;
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn set_namespaces(&self, list: Vec<Value>) {
        self.inner.lock().unwrap().namespaces = list;
    }

    pub fn set_clusters(&self, list: Vec<Value>) {
        self.inner.lock().unwrap().clusters = list;
    }

    /// Adds or replaces an alert (`storage.Alert` JSON with `id`).
    pub fn put_alert(&self, alert: Value) {
        let id = alert["id"].as_str().unwrap().to_string();
        self.inner.lock().unwrap().alerts.insert(id, alert);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": message, "code": code, "message": message, "details": []}).to_string(),
    )
        .into_response()
}

fn query_of(uri: &Uri) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("{k} given twice"));
        }
    }
    Ok(out)
}

/// The query parameters `GET path` declares in Central's API documents.
fn declared(call: &str) -> &'static [&'static str] {
    const PAGED: &[&str] = &[
        "query.query",
        "query.pagination.limit",
        "query.pagination.offset",
        "query.pagination.sortOption.field",
        "query.pagination.sortOption.reversed",
    ];
    match call {
        "namespaces" => PAGED,
        "clusters" => &["query"],
        "alerts" => &[
            "query",
            "pagination.limit",
            "pagination.offset",
            "pagination.sortOption.field",
            "pagination.sortOption.reversed",
        ],
        _ => &[],
    }
}

async fn handle(
    State(c): State<Central>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = match query_of(&uri) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, 3, &e),
    };
    if c.inner.lock().unwrap().hang {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    let mut inner = c.inner.lock().unwrap();
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", inner.token));
    inner.calls.push(Call {
        path: uri.path().to_string(),
        query: query.clone(),
        authorized,
        at: std::time::Instant::now(),
    });
    if inner.down {
        return error(StatusCode::SERVICE_UNAVAILABLE, 14, "unavailable");
    }
    if inner.throttle {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, 8, "rate limited");
        r.headers_mut().insert(
            "retry-after",
            axum::http::HeaderValue::from_static("18446744073709551615"),
        );
        return r;
    }
    let call = match uri.path() {
        "/v1/namespaces" => "namespaces",
        "/v1/clusters" => "clusters",
        "/v1/alerts" => "alerts",
        p if p.starts_with("/v1/alerts/")
            && p.len() > "/v1/alerts/".len()
            && !p[11..].contains('/') =>
        {
            "alert"
        }
        _ => return error(StatusCode::NOT_FOUND, 5, "Not Found"),
    };
    if method != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, 12, "Method Not Allowed");
    }
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            16,
            "credentials not found: token validation failed",
        );
    }
    if inner.forbidden.contains(call) {
        return error(
            StatusCode::FORBIDDEN,
            7,
            "access for this user is not authorized: not authorized",
        );
    }
    if let Some(k) = query.keys().find(|k| !declared(call).contains(&k.as_str())) {
        return error(
            StatusCode::BAD_REQUEST,
            3,
            &format!("unknown query parameter {k:?}"),
        );
    }
    let number = |k: &str| -> Result<Option<usize>, String> {
        match query.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{k}: not an integer: {v:?}")),
        }
    };
    let body = match call {
        "namespaces" => {
            let (limit, offset) = match (
                number("query.pagination.limit"),
                number("query.pagination.offset"),
            ) {
                (Ok(l), Ok(o)) => (l, o.unwrap_or(0)),
                (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, 3, &e),
            };
            let all = &inner.namespaces;
            let end = limit.map_or(all.len(), |l| (offset + l).min(all.len()));
            let page: Vec<Value> = all.get(offset.min(all.len())..end).unwrap_or(&[]).to_vec();
            json!({ "namespaces": page })
        }
        "alerts" => {
            let (limit, offset) = match (number("pagination.limit"), number("pagination.offset")) {
                (Ok(l), Ok(o)) => (l, o.unwrap_or(0)),
                (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, 3, &e),
            };
            if let Some(f) = query.get("pagination.sortOption.field") {
                if f != "Violation Time" {
                    return error(StatusCode::BAD_REQUEST, 3, &format!("cannot sort by {f:?}"));
                }
            }
            let reversed = match query
                .get("pagination.sortOption.reversed")
                .map(String::as_str)
            {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => {
                    return error(StatusCode::BAD_REQUEST, 3, &format!("not a boolean: {v:?}"))
                }
            };
            let filter = match Filter::parse(query.get("query").map_or("", String::as_str)) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::BAD_REQUEST, 3, &e),
            };
            let mut found: Vec<&Value> = inner
                .alerts
                .values()
                .filter(|a| filter.matches(a))
                .collect();
            found.sort_by_key(|a| {
                (
                    time_ms(a),
                    std::cmp::Reverse(a["id"].as_str().unwrap_or("").to_string()),
                )
            });
            if reversed {
                found.reverse();
            }
            let end = limit.map_or(found.len(), |l| (offset + l).min(found.len()));
            let page: Vec<Value> = found
                .get(offset.min(found.len())..end)
                .unwrap_or(&[])
                .iter()
                .map(|a| list_alert(a))
                .collect();
            json!({ "alerts": page })
        }
        "alert" => {
            let id = &uri.path()["/v1/alerts/".len()..];
            match inner.alerts.get(id) {
                Some(a) => a.clone(),
                None => {
                    return error(
                        StatusCode::NOT_FOUND,
                        5,
                        &format!("alert with id '{id}' does not exist"),
                    )
                }
            }
        }
        _ => json!({ "clusters": inner.clusters, "clusterIdToRetentionInfo": {} }),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn time_ms(a: &Value) -> i64 {
    a["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis())
}

/// `storage.ListAlert` of a whole alert.
fn list_alert(a: &Value) -> Value {
    json!({
        "id": a["id"],
        "lifecycleStage": a.get("lifecycleStage").cloned().unwrap_or(json!("DEPLOY")),
        "time": a["time"],
        "policy": {"id": a["policy"]["id"], "name": a["policy"]["name"], "severity": a["policy"]["severity"]},
        "state": a.get("state").cloned().unwrap_or(json!("ACTIVE")),
        "enforcementCount": 0,
        "commonEntityInfo": {"clusterName": a["clusterName"], "namespace": a["namespace"], "clusterId": a["clusterId"]},
    })
}

/// The part of Central's search syntax the stand-in knows.
#[derive(Default)]
struct Filter {
    time: Option<(i64, i64)>,
    states: Option<Vec<String>>,
}

impl Filter {
    fn parse(q: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for part in q.split('+').filter(|p| !p.is_empty()) {
            let (field, value) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: not Field:value"))?;
            match field {
                "Violation Time" => {
                    let range = value
                        .strip_prefix("tr/")
                        .and_then(|r| r.split_once('-'))
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                        .ok_or_else(|| format!("{value:?}: not tr/<from ms>-<to ms>"))?;
                    f.time = Some(range);
                }
                "Violation State" => {
                    let states: Vec<String> =
                        value.split(',').map(|s| s.to_ascii_uppercase()).collect();
                    if let Some(s) = states.iter().find(|s| {
                        !["ACTIVE", "SNOOZED", "RESOLVED", "ATTEMPTED"].contains(&s.as_str())
                    }) {
                        return Err(format!("unknown state {s:?}"));
                    }
                    f.states = Some(states);
                }
                other => return Err(format!("field {other:?} is not supported here")),
            }
        }
        Ok(f)
    }

    fn matches(&self, a: &Value) -> bool {
        let t = time_ms(a);
        let state = a.get("state").and_then(Value::as_str).unwrap_or("ACTIVE");
        let second = |ms: i64| ms.div_euclid(1000) * 1000;
        let states = self
            .states
            .clone()
            .unwrap_or_else(|| vec!["ACTIVE".into(), "ATTEMPTED".into()]);
        self.time
            .is_none_or(|(from, to)| second(from) <= t && t < second(to))
            && states.iter().any(|x| x == state)
    }
}
