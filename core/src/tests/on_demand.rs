//! Metadata on demand: what is below the memory floor is read from the
//! store's index when a walk or a listing needs it.

use super::kit::*;
use crate::{
    ChangedDoc, ChannelId, Clock, Cmd, Config, Filter, ListenerId, Message, Msg, Outgoing,
    ReadRange, StoreRead, StoredDoc,
};

const STORE: u64 = 10;

fn stored(d: &str, clock: u64) -> StoredDoc {
    StoredDoc {
        doc: doc(d),
        meta: Default::default(),
        version: vv(&[(clock, 1)]),
        clock: Clock(clock),
    }
}

/// A hub whose store holds `d1`..`d5` at clocks 1..5, of which it read at
/// start only those above `floor`.
fn hub_restored_above(config: Config, floor: u64) -> Kit {
    let mut k = Kit::new(config);
    k.store(STORE);
    k.feed(Msg::Restored {
        store: ChannelId(STORE),
        clock: Clock(5),
        floor: Clock(floor),
        docs: (1..=5)
            .filter(|c| *c > floor)
            .map(|c| stored(&format!("d{c}"), c))
            .collect(),
        records: Vec::new(),
    });
    k
}

fn reads(cmds: &[Cmd]) -> Vec<StoreRead> {
    sent(cmds, STORE)
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Read(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn answer(k: &mut Kit, read: &StoreRead, docs: Vec<StoredDoc>) -> Vec<Cmd> {
    k.feed(Msg::StoreRead {
        store: ChannelId(STORE),
        job: read.job,
        docs,
    })
}

fn changes(cmds: &[Cmd], ch: u64) -> Option<(Vec<String>, Clock, bool)> {
    messages(cmds, ch).into_iter().find_map(|m| match m {
        Message::Changes { docs, up_to, more } => Some((
            docs.iter()
                .map(|d: &ChangedDoc| d.doc.to_string())
                .collect(),
            up_to,
            more,
        )),
        _ => None,
    })
}

#[test]
fn a_changes_since_from_below_the_floor_is_answered_from_the_stores_index_then_memory() {
    let mut k = hub_restored_above(Config::new("hub"), 3);
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::ChangesSince {
            clock: Clock(1),
            filter: Filter::all(),
        },
    );
    assert_eq!(
        changes(&cmds, 1),
        None,
        "nothing is answered before the read"
    );
    let read = reads(&cmds).pop().expect("the store's index is read");
    assert_eq!(
        read.range,
        ReadRange::Clocks {
            after: Clock(1),
            up_to: Clock(3),
            newest_first: false
        }
    );
    let cmds = answer(&mut k, &read, vec![stored("d2", 2), stored("d3", 3)]);
    let (docs, up_to, more) = changes(&cmds, 1).expect("answered once read");
    assert_eq!(docs, vec!["d2", "d3", "d4", "d5"]);
    assert_eq!((up_to, more), (Clock(5), false));
    // Nothing read for an answer stays in memory.
    assert!(!k.model.docs.contains_key(&doc("d2")));
}

#[test]
fn a_full_page_from_the_stores_index_is_the_whole_answer_and_says_more_follow() {
    let mut config = Config::new("hub");
    config.timing.changes_page = 2;
    let mut k = hub_restored_above(config, 3);
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::ChangesSince {
            clock: Clock(0),
            filter: Filter::all(),
        },
    );
    let read = reads(&cmds).pop().expect("the store's index is read");
    let cmds = answer(&mut k, &read, vec![stored("d1", 1), stored("d2", 2)]);
    assert_eq!(
        changes(&cmds, 1),
        Some((vec!["d1".into(), "d2".into()], Clock(2), true))
    );
    // From there, one more read: d3, then memory's d4 fills the page.
    let cmds = k.recv(
        1,
        Message::ChangesSince {
            clock: Clock(2),
            filter: Filter::all(),
        },
    );
    let read = reads(&cmds).pop().expect("still below the floor");
    let cmds = answer(&mut k, &read, vec![stored("d3", 3)]);
    assert_eq!(
        changes(&cmds, 1),
        Some((vec!["d3".into(), "d4".into()], Clock(4), true))
    );
}

#[test]
fn idle_metadata_past_the_bound_is_forgotten_oldest_first_and_a_listing_still_names_it() {
    let mut config = Config::new("hub");
    config.bounds.idle_metadata = 2;
    let mut k = hub_restored_above(config, 0);
    assert_eq!(k.model.docs.len(), 5);
    k.feed(Msg::Tick);
    let held: Vec<String> = k.model.docs.keys().map(|d| d.to_string()).collect();
    assert_eq!(held, vec!["d4", "d5"], "the three changed longest ago go");
    assert_eq!(k.model.memory_floor, Clock(3));
    k.peer(1, "alice");
    let cmds = k.recv(
        1,
        Message::ListDocs {
            filter: Filter::all(),
            after: Some(doc("d1")),
        },
    );
    let read = reads(&cmds).pop().expect("the store's index by id is read");
    assert_eq!(
        read.range,
        ReadRange::Ids {
            after: Some(doc("d1"))
        }
    );
    let rows = (2..=5).map(|c| stored(&format!("d{c}"), c)).collect();
    let cmds = answer(&mut k, &read, rows);
    let listed = messages(&cmds, 1).into_iter().find_map(|m| match m {
        Message::DocList { docs, more } => Some((
            docs.iter().map(|d| d.doc.to_string()).collect::<Vec<_>>(),
            more,
        )),
        _ => None,
    });
    assert_eq!(
        listed,
        Some((
            vec!["d2".into(), "d3".into(), "d4".into(), "d5".into()],
            false
        ))
    );
}

#[test]
fn a_listener_behind_the_floor_waits_until_the_store_brought_it_into_memory() {
    let mut k = hub_restored_above(Config::new("hub"), 3);
    k.peer(1, "svc");
    k.recv(
        1,
        Message::ListenerRegister {
            filter: Filter::all(),
            id: None,
        },
    );
    let cmds = k.recv(
        1,
        Message::ListenerPull {
            id: ListenerId(1),
            limit: 100,
        },
    );
    assert!(
        !sent(&cmds, 1)
            .iter()
            .any(|o| matches!(o, Outgoing::Strands { .. })),
        "the pull waits"
    );
    let read = reads(&cmds).pop().expect("the floor is brought down");
    assert_eq!(
        read.range,
        ReadRange::Clocks {
            after: Clock(0),
            up_to: Clock(3),
            newest_first: true
        }
    );
    let rows = vec![stored("d3", 3), stored("d2", 2), stored("d1", 1)];
    let cmds = answer(&mut k, &read, rows);
    assert_eq!(k.model.memory_floor, Clock(0));
    let items = sent(&cmds, 1).into_iter().find_map(|o| match o {
        Outgoing::Strands { items, .. } => {
            Some(items.iter().map(|i| i.doc.to_string()).collect::<Vec<_>>())
        }
        _ => None,
    });
    assert_eq!(
        items,
        Some(vec![
            "d1".into(),
            "d2".into(),
            "d3".into(),
            "d4".into(),
            "d5".into()
        ])
    );
}

#[test]
fn a_writer_that_may_not_create_still_writes_to_a_document_memory_forgot() {
    let mut config = Config::new("hub");
    let may_not_create = crate::Access {
        create: false,
        ..crate::Access::ALL
    };
    config.rules = crate::Rules::allow_all().with(
        crate::Pattern::Exact("eve".into()),
        crate::Pattern::Any,
        may_not_create,
    );
    let mut k = hub_restored_above(config, 3);
    k.peer(1, "eve");
    let update = |d: &str| Message::Update {
        doc: doc(d),
        batch: crate::BatchId(1),
        data: crate::Payload::new(vec![1]),
        version: vv(&[(9, 1)]),
    };
    // d1 is only in the store: it is looked up, not refused.
    let cmds = k.recv(1, update("d1"));
    let denied = |cmds: &[Cmd]| {
        messages(cmds, 1).iter().any(|m| {
            matches!(
                m,
                Message::Ack {
                    status: crate::AckStatus::PermissionDenied,
                    ..
                }
            )
        })
    };
    assert!(!denied(&cmds));
    assert!(messages(&cmds, STORE)
        .iter()
        .any(|m| matches!(m, Message::SyncRequest { doc: d, .. } if *d == doc("d1"))));
    let cmds = k.found(STORE, "d1", vv(&[(1, 1)]));
    assert!(
        !denied(&cmds) && !imports(&cmds).is_empty(),
        "imported once found"
    );
    // One no store has is still not created by eve.
    k.recv(1, update("x"));
    let cmds = k.missing(STORE, "x");
    assert!(denied(&cmds));
}

#[test]
fn a_document_another_server_wrote_again_is_listed_at_its_new_clock_from_below_the_floor() {
    let mut k = hub_restored_above(Config::new("hub"), 3);
    k.model.store_shared = true;
    k.peer(1, "alice");
    k.follow(1, "d1");
    k.found(STORE, "d1", vv(&[(1, 1)]));
    assert_eq!(
        k.model.docs.get(&doc("d1")).map(|d| d.clock),
        Some(Clock(1))
    );
    // Another server wrote d1 again (what we hold already): the store's
    // row for it moved from clock 1 to 6, and the feed says so.
    k.model.feed_reading = true;
    k.handle(|m, o| {
        crate::handlers::storage::feed_changes(
            m,
            o,
            ChannelId(STORE),
            vec![StoredDoc {
                clock: Clock(6),
                ..stored("d1", 1)
            }],
            Clock(6),
            false,
        )
    });
    k.peer(2, "bob");
    let cmds = k.recv(
        2,
        Message::ChangesSince {
            clock: Clock(0),
            filter: Filter::all(),
        },
    );
    let read = reads(&cmds)
        .pop()
        .expect("below the floor: the index is read");
    // The store's index below the floor no longer holds d1: it is at 6.
    let cmds = answer(&mut k, &read, vec![stored("d2", 2), stored("d3", 3)]);
    let (docs, up_to, _) = changes(&cmds, 2).expect("answered once read");
    assert_eq!(docs, vec!["d2", "d3", "d4", "d5", "d1"]);
    assert_eq!(up_to, Clock(6));
}
