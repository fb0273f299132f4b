use super::kit::*;
use crate::{
    Clock, Cmd, DocMeta, ErrorCode, ListenerId, Message, Msg, Outgoing, Revision, RevisionStatus,
    StateRecord,
};

fn strands(cmds: &[Cmd], ch: u64) -> (Vec<String>, bool) {
    sent(cmds, ch)
        .into_iter()
        .find_map(|o| match o {
            Outgoing::Strands { items, more, .. } => {
                Some((items.iter().map(|i| i.doc.to_string()).collect(), more))
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn hub_with_listener() -> Kit {
    let mut k = Kit::hub();
    for d in ["a", "b", "c"] {
        k.feed(Msg::OpenDoc {
            doc: doc(d),
            meta: DocMeta::default(),
        });
        k.feed(Msg::LocalChange {
            doc: doc(d),
            version: vv(&[(1, 1)]),
        });
    }
    k.peer(1, "reader");
    let cmds = k.recv(
        1,
        Message::ListenerRegister {
            filter: crate::Filter::all(),
            id: None,
        },
    );
    assert!(messages(&cmds, 1).contains(&Message::ListenerRegistered { id: ListenerId(1) }));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Cmd::Save(StateRecord::Listener(_)))));
    k
}

fn ok(d: &str, status: RevisionStatus) -> Revision {
    Revision {
        doc: doc(d),
        version: vv(&[(1, 1)]),
        clock: Clock(0),
        status,
    }
}

#[test]
fn pull_pages_and_acknowledge_moves_the_cursor_only_for_applied_strands() {
    let mut k = hub_with_listener();
    let (page, more) = strands(
        &k.recv(
            1,
            Message::ListenerPull {
                id: ListenerId(1),
                limit: 2,
            },
        ),
        1,
    );
    assert_eq!((page, more), (vec!["a".to_string(), "b".to_string()], true));
    k.recv(
        1,
        Message::ListenerAck {
            id: ListenerId(1),
            revisions: vec![
                ok("a", RevisionStatus::Ok),
                ok("b", RevisionStatus::Invalid),
            ],
        },
    );
    let (page, more) = strands(
        &k.recv(
            1,
            Message::ListenerPull {
                id: ListenerId(1),
                limit: 5,
            },
        ),
        1,
    );
    assert_eq!(
        (page, more),
        (vec!["b".to_string(), "c".to_string()], false)
    );
}

#[test]
fn unacknowledged_strands_are_sent_again() {
    let mut k = hub_with_listener();
    let first = strands(
        &k.recv(
            1,
            Message::ListenerPull {
                id: ListenerId(1),
                limit: 10,
            },
        ),
        1,
    );
    let again = strands(
        &k.recv(
            1,
            Message::ListenerPull {
                id: ListenerId(1),
                limit: 10,
            },
        ),
        1,
    );
    assert_eq!(first, again);
}

#[test]
fn an_unknown_listener_gets_a_clear_error() {
    let mut k = hub_with_listener();
    let cmds = k.recv(
        1,
        Message::ListenerPull {
            id: ListenerId(42),
            limit: 1,
        },
    );
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::Error {
            code: ErrorCode::UnknownListener,
            ..
        }
    )));
}

#[test]
fn a_listener_survives_a_restart_through_its_saved_record() {
    let mut k = hub_with_listener();
    let cmds = k.recv(
        1,
        Message::ListenerAck {
            id: ListenerId(1),
            revisions: vec![ok("a", RevisionStatus::Ok)],
        },
    );
    let record = cmds.iter().find_map(|c| match c {
        Cmd::Save(r @ StateRecord::Listener(_)) => Some(r.clone()),
        _ => None,
    });
    let mut fresh = Kit::hub();
    fresh.feed(Msg::Restored {
        store: crate::ChannelId(9),
        clock: Clock(0),
        floor: Clock(0),
        docs: Vec::new(),
        records: record.into_iter().collect(),
    });
    assert_eq!(fresh.model.listener_ids(), vec![ListenerId(1)]);
}

#[test]
fn push_answers_one_revision_per_strand() {
    let mut k = hub_with_listener();
    let strand = |d: &str| crate::Strand {
        doc: doc(d),
        meta: DocMeta::default(),
        since: vv(&[]),
        data: crate::Payload::new(vec![1]),
        version: vv(&[(2, 1)]),
        clock: Clock(0),
    };
    let cmds = k.recv(
        1,
        Message::Push {
            strands: vec![strand("a"), strand("new")],
        },
    );
    let ids = imports(&cmds);
    assert_eq!(ids.len(), 2);
    let mut result = Vec::new();
    for id in ids {
        let cmds = k.feed(Msg::Imported {
            id,
            outcome: crate::ImportOutcome::Applied {
                version: vv(&[(2, 1)]),
            },
        });
        result.extend(messages(&cmds, 1));
    }
    let revisions = result.into_iter().find_map(|m| match m {
        Message::PushResult { revisions } => Some(revisions),
        _ => None,
    });
    let statuses: Vec<RevisionStatus> = revisions
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![RevisionStatus::Ok, RevisionStatus::Ok]);
}

#[test]
fn listeners_of_all_peers_together_are_bounded() {
    let mut c = crate::Config::new("hub");
    c.bounds.listeners = 3;
    let mut k = Kit::new(c);
    for (ch, peer) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        k.peer(ch, peer);
    }
    let register = || Message::ListenerRegister {
        filter: Default::default(),
        id: None,
    };
    for ch in 1..=3 {
        let cmds = k.recv(ch, register());
        assert!(messages(&cmds, ch)
            .iter()
            .any(|m| matches!(m, Message::ListenerRegistered { .. })));
    }
    let cmds = k.recv(4, register());
    assert!(messages(&cmds, 4).iter().any(|m| matches!(
        m,
        Message::Error {
            code: crate::ErrorCode::TooLarge,
            ..
        }
    )));
    assert_eq!(k.model.listener_ids().len(), 3);
}

fn pull(k: &mut Kit, limit: u32) -> Vec<crate::StrandSpec> {
    let cmds = k.recv(
        1,
        Message::ListenerPull {
            id: ListenerId(1),
            limit,
        },
    );
    sent(&cmds, 1)
        .into_iter()
        .find_map(|o| match o {
            Outgoing::Strands { items, .. } => Some(items),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn a_document_deleted_after_its_acknowledgement_is_told_once_as_a_deletion() {
    let mut k = hub_with_listener();
    let all: Vec<Revision> = ["a", "b", "c"]
        .iter()
        .map(|d| ok(d, RevisionStatus::Ok))
        .collect();
    k.recv(
        1,
        Message::ListenerAck {
            id: ListenerId(1),
            revisions: all,
        },
    );
    assert!(pull(&mut k, 10).is_empty(), "everything was acknowledged");
    k.feed(Msg::DeleteDoc { doc: doc("b") });
    let told = pull(&mut k, 10);
    assert_eq!(told.len(), 1);
    assert!(told[0].deleted && told[0].doc == doc("b"));
    assert_eq!(
        told[0].since,
        vv(&[(1, 1)]),
        "the version last acknowledged"
    );
    // Told again until acknowledged, then never.
    assert_eq!(pull(&mut k, 10).len(), 1);
    let cmds = k.recv(
        1,
        Message::ListenerAck {
            id: ListenerId(1),
            revisions: vec![Revision {
                version: Default::default(),
                ..ok("b", RevisionStatus::Ok)
            }],
        },
    );
    assert!(messages(&cmds, 1).contains(&Message::ListenerAcked {
        id: ListenerId(1),
        accepted: 1
    }));
    assert!(pull(&mut k, 10).is_empty());
}

#[test]
fn a_document_never_acknowledged_is_not_told_deleted() {
    let mut k = hub_with_listener();
    k.feed(Msg::DeleteDoc { doc: doc("a") });
    let told = pull(&mut k, 10);
    assert!(told.iter().all(|s| !s.deleted), "{told:?}");
}

#[test]
fn a_listener_registered_under_an_id_nobody_holds_keeps_that_id() {
    let mut k = Kit::hub();
    k.peer(1, "hook");
    let named = ListenerId(2);
    let cmds = k.recv(
        1,
        Message::ListenerRegister {
            filter: crate::Filter::all(),
            id: Some(named),
        },
    );
    assert!(messages(&cmds, 1).contains(&Message::ListenerRegistered { id: named }));
    // The counter hands out 1, then skips the named 2.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let cmds = k.recv(
            1,
            Message::ListenerRegister {
                filter: crate::Filter::all(),
                id: None,
            },
        );
        ids.extend(messages(&cmds, 1).into_iter().filter_map(|m| match m {
            Message::ListenerRegistered { id } => Some(id),
            _ => None,
        }));
    }
    assert_eq!(ids, vec![ListenerId(1), ListenerId(3)]);
}

#[test]
fn a_pull_for_versions_only_names_each_documents_version_and_asks_for_no_data() {
    let mut k = hub_with_listener();
    let bare = pull(&mut k, 2 | crate::PULL_VERSIONS_ONLY);
    assert_eq!(bare.len(), 2, "the flag is not taken for a limit");
    assert!(bare
        .iter()
        .all(|s| s.versions_only == Some(vv(&[(1, 1)])) && !s.deleted));
    let full = pull(&mut k, 2);
    assert!(full.iter().all(|s| s.versions_only.is_none()));
}
