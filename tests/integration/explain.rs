//! `herald explain`: the routing decision per destination, the annotation
//! step that chose each target, and no secret in the output.

use crate::kit;

const CONFIG: &str = r#"
namespace_metadata = "NSFILE"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
dead_letter_topic = "t-dlq"

[[destinations]]
name = "slack"
id = "n-slack"
type = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/DEFAULTSECRET"
annotation_key = "slack"

[[destinations]]
name = "mail"
id = "n-mail"
type = "email"
server = "smtp.example.com:465"
username = "u"
password = "SMTPPASSWORD"
sender = "rhacs@example.com"
default_target = "secops@example.com"
annotation_key = "email"

[[destinations]]
name = "pd"
type = "pagerduty"
all_alerts = true
min_severity = "HIGH"
routing_key = "R0UTINGKEY0000000000000000000000"

[[destinations]]
name = "siem"
id = "n-siem"
type = "webhook"
url = "https://siem.example.com/in"
"#;

fn explain(alert: &str, render: bool) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("ns.toml");
    std::fs::write(
        &ns,
        "[[namespaces]]\ncluster = \"c1\"\nname = \"pay\"\nannotations = { slack = \"https://hooks.slack.com/services/T2/B2/NSSECRET\", email = \"pay@example.com\" }\n",
    )
    .unwrap();
    let config = dir.path().join("h.toml");
    std::fs::write(&config, CONFIG.replace("NSFILE", ns.to_str().unwrap())).unwrap();
    let input = dir.path().join("a.json");
    std::fs::write(&input, alert).unwrap();
    let mut args = vec!["explain", "--input", input.to_str().unwrap()];
    if render {
        args.push("--render");
    }
    let out = kit::cli(&args, &config);
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    for secret in [
        "DEFAULTSECRET",
        "NSSECRET",
        "TEAMSECRET",
        "SMTPPASSWORD",
        "R0UTINGKEY",
        "/services/",
    ] {
        assert!(!text.contains(secret), "{secret} in:\n{text}");
    }
    (out.status.success(), text)
}

fn alert(deployment: &str, severity: &str) -> String {
    format!(
        r#"{{"id":"a1","policy":{{"name":"P","severity":"{severity}","notifiers":["n-slack","n-mail"]}},"deployment":{deployment},"time":"2024-05-01T12:00:00Z"}}"#
    )
}

#[test]
fn names_each_decision_and_annotation_step_without_secrets() {
    // Deployment annotation for Slack, deployment label for email; PagerDuty by
    // all_alerts; the SIEM webhook not listed.
    let (ok, text) = explain(
        &alert(
            r#"{"name":"web","namespace":"pay","clusterId":"c1","clusterName":"prod","annotations":{"slack":"https://hooks.slack.com/services/T1/B1/TEAMSECRET"},"labels":{"email":"web@example.com"}}"#,
            "HIGH_SEVERITY",
        ),
        false,
    );
    assert!(ok, "{text}");
    assert_eq!(
        text,
        "alert a1 (Active, policy \"P\", notifiers [\"n-slack\", \"n-mail\"])\n\
         \nslack (slack): sent (policy.notifiers lists its id \"n-slack\"; every filter passed)\n  target: https://hooks.slack.com (annotation key \"slack\", decided by the deployment annotation)\n\
         \nmail (email): sent (policy.notifiers lists its id \"n-mail\"; every filter passed)\n  target: web@example.com (annotation key \"email\", decided by the deployment label)\n\
         \npd (pagerduty): sent (all_alerts = true; every filter passed)\n\
         \nsiem (webhook): not sent: policy.notifiers does not list this destination's id \"n-siem\" and all_alerts is false\n"
    );
    // Namespace annotation for both, and a failing severity filter for PagerDuty.
    let (_, text) = explain(
        &alert(
            r#"{"name":"web","namespace":"pay","clusterId":"c1","clusterName":"prod"}"#,
            "LOW_SEVERITY",
        ),
        false,
    );
    assert!(text.contains("  target: https://hooks.slack.com (annotation key \"slack\", decided by the namespace annotation)\n"), "{text}");
    assert!(text.contains("  target: pay@example.com (annotation key \"email\", decided by the namespace annotation)\n"), "{text}");
    assert!(text.contains("\npd (pagerduty): not sent: "), "{text}");
    // Nothing matches: the defaults.
    let (_, text) = explain(
        &alert(
            r#"{"name":"web","namespace":"other","clusterId":"c1","clusterName":"prod"}"#,
            "HIGH_SEVERITY",
        ),
        true,
    );
    assert!(text.contains("  target: https://hooks.slack.com (annotation key \"slack\", decided by the default)\n"), "{text}");
    assert!(
        text.contains(
            "  target: secops@example.com (annotation key \"email\", decided by the default)\n"
        ),
        "{text}"
    );
    // --render prints each payload, PagerDuty's routing key masked.
    assert!(
        text.contains(r#"{"routing_key":"<redacted>","event_action":"trigger","dedup_key":"a1""#),
        "{text}"
    );
    assert!(text.contains(r#""alert_id":"a1""#), "{text}");
}

#[test]
fn a_bad_message_is_explained_as_a_dead_letter() {
    let (ok, text) = explain("{not json", false);
    assert!(!ok);
    assert!(
        text.starts_with("herald explain: invalid message (it would be dead-lettered): "),
        "{text}"
    );
}
