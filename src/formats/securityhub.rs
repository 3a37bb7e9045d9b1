//! AWS Security Hub findings in ASFF, as Central maps an alert
//! (central-compat §2.12), and the `BatchImportFindings` body.
//!
//! Where Central's output depends on chance or breaks the API, herald picks
//! one answer: `Types` keep the order in which categories name them (Central
//! iterates a Go set), the description is cut at a character boundary at or
//! below 1,024 bytes (Central cuts bytes), and `Resources` never exceed 32
//! even when the containers alone would (Central's cap counts violations
//! only, and Security Hub refuses more than 32).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::text::alert_link;
use crate::model::{AlertFields, AlertState, Severity, Timestamp};

pub const SCHEMA_VERSION: &str = "2018-10-08";
pub const MAX_RESOURCES: usize = 32;
const MAX_DESCRIPTION: usize = 1024;
const DEFAULT_TYPE: &str = "TTPs";

/// Central's product: the ARN in the finding names it with the region.
pub fn product_arn(region: &str) -> String {
    format!("arn:aws:securityhub:{region}::product/stackrox/kubernetes-security")
}

/// The ASFF finding type of a policy category (lower-cased lookup).
fn category_type(category: &str) -> &'static str {
    match category.to_lowercase().as_str() {
        "vulnerability management" => "Software and Configuration Checks/Vulnerabilities/CVE",
        "anomalous activity" | "cryptocurrency mining" => "Unusual Behaviors/Container",
        "network tools" => "Unusual Behaviors/Network Flows",
        "privileges" => "TTPs/Privilege Escalation",
        "system modification" => "Effects",
        "kubernetes events" => "Unusual Behaviors",
        "docker cis" => "Software and Configuration Checks/Industry and Regulatory Standards",
        "zero trust" | "supply chain security" => "Software and Configuration Checks",
        _ => DEFAULT_TYPE,
    }
}

/// `Types`: each category's type once, in order; `["TTPs"]` without categories.
pub fn finding_types(categories: &[String]) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = Vec::new();
    for c in categories {
        let t = category_type(c);
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        types.push(DEFAULT_TYPE);
    }
    types
}

fn iso8601(t: Option<Timestamp>, now: DateTime<Utc>) -> String {
    t.map(|t| t.0)
        .unwrap_or(now)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn description(a: &AlertFields) -> String {
    let d = &a.policy.description;
    if d.is_empty() {
        return "<policy has no description>".into();
    }
    let mut end = d.len().min(MAX_DESCRIPTION);
    while !d.is_char_boundary(end) {
        end -= 1;
    }
    d[..end].to_string()
}

fn other(id: String, details: Option<Value>) -> Value {
    let mut r = Map::new();
    r.insert("Id".into(), Value::String(id));
    r.insert("Type".into(), "Other".into());
    if let Some(d) = details {
        r.insert("Details".into(), json!({ "Other": d }));
    }
    Value::Object(r)
}

/// The alert's entity: a deployment with its containers, or a resource.
fn entity_resources(a: &AlertFields) -> Vec<Value> {
    if let Some(d) = &a.deployment {
        let mut out = vec![other(
            format!("deployment: {}", d.name),
            Some(json!({
                "cluster-name": d.cluster_name,
                "deployment-name": d.name,
                "deployment-namespace": d.namespace,
            })),
        )];
        for c in &d.containers {
            let Some(image) = c.image.as_ref().filter(|i| !i.id.is_empty()) else {
                continue;
            };
            out.push(json!({
                "Id": format!("container: {}.{}@{}: {}", d.name, d.namespace, d.cluster_name, c.name),
                "Type": "Container",
                "Details": {"Container": {
                    "Name": c.name,
                    "ImageId": image.id,
                    "ImageName": image.name.as_ref().map(|n| n.full_name.as_str()).unwrap_or(""),
                }},
            }));
        }
        out
    } else if let Some(r) = &a.resource {
        vec![other(
            format!("resource: {}", r.name),
            Some(json!({
                "cluster-name": r.cluster_name,
                "resource-name": r.name,
                "resource-namespace": r.namespace,
                "resource-type": r.resource_type,
            })),
        )]
    } else {
        Vec::new()
    }
}

fn note() -> Value {
    other(
        format!(
            "Note: More than {MAX_RESOURCES} violations found. Please consult the StackRox product to see more."
        ),
        None,
    )
}

/// `Resources`: the entity, then one per violation, at most 32 with
/// Central's note last when violations were left out.
pub fn resources(a: &AlertFields) -> Vec<Value> {
    let mut out = entity_resources(a);
    let n = a.violations.len();
    // Central's loop below only stops at exactly 31; with 31 or more entity
    // resources it would never stop.
    if out.len() >= MAX_RESOURCES - 1 {
        if out.len() == MAX_RESOURCES - 1 && n <= 1 {
            out.extend(
                a.violations
                    .iter()
                    .map(|v| other(format!("violation: {}", v.message), None)),
            );
        } else {
            out.truncate(MAX_RESOURCES - 1);
            out.push(note());
        }
        return out;
    }
    for (i, v) in a.violations.iter().enumerate() {
        out.push(other(format!("violation: {}", v.message), None));
        if out.len() == MAX_RESOURCES - 1 && i != n - 1 {
            out.push(note());
            break;
        }
    }
    out
}

/// Where the finding goes and what it links to.
pub struct Target<'a> {
    pub account_id: &'a str,
    pub region: &'a str,
    pub ui_endpoint: &'a str,
}

/// One alert as an ASFF finding; `now` stands in for missing times.
pub fn finding(a: &AlertFields, t: &Target<'_>, now: DateTime<Utc>) -> Value {
    let severity = a.policy.severity.number();
    let critical = Severity::Critical.number();
    let mut f = json!({
        "SchemaVersion": SCHEMA_VERSION,
        "AwsAccountId": t.account_id,
        "ProductArn": product_arn(t.region),
        "ProductFields": {"ProviderName": "kubernetes-security", "ProviderVersion": "1.0.0"},
        "GeneratorId": a.policy.id,
        "Id": a.id,
        "Title": format!("Policy {} violated", a.policy.name),
        "Description": description(a),
        "CreatedAt": iso8601(a.first_occurred, now),
        "UpdatedAt": iso8601(a.time, now),
        "Confidence": 100,
        "Severity": {"Normalized": 100 * severity / critical, "Product": severity},
        "Types": finding_types(&a.policy.categories),
        "SourceUrl": alert_link(t.ui_endpoint, a),
        "Resources": resources(a),
    });
    // Central's mapping.go treats SNOOZED as ACTIVE.
    let state = match a.state {
        AlertState::Active | AlertState::Snoozed => Some(("FAILED", "ACTIVE")),
        AlertState::Resolved => Some(("PASSED", "ARCHIVED")),
        AlertState::Attempted => None,
    };
    if let (Some((compliance, record)), Value::Object(m)) = (state, &mut f) {
        m.insert("Compliance".into(), json!({ "Status": compliance }));
        m.insert("RecordState".into(), record.into());
    }
    f
}

/// The `BatchImportFindings` request body.
pub fn import_body(findings: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Findings": findings })).unwrap_or_default()
}

/// Central's test alert (an example deployment, a HIGH policy), `state`
/// ACTIVE or RESOLVED.
pub fn test_alert(id: &str, state: &str) -> AlertFields {
    let v = json!({
        "id": id,
        "policy": {"id": "herald-test-policy", "name": "example policy", "severity": "HIGH_SEVERITY",
                   "description": "This finding tests the SecurityHub integration"},
        "deployment": {"name": "example deployment", "namespace": "example namespace",
                       "clusterName": "example cluster"},
        "state": state,
    });
    serde_json::from_value(v).unwrap_or_default()
}

/// Whether Security Hub can take this alert: deployment and resource alerts
/// only (Central: "AWS SH notifier only supports deployment and resource
/// alerts").
pub fn supported(a: &AlertFields) -> Result<(), &'static str> {
    if a.deployment.is_some() || a.resource.is_some() {
        Ok(())
    } else {
        Err("AWS Security Hub takes deployment and resource alerts only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_alert;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const T: Target<'static> = Target {
        account_id: "123456789012",
        region: "eu-west-1",
        ui_endpoint: "https://central.example.com",
    };

    #[test]
    fn a_deployment_alert_is_the_finding_central_builds() {
        let a = test_alert(
            r#"{"id":"5f3a-77","policy":{"id":"p-1","name":"Shell","description":"No shells","categories":["Anomalous Activity","Privileges","cryptocurrency mining","Something New"],"severity":"HIGH_SEVERITY"},
            "deployment":{"name":"web","namespace":"shop","clusterName":"prod","containers":[{"name":"app","image":{"id":"sha256:abc","name":{"fullName":"quay.io/shop/web:1"}}},{"name":"noid","image":{"name":{"fullName":"x"}}}]},
            "violations":[{"message":"shell ran"},{"message":"curl ran"}],
            "time":"2026-12-07T09:30:00.123Z","firstOccurred":"2026-12-07T09:00:00Z","state":"ACTIVE"}"#,
        );
        let f = finding(&a.fields, &T, now());
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            concat!(
                r#"{"SchemaVersion":"2018-10-08","AwsAccountId":"123456789012","#,
                r#""ProductArn":"arn:aws:securityhub:eu-west-1::product/stackrox/kubernetes-security","#,
                r#""ProductFields":{"ProviderName":"kubernetes-security","ProviderVersion":"1.0.0"},"#,
                r#""GeneratorId":"p-1","Id":"5f3a-77","Title":"Policy Shell violated","Description":"No shells","#,
                r#""CreatedAt":"2026-12-07T09:00:00Z","UpdatedAt":"2026-12-07T09:30:00Z","Confidence":100,"#,
                r#""Severity":{"Normalized":75,"Product":3},"#,
                r#""Types":["Unusual Behaviors/Container","TTPs/Privilege Escalation","TTPs"],"#,
                r#""SourceUrl":"https://central.example.com/main/violations/5f3a-77","#,
                r#""Resources":[{"Id":"deployment: web","Type":"Other","Details":{"Other":{"cluster-name":"prod","deployment-name":"web","deployment-namespace":"shop"}}},"#,
                r#"{"Id":"container: web.shop@prod: app","Type":"Container","Details":{"Container":{"Name":"app","ImageId":"sha256:abc","ImageName":"quay.io/shop/web:1"}}},"#,
                r#"{"Id":"violation: shell ran","Type":"Other"},{"Id":"violation: curl ran","Type":"Other"}],"#,
                r#""Compliance":{"Status":"FAILED"},"RecordState":"ACTIVE"}"#
            )
        );
    }

    #[test]
    fn a_resolved_resource_alert_archives_and_missing_fields_take_central_defaults() {
        let a = test_alert(
            r#"{"id":"r1","policy":{"id":"p","name":"Secrets","severity":"UNSET_SEVERITY"},"resource":{"resourceType":"SECRETS","name":"s1","clusterName":"c","namespace":"n"},"state":"RESOLVED"}"#,
        );
        let t = Target {
            ui_endpoint: "",
            ..T
        };
        assert_eq!(
            serde_json::to_string(&finding(&a.fields, &t, now())).unwrap(),
            concat!(
                r#"{"SchemaVersion":"2018-10-08","AwsAccountId":"123456789012","#,
                r#""ProductArn":"arn:aws:securityhub:eu-west-1::product/stackrox/kubernetes-security","#,
                r#""ProductFields":{"ProviderName":"kubernetes-security","ProviderVersion":"1.0.0"},"#,
                r#""GeneratorId":"p","Id":"r1","Title":"Policy Secrets violated","Description":"<policy has no description>","#,
                r#""CreatedAt":"2026-12-07T10:00:00Z","UpdatedAt":"2026-12-07T10:00:00Z","Confidence":100,"#,
                r#""Severity":{"Normalized":0,"Product":0},"Types":["TTPs"],"SourceUrl":"/main/violations/r1","#,
                r#""Resources":[{"Id":"resource: s1","Type":"Other","Details":{"Other":{"cluster-name":"c","resource-name":"s1","resource-namespace":"n","resource-type":"SECRETS"}}}],"#,
                r#""Compliance":{"Status":"PASSED"},"RecordState":"ARCHIVED"}"#
            )
        );
    }

    #[test]
    fn attempted_sets_neither_compliance_nor_record_state() {
        let a =
            test_alert(r#"{"id":"x","policy":{},"deployment":{"name":"d"},"state":"ATTEMPTED"}"#);
        let f = finding(&a.fields, &T, now());
        assert_eq!(f.get("Compliance"), None);
        assert_eq!(f.get("RecordState"), None);
    }

    #[test]
    fn every_category_maps_as_central_maps_it() {
        let table = [
            (
                "Vulnerability Management",
                "Software and Configuration Checks/Vulnerabilities/CVE",
            ),
            ("Anomalous Activity", "Unusual Behaviors/Container"),
            ("Cryptocurrency Mining", "Unusual Behaviors/Container"),
            ("DevOps Best Practices", "TTPs"),
            ("Kubernetes", "TTPs"),
            ("Network Tools", "Unusual Behaviors/Network Flows"),
            ("Package Management", "TTPs"),
            ("Privileges", "TTPs/Privilege Escalation"),
            ("Security Best Practices", "TTPs"),
            ("System Modification", "Effects"),
            ("Kubernetes Events", "Unusual Behaviors"),
            (
                "Docker CIS",
                "Software and Configuration Checks/Industry and Regulatory Standards",
            ),
            ("Zero Trust", "Software and Configuration Checks"),
            ("Supply Chain Security", "Software and Configuration Checks"),
            ("unknown", "TTPs"),
        ];
        for (category, t) in table {
            assert_eq!(
                finding_types(&[category.to_string()]),
                vec![t],
                "{category}"
            );
        }
        assert_eq!(finding_types(&[]), vec!["TTPs"]);
        assert_eq!(
            finding_types(&["Kubernetes".into(), "kubernetes".into(), "Effects?".into()]),
            vec!["TTPs"]
        );
    }

    fn ids(v: &[Value]) -> Vec<String> {
        v.iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect()
    }

    fn with_violations(containers: usize, violations: usize) -> AlertFields {
        let c: Vec<String> = (0..containers)
            .map(|i| format!(r#"{{"name":"c{i}","image":{{"id":"i{i}"}}}}"#))
            .collect();
        let v: Vec<String> = (0..violations)
            .map(|i| format!(r#"{{"message":"v{i}"}}"#))
            .collect();
        *test_alert(&format!(
            r#"{{"id":"a","policy":{{}},"deployment":{{"name":"d","namespace":"n","clusterName":"k","containers":[{}]}},"violations":[{}]}}"#,
            c.join(","),
            v.join(",")
        ))
        .fields
    }

    #[test]
    fn resources_stop_at_32_with_centrals_note() {
        let note =
            "Note: More than 32 violations found. Please consult the StackRox product to see more.";
        // 1 deployment + 30 violations = 31: all fit, no note.
        let r = resources(&with_violations(0, 30));
        assert_eq!(r.len(), 31);
        assert_eq!(ids(&r)[30], "violation: v29");
        // 31 violations: the 30th fills slot 31 and one more remains, so the note.
        let r = resources(&with_violations(0, 31));
        assert_eq!(r.len(), 32);
        assert_eq!(ids(&r)[30], "violation: v29");
        assert_eq!(ids(&r)[31], note);
        let r = resources(&with_violations(0, 500));
        assert_eq!(r.len(), 32);
        assert_eq!(ids(&r)[31], note);
        // 30 containers + the deployment = 31: one violation fits, two do not.
        let r = resources(&with_violations(30, 1));
        assert_eq!((r.len(), ids(&r)[31].as_str()), (32, "violation: v0"));
        let r = resources(&with_violations(30, 2));
        assert_eq!((r.len(), ids(&r)[31].as_str()), (32, note));
        let r = resources(&with_violations(30, 0));
        assert_eq!(r.len(), 31);
        // 29 containers: 30 entity resources, then Central's loop.
        let r = resources(&with_violations(29, 5));
        assert_eq!(
            (r.len(), ids(&r)[30].as_str(), ids(&r)[31].as_str()),
            (32, "violation: v0", note)
        );
        // 40 containers alone would pass the limit: cut to 31 and the note.
        let r = resources(&with_violations(40, 3));
        assert_eq!(r.len(), 32);
        assert_eq!(ids(&r)[30], "container: d.n@k: c29");
        assert_eq!(ids(&r)[31], note);
    }

    #[test]
    fn the_description_is_cut_at_1024_bytes_on_a_character_boundary() {
        let long = "é".repeat(600); // 1,200 bytes
        let a = test_alert(&format!(
            r#"{{"id":"a","policy":{{"description":"{long}"}},"deployment":{{}}}}"#
        ));
        let d = description(&a.fields);
        assert_eq!(d.len(), 1024);
        assert_eq!(d, "é".repeat(512));
        let a = test_alert(&format!(
            r#"{{"id":"a","policy":{{"description":"x{long}"}},"deployment":{{}}}}"#
        ));
        assert_eq!(description(&a.fields).len(), 1023);
    }

    #[test]
    fn image_alerts_are_not_supported_and_the_body_wraps_findings() {
        let img = test_alert(r#"{"id":"i","policy":{},"image":{"idV2":"x"}}"#);
        assert_eq!(
            supported(&img.fields),
            Err("AWS Security Hub takes deployment and resource alerts only")
        );
        assert_eq!(
            String::from_utf8(import_body(&[json!({"Id":"a"})])).unwrap(),
            r#"{"Findings":[{"Id":"a"}]}"#
        );
    }
}
