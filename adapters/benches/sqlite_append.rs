//! SQLite store appends per second, one change per transaction and batched.
//! Each transaction is durable (WAL, `synchronous = FULL`), so batching is
//! what amortises the fsync.
//!
//! Run: `cargo bench -p docweave-adapters --bench sqlite_append`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docweave_adapters::{Append, SqliteStore, Store};
use docweave_core::{DocId, DocMeta, VersionVector};

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("docweave-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut group = c.benchmark_group("sqlite_append");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(5));
    for batch in [1usize, 10, 100] {
        let path = dir.join(format!("append-{batch}.db"));
        let mut store = match SqliteStore::open(&path) {
            Ok(s) => s,
            Err(e) => panic!("open {}: {e}", path.display()),
        };
        let mut n = 0u64;
        let payload = vec![42u8; 100];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let changes: Vec<Append> = (0..batch)
                    .map(|_| {
                        n += 1;
                        Append {
                            doc: DocId::new(&format!("doc-{}", n % 1_000)),
                            meta: DocMeta::default(),
                            data: payload.clone(),
                            version: VersionVector::from_entries([(1, n)]),
                            authors: Vec::new(),
                        }
                    })
                    .collect();
                if let Err(e) = store.append(&changes) {
                    panic!("append: {e}");
                }
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
