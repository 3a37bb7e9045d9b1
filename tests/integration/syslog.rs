//! Syslog CEF against a real rsyslog over TCP, TLS and mTLS: frames byte for
//! byte as the spec's rules build them, 100,000 frames over TLS, and a
//! receiver restart mid-stream.

use std::collections::HashSet;
use std::time::Duration;

use crate::kit::service::Rsyslog;
use crate::kit::{self, Herald};

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&kit::fixture_text(name)).unwrap()
}

fn ms(v: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

fn header_time(v: &serde_json::Value) -> String {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The record the spec's rules give (§2.1), built here independently of
/// herald's formatter; the embedded Go-JSON comes from the reviewed golden file.
pub(crate) fn expected_alert(
    fixture: &str,
    host: &str,
    cef_order: bool,
    extra: &str,
    sev: (u8, u8),
    ns_labels: &str,
) -> String {
    let a = fixture_json(&format!("{fixture}.json"));
    let a = if a.get("alert").is_some() {
        a["alert"].clone()
    } else {
        a
    };
    let go = kit::fixture_text(&format!("{fixture}.gojson"));
    let name = a["policy"]["name"].as_str().unwrap();
    let (syslog_sev, cef_sev) = sev;
    let head = if cef_order {
        format!("Alert|{name}|{cef_sev}")
    } else {
        format!("Alert|{cef_sev}|{name}")
    };
    format!(
        "<{}>1 {} {host} stackRoxKubernetesSecurityPlatform 1 stackroxKubernetesSecurityPlatformAlert - CEF:0|StackRox|Kubernetes Security Platform|4.7.0|{head}|devicePayloadId={} start={} rt={} ns={} nslabels={ns_labels} stackroxKubernetesSecurityPlatformAlert={}{extra}",
        128 + u32::from(syslog_sev),
        header_time(&a["time"]),
        a["id"].as_str().unwrap(),
        ms(&a["firstOccurred"]),
        ms(&a["time"]),
        a["namespace"].as_str().unwrap(),
        go.trim_end()
    )
}

fn expected_audit(host: &str, cef_order: bool, extra: &str) -> String {
    let a = fixture_json("audit-notifier-create.json")["audit"].clone();
    let go = kit::fixture_text("audit-notifier-create.gojson");
    let head = if cef_order {
        "AuditLog|AuditLog|3"
    } else {
        "AuditLog|3|AuditLog"
    };
    format!(
        "<134>1 {} {host} stackRoxKubernetesSecurityPlatform 1 stackroxKubernetesSecurityPlatformAudit - CEF:0|StackRox|Kubernetes Security Platform|4.7.0|{head}|rt={} spriv=Admin suser=admin request=/v1/notifiers requestMethod=POST outcome=REQUEST_SUCCEEDED requestClientApplication=UI stackroxKubernetesSecurityPlatformAuditLog={}{extra}",
        header_time(&a["time"]),
        ms(&a["time"]),
        go.trim_end()
    )
}

pub(crate) fn syslog_dest(name: &str, port: &str, host_marker: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nid = \"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"\ntype = \"syslog\"\nhost = \"127.0.0.1\"\nport = {port}\nhostname = \"{host_marker}\"\nprocid = \"1\"\ndevice_version = \"4.7.0\"\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_byte_exact_over_tcp_tls_and_mtls() {
    let r = Rsyslog::shared();
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("sys", 1).await;
    let host = kit::unique("h");
    let dir = tempfile::tempdir().unwrap();
    let ns_file = dir.path().join("namespaces.toml");
    std::fs::write(
        &ns_file,
        "[[namespaces]]\ncluster = \"5b3b8c5e-2f61-4e0a-8f7e-7a6c0b7d9e11\"\nname = \"payments\"\nlabels = { team = \"pay\", \"kubernetes.io/metadata.name\" = \"payments\" }\n",
    )
    .unwrap();
    let (ca, cert, key) = (
        r.get("tls_ca"),
        r.get("tls_client_cert"),
        r.get("tls_client_key"),
    );
    let destinations = format!(
        "{}{}{}",
        syslog_dest("tcp", r.get("tcp_port"), &host, "extra_fields = { env = \"prod\", dc = \"east\" }"),
        syslog_dest("tls", r.get("tls_port"), &host, &format!("format = \"legacy\"\ntls = true\nca_file = \"{ca}\"")),
        syslog_dest(
            "mtls",
            r.get("mtls_port"),
            &host,
            &format!("tls = true\nca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nmax_message_size = 700")
        ),
    );
    let cfg = format!(
        "namespace_metadata = \"{}\"\n{}",
        ns_file.display(),
        kit::config(&topic, &dlq, &kit::unique("sys-g"), "", &destinations)
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for f in [
        "alert-deployment-runtime.json",
        "alert-resource.json",
        "audit-notifier-create.json",
    ] {
        kit::produce_to(&p, &topic, 0, kit::fixture_text(f).as_bytes()).await;
    }
    let labels = r#"{"kubernetes.io/metadata.name":"payments","team":"pay"}"#;
    let dep = |order, extra| {
        expected_alert(
            "alert-deployment-runtime",
            &host,
            order,
            extra,
            (3, 7),
            labels,
        )
    };
    let res = |order, extra| expected_alert("alert-resource", &host, order, extra, (2, 9), "{}");

    // Different alerts go out in parallel (several workers), so records are
    // compared in a fixed order, each byte for byte.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // TCP: cef order, extra fields in config order.
    let tcp = r
        .wait_lines("out_tcp", &host, 3, Duration::from_secs(20))
        .await;
    assert_eq!(
        sorted(tcp),
        sorted(vec![
            dep(true, " env=prod dc=east"),
            res(true, " env=prod dc=east"),
            expected_audit(&host, true, " env=prod dc=east")
        ])
    );
    // TLS: legacy order (name and severity swapped), no extra fields.
    let tls = r
        .wait_lines("out_tls", &host, 3, Duration::from_secs(20))
        .await;
    assert_eq!(
        sorted(tls),
        sorted(vec![
            dep(false, ""),
            res(false, ""),
            expected_audit(&host, false, "")
        ])
    );
    // mTLS with chunking: each 700-byte slice is its own frame (one line each).
    let whole = [
        dep(true, ""),
        res(true, ""),
        expected_audit(&host, true, ""),
    ];
    let chunks: Vec<String> = whole
        .iter()
        .flat_map(|rec| {
            rec.as_bytes()
                .chunks(700)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let first_chunks: Vec<String> = chunks
        .iter()
        .filter(|c| c.contains(&host))
        .cloned()
        .collect();
    let got = r
        .wait_lines(
            "out_mtls",
            &host,
            first_chunks.len(),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        sorted(got.clone()),
        sorted(first_chunks.clone()),
        "first chunks carry the header"
    );
    // Each record's chunks arrive together and in order, byte for byte.
    let all = std::fs::read_to_string(r.get("out_mtls")).unwrap();
    for rec in &whole {
        let lines: String = rec
            .as_bytes()
            .chunks(700)
            .map(|c| format!("{}\n", String::from_utf8(c.to_vec()).unwrap()))
            .collect();
        assert!(
            all.contains(&lines),
            "the chunks of {:?}… are not together and in order",
            &rec[..80]
        );
    }

    // `render` prints exactly the frame (octet count included).
    let input = kit::fixture("alert-deployment-runtime.json");
    let out = kit::cli(
        &[
            "render",
            "--destination",
            "tcp",
            "--input",
            input.to_str().unwrap(),
        ],
        &herald.config,
    );
    let rec = dep(true, " env=prod dc=east");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{} {rec}", rec.len())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_procid_and_device_version_are_herald_s() {
    let r = Rsyslog::shared();
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("sysd", 1).await;
    let host = kit::unique("hd");
    let dest = format!(
        "[[destinations]]\nname = \"s\"\nall_alerts = true\ntype = \"syslog\"\nhost = \"127.0.0.1\"\nport = {}\nhostname = \"{host}\"\naudit = false\n",
        r.get("tcp_port")
    );
    let mut herald = Herald::start(&kit::config(
        &topic,
        &dlq,
        &kit::unique("sysd-g"),
        "",
        &dest,
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    kit::produce_to(
        &p,
        &topic,
        0,
        kit::fixture_text("audit-notifier-create.json").as_bytes(),
    )
    .await;
    kit::produce_to(
        &p,
        &topic,
        0,
        kit::fixture_text("alert-resource.json").as_bytes(),
    )
    .await;
    let lines = r
        .wait_lines("out_tcp", &host, 1, Duration::from_secs(20))
        .await;
    assert_eq!(lines.len(), 1, "audit = false keeps audit events away");
    let expected = format!(
        "{host} stackRoxKubernetesSecurityPlatform {} stackroxKubernetesSecurityPlatformAlert - CEF:0|StackRox|Kubernetes Security Platform|{}|Alert|",
        herald.pid(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(lines[0].contains(&expected), "{}", &lines[0][..200]);
}

/// n small alerts, each with a unique id, for the load tests.
async fn produce_many(topic: &str, prefix: &str, n: usize) {
    produce_many_from(topic, prefix, 0, n).await;
}

/// Alerts `<prefix>-<start>` … `<prefix>-<start + n - 1>`.
async fn produce_many_from(topic: &str, prefix: &str, start: usize, n: usize) {
    let p = kit::producer();
    for chunk in (start..start + n).collect::<Vec<_>>().chunks(2000) {
        let sends: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (p, topic) = (p.clone(), topic.to_string());
                let v = kit::alert(
                    &format!("{prefix}-{i}"),
                    ",\"time\":\"2024-05-01T12:00:00Z\"",
                );
                async move { kit::produce(&p, &topic, None, v.as_bytes()).await }
            })
            .collect();
        futures::future::join_all(sends).await;
    }
}

fn ids(lines: &[String], prefix: &str) -> HashSet<String> {
    lines
        .iter()
        .filter_map(|l| l.split("devicePayloadId=").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .filter(|id| id.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_frames_over_tls_arrive_complete() {
    let r = Rsyslog::shared();
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("sys100k", 3).await;
    let host = kit::unique("h100k");
    let n = 100_000;
    produce_many(&topic, "t", n).await;
    let dest = syslog_dest(
        "tls",
        r.get("tls_port"),
        &host,
        &format!(
            "all_alerts = true\ntls = true\nca_file = \"{}\"\nworkers = 8\nqueue_size = 4000",
            r.get("tls_ca")
        ),
    );
    let cfg = kit::config(
        &topic,
        &dlq,
        &kit::unique("sys100k-g"),
        "max_in_flight = 20000\nmax_in_flight_per_partition = 5000\n",
        &dest,
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let delivered = r#"herald_deliveries_total{destination="tls",outcome="delivered"}"#;
    assert!(
        kit::eventually(Duration::from_secs(300), || async {
            herald.metric(delivered).await >= n as f64
        })
        .await,
        "herald delivered {} of {n}",
        herald.metric(delivered).await
    );
    // A clean stop: close_notify, then herald reads until rsyslog closes.
    herald.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let st = herald.wait_exit(Duration::from_secs(30));
        (st, herald)
    })
    .await
    .unwrap()
    .0;
    assert!(status.is_some_and(|s| s.success()));
    let lines = r
        .wait_lines("out_tls", &host, n, Duration::from_secs(30))
        .await;
    let got = ids(&lines, "t-");
    println!(
        "{} frames written by rsyslog, {} distinct",
        lines.len(),
        got.len()
    );
    assert_eq!(got.len(), n, "every frame arrived");
    assert_eq!(lines.len(), n, "and none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_restarted_mid_stream_loses_nothing() {
    let r = Rsyslog::private(20514);
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("sysrs", 1).await;
    let host = kit::unique("hrs");
    let n = 20_000;
    let dest = syslog_dest(
        "tcp",
        r.get("tcp_port"),
        &host,
        "all_alerts = true\nretry_min_delay = \"100ms\"\nretry_max_delay = \"500ms\"\nretry_max_attempts = 50\nretry_max_pass = \"60s\"\nbreaker_failures = 1000",
    );
    let mut herald = Herald::start(&kit::config(
        &topic,
        &dlq,
        &kit::unique("sysrs-g"),
        "",
        &dest,
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    // Half the stream, a restart while it flows, then the other half: herald
    // writes after the restart, so it meets the closed connection.
    let (first, second) = (n / 2, n - n / 2);
    let t = topic.clone();
    let producer = tokio::spawn(async move { produce_many(&t, "r", first).await });
    r.wait_lines("out_tcp", &host, 3000, Duration::from_secs(60))
        .await;
    r.restart();
    producer.await.unwrap();
    produce_many_from(&topic, "r", first, second).await;
    let ok = kit::eventually(Duration::from_secs(180), || async {
        ids(&r.lines("out_tcp", &host), "r-").len() >= n
    })
    .await;
    let lines = r.lines("out_tcp", &host);
    let got = ids(&lines, "r-");
    println!(
        "after the restart: {} distinct of {n}, {} lines ({} written twice)",
        got.len(),
        lines.len(),
        lines.len() - got.len()
    );
    assert!(ok, "lost {} frames", n - got.len());
    let log = herald.log();
    assert!(
        log.contains("reset the connection")
            || log.contains("closed the connection")
            || log.contains("connection broke while writing"),
        "herald did not notice the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_and_newline_framing() {
    let r = Rsyslog::shared();
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("sysu", 1).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let host = kit::unique("hu");
    let destinations = format!(
        "{}{}",
        syslog_dest(
            "udp",
            &udp.local_addr().unwrap().port().to_string(),
            &host,
            "transport = \"udp\"\naudit = false"
        ),
        syslog_dest(
            "lines",
            r.get("tcp_port"),
            &format!("{host}-nl"),
            "framing = \"newline\"\naudit = false"
        ),
    );
    let mut herald = Herald::start(&kit::config(
        &topic,
        &dlq,
        &kit::unique("sysu-g"),
        "",
        &destinations,
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce_to(
        &kit::producer(),
        &topic,
        0,
        kit::fixture_text("alert-resource.json").as_bytes(),
    )
    .await;
    let expected = expected_alert("alert-resource", &host, true, "", (2, 9), "{}");
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(Duration::from_secs(20), udp.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8(buf[..n].to_vec()).unwrap(),
        expected,
        "one datagram, no octet count"
    );
    let lines = r
        .wait_lines("out_tcp", &format!("{host}-nl"), 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        lines,
        vec![expected_alert(
            "alert-resource",
            &format!("{host}-nl"),
            true,
            "",
            (2, 9),
            "{}"
        )]
    );
}
