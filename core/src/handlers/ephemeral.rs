//! Presence ("ephemeral") data: never stored, relayed with a hop limit,
//! expired after a TTL, dropped when its peer's last channel closes.
//!
//! ```text
//! alice --ephemeral{hops 1}--> hub --ephemeral{hops 0}--> bob, carol (not alice, not stores)
//! ```
//! A peer that subscribes late gets the live entries at once; our own entries
//! are re-sent every half TTL so they do not expire while we are here.
//!
//! Servers sharing one store (PostgreSQL) share presence through it: what
//! a peer of ours sends is also handed to the store, which publishes it to
//! the other servers; what arrives from the store is relayed to our peers
//! without spending a hop (the store is a wire between servers, not a peer)
//! and never handed back to the store.
//! ```text
//! alice --> server A --> A's peers
//!                  \--> store ==> server B --> B's peers
//! ```

use super::common::{access, peer_channel};
use super::presence::{count_room, own_entry, remove};
use crate::effects::Effects;
use crate::ids::{ChannelId, DocId, Namespace, PeerId};
use crate::io::Event;
use crate::model::{Model, Presence, PresenceKey, Timer};
use crate::protocol::{Ephemeral, Message, Payload};

/// Longest TTL we honour, whatever a peer asks (5 minutes).
const MAX_TTL_MS: u64 = 300_000;

/// Network peers that should see presence for a document: its
/// subscribers, the peers following a filter it matches (also before
/// anyone wrote it), and the remotes we dialed, online, except `skip`.
fn targets(model: &Model, doc: &DocId, skip: &[&PeerId]) -> Vec<ChannelId> {
    let mut peers: Vec<PeerId> = model
        .docs
        .get(doc)
        .map(|d| d.subscribers.iter().cloned().collect())
        .unwrap_or_default();
    let meta = model
        .docs
        .get(doc)
        .map(|d| d.meta.clone())
        .unwrap_or_default();
    peers.extend(
        model
            .filter_subscribers
            .iter()
            .filter(|p| {
                model
                    .peers
                    .get(*p)
                    .is_some_and(|x| x.filters.iter().any(|f| f.matches(doc, &meta)))
                    && access(model, p, doc).read
            })
            .cloned(),
    );
    peers.extend(
        model
            .peers
            .iter()
            .filter(|(_, p)| p.dialed)
            .map(|(id, _)| id.clone()),
    );
    peers.sort();
    peers.dedup();
    peers
        .iter()
        .filter(|p| !skip.contains(p))
        .filter_map(|p| peer_channel(model, p))
        .collect()
}

pub(crate) fn set_presence(
    model: &mut Model,
    out: &mut Effects,
    doc: DocId,
    namespace: Namespace,
    data: Payload,
) {
    if !doc.is_valid() || !namespace.is_valid() {
        return super::common::report(
            out,
            Some(&doc),
            "presence needs a valid document id and namespace".into(),
        );
    }
    let key = (doc.clone(), namespace.clone());
    if data.is_empty() {
        model.own_presence.remove(&key);
    } else {
        model.own_presence.insert(key, data.clone());
    }
    let e = own_entry(model, &doc, &namespace, data);
    let me = model.config.peer.clone();
    for ch in targets(model, &doc, &[&me]) {
        out.send(ch, Message::Ephemeral(e.clone()));
    }
    if !model.own_presence.is_empty() {
        let at = model
            .now
            .saturating_add(u64::from(model.config.timing.presence_ttl_ms / 2).max(1));
        if !model.timer_at.contains_key(&Timer::Heartbeat) {
            super::timers::set(model, Timer::Heartbeat, at);
        }
    }
}

pub(crate) fn received(model: &mut Model, out: &mut Effects, from: &PeerId, mut e: Ephemeral) {
    // Presence speaks for its sender: only a server we dialed relays others'.
    let relayed_by_server = model.is_dialed(from);
    if !relayed_by_server {
        e.origin = from.clone();
    }
    e.ttl_ms = e.ttl_ms.min(MAX_TTL_MS as u32);
    if e.origin == model.config.peer || !access(model, from, &e.doc).read {
        return;
    }
    let largest = model.config.bounds.presence_bytes;
    if e.data.len() > largest {
        return out.log(
            crate::io::Level::Warn,
            format!(
                "{from} sent {} bytes of presence for {}; at most {largest} are kept",
                e.data.len(),
                e.doc
            ),
        );
    }
    let key: PresenceKey = (e.doc.clone(), e.namespace.clone(), e.origin.clone());
    if !e.data.is_empty() && room_full(model, &key, &e.data) {
        return out.log(
            crate::io::Level::Warn,
            format!(
                "{from} sent {} bytes of presence for {} {}, which holds {} of at most {}; dropped",
                e.data.len(),
                e.doc,
                e.namespace,
                model
                    .presence_room_bytes
                    .get(&(e.doc.clone(), e.namespace.clone()))
                    .copied()
                    .unwrap_or(0),
                model.config.bounds.presence_room_bytes
            ),
        );
    }
    if e.data.is_empty() {
        // A removal is never held, and what was held for the entry goes
        // first: a Loro member's departure is its keys' tombstones, then
        // the removal, and the members still there need the tombstones.
        if let Some((held, via)) = model.presence_held.remove(&key) {
            relay(model, out, &held, &via);
        }
        remove(model, out, &key);
    } else {
        // Counted against the peer it came through: an entry that came
        // through another (or that we keep for a peer that left) moves over.
        let before = model.presence.get(&key).map(|p| p.via.clone());
        let known = before.as_ref() == Some(from);
        let most = model.config.bounds.presence_per_peer;
        if !known && model.peers.get(from).is_some_and(|p| p.presence >= most) {
            return out.log(
                crate::io::Level::Warn,
                format!("{from} holds {most} presence entries here; more are dropped"),
            );
        }
        if !known {
            if let Some(p) = before.and_then(|via| model.peers.get_mut(&via)) {
                p.presence = p.presence.saturating_sub(1);
            }
            if let Some(p) = model.peers.get_mut(from) {
                p.presence += 1;
            }
        }
        keep(model, out, key.clone(), &e, from.clone());
    }
    if e.hops > 0 {
        let relayed = Ephemeral {
            hops: e.hops - 1,
            ..e.clone()
        };
        relay_or_hold(model, out, key, relayed, from.clone());
    }
}

/// Relays a change at once, or, when this entry was relayed within the
/// window, holds it (replacing what was held) until the window ends.
fn relay_or_hold(
    model: &mut Model,
    out: &mut Effects,
    key: PresenceKey,
    relayed: Ephemeral,
    from: PeerId,
) {
    let window = model.config.timing.presence_window_ms;
    if window == 0 || relayed.data.is_empty() {
        return relay(model, out, &relayed, &from);
    }
    let recent = model
        .presence_relayed
        .get(&key)
        .is_some_and(|at| model.now < at.saturating_add(window));
    if recent {
        model.presence_held.insert(key, (relayed, from));
    } else {
        relay(model, out, &relayed, &from);
        model.presence_relayed.insert(key, model.now);
    }
    if !model.timer_at.contains_key(&Timer::PresenceFlush) {
        let at = model.now.saturating_add(window);
        super::timers::set(model, Timer::PresenceFlush, at);
    }
}

/// Sends a change to the room's members (not back where it came from, nor
/// to its origin) and, on a shared store, to the other servers.
fn relay(model: &Model, out: &mut Effects, relayed: &Ephemeral, from: &PeerId) {
    for ch in targets(model, &relayed.doc, &[from, &relayed.origin]) {
        out.send(ch, Message::Ephemeral(relayed.clone()));
    }
    if model.store_shared {
        if let Some(store) = model.stores.get_min().copied() {
            out.send(store, Message::Ephemeral(relayed.clone()));
        }
    }
}

/// The window is over: every change held is relayed (its entry's window
/// starts again), and entries relayed longer ago than the window are
/// forgotten.
pub(crate) fn flush(model: &mut Model, out: &mut Effects) {
    let window = model.config.timing.presence_window_ms;
    let now = model.now;
    let held = std::mem::take(&mut model.presence_held);
    for (key, (relayed, from)) in held {
        relay(model, out, &relayed, &from);
        model.presence_relayed.insert(key, now);
    }
    let stale: Vec<PresenceKey> = model
        .presence_relayed
        .iter()
        .filter(|(_, at)| now >= at.saturating_add(window))
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        model.presence_relayed.remove(&k);
    }
    if !model.presence_relayed.is_empty() {
        super::timers::set(
            model,
            Timer::PresenceFlush,
            now.saturating_add(window.max(1)),
        );
    }
}

/// Whether keeping `data` for `key` would pass its room's bound.
fn room_full(model: &Model, key: &PresenceKey, data: &Payload) -> bool {
    let room = (key.0.clone(), key.1.clone());
    let held = model.presence_room_bytes.get(&room).copied().unwrap_or(0);
    let replaced = model.presence.get(key).map_or(0, |p| p.data.len());
    held.saturating_sub(replaced).saturating_add(data.len())
        > model.config.bounds.presence_room_bytes
}

/// Presence another server of a shared store published: kept until its
/// TTL and relayed to our peers (not back to the store).
pub(crate) fn received_from_store(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    mut e: Ephemeral,
) {
    if model.stores.get_min() != Some(&store)
        || e.origin == model.config.peer
        || !e.doc.is_valid()
        || !e.namespace.is_valid()
        || model.tombstones.contains(&e.doc)
    {
        return;
    }
    e.ttl_ms = e.ttl_ms.min(MAX_TTL_MS as u32);
    let key: PresenceKey = (e.doc.clone(), e.namespace.clone(), e.origin.clone());
    if e.data.len() > model.config.bounds.presence_bytes || room_full(model, &key, &e.data) {
        // Another server's peer: that server logged what it let through;
        // this one keeps its own memory bounded all the same.
        return;
    }
    if e.data.is_empty() {
        remove(model, out, &key);
    } else {
        // Counted against nobody here: the server it came from bounds
        // what each of its peers may hold.
        let via = e.origin.clone();
        keep(model, out, key, &e, via);
    }
    for ch in targets(model, &e.doc, &[&e.origin]) {
        out.send(ch, Message::Ephemeral(e.clone()));
    }
}

/// Keeps a presence entry until its TTL (already capped), and tells the application.
fn keep(model: &mut Model, out: &mut Effects, key: PresenceKey, e: &Ephemeral, via: PeerId) {
    let expires = model.now.saturating_add(u64::from(e.ttl_ms));
    let replaced = model.put_presence(
        key.clone(),
        Presence {
            data: e.data.clone(),
            expires,
            via,
        },
    );
    count_room(
        model,
        &key,
        e.data.len(),
        replaced.map_or(0, |p| p.data.len()),
    );
    super::timers::set(model, Timer::PresenceExpiry(key), expires);
    out.emit(Event::Presence {
        doc: e.doc.clone(),
        namespace: e.namespace.clone(),
        peer: e.origin.clone(),
        data: Some(e.data.clone()),
    });
}

/// A presence entry's time is up.
pub(crate) fn expire(model: &mut Model, out: &mut Effects, key: PresenceKey) {
    if model
        .presence
        .get(&key)
        .is_some_and(|p| p.expires <= model.now)
    {
        remove(model, out, &key);
    }
}

/// Re-sends our own presence so it does not expire elsewhere.
pub(crate) fn heartbeat(model: &mut Model, out: &mut Effects) {
    if model.own_presence.is_empty() {
        return;
    }
    let me = model.config.peer.clone();
    let own: Vec<((DocId, Namespace), Payload)> = model
        .own_presence
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((doc, ns), data) in own {
        let e = own_entry(model, &doc, &ns, data);
        for ch in targets(model, &doc, &[&me]) {
            out.send(ch, Message::Ephemeral(e.clone()));
        }
    }
    let at = model
        .now
        .saturating_add(u64::from(model.config.timing.presence_ttl_ms / 2).max(1));
    super::timers::set(model, Timer::Heartbeat, at);
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{Ephemeral, Message, Namespace, Payload, PeerId};

    #[test]
    fn presence_received_is_kept_and_relayed_with_one_hop_less_but_not_back() {
        let mut k = Kit::hub();
        k.create(&[], "d");
        for (ch, p) in [(1, "alice"), (2, "bob")] {
            k.peer(ch, p);
            k.follow(ch, "d");
        }
        let alice = PeerId::new("alice");
        let e = Ephemeral {
            doc: doc("d"),
            namespace: Namespace::new("cursor"),
            origin: alice.clone(),
            hops: 1,
            ttl_ms: 1_000,
            data: Payload::new(vec![1]),
        };
        let (cmds, follow_ups) = k.handle(|m, o| super::received(m, o, &alice, e));
        assert!(follow_ups.is_empty());
        assert_eq!(k.model.presence.len(), 1);
        assert!(messages(&cmds, 1).is_empty(), "never back to its sender");
        assert!(matches!(
            messages(&cmds, 2).as_slice(),
            [Message::Ephemeral(r)] if r.hops == 0 && r.origin == alice
        ));
    }
}
