//! Presence fan-out against the real binary: 200 Loro clients in one `%EPS`
//! room, each setting 60 KB of presence. Every change goes to every other
//! member, so before the room bound this made the server deliver 2.39 GB
//! (2.6 GB RSS). Now a room holds at most 256 KiB of presence (an entry
//! that would pass it is dropped) and a member's changes are relayed at
//! most twice per 50 ms window, so what one round of changes costs is at
//! most `members x 256 KiB`.

mod common;

use common::raw::*;
use common::{data_dir, free_port, Server};
use docweave_adapters::loro_protocol::{Body, Crdt};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const MEMBERS: usize = 200;
const STATE: usize = 60_000;
const ROOM_BYTES: u64 = 256 * 1024;

/// Bytes a member receives until nothing came for `quiet`.
async fn read_until_quiet(ws: &mut Socket, quiet: Duration) -> u64 {
    let mut bytes = 0u64;
    loop {
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            smol::Timer::after(quiet).await;
            None
        })
        .await;
        match next {
            Some(Some(Ok(m))) => bytes += m.len() as u64,
            _ => return bytes,
        }
    }
}

#[test]
fn two_hundred_members_with_sixty_kilobytes_of_presence_each_cost_what_the_room_bound_allows() {
    let server = Server::start(
        "server",
        &data_dir("presence-fanout"),
        free_port(),
        free_port(),
        &[],
    );
    assert!(well_behaved(&server, "other", None));
    let rss_before = server.rss();
    let port = server.ws;
    let members: Vec<Socket> = smol::block_on(async {
        let mut members = Vec::new();
        for _ in 0..MEMBERS {
            let mut ws = raw_ws_at(port, "/loro").await;
            let join = Body::JoinRequest {
                auth: Vec::new(),
                version: Vec::new(),
            };
            ws.send(loro(Crdt::EphemeralPersisted, "pad", join))
                .await
                .unwrap();
            let (got, _, closed) = loro_until(&mut ws, Duration::from_secs(30), |m| {
                matches!(m.body, Body::JoinResponseOk { .. } | Body::JoinError { .. })
            })
            .await;
            assert!(
                !closed
                    && matches!(
                        got.last().map(|m| &m.body),
                        Some(Body::JoinResponseOk { .. })
                    ),
                "join: {got:?}"
            );
            members.push(ws);
        }
        members
    });

    // A good client writes and reads another document throughout.
    let good = GoodClient::start(&server, "other");

    let started = Instant::now();
    let received: Vec<u64> = smol::block_on(async {
        let tasks: Vec<_> = members
            .into_iter()
            .enumerate()
            .map(|(i, mut ws)| {
                smol::spawn(async move {
                    let store = loro::awareness::EphemeralStore::new(300_000);
                    store.set(&format!("member-{i}"), "x".repeat(STATE));
                    let update = Body::DocUpdate {
                        updates: vec![store.encode_all()],
                        batch: [1, 0, 0, 0, 0, 0, 0, i as u8],
                    };
                    ws.send(loro(Crdt::EphemeralPersisted, "pad", update))
                        .await
                        .unwrap();
                    read_until_quiet(&mut ws, Duration::from_secs(3)).await
                })
            })
            .collect();
        let mut received = Vec::new();
        for t in tasks {
            received.push(t.await);
        }
        received
    });
    let took = started.elapsed();
    let (slowest, rounds) = good.stop();
    let delivered: u64 = received.iter().sum();
    let sent = (MEMBERS * STATE) as u64;
    let peak = server.peak_rss();
    eprintln!(
        "{MEMBERS} members sent {sent} bytes of presence; the server delivered {delivered} bytes \
         (most to one member {}) in {took:?}; RSS {} -> {} MiB (peak {} MiB); a good client's \
         slowest put and get {slowest:?} over {rounds} rounds",
        received.iter().max().unwrap_or(&0),
        rss_before >> 20,
        server.rss() >> 20,
        peak >> 20
    );
    // Each member receives at most the room's bound (and acknowledgements):
    // before, each received every other member's 60 KB, 12 MB each.
    let most = received.iter().copied().max().unwrap_or(0);
    assert!(most <= 2 * ROOM_BYTES, "one member received {most} bytes");
    assert!(
        delivered <= MEMBERS as u64 * 2 * ROOM_BYTES,
        "delivered {delivered} bytes"
    );
    // Some presence did go through: the room is bounded, not shut.
    assert!(
        delivered >= (MEMBERS as u64 - 5) * STATE as u64,
        "delivered {delivered}"
    );
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
    assert!(
        slowest < Duration::from_secs(30),
        "a good client waited {slowest:?}"
    );
}
