//! The HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/v1/parked`) and
//! the optional ingest listener (`ingest.rs`).

pub mod ingest;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use crate::telemetry::{Health, Metrics};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    ledger: Option<crate::ledger::Ledger>,
}

/// Binds now (so a taken port fails at start) and serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    ledger: Option<crate::ledger::Ledger>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen: cannot listen on {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .route("/v1/parked", get(parked_handler))
        .route("/v1/ledger/{destination}/{key}", get(ledger_handler))
        .with_state(AppState {
            metrics,
            health,
            ledger,
        });
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http listener failed");
        }
    }))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Parked deliveries as JSON (values included), for `herald parked list`.
async fn parked_handler(State(s): State<AppState>) -> impl IntoResponse {
    let Some(ledger) = s.ledger else {
        return (StatusCode::NOT_FOUND, "ledger disabled\n".to_string());
    };
    match ledger.parked() {
        Ok(list) => {
            let parked: Vec<_> = list.into_iter().map(|(_, p)| p).collect();
            (
                StatusCode::OK,
                serde_json::to_string(&parked).expect("serialises"),
            )
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// One ledger key of one destination, for `herald explain` while the daemon
/// holds the ledger: `{"entry": <base64 of the stored entry> | null, "parked": bool}`.
async fn ledger_handler(
    State(s): State<AppState>,
    axum::extract::Path((destination, key)): axum::extract::Path<(String, String)>,
) -> impl IntoResponse {
    let Some(ledger) = s.ledger else {
        return (StatusCode::NOT_FOUND, "ledger disabled\n".to_string());
    };
    match ledger.get(&destination, &key) {
        Ok(entry) => (
            StatusCode::OK,
            serde_json::json!({
                "entry": entry.map(|e| base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    e.encode()
                )),
                "parked": ledger.is_parked(&destination, &key),
            })
            .to_string(),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}
