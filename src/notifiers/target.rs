//! Where one delivery goes: the destination's configured default, or the
//! value of a deployment's (or namespace's) annotation — a team's Slack
//! webhook, a Jira project, an email address.
//!
//! Annotations are set by anyone with deploy rights, so a value is checked
//! before any lane, request or credential goes near it: URLs must be https,
//! must match the destination's `allowed_targets`, must not name a private,
//! loopback or link-local address unless an allow-list entry names that
//! host exactly; project keys and addresses must be well formed (and in the
//! allow-list when one is set). A value that fails is refused, and the
//! delivery dead-lettered as `target_not_allowed`.

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{join, redact_url, Errors};
use crate::model::Event;
use crate::routing::annotations::{self, Step};
use crate::routing::metadata::Metadata;

/// Where one delivery goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Target {
    /// The annotation's value (may be a secret, such as a webhook URL);
    /// `None`: the destination's configured default.
    pub value: Option<String>,
    /// How metrics name it: "" for the default, else a short stable hash.
    pub label: String,
    /// Safe to print: a URL's scheme and host, a project key, an address.
    pub shown: String,
    /// An annotation URL matched by a wildcard host: sent through a client
    /// that refuses private addresses whatever DNS says.
    pub public_only: bool,
}

impl Target {
    /// The lane key: "" for the default.
    pub fn key(&self) -> &str {
        self.value.as_deref().unwrap_or("")
    }

    fn chosen(value: String, shown: String, public_only: bool) -> Target {
        let hash = Sha256::digest(value.as_bytes());
        Target {
            label: format!(
                "t-{:02x}{:02x}{:02x}{:02x}",
                hash[0], hash[1], hash[2], hash[3]
            ),
            value: Some(value),
            shown,
            public_only,
        }
    }
}

/// One allow-list entry for annotation URLs: `https://hooks.slack.com/`,
/// `https://*.webhook.office.com/`, `http://10.0.0.5:8080/hooks/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRule {
    scheme: String,
    /// Lower-case host; with `wildcard`, any subdomain of it.
    host: String,
    wildcard: bool,
    port: Option<u16>,
    path: String,
}

impl UrlRule {
    pub fn parse(s: &str) -> Result<UrlRule, String> {
        let wildcard = s.contains("://*.");
        let url = reqwest::Url::parse(&s.replacen("://*.", "://", 1))
            .map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("{s:?}: only https (or http) URLs"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{s:?} has no host"))?
            .to_ascii_lowercase();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{s:?}: no credentials in an allow-list entry"));
        }
        Ok(UrlRule {
            scheme: url.scheme().to_string(),
            host,
            wildcard,
            port: url.port_or_known_default(),
            path: url.path().to_string(),
        })
    }

    fn matches(&self, url: &reqwest::Url) -> bool {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        };
        url.scheme() == self.scheme
            && host_ok
            && url.port_or_known_default() == self.port
            && url.path().starts_with(&self.path)
    }
}

/// What kind of value a destination's annotation holds, with its checks.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// A webhook URL (Slack, Teams, the generic webhook). `format` turns the
    /// raw value into the URL used (Central adds `https://`, and Slack and
    /// Teams drop a trailing `/`).
    Url {
        allowed: Vec<UrlRule>,
        format: fn(&str) -> String,
    },
    /// A Jira project key; `allowed` empty: any well-formed key.
    JiraProject { allowed: Vec<String> },
    /// One email address; `allowed` holds domains (`example.com`, or
    /// `*.example.com` for its subdomains); empty: any domain.
    Email { allowed: Vec<String> },
}

/// Reads `allowed_targets` for `kind`, naming a bad entry by its index.
pub fn allow_list(entries: &[String], url: bool, path: &str, errs: &mut Errors) -> Vec<UrlRule> {
    let at = join(path, "allowed_targets");
    if !url {
        return Vec::new();
    }
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match UrlRule::parse(e) {
            Ok(r) => Some(r),
            Err(msg) => {
                errs.push(&format!("{at}[{i}]"), msg);
                None
            }
        })
        .collect()
}

/// Addresses an annotation must not reach unless allow-listed by name:
/// loopback, private, link-local (cloud metadata), shared, unspecified,
/// multicast and broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

impl TargetKind {
    /// Checks one annotation value; `Err` says why it is refused (without
    /// the value's secret parts).
    pub fn check(&self, value: &str) -> Result<Target, String> {
        match self {
            TargetKind::Url { allowed, format } => {
                let formatted = format(value);
                let url =
                    reqwest::Url::parse(&formatted).map_err(|_| "not a valid URL".to_string())?;
                let shown = redact_url(&formatted);
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(format!("{shown}: credentials in the URL"));
                }
                let Some(rule) = allowed.iter().find(|r| r.matches(&url)) else {
                    return Err(format!("{shown} is not in allowed_targets"));
                };
                if url.scheme() != "https" && rule.scheme != "http" {
                    return Err(format!("{shown}: not https"));
                }
                let literal: Option<IpAddr> = match url.host() {
                    Some(url::Host::Ipv4(a)) => Some(a.into()),
                    Some(url::Host::Ipv6(a)) => Some(a.into()),
                    _ => None,
                };
                if let Some(ip) = literal {
                    if !is_public(ip)
                        && (rule.wildcard || rule.host != url.host_str().unwrap_or(""))
                    {
                        return Err(format!("{shown}: a private or local address"));
                    }
                }
                Ok(Target::chosen(formatted, shown, rule.wildcard))
            }
            TargetKind::JiraProject { allowed } => {
                let well_formed = value.len() <= 255
                    && value.starts_with(|c: char| c.is_ascii_alphabetic())
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !well_formed {
                    return Err("not a Jira project key".into());
                }
                if !allowed.is_empty() && !allowed.iter().any(|a| a == value) {
                    return Err(format!("project {value} is not in allowed_targets"));
                }
                Ok(Target::chosen(value.to_string(), value.to_string(), false))
            }
            TargetKind::Email { allowed } => {
                let address: lettre::Address = value
                    .parse()
                    .map_err(|_| "not an email address".to_string())?;
                let domain = address.domain().to_ascii_lowercase();
                let ok = allowed.is_empty()
                    || allowed.iter().any(|a| {
                        let a = a.trim_start_matches('@').to_ascii_lowercase();
                        match a.strip_prefix("*.") {
                            Some(parent) => domain.ends_with(&format!(".{parent}")),
                            None => domain == a,
                        }
                    });
                if !ok {
                    return Err(format!("domain {domain} is not in allowed_targets"));
                }
                Ok(Target::chosen(
                    address.to_string(),
                    address.to_string(),
                    false,
                ))
            }
        }
    }
}

/// How a destination picks a target by annotation.
#[derive(Debug, Clone)]
pub struct Annotation {
    /// The annotation (or label) key; never empty.
    pub key: String,
    pub kind: TargetKind,
    /// The default target as `explain` shows it.
    pub default_shown: String,
    /// Namespace annotations, for the namespace step.
    pub metadata: Arc<Metadata>,
}

/// The annotation step's decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub step: Step,
    /// The target, or why the annotation's value is refused.
    pub target: Result<Target, String>,
}

impl Annotation {
    /// Central's lookup (deployment annotation, deployment label, namespace
    /// annotation, default), then the value's checks.
    pub fn resolve(&self, event: &Event) -> Resolution {
        let snapshot = self.metadata.snapshot();
        let ns = self.metadata.annotations(&snapshot);
        let (value, step) = annotations::resolve_event(event, &self.key, "", Some(&ns));
        if step == Step::Default {
            return Resolution {
                step,
                target: Ok(Target::default()),
            };
        }
        Resolution {
            step,
            target: self
                .kind
                .check(value)
                .map_err(|why| format!("annotation {}: {why}", self.key)),
        }
    }
}

/// A reqwest resolver that returns only public addresses: an allow-listed
/// wildcard host cannot be pointed at herald's own network through DNS.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_kind(allowed: &[&str]) -> TargetKind {
        TargetKind::Url {
            allowed: allowed.iter().map(|s| UrlRule::parse(s).unwrap()).collect(),
            format: |s| s.to_string(),
        }
    }

    #[test]
    fn urls_must_be_https_allow_listed_and_public() {
        let slack = url_kind(&["https://hooks.slack.com/services/"]);
        let ok = slack
            .check("https://hooks.slack.com/services/T0/B0/SECRET")
            .unwrap();
        assert_eq!(ok.shown, "https://hooks.slack.com");
        assert!(ok.label.starts_with("t-") && ok.label.len() == 10);
        assert!(!ok.label.contains("SECRET") && !ok.public_only);
        for (bad, why) in [
            (
                "http://hooks.slack.com/services/x",
                "http://hooks.slack.com is not in allowed_targets",
            ),
            (
                "https://hooks.slack.com.evil.com/services/x",
                "https://hooks.slack.com.evil.com is not in allowed_targets",
            ),
            (
                "https://hooks.slack.com/other/x",
                "https://hooks.slack.com is not in allowed_targets",
            ),
            (
                "https://u:p@hooks.slack.com/services/x",
                "https://hooks.slack.com: credentials in the URL",
            ),
            (
                "http://169.254.169.254/latest/meta-data/",
                "http://169.254.169.254 is not in allowed_targets",
            ),
            ("not a url", "not a valid URL"),
        ] {
            assert_eq!(slack.check(bad).unwrap_err(), why, "{bad}");
        }
        let office = url_kind(&["https://*.webhook.office.com/"]);
        let t = office
            .check("https://contoso.webhook.office.com/webhookb2/x")
            .unwrap();
        assert!(
            t.public_only,
            "a wildcard match resolves to public addresses only"
        );
        assert!(office.check("https://webhook.office.com/x").is_err());
        // A private address only when an entry names it exactly.
        let wild_ip = url_kind(&["https://*.internal/", "https://10.0.0.5/"]);
        assert!(wild_ip.check("https://10.0.0.5/hook").is_ok());
        let by_name = url_kind(&["http://127.0.0.1:8080/"]);
        assert!(by_name.check("http://127.0.0.1:8080/team").is_ok());
        assert_eq!(
            by_name.check("http://127.0.0.1:9090/team").unwrap_err(),
            "http://127.0.0.1:9090 is not in allowed_targets"
        );
        assert_eq!(
            url_kind(&[]).check("https://example.com/").unwrap_err(),
            "https://example.com is not in allowed_targets"
        );
    }

    #[test]
    fn addresses_that_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn project_keys_and_addresses() {
        let any = TargetKind::JiraProject { allowed: vec![] };
        assert_eq!(any.check("PAY").unwrap().shown, "PAY");
        for bad in ["", "1AB", "A B", "X\" OR 1=1", "A-B"] {
            assert_eq!(
                any.check(bad).unwrap_err(),
                "not a Jira project key",
                "{bad:?}"
            );
        }
        let only = TargetKind::JiraProject {
            allowed: vec!["SEC".into()],
        };
        assert!(only.check("PAY").is_err() && only.check("SEC").is_ok());
        let mail = TargetKind::Email {
            allowed: vec!["example.com".into(), "*.corp.example".into()],
        };
        assert!(mail.check("team@example.com").is_ok());
        assert!(mail.check("a@eu.corp.example").is_ok());
        assert_eq!(
            mail.check("x@evil.com").unwrap_err(),
            "domain evil.com is not in allowed_targets"
        );
        assert_eq!(
            mail.check("a@b.c\r\nBcc: x@y.z").unwrap_err(),
            "not an email address"
        );
    }
}
