//! Email against a real SMTP server (aiosmtpd, scripts/smtp.sh) over
//! STARTTLS with PLAIN and LOGIN, SMTPS and an unauthenticated relay: the
//! received message byte for byte as `render` prints it, the headers and
//! recipient routing by the spec's rules, a wrong password, a stopped server.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::kit::service::Service;
use crate::kit::{self, Herald};

/// Messages a server stored, oldest first: (raw bytes, envelope JSON).
fn received(dir: &str) -> Vec<(Vec<u8>, Value)> {
    let mut jsons: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    jsons.retain(|p| p.extension().is_some_and(|e| e == "json"));
    jsons.sort();
    jsons
        .into_iter()
        .map(|j| {
            let meta: Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
            (std::fs::read(j.with_extension("eml")).unwrap(), meta)
        })
        .collect()
}

fn with_marker(dir: &str, marker: &str) -> Vec<(Vec<u8>, Value)> {
    received(dir)
        .into_iter()
        .filter(|(m, _)| String::from_utf8_lossy(m).contains(marker))
        .collect()
}

/// Messages stored after the first `skip` (the shared server keeps earlier runs').
fn new_with_marker(dir: &str, skip: usize, marker: &str) -> Vec<(Vec<u8>, Value)> {
    received(dir)
        .into_iter()
        .skip(skip)
        .filter(|(m, _)| String::from_utf8_lossy(m).contains(marker))
        .collect()
}

fn email_dest(name: &str, s: &Service, port_key: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nid = \"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"\ntype = \"email\"\nserver = \"127.0.0.1:{}\"\nca_file = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nfrom = \"RHACS\"\nsender = \"rhacs@example.com\"\ndefault_target = \"secops@example.com\"\nannotation_key = \"email\"\nui_endpoint = \"https://central.example.com\"\n{extra}\n",
        s.get(port_key),
        s.get("ca"),
        s.get("username"),
        s.get("password"),
    )
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_exactly_over_starttls_smtps_and_a_relay() {
    let smtp = Service::shared_of("smtp.sh");
    let s = kit::Stack::new("mail", 1).await;
    let destinations = format!(
        "{}{}{}{}",
        email_dest(
            "starttls-plain",
            &smtp,
            "starttls_port",
            "tls = \"starttls\"\nauth_method = \"plain\""
        ),
        email_dest(
            "starttls-login",
            &smtp,
            "starttls_port",
            "tls = \"starttls\"\nauth_method = \"login\""
        ),
        email_dest("smtps", &smtp, "smtps_port", ""),
        email_dest(
            "relay",
            &smtp,
            "plain_port",
            "tls = \"none\"\nallow_unauthenticated = true"
        ),
    );
    let seen: std::collections::HashMap<&str, usize> = ["out_starttls", "out_smtps", "out_plain"]
        .into_iter()
        .map(|k| (k, received(smtp.get(k)).len()))
        .collect();
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    // The fixture's deployment is annotated email=payments-oncall@example.com;
    // a second alert has no annotation and goes to the default recipient.
    kit::produce_to(
        &p,
        &s.topic,
        0,
        kit::fixture_text("alert-deployment-runtime.json").as_bytes(),
    )
    .await;
    let plain = kit::alert("mail-default", "")
        .replace("\"n1\"", "\"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"");
    kit::produce_to(&p, &s.topic, 0, plain.as_bytes()).await;

    let id = "8f2a6c1e-3b7d-4e59-9a41-0c5d2e7f1b93";
    let cases = [
        ("out_starttls", Some("PLAIN"), "starttls-plain"),
        ("out_starttls", Some("LOGIN"), "starttls-login"),
        ("out_smtps", Some("PLAIN"), "smtps"),
        ("out_plain", None, "relay"),
    ];
    for (dir, mechanism, dest) in cases {
        let ok = kit::eventually(Duration::from_secs(30), || async {
            new_with_marker(smtp.get(dir), seen[dir], id)
                .iter()
                .any(|(_, m)| m["auth_mechanism"].as_str() == mechanism)
        })
        .await;
        assert!(ok, "no message for {dest}");
        let (raw, meta) = new_with_marker(smtp.get(dir), seen[dir], id)
            .into_iter()
            .find(|(_, m)| m["auth_mechanism"].as_str() == mechanism)
            .unwrap();
        let text = String::from_utf8(raw.clone()).unwrap();
        assert_eq!(meta["mail_from"], "rhacs@example.com");
        assert_eq!(
            meta["rcpt_tos"],
            serde_json::json!(["payments-oncall@example.com"]),
            "{dest}"
        );
        assert_eq!(header(&text, "From"), "RHACS <rhacs@example.com>");
        assert_eq!(header(&text, "To"), "payments-oncall@example.com");
        assert_eq!(
            header(&text, "Subject"),
            "Deployment checkout-api (in cluster prod-east) violates 'Shell Spawned by Java Application' Policy"
        );
        assert_eq!(
            header(&text, "Message-ID"),
            format!("<herald.{id}.active@example.com>")
        );
        let date =
            chrono::DateTime::parse_from_rfc2822(header(&text, "Date")).expect("an RFC 5322 date");
        // Wrapped at 78: the 85-character link moves to a line of its own.
        assert!(text.contains(&format!(
            "\r\n\r\nAlert ID: {id}\r\nAlert URL:\r\nhttps://central.example.com/main/violations/{id}\r\n"
        )));
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert!(
            body.split("\r\n")
                .all(|l| l.chars().count() <= 78 || !l.trim().contains(char::is_whitespace)),
            "a line over 78 columns that could have been wrapped"
        );
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "only CRLF line ends"
        );
        // What arrived is exactly what `render` prints for the same input and time.
        let input = kit::fixture("alert-deployment-runtime.json");
        let out = kit::cli(
            &[
                "render",
                "--destination",
                dest,
                "--input",
                input.to_str().unwrap(),
                "--now",
                &date.to_rfc3339(),
            ],
            &herald.config,
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text, "{dest}");
    }
    // No annotation: the default recipient.
    let plain_dir = smtp.get("out_plain");
    let skip = seen["out_plain"];
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            !new_with_marker(plain_dir, skip, "mail-default").is_empty()
        })
        .await
    );
    let (_, meta) = new_with_marker(plain_dir, skip, "mail-default").remove(0);
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["secops@example.com"]));
    assert!(
        !herald.log().contains(smtp.get("password")),
        "password in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_permanent_and_a_stopped_server_is_retried() {
    let smtp = Service::private_of(
        "smtp.sh",
        &[
            ("SMTP_STARTTLS_PORT", 20587),
            ("SMTP_SMTPS_PORT", 20465),
            ("SMTP_PLAIN_PORT", 20025),
        ],
    );
    let s = kit::Stack::new("mailf", 1).await;
    let destinations = format!(
        "{}{}",
        email_dest("bad-password", &smtp, "smtps_port", "policies = [\"Test Policy\"]")
            .replace(&format!("password = \"{}\"", smtp.get("password")), "password = \"wrong-one\""),
        email_dest(
            "down",
            &smtp,
            "smtps_port",
            "policies = [\"Later\"]\nretry_min_delay = \"100ms\"\nretry_max_attempts = 3\npark_retry_min = \"1s\"\npark_retry_max = \"1s\""
        ),
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let alert =
        kit::alert("mail-bad", "").replace("\"n1\"", "\"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"");
    kit::produce_to(&p, &s.topic, 0, alert.as_bytes()).await;
    let records = kit::read_records(&s.dlq, 1, Duration::from_secs(30)).await;
    let r: Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(r["destination"], "bad-password");
    assert_eq!(r["reason"], "auth_error");
    assert_eq!(r["attempts"], 1, "not retried");
    assert!(r["last_error"].as_str().unwrap().contains("535"), "{r}");
    assert!(
        !r["last_error"].as_str().unwrap().contains("wrong-one"),
        "password in the error"
    );

    // The server goes away: the delivery is retried, parked, and delivered
    // once the server is back.
    smtp.stop();
    let later = kit::alert("mail-later", "")
        .replace("\"n1\"", "\"3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f\"")
        .replace("Test Policy", "Later");
    kit::produce_to(&p, &s.topic, 0, later.as_bytes()).await;
    let failures = r#"herald_delivery_failures_total{destination="down",reason="connect"}"#;
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            herald.metric(failures).await >= 3.0
        })
        .await
    );
    smtp.start();
    let dir = smtp.get("out_smtps").to_string();
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            !with_marker(&dir, "mail-later").is_empty()
        })
        .await,
        "not delivered after the server came back"
    );
    assert!(
        herald
            .metric(r#"herald_delivery_retries_total{destination="down"}"#)
            .await
            >= 2.0
    );
}
