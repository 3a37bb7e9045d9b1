//! `herald explain`: the routing decision per destination, the annotation
//! step that chose each target, and no secret in the output.

use crate::kit;

const CONFIG: &str = r#"
namespace_metadata = "NSFILE"
state_dir = "STATEDIR"
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
    std::fs::write(
        &config,
        CONFIG
            .replace("NSFILE", ns.to_str().unwrap())
            .replace("STATEDIR", dir.path().join("state").to_str().unwrap()),
    )
    .unwrap();
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
         \nslack (slack): sent (policy.notifiers lists its id \"n-slack\"; every filter passed)\n  target: https://hooks.slack.com (annotation key \"slack\", decided by the deployment annotation)\n  ledger: would deliver (no record of \"a1\")\n\
         \nmail (email): sent (policy.notifiers lists its id \"n-mail\"; every filter passed)\n  target: web@example.com (annotation key \"email\", decided by the deployment label)\n  ledger: would deliver (no record of \"a1\")\n\
         \npd (pagerduty): sent (all_alerts = true; every filter passed)\n  ledger: would deliver (no record of \"a1\")\n\
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

/// The ledger part: read through the running daemon (which holds the lock),
/// then from the file once herald has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_whether_the_ledger_would_skip_it_live_and_stopped() {
    use std::time::Duration;
    let s = kit::Stack::new("explain", 1).await;
    let rx = kit::Receiver::start().await;
    let cfg = s.config(
        "",
        &format!(
            "[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{}\"\n[[destinations]]\nname = \"later\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{}\"\nsend_resolved = true\n",
            rx.url("/w"),
            rx.url("/later")
        ),
    );
    let mut herald = kit::Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let alert = kit::alert("ex-1", "");
    kit::produce_to(&kit::producer(), &s.topic, 0, alert.as_bytes()).await;
    rx.wait_delivered(2, Duration::from_secs(20)).await;
    let config = herald.config.clone();
    let input = herald.dir.path().join("alert.json");
    let resolved = herald.dir.path().join("resolved.json");
    std::fs::write(&input, &alert).unwrap();
    std::fs::write(&resolved, kit::alert("ex-1", ",\"state\":\"RESOLVED\"")).unwrap();
    let run = |file: &std::path::Path| {
        let out = kit::cli(&["explain", "--input", file.to_str().unwrap()], &config);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ledger_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("  ledger: "))
            .map(|l| {
                // The recorded time varies; keep what precedes it.
                l.split(" at 20").next().unwrap().to_string()
            })
            .collect()
    };
    let live = run(&input);
    assert_eq!(
        ledger_lines(&live),
        vec!["  ledger: would skip: already notified (\"ex-1\" recorded ACTIVE"; 2],
        "{live}"
    );
    // The resolution: a plain webhook cannot resolve; the other would send it.
    let live_resolved = run(&resolved);
    assert!(
        live_resolved.contains("\nw (webhook): not sent: "),
        "{live_resolved}"
    );
    assert_eq!(
        ledger_lines(&live_resolved),
        vec!["  ledger: would deliver (\"ex-1\" recorded ACTIVE"],
        "{live_resolved}"
    );
    herald.signal(libc::SIGTERM);
    assert!(herald.wait_exit(Duration::from_secs(20)).is_some());
    let stopped = run(&input);
    assert_eq!(ledger_lines(&stopped), ledger_lines(&live), "{stopped}");
}
