//! Prometheus against a running herald: `promtool check metrics` on the live
//! exposition, and a real Prometheus loading the shipped scrape config and
//! alerting rules (deploy/prometheus/), scraping herald, answering queries.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::kit::{self, Herald, Receiver};

fn deploy(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus")
            .join(file),
    )
    .unwrap()
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(base: &str, q: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await;
    match r {
        Ok(r) => serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// The single sample's value of an instant query, if there is exactly one.
fn single_value(v: &serde_json::Value) -> Option<String> {
    let result = v["data"]["result"].as_array()?;
    (result.len() == 1).then(|| result[0]["value"][1].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics_and_prometheus_scrapes_herald() {
    let s = kit::Stack::new("prom", 1).await;
    let rx = Receiver::start().await;
    let cfg = s.config(
        "",
        &format!(
            "[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"{}\"\n",
            rx.url("/")
        ),
    );
    let mut herald = Herald::start(&cfg);
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    for id in ["pm-1", "pm-2", "pm-3"] {
        kit::produce_to(&p, &s.topic, 0, kit::alert(id, "").as_bytes()).await;
    }
    rx.wait_delivered(3, Duration::from_secs(20)).await;

    // promtool's linter on the live exposition: no finding at all.
    let exposition = herald.metrics().await;
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The shipped scrape config and rules, pointed at this herald, every second.
    let dir = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{}", herald.http_port);
    let config = deploy("prometheus.yml")
        .replace("127.0.0.1:9464", &target)
        .replace("30s", "1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
    assert!(
        config.contains(&target),
        "the example scrapes 127.0.0.1:9464"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::write(
        dir.path().join("herald-rules.yml"),
        deploy("herald-rules.yml"),
    )
    .unwrap();
    let port = kit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _prometheus = Child(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus)"),
    );
    let series = r#"herald_deliveries_total{job="herald",destination="w",outcome="delivered"}"#;
    let scraped = kit::eventually(Duration::from_secs(30), || async {
        single_value(&query(&base, series).await).as_deref() == Some("3")
    })
    .await;
    assert!(
        scraped,
        "{series} not 3 via Prometheus: {}\nlog:\n{}",
        query(&base, series).await,
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    assert_eq!(
        single_value(&query(&base, r#"up{job="herald"}"#).await).as_deref(),
        Some("1")
    );
    // The alerting rules loaded, and none fires for a healthy herald.
    let rules: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{base}/api/v1/rules"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for expected in kit::ALERT_RULES {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    let firing = query(&base, r#"ALERTS{alertstate="firing"}"#).await;
    assert_eq!(firing["data"]["result"], serde_json::json!([]), "{firing}");
}
