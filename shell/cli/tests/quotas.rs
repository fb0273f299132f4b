//! The operator's quotas on the real binary: updates per second per
//! connection and connections per identity. A client past one gets the
//! protocol's answer and keeps its connection; other clients go on; the
//! metrics count the refusals.

mod common;

use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{AckStatus as LoroAck, Body, Crdt};
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
        let statuses: Vec<LoroAck> = got
            .iter()
            .filter_map(|m| match m.body {
                Body::Ack { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        assert!(
            statuses.contains(&LoroAck::Ok) && statuses.contains(&LoroAck::RateLimited),
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
