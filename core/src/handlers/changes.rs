//! The change clock and cursors (seed 002), subscriptions and discovery.
//!
//! ```text
//! dialer                                       remote
//!   | -- changes-since {pulled} ---------------> |  docs whose clock > pulled, in clock order,
//!   | <-- changes {docs+versions, up_to, more} - |  paged
//!   | -- sync-request (only where it is ahead) > |
//!   |    ... data imported and durable: pulled := up_to (persisted)
//!   | -- sync-request {bidi} for docs whose clock > pushed
//!   | <-- ack {batch} -------------------------- |  pushed advances over acked docs (persisted)
//! ```

use super::common::{access, peer_channel, peer_has, refuse};
use super::on_demand::{self, Parking};
use crate::effects::Effects;
use crate::ids::{ChannelId, Clock, DocId, PeerId, RemoteAddr};
use crate::io::{Cmd, ReadRange, StateRecord, StoredDoc};
use crate::model::{LoadReason, Model, Parked, PeerDoc, PendingRead, Timer};
use crate::protocol::{ChangedDoc, DocInfo, DocMeta, ErrorCode, Filter, Message};
use crate::version::VersionVector;

fn save_cursor(model: &Model, out: &mut Effects, peer: &PeerId) {
    if let Some(p) = model.peers.get(peer) {
        out.cmd(Cmd::Save(StateRecord::Cursor {
            peer: peer.clone(),
            cursor: p.cursor.clone(),
        }));
    }
}

/// Right after our dial was welcomed: follow, pull what changed, push what we changed.
pub(crate) fn resume_with(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    channel: ChannelId,
    addr: &RemoteAddr,
    remote_clock: Clock,
) {
    if model.channel_peer(channel) != Some(peer) {
        return;
    }
    // What we changed since the remote last had it is pushed, walking our
    // clock from its cursor: from below the memory floor, once the store
    // has brought that into memory.
    let Some(cursor) = model.peers.get(peer).map(|p| p.cursor.pushed) else {
        return;
    };
    let walk_from = if model.clock < cursor {
        Clock(0)
    } else {
        cursor
    };
    let welcomed = Parked::Welcomed {
        peer: peer.clone(),
        channel,
        addr: addr.clone(),
        clock: remote_clock,
    };
    if on_demand::park_below_floor(model, out, walk_from, welcomed) != Parking::GoOn {
        return;
    }
    let filter = model
        .remotes
        .get(addr)
        .map(|r| r.filter.clone())
        .unwrap_or_default();
    let interval = model.config.timing.pull_min_ms;
    let (pulled, pushed) = {
        let Some(p) = model.peers.get_mut(peer) else {
            return;
        };
        p.dialed = true;
        model.dialed_any = true;
        // The remote follows everything we have that matches our filter.
        if !p.filters.contains(&filter) {
            p.filters.push_back(filter.clone());
        }
        p.pull_interval = interval;
        // A feed behind the cursor we hold for it went back in time: the
        // remote was restored from an older copy, or its store lost writes
        // it had reported durable. Its clock numbers will be given again to
        // other changes, so its whole feed is pulled again rather than
        // missing them.
        if remote_clock < p.cursor.pulled {
            p.cursor.pulled = Clock(0);
        }
        // The same for our own feed, when this node's store went back.
        if model.clock < p.cursor.pushed {
            p.cursor.pushed = Clock(0);
        }
        (p.cursor.pulled, p.cursor.pushed)
    };
    model.filter_subscribers.insert(peer.clone());
    // Presence set while offline (or before connecting) arrives now.
    super::presence::send_all_own(model, out, channel);
    out.send(
        channel,
        Message::Subscribe {
            filter: filter.clone(),
        },
    );
    out.send(
        channel,
        Message::ChangesSince {
            clock: pulled,
            filter: filter.clone(),
        },
    );
    let mut push: Vec<DocId> = model
        .by_clock
        .range(Clock(pushed.0.saturating_add(1))..)
        .map(|(_, d)| d.clone())
        .chain(model.dirty.iter().cloned())
        .collect();
    push.sort();
    push.dedup();
    for doc in push {
        // Not what the remote already confirmed having (it may have sent it to us).
        let confirmed = |v: &VersionVector| {
            model
                .peers
                .get(peer)
                .and_then(|p| p.confirmed.get(&doc))
                .is_some_and(|c| c.as_ref().is_some_and(|c| c.includes(v)))
        };
        let wanted = model.docs.get(&doc).is_some_and(|d| {
            d.is_ready() && filter.matches(&doc, &d.meta) && !confirmed(&d.version)
        });
        if wanted {
            super::common::subscribe(model, &doc, peer);
            super::propagation::request(model, out, peer, channel, &doc, true);
        }
    }
    super::timers::set(
        model,
        Timer::Pull(peer.clone()),
        model.now.saturating_add(interval),
    );
}

pub(crate) fn subscribe(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
) {
    let Some(p) = model.peers.get_mut(peer) else {
        return;
    };
    if p.filters.contains(&filter) {
        return;
    }
    let bounds = &model.config.bounds;
    let entries: usize = p.filters.iter().map(Filter::len).sum::<usize>() + filter.len();
    if p.filters.len() >= bounds.filters_per_peer || entries > bounds.filter_entries_per_peer {
        let m = format!(
            "at most {} subscription filters with {} entries in all per peer",
            bounds.filters_per_peer, bounds.filter_entries_per_peer
        );
        return refuse(out, channel, ErrorCode::TooLarge, m);
    }
    let docs = filter.docs.clone();
    p.filters.push_back(filter);
    model.filter_subscribers.insert(peer.clone());
    // Presence lives before anyone writes: a late follower sees it at once.
    for doc in docs {
        if super::common::access(model, peer, &doc).read {
            super::presence::send_existing(model, out, &doc, channel, peer);
        }
    }
}

pub(crate) fn unsubscribe(model: &mut Model, peer: &PeerId, filter: Filter) {
    let Some(p) = model.peers.get_mut(peer) else {
        return;
    };
    p.filters.retain(|f| *f != filter);
    if p.filters.is_empty() {
        model.filter_subscribers.remove(peer);
    }
}

/// Answers "what changed after `clock`?" with the visible documents,
/// paged. From below the memory floor, the store's index gives the first
/// part (`answer_changes` once it is read).
pub(crate) fn changes_since(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    clock: Clock,
    filter: Filter,
) {
    let read_to = model.memory_floor.min(super::common::promised_clock(model));
    if on_demand::below_floor(model, clock) && clock < read_to {
        let limit = on_demand::page_size(model);
        let pending = PendingRead::Changes {
            channel,
            peer: peer.clone(),
            clock,
            filter: filter.clone(),
            read_to,
            limit,
        };
        let range = ReadRange::Clocks {
            after: clock,
            up_to: read_to,
            newest_first: false,
        };
        on_demand::read_for_peer(model, out, pending, range, filter, limit);
        return;
    }
    answer_changes(model, out, channel, peer, clock, filter, None);
}

/// One page of the store's index, read for a changes-since.
pub(crate) struct StoreAnswer {
    /// Documents changed after the asked clock and at most `read_to`, in clock order.
    pub docs: Vec<StoredDoc>,
    pub read_to: Clock,
    /// As many as asked for: more may be in the range.
    pub full: bool,
}

/// Sends the page of changes after `clock`: what the store read (if it
/// was read), then what memory holds above it.
pub(crate) fn answer_changes(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    clock: Clock,
    filter: Filter,
    stored: Option<StoreAnswer>,
) {
    let page = model.config.timing.changes_page.max(1);
    let horizon = super::common::promised_clock(model);
    let mut docs = Vec::new();
    let mut walk_after = clock;
    let mut up_to = horizon.max(clock);
    if let Some(read) = stored {
        let last_row = read.docs.iter().map(|s| s.clock).max();
        for s in read.docs {
            if s.clock <= clock || s.clock > read.read_to.min(horizon) {
                continue;
            }
            if model.tombstones.contains(&s.doc)
                || !filter.matches(&s.doc, &s.meta)
                || !access(model, peer, &s.doc).read
            {
                continue;
            }
            // Memory is as new as the store, or newer (a write under way).
            let version = model
                .docs
                .get(&s.doc)
                .map(|d| super::common::promised_version(model, d))
                .unwrap_or(s.version);
            docs.push(ChangedDoc {
                doc: s.doc,
                version,
                clock: s.clock,
            });
        }
        let read_to = read.read_to.min(horizon).max(clock);
        // More in the store's range, or the floor rose over documents
        // memory no longer holds while the store was read: the peer asks
        // again from here.
        if read.full || model.memory_floor > read_to {
            let up_to = match (read.full, last_row) {
                (true, Some(last)) => last.clamp(clock, read_to),
                _ => read_to,
            };
            let more = up_to < horizon;
            out.send(channel, Message::Changes { docs, up_to, more });
            return;
        }
        walk_after = read_to;
        up_to = read_to;
    }
    let mut more = false;
    let from = Clock(walk_after.0.saturating_add(1));
    for (c, doc) in model.by_clock.range(from..=horizon.max(from)) {
        if *c > horizon {
            break;
        }
        let Some(d) = model.docs.get(doc) else {
            continue;
        };
        if !filter.matches(doc, &d.meta) || !access(model, peer, doc).read {
            continue;
        }
        if docs.len() >= page {
            more = true;
            break;
        }
        up_to = *c;
        docs.push(ChangedDoc {
            doc: doc.clone(),
            version: super::common::promised_version(model, d),
            clock: *c,
        });
    }
    if !more {
        up_to = horizon.max(clock);
    }
    out.send(channel, Message::Changes { docs, up_to, more });
}

/// The answer to our changes-since: request what they have that we lack.
pub(crate) fn changes(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    docs: Vec<ChangedDoc>,
    up_to: Clock,
    more: bool,
) {
    let found = !docs.is_empty();
    // The next page is asked for before this page's documents: the remote
    // lists it while it answers these, and its listing reaches us ahead of
    // this page's data, so our requests for the next page go out while we
    // import this one (asked after them, each page waited for the last
    // page's data to be imported here and exported there: the two sides
    // took turns, each idle half the time of a cold sync).
    if more {
        let filter = model
            .channels
            .get(&channel)
            .and_then(|c| c.remote.clone())
            .and_then(|a| model.remotes.get(&a))
            .map(|r| r.filter.clone())
            .unwrap_or_default();
        out.send(
            channel,
            Message::ChangesSince {
                clock: up_to,
                filter,
            },
        );
    }
    for cd in docs {
        if model.tombstones.contains(&cd.doc) {
            continue;
        }
        super::common::confirm(model, peer, &cd.doc, Some(&cd.version));
        let ours = model
            .docs
            .get(&cd.doc)
            .map(|d| (d.is_ready(), d.version.includes(&cd.version)));
        match ours {
            Some((_, true)) => {
                peer_has(model, peer, &cd.doc, &cd.version);
                // Held, but not yet durable: the cursor waits for the write.
                if !durable_here(model, &cd.doc, &cd.version) {
                    let now = model.now;
                    if let Some(p) = model.peers.get_mut(peer) {
                        p.pulling.insert(cd.doc.clone());
                        p.pulling_durable.insert(cd.doc.clone(), cd.version.clone());
                        p.pull_started.get_or_insert(now);
                        model.durable_pullers.insert(peer.clone());
                    }
                }
                // It has all we have: that counts for our pushed cursor.
                if let Some(d) = model
                    .docs
                    .get(&cd.doc)
                    .filter(|d| cd.version.includes(&d.version))
                {
                    let clock = d.clock;
                    remote_acked(model, out, peer, &cd.doc, clock);
                }
            }
            Some((true, false)) => {
                let now = model.now;
                let timeout = model.config.timing.request_timeout_ms;
                let asked = model.peers.get_mut(peer).is_some_and(|p| {
                    p.pulling.insert(cd.doc.clone());
                    p.pull_started.get_or_insert(now);
                    matches!(p.docs.get(&cd.doc), Some(PeerDoc::Pending(at)) if now.saturating_sub(*at) < timeout)
                });
                // Already asked (a push on reconnect): its answer settles this pull too.
                if !asked {
                    super::propagation::request(model, out, peer, channel, &cd.doc, false);
                }
            }
            // Loading: it is requested from the remotes once loaded; wait for that.
            Some((false, false)) => {
                if let Some(crate::model::Phase::Loading { reason, .. }) =
                    model.docs.get_mut(&cd.doc).map(|d| &mut d.phase)
                {
                    // Not one a remote may not create here (`fetch_new`).
                    if *reason != LoadReason::Pull {
                        *reason = LoadReason::Open;
                    }
                }
                let now = model.now;
                if let Some(p) = model.peers.get_mut(peer) {
                    p.pulling.insert(cd.doc.clone());
                    p.pull_started.get_or_insert(now);
                }
            }
            None => fetch_new(model, out, peer, &cd.doc),
        }
    }
    if let Some(p) = model.peers.get_mut(peer) {
        p.pull_target = Some(p.pull_target.unwrap_or_default().max(up_to));
    }
    super::timers::pulled(model, peer, found);
    settle_pull(model, out, peer);
}

/// Whether our primary store holds `version` of `doc` (without stores,
/// memory is all there is).
fn durable_here(model: &Model, doc: &DocId, version: &VersionVector) -> bool {
    let Some(store) = model.stores.get_min() else {
        return true;
    };
    model
        .docs
        .get(doc)
        .and_then(|d| d.durable.get(store))
        .is_some_and(|v| v.includes(version))
}

/// `doc` became durable on the primary store up to `durable`: pulls that
/// waited for that are settled.
pub(crate) fn durable_for_pulls(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    durable: &VersionVector,
) {
    let mut waiting = Vec::new();
    let mut done = Vec::new();
    for peer in &model.durable_pullers {
        match model.peers.get(peer) {
            Some(p) if !p.pulling_durable.is_empty() => {
                let ready = p
                    .pulling_durable
                    .get(doc)
                    .is_some_and(|v| durable.includes(v));
                if ready {
                    waiting.push(peer.clone());
                }
            }
            _ => done.push(peer.clone()),
        }
    }
    for peer in done {
        model.durable_pullers.remove(&peer);
    }
    for peer in waiting {
        if let Some(p) = model.peers.get_mut(&peer) {
            p.pulling_durable.remove(doc);
        }
        pulled_doc(model, out, &peer, doc);
    }
}

/// A document the remote has and we never saw: open it like the application would.
fn fetch_new(model: &mut Model, out: &mut Effects, peer: &PeerId, doc: &DocId) {
    let create = access(model, peer, doc).create;
    // Memory may have forgotten one its store holds: loading it decides
    // (`LoadReason::Pull`), where a remote that may not create would be
    // passed over, and the pulled cursor with it.
    let forgotten = !model.stores.is_empty() && on_demand::below_floor(model, Clock(0));
    if !doc.is_valid() || !(create || forgotten) {
        return;
    }
    let now = model.now;
    if let Some(p) = model.peers.get_mut(peer) {
        p.pulling.insert(doc.clone());
        p.pull_started.get_or_insert(now);
    }
    if model.stores.is_empty() {
        super::common::create_doc(model, doc, DocMeta::default());
        super::propagation::request_from_remotes(model, out, doc);
    } else {
        let (reason, creator) = match create {
            true => (LoadReason::Open, None),
            false => (LoadReason::Pull, Some(peer.clone())),
        };
        super::store_requests::start_loading(
            model,
            out,
            doc,
            DocMeta::default(),
            reason,
            creator,
            None,
        );
    }
}

/// One pulled document is in (durable, or nothing to fetch).
pub(crate) fn pulled_doc(model: &mut Model, out: &mut Effects, peer: &PeerId, doc: &DocId) {
    // Still to be written: the write's acknowledgement settles it. Read
    // before writing: this runs for every import, and a peer seldom pulls.
    let pulled = model
        .peers
        .get(peer)
        .is_some_and(|p| p.pulling.contains(doc) && !p.pulling_durable.contains_key(doc));
    let removed = pulled
        && model
            .peers
            .get_mut(peer)
            .is_some_and(|p| p.pulling.remove(doc));
    if removed {
        settle_pull(model, out, peer);
    }
}

fn settle_pull(model: &mut Model, out: &mut Effects, peer: &PeerId) {
    let Some(p) = model.peers.get_mut(peer) else {
        return;
    };
    if !p.pulling.is_empty() {
        return;
    }
    p.pull_started = None;
    if let Some(target) = p.pull_target.take() {
        if target > p.cursor.pulled {
            p.cursor.pulled = target;
            save_cursor(model, out, peer);
        }
    }
}

/// A remote acknowledged our data for `doc` at our clock `clock`: move the
/// pushed cursor over every document it now has.
pub(crate) fn remote_acked(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    doc: &DocId,
    clock: Clock,
) {
    // Only a peer we dialed has a pushed cursor: read before writing, as
    // this runs for every acknowledgement.
    if !model.is_dialed(peer) {
        return;
    }
    let Some(p) = model.peers.get_mut(peer) else {
        return;
    };
    let prev = p.acked.get(doc).copied().unwrap_or_default();
    p.acked.insert(doc.clone(), prev.max(clock));
    let walk_from = p.cursor.pushed;
    // The walk needs what is below the floor: it runs again once that is
    // in memory (one waits per peer; the acknowledgements stay in `acked`).
    if on_demand::below_floor(model, walk_from) {
        let waiting = model
            .parked
            .iter()
            .any(|(_, x)| matches!(x, Parked::RemoteAcked { peer: q, .. } if q == peer));
        if !waiting {
            let again = Parked::RemoteAcked {
                peer: peer.clone(),
                doc: doc.clone(),
                clock,
            };
            on_demand::park_below_floor(model, out, walk_from, again);
        }
        return;
    }
    let Some(p) = model.peers.get_mut(peer) else {
        return;
    };
    let mut pushed = p.cursor.pushed;
    for (c, d) in model.by_clock.range(Clock(pushed.0.saturating_add(1))..) {
        let Some(x) = model.docs.get(d) else {
            pushed = *c;
            continue;
        };
        let relevant = p.filters.iter().any(|f| f.matches(d, &x.meta));
        // Covered: acknowledged at this clock, or it confirmed having all we have.
        let covered = p.acked.get(d).is_some_and(|a| a >= c)
            || p.confirmed
                .get(d)
                .is_some_and(|v| v.as_ref().is_some_and(|v| v.includes(&x.version)));
        if relevant && !covered {
            break;
        }
        pushed = *c;
    }
    if pushed > p.cursor.pushed {
        p.cursor.pushed = pushed;
        let passed: Vec<DocId> = p
            .acked
            .iter()
            .filter(|(_, c)| **c <= pushed)
            .map(|(d, _)| d.clone())
            .collect();
        for d in passed {
            p.acked.remove(&d);
        }
        save_cursor(model, out, peer);
    }
}

/// Tells established peers that follow no filter of ours about a new
/// document, all but `creator` (who knows already).
pub(crate) fn announce_but(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    creator: Option<&PeerId>,
) {
    let Some(d) = model.docs.get(doc) else {
        return;
    };
    let info = DocInfo {
        doc: doc.clone(),
        meta: d.meta.clone(),
    };
    let targets: Vec<(PeerId, ChannelId)> = model
        .peers
        .iter()
        .filter(|(id, _)| !model.filter_subscribers.contains(*id))
        .filter(|(id, _)| Some(*id) != creator)
        .filter(|(id, _)| access(model, id, doc).read)
        .filter_map(|(id, _)| Some((id.clone(), peer_channel(model, id)?)))
        .collect();
    for (_, channel) in targets {
        out.send(
            channel,
            Message::NewDocs {
                docs: vec![info.clone()],
            },
        );
    }
}

pub(crate) fn directory_request(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
) {
    let limit = crate::frame::Limits::default().max_elements;
    if on_demand::below_floor(model, Clock(0)) {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let pending = PendingRead::Directory {
            channel,
            peer: peer.clone(),
            filter: filter.clone(),
            limit,
        };
        let range = ReadRange::Ids { after: None };
        on_demand::read_for_peer(model, out, pending, range, filter, limit);
        return;
    }
    directory_answer(model, out, channel, peer, filter, limit as u32, None);
}

/// Answers a directory request with the first documents in id order:
/// memory's, merged with the store's first page when it was read.
pub(crate) fn directory_answer(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
    limit: u32,
    rows: Option<Vec<StoredDoc>>,
) {
    let read = rows.map(|r| {
        let full = r.len() >= limit as usize;
        (r, full)
    });
    let (listed, _, _) = on_demand::merged_by_id(model, peer, &filter, None, read, limit as usize);
    let docs = listed
        .into_iter()
        .map(|d| DocInfo {
            doc: d.doc,
            meta: d.meta,
        })
        .collect();
    out.send(channel, Message::DirectoryResponse { docs });
}

/// A directory answer or an announcement: fetch the documents we follow and
/// lack, where the peer may create them here.
pub(crate) fn discovered(model: &mut Model, out: &mut Effects, peer: &PeerId, docs: Vec<DocInfo>) {
    let dialed = model.is_dialed(peer);
    for info in docs {
        if model.docs.contains_key(&info.doc) || model.tombstones.contains(&info.doc) {
            continue;
        }
        let follows = dialed
            && model
                .remotes
                .values()
                .any(|r| r.filter.matches(&info.doc, &info.meta));
        if follows {
            fetch_new(model, out, peer, &info.doc);
            if let Some(d) = model.docs.get_mut(&info.doc) {
                d.meta = info.meta;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{Message, PeerId};

    #[test]
    fn a_new_document_is_announced_to_every_peer_but_its_creator() {
        let mut k = Kit::hub();
        k.peer(1, "alice");
        k.peer(2, "bob");
        k.create(&[], "d");
        let alice = PeerId::new("alice");
        let (cmds, follow_ups) =
            k.handle(|m, o| super::announce_but(m, o, &doc("d"), Some(&alice)));
        assert!(follow_ups.is_empty());
        assert!(messages(&cmds, 1).is_empty());
        assert!(matches!(
            messages(&cmds, 2).as_slice(),
            [Message::NewDocs { docs }] if docs.len() == 1 && docs[0].doc == doc("d")
        ));
    }
}
