//! `POST /v1/ingest`: Central's generic-webhook bodies in, Kafka records out.
//! A body is answered 200 only after the broker acknowledged it (idempotent
//! producer, acks=all), so Central retries whatever herald could not store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::config::ingest::IngestConfig;
use crate::config::KafkaConfig;
use crate::model::{decode, Event, InvalidReason};

struct Ingest {
    producer: FutureProducer,
    topic: String,
    max_body_bytes: usize,
    limits: crate::model::Limits,
    produce_timeout: Duration,
    /// SHA-256 of each accepted `Authorization` header value, compared in
    /// constant time.
    accepted: Vec<[u8; 32]>,
    metrics: Arc<Metrics>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Binds now (a taken port fails at start) and serves until `stop`.
pub async fn serve(
    cfg: &IngestConfig,
    kafka: &KafkaConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let producer = crate::source::producer_with_timeout(kafka, cfg.produce_timeout)?;
    let mut accepted = Vec::new();
    if let Some((user, password)) = &cfg.basic {
        let pair = format!("{user}:{}", password.expose());
        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
        accepted.push(digest(&format!("Basic {b64}")));
    }
    if let Some(token) = &cfg.bearer {
        accepted.push(digest(&format!("Bearer {}", token.expose())));
    }
    let state = Arc::new(Ingest {
        producer,
        topic: cfg.topic.clone(),
        max_body_bytes: cfg.max_body_bytes,
        limits: crate::model::Limits {
            max_bytes: cfg.max_body_bytes,
            max_depth: kafka.max_json_depth,
        },
        produce_timeout: cfg.produce_timeout,
        accepted,
        metrics,
    });
    for code in ["200", "400", "401", "413", "503"] {
        state.metrics.ingest_requests.with_label_values(&[code]);
    }
    let app = Router::new()
        .route("/v1/ingest", post(ingest_handler))
        // The handler reads at most max_body_bytes itself (413 with a reason).
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("ingest.listen: cannot listen on {}: {e}", cfg.listen))?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %cfg.listen, scheme, topic = %cfg.topic, "ingest endpoint listening");
    Ok(match &cfg.tls {
        None => spawn_serve(listener, app, stop),
        Some(tls) => spawn_serve(TlsListener::new(listener, tls.clone()), app, stop),
    })
}

fn spawn_serve<L: axum::serve::Listener>(
    listener: L,
    app: Router,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "ingest listener failed");
        }
    })
}

fn reply(s: &Ingest, code: StatusCode, body: String) -> Response {
    s.metrics
        .ingest_requests
        .with_label_values(&[code.as_str()])
        .inc();
    let mut r = (code, body).into_response();
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"herald\", Bearer"),
        );
    }
    r
}

fn authorized(s: &Ingest, headers: &HeaderMap) -> bool {
    if s.accepted.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = digest(given.trim());
    // Every candidate is compared, so timing does not say which one matched.
    s.accepted
        .iter()
        .fold(0u8, |any, want| any | given.ct_eq(want).unwrap_u8())
        == 1
}

async fn ingest_handler(State(s): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&s, &headers) {
        return reply(&s, StatusCode::UNAUTHORIZED, "unauthorized\n".into());
    }
    let body = match axum::body::to_bytes(body, s.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return reply(
                &s,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "too_large: the body exceeds the limit of {} bytes\n",
                    s.max_body_bytes
                ),
            )
        }
    };
    let event = match decode(&body, &s.limits) {
        Ok(e) => e,
        Err(invalid) => {
            let code = if invalid.reason == InvalidReason::TooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return reply(&s, code, format!("{invalid}\n"));
        }
    };
    // Keyed by alert id: every state of one alert lands on one partition, in order.
    let key = match &event {
        Event::Alert(a) => a.fields.id.clone(),
        Event::Audit(_) => crate::ledger::key_of(&event),
    };
    let record = FutureRecord::to(&s.topic).key(&key).payload(&body[..]);
    match s.producer.send(record, s.produce_timeout).await {
        Ok(d) => {
            tracing::debug!(key = %key, partition = d.partition, offset = d.offset, "ingested");
            reply(&s, StatusCode::OK, "ok\n".into())
        }
        Err((e, _)) => {
            tracing::warn!(error = %e, "ingest: the broker did not take the record; answering 503");
            reply(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "the broker did not acknowledge the record; retry\n".into(),
            )
        }
    }
}

/// A TLS listener for `axum::serve`: handshakes run in their own tasks (with
/// a time limit), so one slow client does not hold up the others.
struct TlsListener {
    local: SocketAddr,
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener
            .local_addr()
            .expect("bound listener has an address");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "ingest accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    match hs.await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "ingest TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "ingest TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { local, rx }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop only ends with the listener; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
