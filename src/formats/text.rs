//! The alert as text (central-compat §0.2, §0.3): the summary line, the alert link and
//! Central's `FormatAlert` template with its email, Jira and Slack function
//! tables. Used by email, Jira, Slack and Teams.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::model::{AlertFields, ContainerImage};

/// MITRE ATT&CK enterprise v9 names by id (`TA0001`, `T1059.004`).
fn mitre() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("../../data/mitre-attack-enterprise-v9-names.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .collect()
    })
}

/// Central's image full name: `fullName`, else built from its parts.
pub fn image_full_name(img: &ContainerImage) -> String {
    let Some(n) = &img.name else {
        return String::new();
    };
    if !n.full_name.is_empty() {
        return n.full_name.clone();
    }
    match (n.tag.is_empty(), img.id.is_empty()) {
        (true, _) => format!("{}/{}@{}", n.registry, n.remote, img.id),
        (false, false) => format!("{}/{}:{}@{}", n.registry, n.remote, n.tag, img.id),
        (false, true) => format!("{}/{}:{}", n.registry, n.remote, n.tag),
    }
}

/// `SummaryForAlert`: the email subject, Jira summary, PagerDuty summary.
pub fn summary(a: &AlertFields) -> String {
    let policy = &a.policy.name;
    if let Some(d) = &a.deployment {
        return format!(
            "Deployment {} (in cluster {}) violates '{policy}' Policy",
            d.name, d.cluster_name
        );
    }
    if let Some(img) = &a.image {
        return format!("Image {} violates '{policy}' Policy", image_full_name(img));
    }
    if let Some(r) = &a.resource {
        return format!("Policy '{policy}' violated in cluster {}", r.cluster_name);
    }
    if let Some(n) = &a.node {
        return format!(
            "Node {} (in cluster {}) violates '{policy}' Policy",
            n.name, n.cluster_name
        );
    }
    format!("Policy '{policy}' violated")
}

/// `AlertLink`: the alert's page in Central, resolved against `ui_endpoint`
/// (any path there is replaced). An unparseable endpoint gives "".
pub fn alert_link(ui_endpoint: &str, a: &AlertFields) -> String {
    let path = match &a.image {
        Some(img) if a.deployment.is_none() && a.resource.is_none() && a.node.is_none() => {
            format!("/main/vulnerability-management/image/{}", img.id_v2)
        }
        _ => format!("/main/violations/{}", a.id),
    };
    if ui_endpoint.is_empty() {
        return path;
    }
    match reqwest::Url::parse(ui_endpoint).and_then(|base| base.join(&path)) {
        Ok(u) => u.to_string(),
        Err(_) => String::new(),
    }
}

/// The alert time as Central prints it (UTC `YYYY-MM-DD HH:MM:SS`).
pub fn readable_time(a: &AlertFields) -> String {
    a.time
        .map(|t| t.0.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "<malformed time>".into())
}

/// Which formatting-function table to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Email,
    Jira,
    Slack,
}

const T: &str = "        ";

impl Table {
    fn header(self, x: &str) -> String {
        match self {
            Table::Email => format!("\r\n{x}\r\n"),
            Table::Jira => format!("\r\n h4. {x}\r\n"),
            Table::Slack => format!("\r\n*{x}*\r\n"),
        }
    }

    fn subheader(self, x: &str) -> String {
        match self {
            Table::Email => format!("\r\n\t{x}\r\n"),
            Table::Jira => format!("\r\n h5. {x}\r\n"),
            Table::Slack => format!("\r\n{T}*{x}*\r\n"),
        }
    }

    fn line(self, x: &str) -> String {
        format!("{x}\r\n")
    }

    fn list(self, x: &str) -> String {
        match self {
            Table::Email => format!("\t - {x}\r\n"),
            Table::Jira => format!("* {x}\r\n"),
            Table::Slack => format!("{T}    - {x}\r\n"),
        }
    }

    fn nested_list(self, x: &str) -> String {
        match self {
            Table::Email => format!("\t\t - {x}\r\n"),
            Table::Jira => format!("** {x}\r\n"),
            Table::Slack => format!("{T}{T}- {x}\r\n"),
        }
    }

    fn section(self, x: &str) -> String {
        match self {
            Table::Email => format!("\r\n\t\t{x}\r\n"),
            Table::Jira => format!("\r\n * {x}"),
            Table::Slack => format!("\r\n{T}{T}*{x}*\r\n"),
        }
    }

    fn group(self, x: &str) -> String {
        match self {
            Table::Email => format!("\r\n\t\t\t - {x}"),
            Table::Jira => format!("\r\n ** {x}"),
            Table::Slack => format!("\r\n{T}{T}{T}*{x}*"),
        }
    }

    fn values(self, values: &[String], and: bool, negate: bool) -> String {
        let op = if and { " AND " } else { " OR " };
        let joined = match self {
            Table::Slack => values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(op),
            _ => values.join(op),
        };
        let joined = if negate {
            format!("NOT ({joined})")
        } else {
            joined
        };
        match self {
            Table::Slack => format!("{joined}\r\n"),
            _ => joined,
        }
    }
}

/// Go's `%v` of each argument, empty strings dropped, joined by a space.
fn stringify(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Central's `FormatAlert` with one function table.
pub fn format_alert(a: &AlertFields, ui_endpoint: &str, t: Table) -> String {
    let mut out = String::new();
    let link = alert_link(ui_endpoint, a);
    let time = readable_time(a);
    out += &t.line(&stringify(&["Alert ID:", &a.id]));
    out += &t.line(&stringify(&["Alert URL:", &link]));
    out += &t.line(&stringify(&["Time (UTC):", &time]));
    out += &t.line(&stringify(&["Severity:", a.policy.severity.title()]));
    out += &t.header("Violations:");
    for v in &a.violations {
        out += &t.list(&v.message);
        if let Some(kv) = &v.key_value_attrs {
            for attr in &kv.attrs {
                out += &t.nested_list(&stringify(&[&attr.key, ":", &attr.value]));
            }
        } else if let Some(fa) = &v.file_access {
            let file = fa.file.clone().unwrap_or_default();
            let signal = fa
                .process
                .as_ref()
                .and_then(|p| p.signal.clone())
                .unwrap_or_default();
            out += &t.nested_list(&stringify(&["Effective Path:", &file.effective_path]));
            if !file.actual_path.is_empty() {
                out += &t.nested_list(&stringify(&["Actual Path:", &file.actual_path]));
            }
            out += &t.nested_list(&stringify(&["Process Name:", &signal.name]));
            out += &t.nested_list(&stringify(&["Process Executable:", &signal.exec_file_path]));
        }
    }
    if let Some(pv) = &a.process_violation {
        out += &t.list(&pv.message);
    }
    let p = &a.policy;
    out += &t.header("Policy Definition:");
    out += &t.subheader("Description:");
    out += &t.list(&p.description);
    out += &t.subheader("Rationale:");
    out += &t.list(&p.rationale);
    out += &t.subheader("Remediation:");
    out += &t.list(&p.remediation);
    if !p.mitre_attack_vectors.is_empty() {
        out += &t.subheader("MITRE ATT&CK:");
        for v in &p.mitre_attack_vectors {
            let name = mitre().get(v.tactic.as_str()).copied().unwrap_or("");
            out += &t.list(&stringify(&["Tactic:", name, "(", &v.tactic, ")"]));
            if !v.techniques.is_empty() {
                out += &t.nested_list("Techniques:");
                for tech in &v.techniques {
                    let name = mitre().get(tech.as_str()).copied().unwrap_or("");
                    out.push('\t');
                    out += &t.nested_list(&stringify(&[name, "(", tech, ")"]));
                }
            }
        }
    }
    out += &t.subheader("Policy Criteria:");
    for s in &p.policy_sections {
        let name = if s.section_name.is_empty() {
            "Unnamed"
        } else {
            &s.section_name
        };
        out += &t.section(&stringify(&["Section", name, ":"]));
        for g in &s.policy_groups {
            out += &t.group(&g.field_name);
            out += ": ";
            let values: Vec<String> = g.values.iter().map(|v| v.value.clone()).collect();
            out += &t.values(&values, g.boolean_operator == "AND", g.negate);
        }
    }
    if let Some(d) = &a.deployment {
        out += &t.line("");
        out += &t.header("Deployment:");
        out += &t.list(&stringify(&["ID:", &d.id]));
        out += &t.list(&stringify(&["Name:", &d.name]));
        out += &t.list(&stringify(&["Cluster:", &d.cluster_name]));
        out += &t.list(&stringify(&["ClusterId:", &d.cluster_id]));
        if !d.namespace.is_empty() {
            out += &t.list(&stringify(&["Namespace:", &d.namespace]));
        }
        let images: Vec<String> = d
            .containers
            .iter()
            .filter_map(|c| c.image.as_ref())
            .map(image_full_name)
            .collect();
        out += &t.list(&stringify(&["Images:", &images.join(", ")]));
    } else if let Some(r) = &a.resource {
        out += &t.line("");
        out += &t.header("Resource:");
        out += &t.list(&stringify(&["Name:", &r.name]));
        let kind = if r.resource_type.is_empty() {
            "UNKNOWN"
        } else {
            &r.resource_type
        };
        out += &t.list(&stringify(&["Type:", kind]));
        out += &t.list(&stringify(&["Cluster:", &r.cluster_name]));
        out += &t.list(&stringify(&["ClusterId:", &r.cluster_id]));
        if !r.namespace.is_empty() {
            out += &t.list(&stringify(&["Namespace:", &r.namespace]));
        }
    } else if let Some(n) = &a.node {
        out += &t.line("");
        out += &t.header("Node:");
        out += &t.list(&stringify(&["Name:", &n.name]));
        out += &t.list(&stringify(&["Id:", &n.id]));
        out += &t.list(&stringify(&["Cluster:", &n.cluster_name]));
        out += &t.list(&stringify(&["ClusterId:", &n.cluster_id]));
    } else if let Some(img) = &a.image {
        out += &t.line("");
        out += &t.header("Image:");
        out += &t.list(&stringify(&["Name:", &image_full_name(img)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{decode, Event};

    fn fields(json: &str) -> Box<AlertFields> {
        match decode(json.as_bytes(), &crate::model::Limits::default()).unwrap() {
            Event::Alert(a) => a.fields,
            Event::Audit(_) => unreachable!(),
        }
    }

    fn fixture() -> Box<AlertFields> {
        fields(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/alert-deployment-runtime.json"
            ))
            .unwrap(),
        )
    }

    #[test]
    fn email_text_of_the_runtime_deployment_alert() {
        let expected = concat!(
            "Alert ID: 8f2a6c1e-3b7d-4e59-9a41-0c5d2e7f1b93\r\n",
            "Alert URL: https://central.example.com/main/violations/8f2a6c1e-3b7d-4e59-9a41-0c5d2e7f1b93\r\n",
            "Time (UTC): 2024-05-01 12:03:17\r\n",
            "Severity: High\r\n",
            "\r\nViolations:\r\n",
            "\t - Binary '/bin/bash' executed with arguments '-c id' under user ID 1001\r\n",
            "\r\nPolicy Definition:\r\n",
            "\r\n\tDescription:\r\n",
            "\t - Detects execution of a shell by a Java process\r\n",
            "\r\n\tRationale:\r\n",
            "\t - Java applications rarely need to spawn shells\r\n",
            "\r\n\tRemediation:\r\n",
            "\t - Investigate the pod and rotate credentials if compromised\r\n",
            "\r\n\tMITRE ATT&CK:\r\n",
            "\t - Tactic: Execution ( TA0002 )\r\n",
            "\t\t - Techniques:\r\n",
            "\t\t\t - Command and Scripting Interpreter: Unix Shell ( T1059.004 )\r\n",
            "\r\n\tPolicy Criteria:\r\n",
            "\r\n\t\tSection Section 1 :\r\n",
            "\r\n\t\t\t - Process Name: bash OR sh",
            "\r\n\t\t\t - Process Ancestor: java",
            "\r\n",
            "\r\nDeployment:\r\n",
            "\t - ID: e2b8f0a4-1c5d-4b7e-9f3a-6d2c1b0a9e33\r\n",
            "\t - Name: checkout-api\r\n",
            "\t - Cluster: prod-east\r\n",
            "\t - ClusterId: 5b3b8c5e-2f61-4e0a-8f7e-7a6c0b7d9e11\r\n",
            "\t - Namespace: payments\r\n",
            "\t - Images: quay.io/acme/checkout-api:2.4.1\r\n",
        );
        // The UI endpoint's own path is replaced, as Central resolves the link.
        assert_eq!(
            format_alert(
                &fixture(),
                "https://central.example.com/some/path",
                Table::Email
            ),
            expected
        );
        assert_eq!(
            summary(&fixture()),
            "Deployment checkout-api (in cluster prod-east) violates 'Shell Spawned by Java Application' Policy"
        );
    }

    const RESOURCE: &str = r#"{"id":"r1","policy":{"name":"Exec","severity":"CRITICAL_SEVERITY","policySections":[{"policyGroups":[{"fieldName":"Kubernetes Resource","booleanOperator":"AND","negate":true,"values":[{"value":"pods"},{"value":"exec"}]}]}]},"resource":{"resourceType":"SECRETS","name":"s1","clusterId":"c1","clusterName":"prod","namespace":"ns"},"violations":[{"message":"Access to secret","keyValueAttrs":{"attrs":[{"key":"username","value":"bob"}]}},{"message":"flow","networkFlowInfo":{"protocol":"L4_PROTOCOL_TCP"}}],"time":"2024-05-01T12:05:00.5Z"}"#;

    #[test]
    fn jira_text_of_a_resource_alert_with_attrs_and_a_network_violation() {
        let expected = concat!(
            "Alert ID: r1\r\n",
            "Alert URL: https://c.example.com/main/violations/r1\r\n",
            "Time (UTC): 2024-05-01 12:05:00\r\n",
            "Severity: Critical\r\n",
            "\r\n h4. Violations:\r\n",
            "* Access to secret\r\n",
            "** username : bob\r\n",
            "* flow\r\n",
            "\r\n h4. Policy Definition:\r\n",
            "\r\n h5. Description:\r\n",
            "* \r\n",
            "\r\n h5. Rationale:\r\n",
            "* \r\n",
            "\r\n h5. Remediation:\r\n",
            "* \r\n",
            "\r\n h5. Policy Criteria:\r\n",
            "\r\n * Section Unnamed :",
            "\r\n ** Kubernetes Resource: NOT (pods AND exec)",
            "\r\n",
            "\r\n h4. Resource:\r\n",
            "* Name: s1\r\n",
            "* Type: SECRETS\r\n",
            "* Cluster: prod\r\n",
            "* ClusterId: c1\r\n",
            "* Namespace: ns\r\n",
        );
        let a = fields(RESOURCE);
        assert_eq!(
            format_alert(&a, "https://c.example.com", Table::Jira),
            expected
        );
        assert_eq!(summary(&a), "Policy 'Exec' violated in cluster prod");
    }

    #[test]
    fn slack_text_uses_backticks_and_mrkdwn() {
        let a = fields(RESOURCE);
        let text = format_alert(&a, "", Table::Slack);
        assert!(
            text.starts_with("Alert ID: r1\r\nAlert URL: /main/violations/r1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\n*Violations:*\r\n            - Access to secret\r\n                - username : bob\r\n"), "{text:?}");
        assert!(text.contains("\r\n                *Section Unnamed :*\r\n\r\n                        *Kubernetes Resource*: NOT (`pods` AND `exec`)\r\n"), "{text:?}");
    }

    #[test]
    fn image_and_node_alerts() {
        let img = fields(
            r#"{"id":"i1","policy":{"name":"CVE"},"image":{"id":"sha256:abc","name":{"registry":"docker.io","remote":"library/nginx","tag":"1.25"},"idV2":"u-1"}}"#,
        );
        assert_eq!(
            summary(&img),
            "Image docker.io/library/nginx:1.25@sha256:abc violates 'CVE' Policy"
        );
        assert_eq!(
            alert_link("https://c.example.com", &img),
            "https://c.example.com/main/vulnerability-management/image/u-1"
        );
        let text = format_alert(&img, "https://c.example.com", Table::Email);
        // No time on the alert: Central prints a placeholder.
        assert!(text.contains("Time (UTC): <malformed time>\r\n"), "{text}");
        assert!(
            text.ends_with(
                "\r\n\r\nImage:\r\n\t - Name: docker.io/library/nginx:1.25@sha256:abc\r\n"
            ),
            "{text:?}"
        );
        let node = fields(
            r#"{"id":"n1","policy":{"name":"Node"},"node":{"id":"nid","name":"worker-1","clusterId":"c","clusterName":"prod"}}"#,
        );
        assert_eq!(
            summary(&node),
            "Node worker-1 (in cluster prod) violates 'Node' Policy"
        );
        assert!(format_alert(&node, "", Table::Email).ends_with("\r\nNode:\r\n\t - Name: worker-1\r\n\t - Id: nid\r\n\t - Cluster: prod\r\n\t - ClusterId: c\r\n"));
        let none = fields(r#"{"id":"x","policy":{"name":"P"}}"#);
        assert_eq!(summary(&none), "Policy 'P' violated");
        assert_eq!(alert_link("not a url", &none), "");
        let untagged = ContainerImage {
            id: "sha256:1".into(),
            name: Some(crate::model::ImageName {
                registry: "r".into(),
                remote: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(image_full_name(&untagged), "r/x@sha256:1");
    }
}
