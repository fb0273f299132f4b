//! Start-up: what the primary store remembered comes back into the model.

use crate::ids::{ChannelId, Clock};
use crate::io::{StateRecord, StoredDoc};
use crate::model::{Doc, Model};

pub(crate) fn restored(
    model: &mut Model,
    store: ChannelId,
    clock: Clock,
    docs: Vec<StoredDoc>,
    records: Vec<StateRecord>,
) {
    model.clock = model.clock.max(clock);
    if model.stores.get_min() == Some(&store) {
        super::store_requests::follow_feed(model, clock);
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
                    .or_insert_with(|| crate::model::Peer::new(crate::protocol::PeerKind::Service));
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
