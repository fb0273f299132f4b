use super::kit::*;
use crate::{
    Access, AckStatus, BatchId, Config, DeleteOutcome, DocInfo, DocMeta, Message, Msg, Pattern,
    Payload, Reply, Rules,
};

fn hub_where_eve_may(access: Access) -> Kit {
    let mut c = Config::new("hub");
    c.rules = Rules::allow_all().with(Pattern::Exact("eve".into()), Pattern::Any, access);
    let mut k = Kit::new(c);
    k.feed(Msg::OpenDoc {
        doc: doc("d"),
        meta: DocMeta::default(),
    });
    k.feed(Msg::LocalChange {
        doc: doc("d"),
        version: vv(&[(1, 1)]),
    });
    k.peer(1, "eve");
    k
}

#[test]
fn write_denied_refuses_the_data_without_importing() {
    let mut k = hub_where_eve_may(Access::READ);
    let cmds = k.recv(
        1,
        Message::Update {
            doc: doc("d"),
            batch: BatchId(3),
            data: Payload::new(vec![1]),
            version: vv(&[(6, 1)]),
        },
    );
    assert!(imports(&cmds).is_empty());
    assert!(messages(&cmds, 1).contains(&Message::Ack {
        batch: BatchId(3),
        status: AckStatus::PermissionDenied,
        clock: None
    }));
}

#[test]
fn read_denied_gets_unavailable_and_no_subscription() {
    let mut k = hub_where_eve_may(Access::NONE);
    let cmds = k.recv(
        1,
        Message::SyncRequest {
            doc: doc("d"),
            version: vv(&[]),
            bidirectional: true,
        },
    );
    assert!(matches!(
        messages(&cmds, 1)[..],
        [Message::SyncResponse {
            reply: Reply::Unavailable,
            ..
        }]
    ));
    assert!(k.model.subscribers(&doc("d")).is_empty());
    // Nor does it show up in listings.
    let cmds = k.recv(
        1,
        Message::DirectoryRequest {
            filter: crate::Filter::all(),
        },
    );
    assert!(
        matches!(&messages(&cmds, 1)[..], [Message::DirectoryResponse { docs }] if docs.is_empty())
    );
}

#[test]
fn delete_denied_is_ignored() {
    let mut k = hub_where_eve_may(Access {
        delete: false,
        ..Access::ALL
    });
    let cmds = k.recv(1, Message::Delete { doc: doc("d") });
    assert!(messages(&cmds, 1).contains(&Message::DeleteResult {
        doc: doc("d"),
        outcome: DeleteOutcome::Ignored
    }));
    assert!(k.model.doc_version(&doc("d")).is_some());
}

#[test]
fn every_entry_point_that_would_create_checks_create() {
    let mut k = hub_where_eve_may(Access {
        create: false,
        ..Access::ALL
    });
    // sync-request, update, push and new-docs for an unknown document.
    k.follow(1, "x1");
    k.recv(
        1,
        Message::Update {
            doc: doc("x2"),
            batch: BatchId(1),
            data: Payload::new(vec![1]),
            version: vv(&[(6, 1)]),
        },
    );
    k.recv(
        1,
        Message::SyncResponse {
            doc: doc("x3"),
            batch: BatchId(2),
            reply: Reply::Snapshot(Payload::new(vec![1])),
            version: vv(&[(6, 1)]),
        },
    );
    k.recv(
        1,
        Message::NewDocs {
            docs: vec![DocInfo {
                doc: doc("x4"),
                meta: DocMeta::default(),
            }],
        },
    );
    let strand = crate::Strand {
        doc: doc("x5"),
        meta: DocMeta::default(),
        since: vv(&[]),
        data: Payload::new(vec![1]),
        version: vv(&[(6, 1)]),
        clock: crate::Clock(0),
    };
    let cmds = k.recv(
        1,
        Message::Push {
            strands: vec![strand],
        },
    );
    assert!(messages(&cmds, 1).iter().any(|m| matches!(m, Message::PushResult { revisions } if revisions[0].status == crate::RevisionStatus::Denied)));
    for d in ["x1", "x2", "x3", "x4", "x5"] {
        assert!(k.model.doc_version(&doc(d)).is_none(), "{d} was created");
    }
}
