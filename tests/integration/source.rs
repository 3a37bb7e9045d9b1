//! The Kafka source against the real broker: at-least-once across a crash,
//! the contiguous commit watermark, backpressure, dead letters, max_alert_age
//! and a bounded graceful stop.

use std::time::{Duration, Instant};

use crate::kit::receiver::Behavior;
use crate::kit::{self, Herald, Receiver};

/// A webhook destination; held requests must not time out here (60 s), so a
/// slow receiver stays slow rather than failing into parking.
fn webhook(url: &str) -> String {
    format!("[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"60s\"\n")
}

struct Setup {
    topic: String,
    dlq: String,
    group: String,
    rx: Receiver,
}

async fn setup(prefix: &str) -> Setup {
    let kit::Stack {
        topic, dlq, group, ..
    } = kit::Stack::new(prefix, 1).await;
    Setup {
        topic,
        dlq,
        group,
        rx: Receiver::start().await,
    }
}

impl Setup {
    /// The kit config, with `grace` as shutdown_grace when given.
    fn config(&self, extra_kafka: &str, grace: &str) -> String {
        let c = kit::config(
            &self.topic,
            &self.dlq,
            &self.group,
            extra_kafka,
            &webhook(&self.rx.url("/")),
        );
        if grace.is_empty() {
            c
        } else {
            c.replace(
                "shutdown_grace = \"5s\"",
                &format!("shutdown_grace = \"{grace}\""),
            )
        }
    }

    async fn committed(&self) -> i64 {
        kit::committed(&self.group, &self.topic, 1).await[0]
    }
}

/// Delivers one alert with commits every hour (so the offset stays
/// uncommitted), kills herald with SIGKILL and restarts it. Returns the
/// receiver's deliveries after the restart has consumed the message again.
async fn crash_before_commit(ledger: bool) -> (Vec<crate::kit::receiver::Recorded>, Herald) {
    let s = setup(if ledger { "crash-l" } else { "crash-nl" }).await;
    // A long session timeout shows static membership: the restarted instance
    // gets its partitions back without waiting for the old session to expire.
    let cfg = s
        .config("", "")
        .replace("commit_interval = \"200ms\"", "commit_interval = \"1h\"")
        .replace("session_timeout = \"10s\"", "session_timeout = \"45s\"")
        .replace(
            "[log]",
            &format!("[ledger]\nenabled = {ledger}\n[log]\nformat = \"json\""),
        );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    kit::produce(&p, &s.topic, None, kit::alert("crash-1", "").as_bytes()).await;
    s.rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(s.committed().await, -1, "nothing committed yet");

    herald.kill9();
    let restarted = Instant::now();
    herald.spawn();
    let consumed = format!(
        r#"herald_messages_consumed_total{{partition="0",topic="{}"}}"#,
        s.topic
    );
    let again = kit::eventually(Duration::from_secs(40), || async {
        herald.metric(&consumed).await == 1.0
    })
    .await;
    let took = restarted.elapsed();
    println!("consumed again {took:?} after the restart");
    assert!(
        again && took < Duration::from_secs(25),
        "partitions not reclaimed at once: {took:?}"
    );
    let expected = if ledger { 1 } else { 2 };
    s.rx.wait_delivered(expected, Duration::from_secs(20)).await;
    let skipped = r#"herald_deliveries_total{destination="w",outcome="skipped"}"#;
    let delivered = r#"herald_deliveries_total{destination="w",outcome="delivered"}"#;
    // The consumed message reached its final outcome after the restart.
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            herald.metric(skipped).await + herald.metric(delivered).await == 1.0
        })
        .await
    );
    (s.rx.delivered(), herald)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ledger_a_crash_before_commit_delivers_again() {
    let (got, herald) = crash_before_commit(false).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].body, got[1].body,
        "the same alert, delivered again: at least once"
    );
    // Logs were JSON, one object per line.
    let log = herald.log();
    assert!(log.lines().count() > 3);
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ledger_a_crash_before_commit_does_not_notify_twice() {
    let (got, herald) = crash_before_commit(true).await;
    assert_eq!(got.len(), 1, "notified once");
    assert_eq!(
        got[0].header("idempotency-key").as_deref(),
        Some("crash-1:ACTIVE")
    );
    assert_eq!(
        herald
            .metric(r#"herald_deliveries_total{destination="w",outcome="skipped"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offset_never_passes_an_undelivered_message() {
    let s = setup("wm").await;
    s.rx.set(Behavior::Hold("\"slow-1\"".into()));
    let mut herald = Herald::start(&s.config("", ""));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    kit::produce_to(&p, &s.topic, 0, kit::alert("fast-0", "").as_bytes()).await;
    let slow = kit::produce_to(&p, &s.topic, 0, kit::alert("slow-1", "").as_bytes()).await;
    for i in 2..6 {
        kit::produce_to(
            &p,
            &s.topic,
            0,
            kit::alert(&format!("fast-{i}"), "").as_bytes(),
        )
        .await;
    }
    // Everything but the held alert is delivered…
    s.rx.wait_delivered(5, Duration::from_secs(20)).await;
    // …and the commit stops at the held one, however many commit rounds pass.
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == slow
        })
        .await
    );
    for _ in 0..10 {
        assert_eq!(
            s.committed().await,
            slow,
            "watermark passed an undelivered message"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.rx.release();
    s.rx.wait_delivered(6, Duration::from_secs(20)).await;
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 6
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_bound_pauses_the_partition_and_memory_stays_flat() {
    let s = setup("bp").await;
    s.rx.set(Behavior::Hold("\"bp-".into()));
    let bound = 50;
    let cfg = s.config(&format!("max_in_flight_per_partition = {bound}\n"), "");
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let pad = format!(",\"pad\":\"{}\"", "x".repeat(3000));
    for i in 0..1000 {
        kit::produce_to(
            &p,
            &s.topic,
            0,
            kit::alert(&format!("bp-{i}"), &pad).as_bytes(),
        )
        .await;
    }
    let consumed = format!(
        r#"herald_messages_consumed_total{{partition="0",topic="{}"}}"#,
        s.topic
    );
    let paused = format!(
        r#"herald_partition_paused{{partition="0",topic="{}"}}"#,
        s.topic
    );
    let in_flight = format!(
        r#"herald_partition_in_flight_messages{{partition="0",topic="{}"}}"#,
        s.topic
    );
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            herald.metric(&paused).await == 1.0
        })
        .await,
        "partition not paused"
    );
    let rss_before = herald.rss_kib();
    for i in 1000..3000 {
        kit::produce_to(
            &p,
            &s.topic,
            0,
            kit::alert(&format!("bp-{i}"), &pad).as_bytes(),
        )
        .await;
    }
    // While paused, 2000 more messages (6 MB) arrive at the broker; herald
    // holds at the bound.
    for _ in 0..10 {
        let m = herald.metrics().await;
        assert_eq!(kit::metric_value(&m, &in_flight), bound as f64);
        assert!(
            kit::metric_value(&m, &consumed) <= bound as f64 + 10.0,
            "consumed past the bound"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_after = herald.rss_kib();
    println!("rss before {rss_before} KiB, after {rss_after} KiB");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew by {} KiB while paused",
        rss_after - rss_before
    );
    s.rx.release();
    s.rx.wait_delivered(3000, Duration::from_secs(120)).await;
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 3000
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_dead_lettered_with_reasons_and_the_flow_continues() {
    let s = setup("dlq").await;
    let mut herald = Herald::start(&s.config("max_message_bytes = 2000\n", ""));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let too_large = kit::alert("big", &format!(",\"pad\":\"{}\"", "x".repeat(2500)));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0xff, 0xfe, b'{'], "not_utf8"),
        (b"{\"alert\": {".to_vec(), "not_json"),
        (b"[1,2,3]".to_vec(), "not_object"),
        (
            b"{\"hello\":\"PAYLOAD-MARKER-42\"}".to_vec(),
            "unknown_shape",
        ),
        (too_large.into_bytes(), "too_large"),
        (
            b"{\"alert\":{\"id\":\"x\",\"policy\":{\"severity\":\"NOPE\"}}}".to_vec(),
            "invalid_alert",
        ),
        (b"{\"audit\":[]}".to_vec(), "invalid_audit"),
    ];
    for (value, _) in &cases {
        kit::produce_to(&p, &s.topic, 0, value).await;
    }
    kit::produce_to(&p, &s.topic, 0, kit::alert("valid-after", "").as_bytes()).await;

    let got = s.rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert!(got[0].text().contains("\"valid-after\""));
    let records = kit::read_records(&s.dlq, cases.len(), Duration::from_secs(20)).await;
    assert_eq!(records.len(), cases.len());
    // Dead-letter writes run concurrently; order the records by source offset.
    let mut records: Vec<serde_json::Value> = records
        .iter()
        .map(|raw| serde_json::from_slice(raw).unwrap())
        .collect();
    records.sort_by_key(|r| r["offset"].as_i64());
    for (i, ((value, reason), r)) in cases.iter().zip(&records).enumerate() {
        assert_eq!(r["kind"], "invalid_input");
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{reason}: ")),
            "{r}"
        );
        assert_eq!(r["topic"], s.topic.as_str());
        assert_eq!(r["partition"], 0);
        assert_eq!(r["offset"], i as i64);
        assert_eq!(r["attempts"], 0);
        match std::str::from_utf8(value) {
            Ok(text) => assert_eq!(r["value"], text),
            Err(_) => assert_eq!(r["value_base64"], "//57"),
        }
    }
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 8
        })
        .await
    );
    let m = herald.metrics().await;
    for (_, reason) in &cases {
        assert_eq!(
            kit::metric_value(
                &m,
                &format!(r#"herald_invalid_messages_total{{reason="{reason}"}}"#)
            ),
            1.0
        );
    }
    assert_eq!(
        kit::metric_value(&m, r#"herald_dead_letters_total{kind="invalid_input"}"#),
        7.0
    );
    assert!(
        !herald.log().contains("PAYLOAD-MARKER-42"),
        "payload in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_alert_age_skips_old_alerts_on_a_first_start() {
    let s = setup("age").await;
    let p = kit::producer();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    kit::produce_to(
        &p,
        &s.topic,
        0,
        kit::alert("old", ",\"time\":\"2024-05-01T12:03:17.451Z\"").as_bytes(),
    )
    .await;
    kit::produce_to(
        &p,
        &s.topic,
        0,
        kit::alert("fresh", &format!(",\"time\":\"{now}\"")).as_bytes(),
    )
    .await;
    kit::produce_to(&p, &s.topic, 0, kit::alert("timeless", "").as_bytes()).await;
    let mut herald = Herald::start(&s.config("max_alert_age = \"1h\"\n", ""));
    herald.wait_ready(Duration::from_secs(30)).await;
    let got = s.rx.wait_delivered(2, Duration::from_secs(20)).await;
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 3
        })
        .await
    );
    let ids: Vec<bool> = ["\"old\"", "\"fresh\"", "\"timeless\""]
        .iter()
        .map(|id| s.rx.delivered().iter().any(|r| r.text().contains(id)))
        .collect();
    assert_eq!(ids, vec![false, true, true]);
    assert_eq!(got.len(), 2);
    assert_eq!(
        herald
            .metric(r#"herald_alerts_skipped_total{reason="too_old"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_or_abandons_within_its_bound() {
    // Drains: a delivery in flight finishes within the grace period and is committed.
    let s = setup("stop").await;
    s.rx.set(Behavior::Hold("\"stop-".into()));
    let mut herald = Herald::start(&s.config("", "20s"));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    kit::produce_to(&p, &s.topic, 0, kit::alert("stop-1", "").as_bytes()).await;
    assert!(kit::eventually(Duration::from_secs(20), || async { s.rx.arrived() == 1 }).await);
    herald.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.rx.release();
    let status = herald
        .wait_exit(Duration::from_secs(15))
        .expect("exited within the bound");
    assert!(status.success(), "exit status {status:?}\n{}", herald.log());
    assert_eq!(s.committed().await, 1, "drained delivery committed at exit");

    // Abandons: a delivery still held when the grace period ends is left
    // uncommitted, and herald still exits 0 within grace + close bound.
    let s = setup("stop2").await;
    s.rx.set(Behavior::Hold("\"stop-".into()));
    let mut herald = Herald::start(&s.config("", "1s"));
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce_to(&p, &s.topic, 0, kit::alert("stop-2", "").as_bytes()).await;
    assert!(kit::eventually(Duration::from_secs(20), || async { s.rx.arrived() == 1 }).await);
    let t0 = Instant::now();
    herald.signal(libc::SIGTERM);
    let status = herald
        .wait_exit(Duration::from_secs(12))
        .expect("exited within the bound");
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status:?}");
    println!("abandoning stop took {took:?}");
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    assert_eq!(
        s.committed().await,
        0,
        "the commit stays at the abandoned message (offset 0)"
    );
    s.rx.release();
}

/// Alerts keyed otherwise than by their id are counted and warned about
/// (once), and still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_not_keyed_by_their_id_are_counted_and_warned_about_once() {
    let s = setup("keys").await;
    let mut herald = Herald::start(&s.config("", ""));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let id = |n: &str| format!("key-{n}");
    kit::produce(
        &p,
        &s.topic,
        Some(&id("a")),
        kit::alert(&id("a"), "").as_bytes(),
    )
    .await;
    kit::produce(&p, &s.topic, None, kit::alert(&id("b"), "").as_bytes()).await;
    kit::produce(
        &p,
        &s.topic,
        Some("some-other-key"),
        kit::alert(&id("c"), "").as_bytes(),
    )
    .await;
    s.rx.wait_delivered(3, Duration::from_secs(30)).await;
    let series = format!(
        r#"herald_alert_key_mismatches_total{{topic="{}"}}"#,
        s.topic
    );
    assert_eq!(herald.metric(&series).await, 2.0);
    let warned = herald
        .log()
        .matches("an alert's message key is not its alert id")
        .count();
    assert_eq!(warned, 1, "{}", herald.log());
}
