//! The operator's quotas on one client (`Quotas`): updates and their bytes
//! per second per connection as token buckets, and connections per
//! identity. A client past one is answered and keeps its connection.

use crate::io::Millis;
use crate::model::Model;
use crate::{ChannelId, PeerId};

/// A connection's buckets: what it may still spend, in thousandths (so
/// a refill by the millisecond loses nothing), and when they were filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Buckets {
    updates: Option<u64>,
    bytes: Option<u64>,
    filled_at: Millis,
}

/// Takes one update of `len` bytes from `channel`'s buckets; `Err` with
/// how long to wait (ms) when a quota refuses it, in which case nothing
/// is taken.
pub(crate) fn charge(
    model: &mut Model,
    channel: ChannelId,
    peer: &PeerId,
    len: usize,
) -> Result<(), Millis> {
    let q = model.config.quotas.clone();
    if q.updates_per_s == 0 && q.update_bytes_per_s == 0 {
        return Ok(());
    }
    // Quotas are on clients: servers (ours to dial, or other servers
    // syncing with us) are not limited.
    let server = model
        .peers
        .get(peer)
        .is_some_and(|p| p.dialed || p.kind == crate::PeerKind::Service);
    if server {
        return Ok(());
    }
    let now = model.now;
    let Some(ch) = model.channels.get_mut(&channel) else {
        return Ok(());
    };
    let b = &mut ch.quota;
    let elapsed = now.saturating_sub(b.filled_at);
    b.filled_at = now;
    // A bucket holds one second's worth; it starts full.
    let refill = |level: Option<u64>, rate: u64| {
        let full = rate.saturating_mul(1000);
        level.map_or(full, |l| {
            l.saturating_add(elapsed.saturating_mul(rate)).min(full)
        })
    };
    let updates = refill(b.updates, q.updates_per_s);
    let bytes = refill(b.bytes, q.update_bytes_per_s);
    let len = len as u64;
    let need_updates = 1000;
    let need_bytes = len.saturating_mul(1000);
    // Time (ms) until a bucket holds what is needed.
    let wait = |level: u64, need: u64, rate: u64| match rate {
        0 => 0,
        _ if level >= need => 0,
        // An update larger than a whole second's bytes waits for a full
        // bucket, then goes (else it could never go).
        _ if need > rate.saturating_mul(1000) => {
            (rate.saturating_mul(1000) - level.min(rate.saturating_mul(1000))).div_ceil(rate)
        }
        _ => (need - level).div_ceil(rate),
    };
    let wait_ms = wait(updates, need_updates, q.updates_per_s).max(wait(
        bytes,
        need_bytes,
        q.update_bytes_per_s,
    ));
    b.updates = Some(updates);
    b.bytes = Some(bytes);
    if wait_ms > 0 {
        return Err(wait_ms);
    }
    if q.updates_per_s > 0 {
        b.updates = Some(updates.saturating_sub(need_updates));
    }
    if q.update_bytes_per_s > 0 {
        b.bytes = Some(bytes.saturating_sub(need_bytes));
    }
    Ok(())
}

/// Whether `peer`, connecting as `kind`, may open one more connection.
/// A user's or server's newer connection replaces its older ones, so only
/// connections that stay side by side (bots') count.
pub(crate) fn connection_allowed(model: &Model, peer: &PeerId, kind: crate::PeerKind) -> bool {
    let most = model.config.quotas.connections_per_identity;
    if most == 0 || kind != crate::PeerKind::Bot {
        return true;
    }
    let open = model.peers.get(peer).map_or(0, |p| {
        p.channels
            .iter()
            .filter(|c| {
                model
                    .channels
                    .get(*c)
                    .is_some_and(|ch| ch.peer_kind == Some(crate::PeerKind::Bot))
            })
            .count()
    });
    open < most
}
