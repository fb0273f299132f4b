//! Readers that ask for a lot and never read cost the real binary bounded
//! memory: the issue saw 100 HTTP polling sessions, each asking for 40
//! documents of 870 KB in one request and never polling, take the server
//! from 0.25 to 5.39 GB, still held 90 s later.

mod common;

use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_core::{encode, BatchId, DocId, Message, Payload, VersionVector};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const DOCS: usize = 40;
const READERS: usize = 100;

/// A Loro snapshot of about 870 KB of text.
fn big_doc(i: usize) -> Vec<u8> {
    let doc = loro::LoroDoc::new();
    let text = format!("{i:04}").repeat(870 * 1024 / 4);
    doc.get_text("t").insert(0, &text).unwrap();
    doc.commit();
    doc.export(loro::ExportMode::Snapshot).unwrap()
}

/// Writes the 40 documents of 870 KB through one client, each acknowledged.
fn write_big_docs(server: &Server) {
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("writer", None)]).await;
        for i in 0..DOCS {
            let update = Message::Update {
                doc: DocId::new(&format!("big-{i}")),
                batch: BatchId(i as u64 + 1),
                data: Payload::new(big_doc(i)),
                version: VersionVector::new(),
            };
            send(&mut ws, &[update]).await;
        }
        let acks = |ms: &[Message]| {
            ms.iter()
                .filter(|m| matches!(m, Message::Ack { .. }))
                .count()
        };
        let (got, _) =
            receive_until(&mut ws, Duration::from_secs(120), |ms| acks(ms) >= DOCS).await;
        assert_eq!(
            acks(&got),
            DOCS,
            "the writer's documents were not all taken"
        );
    });
}

/// Opens an HTTP session from `from` (a loopback address) with `body` as
/// its first frame; the answer's status line.
fn open_session(from: [u8; 4], port: u16, body: &[u8]) -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Only the answer's first line matters.
    let out = post_on(&mut s, "/sync", body);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_hundred_sessions_asking_for_forty_large_documents_and_never_polling_cost_bounded_memory() {
    let server = Server::start(
        "server",
        &data_dir("readers-never-polling"),
        free_port(),
        free_port(),
        &[],
    );
    write_big_docs(&server);
    let before = server.rss();
    // A good client keeps writing and reading another document.
    let good = GoodClient::start(&server, "other");
    // 100 readers, each one session asking for all 40 in its first request,
    // none of which ever polls, from four addresses.
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for r in 0..READERS {
        let mut frame = vec![hello(&format!("reader-{r}"), None)];
        frame.extend((0..DOCS).map(|i| sync_request(&format!("big-{i}"))));
        // 25 readers per address: the server allows 32 sessions per client.
        let from = [127, 0, 0, 2 + (r / 25) as u8];
        let status = open_session(from, server.http, &encode(&frame).unwrap());
        *statuses.entry(status).or_default() += 1;
    }
    let mut peak_during = server.rss();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        peak_during = peak_during.max(server.rss());
    }
    let (slowest, rounds) = good.stop();
    eprintln!(
        "{READERS} sessions x {DOCS} documents of 870 KB, never polled: session answers \
         {statuses:?}; RSS {} MiB before, {} MiB at most during (process peak {} MiB); a good \
         client's slowest put and get {slowest:?} over {rounds} rounds",
        before >> 20,
        peak_during >> 20,
        server.peak_rss() >> 20
    );
    // Bound: a few hundred MB over what the documents themselves hold.
    assert!(
        server.peak_rss() < before + (512 << 20),
        "RSS went from {} MiB to {} MiB",
        before >> 20,
        server.peak_rss() >> 20
    );
}

#[test]
fn a_hundred_websockets_asking_for_forty_large_documents_and_never_reading_cost_bounded_memory() {
    let server = Server::start(
        "server",
        &data_dir("readers-never-reading"),
        free_port(),
        free_port(),
        &[],
    );
    write_big_docs(&server);
    let before = server.rss();
    let readers = smol::block_on(async {
        let mut readers = Vec::new();
        for r in 0..READERS {
            let mut ws = raw_ws(server.ws).await;
            let mut frame = vec![hello(&format!("reader-{r}"), None)];
            frame.extend((0..DOCS).map(|i| sync_request(&format!("big-{i}"))));
            send(&mut ws, &frame).await;
            readers.push(ws);
        }
        readers
    });
    let mut peak_during = server.rss();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        peak_during = peak_during.max(server.rss());
    }
    let started = Instant::now();
    assert!(well_behaved(&server, "other", None));
    let good = started.elapsed();
    eprintln!(
        "{READERS} websockets x {DOCS} documents of 870 KB, never read: RSS {} MiB before, {} MiB \
         at most during (process peak {} MiB); a good client's put and get afterwards {good:?}",
        before >> 20,
        peak_during >> 20,
        server.peak_rss() >> 20
    );
    drop(readers);
    assert!(
        server.peak_rss() < before + (512 << 20),
        "RSS went from {} MiB to {} MiB",
        before >> 20,
        server.peak_rss() >> 20
    );
}
