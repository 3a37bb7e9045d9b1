//! Generic webhook end to end: bodies byte for byte as Central builds them
//! (central-compat §2.3), auth and headers, and `render` printing the same bytes.

use std::time::Duration;

use crate::kit::{self, Herald, Receiver};

/// Compact JSON keeping key order, computed independently of herald.
fn compact(pretty: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(pretty).unwrap();
    serde_json::to_string(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_byte_exact_and_render_matches() {
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("wh", 1).await;
    let rx = Receiver::start().await;
    let destinations = format!(
        r#"
[[destinations]]
name = "plain"
id = "3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f"
type = "webhook"
url = "{plain}"
[[destinations]]
name = "extra"
id = "3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f"
type = "webhook"
url = "{extra}"
extra_fields = {{ source = "rhacs", env = "prod<&>", Cluster = "east" }}
username = "herald"
password = "s3cret-pass"
headers = {{ X-Team = "soc", Authorization-Extra = "Bearer tok" }}
audit = true
"#,
        plain = rx.url("/plain"),
        extra = rx.url("/extra"),
    );
    let cfg = kit::config(&topic, &dlq, &kit::unique("wh-g"), "", &destinations);
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;

    // A pretty-printed alert and an audit event, as a producer might write them.
    let alert_text = kit::fixture_text("alert-deployment-runtime.json");
    let audit_text = kit::fixture_text("audit-notifier-create.json");
    let p = kit::producer();
    kit::produce(&p, &topic, Some("8f2a6c1e"), alert_text.as_bytes()).await;
    kit::produce(&p, &topic, None, audit_text.as_bytes()).await;

    let got = rx.wait_delivered(3, Duration::from_secs(20)).await;
    let at = |path: &str, needle: &str| {
        got.iter()
            .find(|r| r.path == path && r.text().contains(needle))
            .unwrap_or_else(|| panic!("no {needle} at {path}"))
            .clone()
    };
    let alert = compact(&alert_text);
    let audit_obj: serde_json::Value = serde_json::from_str(&audit_text).unwrap();
    let audit = serde_json::to_string(&audit_obj["audit"]).unwrap();

    let plain = at("/plain", "\"alert\"");
    assert_eq!(plain.text(), format!("{{\"alert\": {alert}}}"));
    let with_extra = at("/extra", "\"alert\"");
    assert_eq!(
        with_extra.text(),
        format!(
            r#"{{"Cluster":"east","env":"prod\u003c\u0026\u003e","source":"rhacs","alert": {alert}}}"#
        )
    );
    let audit_body = at("/extra", "\"audit\"");
    assert_eq!(
        audit_body.text(),
        format!(
            r#"{{"Cluster":"east","env":"prod\u003c\u0026\u003e","source":"rhacs","audit": {audit}}}"#
        )
    );
    for r in [&plain, &with_extra, &audit_body] {
        assert!(!r.body.contains(&b'\n'), "newline in body");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    // The audit event did not go to the destination with audit off.
    assert_eq!(got.iter().filter(|r| r.path == "/plain").count(), 1);
    // Basic auth and custom headers as configured.
    assert_eq!(
        with_extra.header("authorization").as_deref(),
        Some("Basic aGVyYWxkOnMzY3JldC1wYXNz") // base64("herald:s3cret-pass")
    );
    assert_eq!(with_extra.header("x-team").as_deref(), Some("soc"));
    assert_eq!(
        with_extra.header("authorization-extra").as_deref(),
        Some("Bearer tok")
    );
    assert_eq!(plain.header("authorization"), None);

    // `render` prints exactly what the receiver got, for the same input.
    for (dest, fixture, expected) in [
        ("plain", "alert-deployment-runtime.json", &plain),
        ("extra", "alert-deployment-runtime.json", &with_extra),
        ("extra", "audit-notifier-create.json", &audit_body),
    ] {
        let input = kit::fixture(fixture);
        let out = kit::cli(
            &[
                "render",
                "--destination",
                dest,
                "--input",
                input.to_str().unwrap(),
            ],
            &herald.config,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, expected.body, "render {dest} {fixture}");
    }

    // No secret in the log.
    let log = herald.log();
    assert!(
        !log.contains("s3cret-pass") && !log.contains("Bearer tok"),
        "secret in log"
    );
    assert_eq!(
        herald
            .metric(r#"herald_deliveries_total{destination="extra",outcome="delivered"}"#)
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_over_sasl_scram() {
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("sasl", 1).await;
    let rx = Receiver::start().await;
    let sasl_brokers =
        std::env::var("HERALD_TEST_SASL_BROKERS").unwrap_or_else(|_| "127.0.0.1:9094".into());
    let cfg = kit::config(
        &topic,
        &dlq,
        &kit::unique("sasl-g"),
        "[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"herald\"\npassword = \"${HERALD_TEST_SASL_PASSWORD}\"\n",
        &format!("[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{}\"\n", rx.url("/")),
    )
    .replace(&format!("brokers = \"{}\"", kit::brokers()), &format!("brokers = \"{sasl_brokers}\""));
    std::env::set_var("HERALD_TEST_SASL_PASSWORD", "herald-secret");
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce(
        &kit::producer(),
        &topic,
        None,
        kit::alert("sasl-1", "").as_bytes(),
    )
    .await;
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert!(got[0].text().contains(r#""id":"sasl-1""#));
    assert!(!herald.log().contains("herald-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trusts_ca_file_or_skip_verify_and_rejects_unknown_issuers() {
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("tls", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = kit::tls::certs(dir.path());
    let rx = Receiver::start_tls(&certs).await;
    let destinations = format!(
        r#"
[[destinations]]
name = "with-ca"
id = "n1"
type = "webhook"
url = "{u}/ca"
ca_file = "{ca}"
[[destinations]]
name = "skip-verify"
id = "n1"
type = "webhook"
url = "{u}/skip"
skip_tls_verify = true
[[destinations]]
name = "untrusted"
id = "n1"
type = "webhook"
url = "{u}/untrusted"
"#,
        u = rx.url(""),
        ca = certs.ca.display()
    );
    let mut herald = Herald::start(&kit::config(
        &topic,
        &dlq,
        &kit::unique("tls-g"),
        "",
        &destinations,
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce(
        &kit::producer(),
        &topic,
        None,
        kit::alert("tls-1", "").as_bytes(),
    )
    .await;
    let got = rx.wait_delivered(2, Duration::from_secs(20)).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/ca", "/skip"]);
    // The untrusted destination keeps failing at the handshake (retryable)
    // and never reaches the receiver.
    let failures = r#"herald_delivery_failures_total{destination="untrusted",reason="connect"}"#;
    assert!(
        kit::eventually(Duration::from_secs(10), || async {
            herald.metric(failures).await >= 2.0
        })
        .await
    );
    assert_eq!(rx.arrived(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_http_proxy_from_the_environment() {
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("px", 1).await;
    // The recording receiver plays the proxy: a proxied plain-HTTP request
    // arrives with the absolute URL of the real target.
    let proxy = Receiver::start().await;
    let destinations = "[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"http://receiver.invalid/rhacs\"\n";
    let cfg = kit::config(&topic, &dlq, &kit::unique("px-g"), "", destinations);
    let proxy_url = proxy.url("");
    let mut herald = Herald::start_with_env(&cfg, &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")]);
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce(
        &kit::producer(),
        &topic,
        None,
        kit::alert("px-1", "").as_bytes(),
    )
    .await;
    let got = proxy.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].uri, "http://receiver.invalid/rhacs");
    assert!(got[0].text().contains("\"px-1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_over_mutual_tls() {
    let kit::Stack { topic, dlq, .. } = kit::Stack::new("mtls", 1).await;
    let rx = Receiver::start().await;
    let stack = std::env::var("HERALD_STACK_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/herald-stack", std::env::var("HOME").unwrap()));
    let tls_dir = format!("{stack}/run/kafka-tls");
    let ssl_brokers =
        std::env::var("HERALD_TEST_SSL_BROKERS").unwrap_or_else(|_| "127.0.0.1:9093".into());
    let cfg = kit::config(
        &topic,
        &dlq,
        &kit::unique("mtls-g"),
        &format!("[kafka.tls]\nca_file = \"{tls_dir}/ca.pem\"\ncert_file = \"{tls_dir}/client.pem\"\nkey_file = \"{tls_dir}/client.key\"\n"),
        &format!("[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{}\"\n", rx.url("/")),
    )
    .replace(&format!("brokers = \"{}\"", kit::brokers()), &format!("brokers = \"{ssl_brokers}\""));
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce(
        &kit::producer(),
        &topic,
        None,
        kit::alert("mtls-1", "").as_bytes(),
    )
    .await;
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert!(got[0].text().contains(r#""id":"mtls-1""#));

    // Without the client certificate the broker refuses the connection.
    let no_cert = cfg.replace(
        &format!("cert_file = \"{tls_dir}/client.pem\"\nkey_file = \"{tls_dir}/client.key\"\n"),
        "",
    );
    let group_line = cfg
        .lines()
        .find(|l| l.starts_with("group_id"))
        .unwrap()
        .to_string();
    let no_cert = no_cert.replace(
        &group_line,
        &format!("group_id = \"{}\"", kit::unique("mtls-nocert")),
    );
    let mut refused = Herald::start(&no_cert);
    // herald cannot check the dead-letter topic, so it fails at start.
    let status = tokio::task::spawn_blocking(move || {
        let st = refused.wait_exit(Duration::from_secs(30));
        (st, refused)
    })
    .await
    .unwrap();
    let (status, refused) = status;
    let log = refused.log();
    assert!(
        matches!(status, Some(s) if !s.success()),
        "herald did not fail without a client certificate:\n{log}"
    );
    assert!(
        log.contains("kafka.dead_letter_topic: cannot read metadata"),
        "no clear error in the log:\n{log}"
    );
    drop(refused);
}
