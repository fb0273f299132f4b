//! Stores: storage-first loading, the primary store's change feed, and
//! store failures taken as facts.
//!
//! ```text
//! peer            node                      stores (each)
//!  | sync-request  |                           |
//!  |-------------->| doc unknown: queue it     |
//!  |               |-- sync-request {empty} -->|  (a load; the shell imports what it held)
//!  |               |<-- loaded | missing ------|  a failed load is asked again, never "missing"
//!  |<--------------| all answered: answer every queued request
//!
//!                 node -- changes-since {seen} --> primary store   (every feed_poll_ms, up to
//!                                                                   feed_poll_quiet_ms while quiet)
//!                      <-- changes {docs, up_to} --                 documents another process
//!                      -- sync-request (reload) -->                 wrote are reloaded; the
//!                                                                   position moves once they are in
//! ```
//! Nothing is created when no store has the document and the requester
//! only asked for it (or may not create it); the requester is told
//! `unavailable` and nothing is kept. A failed write (an
//! append, a record, a purge) is reported and written again with backoff;
//! what it carried is acknowledged to nobody until it is durable.

use super::common::{changed, report};
use super::propagation::propagate;
use super::store_requests::{
    ask_store, feed_active, feed_idle, feed_wait_after, maybe_finish_loading, read_feed,
    retry_delay, schedule_retry, settle_dirty, settle_feed,
};
use crate::effects::{Effects, FollowUp};
use crate::ids::{ChannelId, Clock, DocId};
use crate::io::{Cmd, Event, Level, LoadOutcome, StoreFailure, StoredDoc};
use crate::model::{Doc, Model, Phase, Timer};
use crate::protocol::{Filter, Message};
use crate::version::VersionVector;

/// A store answered a load; the shell already imported what it held.
pub(crate) fn loaded(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    doc: DocId,
    outcome: LoadOutcome,
) {
    if !model.stores.contains(&store) {
        return out.log(Level::Info, format!("{store} is not a store; load ignored"));
    }
    let feed_clock = model.feed_loading.remove(&doc);
    if model.tombstones.contains(&doc) {
        // Never resurrect a deleted document from storage.
        out.log(
            Level::Info,
            format!("{store} still had deleted {doc}; ignored"),
        );
        return settle_feed(model, out);
    }
    if !model.docs.contains_key(&doc) {
        return settle_feed(model, out);
    }
    let held = match outcome {
        LoadOutcome::Found {
            version,
            stored,
            unreadable,
            clock,
            bytes,
            meta,
        } => {
            // What the store holds now is the size (after a compaction,
            // less than counted before); its metadata is the document's.
            if let Some(d) = model.docs.get_mut(&doc) {
                d.bytes = bytes;
                // Memory may not know it (read back on demand); what it
                // knows stays (stores written before they kept it have none).
                if let Some(meta) = meta.filter(|_| d.meta == Default::default()) {
                    d.meta = meta;
                }
            }
            if model.stores.get_min() == Some(&store) {
                super::common::assign_clock(model, &doc, clock);
            }
            if unreadable > 0 {
                report(
                    out,
                    Some(&doc),
                    format!(
                        "{unreadable} stored change(s) of {doc} could not be imported; \
                         they are not counted as held"
                    ),
                );
            }
            Some((version, stored))
        }
        LoadOutcome::Missing => None,
    };
    let Some(d) = model.docs.get_mut(&doc) else {
        return settle_feed(model, out);
    };
    let before = d.version.clone();
    if let Some((version, stored)) = &held {
        // The replica's version is the truth, also when stored data that
        // did not import leaves it with less than the model believed.
        d.version = version.clone();
        d.stored.insert(store, stored.clone());
        d.durable.insert(store, stored.clone());
    } else {
        d.stored.insert(store, VersionVector::new());
        d.durable.insert(store, VersionVector::new());
    }
    let advanced = !before.includes(&d.version);
    match &mut d.phase {
        Phase::Loading { waiting, found, .. } => {
            waiting.remove(&store);
            *found |= held.is_some();
            maybe_finish_loading(model, out, &doc);
        }
        Phase::Ready => {
            if let Some(c) = feed_clock {
                super::common::assign_clock(model, &doc, c);
            }
            if advanced {
                let version = model
                    .docs
                    .get(&doc)
                    .map(|d| d.version.clone())
                    .unwrap_or_default();
                changed(model, &doc);
                out.emit(Event::DocChanged {
                    doc: doc.clone(),
                    version,
                    from: None,
                });
                propagate(model, out, &doc, None);
            } else {
                // The store may hold less than it was thought to: fill the gap.
                super::common::persist(model, out, &doc);
            }
            settle_dirty(model, &doc);
        }
    }
    settle_feed(model, out);
}

/// A store did not answer in time: it is asked again. Nobody is told the
/// document is missing while a store that may hold it has not said so.
pub(crate) fn load_timed_out(model: &mut Model, out: &mut Effects, doc: &DocId) {
    let waiting: Vec<ChannelId> = match model.docs.get(doc).map(|d| &d.phase) {
        Some(Phase::Loading { waiting, .. }) => waiting.iter().copied().collect(),
        _ => return,
    };
    out.log(
        Level::Warn,
        format!(
            "{} store(s) did not answer for {doc} in time; asking again",
            waiting.len()
        ),
    );
    for s in &waiting {
        ask_store(out, *s, doc);
    }
    let at = model
        .now
        .saturating_add(model.config.timing.request_timeout_ms);
    super::timers::set(model, Timer::LoadTimeout(doc.clone()), at);
}

/// Reads the primary store's feed for changes other processes wrote.
pub(crate) fn feed_poll(model: &mut Model, out: &mut Effects) {
    let every = model.config.timing.feed_poll_ms;
    let Some(primary) = model.stores.get_min().copied() else {
        return;
    };
    if every == 0 {
        return;
    }
    // One read at a time: the next starts when this one is in. A look
    // that finds one under way (or its reloads) reads nothing and does
    // not lengthen the wait: it looks again at the shortest.
    if !feed_idle(model) {
        let at = model.now.saturating_add(every);
        return super::timers::set(model, Timer::FeedPoll, at);
    }
    read_feed(model, out, primary);
    let t = &model.config.timing;
    let wait = match model.feed_wait {
        0 => every,
        w => w,
    };
    // Put off further while nothing is found: a find brings it back.
    model.feed_wait = feed_wait_after(t, wait);
    let at = model.now.saturating_add(wait);
    super::timers::set(model, Timer::FeedPoll, at);
}

/// The primary store says another process wrote: read the feed now, or
/// right after the read under way (which may have begun before that write).
pub(crate) fn feed_announced(model: &mut Model, out: &mut Effects, store: ChannelId) {
    if model.stores.get_min() != Some(&store) {
        return out.log(
            Level::Info,
            format!("{store} is not the primary store; announcement ignored"),
        );
    }
    model.store_shared = true;
    feed_active(model);
    if feed_idle(model) {
        read_feed(model, out, store);
    } else {
        model.feed_again = true;
    }
}

/// The primary store's feed since our position: reload what another process changed.
pub(crate) fn feed_changes(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    docs: Vec<StoredDoc>,
    up_to: Clock,
    more: bool,
) {
    // An answer to a read that was reset (a load it asked for failed) is
    // stale: its position must not count.
    if model.stores.get_min() != Some(&store) || !model.feed_reading {
        return;
    }
    let mut found = false;
    for cd in docs {
        if model.tombstones.contains(&cd.doc) || !cd.doc.is_valid() {
            continue;
        }
        let shared = model.store_shared;
        match model.docs.get(&cd.doc) {
            // Already here: nothing to read. (Our own clock for it says so
            // only when nobody else writes: on a shared store another
            // server may have written it just below our last append.) But
            // the store's clock for it is taken: another server's write of
            // what we hold moved its row up, and a walk of the feed from
            // below our memory floor finds it only there.
            Some(d) if d.version.includes(&cd.version) || (!shared && d.clock >= cd.clock) => {
                super::common::assign_clock(model, &cd.doc, cd.clock);
            }
            // Being loaded anyway: that load reads the change too.
            Some(d) if !d.is_ready() => {}
            Some(_) => {
                found = true;
                model.feed_loading.insert(cd.doc.clone(), cd.clock);
                ask_store(out, store, &cd.doc);
            }
            None => {
                found = true;
                discovered_in_store(model, out, store, cd);
            }
        }
    }
    if found {
        feed_active(model);
    }
    model.feed_target = Some(up_to);
    if more {
        out.send(
            store,
            Message::ChangesSince {
                clock: up_to,
                filter: Filter::all(),
            },
        );
    } else {
        model.feed_reading = false;
        settle_feed(model, out);
    }
}

/// A document another process created: known from its metadata, like a
/// restored one; its replica is loaded when first needed.
fn discovered_in_store(model: &mut Model, out: &mut Effects, store: ChannelId, cd: StoredDoc) {
    let mut d = Doc::new(cd.meta);
    d.version = cd.version.clone();
    d.stored.insert(store, cd.version.clone());
    d.durable.insert(store, cd.version);
    model.docs.insert(cd.doc.clone(), d);
    super::common::assign_clock(model, &cd.doc, cd.clock);
    out.follow(FollowUp::DocReady {
        doc: cd.doc,
        announce: Some(None),
        ask_remotes: false,
        queued: Vec::new(),
        propagate: true,
    });
}

/// A store operation failed: reported, and tried again.
pub(crate) fn failed(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    failure: StoreFailure,
) {
    if !model.stores.contains(&store) {
        return;
    }
    match failure {
        StoreFailure::Load { doc, reason } => {
            report(
                out,
                Some(&doc),
                format!("{store} could not load {doc}: {reason}; asking again"),
            );
            if model.feed_loading.remove(&doc).is_some() {
                // The feed is read again from where it was.
                model.feed_target = None;
                model.feed_loading.clear();
                model.feed_reading = false;
            }
            if model.docs.get(&doc).is_some_and(|d| !d.is_ready()) {
                let at = model.now.saturating_add(retry_delay(model));
                super::timers::set(model, Timer::LoadTimeout(doc), at);
            }
        }
        StoreFailure::Append { batch, reason } => {
            let Some(f) = model.take_in_flight(&batch) else {
                return;
            };
            super::common::write_unsettled(model, store, &f);
            report(
                out,
                Some(&f.doc),
                format!("{store} could not store {}: {reason}; writing again", f.doc),
            );
            if let Some(d) = model.docs.get_mut(&f.doc) {
                let durable = d.durable.get(&store).cloned().unwrap_or_default();
                d.stored.insert(store, durable);
                model.retry.docs.insert(f.doc);
            }
            schedule_retry(model);
        }
        StoreFailure::Read { job, reason } => {
            out.log(
                Level::Warn,
                format!("{store}: reading the index of documents failed: {reason}"),
            );
            super::on_demand::read_failed(model, out, job, &reason);
        }
        StoreFailure::Feed { reason } => {
            out.log(
                Level::Warn,
                format!("{store}: reading the change feed failed: {reason}"),
            );
            model.feed_target = None;
            model.feed_loading.clear();
            model.feed_reading = false;
        }
        StoreFailure::Save { record, reason } => {
            report(
                out,
                None,
                format!(
                    "{store} could not save {}: {reason}; saving again",
                    record.key()
                ),
            );
            model.retry.records.insert(record.key(), record);
            schedule_retry(model);
        }
        StoreFailure::Purge { doc, reason } => {
            report(
                out,
                Some(&doc),
                format!("{store} could not drop deleted {doc}: {reason}; trying again"),
            );
            model.retry.purges.insert(doc);
            schedule_retry(model);
        }
    }
}

/// Writes again what failed.
pub(crate) fn retry_due(model: &mut Model, out: &mut Effects) {
    let retry = std::mem::take(&mut model.retry);
    model.retry.failures = retry.failures;
    for (_, record) in retry.records {
        out.cmd(Cmd::Save(record));
    }
    for doc in retry.purges {
        out.cmd(Cmd::Purge { doc });
    }
    super::on_demand::retry(model, out);
    for doc in retry.docs {
        if model.docs.get(&doc).is_some_and(|d| d.is_ready()) {
            super::common::persist(model, out, &doc);
        } else {
            // Nothing of it is left to write (a deleted document's tombstone
            // is its newer change): cursors need not wait for it.
            model.unsettled_writes.remove(&doc);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::effects::FollowUp;
    use crate::tests::kit::*;
    use crate::{ChannelId, Clock, LoadOutcome, StoredDoc};

    #[test]
    fn a_store_answer_that_finishes_a_load_leaves_the_waiting_requests_to_a_follow_up() {
        let mut k = Kit::hub();
        k.store(10);
        k.peer(1, "alice");
        k.follow(1, "d");
        let outcome = LoadOutcome::Found {
            version: vv(&[(1, 1)]),
            stored: vv(&[(1, 1)]),
            unreadable: 0,
            clock: Clock(1),
            bytes: 0,
            meta: None,
        };
        let (cmds, follow_ups) =
            k.handle(|m, o| super::loaded(m, o, ChannelId(10), doc("d"), outcome));
        assert!(
            messages(&cmds, 1).is_empty(),
            "the handler answers nobody itself"
        );
        let [FollowUp::DocReady {
            doc: d,
            announce: None,
            ask_remotes: false,
            queued,
            propagate: true,
        }] = follow_ups.as_slice()
        else {
            panic!("one DocReady follow-up expected, got {follow_ups:?}");
        };
        assert_eq!((d, queued.len()), (&doc("d"), 1));
    }

    #[test]
    fn a_document_another_process_created_is_announced_in_a_follow_up() {
        let mut k = Kit::hub();
        k.store(10);
        k.model.feed_reading = true;
        let found = StoredDoc {
            doc: doc("d"),
            meta: Default::default(),
            version: vv(&[(1, 1)]),
            clock: Clock(3),
        };
        let (_, follow_ups) =
            k.handle(|m, o| super::feed_changes(m, o, ChannelId(10), vec![found], Clock(3), false));
        assert_eq!(
            follow_ups,
            vec![FollowUp::DocReady {
                doc: doc("d"),
                announce: Some(None),
                ask_remotes: false,
                queued: Vec::new(),
                propagate: true,
            }]
        );
        assert_eq!(k.model.feed_seen, Clock(3));
    }
}
