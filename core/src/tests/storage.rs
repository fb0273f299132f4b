use super::kit::*;
use crate::{
    Access, BatchId, ChannelId, Config, ImportOutcome, Message, Msg, Pattern, Payload, Reply,
    Rules, StoreFailure,
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
    let cmds = k.found(10, "d", vv(&[(5, 1)]));
    assert!(
        sent(&cmds, 1).is_empty(),
        "answered before the second store"
    );
    let cmds = k.missing(11, "d");
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
    k.follow(1, "d");
    k.follow(2, "d");
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
fn reading_an_unknown_doc_creates_nothing_with_or_without_a_store() {
    let ask = Message::SyncRequest {
        doc: doc("d"),
        version: vv(&[]),
        bidirectional: true,
    };
    let mut k = Kit::hub();
    k.peer(1, "alice");
    let cmds = k.recv(1, ask.clone());
    assert!(matches!(
        messages(&cmds, 1)[..],
        [Message::SyncResponse {
            reply: Reply::Unavailable,
            ..
        }]
    ));
    assert!(k.model.doc_version(&doc("d")).is_none());
    // With a store: asked (storage-first), found missing, nothing kept or written.
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.recv(1, ask);
    let cmds = k.missing(10, "d");
    assert!(data(&cmds, 10).is_empty(), "an empty document was stored");
    assert!(matches!(
        messages(&cmds, 1)[..],
        [Message::SyncResponse {
            reply: Reply::Unavailable,
            ..
        }]
    ));
    assert!(k.model.doc_version(&doc("d")).is_none());
    assert!(k.model.subscribers(&doc("d")).is_empty());
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
    k.follow(1, "d");
    let cmds = k.missing(10, "d");
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
fn a_store_that_never_answers_is_asked_again_and_nobody_is_told_missing() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.follow(1, "d");
    let cmds = k.tick(60_000);
    assert!(sent(&cmds, 1).is_empty(), "answered without the store");
    assert_eq!(
        store_request_count(&cmds, 10),
        1,
        "the store is asked again"
    );
    let cmds = k.found(10, "d", vv(&[(5, 1)]));
    assert_eq!(data(&cmds, 1).len(), 1, "answered once the store spoke");
}

#[test]
fn a_failed_load_is_retried_and_never_answered_unavailable() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.follow(1, "d");
    let cmds = k.feed(Msg::StoreFailed {
        store: ChannelId(10),
        failure: StoreFailure::Load {
            doc: doc("d"),
            reason: "disk on fire".into(),
        },
    });
    assert!(sent(&cmds, 1).is_empty());
    assert!(events(&cmds).iter().any(
        |e| matches!(e, crate::Event::Error { reason, .. } if reason.contains("disk on fire"))
    ));
    assert!(k.model.doc_version(&doc("d")).is_none());
    let cmds = k.tick(k.now + 600);
    assert_eq!(
        store_request_count(&cmds, 10),
        1,
        "asked again after a pause"
    );
    let cmds = k.missing(10, "d");
    assert!(!sent(&cmds, 1).is_empty());
}

#[test]
fn a_failed_append_is_written_again_and_acknowledged_only_once_durable() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.create(&[10], "d");
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: BatchId(7),
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
    let (batch, _, _) = data(&cmds, 10)[0].clone();
    let cmds = k.feed(Msg::StoreFailed {
        store: ChannelId(10),
        failure: StoreFailure::Append {
            batch,
            reason: "disk full".into(),
        },
    });
    assert!(
        messages(&cmds, 1).is_empty(),
        "acknowledged what is not durable"
    );
    let cmds = k.tick(k.now + 600);
    let again = data(&cmds, 10);
    assert_eq!(again.len(), 1, "written again");
    let cmds = k.recv(
        10,
        Message::Ack {
            batch: again[0].0,
            status: crate::AckStatus::Ok,
            clock: Some(crate::Clock(3)),
        },
    );
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::Ack {
            batch: BatchId(7),
            status: crate::AckStatus::Ok,
            ..
        }
    )));
}

#[test]
fn the_feed_reloads_what_another_process_wrote_and_moves_only_past_what_was_read() {
    let mut k = feed_hub(
        0,
        vec![crate::StoredDoc {
            doc: doc("d"),
            meta: Default::default(),
            version: vv(&[(1, 1)]),
            clock: crate::Clock(4),
        }],
    );
    let cmds = k.tick(200);
    assert!(messages(&cmds, 10).contains(&Message::ChangesSince {
        clock: crate::Clock(4),
        filter: crate::Filter::all(),
    }));
    let changes = Message::Changes {
        docs: vec![crate::ChangedDoc {
            doc: doc("d"),
            version: vv(&[(1, 1), (2, 1)]),
            clock: crate::Clock(6),
        }],
        up_to: crate::Clock(6),
        more: false,
    };
    let cmds = k.recv(10, changes.clone());
    assert_eq!(
        store_request_count(&cmds, 10),
        1,
        "the changed doc is reloaded"
    );
    // The reload fails: the next read starts from the old position.
    k.feed(Msg::StoreFailed {
        store: ChannelId(10),
        failure: StoreFailure::Load {
            doc: doc("d"),
            reason: "busy".into(),
        },
    });
    let cmds = k.tick(400);
    assert!(messages(&cmds, 10).contains(&Message::ChangesSince {
        clock: crate::Clock(4),
        filter: crate::Filter::all(),
    }));
    k.recv(10, changes);
    let cmds = k.found(10, "d", vv(&[(1, 1), (2, 1)]));
    assert!(events(&cmds)
        .iter()
        .any(|e| matches!(e, crate::Event::DocChanged { .. })));
    assert_eq!(k.model.doc_clock(&doc("d")), Some(crate::Clock(6)));
    let cmds = k.tick(600);
    assert!(messages(&cmds, 10).contains(&Message::ChangesSince {
        clock: crate::Clock(6),
        filter: crate::Filter::all(),
    }));
}

#[test]
fn a_document_a_peer_creates_by_writing_is_announced_to_the_others_not_to_it() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.recv(
        1,
        Message::Update {
            doc: doc("fresh"),
            batch: BatchId(7),
            data: Payload::new(vec![1]),
            version: vv(&[(1, 1)]),
        },
    );
    // The store has no such document: alice's write creates it.
    let cmds = k.missing(10, "fresh");
    let new_docs = |ch| {
        messages(&cmds, ch)
            .into_iter()
            .filter(|m| matches!(m, Message::NewDocs { .. }))
            .count()
    };
    assert_eq!(new_docs(2), 1, "bob follows no filter: he is told");
    assert_eq!(new_docs(1), 0, "alice made it");
}

#[test]
fn requests_waiting_on_a_load_that_failed_are_all_answered_once_it_succeeds() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.follow(1, "d");
    k.feed(Msg::StoreFailed {
        store: ChannelId(10),
        failure: StoreFailure::Load {
            doc: doc("d"),
            reason: "disk on fire".into(),
        },
    });
    k.follow(2, "d");
    k.tick(k.now + 600);
    let cmds = k.found(10, "d", vv(&[(4, 2)]));
    assert!(!sent(&cmds, 1).is_empty(), "alice is answered: {cmds:?}");
    assert!(!sent(&cmds, 2).is_empty(), "bob is answered: {cmds:?}");
}

/// A peer's update of `d`, imported: returns the store writes it caused.
fn written(
    k: &mut Kit,
    ch: u64,
    d: &str,
    batch: u64,
    version: crate::VersionVector,
) -> Vec<crate::Cmd> {
    let cmds = k.recv(
        ch,
        Message::Update {
            doc: doc(d),
            batch: BatchId(batch),
            data: Payload::new(vec![1]),
            version: version.clone(),
        },
    );
    let id = imports(&cmds)[0];
    k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied { version },
    })
}

fn store_ack(k: &mut Kit, batch: BatchId, clock: u64) -> Vec<crate::Cmd> {
    k.recv(
        10,
        Message::Ack {
            batch,
            status: crate::AckStatus::Ok,
            clock: Some(crate::Clock(clock)),
        },
    )
}

fn changes_up_to(cmds: &[crate::Cmd], ch: u64) -> (Vec<(String, u64)>, u64) {
    messages(cmds, ch)
        .into_iter()
        .find_map(|m| match m {
            Message::Changes { docs, up_to, .. } => Some((
                docs.iter()
                    .map(|c| (c.doc.to_string(), c.clock.0))
                    .collect(),
                up_to.0,
            )),
            _ => None,
        })
        .unwrap()
}

/// A hub with a store and peers alice (1) and bob (2), where alice wrote
/// `d` then `e`: the batches of the two store writes, in that order.
fn two_writes_out() -> (Kit, BatchId, BatchId) {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.create(&[10], "d");
    k.create(&[10], "e");
    let to_d = data(&written(&mut k, 1, "d", 7, vv(&[(1, 1)])), 10)[0].0;
    let to_e = data(&written(&mut k, 1, "e", 8, vv(&[(1, 2)])), 10)[0].0;
    (k, to_d, to_e)
}

fn lost_answer(k: &mut Kit, batch: BatchId) {
    k.feed(Msg::StoreFailed {
        store: ChannelId(10),
        failure: StoreFailure::Append {
            batch,
            reason: "connection reset after commit".into(),
        },
    });
}

/// What bob is told changed since the start of the feed.
fn bob_pulls(k: &mut Kit) -> (Vec<(String, u64)>, u64) {
    let cmds = k.recv(
        2,
        Message::ChangesSince {
            clock: crate::Clock(0),
            filter: crate::Filter::all(),
        },
    );
    changes_up_to(&cmds, 2)
}

#[test]
fn a_write_that_may_have_committed_holds_every_cursor_below_it_until_written_again() {
    let (mut k, to_d, to_e) = two_writes_out();
    // The store committed d's write at clock 1 but its answer was lost; e's
    // came back at clock 2.
    lost_answer(&mut k, to_d);
    store_ack(&mut k, to_e, 2);
    assert_eq!(
        bob_pulls(&mut k),
        (vec![], 0),
        "bob's cursor would pass d's write at clock 1, and bob never hear of d"
    );
    // Written again, d is listed at its new clock and cursors move on.
    let again = data(&k.tick(k.now + 600), 10);
    assert_eq!(again.len(), 1, "d written again");
    store_ack(&mut k, again[0].0, 3);
    assert_eq!(
        bob_pulls(&mut k),
        (vec![("e".into(), 2), ("d".into(), 3)], 3)
    );
}

#[test]
fn a_write_in_doubt_of_a_document_deleted_since_holds_no_cursor() {
    let (mut k, to_d, to_e) = two_writes_out();
    k.recv(1, Message::Delete { doc: doc("d") });
    lost_answer(&mut k, to_d);
    store_ack(&mut k, to_e, 2);
    assert_eq!(
        bob_pulls(&mut k).1,
        2,
        "a deleted document's write held every cursor for good"
    );
}

/// A hub whose primary store (channel 10) restored `docs` at clock 4, its
/// feed read every 200 ms, and up to every `quiet_ms` while reads find
/// nothing (0: always every 200 ms).
fn feed_hub(quiet_ms: crate::Millis, docs: Vec<crate::StoredDoc>) -> Kit {
    let mut c = Config::new("hub");
    c.timing.feed_poll_ms = 200;
    c.timing.feed_poll_quiet_ms = quiet_ms;
    let mut k = Kit::new(c);
    k.store(10);
    k.feed(Msg::Restored {
        store: ChannelId(10),
        clock: crate::Clock(4),
        floor: crate::Clock(0),
        docs,
        records: vec![],
    });
    k
}

/// When the feed is read (a tick every 100 ms from `from` to `to`), each
/// read answered with `answer` (nothing new, unless it says otherwise).
fn feed_reads(
    k: &mut Kit,
    from: crate::Millis,
    to: crate::Millis,
    answer: impl Fn(crate::Millis) -> Vec<crate::ChangedDoc>,
) -> Vec<crate::Millis> {
    let mut read_at = Vec::new();
    for t in (from..=to).step_by(100) {
        let cmds = k.tick(t);
        if messages(&cmds, 10)
            .iter()
            .any(|m| matches!(m, Message::ChangesSince { .. }))
        {
            read_at.push(t);
            let docs = answer(t);
            let up_to = docs.last().map_or(crate::Clock(4), |d| d.clock);
            k.recv(
                10,
                Message::Changes {
                    docs,
                    up_to,
                    more: false,
                },
            );
        }
    }
    read_at
}

#[test]
fn a_feed_that_finds_nothing_is_read_less_often_and_at_once_again_after_a_find() {
    let mut k = feed_hub(1_000, vec![]);
    // Nothing found: the wait doubles up to its bound.
    assert_eq!(
        feed_reads(&mut k, 100, 3_500, |_| Vec::new()),
        vec![200, 400, 800, 1_600, 2_600]
    );
    // Another process created a document: found at the read at 4,600,
    // and the next read comes at the shortest wait again.
    let found = |t| {
        if t == 4_600 {
            vec![crate::ChangedDoc {
                doc: doc("theirs"),
                version: vv(&[(9, 1)]),
                clock: crate::Clock(5),
            }]
        } else {
            Vec::new()
        }
    };
    assert_eq!(
        feed_reads(&mut k, 3_600, 6_200, found),
        vec![3_600, 4_600, 4_800, 5_200, 6_000]
    );
    // A store that announces another process's write brings the next
    // read (after the one it asks for at once) to the shortest wait too.
    k.tick(6_300);
    let cmds = k.feed(Msg::StoreAnnounced {
        store: ChannelId(10),
    });
    assert!(messages(&cmds, 10)
        .iter()
        .any(|m| matches!(m, Message::ChangesSince { .. })));
    k.recv(
        10,
        Message::Changes {
            docs: vec![],
            up_to: crate::Clock(5),
            more: false,
        },
    );
    assert_eq!(
        feed_reads(&mut k, 6_400, 7_000, |_| Vec::new()),
        vec![6_500, 6_900]
    );
}

#[test]
fn a_look_at_the_feed_while_its_read_is_under_way_does_not_lengthen_the_wait() {
    let mut k = feed_hub(1_000, vec![]);
    let read = |cmds: &[crate::Cmd]| {
        messages(cmds, 10)
            .iter()
            .any(|m| matches!(m, Message::ChangesSince { .. }))
    };
    assert!(read(&k.tick(200)));
    // The store takes its time: the looks at 400 and 600 find the read
    // under way and start none.
    assert!(!read(&k.tick(400)));
    assert!(!read(&k.tick(600)));
    k.tick(650);
    k.recv(
        10,
        Message::Changes {
            docs: vec![],
            up_to: crate::Clock(4),
            more: false,
        },
    );
    // The next read comes 200 ms after the last look, and the wait after
    // it is the one the first read left (400 ms), not longer.
    assert_eq!(
        feed_reads(&mut k, 700, 1_500, |_| Vec::new()),
        vec![800, 1_200]
    );
}

#[test]
fn a_deletion_by_another_process_brings_the_next_feed_read_to_the_shortest_wait() {
    let mut k = feed_hub(
        1_000,
        vec![crate::StoredDoc {
            doc: doc("d"),
            meta: Default::default(),
            version: vv(&[(1, 1)]),
            clock: crate::Clock(4),
        }],
    );
    assert_eq!(
        feed_reads(&mut k, 100, 2_000, |_| Vec::new()),
        vec![200, 400, 800, 1_600]
    );
    // The read at 1,600 put the next at 2,600; the deletion at 2,000
    // brings it to 2,200.
    k.recv(10, Message::Delete { doc: doc("d") });
    assert_eq!(
        feed_reads(&mut k, 2_100, 2_700, |_| Vec::new()),
        vec![2_200, 2_600]
    );
}
