//! The ledger: lookup, and records committed through the group-commit writer
//! (one at a time, and 1,000 at once, as concurrent deliveries do).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use herald::ledger::{Entry, Ledger};
use herald::model::AlertState;
use herald::telemetry::Metrics;

fn entry(i: i64) -> Entry {
    Entry {
        state: AlertState::Active,
        delivered_ms: i,
        last_seen_ms: i,
        newest_violation_ms: 0,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), Arc::new(Metrics::new())).unwrap();
    rt.block_on(async {
        let keys: Vec<String> = (0..10_000).map(|i| format!("alert-{i}")).collect();
        let futs: Vec<_> = keys
            .iter()
            .map(|k| ledger.record("dest", k, entry(1)))
            .collect();
        for r in futures::future::join_all(futs).await {
            r.unwrap();
        }
    });
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            ledger.get("dest", &format!("alert-{i}")).unwrap().unwrap()
        })
    });
    let mut n = 0u64;
    g.bench_function("record_one_fsync", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(ledger.record("dest", &format!("single-{n}"), entry(2)))
                .unwrap()
        })
    });
    g.throughput(Throughput::Elements(1000));
    let mut batch = 0u64;
    g.bench_function("record_1000_concurrent", |b| {
        b.iter_batched(
            || {
                batch += 1;
                (0..1000)
                    .map(|i| format!("batch-{batch}-{i}"))
                    .collect::<Vec<_>>()
            },
            |keys| {
                rt.block_on(async {
                    let futs: Vec<_> = keys
                        .iter()
                        .map(|k| ledger.record("dest", k, entry(3)))
                        .collect();
                    for r in futures::future::join_all(futs).await {
                        r.unwrap();
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
