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
            .replace("{admin}", "127.0.0.1:1")
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

/// The ledger, its lock and the dead-letter file hold alerts: created 0600
/// (the state directory 0700) even under a umask of 000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_dead_letter_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let rx = Receiver::start().await;
    let s = kit::Stack::new("umask", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dlq_file = dir.path().join("dead-letters.jsonl");
    let config = s
        .config(
            &format!("dead_letter_file = \"{}\"", dlq_file.display()),
            &webhook("w", &rx.url("/hook"), ""),
        )
        .replace("{http}", &format!("127.0.0.1:{}", kit::free_port()))
        .replace("{admin}", &format!("127.0.0.1:{}", kit::free_port()))
        .replace("{state}", &state.display().to_string());
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = std::process::Command::new(kit::herald_bin());
    cmd.args(["run", "--config"]).arg(&path);
    cmd.stderr(std::process::Stdio::null());
    // SAFETY: umask only changes the child's file-creation mask.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    kit::produce_to(&kit::producer(), &s.topic, 0, b"not json").await;
    let written = kit::eventually(Duration::from_secs(30), || async {
        std::fs::metadata(&dlq_file).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(written, "no dead letter in the file");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("herald.redb")), 0o600);
    assert_eq!(mode(&state.join("herald.lock")), 0o600);
    assert_eq!(mode(&dlq_file), 0o600);
}

/// Credentials that would travel in clear are named at start (and by
/// check-config): webhook basic auth over http, SMTP AUTH without TLS, SASL
/// PLAIN without TLS. The names only: no secret in the warning.
#[test]
fn credentials_in_clear_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    let text = kit::config(
        "t",
        "t-dlq",
        "g",
        "[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"KAFKA-PW\"",
        "[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"http://siem.example.com/in/SECRET-PATH\"\nusername = \"u\"\npassword = \"WEBHOOK-PW\"\n\
         [[destinations]]\nname = \"mail\"\nid = \"n1\"\ntype = \"email\"\nserver = \"smtp.example.com:25\"\nusername = \"u\"\npassword = \"SMTP-PW\"\nsender = \"s@example.com\"\ndefault_target = \"t@example.com\"\ntls = \"none\"\n\
         [[destinations]]\nname = \"safe\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"https://siem.example.com/in\"\nusername = \"u\"\npassword = \"PW\"\n",
    )
    .replace("{http}", "127.0.0.1:0").replace("{admin}", "127.0.0.1:0")
    .replace("{state}", "/tmp/x");
    std::fs::write(&path, text).unwrap();
    let out = kit::cli(&["check-config"], &path);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: kafka.sasl: SASL PLAIN without kafka.tls: the broker password is sent in clear",
            "warning: destinations.w: the basic-auth password: sent in clear over http to http://siem.example.com",
            "warning: destinations.mail: SMTP AUTH to smtp.example.com:25 without TLS (tls = \"none\"): the password is sent in clear",
        ]
    );
    for secret in ["KAFKA-PW", "WEBHOOK-PW", "SMTP-PW", "SECRET-PATH"] {
        assert!(!stdout.contains(secret), "{secret} in {stdout}");
    }
}

/// A replayed message goes to its one destination through that
/// destination's routing: a filter that refuses it now still refuses it,
/// unless the replay is forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_honours_routing_filters_unless_forced() {
    let s = kit::Stack::new("replayf", 1).await;
    let rx = Receiver::start().await;
    rx.set(kit::receiver::Behavior::Fail(400, None));
    let mut herald = Herald::start(&s.config("", &webhook("w", &rx.url("/"), "")));
    herald.wait_ready(Duration::from_secs(30)).await;
    let value = kit::alert("rf", "");
    kit::produce_to(&kit::producer(), &s.topic, 0, value.as_bytes()).await;
    assert_eq!(
        kit::read_records(&s.dlq, 1, Duration::from_secs(20))
            .await
            .len(),
        1
    );
    // The destination now takes critical alerts only; this one is HIGH.
    herald.rewrite_config(&s.config(
        "",
        &webhook("w", &rx.url("/"), "min_severity = \"critical\""),
    ));
    herald.signal(libc::SIGHUP);
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            herald.log().contains("configuration reloaded")
        })
        .await
    );
    rx.set(kit::receiver::Behavior::Accept);
    let replay = |extra: &[&str]| {
        let mut args = vec!["dlq", "replay", "--destination", "w"];
        args.extend_from_slice(extra);
        let out = kit::cli(&args, &herald.config);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    replay(&[]);
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            kit::committed(&s.group, &s.topic, 1).await[0] == 2
        })
        .await
    );
    assert!(rx.delivered().is_empty(), "the filter refuses the replay");
    replay(&["--force"]);
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].text(), format!("{{\"alert\": {value}}}"));
}
