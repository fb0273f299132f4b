//! The first input after a quiet spell is judged by the time it arrives
//! with, not by the last tick: regression tests for a server that refused
//! the next client after 15 s of silence.

use super::kit::*;
use crate::{
    BatchId, ChannelId, Cmd, Ephemeral, ImportOutcome, Message, Msg, Namespace, Payload, PeerId,
};

const QUIET: u64 = 60_000;

fn closes_any(cmds: &[Cmd]) -> bool {
    cmds.iter().any(|c| matches!(c, Cmd::Close { .. }))
}

#[test]
fn after_a_minute_of_quiet_a_new_connection_completes_its_handshake() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "early");
    // A minute passes with no input at all; then a client connects.
    k.now = QUIET;
    k.accept(2);
    // The sweep that runs a few seconds later must not find it "ten seconds old".
    let cmds = k.tick(QUIET + 5_000);
    assert!(!closes(&cmds, 2), "closed a connection opened 5 s ago");
    let cmds = k.recv(2, hello("late"));
    assert!(messages(&cmds, 2)
        .iter()
        .any(|m| matches!(m, Message::Welcome(_))));
    assert!(!closes_any(&k.tick(QUIET + 9_000)));
}

#[test]
fn a_send_after_a_quiet_spell_is_not_resent_and_reaches_the_store_once() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    let created = k.create(&[10], "d");
    k.follow(1, "d");
    let (first, _, _) = data(&created, 10)[0].clone();
    k.recv(
        10,
        Message::Ack {
            batch: first,
            status: crate::AckStatus::Ok,
            clock: Some(crate::Clock(1)),
        },
    );
    k.tick(1_000);
    k.now = QUIET;
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: BatchId(3),
            data: Payload::new(vec![1]),
            version: vv(&[(1, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(1, 1)]),
        },
    });
    assert_eq!(data(&cmds, 10).len(), 1);
    // The sweep after the quiet spell must not think the write timed out.
    let cmds = k.tick(QUIET + 6_000);
    assert!(
        data(&cmds, 10).is_empty(),
        "the write was sent to the store twice"
    );
}

#[test]
fn relayed_presence_lives_its_full_ttl_after_a_quiet_spell() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.create(&[], "d");
    for ch in [1, 2] {
        k.follow(ch, "d");
    }
    k.now = QUIET;
    k.recv(
        1,
        Message::Ephemeral(Ephemeral {
            doc: doc("d"),
            namespace: Namespace::new("cursor"),
            origin: PeerId::new("alice"),
            hops: 1,
            ttl_ms: 1_000,
            data: Payload::new(vec![7]),
        }),
    );
    k.tick(QUIET + 999);
    assert_eq!(k.model.presence().len(), 1, "expired before its TTL");
    k.tick(QUIET + 1_000);
    assert!(k.model.presence().is_empty(), "outlived its TTL");
}

#[test]
fn the_first_reconnect_after_a_quiet_spell_waits_its_full_backoff() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.dial(1, "hub", "hub");
    k.now = QUIET;
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(1),
    });
    let dials = |cmds: Vec<Cmd>| cmds.iter().any(|c| matches!(c, Cmd::Dial { .. }));
    assert!(
        !dials(k.tick(QUIET + 249)),
        "redialed before half the base backoff"
    );
    assert!(
        dials(k.tick(QUIET + 500)),
        "not redialed within the base backoff"
    );
}
