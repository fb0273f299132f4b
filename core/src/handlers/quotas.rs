//! The operator's quotas on one client (`Quotas`): updates and their bytes
//! per second per connection (per identity for requests of the document
//! API) as token buckets, connections per identity,
//! documents created per identity per hour, and the largest document. A
//! client past one is answered and keeps its connection.

use crate::effects::Effects;
use crate::io::Level;
use crate::io::Millis;
use crate::model::Model;
use crate::protocol::{AckStatus, ErrorCode, Message};
use crate::{BatchId, ChannelId, DocId, PeerId};

/// The window of the documents-created quota.
const HOUR_MS: Millis = 3_600_000;

/// Past this many identities in the documents-created table, windows
/// that ended are dropped (the table holds only the last hour's creators);
/// the next sweep waits until the table doubled, so sweeping costs little.
const CREATORS_KEPT: usize = 1024;

/// The most identities the table holds: past it, an identity not in it
/// may not create a document until a window ends (memory stays bounded).
const CREATORS_MOST: usize = 100_000;

/// Whether quotas leave `peer` alone: servers replicate, and a replica
/// refused would differ. Only servers the operator chose count: one this
/// node dials, or one named a relay (`Config::relays`), which its
/// credentials let in as. What a client says it is in its hello (a
/// `service`) is not a credential: it gave any client a way past every quota.
fn exempt(model: &Model, peer: &PeerId) -> bool {
    model.is_dialed(peer) || model.config.relays.iter().any(|r| r.matches(peer.as_str()))
}

/// Tells a client on protocol 4 or later why a quota refused what it sent
/// (older ones only see the acknowledgement's status).
pub(crate) fn tell_refused(
    model: &Model,
    out: &mut Effects,
    channel: ChannelId,
    message: String,
    code: ErrorCode,
) {
    // A server refused: before quotas trusted only the operator's choice,
    // any peer saying it was a server was exempt, so an edge that dials
    // this node unnamed is limited since; the operator is told how to
    // name it.
    if model
        .channels
        .get(&channel)
        .is_some_and(|c| c.peer_kind == Some(crate::PeerKind::Service))
    {
        out.log(
            Level::Warn,
            format!(
                "{channel}: a peer saying it is a server was refused by a quota ({message}); \
                 a server that dials this node replicates unlimited only under an id \
                 named a relay (Config::relays, serve --relay)"
            ),
        );
    }
    if model
        .channels
        .get(&channel)
        .is_some_and(|c| c.protocol >= 4)
    {
        out.send(channel, Message::Error { code, message });
    }
}

/// Counts a document `peer` creates; `Err` with how long to wait (ms)
/// when it is past its documents-per-hour quota (then nothing is counted).
pub(crate) fn create(model: &mut Model, peer: &PeerId) -> Result<(), Millis> {
    let most = model.config.quotas.docs_created_per_hour;
    if most == 0 || exempt(model, peer) {
        return Ok(());
    }
    let now = model.now;
    if model.created.len() > model.creators_swept_at.max(CREATORS_KEPT) {
        model.created = std::mem::take(&mut model.created)
            .into_iter()
            .filter(|(_, (began, _))| now.saturating_sub(*began) < HOUR_MS)
            .collect();
        model.creators_swept_at = model.created.len().saturating_mul(2);
    }
    if !model.created.contains_key(peer) && model.created.len() >= CREATORS_MOST {
        return Err(60_000);
    }
    let entry = model.created.entry(peer.clone()).or_insert((now, 0));
    if now.saturating_sub(entry.0) >= HOUR_MS {
        *entry = (now, 0);
    }
    if entry.1 >= most {
        return Err(entry.0.saturating_add(HOUR_MS).saturating_sub(now).max(1));
    }
    entry.1 += 1;
    Ok(())
}

/// Whether an update of `len` bytes from `peer` is within the largest
/// update allowed; `Err` with that size when it is not.
pub(crate) fn update_fits(model: &Model, peer: &PeerId, len: usize) -> Result<(), u64> {
    let most = model.config.quotas.max_update_bytes;
    // The size first: it decides nearly every update without reading the peer.
    if most == 0 || len as u64 <= most || exempt(model, peer) {
        return Ok(());
    }
    Err(most)
}

/// Whether `len` more bytes from `peer` keep `doc` within the largest
/// document allowed; `Err` with that size when they do not.
pub(crate) fn fits(model: &Model, peer: &PeerId, doc: &DocId, len: usize) -> Result<(), u64> {
    let most = model.config.quotas.max_doc_bytes;
    if most == 0 || exempt(model, peer) {
        return Ok(());
    }
    let now = model.docs.get(doc).map_or(0, |d| d.bytes);
    if now.saturating_add(len as u64) > most {
        return Err(most);
    }
    Ok(())
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
    if exempt(model, peer) {
        return Ok(());
    }
    let now = model.now;
    // A request's channel lives for one call: its identity's requests
    // share one bucket, kept with the identity, or each would start full.
    // (One read of the channel says which, and is the bucket when it is its own.)
    let b = match model.channels.get_mut(&channel) {
        Some(ch) if !ch.is_request() => &mut ch.quota,
        Some(_) => match model.peers.get_mut(peer) {
            Some(p) => &mut p.request_quota,
            None => return Ok(()),
        },
        None => return Ok(()),
    };
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

/// Refuses an update that would make `doc` larger than the largest
/// document allowed (`most` bytes).
pub(crate) fn refuse_too_large(
    model: &Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    doc: &DocId,
    batch: BatchId,
    most: u64,
) {
    out.log(
        Level::Info,
        format!("{peer}'s update would make {doc} larger than {most} bytes; refused"),
    );
    tell_refused(
        model,
        out,
        channel,
        format!("{doc} would grow past the largest document allowed ({most} bytes)"),
        ErrorCode::TooLarge,
    );
    out.send(
        channel,
        Message::Ack {
            batch,
            status: AckStatus::TooLarge,
            clock: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{AckStatus, BatchId, ChannelId, Message, PeerId};

    #[test]
    fn an_update_too_large_for_its_document_is_acknowledged_too_large_and_the_connection_kept() {
        let mut k = Kit::hub();
        k.peer(1, "alice");
        let alice = PeerId::new("alice");
        let (cmds, follow_ups) = k.handle(|m, o| {
            super::refuse_too_large(m, o, ChannelId(1), &alice, &doc("d"), BatchId(4), 100)
        });
        assert!(follow_ups.is_empty());
        assert!(messages(&cmds, 1).iter().any(|m| matches!(
            m,
            Message::Ack {
                batch: BatchId(4),
                status: AckStatus::TooLarge,
                ..
            }
        )));
        assert!(!closes(&cmds, 1));
    }
}
