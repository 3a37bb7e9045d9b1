//! Hot reload on SIGHUP: an added destination gets the next alert, an invalid
//! file keeps the running config, a changed destination keeps its parked
//! deliveries, a removed one's parked deliveries are dead-lettered.

use std::time::Duration;

use crate::kit::receiver::Behavior;
use crate::kit::{self, Herald, Receiver};

fn dest(name: &str, url: &str, extra: &str) -> String {
    format!("[[destinations]]\nname = \"{name}\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n")
}

const PARKING: &str = "retry_min_delay = \"50ms\"\nretry_max_attempts = 2\npark_retry_min = \"500ms\"\npark_retry_max = \"500ms\"";

/// Sends SIGHUP and waits until the reload-success timestamp moves on.
async fn reload(herald: &Herald) {
    let series = "herald_config_last_reload_success_timestamp_seconds";
    let before = herald.metric(series).await;
    assert!(before > 0.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    herald.signal(libc::SIGHUP);
    let moved = kit::eventually(Duration::from_secs(10), || async {
        herald.metric(series).await > before
    })
    .await;
    assert!(moved, "reload not applied; log:\n{}", herald.log());
    assert_eq!(
        herald.metric("herald_config_last_reload_successful").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_destination_gets_the_next_alert_and_an_invalid_file_changes_nothing() {
    let s = kit::Stack::new("reload-add", 1).await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("a-password");
    std::fs::write(&password, "first-pw\n").unwrap();
    let auth = format!(
        "username = \"u\"\npassword_file = \"{}\"",
        password.display()
    );
    // systemd's notify socket, as a Type=notify unit would have it.
    let notify_path = secrets.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next_notification = || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("an sd_notify message");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // The time varies: keep MONOTONIC_USEC's name only.
        text.lines()
            .map(|l| {
                if l.starts_with("MONOTONIC_USEC=") {
                    "MONOTONIC_USEC"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut herald = Herald::start_with_env(
        &s.config("", &dest("a", &a.url("/"), &auth)),
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    herald.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(next_notification(), "READY=1");
    let p = kit::producer();
    kit::produce_to(&p, &s.topic, 0, kit::alert("rl-1", "").as_bytes()).await;
    a.wait_delivered(1, Duration::from_secs(20)).await;

    let both = s.config(
        "",
        &format!(
            "{}{}",
            dest("a", &a.url("/"), &auth),
            dest("b", &b.url("/"), "")
        ),
    );
    herald.rewrite_config(&both);
    reload(&herald).await;
    assert_eq!(next_notification(), "RELOADING=1,MONOTONIC_USEC");
    assert_eq!(next_notification(), "READY=1");
    kit::produce_to(&p, &s.topic, 0, kit::alert("rl-2", "").as_bytes()).await;
    let got_b = b.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(got_b[0].header("idempotency-key").unwrap(), "rl-2:ACTIVE");
    a.wait_delivered(2, Duration::from_secs(20)).await;

    // An invalid file: refused, reported by field, and both keep receiving.
    herald.rewrite_config(&format!(
        "{both}bogus_key = 1\n[[destinations]]\nname = \"c\"\ntype = \"webhook\"\nid = \"n1\"\n"
    ));
    herald.signal(libc::SIGHUP);
    let refused = kit::eventually(Duration::from_secs(10), || async {
        herald.metric("herald_config_last_reload_successful").await == 0.0
    })
    .await;
    assert!(refused, "log:\n{}", herald.log());
    let log = herald.log();
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("destinations[2].url"), "{log}");
    kit::produce_to(&p, &s.topic, 0, kit::alert("rl-3", "").as_bytes()).await;
    a.wait_delivered(3, Duration::from_secs(20)).await;
    b.wait_delivered(2, Duration::from_secs(20)).await;

    // Fixed again: the gauge returns to 1; the unchanged destination kept its
    // pool, so nothing was sent twice.
    herald.rewrite_config(&both);
    reload(&herald).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys = |r: &Receiver| -> Vec<String> {
        r.delivered()
            .iter()
            .map(|x| x.header("idempotency-key").unwrap())
            .collect()
    };
    assert_eq!(keys(&a), vec!["rl-1:ACTIVE", "rl-2:ACTIVE", "rl-3:ACTIVE"]);
    assert_eq!(keys(&b), vec!["rl-2:ACTIVE", "rl-3:ACTIVE"]);

    // A rotated *_file secret is read again: the same file, new contents.
    std::fs::write(&password, "second-pw\n").unwrap();
    reload(&herald).await;
    kit::produce_to(&p, &s.topic, 0, kit::alert("rl-4", "").as_bytes()).await;
    let got = a.wait_delivered(4, Duration::from_secs(20)).await;
    let basic = |pw: &str| {
        format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("u:{pw}")
            )
        )
    };
    let auths: Vec<String> = got
        .iter()
        .map(|r| r.header("authorization").unwrap())
        .collect();
    assert_eq!(
        auths,
        vec![
            basic("first-pw"),
            basic("first-pw"),
            basic("first-pw"),
            basic("second-pw")
        ]
    );
    let log = herald.log();
    assert!(!log.contains("first-pw") && !log.contains("second-pw"));
    herald.signal(libc::SIGTERM);
    assert!(herald.wait_exit(Duration::from_secs(20)).is_some());
    let mut rest = Vec::new();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    while let Ok(n) = notify.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    // Two more reloads (refused, fixed, rotated: three READY=1), then the stop.
    assert_eq!(
        rest.iter().filter(|m| *m == "READY=1").count(),
        3,
        "{rest:?}"
    );
    assert_eq!(
        rest.last().map(String::as_str),
        Some("STOPPING=1"),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_destination_keeps_its_parked_deliveries_and_a_removed_one_dead_letters_them() {
    let s = kit::Stack::new("reload-park", 1).await;
    let dead_kept = Receiver::start().await;
    dead_kept.set(Behavior::Fail(503, None));
    let dead_removed = Receiver::start().await;
    dead_removed.set(Behavior::Fail(503, None));
    let fixed = Receiver::start().await;
    let cfg = s.config(
        "",
        &format!(
            "{}{}",
            dest("kept", &dead_kept.url("/"), PARKING),
            dest("gone", &dead_removed.url("/"), PARKING)
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for id in ["rp-1", "rp-2"] {
        kit::produce_to(&p, &s.topic, 0, kit::alert(id, "").as_bytes()).await;
    }
    for d in ["kept", "gone"] {
        let series = format!("herald_parked_deliveries{{destination=\"{d}\",target=\"\"}}");
        let parked = kit::eventually(Duration::from_secs(20), || async {
            herald.metric(&series).await == 2.0
        })
        .await;
        assert!(parked, "{d} did not park; log:\n{}", herald.log());
    }
    let aged = kit::eventually(Duration::from_secs(5), || async {
        herald
            .metric(r#"herald_parked_oldest_age_seconds{destination="kept",target=""}"#)
            .await
            > 0.0
    })
    .await;
    assert!(aged, "{}", herald.metrics().await);

    // "kept" now points at a healthy receiver; "gone" is removed.
    herald.rewrite_config(&s.config("", &dest("kept", &fixed.url("/"), PARKING)));
    reload(&herald).await;
    let got = fixed.wait_delivered(2, Duration::from_secs(20)).await;
    let mut keys: Vec<String> = got
        .iter()
        .map(|r| r.header("idempotency-key").unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["rp-1:ACTIVE", "rp-2:ACTIVE"]);

    let records = kit::read_records(&s.dlq, 2, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 2, "log:\n{}", herald.log());
    let mut ids = Vec::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(r).unwrap();
        assert_eq!(v["kind"], "delivery_failed");
        assert_eq!(v["reason"], "destination_removed");
        assert_eq!(v["destination"], "gone");
        assert!(v["attempts"].as_u64().unwrap() >= 2, "{v}");
        let alert: serde_json::Value = serde_json::from_str(v["value"].as_str().unwrap()).unwrap();
        ids.push(alert["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    assert_eq!(ids, vec!["rp-1", "rp-2"]);
    let dl = kit::eventually(Duration::from_secs(5), || async {
        herald
            .metric(r#"herald_deliveries_total{destination="gone",outcome="dead_lettered"}"#)
            .await
            == 2.0
            && herald
                .metric(r#"herald_parked_deliveries{destination="gone",target=""}"#)
                .await
                == 0.0
    })
    .await;
    assert!(dl, "{}", herald.metrics().await);
    let out = kit::cli(&["parked", "list"], &herald.config);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "nothing parked");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fixed.delivered().len(), 2, "nothing twice");
}
