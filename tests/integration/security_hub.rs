//! AWS Security Hub against moto's server (scripts/moto.sh) with request
//! authentication on, so a request whose SigV4 signature does not verify is
//! refused with 403 as AWS refuses it: findings as Central maps them
//! (central-compat §2.12), read back with `GetFindings`; RESOLVED archives
//! the same finding; static keys, an assumed role and a web identity token
//! file; a wrong secret parks as `auth_error` and no secret is logged.

use std::time::Duration;

use serde_json::{json, Value};

use crate::kit::proxy::{Fault, Proxy};
use crate::kit::service::Service;
use crate::kit::{self, Herald};

fn moto() -> Service {
    Service::shared_of("moto.sh")
}

/// A moto of the test's own, authentication off.
fn private_moto() -> Service {
    Service::private_in(
        "moto.sh",
        "MOTO_RUN_DIR",
        &[
            ("MOTO_PORT", &kit::free_port().to_string()),
            ("MOTO_AUTH", "0"),
        ],
    )
}

/// Produces [`alert`] `id`, ACTIVE at 09:00.
async fn produce_active(p: &rdkafka::producer::FutureProducer, topic: &str, id: &str) {
    let value = alert(id, "ACTIVE", "2026-12-07T09:00:00Z");
    kit::produce(p, topic, Some(id), value.as_bytes()).await;
}

/// The findings moto holds for each id (a list per id, so a duplicate shows).
fn findings(moto: &Service, ids: &[&str]) -> Vec<Vec<Value>> {
    let mut args = vec!["findings"];
    args.extend_from_slice(ids);
    serde_json::from_str(&moto.output(&args)).unwrap()
}

async fn wait_finding(moto: &Service, id: &str, record_state: &str) -> Vec<Value> {
    let mut last = Vec::new();
    let found = kit::eventually(Duration::from_secs(30), || {
        last = findings(moto, &[id]).remove(0);
        let ok = last
            .first()
            .is_some_and(|f| f["RecordState"] == record_state);
        async move { ok }
    })
    .await;
    assert!(found, "no {record_state} finding {id}; moto has {last:?}");
    last
}

/// A Security Hub destination on `moto`; static keys when `secret_file` is
/// given.
fn destination(moto: &Service, account: &str, secret_file: &str, extra: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "sh"
type = "aws_security_hub"
region = "us-east-1"
account_id = "{account}"
endpoint = "{endpoint}"
ui_endpoint = "https://central.example.com"
all_alerts = true
park_retry_min = "200ms"
park_retry_max = "1s"
retry_max_attempts = 1
{secret_line}
{extra}
"#,
        endpoint = moto.get("endpoint"),
        secret_line = if secret_file.is_empty() {
            String::new()
        } else {
            format!(
                "access_key_id = \"{}\"\nsecret_access_key_file = \"{secret_file}\"",
                moto.get("access_key_id")
            )
        },
    )
}

/// A herald config for the shared moto with static keys (`secret` written to
/// a file in `dir`) plus `extra` destination keys.
fn static_keys_config(
    moto: &Service,
    s: &kit::Stack,
    dir: &std::path::Path,
    secret: &str,
    extra: &str,
) -> String {
    let secret_file = dir.join("aws-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let account = moto.get("account_id");
    s.config(
        "",
        &destination(moto, account, secret_file.to_str().unwrap(), extra),
    )
}

fn alert(id: &str, state: &str, time: &str) -> String {
    format!(
        r#"{{"id":"{id}","policy":{{"id":"p-sh","name":"No shells","description":"Shells in containers","categories":["Anomalous Activity","Privileges"],"severity":"CRITICAL_SEVERITY"}},"clusterName":"prod","namespace":"shop","deployment":{{"name":"web","namespace":"shop","clusterName":"prod","containers":[{{"name":"app","image":{{"id":"sha256:0123","name":{{"fullName":"quay.io/shop/web:1.2"}}}}}}]}},"violations":[{{"message":"bash ran in app"}}],"firstOccurred":"2026-12-07T08:00:00Z","time":"{time}","state":"{state}"}}"#
    )
}

/// The finding an ACTIVE or RESOLVED [`alert`] becomes, written out by hand
/// from central-compat §2.12 (moto returns numbers as it stores them).
fn expected(id: &str, account: &str, time: &str, resolved: bool) -> Value {
    let (compliance, record) = if resolved {
        ("PASSED", "ARCHIVED")
    } else {
        ("FAILED", "ACTIVE")
    };
    json!({
        "AwsAccountId": account,
        "Compliance": {"Status": compliance},
        "Confidence": 100,
        "CreatedAt": "2026-12-07T08:00:00Z",
        "Description": "Shells in containers",
        "GeneratorId": "p-sh",
        "Id": id,
        "ProductArn": "arn:aws:securityhub:us-east-1::product/stackrox/kubernetes-security",
        "ProductFields": {"ProviderName": "kubernetes-security", "ProviderVersion": "1.0.0"},
        "RecordState": record,
        "Resources": [
            {"Details": {"Other": {"cluster-name": "prod", "deployment-name": "web", "deployment-namespace": "shop"}},
             "Id": "deployment: web", "Type": "Other"},
            {"Details": {"Container": {"ImageId": "sha256:0123", "ImageName": "quay.io/shop/web:1.2", "Name": "app"}},
             "Id": "container: web.shop@prod: app", "Type": "Container"},
            {"Id": "violation: bash ran in app", "Type": "Other"}
        ],
        "SchemaVersion": "2018-10-08",
        "Severity": {"Normalized": 100, "Product": 4.0},
        "SourceUrl": format!("https://central.example.com/main/violations/{id}"),
        "Title": "Policy No shells violated",
        "Types": ["Unusual Behaviors/Container", "TTPs/Privilege Escalation"],
        "UpdatedAt": time,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_become_centrals_findings_and_resolved_archives_them() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let s = kit::Stack::new("sh", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = static_keys_config(&moto, &s, dir.path(), moto.get("secret_access_key"), "");
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;

    let id = kit::unique("sh-alert");
    let image_id = kit::unique("sh-image");
    let p = kit::producer();
    let active = alert(&id, "ACTIVE", "2026-12-07T09:00:00Z");
    kit::produce(&p, &s.topic, Some(&id), active.as_bytes()).await;
    let image = format!(
        r#"{{"id":"{image_id}","policy":{{"name":"CVE"}},"image":{{"idV2":"x","name":{{"fullName":"r/i:1"}}}},"state":"ACTIVE"}}"#
    );
    kit::produce(&p, &s.topic, Some(&image_id), image.as_bytes()).await;
    let account = moto.get("account_id");
    let got = wait_finding(&moto, &id, "ACTIVE").await;
    assert_eq!(
        got,
        vec![expected(&id, account, "2026-12-07T09:00:00Z", false)]
    );

    // RESOLVED updates the same finding (one, archived), unlike Central's
    // SCC, and is what Central's Security Hub notifier sends too.
    let resolved = alert(&id, "RESOLVED", "2026-12-07T09:30:00Z");
    kit::produce(&p, &s.topic, Some(&id), resolved.as_bytes()).await;
    let got = wait_finding(&moto, &id, "ARCHIVED").await;
    assert_eq!(
        got,
        vec![expected(&id, account, "2026-12-07T09:30:00Z", true)]
    );

    // The image alert is not for Security Hub: no finding, and explain says why.
    assert!(s.committed_all(1, 3, Duration::from_secs(20)).await);
    assert_eq!(findings(&moto, &[&image_id]), vec![Vec::<Value>::new()]);
    let input = dir.path().join("image.json");
    std::fs::write(&input, &image).unwrap();
    // The running herald's own config file.
    let config = herald.config.clone();
    let out = kit::cli(&["explain", "--input", input.to_str().unwrap()], &config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("sh (aws_security_hub): not sent: AWS Security Hub takes deployment and resource alerts only"),
        "{text}"
    );
    assert_eq!(
        herald
            .metric(r#"herald_deliveries_total{destination="sh",outcome="delivered"}"#)
            .await,
        2.0
    );
    let secret = moto.get("secret_access_key");
    assert!(!herald.log().contains(secret), "the secret key is logged");
    assert!(!herald.metrics().await.contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_by_the_signature_check_and_parks_as_auth_error() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let s = kit::Stack::new("sh-bad", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-secret-0123456789abcdefghijklmnopqrstu";
    let cfg = static_keys_config(&moto, &s, dir.path(), wrong, "");
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let id = kit::unique("sh-bad");
    let p = kit::producer();
    produce_active(&p, &s.topic, &id).await;
    let parked = kit::eventually(Duration::from_secs(30), || async {
        herald
            .metric(r#"herald_deliveries_total{destination="sh",outcome="parked"}"#)
            .await
            >= 1.0
    })
    .await;
    assert!(parked, "not parked; log:\n{}", herald.log());
    assert!(
        herald
            .metric(r#"herald_delivery_failures_total{destination="sh",reason="auth_error"}"#)
            .await
            >= 1.0
    );
    assert!(
        herald.log().contains("answered 403 Forbidden"),
        "{}",
        herald.log()
    );
    assert_eq!(findings(&moto, &[&id]), vec![Vec::<Value>::new()]);
    assert!(!herald.log().contains(wrong));
    assert!(!herald.metrics().await.contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assumed_role_signs_with_sts_credentials() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let s = kit::Stack::new("sh-role", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let role = format!("role_arn = \"{}\"", moto.get("role_arn"));
    let cfg = static_keys_config(&moto, &s, dir.path(), moto.get("secret_access_key"), &role);
    // The SDK's own setting for where STS is.
    let mut herald =
        Herald::start_with_env(&cfg, &[("AWS_ENDPOINT_URL_STS", moto.get("endpoint"))]);
    herald.wait_ready(Duration::from_secs(30)).await;
    let id = kit::unique("sh-role");
    let p = kit::producer();
    produce_active(&p, &s.topic, &id).await;
    let got = wait_finding(&moto, &id, "ACTIVE").await;
    assert_eq!(
        got,
        vec![expected(
            &id,
            moto.get("account_id"),
            "2026-12-07T09:00:00Z",
            false
        )]
    );
    assert!(
        herald
            .log()
            .contains("AWS credentials from an assumed role"),
        "{}",
        herald.log()
    );
}

/// The web identity chain (EKS, OpenShift with an OIDC provider): the token
/// file and role from the environment, exchanged at STS, and the temporary
/// credentials verified by moto with authentication on. moto 5.2.6 fails
/// on the unsigned AssumeRoleWithWebIdentity (which AWS takes unsigned), so
/// STS calls pass a proxy that signs that one call for moto (kit::proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_identity_token_file_is_exchanged_at_sts() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let sts = Proxy::start(moto.get("endpoint")).await;
    sts.sign_unsigned(moto.get("access_key_id"), moto.get("secret_access_key"));
    let private = tempfile::tempdir().unwrap();
    let s = kit::Stack::new("sh-web", 1).await;
    let token = private.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").unwrap();
    let account = moto.get("account_id");
    let cfg = s.config("", &destination(&moto, account, "", ""));
    let endpoint = sts.url();
    let mut herald = Herald::start_with_env(
        &cfg,
        &[
            ("AWS_ENDPOINT_URL_STS", &endpoint),
            ("AWS_ROLE_ARN", moto.get("role_arn")),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    herald.wait_ready(Duration::from_secs(30)).await;
    let id = kit::unique("sh-web");
    let p = kit::producer();
    produce_active(&p, &s.topic, &id).await;
    let got = wait_finding(&moto, &id, "ACTIVE").await;
    assert_eq!(
        got,
        vec![expected(&id, account, "2026-12-07T09:00:00Z", false)]
    );
    // The token was exchanged (the start-up check, then the first import
    // reuses the cached credentials), and moto verified the signature.
    assert_eq!(sts.statuses("AssumeRoleWithWebIdentity"), vec![200]);
    let log = herald.log();
    assert!(
        log.contains("AWS credentials from the default AWS credential chain, expiring at"),
        "{log}"
    );
    assert!(!log.contains("c2lnbmF0dXJl"), "the token is logged");
}

/// Concurrent deliveries share `BatchImportFindings` calls: 60 alerts with
/// 16 workers take far fewer calls than findings, and each finding is there
/// once. A private moto (authentication off) so that its request log counts
/// this test's calls only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_findings_share_calls_and_each_arrives_once() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = private_moto();
    let s = kit::Stack::new("sh-batch", 1).await;
    let extra = "workers = 16\nbatch_linger = \"200ms\"\naccess_key_id = \"AKIDBATCH\"\nsecret_access_key = \"any\"";
    let cfg = s.config("", &destination(&moto, "123456789012", "", extra));
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let ids: Vec<String> = (0..60).map(|i| kit::unique(&format!("sh-b{i}"))).collect();
    let p = kit::producer();
    for id in &ids {
        produce_active(&p, &s.topic, id).await;
    }
    let delivered = kit::eventually(Duration::from_secs(60), || async {
        herald
            .metric(r#"herald_deliveries_total{destination="sh",outcome="delivered"}"#)
            .await
            >= 60.0
    })
    .await;
    assert!(delivered, "{}", herald.log());
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let got = findings(&moto, &refs);
    for (id, f) in ids.iter().zip(&got) {
        assert_eq!(f.len(), 1, "{id}: {f:?}");
        assert_eq!(
            f[0],
            expected(id, "123456789012", "2026-12-07T09:00:00Z", false)
        );
    }
    let log = std::fs::read_to_string(moto.get("log")).unwrap();
    let calls = log.matches("POST /findings/import").count();
    println!("security hub batching: 60 findings in {calls} BatchImportFindings calls");
    assert!((1..=15).contains(&calls), "{calls} calls for 60 findings");
    assert_eq!(
        herald
            .metric(r#"herald_deliveries_total{destination="sh",outcome="delivered"}"#)
            .await,
        60.0
    );
}

/// Every shape herald renders (deployment and resource alerts, each state,
/// Central's 32-resource cap, the fixtures) passes the validation the AWS
/// SDKs apply, from botocore's `securityhub` service model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_findings_are_valid_for_botocores_service_model() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    let cfg = kit::config(
        "in",
        "dlq",
        "g",
        "",
        &destination(&moto, "123456789012", "", ""),
    );
    std::fs::write(
        &config,
        cfg.replace("{http}", "127.0.0.1:1")
            .replace("{admin}", "127.0.0.1:2"),
    )
    .unwrap();
    let containers: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"name":"c{i}","image":{{"id":"sha256:{i}","name":{{"fullName":"r/i:{i}"}}}}}}"#
            )
        })
        .collect();
    let many = format!(
        r#"{{"id":"many","policy":{{"name":"p"}},"deployment":{{"name":"d","containers":[{}]}},"violations":[{{"message":"v"}}]}}"#,
        containers.join(",")
    );
    let mut inputs = vec![
        ("active", alert("a-1", "ACTIVE", "2026-12-07T09:00:00Z")),
        ("resolved", alert("a-1", "RESOLVED", "2026-12-07T09:00:00Z")),
        (
            "attempted",
            alert("a-1", "ATTEMPTED", "2026-12-07T09:00:00Z"),
        ),
        (
            "bare",
            r#"{"id":"b","policy":{},"resource":{"resourceType":"SECRETS","name":"s"}}"#
                .to_string(),
        ),
        ("many", many),
    ];
    for f in ["alert-deployment-runtime.json", "alert-resource.json"] {
        inputs.push((f, kit::fixture_text(f)));
    }
    let mut bodies = Vec::new();
    for (name, value) in &inputs {
        let input = dir.path().join(format!("{name}.in"));
        std::fs::write(&input, value).unwrap();
        let out = kit::cli(
            &[
                "render",
                "--destination",
                "sh",
                "--now",
                "2026-12-07T10:00:00Z",
                "--input",
                input.to_str().unwrap(),
            ],
            &config,
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body = dir.path().join(format!("{name}.json"));
        std::fs::write(&body, &out.stdout).unwrap();
        bodies.push(body.to_str().unwrap().to_string());
    }
    let mut args = vec!["validate"];
    args.extend(bodies.iter().map(String::as_str));
    let report = moto.output(&args);
    assert_eq!(report.matches(": valid").count(), inputs.len(), "{report}");
    let many: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("many.json")).unwrap()).unwrap();
    assert_eq!(
        many["Findings"][0]["Resources"].as_array().unwrap().len(),
        32
    );
}

/// kill -9 while batches are in flight, then a restart: every finding is in
/// Security Hub (a finding sent again is the same finding: the API updates
/// by id), none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_then_restart_loses_no_finding() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let s = kit::Stack::new("sh-kill", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "workers = 16\nbatch_linger = \"100ms\"";
    let cfg = static_keys_config(&moto, &s, dir.path(), moto.get("secret_access_key"), extra);
    // The backlog first, so that the kill finds batches in flight.
    let ids: Vec<String> = (0..1000)
        .map(|i| kit::unique(&format!("sh-k{i}")))
        .collect();
    let p = kit::producer();
    for id in &ids {
        produce_active(&p, &s.topic, id).await;
    }
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let started = kit::eventually(Duration::from_secs(30), || async {
        herald
            .metric(r#"herald_deliveries_total{destination="sh",outcome="delivered"}"#)
            .await
            >= 50.0
    })
    .await;
    assert!(started, "{}", herald.log());
    let at_kill = herald
        .metric(r#"herald_deliveries_total{destination="sh",outcome="delivered"}"#)
        .await;
    herald.kill9();
    println!(
        "security hub kill -9: {at_kill} of {} delivered when killed",
        ids.len()
    );
    herald.spawn();
    herald.wait_ready(Duration::from_secs(60)).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut missing = ids.len();
    let all = kit::eventually(Duration::from_secs(60), || {
        missing = findings(&moto, &refs)
            .iter()
            .filter(|f| f.is_empty())
            .count();
        async move { missing == 0 }
    })
    .await;
    assert!(all, "{missing} of {} findings missing", ids.len());
    for (id, f) in ids.iter().zip(findings(&moto, &refs)) {
        assert_eq!(
            f,
            vec![expected(
                id,
                moto.get("account_id"),
                "2026-12-07T09:00:00Z",
                false
            )]
        );
    }
    assert!(s.committed_all(1, ids.len(), Duration::from_secs(30)).await);
}

/// `BatchImportFindings`, as the proxy labels it.
const IMPORT: &str = "POST /findings/import";

/// A bad day at AWS, through a proxy in front of moto (authentication on):
/// an expired session
/// (403 `ExpiredTokenException`) renews the web identity credentials once
/// and the call succeeds; a throttle (429 with `Retry-After`) and a 503 are
/// retried without renewing; every finding arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_throttling_and_503_are_retried_and_each_finding_arrives_once() {
    // Python and moto start outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let moto = moto();
    let proxy = Proxy::start(moto.get("endpoint")).await;
    proxy.sign_unsigned(moto.get("access_key_id"), moto.get("secret_access_key"));
    let account = moto.get("account_id");
    let private = tempfile::tempdir().unwrap();
    let s = kit::Stack::new("sh-faults", 1).await;
    let token = private.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").unwrap();
    let cfg = s
        .config("", &destination(&moto, account, "", ""))
        .replace(moto.get("endpoint"), &proxy.url());
    let aws_error = |status: u16, kind: &str, message: &str, retry_after: Option<&str>| Fault {
        status,
        headers: [("x-amzn-errortype".to_string(), kind.to_string())]
            .into_iter()
            .chain(retry_after.map(|r| ("retry-after".to_string(), r.to_string())))
            .collect(),
        body: serde_json::json!({"__type": kind, "message": message}).to_string(),
    };
    proxy.inject(
        IMPORT,
        aws_error(
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
            None,
        ),
    );
    let mut herald = Herald::start_with_env(
        &cfg,
        &[
            ("AWS_ENDPOINT_URL_STS", &proxy.url()),
            ("AWS_ROLE_ARN", moto.get("role_arn")),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let first = kit::unique("sh-exp");
    produce_active(&p, &s.topic, &first).await;
    wait_finding(&moto, &first, "ACTIVE").await;
    assert_eq!(proxy.statuses(IMPORT), vec![403, 200]);
    // The start-up check, then one renewal for the expired session.
    let exchanges = proxy.statuses("AssumeRoleWithWebIdentity");
    assert_eq!(exchanges.len(), 2, "{exchanges:?}");

    proxy.inject(
        IMPORT,
        aws_error(429, "TooManyRequestsException", "Rate exceeded", Some("1")),
    );
    proxy.inject(
        IMPORT,
        aws_error(
            503,
            "ServiceUnavailableException",
            "Service unavailable",
            None,
        ),
    );
    let ids: Vec<String> = (0..5).map(|i| kit::unique(&format!("sh-f{i}"))).collect();
    for id in &ids {
        produce_active(&p, &s.topic, id).await;
    }
    for id in &ids {
        let got = wait_finding(&moto, id, "ACTIVE").await;
        assert_eq!(
            got,
            vec![expected(id, account, "2026-12-07T09:00:00Z", false)]
        );
    }
    let statuses = proxy.statuses(IMPORT);
    assert_eq!(&statuses[..4], &[403, 200, 429, 503], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        proxy.statuses("AssumeRoleWithWebIdentity").len(),
        2,
        "429 and 503 renew nothing"
    );
    assert!(s.committed_all(1, 6, Duration::from_secs(30)).await);
    let log = herald.log();
    assert!(!log.contains("c2lnbmF0dXJl"), "the token is logged");
}
