//! `POST /v1/ingest`: Central's generic-webhook bodies in, Kafka records out.
//! A body is answered 200 only after the broker acknowledged it (idempotent
//! producer, acks=all), so Central retries whatever herald could not store.

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
use tokio_util::sync::CancellationToken;

use super::{authorized, digest, serve, Metrics};
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

/// The ingest listener's TLS settings from its PEM files, errors by field.
pub fn tls_config(
    cfg: &IngestConfig,
    errs: &mut crate::config::Errors,
) -> Option<Arc<rustls::ServerConfig>> {
    let (cert, key) = cfg.tls.as_ref()?;
    crate::tls::server_config(cert, key, "ingest", errs)
}

/// Binds now (a taken port fails at start) and serves until `stop`.
pub async fn serve(
    cfg: &IngestConfig,
    kafka: &KafkaConfig,
    metrics: Arc<Metrics>,
    limits: serve::Limits,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut errs = crate::config::Errors::default();
    let tls = tls_config(cfg, &mut errs);
    if !errs.is_empty() {
        anyhow::bail!("{errs}");
    }
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
    Ok(match tls {
        None => serve::spawn("ingest", listener, app, limits, stop),
        Some(tls) => serve::spawn("ingest", TlsListener::new(listener, tls), app, limits, stop),
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

async fn ingest_handler(State(s): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&s.accepted, &headers) {
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

/// TLS on a TCP listener: handshakes run in their own tasks (with a time
/// limit), so one slow client does not hold up the others.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) -> TlsListener {
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
                            let _ = tx.send(stream).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "ingest TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "ingest TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { rx }
    }
}

impl serve::Acceptor for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    async fn accept(&mut self) -> std::io::Result<Self::Io> {
        match self.rx.recv().await {
            Some(c) => Ok(c),
            // The accept loop only ends with the listener; wait for shutdown.
            None => std::future::pending().await,
        }
    }
}
