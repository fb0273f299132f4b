//! Poison Loro data against the real `docweave serve`: a 173-byte update
//! that once aborted the whole process (Loro 1.17.1 imported it and then
//! panicked in `OpLog::get_greatest_timestamp`, and again in a destructor).
//! Sent over every transport it is refused for its sender alone; stored by
//! an older version it does not stop a server from starting and serving.

mod common;

use common::raw::*;
use common::{cli, data_dir, free_port, Server};
use docweave_adapters::{loro_protocol, Append, SqliteStore, Store};
use docweave_core::{
    decode, encode, AckStatus, BatchId, DocId, Limits, Message, Payload, VersionVector,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const POISON: &[u8] = include_bytes!("../../../fixtures/poison/loro-update-oplog-1571.bin");

fn poison_update(doc: &str, batch: u64) -> Message {
    Message::Update {
        doc: DocId::new(doc),
        batch: BatchId(batch),
        data: Payload::new(POISON.to_vec()),
        version: VersionVector::from_entries([(42, 12)]),
    }
}

fn acked(ms: &[Message], batch: u64) -> Option<AckStatus> {
    ms.iter().find_map(|m| match m {
        Message::Ack {
            batch: b, status, ..
        } if *b == BatchId(batch) => Some(*status),
        _ => None,
    })
}

fn get(server: &Server, doc: &str) -> String {
    let (ok, out, err) = cli(&["doc", "get", &format!("ws://127.0.0.1:{}", server.ws), doc]);
    assert!(ok, "doc get {doc}: {err}");
    out
}

fn put(server: &Server, doc: &str, value: &str) {
    let url = format!("ws://127.0.0.1:{}", server.ws);
    let (ok, _, err) = cli(&["doc", "put", &url, doc, "k", value]);
    assert!(ok, "doc put {doc}: {err}");
}

/// Frames read from a plain TCP connection until `done` holds of what came
/// or `within` passes.
fn tcp_until(
    s: &mut TcpStream,
    within: Duration,
    done: impl Fn(&[Message]) -> bool,
) -> Vec<Message> {
    let deadline = Instant::now() + within;
    let (mut buf, mut got) = (Vec::new(), Vec::new());
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    while Instant::now() < deadline && !done(&got) {
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        while buf.len() >= 6 {
            let len = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
            if buf.len() < 6 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..6 + len).collect();
            got.extend(decode(&frame, &Limits::default()).unwrap());
        }
    }
    got
}

/// One HTTP polling exchange: the body sent, the session it opened or
/// used, and the frames that came back.
fn http_sync(port: u16, session: Option<&str>, body: &[u8]) -> (Option<String>, Vec<Message>) {
    let path = session.map_or("/sync".to_string(), |s| format!("/sync?session={s}"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let answer = post_on(&mut s, &path, body);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(answer.len());
    let headers = String::from_utf8_lossy(&answer[..split]).to_string();
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    let session = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-docweave-session: "))
        .map(|v| v.trim().to_string());
    let mut body = &answer[split..];
    let mut got = Vec::new();
    while body.len() >= 6 {
        let len = u32::from_le_bytes([body[2], body[3], body[4], body[5]]) as usize;
        got.extend(decode(&body[..6 + len], &Limits::default()).unwrap());
        body = &body[6 + len..];
    }
    (session, got)
}

#[test]
fn the_poison_update_is_refused_on_every_transport_and_the_server_serves_on() {
    let tcp = free_port();
    let server = Server::start(
        "server",
        &data_dir("poison-transports"),
        free_port(),
        free_port(),
        &["--tcp", &format!("127.0.0.1:{tcp}")],
    );
    put(&server, "target", "before");
    let wait = Duration::from_secs(10);

    // Native WebSocket.
    smol::block_on(async {
        let mut ws = raw_ws(server.ws).await;
        send(
            &mut ws,
            &[hello("mallory-ws", None), poison_update("target", 1)],
        )
        .await;
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while acked(&got, 1).is_none() && Instant::now() < deadline {
            got.extend(receive(&mut ws, Duration::from_millis(200)).await.0);
        }
        assert_eq!(acked(&got, 1), Some(AckStatus::Invalid), "{got:?}");
    });

    // The Loro Syncing Protocol.
    smol::block_on(async {
        use loro_protocol::{Body, Crdt, UpdateStatus};
        let mut ws = loro_join(server.ws, "target").await;
        let update = Body::DocUpdate {
            updates: vec![POISON.to_vec()],
            batch: [9; 8],
        };
        let _ = ws.send(loro(Crdt::Loro, "target", update)).await;
        let (got, _, closed) = loro_until(
            &mut ws,
            wait,
            |m| matches!(&m.body, Body::Ack { batch, .. } if *batch == [9; 8]),
        )
        .await;
        assert!(!closed);
        assert!(
            matches!(
                got.last().map(|m| &m.body),
                Some(Body::Ack {
                    status: UpdateStatus::InvalidUpdate,
                    ..
                })
            ),
            "{got:?}"
        );
    });

    // HTTP polling.
    let frame = encode(&[hello("mallory-http", None), poison_update("target", 2)]).unwrap();
    let (session, mut got) = http_sync(server.http, None, &frame);
    let session = session.expect("a session id");
    let deadline = Instant::now() + wait;
    while acked(&got, 2).is_none() && Instant::now() < deadline {
        got.extend(http_sync(server.http, Some(&session), &[]).1);
    }
    assert_eq!(acked(&got, 2), Some(AckStatus::Invalid), "{got:?}");

    // Plain TCP.
    let mut s = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    s.write_all(&encode(&[hello("mallory-tcp", None), poison_update("target", 3)]).unwrap())
        .unwrap();
    let got = tcp_until(&mut s, wait, |ms| acked(ms, 3).is_some());
    assert_eq!(acked(&got, 3), Some(AckStatus::Invalid), "{got:?}");

    // The document is as it was, and everyone else is served.
    let mut server = server;
    assert!(server.alive(), "the server died");
    assert!(get(&server, "target").contains("\"before\""));
    assert!(well_behaved(&server, "after-poison", None));
}

/// Writes the poison as a stored change of `doc` (after a good one, if
/// `after_good`), as a version without the fix could have stored it.
fn store_poison(store: &mut dyn Store, docs: &[&str]) {
    let appends: Vec<Append> = docs
        .iter()
        .map(|d| Append {
            doc: DocId::new(d),
            meta: Default::default(),
            data: POISON.to_vec(),
            version: VersionVector::from_entries([(42, 12)]),
            authors: Vec::new(),
        })
        .collect();
    store.append(&appends).unwrap();
}

/// A server starting on a store that holds the poison serves the rest of
/// the poisoned document, and every other one.
fn starts_and_serves_past_stored_poison(server: &mut Server, write: impl FnOnce()) {
    put(server, "healthy", "fine");
    put(server, "poisoned", "kept");
    server.kill9();
    write();
    let extra: Vec<String> = server.extra.clone();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    *server = Server::start(
        &server.name.clone(),
        &server.data.clone(),
        server.ws,
        server.http,
        &extra,
    );
    assert!(get(server, "healthy").contains("\"fine\""));
    assert!(get(server, "poisoned").contains("\"kept\""));
    // A document that holds nothing else.
    let (_, out, _) = cli(&[
        "doc",
        "get",
        &format!("ws://127.0.0.1:{}", server.ws),
        "only-poison",
    ]);
    assert!(!out.contains("hello world"), "{out}");
    assert!(server.alive(), "the server died on stored poison");
    assert!(well_behaved(server, "after-stored-poison", None));
}

#[test]
fn poison_stored_in_sqlite_does_not_stop_a_server() {
    let data = data_dir("poison-sqlite");
    let mut server = Server::start("server", &data, free_port(), free_port(), &[]);
    let db = data.join("docweave.db");
    starts_and_serves_past_stored_poison(&mut server, || {
        let mut store = SqliteStore::open(&db).unwrap();
        store_poison(&mut store, &["poisoned", "only-poison"]);
    });
}

#[test]
fn poison_stored_in_postgres_does_not_stop_a_server() {
    let url = docweave_tests::postgres::fresh_database("poison_stored");
    let mut server = Server::start(
        "server",
        &data_dir("poison-postgres"),
        free_port(),
        free_port(),
        &["--store", &url],
    );
    starts_and_serves_past_stored_poison(&mut server, || {
        let mut store = docweave_adapters::PostgresStore::open(&url).unwrap();
        store_poison(&mut store, &["poisoned", "only-poison"]);
    });
}
