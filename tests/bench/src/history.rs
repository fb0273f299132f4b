//! S15: a document's past on the real `docweave serve` (a process of its
//! own, on a fresh SQLite store), through the document API:
//! - a document written by 100,000 small updates (one writer typing over
//!   WebSocket, each update one history entry): every page of its history
//!   read 100 entries at a time, newest to oldest (ms per page);
//! - a 10 MB document written in 100 appends: its state at the middle
//!   version (`GET /docs/ID?at=`) beside its state now (`GET /docs/ID`);
//! - what history costs: the bytes SQLite keeps per history entry (its
//!   rows and indexes), and the document of 100,000 edits stored and
//!   resident with its whole history and trimmed to a shallow snapshot
//!   (`compact --history-before`).

use crate::connections::{hello, send, start_server, update};
use crate::doc_api::http_run;
use crate::Run;
use docweave_adapters::transport::{request, ws_connect, WsOptions};
use docweave_core::{decode, AckStatus, Limits, Message};
use std::path::Path;
use std::time::Instant;

/// How large S15 runs.
#[derive(Debug, Clone, Copy)]
pub struct S15Sizes {
    /// Small updates to the edited document (history entries).
    pub edits: usize,
    /// Entries a history page lists.
    pub page: usize,
    /// Bytes of the large document.
    pub large_bytes: usize,
    /// Appends it is written in.
    pub appends: usize,
    /// Reads of each state timed.
    pub reads: usize,
}

impl S15Sizes {
    /// The full run.
    pub fn full() -> Self {
        Self {
            edits: 100_000,
            page: 100,
            large_bytes: 10 * 1024 * 1024,
            appends: 100,
            reads: 5,
        }
    }

    /// The tiny form the smoke test runs.
    pub fn quick() -> Self {
        Self {
            edits: 200,
            page: 50,
            large_bytes: 64 * 1024,
            appends: 4,
            reads: 1,
        }
    }
}

fn run(metric: &str, size: u64, value: f64, messages: u64, extra: Vec<(String, f64)>) -> Run {
    http_run("S15", metric, size, value, messages, extra)
}

/// A GET answered 200 (asserted): its body.
async fn get(http: &str, path: &str) -> Vec<u8> {
    let (status, body) = request("GET", http, path, &[], Vec::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}"))
}

/// The `q`th quantile of sorted `xs`.
fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

/// Text that does not compress much.
fn letters(n: usize, seed: u64) -> String {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

/// Most edits one writer has sent and not yet seen acknowledged.
const WINDOW: usize = 128;

/// One writer on the server's WebSocket port types `count` characters
/// into `id`, each its own update (one history entry each), up to
/// [`WINDOW`] of them in flight; every one must be acknowledged ok
/// (asserted: a refused write is not a measurement). One writer: edits of
/// several writers that never saw each other's would each cost Loro's
/// import the document's whole history, which is not what is measured.
async fn type_into(ws: &str, id: &str, count: usize) {
    let link = ws_connect(&format!("ws://{ws}"), WsOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {ws}: {e}"));
    assert!(
        send(&link, &[hello("s15-writer")]),
        "the hello was not sent"
    );
    let doc = loro::LoroDoc::new();
    doc.set_peer_id(1)
        .unwrap_or_else(|e| panic!("a peer id: {e}"));
    let mut shipped = loro::VersionVector::default();
    let (mut sent, mut acked) = (0usize, 0usize);
    let limits = Limits::default();
    while acked < count {
        while sent < count && sent - acked < WINDOW {
            let text = doc.get_text("t");
            text.insert(text.len_unicode(), "x")
                .unwrap_or_else(|e| panic!("an insert: {e}"));
            doc.commit();
            let data = doc
                .export(loro::ExportMode::updates(&shipped))
                .unwrap_or_else(|e| panic!("an export: {e}"));
            shipped = doc.oplog_vv();
            sent += 1;
            assert!(
                send(&link, &[update(id, sent as u64, data)]),
                "an update was not sent"
            );
        }
        let frame =
            link.rx.recv().await.unwrap_or_else(|e| {
                panic!("the server went away after {acked} acknowledgements: {e}")
            });
        for m in decode(&frame, &limits).unwrap_or_default() {
            match m {
                Message::Ack {
                    status: AckStatus::Ok,
                    ..
                } => acked += 1,
                Message::Ack { status, .. } => panic!("an edit was refused: {status:?}"),
                _ => {}
            }
        }
    }
    link.close("typed");
}

/// S15 against the `docweave` binary `bin`, with its data under `dir`.
pub async fn s15(bin: &Path, sizes: &S15Sizes, dir: &Path) -> Vec<Run> {
    let dir = dir.join(format!("s15-{}", std::process::id()));
    // A fresh store each run: what an earlier run left is not wanted.
    let _ = std::fs::remove_dir_all(&dir);
    let mut runs = Vec::new();
    let server = start_server(bin, &dir);
    let http = server.http.clone();

    // 1. History pages of a document of many small edits.
    let typing = Instant::now();
    type_into(&server.ws, "edited", sizes.edits).await;
    let typed_s = typing.elapsed().as_secs_f64();
    let mut page_ms = Vec::new();
    let mut entries = 0usize;
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/docs/edited/history?limit={}", sizes.page);
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let start = Instant::now();
        let page = json(&get(&http, &path).await);
        page_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        entries += page["entries"].as_array().map_or(0, Vec::len);
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    let pages = page_ms.len();
    page_ms.sort_by(f64::total_cmp);
    assert_eq!(entries, sizes.edits, "every update is one history entry");
    runs.push(run(
        "history_page_ms_p99",
        entries as u64,
        quantile(&page_ms, 0.99),
        pages as u64,
        vec![
            ("p50_ms".into(), quantile(&page_ms, 0.5)),
            ("max_ms".into(), quantile(&page_ms, 1.0)),
            ("pages".into(), pages as f64),
            ("edits_per_s".into(), sizes.edits as f64 / typed_s.max(1e-9)),
        ],
    ));

    // 2. The state at a version of a large document, beside its state now.
    let chunk = sizes.large_bytes / sizes.appends.max(1);
    let doc = loro::LoroDoc::new();
    for i in 0..sizes.appends {
        let before = doc.oplog_vv();
        let text = doc.get_text("t");
        text.insert(text.len_unicode(), &letters(chunk, i as u64 + 7))
            .unwrap_or_else(|e| panic!("an append: {e}"));
        doc.commit();
        let update = doc
            .export(loro::ExportMode::updates(&before))
            .unwrap_or_else(|e| panic!("an export: {e}"));
        let (status, body) = request("POST", &http, "/docs/large/updates", &[], update)
            .await
            .unwrap_or_else(|e| panic!("POST an append: {e}"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let listed = json(
        &get(
            &http,
            &format!("/docs/large/history?limit={}", sizes.appends),
        )
        .await,
    );
    let list = listed["entries"].as_array().cloned().unwrap_or_default();
    let middle = list[list.len() / 2]["version"]
        .as_str()
        .unwrap_or_default()
        .replace('@', "%40")
        .replace(',', "%2C");
    let time = |path: String| {
        let http = http.clone();
        async move {
            let mut best = f64::MAX;
            let mut size = 0;
            for _ in 0..sizes.reads.max(1) {
                let start = Instant::now();
                size = get(&http, &path).await.len();
                best = best.min(start.elapsed().as_secs_f64());
            }
            (best, size)
        }
    };
    let (now_s, now_bytes) = time("/docs/large".into()).await;
    let (at_s, at_bytes) = time(format!("/docs/large?at={middle}")).await;
    runs.push(run(
        "state_at_version_s",
        sizes.large_bytes as u64,
        at_s,
        sizes.reads as u64,
        vec![
            ("state_now_s".into(), now_s),
            ("ratio".into(), at_s / now_s.max(1e-9)),
            ("state_at_bytes".into(), at_bytes as f64),
            ("state_now_bytes".into(), now_bytes as f64),
        ],
    ));
    drop(server);

    // 3. What history costs on disk and in memory.
    let db = dir.join("data").join("docweave.db");
    let (entry_bytes, rows) = history_bytes(&db);
    let full = stored(&db, "edited");
    let compact = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg("compact")
            .arg(dir.join("data"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("docweave compact: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    compact(&[]);
    let whole = snapshot_of(&db, "edited");
    let far_future = "4102444800000"; // 2100-01-01: everything is older.
    compact(&["--history-before", far_future]);
    let shallow = snapshot_of(&db, "edited");
    // What a replica of each keeps on the heap, its state read once (as
    // a server's replica is, to answer with it).
    let resident = |bytes: &[u8]| {
        let (d, kept) = crate::heap::kept_by(|| {
            let d = loro::LoroDoc::new();
            d.import(bytes).unwrap_or_else(|e| panic!("{e}"));
            // Read only to make Loro build the state it answers with,
            // which is part of what is measured; the value itself is not.
            let _ = d.get_deep_value();
            d
        });
        drop(d);
        kept
    };
    let shallow_resident = resident(&shallow);
    let whole_resident = resident(&whole);
    runs.push(run(
        "history_bytes_per_entry",
        rows,
        entry_bytes as f64 / rows.max(1) as f64,
        rows,
        vec![
            ("changes_stored_bytes".into(), full as f64),
            ("snapshot_whole_history_bytes".into(), whole.len() as f64),
            ("snapshot_trimmed_bytes".into(), shallow.len() as f64),
            ("resident_whole_history_bytes".into(), whole_resident as f64),
            ("resident_trimmed_bytes".into(), shallow_resident as f64),
        ],
    ));
    // The store was the run's own; what cannot be removed only costs disk.
    let _ = std::fs::remove_dir_all(&dir);
    runs
}

/// Bytes SQLite keeps for history entries (their table and indexes, and
/// the owners of writers), and how many entries there are.
fn history_bytes(db: &Path) -> (u64, u64) {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let bytes: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat
             WHERE name IN ('authored', 'authored_by_doc', 'sqlite_autoindex_authored_1', 'writers')",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("dbstat: {e}"));
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM authored", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    (bytes as u64, rows as u64)
}

/// Bytes stored for `doc`: its changes and snapshot.
fn stored(db: &Path, doc: &str) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let changes: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(length(data)), 0) FROM changes WHERE doc = ?1",
            [doc],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    changes as u64 + snapshot_of(db, doc).len() as u64
}

/// `doc`'s snapshot as stored (empty: none).
fn snapshot_of(db: &Path, doc: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    conn.query_row("SELECT snapshot FROM docs WHERE doc = ?1", [doc], |r| {
        r.get::<_, Option<Vec<u8>>>(0)
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_default()
}
