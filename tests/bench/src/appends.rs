//! S11: a large append to a large document, with a good client working on
//! another document meanwhile. A server (a real node on SQLite, served
//! over WebSocket) holds a text of `size` bytes; a second writer, who has
//! the document, appends `size` bytes more in one update. Measured: the
//! append's time until the server keeps it (commit to acknowledgement),
//! Loro's own time to import the same update into the same document (the
//! floor), and the round trips of a good client editing another document
//! during the append (p50, p99, max). The target: the append is
//! acknowledged and the good client's p99 stays under 50 ms.

use crate::scenarios::percentile;
use crate::{memory, Run};
use docweave_adapters::transport::{serve_ws, ConnectionLimit, WsOptions};
use docweave_adapters::SqliteStore;
use docweave_shell::{Repo, SyncOutcome};
use loro::{ExportMode, LoroDoc};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(300);

fn text(size: usize, salt: usize) -> String {
    (0..size)
        .map(|i| (b'a' + ((i * 7919 + salt) % 26) as u8) as char)
        .collect()
}

fn client(name: &str, url: &str) -> Repo<docweave_shell::LoroEngine> {
    let c = Repo::builder(name)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The dial goes on in the background; `wait_for_sync` waits for it.
    let _ = c.connect_with("server", None, docweave_tests::endpoints::ws_dialer(url));
    c
}

async fn synced(c: &Repo<docweave_shell::LoroEngine>, doc: &str) -> Duration {
    let started = Instant::now();
    match c.wait_for_sync(doc, "server", WAIT).await {
        Ok(SyncOutcome::Synced) => started.elapsed(),
        other => panic!("{doc} did not sync: {other:?}"),
    }
}

/// Loro's own time to import `update` into a document holding `base`.
fn loro_floor(base: &[u8], update: &[u8]) -> f64 {
    let d = LoroDoc::new();
    d.import(base).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    d.import(update).unwrap_or_else(|e| panic!("{e}"));
    started.elapsed().as_secs_f64()
}

/// A server on a SQLite store at `db`, on a loopback WebSocket port: its
/// repo and URL.
async fn sqlite_server(db: &Path) -> (Arc<Repo>, String) {
    let store = SqliteStore::open(db).unwrap_or_else(|e| panic!("{e}"));
    let server = Arc::new(
        Repo::builder("server")
            .store(store)
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let l = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("ws://{}/", l.local_addr().unwrap_or_else(|e| panic!("{e}")));
    smol::spawn(serve_ws(
        l,
        WsOptions::default(),
        ConnectionLimit::new(64),
        server.acceptor(),
    ))
    .detach();
    (server, url)
}

/// One run with a text of `size` bytes and an append of as many.
pub async fn s11(size: usize, dir: &Path) -> Run {
    let db = dir.join(format!("s11-{}-{size}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        // A leftover of an earlier run would be read back; a missing one is fine.
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    let (server, url) = sqlite_server(&db).await;

    // The large document, written by one client and read by another.
    let first = client("first", &url);
    let doc = first.open("big").await.unwrap_or_else(|e| panic!("{e}"));
    doc.get_text("t")
        .insert(0, &text(size, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    doc.commit();
    synced(&first, "big").await;
    let base = doc
        .export(ExportMode::Snapshot)
        .unwrap_or_else(|e| panic!("{e}"));
    let appender = client("appender", &url);
    let theirs = appender.open("big").await.unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + WAIT;
    while theirs.get_text("t").len_unicode() < size && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(10)).await;
    }

    // The good client edits its own document, round trip after round trip.
    let good = Arc::new(client("good", &url));
    let small = good.open("small").await.unwrap_or_else(|e| panic!("{e}"));
    small.get_text("t").insert(0, "x").unwrap_or_default();
    small.commit();
    synced(&good, "small").await;
    let stop = Arc::new(AtomicBool::new(false));
    let trips = Arc::new(Mutex::new(Vec::<f64>::new()));
    let worker = {
        let (good, stop, trips) = (good.clone(), stop.clone(), trips.clone());
        smol::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                small.get_text("t").insert(0, "x").unwrap_or_default();
                small.commit();
                let took = synced(&good, "small").await;
                if let Ok(mut t) = trips.lock() {
                    t.push(took.as_secs_f64() * 1000.0);
                }
            }
        })
    };
    smol::Timer::after(Duration::from_millis(200)).await;

    let before = theirs.oplog_vv();
    let t = theirs.get_text("t");
    t.insert(t.len_unicode(), &text(size, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    theirs.commit();
    synced(&appender, "big").await;
    let acked = started.elapsed().as_secs_f64();
    smol::Timer::after(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    worker.await;
    let update = theirs
        .export(ExportMode::updates(&before))
        .unwrap_or_else(|e| panic!("{e}"));
    let floor = loro_floor(&base, &update);

    let mut trips = trips.lock().map(|t| t.clone()).unwrap_or_default();
    trips.sort_by(f64::total_cmp);
    for c in [first, appender] {
        c.close().await;
    }
    if let Ok(good) = Arc::try_unwrap(good) {
        good.close().await;
    }
    server.shutdown().await;
    for s in ["", "-wal", "-shm"] {
        // The run is over; a file left behind only takes disk space.
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    Run {
        scenario: "S11".into(),
        transport: "websocket".into(),
        size: size as u64,
        metric: "append_ack_s".into(),
        value: acked,
        bytes: update.len() as u64,
        peak_rss: memory().1,
        extra: vec![
            ("loro_import_s".into(), floor),
            ("good_p50_ms".into(), percentile(&trips, 0.5)),
            ("good_p99_ms".into(), percentile(&trips, 0.99)),
            ("good_max_ms".into(), trips.last().copied().unwrap_or(0.0)),
            ("good_round_trips".into(), trips.len() as f64),
        ],
        ..Run::default()
    }
}
