//! herald's listeners: `[http]` (`/metrics`, `/healthz`, `/readyz`, for
//! Prometheus and probes), `[admin]` (`/v1/parked`, `/v1/ledger`, which show
//! alert data: loopback by default, optionally with a token) and the
//! optional `[ingest]` (`ingest.rs`). Each is served by [`serve`] with the
//! same client limits.

pub mod ingest;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::{Ledger, Row};
pub use crate::telemetry::{Health, Metrics};

/// The running listeners.
pub struct Listeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    /// Binds every configured listener now (a taken port fails at start).
    pub async fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        ledger: Option<Ledger>,
        stop: CancellationToken,
    ) -> anyhow::Result<Listeners> {
        let limits = serve::Limits {
            header_read_timeout: config.http.header_read_timeout.0,
            request_timeout: config.http.request_timeout.0,
            max_connections: config.http.max_connections,
        };
        let mut tasks = Vec::new();
        let listener = bind(config.http.listen, "http.listen").await?;
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready_handler))
            .with_state((metrics.clone(), health));
        tasks.push(serve::spawn("http", listener, app, limits, stop.clone()));

        let listener = bind(config.admin.listen, "admin.listen").await?;
        let admin = Router::new()
            .route("/v1/parked", get(parked_handler))
            .route("/v1/ledger/{destination}/{key}", get(ledger_handler))
            .with_state(Admin {
                ledger,
                accepted: config
                    .admin
                    .token()
                    .map(|t| vec![digest(&format!("Bearer {}", t.expose()))])
                    .unwrap_or_default(),
            });
        tasks.push(serve::spawn("admin", listener, admin, limits, stop.clone()));

        if let Some(i) = &config.ingest {
            tasks.push(ingest::serve(i, &config.kafka, metrics, limits, stop).await?);
        }
        Ok(Listeners { tasks })
    }

    /// Waits (at most `timeout` each) for the listeners to stop.
    pub async fn stopped(self, timeout: Duration) {
        for t in self.tasks {
            let _ = tokio::time::timeout(timeout, t).await;
        }
    }
}

async fn bind(addr: std::net::SocketAddr, field: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{field}: cannot listen on {addr}: {e}"))
}

/// SHA-256 of an `Authorization` value, compared in constant time.
pub(crate) fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether the request's `Authorization` is one of `accepted` (digests);
/// every candidate is compared, so timing does not say which matched. An
/// empty list accepts everyone.
pub(crate) fn authorized(accepted: &[[u8; 32]], headers: &HeaderMap) -> bool {
    if accepted.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = digest(given.trim());
    accepted
        .iter()
        .fold(0u8, |any, want| any | given.ct_eq(want).unwrap_u8())
        == 1
}

async fn metrics_handler(
    State((metrics, _)): State<(Arc<Metrics>, Arc<Health>)>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn ready_handler(
    State((_, health)): State<(Arc<Metrics>, Arc<Health>)>,
) -> impl IntoResponse {
    match health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

#[derive(Clone)]
struct Admin {
    ledger: Option<Ledger>,
    accepted: Vec<[u8; 32]>,
}

impl Admin {
    /// The ledger for an authorised request; the answer otherwise.
    fn check(&self, headers: &HeaderMap) -> Result<&Ledger, Box<Response>> {
        if !authorized(&self.accepted, headers) {
            return Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "unauthorized\n",
                )
                    .into_response(),
            ));
        }
        self.ledger
            .as_ref()
            .ok_or_else(|| Box::new((StatusCode::NOT_FOUND, "ledger disabled\n").into_response()))
    }
}

/// Most rows one `/v1/parked` page holds.
pub const PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// Parked deliveries, oldest first, a page at a time:
/// `{"parked": [...], "next": <id to pass as after> | null}`. Targets show
/// as scheme and host (or project, address); values are not included.
async fn parked_handler(
    State(s): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let ledger = match s.check(&headers) {
        Ok(l) => l.clone(),
        Err(r) => return *r,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let after = q.after;
    let page = tokio::task::spawn_blocking(move || ledger.page(after, limit)).await;
    match page {
        Ok(Ok(rows)) => {
            let next = (rows.len() == limit).then(|| rows.last().map(|(id, _)| *id));
            let parked: Vec<serde_json::Value> =
                rows.iter().map(|(id, r)| listed(*id, r)).collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "parked": parked, "next": next.flatten() }).to_string(),
            )
                .into_response()
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// One parked row as listings show it: no value, no secret target.
pub fn listed(id: u64, row: &Row) -> serde_json::Value {
    match row {
        Row::Parked(p) => serde_json::json!({
            "id": id,
            "destination": p.destination,
            "target": p.target_shown,
            "key": p.key,
            "topic": p.topic,
            "partition": p.partition,
            "offset": p.offset,
            "attempts": p.attempts,
            "rounds": p.rounds,
            "first_error": p.first_error,
            "last_error": p.last_error,
            "parked_at_ms": p.parked_at_ms,
            "next_attempt_ms": p.next_attempt_ms,
        }),
        Row::Unreadable(bytes) => serde_json::json!({
            "id": id,
            "unreadable": true,
            "bytes": bytes.len(),
        }),
    }
}

/// One ledger key of one destination, for `herald explain` while the daemon
/// holds the ledger: `{"entry": <base64 of the stored entry> | null, "parked": bool}`.
async fn ledger_handler(
    State(s): State<Admin>,
    headers: HeaderMap,
    axum::extract::Path((destination, key)): axum::extract::Path<(String, String)>,
) -> Response {
    let ledger = match s.check(&headers) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    match (
        ledger.get(&destination, &key),
        ledger.is_parked(&destination, &key),
    ) {
        (Ok(entry), Ok(parked)) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "entry": entry.map(|e| base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    e.encode()
                )),
                "parked": parked,
            })
            .to_string(),
        )
            .into_response(),
        (Err(e), _) | (_, Err(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
        }
    }
}
