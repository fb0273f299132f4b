//! What any handler may ask of the stores: load a document (storage-first),
//! count a peer's lookups, write again after a pause, move along the
//! primary store's change feed. A leaf: it calls no handler. What the
//! stores answer is `storage`'s.

use super::common::{access, changed};
use crate::effects::{Effects, FollowUp};
use crate::ids::{ChannelId, Clock, DocId, Millis, PeerId};
use crate::io::{Event, Level};
use crate::model::{Doc, LoadReason, Model, Phase, Timer, WaitingRequest};
use crate::protocol::{AckStatus, DocMeta, Filter, Message, Reply};
use crate::version::VersionVector;

pub(crate) fn ask_store(out: &mut Effects, store: ChannelId, doc: &DocId) {
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
    out: &mut Effects,
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
            .iter()
            .filter(|d| {
                model
                    .docs
                    .get(*d)
                    .is_some_and(|x| matches!(x.phase, Phase::Loading { .. }))
            })
            .cloned()
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

/// The delay before failed store writes are tried again.
pub(crate) fn retry_delay(model: &Model) -> crate::io::Millis {
    let t = &model.config.timing;
    let exp = model.retry.failures.saturating_sub(1).min(20);
    t.store_retry_ms
        .max(1)
        .saturating_mul(1u64 << exp)
        .min(t.backoff_max_ms.max(1))
}

pub(crate) fn schedule_retry(model: &mut Model) {
    model.retry.failures = model.retry.failures.saturating_add(1);
    if !model.timer_at.contains_key(&Timer::StoreRetry) {
        let at = model.now.saturating_add(retry_delay(model));
        super::timers::set(model, Timer::StoreRetry, at);
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

/// No read of the feed is under way, and none of its documents is loading.
pub(crate) fn feed_idle(model: &Model) -> bool {
    !model.feed_reading && model.feed_target.is_none() && model.feed_loading.is_empty()
}

pub(crate) fn read_feed(model: &mut Model, out: &mut Effects, primary: ChannelId) {
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

/// The feed position moves once every document its read asked for is in;
/// then a read asked for meanwhile starts.
pub(crate) fn settle_feed(model: &mut Model, out: &mut Effects) {
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

/// The wait after one of `wait` while the feed finds nothing: twice as
/// long, up to `feed_poll_quiet_ms` (never shorter than `feed_poll_ms`).
pub(crate) fn feed_wait_after(t: &crate::model::Timing, wait: Millis) -> Millis {
    wait.saturating_mul(2)
        .min(t.feed_poll_quiet_ms.max(t.feed_poll_ms))
}

/// Another process writes to the primary store: the next read of its feed
/// comes at the shortest wait, and the waits double again from there.
pub(crate) fn feed_active(model: &mut Model) {
    let t = &model.config.timing;
    let every = t.feed_poll_ms;
    let soon = model.now.saturating_add(every);
    let later_than_soon = model
        .timer_at
        .get(&Timer::FeedPoll)
        .is_some_and(|at| *at > soon);
    if every > 0 && later_than_soon {
        model.feed_wait = feed_wait_after(t, every);
        super::timers::set(model, Timer::FeedPoll, soon);
    } else {
        model.feed_wait = 0;
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

pub(crate) fn maybe_finish_loading(model: &mut Model, out: &mut Effects, doc: &DocId) {
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
        (LoadReason::Network | LoadReason::Pull, None) => false,
        (LoadReason::Pull, Some(p)) => access(model, p, doc).create,
    };
    super::timers::cancel(model, &Timer::LoadTimeout(doc.clone()));
    if !found && !may_create {
        model.docs.remove(doc);
        refuse_queued(model, out, doc, queued, None);
        // The pull that wanted it is done with it.
        if let (LoadReason::Pull, Some(peer)) = (reason, creator) {
            out.follow(FollowUp::Pulled {
                peer,
                doc: doc.clone(),
            });
        }
        return;
    }
    if let (false, LoadReason::Network, Some(p)) = (found, reason, &creator) {
        if refuse_creation(model, out, doc, &queued, p) {
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
    let opened = matches!(reason, LoadReason::Open | LoadReason::Pull);
    if opened {
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
    out.follow(FollowUp::DocReady {
        doc: doc.clone(),
        // Created here, opened or written by a peer: the peers that follow
        // no filter hear of it (those that do get its data).
        announce: (!found).then_some(creator),
        ask_remotes: opened,
        queued,
        // Local edits made while loading, or a store that lacks what another had.
        propagate: found,
    });
}

/// A peer's writes would create `doc`: refused (and the document
/// dropped) when none of them fits under the largest document, or when
/// the creator is past its documents-per-hour quota. `true` if refused.
fn refuse_creation(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    queued: &[WaitingRequest],
    p: &PeerId,
) -> bool {
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
                super::quotas::refuse_too_large(model, out, *channel, p, doc, *batch, most);
            }
        }
        return true;
    }
    if let Err(wait) = super::quotas::create(model, p) {
        model.docs.remove(doc);
        refuse_queued(model, out, doc, queued.to_vec(), Some(wait));
        return true;
    }
    false
}

/// Answers what waited for a document that is not created after all: no
/// store has it and asking does not create it, or (`rate_limited`: the
/// wait in ms) its creator is past its documents-per-hour quota.
fn refuse_queued(
    model: &mut Model,
    out: &mut Effects,
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
                    super::presence::send_existing(model, out, doc, channel, &peer);
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
                out.follow(FollowUp::RevisionFilled {
                    job,
                    index,
                    revision: denied,
                });
            }
            _ => {}
        }
    }
}

/// A document is clean again when the primary store holds all of it.
pub(crate) fn settle_dirty(model: &mut Model, doc: &DocId) {
    let primary = model.stores.get_min().copied();
    let clean = model.docs.get(doc).is_some_and(|d| {
        primary.is_some_and(|p| d.durable.get(&p).is_some_and(|v| v.includes(&d.version)))
    });
    if clean {
        model.dirty.remove(doc);
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{ChannelId, Message, Reply};

    #[test]
    fn a_document_no_store_has_and_a_reader_asked_for_is_refused_and_not_created() {
        let mut k = Kit::hub();
        k.store(10);
        k.peer(1, "alice");
        k.follow(1, "d");
        // The store says it has none: its answer empties the load's waiting list.
        let (cmds, follow_ups) = k.handle(|m, o| {
            if let Some(crate::model::Phase::Loading { waiting, .. }) =
                m.docs.get_mut(&doc("d")).map(|d| &mut d.phase)
            {
                waiting.remove(&ChannelId(10));
            }
            super::maybe_finish_loading(m, o, &doc("d"))
        });
        assert!(follow_ups.is_empty());
        assert!(!k.model.docs.contains_key(&doc("d")));
        assert!(messages(&cmds, 1).iter().any(|m| matches!(
            m,
            Message::SyncResponse {
                reply: Reply::Unavailable,
                ..
            }
        )));
    }
}
