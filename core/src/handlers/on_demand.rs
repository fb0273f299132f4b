//! Metadata on demand: what lies below `memory_floor` stays in the primary
//! store and is read when a walk of the change clock, or a listing, needs it.
//!
//! ```text
//! clock:   0 ........................ memory_floor ............ model.clock
//!          | some documents in memory |  every document in memory |
//!          |  all of them in the store (its index by clock and by id)
//! ```
//!
//! Two kinds of walk reach below the floor:
//! - answers to a peer (changes-since, list-docs, directory) are built from
//!   one page of the store's index merged with memory, and nothing read is
//!   kept: a client asking from clock 0 costs one page, not the store;
//! - the node's own cursors (a dialed remote's pushed cursor, a listener's
//!   floor) walk memory, so the floor is brought down to them, a page at a
//!   time, newest first, and what waited for it runs again. How far is
//!   the node's own lag, and what is read becomes idle and is forgotten
//!   again.
//!
//! Forgetting ([`forget_idle`], on every tick): past
//! [`crate::Bounds::idle_metadata`], idle documents changed longest ago
//! leave memory, lowest clock first, and the floor rises over them.
//!
//! A leaf: it calls no handler. What waited is run again by `update`.

use super::common::{access, promised_clock};
use crate::effects::Effects;
use crate::ids::{ChannelId, Clock, DocId, PeerId};
use crate::io::{Outgoing, ReadRange, StoreRead, StoredDoc};
use crate::model::{Model, Parked, PendingRead, Phase};
use crate::protocol::{Filter, ListedDoc};

/// Documents read per page when the floor is brought down.
const COVER_PAGE: u32 = 1_000;
/// Reads for answers one channel may have under way at once.
const READS_PER_CHANNEL: usize = 4;
/// Reads under way, all channels together.
const MOST_READS: usize = 4_096;
/// Messages waiting for the floor to come down, all together.
const MOST_PARKED: usize = 4_096;
/// Messages of one channel waiting for the floor to come down.
const PARKED_PER_CHANNEL: usize = 8;
/// How often a look for idle documents to forget is made anyway, when
/// the last look found too few (those in use then may be idle now).
const LOOK_AGAIN_MS: u64 = 10_000;
/// Idle documents forgotten in one tick: each is a few map operations.
const FORGET_PER_TICK: usize = 100_000;

/// Whether a walk of the clock that starts after `from` reaches documents
/// that may be only in the store.
pub(crate) fn below_floor(model: &Model, from: Clock) -> bool {
    from < model.memory_floor && !model.stores.is_empty()
}

/// Documents in one page of an answer to a peer (changes, listings).
pub(crate) fn page_size(model: &Model) -> u32 {
    u32::try_from(model.config.timing.changes_page.max(1)).unwrap_or(u32::MAX)
}

/// Asks the primary store for `range`; `false` when the read is for a
/// peer whose channel (or the node) has as many reads under way as it may
/// (a read bringing the floor down is never turned away).
pub(crate) fn read(
    model: &mut Model,
    out: &mut Effects,
    pending: PendingRead,
    range: ReadRange,
    filter: Filter,
    limit: u32,
) -> bool {
    let Some(store) = model.stores.get_min().copied() else {
        return false;
    };
    // Bringing the floor down (one read at a time) is never turned away:
    // what waits for it has no peer to ask again.
    if let Some(channel) = pending.channel() {
        let of_channel = model
            .reads
            .values()
            .filter(|r| r.channel() == Some(channel))
            .count();
        if model.reads.len() >= MOST_READS || of_channel >= READS_PER_CHANNEL {
            return false;
        }
    }
    let job = model.next_job;
    model.next_job = model.next_job.saturating_add(1);
    model.reads.insert(job, pending);
    out.item(
        store,
        Outgoing::Read(StoreRead {
            job,
            range,
            limit,
            filter,
        }),
    );
    true
}

/// What [`park_below_floor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parking {
    /// Nothing below the floor is needed: go on now.
    GoOn,
    /// It waits for the floor to come down, and runs again then.
    Parked,
    /// It is needed, but too many messages wait already: refuse it.
    Full,
}

/// [`read`] for a peer's request, which is refused when it finds no room
/// (the peer may ask again).
pub(crate) fn read_for_peer(
    model: &mut Model,
    out: &mut Effects,
    pending: PendingRead,
    range: ReadRange,
    filter: Filter,
    limit: u32,
) {
    let Some(channel) = pending.channel() else {
        return;
    };
    if !read(model, out, pending, range, filter, limit) {
        super::common::refuse(
            out,
            channel,
            crate::protocol::ErrorCode::RateLimited,
            "too many reads of the store under way; ask again later".into(),
        );
    }
}

/// Parks `parked` until the floor comes down to `from`, when a walk after
/// `from` needs that. One the same as a parked one is not parked twice.
pub(crate) fn park_below_floor(
    model: &mut Model,
    out: &mut Effects,
    from: Clock,
    parked: Parked,
) -> Parking {
    if !below_floor(model, from) {
        return Parking::GoOn;
    }
    match &parked {
        // Each message is answered: a repeated one waits too, within
        // bounds (a channel's, and all together).
        Parked::Message(channel, _) => {
            let of_channel = model
                .parked
                .iter()
                .filter(|(_, p)| matches!(p, Parked::Message(c, _) if c == channel))
                .count();
            if model.parked.len() >= MOST_PARKED || of_channel >= PARKED_PER_CHANNEL {
                return Parking::Full;
            }
            model.parked.push((from, parked));
        }
        // The node's own: once is enough.
        _ if model.parked.iter().any(|(_, p)| *p == parked) => {}
        _ => model.parked.push((from, parked)),
    }
    cover_next(model, out);
    Parking::Parked
}

/// Starts the read that brings the floor down towards the lowest start
/// that waits, unless one is under way.
fn cover_next(model: &mut Model, out: &mut Effects) {
    let covering = model
        .reads
        .values()
        .any(|r| matches!(r, PendingRead::Cover { .. }));
    let Some(after) = model.parked.iter().map(|(c, _)| *c).min() else {
        return;
    };
    if covering || !below_floor(model, after) {
        return;
    }
    let up_to = model.memory_floor;
    read(
        model,
        out,
        PendingRead::Cover {
            after,
            up_to,
            limit: COVER_PAGE,
        },
        ReadRange::Clocks {
            after,
            up_to,
            newest_first: true,
        },
        Filter::all(),
        COVER_PAGE,
    );
}

/// A page read to bring the floor down is in: its documents come into
/// memory and the floor comes down over them. Returns what waited and may
/// run now; the next page is asked for if more wait.
pub(crate) fn covered(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    (after, up_to, limit): (Clock, Clock, u32),
    docs: Vec<StoredDoc>,
) -> Vec<Parked> {
    let full = docs.len() >= limit as usize;
    let lowest = docs.iter().map(|d| d.clock).min();
    for d in docs {
        // Only what the read was for: a store that answered more is not
        // taken at its word for the rest.
        if d.clock <= after || d.clock > up_to {
            continue;
        }
        // One already here (say, loading since: no clock yet) takes its
        // place in the clock too, or a walk would pass over it.
        if model.docs.contains_key(&d.doc) && !model.tombstones.contains(&d.doc) {
            super::common::assign_clock(model, &d.doc, d.clock);
        } else {
            super::common::remember_stored(model, store, d);
        }
    }
    let floor = match (full, lowest) {
        // Every document from the lowest read up is in memory now.
        (true, Some(lowest)) => Clock(lowest.0.saturating_sub(1)).max(after),
        _ => after,
    };
    // The page reached up to the floor as it was when asked; had the floor
    // risen since (it does not while anything waits), it would not join.
    if model.memory_floor <= up_to {
        model.memory_floor = model.memory_floor.min(floor);
    }
    let floor = model.memory_floor;
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut model.parked)
        .into_iter()
        .partition(|(from, _)| *from >= floor);
    model.parked = waiting;
    cover_next(model, out);
    ready.into_iter().map(|(_, p)| p).collect()
}

/// A store read failed: an answer to a peer is refused (it may ask again);
/// bringing the floor down is tried again after the store retry pause.
pub(crate) fn read_failed(model: &mut Model, out: &mut Effects, job: u64, reason: &str) {
    let Some(pending) = model.reads.remove(&job) else {
        return;
    };
    match pending.channel() {
        Some(channel) => super::common::refuse(
            out,
            channel,
            crate::protocol::ErrorCode::RateLimited,
            format!("the store could not be read ({reason}); ask again later"),
        ),
        None => super::store_requests::schedule_retry(model),
    }
}

/// After a store retry pause: bring the floor down again for what waits.
pub(crate) fn retry(model: &mut Model, out: &mut Effects) {
    cover_next(model, out);
}

/// The clock below which nothing the node walks itself is forgotten: the
/// pushed cursors of the remotes it dialed, the floors of its listeners,
/// what waits for the floor, its position in a shared store's feed and
/// its promised clock.
fn keep_above(model: &Model) -> Clock {
    let pushed = model
        .peers
        .values()
        .filter(|p| p.dialed)
        .map(|p| p.cursor.pushed);
    let listeners = model.listeners.values().map(|l| l.floor);
    let parked = model.parked.iter().map(|(c, _)| *c);
    pushed
        .chain(listeners)
        .chain(parked)
        .fold(promised_clock(model), Clock::min)
}

/// Documents that something under way refers to: a transmission, a
/// request we sent, an import.
fn busy_docs(model: &Model) -> std::collections::BTreeSet<DocId> {
    let in_flight = model.in_flight.values().map(|f| f.doc.clone());
    let requested = model.requests.keys().map(|(_, d)| d.clone());
    let importing = model.imports.values().map(|i| i.doc.clone());
    in_flight.chain(requested).chain(importing).collect()
}

/// Whether nothing in memory refers to `doc` but its metadata.
fn idle(model: &Model, busy: &std::collections::BTreeSet<DocId>, doc: &DocId) -> bool {
    let Some(d) = model.docs.get(doc) else {
        return false;
    };
    matches!(d.phase, Phase::Ready)
        && d.subscribers.is_empty()
        && d.waiters.is_empty()
        && !busy.contains(doc)
        && !model.dirty.contains(doc)
        && !model.retry.docs.contains(doc)
        && !model.unsettled_writes.contains_key(doc)
        && !model.feed_loading.contains_key(doc)
        && !model.deleting.contains_key(doc)
        && model
            .stores
            .iter()
            .all(|s| d.durable.get(s).is_some_and(|v| v.includes(&d.version)))
}

/// Forgets idle documents past [`crate::Bounds::idle_metadata`], those
/// changed longest ago first, and the floor rises over them. Looks only
/// once the bound is passed by an eighth (so a look forgets many at once),
/// and, when too few were idle, not again before as many more are in.
pub(crate) fn forget_idle(model: &mut Model) {
    let most = model.config.bounds.idle_metadata;
    let (count, at) = model.idle_look_at;
    let threshold = most.saturating_add(most / 8);
    // Past the bound by an eighth; past it at all once a while went by
    // since a look that found too few idle.
    let due = model.docs.len() > count.max(threshold)
        || (count > 0 && model.now >= at && model.docs.len() > threshold);
    if most == 0 || model.stores.is_empty() || !due {
        return;
    }
    let keep_above = keep_above(model);
    let busy = busy_docs(model);
    let mut excess = (model.docs.len() - most).min(FORGET_PER_TICK);
    let mut floor = model.memory_floor;
    let mut forgotten = Vec::new();
    for (clock, doc) in model.by_clock.range(..=keep_above) {
        if excess == 0 {
            break;
        }
        if *clock > Clock(0) && idle(model, &busy, doc) {
            forgotten.push((*clock, doc.clone()));
            floor = floor.max(*clock);
            excess -= 1;
        }
    }
    for (clock, doc) in forgotten {
        model.docs.remove(&doc);
        model.by_clock.remove(&clock);
    }
    model.memory_floor = floor;
    model.idle_look_at = match excess {
        0 => (0, 0),
        _ => (
            model.docs.len().saturating_add(most / 8),
            model.now.saturating_add(LOOK_AGAIN_MS),
        ),
    };
}

/// One page of documents in id order after `after`, readable by `peer`
/// and matched by `filter`: memory's, merged with the store's `rows` when
/// the store was read (`full`: it answered as many as asked for, so more
/// may follow its last). Memory's entry of a document wins over the
/// store's. Also whether more follow, and the store's last id read.
pub(crate) fn merged_by_id(
    model: &Model,
    peer: &PeerId,
    filter: &Filter,
    after: Option<&DocId>,
    read: Option<(Vec<StoredDoc>, bool)>,
    limit: usize,
) -> (Vec<ListedDoc>, bool, Option<DocId>) {
    let (rows, full) = read.unwrap_or_default();
    let last_row = rows.iter().map(|r| r.doc.clone()).max();
    // A full page of the store's says nothing of what follows its last.
    let bound = last_row.clone().filter(|_| full);
    let start = match after {
        Some(a) => std::ops::Bound::Excluded(a.clone()),
        None => std::ops::Bound::Unbounded,
    };
    let mut page: std::collections::BTreeMap<DocId, ListedDoc> = Default::default();
    for (id, d) in model.docs.range((start, std::ops::Bound::Unbounded)) {
        if bound.as_ref().is_some_and(|b| id > b) || page.len() > limit {
            break;
        }
        if !d.is_ready() || !filter.matches(id, &d.meta) || !access(model, peer, id).read {
            continue;
        }
        page.insert(
            id.clone(),
            ListedDoc {
                doc: id.clone(),
                meta: d.meta.clone(),
                version: d.version.clone(),
                clock: d.clock,
            },
        );
    }
    for r in rows {
        let newer_here = model.docs.get(&r.doc).is_some_and(|d| d.is_ready());
        if newer_here
            || after.is_some_and(|a| r.doc <= *a)
            || !r.doc.is_valid()
            || model.tombstones.contains(&r.doc)
            || !filter.matches(&r.doc, &r.meta)
            || !access(model, peer, &r.doc).read
        {
            continue;
        }
        page.insert(
            r.doc.clone(),
            ListedDoc {
                doc: r.doc,
                meta: r.meta,
                version: r.version,
                clock: r.clock,
            },
        );
    }
    let more = full || page.len() > limit;
    let docs = page.into_values().take(limit).collect();
    (docs, more, last_row)
}
