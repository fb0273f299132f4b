//! S13: the document API of the real `docweave serve` (a process of its
//! own, on a fresh SQLite store), as a backend uses it over HTTP: reading
//! a large document as JSON and as a snapshot (`GET /docs/ID`), and
//! writing small updates one after another, each answered once durable
//! (`POST /docs/ID/updates`), from one client and from several at once.

use crate::connections::start_server;
use crate::{memory, Run};
use docweave_adapters::transport::request;
use std::path::Path;
use std::time::Instant;

/// How large S13 runs.
#[derive(Debug, Clone, Copy)]
pub struct S13Sizes {
    /// Characters of text in the large document.
    pub doc_chars: usize,
    /// Reads of it timed, of each form.
    pub reads: usize,
    /// Updates each writer posts.
    pub updates: usize,
    /// Writers posting at once in the concurrent form.
    pub writers: usize,
}

impl S13Sizes {
    /// The full run: a 1 MB document.
    pub fn full() -> Self {
        Self {
            doc_chars: 1_000_000,
            reads: 20,
            updates: 300,
            writers: 8,
        }
    }

    /// The tiny form the smoke test runs.
    pub fn quick() -> Self {
        Self {
            doc_chars: 10_000,
            reads: 2,
            updates: 5,
            writers: 2,
        }
    }
}

/// Text of `chars` letters and spaces that does not compress much, so the
/// document is as large stored and sent as it reads.
fn varied_text(chars: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..chars)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 27 {
                26 => ' ',
                n => char::from(b'a' + n as u8),
            }
        })
        .collect()
}

/// One small Loro update after `doc`'s current state.
fn edit(doc: &loro::LoroDoc, n: usize) -> Vec<u8> {
    let before = doc.oplog_vv();
    let text = doc.get_text("t");
    let at = text.len_unicode();
    text.insert(at, &format!("{n} "))
        .unwrap_or_else(|e| panic!("an insert at the end: {e}"));
    doc.commit();
    doc.export(loro::ExportMode::updates(&before))
        .unwrap_or_else(|e| panic!("an export of a fresh edit: {e}"))
}

/// Posts `count` updates to `id` one after another; each must be answered
/// 200 (asserted: a refused write is not a measurement).
pub(crate) async fn post_updates(http: &str, id: &str, count: usize) {
    let doc = loro::LoroDoc::new();
    for n in 0..count {
        let body = edit(&doc, n);
        let path = format!("/docs/{id}/updates");
        let (status, answer) = request("POST", http, &path, &[], body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }
}

/// Times `reads` GETs of `path` (each answered 200, asserted); seconds per read
/// and the answer's size.
async fn time_reads(
    http: &str,
    path: &str,
    headers: &[(&str, &str)],
    reads: usize,
) -> (f64, usize) {
    let start = Instant::now();
    let mut size = 0;
    for _ in 0..reads {
        let (status, body) = request("GET", http, path, headers, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}");
        size = body.len();
    }
    (start.elapsed().as_secs_f64() / reads.max(1) as f64, size)
}

/// A run of scenario `scenario` over HTTP against the real server (no
/// link of this process is measured: its frames and bytes are 0).
pub(crate) fn http_run(
    scenario: &str,
    metric: &str,
    size: u64,
    value: f64,
    messages: u64,
    extra: Vec<(String, f64)>,
) -> Run {
    Run {
        scenario: scenario.into(),
        transport: "http".into(),
        size,
        metric: metric.into(),
        value,
        messages,
        bytes: 0,
        peak_rss: memory().1,
        extra,
    }
}

fn run(metric: &str, size: u64, value: f64, messages: u64, extra: Vec<(String, f64)>) -> Run {
    http_run("S13", metric, size, value, messages, extra)
}

/// S13 against the `docweave` binary `bin`, with its data under `dir`.
pub async fn s13(bin: &Path, sizes: &S13Sizes, dir: &Path) -> Vec<Run> {
    let dir = dir.join(format!("s13-{}", std::process::id()));
    // A fresh store each run: what an earlier run left is not wanted.
    let _ = std::fs::remove_dir_all(&dir);
    let server = start_server(bin, &dir);
    let http = server.http.clone();

    // The large document, written in one update.
    let big = loro::LoroDoc::new();
    big.get_text("t")
        .insert(0, &varied_text(sizes.doc_chars))
        .unwrap_or_else(|e| panic!("an insert into an empty text: {e}"));
    big.commit();
    let snapshot = big
        .export(loro::ExportMode::Snapshot)
        .unwrap_or_else(|e| panic!("a snapshot of a fresh document: {e}"));
    let (status, answer) = request("POST", &http, "/docs/big/updates", &[], snapshot.clone())
        .await
        .unwrap_or_else(|e| panic!("POST the large document: {e}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));

    let mut runs = Vec::new();
    let octets = [("accept", "application/octet-stream")];
    for (form, headers) in [("json", &[][..]), ("snapshot", &octets[..])] {
        let (seconds, bytes) = time_reads(&http, "/docs/big", headers, sizes.reads).await;
        runs.push(run(
            &format!("get_{form}_ms"),
            sizes.doc_chars as u64,
            seconds * 1e3,
            sizes.reads as u64,
            vec![
                ("answer_bytes".into(), bytes as f64),
                ("snapshot_bytes".into(), snapshot.len() as f64),
            ],
        ));
    }

    // Durable writes: one writer, then several at once on as many documents.
    for writers in [1, sizes.writers] {
        let start = Instant::now();
        let posts: Vec<_> = (0..writers)
            .map(|w| {
                let http = http.clone();
                let updates = sizes.updates;
                let id = format!("w{writers}-{w}");
                smol::spawn(async move { post_updates(&http, &id, updates).await })
            })
            .collect();
        for p in posts {
            p.await;
        }
        let seconds = start.elapsed().as_secs_f64();
        let total = (writers * sizes.updates) as u64;
        // What the server holds now: every writer's edits, read back.
        let first = format!("/docs/w{writers}-0");
        let (_, state) = request("GET", &http, &first, &[], Vec::new())
            .await
            .unwrap_or_else(|e| panic!("GET {first}: {e}"));
        let state: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
        let read_back = state["t"]
            .as_str()
            .map_or(0, |t| t.split_whitespace().count());
        runs.push(run(
            "post_updates_per_s",
            writers as u64,
            total as f64 / seconds.max(1e-9),
            total,
            vec![
                ("ms_per_update".into(), seconds * 1e3 / total.max(1) as f64),
                ("first_writers_edits_read_back".into(), read_back as f64),
            ],
        ));
    }
    drop(server);
    // The store was the run's own; what cannot be removed only costs disk.
    let _ = std::fs::remove_dir_all(&dir);
    runs
}
