//! Documents larger than any frame: a real node serves them to fresh clients
//! over memory, WebSocket and HTTP polling as bounded chunk frames, keeps
//! them across a restart and an eviction, and refuses a message over its
//! configured limit with a clear `TooLarge` while serving everything else.
//!
//! `DOCWEAVE_LARGE_MB` sets the size of the document's text (default 20,
//! which makes a snapshot past the 16 MiB frame limit); the 200 MB runs of
//! the closing notes use the release build.

use docweave_adapters::transport::{http_link, ws_connect, HttpOptions, WsOptions};
use docweave_adapters::SqliteStore;
use docweave_core::Event;
use docweave_shell::Repo;
use docweave_tests::endpoints::{dialer, serve_ws_and_http};
use loro::{ExportMode, LoroDoc};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(300);

/// Logs to stderr when `DOCWEAVE_TEST_LOG` names a filter (`debug`, ...).
fn log() {
    if let Ok(filter) = std::env::var("DOCWEAVE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

fn text_mb() -> usize {
    std::env::var("DOCWEAVE_LARGE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// What a document holds, cheap to compare: text length, a hash of the
/// text, and the number of map keys.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    text_len: usize,
    text_hash: u64,
    keys: usize,
}

fn fingerprint(d: &LoroDoc) -> Fingerprint {
    use std::hash::{Hash, Hasher};
    let text = d.get_text("t").to_string();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    Fingerprint {
        text_len: text.len(),
        text_hash: h.finish(),
        keys: d.get_map("m").len(),
    }
}

/// A document of `mb` MB of text (pseudo-random letters, which compress
/// little, so the snapshot is about as large) and a map with 5,000 keys per MB.
fn big_source(mb: usize) -> Vec<u8> {
    log();
    let d = LoroDoc::new();
    const LETTERS: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let text: String = (0..mb * 1_000_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            LETTERS[(state >> 58) as usize] as char
        })
        .collect();
    d.get_text("t").insert(0, &text).unwrap();
    let m = d.get_map("m");
    for k in 0..mb * 5_000 {
        m.insert(&format!("key-{k}"), k as i64).unwrap();
    }
    d.commit();
    d.export(ExportMode::Snapshot).unwrap()
}

/// A directory of one test's own for its database, removed when the test
/// ends, passed or failed: each run left 82 MB in the system's temporary
/// directory, and leftovers of many runs once filled the disk CI builds on.
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "docweave-large-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDb(dir)
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.join("docweave.db")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        // Tidying only: a directory left behind costs disk, not a result.
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

fn hub(db: &std::path::Path, max_docs: usize) -> Arc<Repo> {
    Arc::new(
        Repo::builder("hub")
            .store(SqliteStore::open(db).unwrap())
            .max_docs_in_memory(max_docs)
            .build()
            .unwrap(),
    )
}

/// Imports the large document into `repo` (as a local change) and returns
/// what it holds once imported.
async fn put_big(repo: &Repo, snapshot: &[u8]) -> Fingerprint {
    let source = LoroDoc::new();
    source.import(snapshot).unwrap();
    let expected = fingerprint(&source);
    drop(source);
    repo.import("big", snapshot.to_vec()).await.unwrap();
    let d = repo.open("big").await.unwrap();
    assert!(eventually(|| d.get_text("t").len_utf8() == expected.text_len).await);
    assert_eq!(fingerprint(&d), expected);
    expected
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if f() {
            return true;
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    f()
}

/// A fresh client (no store) that fetches "big" and checks what it got.
async fn fetch(name: &str, connect: impl FnOnce(&Repo), expected: &Fingerprint) {
    let client = Repo::builder(name).build().unwrap();
    connect(&client);
    let started = Instant::now();
    let d = client.open("big").await.unwrap();
    let arrived = eventually(|| d.get_text("t").len_utf8() == expected.text_len).await;
    assert!(
        arrived,
        "{name} holds {} bytes of text, expected {}",
        d.get_text("t").len_utf8(),
        expected.text_len
    );
    assert_eq!(&fingerprint(&d), expected, "{name} got different content");
    eprintln!(
        "{name}: {} bytes of text and {} keys in {:?}",
        expected.text_len,
        expected.keys,
        started.elapsed()
    );
    client.close().await;
}

#[test]
fn a_document_larger_than_a_frame_reaches_fresh_clients_in_memory_over_websocket_and_http() {
    let snapshot = big_source(text_mb());
    assert!(
        snapshot.len() > docweave_core::Limits::default().max_frame,
        "the document ({} bytes) must not fit into one frame",
        snapshot.len()
    );
    smol::block_on(async {
        let db = TempDb::new("transports");
        let hub = hub(&db.path(), usize::MAX);
        let expected = put_big(&hub, &snapshot).await;
        let (ws, http) = serve_ws_and_http(&hub, 16).await;
        let h = hub.clone();
        fetch("memory", move |c| c.connect(&h).unwrap(), &expected).await;
        fetch(
            "websocket",
            move |c| {
                let url = format!("ws://{ws}/");
                c.connect_with(
                    "hub",
                    Some("t"),
                    dialer(move || {
                        let url = url.clone();
                        Box::pin(async move { ws_connect(&url, WsOptions::default()).await })
                    }),
                )
                .unwrap()
            },
            &expected,
        )
        .await;
        fetch(
            "http",
            move |c| {
                c.connect_with(
                    "hub",
                    Some("t"),
                    dialer(move || {
                        let a = http.clone();
                        Box::pin(
                            async move { Ok(http_link(&a, Some("t"), HttpOptions::default())) },
                        )
                    }),
                )
                .unwrap()
            },
            &expected,
        )
        .await;
        // Closed before its directory goes: the servers' tasks hold the hub.
        hub.shutdown().await;
    });
}

#[test]
fn a_large_document_written_by_a_client_survives_restart_and_eviction() {
    let snapshot = big_source(text_mb());
    let dir = TempDb::new("restart");
    let db = dir.path();
    smol::block_on(async {
        // A client writes the document into the hub, over WebSocket, and
        // waits until the hub says it is durable.
        let first = hub(&db, 1);
        let (ws, _) = serve_ws_and_http(&first, 16).await;
        let writer = Repo::builder("writer").build().unwrap();
        let url = format!("ws://{ws}/");
        writer
            .connect_with(
                "hub",
                Some("t"),
                dialer(move || {
                    let url = url.clone();
                    Box::pin(async move { ws_connect(&url, WsOptions::default()).await })
                }),
            )
            .unwrap();
        let expected = put_big(&writer, &snapshot).await;
        let outcome = writer.wait_for_sync("big", "hub", WAIT).await.unwrap();
        assert!(outcome.is_synced(), "the hub did not take the document");
        writer.close().await;
        first.shutdown().await;

        // Restarted on the same store, at most one document in memory.
        let hub = hub(&db, 1);
        let h = hub.clone();
        fetch("after-restart", move |c| c.connect(&h).unwrap(), &expected).await;
        // Another document pushes "big" out of memory; it is reloaded.
        let other = hub.open("other").await.unwrap();
        other.get_text("t").insert(0, "small").unwrap();
        other.commit();
        let mut resident = hub.resident_docs().await.unwrap();
        for _ in 0..100 {
            if resident <= 1 {
                break;
            }
            smol::Timer::after(Duration::from_millis(50)).await;
            resident = hub.resident_docs().await.unwrap();
        }
        assert_eq!(resident, 1, "only one document stays in memory");
        let h = hub.clone();
        fetch("after-eviction", move |c| c.connect(&h).unwrap(), &expected).await;
    });
}

#[test]
fn a_message_over_the_limit_is_refused_with_too_large_and_the_rest_still_syncs() {
    let snapshot = big_source(3);
    smol::block_on(async {
        let hub = Arc::new(
            Repo::builder("hub")
                .max_message(1024 * 1024)
                .build()
                .unwrap(),
        );
        put_big(&hub, &snapshot).await;
        let small = hub.open("small").await.unwrap();
        small.get_text("t").insert(0, "fits").unwrap();
        small.commit();

        let client = Repo::builder("client").build().unwrap();
        let events = client.events().await.unwrap();
        client.connect(&hub).unwrap();
        let _big = client.open("big").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut refusal = None;
        while refusal.is_none() && Instant::now() < deadline {
            let next = futures_lite::future::or(async { events.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_millis(200)).await;
                None
            })
            .await;
            if let Some(Event::Error { reason, .. }) = next {
                if reason.contains("TooLarge") {
                    refusal = Some(reason);
                }
            }
        }
        let refusal = refusal.expect("the client was told the document is too large");
        assert!(
            refusal.contains("big") && refusal.contains("1048576"),
            "the refusal names the document and the limit: {refusal}"
        );
        let s = client.open("small").await.unwrap();
        assert!(eventually(|| s.get_text("t").to_string() == "fits").await);
        client.close().await;
    });
}
