//! A Splunk HTTP Event Collector stand-in, as strict as Splunk where herald
//! touches it (no Splunk runs here): token auth (401 code 2, 403 code 4),
//! bodies of concatenated JSON objects (400 code 6 for bad JSON, 400 code 12
//! without `event`), an injectable 503 code 9, gzip, the health endpoint,
//! and indexer acknowledgements on a data channel (400 code 10 without one).

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    /// Requests to the event endpoints, each with its parsed events.
    requests: Vec<(HeaderMap, Vec<Value>)>,
    busy: usize,
    /// Acks: id → when it becomes true.
    acks: Vec<Instant>,
    ack_polls: usize,
}

#[derive(Clone)]
pub struct Hec {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
    token: String,
    acks_enabled: bool,
    ack_delay: Duration,
}

fn answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response()
}

impl Hec {
    pub async fn start(token: &str, acks: Option<Duration>) -> Hec {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hec = Hec {
            inner: Arc::default(),
            addr: listener.local_addr().unwrap(),
            token: token.to_string(),
            acks_enabled: acks.is_some(),
            ack_delay: acks.unwrap_or_default(),
        };
        let app = Router::new().fallback(handle).with_state(hec.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        hec
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next `n` event requests with 503 "Server is busy".
    pub fn busy(&self, n: usize) {
        self.inner.lock().unwrap().busy = n;
    }

    pub fn requests(&self) -> Vec<(HeaderMap, Vec<Value>)> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.requests().into_iter().flat_map(|(_, e)| e).collect()
    }

    pub fn ack_polls(&self) -> usize {
        self.inner.lock().unwrap().ack_polls
    }
}

async fn handle(
    State(hec): State<Hec>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => return answer(401, json!({"text": "Token is required", "code": 2})),
        Some(v) if v != format!("Splunk {}", hec.token) => {
            return answer(403, json!({"text": "Invalid token", "code": 4}))
        }
        _ => {}
    }
    if method == Method::GET && path.starts_with("/services/collector/health") {
        return answer(200, json!({"text": "HEC is healthy", "code": 17}));
    }
    let channel = headers.get("x-splunk-request-channel").is_some();
    if path == "/services/collector/ack" {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut inner = hec.inner.lock().unwrap();
        inner.ack_polls += 1;
        let mut acks = serde_json::Map::new();
        for id in v["acks"].as_array().cloned().unwrap_or_default() {
            let i = id.as_u64().unwrap() as usize;
            let ready = inner.acks.get(i).is_some_and(|t| Instant::now() >= *t);
            acks.insert(i.to_string(), Value::Bool(ready));
        }
        return answer(200, json!({ "acks": acks }));
    }
    if method != Method::POST
        || !matches!(
            path,
            "/services/collector" | "/services/collector/event" | "/services/collector/event/1.0"
        )
    {
        return answer(
            404,
            json!({"text": "The requested URL was not found on this server.", "code": 404}),
        );
    }
    if hec.acks_enabled && !channel {
        return answer(400, json!({"text": "Data channel is missing", "code": 10}));
    }
    let body = if headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        == Some("gzip")
    {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return answer(
                400,
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 0}),
            );
        }
        out
    } else {
        body.to_vec()
    };
    let mut events = Vec::new();
    for (i, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        match item {
            Ok(v) if v.get("event").is_some_and(|e| !e.is_null()) => events.push(v),
            Ok(_) => {
                return answer(
                    400,
                    json!({"text": "Event field is required", "code": 12, "invalid-event-number": i}),
                )
            }
            Err(_) => {
                return answer(
                    400,
                    json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}),
                )
            }
        }
    }
    if events.is_empty() {
        return answer(400, json!({"text": "No data", "code": 5}));
    }
    let mut inner = hec.inner.lock().unwrap();
    if inner.busy > 0 {
        inner.busy -= 1;
        return answer(503, json!({"text": "Server is busy", "code": 9}));
    }
    inner.requests.push((headers, events));
    if hec.acks_enabled {
        let id = inner.acks.len();
        inner.acks.push(Instant::now() + hec.ack_delay);
        return answer(200, json!({"text": "Success", "code": 0, "ackId": id}));
    }
    answer(200, json!({"text": "Success", "code": 0}))
}
