//! Steps shared by several handlers: sending data, persisting, fanning out,
//! clocks, durability and permissions.

use crate::effects::{Effects, FollowUp};
use crate::ids::{BatchId, ChannelId, Clock, DocId, ImportId, PeerId};
use crate::io::{ChannelKind, Cmd, Event, Level, Outgoing};
use crate::model::{
    Doc, Handshake, InFlight, Model, Notify, PeerDoc, PendingImport, Phase, Source, Waiter,
};
use crate::policy::Access;
use crate::protocol::{
    AckStatus, Message, Payload, Revision, RevisionStatus, MIN_PROTOCOL_VERSION,
};
use crate::version::VersionVector;

pub(crate) fn next_batch(model: &mut Model) -> BatchId {
    let b = BatchId(model.next_batch);
    model.next_batch = model.next_batch.saturating_add(1);
    b
}

/// What a network peer may do with a document.
/// A peer that presented a signed token with rights has those; any other
/// has what the node's rules give it.
pub(crate) fn access(model: &Model, peer: &PeerId, doc: &DocId) -> Access {
    model
        .peers
        .get(peer)
        .and_then(|p| credential_access(p, doc))
        .unwrap_or_else(|| model.config.rules.access(peer, doc))
}

/// What a peer's credential grants on `doc`; `None`: the node's rules decide
/// (see [`access`]).
pub(crate) fn credential_access(p: &crate::model::Peer, doc: &DocId) -> Option<Access> {
    p.credential.as_ref().and_then(|c| c.access(doc))
}

/// The peer established on a network channel, if any.
pub(crate) fn established_peer(model: &Model, channel: ChannelId) -> Option<PeerId> {
    let ch = model.channels.get(&channel)?;
    match (&ch.handshake, ch.kind) {
        (Handshake::Established(p), ChannelKind::Network) => Some(p.clone()),
        _ => None,
    }
}

/// The channel we use to reach a peer: its newest one that is not a
/// request's (see [`is_request_channel`]); none while it has only those
/// (a request holds nothing of the identity's and acknowledges nothing).
pub(crate) fn peer_channel(model: &Model, peer: &PeerId) -> Option<ChannelId> {
    model.peers.get(peer)?.sync_channels.get_max().copied()
}

/// Subscribes a peer to a document's live changes; the peer remembers it,
/// so forgetting the peer later finds every subscription.
pub(crate) fn subscribe(model: &mut Model, doc: &DocId, peer: &PeerId) {
    if let Some(d) = model.docs.get_mut(doc) {
        if d.subscribers.insert(peer.clone()) {
            if let Some(p) = model.peers.get_mut(peer) {
                p.subscribed.insert(doc.clone());
            }
        }
    }
}

pub(crate) fn set_peer_doc(model: &mut Model, peer: &PeerId, doc: &DocId, state: PeerDoc) {
    if let Some(p) = model.peers.get_mut(peer) {
        p.docs.insert(doc.clone(), state);
    }
}

/// Raises what we know a peer has of a document (never lowers it).
pub(crate) fn peer_has(model: &mut Model, peer: &PeerId, doc: &DocId, version: &VersionVector) {
    if let Some(p) = model.peers.get_mut(peer) {
        peer_has_in(p, doc, version);
    }
}

/// [`peer_has`] on a peer already in hand.
pub(crate) fn peer_has_in(p: &mut crate::model::Peer, doc: &DocId, version: &VersionVector) {
    // One lookup for a document it is known to hold (every live update).
    match p.docs.get_mut(doc) {
        Some(PeerDoc::Synced(v)) => *v = v.merge(version),
        Some(other) => *other = PeerDoc::Synced(version.clone()),
        None => {
            p.docs.insert(doc.clone(), PeerDoc::Synced(version.clone()));
        }
    }
}

/// Records what a peer confirmed having: merged with what it confirmed
/// before; `None` when it said it has no such document.
pub(crate) fn confirm(
    model: &mut Model,
    peer: &PeerId,
    doc: &DocId,
    version: Option<&VersionVector>,
) {
    if let Some(p) = model.peers.get_mut(peer) {
        confirm_in(p, doc, version);
    }
}

/// [`confirm`] on a peer already in hand (an ack changes more of it).
pub(crate) fn confirm_in(p: &mut crate::model::Peer, doc: &DocId, version: Option<&VersionVector>) {
    // One lookup for a document it confirmed before (every data message
    // and ack), and no change when it holds nothing new.
    match (p.confirmed.get_mut(doc), version) {
        (Some(Some(old)), Some(v)) => {
            if !old.includes(v) {
                *old = old.merge(v);
            }
        }
        (Some(entry), v) => *entry = v.cloned(),
        (None, v) => {
            p.confirmed.insert(doc.clone(), v.cloned());
        }
    }
}

/// The version of a document we promise peers we hold: what every store
/// holds durably (all of it without a store). A peer trusts this much to
/// survive our crash: it moves its cursor and stops pushing on our word.
pub(crate) fn promised_version(model: &Model, doc: &Doc) -> VersionVector {
    let mut promised: Option<VersionVector> = None;
    for s in model.stores.iter() {
        let durable = doc.durable.get(s).cloned().unwrap_or_default();
        promised = Some(match promised {
            Some(p) => p.meet(&durable),
            None => durable,
        });
    }
    promised
        .map(|p| p.meet(&doc.version))
        .unwrap_or_else(|| doc.version.clone())
}

/// Sends a document's data to `peer` on `channel` and records that the
/// peer has it now (optimistically, until its ack says otherwise).
pub(crate) fn send_data(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    channel: ChannelId,
    doc_id: &DocId,
    since: Option<VersionVector>,
    as_update: bool,
) -> Option<BatchId> {
    let (batch, version) = send_data_only(model, out, channel, doc_id, since, as_update)?;
    peer_has(model, peer, doc_id, &version);
    Some(batch)
}

/// Sends a document's data on `channel`, recording nothing of who gets
/// it (a request channel's answer: see [`is_request_channel`]); the batch
/// and the version it sent (read with the document's clock in one lookup).
pub(crate) fn send_data_only(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    doc_id: &DocId,
    since: Option<VersionVector>,
    as_update: bool,
) -> Option<(BatchId, VersionVector)> {
    let doc = model.docs.get(doc_id)?;
    let version = doc.version.clone();
    let clock = doc.clock;
    let batch = next_batch(model);
    let since = since.filter(|v| !v.is_empty());
    model.add_in_flight(
        batch,
        InFlight {
            channel,
            doc: doc_id.clone(),
            version: version.clone(),
            base: since.clone(),
            clock,
            known_clock: model.clock,
            sent_at: model.now,
            as_update,
            answer_owed: None,
            to_store: false,
        },
    );
    super::timers::ensure_sweep(model);
    out.item(
        channel,
        Outgoing::Data {
            doc: doc_id.clone(),
            batch,
            since,
            as_update,
        },
    );
    Some((batch, version))
}

/// Whether `channel` is one request's link (a call of the HTTP document
/// or listener API, which says hello as a bot): what it asks and sends is
/// answered on it alone and recorded as nothing of its identity's
/// (subscriptions, what its replica holds, its cursors), which belong to
/// the identity's live connections. Many such requests run side by side.
pub(crate) fn is_request_channel(model: &Model, channel: ChannelId) -> bool {
    model.channels.get(&channel).is_some_and(|c| c.is_request())
}

/// Sends what a store lacks of a document (optimistically marked as sent).
pub(crate) fn persist(model: &mut Model, out: &mut Effects, doc_id: &DocId) {
    let Some(doc) = model.docs.get(doc_id) else {
        return;
    };
    let version = doc.version.clone();
    let clock = doc.clock;
    let stores: Vec<(ChannelId, Option<VersionVector>)> = model
        .stores
        .iter()
        .filter_map(|s| match doc.stored.get(s) {
            Some(v) if v.includes(&version) && !version.is_empty() => None,
            // One write per document and store at a time: what changes
            // meanwhile goes as one change once it is acknowledged. A burst
            // of N updates is then a few writes, not N, each of which would
            // carry the document's whole version (quadratic in writers).
            Some(v) if writing(doc, *s, v) => None,
            Some(v) => Some((*s, Some(v.clone()))),
            None => Some((*s, None)),
        })
        .collect();
    for (store, since) in stores {
        let batch = next_batch(model);
        let since = since.filter(|v| !v.is_empty());
        model.add_in_flight(
            batch,
            InFlight {
                channel: store,
                doc: doc_id.clone(),
                version: version.clone(),
                base: since.clone(),
                clock,
                known_clock: model.clock,
                sent_at: model.now,
                as_update: true,
                answer_owed: None,
                to_store: true,
            },
        );
        super::timers::ensure_sweep(model);
        out.item(
            store,
            Outgoing::Data {
                doc: doc_id.clone(),
                batch,
                since,
                as_update: true,
            },
        );
        if let Some(d) = model.docs.get_mut(doc_id) {
            d.stored.insert(store, version.clone());
        }
    }
}

/// Whether a write of `doc` to `store` awaits its acknowledgement: what was
/// sent (`sent`) is more than what the store acknowledged. Every way a write
/// ends (acknowledged, refused, failed, timed out) brings the two together.
fn writing(doc: &Doc, store: ChannelId, sent: &VersionVector) -> bool {
    !doc.durable
        .get(&store)
        .is_some_and(|durable| durable.includes(sent))
}

/// A document the primary store holds, as its metadata says, comes into
/// memory (at start, or read back on demand). One already here, or deleted
/// here, is left as it is: what memory holds is as new as the store's.
pub(crate) fn remember_stored(model: &mut Model, store: ChannelId, s: crate::io::StoredDoc) {
    if !s.doc.is_valid() || model.tombstones.contains(&s.doc) || model.docs.contains_key(&s.doc) {
        return;
    }
    let mut d = crate::model::Doc::new(s.meta);
    d.version = s.version.clone();
    d.stored.insert(store, s.version.clone());
    d.durable.insert(store, s.version);
    model.docs.insert(s.doc.clone(), d);
    assign_clock(model, &s.doc, s.clock);
}

/// Gives a document a new clock in our feed.
pub(crate) fn assign_clock(model: &mut Model, doc_id: &DocId, clock: Clock) {
    let Some(doc) = model.docs.get_mut(doc_id) else {
        return;
    };
    let feed = Feed {
        by_clock: &mut model.by_clock,
        clock: &mut model.clock,
        unsettled_writes: &mut model.unsettled_writes,
    };
    feed.assign(doc_id, doc, clock);
}

/// The parts of the model a document's clock moves with, borrowed beside
/// the document itself, so a handler that holds it need not read it again.
pub(crate) struct Feed<'a> {
    pub by_clock: &'a mut imbl::OrdMap<Clock, DocId>,
    pub clock: &'a mut Clock,
    pub unsettled_writes: &'a mut imbl::OrdMap<DocId, Clock>,
}

impl Feed<'_> {
    /// [`assign_clock`] on a document in hand.
    pub(crate) fn assign(self, doc_id: &DocId, doc: &mut Doc, clock: Clock) {
        if clock <= doc.clock {
            return;
        }
        let old = doc.clock;
        doc.clock = clock;
        if old > Clock(0) {
            self.by_clock.remove(&old);
        }
        self.by_clock.insert(clock, doc_id.clone());
        if clock > *self.clock {
            *self.clock = clock;
        }
        // A clock the store gave the document after its write in doubt (the
        // write again, or the feed's news of it) is at or above that write's:
        // listed there, cursors may pass it.
        if self
            .unsettled_writes
            .get(doc_id)
            .is_some_and(|before| clock > *before)
        {
            self.unsettled_writes.remove(doc_id);
        }
    }
}

/// Records a version advance: without a store, the node's own counter is the feed.
pub(crate) fn changed(model: &mut Model, doc_id: &DocId) {
    if !model.stores.is_empty() {
        model.dirty.insert(doc_id.clone());
    } else {
        let c = Clock(model.clock.0 + 1);
        assign_clock(model, doc_id, c);
    }
}

/// Whether a request made at `at` has waited too long for its answer.
pub(crate) fn stale(model: &Model, at: crate::io::Millis) -> bool {
    model.now.saturating_sub(at) >= model.config.timing.request_timeout_ms
}

/// Waits for `version` to be durable before notifying; immediate without stores.
pub(crate) fn when_durable(
    model: &mut Model,
    out: &mut Effects,
    doc_id: &DocId,
    version: VersionVector,
    notify: Notify,
) {
    // One write of the document: with a store, the change is nearly
    // always still on its way there, and waits.
    let Some(d) = model.docs.get_mut(doc_id) else {
        return;
    };
    if !durable_on(d, &model.stores, &version) {
        d.waiters.push(Waiter { version, notify });
        return;
    }
    let clock = Some(d.clock);
    deliver(
        model,
        out,
        notify,
        doc_id,
        &version,
        clock,
        RevisionStatus::Ok,
    );
}

/// Whether every store of `stores` holds `version` of `doc` durably.
fn durable_on(doc: &Doc, stores: &imbl::OrdSet<ChannelId>, version: &VersionVector) -> bool {
    stores.iter().all(|s| {
        doc.stored.get(s).is_some_and(|v| v.includes(version)) && store_acked(doc, *s, version)
    })
}

fn store_acked(doc: &Doc, store: ChannelId, version: &VersionVector) -> bool {
    doc.durable.get(&store).is_some_and(|v| v.includes(version))
}

/// Releases every waiter whose version is now durable on all stores.
pub(crate) fn release_waiters(model: &mut Model, out: &mut Effects, doc_id: &DocId) {
    // One write to the document: its waiters sorted into those now
    // durable and those that still wait. (Written without reading first:
    // it runs at each write's acknowledgement, and the change written
    // nearly always has one waiting, its sender's acknowledgement.)
    let stores = &model.stores;
    let Some(d) = model.docs.get_mut(doc_id) else {
        return;
    };
    if d.waiters.is_empty() {
        return;
    }
    // Nearly always every one of them is (one write, one store): taken
    // whole, without sorting them into two new vectors.
    let ready: Vec<Waiter> = if d.waiters.iter().all(|w| durable_on(d, stores, &w.version)) {
        std::mem::take(&mut d.waiters)
    } else {
        let (ready, keep): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut d.waiters)
            .into_iter()
            .partition(|w| durable_on(d, stores, &w.version));
        d.waiters = keep;
        ready
    };
    let clock = Some(d.clock);
    for w in ready {
        deliver(
            model,
            out,
            w.notify,
            doc_id,
            &w.version,
            clock,
            RevisionStatus::Ok,
        );
    }
}

/// Fails every waiter of a document (deleted, or the doc is gone).
pub(crate) fn fail_waiters(
    model: &mut Model,
    out: &mut Effects,
    doc_id: &DocId,
    status: RevisionStatus,
) {
    let Some(d) = model.docs.get_mut(doc_id) else {
        return;
    };
    let waiters = std::mem::take(&mut d.waiters);
    for w in waiters {
        deliver(model, out, w.notify, doc_id, &w.version, None, status);
    }
}

/// Sends an error to a channel and logs it.
pub(crate) fn refuse(
    out: &mut Effects,
    channel: ChannelId,
    code: crate::protocol::ErrorCode,
    message: String,
) {
    out.log(Level::Warn, format!("{channel}: {code:?}: {message}"));
    out.send(channel, Message::Error { code, message });
}

/// Emits an application-visible error and a log line.
pub(crate) fn report(out: &mut Effects, doc: Option<&DocId>, reason: String) {
    out.log(Level::Warn, reason.clone());
    out.emit(Event::Error {
        doc: doc.cloned(),
        reason,
    });
}

/// Creates a ready, empty document and records the change for the feed.
pub(crate) fn create_doc(model: &mut Model, doc_id: &DocId, meta: crate::protocol::DocMeta) {
    model.docs.insert(doc_id.clone(), Doc::new(meta));
    changed(model, doc_id);
}

/// Whether the document is loaded and ready.
pub(crate) fn is_ready(model: &Model, doc_id: &DocId) -> bool {
    model
        .docs
        .get(doc_id)
        .is_some_and(|d| matches!(d.phase, Phase::Ready))
}

/// The clock up to which this node knows every change: a peer's cursor or
/// a listener's floor may move up to it. On a store shared with other
/// servers that is the feed's position, not our own newest clock: another
/// server's change below our newest may not have been read yet.
///
/// A write whose outcome is unknown holds it back: had it committed, its
/// clock lies above the one known when it went out, and a peer whose cursor
/// moved past it would never be told of that document (see
/// `Model::unsettled_writes`).
pub(crate) fn promised_clock(model: &Model) -> Clock {
    let known = if model.store_shared {
        model.feed_seen.min(model.clock)
    } else {
        model.clock
    };
    match model.unsettled_writes.values().min() {
        Some(before) => known.min(*before),
        None => known,
    }
}

/// A write to the primary store may or may not have committed: cursors stay
/// below what it could have been given until the document is written again.
pub(crate) fn write_unsettled(model: &mut Model, store: ChannelId, f: &crate::model::InFlight) {
    // A document deleted since is heard of as a deletion, and nothing would
    // lift a hold for it.
    let gone = !model.docs.contains_key(&f.doc) || model.tombstones.contains(&f.doc);
    if model.stores.get_min() != Some(&store) || gone {
        return;
    }
    let before = model
        .unsettled_writes
        .get(&f.doc)
        .map_or(f.known_clock, |c| (*c).min(f.known_clock));
    model.unsettled_writes.insert(f.doc.clone(), before);
}

/// The protocol version negotiated on a channel.
pub(crate) fn protocol_of(model: &Model, channel: ChannelId) -> u32 {
    model
        .channels
        .get(&channel)
        .map_or(MIN_PROTOCOL_VERSION, |c| c.protocol)
}

/// Asks the shell to import bytes.
pub(crate) fn import(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    data: Payload,
    source: Source,
) {
    let id = ImportId(model.next_import);
    model.next_import = model.next_import.saturating_add(1);
    let author = author_of(model, &source);
    model.imports.insert(
        id,
        PendingImport {
            doc: doc.clone(),
            source,
            len: data.len() as u64,
        },
    );
    out.cmd(Cmd::Import {
        id,
        doc: doc.clone(),
        data,
        author,
    });
}

/// Who the node vouches sent `source`'s bytes: the peer whose credentials
/// let its connection in, now. A server we dialed, or one the operator
/// named a relay, passes on what others wrote (we chose to trust it, and
/// its data is everyone's), so its changes are nobody's here.
fn author_of(model: &Model, source: &Source) -> Option<crate::io::Author> {
    let peer = match source {
        Source::Peer { peer, .. } | Source::Push { peer, .. } => peer,
    };
    let relay = model.is_dialed(peer)
        || model
            .config()
            .relays
            .iter()
            .any(|r| r.matches(peer.as_str()));
    (!relay).then(|| crate::io::Author {
        identity: peer.clone(),
        at: model.now,
    })
}

/// Tells whoever waited how its data was taken.
pub(crate) fn deliver(
    model: &mut Model,
    out: &mut Effects,
    notify: Notify,
    doc_id: &DocId,
    version: &VersionVector,
    clock: Option<Clock>,
    status: RevisionStatus,
) {
    match notify {
        Notify::Ack {
            channel,
            peer,
            batch,
        } => {
            if model.channels.contains_key(&channel) {
                out.send(
                    channel,
                    Message::Ack {
                        batch,
                        status: ack_status(status),
                        clock: clock.filter(|c| c.0 > 0),
                    },
                );
            }
            if status == RevisionStatus::Ok {
                out.follow(FollowUp::Pulled {
                    peer,
                    doc: doc_id.clone(),
                });
            }
        }
        Notify::Push { job, index } => {
            let rev = Revision {
                doc: doc_id.clone(),
                version: version.clone(),
                clock: clock.unwrap_or_default(),
                status,
            };
            out.follow(FollowUp::RevisionFilled {
                job,
                index,
                revision: rev,
            });
        }
    }
}

pub(crate) fn ack_status(status: RevisionStatus) -> AckStatus {
    match status {
        RevisionStatus::Ok => AckStatus::Ok,
        RevisionStatus::MissingDependencies => AckStatus::MissingDependencies,
        RevisionStatus::Denied => AckStatus::PermissionDenied,
        RevisionStatus::Invalid => AckStatus::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{ChannelId, PeerId};

    #[test]
    fn a_peer_and_its_channel_name_each_other_once_established() {
        let mut k = Kit::hub();
        k.accept(5);
        assert_eq!(super::established_peer(&k.model, ChannelId(5)), None);
        k.peer(3, "alice");
        let alice = PeerId::new("alice");
        assert_eq!(super::peer_channel(&k.model, &alice), Some(ChannelId(3)));
        assert_eq!(super::established_peer(&k.model, ChannelId(3)), Some(alice));
    }

    #[test]
    fn a_channel_not_known_speaks_the_oldest_protocol() {
        let k = Kit::hub();
        assert_eq!(
            super::protocol_of(&k.model, ChannelId(9)),
            crate::protocol::MIN_PROTOCOL_VERSION
        );
    }
}
