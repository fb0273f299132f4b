//! Readers that ask for a lot and never read cost the real binary bounded
//! memory: the issue saw 100 HTTP polling sessions, each asking for 40
//! documents of 870 KB in one request and never polling, take the server
//! from 0.25 to 5.39 GB, still held 90 s later. What waits for many
//! readers is held once between them: a reader's queue shares the bytes of
//! one export with every other reader's.

mod common;

use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_core::{encode, BatchId, DocId, Message, Payload, VersionVector};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const DOCS: usize = 40;
const READERS: usize = 100;

/// A Loro snapshot of about 870 KB (435,000 characters of text that does
/// not compress: Loro compresses its snapshots, and a repeated text would
/// be a few KB).
fn big_doc(i: usize) -> Vec<u8> {
    let doc = loro::LoroDoc::new();
    let mut state = i as u64 + 1;
    let text: String = (0..435_000)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + (state >> 59) as u8 % 26)
        })
        .collect();
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
            send_in_pieces(&mut ws, &[update], i as u32 + 1).await;
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

/// A text of `n` characters that does not compress, the same for a seed.
fn noise(seed: u64, n: usize) -> String {
    let mut state = seed + 1;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + (state >> 59) as u8 % 26)
        })
        .collect()
}

/// Every update here fits in one frame (under the 1 MiB chunk size), so it
/// was once encoded, with its own copy of the change, for every follower:
/// up to each follower's 32 MiB backlog, 100 times over. A follower that
/// stops reading is not read either, so asking for more cannot fill its
/// queue; a writer pushing to every follower can.
#[test]
fn a_hundred_followers_that_never_read_hold_one_copy_of_each_large_update() {
    const UPDATES: usize = 30;
    let server = Server::start(
        "server",
        &data_dir("followers-never-reading"),
        free_port(),
        free_port(),
        &[],
    );
    let writer = loro::LoroDoc::new();
    let text = writer.get_text("t");
    let mut updates = Vec::new();
    for i in 0..=UPDATES {
        let from = writer.oplog_vv();
        // The first update only creates the document the followers follow.
        let n = if i == 0 { 10 } else { 435_000 };
        text.insert(text.len_unicode(), &noise(i as u64, n))
            .unwrap();
        writer.commit();
        updates.push(writer.export(loro::ExportMode::updates(&from)).unwrap());
    }
    let before = server.rss();
    let good = GoodClient::start(&server, "other");
    let update = |i: usize, data: &[u8]| Message::Update {
        doc: DocId::new("fan"),
        batch: BatchId(i as u64 + 1),
        data: Payload::new(data.to_vec()),
        version: VersionVector::new(),
    };
    let (readers, mut ws) = smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(&mut ws, &[hello("writer", None), update(0, &updates[0])]).await;
        receive_until(&mut ws, Duration::from_secs(30), |ms| {
            ms.iter().any(|m| matches!(m, Message::Ack { .. }))
        })
        .await;
        let mut readers = Vec::new();
        for r in 0..READERS {
            let mut reader = raw_ws(server.ws).await;
            send(
                &mut reader,
                &[hello(&format!("reader-{r}"), None), sync_request("fan")],
            )
            .await;
            readers.push(reader);
        }
        smol::Timer::after(Duration::from_secs(1)).await;
        for (i, data) in updates.iter().enumerate().skip(1) {
            send_in_pieces(&mut ws, &[update(i, data)], i as u32).await;
        }
        (readers, ws)
    });
    let acked = smol::block_on(receive_until(&mut ws, Duration::from_secs(120), |ms| {
        ms.iter()
            .filter(|m| matches!(m, Message::Ack { .. }))
            .count()
            >= UPDATES
    }))
    .0;
    let mut peak_during = server.rss();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        peak_during = peak_during.max(server.rss());
    }
    let (slowest, rounds) = good.stop();
    eprintln!(
        "{READERS} followers never reading, {UPDATES} updates of {} KB pushed to each: RSS {} MiB \
         before, {} MiB at most during (process peak {} MiB); a good client's slowest put and get \
         {slowest:?} over {rounds} rounds",
        updates[1].len() >> 10,
        before >> 20,
        peak_during >> 20,
        server.peak_rss() >> 20
    );
    drop(readers);
    assert!(
        acked
            .iter()
            .filter(|m| matches!(m, Message::Ack { .. }))
            .count()
            >= UPDATES,
        "the writer's updates were not all acknowledged"
    );
    // Bound: the updates once, and what each connection's writer holds
    // while it waits on a socket that is not read (a chunk frame or two):
    // a few hundred MB, as for the readers above.
    assert!(
        server.peak_rss() < before + (512 << 20),
        "RSS went from {} MiB to {} MiB",
        before >> 20,
        server.peak_rss() >> 20
    );
}
