//! Microsoft Sentinel against strict stand-ins for Entra ID and a data
//! collection endpoint (kit::azure; neither service runs here): Central's
//! records `[{"msg": …}]` for alerts and audit messages, each credential
//! (client secret, client certificate assertion, workload identity token
//! file), a token revoked mid-stream and a rotated token file, 429 and 503,
//! a wrong secret parking as `auth_error`, and no secret or token logged.

use std::time::Duration;

use serde_json::Value;

use crate::kit::azure::{Azure, Proof};
use crate::kit::{self, Herald};

const TENANT: &str = "0f1e2d3c-herald-test";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const STREAMS: &[(&str, &str)] = &[
    ("dcr-alerts0001", "Custom-StackRoxAlerts"),
    ("dcr-audit0002", "Custom-StackRoxAudit"),
];

fn destination(az: &Azure, credential: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "sentinel"
type = "microsoft_sentinel"
endpoint = "{url}"
authority_host = "{url}"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
all_alerts = true
alert_dcr = {{ rule_id = "dcr-alerts0001", stream = "Custom-StackRoxAlerts" }}
audit_dcr = {{ rule_id = "dcr-audit0002", stream = "Custom-StackRoxAudit" }}
park_retry_min = "200ms"
park_retry_max = "1s"
retry_min_delay = "50ms"
retry_max_delay = "200ms"
{credential}
"#,
        url = az.url()
    )
}

async fn wait_records(az: &Azure, stream: &str, n: usize) -> Vec<Value> {
    let ok = kit::eventually(Duration::from_secs(30), || {
        let got = az.records(stream).len();
        async move { got >= n }
    })
    .await;
    assert!(ok, "{stream}: {} of {n} records", az.records(stream).len());
    az.records(stream)
}

/// The stand-ins, for a client secret and hour-long tokens.
async fn with_secret(secret: &str) -> Azure {
    Azure::start(
        TENANT,
        CLIENT,
        Proof::Secret(secret.into()),
        Duration::from_secs(3600),
        STREAMS,
    )
    .await
}

fn msg(v: &Value) -> Value {
    serde_json::json!({ "msg": v })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_audits_reach_their_streams_with_a_client_secret() {
    // openssl and the stand-ins work outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let secret = "entra-client-secret-0123456789";
    let az = with_secret(secret).await;
    let s = kit::Stack::new("sentinel", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let cfg = s.config(
        "",
        &destination(
            &az,
            &format!("client_secret_file = \"{}\"", secret_file.display()),
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let alert_text = kit::fixture_text("alert-deployment-runtime.json");
    let audit_text = kit::fixture_text("audit-notifier-create.json");
    let p = kit::producer();
    kit::produce(&p, &s.topic, Some("a"), alert_text.as_bytes()).await;
    kit::produce(&p, &s.topic, None, audit_text.as_bytes()).await;
    let alerts = wait_records(&az, "Custom-StackRoxAlerts", 1).await;
    let audits = wait_records(&az, "Custom-StackRoxAudit", 1).await;
    let alert: Value = serde_json::from_str(&alert_text).unwrap();
    let audit: Value = serde_json::from_str(&audit_text).unwrap();
    let alert = alert.get("alert").cloned().unwrap_or(alert);
    assert_eq!(alerts, vec![msg(&alert)]);
    assert_eq!(audits, vec![msg(&audit["audit"])]);
    assert_eq!(az.token_requests(), 1, "one token for both streams");
    // The bytes sent are what `herald render` prints (golden-tested as Go's
    // encoding/json writes them).
    let input = dir.path().join("alert.json");
    std::fs::write(&input, &alert_text).unwrap();
    // The running herald's own config file.
    let config = herald.config.clone();
    let out = kit::cli(
        &[
            "render",
            "--destination",
            "sentinel",
            "--input",
            input.to_str().unwrap(),
        ],
        &config,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(az.bodies("Custom-StackRoxAlerts"), vec![out.stdout]);
    let log = herald.log();
    let metrics = herald.metrics().await;
    assert!(
        !log.contains(secret) && !metrics.contains(secret),
        "the secret leaks"
    );
    assert!(
        !log.contains("entra-token-") && !metrics.contains("entra-token-"),
        "a token leaks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_signs_an_assertion_entra_verifies() {
    // openssl and the stand-ins work outside a herald: keep timing tests off.
    let _busy = kit::busy();
    use base64::Engine;
    use sha1::Digest;
    let dir = tempfile::tempdir().unwrap();
    kit::openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=herald",
            "-days",
            "1",
        ],
    );
    let public_pem = kit::openssl(
        dir.path(),
        &["x509", "-in", "cert.pem", "-pubkey", "-noout"],
    );
    let der = kit::openssl(dir.path(), &["x509", "-in", "cert.pem", "-outform", "DER"]);
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
    let az = Azure::start(
        TENANT,
        CLIENT,
        Proof::Certificate { public_pem, x5t },
        Duration::from_secs(3600),
        STREAMS,
    )
    .await;
    let s = kit::Stack::new("sentinel-cert", 1).await;
    let credential = format!(
        "client_certificate_file = \"{0}/cert.pem\"\nclient_key_file = \"{0}/key.pem\"",
        dir.path().display()
    );
    let mut herald = Herald::start(&s.config("", &destination(&az, &credential)));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let a = kit::alert("cert-1", "");
    kit::produce(&p, &s.topic, Some("cert-1"), a.as_bytes()).await;
    let got = wait_records(&az, "Custom-StackRoxAlerts", 1).await;
    assert_eq!(got, vec![msg(&serde_json::from_str(&a).unwrap())]);
    assert!(
        herald.log().contains("client certificate"),
        "{}",
        herald.log()
    );
}

/// Workload identity: the projected token file is read for every exchange,
/// so a rotated file and a token Entra revoked mid-stream lose nothing: the
/// 401 renews the token once with the new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_and_a_revoked_token_lose_nothing() {
    // openssl and the stand-ins work outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let az = Azure::start(
        TENANT,
        CLIENT,
        Proof::Federated("projected-token-1".into()),
        Duration::from_secs(3600),
        STREAMS,
    )
    .await;
    let s = kit::Stack::new("sentinel-wi", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "projected-token-1\n").unwrap();
    let cfg = s
        .config("", &destination(&az, "workload_identity = true"))
        .replace(
            &format!("tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\n"),
            "",
        );
    let mut herald = Herald::start_with_env(
        &cfg,
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for i in 0..5 {
        let id = format!("wi-{i}");
        kit::produce(&p, &s.topic, Some(&id), kit::alert(&id, "").as_bytes()).await;
    }
    wait_records(&az, "Custom-StackRoxAlerts", 5).await;
    let before = az.token_requests();
    // Kubernetes rotates the projected token; Entra revokes what it issued.
    std::fs::write(&token_file, "projected-token-2\n").unwrap();
    az.set_proof(Proof::Federated("projected-token-2".into()));
    az.revoke_all();
    for i in 5..10 {
        let id = format!("wi-{i}");
        kit::produce(&p, &s.topic, Some(&id), kit::alert(&id, "").as_bytes()).await;
    }
    let got = wait_records(&az, "Custom-StackRoxAlerts", 10).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r["msg"]["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "each once: {ids:?}");
    assert_eq!(az.token_requests(), before + 1, "one renewal");
    assert!(az.refused().iter().all(|s| *s == 401), "{:?}", az.refused());
    assert!(
        !herald.log().contains("projected-token"),
        "the token file's content is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_outages_are_retried_and_a_wrong_secret_parks() {
    // openssl and the stand-ins work outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let az = Azure::start(
        TENANT,
        CLIENT,
        Proof::Secret("right".into()),
        Duration::from_secs(3600),
        STREAMS,
    )
    .await;
    az.fail_next(&[(429, Some("1")), (503, None)]);
    let s = kit::Stack::new("sentinel-429", 1).await;
    let mut herald = Herald::start(&s.config("", &destination(&az, "client_secret = \"right\"")));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    kit::produce(&p, &s.topic, Some("t-1"), kit::alert("t-1", "").as_bytes()).await;
    let got = wait_records(&az, "Custom-StackRoxAlerts", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(az.refused(), vec![429, 503]);
    assert_eq!(
        herald
            .metric(
                r#"herald_delivery_failures_total{destination="sentinel",reason="rate_limited"}"#
            )
            .await,
        1.0
    );
    herald.signal(libc::SIGTERM);
    herald.wait_exit(Duration::from_secs(20));

    let s = kit::Stack::new("sentinel-bad", 1).await;
    let wrong = "wrong-entra-secret-abcdef0123";
    let mut herald = Herald::start(&s.config(
        "",
        &destination(&az, &format!("client_secret = \"{wrong}\"")),
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    kit::produce(&p, &s.topic, Some("t-2"), kit::alert("t-2", "").as_bytes()).await;
    let parked = kit::eventually(Duration::from_secs(30), || async {
        herald
            .metric(r#"herald_deliveries_total{destination="sentinel",outcome="parked"}"#)
            .await
            >= 1.0
    })
    .await;
    assert!(parked, "{}", herald.log());
    assert!(
        herald
            .metric(r#"herald_delivery_failures_total{destination="sentinel",reason="auth_error"}"#)
            .await
            >= 1.0
    );
    let log = herald.log();
    assert!(log.contains("invalid_client"), "{log}");
    assert!(!log.contains(wrong) && !herald.metrics().await.contains(wrong));
    assert_eq!(az.records("Custom-StackRoxAlerts").len(), 1);
}

/// kill -9 with uploads in flight, then a restart: every alert is in the
/// stream. The Logs Ingestion API has no idempotency key, so a record
/// accepted just before the kill but not yet recorded as delivered is sent
/// again: at most one per worker (16) can be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_uploads_in_flight_then_restart_loses_no_record() {
    let _busy = kit::busy();
    let secret = "entra-client-secret-kill";
    let az = with_secret(secret).await;
    let s = kit::Stack::new("sentinel-kill", 1).await;
    let cfg = s.config(
        "",
        &destination(&az, &format!("client_secret = \"{secret}\"\nworkers = 16")),
    );
    let ids: Vec<String> = (0..800).map(|i| kit::unique(&format!("sk{i}"))).collect();
    let p = kit::producer();
    for id in &ids {
        kit::produce(&p, &s.topic, Some(id), kit::alert(id, "").as_bytes()).await;
    }
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let started = kit::eventually(Duration::from_secs(30), || {
        let n = az.records("Custom-StackRoxAlerts").len();
        async move { n >= 50 }
    })
    .await;
    assert!(started, "{}", herald.log());
    herald.kill9();
    let at_kill = az.records("Custom-StackRoxAlerts").len();
    herald.spawn();
    herald.wait_ready(Duration::from_secs(60)).await;
    assert!(s.committed_all(1, ids.len(), Duration::from_secs(60)).await);
    let records = az.records("Custom-StackRoxAlerts");
    let mut count = std::collections::HashMap::new();
    for r in &records {
        *count
            .entry(r["msg"]["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let missing = ids.iter().filter(|id| !count.contains_key(*id)).count();
    assert_eq!(missing, 0, "records missing");
    let again = records.len() - ids.len();
    println!(
        "sentinel kill -9: {at_kill} of {} records in when killed, {again} sent again",
        ids.len()
    );
    assert!(again <= 16, "{again} records sent again");
}
