//! Hostile input and impolite receivers (issue 12): what a message, an
//! annotation or a receiver sends costs herald a dead letter at most, never a
//! crash, a stalled partition or a leaked credential. herald runs as a child
//! process against the real broker.

use std::time::Duration;

use crate::kit::{self, Herald, Receiver};

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n"
    )
}

/// A 200,000-deep alert (400 KB, within the size limit) is dead-lettered as
/// `too_deep`; herald stays up and the next alert is delivered. Before, the
/// converter recursed once per level and the process died of a stack
/// overflow on every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_alert_is_dead_lettered_not_a_crash() {
    let rx = Receiver::start().await;
    let s = kit::Stack::new("deep", 1).await;
    let syslog = "[[destinations]]\nname = \"siem\"\nid = \"n1\"\ntype = \"syslog\"\nhost = \"127.0.0.1\"\nport = 9\n";
    let config = s.config("", &webhook("w", &rx.url("/hook"), ""));
    let mut herald = Herald::start(&config);
    herald.wait_ready(Duration::from_secs(30)).await;
    let n = 200_000;
    let deep = format!(
        r#"{{"alert":{{"id":"deep","policy":{{"notifiers":["n1"]}},"time":"2024-05-01T12:00:00Z","deep":{}{}}}}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let p = kit::producer();
    kit::produce_to(&p, &s.topic, 0, deep.as_bytes()).await;
    kit::produce_to(&p, &s.topic, 0, kit::alert("after-deep", "").as_bytes()).await;
    let got = rx.wait_delivered(1, Duration::from_secs(30)).await;
    assert!(got[0].text().contains("\"after-deep\""));
    let records = kit::read_records(&s.dlq, 1, Duration::from_secs(20)).await;
    let r: serde_json::Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(r["kind"], "invalid_input");
    assert_eq!(
        r["reason"],
        "too_deep: nested deeper than 128 levels at byte 215"
    );
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 2
        })
        .await
    );
    assert_eq!(
        herald
            .metric(r#"herald_invalid_messages_total{reason="too_deep"}"#)
            .await,
        1.0
    );
    assert!(
        herald.wait_exit(Duration::from_millis(10)).is_none(),
        "herald exited"
    );

    // The CLI takes the same path: an error, not an abort.
    let input = herald.dir.path().join("deep.json");
    std::fs::write(&input, &deep).unwrap();
    let with_syslog = herald.dir.path().join("syslog.toml");
    std::fs::write(
        &with_syslog,
        format!("{config}{syslog}")
            .replace("{http}", "127.0.0.1:1")
            .replace("{state}", "/tmp/herald-deep-state"),
    )
    .unwrap();
    let out = kit::cli(
        &[
            "render",
            "--destination",
            "siem",
            "--input",
            input.to_str().unwrap(),
        ],
        &with_syslog,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "herald render: invalid message: too_deep: nested deeper than 128 levels at byte 215\n"
    );
}

/// A 2 MiB invalid message (herald accepts up to 4 MiB) is dead-lettered as
/// a bounded record — coordinates, size, SHA-256 and its first bytes — that
/// fits the dead-letter topic's default 1 MB limit. Before, the whole value
/// went into the record, the broker refused it, and herald retried forever:
/// the partition stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_dead_letter_topic_is_cut_and_the_partition_moves() {
    let rx = Receiver::start().await;
    let brokers = kit::brokers();
    let topic = kit::unique("bigdl-in");
    let dlq = kit::unique("bigdl-dlq");
    let group = kit::unique("bigdl-g");
    kit::create_topic_with(&brokers, &topic, 1, &[("max.message.bytes", "5000000")]).await;
    kit::create_topic_on(&brokers, &dlq, 1).await;
    let mut herald = Herald::start(&kit::config(
        &topic,
        &dlq,
        &group,
        "",
        &webhook("w", &rx.url("/hook"), ""),
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer_with(&brokers, &[("message.max.bytes", "5000000")]);
    // Not JSON, 2 MiB, with bytes JSON must escape (6 bytes each).
    let mut big = b"{\"alert\":".to_vec();
    big.extend(std::iter::repeat_n(0x01u8, 2 << 20));
    kit::produce_to(&p, &topic, 0, &big).await;
    kit::produce_to(&p, &topic, 0, kit::alert("after-big", "").as_bytes()).await;
    let got = rx.wait_delivered(1, Duration::from_secs(30)).await;
    assert!(got[0].text().contains("\"after-big\""));
    let records = kit::read_records(&dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1, "{}", herald.log());
    assert!(records[0].len() <= 900_000, "{} bytes", records[0].len());
    let r: serde_json::Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(r["kind"], "invalid_input");
    assert_eq!(r["reason"], "not_json: line 1 column 10: syntax error");
    assert_eq!(r["value_truncated"], true);
    assert_eq!(r["value_size"], big.len() as u64);
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&big)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r["value_sha256"], digest.as_str());
    let head = r["value"].as_str().unwrap().as_bytes();
    assert!(!head.is_empty() && big.starts_with(head));
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            kit::committed(&group, &topic, 1).await[0] == 2
        })
        .await
    );
}
