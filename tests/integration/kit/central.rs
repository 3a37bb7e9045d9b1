//! A recording stand-in for Central's REST API v1, as strict as Central where
//! herald touches it (tests/contracts/stackrox/*.swagger.json):
//! - every call needs `Authorization: Bearer <the current token>`: 401 with
//!   grpc-gateway's error body otherwise; a call listed as forbidden gets 403;
//! - `GET /v1/namespaces` pages with `query.pagination.limit` and
//!   `query.pagination.offset` (integers, or 400), in a stable order;
//! - a query parameter the API does not declare, or any other path or
//!   method, is refused (400 / 404 / 405);
//! - while "down", every call answers 503.
//!
//! It records each call (path, query, whether the token was right).

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
    namespaces: Vec<Value>,
    clusters: Vec<Value>,
    calls: Vec<Call>,
}

/// One call as the stand-in saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub authorized: bool,
}

#[derive(Clone)]
pub struct Central {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = Central {
            inner: Arc::new(Mutex::new(Inner {
                token: token.to_string(),
                ..Inner::default()
            })),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new().fallback(handle).with_state(c.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        c
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_token(&self, token: &str) {
        self.inner.lock().unwrap().token = token.to_string();
    }

    /// Calls (`namespaces`, `clusters`) the token may not make.
    pub fn forbid(&self, calls: &[&str]) {
        self.inner.lock().unwrap().forbidden = calls.iter().map(|c| c.to_string()).collect();
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
    let mut inner = c.inner.lock().unwrap();
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", inner.token));
    inner.calls.push(Call {
        path: uri.path().to_string(),
        query: query.clone(),
        authorized,
    });
    if inner.down {
        return error(StatusCode::SERVICE_UNAVAILABLE, 14, "unavailable");
    }
    let call = match uri.path() {
        "/v1/namespaces" => "namespaces",
        "/v1/clusters" => "clusters",
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
        _ => json!({ "clusters": inner.clusters, "clusterIdToRetentionInfo": {} }),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
