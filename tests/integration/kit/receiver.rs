//! A recording HTTP receiver whose answers a test controls: accept, fail with a
//! status, answer slowly, or hold requests until released.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// The request target as sent: absolute-form when the client used a proxy.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
    pub at: Instant,
}

impl Recorded {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Debug, Clone)]
pub enum Behavior {
    Accept,
    /// Answer this status (and `Retry-After` when given).
    Fail(u16, Option<String>),
    /// Hold requests whose body contains the marker until released.
    Hold(String),
    /// Answer this status (with `Retry-After` when given) to the next `n`
    /// requests, then accept.
    FailTimes(u16, usize, Option<String>),
    /// Accept, after this long (a slow destination).
    Delay(Duration),
    /// Answer 302 with this `Location`.
    Redirect(String),
}

struct Inner {
    behavior: Mutex<Behavior>,
    /// Every answered request, in order.
    answered: Mutex<Vec<Recorded>>,
    /// Requests received, answered or not.
    arrived: Mutex<usize>,
    release: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    pub addr: std::net::SocketAddr,
    scheme: &'static str,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::serve(None).await
    }

    /// An HTTPS receiver with the given server certificate.
    pub async fn start_tls(certs: &super::tls::Certs) -> Receiver {
        Receiver::serve(Some(super::tls::acceptor(certs))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let (release, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            behavior: Mutex::new(Behavior::Accept),
            answered: Mutex::new(Vec::new()),
            arrived: Mutex::new(0),
            release,
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        super::tls::serve(listener, app, tls);
        Receiver {
            inner,
            addr,
            scheme,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn set(&self, b: Behavior) {
        *self.inner.behavior.lock().unwrap() = b;
    }

    /// Lets held requests (and later ones) through.
    pub fn release(&self) {
        self.set(Behavior::Accept);
        self.inner.release.send_replace(true);
    }

    pub fn answered(&self) -> Vec<Recorded> {
        self.inner.answered.lock().unwrap().clone()
    }

    /// Requests answered with 2xx.
    pub fn delivered(&self) -> Vec<Recorded> {
        self.answered()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    pub fn arrived(&self) -> usize {
        *self.inner.arrived.lock().unwrap()
    }

    /// Waits until at least `n` requests were delivered (2xx).
    pub async fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let me = self.clone();
        let ok = super::eventually(timeout, || {
            let me = me.clone();
            async move { me.delivered().len() >= n }
        })
        .await;
        let got = self.delivered();
        assert!(
            ok,
            "expected {n} deliveries within {timeout:?}, got {}",
            got.len()
        );
        got
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *inner.arrived.lock().unwrap() += 1;
    let behavior = {
        let mut b = inner.behavior.lock().unwrap();
        let current = b.clone();
        if let Behavior::FailTimes(code, n, ra) = &current {
            *b = if *n > 1 {
                Behavior::FailTimes(*code, n - 1, ra.clone())
            } else {
                Behavior::Accept
            };
        }
        current
    };
    let mut location = None;
    let (status, retry_after) = match behavior {
        Behavior::Redirect(to) => {
            location = Some(to);
            (302, None)
        }
        Behavior::Accept => (200, None),
        Behavior::Fail(code, ra) => (code, ra),
        Behavior::FailTimes(code, _, ra) => (code, ra),
        Behavior::Delay(d) => {
            tokio::time::sleep(d).await;
            (200, None)
        }
        Behavior::Hold(marker) => {
            if body.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                let mut rx = inner.release.subscribe();
                let _ = rx.wait_for(|released| *released).await;
            }
            (200, None)
        }
    };
    inner.answered.lock().unwrap().push(Recorded {
        path: uri.path().to_string(),
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
        status,
        at: Instant::now(),
    });
    let mut resp = (StatusCode::from_u16(status).unwrap(), "ok").into_response();
    if let Some(ra) = retry_after {
        resp.headers_mut()
            .insert("retry-after", ra.parse().unwrap());
    }
    if let Some(to) = location {
        resp.headers_mut().insert("location", to.parse().unwrap());
    }
    resp
}
