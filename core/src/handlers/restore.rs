//! Start-up: what the primary store remembered comes back into the model.

use crate::ids::{ChannelId, Clock};
use crate::io::{StateRecord, StoredDoc};
use crate::model::{Doc, Model};

pub(crate) fn restored(
    model: &mut Model,
    store: ChannelId,
    clock: Clock,
    floor: Clock,
    docs: Vec<StoredDoc>,
    records: Vec<StateRecord>,
) {
    model.clock = model.clock.max(clock);
    if model.stores.get_min() == Some(&store) {
        super::store_requests::follow_feed(model, clock);
        // What the store did not send stays there until asked for.
        model.memory_floor = model.memory_floor.max(floor.min(clock));
    }
    for s in docs {
        if !s.doc.is_valid() || model.tombstones.contains(&s.doc) {
            continue;
        }
        let mut d = model
            .docs
            .get(&s.doc)
            .cloned()
            .unwrap_or_else(|| Doc::new(s.meta.clone()));
        if !d.is_ready() {
            continue;
        }
        d.version = d.version.merge(&s.version);
        d.stored.insert(store, s.version.clone());
        d.durable.insert(store, s.version);
        let doc = s.doc.clone();
        model.docs.insert(doc.clone(), d);
        super::common::assign_clock(model, &doc, s.clock);
    }
    for r in records {
        match r {
            StateRecord::Cursor { peer, cursor } => {
                let p = model
                    .peers
                    .entry(peer)
                    .or_insert_with(crate::model::Peer::new);
                p.cursor = cursor;
            }
            StateRecord::Listener(l) => model.restore_listener(l),
            StateRecord::ListenerRemoved(id) => {
                model.listeners.remove(&id);
            }
            StateRecord::Tombstone(doc) => {
                if let Some(d) = model.docs.remove(&doc) {
                    model.by_clock.remove(&d.clock);
                }
                model.tombstones.insert(doc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{
        ChannelId, Clock, Filter, ListenerId, ListenerRecord, PeerId, StateRecord, StoredDoc,
    };

    #[test]
    fn what_the_primary_store_remembered_comes_back_and_the_feed_is_followed_from_its_clock() {
        let mut k = Kit::hub();
        k.store(10);
        let stored = StoredDoc {
            doc: doc("d"),
            meta: Default::default(),
            version: vv(&[(1, 2)]),
            clock: Clock(4),
        };
        let listener = ListenerRecord {
            id: ListenerId(7),
            owner: PeerId::new("svc"),
            filter: Filter::all(),
            floor: Clock(0),
            acked: Vec::new(),
        };
        let (_, follow_ups) = k.handle(|m, _| {
            super::restored(
                m,
                ChannelId(10),
                Clock(4),
                Clock(0),
                vec![stored],
                vec![StateRecord::Listener(listener)],
            )
        });
        assert!(follow_ups.is_empty());
        assert_eq!(k.model.docs.get(&doc("d")).map(|d| d.clock), Some(Clock(4)));
        assert!(k.model.listeners.contains_key(&ListenerId(7)));
        assert_eq!(k.model.next_listener, 8);
        assert_eq!(k.model.feed_seen, Clock(4));
    }
}
