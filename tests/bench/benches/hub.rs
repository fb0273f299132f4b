//! `update` on a hub workload: 1,000 peers and 1,000 or 100,000 documents
//! in the core, and 1,000 or 1,000,000 stored with only those in use in it.
//! Handshakes and sync-requests, then live updates fanned out to the other
//! subscribers, with the store's and the peers' acknowledgements fed back.
//! Throughput is in messages fed to `update` per second.
//!
//! Run: `cargo bench -p docweave-bench --bench hub`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docweave_bench::hub::{Hub, PEERS};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(4));
    for docs in [1_000u64, 100_000] {
        // Connect: a fresh hub each time; messages counted from a dry run.
        let mut dry = Hub::new(docs);
        let before = dry.fed;
        dry.connect_all();
        group.throughput(Throughput::Elements(dry.fed - before));
        group.bench_with_input(
            BenchmarkId::new("connect_and_subscribe", docs),
            &docs,
            |b, &docs| {
                b.iter_batched(
                    || Hub::new(docs),
                    |mut hub| {
                        hub.connect_all();
                        hub
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );

        live_updates(&mut group, "live_updates_x1000", docs, Hub::new(docs));
    }
    // The server's default: only the documents in use are in the core,
    // read from the store when first asked for, however many it holds.
    for docs in [1_000u64, 1_000_000] {
        let hub = Hub::on_demand(docs);
        live_updates(&mut group, "live_updates_x1000_on_demand", docs, hub);
    }
    group.finish();
}

/// Live updates on a connected hub, 1,000 per iteration.
fn live_updates(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    docs: u64,
    mut hub: Hub,
) {
    hub.connect_all();
    let per_round = {
        let before = hub.fed;
        for i in 0..PEERS {
            hub.live_update(i);
        }
        (hub.fed - before) / PEERS
    };
    group.throughput(Throughput::Elements(per_round * PEERS));
    let mut i = PEERS;
    group.bench_with_input(BenchmarkId::new(name, docs), &docs, |b, _| {
        b.iter(|| {
            for _ in 0..PEERS {
                hub.live_update(i);
                i += 1;
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
