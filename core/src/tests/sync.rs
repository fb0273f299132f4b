use super::kit::*;
use crate::{BatchId, Cmd, DocMeta, Event, ImportOutcome, Message, Msg, Payload, PeerId, Reply};

/// A hub holding `notes` at {9:2}, with alice and bob connected.
fn hub_with_doc() -> Kit {
    let mut k = Kit::hub();
    open_notes(&mut k);
    k.peer(1, "alice");
    k.peer(2, "bob");
    k
}

/// Opens `notes` on `k`'s node and changes it locally to {9:2}.
fn open_notes(k: &mut Kit) {
    k.feed(Msg::OpenDoc {
        doc: doc("notes"),
        meta: DocMeta::default(),
    });
    k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 2)]),
    });
}

fn request(k: &mut Kit, ch: u64, have: &[(u64, u64)], bidirectional: bool) -> Vec<Cmd> {
    k.recv(
        ch,
        Message::SyncRequest {
            doc: doc("notes"),
            version: vv(have),
            bidirectional,
        },
    )
}

#[test]
fn empty_requester_gets_a_snapshot_and_is_subscribed() {
    let mut k = hub_with_doc();
    let cmds = request(&mut k, 1, &[], false);
    assert!(matches!(data(&cmds, 1)[..], [(_, None, false)]), "{cmds:?}");
    assert_eq!(
        k.model.subscribers(&doc("notes")),
        vec![PeerId::new("alice")]
    );
}

#[test]
fn requester_equal_or_ahead_is_up_to_date() {
    let mut k = hub_with_doc();
    for have in [&[(9, 2)][..], &[(9, 5), (1, 1)][..]] {
        let cmds = request(&mut k, 1, have, false);
        assert!(matches!(
            messages(&cmds, 1)[..],
            [Message::SyncResponse {
                reply: Reply::UpToDate,
                ..
            }]
        ));
    }
}

#[test]
fn behind_or_concurrent_requester_gets_a_delta_from_its_version() {
    let mut k = hub_with_doc();
    let cmds = request(&mut k, 1, &[(9, 1), (4, 1)], false);
    assert_eq!(data(&cmds, 1)[0].1, Some(vv(&[(9, 1), (4, 1)])));
}

#[test]
fn a_bidirectional_request_is_reciprocated_once_and_never_bidirectionally() {
    let mut k = hub_with_doc();
    let cmds = request(&mut k, 1, &[(4, 1)], true);
    let reciprocal: Vec<_> = messages(&cmds, 1)
        .into_iter()
        .filter_map(|m| match m {
            Message::SyncRequest {
                bidirectional,
                version,
                ..
            } => Some((bidirectional, version)),
            _ => None,
        })
        .collect();
    assert_eq!(reciprocal, vec![(false, vv(&[(9, 2)]))]);
    // A reciprocal (non-bidirectional) request is answered, not reciprocated.
    let cmds = request(&mut k, 1, &[(4, 1)], false);
    assert!(!messages(&cmds, 1)
        .iter()
        .any(|m| matches!(m, Message::SyncRequest { .. })));
}

#[test]
fn a_repeated_request_does_not_reset_a_synced_peer() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[], false);
    let cmds = request(&mut k, 1, &[(9, 2)], false);
    assert!(
        data(&cmds, 1).is_empty(),
        "nothing re-sent to a peer that has it all"
    );
}

#[test]
fn an_import_is_propagated_to_others_and_never_echoed() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[(9, 2)], false);
    request(&mut k, 2, &[(9, 2)], false);
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(5),
            data: Payload::new(vec![1]),
            version: vv(&[(9, 2), (1, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(9, 2), (1, 1)]),
        },
    });
    assert!(data(&cmds, 1).is_empty(), "echoed to its source");
    assert_eq!(data(&cmds, 2)[0].1, Some(vv(&[(9, 2)])));
    assert!(events(&cmds)
        .iter()
        .any(|e| matches!(e, Event::DocChanged { from: Some(p), .. } if p.as_str() == "alice")));
    // No store: acknowledged at once.
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::Ack {
            batch: BatchId(5),
            status: crate::AckStatus::Ok,
            ..
        }
    )));
}

#[test]
fn concurrent_local_edits_are_sent_to_the_source_without_its_own_changes() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[(9, 2)], false);
    k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 3)]),
    });
    // Alice's update crossed ours: she has {9:2, 1:1}.
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(5),
            data: Payload::new(vec![1]),
            version: vv(&[(9, 2), (1, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: vv(&[(9, 3), (1, 1)]),
        },
    });
    for (_, since, _) in data(&cmds, 1) {
        assert!(
            since.is_some_and(|s| s.includes(&vv(&[(9, 2), (1, 1)]))),
            "alice's own change went back"
        );
    }
}

#[test]
fn a_pending_import_is_acked_as_missing_dependencies_and_the_gap_requested() {
    let mut k = hub_with_doc();
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(5),
            data: Payload::new(vec![1]),
            version: vv(&[(1, 3)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Pending {
            version: vv(&[(9, 2)]),
        },
    });
    let msgs = messages(&cmds, 1);
    assert!(msgs.contains(&Message::Ack {
        batch: BatchId(5),
        status: crate::AckStatus::MissingDependencies,
        clock: None
    }));
    assert!(msgs
        .iter()
        .any(|m| matches!(m, Message::SyncRequest { .. })));
}

#[test]
fn wait_for_sync_resolves_on_absent_as_well_as_synced() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.dial(1, "hub", "hub");
    let cmds = k.feed(Msg::OpenDoc {
        doc: doc("new"),
        meta: DocMeta::default(),
    });
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::SyncRequest {
            bidirectional: true,
            ..
        }
    )));
    let cmds = k.recv(
        1,
        Message::SyncResponse {
            doc: doc("new"),
            batch: BatchId(0),
            reply: Reply::Unavailable,
            version: vv(&[]),
        },
    );
    assert!(events(&cmds).iter().any(|e| matches!(
        e,
        Event::PeerSynced {
            state: crate::SyncState::Absent,
            ..
        }
    )));
}

#[test]
fn one_step_leaves_as_one_frame_per_channel() {
    let mut k = hub_with_doc();
    let cmds = request(&mut k, 1, &[(4, 1)], true);
    let frames = cmds
        .iter()
        .filter(|c| matches!(c, Cmd::Send { channel, .. } if channel.0 == 1))
        .count();
    assert_eq!(frames, 1);
    assert!(
        sent(&cmds, 1).len() >= 2,
        "answer and reciprocal request travel together"
    );
}

#[test]
fn a_fork_and_merge_counts_as_a_local_change_and_propagates() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[(9, 2)], false);
    // The application merged a fork holding another actor's changes.
    let cmds = k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 2), (77, 4)]),
    });
    assert_eq!(data(&cmds, 1)[0].1, Some(vv(&[(9, 2)])));
}

#[test]
fn opening_a_document_marks_storage_pending_before_any_network_answer() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.feed(Msg::OpenDoc {
        doc: doc("d"),
        meta: DocMeta::default(),
    });
    let cmds = k.follow(1, "d");
    assert!(sent(&cmds, 1).is_empty(), "answered before the store");
}

/// A local change to `notes`, bringing it to {9:n}.
fn change(k: &mut Kit, n: u64) -> Vec<Cmd> {
    k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, n)]),
    })
}

/// Channel `ch` acknowledges `batch` as taken.
fn acked(k: &mut Kit, ch: u64, batch: BatchId) -> Vec<Cmd> {
    k.recv(
        ch,
        Message::Ack {
            batch,
            status: crate::AckStatus::Ok,
            clock: None,
        },
    )
}

#[test]
fn changes_made_while_a_live_update_is_unacknowledged_go_as_one_update_after_its_ack() {
    let mut k = hub_with_doc();
    // alice holds the document and follows it.
    request(&mut k, 1, &[(9, 2)], false);
    let first = data(&change(&mut k, 3), 1);
    assert!(
        matches!(&first[..], [(_, Some(v), true)] if *v == vv(&[(9, 2)])),
        "{first:?}"
    );
    // Two more changes before alice acknowledges: nothing goes yet.
    assert!(data(&change(&mut k, 4), 1).is_empty());
    assert!(data(&change(&mut k, 5), 1).is_empty());
    // Its ack: one update from what it acknowledged to the latest.
    let cmds = acked(&mut k, 1, first[0].0);
    let next = data(&cmds, 1);
    assert!(
        matches!(&next[..], [(_, Some(v), true)] if *v == vv(&[(9, 3)])),
        "{next:?}"
    );
    // Acknowledged at once, the next change goes at once.
    acked(&mut k, 1, next[0].0);
    assert_eq!(data(&change(&mut k, 6), 1).len(), 1);
}

#[test]
fn a_live_update_never_acknowledged_does_not_hold_back_changes_past_the_ack_timeout() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[(9, 2)], false);
    assert_eq!(data(&change(&mut k, 3), 1).len(), 1);
    assert!(data(&change(&mut k, 4), 1).is_empty());
    // The ack never comes: the sweep offers the document again by asking
    // alice what it has; its answer brings everything it lacks.
    let cmds = k.tick(60_000);
    assert!(
        messages(&cmds, 1)
            .iter()
            .any(|m| matches!(m, Message::SyncRequest { .. })),
        "{cmds:?}"
    );
    let cmds = k.recv(
        1,
        Message::SyncResponse {
            doc: doc("notes"),
            batch: BatchId(0),
            reply: Reply::UpToDate,
            version: vv(&[(9, 2)]),
        },
    );
    let gap = data(&cmds, 1);
    assert!(
        matches!(&gap[..], [(_, Some(v), _)] if *v == vv(&[(9, 2)])),
        "{cmds:?}"
    );
}

#[test]
fn data_whose_import_was_unavailable_is_not_sent_back_to_its_sender_later() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[(9, 2)], false);
    request(&mut k, 2, &[(9, 2)], false);
    let theirs = vv(&[(9, 2), (1, 1)]);
    let update = |batch: u64| Message::Update {
        doc: doc("notes"),
        batch: BatchId(batch),
        data: Payload::new(vec![1]),
        version: vv(&[(9, 2), (1, 1)]),
    };
    // Alice's change could not be taken now (the store failed).
    let id = imports(&k.recv(1, update(5)))[0];
    k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Unavailable {
            reason: "the store is unavailable".into(),
        },
    });
    // Bob brings the same change; it is taken and goes on, but not to alice.
    let id = imports(&k.recv(2, update(6)))[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: ImportOutcome::Applied {
            version: theirs.clone(),
        },
    });
    assert!(data(&cmds, 1).is_empty(), "alice got her own change back");
}

/// Alice follows `notes` and acknowledged what she was sent; then a change
/// goes to her as a live update, not yet acknowledged (its commands).
fn following_with_a_live_update_out() -> (Kit, Vec<Cmd>) {
    let mut k = hub_with_doc();
    let answer = k.follow(1, "notes");
    let batch = data(&answer, 1)[0].0;
    k.recv(
        1,
        Message::Ack {
            batch,
            status: crate::AckStatus::Ok,
            clock: None,
        },
    );
    let cmds = k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 3)]),
    });
    (k, cmds)
}

#[test]
fn a_request_that_crossed_a_live_update_still_gets_its_answer() {
    let (mut k, cmds) = following_with_a_live_update_out();
    assert!(matches!(data(&cmds, 1)[..], [(_, _, true)]), "{cmds:?}");
    let update = data(&cmds, 1)[0].0;
    // ...while alice (a Loro join, say) asks from what it had before it.
    // The bytes do not go twice...
    let cmds = request(&mut k, 1, &[(9, 2)], false);
    assert!(data(&cmds, 1).is_empty(), "{cmds:?}");
    // ...and once the update is acknowledged, the request is answered.
    let cmds = k.recv(
        1,
        Message::Ack {
            batch: update,
            status: crate::AckStatus::Ok,
            clock: None,
        },
    );
    assert!(
        matches!(
            messages(&cmds, 1)[..],
            [Message::SyncResponse {
                reply: Reply::UpToDate,
                ..
            }]
        ),
        "the request is answered: {cmds:?}"
    );
}

#[test]
fn a_request_that_crossed_a_live_update_that_is_lost_gets_the_data_as_its_answer() {
    let (mut k, _) = following_with_a_live_update_out();
    request(&mut k, 1, &[(9, 2)], false);
    // The update is never acknowledged: once it times out, the data goes
    // as the answer the request is owed.
    let cmds = k.tick(60_000);
    assert!(
        matches!(data(&cmds, 1)[..], [(_, Some(_), false)]),
        "{cmds:?}"
    );
}

#[test]
fn a_repeated_request_is_not_answered_twice_while_its_answer_is_on_the_way() {
    let mut k = hub_with_doc();
    assert_eq!(data(&request(&mut k, 1, &[(9, 1)], false), 1).len(), 1);
    assert!(
        data(&request(&mut k, 1, &[(9, 1)], false), 1).is_empty(),
        "the first answer is still unacknowledged"
    );
}

#[test]
fn a_request_crossing_an_update_built_on_a_base_the_peer_lacks_is_answered_with_data() {
    let mut k = hub_with_doc();
    request(&mut k, 1, &[(9, 2)], false);
    // An update alice never gets: her connection ends before it arrives.
    k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 2), (1, 1)]),
    });
    k.feed(Msg::ChannelRemoved {
        channel: crate::ChannelId(1),
    });
    k.peer(3, "alice");
    // The next change goes as an update from the base assumed she holds.
    let cmds = k.feed(Msg::LocalChange {
        doc: doc("notes"),
        version: vv(&[(9, 2), (1, 1), (2, 1)]),
    });
    let live = data(&cmds, 3);
    assert!(matches!(live[..], [(_, Some(_), true)]), "{cmds:?}");
    // Her request says she holds less; it crossed that update.
    request(&mut k, 3, &[(9, 2)], false);
    let cmds = k.recv(
        3,
        Message::Ack {
            batch: live[0].0,
            status: crate::AckStatus::Ok,
            clock: None,
        },
    );
    let answered = data(&cmds, 3);
    assert!(
        matches!(&answered[..], [(_, Some(since), false)] if *since == vv(&[(9, 2)])),
        "{cmds:?}"
    );
}

/// The author of an update's changes, as its import says.
fn author_of_update(k: &mut Kit, ch: u64) -> Option<crate::Author> {
    let cmds = k.recv(
        ch,
        Message::Update {
            doc: doc("notes"),
            batch: BatchId(5),
            data: Payload::new(vec![1]),
            version: vv(&[(9, 2), (ch, 1)]),
        },
    );
    cmds.into_iter()
        .find_map(|c| match c {
            Cmd::Import { author, .. } => Some(author),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no import"))
}

#[test]
fn a_clients_update_is_its_own_at_the_nodes_time_and_a_relays_is_nobodys() {
    let mut config = crate::Config::new("hub");
    config.relays = vec![crate::Pattern::Prefix("edge-".into())];
    let mut k = Kit::new(config);
    open_notes(&mut k);
    k.peer(1, "alice");
    k.peer(2, "edge-1");
    k.dial(3, "ws://upstream", "upstream");
    k.now = 4_000;
    assert_eq!(
        author_of_update(&mut k, 1),
        Some(crate::Author {
            identity: PeerId::new("alice"),
            at: 4_000
        })
    );
    assert_eq!(author_of_update(&mut k, 2), None, "a named relay");
    assert_eq!(author_of_update(&mut k, 3), None, "a server we dialed");
}
