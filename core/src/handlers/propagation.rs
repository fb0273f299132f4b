//! Bringing peers up to date: a document's change sent to every subscriber
//! that lacks it, and a sync-request that asks a peer for a document and
//! marks it pending until it answers (a leaf every handler may use; it
//! calls no handler).

use super::common::{
    access, is_ready, peer_channel, peer_has_in, persist, send_data_only, set_peer_doc, stale,
    subscribe,
};
use crate::effects::Effects;
use crate::ids::{ChannelId, DocId, PeerId};
use crate::model::{Model, PeerDoc};
use crate::protocol::Message;
use crate::version::VersionVector;

/// Sends a sync-request (with our presence for the document) and marks the
/// peer pending unless we already know what it has.
pub(crate) fn request(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    channel: ChannelId,
    doc: &DocId,
    bidirectional: bool,
) {
    let version = model
        .docs
        .get(doc)
        .map(|d| d.version.clone())
        .unwrap_or_default();
    out.send(
        channel,
        Message::SyncRequest {
            doc: doc.clone(),
            version,
            bidirectional,
        },
    );
    // Until it answers, what we knew of it may be stale (it may have restarted).
    let now = model.now;
    set_peer_doc(model, peer, doc, PeerDoc::Pending(now));
    model.requests.insert((peer.clone(), doc.clone()), now);
    super::timers::ensure_sweep(model);
    super::presence::send_own(model, out, doc, channel);
}

/// Asks every remote we dialed for a document the application opened.
pub(crate) fn request_from_remotes(model: &mut Model, out: &mut Effects, doc: &DocId) {
    let targets: Vec<(PeerId, ChannelId)> = model
        .peers
        .iter()
        .filter(|(_, p)| p.dialed)
        .filter_map(|(id, _)| Some((id.clone(), peer_channel(model, id)?)))
        .collect();
    for (peer, channel) in targets {
        super::common::subscribe(model, doc, &peer);
        request(model, out, &peer, channel, doc, true);
    }
}

/// Sends a subscriber what it lacks, if it is online, may read, and is behind.
pub(crate) fn send_if_behind(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    doc_id: &DocId,
    version: &VersionVector,
) {
    // One read of the peer for its channel, what it has and what is on its way.
    let Some(p) = model.peers.get(peer) else {
        return;
    };
    let Some(channel) = p.sync_channels.get_max().copied() else {
        return;
    };
    let sending = p.sending.get(doc_id).copied();
    let since = match p.docs.get(doc_id) {
        Some(PeerDoc::Synced(v)) if v.includes(version) => return,
        Some(PeerDoc::Synced(v)) => Some(v.clone()),
        // Its answer will tell us what it has; then we send the gap.
        Some(PeerDoc::Pending(at)) if !stale(model, *at) => return,
        // The answer was lost: ask again.
        Some(PeerDoc::Pending(_)) => {
            return super::propagation::request(model, out, peer, channel, doc_id, true);
        }
        Some(PeerDoc::Absent) | None => None,
    };
    // What its credential grants, from the same read (`access` would read
    // the peer again).
    let granted = super::common::credential_access(p, doc_id);
    let allowed = granted.unwrap_or_else(|| model.config.rules.access(peer, doc_id));
    if !allowed.read {
        return;
    }
    // One live update per document in flight to a peer: what changes before
    // its ack goes as one update then. A fast peer acks at once and sees each
    // change alone; a slow one gets fewer, larger updates instead of a queue
    // of small ones (see `sync::ack_received`).
    let sending = sending
        .and_then(|b| model.in_flight.get(&b))
        .is_some_and(|f| f.channel == channel);
    if sending {
        return;
    }
    // `send_data`, with what the peer has and what is on its way to it
    // written in one write of the peer.
    if let Some((batch, sent)) = send_data_only(model, out, channel, doc_id, since, true) {
        if let Some(p) = model.peers.get_mut(peer) {
            peer_has_in(p, doc_id, &sent);
            p.sending.insert(doc_id.clone(), batch);
        }
    }
}

/// After our version of `doc` advanced: persist, then send to every
/// subscriber except `source` what it lacks.
pub(crate) fn propagate(
    model: &mut Model,
    out: &mut Effects,
    doc_id: &DocId,
    source: Option<&PeerId>,
) {
    if !is_ready(model, doc_id) {
        return;
    }
    persist(model, out, doc_id);
    // Peers whose filters take the document follow it first. Most nodes
    // have none: the document is not read for them then.
    if !model.filter_subscribers.is_empty() {
        subscribe_filtered(model, doc_id);
    }
    let Some(doc) = model.docs.get(doc_id) else {
        return;
    };
    let version = doc.version.clone();
    let subscribers: Vec<PeerId> = doc.subscribers.iter().cloned().collect();
    for peer in subscribers {
        if Some(&peer) == source {
            continue;
        }
        send_if_behind(model, out, &peer, doc_id, &version);
    }
}

/// Subscribes to `doc_id` every peer whose filter takes it and that may
/// read it.
fn subscribe_filtered(model: &mut Model, doc_id: &DocId) {
    let Some(doc) = model.docs.get(doc_id) else {
        return;
    };
    let mut targets: Vec<PeerId> = Vec::new();
    let meta = doc.meta.clone();
    for p in model.filter_subscribers.iter() {
        if doc.subscribers.contains(p) {
            continue;
        }
        let wants = model
            .peers
            .get(p)
            .is_some_and(|peer| peer.filters.iter().any(|f| f.matches(doc_id, &meta)));
        if wants && access(model, p, doc_id).read {
            targets.push(p.clone());
        }
    }
    for t in &targets {
        subscribe(model, doc_id, t);
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::PeerId;

    #[test]
    fn a_change_goes_to_each_subscriber_that_lacks_it_but_its_source() {
        let mut k = Kit::hub();
        k.create(&[], "d");
        for (ch, p) in [(1, "alice"), (2, "bob")] {
            k.peer(ch, p);
            k.follow(ch, "d");
        }
        if let Some(d) = k.model.docs.get_mut(&doc("d")) {
            d.version = vv(&[(1, 3)]);
        }
        let alice = PeerId::new("alice");
        let (cmds, follow_ups) = k.handle(|m, o| super::propagate(m, o, &doc("d"), Some(&alice)));
        assert!(follow_ups.is_empty());
        assert!(sent(&cmds, 1).is_empty(), "never back to its source");
        assert!(matches!(
            sent(&cmds, 2).as_slice(),
            [crate::Outgoing::Data { doc: d, as_update: true, .. }] if *d == doc("d")
        ));
    }
}
