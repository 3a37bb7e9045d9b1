//! `[central.reconcile]` against the recording stand-in for Central: what
//! Central has and the topic never carried is produced once and delivered
//! once; a resolution in Central reaches the resolvable destination once and
//! a plain webhook not at all; an alert that came both ways is delivered
//! once; a restart mid-poll neither loses nor repeats; paging keeps to the
//! page size and request rate.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::kit::central::Central;
use crate::kit::receiver::Receiver;
use crate::kit::{self, Herald};

const NID: &str = "3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f";
const TOKEN: &str = "reconcile-token-51d2";

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A whole `storage.Alert` as Central's API answers it.
fn alert(id: &str, state: &str, time_ms: i64) -> Value {
    let mut a = json!({
        "id": id,
        "policy": {"id": "p1", "name": "Reconciled policy", "severity": "HIGH_SEVERITY", "notifiers": [NID]},
        "lifecycleStage": "DEPLOY",
        "clusterId": "c1", "clusterName": "prod", "namespace": "web",
        "deployment": {"id": format!("d-{id}"), "name": format!("d-{id}"), "namespace": "web", "clusterId": "c1", "clusterName": "prod"},
        "violations": [{"message": "a violation"}],
        "time": rfc3339(time_ms),
        "firstOccurred": rfc3339(time_ms),
        "state": state,
    });
    if state == "RESOLVED" {
        a["resolvedAt"] = json!(rfc3339(now_ms()));
    }
    a
}

fn destinations(pd: &Receiver, wh: &Receiver) -> String {
    format!(
        "[[destinations]]\nname = \"pd\"\nid = \"{NID}\"\ntype = \"pagerduty\"\nrouting_key = \"R0UTINGKEY0000000000000000000000\"\napi_url = \"{}\"\n[[destinations]]\nname = \"wh\"\nid = \"{NID}\"\ntype = \"webhook\"\nurl = \"{}\"\n",
        pd.url("/enqueue"),
        wh.url("/")
    )
}

fn config(
    s: &kit::Stack,
    dests: &str,
    central: &Central,
    token_file: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        "{}\n[central]\nendpoint = \"{}\"\napi_token_file = \"{}\"\ntimeout = \"3s\"\n[central.reconcile]\ninterval = \"1s\"\nmax_alert_age = \"24h\"\n{extra}\n",
        s.config("", dests),
        central.url(),
        token_file.display()
    )
}

/// Every record of `topic` (key, value, whether it carries the header).
fn records(topic: &str, settle: Duration) -> Vec<(String, Value, bool)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kit::brokers())
        .set("group.id", kit::unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut quiet_since = std::time::Instant::now();
    while quiet_since.elapsed() < settle {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let reconciled = m.headers().is_some_and(|h| {
                h.iter()
                    .any(|h| h.key == "herald-reconciled" && h.value == Some(b"1".as_slice()))
            });
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
                reconciled,
            ));
            quiet_since = std::time::Instant::now();
        }
    }
    out
}

async fn topic_records(topic: &str) -> Vec<(String, Value, bool)> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || records(&topic, Duration::from_secs(3)))
        .await
        .unwrap()
}

/// (event_action, dedup_key) of each PagerDuty event received.
fn pd_events(pd: &Receiver) -> Vec<(String, String)> {
    pd.delivered()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            (
                v["event_action"].as_str().unwrap().to_string(),
                v["dedup_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn webhook_ids(wh: &Receiver) -> Vec<String> {
    let mut ids: Vec<String> = wh
        .delivered()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["alert"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// The stand-in for Central, a PagerDuty and a webhook receiver, a stack.
async fn setup(prefix: &str) -> (Central, Receiver, Receiver, kit::Stack) {
    (
        Central::start(TOKEN).await,
        Receiver::start().await,
        Receiver::start().await,
        kit::Stack::new(prefix, 1).await,
    )
}

async fn polls(h: &Herald, n: f64) {
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            h.metric(r#"herald_reconcile_polls_total{outcome="ok"}"#)
                .await
                >= n
        })
        .await,
        "{}",
        h.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_topic_missed_is_produced_once_and_a_resolution_reaches_only_the_resolvable() {
    let (central, pd, wh, s) = setup("rec").await;
    let now = now_ms();
    central.put_alert(alert("r-missing", "ACTIVE", now - 300_000));
    central.put_alert(alert("r-both", "ATTEMPTED", now - 240_000));
    central.put_alert(alert("r-old", "ACTIVE", now - 3 * 86_400_000));
    central.put_alert(alert("r-snoozed", "SNOOZED", now - 200_000));
    // r-both came through ingest too: on the topic before herald starts.
    let ingested = json!({ "alert": alert("r-both", "ATTEMPTED", now - 240_000) }).to_string();
    kit::produce_to(&kit::producer(), &s.topic, 0, ingested.as_bytes()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = crate::central::token_file(dir.path(), TOKEN);
    let mut herald = Herald::start(&config(
        &s,
        &destinations(&pd, &wh),
        &central,
        &token_file,
        "",
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    wh.wait_delivered(2, Duration::from_secs(30)).await;
    polls(&herald, 3.0).await;
    // Delivered once each; the old and the snoozed alert not at all.
    assert_eq!(webhook_ids(&wh), vec!["r-both", "r-missing"]);
    let mut events = pd_events(&pd);
    events.sort();
    assert_eq!(
        events,
        vec![
            ("trigger".to_string(), "r-both".to_string()),
            ("trigger".to_string(), "r-missing".to_string())
        ]
    );
    // The topic: r-both as ingested (and, had a poll come before the
    // dispatcher read it, once more), r-missing once, reconciled, as
    // Central's API gave it.
    let got = topic_records(&s.topic).await;
    let of = |got: &[(String, Value, bool)], id: &str, state: &str| -> Vec<(Value, bool)> {
        got.iter()
            .filter(|(_, v, _)| v["alert"]["id"] == id && v["alert"]["state"] == state)
            .map(|(_, v, r)| (v.clone(), *r))
            .collect()
    };
    assert_eq!(
        of(&got, "r-missing", "ACTIVE"),
        vec![(
            json!({ "alert": alert("r-missing", "ACTIVE", now - 300_000) }),
            true
        )]
    );
    let both = of(&got, "r-both", "ATTEMPTED");
    assert!(!both[0].1 && both.len() <= 2, "{both:?}");
    assert_eq!(got.len(), 1 + both.len(), "{got:?}");

    // Central resolves r-missing: PagerDuty gets one resolve, the webhook
    // nothing more.
    let resolved = alert("r-missing", "RESOLVED", now - 300_000);
    central.put_alert(resolved.clone());
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            pd.delivered().len() == 3
        })
        .await,
        "{}",
        herald.log()
    );
    let before = herald
        .metric(r#"herald_reconcile_polls_total{outcome="ok"}"#)
        .await;
    polls(&herald, before + 3.0).await;
    assert_eq!(
        pd_events(&pd).last().unwrap(),
        &("resolve".to_string(), "r-missing".to_string())
    );
    assert_eq!(pd.delivered().len(), 3);
    assert_eq!(wh.delivered().len(), 2);
    let got = topic_records(&s.topic).await;
    assert_eq!(
        of(&got, "r-missing", "RESOLVED"),
        vec![(json!({ "alert": resolved }), true)]
    );
    assert_eq!(got.len(), 2 + both.len());
    for (kind, n) in [("missing", 1.0), ("resolved", 1.0)] {
        assert_eq!(
            herald
                .metric(&format!(r#"herald_reconcile_found_total{{kind="{kind}"}}"#))
                .await,
            n,
            "{kind}"
        );
    }

    // Central is down while an alert it failed to post appears: polls fail,
    // the watermark stays, and once Central is back the alert is produced.
    central.set_down(true);
    central.put_alert(alert("r-late", "ACTIVE", now_ms()));
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald
                .metric(r#"herald_reconcile_polls_total{outcome="error"}"#)
                .await
                >= 3.0
        })
        .await
    );
    assert_eq!(wh.delivered().len(), 2);
    central.set_down(false);
    wh.wait_delivered(3, Duration::from_secs(30)).await;
    let before = herald
        .metric(r#"herald_reconcile_polls_total{outcome="ok"}"#)
        .await;
    polls(&herald, before + 2.0).await;
    assert_eq!(webhook_ids(&wh), vec!["r-both", "r-late", "r-missing"]);
    assert_eq!(
        herald
            .metric(r#"herald_reconcile_found_total{kind="missing"}"#)
            .await,
        2.0
    );
    // Every call carried the token, which appears nowhere herald writes.
    assert!(central.calls().iter().all(|c| c.authorized));
    assert!(!herald.log().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_poll_neither_loses_nor_repeats() {
    let (central, pd, wh, s) = setup("rec-restart").await;
    let now = now_ms();
    let n = 150;
    for i in 0..n {
        central.put_alert(alert(
            &format!("m-{i:03}"),
            "ACTIVE",
            now - 600_000 + i * 1000,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = crate::central::token_file(dir.path(), TOKEN);
    // 150 fetches and 8 pages at 40 calls a second: about 4 s per poll.
    let cfg = config(
        &s,
        &destinations(&pd, &wh),
        &central,
        &token_file,
        "max_requests_per_second = 40",
    )
    .replace("timeout = \"3s\"", "timeout = \"3s\"\npage_size = 20");
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            wh.delivered().len() >= 40
        })
        .await,
        "{}",
        herald.log()
    );
    herald.signal(libc::SIGTERM);
    assert!(herald.wait_exit(Duration::from_secs(30)).is_some());
    let at_stop = wh.delivered().len();
    assert!(
        at_stop < n as usize,
        "stopped mid-poll ({at_stop} delivered)"
    );
    herald.spawn();
    herald.wait_ready(Duration::from_secs(30)).await;
    wh.wait_delivered(n as usize, Duration::from_secs(60)).await;
    polls(&herald, 2.0).await;
    let ids = webhook_ids(&wh);
    let want: Vec<String> = (0..n).map(|i| format!("m-{i:03}")).collect();
    assert_eq!(ids, want, "each alert delivered exactly once");
    // The topic carries each at most twice (one in flight at the stop).
    let got = topic_records(&s.topic).await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for (k, _, reconciled) in &got {
        assert!(reconciled);
        *per.entry(k.clone()).or_default() += 1;
    }
    assert_eq!(per.len(), n as usize);
    assert!(
        got.len() <= n as usize + 1,
        "{} records for {n} alerts",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_over_ten_thousand_alerts_keeps_to_the_page_size_and_request_rate() {
    let (central, pd, wh, s) = setup("rec-paging").await;
    let now = now_ms();
    // 10,000 open alerts, four to a second, which the topic already
    // carried (routed to no destination): listed, not fetched (but for one
    // resolution check a poll).
    let p = kit::producer();
    let mut pending = Vec::new();
    for i in 0..10_000i64 {
        let mut a = alert(&format!("s-{i:05}"), "ACTIVE", now - 3_600_000 + i * 250);
        a["policy"]["notifiers"] = json!(["nobody"]);
        central.put_alert(a.clone());
        let (p, topic, body) = (
            p.clone(),
            s.topic.clone(),
            json!({ "alert": a }).to_string(),
        );
        pending.push(async move { kit::produce_to(&p, &topic, 0, body.as_bytes()).await });
        if pending.len() == 500 {
            futures::future::join_all(pending.drain(..)).await;
        }
    }
    futures::future::join_all(pending).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = crate::central::token_file(dir.path(), TOKEN);
    let cfg = config(
        &s,
        &destinations(&pd, &wh),
        &central,
        &token_file,
        "max_requests_per_second = 10\nmax_alerts_per_poll = 4000\nmax_resolution_checks_per_poll = 1",
    )
    .replace("timeout = \"3s\"", "timeout = \"3s\"\npage_size = 500")
    .replace("interval = \"1s\"", "interval = \"15s\"");
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    // The first poll waits an interval, while the topic is read.
    assert!(
        kit::eventually(Duration::from_secs(15), || async {
            herald
                .metric(r#"herald_alerts_skipped_total{reason="no_route"}"#)
                .await
                == 10_000.0
        })
        .await,
        "{}",
        herald.log()
    );
    assert!(central.calls().iter().all(|c| c.path != "/v1/alerts"));
    // Three polls cover the 10,000 (4,000 at most each).
    polls(&herald, 3.0).await;
    let all: Vec<_> = central
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/v1/alerts"))
        .collect();
    let polled = herald
        .metric(r#"herald_reconcile_polls_total{outcome="ok"}"#)
        .await;
    let fetched = all.iter().filter(|c| c.path != "/v1/alerts").count();
    assert!(
        fetched as f64 <= polled + 1.0,
        "{fetched} fetched in {polled} polls"
    );
    let calls: Vec<_> = all.iter().filter(|c| c.path == "/v1/alerts").collect();
    assert!(calls.len() >= 20, "{} pages", calls.len());
    for c in &calls {
        assert_eq!(
            c.query.get("pagination.limit").map(String::as_str),
            Some("500")
        );
        assert_eq!(
            c.query
                .get("pagination.sortOption.field")
                .map(String::as_str),
            Some("Violation Time")
        );
    }
    // The watermark reached the newest alert.
    assert_eq!(
        herald.metric("herald_reconcile_watermark_seconds").await,
        ((now - 3_600_000 + 9_999 * 250) as f64 / 1000.0)
    );
    // No second holds more than 10 calls (one more at a window's edge).
    for (i, c) in all.iter().enumerate() {
        let within = all[i..]
            .iter()
            .take_while(|d| d.at.duration_since(c.at) < Duration::from_secs(1))
            .count();
        assert!(within <= 11, "{within} calls within a second from call {i}");
    }
    assert_eq!(
        herald
            .metric(r#"herald_reconcile_found_total{kind="missing"}"#)
            .await,
        0.0
    );
    assert_eq!(wh.delivered().len(), 0);
}
