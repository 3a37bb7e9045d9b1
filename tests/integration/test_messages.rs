//! `herald test`: each type's test message against real receivers, and the
//! exit code on failure.

use std::process::Command;
use std::time::Duration;

use crate::kit::hec::Hec;
use crate::kit::receiver::Behavior;
use crate::kit::service::Rsyslog;
use crate::kit::{self, Receiver};

fn herald_test(config: &str, destination: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(kit::herald_bin())
        .args(["test", "--destination", destination, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn config(destinations: &str) -> String {
    kit::config("t", "t-dlq", "g", "", destinations)
        .replace("{http}", "127.0.0.1:0")
        .replace("{admin}", "127.0.0.1:0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_messages_reach_real_receivers_and_failures_exit_non_zero() {
    let rx = Receiver::start().await;
    let hec = Hec::start("hec-token-1", None).await;
    let r = Rsyslog::shared();
    let marker = kit::unique("htest");
    let destinations = format!(
        r#"
[[destinations]]
name = "hook"
id = "n1"
type = "webhook"
url = "{hook}"
extra_fields = {{ source = "rhacs" }}
[[destinations]]
name = "hec-health"
id = "n1"
type = "splunk"
url = "{hec}"
token = "hec-token-1"
[[destinations]]
name = "hec-path"
id = "n1"
type = "splunk"
url = "{hec}/services/collector/event"
token = "hec-token-1"
[[destinations]]
name = "hec-bad-token"
id = "n1"
type = "splunk"
url = "{hec}"
token = "nope"
[[destinations]]
name = "siem"
id = "n1"
type = "syslog"
host = "127.0.0.1"
port = {port}
hostname = "{marker}"
procid = "1"
device_version = "4.7.0"
[[destinations]]
name = "sumo"
id = "n1"
type = "sumologic"
url = "{sumo}"
"#,
        hook = rx.url("/hook"),
        hec = hec.url(),
        port = r.get("tcp_port"),
        sumo = rx.url("/sumo"),
    );
    let cfg = config(&destinations);

    let (ok, out, err) = herald_test(&cfg, "hook");
    assert!(ok, "{err}");
    assert!(out.starts_with("hook: ok: "), "{out}");
    let got = rx.wait_delivered(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].text(),
        r#"{"source":"rhacs","alert": {"id":"testalert","policy":{"name":"This is a test message created to test integration with StackRox."}}}"#
    );

    let (ok, out, err) = herald_test(&cfg, "hec-health");
    assert!(ok && out.contains("is healthy"), "{out}{err}");
    assert!(hec.requests().is_empty(), "the health check posts no event");
    let (ok, _, err) = herald_test(&cfg, "hec-path");
    assert!(ok, "{err}");
    let events = hec.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["policy"]["name"], "Test Policy");
    assert_eq!(
        events[0]["event"]["violations"][0]["message"],
        "This is a sample Splunk alert message created to test integration with StackRox."
    );
    let (ok, _, err) = herald_test(&cfg, "hec-bad-token");
    assert!(!ok);
    assert!(
        err.contains("hec-bad-token: failed:") && err.contains("403"),
        "{err}"
    );
    assert!(!err.contains("nope"), "token in the error");

    let (ok, _, err) = herald_test(&cfg, "siem");
    assert!(ok, "{err}");
    let lines = r
        .wait_lines("out_tcp", &marker, 1, Duration::from_secs(10))
        .await;
    let rest = lines[0].split_once(' ').unwrap().1; // after "<135>1"
    assert!(lines[0].starts_with("<135>1 "), "{}", lines[0]);
    assert!(
        rest.split_once(' ').unwrap().1.starts_with(&format!(
            "{marker} stackRoxKubernetesSecurityPlatform 1 stackroxKubernetesSecurityPlatformIntegrationTest - CEF:0|StackRox|Kubernetes Security Platform|4.7.0|Test|Test|0|stackroxKubernetesSecurityPlatformTestMessage=test"
        )),
        "{}",
        lines[0]
    );

    let (ok, _, err) = herald_test(&cfg, "sumo");
    assert!(ok, "{err}");
    let got = rx.wait_delivered(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].path, "/sumo");
    assert_eq!(
        got[1].text(),
        r#"{"testID":"testalert","testMessage":"This is a test message created to test integration with StackRox."}"#
    );

    rx.set(Behavior::Fail(500, None));
    let (ok, _, err) = herald_test(&cfg, "hook");
    assert!(!ok);
    assert!(err.contains("500 Internal Server Error"), "{err}");
    let (ok, _, err) = herald_test(
        &config(&destinations.replace(&format!("port = {}", r.get("tcp_port")), "port = 1")),
        "siem",
    );
    assert!(
        !ok && err.contains("siem: failed: syslog 127.0.0.1:1: connect"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_jira_test_messages() {
    let smtp = crate::kit::service::Service::shared_of("smtp.sh");
    let jira = crate::kit::jira::Jira::start(
        crate::kit::jira::Shape::ServerDc,
        &["Highest", "High", "Medium", "Low"],
        true,
    )
    .await;
    let destinations = format!(
        "[[destinations]]\nname = \"mail\"\nid = \"n1\"\ntype = \"email\"\nserver = \"127.0.0.1:{}\"\ntls = \"none\"\nallow_unauthenticated = true\nsender = \"rhacs@example.com\"\ndefault_target = \"test-{}@example.com\"\n[[destinations]]\nname = \"jira\"\nid = \"n1\"\ntype = \"jira\"\nurl = \"{}\"\nusername = \"bot\"\npassword = \"jira-token-1\"\nissue_type = \"Task\"\ndefault_target = \"SEC\"\n",
        smtp.get("plain_port"),
        std::process::id(),
        jira.url()
    );
    let cfg = config(&destinations);
    let (ok, out, err) = herald_test(&cfg, "mail");
    assert!(ok && out.starts_with("mail: ok: "), "{out}{err}");
    let rcpt = format!("test-{}@example.com", std::process::id());
    let found = std::fs::read_dir(smtp.get("out_plain"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|m| m.contains(&format!("To: {rcpt}\r\n")))
        .expect("the test email arrived");
    assert!(
        found.contains("\r\nSubject: StackRox Test Email\r\n"),
        "{found}"
    );
    // Central writes the body plus CRLF; its body already ends in CRLF.
    assert!(
        found.ends_with(
            "\r\n\r\nThis is a test email created to test integration with StackRox.\r\n\r\n"
        ),
        "{found:?}"
    );

    let (ok, out, err) = herald_test(&cfg, "jira");
    assert!(
        ok && out.starts_with("jira: ok: created test issue SEC-1"),
        "{out}{err}"
    );
    let issue = &jira.issues()[0];
    assert_eq!(
        issue["raw"],
        "{\"fields\":{\"description\":\"StackRox Test Issue\",\"issuetype\":{\"name\":\"Task\"},\"priority\":{\"name\":\"Low\"},\"project\":{\"key\":\"SEC\"},\"summary\":\"This is a test issue created to test integration with StackRox.\"}}\n"
    );
}
