//! The presence this node holds: sent to a peer that starts to follow a
//! document or connects, and dropped when its peer is gone or its
//! document deleted (a leaf every handler may use; it calls no handler).
//! What arrives, expires and is relayed is `ephemeral`'s.

use crate::effects::Effects;
use crate::ids::{ChannelId, DocId, Namespace, PeerId};
use crate::io::Event;
use crate::model::{Model, PresenceKey, Timer};
use crate::protocol::{Ephemeral, Message, Payload};

pub(crate) fn own_entry(
    model: &Model,
    doc: &DocId,
    namespace: &Namespace,
    data: Payload,
) -> Ephemeral {
    Ephemeral {
        doc: doc.clone(),
        namespace: namespace.clone(),
        origin: model.config.peer.clone(),
        hops: model.config.timing.presence_hops,
        ttl_ms: model.config.timing.presence_ttl_ms,
        data,
    }
}

/// The live entries for a document, sent to a peer that just subscribed.
pub(crate) fn send_existing(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    channel: ChannelId,
    peer: &PeerId,
) {
    let now = model.now;
    let entries: Vec<Ephemeral> = model
        .presence_of_doc(doc)
        .filter(|((_, _, origin), p)| origin != peer && &p.via != peer && p.expires > now)
        .map(|((d, n, origin), p)| Ephemeral {
            doc: d.clone(),
            namespace: n.clone(),
            origin: origin.clone(),
            hops: 0,
            ttl_ms: u32::try_from(p.expires - now).unwrap_or(u32::MAX),
            data: p.data.clone(),
        })
        .collect();
    for e in entries {
        out.send(channel, Message::Ephemeral(e));
    }
    send_own(model, out, doc, channel);
}

/// All our own entries, sent to a remote we just (re)connected to.
pub(crate) fn send_all_own(model: &Model, out: &mut Effects, channel: ChannelId) {
    for ((d, n), data) in model.own_presence.iter() {
        out.send(
            channel,
            Message::Ephemeral(own_entry(model, d, n, data.clone())),
        );
    }
}

/// Our own entries for a document, sent along with a request or an answer.
pub(crate) fn send_own(model: &Model, out: &mut Effects, doc: &DocId, channel: ChannelId) {
    for ((d, n), data) in model.own_presence.iter() {
        if d == doc {
            out.send(
                channel,
                Message::Ephemeral(own_entry(model, d, n, data.clone())),
            );
        }
    }
}

/// Adds `add` bytes to a room's count and takes `take` away.
pub(crate) fn count_room(model: &mut Model, key: &PresenceKey, add: usize, take: usize) {
    let room = (key.0.clone(), key.1.clone());
    let held = model.presence_room_bytes.get(&room).copied().unwrap_or(0);
    let now = held.saturating_add(add).saturating_sub(take);
    if now == 0 {
        model.presence_room_bytes.remove(&room);
    } else {
        model.presence_room_bytes.insert(room, now);
    }
}

pub(crate) fn remove(model: &mut Model, out: &mut Effects, key: &PresenceKey) {
    // A change still held for a member who is gone would bring it back.
    model.presence_held.remove(key);
    if let Some(gone) = model.take_presence(key) {
        count_room(model, key, 0, gone.data.len());
        if let Some(p) = model.peers.get_mut(&gone.via) {
            p.presence = p.presence.saturating_sub(1);
        }
        super::timers::cancel(model, &Timer::PresenceExpiry(key.clone()));
        out.emit(Event::Presence {
            doc: key.0.clone(),
            namespace: key.1.clone(),
            peer: key.2.clone(),
            data: None,
        });
    }
}

/// A peer's last channel closed: its presence goes, but for namespaces
/// configured to last, whose entries this node keeps (as their holder, so
/// they count against no peer) until their TTL, up to a bound in all.
pub(crate) fn remove_peer(model: &mut Model, out: &mut Effects, peer: &PeerId) {
    let lasting = model.config.lasting_presence.clone();
    let keys = model.presence_from(peer);
    let mut kept = model.presence_kept;
    for k in keys {
        if lasting.contains(&k.1) && kept < model.config.bounds.lasting_presence {
            kept += 1;
            if let Some(holder) = model.hold_presence(&k) {
                if let Some(h) = model.peers.get_mut(&holder) {
                    h.presence = h.presence.saturating_sub(1);
                }
            }
        } else {
            remove(model, out, &k);
        }
    }
}

/// Drops every presence entry of a deleted document.
pub(crate) fn forget_doc(model: &mut Model, out: &mut Effects, doc: &DocId) {
    let keys: Vec<PresenceKey> = model.presence_of_doc(doc).map(|(k, _)| k.clone()).collect();
    for k in keys {
        remove(model, out, &k);
    }
    let own: Vec<(DocId, Namespace)> = model
        .own_presence
        .keys()
        .filter(|(d, _)| d == doc)
        .cloned()
        .collect();
    for k in own {
        model.own_presence.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{Ephemeral, Message, Namespace, Payload, PeerId};

    #[test]
    fn a_gone_peers_presence_is_dropped_here_and_left_to_expire_elsewhere() {
        let mut k = Kit::hub();
        k.create(&[], "d");
        for (ch, p) in [(1, "alice"), (2, "bob")] {
            k.peer(ch, p);
            k.follow(ch, "d");
        }
        k.recv(
            1,
            Message::Ephemeral(Ephemeral {
                doc: doc("d"),
                namespace: Namespace::new("cursor"),
                origin: PeerId::new("alice"),
                hops: 0,
                ttl_ms: 1_000,
                data: Payload::new(vec![1]),
            }),
        );
        assert_eq!(k.model.presence.len(), 1);
        let alice = PeerId::new("alice");
        let (cmds, follow_ups) = k.handle(|m, o| super::remove_peer(m, o, &alice));
        assert!(follow_ups.is_empty() && k.model.presence.is_empty());
        assert!(events(&cmds).iter().any(
            |e| matches!(e, crate::Event::Presence { peer, data: None, .. } if *peer == alice)
        ));
        // Nobody is sent a removal: the others' copies end with their TTL.
        assert!(messages(&cmds, 2).is_empty());
    }

    fn cursor(doc_id: &str, origin: &str) -> Message {
        Message::Ephemeral(Ephemeral {
            doc: doc(doc_id),
            namespace: Namespace::new("cursor"),
            origin: PeerId::new(origin),
            hops: 0,
            ttl_ms: 1_000,
            data: Payload::new(vec![1]),
        })
    }

    #[test]
    fn a_leaving_peer_takes_only_its_own_presence_and_a_follower_gets_only_its_documents() {
        let mut k = Kit::hub();
        // Names that share a prefix: a range read that ran past its own
        // peer or document would take the other's.
        k.create(&[], "d");
        k.create(&[], "dd");
        for (ch, p) in [(1, "a"), (2, "ab")] {
            k.peer(ch, p);
            for d in ["d", "dd"] {
                k.follow(ch, d);
                k.recv(ch, cursor(d, p));
            }
        }
        assert_eq!(k.model.presence.len(), 4);
        let a = PeerId::new("a");
        k.handle(|m, o| super::remove_peer(m, o, &a));
        let left: Vec<&str> = k
            .model
            .presence
            .keys()
            .map(|(_, _, p)| p.as_str())
            .collect();
        assert_eq!(left, ["ab", "ab"]);
        k.model.check_indexes().unwrap();

        k.peer(3, "c");
        let cmds = k.follow(3, "d");
        let shown: Vec<(String, String)> = messages(&cmds, 3)
            .iter()
            .filter_map(|m| match m {
                Message::Ephemeral(e) => Some((e.doc.to_string(), e.origin.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(shown, [("d".to_string(), "ab".to_string())]);
    }
}
