//! The Slack body as Central builds it (central-compat §2.8): a Go struct
//! marshalled in field order, HTML-escaped.

use serde_json::{json, Map, Value};

use super::gojson;
use super::text::{self, alert_link, image_full_name, summary};
use crate::model::{Alert, Severity};

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
