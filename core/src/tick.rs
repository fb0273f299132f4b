//! Due timers, each handed to the handler it belongs to (the top layer,
//! beside `update`: it may call any handler, and no handler calls it).
//!
//! The timer table itself (set, cancel, the next wake) is
//! `handlers::timers`, a leaf every handler may use.

use crate::effects::Effects;
use crate::handlers::{common, connection, ephemeral, propagation, storage, sync, timers};
use crate::ids::{ChannelId, Clock, PeerId};
use crate::io::Cmd;
use crate::model::{Model, Timer};
use crate::protocol::Message;

pub(crate) fn tick(model: &mut Model, out: &mut Effects) {
    crate::handlers::on_demand::forget_idle(model);
    while let Some((at, timer)) = model.timers.get_min().cloned() {
        if at > model.now {
            break;
        }
        model.timers.remove(&(at, timer.clone()));
        model.timer_at.remove(&timer);
        fire(model, out, timer);
    }
}

fn fire(model: &mut Model, out: &mut Effects, timer: Timer) {
    match timer {
        Timer::Reconnect(addr) => {
            if model
                .remotes
                .get(&addr)
                .is_some_and(|r| r.channel.is_none())
            {
                out.cmd(Cmd::Dial { remote: addr });
            }
        }
        Timer::Pull(peer) => pull_due(model, out, peer),
        Timer::PresenceExpiry(key) => ephemeral::expire(model, out, key),
        Timer::Heartbeat => ephemeral::heartbeat(model, out),
        Timer::Sweep => sweep(model, out),
        Timer::PresenceFlush => ephemeral::flush(model, out),
        Timer::LoadTimeout(doc) => storage::load_timed_out(model, out, &doc),
        Timer::FeedPoll => storage::feed_poll(model, out),
        Timer::StoreRetry => storage::retry_due(model, out),
        Timer::ForgetPeer(peer) => connection::forget_peer(model, &peer),
        Timer::CredentialExpiry(channel) => connection::credential_expired(model, out, channel),
        Timer::RetryRateLimited(peer, doc) => sync::retry_rate_limited(model, out, &peer, &doc),
    }
}

/// Retries what timed out: unacknowledged data is re-offered through a
/// sync-request (its answer says what the peer lacks), unacknowledged store
/// writes are sent again, silent handshakes are closed, stuck pulls restart.
fn sweep(model: &mut Model, out: &mut Effects) {
    let now = model.now;
    let t = model.config.timing.clone();
    let expired: Vec<(crate::ids::BatchId, crate::model::InFlight)> = model
        .in_flight
        .iter()
        .filter(|(_, f)| now.saturating_sub(f.sent_at) >= t.ack_timeout_ms)
        .map(|(b, f)| (*b, f.clone()))
        .collect();
    for (batch, f) in expired {
        model.take_in_flight(&batch);
        if model.stores.contains(&f.channel) {
            common::write_unsettled(model, f.channel, &f);
            if let Some(d) = model.docs.get_mut(&f.doc) {
                let durable = d.durable.get(&f.channel).cloned().unwrap_or_default();
                d.stored.insert(f.channel, durable);
            }
            common::persist(model, out, &f.doc);
        } else if let Some(peer) = common::established_peer(model, f.channel) {
            if let Some(theirs) = f.answer_owed.clone() {
                // A request waits on this update: the data goes as its answer.
                sync::answer_owed(model, out, f.channel, &peer, &f, theirs, false);
            } else if model.docs.get(&f.doc).is_some_and(|d| d.is_ready()) {
                propagation::request(model, out, &peer, f.channel, &f.doc, true);
            }
        }
    }
    let unanswered: Vec<(PeerId, crate::ids::DocId)> = model
        .requests
        .iter()
        .filter(|(_, at)| now.saturating_sub(**at) >= t.request_timeout_ms)
        .map(|(k, _)| k.clone())
        .collect();
    for (peer, doc) in unanswered {
        model.requests.remove(&(peer.clone(), doc.clone()));
        let channel = common::peer_channel(model, &peer);
        if let (Some(channel), true) = (channel, common::is_ready(model, &doc)) {
            propagation::request(model, out, &peer, channel, &doc, true);
        }
    }
    let silent: Vec<ChannelId> = model
        .channels
        .iter()
        .filter(|(_, c)| matches!(c.handshake, crate::model::Handshake::Connecting))
        .filter(|(_, c)| now.saturating_sub(c.opened_at) >= t.handshake_timeout_ms)
        .map(|(id, _)| *id)
        .collect();
    for channel in silent {
        out.send(
            channel,
            Message::Error {
                code: crate::protocol::ErrorCode::NotEstablished,
                message: "the handshake did not complete in time".into(),
            },
        );
        out.cmd(Cmd::Close {
            channel,
            reason: "handshake timed out".into(),
        });
    }
    let stuck: Vec<PeerId> = model
        .peers
        .iter()
        .filter(|(_, p)| {
            p.pull_started
                .is_some_and(|s| now.saturating_sub(s) >= t.request_timeout_ms)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for peer in stuck {
        if let Some(p) = model.peers.get_mut(&peer) {
            p.pulling = Default::default();
            p.pulling_durable = Default::default();
            p.pull_target = None;
            p.pull_started = None;
        }
    }
    let outstanding = !model.in_flight.is_empty()
        || !model.requests.is_empty()
        || model
            .channels
            .values()
            .any(|c| matches!(c.handshake, crate::model::Handshake::Connecting))
        || model.peers.values().any(|p| p.pull_started.is_some());
    if outstanding {
        timers::ensure_sweep(model);
    }
}

fn pull_due(model: &mut Model, out: &mut Effects, peer: PeerId) {
    let Some(channel) = common::peer_channel(model, &peer) else {
        return;
    };
    let Some(p) = model.peers.get(&peer) else {
        return;
    };
    let interval = p.pull_interval.max(1);
    let pushed_recently = p
        .last_push_at
        .is_some_and(|t| model.now.saturating_sub(t) < interval);
    let busy = !p.pulling.is_empty();
    if !pushed_recently && !busy {
        let filter = p.filters.front().cloned().unwrap_or_default();
        let clock: Clock = p.cursor.pulled;
        out.send(channel, Message::ChangesSince { clock, filter });
    }
    let at = model.now.saturating_add(interval);
    timers::set(model, Timer::Pull(peer), at);
}
