//! Google Cloud Security Command Center findings, as Central builds one from
//! an alert (central-compat §2.11), in the v1 REST API's JSON.
//!
//! Where herald differs, it says so here:
//! - RESOLVED sets the finding `INACTIVE` (Central does not send
//!   resolutions; ATTEMPTED is `INACTIVE` in both).
//! - The cluster is looked up by the entity's own cluster (Central uses the
//!   deployment's, so resource alerts fail there), and an unknown cluster
//!   or one without a provider name falls back to the alert's cluster name
//!   (`UNSPECIFIED/prod` where Central would write `UNSPECIFIED/`).
//! - The finding id is checked: Cloud SCC takes 1–32 letters and digits, and
//!   the id lands in the request path.
//! - Cloud SCC refuses what Central would send in two cases, so herald
//!   sends neither: an `externalUri` that is not an absolute URL (no
//!   `ui_endpoint`) is left out, and an `eventTime` in the future (Central's
//!   clock ahead of herald's) is now. A RESOLVED finding's `eventTime` is
//!   the resolution time when the alert has one.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::text::alert_link;
use crate::model::{AlertFields, AlertState, ProviderMetadata, Severity};

/// The fields an update of an existing finding changes (its `updateMask`):
/// the mutable ones herald sets (`category` and `resourceName` cannot
/// change once the finding exists).
pub const UPDATE_MASK: &str = "eventTime,externalUri,severity,sourceProperties,state";

/// Whether `source_id` is a source's name (`organizations/<n>/sources/<n>`).
pub fn valid_source_id(source_id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(
        source_id.split('/').collect::<Vec<_>>().as_slice(),
        ["organizations", org, "sources", src] if digits(org) && digits(src)
    )
}

/// The finding id: the alert id without hyphens, which must leave 1–32
/// letters and digits (a UUID leaves 32).
pub fn finding_id(alert_id: &str) -> Result<String, String> {
    let id: String = alert_id.chars().filter(|c| *c != '-').collect();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "alert id {:?} cannot name a Cloud SCC finding: without hyphens it must be 1 to 32 letters and digits",
            alert_id.chars().take(80).collect::<String>()
        ));
    }
    Ok(id)
}

/// What a finding can be built from: deployment and resource alerts. Not
/// image alerts (Central refuses them) nor node alerts (Central's cluster
/// lookup fails on them, and it has no properties for them).
pub fn supported(a: &AlertFields) -> Result<(), &'static str> {
    if a.deployment.is_none() && a.resource.is_none() {
        return Err("Cloud SCC takes alerts on deployments and resources, not on images or nodes");
    }
    Ok(())
}

/// `resourceName`: the GKE cluster, the Google project of another cluster
/// on Google Cloud, or `<type>/<name>` for a cluster elsewhere.
pub fn resource_name(meta: Option<&ProviderMetadata>, cluster_name: &str) -> String {
    let default = ProviderMetadata::default();
    let meta = meta.unwrap_or(&default);
    let (kind, provider_name) = meta
        .cluster
        .as_ref()
        .map_or(("", ""), |c| (c.kind.as_str(), c.name.as_str()));
    let first = |a: &'_ str, b: &'_ str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    match &meta.google {
        None => format!(
            "{}/{}",
            if kind.is_empty() { "UNSPECIFIED" } else { kind },
            first(provider_name, cluster_name)
        ),
        Some(g) if kind == "GKE" => format!(
            "//container.googleapis.com/projects/{}/locations/{}/clusters/{}",
            g.project,
            meta.region,
            first(&g.cluster_name, provider_name)
        ),
        Some(g) => format!(
            "//cloudresourcemanager.googleapis.com/projects/{}",
            g.project
        ),
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
        Severity::Unset => "SEVERITY_UNSPECIFIED",
    }
}

fn enforcement_text(action: &str) -> &str {
    match action {
        "SCALE_TO_ZERO_ENFORCEMENT" => "Scaled to zero replicas",
        "UNSATISFIABLE_NODE_CONSTRAINT_ENFORCEMENT" => {
            "Unsatisfiable node constraint added to prevent deployment"
        }
        "FAIL_DEPLOYMENT_CREATE_ENFORCEMENT" => "Blocked deployment create",
        "FAIL_DEPLOYMENT_UPDATE_ENFORCEMENT" => "Blocked deployment update",
        "FAIL_KUBE_REQUEST_ENFORCEMENT" => "Blocked kubernetes operation",
        other => other,
    }
}

/// The distinct non-empty violation messages, sorted, joined by a space.
fn summary(a: &AlertFields) -> String {
    let mut messages: Vec<&str> = a
        .violations
        .iter()
        .map(|v| v.message.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    messages.sort_unstable();
    messages.dedup();
    messages.join(" ")
}

/// `sourceProperties` as Central's `Properties` struct marshals them: empty
/// strings and an unset enforcement left out.
fn source_properties(a: &AlertFields) -> Option<Map<String, Value>> {
    let (namespace, service, kind_key, kind) = match (&a.deployment, &a.resource) {
        (Some(d), _) => (&d.namespace, &d.name, "deployment_type", &d.kind),
        (_, Some(r)) => (&r.namespace, &r.name, "resource_type", &r.resource_type),
        _ => return None,
    };
    let mut p = Map::new();
    for (k, v) in [
        ("namespace", namespace),
        ("service", service),
        (kind_key, kind),
    ] {
        if !v.is_empty() {
            p.insert(k.into(), Value::String(v.clone()));
        }
    }
    if let Some(e) = a
        .enforcement
        .as_ref()
        .filter(|e| !e.action.is_empty() && e.action != "UNSET_ENFORCEMENT")
    {
        let mut one = Map::new();
        one.insert("action".into(), enforcement_text(&e.action).into());
        if !e.message.is_empty() {
            one.insert("message".into(), Value::String(e.message.clone()));
        }
        p.insert("enforcement_actions".into(), json!([one]));
    }
    let s = summary(a);
    if !s.is_empty() {
        p.insert("summary".into(), Value::String(s));
    }
    Some(p)
}

/// The finding for `a` in `source_id`; `meta` is its cluster's provider
/// metadata, `now` stands in for a missing time.
pub fn finding(
    a: &AlertFields,
    source_id: &str,
    ui_endpoint: &str,
    meta: Option<&ProviderMetadata>,
    now: DateTime<Utc>,
) -> Result<Value, String> {
    supported(a)?;
    let id = finding_id(&a.id)?;
    let state = match a.state {
        AlertState::Attempted | AlertState::Resolved => "INACTIVE",
        AlertState::Active | AlertState::Snoozed => "ACTIVE",
    };
    let time = match a.state {
        AlertState::Resolved => a.resolved_at.or(a.time),
        _ => a.time,
    };
    let link = alert_link(ui_endpoint, a);
    let absolute = reqwest::Url::parse(&link).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    let mut f = json!({
        "name": format!("{source_id}/findings/{id}"),
        "parent": source_id,
        "resourceName": resource_name(meta, a.cluster_name()),
        "state": state,
        "category": a.policy.name,
        "externalUri": link,
        "eventTime": time.map_or(now, |t| t.0.min(now)).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "severity": severity(a.policy.severity),
    });
    if !absolute {
        f.as_object_mut().map(|o| o.shift_remove("externalUri"));
    }
    if let Some(p) = source_properties(a) {
        f["sourceProperties"] = Value::Object(p);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterProviderMetadata, GoogleProviderMetadata};

    fn test_alert(json: &str) -> AlertFields {
        *crate::model::test_alert(json).fields
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const SOURCE: &str = "organizations/1234/sources/5678";

    fn gke() -> ProviderMetadata {
        ProviderMetadata {
            region: "us-central1".into(),
            zone: "us-central1-a".into(),
            google: Some(GoogleProviderMetadata {
                project: "acme-prod".into(),
                cluster_name: "gke-prod".into(),
            }),
            cluster: Some(ClusterProviderMetadata {
                kind: "GKE".into(),
                name: "gke-prod-2".into(),
                id: "9".into(),
            }),
        }
    }

    #[test]
    fn a_deployment_alert_is_the_finding_central_builds() {
        let a = test_alert(
            r#"{"id":"0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9","policy":{"name":"Shell Spawned","severity":"HIGH_SEVERITY"},
            "deployment":{"name":"web","type":"Deployment","namespace":"shop","clusterId":"c1","clusterName":"prod"},
            "violations":[{"message":"shell ran"},{"message":""},{"message":"curl ran"},{"message":"shell ran"}],
            "enforcement":{"action":"KILL_POD_ENFORCEMENT","message":"Deleted 1 pod"},
            "time":"2026-12-07T09:30:00.123Z","state":"ACTIVE"}"#,
        );
        let f = finding(
            &a,
            SOURCE,
            "https://central.example.com",
            Some(&gke()),
            now(),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            concat!(
                r#"{"name":"organizations/1234/sources/5678/findings/0a1b2c3d4e5f60718293a4b5c6d7e8f9","#,
                r#""parent":"organizations/1234/sources/5678","#,
                r#""resourceName":"//container.googleapis.com/projects/acme-prod/locations/us-central1/clusters/gke-prod","#,
                r#""state":"ACTIVE","category":"Shell Spawned","#,
                r#""externalUri":"https://central.example.com/main/violations/0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9","#,
                r#""eventTime":"2026-12-07T09:30:00.123Z","severity":"HIGH","#,
                r#""sourceProperties":{"namespace":"shop","service":"web","deployment_type":"Deployment","#,
                r#""enforcement_actions":[{"action":"KILL_POD_ENFORCEMENT","message":"Deleted 1 pod"}],"#,
                r#""summary":"curl ran shell ran"}}"#
            )
        );
    }

    #[test]
    fn a_resource_alert_works_and_resolved_or_attempted_is_inactive() {
        for state in ["RESOLVED", "ATTEMPTED"] {
            let a = test_alert(&format!(
                r#"{{"id":"r1","policy":{{"name":"Secrets"}},"resource":{{"resourceType":"SECRETS","name":"s1","clusterId":"c2","clusterName":"osd","namespace":"n"}},"enforcement":{{"action":5}},"state":"{state}"}}"#
            ));
            let f = finding(&a, SOURCE, "", None, now()).unwrap();
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                concat!(
                    r#"{"name":"organizations/1234/sources/5678/findings/r1","parent":"organizations/1234/sources/5678","#,
                    r#""resourceName":"UNSPECIFIED/osd","state":"INACTIVE","category":"Secrets","#,
                    r#""eventTime":"2026-12-07T10:00:00Z","#,
                    r#""severity":"SEVERITY_UNSPECIFIED","#,
                    r#""sourceProperties":{"namespace":"n","service":"s1","resource_type":"SECRETS","#,
                    r#""enforcement_actions":[{"action":"Blocked kubernetes operation"}]}}"#
                )
            );
            assert_eq!(a.cluster_id(), "c2");
        }
    }

    #[test]
    fn event_time_is_never_ahead_and_resolved_takes_the_resolution_time() {
        let at = |extra: &str| {
            let a = test_alert(&format!(
                r#"{{"id":"a","policy":{{}},"deployment":{{"name":"d"}}{extra}}}"#
            ));
            finding(&a, SOURCE, "https://c", None, now()).unwrap()["eventTime"].clone()
        };
        assert_eq!(
            at(r#","time":"2031-01-01T00:00:00Z""#),
            "2026-12-07T10:00:00Z"
        );
        assert_eq!(
            at(r#","time":"2026-12-07T09:00:00.5Z""#),
            "2026-12-07T09:00:00.500Z"
        );
        assert_eq!(
            at(
                r#","time":"2026-12-07T09:00:00Z","resolvedAt":"2026-12-07T09:30:00Z","state":"RESOLVED""#
            ),
            "2026-12-07T09:30:00Z"
        );
        assert_eq!(
            at(r#","time":"2026-12-07T09:00:00Z","resolvedAt":"2026-12-07T09:30:00Z""#),
            "2026-12-07T09:00:00Z",
            "only a RESOLVED alert takes the resolution time"
        );
    }

    #[test]
    fn every_enforcement_action_reads_as_central_writes_it() {
        let cases = [
            ("SCALE_TO_ZERO_ENFORCEMENT", "Scaled to zero replicas"),
            (
                "UNSATISFIABLE_NODE_CONSTRAINT_ENFORCEMENT",
                "Unsatisfiable node constraint added to prevent deployment",
            ),
            (
                "FAIL_DEPLOYMENT_CREATE_ENFORCEMENT",
                "Blocked deployment create",
            ),
            (
                "FAIL_DEPLOYMENT_UPDATE_ENFORCEMENT",
                "Blocked deployment update",
            ),
            (
                "FAIL_KUBE_REQUEST_ENFORCEMENT",
                "Blocked kubernetes operation",
            ),
            ("KILL_POD_ENFORCEMENT", "KILL_POD_ENFORCEMENT"),
            ("FAIL_BUILD_ENFORCEMENT", "FAIL_BUILD_ENFORCEMENT"),
            ("SOMETHING_NEW", "SOMETHING_NEW"),
        ];
        for (action, text) in cases {
            assert_eq!(enforcement_text(action), text);
        }
        // A malformed enforcement is left out, not an invalid alert.
        for bad in [r#""x""#, r#"{"message":5}"#, "true"] {
            let a = test_alert(&format!(
                r#"{{"id":"a","policy":{{}},"deployment":{{"name":"d"}},"enforcement":{bad}}}"#
            ));
            assert!(a.enforcement.is_none(), "{bad}");
        }
        let a = test_alert(
            r#"{"id":"a","policy":{},"deployment":{"name":"d"},"enforcement":{"action":"UNSET_ENFORCEMENT","message":"x"}}"#,
        );
        let f = finding(&a, SOURCE, "", None, now()).unwrap();
        assert_eq!(f["sourceProperties"], json!({"service": "d"}));
        assert_eq!(f["severity"], "SEVERITY_UNSPECIFIED");
    }

    #[test]
    fn resource_names_follow_the_clusters_provider() {
        assert_eq!(
            resource_name(Some(&gke()), "prod"),
            "//container.googleapis.com/projects/acme-prod/locations/us-central1/clusters/gke-prod"
        );
        // GKE without the deprecated google.clusterName: the provider's name.
        let mut m = gke();
        m.google.as_mut().unwrap().cluster_name.clear();
        assert_eq!(
            resource_name(Some(&m), "prod"),
            "//container.googleapis.com/projects/acme-prod/locations/us-central1/clusters/gke-prod-2"
        );
        // OpenShift on Google Cloud: the project.
        m.cluster.as_mut().unwrap().kind = "OCP".into();
        assert_eq!(
            resource_name(Some(&m), "prod"),
            "//cloudresourcemanager.googleapis.com/projects/acme-prod"
        );
        // Elsewhere: type and provider name, as Central writes it.
        m.google = None;
        m.cluster = Some(ClusterProviderMetadata {
            kind: "OSD".into(),
            name: "aws-cluster".into(),
            id: String::new(),
        });
        assert_eq!(resource_name(Some(&m), "prod"), "OSD/aws-cluster");
        assert_eq!(resource_name(None, "prod"), "UNSPECIFIED/prod");
    }

    #[test]
    fn hostile_ids_and_image_alerts_are_refused() {
        assert_eq!(finding_id("0a1b-2c").unwrap(), "0a1b2c");
        for bad in [
            "",
            "---",
            "../../x",
            "a b",
            "é",
            &"a".repeat(33),
            "a/findings/b",
        ] {
            assert!(finding_id(bad).is_err(), "{bad:?}");
        }
        let a = test_alert(r#"{"id":"a/b","policy":{},"deployment":{"name":"d"}}"#);
        assert!(finding(&a, SOURCE, "", None, now())
            .unwrap_err()
            .starts_with("alert id \"a/b\" cannot name a Cloud SCC finding"));
        for entity in [r#""image":{"id":"sha256:x"}"#, r#""node":{"name":"n1"}"#] {
            let a = test_alert(&format!(r#"{{"id":"a","policy":{{}},{entity}}}"#));
            assert_eq!(
                finding(&a, SOURCE, "", None, now()).unwrap_err(),
                "Cloud SCC takes alerts on deployments and resources, not on images or nodes"
            );
        }
        assert!(valid_source_id(SOURCE));
        for bad in [
            "organizations/x/sources/1",
            "organizations/1/sources/",
            "projects/1/sources/2",
            "organizations/1/sources/2/findings/3",
            "organizations/1/sources/2?x",
        ] {
            assert!(!valid_source_id(bad), "{bad}");
        }
    }
}
