//! A burst of small updates, each from a writer of its own, costs the real
//! binary store bytes in proportion to what was sent. Before, each update
//! was stored as a change of its own that rewrote the document's row with
//! its whole version (which grows with every writer): 2,000 updates in one
//! frame wrote 276 MB and kept the node busy for 18 s. Node time against
//! the same updates one by one is measured by benchmark S10
//! (`cargo run --release -p docweave-bench -- --scenario s10`). And a
//! document of 10,000 writers is read by every kind of client.

mod common;

use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::{SqliteStore, Store};
use docweave_core::{AckStatus, BatchId, DocId, Message, Payload, VersionVector};
use std::time::{Duration, Instant};

/// `n` updates of about 150 bytes, each setting one key from a fresh Loro peer.
fn updates(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let doc = loro::LoroDoc::new();
            doc.set_peer_id(1_000_000 + i).unwrap();
            doc.get_map("m").insert(&format!("k{i}"), i as i64).unwrap();
            doc.commit();
            doc.export(loro::ExportMode::all_updates()).unwrap()
        })
        .collect()
}

fn update(doc: &str, batch: u64, data: &[u8]) -> Message {
    Message::Update {
        doc: DocId::new(doc),
        batch: BatchId(batch),
        data: Payload::new(data.to_vec()),
        version: VersionVector::new(),
    }
}

/// Bytes the server's data directory holds (the SQLite file and its log).
fn stored_bytes(server: &Server) -> u64 {
    std::fs::read_dir(&server.data)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Sends the updates in one frame; the time until every one is
/// acknowledged `ok`.
fn send_burst(server: &Server, doc: &str, updates: &[Vec<u8>]) -> Duration {
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("burster", None)]).await;
        let started = Instant::now();
        let frame: Vec<Message> = (1..)
            .zip(updates)
            .map(|(batch, d)| update(doc, batch, d))
            .collect();
        send(&mut ws, &frame).await;
        assert_eq!(acks(&mut ws, updates.len()).await, updates.len());
        started.elapsed()
    })
}

/// Waits for `n` acks `ok`; how many came.
async fn acks(ws: &mut Socket, n: usize) -> usize {
    let mut acked = 0;
    while acked < n {
        let left = n - acked;
        let (got, closed) =
            receive_until(ws, Duration::from_secs(120), |ms| count_ok(ms) >= left).await;
        assert!(
            !closed && !got.is_empty(),
            "acks stopped at {acked} of {n}; closed: {closed}; last: {:?}",
            got.iter().rev().take(3).collect::<Vec<_>>()
        );
        acked += count_ok(&got);
    }
    acked
}

fn count_ok(ms: &[Message]) -> usize {
    ms.iter()
        .filter(|m| {
            matches!(
                m,
                Message::Ack {
                    status: AckStatus::Ok,
                    ..
                }
            )
        })
        .count()
}

/// How many changes the store keeps for `doc` (after its snapshot).
fn stored_changes(server: &Server, doc: &str) -> usize {
    let mut store = SqliteStore::open(server.data.join("docweave.db")).unwrap();
    store
        .load(&DocId::new(doc))
        .unwrap()
        .map_or(0, |l| l.changes.len())
}

#[test]
fn a_burst_of_updates_from_many_writers_in_one_frame_is_stored_in_proportion_to_its_size() {
    let n = 2_000;
    let burst = updates(n);
    let sent: u64 = burst.iter().map(|u| u.len() as u64).sum();
    let server = Server::start(
        "server",
        &data_dir("burst-one-frame"),
        free_port(),
        free_port(),
        &[],
    );
    let doc = "burst";
    assert!(well_behaved(&server, "other", None));
    let before = stored_bytes(&server);
    let rss_before = server.rss();
    // A good client writes and reads another document throughout.
    let good = GoodClient::start(&server, "other");
    let took = send_burst(&server, doc, &burst);
    let (slowest, rounds) = good.stop();
    let stored = stored_bytes(&server).saturating_sub(before);
    let changes = stored_changes(&server, doc);
    eprintln!(
        "{n} updates ({sent} bytes) in one frame: acked in {took:?}; {stored} bytes and \
         {changes} changes stored; RSS {} -> {} MiB (peak {} MiB); a good client's slowest \
         put and get {slowest:?} over {rounds} rounds",
        rss_before >> 20,
        server.rss() >> 20,
        server.peak_rss() >> 20
    );
    // Every key arrived.
    let (ok, out, err) = cli(&["doc", "get", &format!("ws://127.0.0.1:{}", server.ws), doc]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("\"k{}\"", n - 1)) && out.contains("\"k0\""),
        "{}",
        &out[..out.len().min(300)]
    );
    // Stored: a few changes (each write takes what arrived while the last
    // was out), in bytes linear in what was sent. Before: 2,000 changes, and
    // each rewrote the document's row with its whole version (276 MB).
    assert!(changes <= 64, "{changes} changes stored for one burst");
    assert!(
        stored <= 16 * sent + (4 << 20),
        "a burst of {sent} bytes stored {stored}"
    );
}

/// Whether `text` (the CLI's JSON of a document) holds every key of `n` writers.
fn holds_all(text: &str, n: u64) -> bool {
    text.contains("\"k0\"") && text.contains(&format!("\"k{}\"", n - 1))
}

#[test]
fn ten_thousand_writers_on_one_document_are_read_by_the_cli_a_loro_client_and_a_peer_server() {
    use docweave_adapters::loro_protocol::{Body, Crdt};
    let n = 10_000u64;
    let server = Server::start(
        "server",
        &data_dir("writers-10k"),
        free_port(),
        free_port(),
        &[],
    );
    let doc = "crowd";
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("writers", None)]).await;
        let all = updates(n);
        // Frames of 2,000 updates: one WebSocket piece holds 256 KiB.
        for (f, chunk) in all.chunks(2_000).enumerate() {
            let frame: Vec<Message> = (1..)
                .zip(chunk)
                .map(|(i, d)| update(doc, (f * 2_000) as u64 + i, d))
                .collect();
            send(&mut ws, &frame).await;
        }
        assert_eq!(acks(&mut ws, n as usize).await, n as usize);
    });
    // The CLI, over WebSocket and HTTP.
    for url in [
        format!("ws://127.0.0.1:{}", server.ws),
        format!("http://127.0.0.1:{}", server.http),
    ] {
        let (ok, out, err) = cli(&["doc", "get", &url, doc]);
        assert!(ok && holds_all(&out, n), "{url}: {err}");
    }
    // A Loro client: joined, then sent the whole document (perhaps as fragments).
    smol::block_on(async {
        let mut ws = raw_ws_at(server.ws, "/loro").await;
        let join = Body::JoinRequest {
            auth: Vec::new(),
            version: Vec::new(),
        };
        ws.send(loro(Crdt::Loro, doc, join)).await.unwrap();
        let replica = loro::LoroDoc::new();
        let mut pieces: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        let mut expected = 0u32;
        let deadline = Instant::now() + Duration::from_secs(60);
        while replica.get_map("m").len() < n as usize {
            assert!(
                Instant::now() < deadline,
                "the Loro client got {} keys",
                replica.get_map("m").len()
            );
            let (got, _, closed) = loro_until(&mut ws, Duration::from_secs(5), |_| true).await;
            assert!(!closed, "the server closed the Loro client");
            for m in got {
                match m.body {
                    Body::JoinError { message, .. } => panic!("join refused: {message}"),
                    Body::DocUpdate { updates, .. } => {
                        for u in updates {
                            replica.import(&u).unwrap();
                        }
                    }
                    Body::FragmentHeader { count, .. } => {
                        expected = count;
                        pieces.clear();
                    }
                    Body::Fragment { index, bytes, .. } => {
                        pieces.insert(index, bytes);
                        if pieces.len() as u32 == expected {
                            let whole: Vec<u8> = std::mem::take(&mut pieces)
                                .into_values()
                                .flatten()
                                .collect();
                            replica.import(&whole).unwrap();
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    // A server joined with `--peer` pulls it.
    let peer = format!("ws://127.0.0.1:{}", server.ws);
    let b = Server::start(
        "server-b",
        &data_dir("writers-10k-b"),
        free_port(),
        free_port(),
        &["--peer", &peer],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, _) = cli(&["doc", "get", &format!("ws://127.0.0.1:{}", b.ws), doc]);
        if ok && holds_all(&out, n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the peer server never held all {n} writers"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The Loro peers that wrote `doc`, as the server's store holds it.
fn writers(data: &std::path::Path, doc: &str) -> usize {
    let mut store = SqliteStore::open(data.join("docweave.db")).unwrap();
    let loaded = store.load(&DocId::new(doc)).unwrap().unwrap();
    loaded.version.iter().count()
}

#[test]
fn doc_puts_from_one_machine_write_as_one_loro_peer() {
    let data = data_dir("one-writer");
    let server = Server::start("one-writer", &data, free_port(), free_port(), &[]);
    let url = format!("ws://127.0.0.1:{}/", server.ws);
    for i in 0..5 {
        let (ok, _, err) = cli(&["doc", "put", &url, "notes", &format!("k{i}"), "v"]);
        assert!(ok, "put {i}: {err}");
    }
    let (ok, out, err) = cli(&["doc", "get", &url, "notes"]);
    assert!(ok, "{err}");
    for i in 0..5 {
        assert!(out.contains(&format!("\"k{i}\"")), "k{i} lost: {out}");
    }
    assert_eq!(
        writers(&data, "notes"),
        1,
        "five commands on one machine are one writer of the document"
    );
    // Another user (here: another peer name) is another writer.
    let (ok, _, err) = cli(&["doc", "put", &url, "notes", "k5", "v", "--as", "bob"]);
    assert!(ok, "{err}");
    assert_eq!(writers(&data, "notes"), 2);
}
