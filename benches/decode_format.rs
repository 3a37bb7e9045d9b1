//! Decode and every formatter, on a realistic 4 KiB runtime alert (the spec's
//! example plus a few more process indicators). `make bench` runs these.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald::formats::{cef, gojson, splunk, webhook};
use herald::model::{decode, Event};

/// The spec's runtime alert grown to about 4 KiB with more processes.
fn alert_4k() -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alert-deployment-runtime.json"
    ))
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let process = v["processViolation"]["processes"][0].clone();
    let processes = v["processViolation"]["processes"].as_array_mut().unwrap();
    while serde_json::to_string(&processes).unwrap().len() < 2400 {
        processes.push(process.clone());
    }
    serde_json::to_vec(&v).unwrap()
}

fn bench(c: &mut Criterion) {
    let pretty = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alert-deployment-runtime.json"
    ))
    .unwrap();
    let raw = alert_4k();
    let event = decode(&raw, 4 << 20).unwrap();
    let Event::Alert(alert) = &event else {
        unreachable!()
    };
    println!("benchmark alert: {} bytes", raw.len());
    let settings = cef::Settings {
        facility: 0,
        hostname: "central".into(),
        procid: "1".into(),
        device_version: "4.7.0".into(),
        order: cef::HeaderOrder::Cef,
        extra_fields: vec![("env".into(), "prod".into())],
        escape: false,
        max_message_size: 0,
        framing: cef::Framing::OctetCounting,
        max_record_size: 0,
    };
    let mut g = c.benchmark_group("alert_4k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_pretty_3k", |b| {
        b.iter(|| decode(std::hint::black_box(&pretty), 4 << 20).unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| decode(std::hint::black_box(&raw), 4 << 20).unwrap())
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
        b.iter(|| splunk::sumo_body(std::hint::black_box(&event)).unwrap())
    });
    g.bench_function("webhook_body", |b| {
        b.iter(|| {
            webhook::body(
                std::hint::black_box(&event),
                [("source", "rhacs"), ("env", "prod")],
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
