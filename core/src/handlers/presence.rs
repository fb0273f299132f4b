//! The presence this node holds, sent to a peer that starts to follow a
//! document or connects (a leaf every handler may use; it calls no handler).
//! What arrives, expires and is relayed is `ephemeral`'s.

use crate::ids::{ChannelId, DocId, Namespace, PeerId};
use crate::model::Model;
use crate::out::Out;
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
    out: &mut Out,
    doc: &DocId,
    channel: ChannelId,
    peer: &PeerId,
) {
    let now = model.now;
    let entries: Vec<Ephemeral> = model
        .presence
        .iter()
        .filter(|((d, _, origin), p)| {
            d == doc && origin != peer && &p.via != peer && p.expires > now
        })
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
pub(crate) fn send_all_own(model: &Model, out: &mut Out, channel: ChannelId) {
    for ((d, n), data) in model.own_presence.iter() {
        out.send(
            channel,
            Message::Ephemeral(own_entry(model, d, n, data.clone())),
        );
    }
}

/// Our own entries for a document, sent along with a request or an answer.
pub(crate) fn send_own(model: &Model, out: &mut Out, doc: &DocId, channel: ChannelId) {
    for ((d, n), data) in model.own_presence.iter() {
        if d == doc {
            out.send(
                channel,
                Message::Ephemeral(own_entry(model, d, n, data.clone())),
            );
        }
    }
}
