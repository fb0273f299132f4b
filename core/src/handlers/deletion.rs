//! Deletion with tombstones.
//!
//! ```text
//! peer -- delete {doc} --> node   delete permitted: tombstone, purge stores,
//!      <-- delete-result --        tell subscribers; otherwise "ignored"
//! ```
//! A tombstone is persisted: no store answer, late peer or push brings the
//! document back. A deletion is confirmed (to the asker, the application,
//! and by dropping the data) only once its tombstone is durable, so a crash
//! before that cannot bring back what was said to be gone.

use super::common::{access, fail_waiters};
use crate::effects::Effects;
use crate::ids::{ChannelId, DocId, PeerId};
use crate::io::{Cmd, Event, Level, StateRecord};
use crate::model::Model;
use crate::protocol::{DeleteOutcome, Message, RevisionStatus};

pub(crate) fn delete_local(model: &mut Model, out: &mut Effects, doc: DocId) {
    if !doc.is_valid() {
        return super::common::report(
            out,
            Some(&doc),
            format!("{doc:?} is not a valid document id"),
        );
    }
    perform(model, out, &doc, None);
}

pub(crate) fn delete_received(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    doc: DocId,
) {
    if !access(model, peer, &doc).delete {
        out.log(Level::Warn, format!("{peer} may not delete {doc}; ignored"));
        let outcome = DeleteOutcome::Ignored;
        return out.send(channel, Message::DeleteResult { doc, outcome });
    }
    perform(model, out, &doc, Some(peer));
    match model.deleting.get_mut(&doc) {
        // Answered once the tombstone is durable.
        Some(waiting) => waiting.push(channel),
        None => {
            let outcome = DeleteOutcome::Deleted;
            out.send(channel, Message::DeleteResult { doc, outcome });
        }
    }
}

fn perform(model: &mut Model, out: &mut Effects, doc: &DocId, source: Option<&PeerId>) {
    if model.tombstones.contains(doc) {
        return;
    }
    fail_waiters(model, out, doc, RevisionStatus::Denied);
    let mut tell: Vec<PeerId> = model
        .docs
        .get(doc)
        .map(|d| d.subscribers.iter().cloned().collect())
        .unwrap_or_default();
    tell.extend(
        model
            .peers
            .iter()
            .filter(|(_, p)| p.dialed)
            .map(|(id, _)| id.clone()),
    );
    tell.sort();
    tell.dedup();
    if let Some(d) = model.docs.remove(doc) {
        if d.clock.0 > 0 {
            model.by_clock.remove(&d.clock);
        }
    }
    model.dirty.remove(doc);
    // Its deletion is what peers hear of now, not the write in doubt.
    model.unsettled_writes.remove(doc);
    model.tombstones.insert(doc.clone());
    // A feed read waiting for this document's reload waits no more.
    if model.feed_loading.remove(doc).is_some() {
        super::store_requests::settle_feed(model, out);
    }
    for peer in tell.iter().filter(|p| Some(*p) != source) {
        if let Some(ch) = super::common::peer_channel(model, peer) {
            out.send(ch, Message::Delete { doc: doc.clone() });
        }
    }
    super::presence::forget_doc(model, out, doc);
    out.cmd(Cmd::Save(StateRecord::Tombstone(doc.clone())));
    if model.stores.is_empty() {
        confirm(model, out, doc, Vec::new());
    } else {
        model.deleting.insert(doc.clone(), Vec::new());
    }
}

/// The primary store holds the tombstone: the deletion is confirmed.
pub(crate) fn tombstone_durable(model: &mut Model, out: &mut Effects, doc: &DocId) {
    if let Some(waiting) = model.deleting.remove(doc) {
        confirm(model, out, doc, waiting);
    }
}

fn confirm(model: &mut Model, out: &mut Effects, doc: &DocId, waiting: Vec<ChannelId>) {
    out.cmd(Cmd::Purge { doc: doc.clone() });
    out.emit(Event::DocDeleted { doc: doc.clone() });
    for channel in waiting {
        if model.channels.contains_key(&channel) {
            let outcome = DeleteOutcome::Deleted;
            out.send(
                channel,
                Message::DeleteResult {
                    doc: doc.clone(),
                    outcome,
                },
            );
        }
    }
}

/// The primary store, shared with other processes, says one of them
/// deleted a document: it is deleted here too, and our peers are told.
pub(crate) fn deleted_in_store(model: &mut Model, out: &mut Effects, store: ChannelId, doc: DocId) {
    if model.stores.get_min() != Some(&store) || !doc.is_valid() {
        return out.log(
            Level::Info,
            format!("{store} reported a deletion of {doc:?} it may not make; ignored"),
        );
    }
    if model.tombstones.contains(&doc) {
        return;
    }
    out.log(
        Level::Info,
        format!("{doc} was deleted by another process on {store}"),
    );
    // Another process writes: its next writes are read at the shortest wait.
    super::store_requests::feed_active(model);
    perform(model, out, &doc, None);
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;

    #[test]
    fn a_deletion_keeps_a_tombstone_and_saves_it() {
        let mut k = Kit::hub();
        k.create(&[], "d");
        let (cmds, follow_ups) = k.handle(|m, o| super::delete_local(m, o, doc("d")));
        assert!(follow_ups.is_empty());
        assert!(k.model.tombstones.contains(&doc("d")));
        assert!(cmds.iter().any(|c| matches!(c, crate::Cmd::Save(_))));
    }
}
