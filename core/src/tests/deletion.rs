use super::kit::*;
use crate::{AckStatus, BatchId, Cmd, DocMeta, Message, Msg, Payload, StateRecord};

#[test]
fn a_deleted_document_is_tombstoned_purged_and_told_to_subscribers() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.peer(2, "bob");
    k.feed(Msg::OpenDoc {
        doc: doc("d"),
        meta: DocMeta::default(),
    });
    k.missing(10, "d");
    k.follow(2, "d");
    let cmds = k.recv(1, Message::Delete { doc: doc("d") });
    assert!(cmds.contains(&Cmd::Save(StateRecord::Tombstone(doc("d")))));
    assert!(messages(&cmds, 2).contains(&Message::Delete { doc: doc("d") }));
    assert!(
        !messages(&cmds, 1).contains(&Message::Delete { doc: doc("d") }),
        "told back to the deleter"
    );
    assert!(k.model.is_tombstoned(&doc("d")));
    // Confirmed (data dropped, the deleter answered) once the tombstone is durable.
    assert!(!cmds.contains(&Cmd::Purge { doc: doc("d") }));
    assert!(!messages(&cmds, 1)
        .iter()
        .any(|m| matches!(m, Message::DeleteResult { .. })));
    let cmds = k.feed(Msg::StoreSaved {
        store: crate::ChannelId(10),
        record: StateRecord::Tombstone(doc("d")),
    });
    assert!(cmds.contains(&Cmd::Purge { doc: doc("d") }));
    assert!(messages(&cmds, 1).contains(&Message::DeleteResult {
        doc: doc("d"),
        outcome: crate::DeleteOutcome::Deleted
    }));
}

#[test]
fn neither_a_store_nor_a_late_peer_resurrects_it() {
    let mut k = Kit::hub();
    k.store(10);
    k.peer(1, "alice");
    k.feed(Msg::DeleteDoc { doc: doc("d") });
    // A store still holding the data answers late.
    k.found(10, "d", vv(&[(1, 1)]));
    assert!(k.model.doc_version(&doc("d")).is_none());
    // A late peer pushes an old edit.
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: BatchId(4),
            data: Payload::new(vec![1]),
            version: vv(&[(1, 2)]),
        },
    );
    assert!(imports(&cmds).is_empty());
    assert!(messages(&cmds, 1).contains(&Message::Ack {
        batch: BatchId(4),
        status: AckStatus::Deleted,
        clock: None
    }));
    // A restart restores the tombstone.
    let mut fresh = Kit::hub();
    fresh.feed(Msg::Restored {
        store: crate::ChannelId(10),
        clock: crate::Clock(0),
        floor: crate::Clock(0),
        docs: Vec::new(),
        records: vec![StateRecord::Tombstone(doc("d"))],
    });
    assert!(fresh.model.is_tombstoned(&doc("d")));
}
