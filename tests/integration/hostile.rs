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

/// A deployment annotation cannot steer credentials anywhere: the webhook's
/// annotation URLs must be in `allowed_targets` (none by default), private
/// and link-local addresses are refused unless an entry names them, and a
/// redirect is not followed. Refused targets are dead-lettered as
/// `target_not_allowed` and `explain` says so. Allowed ones get the
/// configured credentials; the namespace step works for the webhook too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_urls_are_allow_listed_and_credentials_never_leave() {
    use kit::receiver::Behavior;
    let default = Receiver::start().await;
    let team = Receiver::start().await;
    let stranger = Receiver::start().await;
    let redirector = Receiver::start().await;
    redirector.set(Behavior::Redirect(stranger.url("/stolen")));
    let s = kit::Stack::new("ssrf", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("ns.toml");
    std::fs::write(
        &ns,
        format!(
            "[[namespaces]]\ncluster = \"c1\"\nname = \"pay\"\nannotations = {{ \"example.com/webhook\" = \"{}\" }}\n",
            team.url("/hooks/ns-team")
        ),
    )
    .unwrap();
    let extra = format!(
        "username = \"u\"\npassword = \"BASICPW\"\nheaders = {{ X-Api-Key = \"HDRSECRET\" }}\nannotation_key = \"example.com/webhook\"\nallowed_targets = [\"{}\", \"{}\"]\nretry_max_attempts = 1",
        team.url("/hooks/"),
        redirector.url("/")
    );
    let config = format!(
        "namespace_metadata = \"{}\"\n{}",
        ns.display(),
        s.config("", &webhook("w", &default.url("/default"), &extra))
    );
    let mut herald = Herald::start(&config);
    herald.wait_ready(Duration::from_secs(30)).await;
    let alert = |id: &str, namespace: &str, url: Option<&str>| {
        let ann = url
            .map(|u| format!(r#","annotations":{{"example.com/webhook":"{u}"}}"#))
            .unwrap_or_default();
        format!(
            r#"{{"id":"{id}","policy":{{"name":"P","notifiers":["n1"]}},"deployment":{{"name":"d","namespace":"{namespace}","clusterId":"c1"{ann}}}}}"#
        )
    };
    let metadata = alert(
        "meta",
        "x",
        Some("http://169.254.169.254/latest/meta-data/"),
    );
    let inputs = [
        metadata.clone(),
        alert("elsewhere", "x", Some(&stranger.url("/x"))),
        alert("team", "x", Some(&team.url("/hooks/team"))),
        alert("ns", "pay", None),
        alert("redirect", "x", Some(&redirector.url("/r"))),
        alert("plain", "x", None),
    ];
    let p = kit::producer();
    for a in &inputs {
        kit::produce_to(&p, &s.topic, 0, a.as_bytes()).await;
    }
    let records = kit::read_records(&s.dlq, 3, Duration::from_secs(30)).await;
    let mut letters: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            (
                v["reason"].as_str().unwrap().to_string(),
                v["last_error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    letters.sort();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[0].0, "client_error");
    assert!(
        letters[0]
            .1
            .contains("a redirect, which herald does not follow"),
        "{letters:?}"
    );
    assert_eq!(
        letters[1..],
        [
            (
                "target_not_allowed".to_string(),
                "annotation example.com/webhook: http://127.0.0.1:".to_string()
                    + &stranger.addr.port().to_string()
                    + " is not in allowed_targets"
            ),
            (
                "target_not_allowed".to_string(),
                "annotation example.com/webhook: http://169.254.169.254 is not in allowed_targets"
                    .to_string()
            ),
        ]
    );
    let got = team.wait_delivered(2, Duration::from_secs(20)).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/hooks/ns-team", "/hooks/team"]);
    for r in &got {
        assert_eq!(r.header("x-api-key").as_deref(), Some("HDRSECRET"));
        assert!(r.header("authorization").unwrap().starts_with("Basic "));
    }
    assert_eq!(
        default.wait_delivered(1, Duration::from_secs(10)).await[0].path,
        "/default"
    );
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 6
        })
        .await
    );
    assert!(
        stranger.answered().is_empty(),
        "nothing reached the stranger"
    );
    // explain says the same, without the secret parts.
    let input = herald.dir.path().join("meta.json");
    std::fs::write(&input, &metadata).unwrap();
    let out = kit::cli(
        &["explain", "--input", input.to_str().unwrap()],
        &herald.config,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("  target: refused, dead-lettered as target_not_allowed: annotation example.com/webhook: http://169.254.169.254 is not in allowed_targets (annotation key \"example.com/webhook\", decided by the deployment annotation)\n"),
        "{text}"
    );
    let log = herald.log();
    for secret in ["BASICPW", "HDRSECRET", "meta-data", "/hooks/team"] {
        assert!(!log.contains(secret) && !text.contains(secret), "{secret}");
    }
}

/// Annotation values are anyone's: each valid one gets a lane only up to
/// `max_targets`, idle lanes give way, the rest park and are delivered later;
/// metrics name targets by a short hash, never by value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_annotation_values_get_bounded_lanes_and_hashed_labels() {
    let rx = Receiver::start().await;
    let s = kit::Stack::new("lanes", 1).await;
    let extra = format!(
        "annotation_key = \"team\"\nallowed_targets = [\"{}\"]\nmax_targets = 8\npark_retry_min = \"200ms\"\npark_retry_max = \"500ms\"",
        rx.url("/t/")
    );
    let mut herald = Herald::start(&s.config("", &webhook("w", &rx.url("/default"), &extra)));
    herald.wait_ready(Duration::from_secs(30)).await;
    let n = 40;
    let p = kit::producer();
    for i in 0..n {
        let a = format!(
            r#"{{"id":"lane-{i}","policy":{{"notifiers":["n1"]}},"deployment":{{"name":"d","annotations":{{"team":"{}"}}}}}}"#,
            rx.url(&format!("/t/{i}"))
        );
        kit::produce_to(&p, &s.topic, 0, a.as_bytes()).await;
    }
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let all = kit::eventually(Duration::from_secs(90), || {
        let rx = rx.clone();
        let most = most.clone();
        let metrics = herald.metrics();
        async move {
            let m = metrics.await;
            let lanes = m
                .lines()
                .filter(|l| l.starts_with("herald_breaker_state{destination=\"w\""))
                .count();
            most.fetch_max(lanes, std::sync::atomic::Ordering::Relaxed);
            assert!(!m.contains("/t/"), "a target value in the metrics");
            rx.delivered().len() >= n
        }
    })
    .await;
    assert!(all, "{} of {n} delivered", rx.delivered().len());
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(most <= 9, "{most} lane series (8 targets and the default)");
    let parked = herald
        .metric(r#"herald_deliveries_total{destination="w",outcome="parked"}"#)
        .await;
    assert!(parked > 0.0, "some waited for a lane");
    let mut paths: Vec<String> = rx.delivered().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n, "each target once");
}

/// `/v1/parked` and `/v1/ledger` are on the admin listener (loopback by
/// default), not next to `/metrics`; with a token they need it; pages are
/// bounded; listings show no target secret and no alert value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_separate_authenticated_paged_and_redacted() {
    let rx = Receiver::start().await;
    rx.set(kit::receiver::Behavior::Fail(503, None));
    let s = kit::Stack::new("admin", 1).await;
    let extra = format!(
        "annotation_key = \"team\"\nallowed_targets = [\"{}\"]\nretry_max_attempts = 1\npark_retry_min = \"1h\"\npark_retry_max = \"1h\"",
        rx.url("/t/")
    );
    let config = s
        .config("", &webhook("w", &rx.url("/default"), &extra))
        .replace("[admin]\n", "[admin]\ntoken = \"ADMINTOKEN\"\n");
    let mut herald = Herald::start(&config);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for i in 0..5 {
        let a = format!(
            r#"{{"id":"adm-{i}","policy":{{"notifiers":["n1"],"description":"VALUEMARKER"}},"deployment":{{"name":"d","annotations":{{"team":"{}"}}}}}}"#,
            rx.url("/t/SECRETPATH")
        );
        kit::produce_to(&p, &s.topic, 0, a.as_bytes()).await;
    }
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            s.committed().await == 5
        })
        .await
    );
    let c = reqwest::Client::new();
    let on_metrics = c.get(herald.url("/v1/parked")).send().await.unwrap();
    assert_eq!(on_metrics.status(), 404, "not on the metrics listener");
    let bare = c.get(herald.admin_url("/v1/parked")).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    let wrong = c
        .get(herald.admin_url("/v1/parked"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let page = |after: u64| {
        let c = c.clone();
        let url = herald.admin_url(&format!("/v1/parked?after={after}&limit=2"));
        async move {
            let r = c.get(url).bearer_auth("ADMINTOKEN").send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let (mut after, mut keys) = (0, Vec::new());
    for _ in 0..5 {
        let text = page(after).await;
        assert!(
            !text.contains("SECRETPATH") && !text.contains("VALUEMARKER"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rows = v["parked"].as_array().unwrap();
        assert!(rows.len() <= 2);
        for r in rows {
            assert_eq!(r["target"], format!("http://127.0.0.1:{}", rx.addr.port()));
            keys.push(r["key"].as_str().unwrap().to_string());
        }
        match v["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    keys.sort();
    assert_eq!(keys, ["adm-0", "adm-1", "adm-2", "adm-3", "adm-4"]);
    // The CLI pages through the same API (the daemon holds the ledger).
    let out = kit::cli(&["parked", "list"], &herald.config);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        listed.lines().count(),
        5,
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!listed.contains("SECRETPATH"));
}

/// A client that sends its headers slowly, or nothing, holds a connection
/// for `header_read_timeout`, not for ever; past `max_connections` new
/// clients wait for a slot instead of exhausting the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rx = Receiver::start().await;
    let s = kit::Stack::new("slowloris", 1).await;
    let config = s.config("", &webhook("w", &rx.url("/"), "")).replace(
        "[http]\n",
        "[http]\nheader_read_timeout = \"1s\"\nmax_connections = 4\n",
    );
    let mut herald = Herald::start(&config);
    herald.wait_ready(Duration::from_secs(30)).await;
    let addr = format!("127.0.0.1:{}", herald.http_port);
    // Four idle connections and one slow writer take every slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Its headers would take 10 s at one byte per 300 ms.
    let trickle = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _ = slow.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        for b in b"Host: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        started.elapsed()
    });
    // Each idle connection is closed by the server after the header timeout.
    let started = std::time::Instant::now();
    for conn in &mut idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("closed by herald")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // A well-behaved client gets its answer.
    let ok = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::get(herald.url("/healthz")),
    )
    .await
    .expect("answered")
    .unwrap();
    assert_eq!(ok.status(), 200);
    // The slow writer was cut off long before it finished its headers.
    let took = tokio::time::timeout(Duration::from_secs(15), trickle)
        .await
        .expect("slow client ended")
        .unwrap();
    assert!(
        took < Duration::from_secs(6),
        "the slow client wrote for {took:?}"
    );
}

/// `Retry-After: 18446744073709551615` used to overflow and kill a worker
/// (its key held for ever, the partition stalled). It parks the delivery
/// for the longest park interval; the stream flows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_parks_instead_of_killing_a_worker() {
    let rx = Receiver::start().await;
    rx.set(kit::receiver::Behavior::FailTimes(
        429,
        1,
        Some("18446744073709551615".into()),
    ));
    let s = kit::Stack::new("retryafter", 1).await;
    let extra = "park_retry_min = \"500ms\"\npark_retry_max = \"2s\"";
    let mut herald = Herald::start(&s.config("", &webhook("w", &rx.url("/"), extra)));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for id in ["ra-1", "ra-2", "ra-3"] {
        kit::produce_to(&p, &s.topic, 0, kit::alert(id, "").as_bytes()).await;
    }
    let got = rx.wait_delivered(3, Duration::from_secs(30)).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.header("idempotency-key").unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ra-1:ACTIVE", "ra-2:ACTIVE", "ra-3:ACTIVE"]);
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 3
        })
        .await
    );
    assert!(
        herald.wait_exit(Duration::from_millis(10)).is_none(),
        "herald died"
    );
    assert!(!herald.log().contains("panicked"));
}

/// Line breaks and other bytes from an alert cannot forge what receivers
/// see: a policy name cannot add an email header (a `Bcc:`), an alert id
/// cannot end a newline-framed syslog record and start a forged one, and a
/// non-ASCII id still makes a valid `Idempotency-Key` (before, the header
/// failed to build and the delivery parked for a day).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_cannot_forge_headers_or_records() {
    use crate::kit::service::Service;
    let smtp = Service::shared_of("smtp.sh");
    let rsyslog = Service::shared();
    let rx = Receiver::start().await;
    let s = kit::Stack::new("forge", 1).await;
    let host = kit::unique("forge");
    let marker = kit::unique("FORGED");
    let mail_before = std::fs::read_dir(smtp.get("out_plain")).map_or(0, |d| d.count());
    let destinations = format!(
        "{}[[destinations]]\nname = \"mail\"\nid = \"n1\"\ntype = \"email\"\nserver = \"127.0.0.1:{}\"\ntls = \"none\"\nallow_unauthenticated = true\nsender = \"rhacs@example.com\"\ndefault_target = \"secops@example.com\"\n\
         [[destinations]]\nname = \"lines\"\nid = \"n1\"\ntype = \"syslog\"\nhost = \"127.0.0.1\"\nport = {}\nhostname = \"{host}\"\nframing = \"newline\"\naudit = false\n",
        webhook("w", &rx.url("/"), ""),
        smtp.get("plain_port"),
        rsyslog.get("tcp_port"),
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let id = format!("été-1\n<14>1 2024-05-01T12:00:00Z forged-host app - - - {marker}");
    let alert = serde_json::json!({
        "id": id,
        "policy": {"name": "P\r\nBcc: attacker@example.com", "notifiers": ["n1"]},
        "clusterName": "c1",
        "namespace": "ns1",
        "deployment": {"name": "d1", "namespace": "ns1"},
        "time": "2024-05-01T12:00:00Z"
    });
    kit::produce_to(&kit::producer(), &s.topic, 0, alert.to_string().as_bytes()).await;
    // The webhook: delivered at once, with the key percent-encoded.
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    let key = got[0].header("idempotency-key").unwrap();
    assert!(key.starts_with("%C3%A9t%C3%A9-1%0A<14>1%20"), "{key}");
    assert!(key.ends_with(":ACTIVE"));
    assert_eq!(
        herald
            .metric(r#"herald_deliveries_total{destination="w",outcome="parked"}"#)
            .await,
        0.0
    );
    // Syslog: one record, its line break escaped; no forged record.
    let lines = rsyslog
        .wait_lines("out_tcp", &host, 1, Duration::from_secs(20))
        .await;
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("devicePayloadId=été-1\\n<14>1 2024-05-01T12:00:00Z forged-host"),
        "{}",
        lines[0]
    );
    assert_eq!(rsyslog.lines("out_tcp", &marker).len(), 1, "a forged line");
    // Email: one recipient, no Bcc header, the subject an encoded word.
    let mail = kit::eventually(Duration::from_secs(20), || async {
        std::fs::read_dir(smtp.get("out_plain")).map_or(0, |d| d.count()) >= mail_before + 2
    })
    .await;
    assert!(mail, "no message stored");
    let mut newest: Vec<std::path::PathBuf> = std::fs::read_dir(smtp.get("out_plain"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&marker)))
        .collect();
    newest.sort();
    let eml = newest.pop().expect("the message");
    let text = std::fs::read_to_string(&eml).unwrap();
    let headers = &text[..text.find("\r\n\r\n").unwrap()];
    assert!(
        !headers.to_ascii_lowercase().contains("\r\nbcc:"),
        "{headers}"
    );
    let subject = headers
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap();
    assert!(subject.starts_with("=?utf-8?b?"), "{subject}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["secops@example.com"]));
}

/// 10,000 hostile messages through the real broker — deep nesting, huge
/// strings and arrays, control characters in every string field, duplicate
/// keys, numbers out of range, lone surrogates, invalid UTF-8, wrong types,
/// hostile annotations — among valid alerts. herald stays up, every offset
/// becomes final, and every message is delivered, skipped or dead-lettered
/// with a reason: the counts add up exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_messages_are_delivered_or_dead_lettered() {
    let rx = Receiver::start().await;
    let s = kit::Stack::new("hostile10k", 3).await;
    let extra = format!(
        "all_alerts = true\nworkers = 16\nannotation_key = \"hook\"\nallowed_targets = [\"{}\"]",
        rx.url("/team/")
    );
    let mut herald = Herald::start(&s.config(
        "max_in_flight_per_partition = 5000\n",
        &webhook("all", &rx.url("/all"), &extra),
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    let n = 10_000usize;
    let mut rng = fastrand::Rng::with_seed(12);
    let ctl = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(1..12))
            .map(|_| char::from_u32(rng.u32(0..0x20)).unwrap())
            .collect()
    };
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("h-{i}");
        let v: Vec<u8> = match i % 12 {
            0 => {
                let depth = [50, 127, 129, 1000, 20_000][rng.usize(0..5)];
                format!(
                    r#"{{"alert":{{"id":"{id}","policy":{{}},"deep":{}{}}}}}"#,
                    "[".repeat(depth),
                    "]".repeat(depth)
                )
                .into_bytes()
            }
            1 => {
                let len = if i % 240 == 1 { 200_000 } else { rng.usize(1..5000) };
                format!(r#"{{"id":"{id}","policy":{{"name":"{}"}}}}"#, "x".repeat(len)).into_bytes()
            }
            2 => {
                let items = (0..rng.usize(1..3000))
                    .map(|k| format!(r#"{{"message":"v{k}"}}"#))
                    .collect::<Vec<_>>()
                    .join(",");
                format!(r#"{{"id":"{id}","policy":{{}},"violations":[{items}]}}"#).into_bytes()
            }
            3 => serde_json::json!({
                "id": format!("{id}{}", ctl(&mut rng)),
                "policy": {"name": ctl(&mut rng), "description": ctl(&mut rng), "categories": [ctl(&mut rng)]},
                "clusterName": ctl(&mut rng),
                "namespace": ctl(&mut rng),
                "deployment": {"name": ctl(&mut rng), "namespace": ctl(&mut rng),
                    "annotations": {ctl(&mut rng): ctl(&mut rng), "hook": ctl(&mut rng)},
                    "labels": {ctl(&mut rng): ctl(&mut rng)}},
                "violations": [{"message": ctl(&mut rng)}],
                "time": "2024-05-01T12:00:00Z"
            })
            .to_string()
            .into_bytes(),
            4 => format!(r#"{{"id":"{id}","id":"{id}-dup","policy":{{}},"policy":{{"name":"p"}}}}"#).into_bytes(),
            5 => format!(
                r#"{{"id":"{id}","policy":{{"severity":{}}},"firstOccurred":99999999999999999999999,"time":1e400}}"#,
                ["1e400", "-1", "99999999999999999999", "3.5"][rng.usize(0..4)]
            )
            .into_bytes(),
            6 => format!(r#"{{"id":"{id}\ud800","policy":{{"name":"\udc00\ud800x"}}}}"#).into_bytes(),
            7 => {
                let mut b = format!(r#"{{"id":"{id}","policy":{{"name":""#).into_bytes();
                b.extend([0xff, 0xfe, 0xc0, 0x80]);
                b.extend(br#""}}"#);
                b
            }
            8 => [
                format!(r#"{{"id":{i},"policy":{{}}}}"#),
                format!(r#"{{"id":"{id}","policy":[]}}"#),
                format!(r#"{{"alert":"{id}"}}"#),
                format!(r#"{{"audit":{{"status":{i},"user":"{id}"}}}}"#),
            ][rng.usize(0..4)]
            .clone()
            .into_bytes(),
            9 => {
                let hook = [
                    rx.url(&format!("/team/{i}")),
                    "http://169.254.169.254/latest/meta-data/".to_string(),
                    format!("https://evil.example.com/{i}"),
                    String::new(),
                    "not a url \r\n".to_string(),
                ][rng.usize(0..5)]
                .clone();
                serde_json::json!({"id": id, "policy": {}, "deployment": {"name": "d", "annotations": {"hook": hook}}})
                    .to_string()
                    .into_bytes()
            }
            10 => {
                let mut b = kit::alert(&id, "").into_bytes();
                let cut = rng.usize(1..b.len());
                b.truncate(cut);
                b
            }
            _ => kit::alert(&id, "").into_bytes(),
        };
        values.push(v);
    }
    let p = kit::producer_with(&kit::brokers(), &[("message.max.bytes", "2000000")]);
    for chunk in values.chunks(500) {
        let sends = chunk.iter().map(|v| {
            let (p, topic) = (p.clone(), s.topic.clone());
            async move { kit::produce(&p, &topic, None, v).await }
        });
        futures::future::join_all(sends).await;
    }
    let final_offsets = s.committed_all(3, n, Duration::from_secs(180)).await;
    assert!(
        final_offsets,
        "committed {:?} of {n}; log tail:\n{}",
        kit::committed(&s.group, &s.topic, 3).await,
        herald
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        herald.wait_exit(Duration::from_millis(10)).is_none(),
        "herald died"
    );
    assert!(!herald.log().contains("panicked"));
    let m = herald.metrics().await;
    let sum = |prefix: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
            .sum()
    };
    let invalid = sum("herald_invalid_messages_total{");
    let outcome = |o: &str| {
        kit::metric_value(
            &m,
            &format!(r#"herald_deliveries_total{{destination="all",outcome="{o}"}}"#),
        )
    };
    let (delivered, skipped, parked, dead) = (
        outcome("delivered"),
        outcome("skipped"),
        outcome("parked"),
        outcome("dead_lettered"),
    );
    println!(
        "hostile: {n} messages: {invalid} invalid (dead-lettered), {delivered} delivered, {skipped} skipped, {parked} parked, {dead} dead-lettered at the destination; {} requests received",
        rx.delivered().len()
    );
    assert!(invalid > 0.0 && delivered > 0.0 && dead > 0.0);
    assert_eq!(parked, 0.0, "the receiver accepts everything");
    assert_eq!(
        invalid + delivered + skipped + dead,
        n as f64,
        "every message accounted for exactly once"
    );
    assert_eq!(rx.delivered().len() as f64, delivered);
    // Every dead letter is on the topic with a reason.
    let letters =
        kit::read_records(&s.dlq, (invalid + dead) as usize, Duration::from_secs(60)).await;
    assert_eq!(letters.len() as f64, invalid + dead);
    for l in &letters {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        let reason = v["reason"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "a dead letter without a reason: {v}");
    }
}
