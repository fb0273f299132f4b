//! The operator's quotas on the real binary: updates per second per
//! connection and connections per identity. A client past one gets the
//! protocol's answer and keeps its connection; other clients go on; the
//! metrics count the refusals. Only servers the operator chose replicate
//! unlimited, not a client that says it is one.

mod common;

use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{Body, Crdt, UpdateStatus};
use docweave_core::{AckStatus, BatchId, DocId, ErrorCode, Message, Payload, VersionVector};
use std::time::Duration;

fn update(batch: u64) -> Message {
    let doc = loro::LoroDoc::new();
    doc.get_map("root")
        .insert(&format!("k{batch}"), "v")
        .unwrap();
    doc.commit();
    Message::Update {
        doc: DocId::new("limited"),
        batch: BatchId(batch),
        data: Payload::new(doc.export(loro::ExportMode::all_updates()).unwrap()),
        version: VersionVector::new(),
    }
}

fn acks(ms: &[Message], status: AckStatus) -> usize {
    ms.iter()
        .filter(|m| matches!(m, Message::Ack { status: s, .. } if *s == status))
        .count()
}

#[test]
fn clients_past_their_quotas_are_answered_keep_their_connections_and_others_go_on() {
    let server = Server::start(
        "server",
        &data_dir("quotas"),
        free_port(),
        free_port(),
        &[
            "--max-updates-per-s",
            "5",
            "--max-connections-per-identity",
            "2",
        ],
    );
    let wait = Duration::from_secs(10);
    smol::block_on(async {
        // Twenty updates at once: five go, the rest are refused.
        let mut c = raw_ws(server.ws).await;
        let mut frame = vec![hello("alice", None)];
        frame.extend((1..=20).map(update));
        send(&mut c, &frame).await;
        let (got, closed) = receive_until(&mut c, wait, |ms| {
            acks(ms, AckStatus::Ok) + acks(ms, AckStatus::RateLimited) >= 20
        })
        .await;
        let (ok, limited) = (
            acks(&got, AckStatus::Ok),
            acks(&got, AckStatus::RateLimited),
        );
        assert!(!closed, "the connection was closed");
        assert!(
            (5..=6).contains(&ok) && ok + limited == 20,
            "{ok} ok, {limited} limited"
        );
        assert!(
            got.iter().any(|m| matches!(m, Message::Error { code: ErrorCode::RateLimited, message } if message.contains("retry after"))),
            "no error said when to try again: {got:?}"
        );
        // A second later the same connection writes again.
        smol::Timer::after(Duration::from_millis(1_100)).await;
        send(&mut c, &[update(21)]).await;
        let (got, _) = receive_until(&mut c, wait, |ms| acks(ms, AckStatus::Ok) > 0).await;
        assert_eq!(acks(&got, AckStatus::Ok), 1, "{got:?}");
        // An identity that may hold several connections at once (a bot,
        // say; a user's newer connection replaces its older one): two are
        // welcome, a third is not.
        let bot = || {
            let Message::Hello(mut h) = hello("robot", None) else {
                unreachable!()
            };
            h.kind = docweave_core::PeerKind::Bot;
            Message::Hello(h)
        };
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = raw_ws(server.ws).await;
            send(&mut s, &[bot()]).await;
            let (got, _) = receive_until(&mut s, wait, |ms| !ms.is_empty()).await;
            assert!(matches!(got.first(), Some(Message::Welcome(_))), "{got:?}");
            held.push(s);
        }
        let mut third = raw_ws(server.ws).await;
        send(&mut third, &[bot()]).await;
        let (got, closed) = receive(&mut third, Duration::from_secs(3)).await;
        assert!(
            closed && has_error(&got, ErrorCode::RateLimited),
            "a third connection of robot: {got:?}"
        );
        // A Loro client sending updates faster than its quota.
        let mut l = raw_ws_at(server.ws, "/loro").await;
        let join = Body::JoinRequest {
            auth: Vec::new(),
            version: Vec::new(),
        };
        futures_util::SinkExt::send(&mut l, loro(Crdt::Loro, "limited", join))
            .await
            .unwrap();
        loro_until(&mut l, wait, |m| {
            matches!(m.body, Body::JoinResponseOk { .. })
        })
        .await;
        for i in 0..10u8 {
            let Message::Update { data, .. } = update(100 + u64::from(i)) else {
                unreachable!()
            };
            let body = Body::DocUpdate {
                updates: vec![data.as_bytes().to_vec()],
                batch: [i; 8],
            };
            futures_util::SinkExt::send(&mut l, loro(Crdt::Loro, "limited", body))
                .await
                .unwrap();
        }
        let seen = std::cell::Cell::new(0);
        let (got, _, _) = loro_until(&mut l, wait, |m| {
            if matches!(m.body, Body::Ack { .. }) {
                seen.set(seen.get() + 1);
            }
            seen.get() >= 10
        })
        .await;
        let statuses: Vec<UpdateStatus> = got
            .iter()
            .filter_map(|m| match m.body {
                Body::Ack { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        assert!(
            statuses.contains(&UpdateStatus::Ok) && statuses.contains(&UpdateStatus::RateLimited),
            "the Loro client's acks: {statuses:?}"
        );
    });
    // Another client is not slowed by alice's quota.
    assert!(well_behaved(&server, "other", None));
    let metrics = http_raw(
        server.http,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("docweave_refusals_total{code=\"RateLimited\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 14.0, "refusals counted: {refused}");
}

/// A Loro update to `doc` carrying about `size` bytes that do not compress.
fn sized_update(doc: &str, batch: u64, size: usize) -> Message {
    let mut x = batch.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let text: String = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let d = loro::LoroDoc::new();
    d.get_text("t").insert(0, &text).unwrap();
    d.commit();
    Message::Update {
        doc: DocId::new(doc),
        batch: BatchId(batch),
        data: Payload::new(d.export(loro::ExportMode::all_updates()).unwrap()),
        version: VersionVector::new(),
    }
}

/// The acknowledgement of `batch` and the errors that came with it.
async fn answer_to(c: &mut Socket, m: Message) -> (Option<AckStatus>, Vec<Message>) {
    let Message::Update { batch, .. } = &m else {
        unreachable!()
    };
    let batch = *batch;
    send(c, &[m]).await;
    let is_ack = move |m: &Message| matches!(m, Message::Ack { batch: b, .. } if *b == batch);
    let (got, _) = receive_until(c, Duration::from_secs(10), |ms| ms.iter().any(is_ack)).await;
    let status = got.iter().find_map(|m| match m {
        Message::Ack {
            batch: b, status, ..
        } if *b == batch => Some(*status),
        _ => None,
    });
    (status, got)
}

#[test]
fn a_rules_file_sets_the_largest_document_and_documents_per_hour_and_reloads() {
    let dir = data_dir("quotas-rules");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    let with_quotas = r#"{"rules": [], "default": {"read": true, "write": true, "create": true, "delete": true},
        "quotas": {"max_doc_bytes": 4000, "docs_created_per_hour": 2, "max_update_bytes": 3500}}"#;
    std::fs::write(&rules, with_quotas).unwrap();
    let server = Server::start(
        "server",
        &dir.join("data"),
        free_port(),
        free_port(),
        &["--rules", rules.to_str().unwrap()],
    );
    smol::block_on(async {
        let mut c = raw_ws(server.ws).await;
        send(&mut c, &[hello("alice", None)]).await;
        receive_until(&mut c, Duration::from_secs(10), |ms| !ms.is_empty()).await;
        // The largest document: 3 KB fits in 4,000 bytes, 3 KB more does not.
        let (status, _) = answer_to(&mut c, sized_update("big", 1, 3_000)).await;
        assert_eq!(status, Some(AckStatus::Ok));
        let (status, got) = answer_to(&mut c, sized_update("big", 2, 3_000)).await;
        assert_eq!(status, Some(AckStatus::TooLarge), "{got:?}");
        assert!(
            got.iter().any(|m| matches!(m, Message::Error { code: ErrorCode::TooLarge, message } if message.contains("largest document"))),
            "{got:?}"
        );
        // The largest update: 4 KB is refused whatever the document.
        let (status, got) = answer_to(&mut c, sized_update("big", 20, 4_000)).await;
        assert_eq!(status, Some(AckStatus::TooLarge), "{got:?}");
        assert!(
            got.iter().any(|m| matches!(m, Message::Error { code: ErrorCode::TooLarge, message } if message.contains("largest allowed"))),
            "{got:?}"
        );
        // Documents per hour: "big" was the first, "second" the last.
        let (status, _) = answer_to(&mut c, sized_update("second", 3, 10)).await;
        assert_eq!(status, Some(AckStatus::Ok));
        let (status, got) = answer_to(&mut c, sized_update("third", 4, 10)).await;
        assert_eq!(status, Some(AckStatus::RateLimited), "{got:?}");
        // A Loro client's update past the largest document.
        let mut l = raw_ws_at(server.ws, "/loro").await;
        let join = Body::JoinRequest {
            auth: Vec::new(),
            version: Vec::new(),
        };
        futures_util::SinkExt::send(&mut l, loro(Crdt::Loro, "big", join))
            .await
            .unwrap();
        loro_until(&mut l, Duration::from_secs(10), |m| {
            matches!(m.body, Body::JoinResponseOk { .. })
        })
        .await;
        let Message::Update { data, .. } = sized_update("big", 5, 3_000) else {
            unreachable!()
        };
        let body = Body::DocUpdate {
            updates: vec![data.as_bytes().to_vec()],
            batch: [5; 8],
        };
        futures_util::SinkExt::send(&mut l, loro(Crdt::Loro, "big", body))
            .await
            .unwrap();
        let (got, _, _) = loro_until(&mut l, Duration::from_secs(10), |m| {
            matches!(m.body, Body::Ack { .. })
        })
        .await;
        assert!(
            got.iter().any(|m| matches!(
                m.body,
                Body::Ack {
                    status: UpdateStatus::PayloadTooLarge,
                    ..
                }
            )),
            "{got:?}"
        );
        // Without quotas in the file, the flags' (none) are back.
        std::fs::write(&rules, r#"{"rules": [], "default": {"read": true, "write": true, "create": true, "delete": true}}"#).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut batch = 10;
        loop {
            batch += 1;
            let (status, _) = answer_to(&mut c, sized_update("third", batch, 10)).await;
            if status == Some(AckStatus::Ok) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the quotas stayed");
            smol::Timer::after(Duration::from_millis(200)).await;
        }
    });
}

/// Acks of twenty updates sent at once by a client saying `hello` as `peer`
/// of kind `service` (what a server says of itself).
async fn burst_as_service(ws: u16, peer: &str) -> (usize, usize) {
    let Message::Hello(mut h) = hello(peer, None) else {
        unreachable!()
    };
    h.kind = docweave_core::PeerKind::Service;
    let mut c = raw_ws(ws).await;
    let mut frame = vec![Message::Hello(h)];
    frame.extend((1..=20).map(update));
    send(&mut c, &frame).await;
    let (got, _) = receive_until(&mut c, Duration::from_secs(10), |ms| {
        acks(ms, AckStatus::Ok) + acks(ms, AckStatus::RateLimited) >= 20
    })
    .await;
    (
        acks(&got, AckStatus::Ok),
        acks(&got, AckStatus::RateLimited),
    )
}

#[test]
fn a_client_calling_itself_a_server_is_limited_and_a_relay_the_operator_named_is_not() {
    let server = Server::start(
        "server",
        &data_dir("quotas-service"),
        free_port(),
        free_port(),
        &["--max-updates-per-s", "5", "--relay", "edge-*"],
    );
    smol::block_on(async {
        let (ok, limited) = burst_as_service(server.ws, "mallory").await;
        assert!(
            (5..=6).contains(&ok) && ok + limited == 20,
            "a self-declared server: {ok} ok, {limited} limited"
        );
        let (ok, limited) = burst_as_service(server.ws, "edge-1").await;
        assert_eq!((ok, limited), (20, 0), "a relay the operator named");
    });
}
