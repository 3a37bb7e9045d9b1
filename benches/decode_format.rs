//! Decode and webhook formatting of a realistic alert (the spec's runtime
//! alert, ~3 KiB). `make bench` runs these with the other benches.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald::formats::webhook;
use herald::model::decode;

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alert-deployment-runtime.json"
    ))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let pretty = fixture();
    let event = decode(&pretty, 4 << 20).unwrap();
    let mut g = c.benchmark_group("alert");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_pretty", |b| {
        b.iter(|| decode(std::hint::black_box(&pretty), 4 << 20).unwrap())
    });
    g.bench_function("webhook_body_extra_fields", |b| {
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
