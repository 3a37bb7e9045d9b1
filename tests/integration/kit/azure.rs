//! Entra ID's token endpoint and an Azure Monitor data collection endpoint,
//! as strict as the services where herald touches them (neither runs here):
//!
//! - `POST /{tenant}/oauth2/v2.0/token` takes a form with
//!   `grant_type=client_credentials`, the client id, the scope
//!   `https://monitor.azure.com//.default` and one proof: the client secret,
//!   a client assertion JWT (RS256, `x5t` of the certificate, `aud` = this
//!   URL, `iss` = `sub` = client id, not expired) verified with the
//!   certificate's public key, or the federated token itself. Anything else
//!   is `400 invalid_request` / `401 invalid_client` with Entra's JSON.
//! - `POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//!   takes a Bearer token it issued and has not expired, `Content-Type:
//!   application/json`, a JSON array of at most 1 MB, for a known rule and
//!   stream; else 401, 400, 404 or 413. It answers 204.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// What proves the client.
#[derive(Clone)]
pub enum Proof {
    Secret(String),
    /// The certificate's public key (PEM) and its `x5t`.
    Certificate {
        public_pem: Vec<u8>,
        x5t: String,
    },
    Federated(String),
}

#[derive(Default)]
struct Inner {
    issued: HashMap<String, Instant>,
    token_requests: usize,
    /// Records received per stream, in order.
    records: HashMap<String, Vec<Value>>,
    /// Request bodies per stream, as received.
    bodies: HashMap<String, Vec<Vec<u8>>>,
    uploads: usize,
    refused: Vec<u16>,
    fail_next: Vec<(u16, Option<String>)>,
}

#[derive(Clone)]
pub struct Azure {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
    tenant: String,
    client_id: String,
    proof: Arc<Mutex<Proof>>,
    lifetime: Duration,
    /// (rule id, stream) pairs that exist.
    streams: Vec<(String, String)>,
}

fn entra_error(status: u16, error: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

impl Azure {
    pub async fn start(
        tenant: &str,
        client_id: &str,
        proof: Proof,
        lifetime: Duration,
        streams: &[(&str, &str)],
    ) -> Azure {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let az = Azure {
            inner: Arc::default(),
            addr: listener.local_addr().unwrap(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            proof: Arc::new(Mutex::new(proof)),
            lifetime,
            streams: streams
                .iter()
                .map(|(r, s)| (r.to_string(), s.to_string()))
                .collect(),
        };
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/dataCollectionRules/{dcr}/streams/{stream}", post(upload))
            .with_state(az.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        az
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn records(&self, stream: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner.records.get(stream).cloned().unwrap_or_default()
    }

    pub fn bodies(&self, stream: &str) -> Vec<Vec<u8>> {
        let inner = self.inner.lock().unwrap();
        inner.bodies.get(stream).cloned().unwrap_or_default()
    }

    pub fn token_requests(&self) -> usize {
        self.inner.lock().unwrap().token_requests
    }

    pub fn uploads(&self) -> usize {
        self.inner.lock().unwrap().uploads
    }

    /// Statuses of the uploads it refused, in order.
    pub fn refused(&self) -> Vec<u16> {
        self.inner.lock().unwrap().refused.clone()
    }

    /// Answers the next uploads with these statuses (and `Retry-After`).
    pub fn fail_next(&self, answers: &[(u16, Option<&str>)]) {
        self.inner.lock().unwrap().fail_next = answers
            .iter()
            .rev()
            .map(|(s, r)| (*s, r.map(str::to_string)))
            .collect();
    }

    /// Expires every token issued so far (a rotation at Entra).
    pub fn revoke_all(&self) {
        self.inner.lock().unwrap().issued.clear();
    }

    pub fn set_proof(&self, proof: Proof) {
        *self.proof.lock().unwrap() = proof;
    }

    fn check_proof(&self, form: &HashMap<String, String>, token_url: &str) -> Result<(), String> {
        let proof = self.proof.lock().unwrap().clone();
        let assertion = || -> Result<&String, String> {
            if form.get("client_assertion_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                return Err("AADSTS700025: client_assertion_type missing or wrong".into());
            }
            form.get("client_assertion")
                .ok_or_else(|| "AADSTS700025: no client_assertion".to_string())
        };
        match proof {
            Proof::Secret(s) => match form.get("client_secret") {
                Some(given) if *given == s => Ok(()),
                _ => Err("AADSTS7000215: Invalid client secret provided.".into()),
            },
            Proof::Federated(t) => match assertion()? {
                a if *a == t => Ok(()),
                _ => Err("AADSTS700211: No matching federated identity record found.".into()),
            },
            Proof::Certificate { public_pem, x5t } => {
                let a = assertion()?;
                let header = jsonwebtoken::decode_header(a).map_err(|e| e.to_string())?;
                if header.x5t.as_deref() != Some(x5t.as_str()) {
                    return Err("AADSTS700027: x5t does not name the registered certificate".into());
                }
                let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public_pem).unwrap();
                let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                v.set_audience(&[token_url]);
                v.set_issuer(&[&self.client_id]);
                v.sub = Some(self.client_id.clone());
                v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
                jsonwebtoken::decode::<Value>(a, &key, &v)
                    .map(|_| ())
                    .map_err(|e| format!("AADSTS700027: client assertion failed: {e}"))
            }
        }
    }
}

async fn token(
    State(az): State<Azure>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    az.inner.lock().unwrap().token_requests += 1;
    if tenant != az.tenant {
        return entra_error(400, "invalid_request", "AADSTS90002: Tenant not found.");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return entra_error(400, "invalid_request", "AADSTS900144: form body required");
    }
    let form: HashMap<String, String> = form_urlencoded(&body);
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return entra_error(400, "unsupported_grant_type", "AADSTS70003");
    }
    if form.get("scope").map(String::as_str) != Some("https://monitor.azure.com//.default") {
        return entra_error(
            400,
            "invalid_scope",
            "AADSTS70011: The provided value for scope is not valid.",
        );
    }
    if form.get("client_id") != Some(&az.client_id) {
        return entra_error(
            400,
            "unauthorized_client",
            "AADSTS700016: Application not found.",
        );
    }
    let token_url = format!("{}/{}/oauth2/v2.0/token", az.url(), az.tenant);
    if let Err(e) = az.check_proof(&form, &token_url) {
        return entra_error(401, "invalid_client", &e);
    }
    let token = format!("entra-token-{:016x}", fastrand::u64(..));
    az.inner
        .lock()
        .unwrap()
        .issued
        .insert(token.clone(), Instant::now() + az.lifetime);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"token_type": "Bearer", "expires_in": az.lifetime.as_secs(), "ext_expires_in": az.lifetime.as_secs(), "access_token": token}).to_string(),
    )
        .into_response()
}

fn form_urlencoded(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    reqwest::Url::parse(&format!("http://form/?{text}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn upload(
    State(az): State<Azure>,
    Path((dcr, stream)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: u16, code: &str| {
        az.inner.lock().unwrap().refused.push(status);
        (
            StatusCode::from_u16(status).unwrap(),
            json!({"error": {"code": code, "message": code}}).to_string(),
        )
            .into_response()
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = az
        .inner
        .lock()
        .unwrap()
        .issued
        .get(bearer)
        .is_some_and(|until| Instant::now() < *until);
    if !valid {
        return refuse(401, "InvalidToken");
    }
    if query.get("api-version").map(String::as_str) != Some("2023-01-01") {
        return refuse(400, "InvalidApiVersion");
    }
    if !az.streams.iter().any(|(r, s)| *r == dcr && *s == stream) {
        return refuse(404, "NotFound");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return refuse(415, "UnsupportedMediaType");
    }
    if body.len() > 1 << 20 {
        return refuse(413, "ContentLengthLimitExceeded");
    }
    let records = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_object) => items,
        _ => return refuse(400, "InvalidJson"),
    };
    let injected = az.inner.lock().unwrap().fail_next.pop();
    if let Some((status, retry_after)) = injected {
        az.inner.lock().unwrap().refused.push(status);
        let mut r = (StatusCode::from_u16(status).unwrap(), "busy").into_response();
        if let Some(ra) = retry_after {
            r.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return r;
    }
    let mut inner = az.inner.lock().unwrap();
    inner.uploads += 1;
    inner
        .bodies
        .entry(stream.clone())
        .or_default()
        .push(body.to_vec());
    inner.records.entry(stream).or_default().extend(records);
    StatusCode::NO_CONTENT.into_response()
}
