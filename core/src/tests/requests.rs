//! Request channels: one HTTP call's link, which says hello as a bot (see
//! `handlers::common::is_request_channel`). What it asks is answered on it
//! alone and nothing of it is recorded as its identity's, which belongs to
//! the identity's live connections.

use super::kit::*;
use crate::{
    AckStatus, BatchId, DocMeta, Hello, ImportOutcome, Message, Msg, Payload, PeerId, PeerKind,
    Reply, PROTOCOL_VERSION,
};

/// A hub holding `notes` at {9:2}, alice's live connection on channel 1
/// following it, and a request of alice's on channel 5.
fn hub_with_alice_live_and_requesting() -> Kit {
    let mut k = Kit::hub();
    k.feed(Msg::OpenDoc {
        doc: doc("notes"),
        meta: DocMeta::default(),
    });
    k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 2)]),
    });
    k.peer(1, "alice");
    k.recv(
        1,
        Message::SyncRequest {
            doc: doc("notes"),
            version: vv(&[(9, 2)]),
            bidirectional: false,
        },
    );
    k.greet(
        5,
        Message::Hello(Hello {
            peer: PeerId::new("alice"),
            name: String::new(),
            kind: PeerKind::Bot,
            protocol: PROTOCOL_VERSION,
            token: None,
            clock: Default::default(),
        }),
    );
    k
}

#[test]
fn a_requests_read_is_answered_on_its_channel_and_records_nothing_of_its_identity() {
    let mut k = hub_with_alice_live_and_requesting();
    let before = k.model.peers.get(&PeerId::new("alice")).cloned();
    let cmds = k.recv(
        5,
        Message::SyncRequest {
            doc: doc("notes"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    let sent = data(&cmds, 5);
    assert!(matches!(sent[..], [(_, None, false)]), "{cmds:?}");
    k.recv(
        5,
        Message::Ack {
            batch: sent[0].0,
            status: AckStatus::Ok,
            clock: None,
        },
    );
    assert_eq!(
        k.model.peers.get(&PeerId::new("alice")).cloned(),
        before,
        "the identity's state changed"
    );
    // Up to date: said so, with the version.
    let cmds = k.recv(
        5,
        Message::SyncRequest {
            doc: doc("notes"),
            version: vv(&[(9, 2)]),
            bidirectional: false,
        },
    );
    assert!(matches!(
        messages(&cmds, 5)[..],
        [Message::SyncResponse {
            reply: Reply::UpToDate,
            ..
        }]
    ));
}

#[test]
fn a_requests_write_reaches_its_identitys_live_connection() {
    let mut k = hub_with_alice_live_and_requesting();
    let cmds = k.recv(
        5,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(1),
            data: Payload::new(vec![1]),
            version: vv(&[(7, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(9, 2), (7, 1)]),
        },
    });
    // Alice's open editor gets the backend's change; the request gets no
    // data, only its acknowledgement (no store: at once).
    assert_eq!(data(&cmds, 1).len(), 1, "{cmds:?}");
    assert!(data(&cmds, 5).is_empty(), "{cmds:?}");
    assert!(messages(&cmds, 5).iter().any(|m| matches!(
        m,
        Message::Ack {
            batch: BatchId(1),
            status: AckStatus::Ok,
            ..
        }
    )));
}

#[test]
fn a_requests_write_reaches_its_identity_even_when_the_request_left_before_the_import_ended() {
    let mut k = hub_with_alice_live_and_requesting();
    let cmds = k.recv(
        5,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(1),
            data: Payload::new(vec![1]),
            version: vv(&[(7, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    k.feed(Msg::ChannelRemoved {
        channel: crate::ChannelId(5),
    });
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(9, 2), (7, 1)]),
        },
    });
    assert_eq!(data(&cmds, 1).len(), 1, "{cmds:?}");
}

#[test]
fn nothing_of_the_identitys_goes_to_its_requests_when_it_has_no_live_connection() {
    let mut k = hub_with_alice_live_and_requesting();
    // Alice's live connection leaves; she is remembered, still following.
    k.feed(Msg::ChannelRemoved {
        channel: crate::ChannelId(1),
    });
    k.peer(2, "bob");
    let cmds = k.recv(
        2,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(1),
            data: Payload::new(vec![1]),
            version: vv(&[(8, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(9, 2), (8, 1)]),
        },
    });
    assert!(data(&cmds, 5).is_empty(), "{cmds:?}");
}
