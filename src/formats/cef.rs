//! Syslog records with CEF payloads, as Central's syslog notifier builds them
//! (central-compat §2.1): an RFC 5424 header, the CEF header in `cef` or `legacy` order,
//! the extension in Central's key order, and RFC 6587 octet-counted frames.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::gojson;
use crate::model::{Alert, AlertState, Audit, Severity};

pub const APP_NAME: &str = "stackRoxKubernetesSecurityPlatform";
const MSGID_ALERT: &str = "stackroxKubernetesSecurityPlatformAlert";
const MSGID_AUDIT: &str = "stackroxKubernetesSecurityPlatformAudit";
const MSGID_TEST: &str = "stackroxKubernetesSecurityPlatformIntegrationTest";

/// Central's two `messageFormat`s: `cef` puts the name before the severity;
/// `legacy` (the proto default) swaps them (stackrox issue 5400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderOrder {
    Cef,
    Legacy,
}

/// How records are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 6587 octet counting (Central's).
    OctetCounting,
    /// One record per line (non-transparent framing), opt-in.
    Newline,
    /// One record per datagram (UDP), opt-in.
    Datagram,
}

/// Everything a syslog destination decides about its records.
#[derive(Debug, Clone)]
pub struct Settings {
    /// 0..=7 for local0..local7.
    pub facility: u8,
    pub hostname: String,
    pub procid: String,
    pub device_version: String,
    pub order: HeaderOrder,
    pub extra_fields: Vec<(String, String)>,
    /// CEF escaping per the CEF specification (opt-in; Central escapes nothing).
    pub escape: bool,
    /// Split records into frames of at most this many bytes (0: no limit).
    pub max_message_size: usize,
    pub framing: Framing,
    /// Opt-in: shrink the embedded JSON so the record fits this many bytes,
    /// keeping it valid JSON (0: off).
    pub max_record_size: usize,
}

fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Unset => 6,
        Severity::Low => 5,
        Severity::Medium => 4,
        Severity::High => 3,
        Severity::Critical => 2,
    }
}

fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Unset => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 7,
        Severity::Critical => 9,
    }
}

fn escape_header(s: &str, on: bool) -> String {
    if !on {
        return s.to_string();
    }
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn escape_value(s: &str, on: bool) -> String {
    if !on {
        return s.to_string();
    }
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - ` (then the message).
fn header(s: &Settings, severity: u8, time: DateTime<Utc>, msgid: &str) -> String {
    let pri = 8 * (u32::from(s.facility) + 16) + u32::from(severity);
    format!(
        "<{pri}>1 {} {} {APP_NAME} {} {msgid} - ",
        time.format("%Y-%m-%dT%H:%M:%SZ"),
        s.hostname,
        s.procid
    )
}

fn cef(s: &Settings, class: &str, name: &str, severity: u8, extension: &str) -> String {
    let name = escape_header(name, s.escape);
    let (a, b) = match s.order {
        HeaderOrder::Cef => (name, severity.to_string()),
        HeaderOrder::Legacy => (severity.to_string(), name),
    };
    format!(
        "CEF:0|StackRox|Kubernetes Security Platform|{}|{class}|{a}|{b}|{extension}",
        escape_header(&s.device_version, s.escape)
    )
}

/// `key=value` pairs joined by single spaces.
struct Extension {
    parts: Vec<String>,
    escape: bool,
}

impl Extension {
    fn new(escape: bool) -> Self {
        Extension {
            parts: Vec::new(),
            escape,
        }
    }

    fn push(&mut self, key: &str, value: &str) {
        self.parts
            .push(format!("{key}={}", escape_value(value, self.escape)));
    }

    fn extra(&mut self, s: &Settings) {
        for (k, v) in &s.extra_fields {
            self.push(k, v);
        }
    }

    fn join(&self) -> String {
        self.parts.join(" ")
    }
}

/// The syslog record for an alert; `ns_labels` are the namespace's labels
/// when the namespace metadata knows them.
pub fn alert_record(
    alert: &Alert,
    s: &Settings,
    ns_labels: Option<&BTreeMap<String, String>>,
) -> Result<String, String> {
    let a = &alert.fields;
    let time = a
        .time
        .ok_or("the alert has no time; Central does not send it either")?;
    let mut json = gojson::alert(alert.raw.get())?;
    let build = |json: &str| {
        let mut ext = Extension::new(s.escape);
        ext.push("devicePayloadId", &a.id);
        if let Some(t) = a.first_occurred {
            ext.push("start", &t.0.timestamp_millis().to_string());
        }
        ext.push("rt", &time.0.timestamp_millis().to_string());
        if a.state == AlertState::Resolved {
            ext.push("end", &time.0.timestamp_millis().to_string());
        }
        let entity_ns = match (&a.deployment, &a.resource) {
            (Some(d), _) => d.namespace.as_str(),
            (_, Some(r)) => r.namespace.as_str(),
            _ => "",
        };
        if !entity_ns.is_empty() {
            ext.push("ns", &a.namespace);
            let labels = ns_labels
                .map(|m| gojson::string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            ext.push("nslabels", labels.as_deref().unwrap_or("{}"));
        }
        ext.push("stackroxKubernetesSecurityPlatformAlert", json);
        ext.extra(s);
        let sev = a.policy.severity;
        format!(
            "{}{}",
            header(s, syslog_severity(sev), time.0, MSGID_ALERT),
            cef(s, "Alert", &a.policy.name, cef_severity(sev), &ext.join())
        )
    };
    let mut record = build(&json);
    if s.max_record_size > 0 && record.len() > s.max_record_size {
        let over = record.len() - s.max_record_size;
        json = gojson::shrink(&json, json.len().saturating_sub(over));
        record = build(&json);
    }
    Ok(record)
}

/// The syslog record for an audit message.
pub fn audit_record(audit: &Audit, s: &Settings) -> Result<String, String> {
    let a = &audit.fields;
    let time = a.time.ok_or("the audit message has no time")?;
    let mut ext = Extension::new(s.escape);
    ext.push("rt", &time.0.timestamp_millis().to_string());
    let (roles, user) = match &a.user {
        Some(u) => (
            u.roles
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            u.username.as_str(),
        ),
        None => (String::new(), ""),
    };
    ext.push("spriv", &roles);
    ext.push("suser", user);
    let (endpoint, method) = a
        .request
        .as_ref()
        .map_or(("", ""), |r| (r.endpoint.as_str(), r.method.as_str()));
    ext.push("request", endpoint);
    ext.push("requestMethod", method);
    ext.push("outcome", enum_name(&a.status, "UNKNOWN_STATUS"));
    ext.push(
        "requestClientApplication",
        enum_name(&a.method, "UNKNOWN_METHOD"),
    );
    ext.push(
        "stackroxKubernetesSecurityPlatformAuditLog",
        &gojson::audit(audit.raw.get())?,
    );
    ext.extra(s);
    Ok(format!(
        "{}{}",
        header(s, 6, time.0, MSGID_AUDIT),
        cef(s, "AuditLog", "AuditLog", 3, &ext.join())
    ))
}

/// protojson omits an enum's zero value; Central prints its name.
fn enum_name<'a>(value: &'a str, zero: &'a str) -> &'a str {
    if value.is_empty() {
        zero
    } else {
        value
    }
}

/// Central's test message.
pub fn test_record(s: &Settings, now: DateTime<Utc>) -> String {
    format!(
        "{}{}",
        header(s, 7, now, MSGID_TEST),
        cef(
            s,
            "Test",
            "Test",
            0,
            "stackroxKubernetesSecurityPlatformTestMessage=test"
        )
    )
}

/// The record as frames: octet-counted (chunked at `max_message_size` as
/// Central does: only the first chunk carries the header), or per line/datagram.
pub fn frames(record: &str, s: &Settings) -> Vec<Vec<u8>> {
    // A line break inside a newline-framed record would end it there and
    // start a forged one (an alert id is anyone's input): escape them as CEF
    // escapes line breaks in extension values.
    let escaped;
    let record = if s.framing == Framing::Newline && record.contains(['\n', '\r']) {
        escaped = record.replace('\r', "\\r").replace('\n', "\\n");
        escaped.as_str()
    } else {
        record
    };
    let bytes = record.as_bytes();
    let chunks: Vec<&[u8]> = if s.max_message_size > 0 {
        bytes.chunks(s.max_message_size).collect()
    } else {
        vec![bytes]
    };
    chunks
        .into_iter()
        .map(|c| match s.framing {
            Framing::OctetCounting => {
                let mut f = format!("{} ", c.len()).into_bytes();
                f.extend_from_slice(c);
                f
            }
            Framing::Newline => {
                let mut f = c.to_vec();
                f.push(b'\n');
                f
            }
            Framing::Datagram => c.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{decode, Event};

    fn settings(order: HeaderOrder, extra: &[(&str, &str)]) -> Settings {
        Settings {
            facility: 0,
            hostname: "central".into(),
            procid: "1".into(),
            device_version: "4.7.0".into(),
            order,
            extra_fields: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            escape: false,
            max_message_size: 0,
            framing: Framing::OctetCounting,
            max_record_size: 0,
        }
    }

    use crate::model::test_alert as alert;

    const DEPLOYMENT_ALERT: &str = r#"{"id":"a1","policy":{"name":"Shell","severity":"HIGH_SEVERITY"},"namespace":"payments","deployment":{"name":"d","namespace":"payments"},"time":"2024-05-01T12:03:17.451Z","firstOccurred":"2024-05-01T12:03:17.451Z"}"#;
    const GO_JSON: &str = r#"{"id":"a1","policy":{"name":"Shell","severity":3},"namespace":"payments","Entity":{"Deployment":{"name":"d","namespace":"payments"}},"time":{"seconds":1714564997,"nanos":451000000},"first_occurred":{"seconds":1714564997,"nanos":451000000}}"#;

    #[test]
    fn alert_record_in_cef_order_with_namespace_labels_and_extra_fields() {
        let labels = BTreeMap::from([
            ("team".to_string(), "pay".to_string()),
            ("a&b".to_string(), "<x>".to_string()),
        ]);
        let rec = alert_record(
            &alert(DEPLOYMENT_ALERT),
            &settings(HeaderOrder::Cef, &[("env", "prod"), ("dc", "east")]),
            Some(&labels),
        )
        .unwrap();
        assert_eq!(
            rec,
            format!(
                "<131>1 2024-05-01T12:03:17Z central stackRoxKubernetesSecurityPlatform 1 stackroxKubernetesSecurityPlatformAlert - CEF:0|StackRox|Kubernetes Security Platform|4.7.0|Alert|Shell|7|devicePayloadId=a1 start=1714564997451 rt=1714564997451 ns=payments nslabels={{\"a\\u0026b\":\"\\u003cx\\u003e\",\"team\":\"pay\"}} stackroxKubernetesSecurityPlatformAlert={GO_JSON} env=prod dc=east"
            )
        );
    }

    #[test]
    fn legacy_order_swaps_name_and_severity_and_unknown_namespace_is_empty_object() {
        let rec = alert_record(
            &alert(DEPLOYMENT_ALERT),
            &settings(HeaderOrder::Legacy, &[]),
            None,
        )
        .unwrap();
        assert!(
            rec.contains("|4.7.0|Alert|7|Shell|devicePayloadId=a1 "),
            "{rec}"
        );
        assert!(rec.contains(" ns=payments nslabels={} stackrox"), "{rec}");
    }

    #[test]
    fn image_and_node_alerts_have_no_ns_and_severity_maps() {
        let a = alert(
            r#"{"id":"i1","policy":{"name":"Img","severity":"CRITICAL_SEVERITY"},"namespace":"x","image":{"name":{"fullName":"nginx"}},"time":"2024-05-01T12:00:00Z"}"#,
        );
        let rec = alert_record(&a, &settings(HeaderOrder::Cef, &[]), None).unwrap();
        assert!(
            rec.starts_with("<130>1 2024-05-01T12:00:00Z central "),
            "{rec}"
        );
        assert!(rec.contains("|Alert|Img|9|devicePayloadId=i1 rt=1714564800000 stackroxKubernetesSecurityPlatformAlert="), "{rec}");
        for (sev, pri, cef) in [
            ("UNSET_SEVERITY", 134, 1),
            ("LOW_SEVERITY", 133, 3),
            ("MEDIUM_SEVERITY", 132, 5),
        ] {
            let a = alert(&format!(
                r#"{{"id":"x","policy":{{"name":"P","severity":"{sev}"}},"time":"2024-05-01T12:00:00Z"}}"#
            ));
            let mut s = settings(HeaderOrder::Cef, &[]);
            s.facility = 7;
            let rec = alert_record(&a, &s, None).unwrap();
            assert!(rec.starts_with(&format!("<{}>1 ", pri + 56)), "{rec}");
            assert!(rec.contains(&format!("|Alert|P|{cef}|")), "{rec}");
        }
        let no_time = alert(r#"{"id":"x","policy":{}}"#);
        assert!(alert_record(&no_time, &settings(HeaderOrder::Cef, &[]), None).is_err());
    }

    #[test]
    fn audit_record_keys_in_centrals_order() {
        let audit = match decode(
            br#"{"audit":{"time":"2024-05-01T12:10:02.118356Z","status":"REQUEST_SUCCEEDED","user":{"username":"admin","roles":[{"name":"Admin"},{"name":"Analyst"}]},"request":{"endpoint":"/v1/notifiers","method":"POST"},"method":"UI","interaction":"CREATE"}}"#,
            &crate::model::Limits::default(),
        )
        .unwrap()
        {
            Event::Audit(a) => a,
            Event::Alert(_) => unreachable!(),
        };
        let rec = audit_record(&audit, &settings(HeaderOrder::Legacy, &[("env", "prod")])).unwrap();
        assert_eq!(
            rec,
            "<134>1 2024-05-01T12:10:02Z central stackRoxKubernetesSecurityPlatform 1 stackroxKubernetesSecurityPlatformAudit - CEF:0|StackRox|Kubernetes Security Platform|4.7.0|AuditLog|3|AuditLog|rt=1714565402118 spriv=Admin,Analyst suser=admin request=/v1/notifiers requestMethod=POST outcome=REQUEST_SUCCEEDED requestClientApplication=UI stackroxKubernetesSecurityPlatformAuditLog={\"time\":{\"seconds\":1714565402,\"nanos\":118356000},\"status\":1,\"user\":{\"username\":\"admin\",\"roles\":[{\"name\":\"Admin\"},{\"name\":\"Analyst\"}]},\"request\":{\"endpoint\":\"/v1/notifiers\",\"method\":\"POST\"},\"method\":2,\"interaction\":1} env=prod"
        );
        let bare = match decode(
            br#"{"audit":{"time":"2024-05-01T12:10:02Z"}}"#,
            &crate::model::Limits::default(),
        )
        .unwrap()
        {
            Event::Audit(a) => a,
            Event::Alert(_) => unreachable!(),
        };
        let rec = audit_record(&bare, &settings(HeaderOrder::Cef, &[])).unwrap();
        assert!(rec.contains("|AuditLog|AuditLog|3|rt=1714565402000 spriv= suser= request= requestMethod= outcome=UNKNOWN_STATUS requestClientApplication=UNKNOWN_METHOD stackroxKubernetesSecurityPlatformAuditLog={\"time\":{\"seconds\":1714565402}}"), "{rec}");
    }

    #[test]
    fn octet_counting_chunking_newline_and_test_message() {
        let s = settings(HeaderOrder::Cef, &[]);
        let now = chrono::DateTime::parse_from_rfc3339("2024-05-01T12:00:00.9Z")
            .unwrap()
            .with_timezone(&Utc);
        let rec = test_record(&s, now);
        assert_eq!(
            rec,
            "<135>1 2024-05-01T12:00:00Z central stackRoxKubernetesSecurityPlatform 1 stackroxKubernetesSecurityPlatformIntegrationTest - CEF:0|StackRox|Kubernetes Security Platform|4.7.0|Test|Test|0|stackroxKubernetesSecurityPlatformTestMessage=test"
        );
        assert_eq!(
            frames(&rec, &s),
            vec![format!("{} {rec}", rec.len()).into_bytes()]
        );
        let chunked = Settings {
            max_message_size: 100,
            ..s.clone()
        };
        let f = frames(&rec, &chunked);
        assert_eq!(f.len(), rec.len().div_ceil(100));
        assert_eq!(f[0], format!("100 {}", &rec[..100]).into_bytes());
        let last = &rec[(f.len() - 1) * 100..];
        assert_eq!(
            f[f.len() - 1],
            format!("{} {last}", last.len()).into_bytes()
        );
        let lines = Settings {
            framing: Framing::Newline,
            ..s.clone()
        };
        assert_eq!(frames("abc", &lines), vec![b"abc\n".to_vec()]);
        // A line break from input (an alert id) cannot forge a second record.
        assert_eq!(
            frames("devicePayloadId=x\n<14>1 forged\r", &lines),
            vec![b"devicePayloadId=x\\n<14>1 forged\\r\n".to_vec()]
        );
        let counted = frames("a\nb", &s);
        assert_eq!(
            counted,
            vec![b"3 a\nb".to_vec()],
            "octet counting frames it whole"
        );
        // Octet counts are bytes, not characters.
        assert_eq!(
            frames("é✓", &settings(HeaderOrder::Cef, &[])),
            vec!["5 é✓".as_bytes().to_vec()]
        );
    }

    #[test]
    fn cef_escaping_is_opt_in() {
        let a = alert(
            r#"{"id":"a|1","policy":{"name":"a|b\\c","severity":"LOW_SEVERITY"},"time":"2024-05-01T12:00:00Z"}"#,
        );
        let mut s = settings(HeaderOrder::Cef, &[("note", "x=y\nz")]);
        let plain = alert_record(&a, &s, None).unwrap();
        assert!(
            plain.contains("|Alert|a|b\\c|3|devicePayloadId=a|1 ")
                && plain.ends_with(" note=x=y\nz"),
            "{plain}"
        );
        s.escape = true;
        let escaped = alert_record(&a, &s, None).unwrap();
        assert!(
            escaped.contains("|Alert|a\\|b\\\\c|3|devicePayloadId=a|1 "),
            "{escaped}"
        );
        assert!(escaped.ends_with(" note=x\\=y\\nz"), "{escaped}");
    }

    #[test]
    fn max_record_size_shrinks_the_json_but_keeps_it_valid() {
        let big = "x".repeat(5000);
        let a = alert(&format!(
            r#"{{"id":"a1","policy":{{"name":"P","description":"{big}"}},"deployment":{{"name":"d","annotations":{{"k":"{big}"}}}},"time":"2024-05-01T12:00:00Z"}}"#
        ));
        let mut s = settings(HeaderOrder::Cef, &[("env", "prod")]);
        s.max_record_size = 1000;
        let rec = alert_record(&a, &s, None).unwrap();
        assert!(rec.len() <= 1000, "{}", rec.len());
        let json = rec
            .split("stackroxKubernetesSecurityPlatformAlert=")
            .nth(1)
            .unwrap()
            .strip_suffix(" env=prod")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["id"], "a1");
        assert!(v["Entity"]["Deployment"].get("annotations").is_none());
    }
}
