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
