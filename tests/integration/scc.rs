//! Google Cloud SCC against the strict stand-in (kit::google: every request
//! checked against Google's discovery documents): a service-account key
//! whose JWT the stand-in verifies with the public half, the workload
//! identity chain (subject token file → STS → impersonation → PATCH), a
//! re-send that is an update, RESOLVED → INACTIVE, provider metadata from
//! the cluster file, a rotated subject token after every token was revoked,
//! 429 and 503, the permission check of `herald test`, and no key or token
//! in the log or `/metrics`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::kit::google::{Federation, Google, ServiceAccount};
use crate::kit::{self, Herald};

const SOURCE: &str = "organizations/1234/sources/5678";
const ACCOUNT: &str = "herald@acme-sec.iam.gserviceaccount.com";
const AUDIENCE: &str =
    "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/rhacs/providers/ocp";

/// A service-account key file and the account as the stand-in knows it.
fn service_account(dir: &Path) -> (std::path::PathBuf, ServiceAccount, String) {
    kit::openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "sa.pem",
        ],
    );
    kit::openssl(dir, &["pkey", "-in", "sa.pem", "-pubout", "-out", "sa.pub"]);
    let private = std::fs::read_to_string(dir.join("sa.pem")).unwrap();
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "acme-sec",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": private,
        "client_email": ACCOUNT,
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let path = dir.join("sa.json");
    std::fs::write(&path, key.to_string()).unwrap();
    let account = ServiceAccount {
        email: ACCOUNT.into(),
        key_id: "0123456789abcdef0123456789abcdef01234567".into(),
        public_pem: std::fs::read(dir.join("sa.pub")).unwrap(),
    };
    (path, account, private)
}

/// Central's `/v1/clusters` answer: one GKE cluster.
fn clusters_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("clusters.json");
    std::fs::write(
        &path,
        r#"{"clusters":[{"id":"c-gke","name":"prod","status":{"providerMetadata":{
            "region":"us-central1","zone":"us-central1-a",
            "google":{"project":"acme-prod","clusterName":"gke-prod"},
            "cluster":{"type":"GKE","name":"gke-prod"}}}}]}"#,
    )
    .unwrap();
    path
}

fn config(s: &kit::Stack, g: &Google, dir: &Path, credentials: &str) -> String {
    let destination = format!(
        r#"
[[destinations]]
name = "scc"
type = "google_scc"
source_id = "{SOURCE}"
endpoint = "{url}/scc"
{credentials}
ui_endpoint = "https://central.example.com"
all_alerts = true
park_retry_min = "200ms"
park_retry_max = "1s"
retry_min_delay = "50ms"
retry_max_delay = "200ms"
breaker_cooldown = "1s"
"#,
        url = g.url()
    );
    format!(
        "cluster_metadata = \"{}\"\n{}",
        clusters_file(dir).display(),
        s.config("", &destination)
    )
}

/// A deployment alert in the GKE cluster of the cluster file.
fn deployment_alert(id: &str, state: &str) -> String {
    format!(
        r#"{{"alert":{{"id":"{id}","policy":{{"id":"p1","name":"Shell Spawned","severity":"CRITICAL_SEVERITY"}},
        "clusterId":"c-gke","clusterName":"prod","namespace":"shop",
        "deployment":{{"id":"d1","name":"web","type":"Deployment","namespace":"shop","clusterId":"c-gke","clusterName":"prod"}},
        "violations":[{{"message":"shell ran"}}],"enforcement":{{"action":"FAIL_KUBE_REQUEST_ENFORCEMENT","message":"denied"}},
        "time":"2026-12-07T09:00:00.250Z","state":"{state}"}}}}"#
    )
}

/// Produces the deployment alert `id`, ACTIVE, keyed by its id.
async fn send_active(p: &rdkafka::producer::FutureProducer, topic: &str, id: &str) {
    kit::produce(
        p,
        topic,
        Some(id),
        deployment_alert(id, "ACTIVE").as_bytes(),
    )
    .await;
}

fn uuid(n: u32) -> String {
    format!("{n:08x}-1111-4222-8333-{:012x}", fastrand::u64(..1 << 48))
}

fn name_of(id: &str) -> String {
    format!("{SOURCE}/findings/{}", id.replace('-', ""))
}

async fn wait_finding(g: &Google, name: &str, state: &str) -> Value {
    let ok = kit::eventually(Duration::from_secs(30), || {
        let f = g.finding(name);
        async move { f.is_some_and(|f| f["state"] == state) }
    })
    .await;
    assert!(
        ok,
        "{name}: {:?}; refused: {:?}",
        g.finding(name),
        g.invalid()
    );
    g.finding(name).unwrap()
}

/// The finding as stored, without what the service adds.
fn sent(mut f: Value) -> Value {
    f.as_object_mut().unwrap().remove("createTime");
    f
}

fn render(herald: &Herald, dir: &Path, input: &str) -> Value {
    let path = dir.join("render-input.json");
    std::fs::write(&path, input).unwrap();
    let out = kit::cli(
        &[
            "render",
            "--destination",
            "scc",
            "--input",
            path.to_str().unwrap(),
        ],
        &herald.config,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether the command succeeded, and its stdout and stderr.
fn output(out: std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A service-account key set up: the stand-in knowing the account, a
/// stack, herald's config with `extra` destination keys, the directory
/// with the key, and the private key's PEM.
async fn with_key(
    prefix: &str,
    extra: &str,
) -> (Google, kit::Stack, String, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, account, private) = service_account(dir.path());
    let g = Google::start(&[SOURCE], Some(account), None, Duration::from_secs(3600)).await;
    let s = kit::Stack::new(prefix, 1).await;
    let cfg = config(
        &s,
        &g,
        dir.path(),
        &format!("credentials_file = \"{}\"\n{extra}", key_file.display()),
    );
    (g, s, cfg, dir, private)
}

/// Workload identity federation set up: the stand-in expecting `expected`
/// as the subject token, the token file holding `in_file`, the
/// `external_account` file (impersonating [`ACCOUNT`] or not), and herald
/// on it, ready.
struct Wif {
    g: Google,
    s: kit::Stack,
    herald: Herald,
    token_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn wif(prefix: &str, in_file: &str, expected: &str, impersonate: bool) -> Wif {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, in_file).unwrap();
    let g = Google::start(
        &[SOURCE],
        None,
        Some(Federation {
            audience: AUDIENCE.into(),
            subject_token: expected.into(),
            impersonate: impersonate.then(|| ACCOUNT.to_string()),
        }),
        Duration::from_secs(3600),
    )
    .await;
    let mut external = serde_json::json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/sts/v1/token", g.url()),
        "credential_source": {"file": token_file},
    });
    if impersonate {
        external["service_account_impersonation_url"] = format!(
            "{}/iam/v1/projects/-/serviceAccounts/{ACCOUNT}:generateAccessToken",
            g.url()
        )
        .into();
    }
    let cred = dir.path().join("wif.json");
    std::fs::write(&cred, external.to_string()).unwrap();
    let s = kit::Stack::new(prefix, 1).await;
    let cfg = config(
        &s,
        &g,
        dir.path(),
        &format!("credentials_file = \"{}\"", cred.display()),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    Wif {
        g,
        s,
        herald,
        token_file,
        _dir: dir,
    }
}

fn assert_no_secrets(log: &str, metrics: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !log.contains(s.as_str()),
            "the log shows a secret: {s:.24}…"
        );
        assert!(
            !metrics.contains(s.as_str()),
            "/metrics shows a secret: {s:.24}…"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_creates_updates_and_resolves_findings() {
    // openssl and the stand-in work outside a herald: keep timing tests off.
    let _busy = kit::busy();
    let (g, s, cfg, dir, private) = with_key("scc-sa", "").await;
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;

    // The first answer is lost after the finding was written: the re-send
    // is an update of the same finding, not an error.
    g.lose_answers(1);
    let id = uuid(1);
    let active = deployment_alert(&id, "ACTIVE");
    let p = kit::producer();
    kit::produce(&p, &s.topic, Some(&id), active.as_bytes()).await;
    let f = wait_finding(&g, &name_of(&id), "ACTIVE").await;
    assert!(
        kit::eventually(Duration::from_secs(10), || {
            let w = g.writes();
            async move { w == (1, 1) }
        })
        .await,
        "writes {:?}",
        g.writes()
    );
    let expected = render(&herald, dir.path(), &active);
    assert_eq!(sent(f), expected);
    assert_eq!(
        expected,
        serde_json::json!({
            "name": name_of(&id),
            "parent": SOURCE,
            "resourceName": "//container.googleapis.com/projects/acme-prod/locations/us-central1/clusters/gke-prod",
            "state": "ACTIVE",
            "category": "Shell Spawned",
            "externalUri": format!("https://central.example.com/main/violations/{id}"),
            "eventTime": "2026-12-07T09:00:00.250Z",
            "severity": "CRITICAL",
            "sourceProperties": {
                "namespace": "shop", "service": "web", "deployment_type": "Deployment",
                "enforcement_actions": [{"action": "Blocked kubernetes operation", "message": "denied"}],
                "summary": "shell ran"
            }
        })
    );

    // RESOLVED: the same finding, INACTIVE.
    let resolved = deployment_alert(&id, "RESOLVED");
    kit::produce(&p, &s.topic, Some(&id), resolved.as_bytes()).await;
    let f = wait_finding(&g, &name_of(&id), "INACTIVE").await;
    assert_eq!(sent(f), render(&herald, dir.path(), &resolved));
    assert_eq!(g.writes(), (1, 2));

    // A resource alert (Central's lookup fails on these) in a cluster the
    // file does not know; an image alert is not routed.
    let rid = uuid(2);
    let resource = format!(
        r#"{{"alert":{{"id":"{rid}","policy":{{"name":"Secrets"}},"resource":{{"resourceType":"SECRETS","name":"db","clusterId":"c-x","clusterName":"edge","namespace":"n"}}}}}}"#
    );
    let image = format!(
        r#"{{"alert":{{"id":"{}","policy":{{"name":"CVE"}},"image":{{"id":"sha256:1"}}}}}}"#,
        uuid(3)
    );
    kit::produce(&p, &s.topic, Some("img"), image.as_bytes()).await;
    kit::produce(&p, &s.topic, Some(&rid), resource.as_bytes()).await;
    let f = wait_finding(&g, &name_of(&rid), "ACTIVE").await;
    assert_eq!(f["resourceName"], "UNSPECIFIED/edge");
    assert!(s.committed_all(1, 4, Duration::from_secs(30)).await);
    assert_eq!(g.findings().len(), 2);
    assert_eq!(g.invalid(), Vec::<String>::new());
    // Every call was signed with the key: a JWT, verified.
    assert!(g.bearers().iter().all(|b| b.starts_with("eyJ")));

    // `explain` says why the image alert went nowhere.
    let image_file = dir.path().join("image.json");
    std::fs::write(&image_file, &image).unwrap();
    let text = output(kit::cli(
        &["explain", "--input", image_file.to_str().unwrap()],
        &herald.config,
    ))
    .1;
    assert!(
        text.contains(
            "Cloud SCC takes alerts on deployments and resources, not on images or nodes"
        ),
        "{text}"
    );

    // `herald test` and `check-config --online` ask whether the credentials
    // may write findings.
    for args in [
        &["test", "--destination", "scc"][..],
        &["check-config", "--online"],
    ] {
        let (ok, text) = output(kit::cli(args, &herald.config));
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("create and update findings in {SOURCE}")),
            "{text}"
        );
    }
    g.grant(&[]);
    for args in [
        &["test", "--destination", "scc"][..],
        &["check-config", "--online"],
    ] {
        let (ok, text) = output(kit::cli(args, &herald.config));
        assert!(!ok, "{text}");
        assert!(
            text.contains("lack securitycenter.findings.update on organizations/1234/sources/5678"),
            "{text}"
        );
    }

    let mut secrets: Vec<String> = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect();
    secrets.extend(g.bearers());
    assert_no_secrets(&herald.log(), &herald.metrics().await, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_exchanges_impersonates_and_survives_revocation_and_rotation() {
    let _busy = kit::busy();
    let Wif {
        g,
        s,
        herald,
        token_file,
        _dir,
    } = wif("scc-wif", "subject-token-one", "subject-token-one", true).await;
    let p = kit::producer();
    let first = uuid(10);
    send_active(&p, &s.topic, &first).await;
    wait_finding(&g, &name_of(&first), "ACTIVE").await;
    assert_eq!(g.exchanges(), (1, 1), "one exchange, one impersonation");
    assert!(
        g.bearers().iter().all(|b| b.starts_with("iam-token-")),
        "{:?}",
        g.bearers()
    );

    // Every token revoked and the projected token rotated: the 401 rebuilds
    // the credentials, which read the new subject token.
    std::fs::write(&token_file, "subject-token-two").unwrap();
    g.set_subject_token("subject-token-two");
    g.revoke_all();
    // 429 with Retry-After and a 503 on the way.
    g.fail_next(&[(429, Some("1")), (503, None)]);
    let ids: Vec<String> = (0..20).map(|i| uuid(100 + i)).collect();
    for id in &ids {
        send_active(&p, &s.topic, id).await;
    }
    for id in &ids {
        wait_finding(&g, &name_of(id), "ACTIVE").await;
    }
    assert!(s.committed_all(1, 21, Duration::from_secs(30)).await);
    assert_eq!(g.writes(), (21, 0), "each finding written once");
    let statuses = g.statuses();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        21,
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&401) && statuses.contains(&429) && statuses.contains(&503),
        "{statuses:?}"
    );
    // One new exchange for all the deliveries refused with the revoked token.
    assert_eq!(g.exchanges(), (2, 2));
    assert_eq!(g.invalid(), Vec::<String>::new());

    let mut secrets: Vec<String> = g.bearers().into_iter().collect();
    secrets.push("subject-token-one".into());
    secrets.push("subject-token-two".into());
    assert_no_secrets(&herald.log(), &herald.metrics().await, &secrets);
}

/// An exchange that hangs times out and starts afresh; a subject token STS
/// refuses parks the deliveries as `auth_error`; once the file holds a good
/// token, they are delivered, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subject_token_parks_until_it_is_fixed() {
    let _busy = kit::busy();
    let Wif {
        g,
        s,
        herald,
        token_file,
        _dir,
    } = wif(
        "scc-park",
        "stale-subject-token",
        "fresh-subject-token",
        false,
    )
    .await;
    let p = kit::producer();
    let id = uuid(20);
    // The first exchange hangs (STS takes the connection and never
    // answers): after 20 s the credentials are dropped, not waited on.
    g.hang_exchanges(1);
    send_active(&p, &s.topic, &id).await;
    let timed_out = kit::eventually(Duration::from_secs(40), || async {
        herald
            .metric(r#"herald_delivery_failures_total{destination="scc",reason="timeout"}"#)
            .await
            >= 1.0
    })
    .await;
    assert!(timed_out, "{}", herald.log());
    assert!(herald
        .log()
        .contains("no Google access token from credentials_file within 20s"));
    let parked = kit::eventually(Duration::from_secs(30), || async {
        herald
            .metric(r#"herald_delivery_failures_total{destination="scc",reason="auth_error"}"#)
            .await
            >= 1.0
    })
    .await;
    assert!(parked, "{}", herald.log());
    assert!(g.findings().is_empty());
    std::fs::write(&token_file, "fresh-subject-token").unwrap();
    wait_finding(&g, &name_of(&id), "ACTIVE").await;
    assert!(s.committed_all(1, 1, Duration::from_secs(30)).await);
    // Without impersonation the STS token itself calls SCC.
    assert!(g.bearers().iter().all(|b| b.starts_with("sts-token-")));
    assert_no_secrets(
        &herald.log(),
        &herald.metrics().await,
        &["stale-subject-token".into(), "fresh-subject-token".into()],
    );
}

/// kill -9 with writes in flight, then a restart: every finding is in Cloud
/// SCC once (a finding written again is an update of the same finding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_writes_in_flight_then_restart_loses_no_finding() {
    let _busy = kit::busy();
    let (g, s, cfg, _dir, _) = with_key("scc-kill", "workers = 16").await;
    let ids: Vec<String> = (0..600).map(uuid).collect();
    let p = kit::producer();
    for id in &ids {
        send_active(&p, &s.topic, id).await;
    }
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let started = kit::eventually(Duration::from_secs(30), || {
        let n = g.findings().len();
        async move { n >= 50 }
    })
    .await;
    assert!(started, "{}", herald.log());
    herald.kill9();
    let at_kill = g.findings().len();
    println!(
        "cloud scc kill -9: {at_kill} of {} written when killed",
        ids.len()
    );
    herald.spawn();
    herald.wait_ready(Duration::from_secs(60)).await;
    let want = ids.len();
    let all = kit::eventually(Duration::from_secs(60), || {
        let n = g.findings().len();
        async move { n == want }
    })
    .await;
    assert!(all, "{} of {} findings", g.findings().len(), ids.len());
    assert!(s.committed_all(1, ids.len(), Duration::from_secs(30)).await);
    let (creates, updates) = g.writes();
    assert_eq!(creates, ids.len(), "each finding created once");
    println!("cloud scc kill -9: {updates} written again after the restart");
    let findings = g.findings();
    for id in &ids {
        let f = &findings[&name_of(id)];
        assert_eq!(f["state"], "ACTIVE");
        assert_eq!(
            f["externalUri"],
            format!("https://central.example.com/main/violations/{id}")
        );
    }
    assert_eq!(g.invalid(), Vec::<String>::new());
}

/// Without a credentials file, on GKE: Application Default Credentials fall
/// back to the metadata server (`GCE_METADATA_HOST` points at the stand-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_credentials_file_the_metadata_server_gives_the_token() {
    let _busy = kit::busy();
    assert!(
        std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_none(),
        "this test needs GOOGLE_APPLICATION_CREDENTIALS unset"
    );
    let dir = tempfile::tempdir().unwrap();
    let g = Google::start(&[SOURCE], None, None, Duration::from_secs(3600)).await;
    let s = kit::Stack::new("scc-mds", 1).await;
    let cfg = config(&s, &g, dir.path(), "");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut herald = Herald::start_with_env(
        &cfg,
        &[
            ("GCE_METADATA_HOST", &g.addr.to_string()),
            ("HOME", home.to_str().unwrap()),
        ],
    );
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let id = uuid(30);
    send_active(&p, &s.topic, &id).await;
    wait_finding(&g, &name_of(&id), "ACTIVE").await;
    assert!(
        g.bearers().iter().all(|b| b.starts_with("mds-token-")),
        "{:?}",
        g.bearers()
    );
    assert!(g.metadata_requests() >= 1);
    assert_no_secrets(
        &herald.log(),
        &herald.metrics().await,
        &g.bearers().into_iter().collect::<Vec<_>>(),
    );
}

/// `resourceName` from Central's cluster metadata (`[central]`): a cluster
/// Central did not list at start is read again on the first alert from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_names_come_from_centrals_cluster_metadata() {
    let (g, s, cfg, dir, _) = with_key("scc-central", "").await;
    let central = crate::kit::central::Central::start("scc-central-token").await;
    let gke = |id: &str, name: &str, project: &str, cluster: &str| {
        serde_json::json!({"id": id, "name": name, "status": {"providerMetadata": {
            "region": "us-central1", "google": {"project": project, "clusterName": cluster},
            "cluster": {"type": "GKE", "name": cluster}}}})
    };
    central.set_clusters(vec![gke("c-gke", "prod", "acme-prod", "gke-prod")]);
    let token_file = dir.path().join("central-token");
    std::fs::write(&token_file, "scc-central-token").unwrap();
    let without_file = cfg
        .lines()
        .filter(|l| !l.starts_with("cluster_metadata"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut herald = Herald::start(&format!(
        "{without_file}\n[central]\nendpoint = \"{}\"\napi_token_file = \"{}\"\nmetadata_refresh_on_miss = \"1s\"\n",
        central.url(),
        token_file.display()
    ));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let send = |id: String, alert: String| {
        let (p, topic) = (p.clone(), s.topic.clone());
        async move { kit::produce(&p, &topic, Some(&id), alert.as_bytes()).await }
    };
    let id = uuid(40);
    send(id.clone(), deployment_alert(&id, "ACTIVE")).await;
    let f = wait_finding(&g, &name_of(&id), "ACTIVE").await;
    assert_eq!(
        f["resourceName"],
        "//container.googleapis.com/projects/acme-prod/locations/us-central1/clusters/gke-prod"
    );
    // A cluster Central lists only now: the first alert finds it unknown
    // (Central's own rule then) and asks for a read; the next finds it.
    central.set_clusters(vec![
        gke("c-gke", "prod", "acme-prod", "gke-prod"),
        gke("c-new", "new", "acme-new", "gke-new"),
    ]);
    let in_new = |id: &str| {
        deployment_alert(id, "ACTIVE")
            .replace("c-gke", "c-new")
            .replace("\"prod\"", "\"new\"")
    };
    let first = uuid(41);
    send(first.clone(), in_new(&first)).await;
    let f = wait_finding(&g, &name_of(&first), "ACTIVE").await;
    assert_eq!(f["resourceName"], "UNSPECIFIED/new");
    // The new read is in use once its counts are.
    assert!(
        kit::eventually(Duration::from_secs(15), || async {
            herald
                .metric(r#"herald_central_metadata_entries{kind="clusters"}"#)
                .await
                == 2.0
        })
        .await
    );
    let second = uuid(42);
    send(second.clone(), in_new(&second)).await;
    let f = wait_finding(&g, &name_of(&second), "ACTIVE").await;
    assert_eq!(
        f["resourceName"],
        "//container.googleapis.com/projects/acme-new/locations/us-central1/clusters/gke-new"
    );
    drop(herald);
}
