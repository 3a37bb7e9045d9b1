//! An HTTP proxy in front of a real service (moto) that answers chosen
//! requests itself, as the service does on a bad day: an expired token, a
//! throttle with `Retry-After`, a 503. Everything else is forwarded as it
//! came, and every request is recorded by a label the test picks (for AWS,
//! the `X-Amz-Target` operation or the query/form `Action`).
//!
//! [`Proxy::sign_unsigned`] works around one moto bug: with authentication
//! on, moto 5.2.6 fails (500) on an unsigned `AssumeRoleWithWebIdentity`,
//! which AWS takes unsigned (the web identity token is the proof). The proxy
//! signs such a request with a key moto knows before forwarding it; what
//! herald sends is unchanged, and every other call is verified by moto.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// An answer the proxy gives instead of the service.
#[derive(Clone)]
pub struct Fault {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    /// (label the fault is for, the fault), in order.
    faults: Vec<(String, Fault)>,
    /// Label of each request and the status it got.
    seen: Vec<(String, u16)>,
}

#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Mutex<Inner>>,
    upstream: String,
    client: reqwest::Client,
    /// (access key id, secret) to sign unsigned requests with.
    signer: Arc<Mutex<Option<(String, String)>>>,
    pub addr: std::net::SocketAddr,
}

/// The AWS operation of a request: `X-Amz-Target`'s part after the dot
/// (JSON protocols), else the `Action` of the query or form (query
/// protocol), else the method and path (REST protocols: `POST
/// /findings/import` is Security Hub's `BatchImportFindings`).
pub fn aws_operation(method: &Method, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    let query = uri.query().unwrap_or("").as_bytes();
    url::form_urlencoded::parse(query)
        .chain(url::form_urlencoded::parse(body))
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| format!("{method} {}", uri.path()))
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Proxy {
            inner: Arc::default(),
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            signer: Arc::default(),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new().fallback(forward).with_state(p.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        p
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signs an `AssumeRoleWithWebIdentity` that comes unsigned (STS,
    /// us-east-1) with this key; any other unsigned request is refused.
    pub fn sign_unsigned(&self, access_key_id: &str, secret: &str) {
        *self.signer.lock().unwrap() = Some((access_key_id.into(), secret.into()));
    }

    /// Answers the next request labelled `label` with `fault` (queued in order).
    pub fn inject(&self, label: &str, fault: Fault) {
        self.inner
            .lock()
            .unwrap()
            .faults
            .push((label.to_string(), fault));
    }

    /// Statuses of the requests labelled `label`, in order.
    pub fn statuses(&self, label: &str) -> Vec<u16> {
        let inner = self.inner.lock().unwrap();
        inner
            .seen
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, s)| *s)
            .collect()
    }
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let label = aws_operation(&method, &headers, &uri, &body);
    let fault = {
        let mut inner = p.inner.lock().unwrap();
        let i = inner.faults.iter().position(|(l, _)| *l == label);
        i.map(|i| inner.faults.remove(i).1)
    };
    let response = match fault {
        Some(f) => {
            let mut r = (StatusCode::from_u16(f.status).unwrap(), f.body).into_response();
            for (k, v) in f.headers {
                r.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            r
        }
        None => {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let url = format!("{}{path}", p.upstream);
            let mut req = p.client.request(method.clone(), &url);
            // The Host header stays as signed: moto checks signatures
            // against it.
            for (k, v) in &headers {
                if k.as_str() != "content-length" {
                    req = req.header(k, v);
                }
            }
            let signer = p.signer.lock().unwrap().clone();
            let unsigned = !headers.contains_key("authorization");
            if signer.is_some() && unsigned && label != "AssumeRoleWithWebIdentity" {
                // Only the call AWS takes unsigned is signed here.
                let r = (StatusCode::FORBIDDEN, "unsigned request").into_response();
                p.inner.lock().unwrap().seen.push((label, 403));
                return r;
            }
            if let (Some((key, secret)), true) = (signer, unsigned) {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let signed_url = format!("http://{host}{path}");
                for (k, v) in sign(&method, &signed_url, &headers, &body, &key, &secret) {
                    req = req.header(k, v);
                }
            }
            match req.body(body.to_vec()).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let mut out = HeaderMap::new();
                    for (k, v) in resp.headers() {
                        if !matches!(
                            k.as_str(),
                            "transfer-encoding" | "content-length" | "connection"
                        ) {
                            out.insert(k, v.clone());
                        }
                    }
                    let bytes = resp.bytes().await.unwrap_or_default();
                    (status, out, bytes).into_response()
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
    };
    p.inner
        .lock()
        .unwrap()
        .seen
        .push((label, response.status().as_u16()));
    response
}

/// SigV4 headers for a request to STS in us-east-1.
fn sign(
    method: &Method,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
    key: &str,
    secret: &str,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity =
        aws_credential_types::Credentials::new(key, secret, None, None, "test-proxy").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sts")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| k.as_str() == "content-type")
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    let signable = SignableRequest::new(
        method.as_str(),
        url,
        pairs.into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
