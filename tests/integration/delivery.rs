//! The delivery layer against the real broker and controllable receivers:
//! notify-once across kill -9, retries, Retry-After, dead letters and replay,
//! isolation between destinations, rate limits, parking, and resolutions.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::kit::receiver::{Behavior, Recorded};
use crate::kit::{self, Herald, Receiver};

fn dest(name: &str, url: &str, extra: &str) -> String {
    format!("[[destinations]]\nname = \"{name}\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n")
}

fn keys(got: &[Recorded]) -> Vec<String> {
    got.iter()
        .map(|r| r.header("idempotency-key").unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_notifies_nothing_twice() {
    let s = kit::Stack::new("k9", 3).await;
    let rx = Receiver::start().await;
    let max_in_flight = 2000;
    let cfg = s.config(
        &format!("max_in_flight = {max_in_flight}\nmax_in_flight_per_partition = 1000\n"),
        &dest("w", &rx.url("/"), "workers = 8\nqueue_size = 2000"),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let n = 10_000;
    let p = kit::producer();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| kit::alert(&format!("k9-{i}"), ""))
            .collect();
        let sends: Vec<_> = values
            .iter()
            .zip(chunk)
            .map(|(v, i)| {
                let key = format!("k9-{i}");
                let p = p.clone();
                let topic = s.topic.clone();
                let v = v.clone();
                async move { kit::produce(&p, &topic, Some(&key), v.as_bytes()).await }
            })
            .collect();
        futures::future::join_all(sends).await;
    }
    // Kill in the middle of the stream.
    assert!(
        kit::eventually(Duration::from_secs(60), || async {
            rx.delivered().len() >= 3000
        })
        .await
    );
    herald.kill9();
    let at_kill = rx.delivered().len();
    herald.spawn();
    let got = rx.wait_delivered(n, Duration::from_secs(180)).await;
    // Let anything still in flight land before counting.
    let settled = s.committed_all(3, n, Duration::from_secs(10)).await;
    assert!(settled, "offsets did not reach the end");
    let got = if rx.delivered().len() > got.len() {
        rx.delivered()
    } else {
        got
    };
    let distinct: HashSet<String> = keys(&got).into_iter().collect();
    let resent = got.len() - distinct.len();
    println!("kill -9 after {at_kill} deliveries: {} requests, {} distinct alerts, {resent} raw re-sends", got.len(), distinct.len());
    assert_eq!(distinct.len(), n, "every alert delivered");
    let expected: HashSet<String> = (0..n).map(|i| format!("k9-{i}:ACTIVE")).collect();
    assert_eq!(distinct, expected);
    assert!(
        resent <= max_in_flight,
        "{resent} re-sends exceed the in-flight bound {max_in_flight}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_the_offset_waits_for_the_delivery() {
    let s = kit::Stack::new("r503", 1).await;
    let rx = Receiver::start().await;
    rx.set(Behavior::FailTimes(503, 4, None));
    let cfg = s.config(
        "",
        &dest(
            "w",
            &rx.url("/"),
            "retry_min_delay = \"400ms\"\nretry_max_delay = \"400ms\"\nretry_max_attempts = 10",
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce_to(
        &kit::producer(),
        &s.topic,
        0,
        kit::alert("r503", "").as_bytes(),
    )
    .await;
    // While the receiver fails, the offset stays at the alert.
    assert!(kit::eventually(Duration::from_secs(10), || async { rx.arrived() >= 2 }).await);
    assert!(rx.delivered().is_empty());
    assert!(s.committed().await <= 0);
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(rx.answered().len(), 5, "4 failures then the delivery");
    assert!(got[0].text().contains("\"r503\""));
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 1
        })
        .await
    );
    let m = herald.metrics().await;
    assert_eq!(
        kit::metric_value(
            &m,
            r#"herald_delivery_failures_total{destination="w",reason="server_error"}"#
        ),
        4.0
    );
    assert_eq!(
        kit::metric_value(&m, r#"herald_delivery_retries_total{destination="w"}"#),
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let s = kit::Stack::new("ra", 1).await;
    let rx = Receiver::start().await;
    rx.set(Behavior::FailTimes(429, 1, Some("2".into())));
    let cfg = s.config("", &dest("w", &rx.url("/"), "retry_min_delay = \"50ms\""));
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce_to(
        &kit::producer(),
        &s.topic,
        0,
        kit::alert("ra", "").as_bytes(),
    )
    .await;
    rx.wait_delivered(1, Duration::from_secs(20)).await;
    let answered = rx.answered();
    assert_eq!(
        answered.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let gap = answered[1].at - answered[0].at;
    println!("second attempt {gap:?} after the 429");
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert_eq!(
        herald
            .metric(r#"herald_delivery_failures_total{destination="w",reason="rate_limited"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_is_dead_lettered_and_replay_delivers_it() {
    let s = kit::Stack::new("p400", 1).await;
    let rx = Receiver::start().await;
    rx.set(Behavior::Fail(400, None));
    let cfg = s.config("", &dest("w", &rx.url("/"), ""));
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let value = kit::alert("p400", "");
    kit::produce_to(&kit::producer(), &s.topic, 0, value.as_bytes()).await;
    let records = kit::read_records(&s.dlq, 1, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 1);
    let r: serde_json::Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(r["kind"], "delivery_failed");
    assert_eq!(r["reason"], "client_error");
    assert_eq!(r["destination"], "w");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["offset"], 0);
    assert_eq!(r["value"], value.as_str());
    assert!(
        r["last_error"]
            .as_str()
            .unwrap()
            .contains("400 Bad Request"),
        "{r}"
    );
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            s.committed().await == 1
        })
        .await
    );
    assert_eq!(rx.answered().len(), 1, "a 4xx is not retried");

    let cli = |args: &[&str]| {
        let out = kit::cli(args, &herald.config);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["dlq", "list"]);
    assert!(
        listed.contains(&format!(
            "delivery_failed\tw\t{}/0@0\tattempts=1\tclient_error",
            s.topic
        )),
        "{listed}"
    );

    rx.set(Behavior::Accept);
    assert_eq!(
        cli(&["dlq", "replay", "--destination", "w"]),
        "replayed 1 delivery failure(s) to w\n"
    );
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].text(), format!("{{\"alert\": {value}}}"));
    assert_eq!(
        got[0].header("idempotency-key").as_deref(),
        Some("p400:ACTIVE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_does_not_stall_a_healthy_one_and_the_rate_limit_holds() {
    let s = kit::Stack::new("iso", 2).await;
    let healthy = Receiver::start().await;
    let dead = Receiver::start().await;
    dead.set(Behavior::Fail(503, None));
    let rate = 50;
    let burst = 10;
    let destinations = format!(
        "{}{}",
        dest(
            "healthy",
            &healthy.url("/"),
            &format!("rate_limit = {rate}\nrate_burst = {burst}")
        ),
        dest(
            "dead",
            &dead.url("/"),
            "retry_min_delay = \"50ms\"\nretry_max_attempts = 2\nbreaker_failures = 3"
        )
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for i in 0..1500 {
        kit::produce(
            &p,
            &s.topic,
            Some(&format!("iso-{i}")),
            kit::alert(&format!("iso-{i}"), "").as_bytes(),
        )
        .await;
    }
    // Measure the healthy destination over 10 s windows once it is flowing.
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            healthy.delivered().len() >= 20
        })
        .await
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let got = healthy.delivered();
    let start = got[19].at;
    let window: Vec<&Recorded> = got
        .iter()
        .filter(|r| r.at >= start && r.at < start + Duration::from_secs(10))
        .collect();
    let second: Vec<&Recorded> = got
        .iter()
        .filter(|r| {
            r.at >= start + Duration::from_secs(1) && r.at < start + Duration::from_secs(11)
        })
        .collect();
    println!(
        "healthy: {} and {} deliveries in two 10 s windows at {rate}/s (burst {burst}); dead: {} attempts; measured for {:?}",
        window.len(),
        second.len(),
        dead.arrived(),
        t0.elapsed()
    );
    for w in [window.len(), second.len()] {
        assert!(
            w >= rate * 10 * 8 / 10,
            "healthy destination got {w}, below 80 % of its rate"
        );
        assert!(
            w <= (rate * 10 + burst) * 12 / 10,
            "healthy destination got {w}, above its limit + burst + 20 %"
        );
    }
    // The dead one was tried, then parked its deliveries instead of blocking.
    assert!(dead.arrived() >= 3);
    assert!(
        herald
            .metric(r#"herald_deliveries_total{destination="dead",outcome="parked"}"#)
            .await
            >= 100.0
    );
    assert_eq!(
        herald
            .metric(r#"herald_breaker_state{destination="dead",target=""}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_deliveries_survive_a_restart_and_a_resolution_follows_its_trigger() {
    let s = kit::Stack::new("park", 1).await;
    let rx = Receiver::start().await;
    rx.set(Behavior::Fail(503, None));
    let cfg = s.config(
        "",
        &dest(
            "w",
            &rx.url("/"),
            "send_resolved = true\nretry_min_delay = \"50ms\"\nretry_max_attempts = 2\npark_retry_min = \"1s\"\npark_retry_max = \"1s\"",
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let trigger = kit::alert("pk-1", "");
    let resolved = kit::alert("pk-1", ",\"state\":\"RESOLVED\"");
    kit::produce_to(&p, &s.topic, 0, trigger.as_bytes()).await;
    kit::produce_to(&p, &s.topic, 0, resolved.as_bytes()).await;
    // Both parked: the offsets move on.
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            s.committed().await == 2
        })
        .await
    );
    let out = kit::cli(&["parked", "list"], &herald.config);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        listed.lines().count(),
        2,
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listed.lines().all(|l| l.starts_with("w\tpk-1\t")),
        "{listed}"
    );

    herald.kill9();
    rx.set(Behavior::Accept);
    let before = rx.delivered().len();
    assert_eq!(before, 0);
    herald.spawn();
    let got = rx.wait_delivered(2, Duration::from_secs(30)).await;
    assert_eq!(
        keys(&got),
        vec!["pk-1:ACTIVE", "pk-1:RESOLVED"],
        "the resolution after its trigger"
    );
    assert_eq!(got[0].text(), format!("{{\"alert\": {trigger}}}"));
    assert_eq!(got[1].text(), format!("{{\"alert\": {resolved}}}"));
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            herald
                .metric(r#"herald_parked_deliveries{destination="w",target=""}"#)
                .await
                == 0.0
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.delivered().len(), 2, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_reaches_a_resolvable_destination_once_and_never_others() {
    let s = kit::Stack::new("res", 1).await;
    let plain = Receiver::start().await;
    let resolving = Receiver::start().await;
    let destinations = format!(
        "{}{}",
        dest("plain", &plain.url("/"), ""),
        dest("resolving", &resolving.url("/"), "send_resolved = true")
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for v in [
        kit::alert("res-a", ""),
        kit::alert("res-a", ",\"state\":\"RESOLVED\""),
        kit::alert("res-a", ",\"state\":\"RESOLVED\""),
        kit::alert("res-b", ",\"state\":\"RESOLVED\""),
        kit::alert("res-a", ""),
    ] {
        kit::produce_to(&p, &s.topic, 0, v.as_bytes()).await;
    }
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            s.committed().await == 5
        })
        .await
    );
    assert_eq!(keys(&plain.delivered()), vec!["res-a:ACTIVE"]);
    assert_eq!(
        keys(&resolving.delivered()),
        vec!["res-a:ACTIVE", "res-a:RESOLVED"]
    );
    let m = herald.metrics().await;
    // resolving skipped: the second RESOLVED of a, b (never notified), the late ACTIVE of a.
    assert_eq!(
        kit::metric_value(
            &m,
            r#"herald_deliveries_total{destination="resolving",outcome="skipped"}"#
        ),
        3.0
    );
    // plain: RESOLVED alerts are not routed to it; the late ACTIVE is skipped.
    assert_eq!(
        kit::metric_value(
            &m,
            r#"herald_deliveries_total{destination="plain",outcome="skipped"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_overrides_park_max_age_and_the_dead_letter_file() {
    let s = kit::Stack::new("age", 1).await;
    let overridden = Receiver::start().await;
    overridden.set(Behavior::Fail(503, None));
    let dead = Receiver::start().await;
    dead.set(Behavior::Fail(502, None));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dlq.jsonl");
    let destinations = format!(
        "{}{}",
        // 503 is retryable by default; this destination gives up on it at once.
        dest("overridden", &overridden.url("/"), "permanent_statuses = [503]"),
        // Parked deliveries older than 2 s are dead-lettered.
        dest(
            "dead",
            &dead.url("/"),
            "retry_min_delay = \"50ms\"\nretry_max_attempts = 2\npark_retry_min = \"500ms\"\npark_retry_max = \"500ms\"\npark_max_age = \"2s\""
        )
    );
    let cfg = s.config(
        &format!("dead_letter_file = \"{}\"\n", file.display()),
        &destinations,
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce_to(
        &kit::producer(),
        &s.topic,
        0,
        kit::alert("age-1", "").as_bytes(),
    )
    .await;
    let records = kit::read_records(&s.dlq, 2, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 2);
    let mut by_dest: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    by_dest.sort_by_key(|r| r["destination"].as_str().unwrap().to_string());
    let (dead_rec, over_rec) = (&by_dest[0], &by_dest[1]);
    assert_eq!(over_rec["destination"], "overridden");
    assert_eq!(over_rec["reason"], "server_error");
    assert_eq!(over_rec["attempts"], 1);
    assert_eq!(overridden.answered().len(), 1, "not retried");
    assert_eq!(dead_rec["destination"], "dead");
    assert!(dead_rec["attempts"].as_u64().unwrap() >= 4, "{dead_rec}");
    assert!(
        dead_rec["last_error"]
            .as_str()
            .unwrap()
            .starts_with("parked for "),
        "{dead_rec}"
    );
    // The same records in the local file, and `dlq list --file` reads it.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let out = kit::cli(
        &["dlq", "list", "--json", "--file", file.to_str().unwrap()],
        &herald.config,
    );
    let listed: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed, lines);
    let parked = r#"herald_parked_deliveries{destination="dead",target=""}"#;
    assert!(
        kit::eventually(Duration::from_secs(5), || async {
            herald.metric(parked).await == 0.0
        })
        .await
    );
}

/// Unmounts the tmpfs even when the test fails.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_dispatch_until_it_has_room_and_nothing_is_lost() {
    let s = kit::Stack::new("full", 1).await;
    let rx = Receiver::start().await;
    rx.set(Behavior::Fail(503, None));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    let _guard = Tmpfs(state.clone());
    let cfg = s
        .config(
            "",
            &dest(
                "w",
                &rx.url("/"),
                "retry_max_attempts = 1\nbreaker_failures = 1\nbreaker_cooldown = \"1s\"\npark_retry_min = \"500ms\"\npark_retry_max = \"1s\"",
            ),
        )
        .replace(
            "state_dir = \"{state}\"",
            &format!("state_dir = \"{}\"", state.display()),
        );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    // Every delivery parks (value included) until the 2 MiB disk is full.
    let p = kit::producer();
    let pad = format!(",\"pad\":\"{}\"", "x".repeat(4000));
    for i in 0..1000 {
        kit::produce_to(
            &p,
            &s.topic,
            0,
            kit::alert(&format!("full-{i}"), &pad).as_bytes(),
        )
        .await;
    }
    let ready = herald.url("/readyz");
    let failed = kit::eventually(Duration::from_secs(120), || {
        let ready = ready.clone();
        async move {
            match reqwest::get(&ready).await {
                Ok(r) => {
                    r.status() == 503
                        && r.text()
                            .await
                            .unwrap_or_default()
                            .contains("ledger store failed")
                }
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(
        failed,
        "readyz did not report the store failure; herald's log:\n{}",
        herald.log()
    );
    assert_eq!(herald.metric("herald_ledger_healthy").await, 0.0);
    let stuck = s.committed().await;
    assert!(stuck < 1000, "commits stopped before the end: {stuck}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.committed().await, stuck, "no commit after the failure");
    assert!(
        herald.log().contains("ledger store failure"),
        "no clear error in the log"
    );
    // Nothing is sent while the store cannot record it.
    let sent = rx.answered().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.answered().len(), sent, "sends went on after the failure");
    // Room again: herald finds out by itself, reads again what it abandoned,
    // and delivers every alert once.
    rx.set(Behavior::Accept);
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(grown.success());
    assert!(
        kit::eventually(Duration::from_secs(90), || async {
            s.committed().await == 1000
        })
        .await,
        "committed {}; log:\n{}",
        s.committed().await,
        herald.log()
    );
    assert_eq!(herald.metric("herald_ledger_healthy").await, 1.0);
    assert!(herald.log().contains("ledger store works again"));
    let distinct = || {
        rx.delivered()
            .iter()
            .map(|r| r.header("idempotency-key").unwrap())
            .collect::<std::collections::HashSet<String>>()
            .len()
    };
    assert!(
        kit::eventually(Duration::from_secs(120), || async { distinct() == 1000 }).await,
        "{} of 1000 delivered after the disk had room",
        distinct()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_targets_are_isolated() {
    let s = kit::Stack::new("tgt", 1).await;
    let dead = Receiver::start().await;
    dead.set(Behavior::Fail(503, None));
    let healthy = Receiver::start().await;
    let fallback = Receiver::start().await;
    let cfg = s.config(
        "",
        &dest(
            "team-hooks",
            &fallback.url("/default"),
            &format!(
                "annotation_key = \"example.com/webhook\"\nallowed_targets = [\"{}\", \"{}\"]\nworkers = 2\nretry_min_delay = \"50ms\"\nretry_max_attempts = 2\nbreaker_failures = 2",
                dead.url("/team-a"),
                healthy.url("/team-b")
            ),
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let alert = |id: &str, url: Option<&str>| {
        let annotations = url
            .map(|u| format!(r#","annotations":{{"example.com/webhook":"{u}"}}"#))
            .unwrap_or_default();
        format!(
            r#"{{"id":"{id}","policy":{{"name":"P","notifiers":["n1"]}},"deployment":{{"name":"d","namespace":"ns"{annotations}}}}}"#
        )
    };
    let p = kit::producer();
    let n = 200;
    for i in 0..n {
        kit::produce_to(
            &p,
            &s.topic,
            0,
            alert(&format!("dead-{i}"), Some(&dead.url("/team-a"))).as_bytes(),
        )
        .await;
        kit::produce_to(
            &p,
            &s.topic,
            0,
            alert(&format!("ok-{i}"), Some(&healthy.url("/team-b"))).as_bytes(),
        )
        .await;
    }
    kit::produce_to(&p, &s.topic, 0, alert("no-annotation", None).as_bytes()).await;
    // The healthy team's target gets every one of its alerts, the default
    // target its one, while the dead team's alerts park.
    let got = healthy.wait_delivered(n, Duration::from_secs(30)).await;
    assert!(got.iter().all(|r| r.path == "/team-b"));
    assert_eq!(
        fallback.wait_delivered(1, Duration::from_secs(10)).await[0].path,
        "/default"
    );
    assert!(
        kit::eventually(Duration::from_secs(20), || async {
            s.committed().await == 2 * n as i64 + 1
        })
        .await
    );
    // Targets are labelled by a short hash of the URL, never the URL.
    let label = |url: &str| {
        use sha2::Digest;
        let h = sha2::Sha256::digest(url.as_bytes());
        format!(
            "target=\"t-{:02x}{:02x}{:02x}{:02x}\"",
            h[0], h[1], h[2], h[3]
        )
    };
    let dead_label = label(&dead.url("/team-a"));
    let series = |m: &str, name: &str| -> Vec<(String, f64)> {
        m.lines()
            .filter(|l| l.starts_with(name))
            .map(|l| {
                let (labels, v) = l.rsplit_once(' ').unwrap();
                (labels.to_string(), v.parse().unwrap())
            })
            .collect()
    };
    let dead_parked = |m: &str| -> f64 {
        series(m, "herald_parked_deliveries{")
            .iter()
            .filter(|(l, _)| l.contains(&dead_label))
            .map(|(_, v)| v)
            .sum()
    };
    let all_parked = kit::eventually(Duration::from_secs(10), || async {
        dead_parked(&herald.metrics().await) == n as f64
    })
    .await;
    let m = herald.metrics().await;
    assert!(all_parked, "{:?}", series(&m, "herald_parked_deliveries{"));
    let breakers = series(&m, "herald_breaker_state{");
    assert!(
        breakers
            .iter()
            .any(|(l, v)| l.contains(&dead_label) && *v == 1.0),
        "{breakers:?}"
    );
    assert!(
        breakers
            .iter()
            .any(|(l, v)| l.contains(&label(&healthy.url("/team-b"))) && *v == 0.0),
        "{breakers:?}"
    );
    // The labels never carry a webhook URL.
    assert!(!m.contains("/team-a") && !m.contains("/team-b"));
    assert!(!m.contains(&dead.addr.to_string()));
}
