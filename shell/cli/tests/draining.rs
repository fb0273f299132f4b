//! `docweave serve` drains on SIGTERM: a client is told `going-away` and
//! may still write; new connections and polling sessions are refused;
//! `/readyz` says it drains while `/healthz` and `/metrics` answer; and
//! the server exits when the drain time is up, closing with 1001.

mod common;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message as Ws;
use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_core::{BatchId, DocId, Message, Payload, VersionVector};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

fn update(batch: u64, key: &str) -> Message {
    let doc = loro::LoroDoc::new();
    doc.get_map("root").insert(key, "v").unwrap();
    doc.commit();
    Message::Update {
        doc: DocId::new("notes"),
        batch: BatchId(batch),
        data: Payload::new(doc.export(loro::ExportMode::all_updates()).unwrap()),
        version: VersionVector::new(),
    }
}

fn status_line(port: u16, request: &str) -> String {
    http_raw(port, request, Duration::from_secs(5))
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

#[test]
fn a_draining_server_tells_its_clients_refuses_new_ones_and_stops_when_the_time_is_up() {
    let mut server = Server::start(
        "server",
        &data_dir("draining"),
        free_port(),
        free_port(),
        &["--drain-seconds", "3"],
    );
    let acked = |ms: &[Message], b: u64| {
        ms.iter()
            .any(|m| matches!(m, Message::Ack { batch, .. } if *batch == BatchId(b)))
    };
    // A client that stays however it is told (as an old one would).
    let mut client = smol::block_on(async {
        let mut c = raw_ws(server.ws).await;
        send(&mut c, &[hello("stayer", None), update(1, "before")]).await;
        let (got, _) = receive_until(&mut c, Duration::from_secs(10), |ms| acked(ms, 1)).await;
        assert!(acked(&got, 1), "{got:?}");
        c
    });
    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    smol::block_on(async {
        let (got, _) = receive_until(&mut client, Duration::from_secs(5), |ms| {
            ms.iter().any(|m| matches!(m, Message::GoingAway { .. }))
        })
        .await;
        assert!(
            got.iter().any(|m| matches!(m, Message::GoingAway { .. })),
            "the client was not told the server is going away: {got:?}"
        );
        // What it still sends is taken and acknowledged.
        send(&mut client, &[update(2, "during")]).await;
        let (got, _) = receive_until(&mut client, Duration::from_secs(5), |ms| acked(ms, 2)).await;
        assert!(acked(&got, 2), "a write during the drain: {got:?}");
    });
    // Meanwhile: not ready, but alive and measured; no new client.
    let ready = status_line(server.http, &get("/readyz"));
    assert!(ready.contains("503"), "/readyz while draining: {ready}");
    assert!(status_line(server.http, &get("/healthz")).contains("200"));
    assert!(status_line(server.http, &get("/metrics")).contains("200"));
    let upgrade = http_raw(
        server.ws,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        upgrade.starts_with("HTTP/1.1 503") && upgrade.contains("stopping"),
        "a new WebSocket while draining: {upgrade}"
    );
    let session = http_raw(
        server.http,
        "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        session.starts_with("HTTP/1.1 503") && session.to_lowercase().contains("retry-after"),
        "a new polling session while draining: {session}"
    );
    // The client never left: the server stops when the drain time is up,
    // closing it with 1001 ("going away").
    let code = smol::block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match client.next().await {
                Some(Ok(Ws::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
        None
    });
    assert_eq!(code, Some(CloseCode::Away));
    let status = server.child.wait().unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "exit after draining: {status}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "stopped after {took:?}, the drain being 3 s"
    );
}
