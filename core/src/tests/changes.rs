use super::kit::*;
use crate::{ChangedDoc, Clock, Cmd, Cursor, DocMeta, Message, Msg, PeerId, StateRecord};

#[test]
fn changes_since_lists_only_documents_changed_after_the_clock() {
    let mut k = Kit::hub();
    for d in ["a", "b", "c"] {
        k.feed(Msg::OpenDoc {
            doc: doc(d),
            meta: DocMeta::default(),
        });
    }
    k.feed(Msg::LocalChange {
        doc: doc("a"),
        version: vv(&[(1, 1)]),
    });
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::ChangesSince {
            clock: Clock(3),
            filter: crate::Filter::all(),
        },
    );
    let listed: Vec<String> = messages(&cmds, 1)
        .into_iter()
        .flat_map(|m| match m {
            Message::Changes { docs, .. } => docs.into_iter().map(|d| d.doc.to_string()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(listed, vec!["a"]);
}

#[test]
fn a_reconnecting_dialer_resumes_from_its_persisted_cursor_and_pushes_local_changes() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.feed(Msg::Restored {
        store: crate::ChannelId(99),
        clock: Clock(0),
        floor: Clock(0),
        docs: Vec::new(),
        records: vec![StateRecord::Cursor {
            peer: PeerId::new("hub"),
            cursor: Cursor {
                pulled: Clock(17),
                pushed: Clock(1),
            },
        }],
    });
    // Made offline: clocks 1 (already pushed) and 2 (not yet).
    k.feed(Msg::OpenDoc {
        doc: doc("old"),
        meta: DocMeta::default(),
    });
    k.feed(Msg::OpenDoc {
        doc: doc("offline"),
        meta: DocMeta::default(),
    });
    let cmds = k.dial_at(1, "hub", "hub", Clock(40));
    let msgs = messages(&cmds, 1);
    assert!(msgs.contains(&Message::ChangesSince {
        clock: Clock(17),
        filter: crate::Filter::all()
    }));
    let pushed: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::SyncRequest {
                doc,
                bidirectional: true,
                ..
            } => Some(doc.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(pushed, vec!["offline"]);
}

#[test]
fn a_remote_feed_behind_our_cursor_is_pulled_again_from_the_start() {
    // The hub was restored from an older copy (or its store lost writes):
    // its clock numbers past 3 will name other changes than the ones we saw.
    let mut k = Kit::new(crate::Config::new("client"));
    k.feed(Msg::Restored {
        store: crate::ChannelId(99),
        clock: Clock(0),
        floor: Clock(0),
        docs: Vec::new(),
        records: vec![StateRecord::Cursor {
            peer: PeerId::new("hub"),
            cursor: Cursor {
                pulled: Clock(17),
                pushed: Clock(0),
            },
        }],
    });
    let cmds = k.dial_at(1, "hub", "hub", Clock(3));
    assert!(messages(&cmds, 1).contains(&Message::ChangesSince {
        clock: Clock(0),
        filter: crate::Filter::all()
    }));
}

#[test]
fn pulled_cursor_moves_once_every_listed_document_is_in() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.feed(Msg::OpenDoc {
        doc: doc("x"),
        meta: DocMeta::default(),
    });
    k.dial(1, "hub", "hub");
    let cmds = hub_lists_x(&mut k);
    assert!(!saves_cursor(&cmds), "moved before the data arrived");
    let cmds = k.recv(
        1,
        Message::SyncResponse {
            doc: doc("x"),
            batch: crate::BatchId(3),
            reply: crate::Reply::Delta(crate::Payload::new(vec![1])),
            version: vv(&[(5, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: crate::ImportOutcome::Applied {
            version: vv(&[(5, 1)]),
        },
    });
    assert!(cmds.iter().any(
        |c| matches!(c, Cmd::Save(StateRecord::Cursor { cursor, .. }) if cursor.pulled == Clock(31))
    ));
    assert_eq!(
        k.model.cursor(&PeerId::new("hub")).map(|c| c.pulled),
        Some(Clock(31))
    );
}

#[test]
fn an_announced_document_is_fetched_only_if_we_follow_it() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.dial(1, "hub", "hub");
    let cmds = k.recv(
        1,
        Message::NewDocs {
            docs: vec![crate::DocInfo {
                doc: doc("fresh"),
                meta: DocMeta::default(),
            }],
        },
    );
    assert!(messages(&cmds, 1)
        .iter()
        .any(|m| matches!(m, Message::SyncRequest { doc, .. } if doc.as_str() == "fresh")));
    // A hub does not fetch what a client merely announces.
    let mut hub = Kit::hub();
    hub.peer(1, "alice");
    let cmds = hub.recv(
        1,
        Message::NewDocs {
            docs: vec![crate::DocInfo {
                doc: doc("fresh"),
                meta: DocMeta::default(),
            }],
        },
    );
    assert!(messages(&cmds, 1).is_empty());
}

#[test]
fn pulled_cursor_waits_until_a_listed_document_held_in_memory_is_durable() {
    let mut k = Kit::new(crate::Config::new("client"));
    k.store(10);
    k.create(&[10], "x");
    k.dial(1, "hub", "hub");
    // The hub pushes a change; it is imported, and its write is out.
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("x"),
            batch: crate::BatchId(3),
            data: crate::Payload::new(vec![1]),
            version: vv(&[(5, 1)]),
        },
    );
    let id = imports(&cmds)[0];
    let cmds = k.feed(Msg::Imported {
        id,
        outcome: crate::ImportOutcome::Applied {
            version: vv(&[(5, 1)]),
        },
    });
    let writes: Vec<crate::BatchId> = sent(&cmds, 10)
        .into_iter()
        .filter_map(|o| match o {
            crate::Outgoing::Data { batch, .. } => Some(batch),
            _ => None,
        })
        .collect();
    assert_eq!(writes.len(), 1);
    // The hub lists it: we hold it, but a crash now would lose it, so the
    // cursor must not say we have it.
    let cmds = hub_lists_x(&mut k);
    assert!(
        !saves_cursor(&cmds),
        "the cursor moved past data not yet durable"
    );
    // The write is acknowledged: durable, and the cursor moves.
    let cmds = k.recv(
        10,
        Message::Ack {
            batch: writes[0],
            status: crate::AckStatus::Ok,
            clock: Some(Clock(7)),
        },
    );
    assert!(cmds.iter().any(
        |c| matches!(c, Cmd::Save(StateRecord::Cursor { cursor, .. }) if cursor.pulled == Clock(31))
    ));
}

/// The hub on channel 1 lists document "x" at version {5: 1}, changed at
/// clock 30, and says nothing more is to come.
fn hub_lists_x(k: &mut Kit) -> Vec<Cmd> {
    let changed = ChangedDoc {
        doc: doc("x"),
        version: vv(&[(5, 1)]),
        clock: Clock(30),
    };
    k.recv(
        1,
        Message::Changes {
            docs: vec![changed],
            up_to: Clock(31),
            more: false,
        },
    )
}

/// Whether the commands move the pulled cursor.
fn saves_cursor(cmds: &[Cmd]) -> bool {
    cmds.iter()
        .any(|c| matches!(c, Cmd::Save(StateRecord::Cursor { .. })))
}
