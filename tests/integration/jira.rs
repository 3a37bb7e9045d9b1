//! Jira against a recording Jira in the Server/DC and Cloud response shapes:
//! the created issue's fields exactly, the project by annotation, namespace
//! and default, priorities per severity, default fields merged, `auto`
//! priority mapping for three schemes, the Bearer fallback, and no second
//! issue when the same alert comes again after the ledger is wiped.

use std::time::Duration;

use serde_json::json;

use crate::kit::jira::{Jira, Options, Shape};
use crate::kit::{self, Herald};

pub(crate) fn jira_dest(name: &str, j: &Jira, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nid = \"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"\ntype = \"jira\"\nurl = \"{}\"\nusername = \"bot\"\npassword = \"jira-token-1\"\nissue_type = \"task\"\ndefault_target = \"SEC\"\nannotation_key = \"jira-project\"\nui_endpoint = \"https://central.example.com\"\nidempotency_label_prefix = \"herald-\"\n{extra}\n",
        j.url()
    )
}

pub(crate) fn alert(id: &str, severity: &str, namespace: &str, annotations: &str) -> String {
    format!(
        r#"{{"id":"{id}","policy":{{"name":"P {id}","severity":"{severity}","notifiers":["3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f"]}},"clusterId":"c1","clusterName":"prod","namespace":"{namespace}","deployment":{{"name":"d-{id}","namespace":"{namespace}","clusterId":"c1","clusterName":"prod"{annotations}}},"time":"2024-05-01T12:00:00Z"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_have_exact_fields_in_both_response_shapes() {
    for shape in [Shape::ServerDc, Shape::Cloud] {
        let j = Jira::start(shape, &["Highest", "High", "Medium", "Low", "Lowest"], true).await;
        let s = kit::Stack::new("jira", 1).await;
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("ns.toml");
        std::fs::write(&ns, "[[namespaces]]\ncluster = \"c1\"\nname = \"web\"\nannotations = { jira-project = \"WEB\" }\n").unwrap();
        let dest = jira_dest(
            "jira",
            &j,
            "priority_mapping = { CRITICAL = \"Highest\", HIGH = \"High\", MEDIUM = \"Medium\", LOW = \"Lowest\" }\ndefault_fields = '{\"customfield_10004\": 3, \"customfield_20005\": \"Alerts\", \"issuetype\": {\"name\": \"Bug\"}}'",
        );
        let cfg = format!(
            "namespace_metadata = \"{}\"\n{}",
            ns.display(),
            s.config("", &dest)
        );
        let mut herald = Herald::start(&cfg);
        herald.wait_ready(Duration::from_secs(30)).await;
        let p = kit::producer();
        let alerts = [
            alert(
                "a-ann",
                "HIGH_SEVERITY",
                "payments",
                r#","annotations":{"jira-project":"PAY"}"#,
            ),
            alert("a-ns", "LOW_SEVERITY", "web", ""),
            alert("a-def", "CRITICAL_SEVERITY", "other", ""),
        ];
        for a in &alerts {
            kit::produce_to(&p, &s.topic, 0, a.as_bytes()).await;
        }
        assert!(
            kit::eventually(Duration::from_secs(30), || async { j.issues().len() == 3 }).await,
            "{:?}",
            herald.log()
        );
        let issues = j.issues();
        let by_label = |id: &str| {
            issues
                .iter()
                .find(|i| i["fields"]["labels"] == json!([format!("herald-{id}")]))
                .unwrap()
                .clone()
        };
        for (id, project, priority) in [
            ("a-ann", "PAY", "High"),
            ("a-ns", "WEB", "Lowest"),
            ("a-def", "SEC", "Highest"),
        ] {
            let issue = by_label(id);
            let f = &issue["fields"];
            assert_eq!(f["project"], json!({"key": project}), "{id}");
            assert_eq!(f["priority"], json!({"name": priority}), "{id}");
            // default fields are merged and override built-in keys (issuetype here)
            assert_eq!(f["issuetype"], json!({"name": "Bug"}));
            assert_eq!(f["customfield_10004"], 3);
            assert_eq!(f["customfield_20005"], "Alerts");
            assert_eq!(
                f["summary"],
                format!("Deployment d-{id} (in cluster prod) violates 'P {id}' Policy")
            );
            assert!(f["description"].as_str().unwrap().starts_with(&format!(
                "Alert ID: {id}\r\nAlert URL: https://central.example.com/main/violations/{id}\r\n"
            )));
            // The body is exactly what `render` prints: Go-JSON, sorted keys, a trailing newline.
            let dir = tempfile::tempdir().unwrap();
            let input = dir.path().join("a.json");
            std::fs::write(
                &input,
                alerts
                    .iter()
                    .find(|a| a.contains(&format!("\"{id}\"")))
                    .unwrap(),
            )
            .unwrap();
            let out = kit::cli(
                &[
                    "render",
                    "--destination",
                    "jira",
                    "--input",
                    input.to_str().unwrap(),
                ],
                &herald.config,
            );
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                issue["raw"].as_str().unwrap(),
                "{id}"
            );
        }
        let raw = by_label("a-def")["raw"].as_str().unwrap().to_string();
        assert!(raw.starts_with("{\"fields\":{\"customfield_10004\":3,\"customfield_20005\":\"Alerts\",\"description\":") && raw.ends_with("}}\n"), "{raw}");
        // Paging: both createmeta lists were read past their first page.
        let calls = j.calls();
        assert!(
            calls
                .iter()
                .any(|(_, p, _)| p.contains("/issuetypes?startAt=1")),
            "{calls:?}"
        );
        assert!(
            calls
                .iter()
                .any(|(_, p, _)| p.contains("/issuetypes/10001?startAt=1")),
            "{calls:?}"
        );
        assert!(!herald.log().contains("jira-token-1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_priority_mapping_for_three_schemes() {
    let schemes: [(&[&str], &str); 3] = [
        (
            &["Lowest", "Low", "Medium", "High", "Highest"],
            "CRITICAL=Highest, HIGH=High, MEDIUM=Medium, LOW=Low",
        ),
        (
            &["Blocker", "Critical", "Major", "Minor", "Trivial"],
            "CRITICAL=Blocker, HIGH=Critical, MEDIUM=Major, LOW=Minor",
        ),
        (
            &["P1 - Urgent", "P2 - Soon", "P3 - Later", "P4 - Someday"],
            "CRITICAL=P1 - Urgent, HIGH=P2 - Soon, MEDIUM=P3 - Later, LOW=P4 - Someday",
        ),
    ];
    for (scheme, expected) in schemes {
        let j = Jira::start(Shape::Cloud, scheme, true).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("h.toml");
        let cfg = kit::config(
            "t",
            "t-dlq",
            "g",
            "",
            &jira_dest("jira", &j, "priority_mapping = \"auto\""),
        )
        .replace("{http}", "127.0.0.1:0")
        .replace("{admin}", "127.0.0.1:0");
        std::fs::write(&cfg_path, cfg).unwrap();
        let out = kit::cli(&["check-config", "--online"], &cfg_path);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "jira: ok: project SEC: CREATE_ISSUES granted; priority mapping {expected}"
            )),
            "{stdout}"
        );
    }
    // A mapping naming a priority the scheme lacks fails with what to fix.
    let j = Jira::start(Shape::ServerDc, &["Blocker", "Major"], true).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("h.toml");
    std::fs::write(
        &cfg_path,
        kit::config("t", "t-dlq", "g", "", &jira_dest("jira", &j, ""))
            .replace("{http}", "127.0.0.1:0")
            .replace("{admin}", "127.0.0.1:0"),
    )
    .unwrap();
    let out = kit::cli(&["check-config", "--online"], &cfg_path);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success());
    assert!(
        stdout.contains("Priority mappings that do not exist in Jira"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_fallback_and_no_second_issue_after_the_ledger_is_wiped() {
    let j = Jira::start(
        Shape::ServerDc,
        &["Highest", "High", "Medium", "Low"],
        false,
    )
    .await;
    let s = kit::Stack::new("jirab", 1).await;
    let mut herald = Herald::start(&s.config("", &jira_dest("jira", &j, "")));
    herald.wait_ready(Duration::from_secs(30)).await;
    let value = alert("again", "MEDIUM_SEVERITY", "payments", "");
    kit::produce_to(&kit::producer(), &s.topic, 0, value.as_bytes()).await;
    assert!(kit::eventually(Duration::from_secs(30), || async { j.issues().len() == 1 }).await);
    // Basic was refused once on /configuration; every later call used Bearer.
    let calls = j.calls();
    assert!(calls[0].2.starts_with("Basic ") && calls[0].1 == "/rest/api/2/configuration");
    assert!(
        calls[1..]
            .iter()
            .all(|(_, _, a)| a == "Bearer jira-token-1"),
        "{calls:?}"
    );
    // Wipe the ledger and consume the alert again (a new group from the start).
    herald.kill9();
    std::fs::remove_dir_all(herald.dir.path().join("state")).unwrap();
    let cfg = std::fs::read_to_string(&herald.config)
        .unwrap()
        .replace(&s.group, &kit::unique("jirab-2"));
    std::fs::write(&herald.config, cfg).unwrap();
    herald.spawn();
    herald.wait_ready(Duration::from_secs(30)).await;
    let delivered = r#"herald_deliveries_total{destination="jira",outcome="delivered"}"#;
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald.metric(delivered).await == 1.0
        })
        .await
    );
    assert_eq!(j.issues().len(), 1, "no second issue");
    let searches = j
        .calls()
        .iter()
        .filter(|(_, p, _)| {
            p.starts_with("/rest/api/2/search?jql=labels%20%3D%20%22herald-again%22")
        })
        .count();
    assert_eq!(searches, 2, "searched by label before each create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_on_a_runtime_update_and_transition_on_resolve() {
    let j = Jira::start(Shape::Cloud, &["Highest", "High", "Medium", "Low"], true).await;
    let s = kit::Stack::new("jirat", 1).await;
    let dest = jira_dest(
        "jira",
        &j,
        "comment_on_update = true\nrenotify_runtime_updates = true\nresolve_transition = \"done\"",
    );
    let mut herald = Herald::start(&s.config("", &dest));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let base = alert("rt", "HIGH_SEVERITY", "payments", "").replace(
        r#""namespace":"payments","deployment""#,
        r#""lifecycleStage":"RUNTIME","namespace":"payments","deployment""#,
    );
    let update = base.replace("2024-05-01T12:00:00Z", "2024-05-01T12:30:00Z");
    let resolved = update.replace(r#""id":"rt","#, r#""id":"rt","state":"RESOLVED","#);
    for v in [&base, &update, &resolved] {
        kit::produce_to(&p, &s.topic, 0, v.as_bytes()).await;
    }
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            !j.transitions().is_empty()
        })
        .await,
        "{}",
        herald.log()
    );
    assert_eq!(j.issues().len(), 1);
    let key = j.issues()[0]["key"].as_str().unwrap().to_string();
    let comments = j.comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].0, key);
    assert_eq!(
        comments[0].1,
        "Updated: 2024-05-01 12:30:00\r\nDeployment d-rt (in cluster prod) violates 'P rt' Policy"
    );
    assert_eq!(j.transitions(), vec![(key, "31".to_string())]);
}

/// Lines of a Prism log, after its first `from` bytes, that report a
/// request-side violation (earlier lines are other clients': readiness probes).
fn request_violations(log: &str, from: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("Violation") && l.contains("request"))
        .map(str::to_string)
        .collect()
}

/// Every call herald makes against Prism serving the Jira v2 contract
/// (tests/contracts/jira-v2.json): no request-side violations, and the
/// create, comment and transition calls answered with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_keeps_to_the_jira_v2_contract() {
    let prism = crate::kit::service::Service::shared_of("prism.sh");
    let s = kit::Stack::new("jirac", 1).await;
    let log_len = |k: &str| {
        std::fs::metadata(prism.get(k))
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    };
    let from = [log_len("jira_log"), log_len("jira_found_log")];
    let dest = |name: &str, url: &str, extra: &str| {
        format!(
            "[[destinations]]\nname = \"{name}\"\nid = \"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"\ntype = \"jira\"\nurl = \"{url}\"\nusername = \"bot\"\npassword = \"secret\"\nissue_type = \"Task\"\ndefault_target = \"OPS\"\n{extra}\n"
        )
    };
    let destinations = format!(
        "{}{}",
        dest(
            "create",
            prism.get("jira_url"),
            "idempotency_label_prefix = \"herald-\""
        ),
        dest(
            "existing",
            prism.get("jira_found_url"),
            "comment_on_update = true\nrenotify_runtime_updates = true\nresolve_transition = \"Done\"\nidempotency_label_prefix = \"herald-\""
        ),
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let first = alert("c1", "HIGH_SEVERITY", "payments", "").replace(
        r#""namespace":"payments","deployment""#,
        r#""lifecycleStage":"RUNTIME","namespace":"payments","deployment""#,
    );
    let update = first.replace("12:00:00Z", "12:30:00Z");
    let resolved = update.replace(r#""id":"c1","#, r#""id":"c1","state":"RESOLVED","#);
    for v in [&first, &update, &resolved] {
        kit::produce_to(&p, &s.topic, 0, v.as_bytes()).await;
    }
    let m =
        |d: &str| format!(r#"herald_deliveries_total{{destination="{d}",outcome="delivered"}}"#);
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald.metric(&m("create")).await == 1.0 && herald.metric(&m("existing")).await == 3.0
        })
        .await,
        "{}",
        herald.log()
    );
    for (log, from) in [prism.get("jira_log"), prism.get("jira_found_log")]
        .into_iter()
        .zip(from)
    {
        let v = request_violations(log, from);
        assert!(v.is_empty(), "request-side violations in {log}: {v:#?}");
    }
    let found = std::fs::read_to_string(prism.get("jira_found_log")).unwrap();
    for call in [
        "/rest/api/2/issue/OPS-1/comment",
        "/rest/api/2/issue/OPS-1/transitions",
    ] {
        assert!(found.contains(call), "{call} not called");
    }
}

/// Runs `herald check-config --online` on a config with one Jira destination.
fn check_online(j: &Jira, extra: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("h.toml");
    let dest = format!(
        "{}{extra}\n",
        jira_dest("jira", j, "").replace("idempotency_label_prefix = \"herald-\"\n", "")
    );
    std::fs::write(
        &cfg_path,
        kit::config("t", "t-dlq", "g", "", &dest)
            .replace("{http}", "127.0.0.1:0")
            .replace("{admin}", "127.0.0.1:0"),
    )
    .unwrap();
    let out = kit::cli(&["check-config", "--online"], &cfg_path);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const SCHEME: &[&str] = &["Highest", "High", "Medium", "Low"];

/// A Jira whose create screen has no `labels` field refuses any issue that
/// sets it. The idempotency label is therefore off unless asked for (Central
/// adds none), and when it is on the start-up checks say the field is
/// missing, instead of every alert being dead-lettered while the checks pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_labels_on_the_screen_issues_are_created_and_the_label_option_is_checked() {
    let no_labels = Options {
        labels_on_screen: false,
        ..Options::default()
    };
    let j = Jira::start_with(Shape::ServerDc, SCHEME, true, no_labels).await;
    let (ok, out) = check_online(&j, "");
    assert!(ok, "{out}");
    assert!(
        out.contains("jira: ok: project SEC: CREATE_ISSUES granted; priority mapping CRITICAL=Highest, HIGH=High, MEDIUM=Medium, LOW=Low\n"),
        "{out}"
    );
    let (ok, out) = check_online(&j, "idempotency_label_prefix = \"herald-\"");
    assert!(!ok);
    assert!(
        out.contains("jira: failed: the labels field is not on the create screen of issue type \"task\" in project SEC: add it, or turn idempotency_label_prefix off (client_error)"),
        "{out}"
    );
    // Delivered with the defaults: the issue has no labels, Jira accepts it.
    let s = kit::Stack::new("jiral", 1).await;
    let dest = jira_dest("jira", &j, "").replace("idempotency_label_prefix = \"herald-\"\n", "");
    let mut herald = Herald::start(&s.config("", &dest));
    herald.wait_ready(Duration::from_secs(30)).await;
    let value = alert("nolabel", "LOW_SEVERITY", "payments", "");
    kit::produce_to(&kit::producer(), &s.topic, 0, value.as_bytes()).await;
    assert!(
        kit::eventually(Duration::from_secs(30), || async { j.issues().len() == 1 }).await,
        "{}",
        herald.log()
    );
    let issue = &j.issues()[0];
    assert!(issue["fields"].get("labels").is_none(), "{issue}");
    assert_eq!(issue["fields"]["priority"], json!({"name": "Low"}));
    assert!(
        !j.calls().iter().any(|(_, p, _)| p.contains("/search")),
        "no label search without the label"
    );
}

/// A server that ignores `startAt` answers the first page forever: herald
/// stops at the repeated page (before: 463 requests in 20 s, without end).
/// A priority field without `allowedValues` is checked against
/// `GET /rest/api/2/priority`, as Central does; a Jira without `serverInfo`
/// is taken as Server/DC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impolite_jiras_ignored_start_at_no_allowed_values_no_server_info() {
    let rude = Options {
        ignore_start_at: true,
        ..Options::default()
    };
    let j = Jira::start_with(Shape::ServerDc, SCHEME, true, rude).await;
    let (ok, out) = check_online(&j, "");
    assert!(!ok);
    assert!(
        out.contains("jira: failed: issue type \"task\" not found in project SEC (client_error)"),
        "{out}"
    );
    let pages = j
        .calls()
        .iter()
        .filter(|(_, p, _)| p.contains("/issuetypes?startAt="))
        .count();
    assert_eq!(pages, 2, "the first page, then its repeat");

    let open = Options {
        priority_allowed_values: false,
        server_info: false,
        ..Options::default()
    };
    let j = Jira::start_with(Shape::ServerDc, SCHEME, true, open).await;
    let (ok, out) = check_online(&j, "priority_mapping = \"auto\"");
    assert!(ok, "{out}");
    assert!(
        out.contains("jira: ok: project SEC: CREATE_ISSUES granted; priority mapping CRITICAL=Highest, HIGH=High, MEDIUM=Medium, LOW=Low\n"),
        "{out}"
    );
    assert!(j
        .calls()
        .iter()
        .any(|(_, p, _)| p == "/rest/api/2/priority"));
    let (ok, out) = check_online(
        &j,
        "priority_mapping = { CRITICAL = \"Blocker\", HIGH = \"High\", MEDIUM = \"Medium\", LOW = \"Low\" }",
    );
    assert!(!ok);
    assert!(
        out.contains("Priority mappings that do not exist in Jira: [\"Blocker\"]"),
        "{out}"
    );
}

/// With `priority_mapping = "auto"`, an alert consumed while Jira is still
/// unreachable waits for the start-up checks: the issue is created with its
/// mapped priority once Jira answers, never with `"priority": {}` (which a
/// real Jira refuses; before, herald rendered it and Jira created it so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_before_the_start_up_checks_waits_for_the_priority_mapping() {
    let j = Jira::start(Shape::Cloud, SCHEME, true).await;
    j.set_down(true);
    let s = kit::Stack::new("jiraw", 1).await;
    let dest = jira_dest(
        "jira",
        &j,
        "priority_mapping = \"auto\"\nretry_max_attempts = 2\nretry_min_delay = \"50ms\"\npark_retry_min = \"200ms\"\npark_retry_max = \"200ms\"",
    );
    let mut herald = Herald::start(&s.config("", &dest));
    herald.wait_ready(Duration::from_secs(30)).await;
    let value = alert("early", "CRITICAL_SEVERITY", "payments", "");
    kit::produce_to(&kit::producer(), &s.topic, 0, value.as_bytes()).await;
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            herald
                .metric(r#"herald_deliveries_total{destination="jira",outcome="parked"}"#)
                .await
                == 1.0
        })
        .await,
        "{}",
        herald.log()
    );
    j.set_down(false);
    assert!(
        kit::eventually(Duration::from_secs(30), || async { j.issues().len() == 1 }).await,
        "{}",
        herald.log()
    );
    assert_eq!(
        j.issues()[0]["fields"]["priority"],
        json!({"name": "Highest"})
    );
    assert_eq!(
        herald
            .metric(r#"herald_deliveries_total{destination="jira",outcome="dead_lettered"}"#)
            .await,
        0.0
    );
}
