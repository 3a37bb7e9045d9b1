//! PagerDuty, Slack and Teams: the Events v2 contract (Prism), exact bodies, a
//! resolve once and after its trigger, Retry-After, annotation-routed
//! webhooks, and no webhook URL in logs or metrics.

use std::time::Duration;

use crate::kit::receiver::Behavior;
use crate::kit::service::Service;
use crate::kit::{self, Herald, Receiver};

const NID: &str = "3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f";

fn alerts() -> Vec<String> {
    let n = format!(r#""notifiers":["{NID}"]"#);
    vec![
        format!(
            r#"{{"id":"pd-dep","policy":{{"name":"D","severity":"HIGH_SEVERITY","categories":["Privileges"],{n}}},"deployment":{{"name":"web","namespace":"ns","clusterName":"prod","annotations":{{"slack":"SLACK_TEAM"}}}},"time":"2024-05-01T12:00:00Z"}}"#
        ),
        format!(
            r#"{{"id":"pd-img","policy":{{"name":"I","severity":"LOW_SEVERITY",{n}}},"image":{{"name":{{"registry":"docker.io","remote":"library/nginx","tag":"1"}}}},"time":"2024-05-01T12:00:00Z"}}"#
        ),
        format!(
            r#"{{"id":"pd-res","policy":{{"name":"R","severity":"CRITICAL_SEVERITY",{n}}},"resource":{{"resourceType":"SECRETS","name":"s","clusterName":"prod","namespace":"ns"}},"time":"2024-05-01T12:00:00Z"}}"#
        ),
        format!(
            r#"{{"id":"pd-node","policy":{{"name":"N","severity":"MEDIUM_SEVERITY",{n}}},"node":{{"name":"w1","clusterName":"prod"}},"time":"2024-05-01T12:00:00Z"}}"#
        ),
    ]
}

fn resolved(a: &str) -> String {
    a.replacen(r#"{"id":"#, r#"{"state":"RESOLVED","id":"#, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_keeps_the_events_v2_contract_and_bodies_are_exact() {
    let prism = Service::shared_of("prism.sh");
    let rx = Receiver::start().await;
    let s = kit::Stack::new("pd", 1).await;
    // The project's own Events v2 contract always; PagerDuty's published
    // spec as well when ../shared has it.
    assert!(prism
        .get("pagerduty_spec")
        .ends_with("tests/contracts/pagerduty-events-v2.json"));
    let mut mocks = vec![("pd-prism", "pagerduty_enqueue_url", "pagerduty_log")];
    if prism.info.contains_key("pagerduty_shared_enqueue_url") {
        mocks.push((
            "pd-shared",
            "pagerduty_shared_enqueue_url",
            "pagerduty_shared_log",
        ));
    }
    let logs: Vec<(&str, String, usize)> = mocks
        .iter()
        .map(|(name, _, log_key)| {
            let log = prism.get(log_key).to_string();
            let from = std::fs::metadata(&log)
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            (*name, log, from)
        })
        .collect();
    let dest = |name: &str, url: &str| {
        format!("[[destinations]]\nname = \"{name}\"\nid = \"{NID}\"\ntype = \"pagerduty\"\nrouting_key = \"R0UTINGKEY0000000000000000000000\"\napi_url = \"{url}\"\nui_endpoint = \"https://central.example.com\"\n")
    };
    let mut destinations: String = mocks
        .iter()
        .map(|(name, url_key, _)| dest(name, prism.get(url_key)))
        .collect();
    destinations.push_str(&dest("pd-rec", &rx.url("/enqueue")));
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let all = alerts();
    for a in &all {
        kit::produce_to(&p, &s.topic, 0, a.as_bytes()).await;
    }
    for a in &all {
        kit::produce_to(&p, &s.topic, 0, resolved(a).as_bytes()).await;
        kit::produce_to(&p, &s.topic, 0, resolved(a).as_bytes()).await;
    }
    let delivered =
        |d: &str| format!(r#"herald_deliveries_total{{destination="{d}",outcome="delivered"}}"#);
    assert!(
        kit::eventually(Duration::from_secs(30), || async {
            for (name, _, _) in &mocks {
                if herald.metric(&delivered(name)).await != 8.0 {
                    return false;
                }
            }
            herald.metric(&delivered("pd-rec")).await == 8.0
        })
        .await,
        "{}",
        herald.log()
    );
    // Prism answered 202 to every trigger and resolve and found no request-side violation.
    for (name, log, from) in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        let violations: Vec<&str> = text[*from..]
            .lines()
            .filter(|l| l.contains("Violation") && l.contains("request"))
            .collect();
        assert!(violations.is_empty(), "{name}: {violations:#?}");
    }
    // The recording receiver got each trigger, then one resolve each, exactly as rendered.
    let got = rx.delivered();
    assert_eq!(got.len(), 8, "a duplicate resolve is not sent");
    for a in all
        .iter()
        .chain(all.iter().map(|a| resolved(a)).collect::<Vec<_>>().iter())
    {
        let expected = render(&herald.config, "pd-rec", a);
        assert!(
            got.iter().any(|r| r.text() == expected),
            "no request equals the rendered {expected}"
        );
    }
    for id in ["pd-dep", "pd-img", "pd-res", "pd-node"] {
        let actions: Vec<String> = got
            .iter()
            .filter(|r| r.text().contains(&format!(r#""dedup_key":"{id}""#)))
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["event_action"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(actions, vec!["trigger", "resolve"], "{id}");
    }
    assert!(
        !herald.log().contains("R0UTINGKEY"),
        "routing key in the log"
    );
    assert!(!herald.metrics().await.contains("R0UTINGKEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_annotations_retry_after_and_no_url_in_logs() {
    let default = Receiver::start().await;
    let team = Receiver::start().await;
    let other = Receiver::start().await;
    team.set(Behavior::FailTimes(429, 1, Some("3".into())));
    let s = kit::Stack::new("slack", 1).await;
    let destinations = format!(
        "[[destinations]]\nname = \"slack\"\nid = \"{NID}\"\ntype = \"slack\"\nwebhook_url = \"{}\"\nannotation_key = \"slack\"\nallowed_targets = [\"{}\"]\nretry_min_delay = \"50ms\"\n[[destinations]]\nname = \"other\"\nid = \"{NID}\"\ntype = \"webhook\"\nurl = \"{}\"\n",
        default.url("/services/T0/B0/DEFAULTSECRET"),
        team.url("/services/"),
        other.url("/")
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let all = alerts();
    let team_url = team.url("/services/T1/B1/TEAMSECRET");
    kit::produce_to(
        &p,
        &s.topic,
        0,
        all[0].replace("SLACK_TEAM", &team_url).as_bytes(),
    )
    .await;
    kit::produce_to(&p, &s.topic, 0, all[2].as_bytes()).await;
    let empty = all[1]
        .replace(
            r#""image":"#,
            r#""deployment":{"name":"e","annotations":{"slack":""}},"x":"#,
        )
        .replace("pd-img", "empty-ann");
    kit::produce_to(&p, &s.topic, 0, empty.as_bytes()).await;
    // The annotation wins: the team's webhook, after honouring Retry-After: 3.
    let got = team.wait_delivered(1, Duration::from_secs(20)).await;
    let answered = team.answered();
    assert_eq!(
        answered.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let gap = answered[1].at - answered[0].at;
    assert!(gap >= Duration::from_secs(3), "retried after {gap:?}");
    assert!(got[0].text().contains(r#""alert_id":"pd-dep""#));
    // Meanwhile the other destination and the default webhook kept flowing.
    let others = other.delivered();
    assert!(
        others.len() >= 2 && others.iter().all(|r| r.at < answered[1].at),
        "the other destination waited"
    );
    let d = default.wait_delivered(1, Duration::from_secs(10)).await;
    assert!(d[0].text().contains(r#""alert_id":"pd-res""#));
    assert_eq!(d[0].path, "/services/T0/B0/DEFAULTSECRET");
    // An empty annotation value still wins (Central's rule): no webhook, a
    // dead letter (refused: not a URL at all).
    let records = kit::read_records(&s.dlq, 1, Duration::from_secs(20)).await;
    let r: serde_json::Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(
        (r["destination"].as_str(), r["reason"].as_str()),
        (Some("slack"), Some("target_not_allowed"))
    );
    assert_eq!(r["last_error"], "annotation slack: not a valid URL");
    assert_eq!(
        default.delivered().len(),
        1,
        "the empty annotation did not fall back to the default"
    );
    // No webhook URL's secret part in logs or metrics.
    let log = herald.log();
    let metrics = herald.metrics().await;
    for secret in ["DEFAULTSECRET", "TEAMSECRET", "/services/"] {
        assert!(
            !log.contains(secret) && !metrics.contains(secret),
            "{secret} leaked"
        );
    }
}

/// Renders `alert` for `destination` with `herald render`.
fn render(config: &std::path::Path, destination: &str, alert: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.json");
    std::fs::write(&input, alert).unwrap();
    let out = kit::cli(
        &[
            "render",
            "--destination",
            destination,
            "--input",
            input.to_str().unwrap(),
        ],
        config,
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_message_card_adaptive_card_annotation_and_retry_after() {
    let default = Receiver::start().await;
    let team = Receiver::start().await;
    let workflow = Receiver::start().await;
    team.set(Behavior::FailTimes(429, 1, Some("2".into())));
    let s = kit::Stack::new("teams", 1).await;
    let destinations = format!(
        "[[destinations]]\nname = \"teams\"\nid = \"{NID}\"\ntype = \"teams\"\nwebhook_url = \"{}\"\nannotation_key = \"slack\"\nallowed_targets = [\"{}\"]\nretry_min_delay = \"50ms\"\nui_endpoint = \"https://central.example.com\"\n\
         [[destinations]]\nname = \"teams-wf\"\nid = \"{NID}\"\ntype = \"teams\"\nformat = \"adaptive_card\"\nwebhook_url = \"{}\"\n",
        default.url("/webhookb2/DEFAULTSECRET"),
        team.url("/webhookb2/"),
        workflow.url("/workflows/WFSECRET"),
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let all = alerts();
    let annotated = all[0].replace("SLACK_TEAM", &team.url("/webhookb2/TEAMSECRET"));
    kit::produce_to(&p, &s.topic, 0, annotated.as_bytes()).await;
    kit::produce_to(&p, &s.topic, 0, all[2].as_bytes()).await;
    // The annotated webhook wins and gets its retry no earlier than Retry-After.
    let got = team.wait_delivered(1, Duration::from_secs(20)).await;
    let answered = team.answered();
    assert_eq!(
        answered.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    assert!(answered[1].at - answered[0].at >= Duration::from_secs(2));
    assert_eq!(got[0].text(), render(&herald.config, "teams", &annotated));
    let card: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        card["title"],
        "Deployment web (in cluster prod) violates 'D' Policy"
    );
    assert_eq!(
        card["sections"][0]["facts"][1]["value"],
        "https://central.example.com/main/violations/pd-dep"
    );
    let d = default.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].text(), render(&herald.config, "teams", &all[2]));
    assert_eq!(d[0].path, "/webhookb2/DEFAULTSECRET");
    // The Workflows destination gets both as Adaptive Cards.
    let wf = workflow.wait_delivered(2, Duration::from_secs(10)).await;
    for a in [&annotated, &all[2]] {
        let expected = render(&herald.config, "teams-wf", a);
        assert!(wf.iter().any(|r| r.text() == expected), "{expected}");
    }
    let v: serde_json::Value = serde_json::from_slice(&wf[0].body).unwrap();
    assert_eq!(
        v["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    // Central's test message, to the default webhook.
    let out = kit::cli(&["test", "--destination", "teams"], &herald.config);
    assert!(out.status.success(), "{out:?}");
    let d = default.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(
        d[1].text(),
        r#"{"themeColor":"","title":"","text":"This is a test message created to test teams integration with StackRox.","sections":null}"#
    );
    let log = herald.log()
        + &String::from_utf8_lossy(&out.stdout)
        + &String::from_utf8_lossy(&out.stderr);
    let metrics = herald.metrics().await;
    for secret in ["DEFAULTSECRET", "TEAMSECRET", "WFSECRET"] {
        assert!(
            !log.contains(secret) && !metrics.contains(secret),
            "{secret} leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_retries_429_and_5xx_and_dead_letters_400() {
    let busy = Receiver::start().await;
    let broken = Receiver::start().await;
    busy.set(Behavior::FailTimes(429, 2, Some("1".into())));
    broken.set(Behavior::Fail(400, None));
    let s = kit::Stack::new("pdretry", 1).await;
    let dest = |name: &str, url: &str| {
        format!("[[destinations]]\nname = \"{name}\"\nid = \"{NID}\"\ntype = \"pagerduty\"\nrouting_key = \"R0UTINGKEY0000000000000000000000\"\napi_url = \"{url}\"\nretry_min_delay = \"50ms\"\nretry_max_delay = \"200ms\"\n")
    };
    let destinations = format!(
        "{}{}",
        dest("pd-busy", &busy.url("/enqueue")),
        dest("pd-broken", &broken.url("/enqueue"))
    );
    let mut herald = Herald::start(&s.config("", &destinations));
    herald.wait_ready(Duration::from_secs(30)).await;
    let p = kit::producer();
    let all = alerts();
    kit::produce_to(&p, &s.topic, 0, all[3].as_bytes()).await;
    // Two 429s with Retry-After: 1, then accepted: one event, three answers.
    busy.wait_delivered(1, Duration::from_secs(20)).await;
    let answered = busy.answered();
    assert_eq!(
        answered.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 429, 200]
    );
    assert!(answered[2].at - answered[0].at >= Duration::from_secs(2));
    // Then a 503 is retried as well.
    busy.set(Behavior::FailTimes(503, 1, None));
    kit::produce_to(&p, &s.topic, 0, all[2].as_bytes()).await;
    busy.wait_delivered(2, Duration::from_secs(20)).await;
    assert_eq!(
        busy.answered()[3..]
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![503, 200]
    );
    // A 400 (a malformed event, in PagerDuty's terms) is final: dead-lettered
    // after one attempt per event, with the destination named.
    let records = kit::read_records(&s.dlq, 2, Duration::from_secs(20)).await;
    for r in &records {
        let r: serde_json::Value = serde_json::from_slice(r).unwrap();
        assert_eq!(
            (r["destination"].as_str(), r["reason"].as_str()),
            (Some("pd-broken"), Some("client_error"))
        );
    }
    assert_eq!(broken.answered().len(), 2);
    assert!(!herald.log().contains("R0UTINGKEY"));
}
