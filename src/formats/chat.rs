//! PagerDuty Events v2 and Slack bodies as Central builds them (spec §2.7,
//! §2.8): Go structs marshalled in field order, HTML-escaped.

use serde_json::{json, Map, Value};

use super::gojson;
use super::text::{self, alert_link, image_full_name, summary};
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

/// Slack's attachment colour by severity.
pub fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Low => "#FFC780",
        Severity::Medium => "#FF9365",
        Severity::High => "#FF634E",
        Severity::Critical => "#FF2C4D",
        Severity::Unset => "warning",
    }
}

/// The Slack body: the legacy attachment plus the flat fields for Workflow
/// Builder webhooks (omitted when empty, except `text`).
pub fn slack_body(alert: &Alert, ui_endpoint: &str) -> Vec<u8> {
    let a = &alert.fields;
    let body = text::format_alert(a, ui_endpoint, text::Table::Slack);
    let sum = summary(a);
    let attachment = json!({
        "fallback": body,
        "color": severity_colour(a.policy.severity),
        "pretext": format!("*{sum}*"),
        "title": "",
        "text": body,
        "mrkdwn_in": ["pretext", "text", "fields"],
        "fields": null,
    });
    let (cluster, namespace, entity, entity_type) = if let Some(d) = &a.deployment {
        (
            d.cluster_name.clone(),
            d.namespace.clone(),
            d.name.clone(),
            "Deployment",
        )
    } else if let Some(img) = &a.image {
        (String::new(), String::new(), image_full_name(img), "Image")
    } else if let Some(r) = &a.resource {
        (
            r.cluster_name.clone(),
            r.namespace.clone(),
            r.name.clone(),
            "Resource",
        )
    } else if let Some(n) = &a.node {
        (
            n.cluster_name.clone(),
            String::new(),
            n.name.clone(),
            "Node",
        )
    } else {
        (
            a.cluster_name.clone(),
            a.namespace.clone(),
            String::new(),
            "",
        )
    };
    let mut violations: Vec<&str> = a.violations.iter().map(|v| v.message.as_str()).collect();
    if let Some(pv) = &a.process_violation {
        violations.push(&pv.message);
    }
    let mut out = Map::new();
    out.insert("attachments".into(), json!([attachment]));
    out.insert("text".into(), json!(""));
    let flat = [
        ("summary", sum),
        ("alert_id", a.id.clone()),
        ("alert_url", alert_link(ui_endpoint, a)),
        ("severity", a.policy.severity.title().to_string()),
        ("time", text::readable_time(a)),
        ("policy", a.policy.name.clone()),
        ("cluster", cluster),
        ("namespace", namespace),
        ("entity", entity),
        ("entity_type", entity_type.to_string()),
        ("violations", violations.join("\n")),
        ("description", body),
    ];
    for (k, v) in flat {
        if !v.is_empty() {
            out.insert(k.into(), json!(v));
        }
    }
    let mut s = String::new();
    gojson::write_struct(&mut s, &Value::Object(out));
    s.into_bytes()
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

    #[test]
    fn slack_body_has_the_attachment_and_flat_fields() {
        let a = alert(
            r#"{"id":"a1","policy":{"name":"P","severity":"CRITICAL_SEVERITY"},"deployment":{"name":"web","namespace":"ns","clusterName":"prod"},"violations":[{"message":"v1"},{"message":"v2 & more"}],"time":"2024-05-01T12:03:17Z"}"#,
        );
        let body = String::from_utf8(slack_body(&a, "https://c.example.com")).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let text = text::format_alert(&a.fields, "https://c.example.com", text::Table::Slack);
        assert_eq!(v["attachments"][0]["fallback"], text);
        assert_eq!(v["attachments"][0]["color"], "#FF2C4D");
        assert_eq!(
            v["attachments"][0]["pretext"],
            "*Deployment web (in cluster prod) violates 'P' Policy*"
        );
        assert!(body.starts_with(r#"{"attachments":[{"fallback":"#));
        assert!(body.contains(r#","mrkdwn_in":["pretext","text","fields"],"fields":null}],"text":"","summary":"Deployment web (in cluster prod) violates 'P' Policy","alert_id":"a1","alert_url":"https://c.example.com/main/violations/a1","severity":"Critical","time":"2024-05-01 12:03:17","policy":"P","cluster":"prod","namespace":"ns","entity":"web","entity_type":"Deployment","violations":"v1\nv2 \u0026 more","description":"#), "{body}");
        let img =
            alert(r#"{"id":"i1","policy":{"name":"I"},"image":{"name":{"fullName":"nginx:1"}}}"#);
        let v: Value = serde_json::from_slice(&slack_body(&img, "")).unwrap();
        assert!(
            v.get("cluster").is_none()
                && v.get("namespace").is_none()
                && v.get("violations").is_none()
        );
        assert_eq!(v["attachments"][0]["color"], "warning");
        assert_eq!(v["entity_type"], "Image");
    }
}
