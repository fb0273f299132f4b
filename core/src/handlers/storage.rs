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
//!                 node -- changes-since {seen} --> primary store   (every feed_poll_ms)
//!                      <-- changes {docs, up_to} --                 documents another process
//!                      -- sync-request (reload) -->                 wrote are reloaded; the
//!                                                                   position moves once they are in
//! ```
//! Nothing is created when no store has the document and the requester
//! only asked for it (or may not create it); the requester is told
//! `unavailable` and nothing is kept. A failed write (an
//! append, a record, a purge) is reported and written again with backoff;
//! what it carried is acknowledged to nobody until it is durable.

use super::common::{access, changed, propagate, report};
use crate::ids::{ChannelId, Clock, DocId, PeerId};
use crate::io::{Cmd, Event, Level, LoadOutcome, StoreFailure, StoredDoc};
use crate::model::{Doc, LoadReason, Model, Phase, Timer, WaitingRequest};
use crate::out::Out;
use crate::protocol::{AckStatus, DocMeta, Filter, Message, Reply};
use crate::version::VersionVector;

fn ask_store(out: &mut Out, store: ChannelId, doc: &DocId) {
    out.send(
        store,
        Message::SyncRequest {
            doc: doc.clone(),
            version: VersionVector::new(),
            bidirectional: false,
        },
    );
}

pub(crate) fn start_loading(
    model: &mut Model,
    out: &mut Out,
    doc: &DocId,
    meta: DocMeta,
    reason: LoadReason,
    creator: Option<PeerId>,
    first: Option<WaitingRequest>,
) {
    let mut d = Doc::new(meta);
    d.phase = Phase::Loading {
        waiting: model.stores.clone(),
        queued: first.into_iter().collect(),
        found: false,
        reason,
        creator,
    };
    model.docs.insert(doc.clone(), d);
    let at = model
        .now
        .saturating_add(model.config.timing.request_timeout_ms);
    super::timers::set(model, Timer::LoadTimeout(doc.clone()), at);
    let stores: Vec<ChannelId> = model.stores.iter().copied().collect();
    for s in stores {
        ask_store(out, s, doc);
    }
    maybe_finish_loading(model, out, doc);
}

/// A store answered a load; the shell already imported what it held.
pub(crate) fn loaded(
    model: &mut Model,
    out: &mut Out,
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
        } => {
            // What the store holds now is the size (after a compaction,
            // less than counted before).
            if let Some(d) = model.docs.get_mut(&doc) {
                d.bytes = bytes;
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

/// A document is clean again when the primary store holds all of it.
fn settle_dirty(model: &mut Model, doc: &DocId) {
    let primary = model.stores.get_min().copied();
    let clean = model.docs.get(doc).is_some_and(|d| {
        primary.is_some_and(|p| d.durable.get(&p).is_some_and(|v| v.includes(&d.version)))
    });
    if clean {
        model.dirty.remove(doc);
    }
}

/// Once every store answered, the document is ready (or unavailable) and
/// queued requests are answered in order.
/// Counts a lookup of `doc` against `peer`; `false` when it already has
/// as many in flight as it may. Lookups that ended by a way that did not
/// release them are pruned here, so the count cannot leak.
pub(crate) fn reserve_lookup(model: &mut Model, peer: &PeerId, doc: &DocId) -> bool {
    let most = model.config.bounds.lookups_per_peer;
    let Some(p) = model.peers.get(peer) else {
        return true;
    };
    let mut lookups = p.lookups.clone();
    if lookups.len() >= most {
        lookups = lookups
            .into_iter()
            .filter(|d| {
                model
                    .docs
                    .get(d)
                    .is_some_and(|x| matches!(x.phase, Phase::Loading { .. }))
            })
            .collect();
    }
    let room = lookups.len() < most;
    if room {
        lookups.insert(doc.clone());
    }
    if let Some(p) = model.peers.get_mut(peer) {
        p.lookups = lookups;
    }
    room
}

pub(crate) fn maybe_finish_loading(model: &mut Model, out: &mut Out, doc: &DocId) {
    let Some(d) = model.docs.get(doc) else {
        return;
    };
    let Phase::Loading {
        waiting,
        queued,
        found,
        reason,
        creator,
    } = &d.phase
    else {
        return;
    };
    if !waiting.is_empty() {
        return;
    }
    let (queued, found, reason, creator) = (queued.clone(), *found, *reason, creator.clone());
    if let Some(p) = creator.as_ref().and_then(|c| model.peers.get_mut(c)) {
        p.lookups.remove(doc);
    }
    // Reading never creates: a network peer creates a document by writing it.
    let writes = queued
        .iter()
        .any(|q| !matches!(q, WaitingRequest::Sync { .. }));
    let may_create = match (reason, &creator) {
        (LoadReason::Open, _) => true,
        (LoadReason::Network, Some(p)) => writes && access(model, p, doc).create,
        (LoadReason::Network, None) => false,
    };
    super::timers::cancel(model, &Timer::LoadTimeout(doc.clone()));
    if !found && !may_create {
        model.docs.remove(doc);
        refuse_queued(model, out, doc, queued, None);
        return;
    }
    if let (false, LoadReason::Network, Some(p)) = (found, reason, &creator) {
        // Writes too large for any document create nothing (nor count).
        let fitting = queued.iter().any(|q| match q {
            WaitingRequest::Update { data, .. } => {
                super::quotas::fits(model, p, doc, data.len()).is_ok()
            }
            _ => true,
        });
        if !fitting {
            model.docs.remove(doc);
            for q in queued {
                if let WaitingRequest::Update {
                    channel,
                    batch,
                    data,
                    ..
                } = q
                {
                    let most = super::quotas::fits(model, p, doc, data.len())
                        .err()
                        .unwrap_or(0);
                    super::sync::refuse_too_large(model, out, channel, p, doc, batch, most);
                }
            }
            return;
        }
        if let Err(wait) = super::quotas::create(model, p) {
            model.docs.remove(doc);
            refuse_queued(model, out, doc, queued, Some(wait));
            return;
        }
    }
    if let Some(d) = model.docs.get_mut(doc) {
        d.phase = Phase::Ready;
    }
    if !found {
        changed(model, doc);
        // A queued update or push persists with its import; an empty write first would be wasted.
        let brings_data = queued
            .iter()
            .any(|q| !matches!(q, WaitingRequest::Sync { .. }));
        if !brings_data {
            super::common::persist(model, out, doc);
        }
    } else {
        settle_dirty(model, doc);
    }
    if reason == LoadReason::Open {
        let version = model
            .docs
            .get(doc)
            .map(|d| d.version.clone())
            .unwrap_or_default();
        out.emit(Event::DocReady {
            doc: doc.clone(),
            version,
        });
    }
    if !found {
        // Created here, opened or written by a peer: the peers that follow
        // no filter hear of it (those that do get its data).
        super::changes::announce_but(model, out, doc, creator.as_ref());
    }
    if reason == LoadReason::Open {
        super::sync::request_from_remotes(model, out, doc);
    }
    // Answer the waiting requesters first: propagation then skips them.
    for q in queued {
        replay_queued(model, out, doc, q);
    }
    if found {
        // Local edits made while loading, or a store that lacks what another had.
        propagate(model, out, doc, None);
    }
}

fn replay_queued(model: &mut Model, out: &mut Out, doc: &DocId, q: WaitingRequest) {
    let channel = match &q {
        WaitingRequest::Sync { channel, .. }
        | WaitingRequest::Update { channel, .. }
        | WaitingRequest::Push { channel, .. } => *channel,
    };
    // Requests from a channel that closed meanwhile are dropped.
    let Some(peer) = super::common::established_peer(model, channel) else {
        return;
    };
    match q {
        WaitingRequest::Sync {
            version,
            bidirectional,
            ..
        } => super::sync::answer(model, out, channel, &peer, doc, version, bidirectional),
        WaitingRequest::Update {
            batch,
            data,
            version,
            ..
        } => super::sync::take_data(model, out, channel, peer, doc.clone(), batch, data, version),
        WaitingRequest::Push {
            job, index, data, ..
        } => super::listeners::replay_push(model, out, doc, &peer, (channel, job, index, data)),
    }
}

/// Answers what waited for a document that is not created after all: no
/// store has it and asking does not create it, or (`rate_limited`: the
/// wait in ms) its creator is past its documents-per-hour quota.
fn refuse_queued(
    model: &mut Model,
    out: &mut Out,
    doc: &DocId,
    queued: Vec<WaitingRequest>,
    rate_limited: Option<crate::io::Millis>,
) {
    let status = match rate_limited {
        None => {
            out.log(
                Level::Info,
                format!("no store has {doc}; it is not created by asking for it"),
            );
            AckStatus::PermissionDenied
        }
        Some(wait) => {
            out.log(
                Level::Info,
                format!("{doc} not created: its creator is past its quota for {wait} ms"),
            );
            AckStatus::RateLimited
        }
    };
    for q in queued {
        match q {
            WaitingRequest::Sync { channel, .. } if model.channels.contains_key(&channel) => {
                out.send(
                    channel,
                    Message::SyncResponse {
                        doc: doc.clone(),
                        batch: crate::ids::BatchId(0),
                        reply: Reply::Unavailable,
                        version: VersionVector::new(),
                    },
                );
                // Presence lives before anyone writes: a late joiner still sees it.
                if let Some(peer) = super::common::established_peer(model, channel) {
                    super::ephemeral::send_existing(model, out, doc, channel, &peer);
                }
            }
            WaitingRequest::Update { channel, batch, .. }
                if model.channels.contains_key(&channel) =>
            {
                if let Some(wait) = rate_limited {
                    super::quotas::tell_refused(
                        model,
                        out,
                        channel,
                        format!("too many documents created: retry after {wait} ms"),
                        crate::ErrorCode::RateLimited,
                    );
                }
                out.send(
                    channel,
                    Message::Ack {
                        batch,
                        status,
                        clock: None,
                    },
                )
            }
            WaitingRequest::Push { job, index, .. } => {
                let denied = crate::protocol::Revision {
                    doc: doc.clone(),
                    version: VersionVector::new(),
                    clock: Clock(0),
                    status: crate::protocol::RevisionStatus::Denied,
                };
                super::listeners::fill_revision(model, out, job, index, denied);
            }
            _ => {}
        }
    }
}

/// A store did not answer in time: it is asked again. Nobody is told the
/// document is missing while a store that may hold it has not said so.
pub(crate) fn load_timed_out(model: &mut Model, out: &mut Out, doc: &DocId) {
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
pub(crate) fn feed_poll(model: &mut Model, out: &mut Out) {
    let every = model.config.timing.feed_poll_ms;
    let Some(primary) = model.stores.get_min().copied() else {
        return;
    };
    if every == 0 {
        return;
    }
    // One read at a time: the next starts when this one is in.
    if feed_idle(model) {
        read_feed(model, out, primary);
    }
    let at = model.now.saturating_add(every);
    super::timers::set(model, Timer::FeedPoll, at);
}

/// No read of the feed is under way, and none of its documents is loading.
fn feed_idle(model: &Model) -> bool {
    !model.feed_reading && model.feed_target.is_none() && model.feed_loading.is_empty()
}

fn read_feed(model: &mut Model, out: &mut Out, primary: ChannelId) {
    model.feed_reading = true;
    model.feed_again = false;
    out.send(
        primary,
        Message::ChangesSince {
            clock: model.feed_seen,
            filter: Filter::all(),
        },
    );
}

/// The primary store says another process wrote: read the feed now, or
/// right after the read under way (which may have begun before that write).
pub(crate) fn feed_announced(model: &mut Model, out: &mut Out, store: ChannelId) {
    if model.stores.get_min() != Some(&store) {
        return out.log(
            Level::Info,
            format!("{store} is not the primary store; announcement ignored"),
        );
    }
    model.store_shared = true;
    if feed_idle(model) {
        read_feed(model, out, store);
    } else {
        model.feed_again = true;
    }
}

/// Starts following the primary store's feed from `clock`.
pub(crate) fn follow_feed(model: &mut Model, clock: Clock) {
    model.feed_seen = model.feed_seen.max(clock);
    let every = model.config.timing.feed_poll_ms;
    if every > 0 && !model.timer_at.contains_key(&Timer::FeedPoll) {
        let at = model.now.saturating_add(every);
        super::timers::set(model, Timer::FeedPoll, at);
    }
}

/// The primary store's feed since our position: reload what another process changed.
pub(crate) fn feed_changes(
    model: &mut Model,
    out: &mut Out,
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
    for cd in docs {
        if model.tombstones.contains(&cd.doc) || !cd.doc.is_valid() {
            continue;
        }
        let shared = model.store_shared;
        match model.docs.get(&cd.doc) {
            // Already here: nothing to read. (Our own clock for it says so
            // only when nobody else writes: on a shared store another
            // server may have written it just below our last append.)
            Some(d) if d.version.includes(&cd.version) || (!shared && d.clock >= cd.clock) => {}
            // Being loaded anyway: that load reads the change too.
            Some(d) if !d.is_ready() => {}
            Some(_) => {
                model.feed_loading.insert(cd.doc.clone(), cd.clock);
                ask_store(out, store, &cd.doc);
            }
            None => discovered_in_store(model, out, store, cd),
        }
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
fn discovered_in_store(model: &mut Model, out: &mut Out, store: ChannelId, cd: StoredDoc) {
    let mut d = Doc::new(cd.meta);
    d.version = cd.version.clone();
    d.stored.insert(store, cd.version.clone());
    d.durable.insert(store, cd.version);
    model.docs.insert(cd.doc.clone(), d);
    super::common::assign_clock(model, &cd.doc, cd.clock);
    super::changes::announce(model, out, &cd.doc);
    propagate(model, out, &cd.doc, None);
}

/// The feed position moves once every document its read asked for is in;
/// then a read asked for meanwhile starts.
pub(crate) fn settle_feed(model: &mut Model, out: &mut Out) {
    if model.feed_loading.is_empty() {
        if let Some(target) = model.feed_target.take() {
            model.feed_seen = model.feed_seen.max(target);
        }
    }
    if model.feed_again && feed_idle(model) {
        if let Some(primary) = model.stores.get_min().copied() {
            read_feed(model, out, primary);
        }
    }
}

/// The delay before failed store writes are tried again.
fn retry_delay(model: &Model) -> crate::io::Millis {
    let t = &model.config.timing;
    let exp = model.retry.failures.saturating_sub(1).min(20);
    t.store_retry_ms
        .max(1)
        .saturating_mul(1u64 << exp)
        .min(t.backoff_max_ms.max(1))
}

fn schedule_retry(model: &mut Model) {
    model.retry.failures = model.retry.failures.saturating_add(1);
    if !model.timer_at.contains_key(&Timer::StoreRetry) {
        let at = model.now.saturating_add(retry_delay(model));
        super::timers::set(model, Timer::StoreRetry, at);
    }
}

/// A store operation failed: reported, and tried again.
pub(crate) fn failed(model: &mut Model, out: &mut Out, store: ChannelId, failure: StoreFailure) {
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
            let Some(f) = model.in_flight.remove(&batch) else {
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

/// Writes a document's changes again after the retry pause.
pub(crate) fn retry_doc(model: &mut Model, doc: &DocId) {
    model.retry.docs.insert(doc.clone());
    schedule_retry(model);
}

/// A store write succeeded: the failure streak is over.
pub(crate) fn store_ok(model: &mut Model) {
    model.retry.failures = 0;
}

/// Writes again what failed.
pub(crate) fn retry_due(model: &mut Model, out: &mut Out) {
    let retry = std::mem::take(&mut model.retry);
    model.retry.failures = retry.failures;
    for (_, record) in retry.records {
        out.cmd(Cmd::Save(record));
    }
    for doc in retry.purges {
        out.cmd(Cmd::Purge { doc });
    }
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
