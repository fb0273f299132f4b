//! A primary store shared with other processes (PostgreSQL): its
//! announcements read the feed at once, one read at a time, and deletions
//! it reports are carried out here.

use super::kit::*;
use crate::{ChangedDoc, ChannelId, Clock, Config, DocMeta, Filter, Message, Msg, StateRecord};

fn shared_store_node() -> Kit {
    let mut c = Config::new("hub");
    c.timing.feed_poll_ms = 1_000;
    let mut k = Kit::new(c);
    k.store(10);
    k.feed(Msg::Restored {
        store: ChannelId(10),
        clock: Clock(4),
        floor: Clock(0),
        docs: vec![],
        records: vec![],
    });
    k
}

/// The shared store announces another server's write.
fn announce(k: &mut Kit) -> Vec<crate::Cmd> {
    k.feed(Msg::StoreAnnounced {
        store: ChannelId(10),
    })
}

fn reads(cmds: &[crate::Cmd]) -> usize {
    messages(cmds, 10)
        .iter()
        .filter(|m| matches!(m, Message::ChangesSince { .. }))
        .count()
}

fn nothing_new(up_to: u64) -> Message {
    Message::Changes {
        docs: vec![],
        up_to: Clock(up_to),
        more: false,
    }
}

#[test]
fn an_announcement_reads_the_feed_at_once_without_waiting_for_the_poll() {
    let mut k = shared_store_node();
    let cmds = announce(&mut k);
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::ChangesSince {
            clock: Clock(4),
            filter: Filter::all()
        }]
    );
}

#[test]
fn announcements_during_a_read_make_one_more_read_after_it() {
    let mut k = shared_store_node();
    announce(&mut k);
    for _ in 0..5 {
        let cmds = announce(&mut k);
        assert_eq!(reads(&cmds), 0, "one read at a time");
    }
    // The poll timer, due meanwhile, does not start a second read either.
    assert_eq!(reads(&k.tick(1_000)), 0);
    let cmds = k.recv(10, nothing_new(7));
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::ChangesSince {
            clock: Clock(7),
            filter: Filter::all()
        }],
        "the writes announced during the read are read after it, from where it ended"
    );
    assert_eq!(reads(&k.recv(10, nothing_new(7))), 0, "and then no more");
}

/// The store could not read its feed.
fn feed_read_failed(k: &mut Kit) {
    k.feed(Msg::StoreFailed {
        store: ChannelId(10),
        failure: crate::StoreFailure::Feed {
            reason: "connection lost".into(),
        },
    });
}

#[test]
fn a_failed_read_lets_the_next_announcement_read_again() {
    let mut k = shared_store_node();
    announce(&mut k);
    feed_read_failed(&mut k);
    let cmds = announce(&mut k);
    assert_eq!(reads(&cmds), 1);
}

#[test]
fn an_announcement_from_a_channel_that_is_not_the_primary_store_is_ignored() {
    let mut k = shared_store_node();
    k.peer(1, "mallory");
    let cmds = k.feed(Msg::StoreAnnounced {
        store: ChannelId(1),
    });
    assert_eq!(reads(&cmds), 0);
    assert!(messages(&cmds, 1).is_empty());
}

#[test]
fn a_deletion_another_process_made_is_carried_out_and_told_to_subscribers() {
    let mut k = shared_store_node();
    k.feed(Msg::OpenDoc {
        doc: doc("d"),
        meta: DocMeta::default(),
    });
    k.missing(10, "d");
    subscribed(&mut k, 2, "bob");
    let cmds = k.recv(10, Message::Delete { doc: doc("d") });
    assert!(k.model.is_tombstoned(&doc("d")));
    assert!(messages(&cmds, 2).contains(&Message::Delete { doc: doc("d") }));
    assert!(cmds.contains(&crate::Cmd::Save(StateRecord::Tombstone(doc("d")))));
    // Told again (every server's feed lists it once): nothing more happens.
    let again = k.recv(10, Message::Delete { doc: doc("d") });
    assert!(messages(&again, 2).is_empty());
    // A feed entry for it afterwards does not bring it back.
    k.recv(
        10,
        Message::Changes {
            docs: vec![ChangedDoc {
                doc: doc("d"),
                version: vv(&[(1, 1)]),
                clock: Clock(9),
            }],
            up_to: Clock(9),
            more: false,
        },
    );
    assert!(k.model.doc_version(&doc("d")).is_none());
}

fn cursor(origin: &str, hops: u8) -> crate::Ephemeral {
    crate::Ephemeral {
        doc: doc("d"),
        namespace: crate::Namespace::new("cursor"),
        origin: crate::PeerId::new(origin),
        hops,
        ttl_ms: 30_000,
        data: crate::Payload::new(b"line 7".to_vec()),
    }
}

fn subscribed(k: &mut Kit, ch: u64, name: &str) {
    k.peer(ch, name);
    k.follow(ch, "d");
}

#[test]
fn presence_from_our_peers_goes_to_a_shared_store_and_not_to_one_we_own() {
    let mut own = Kit::hub();
    own.store(10);
    own.feed(Msg::OpenDoc {
        doc: doc("d"),
        meta: DocMeta::default(),
    });
    own.missing(10, "d");
    subscribed(&mut own, 1, "alice");
    let cmds = own.recv(1, Message::Ephemeral(cursor("alice", 1)));
    assert!(
        messages(&cmds, 10).is_empty(),
        "a store we own hears no presence"
    );

    let mut k = known_shared_with("d");
    subscribed(&mut k, 1, "alice");
    let cmds = k.recv(1, Message::Ephemeral(cursor("alice", 1)));
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::Ephemeral(cursor("alice", 0))],
        "published with the hop spent like any relay"
    );
    // Out of hops: not relayed, so not published either.
    let cmds = k.recv(1, Message::Ephemeral(cursor("alice", 0)));
    assert!(messages(&cmds, 10).is_empty());
}

#[test]
fn presence_from_the_shared_store_reaches_our_peers_and_never_goes_back() {
    let mut k = known_shared_with("d");
    subscribed(&mut k, 2, "bob");
    let cmds = k.recv(10, Message::Ephemeral(cursor("alice", 0)));
    assert_eq!(
        messages(&cmds, 2),
        vec![Message::Ephemeral(cursor("alice", 0))],
        "relayed without spending a hop: the store is a wire, not a peer"
    );
    assert!(
        messages(&cmds, 10).is_empty(),
        "never handed back to the store"
    );
    assert!(events(&cmds).iter().any(|e| matches!(
        e,
        crate::Event::Presence { peer, data: Some(_), .. } if peer.as_str() == "alice"
    )));
    // It expires with its TTL like any presence.
    let cmds = k.tick(31_000);
    assert!(events(&cmds).iter().any(|e| matches!(
        e,
        crate::Event::Presence { peer, data: None, .. } if peer.as_str() == "alice"
    )));
    // Presence claiming to be ours is dropped.
    let cmds = k.recv(10, Message::Ephemeral(cursor("hub", 0)));
    assert!(messages(&cmds, 2).is_empty());
}

/// A node that knows its store is shared (it announced), with `name`
/// open and new.
fn known_shared_with(name: &str) -> Kit {
    let mut k = shared_store_node();
    announce(&mut k);
    k.recv(10, nothing_new(4));
    k.feed(Msg::OpenDoc {
        doc: doc(name),
        meta: DocMeta::default(),
    });
    k.missing(10, name);
    k
}

fn shared_with_docs() -> Kit {
    let mut k = known_shared_with("a");
    k.feed(Msg::LocalChange {
        doc: doc("a"),
        version: vv(&[(1, 1)]),
    });
    k.peer(1, "reader");
    k
}

fn record(id: u64, owner: &str) -> crate::ListenerRecord {
    crate::ListenerRecord {
        id: crate::ListenerId(id),
        owner: crate::PeerId::new(owner),
        filter: Filter::all(),
        floor: Clock(0),
        acked: vec![],
    }
}

#[test]
fn a_pull_for_a_listener_another_server_registered_waits_for_its_record() {
    let mut k = shared_with_docs();
    let id = crate::ListenerId(77);
    let cmds = k.recv(1, Message::ListenerPull { id, limit: 10 });
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::ListenerPull { id, limit: 0 }],
        "the shared store is asked for the listener's record"
    );
    assert!(sent(&cmds, 1).is_empty(), "the reader waits");
    let cmds = k.feed(Msg::ListenerLoaded {
        store: ChannelId(10),
        id,
        record: Some(record(77, "reader")),
        failed: false,
    });
    assert!(
        sent(&cmds, 1)
            .iter()
            .any(|o| matches!(o, crate::Outgoing::Strands { id: got, .. } if *got == id)),
        "answered once the record is in"
    );
    // Known now: the next pull is answered at once.
    let cmds = k.recv(1, Message::ListenerPull { id, limit: 10 });
    assert!(messages(&cmds, 10).is_empty());
}

#[test]
fn a_listener_named_by_its_client_and_unknown_to_the_shared_store_gets_that_id() {
    let mut k = shared_with_docs();
    let id = crate::ListenerId(4242);
    let register = Message::ListenerRegister {
        filter: Filter::all(),
        id: Some(id),
    };
    let cmds = k.recv(1, register);
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::ListenerPull { id, limit: 0 }]
    );
    let cmds = k.feed(Msg::ListenerLoaded {
        store: ChannelId(10),
        id,
        record: None,
        failed: false,
    });
    assert!(messages(&cmds, 1).contains(&Message::ListenerRegistered { id }));
    assert!(messages(&cmds, 10).is_empty(), "the store is asked once");
}

#[test]
fn a_forgotten_listener_is_read_again_from_the_shared_store() {
    let mut k = shared_with_docs();
    let id = crate::ListenerId(77);
    k.recv(1, Message::ListenerPull { id, limit: 10 });
    k.feed(Msg::ListenerLoaded {
        store: ChannelId(10),
        id,
        record: Some(record(77, "reader")),
        failed: false,
    });
    // Another server moved it on: forgotten here, its record is read again.
    k.feed(Msg::ForgetListener(id));
    let cmds = k.recv(1, Message::ListenerPull { id, limit: 10 });
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::ListenerPull { id, limit: 0 }]
    );
    // A store this node owns is the record: nothing is forgotten.
    let mut own = Kit::hub();
    own.peer(1, "reader");
    let registered = own.recv(
        1,
        Message::ListenerRegister {
            filter: Filter::all(),
            id: None,
        },
    );
    assert!(!messages(&registered, 1).is_empty());
    own.feed(Msg::ForgetListener(crate::ListenerId(1)));
    assert!(own.model.listeners.contains_key(&crate::ListenerId(1)));
}

#[test]
fn a_listener_the_store_does_not_know_is_refused_and_another_owners_is_not_taken() {
    let mut k = shared_with_docs();
    k.recv(
        1,
        Message::ListenerPull {
            id: crate::ListenerId(5),
            limit: 10,
        },
    );
    let cmds = k.feed(Msg::ListenerLoaded {
        store: ChannelId(10),
        id: crate::ListenerId(5),
        record: None,
        failed: false,
    });
    assert!(messages(&cmds, 1).iter().any(|m| matches!(
        m,
        Message::Error {
            code: crate::ErrorCode::UnknownListener,
            ..
        }
    )));
    k.recv(
        1,
        Message::ListenerPull {
            id: crate::ListenerId(6),
            limit: 10,
        },
    );
    let cmds = k.feed(Msg::ListenerLoaded {
        store: ChannelId(10),
        id: crate::ListenerId(6),
        record: Some(record(6, "someone-else")),
        failed: false,
    });
    assert!(
        !sent(&cmds, 1)
            .iter()
            .any(|o| matches!(o, crate::Outgoing::Strands { .. })),
        "another peer's listener is not served to this one"
    );
}

#[test]
fn listener_ids_on_a_shared_store_are_drawn_at_random() {
    let mut k = shared_with_docs();
    let cmds = k.recv(
        1,
        Message::ListenerRegister {
            filter: Filter::all(),
            id: None,
        },
    );
    let id = messages(&cmds, 1)
        .into_iter()
        .find_map(|m| match m {
            Message::ListenerRegistered { id } => Some(id),
            _ => None,
        })
        .unwrap();
    assert!(
        id.0 > 1_000_000,
        "{id:?} is a counter's, which another server also hands out"
    );
}

#[test]
fn messages_waiting_on_the_store_are_bounded() {
    let mut k = shared_with_docs();
    let id = crate::ListenerId(9);
    for _ in 0..20 {
        k.recv(1, Message::ListenerPull { id, limit: 1 });
    }
    let waiting = k.model.listener_loads.get(&id).map_or(0, Vec::len);
    assert!(waiting <= 4, "{waiting} messages wait on one listener");
    // Past the bound a message is told to try again, never that the
    // listener is unknown (its client would register it anew).
    let cmds = k.recv(1, Message::ListenerPull { id, limit: 1 });
    assert!(refused_with(&cmds, 1, crate::ErrorCode::RateLimited));
    assert!(!refused_with(&cmds, 1, crate::ErrorCode::UnknownListener));
}

#[test]
fn a_listener_the_store_could_not_read_is_neither_unknown_nor_registered_anew() {
    let mut k = shared_with_docs();
    let id = crate::ListenerId(4343);
    k.recv(
        1,
        Message::ListenerRegister {
            filter: Filter::all(),
            id: Some(id),
        },
    );
    let cmds = k.feed(Msg::ListenerLoaded {
        store: ChannelId(10),
        id,
        record: None,
        failed: true,
    });
    assert!(refused_with(&cmds, 1, crate::ErrorCode::RateLimited));
    assert!(
        !k.model.listeners.contains_key(&id),
        "registered over a record the store may hold"
    );
    assert!(!cmds.iter().any(|c| matches!(c, crate::Cmd::Save(_))));
}

fn changed(name: &str, clock: u64, version: &[(u64, u64)]) -> Message {
    Message::Changes {
        docs: vec![ChangedDoc {
            doc: doc(name),
            version: vv(version),
            clock: Clock(clock),
        }],
        up_to: Clock(clock),
        more: false,
    }
}

fn asks_to_load(cmds: &[crate::Cmd], name: &str) -> bool {
    messages(cmds, 10)
        .iter()
        .any(|m| matches!(m, Message::SyncRequest { doc: d, .. } if *d == doc(name)))
}

#[test]
fn another_servers_write_at_a_clock_we_already_hold_is_still_read() {
    let mut k = shared_store_node();
    announce(&mut k);
    k.recv(10, changed("x", 15, &[(1, 1)]));
    announce(&mut k);
    // Another server wrote x just below our newest clock for it: the row
    // keeps our clock, with a larger version.
    let cmds = k.recv(10, changed("x", 15, &[(1, 1), (2, 1)]));
    assert!(asks_to_load(&cmds, "x"), "the larger version is read");
}

#[test]
fn a_deletion_during_a_feed_reload_does_not_stall_the_feed() {
    let mut k = shared_store_node();
    announce(&mut k);
    k.recv(10, changed("x", 15, &[(1, 1)]));
    announce(&mut k);
    let cmds = k.recv(10, changed("x", 16, &[(1, 2)]));
    assert!(asks_to_load(&cmds, "x"));
    k.feed(Msg::DeleteDoc { doc: doc("x") });
    assert_eq!(
        reads(&announce(&mut k)),
        1,
        "the feed is read again: the deleted document's reload waits no more"
    );
}

#[test]
fn an_answer_to_a_read_that_was_reset_does_not_move_the_position() {
    let mut k = shared_store_node();
    announce(&mut k);
    feed_read_failed(&mut k);
    k.recv(10, nothing_new(50));
    let cmds = announce(&mut k);
    assert_eq!(
        messages(&cmds, 10),
        vec![Message::ChangesSince {
            clock: Clock(4),
            filter: Filter::all()
        }],
        "read again from where the position was"
    );
}

#[test]
fn a_document_another_server_created_keeps_its_metadata_here() {
    let mut k = shared_store_node();
    announce(&mut k);
    let meta = DocMeta {
        doc_type: "note".into(),
        scope: "team-a".into(),
        branch: "main".into(),
    };
    k.feed(Msg::StoreChanged {
        store: ChannelId(10),
        docs: vec![crate::StoredDoc {
            doc: doc("x"),
            meta: meta.clone(),
            version: vv(&[(2, 1)]),
            clock: Clock(15),
        }],
        up_to: Clock(15),
        more: false,
    });
    assert_eq!(
        k.model.docs.get(&doc("x")).map(|d| d.meta.clone()),
        Some(meta),
        "filters by type, scope or branch see it"
    );
}

#[test]
fn a_peer_is_promised_only_what_the_feed_has_read_up_to() {
    let mut k = shared_store_node();
    announce(&mut k);
    // The first page of a read is in (x at 15); the rest is not yet.
    k.recv(
        10,
        Message::Changes {
            docs: vec![ChangedDoc {
                doc: doc("x"),
                version: vv(&[(2, 1)]),
                clock: Clock(15),
            }],
            up_to: Clock(15),
            more: true,
        },
    );
    k.peer(1, "reader");
    let cmds = k.recv(
        1,
        Message::ChangesSince {
            clock: Clock(0),
            filter: Filter::all(),
        },
    );
    let up_to = messages(&cmds, 1).into_iter().find_map(|m| match m {
        Message::Changes { up_to, .. } => Some(up_to),
        _ => None,
    });
    assert_eq!(
        up_to,
        Some(Clock(4)),
        "not past the feed's position: a change below 15 may still be unread"
    );
}
