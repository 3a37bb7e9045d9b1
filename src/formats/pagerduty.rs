//! PagerDuty Events v2 events as Central builds them (central-compat §2.7):
//! a Go struct marshalled in field order, HTML-escaped.

use serde_json::{json, Map, Value};

use super::gojson;
use super::text::{alert_link, image_full_name, summary};
use crate::model::{Alert, AlertFields, AlertState, Severity};

/// `dedup_key` and everything else of one PagerDuty event.
pub fn pagerduty_event(alert: &Alert, routing_key: &str, ui_endpoint: &str) -> Vec<u8> {
    let a = &alert.fields;
    let action = if a.state == AlertState::Resolved {
        "resolve"
    } else {
        "trigger"
    };
    let severity = match a.policy.severity {
        Severity::Unset => "info",
        Severity::Low => "warning",
        Severity::Medium | Severity::High => "error",
        Severity::Critical => "critical",
    };
    let (source, component) = pagerduty_source(a);
    let timestamp = a
        .time
        .map(|t| t.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    let mut payload = Map::new();
    payload.insert("summary".into(), json!(summary(a)));
    payload.insert("source".into(), json!(source));
    payload.insert("severity".into(), json!(severity));
    payload.insert("timestamp".into(), json!(timestamp));
    if !component.is_empty() {
        payload.insert("component".into(), json!(component));
    }
    let class = a.policy.categories.join(" ");
    if !class.is_empty() {
        payload.insert("class".into(), json!(class));
    }
    let mut event = Map::new();
    event.insert("routing_key".into(), json!(routing_key));
    event.insert("event_action".into(), json!(action));
    event.insert("dedup_key".into(), json!(a.id));
    event.insert("client".into(), json!("StackRox"));
    let link = alert_link(ui_endpoint, a);
    if !link.is_empty() {
        event.insert("client_url".into(), json!(link));
    }
    let mut out = String::new();
    gojson::write_struct(&mut out, &Value::Object(event));
    // `payload` last, with the alert as `custom_details`: its protojson as
    // received, compacted and HTML-escaped as Go's encoder does to raw JSON.
    out.pop();
    out.push_str(",\"payload\":");
    let mut p = String::new();
    gojson::write_struct(&mut p, &Value::Object(payload));
    p.pop();
    out.push_str(&p);
    out.push_str(",\"custom_details\":");
    out.push_str(&html_escape_json(alert.raw.get()));
    out.push_str("}}");
    out.into_bytes()
}

/// Go escapes `<`, `>`, `&`, U+2028 and U+2029 when it re-encodes raw JSON;
/// they can only occur inside strings.
fn html_escape_json(raw: &str) -> String {
    raw.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// PagerDuty `source` and `component` by entity (Central's rules, including
/// its `remote/registry` order for images).
fn pagerduty_source(a: &AlertFields) -> (String, String) {
    if let Some(d) = &a.deployment {
        return (
            format!("{}/{}", d.cluster_name, d.namespace),
            format!("Deployment {}", d.name),
        );
    }
    if let Some(img) = &a.image {
        let name = img.name.clone().unwrap_or_default();
        return (
            format!("Image from {}/{}", name.remote, name.registry),
            format!("Image {}", image_full_name(img)),
        );
    }
    if let Some(r) = &a.resource {
        let source = if r.namespace.is_empty() {
            r.cluster_name.clone()
        } else {
            format!("{}/{}", r.cluster_name, r.namespace)
        };
        let kind = if r.resource_type.is_empty() {
            "UNKNOWN"
        } else {
            &r.resource_type
        };
        return (source, format!("{kind} {}", r.name));
    }
    (String::new(), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::test_alert as alert;

    #[test]
    fn pagerduty_events_per_entity() {
        let dep = alert(
            r#"{"id":"a1","policy":{"name":"P <1>","severity":"HIGH_SEVERITY","categories":["Privileges","Docker CIS"]},"deployment":{"name":"web","namespace":"ns","clusterName":"prod"},"time":"2024-05-01T12:03:17.451Z"}"#,
        );
        assert_eq!(
            String::from_utf8(pagerduty_event(&dep, "RK", "https://c.example.com")).unwrap(),
            r#"{"routing_key":"RK","event_action":"trigger","dedup_key":"a1","client":"StackRox","client_url":"https://c.example.com/main/violations/a1","payload":{"summary":"Deployment web (in cluster prod) violates 'P \u003c1\u003e' Policy","source":"prod/ns","severity":"error","timestamp":"2024-05-01T12:03:17.451Z","component":"Deployment web","class":"Privileges Docker CIS","custom_details":{"id":"a1","policy":{"name":"P \u003c1\u003e","severity":"HIGH_SEVERITY","categories":["Privileges","Docker CIS"]},"deployment":{"name":"web","namespace":"ns","clusterName":"prod"},"time":"2024-05-01T12:03:17.451Z"}}}"#
        );
        let node = alert(
            r#"{"id":"n1","state":"RESOLVED","policy":{"name":"N","severity":"CRITICAL_SEVERITY"},"node":{"name":"w1","clusterName":"prod"}}"#,
        );
        let body = String::from_utf8(pagerduty_event(&node, "RK", "")).unwrap();
        assert!(body.starts_with(r#"{"routing_key":"RK","event_action":"resolve","dedup_key":"n1","client":"StackRox","client_url":"/main/violations/n1","payload":{"summary":"Node w1 (in cluster prod) violates 'N' Policy","source":"","severity":"critical","timestamp":"1970-01-01T00:00:00Z","custom_details":"#), "{body}");
        let img = alert(
            r#"{"id":"i1","policy":{"name":"I","severity":"LOW_SEVERITY"},"image":{"name":{"registry":"docker.io","remote":"library/nginx","tag":"1","fullName":"docker.io/library/nginx:1"}}}"#,
        );
        let body = String::from_utf8(pagerduty_event(&img, "RK", "")).unwrap();
        assert!(body.contains(r#""source":"Image from library/nginx/docker.io","severity":"warning","timestamp":"1970-01-01T00:00:00Z","component":"Image docker.io/library/nginx:1","custom_details""#), "{body}");
        let res = alert(
            r#"{"id":"r1","policy":{"name":"R"},"resource":{"resourceType":"SECRETS","name":"s","clusterName":"prod"}}"#,
        );
        let body = String::from_utf8(pagerduty_event(&res, "RK", "")).unwrap();
        assert!(body.contains(r#""source":"prod","severity":"info","timestamp":"1970-01-01T00:00:00Z","component":"SECRETS s","custom_details""#), "{body}");
    }
}
