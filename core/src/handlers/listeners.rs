//! Pull-responder listeners (seed 000), over any channel, HTTP included.
//!
//! ```text
//! client                                     node
//!   | -- listener-register {filter} ----------> |  -> listener-registered {id}
//!   | -- listener-pull {id, limit} -----------> |  -> strands (docs whose version is past
//!   |                                           |     the acknowledged one) + more
//!   | -- listener-ack {id, revisions} --------> |  the cursor moves only for applied strands
//!   | -- push {strands} ----------------------> |  -> push-result: one revision per strand,
//!   |                                           |     sent once every strand is durable
//! ```
//! Unacknowledged strands come back on the next pull (at least once).
//! Listener state is persisted through `Cmd::Save`.
//!
//! On a store shared by several servers, a listener registered on one
//! works on all: ids are drawn at random (so servers do not hand out the
//! same one), and a message about a listener this node does not know waits
//! while the store is asked for its record.
//! ```text
//! client -- listener-pull {id} --> node  unknown id: listener-pull {id} --> shared store
//!                                        <-- its record (or none) ---------
//!        <-- strands ------------------  known now: answered as usual
//!        <-- error unknown-listener ---  none: register again
//! ```

use super::common::{access, refuse};
use super::on_demand::{self, Parking};
use crate::effects::Effects;
use crate::ids::{ChannelId, Clock, DocId, ListenerId, PeerId};
use crate::io::Level;
use crate::io::{Cmd, ListenerRecord, Outgoing, StateRecord, StrandSpec};
use crate::model::Parked;
use crate::model::{Listener, Model, PushJob, Source, WaitingRequest};
use crate::protocol::{ErrorCode, Message, Revision, RevisionStatus, Strand};
use imbl::OrdMap;

fn save(model: &Model, out: &mut Effects, id: ListenerId) {
    if let Some(l) = model.listeners.get(&id) {
        out.cmd(Cmd::Save(StateRecord::Listener(ListenerRecord {
            id,
            owner: l.owner.clone(),
            filter: l.filter.clone(),
            floor: l.floor,
            acked: l
                .acked
                .iter()
                .map(|(d, v)| (d.clone(), v.clone()))
                .collect(),
        })));
    }
}

pub(crate) fn register(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: crate::protocol::Filter,
    id: Option<ListenerId>,
) {
    if let Some(id) = id {
        let again = Message::ListenerRegister {
            filter: filter.clone(),
            id: Some(id),
        };
        if waits_for_record(model, out, channel, id, again) {
            return;
        }
    }
    register_known(model, out, channel, peer, filter, id);
}

/// [`register`] once the store said what it holds of a named listener.
fn register_known(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: crate::protocol::Filter,
    id: Option<ListenerId>,
) {
    // A client re-registers a listener it owns; any other id it names is
    // ignored and a new one is made (ids come from our counter only, so a
    // client cannot make it wrap onto someone else's listener).
    let existing = id.filter(|id| model.listeners.contains_key(id));
    let id = match existing {
        Some(id) => {
            if model.listeners.get(&id).is_some_and(|l| &l.owner != peer) {
                return refuse(
                    out,
                    channel,
                    ErrorCode::PermissionDenied,
                    format!("{id} belongs to another peer"),
                );
            }
            id
        }
        None => {
            let most = model.config.bounds.listeners_per_peer;
            let owned = model
                .listeners
                .values()
                .filter(|l| &l.owner == peer)
                .count();
            if owned >= most {
                return refuse(
                    out,
                    channel,
                    ErrorCode::TooLarge,
                    format!("at most {most} listeners per peer; re-register one of yours"),
                );
            }
            // Peers are many on an open server (any id will do): the
            // listeners of all of them together are bounded too.
            let all = model.config.bounds.listeners;
            if model.listeners.len() >= all && !model.config.is_internal_peer(peer) {
                return refuse(
                    out,
                    channel,
                    ErrorCode::TooLarge,
                    format!("this node keeps at most {all} listeners; re-register one of yours"),
                );
            }
            match id.filter(|i| nameable(*i)) {
                // A client that keeps its listener's id (a webhook, whose
                // id is derived from its secret so that every server on a
                // shared store names the same one) gets that id back when
                // nobody holds it.
                Some(named) => named,
                None if model.store_shared => random_id(model),
                None => match next_counted_id(model) {
                    Some(id) => id,
                    None => {
                        return refuse(
                            out,
                            channel,
                            ErrorCode::TooLarge,
                            "this node has no listener ids left".into(),
                        )
                    }
                },
            }
        }
    };
    // Registering again resets the cursor: a full resync.
    model.listeners.insert(
        id,
        Listener {
            owner: peer.clone(),
            filter,
            floor: Clock(0),
            acked: OrdMap::new(),
            last_pull: None,
        },
    );
    save(model, out, id);
    out.send(channel, Message::ListenerRegistered { id });
}

/// Whether a client may name a listener id nobody holds: those of the
/// random draw's range (below 2^63). The ids above it could make the
/// counter of a store that one node owns run out.
fn nameable(id: ListenerId) -> bool {
    id.0 >= 1 && id.0 < 1 << 63
}

/// The counter's next id no listener holds (a client may have named one it
/// would reach), or `None` when the counter ran out.
fn next_counted_id(model: &mut Model) -> Option<ListenerId> {
    loop {
        let id = ListenerId(model.next_listener);
        model.next_listener = model.next_listener.checked_add(1)?;
        if !model.listeners.contains_key(&id) {
            return Some(id);
        }
    }
}

/// Drops what memory holds of a listener another process may have moved
/// on (a shared store only; see [`crate::Msg::ForgetListener`]).
pub(crate) fn forget(model: &mut Model, id: ListenerId) {
    if model.store_shared {
        model.listeners.remove(&id);
    }
}

fn owned<'a>(
    model: &'a Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    id: ListenerId,
) -> Option<&'a Listener> {
    match model.listeners.get(&id) {
        Some(l) if &l.owner == peer => Some(l),
        _ => {
            refuse(
                out,
                channel,
                ErrorCode::UnknownListener,
                format!("{id} is not registered here; register again"),
            );
            None
        }
    }
}

pub(crate) fn pull(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    id: ListenerId,
    limit: u32,
) {
    if waits_for_record(model, out, channel, id, Message::ListenerPull { id, limit }) {
        return;
    }
    let Some(floor) = owned(model, out, channel, peer, id).map(|l| l.floor) else {
        return;
    };
    let again = Parked::Message(channel, Message::ListenerPull { id, limit });
    if waits_for_store(model, out, channel, floor, again) {
        return;
    }
    let Some(l) = model.listeners.get(&id) else {
        return;
    };
    let bare = limit & crate::protocol::PULL_VERSIONS_ONLY != 0;
    let limit = (limit & !crate::protocol::PULL_VERSIONS_ONLY)
        .clamp(1, model.config.timing.max_pull_limit) as usize;
    let mut items = Vec::new();
    let mut more = false;
    // Documents deleted since the listener acknowledged them come first:
    // each is told once acknowledged, as an empty strand.
    // (Walking the smaller of the two sets, in id order either way.)
    let deleted: Vec<&DocId> = if l.acked.len() < model.tombstones.len() {
        l.acked
            .keys()
            .filter(|d| model.tombstones.contains(*d))
            .collect()
    } else {
        model
            .tombstones
            .iter()
            .filter(|d| l.acked.contains_key(*d))
            .collect()
    };
    for doc in deleted {
        let Some(since) = l.acked.get(doc) else {
            continue;
        };
        if !access(model, peer, doc).read {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(StrandSpec {
            doc: doc.clone(),
            meta: Default::default(),
            since: since.clone(),
            clock: Clock(0),
            deleted: true,
            versions_only: None,
        });
    }
    for (c, doc) in model.by_clock.range(Clock(l.floor.0.saturating_add(1))..) {
        if more {
            break;
        }
        let Some(d) = model.docs.get(doc) else {
            continue;
        };
        let acked = l.acked.get(doc);
        if !wanted(model, l, peer, doc) || acked.is_some_and(|v| v.includes(&d.version)) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(StrandSpec {
            doc: doc.clone(),
            meta: d.meta.clone(),
            since: acked.cloned().unwrap_or_default(),
            clock: *c,
            deleted: false,
            versions_only: bare.then(|| d.version.clone()),
        });
    }
    let now = model.now;
    if let Some(l) = model.listeners.get_mut(&id) {
        l.last_pull = Some(now);
    }
    out.item(channel, Outgoing::Strands { id, items, more });
}

/// A listener walks the clock from its floor: from below the memory
/// floor, its message waits until the store brought that into memory
/// (`true`), or is refused when too many wait.
fn waits_for_store(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    floor: Clock,
    again: Parked,
) -> bool {
    match on_demand::park_below_floor(model, out, floor, again) {
        Parking::GoOn => false,
        Parking::Parked => true,
        Parking::Full => {
            refuse(
                out,
                channel,
                ErrorCode::RateLimited,
                "too many messages wait for the store; ask again later".into(),
            );
            true
        }
    }
}

fn wanted(model: &Model, l: &Listener, peer: &PeerId, doc: &DocId) -> bool {
    model
        .docs
        .get(doc)
        .is_some_and(|d| d.is_ready() && l.filter.matches(doc, &d.meta))
        && access(model, peer, doc).read
}

pub(crate) fn acknowledge(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    id: ListenerId,
    revisions: Vec<Revision>,
) {
    let again = Message::ListenerAck {
        id,
        revisions: revisions.clone(),
    };
    if waits_for_record(model, out, channel, id, again) {
        return;
    }
    let Some(floor) = owned(model, out, channel, peer, id).map(|l| l.floor) else {
        return;
    };
    let again = Parked::Message(
        channel,
        Message::ListenerAck {
            id,
            revisions: revisions.clone(),
        },
    );
    if waits_for_store(model, out, channel, floor, again) {
        return;
    }
    let mut accepted = 0u32;
    let Some(mut l) = model.listeners.get(&id).cloned() else {
        return;
    };
    for r in revisions {
        // Only what was applied moves the cursor; failures come back on the next pull.
        if r.status != RevisionStatus::Ok {
            continue;
        }
        // A deletion told (an empty version of a deleted document): the
        // listener has nothing more to hear of it.
        if r.version.is_empty() && model.tombstones.contains(&r.doc) {
            if l.acked.remove(&r.doc).is_some() {
                accepted += 1;
            }
            continue;
        }
        let v = l
            .acked
            .get(&r.doc)
            .map(|v| v.merge(&r.version))
            .unwrap_or(r.version);
        l.acked.insert(r.doc, v);
        accepted += 1;
    }
    let mut floor = l.floor;
    // Never past what this node knows is complete (see `promised_clock`).
    let horizon = super::common::promised_clock(model);
    for (c, doc) in model.by_clock.range(Clock(floor.0.saturating_add(1))..) {
        if *c > horizon {
            break;
        }
        let done = !wanted(model, &l, peer, doc)
            || model
                .docs
                .get(doc)
                .is_some_and(|d| l.acked.get(doc).is_some_and(|a| a.includes(&d.version)));
        if !done {
            break;
        }
        floor = *c;
    }
    l.floor = floor;
    model.listeners.insert(id, l);
    save(model, out, id);
    out.send(channel, Message::ListenerAcked { id, accepted });
}

/// Imports every pushed strand; answers once each has a revision.
pub(crate) fn push(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    strands: Vec<Strand>,
) {
    let job = model.next_job;
    model.next_job = model.next_job.saturating_add(1);
    model.pushes.insert(
        job,
        PushJob {
            channel,
            revisions: strands.iter().map(|_| None).collect(),
        },
    );
    if strands.is_empty() {
        return finish_if_done(model, out, job);
    }
    for (index, s) in strands.into_iter().enumerate() {
        let a = access(model, peer, &s.doc);
        let known = model.docs.get(&s.doc).map(|d| d.is_ready());
        // One memory forgot may be in the store: loading it decides.
        let forgotten = on_demand::below_floor(model, Clock(0)) && !model.stores.is_empty();
        let denied = model.tombstones.contains(&s.doc)
            || !a.write
            || (known.is_none() && !a.create && !forgotten);
        let revision = |status| Revision {
            doc: s.doc.clone(),
            version: s.version.clone(),
            clock: Clock(0),
            status,
        };
        if denied {
            fill_revision(model, out, job, index, revision(RevisionStatus::Denied));
            continue;
        }
        if known.is_none() && !model.stores.is_empty() {
            // Storage-first: the strand waits until every store has answered.
            let q = WaitingRequest::Push {
                channel,
                job,
                index,
                data: s.data,
                version: s.version,
            };
            let reason = crate::model::LoadReason::Network;
            super::store_requests::start_loading(
                model,
                out,
                &s.doc,
                s.meta.clone(),
                reason,
                Some(peer.clone()),
                Some(q),
            );
            continue;
        } else if known.is_none() {
            super::common::create_doc(model, &s.doc, s.meta.clone());
        } else if known == Some(false) {
            let q = WaitingRequest::Push {
                channel,
                job,
                index,
                data: s.data,
                version: s.version,
            };
            if let Some(crate::model::Phase::Loading { queued, .. }) =
                model.docs.get_mut(&s.doc).map(|d| &mut d.phase)
            {
                queued.push(q);
            }
            continue;
        }
        let source = Source::Push {
            peer: peer.clone(),
            channel,
            job,
            index,
        };
        super::common::import(model, out, &s.doc, s.data, source);
    }
}

/// Records one strand's revision; the answer leaves when all are in.
pub(crate) fn fill_revision(
    model: &mut Model,
    out: &mut Effects,
    job: u64,
    index: usize,
    rev: Revision,
) {
    if let Some(j) = model.pushes.get_mut(&job) {
        if index < j.revisions.len() {
            j.revisions.set(index, Some(rev));
        }
    }
    finish_if_done(model, out, job);
}

fn finish_if_done(model: &mut Model, out: &mut Effects, job: u64) {
    let done = model
        .pushes
        .get(&job)
        .is_some_and(|j| j.revisions.iter().all(Option::is_some));
    if !done {
        return;
    }
    let Some(j) = model.pushes.remove(&job) else {
        return;
    };
    if model.channels.contains_key(&j.channel) {
        let revisions = j.revisions.into_iter().flatten().collect();
        out.send(j.channel, Message::PushResult { revisions });
    }
}

/// A strand that waited for storage: import it, or refuse it if the
/// document could not be created.
pub(crate) fn replay_push(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    peer: &PeerId,
    waiting: (ChannelId, u64, usize, crate::protocol::Payload),
) {
    let (channel, job, index, data) = waiting;
    if model.docs.get(doc).is_some_and(|d| d.is_ready()) && access(model, peer, doc).write {
        let source = Source::Push {
            peer: peer.clone(),
            channel,
            job,
            index,
        };
        super::common::import(model, out, doc, data, source);
    } else {
        let status = RevisionStatus::Denied;
        let rev = Revision {
            doc: doc.clone(),
            version: Default::default(),
            clock: Clock(0),
            status,
        };
        fill_revision(model, out, job, index, rev);
    }
}

/// Most listeners asked of the shared store at once, most messages waiting
/// on one, most waiting in all, and the most revisions an acknowledgement
/// may carry to wait: clients cannot make us hold more.
const MOST_LISTENER_LOADS: usize = 64;
const MOST_WAITING_PER_LISTENER: usize = 4;
const MOST_WAITING: usize = 128;
const MOST_WAITING_REVISIONS: usize = 1_024;

/// A listener id no listener here has, drawn from the model's generator:
/// servers sharing a store then do not hand out the same id.
fn random_id(model: &mut Model) -> ListenerId {
    loop {
        // Below u64::MAX, which restoring treats as no listener.
        let id = ListenerId(super::timers::next_random(model) >> 1);
        if !model.listeners.contains_key(&id) {
            return id;
        }
    }
}

/// When the store is shared and `id` is unknown here, asks the store for
/// its record and keeps `message` until the answer (`true`). When too many
/// wait already, the message is refused as "try again" (`true` too): an
/// unknown listener is never taken for one the store does not hold.
fn waits_for_record(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    id: ListenerId,
    message: Message,
) -> bool {
    if !model.store_shared || model.listeners.contains_key(&id) {
        return false;
    }
    let Some(store) = model.stores.get_min().copied() else {
        return false;
    };
    let first = !model.listener_loads.contains_key(&id);
    let waiting_in_all: usize = model.listener_loads.values().map(Vec::len).sum();
    let large = matches!(&message, Message::ListenerAck { revisions, .. } if revisions.len() > MOST_WAITING_REVISIONS);
    let full = (first && model.listener_loads.len() >= MOST_LISTENER_LOADS)
        || waiting_in_all >= MOST_WAITING
        || model
            .listener_loads
            .get(&id)
            .is_some_and(|w| w.len() >= MOST_WAITING_PER_LISTENER);
    if full || large {
        refuse(
            out,
            channel,
            ErrorCode::RateLimited,
            format!("{id} is being read from the store with too much else; try again"),
        );
        return true;
    }
    model
        .listener_loads
        .entry(id)
        .or_default()
        .push((channel, message));
    if first {
        out.send(store, Message::ListenerPull { id, limit: 0 });
    }
    true
}

/// The shared store answered for a listener: known now (or for certain
/// unknown), the messages that waited are handled.
pub(crate) fn record_loaded(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    id: ListenerId,
    record: Option<ListenerRecord>,
    failed: bool,
) {
    if model.stores.get_min() != Some(&store) {
        return;
    }
    let waiting = model.listener_loads.remove(&id).unwrap_or_default();
    if failed {
        for (channel, _) in waiting {
            refuse(
                out,
                channel,
                ErrorCode::RateLimited,
                format!("the store could not read {id}; try again"),
            );
        }
        return;
    }
    match record {
        Some(r) if r.id == id && !model.listeners.contains_key(&id) => model.restore_listener(r),
        _ => {}
    }
    for (channel, message) in waiting {
        let Some(crate::model::Handshake::Established(peer)) =
            model.channels.get(&channel).map(|c| c.handshake.clone())
        else {
            continue;
        };
        // Known now, or not at all: nothing waits twice.
        let known = model.listeners.contains_key(&id);
        match message {
            Message::ListenerPull { limit, .. } if known => {
                pull(model, out, channel, &peer, id, limit)
            }
            Message::ListenerAck { revisions, .. } if known => {
                acknowledge(model, out, channel, &peer, id, revisions)
            }
            // Known now, or named by its client and held by nobody.
            Message::ListenerRegister { filter, .. } => {
                register_known(model, out, channel, &peer, filter, Some(id))
            }
            _ => {
                out.log(Level::Info, format!("{peer} asked about unknown {id}"));
                refuse(
                    out,
                    channel,
                    ErrorCode::UnknownListener,
                    format!("{id} is not registered here; register again"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{ChannelId, Cmd, Filter, Message, PeerId};

    #[test]
    fn a_registered_listener_is_kept_saved_and_told_its_id() {
        let mut k = Kit::hub();
        k.peer(1, "svc");
        let svc = PeerId::new("svc");
        let (cmds, follow_ups) =
            k.handle(|m, o| super::register(m, o, ChannelId(1), &svc, Filter::all(), None));
        assert!(follow_ups.is_empty());
        assert_eq!(k.model.listeners.len(), 1);
        assert!(cmds
            .iter()
            .any(|c| matches!(c, Cmd::Save(crate::StateRecord::Listener(_)))));
        assert!(messages(&cmds, 1)
            .iter()
            .any(|m| matches!(m, Message::ListenerRegistered { .. })));
    }
}
