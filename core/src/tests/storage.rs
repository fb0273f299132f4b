use super::kit::*;
use crate::{
    Access, BatchId, ChannelId, Config, ImportOutcome, Message, Msg, Pattern, Payload, Reply, Rules,
};

fn store_request_count(cmds: &[crate::Cmd], ch: u64) -> usize {
    messages(cmds, ch)
        .iter()
        .filter(|m| matches!(m, Message::SyncRequest { .. }))
        .count()
}

#[test]
fn unknown_doc_waits_for_every_store_then_answers_all_queued_requesters() {
    let mut k = Kit::hub();
    k.store(10);
    k.store(11);
    k.peer(1, "alice");
    k.peer(2, "bob");
    let cmds = k.recv(
        1,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: true,
        },
    );
    assert_eq!(
        store_request_count(&cmds, 10) + store_request_count(&cmds, 11),
        2
    );
    assert!(sent(&cmds, 1).is_empty(), "answered before storage");
    assert!(sent(
        &k.recv(
            2,
            Message::SyncRequest {
                doc: doc("d"),
                version: vv(&[]),
                bidirectional: false
            }
        ),
        2
    )
    .is_empty());
    let cmds = k.recv(
        10,
        Message::SyncResponse {
            doc: doc("d"),
            batch: BatchId(0),
            reply: Reply::Snapshot(Payload::new(vec![1])),
            version: vv(&[(5, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    assert!(sent(
        &k.feed(Msg::Imported {
            id,
            outcome: ImportOutcome::Applied {
                version: vv(&[(5, 1)])
            }
        }),
        1
    )
    .is_empty());
    let cmds = k.recv(
        11,
        Message::SyncResponse {
            doc: doc("d"),
            batch: BatchId(0),
            reply: Reply::Unavailable,
            version: vv(&[]),
        },
    );
    assert_eq!(data(&cmds, 1).len(), 1);
    assert_eq!(data(&cmds, 2).len(), 1);
    // Only the bidirectional requester is asked back.
    assert_eq!(
        messages(&cmds, 1)
            .iter()
            .filter(|m| matches!(
                m,
                Message::SyncRequest {
                    bidirectional: false,
                    ..
                }
            ))
            .count(),
        1
    );
    assert!(!messages(&cmds, 2)
        .iter()
        .any(|m| matches!(m, Message::SyncRequest { .. })));
}

#[test]
fn a_removed_store_counts_as_answered_and_a_removed_requester_is_dropped() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.recv(
        1,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    k.recv(
        2,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    k.feed(Msg::ChannelRemoved {
        channel: ChannelId(2),
    });
    let cmds = k.feed(Msg::ChannelRemoved {
        channel: ChannelId(10),
    });
    assert!(
        !sent(&cmds, 1).is_empty(),
        "alice answered once the store was gone"
    );
    assert!(sent(&cmds, 2).is_empty());
}

#[test]
fn without_a_store_an_unknown_doc_is_created_and_answered_at_once() {
    let mut k = Kit::hub();
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    assert!(matches!(
        messages(&cmds, 1)[..],
        [Message::SyncResponse {
            reply: Reply::UpToDate,
            ..
        }]
    ));
    assert!(k.model.doc_version(&doc("d")).is_some());
}

#[test]
fn creation_denied_creates_nothing() {
    let mut c = Config::new("hub");
    c.rules = Rules::allow_all().with(
        Pattern::Any,
        Pattern::Any,
        Access {
            create: false,
            ..Access::ALL
        },
    );
    let mut k = Kit::new(c);
    k.store(10);
    k.peer(1, "alice");
    k.recv(
        1,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    let cmds = k.recv(
        10,
        Message::SyncResponse {
            doc: doc("d"),
            batch: BatchId(0),
            reply: Reply::Unavailable,
            version: vv(&[]),
        },
    );
    assert!(matches!(
        messages(&cmds, 1)[..],
        [Message::SyncResponse {
            reply: Reply::Unavailable,
            ..
        }]
    ));
    assert!(k.model.doc_version(&doc("d")).is_none());
}

#[test]
fn a_store_that_never_answers_times_out() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.recv(
        1,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: false,
        },
    );
    let cmds = k.feed(Msg::Tick { now: 60_000 });
    assert!(!sent(&cmds, 1).is_empty());
}
