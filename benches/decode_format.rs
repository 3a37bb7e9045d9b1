//! Decode and every formatter. `make bench` runs these.
//!
//! - `alert_4k`: the spec's runtime alert grown to 4.9 KiB with more process
//!   indicators, through decode and every destination's body.
//! - `alert_resource`, `audit`: the other fixtures through the stream formats
//!   (Go-JSON, CEF, HEC).
//! - `alert_15k`: a 14.6 KiB runtime alert, so Splunk and Sumo Logic prune it
//!   and CEF's `max_record_size` shrinks its JSON.

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald::config::Config;
use herald::formats::{
    cef, email, gojson, pagerduty, slack, splunk, sumologic, teams, text, webhook,
};
use herald::model::{decode, Alert, Audit, Event};
use herald::notifiers::{Notifier, RenderContext};

const UI: &str = "https://central.example.com";
const SENDER: &str = "rhacs@example.com";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The spec's runtime alert, with its first process indicator repeated until
/// the process list alone is at least `processes_len` bytes.
fn runtime_alert(processes_len: usize) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("alert-deployment-runtime.json")).unwrap();
    let process = v["processViolation"]["processes"][0].clone();
    let processes = v["processViolation"]["processes"].as_array_mut().unwrap();
    while serde_json::to_string(&processes).unwrap().len() < processes_len {
        processes.push(process.clone());
    }
    serde_json::to_vec(&v).unwrap()
}

/// The spec's runtime alert grown to about 4.9 KiB with more processes.
fn alert_4k() -> Vec<u8> {
    runtime_alert(2400)
}

fn as_alert(event: &Event) -> &Alert {
    match event {
        Event::Alert(a) => a,
        Event::Audit(_) => panic!("the fixture is not an alert"),
    }
}

fn as_audit(event: &Event) -> &Audit {
    match event {
        Event::Audit(a) => a,
        Event::Alert(_) => panic!("the fixture is not an audit message"),
    }
}

fn cef_settings(order: cef::HeaderOrder, max_record_size: usize) -> cef::Settings {
    cef::Settings {
        facility: 0,
        hostname: "central".into(),
        procid: "1".into(),
        device_version: "4.7.0".into(),
        order,
        extra_fields: vec![("env".into(), "prod".into())],
        escape: false,
        max_message_size: 0,
        framing: cef::Framing::OctetCounting,
        max_record_size,
    }
}

/// A Jira destination, built by herald's config loader: its issue body is
/// only reachable through `Notifier::render`.
fn jira_notifier() -> std::sync::Arc<dyn Notifier> {
    let text = format!(
        r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
dead_letter_topic = "d"

[[destinations]]
name = "jira"
id = "3c1e0f64-6d2b-4f7a-9d0e-5a8b7c6d5e4f"
type = "jira"
url = "https://jira.example.com"
username = "bot"
password = "jira-token"
issue_type = "Task"
default_target = "SEC"
annotation_key = "jira-project"
ui_endpoint = "{UI}"
"#
    );
    let config =
        Config::parse(&text, &HashMap::new()).unwrap_or_else(|e| panic!("bench Jira config: {e}"));
    herald::destinations::build(&config)
        .expect("bench destination")
        .remove(0)
        .notifier
}

/// What the email destination renders: headers and the wrapped FormatAlert text.
fn email_message(alert: &Alert, now: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let f = &alert.fields;
    let body = text::format_alert(f, UI, text::Table::Email);
    email::message(&email::Message {
        from: &email::from_header("RHACS", SENDER),
        to: "security@example.com",
        date: now,
        subject: &text::summary(f),
        message_id: &email::message_id(&f.id, f.state.as_str(), SENDER),
        body: &body,
    })
}

fn bench(c: &mut Criterion) {
    let pretty = fixture("alert-deployment-runtime.json");
    let raw = alert_4k();
    let event = decode(&raw, &herald::model::Limits::default()).unwrap();
    let alert = as_alert(&event);
    println!("benchmark alert: {} bytes", raw.len());
    let settings = cef_settings(cef::HeaderOrder::Cef, 0);
    let jira = jira_notifier();
    let now = chrono::DateTime::from_timestamp(1_714_565_000, 0).unwrap();
    let ctx = RenderContext { now };

    let mut g = c.benchmark_group("alert_4k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_pretty_3k", |b| {
        b.iter(|| {
            decode(
                std::hint::black_box(&pretty),
                &herald::model::Limits::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            decode(
                std::hint::black_box(&raw),
                &herald::model::Limits::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("go_json", |b| {
        b.iter(|| gojson::alert(std::hint::black_box(alert.raw.get())).unwrap())
    });
    g.bench_function("cef_record", |b| {
        b.iter(|| {
            let rec = cef::alert_record(std::hint::black_box(alert), &settings, None).unwrap();
            cef::frames(&rec, &settings)
        })
    });
    g.bench_function("hec_event", |b| {
        b.iter(|| {
            splunk::hec_event(std::hint::black_box(&event), 10_000, "stackrox-alert", "a").unwrap()
        })
    });
    g.bench_function("sumo_body", |b| {
        b.iter(|| sumologic::sumo_body(std::hint::black_box(&event)).unwrap())
    });
    g.bench_function("webhook_body", |b| {
        b.iter(|| {
            webhook::body(
                std::hint::black_box(&event),
                [("source", "rhacs"), ("env", "prod")],
            )
        })
    });
    g.bench_function("jira_body", |b| {
        b.iter(|| {
            Notifier::render(
                &*jira,
                std::hint::black_box(&event),
                &herald::notifiers::Target::default(),
                &ctx,
            )
            .unwrap()
        })
    });
    g.bench_function("email_message", |b| {
        b.iter(|| email_message(std::hint::black_box(alert), now))
    });
    g.bench_function("slack_body", |b| {
        b.iter(|| slack::slack_body(std::hint::black_box(alert), UI))
    });
    g.bench_function("teams_message_card", |b| {
        b.iter(|| teams::message_card(std::hint::black_box(alert), UI))
    });
    g.bench_function("teams_adaptive_card", |b| {
        b.iter(|| teams::adaptive_card(std::hint::black_box(alert), UI))
    });
    g.bench_function("pagerduty_event", |b| {
        b.iter(|| {
            pagerduty::pagerduty_event(
                std::hint::black_box(alert),
                "R0123456789abcdef0123456789abcdef",
                UI,
            )
        })
    });
    for (name, table) in [
        ("format_alert_email", text::Table::Email),
        ("format_alert_jira", text::Table::Jira),
        ("format_alert_slack", text::Table::Slack),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| text::format_alert(std::hint::black_box(&alert.fields), UI, table))
        });
    }
    g.finish();

    // The resource (audit-log) alert: the stream formats.
    let resource_raw = fixture("alert-resource.json");
    let resource_event = decode(&resource_raw, &herald::model::Limits::default()).unwrap();
    let resource = as_alert(&resource_event);
    let mut g = c.benchmark_group("alert_resource");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            decode(
                std::hint::black_box(&resource_raw),
                &herald::model::Limits::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("go_json", |b| {
        b.iter(|| gojson::alert(std::hint::black_box(resource.raw.get())).unwrap())
    });
    g.bench_function("cef_record", |b| {
        b.iter(|| {
            let rec = cef::alert_record(std::hint::black_box(resource), &settings, None).unwrap();
            cef::frames(&rec, &settings)
        })
    });
    g.bench_function("hec_event", |b| {
        b.iter(|| {
            splunk::hec_event(
                std::hint::black_box(&resource_event),
                10_000,
                "stackrox-alert",
                "stackrox-audit-message",
            )
            .unwrap()
        })
    });
    g.finish();

    // The audit message: the formats that take audit events.
    let audit_raw = fixture("audit-notifier-create.json");
    let audit_event = decode(&audit_raw, &herald::model::Limits::default()).unwrap();
    let audit = as_audit(&audit_event);
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            decode(
                std::hint::black_box(&audit_raw),
                &herald::model::Limits::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("go_json", |b| {
        b.iter(|| gojson::audit(std::hint::black_box(audit.raw.get())).unwrap())
    });
    g.bench_function("cef_record", |b| {
        b.iter(|| {
            let rec = cef::audit_record(std::hint::black_box(audit), &settings).unwrap();
            cef::frames(&rec, &settings)
        })
    });
    g.bench_function("hec_event", |b| {
        b.iter(|| {
            splunk::hec_event(
                std::hint::black_box(&audit_event),
                10_000,
                "stackrox-alert",
                "stackrox-audit-message",
            )
            .unwrap()
        })
    });
    g.bench_function("webhook_body", |b| {
        b.iter(|| webhook::body(std::hint::black_box(&audit_event), []))
    });
    g.finish();

    // An alert over Central's 10,000-byte pruning size: the slow paths.
    let big_raw = runtime_alert(12_000);
    let big_event = decode(&big_raw, &herald::model::Limits::default()).unwrap();
    let big = as_alert(&big_event);
    println!("large alert: {} bytes", big_raw.len());
    let shrinking = cef_settings(cef::HeaderOrder::Cef, 8192);
    let mut g = c.benchmark_group("alert_15k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hec_event_pruned", |b| {
        b.iter(|| {
            splunk::hec_event(
                std::hint::black_box(&big_event),
                10_000,
                "stackrox-alert",
                "stackrox-audit-message",
            )
            .unwrap()
        })
    });
    g.bench_function("sumo_body_pruned", |b| {
        b.iter(|| sumologic::sumo_body(std::hint::black_box(&big_event)).unwrap())
    });
    g.bench_function("cef_record_shrunk", |b| {
        b.iter(|| {
            let rec = cef::alert_record(std::hint::black_box(big), &shrinking, None).unwrap();
            cef::frames(&rec, &shrinking)
        })
    });
    g.finish();

    // Pruning is linear: an alert with 20,000 annotations (under
    // Kubernetes' 256 KiB cap) costs about 4 times one with 5,000, not 16.
    let mut g = c.benchmark_group("annotations");
    for n in [5_000usize, 20_000] {
        let annotations: serde_json::Map<String, serde_json::Value> = (0..n)
            .map(|i| (format!("team.example.com/k{i}"), format!("v{i}").into()))
            .collect();
        let raw = serde_json::to_vec(&serde_json::json!({
            "id": "a", "policy": {"name": "P"}, "time": "2026-12-07T10:00:00Z",
            "deployment": {"name": "d", "annotations": annotations},
        }))
        .unwrap();
        let event = decode(&raw, &herald::model::Limits::default()).unwrap();
        let alert = as_alert(&event);
        g.bench_function(format!("hec_event_pruned_{n}"), |b| {
            b.iter(|| {
                splunk::hec_event(
                    std::hint::black_box(&event),
                    10_000,
                    "stackrox-alert",
                    "stackrox-audit-message",
                )
                .unwrap()
            })
        });
        g.bench_function(format!("cef_record_shrunk_{n}"), |b| {
            b.iter(|| {
                let rec = cef::alert_record(std::hint::black_box(alert), &shrinking, None).unwrap();
                cef::frames(&rec, &shrinking)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
