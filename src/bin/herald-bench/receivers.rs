//! The three receivers herald delivers to in a bench run, each recording when
//! it first saw each alert id: a webhook and a Splunk HEC endpoint in this
//! process, and rsyslog's output file, tailed.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;

pub const HEC_TOKEN: &str = "bench-hec-token";

/// First receipt time per alert id, and the number of receipts.
#[derive(Default)]
pub struct Receipts {
    first: Mutex<HashMap<String, Instant>>,
    pub count: std::sync::atomic::AtomicU64,
}

impl Receipts {
    fn record(&self, id: &str, at: Instant) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.first
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert(at);
    }

    pub fn distinct(&self) -> usize {
        self.first.lock().unwrap().len()
    }

    pub fn times(&self) -> HashMap<String, Instant> {
        self.first.lock().unwrap().clone()
    }

    pub fn last(&self) -> Option<Instant> {
        self.first.lock().unwrap().values().max().copied()
    }
}

async fn serve(app: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A webhook receiver: `{"alert": {"id": …}}` bodies.
pub async fn webhook() -> anyhow::Result<(SocketAddr, Arc<Receipts>)> {
    let (addr, r, _) = webhook_switched().await?;
    Ok((addr, r))
}

/// A webhook receiver that answers 503 while its switch is on (a receiver
/// that is down).
pub async fn webhook_switched() -> anyhow::Result<(
    SocketAddr,
    Arc<Receipts>,
    Arc<std::sync::atomic::AtomicBool>,
)> {
    let r = Arc::new(Receipts::default());
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    type S = (Arc<Receipts>, Arc<std::sync::atomic::AtomicBool>);
    async fn handle(State((r, down)): State<S>, body: Bytes) -> impl IntoResponse {
        if down.load(std::sync::atomic::Ordering::Relaxed) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let at = Instant::now();
        let v: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return StatusCode::BAD_REQUEST,
        };
        match v["alert"]["id"].as_str() {
            Some(id) => {
                r.record(id, at);
                StatusCode::OK
            }
            None => StatusCode::BAD_REQUEST,
        }
    }
    let addr = serve(
        Router::new()
            .fallback(handle)
            .with_state((r.clone(), down.clone())),
    )
    .await?;
    Ok((addr, r, down))
}

/// A Splunk HEC endpoint: the token checked as Splunk does, bodies of
/// concatenated event envelopes, Splunk's success answer.
pub async fn hec() -> anyhow::Result<(SocketAddr, Arc<Receipts>)> {
    let r = Arc::new(Receipts::default());
    async fn handle(
        State(r): State<Arc<Receipts>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        let at = Instant::now();
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth.is_empty() {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"text":"Token is required","code":2}"#,
            );
        }
        if auth != format!("Splunk {HEC_TOKEN}") {
            return (
                StatusCode::FORBIDDEN,
                r#"{"text":"Invalid token","code":4}"#,
            );
        }
        let mut ids = Vec::new();
        for v in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>() {
            let Ok(v) = v else {
                return (
                    StatusCode::BAD_REQUEST,
                    r#"{"text":"Invalid data format","code":6}"#,
                );
            };
            match v["event"]["id"].as_str() {
                Some(id) => ids.push(id.to_string()),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"text":"Event field is required","code":12}"#,
                    )
                }
            }
        }
        for id in ids {
            r.record(&id, at);
        }
        (StatusCode::OK, r#"{"text":"Success","code":0}"#)
    }
    let addr = serve(Router::new().fallback(handle).with_state(r.clone())).await?;
    Ok((addr, r))
}

/// Tails rsyslog's output file from its current end, recording the
/// `devicePayloadId` of each new line when the line is read (every 2 ms, so
/// receipt times are late by at most that plus rsyslog's write).
pub fn syslog_tail(path: PathBuf, stop: Arc<std::sync::atomic::AtomicBool>) -> Arc<Receipts> {
    let r = Arc::new(Receipts::default());
    let rec = r.clone();
    let start = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    std::thread::spawn(move || {
        let mut pos = start;
        let mut partial = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(mut f) = std::fs::File::open(&path) else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            if f.seek(SeekFrom::Start(pos)).is_err() {
                continue;
            }
            let n = f.read(&mut buf).unwrap_or(0);
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let at = Instant::now();
            pos += n as u64;
            partial.extend_from_slice(&buf[..n]);
            while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                if let Some(id) = field(&line, b"devicePayloadId=") {
                    rec.record(&id, at);
                }
            }
        }
    });
    r
}

/// The value of a CEF extension key (up to the next space).
fn field(line: &[u8], key: &[u8]) -> Option<String> {
    let at = line.windows(key.len()).position(|w| w == key)? + key.len();
    let end = line[at..]
        .iter()
        .position(|b| *b == b' ' || *b == b'\n')
        .map_or(line.len(), |e| at + e);
    Some(String::from_utf8_lossy(&line[at..end]).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_payload_id_of_a_cef_line() {
        let line = b"<14>1 2024-01-01T00:00:00Z central stackrox 1 - - CEF:0|StackRox|Kubernetes Security Platform|4.7|Alert|p|5|devicePayloadId=abc-1 rt=1\n";
        assert_eq!(
            super::field(line, b"devicePayloadId="),
            Some("abc-1".into())
        );
    }
}
