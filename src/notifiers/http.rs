//! What every HTTP destination shares: the client (TLS, proxy, timeout) and the
//! mapping from a response to a delivery outcome.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, StatusCode};

use super::{FailureReason, SendError};
use crate::config::{join, read_secret, redact_url, Errors, Secret};

/// TLS settings of an HTTP destination.
#[derive(Clone)]
pub struct TlsSettings<'a> {
    pub ca_file: &'a Option<PathBuf>,
    pub skip_tls_verify: bool,
}

/// Builds the client: rustls with the system and Mozilla roots plus `ca_file`,
/// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the environment, and the
/// destination's whole-request timeout. Redirects are not followed:
/// credentials go only to the URL that was configured or allow-listed.
pub fn client(
    tls: TlsSettings<'_>,
    timeout: Duration,
    path: &str,
    errs: &mut Errors,
) -> Option<Client> {
    builder(tls, timeout, path, errs)?
        .build()
        .map_err(|e| errs.push(path, format!("cannot build HTTP client: {e}")))
        .ok()
}

/// The clients of a destination that sends to annotation-chosen URLs: one
/// for URLs an exact allow-list entry names, and one that resolves names to
/// public addresses only, for wildcard matches.
#[derive(Clone)]
pub struct Clients {
    pub client: Client,
    pub public_only: Client,
}

impl Clients {
    pub fn build(
        tls: TlsSettings<'_>,
        timeout: Duration,
        path: &str,
        errs: &mut Errors,
    ) -> Option<Clients> {
        let client = builder(tls.clone(), timeout, path, errs)?;
        let public = builder(tls, timeout, path, errs)?
            .dns_resolver(std::sync::Arc::new(super::target::PublicOnly));
        match (client.build(), public.build()) {
            (Ok(client), Ok(public_only)) => Some(Clients {
                client,
                public_only,
            }),
            (Err(e), _) | (_, Err(e)) => {
                errs.push(path, format!("cannot build HTTP client: {e}"));
                None
            }
        }
    }

    pub fn for_target(&self, target: &super::Target) -> &Client {
        if target.public_only {
            &self.public_only
        } else {
            &self.client
        }
    }
}

fn builder(
    tls: TlsSettings<'_>,
    timeout: Duration,
    path: &str,
    errs: &mut Errors,
) -> Option<reqwest::ClientBuilder> {
    let mut b = Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(tls.skip_tls_verify);
    if let Some(ca) = tls.ca_file {
        let at = join(path, "ca_file");
        match std::fs::read(ca) {
            Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => {
                    for c in certs {
                        b = b.add_root_certificate(c);
                    }
                }
                Ok(_) => {
                    errs.push(&at, format!("{} holds no PEM certificate", ca.display()));
                    return None;
                }
                Err(e) => {
                    errs.push(
                        &at,
                        format!("{} is not a valid PEM certificate: {e}", ca.display()),
                    );
                    return None;
                }
            },
            Err(e) => {
                errs.push(&at, format!("cannot read {}: {e}", ca.display()));
                return None;
            }
        }
    }
    Some(b)
}

/// A required endpoint URL that may carry a secret (a key in its path), given
/// inline as `url` or in `url_file`; `https://` is added as Central does.
pub fn secret_url(
    inline: &Option<Secret>,
    file: &Option<std::path::PathBuf>,
    path: &str,
    errs: &mut Errors,
) -> Option<Secret> {
    let at = join(path, "url");
    let before = errs.list.len();
    match read_secret(inline, file, &at, errs) {
        Some(u) if !u.expose().trim().is_empty() => {
            let full = with_scheme(u.expose());
            if reqwest::Url::parse(&full).is_err() {
                errs.push(&at, format!("not a valid URL ({})", redact_url(&full)));
                return None;
            }
            Some(Secret::new(full))
        }
        _ => {
            if errs.list.len() == before {
                errs.push(&at, "is required");
            }
            None
        }
    }
}

/// Whether `url` is plain `http://` (a credential sent to it travels in clear).
pub fn cleartext(url: &str) -> bool {
    url.trim_start()
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// The start-up warning for `what` sent to a plain-http `url`, if it is one.
pub fn cleartext_warning(url: &str, what: &str) -> Option<String> {
    cleartext(url).then(|| format!("{what}: sent in clear over http to {}", redact_url(url)))
}

/// Central's endpoint rule: `https://` unless the URL starts with `http`.
pub fn with_scheme(url: &str) -> String {
    let url = url.trim();
    if url.starts_with("http") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}

/// Maps a transport error to an outcome; `target` is the redacted URL, since
/// reqwest's own message would carry the full one.
pub fn transport_error(e: &reqwest::Error, target: &str) -> SendError {
    let (reason, what) = if e.is_timeout() {
        (FailureReason::Timeout, "timed out")
    } else if e.is_connect() {
        (FailureReason::Connect, "connection failed")
    } else {
        (FailureReason::Connect, "request failed")
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let message = if detail.is_empty() {
        format!("{what} to {target}")
    } else {
        format!("{what} to {target}: {detail}")
    };
    SendError::retryable(reason, message)
}

/// POSTs a JSON body and maps the answer; `target` is the redacted URL used in
/// every message.
pub async fn post_json(
    client: &Client,
    url: &str,
    body: Vec<u8>,
    target: &str,
) -> Result<(), SendError> {
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&e, target))?;
    status_outcome(resp.status(), resp.headers(), target)
}

/// The first `max` bytes of a response body (less on a read error).
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Maps a response status to an outcome: 2xx delivered; 408, 429 and 5xx
/// retryable (honouring `Retry-After`); 401/403 and other 4xx permanent; a
/// redirect is refused (permanent), as herald follows none.
pub fn status_outcome(
    status: StatusCode,
    headers: &HeaderMap,
    target: &str,
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!("{target} answered {status}");
    let code = status.as_u16();
    Err(match code {
        429 => SendError::retryable(FailureReason::RateLimited, message),
        408 => SendError::retryable(FailureReason::Timeout, message),
        500..=599 => SendError::retryable(FailureReason::ServerError, message),
        401 | 403 => SendError::permanent(FailureReason::AuthError, message),
        300..=399 => SendError::permanent(
            FailureReason::ClientError,
            format!("{message}: a redirect, which herald does not follow"),
        ),
        _ => SendError::permanent(FailureReason::ClientError, message),
    }
    .with_retry_after(retry_after(headers))
    .with_status(code))
}

/// `Retry-After` in delta-seconds or HTTP-date form. Any value is taken
/// (the delivery layer bounds it); one too large for a number of seconds
/// reads as the largest.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn classifies_statuses() {
        let h = HeaderMap::new();
        assert!(status_outcome(StatusCode::NO_CONTENT, &h, "t").is_ok());
        let cases = [
            (429, FailureReason::RateLimited, true),
            (408, FailureReason::Timeout, true),
            (503, FailureReason::ServerError, true),
            (500, FailureReason::ServerError, true),
            (401, FailureReason::AuthError, false),
            (302, FailureReason::ClientError, false),
            (403, FailureReason::AuthError, false),
            (400, FailureReason::ClientError, false),
            (404, FailureReason::ClientError, false),
        ];
        for (code, reason, retryable) in cases {
            let e =
                status_outcome(StatusCode::from_u16(code).unwrap(), &h, "https://x").unwrap_err();
            assert_eq!((e.reason, e.retryable), (reason, retryable), "{code}");
        }
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        // Absurd values parse (the delivery layer bounds them); garbage does not.
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(u64::MAX)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("99999999999999999999999"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(u64::MAX)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn adds_scheme_like_central() {
        assert_eq!(with_scheme("example.com/hook"), "https://example.com/hook");
        assert_eq!(with_scheme("http://x/y/"), "http://x/y/");
    }
}
