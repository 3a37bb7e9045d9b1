//! `POST /v1/ingest`: Central's generic-webhook bodies through herald's own
//! endpoint into Kafka and out to a destination; auth, bad bodies, the size
//! limit, TLS, and 503 (then no loss) while the broker is down.

use std::time::Duration;

use crate::kit::service::Service;
use crate::kit::{self, Herald, Receiver};

const TOKEN: &str = "ingest-token-5ecr3t";
const PASSWORD: &str = "central-pa55word";

fn dest(url: &str) -> String {
    format!("[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{url}\"\n")
}

fn ingest_section(port: u16, extra: &str) -> String {
    format!(
        "[ingest]\nlisten = \"127.0.0.1:{port}\"\nusername = \"central\"\npassword = \"{PASSWORD}\"\nbearer_token = \"{TOKEN}\"\nmax_body_bytes = 4096\n{extra}\n"
    )
}

fn body(id: &str) -> String {
    format!("{{\"alert\": {}}}", kit::alert(id, ""))
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    body: String,
) -> (u16, String) {
    let mut rq = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = auth {
        rq = rq.header("authorization", a);
    }
    let r = rq.send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_bodies_reach_the_destination_and_bad_requests_are_refused() {
    let s = kit::Stack::new("ingest", 1).await;
    let rx = Receiver::start().await;
    let port = kit::free_port();
    // [ingest] must come before [[destinations]] in the file.
    let cfg = s.config(
        "",
        &format!("{}{}", ingest_section(port, ""), dest(&rx.url("/"))),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let url = format!("http://127.0.0.1:{port}/v1/ingest");
    let c = reqwest::Client::new();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("central:{PASSWORD}")
        )
    );
    let bearer = format!("Bearer {TOKEN}");

    // Refused: no credentials, wrong ones, bad bodies, too large.
    let (code, _) = post(&c, &url, None, body("in-0")).await;
    assert_eq!(code, 401);
    let (code, _) = post(&c, &url, Some("Bearer wrong"), body("in-0")).await;
    assert_eq!(code, 401);
    let (code, text) = post(&c, &url, Some(&bearer), "{not json".into()).await;
    assert_eq!(code, 400);
    assert!(text.starts_with("not_json: "), "{text}");
    let (code, text) = post(&c, &url, Some(&bearer), "[1]".into()).await;
    assert_eq!(
        (code, text.trim()),
        (400, "not_object: top-level value is an array"),
        "{text}"
    );
    let big = body(&format!("in-big-{}", "x".repeat(5000)));
    let (code, text) = post(&c, &url, Some(&bearer), big).await;
    assert_eq!(code, 413);
    assert!(text.starts_with("too_large: "), "{text}");

    // Accepted with either credential, and delivered as Central would have.
    let (code, _) = post(&c, &url, Some(&basic), body("in-1")).await;
    assert_eq!(code, 200);
    let (code, _) = post(&c, &url, Some(&bearer), body("in-2")).await;
    assert_eq!(code, 200);
    let got = rx.wait_delivered(2, Duration::from_secs(20)).await;
    let mut texts: Vec<String> = got.iter().map(|r| r.text()).collect();
    texts.sort();
    assert_eq!(
        texts,
        vec![
            format!("{{\"alert\": {}}}", kit::alert("in-1", "")),
            format!("{{\"alert\": {}}}", kit::alert("in-2", ""))
        ]
    );
    // The records on the topic are the bodies as posted, keyed by alert id.
    let records = kit::read_keyed_records(&s.topic, 2, Duration::from_secs(10)).await;
    assert_eq!(
        records,
        vec![
            ("in-1".to_string(), body("in-1").into_bytes()),
            ("in-2".to_string(), body("in-2").into_bytes())
        ]
    );
    let m = herald.metrics().await;
    for (code, n) in [
        ("200", 2.0),
        ("400", 2.0),
        ("401", 2.0),
        ("413", 1.0),
        ("503", 0.0),
    ] {
        assert_eq!(
            kit::metric_value(
                &m,
                &format!("herald_ingest_requests_total{{code=\"{code}\"}}")
            ),
            n,
            "code {code}"
        );
    }
    let log = herald.log();
    for secret in [TOKEN, PASSWORD] {
        assert!(
            !log.contains(secret) && !m.contains(secret),
            "{secret} leaked"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.delivered().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_tls() {
    let s = kit::Stack::new("ingest-tls", 1).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = kit::tls::certs(dir.path());
    let port = kit::free_port();
    let tls = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        certs.server_cert.display(),
        certs.server_key.display()
    );
    let cfg = s.config(
        "",
        &format!("{}{}", ingest_section(port, &tls), dest(&rx.url("/"))),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let (code, _) = post(
        &c,
        &format!("https://localhost:{port}/v1/ingest"),
        Some(&format!("Bearer {TOKEN}")),
        body("tls-1"),
    )
    .await;
    assert_eq!(code, 200);
    let got = rx.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].text(), body("tls-1"));
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/ingest"))
        .body(body("tls-2"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

/// The broker is a private one here: the test stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_ingest_answers_503_and_nothing_is_lost() {
    let kafka = Service::private_kafka(19192);
    let brokers = kafka.get("bootstrap").to_string();
    let s = kit::Stack::new_on(&brokers, "ingest-down", 1).await;
    let rx = Receiver::start().await;
    let port = kit::free_port();
    let cfg = s.config(
        "",
        &format!(
            "{}{}",
            ingest_section(port, "produce_timeout = \"2s\""),
            dest(&rx.url("/"))
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(60)).await;
    let url = format!("http://127.0.0.1:{port}/v1/ingest");
    let c = reqwest::Client::new();
    let auth = format!("Bearer {TOKEN}");
    let (code, _) = post(&c, &url, Some(&auth), body("down-1")).await;
    assert_eq!(code, 200);
    rx.wait_delivered(1, Duration::from_secs(20)).await;

    kafka.stop();
    // Central's generic notifier retries what was not acknowledged; so does this test.
    let (code, text) = post(&c, &url, Some(&auth), body("down-2")).await;
    assert_eq!(code, 503, "{text}");
    // Down past the session timeout (10 s): herald's static member may be
    // fenced when the broker returns; herald replaces its consumer and the
    // ingest listener Central posts to stays up.
    tokio::time::sleep(Duration::from_secs(12)).await;
    kafka.start_kept();
    let accepted = kit::eventually(Duration::from_secs(60), || async {
        post(&c, &url, Some(&auth), body("down-2")).await.0 == 200
    })
    .await;
    assert!(accepted, "ingest did not recover; log:\n{}", herald.log());
    let both = kit::eventually(Duration::from_secs(60), || async {
        rx.delivered().len() >= 2
    })
    .await;
    assert!(both, "down-2 not delivered; log:\n{}", herald.log());
    assert_eq!(rx.delivered()[1].text(), body("down-2"));
    let m = herald.metrics().await;
    assert!(kit::metric_value(&m, "herald_ingest_requests_total{code=\"503\"}") >= 1.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids: Vec<String> = rx
        .delivered()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap())
        .collect();
    assert_eq!(ids, vec!["down-1:ACTIVE", "down-2:ACTIVE"], "each once");
    assert!(
        herald.wait_exit(Duration::from_millis(10)).is_none(),
        "herald exited; log:\n{}",
        herald.log()
    );
    herald.signal(libc::SIGTERM);
    herald.wait_exit(Duration::from_secs(20));
}
