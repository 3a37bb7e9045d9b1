//! `[central]`: namespace and cluster metadata from Central's API — against a
//! strict recording stand-in (token, paging, refusals) and against Prism
//! serving Central's own API documents. Syslog `nslabels` and the namespace
//! step of annotation routing take Central's values; a refused token or a
//! Central that is down keeps the last saved metadata in use.

use std::time::Duration;

use serde_json::{json, Value};

use crate::jira::{alert, jira_dest};
use crate::kit::central::{namespace, Central};
use crate::kit::jira::{Jira, Shape};
use crate::kit::service::Rsyslog;
use crate::kit::{self, Herald};
use crate::syslog::{expected_alert, syslog_dest};

const TOKEN: &str = "central-api-token-7f3a9c";
const FIXTURE_CLUSTER: &str = "5b3b8c5e-2f61-4e0a-8f7e-7a6c0b7d9e11";

fn central_section(url: &str, token_file: &std::path::Path, extra: &str) -> String {
    format!(
        "\n[central]\nendpoint = \"{url}\"\napi_token_file = \"{}\"\ntimeout = \"3s\"\npage_size = 2\n{extra}\n",
        token_file.display()
    )
}

/// Five namespaces (three pages of two) and one cluster.
fn populate(c: &Central) {
    c.set_namespaces(central_namespaces());
    c.set_clusters(vec![
        json!({"id": "c1", "name": "prod", "status": {"providerMetadata": {}}}),
    ]);
}

fn central_namespaces() -> Vec<Value> {
    vec![
        namespace(
            "n1",
            "payments",
            FIXTURE_CLUSTER,
            "prod-east",
            json!({"team": "pay", "kubernetes.io/metadata.name": "payments"}),
            json!({}),
        ),
        namespace(
            "n2",
            "web",
            "c1",
            "prod",
            json!({}),
            json!({"jira-project": "WEB"}),
        ),
        namespace("n3", "kube-system", "c1", "prod", json!({}), json!({})),
        namespace("n4", "default", "c1", "prod", json!(null), json!(null)),
        namespace("n5", "tools", "c1", "prod", json!({"a": "b"}), json!({})),
    ]
}

/// Jira, as these tests route to it.
async fn jira() -> Jira {
    Jira::start(
        Shape::ServerDc,
        &["Highest", "High", "Medium", "Low", "Lowest"],
        true,
    )
    .await
}

/// An API token file in `dir`.
pub(crate) fn token_file(dir: &std::path::Path, token: &str) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, token).unwrap();
    p
}

/// Waits until `herald_central_metadata_stale` reads `v`.
async fn stale_becomes(herald: &Herald, v: f64) {
    assert!(
        kit::eventually(Duration::from_secs(15), || async {
            herald.metric("herald_central_metadata_stale").await == v
        })
        .await,
        "{}",
        herald.log()
    );
}

fn issue_project(j: &Jira, id: &str) -> Option<String> {
    j.issues()
        .iter()
        .find(|i| i["fields"]["labels"] == json!([format!("herald-{id}")]))
        .map(|i| i["fields"]["project"]["key"].as_str().unwrap().to_string())
}

/// The (path, offset) of each call, in order.
fn pages(c: &Central) -> Vec<(String, Option<String>, bool)> {
    c.calls()
        .into_iter()
        .map(|call| {
            (
                call.path,
                call.query.get("query.pagination.offset").cloned(),
                call.authorized,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_labels_and_annotations_come_from_centrals_api() {
    let r = Rsyslog::shared();
    let central = Central::start(TOKEN).await;
    populate(&central);
    let j = jira().await;
    let s = kit::Stack::new("central", 1).await;
    let host = kit::unique("h");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let destinations = format!(
        "{}{}",
        syslog_dest("sys", r.get("tcp_port"), &host, ""),
        jira_dest("jira", &j, "")
    );
    let cfg = format!(
        "{}{}",
        s.config("", &destinations),
        central_section(&central.url(), &token_file, "")
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    // Read once before consuming: three pages of two, then the clusters.
    let first = |o: &str| ("/v1/namespaces".to_string(), Some(o.to_string()), true);
    assert_eq!(
        pages(&central),
        vec![
            first("0"),
            first("2"),
            first("4"),
            ("/v1/clusters".to_string(), None, true)
        ]
    );
    assert!(central
        .calls()
        .iter()
        .filter(|c| c.path == "/v1/namespaces")
        .all(|c| c.query.get("query.pagination.limit").map(String::as_str) == Some("2")));
    let p = kit::producer();
    kit::produce_to(
        &p,
        &s.topic,
        0,
        kit::fixture_text("alert-deployment-runtime.json").as_bytes(),
    )
    .await;
    kit::produce_to(
        &p,
        &s.topic,
        0,
        alert("a-ns", "LOW_SEVERITY", "web", "").as_bytes(),
    )
    .await;
    kit::produce_to(
        &p,
        &s.topic,
        0,
        alert("a-def", "LOW_SEVERITY", "tools", "").as_bytes(),
    )
    .await;
    // Syslog: nslabels from Central's namespace labels, byte for byte.
    let lines = r
        .wait_lines("out_tcp", &host, 3, Duration::from_secs(20))
        .await;
    let labels = r#"{"kubernetes.io/metadata.name":"payments","team":"pay"}"#;
    let want = expected_alert("alert-deployment-runtime", &host, true, "", (3, 7), labels);
    assert!(lines.contains(&want), "{lines:#?}\nwant {want}");
    // Jira: the namespace step finds Central's namespace annotation.
    assert!(
        kit::eventually(Duration::from_secs(30), || async { j.issues().len() == 3 }).await,
        "{}",
        herald.log()
    );
    assert_eq!(issue_project(&j, "a-ns").as_deref(), Some("WEB"));
    assert_eq!(issue_project(&j, "a-def").as_deref(), Some("SEC"));
    // Metrics, and the read saved in state_dir for the next start.
    let m = herald.metrics().await;
    for (series, v) in [
        (r#"herald_central_metadata_entries{kind="namespaces"}"#, 5.0),
        (r#"herald_central_metadata_entries{kind="clusters"}"#, 1.0),
        ("herald_central_metadata_stale", 0.0),
        (
            r#"herald_central_requests_total{call="clusters",outcome="ok"}"#,
            1.0,
        ),
    ] {
        assert_eq!(kit::metric_value(&m, series), v, "{series}");
    }
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(herald.dir.path().join("state/central-metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        saved["namespaces"]["namespaces"].as_array().unwrap().len(),
        5
    );
    assert_eq!(saved["clusters"]["clusters"][0]["id"], "c1");
    // The token appears nowhere herald writes.
    assert!(!herald.log().contains(TOKEN));
    assert!(!m.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_or_a_down_central_keeps_the_last_metadata_in_use() {
    let central = Central::start(TOKEN).await;
    populate(&central);
    let j = jira().await;
    let s = kit::Stack::new("central-down", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(dir.path(), TOKEN);
    let cfg = format!(
        "{}{}",
        s.config("", &jira_dest("jira", &j, "")),
        central_section(
            &central.url(),
            &token_file,
            "metadata_refresh = \"1h\"\nmetadata_refresh_on_miss = \"1s\""
        )
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let send = |id: &'static str, ns: &'static str| {
        let (p, topic) = (p.clone(), s.topic.clone());
        async move {
            kit::produce_to(&p, &topic, 0, alert(id, "LOW_SEVERITY", ns, "").as_bytes()).await;
        }
    };
    let project_of = |id: &'static str| {
        let j = &j;
        async move {
            let mut got = None;
            kit::eventually(Duration::from_secs(30), || {
                got = issue_project(j, id);
                let found = got.is_some();
                async move { found }
            })
            .await;
            got
        }
    };
    send("a-1", "web").await;
    assert_eq!(project_of("a-1").await.as_deref(), Some("WEB"));
    herald.signal(libc::SIGTERM);
    assert!(herald.wait_exit(Duration::from_secs(20)).is_some());

    // The token is revoked: herald starts anyway, says which file holds the
    // refused token, and routes with the metadata it saved.
    central.set_token("rotated-token-2");
    herald.spawn();
    herald.wait_ready(Duration::from_secs(30)).await;
    assert!(
        herald.log().contains(&format!(
            "Central refused the API token in {} (401: wrong, expired or revoked)",
            token_file.display()
        )),
        "{}",
        herald.log()
    );
    assert_eq!(herald.metric("herald_central_metadata_stale").await, 1.0);
    assert!(
        herald
            .metric(r#"herald_central_requests_total{call="namespaces",outcome="unauthorized"}"#)
            .await
            >= 1.0
    );
    send("a-2", "web").await;
    assert_eq!(project_of("a-2").await.as_deref(), Some("WEB"));

    // The new token is written to the file: read again at the next try.
    std::fs::write(&token_file, "rotated-token-2\n").unwrap();
    stale_becomes(&herald, 0.0).await;

    // Central goes down: stale again, delivering on; it comes back with a
    // new namespace, and the first alert from there (a miss) brings a read.
    central.set_down(true);
    send("a-3", "api").await;
    assert_eq!(project_of("a-3").await.as_deref(), Some("SEC"));
    stale_becomes(&herald, 1.0).await;
    send("a-4", "web").await;
    assert_eq!(project_of("a-4").await.as_deref(), Some("WEB"));
    populate(&central);
    let mut listed = central_namespaces();
    listed.push(namespace(
        "n9",
        "api",
        "c1",
        "prod",
        json!({}),
        json!({"jira-project": "API"}),
    ));
    central.set_namespaces(listed);
    let before = central.calls().len();
    central.set_down(false);
    // The failed read is tried again a second later (metadata_refresh_on_miss).
    stale_becomes(&herald, 0.0).await;
    send("a-5", "api").await;
    assert_eq!(project_of("a-5").await.as_deref(), Some("API"));
    // Every call since the new token carried it.
    let calls = central.calls();
    assert!(
        calls[before..].iter().all(|c| c.authorized),
        "{:?}",
        &calls[before..]
    );
    assert!(!herald.log().contains(TOKEN) && !herald.log().contains("rotated-token-2"));
}

/// Every call herald makes to Central, against Prism serving Central's own
/// API documents: no request-side violations; and `check-config --online`
/// names what a token lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_keeps_to_centrals_api_and_check_config_names_missing_permissions() {
    let prism = crate::kit::service::Service::shared_of("prism.sh");
    let log = prism.get("central_log").to_string();
    let from = std::fs::metadata(&log)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let s = kit::Stack::new("central-c", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(dir.path(), TOKEN);
    let j = jira().await;
    let cfg = format!(
        "{}{}",
        s.config("", &jira_dest("jira", &j, "")),
        central_section(
            prism.get("central_url"),
            &token_file,
            "[central.reconcile]\ninterval = \"1s\""
        )
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    // Reconciliation's calls too: the list, and each alert fetched whole.
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald
                .metric(r#"herald_central_requests_total{call="alert",outcome="ok"}"#)
                .await
                >= 1.0
        })
        .await,
        "{}",
        herald.log()
    );
    assert_eq!(
        herald
            .metric(r#"herald_central_requests_total{call="namespaces",outcome="ok"}"#)
            .await,
        1.0,
        "{}",
        herald.log()
    );
    assert_eq!(
        herald
            .metric(r#"herald_central_requests_total{call="clusters",outcome="ok"}"#)
            .await,
        1.0
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let seen = &text[from.min(text.len())..];
    // Prism logs each request as "get <path>" (without the query).
    for path in [
        "get /v1/namespaces ",
        "get /v1/clusters ",
        "get /v1/alerts ",
        "get /v1/alerts/",
    ] {
        assert!(seen.contains(path), "{path}: {seen}");
    }
    let violations: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("Violation") && l.contains("request"))
        .collect();
    assert!(violations.is_empty(), "{violations:#?}");
    drop(herald);

    // check-config --online against the stand-in: each call, and the
    // permission a refused one needs.
    let central = Central::start(TOKEN).await;
    populate(&central);
    central.forbid(&["clusters", "alerts"]);
    let path = dir.path().join("herald.toml");
    let cfg = cfg
        .replace(prism.get("central_url"), &central.url())
        .replace("{http}", &format!("127.0.0.1:{}", kit::free_port()))
        .replace("{admin}", &format!("127.0.0.1:{}", kit::free_port()))
        .replace("{state}", &dir.path().join("state").display().to_string());
    std::fs::write(&path, &cfg).unwrap();
    let out = kit::cli(&["check-config", "--online"], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("central:"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "central: ok: GET /v1/namespaces (read access to Namespace)".to_string(),
            format!(
                "central: failed: Central's clusters (GET {}/v1/clusters): the API token in {} lacks a permission this call needs (403): access for this user is not authorized: not authorized; grant the token's role read access to Cluster",
                central.url(),
                token_file.display()
            ),
            format!(
                "central: failed: Central's alerts (GET {}/v1/alerts): the API token in {} lacks a permission this call needs (403): access for this user is not authorized: not authorized; grant the token's role read access to Alert",
                central.url(),
                token_file.display()
            ),
        ]
    );
    assert!(!stdout.contains(TOKEN));
}

/// Central over HTTPS: verified against the system roots and `ca_file`; an
/// unverified server never gets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_central_is_verified_and_the_token_goes_only_to_a_verified_server() {
    let dir = tempfile::tempdir().unwrap();
    let certs = kit::tls::certs(dir.path());
    let central = Central::start_tls(TOKEN, &certs).await;
    populate(&central);
    let s = kit::Stack::new("central-tls", 1).await;
    let token_file = token_file(dir.path(), TOKEN);
    let j = jira().await;
    let base = s.config("", &jira_dest("jira", &j, ""));
    let mut herald = Herald::start(&format!(
        "{base}{}",
        central_section(&central.url(), &token_file, "")
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(herald.metric("herald_central_metadata_stale").await, 1.0);
    assert!(
        herald
            .log()
            .contains("Central's metadata: first read failed")
            && herald.log().contains("certificate"),
        "{}",
        herald.log()
    );
    assert!(
        central.calls().is_empty(),
        "no request reached an unverified server"
    );
    herald.signal(libc::SIGTERM);
    assert!(herald.wait_exit(Duration::from_secs(20)).is_some());
    herald.rewrite_config(&format!(
        "{base}{}",
        central_section(
            &central.url(),
            &token_file,
            &format!("ca_file = \"{}\"", certs.ca.display())
        )
    ));
    herald.spawn();
    herald.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(herald.metric("herald_central_metadata_stale").await, 0.0);
    assert_eq!(
        herald
            .metric(r#"herald_central_metadata_entries{kind="namespaces"}"#)
            .await,
        5.0
    );
    assert!(central.calls().iter().all(|c| c.authorized));
}

/// A Central that hangs, then throttles with an absurd Retry-After: herald
/// starts within its timeout, delivers on with what it has, polls on, and
/// reads again once Central answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_throttling_central_holds_nothing_up() {
    let central = Central::start(TOKEN).await;
    populate(&central);
    central.set_hang(true);
    let j = jira().await;
    let s = kit::Stack::new("central-hang", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(dir.path(), TOKEN);
    let started = std::time::Instant::now();
    let mut herald = Herald::start(&format!(
        "{}{}",
        s.config("", &jira_dest("jira", &j, "")),
        central_section(
            &central.url(),
            &token_file,
            "metadata_refresh_on_miss = \"1s\"\n[central.reconcile]\ninterval = \"1s\""
        )
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    // The first read gave up after `timeout` (3 s), not Central's hour.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(herald.metric("herald_central_metadata_stale").await, 1.0);
    let p = kit::producer();
    kit::produce_to(
        &p,
        &s.topic,
        0,
        alert("h-1", "LOW_SEVERITY", "web", "").as_bytes(),
    )
    .await;
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            issue_project(&j, "h-1").as_deref() == Some("SEC")
        })
        .await,
        "{}",
        herald.log()
    );
    // 429 with Retry-After: 2^64-1: polls fail and go on, nothing waits
    // for the header.
    central.set_throttle(true);
    central.set_hang(false);
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald
                .metric(r#"herald_reconcile_polls_total{outcome="error"}"#)
                .await
                >= 3.0
        })
        .await,
        "{}",
        herald.log()
    );
    assert_eq!(herald.metric("herald_central_metadata_stale").await, 1.0);
    central.set_throttle(false);
    stale_becomes(&herald, 0.0).await;
    kit::produce_to(
        &p,
        &s.topic,
        0,
        alert("h-2", "LOW_SEVERITY", "web", "").as_bytes(),
    )
    .await;
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            issue_project(&j, "h-2").as_deref() == Some("WEB")
        })
        .await,
        "{}",
        herald.log()
    );
    assert!(
        herald.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still running"
    );
}
