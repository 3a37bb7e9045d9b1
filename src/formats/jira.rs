//! The Jira issue body as Central builds it (central-compat §2.4): Go JSON
//! with sorted keys, HTML-escaped, a trailing newline.

use serde_json::{json, Map, Value};

use super::{gojson, text};
use crate::model::Alert;

/// What an issue carries besides the alert.
pub struct Issue<'a> {
    pub ui_endpoint: &'a str,
    pub issue_type: &'a str,
    pub project: &'a str,
    /// `None`: no priority field at all; `Some(None)`: a severity with no
    /// mapped priority (`{}`, as Central sends it).
    pub priority: Option<Option<&'a str>>,
    /// herald's idempotency label (opt-in).
    pub label: Option<String>,
    /// The user's `default_fields`, added last (they win).
    pub default_fields: &'a Map<String, Value>,
}

/// The `POST /rest/api/2/issue` body for `alert`.
pub fn issue_body(alert: &Alert, issue: &Issue) -> Vec<u8> {
    let f = &alert.fields;
    let mut fields = Map::new();
    fields.insert(
        "description".into(),
        json!(text::format_alert(f, issue.ui_endpoint, text::Table::Jira)),
    );
    fields.insert("issuetype".into(), json!({ "name": issue.issue_type }));
    if let Some(priority) = issue.priority {
        fields.insert(
            "priority".into(),
            match priority {
                Some(name) => json!({ "name": name }),
                None => json!({}),
            },
        );
    }
    fields.insert("project".into(), json!({ "key": issue.project }));
    fields.insert("summary".into(), json!(text::summary(f)));
    if let Some(label) = &issue.label {
        fields.insert("labels".into(), json!([label]));
    }
    for (k, v) in issue.default_fields {
        fields.insert(k.clone(), v.clone());
    }
    let mut out = String::new();
    gojson::write_value(&mut out, &json!({ "fields": fields }));
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_alert as alert;

    #[test]
    fn keys_sorted_html_escaped_priority_forms_and_default_fields_last() {
        let a = alert(
            r#"{"id":"a1","policy":{"name":"P <x>","severity":"HIGH_SEVERITY"},"deployment":{"name":"web","clusterName":"prod"},"time":"2024-05-01T12:03:17Z"}"#,
        );
        let mut defaults = Map::new();
        defaults.insert("summary".into(), json!("mine"));
        defaults.insert("customfield_1".into(), json!(["a&b"]));
        let issue = |priority| Issue {
            ui_endpoint: "",
            issue_type: "Bug",
            project: "SEC",
            priority,
            label: Some("herald-a1".into()),
            default_fields: &defaults,
        };
        let body = String::from_utf8(issue_body(&a, &issue(Some(Some("High"))))).unwrap();
        let description =
            serde_json::to_string(&text::format_alert(&a.fields, "", text::Table::Jira))
                .unwrap()
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
        assert_eq!(
            body,
            format!(
                "{{\"fields\":{{\"customfield_1\":[\"a\\u0026b\"],\"description\":{description},\"issuetype\":{{\"name\":\"Bug\"}},\"labels\":[\"herald-a1\"],\"priority\":{{\"name\":\"High\"}},\"project\":{{\"key\":\"SEC\"}},\"summary\":\"mine\"}}}}\n"
            )
        );
        let unmapped = String::from_utf8(issue_body(&a, &issue(Some(None)))).unwrap();
        assert!(unmapped.contains(r#""priority":{},"#), "{unmapped}");
        let none = String::from_utf8(issue_body(&a, &issue(None))).unwrap();
        assert!(!none.contains("priority"), "{none}");
    }
}
