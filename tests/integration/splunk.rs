//! Splunk HEC and Sumo Logic end to end: Central's envelope and source types,
//! policy-text blanking and pruning, the size rule, auth errors, 503 retries,
//! batches, gzip and indexer acknowledgements.

use std::time::Duration;

use serde_json::{json, Value};

use crate::kit::hec::Hec;
use crate::kit::{self, Herald, Receiver};

fn splunk(name: &str, url: &str, extra: &str) -> String {
    format!("[[destinations]]\nname = \"{name}\"\nid = \"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"\ntype = \"splunk\"\nurl = \"{url}\"\ntoken = \"hec-token-1\"\n{extra}\n")
}

/// The event the spec's rules give: policy text removed, `@type` first.
fn expected_alert_event(fixture: &str, sourcetype: &str) -> Value {
    let mut a: Value = serde_json::from_str(&kit::fixture_text(fixture)).unwrap();
    let policy = a["policy"].as_object_mut().unwrap();
    for k in ["description", "rationale", "remediation", "exclusions"] {
        policy.shift_remove(k);
    }
    let mut event = serde_json::Map::new();
    event.insert("@type".into(), json!("storage.Alert"));
    event.extend(a.as_object().unwrap().clone());
    json!({"event": event, "source": "stackrox", "sourcetype": sourcetype})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_source_types_audit_and_render_are_exact() {
    let s = kit::Stack::new("hec", 1).await;
    let hec = Hec::start("hec-token-1", None).await;
    let destinations = format!(
        "{}{}",
        splunk("default-types", &hec.url(), "audit = true"),
        splunk(
            "custom-types",
            &format!("{}/services/collector/event", hec.url()),
            "source_types = { alert = \"rhacs:alert\", audit = \"\" }\naudit = true"
        )
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
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
        kit::fixture_text("audit-notifier-create.json").as_bytes(),
    )
    .await;
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            hec.events().len() >= 4
        })
        .await
    );
    let reqs = hec.requests();
    assert_eq!(reqs.len(), 4, "one event per request without batching");
    let bodies: Vec<String> = reqs
        .iter()
        .map(|(_, e)| serde_json::to_string(&e[0]).unwrap())
        .collect();
    let alert_default = serde_json::to_string(&expected_alert_event(
        "alert-deployment-runtime.json",
        "stackrox-alert",
    ))
    .unwrap();
    let alert_custom = serde_json::to_string(&expected_alert_event(
        "alert-deployment-runtime.json",
        "rhacs:alert",
    ))
    .unwrap();
    let audit: Value =
        serde_json::from_str(&kit::fixture_text("audit-notifier-create.json")).unwrap();
    let mut audit_event = serde_json::Map::new();
    audit_event.insert("@type".into(), json!("v1.Audit.Message"));
    audit_event.extend(audit["audit"].as_object().unwrap().clone());
    let audit_default = serde_json::to_string(&json!({"event": audit_event, "source": "stackrox", "sourcetype": "stackrox-audit-message"})).unwrap();
    let audit_custom =
        serde_json::to_string(&json!({"event": audit_event, "source": "stackrox"})).unwrap();
    for expected in [&alert_default, &alert_custom, &audit_default, &audit_custom] {
        assert_eq!(
            bodies.iter().filter(|b| b == &expected).count(),
            1,
            "missing {expected}"
        );
    }
    for (h, _) in &reqs {
        assert_eq!(h.get("authorization").unwrap(), "Splunk hec-token-1");
        assert_eq!(h.get("content-type").unwrap(), "application/json");
    }
    // render gives the bytes sent, for the same input.
    let fixture = kit::fixture("alert-deployment-runtime.json");
    let out = kit::cli(
        &[
            "render",
            "--destination",
            "default-types",
            "--input",
            fixture.to_str().unwrap(),
        ],
        &herald.config,
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), alert_default);
    assert!(!herald.log().contains("hec-token-1"), "token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_oversize_auth_errors_and_busy_retries() {
    let s = kit::Stack::new("hecp", 1).await;
    let hec = Hec::start("hec-token-1", None).await;
    hec.busy(2);
    let wrong = Hec::start("another-token", None).await;
    let destinations = format!(
        "{}{}{}",
        splunk(
            "pruned",
            &hec.url(),
            "truncate = 2500\nretry_min_delay = \"50ms\""
        ),
        splunk("tiny", &hec.url(), "truncate = 150\npolicies = [\"Big*\"]"),
        splunk("wrong-token", &wrong.url(), "policies = [\"Big*\"]"),
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let annotations = format!(
        r#"{{"big":"{}","mid":"{}","small":"s"}}"#,
        "b".repeat(2500),
        "m".repeat(400)
    );
    let alert = format!(
        r#"{{"id":"big-1","policy":{{"name":"Big","description":"{}","notifiers":["3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f"]}},"deployment":{{"name":"d","annotations":{annotations}}}}}"#,
        "d".repeat(2000)
    );
    kit::produce_to(&kit::producer(), &s.topic, 0, alert.as_bytes()).await;
    // Two 503s, then accepted: pruned to fit 2,500 bytes, largest annotation first.
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            hec.events().len() == 1
        })
        .await
    );
    let event = &hec.events()[0];
    assert_eq!(
        event["event"]["deployment"]["annotations"],
        json!({"mid": "m".repeat(400), "small": "s"})
    );
    assert!(event["event"]["policy"].get("description").is_none());
    assert!(serde_json::to_string(event).unwrap().len() <= 2500);
    // Too large even after pruning, and a wrong token: dead letters with Central's reasons.
    let records = kit::read_records(&s.dlq, 2, Duration::from_secs(20)).await;
    let mut records: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    for r in &records {
        println!(
            "dead letter: {} {} {}",
            r["destination"], r["reason"], r["last_error"]
        );
    }
    records.sort_by_key(|r| r["destination"].as_str().unwrap().to_string());
    assert_eq!(records[0]["destination"], "tiny");
    assert_eq!(records[0]["reason"], "render");
    assert!(
        records[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("Splunk HEC truncate data limit (150 bytes) exceeded: "),
        "{}",
        records[0]
    );
    assert_eq!(records[1]["destination"], "wrong-token");
    assert_eq!(records[1]["reason"], "auth_error");
    assert!(
        records[1]["last_error"]
            .as_str()
            .unwrap()
            .contains("HEC code 4 \"Invalid token\""),
        "{}",
        records[1]
    );
    let m = herald.metrics().await;
    assert_eq!(
        kit::metric_value(
            &m,
            r#"herald_delivery_failures_total{destination="pruned",reason="server_error"}"#
        ),
        2.0
    );
    assert_eq!(
        kit::metric_value(
            &m,
            r#"herald_deliveries_total{destination="pruned",outcome="delivered"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_gzip_and_indexer_acks() {
    let s = kit::Stack::new("hecb", 1).await;
    let hec = Hec::start("hec-token-1", Some(Duration::from_millis(1500))).await;
    let cfg = kit::config(
        &s.topic,
        &s.dlq,
        &s.group,
        "",
        &splunk(
            "batched",
            &hec.url(),
            "workers = 64\nbatch_max_events = 50\nbatch_linger = \"100ms\"\ngzip = true\nindexer_ack = true\nqueue_size = 2000",
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let n = 500;
    let topic = s.topic.clone();
    tokio::spawn(async move {
        let p = kit::producer();
        for i in 0..n {
            let v = kit::alert(&format!("b-{i}"), "")
                .replace("\"n1\"", "\"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"");
            kit::produce_to(&p, &topic, 0, v.as_bytes()).await;
        }
    });
    // Nothing is final until the indexer acknowledged it (1.5 s after each request).
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            !hec.requests().is_empty()
        })
        .await
    );
    let delivered = r#"herald_deliveries_total{destination="batched",outcome="delivered"}"#;
    assert_eq!(herald.metric(delivered).await, 0.0, "final before the ack");
    assert!(s.committed().await <= 0);
    assert!(
        kit::eventually(Duration::from_secs(60), || async {
            herald.metric(delivered).await == n as f64
        })
        .await
    );
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == n as i64
        })
        .await
    );
    let reqs = hec.requests();
    let events = hec.events();
    println!(
        "{n} events in {} requests, {} ack polls",
        reqs.len(),
        hec.ack_polls()
    );
    assert_eq!(events.len(), n);
    assert!(reqs.len() < n / 4, "{} requests for {n} events", reqs.len());
    assert!(reqs
        .iter()
        .all(|(h, e)| h.get("content-encoding").unwrap() == "gzip" && e.len() <= 50));
    assert!(reqs
        .iter()
        .all(|(h, _)| h.get("x-splunk-request-channel").is_some()));
    assert!(hec.ack_polls() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sumo_gets_the_pruned_bare_alert() {
    let s = kit::Stack::new("sumo", 1).await;
    let rx = Receiver::start().await;
    let dest = format!(
        "[[destinations]]\nname = \"sumo\"\nall_alerts = true\ntype = \"sumologic\"\nurl = \"{}\"\n",
        rx.url("/receiver/v1/http/SECRET-TOKEN")
    );
    let mut herald = Herald::start(&s.config("", &dest));
    herald.wait_ready(Duration::from_secs(30)).await;
    let big = "x".repeat(12_000);
    let alert = format!(
        r#"{{"id":"s1","policy":{{"name":"P","description":"kept"}},"deployment":{{"name":"d","labels":{{"app":"a"}},"annotations":{{"big":"{big}"}}}}}}"#
    );
    kit::produce_to(&kit::producer(), &s.topic, 0, alert.as_bytes()).await;
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(
        got[0].text(),
        r#"{"id":"s1","policy":{"name":"P","description":"kept"},"deployment":{"name":"d","labels":{"app":"a"}}}"#
    );
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let m = herald.metrics().await;
    assert!(!m.contains("SECRET-TOKEN") && !herald.log().contains("SECRET-TOKEN"));
}

/// The HEC stand-in is as strict as Splunk on what herald could get wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hec_stand_in_refuses_what_splunk_refuses() {
    let hec = Hec::start("tok", Some(Duration::from_millis(0))).await;
    let url = format!("{}/services/collector/event", hec.url());
    let c = reqwest::Client::new();
    let post = |auth: Option<&'static str>, channel: bool, body: &'static str| {
        let mut r = c.post(&url).body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if channel {
            r = r.header(
                "x-splunk-request-channel",
                "11111111-2222-4333-8444-555555555555",
            );
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap(),
            )
        }
    };
    assert_eq!(
        post(None, true, r#"{"event":1}"#).await,
        (401, json!({"text":"Token is required","code":2}))
    );
    assert_eq!(
        post(Some("Splunk bad"), true, r#"{"event":1}"#).await,
        (403, json!({"text":"Invalid token","code":4}))
    );
    assert_eq!(
        post(Some("Splunk tok"), false, r#"{"event":1}"#).await,
        (400, json!({"text":"Data channel is missing","code":10}))
    );
    assert_eq!(
        post(Some("Splunk tok"), true, r#"{"event":1}{"#).await,
        (
            400,
            json!({"text":"Invalid data format","code":6,"invalid-event-number":1})
        )
    );
    assert_eq!(
        post(Some("Splunk tok"), true, r#"{"event":1}{"source":"x"}"#).await,
        (
            400,
            json!({"text":"Event field is required","code":12,"invalid-event-number":1})
        )
    );
    hec.busy(1);
    assert_eq!(
        post(Some("Splunk tok"), true, r#"{"event":1}"#).await,
        (503, json!({"text":"Server is busy","code":9}))
    );
    assert_eq!(
        post(Some("Splunk tok"), true, r#"{"event":1}{"event":2}"#).await,
        (200, json!({"text":"Success","code":0,"ackId":0}))
    );
}

/// With indexer acknowledgement an attempt waits for the ack up to
/// `ack_timeout`, not the request `timeout`: a 2 s indexing delay behind a
/// 500 ms timeout delivers each event once (before, every attempt was cut at
/// 500 ms and the event posted again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_slower_than_the_request_timeout_posts_each_event_once() {
    let s = kit::Stack::new("heca", 1).await;
    let hec = Hec::start("hec-token-1", Some(Duration::from_secs(2))).await;
    let cfg = kit::config(
        &s.topic,
        &s.dlq,
        &s.group,
        "",
        &splunk(
            "acked",
            &hec.url(),
            "timeout = \"500ms\"\nindexer_ack = true\nack_timeout = \"10s\"\nworkers = 8",
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for i in 0..5 {
        let v = kit::alert(&format!("ack-{i}"), "")
            .replace("\"n1\"", "\"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"");
        kit::produce_to(&p, &s.topic, 0, v.as_bytes()).await;
    }
    let delivered = r#"herald_deliveries_total{destination="acked",outcome="delivered"}"#;
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald.metric(delivered).await == 5.0
        })
        .await,
        "{}",
        herald.log()
    );
    assert_eq!(hec.events().len(), 5, "each event posted once");
    assert_eq!(hec.requests().len(), 5);
}
