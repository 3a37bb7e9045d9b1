//! Google Cloud Security Command Center, Security Token Service and IAM
//! Credentials as strict as the services where herald touches them (none
//! runs here). Every request is checked against Google's own discovery
//! documents (`scripts/google-apis.sh`: securitycenter.v1, sts.v1,
//! iamcredentials.v1): the method and path template, each path parameter's
//! pattern, each query parameter (known, typed, enums), and the body against
//! the request schema, where an unknown field, a wrong type or a value
//! outside an enum is `400 INVALID_ARGUMENT` as Google answers it.
//!
//! Served on one port under three prefixes: `/scc` (Security Command
//! Center), `/sts` (`POST /sts/v1/token`, form or JSON) and `/iam`
//! (`generateAccessToken`). On top of the documents:
//! - SCC takes a Bearer token that STS or IAM issued and that has not
//!   expired or been revoked, or a service account's self-signed JWT
//!   (RS256, `kid` = the key id, `iss` = `sub` = the account, the
//!   cloud-platform scope, at most an hour) verified with the key's public
//!   half; else 401.
//! - STS exchanges only the expected subject token for the expected
//!   audience (else 400 `invalid_grant`); IAM impersonates only the
//!   expected account, with an STS token.
//! - `create` makes a finding when its source exists (else 404), the id is
//!   1–32 letters and digits and it has a category; an existing one is 409
//!   `ALREADY_EXISTS`. A PATCH with an `updateMask` changes only those
//!   fields of an existing finding (404 when there is none); the mask may
//!   name only fields of `Finding` that can change. `eventTime` may not be
//!   in the future, and `externalUri` must be an absolute URL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
/// Finding fields a PATCH may not change.
const IMMUTABLE: &[&str] = &[
    "name",
    "parent",
    "resourceName",
    "category",
    "createTime",
    "canonicalName",
];

/// The directory of the three discovery documents.
pub fn discovery_dir() -> PathBuf {
    let out = std::process::Command::new("scripts/google-apis.sh")
        .arg("dir")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("scripts/google-apis.sh");
    assert!(
        out.status.success(),
        "scripts/google-apis.sh dir: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// One method of a discovery document.
struct ApiMethod {
    id: String,
    http: String,
    flat: Vec<String>,
    path: String,
    params: Map<String, Value>,
    request: Option<String>,
}

/// A discovery document: its methods, schemas and global parameters.
pub struct Discovery {
    methods: Vec<ApiMethod>,
    schemas: Map<String, Value>,
    globals: Map<String, Value>,
}

fn collect(resources: &Value, out: &mut Vec<ApiMethod>) {
    let Some(resources) = resources.as_object() else {
        return;
    };
    for r in resources.values() {
        for m in r["methods"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            out.push(ApiMethod {
                id: m["id"].as_str().unwrap().into(),
                http: m["httpMethod"].as_str().unwrap().into(),
                flat: m["flatPath"]
                    .as_str()
                    .or(m["path"].as_str())
                    .unwrap()
                    .split('/')
                    .map(str::to_string)
                    .collect(),
                path: m["path"].as_str().unwrap().into(),
                params: m["parameters"].as_object().cloned().unwrap_or_default(),
                request: m["request"]["$ref"].as_str().map(str::to_string),
            });
        }
        collect(&r["resources"], out);
    }
}

/// Whether `segment` fits a template segment: a literal, `{x}`, or
/// `{x}:verb`.
fn segment_fits(template: &str, segment: &str) -> bool {
    match template.find('{') {
        None => template == segment,
        Some(0) => {
            let close = template.find('}').unwrap();
            let suffix = &template[close + 1..];
            segment
                .strip_suffix(suffix)
                .is_some_and(|v| !v.is_empty() && !v.contains(':'))
        }
        Some(_) => panic!("unexpected template segment {template}"),
    }
}

/// A discovery `pattern` such as `^organizations/[^/]+/sources/[^/]+$`.
fn pattern_fits(pattern: &str, value: &str) -> bool {
    let p = pattern
        .strip_prefix('^')
        .unwrap()
        .strip_suffix('$')
        .unwrap();
    let p = p.replace("[^/]+", "\u{1}");
    let (ps, vs): (Vec<_>, Vec<_>) = (p.split('/').collect(), value.split('/').collect());
    ps.len() == vs.len()
        && ps.iter().zip(&vs).all(|(p, v)| {
            if *p == "\u{1}" {
                !v.is_empty()
            } else {
                assert!(
                    p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    "pattern {pattern} needs a regex engine"
                );
                p == v
            }
        })
}

impl Discovery {
    pub fn load(file: &Path) -> Discovery {
        let doc: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let mut methods = Vec::new();
        collect(&doc["resources"], &mut methods);
        Discovery {
            methods,
            schemas: doc["schemas"].as_object().cloned().unwrap(),
            globals: doc["parameters"].as_object().cloned().unwrap(),
        }
    }

    /// The method a request is for, with its body checked; `Err` is the
    /// message of a 400 (or 404 for no such method).
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<&str, (u16, String)> {
        let segments: Vec<&str> = path.split('/').collect();
        let m = self
            .methods
            .iter()
            .find(|m| {
                m.http == method
                    && m.flat.len() == segments.len()
                    && m.flat
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| segment_fits(t, s))
            })
            .ok_or_else(|| (404, format!("no method {method} {path}")))?;
        let bad = |msg: String| Err((400, format!("{}: {msg}", m.id)));
        // Path parameters: `{+name}` spans segments; check its pattern.
        if let (Some(open), Some(close)) = (m.path.find('{'), m.path.find('}')) {
            let (prefix, suffix) = (&m.path[..open], &m.path[close + 1..]);
            let name = m.path[open + 1..close].trim_start_matches('+');
            let value = path
                .strip_prefix(prefix)
                .and_then(|v| v.strip_suffix(suffix))
                .unwrap_or("");
            let pattern = m.params[name]["pattern"].as_str().unwrap_or("^[^/]+$");
            if !pattern_fits(pattern, value) {
                return bad(format!("{name} {value:?} does not match {pattern}"));
            }
        }
        for (k, v) in query {
            let spec = match m.params.get(k).or_else(|| self.globals.get(k)) {
                Some(s) if s["location"] == "query" => s,
                _ => return bad(format!("unknown query parameter {k}")),
            };
            if let Err(e) = self.value(&Value::String(v.clone()), spec, k) {
                return bad(e);
            }
        }
        match (&m.request, body) {
            (Some(schema), Some(b)) => match self.value(b, &json!({"$ref": schema}), "body") {
                Ok(()) => Ok(&m.id),
                Err(e) => bad(e),
            },
            (Some(_), None) => bad("a request body is required".into()),
            (None, Some(_)) => bad("takes no request body".into()),
            (None, None) => Ok(&m.id),
        }
    }

    /// The property names of a schema.
    pub fn properties(&self, schema: &str) -> Vec<String> {
        self.schemas[schema]["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `v` against a discovery schema (query values arrive as strings).
    fn value(&self, v: &Value, schema: &Value, at: &str) -> Result<(), String> {
        if let Some(r) = schema["$ref"].as_str() {
            let s = self.schemas.get(r).ok_or(format!("no schema {r}"))?;
            return self.value(v, s, at);
        }
        let kind = schema["type"].as_str().unwrap_or("any");
        match (kind, v) {
            ("any", _) => Ok(()),
            ("object", Value::Object(o)) => {
                for (k, field) in o {
                    let at = format!("{at}.{k}");
                    match schema["properties"].get(k) {
                        Some(s) => self.value(field, s, &at)?,
                        None if schema.get("additionalProperties").is_some() => {
                            self.value(field, &schema["additionalProperties"], &at)?
                        }
                        None => return Err(format!("unknown field {at}")),
                    }
                }
                Ok(())
            }
            ("array", Value::Array(items)) => items.iter().enumerate().try_for_each(|(i, item)| {
                self.value(item, &schema["items"], &format!("{at}[{i}]"))
            }),
            ("string", Value::String(s)) => {
                if let Some(allowed) = schema["enum"].as_array() {
                    if !allowed.iter().any(|a| a == s) {
                        return Err(format!("{at}: {s:?} is not one of {allowed:?}"));
                    }
                }
                match schema["format"].as_str() {
                    Some("google-datetime") => chrono::DateTime::parse_from_rfc3339(s)
                        .map(|_| ())
                        .map_err(|e| format!("{at}: {s:?} is not a timestamp: {e}")),
                    Some("google-duration")
                        if !(s.ends_with('s') && s[..s.len() - 1].parse::<f64>().is_ok()) =>
                    {
                        Err(format!("{at}: {s:?} is not a duration"))
                    }
                    Some("int64") | Some("uint64") if s.parse::<i128>().is_err() => {
                        Err(format!("{at}: {s:?} is not an integer"))
                    }
                    _ => Ok(()),
                }
            }
            ("boolean", Value::Bool(_)) => Ok(()),
            ("boolean", Value::String(s)) if s == "true" || s == "false" => Ok(()),
            ("integer" | "number", Value::Number(_)) => Ok(()),
            ("integer" | "number", Value::String(s)) if s.parse::<f64>().is_ok() => Ok(()),
            (kind, v) => Err(format!("{at}: {v} is not of type {kind}")),
        }
    }
}

/// A Google API error, as the services write it.
fn google_error(code: u16, status: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        json!({"error": {"code": code, "message": message, "status": status}}).to_string(),
    )
        .into_response()
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// A service account: its email, key id and public key (PEM).
#[derive(Clone)]
pub struct ServiceAccount {
    pub email: String,
    pub key_id: String,
    pub public_pem: Vec<u8>,
}

/// Workload identity federation: what STS exchanges, and whom IAM lets the
/// federated principal impersonate.
#[derive(Clone)]
pub struct Federation {
    pub audience: String,
    pub subject_token: String,
    pub impersonate: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Access tokens issued, until when.
    issued: HashMap<String, Instant>,
    /// Self-signed JWTs issued before this (Unix seconds) are refused.
    jwt_not_before: u64,
    sts_exchanges: usize,
    impersonations: usize,
    findings: BTreeMap<String, Value>,
    creates: usize,
    updates: usize,
    /// Every SCC request that reached the store or was refused: (method id, status).
    calls: Vec<(String, u16)>,
    fail_next: Vec<(u16, Option<String>)>,
    granted: Vec<String>,
    /// Requests refused by the discovery documents, with why.
    invalid: Vec<String>,
    bearers: HashSet<String>,
    metadata_requests: usize,
    /// STS requests to leave unanswered.
    hang_sts: usize,
    /// Finding writes to apply and then answer 503, as if the answer was lost.
    lose_next: usize,
}

#[derive(Clone)]
pub struct Google {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
    scc: Arc<Discovery>,
    sts: Arc<Discovery>,
    iam: Arc<Discovery>,
    sources: Arc<Vec<String>>,
    account: Option<ServiceAccount>,
    federation: Arc<Mutex<Option<Federation>>>,
    lifetime: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Google {
    pub async fn start(
        sources: &[&str],
        account: Option<ServiceAccount>,
        federation: Option<Federation>,
        lifetime: Duration,
    ) -> Google {
        let dir = discovery_dir();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let g = Google {
            inner: Arc::new(Mutex::new(Inner {
                granted: vec!["securitycenter.findings.update".into()],
                ..Inner::default()
            })),
            addr: listener.local_addr().unwrap(),
            scc: Arc::new(Discovery::load(&dir.join("securitycenter.v1.json"))),
            sts: Arc::new(Discovery::load(&dir.join("sts.v1.json"))),
            iam: Arc::new(Discovery::load(&dir.join("iamcredentials.v1.json"))),
            sources: Arc::new(sources.iter().map(|s| s.to_string()).collect()),
            account,
            federation: Arc::new(Mutex::new(federation)),
            lifetime,
        };
        let app = Router::new().fallback(handle).with_state(g.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        g
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn finding(&self, name: &str) -> Option<Value> {
        self.inner.lock().unwrap().findings.get(name).cloned()
    }

    pub fn findings(&self) -> BTreeMap<String, Value> {
        self.inner.lock().unwrap().findings.clone()
    }

    /// (creates, updates) of findings.
    pub fn writes(&self) -> (usize, usize) {
        let i = self.inner.lock().unwrap();
        (i.creates, i.updates)
    }

    /// (STS exchanges, impersonations).
    pub fn exchanges(&self) -> (usize, usize) {
        let i = self.inner.lock().unwrap();
        (i.sts_exchanges, i.impersonations)
    }

    /// Statuses of finding writes (create and PATCH), in order.
    pub fn statuses(&self) -> Vec<u16> {
        let inner = self.inner.lock().unwrap();
        inner
            .calls
            .iter()
            .filter(|c| c.0.contains(".findings."))
            .map(|c| c.1)
            .collect()
    }

    /// Requests the discovery documents refused.
    pub fn invalid(&self) -> Vec<String> {
        self.inner.lock().unwrap().invalid.clone()
    }

    /// Every Bearer value SCC was shown.
    pub fn bearers(&self) -> HashSet<String> {
        self.inner.lock().unwrap().bearers.clone()
    }

    /// Answers the next finding writes with these statuses (and `Retry-After`).
    pub fn fail_next(&self, answers: &[(u16, Option<&str>)]) {
        self.inner.lock().unwrap().fail_next = answers
            .iter()
            .rev()
            .map(|(s, r)| (*s, r.map(str::to_string)))
            .collect();
    }

    /// Applies the next `n` finding writes, then answers 503 (a lost answer:
    /// herald sends again).
    pub fn lose_answers(&self, n: usize) {
        self.inner.lock().unwrap().lose_next = n;
    }

    /// Expires every token and every self-signed JWT issued so far.
    pub fn revoke_all(&self) {
        let mut i = self.inner.lock().unwrap();
        i.issued.clear();
        i.jwt_not_before = now_secs() + 1;
    }

    /// The permissions `testIamPermissions` grants.
    pub fn grant(&self, permissions: &[&str]) {
        self.inner.lock().unwrap().granted = permissions.iter().map(|p| p.to_string()).collect();
    }

    pub fn set_subject_token(&self, token: &str) {
        if let Some(f) = self.federation.lock().unwrap().as_mut() {
            f.subject_token = token.into();
        }
    }

    fn issue(&self, prefix: &str) -> String {
        let token = format!("{prefix}-{:016x}", fastrand::u64(..));
        self.inner
            .lock()
            .unwrap()
            .issued
            .insert(token.clone(), Instant::now() + self.lifetime);
        token
    }

    fn token_valid(&self, token: &str) -> bool {
        self.inner
            .lock()
            .unwrap()
            .issued
            .get(token)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// A service account's self-signed JWT, verified with its public key.
    fn jwt_valid(&self, token: &str) -> Result<(), String> {
        let sa = self.account.as_ref().ok_or("no service account")?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        if header.kid.as_deref() != Some(sa.key_id.as_str()) {
            return Err("kid names no key of the account".into());
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&sa.public_pem).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_aud = false;
        v.set_issuer(&[&sa.email]);
        v.sub = Some(sa.email.clone());
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| format!("JWT: {e}"))?
            .claims;
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap_or(0),
            claims["exp"].as_u64().unwrap_or(0),
        );
        if exp.saturating_sub(iat) > 3700 {
            return Err("JWT lives longer than an hour".into());
        }
        // The crate backdates iat by 10 s.
        if iat + 10 < self.inner.lock().unwrap().jwt_not_before {
            return Err("JWT revoked".into());
        }
        let scopes = claims["scope"].as_str().unwrap_or("");
        if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM) {
            return Err("JWT lacks the cloud-platform scope".into());
        }
        Ok(())
    }

    /// The GKE/GCE metadata server's token of the node's (or the workload
    /// identity's) service account: a GET with `Metadata-Flavor: Google`,
    /// never through a proxy.
    fn metadata_token(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Response {
        self.inner.lock().unwrap().metadata_requests += 1;
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google")
            || headers.contains_key("x-forwarded-for")
        {
            return (
                StatusCode::FORBIDDEN,
                "Missing Metadata-Flavor:Google header.",
            )
                .into_response();
        }
        if method != Method::GET || path != "v1/instance/service-accounts/default/token" {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
        let scopes: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == "scopes")
            .flat_map(|(_, v)| v.split(','))
            .collect();
        if !scopes.is_empty() && !scopes.contains(&CLOUD_PLATFORM) {
            return (StatusCode::BAD_REQUEST, "scopes").into_response();
        }
        let token = self.issue("mds-token");
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"access_token": token, "expires_in": self.lifetime.as_secs(), "token_type": "Bearer"}).to_string(),
        )
            .into_response()
    }

    /// Leaves the next `n` token exchanges unanswered (the connection open).
    pub fn hang_exchanges(&self, n: usize) {
        self.inner.lock().unwrap().hang_sts = n;
    }

    /// Token requests the metadata server answered or refused.
    pub fn metadata_requests(&self) -> usize {
        self.inner.lock().unwrap().metadata_requests
    }

    fn sts_exchange(&self, body: &Value) -> Response {
        self.inner.lock().unwrap().sts_exchanges += 1;
        let Some(f) = self.federation.lock().unwrap().clone() else {
            return google_error(400, "INVALID_ARGUMENT", "no workload identity pool");
        };
        let field = |k: &str| body[k].as_str().unwrap_or("");
        if field("grantType") != "urn:ietf:params:oauth:grant-type:token-exchange"
            || field("requestedTokenType") != "urn:ietf:params:oauth:token-type:access_token"
        {
            return oauth_error("invalid_request", "grant_type or requested_token_type");
        }
        if !matches!(
            field("subjectTokenType"),
            "urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token"
        ) {
            return oauth_error("invalid_request", "subject_token_type");
        }
        if field("audience") != f.audience {
            return oauth_error(
                "invalid_target",
                "The target service indicated by the \"audience\" parameters is invalid.",
            );
        }
        if field("subjectToken") != f.subject_token {
            return oauth_error("invalid_grant", "The provided subject token is invalid.");
        }
        let want = if f.impersonate.is_some() {
            IAM_SCOPE
        } else {
            CLOUD_PLATFORM
        };
        if !field("scope")
            .split(' ')
            .any(|s| s == want || s == CLOUD_PLATFORM)
        {
            return oauth_error("invalid_scope", "scope");
        }
        let token = self.issue("sts-token");
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": self.lifetime.as_secs()}).to_string(),
        )
            .into_response()
    }

    fn impersonate(&self, path: &str, bearer: &str, body: &Value) -> Response {
        self.inner.lock().unwrap().impersonations += 1;
        if !bearer.starts_with("sts-token-") || !self.token_valid(bearer) {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        let target = self
            .federation
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|f| f.impersonate.clone());
        let name = path
            .strip_prefix("v1/")
            .and_then(|p| p.strip_suffix(":generateAccessToken"))
            .unwrap_or("");
        if target
            .map(|t| format!("projects/-/serviceAccounts/{t}"))
            .as_deref()
            != Some(name)
        {
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied",
            );
        }
        let scopes = body["scope"].as_array().cloned().unwrap_or_default();
        if !scopes.iter().any(|s| s == CLOUD_PLATFORM) {
            return google_error(400, "INVALID_ARGUMENT", "scope");
        }
        let token = self.issue("iam-token");
        let expire = chrono::Utc::now() + chrono::Duration::from_std(self.lifetime).unwrap();
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"accessToken": token, "expireTime": expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}).to_string(),
        )
            .into_response()
    }

    fn scc_call(
        &self,
        id: &str,
        path: &str,
        query: &[(String, String)],
        bearer: &str,
        body: Option<Value>,
    ) -> Response {
        self.inner
            .lock()
            .unwrap()
            .bearers
            .insert(bearer.to_string());
        let authed = self.token_valid(bearer) || self.jwt_valid(bearer).is_ok();
        let answer = if !authed {
            google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        } else {
            self.scc_method(id, path, query, body.unwrap_or_default())
        };
        self.inner
            .lock()
            .unwrap()
            .calls
            .push((id.to_string(), answer.status().as_u16()));
        answer
    }

    /// Creates (`mask` None: `create`) or creates-or-updates (`patch`) the
    /// finding `name`.
    fn write_finding(&self, name: &str, mask: Option<Vec<String>>, body: Value) -> Response {
        let injected = self.inner.lock().unwrap().fail_next.pop();
        if let Some((status, retry_after)) = injected {
            let mut r = google_error(status, status_name(status), "injected");
            if let Some(ra) = retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            return r;
        }
        let bad = |m: &str| google_error(400, "INVALID_ARGUMENT", m);
        let (source, id) = name.split_once("/findings/").unwrap_or((name, ""));
        if !self.sources.iter().any(|s| s == source) {
            return google_error(404, "NOT_FOUND", "Requested entity was not found.");
        }
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad("Invalid finding id");
        }
        if body.get("name").is_some_and(|n| n != name) {
            return bad("name does not match the path");
        }
        if let Some(t) = body["eventTime"].as_str() {
            let t = chrono::DateTime::parse_from_rfc3339(t).unwrap();
            if t > chrono::Utc::now() {
                return bad("event_time must not be later than the current time");
            }
        }
        if let Some(u) = body.get("externalUri").filter(|u| *u != "") {
            let absolute = u
                .as_str()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
            if !absolute {
                return bad("external_uri must be empty or a well formed URL");
            }
        }
        let fields = self.scc.properties("Finding");
        for p in mask.iter().flatten() {
            if !fields.contains(p) {
                return bad(&format!("Invalid field mask path {p:?}"));
            }
            if IMMUTABLE.contains(&p.as_str()) {
                return bad(&format!("{p} cannot be updated"));
            }
        }
        let mut inner = self.inner.lock().unwrap();
        let stored = match (inner.findings.get(name).cloned(), &mask) {
            (Some(_), None) => {
                return google_error(409, "ALREADY_EXISTS", "Requested entity already exists")
            }
            // An update mask on a finding that does not exist: nothing to update.
            (None, Some(m)) if !m.is_empty() => {
                return google_error(404, "NOT_FOUND", "Requested entity was not found.")
            }
            (None, _) => {
                if body["category"].as_str().unwrap_or("").is_empty() {
                    return bad("category is required");
                }
                let mut f = body.as_object().cloned().unwrap_or_default();
                f.insert("name".into(), name.into());
                f.insert("parent".into(), source.into());
                f.insert(
                    "createTime".into(),
                    chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                        .into(),
                );
                inner.creates += 1;
                Value::Object(f)
            }
            (Some(mut f), Some(mask)) => {
                let fields: Vec<String> = if mask.is_empty() {
                    body.as_object()
                        .map(|o| {
                            o.keys()
                                .filter(|k| !IMMUTABLE.contains(&k.as_str()))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    mask.clone()
                };
                for k in fields {
                    match body.get(&k) {
                        Some(v) => f[k.as_str()] = v.clone(),
                        None => {
                            f.as_object_mut().unwrap().remove(&k);
                        }
                    }
                }
                inner.updates += 1;
                f
            }
        };
        inner.findings.insert(name.to_string(), stored.clone());
        if inner.lose_next > 0 {
            inner.lose_next -= 1;
            return google_error(503, "UNAVAILABLE", "The service is currently unavailable.");
        }
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            stored.to_string(),
        )
            .into_response()
    }

    fn scc_method(
        &self,
        id: &str,
        path: &str,
        query: &[(String, String)],
        body: Value,
    ) -> Response {
        let name = path.strip_prefix("v1/").unwrap_or(path);
        match id {
            "securitycenter.organizations.sources.testIamPermissions" => {
                let source = name.trim_end_matches(":testIamPermissions");
                if !self.sources.iter().any(|s| s == source) {
                    return google_error(404, "NOT_FOUND", "Requested entity was not found.");
                }
                let granted = self.inner.lock().unwrap().granted.clone();
                let asked: Vec<&Value> = body["permissions"]
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let ok: Vec<&Value> = asked
                    .into_iter()
                    .filter(|p| granted.iter().any(|g| *p == g))
                    .collect();
                (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    json!({"permissions": ok}).to_string(),
                )
                    .into_response()
            }
            "securitycenter.organizations.sources.findings.create" => {
                let parent = name.trim_end_matches("/findings");
                let id = query
                    .iter()
                    .find(|(k, _)| k == "findingId")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                self.write_finding(&format!("{parent}/findings/{id}"), None, body)
            }
            "securitycenter.organizations.sources.findings.patch" => {
                let mask: Vec<String> = query
                    .iter()
                    .filter(|(k, _)| k == "updateMask")
                    .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
                    .filter(|p| !p.is_empty())
                    .collect();
                self.write_finding(name, Some(mask), body)
            }
            other => google_error(501, "UNIMPLEMENTED", &format!("{other} is not served here")),
        }
    }
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

/// `grant_type` → `grantType`.
fn camel(k: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in k.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

async fn handle(
    State(g): State<Google>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = uri.path().trim_start_matches('/');
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let (api, path) = full.split_once('/').unwrap_or((full, ""));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let form: Map<String, Value> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (camel(&k), Value::String(v.into_owned())))
            .collect();
        Some(Value::Object(form))
    } else if content_type.starts_with("application/json") {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid JSON payload received. {e}"),
                )
            }
        }
    } else {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            &format!("content-type {content_type:?}"),
        );
    };
    if api == "computeMetadata" {
        return g.metadata_token(&method, path, &query, &headers);
    }
    let doc = match api {
        "scc" => &g.scc,
        "sts" => &g.sts,
        "iam" => &g.iam,
        _ => return google_error(404, "NOT_FOUND", "no such API"),
    };
    let id = match doc.check(method.as_str(), path, &query, parsed.as_ref()) {
        Ok(id) => id.to_string(),
        Err((code, message)) => {
            g.inner.lock().unwrap().invalid.push(message.clone());
            return google_error(code, status_name(code), &message);
        }
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if api == "sts" {
        let hang = {
            let mut inner = g.inner.lock().unwrap();
            // A hung exchange is an exchange too.
            if inner.hang_sts > 0 {
                inner.sts_exchanges += 1;
            }
            let hang = inner.hang_sts > 0;
            inner.hang_sts = inner.hang_sts.saturating_sub(1);
            hang
        };
        if hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    match api {
        "sts" => g.sts_exchange(parsed.as_ref().unwrap_or(&Value::Null)),
        "iam" => g.impersonate(path, &bearer, parsed.as_ref().unwrap_or(&Value::Null)),
        _ => g.scc_call(&id, path, &query, &bearer, parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_refuse_what_google_refuses() {
        let dir = discovery_dir();
        let scc = Discovery::load(&dir.join("securitycenter.v1.json"));
        let name = "v1/organizations/1/sources/2/findings/abc";
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let ok = json!({"state": "ACTIVE", "eventTime": "2026-12-07T10:00:00Z", "sourceProperties": {"x": [1]}});
        assert_eq!(
            scc.check("PATCH", name, &q("updateMask", "state"), Some(&ok)),
            Ok("securitycenter.organizations.sources.findings.patch")
        );
        for (body, why) in [
            (
                json!({"state": "OPEN"}),
                "body.state: \"OPEN\" is not one of",
            ),
            (
                json!({"eventTime": "yesterday"}),
                "body.eventTime: \"yesterday\" is not a timestamp",
            ),
            (json!({"colour": "red"}), "unknown field body.colour"),
            (
                json!({"category": 5}),
                "body.category: 5 is not of type string",
            ),
        ] {
            let e = scc.check("PATCH", name, &[], Some(&body)).unwrap_err();
            assert_eq!(e.0, 400);
            assert!(e.1.contains(why), "{e:?} lacks {why}");
        }
        assert!(scc
            .check("PATCH", name, &q("colour", "red"), Some(&ok))
            .unwrap_err()
            .1
            .contains("unknown query parameter colour"));
        assert_eq!(scc.check("PUT", name, &[], Some(&ok)).unwrap_err().0, 404);
        assert_eq!(
            scc.check(
                "POST",
                "v1/organizations/1/sources/2:testIamPermissions",
                &[],
                Some(&json!({"permissions": ["a"]}))
            ),
            Ok("securitycenter.organizations.sources.testIamPermissions")
        );
    }
}
