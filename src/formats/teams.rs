//! Microsoft Teams bodies (central-compat §2.9): Central's MessageCard, and the same
//! facts as an Adaptive Card for Workflows webhooks (Microsoft retired the
//! O365 connectors that MessageCard targets).

use serde_json::{json, Map, Value};

use super::gojson;
use super::slack::severity_colour;
use super::text::{alert_link, image_full_name, summary};
use crate::model::{Alert, AlertFields, PolicyGroup};

/// One titled list of facts; sections without facts are left out.
struct Section {
    title: &'static str,
    facts: Vec<(String, String)>,
}

fn fact(facts: &mut Vec<(String, String)>, name: &str, value: &str) {
    if !value.is_empty() {
        facts.push((name.to_string(), value.to_string()));
    }
}

/// Go's RFC3339Nano in UTC: fractional seconds without trailing zeros.
fn rfc3339_nano(a: &AlertFields) -> String {
    let t = a.time.map(|t| t.0).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s + "Z"
}

fn group_text(g: &PolicyGroup) -> String {
    let op = if g.boolean_operator == "AND" {
        " AND "
    } else {
        " OR "
    };
    let values: Vec<&str> = g.values.iter().map(|v| v.value.as_str()).collect();
    let joined = values.join(op);
    if g.negate {
        format!("NOT ({joined})")
    } else {
        joined
    }
}

fn sections(a: &AlertFields, ui_endpoint: &str) -> Vec<Section> {
    let mut details = Vec::new();
    fact(&mut details, "ID", &a.id);
    fact(&mut details, "URL", &alert_link(ui_endpoint, a));
    fact(&mut details, "Time", &rfc3339_nano(a));
    fact(&mut details, "Severity", a.policy.severity.title());

    let p = &a.policy;
    let mut policy = Vec::new();
    fact(&mut policy, "Description", &p.description);
    fact(&mut policy, "Remediation", &p.remediation);
    fact(&mut policy, "Rationale", &p.rationale);
    for s in &p.policy_sections {
        let name = if s.section_name.is_empty() {
            "Section ".to_string()
        } else {
            format!("Section  \"{}\"", s.section_name)
        };
        let mut value = String::new();
        for g in &s.policy_groups {
            value += &format!("\n- {}: {}", g.field_name, group_text(g));
        }
        value += "\n__________";
        policy.push((name, value));
    }

    let mut violations = Vec::new();
    for v in &a.violations {
        if v.message.is_empty() {
            continue;
        }
        violations.push((
            "Description".to_string(),
            format!("Message : {}", v.message),
        ));
        if v.kind == "K8S_EVENT" {
            for kv in v.key_value_attrs.iter().flat_map(|k| &k.attrs) {
                violations.push((kv.key.clone(), kv.value.clone()));
            }
        }
    }

    let mut out = vec![
        Section {
            title: "Alert Details",
            facts: details,
        },
        Section {
            title: "Policy Details",
            facts: policy,
        },
        Section {
            title: "Violation Details",
            facts: violations,
        },
    ];
    if let Some(d) = &a.deployment {
        let mut f = Vec::new();
        fact(&mut f, "ID", &d.id);
        fact(&mut f, "Name", &d.name);
        fact(&mut f, "Namespace", &d.namespace);
        fact(&mut f, "Cluster Id", &d.cluster_id);
        fact(&mut f, "Cluster Name", &d.cluster_name);
        let images: Vec<String> = d
            .containers
            .iter()
            .filter_map(|c| c.image.as_ref())
            .map(image_full_name)
            .collect();
        fact(&mut f, "Images", &images.join(", "));
        out.push(Section {
            title: "Deployment Details",
            facts: f,
        });
    } else if let Some(i) = &a.image {
        let mut f = Vec::new();
        fact(&mut f, "Image Name", &image_full_name(i));
        out.push(Section {
            title: "Image Details",
            facts: f,
        });
    } else if let Some(r) = &a.resource {
        let mut f = Vec::new();
        fact(&mut f, "Resource Name", &r.name);
        fact(&mut f, "Type", &r.resource_type);
        fact(&mut f, "Cluster Id", &r.cluster_id);
        fact(&mut f, "Cluster Name", &r.cluster_name);
        fact(&mut f, "Namespace", &r.namespace);
        out.push(Section {
            title: "Resource Details",
            facts: f,
        });
    }
    out.retain(|s| !s.facts.is_empty());
    out
}

/// Central's MessageCard body.
pub fn message_card(alert: &Alert, ui_endpoint: &str) -> Vec<u8> {
    let a = &alert.fields;
    let sum = summary(a);
    let sections: Vec<Value> = sections(a, ui_endpoint)
        .into_iter()
        .map(|s| {
            let facts: Vec<Value> = s
                .facts
                .into_iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
            json!({"title": s.title, "facts": facts})
        })
        .collect();
    let mut card = Map::new();
    card.insert(
        "themeColor".into(),
        json!(severity_colour(a.policy.severity)),
    );
    card.insert("title".into(), json!(sum));
    card.insert("text".into(), json!(sum));
    card.insert("sections".into(), Value::Array(sections));
    let mut s = String::new();
    gojson::write_struct(&mut s, &Value::Object(card));
    s.into_bytes()
}

/// The same content as an Adaptive Card message for Teams Workflows
/// ("Post to a channel when a webhook request is received").
pub fn adaptive_card(alert: &Alert, ui_endpoint: &str) -> Vec<u8> {
    let a = &alert.fields;
    let mut body = vec![
        json!({"type": "TextBlock", "text": summary(a), "weight": "Bolder", "size": "Medium", "wrap": true}),
    ];
    for s in sections(a, ui_endpoint) {
        body.push(json!({"type": "TextBlock", "text": s.title, "weight": "Bolder", "wrap": true, "separator": true}));
        let facts: Vec<Value> = s
            .facts
            .into_iter()
            .map(|(n, v)| json!({"title": n, "value": v}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    });
    let link = alert_link(ui_endpoint, a);
    if !link.is_empty() {
        content["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in RHACS", "url": link}]);
    }
    let msg = json!({
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": content}],
    });
    serde_json::to_vec(&msg).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::test_alert as alert;

    const DEPLOYMENT: &str = r#"{"id":"a1","policy":{"name":"P","description":"d <x>","remediation":"fix","severity":"CRITICAL_SEVERITY","policySections":[{"policyGroups":[{"fieldName":"Image Tag","values":[{"value":"latest"},{"value":"dev"}]}]},{"sectionName":"s2","policyGroups":[{"fieldName":"Privileged","booleanOperator":"AND","negate":true,"values":[{"value":"true"}]}]}]},"deployment":{"id":"d1","name":"web","namespace":"ns","clusterId":"c1","clusterName":"prod","containers":[{"image":{"name":{"registry":"docker.io","remote":"library/nginx","tag":"1","fullName":"docker.io/library/nginx:1"}}}]},"violations":[{"message":"m1"},{"message":"ev","type":"K8S_EVENT","keyValueAttrs":{"attrs":[{"key":"Kubernetes API Verb","value":"CREATE"}]}},{"message":""}],"time":"2024-05-01T12:03:17.450Z"}"#;

    #[test]
    fn message_card_is_centrals_body() {
        let got =
            String::from_utf8(message_card(&alert(DEPLOYMENT), "https://c.example.com")).unwrap();
        assert_eq!(
            got,
            r##"{"themeColor":"#FF2C4D","title":"Deployment web (in cluster prod) violates 'P' Policy","text":"Deployment web (in cluster prod) violates 'P' Policy","sections":[{"title":"Alert Details","facts":[{"name":"ID","value":"a1"},{"name":"URL","value":"https://c.example.com/main/violations/a1"},{"name":"Time","value":"2024-05-01T12:03:17.45Z"},{"name":"Severity","value":"Critical"}]},{"title":"Policy Details","facts":[{"name":"Description","value":"d \u003cx\u003e"},{"name":"Remediation","value":"fix"},{"name":"Section ","value":"\n- Image Tag: latest OR dev\n__________"},{"name":"Section  \"s2\"","value":"\n- Privileged: NOT (true)\n__________"}]},{"title":"Violation Details","facts":[{"name":"Description","value":"Message : m1"},{"name":"Description","value":"Message : ev"},{"name":"Kubernetes API Verb","value":"CREATE"}]},{"title":"Deployment Details","facts":[{"name":"ID","value":"d1"},{"name":"Name","value":"web"},{"name":"Namespace","value":"ns"},{"name":"Cluster Id","value":"c1"},{"name":"Cluster Name","value":"prod"},{"name":"Images","value":"docker.io/library/nginx:1"}]}]}"##
        );
    }

    #[test]
    fn node_alerts_have_no_entity_section_and_empty_sections_go() {
        let got = String::from_utf8(message_card(
            &alert(r#"{"id":"n1","policy":{"name":"N","severity":"LOW_SEVERITY"},"node":{"name":"w1","clusterName":"prod"}}"#),
            "",
        ))
        .unwrap();
        assert_eq!(
            got,
            r##"{"themeColor":"#FFC780","title":"Node w1 (in cluster prod) violates 'N' Policy","text":"Node w1 (in cluster prod) violates 'N' Policy","sections":[{"title":"Alert Details","facts":[{"name":"ID","value":"n1"},{"name":"URL","value":"/main/violations/n1"},{"name":"Time","value":"1970-01-01T00:00:00Z"},{"name":"Severity","value":"Low"}]}]}"##
        );
    }

    #[test]
    fn adaptive_card_carries_the_same_facts() {
        let got: Value =
            serde_json::from_slice(&adaptive_card(&alert(DEPLOYMENT), "https://c.example.com"))
                .unwrap();
        let content = &got["attachments"][0]["content"];
        assert_eq!(got["type"], "message");
        assert_eq!(
            got["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(content["type"], "AdaptiveCard");
        assert_eq!(
            content["body"][0]["text"],
            "Deployment web (in cluster prod) violates 'P' Policy"
        );
        let titles: Vec<&str> = content["body"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["separator"] == true)
            .map(|b| b["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            [
                "Alert Details",
                "Policy Details",
                "Violation Details",
                "Deployment Details"
            ]
        );
        assert_eq!(
            content["body"][6]["facts"][2],
            json!({"title": "Kubernetes API Verb", "value": "CREATE"})
        );
        assert_eq!(
            content["actions"][0]["url"],
            "https://c.example.com/main/violations/a1"
        );
    }
}
