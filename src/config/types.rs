//! Value types shared by every config section.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A duration written as a string: `"250ms"`, `"5s"`, `"24h"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|_| {
            de::Error::custom(format!(
                "invalid duration {s:?}; write it like \"250ms\", \"5s\" or \"24h\""
            ))
        })
    }
}

/// A credential or a URL that carries one. Its `Debug` never shows the value,
/// so a secret cannot reach a log line through a `{:?}` of its config.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Scheme and host (and port) of a URL, for errors and metrics: the path and
/// query of a webhook URL often carry its key.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{}:{}", u.scheme(), h, p),
            (Some(h), None) => format!("{}://{}", u.scheme(), h),
            _ => format!("{}://", u.scheme()),
        },
        Err(_) => "<invalid url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_path_query_and_userinfo() {
        assert_eq!(
            redact_url("https://user:pw@hooks.slack.com/services/T0/B0/XYZ?k=1"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/a"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(redact_url("not a url"), "<invalid url>");
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }
}
