//! Scenarios of servers sharing one PostgreSQL database:
//! S6, durable appends per second by batch size (SQLite beside PostgreSQL),
//! and S7, how long an edit made through one server takes to reach the
//! clients of the others.

use crate::scenarios::{log_arrivals, percentile, ArrivalLog};
use crate::{memory, Run};
use docweave_adapters::transport::{serve_ws, ConnectionLimit, WsOptions};
use docweave_adapters::{Append, PostgresStore, SqliteStore, Store};
use docweave_core::{DocId, DocMeta, VersionVector};
use docweave_shell::Repo;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A database for a benchmark: `DOCWEAVE_BENCH_POSTGRES` (a URL of an
/// empty database), else a fresh one on the test cluster (started here
/// from Debian's binaries when none runs).
pub fn database(name: &str) -> Option<String> {
    match std::env::var("DOCWEAVE_BENCH_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => docweave_tests::postgres::try_fresh_database(name)
            .map_err(|why| eprintln!("no PostgreSQL: {why}"))
            .ok(),
    }
}

/// S6: `total` durable appends of 100-byte changes over 100 documents, in
/// transactions of `batch`, each acknowledged only once committed.
pub fn s6(kind: &str, store: &mut dyn Store, batch: usize, total: usize) -> Run {
    let payload = vec![7u8; 100];
    let changes: Vec<Append> = (0..total)
        .map(|i| Append {
            doc: DocId::new(&format!("doc-{}", i % 100)),
            meta: DocMeta::default(),
            data: payload.clone(),
            version: VersionVector::from_entries([(1 + (i % 100) as u64, 1 + i as u64)]),
            authors: Vec::new(),
        })
        .collect();
    let start = Instant::now();
    for chunk in changes.chunks(batch.max(1)) {
        if let Err(e) = store.append(chunk) {
            panic!("S6 {kind}: append failed: {e}");
        }
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    Run {
        scenario: "S6".into(),
        transport: kind.into(),
        size: batch as u64,
        metric: "appends_per_s".into(),
        value: total as f64 / seconds,
        peak_rss: memory().1,
        extra: vec![("appends".into(), total as f64)],
        ..Run::default()
    }
}

/// S6 over both stores and every batch size.
pub fn s6_all(batches: &[usize], quick: bool, dir: &std::path::Path) -> Vec<Run> {
    let mut runs = Vec::new();
    for &batch in batches {
        let total = if quick {
            batch * 20
        } else {
            (batch * 500).clamp(1_000, 20_000)
        };
        let path = dir.join(format!("s6-{}-{batch}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut sqlite = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        runs.push(s6("sqlite", &mut sqlite, batch, total));
        drop(sqlite);
        let _ = std::fs::remove_file(&path);
        if let Some(url) = database("s6") {
            let mut pg = PostgresStore::open(&url).unwrap_or_else(|e| panic!("{e}"));
            runs.push(s6("postgres", &mut pg, batch, total));
        }
    }
    runs
}

/// S7: `servers` servers on one database, `clients` clients spread over
/// them; client 0 (on the first server) makes `edits` one-character edits
/// at `rate` per second. Latency: from an edit's commit to its arrival at
/// each client of another server.
pub async fn s7(url: &str, servers: usize, clients: usize, edits: u64, rate: f64) -> Run {
    let (repos, addrs) = start_servers(url, servers).await;
    let mut people = Vec::new();
    for i in 0..clients {
        let c = Repo::builder(&format!("c{i}"))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = c.connect_with(
            "server",
            None,
            docweave_tests::endpoints::ws_dialer(&format!("ws://{}/", addrs[i % servers])),
        );
        people.push(c);
    }
    let mut docs = Vec::new();
    for c in &people {
        docs.push(c.open("shared").await.unwrap_or_else(|e| panic!("{e}")));
    }
    for (i, c) in people.iter().enumerate() {
        let server = format!("server-{}", i % servers);
        let _ = c
            .wait_for_sync("shared", &server, Duration::from_secs(60))
            .await;
    }
    let editor = docs[0].peer_id();
    // Only clients of other servers than the editor's are measured (with
    // one server, all: the baseline a cluster adds to).
    let measured: Vec<usize> = (1..clients)
        .filter(|i| servers == 1 || i % servers != 0)
        .collect();
    let arrivals: Vec<ArrivalLog> = measured
        .iter()
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    for (i, log) in measured.iter().zip(&arrivals) {
        log_arrivals(&people[*i], editor, log.clone()).await;
    }
    let text = docs[0].get_text("t");
    let mut sent = Vec::with_capacity(edits as usize);
    let start = Instant::now();
    for i in 0..edits {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            smol::Timer::after(wait).await;
        }
        let _ = text.insert(i as usize, "e");
        sent.push(Instant::now());
        docs[0].commit();
    }
    let complete = |log: &ArrivalLog| {
        log.lock()
            .map(|l| l.iter().any(|(_, c)| *c >= edits))
            .unwrap_or(false)
    };
    let wait_from = Instant::now();
    while wait_from.elapsed() < Duration::from_secs(120) && !arrivals.iter().all(complete) {
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    let all_arrived = arrivals.iter().all(complete);
    let (latencies, first, last) = latencies(&arrivals, &sent);
    let seconds = sent
        .last()
        .map(|l| l.saturating_duration_since(start).as_secs_f64())
        .unwrap_or(0.0)
        .max(1e-9);
    for c in people {
        c.close().await;
    }
    for r in repos {
        r.shutdown().await;
    }
    Run {
        scenario: "S7".into(),
        transport: "postgres".into(),
        size: clients as u64,
        metric: if all_arrived {
            "p99_ms".into()
        } else {
            "incomplete".into()
        },
        value: percentile(&latencies, 0.99),
        peak_rss: memory().1,
        extra: vec![
            ("p50_ms".into(), percentile(&latencies, 0.5)),
            ("max_ms".into(), latencies.last().copied().unwrap_or(0.0)),
            ("p99_first_quarter_ms".into(), percentile(&first, 0.99)),
            ("p99_last_quarter_ms".into(), percentile(&last, 0.99)),
            ("edits_per_s".into(), edits as f64 / seconds),
            ("servers".into(), servers as f64),
            ("measured_clients".into(), measured.len() as f64),
        ],
        ..Run::default()
    }
}

/// `servers` docweave servers on one PostgreSQL database, each on a
/// loopback WebSocket port: their repos and addresses.
async fn start_servers(url: &str, servers: usize) -> (Vec<Arc<Repo>>, Vec<String>) {
    let mut repos = Vec::new();
    let mut addrs = Vec::new();
    for s in 0..servers {
        let store = PostgresStore::open(url).unwrap_or_else(|e| panic!("{e}"));
        let repo = Arc::new(
            Repo::builder(&format!("server-{s}"))
                .store(store)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let l = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        addrs.push(
            l.local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| panic!("{e}")),
        );
        smol::spawn(serve_ws(
            l,
            WsOptions::default(),
            ConnectionLimit::new(4096),
            repo.acceptor(),
        ))
        .detach();
        repos.push(repo);
    }
    (repos, addrs)
}

/// Each edit's latency to each measured client (ms, sorted): all, the
/// first quarter of the edits and the last (latency that grows with the
/// document's history shows there).
fn latencies(arrivals: &[ArrivalLog], sent: &[Instant]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut all, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new());
    let quarter = sent.len() / 4;
    for log in arrivals {
        let l = log.lock().map(|l| l.clone()).unwrap_or_default();
        for (i, sent_at) in sent.iter().enumerate() {
            if let Some((at, _)) = l.iter().find(|(_, c)| *c > i as u64) {
                let ms = at.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0;
                all.push(ms);
                if i < quarter {
                    first.push(ms);
                } else if i >= sent.len() - quarter {
                    last.push(ms);
                }
            }
        }
    }
    for v in [&mut all, &mut first, &mut last] {
        v.sort_by(f64::total_cmp);
    }
    (all, first, last)
}
