//! Channels and the handshake.
//!
//! ```text
//! dialer                      acceptor
//!   | -- hello {peer, protocol, token, clock} --> |  version and token checked;
//!   | <-- welcome {peer, protocol, clock} ------- |  on failure: error, then close
//!   | -- subscribe {filter} --------------------> |  the dialer follows its filter,
//!   | -- changes-since {pulled cursor} ---------> |  pulls what changed since,
//!   | -- sync-request* (bidirectional) ---------> |  and pushes what it changed since
//! ```
//! Storage channels need no handshake: a store is trusted and established at once.

use super::common::{established_peer, refuse, report};
use crate::effects::{Effects, FollowUp};
use crate::ids::{ChannelId, DocId, PeerId, RemoteAddr};
use crate::io::{ChannelKind, Cmd, Event, Level, Millis};
use crate::model::{Channel, Handshake, Model, Peer, PeerDoc, Phase, Remote, Timer};
use crate::policy::{Credential, Verdict};
use crate::protocol::{ErrorCode, Filter, Hello, Message, PeerKind, Welcome, MIN_PROTOCOL_VERSION};

const STORE_PEER: &str = "store";

pub(crate) fn channel_added(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    kind: ChannelKind,
    remote: Option<RemoteAddr>,
) {
    if model.channels.contains_key(&channel) {
        out.log(Level::Warn, format!("{channel} was added twice; ignored"));
        return;
    }
    match kind {
        ChannelKind::Storage => {
            model.channels.insert(
                channel,
                Channel {
                    kind,
                    handshake: Handshake::Established(PeerId::new(STORE_PEER)),
                    remote: None,
                    opened_at: model.now,
                    peer_kind: None,
                    refused: 0,
                    protocol: crate::protocol::PROTOCOL_VERSION,
                    error_tokens: ERROR_BURST,
                    error_refilled: model.now,
                    errors_dropped: 0,
                    quota: Default::default(),
                    admitted_by: Default::default(),
                },
            );
            model.stores.insert(channel);
        }
        ChannelKind::Network => {
            model.channels.insert(
                channel,
                Channel {
                    kind,
                    handshake: Handshake::Connecting,
                    remote: remote.clone(),
                    opened_at: model.now,
                    peer_kind: None,
                    refused: 0,
                    protocol: crate::protocol::PROTOCOL_VERSION,
                    error_tokens: ERROR_BURST,
                    error_refilled: model.now,
                    errors_dropped: 0,
                    quota: Default::default(),
                    admitted_by: Default::default(),
                },
            );
            super::timers::ensure_sweep(model);
            if let Some(addr) = remote {
                let token = model.remotes.get(&addr).and_then(|r| r.token.clone());
                if let Some(r) = model.remotes.get_mut(&addr) {
                    r.channel = Some(channel);
                }
                super::timers::cancel(model, &Timer::Reconnect(addr));
                let cfg = model.config.clone();
                out.send(
                    channel,
                    Message::Hello(Hello {
                        peer: cfg.peer.clone(),
                        name: cfg.name.clone(),
                        kind: cfg.kind,
                        protocol: cfg.protocol,
                        token,
                        clock: model.clock,
                    }),
                );
            }
        }
    }
}

pub(crate) fn channel_removed(model: &mut Model, out: &mut Effects, channel: ChannelId) {
    let Some(ch) = model.channels.remove(&channel) else {
        return;
    };
    out.discard(channel);
    super::timers::cancel(model, &Timer::CredentialExpiry(channel));
    let stale: Vec<_> = model
        .in_flight
        .iter()
        .filter(|(_, f)| f.channel == channel)
        .map(|(b, _)| *b)
        .collect();
    for b in stale {
        model.take_in_flight(&b);
    }
    match ch.kind {
        ChannelKind::Storage => {
            model.stores.remove(&channel);
            // A store that goes away while awaited counts as having answered,
            // and no longer holds back acknowledgements.
            let docs: Vec<DocId> = model.docs.keys().cloned().collect();
            for doc in docs {
                if let Some(d) = model.docs.get_mut(&doc) {
                    d.stored.remove(&channel);
                    d.durable.remove(&channel);
                    if let Phase::Loading { waiting, .. } = &mut d.phase {
                        waiting.remove(&channel);
                    }
                }
                super::store_requests::maybe_finish_loading(model, out, &doc);
                super::common::release_waiters(model, out, &doc);
            }
        }
        ChannelKind::Network => {
            if let Handshake::Established(peer) = &ch.handshake {
                let last = match model.peers.get_mut(peer) {
                    Some(p) => {
                        p.channels.remove(&channel);
                        p.sync_channels.remove(&channel);
                        p.channels.is_empty()
                    }
                    None => false,
                };
                if last {
                    peer_gone(model, out, peer);
                }
            }
            if let Some(addr) = ch.remote {
                if model.remotes.contains_key(&addr) {
                    if let Some(r) = model.remotes.get_mut(&addr) {
                        r.channel = None;
                    }
                    super::timers::schedule_reconnect(model, &addr);
                }
            }
        }
    }
}

/// A peer's last channel closed: its presence goes, its requests in flight
/// are forgotten; its subscriptions and cursors stay for the reconnect.
fn peer_gone(model: &mut Model, out: &mut Effects, peer: &PeerId) {
    if let Some(p) = model.peers.get_mut(peer) {
        p.pulling = Default::default();
        p.pulling_durable = Default::default();
        p.pull_target = None;
        let pending: Vec<DocId> = p
            .docs
            .iter()
            .filter(|(_, s)| matches!(s, PeerDoc::Pending(_)))
            .map(|(d, _)| d.clone())
            .collect();
        for d in pending {
            p.docs.remove(&d);
        }
    }
    super::timers::cancel(model, &Timer::Pull(peer.clone()));
    // Its requests only, found by their key's first part (the empty id
    // sorts first): every outstanding request read on each disconnect
    // made a reconnect storm of a node that asks many peers quadratic.
    let asked: Vec<(PeerId, DocId)> = model
        .requests
        .range((peer.clone(), DocId::new(""))..)
        .take_while(|((p, _), _)| p == peer)
        .map(|(k, _)| k.clone())
        .collect();
    for k in asked {
        model.requests.remove(&k);
    }
    super::presence::remove_peer(model, out, peer);
    out.emit(Event::PeerDisconnected { peer: peer.clone() });
    // A remote we dial keeps its state (cursors, what it has) for the
    // reconnect; a peer that dialed us is forgotten after a while.
    if model.peers.get(peer).is_some_and(|p| !p.dialed) {
        let at = model.now.saturating_add(model.config.timing.peer_linger_ms);
        super::timers::set(model, Timer::ForgetPeer(peer.clone()), at);
    }
}

/// Drops what the model holds for a peer that left and did not come back.
pub(crate) fn forget_peer(model: &mut Model, peer: &PeerId) {
    let Some(p) = model.peers.get(peer) else {
        return;
    };
    if !p.channels.is_empty() || p.dialed {
        return;
    }
    let Some(p) = model.peers.remove(peer) else {
        return;
    };
    model.filter_subscribers.remove(peer);
    for doc in p.subscribed.iter() {
        if let Some(d) = model.docs.get_mut(doc) {
            d.subscribers.remove(peer);
        }
    }
}

pub(crate) fn frame_rejected(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    reason: String,
) {
    if !model.channels.contains_key(&channel) {
        return;
    }
    refuse(
        out,
        channel,
        ErrorCode::MalformedFrame,
        format!("the frame could not be read: {reason}"),
    );
    out.cmd(Cmd::Close {
        channel,
        reason: "malformed frame".into(),
    });
}

pub(crate) fn connect(
    model: &mut Model,
    out: &mut Effects,
    remote: RemoteAddr,
    token: Option<String>,
    filter: Filter,
) {
    if !remote.is_valid() {
        report(
            out,
            None,
            format!("cannot connect to {remote:?}: the address is not a valid name"),
        );
        return;
    }
    let connected = model.remotes.get(&remote).and_then(|r| r.channel).is_some();
    model.remotes.insert(
        remote.clone(),
        Remote {
            token,
            filter,
            attempt: 0,
            channel: None,
            retry_after: None,
        },
    );
    if !connected {
        out.cmd(Cmd::Dial { remote });
    }
}

/// A new token for a remote: the next hello presents it, and a live
/// connection that speaks `reauth` gets it now (an older one keeps its
/// credential until it reconnects).
pub(crate) fn set_token(model: &mut Model, out: &mut Effects, remote: RemoteAddr, token: String) {
    let Some(r) = model.remotes.get_mut(&remote) else {
        return report(
            out,
            None,
            format!("a token for {remote}, which this node does not connect to"),
        );
    };
    r.token = Some(token.clone());
    let Some(channel) = r.channel else {
        return;
    };
    let live = model
        .channels
        .get(&channel)
        .filter(|c| matches!(c.handshake, Handshake::Established(_)));
    if live.is_some_and(|c| c.protocol >= 3) {
        out.send(channel, Message::Reauth { token });
    }
}

pub(crate) fn connect_failed(model: &mut Model, out: &mut Effects, remote: RemoteAddr) {
    if model.remotes.contains_key(&remote) {
        out.log(
            Level::Info,
            format!("dialing {remote} failed; retrying with backoff"),
        );
        super::timers::schedule_reconnect(model, &remote);
    }
}

pub(crate) fn hello(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    h: Hello,
    verdict: Option<Verdict>,
) {
    if established_peer(model, channel).is_some() {
        refuse(
            out,
            channel,
            ErrorCode::AlreadyEstablished,
            "this channel has already completed its handshake".into(),
        );
        return;
    }
    let close = |out: &mut Effects, code: ErrorCode, message: String| {
        refuse(out, channel, code, message.clone());
        out.cmd(Cmd::Close {
            channel,
            reason: message,
        });
    };
    let ours = model.config.protocol;
    if h.protocol < MIN_PROTOCOL_VERSION {
        let m = format!(
            "protocol version {} is not supported; this node speaks versions {MIN_PROTOCOL_VERSION} to {ours}",
            h.protocol
        );
        return close(out, ErrorCode::VersionMismatch, m);
    }
    // Both speak every version up to the lower of the two.
    let negotiated = h.protocol.min(ours);
    if let Some((reason, retry_after_ms)) = model.draining.clone() {
        if negotiated >= GOING_AWAY_SINCE {
            out.send(
                channel,
                Message::GoingAway {
                    reason: reason.clone(),
                    retry_after_ms,
                },
            );
        }
        out.cmd(Cmd::Close { channel, reason });
        return;
    }
    let credential = match admission(model, &h, verdict, negotiated) {
        Ok(credential) => credential,
        Err((code, message)) => return close(out, code, message),
    };
    let cfg = model.config.clone();
    out.send(
        channel,
        Message::Welcome(Welcome {
            peer: cfg.peer.clone(),
            name: cfg.name.clone(),
            kind: cfg.kind,
            protocol: negotiated,
            clock: model.clock,
        }),
    );
    if let Some(c) = model.channels.get_mut(&channel) {
        c.protocol = negotiated;
    }
    establish(model, out, channel, h.peer.clone(), h.kind);
    hold_credential(model, channel, &h.peer, credential, h.token.as_deref());
}

/// Whether a hello may be let in: an acceptable peer id, a token (signed
/// or static) that speaks for it and is neither expired nor revoked, and
/// room under its identity's connection quota. `Ok` with the signed
/// token's credential, if any; `Err` with the refusal to close with.
fn admission(
    model: &Model,
    h: &Hello,
    verdict: Option<Verdict>,
    negotiated: u32,
) -> Result<Option<Credential>, (ErrorCode, String)> {
    if !h.peer.is_valid() || h.peer.as_str() == STORE_PEER || h.peer == model.config.peer {
        return Err((
            ErrorCode::PermissionDenied,
            format!("the peer id {:?} is not acceptable", h.peer.as_str()),
        ));
    }
    let credential = match verdict {
        Some(Verdict::Refused(why)) => {
            return Err((ErrorCode::BadToken, format!("the token was refused: {why}")));
        }
        Some(Verdict::Valid(c)) => {
            if c.peer != h.peer {
                let m = format!(
                    "the token is for peer {:?}; this hello speaks as {:?}",
                    c.peer.as_str(),
                    h.peer.as_str()
                );
                return Err((ErrorCode::BadToken, m));
            }
            if c.expires.is_some_and(|at| at <= model.now) {
                return Err((ErrorCode::BadToken, TOKEN_EXPIRED.into()));
            }
            Some(c)
        }
        None => {
            if model.config.is_internal_peer(&h.peer) {
                return Err((
                    ErrorCode::PermissionDenied,
                    format!(
                        "the peer id {:?} is one of this server's own",
                        h.peer.as_str()
                    ),
                ));
            }
            if let Err(m) = credentials(&model.config, &h.peer, h.token.as_deref()) {
                return Err((ErrorCode::BadToken, m.into()));
            }
            None
        }
    };
    if let Some(why) = model.revoked.refuses(&h.peer, credential.as_ref()) {
        return Err((ErrorCode::BadToken, why));
    }
    if !super::quotas::connection_allowed(model, &h.peer, h.kind) {
        let most = model.config.quotas.connections_per_identity;
        // Older peers know no `rate-limited` code.
        let code = match negotiated >= GOING_AWAY_SINCE {
            true => ErrorCode::RateLimited,
            false => ErrorCode::TooLarge,
        };
        let m = format!(
            "{} holds {most} connections, the most one identity may; close one first",
            h.peer
        );
        return Err((code, m));
    }
    Ok(credential)
}

/// The error a connection whose token expired is closed with (its
/// message starts with this, so a client can tell it from a refusal).
pub(crate) const TOKEN_EXPIRED: &str =
    "token-expired: the token of this connection has expired; connect again with a new one";

/// A peer's newest hello decides its rights: a credential's, or (static
/// token, none) the node's rules; the connection ends when it expires.
fn hold_credential(
    model: &mut Model,
    channel: ChannelId,
    peer: &PeerId,
    credential: Option<Credential>,
    token: Option<&str>,
) {
    let expires = credential.as_ref().and_then(|c| c.expires);
    if let Some(c) = model.channels.get_mut(&channel) {
        c.admitted_by = match (&credential, token) {
            (Some(_), _) => crate::model::Admission::Signed,
            (None, Some(t)) => crate::model::Admission::Static(t.to_string()),
            (None, None) => crate::model::Admission::Nothing,
        };
    }
    if let Some(p) = model.peers.get_mut(peer) {
        p.credential = credential.map(std::sync::Arc::new);
    }
    if let Some(at) = expires {
        super::timers::set(model, Timer::CredentialExpiry(channel), at);
    }
}

/// A peer presents a new token on a live connection (`reauth`): its
/// rights and expiry become the new credential's at once (data it may no
/// longer read stops with the next change; what it may read now it can
/// ask for). A refused token leaves the connection as it was, told why.
pub(crate) fn reauth(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    token: &str,
    verdict: Option<Verdict>,
) {
    let refused = |out: &mut Effects, why: String| {
        let m = format!(
            "the new token was refused: {why}; this connection keeps its current credential"
        );
        refuse(out, channel, ErrorCode::BadToken, m);
    };
    let credential = match verdict {
        Some(Verdict::Refused(why)) => return refused(out, why),
        Some(Verdict::Valid(c)) => {
            if &c.peer != peer {
                let why = format!(
                    "it is for peer {:?}, not {:?}",
                    c.peer.as_str(),
                    peer.as_str()
                );
                return refused(out, why);
            }
            if c.expires.is_some_and(|at| at <= model.now) {
                return refused(out, "it has expired".into());
            }
            Some(c)
        }
        None => {
            if let Err(m) = credentials(&model.config, peer, Some(token)) {
                return refused(out, m.into());
            }
            None
        }
    };
    if let Some(why) = model.revoked.refuses(peer, credential.as_ref()) {
        return refused(out, why);
    }
    super::timers::cancel(model, &Timer::CredentialExpiry(channel));
    hold_credential(model, channel, peer, credential, Some(token));
}

/// The operator's revocations changed: every connection of a revoked
/// identity, or holding a revoked token, is told and closed now.
pub(crate) fn revoked(
    model: &mut Model,
    out: &mut Effects,
    revocations: crate::policy::Revocations,
) {
    model.revoked = std::sync::Arc::new(revocations);
    let mut cut = Vec::new();
    for (peer, p) in model.peers.iter() {
        if let Some(why) = model.revoked.refuses(peer, p.credential.as_deref()) {
            cut.extend(p.channels.iter().map(|c| (*c, why.clone())));
        }
    }
    for (channel, why) in cut {
        refuse(out, channel, ErrorCode::BadToken, why);
        out.cmd(Cmd::Close {
            channel,
            reason: "revoked".into(),
        });
    }
}

/// The static tokens changed: each connection a static token let in (or
/// no token, where none was needed) is checked against the new list, and
/// one it no longer admits is told why and closed. Connections a signed
/// token let in are not touched.
pub(crate) fn tokens_replaced(
    model: &mut Model,
    out: &mut Effects,
    tokens: Vec<String>,
    grants: Vec<crate::policy::Grant>,
) {
    let mut config = (*model.config).clone();
    config.tokens = tokens;
    config.grants = grants;
    model.config = std::sync::Arc::new(config);
    let cut: Vec<(ChannelId, &'static str)> = model
        .channels
        .iter()
        // Connections that came to us; a link we dialed presents our token.
        .filter(|(_, ch)| ch.kind == ChannelKind::Network && ch.remote.is_none())
        .filter_map(|(c, ch)| {
            let Handshake::Established(peer) = &ch.handshake else {
                return None;
            };
            let token = match &ch.admitted_by {
                crate::model::Admission::Signed => return None,
                crate::model::Admission::Static(t) => Some(t.as_str()),
                crate::model::Admission::Nothing => None,
            };
            credentials(&model.config, peer, token)
                .err()
                .map(|why| (*c, why))
        })
        .collect();
    out.log(
        Level::Info,
        format!(
            "static tokens replaced; {} connections lost theirs",
            cut.len()
        ),
    );
    for (channel, why) in cut {
        let m = format!("token-revoked: {why} (the server's tokens changed)");
        refuse(out, channel, ErrorCode::BadToken, m);
        out.cmd(Cmd::Close {
            channel,
            reason: "revoked".into(),
        });
    }
}

/// The operator cuts off every connection of `peer`, or the one on
/// `channel` (network connections only: a store is not a client). Each is
/// told why, then closed.
pub(crate) fn disconnect(
    model: &mut Model,
    out: &mut Effects,
    peer: Option<PeerId>,
    channel: Option<ChannelId>,
    reason: String,
) {
    let cut: Vec<ChannelId> = model
        .channels
        .iter()
        .filter(|(_, ch)| ch.kind == ChannelKind::Network)
        .filter(|(c, ch)| {
            let by_peer = peer
                .as_ref()
                .is_some_and(|p| matches!(&ch.handshake, Handshake::Established(q) if q == p));
            by_peer || channel == Some(**c)
        })
        .map(|(c, _)| *c)
        .collect();
    out.log(
        Level::Info,
        format!("disconnecting {} connection(s): {reason}", cut.len()),
    );
    for c in cut {
        refuse(
            out,
            c,
            ErrorCode::PermissionDenied,
            format!("disconnected by the server's operator: {reason}"),
        );
        out.cmd(Cmd::Close {
            channel: c,
            reason: "disconnected by the operator".into(),
        });
    }
}

/// The protocol version that has `going-away`.
const GOING_AWAY_SINCE: u32 = 4;

/// A connection told `going-away` sooner than this after it opened is
/// dialed again after the usual backoff, not at the delay asked.
const MIN_LIVED_MS: Millis = 1_000;

/// The node is stopping: every client on a protocol that knows it is told
/// to go elsewhere. Nothing is closed here: what clients already sent is
/// still answered and written, and the host closes what is left when its
/// drain ends.
pub(crate) fn drain(model: &mut Model, out: &mut Effects, reason: String, retry_after_ms: Millis) {
    model.draining = Some((reason.clone(), retry_after_ms));
    let told: Vec<ChannelId> = model
        .channels
        .iter()
        .filter(|(_, ch)| ch.kind == ChannelKind::Network && ch.protocol >= GOING_AWAY_SINCE)
        // Servers we dialed are not our clients: they stay until we close.
        .filter(|(_, ch)| ch.remote.is_none())
        .filter(|(_, ch)| matches!(ch.handshake, Handshake::Established(_)))
        .map(|(c, _)| *c)
        .collect();
    out.log(
        Level::Info,
        format!(
            "draining ({reason}): {} clients told to go elsewhere",
            told.len()
        ),
    );
    for channel in told {
        out.send(
            channel,
            Message::GoingAway {
                reason: reason.clone(),
                retry_after_ms,
            },
        );
    }
}

/// A server we dialed is going away: its connection is closed now and
/// dialed again after the delay it asked for (the host's dialer may then
/// land on another server), not after the usual backoff.
pub(crate) fn going_away(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    reason: &str,
    retry_after_ms: Millis,
) {
    let remote = model.channels.get(&channel).and_then(|c| c.remote.clone());
    let Some(addr) = remote.filter(|a| model.remotes.contains_key(a)) else {
        out.log(
            Level::Info,
            format!("{peer} sent going-away, but it is not a server we dialed"),
        );
        return;
    };
    // At most a minute: a peer cannot park us for ever. And only for a
    // connection that lasted: a server sending it right after every
    // welcome would otherwise have us dial it in a loop; the backoff
    // applies then.
    let delay = retry_after_ms.min(60_000);
    let lasted = model
        .channels
        .get(&channel)
        .is_some_and(|c| model.now.saturating_sub(c.opened_at) >= MIN_LIVED_MS);
    if let (true, Some(r)) = (lasted, model.remotes.get_mut(&addr)) {
        r.retry_after = Some(delay);
    }
    out.log(
        Level::Info,
        format!("{addr} is going away ({reason}); dialing again in {delay} ms"),
    );
    out.cmd(Cmd::Close {
        channel,
        reason: format!("the server is going away: {reason}"),
    });
}

/// A channel's credential expired: it is told and closed (a peer that
/// refreshed by connecting again has a newer channel, untouched).
pub(crate) fn credential_expired(model: &mut Model, out: &mut Effects, channel: ChannelId) {
    if !model.channels.contains_key(&channel) {
        return;
    }
    refuse(out, channel, ErrorCode::BadToken, TOKEN_EXPIRED.into());
    out.cmd(Cmd::Close {
        channel,
        reason: "token expired".into(),
    });
}

pub(crate) fn welcome(model: &mut Model, out: &mut Effects, channel: ChannelId, w: Welcome) {
    let dialed = model.channels.get(&channel).and_then(|c| c.remote.clone());
    let Some(addr) = dialed else {
        refuse(
            out,
            channel,
            ErrorCode::NotEstablished,
            "a welcome answers a hello; this side did not send one".into(),
        );
        return;
    };
    if established_peer(model, channel).is_some() {
        refuse(
            out,
            channel,
            ErrorCode::AlreadyEstablished,
            "this channel has already completed its handshake".into(),
        );
        return;
    }
    let ours = model.config.protocol;
    if w.protocol < MIN_PROTOCOL_VERSION || w.protocol > ours || !w.peer.is_valid() {
        let m = format!(
            "the remote chose protocol version {}; this node speaks versions {MIN_PROTOCOL_VERSION} to {ours}",
            w.protocol
        );
        report(out, None, format!("{addr}: {m}"));
        out.cmd(Cmd::Close { channel, reason: m });
        return;
    }
    if let Some(c) = model.channels.get_mut(&channel) {
        c.protocol = w.protocol;
    }
    establish(model, out, channel, w.peer.clone(), w.kind);
    if let Some(r) = model.remotes.get_mut(&addr) {
        r.attempt = 0;
    }
    out.follow(FollowUp::Welcomed {
        peer: w.peer,
        channel,
        addr,
        clock: w.clock,
    });
}

/// Whether a static token grants `peer` (no token needed when the node
/// has none).
fn credentials(
    config: &crate::model::Config,
    peer: &PeerId,
    token: Option<&str>,
) -> Result<(), &'static str> {
    if config.tokens.is_empty() && config.grants.is_empty() && !config.signed_tokens {
        return Ok(());
    }
    let Some(token) = token else {
        return Err("this node requires a token; none was given");
    };
    let any = config.tokens.iter().any(|t| t == token);
    let granted = config
        .grants
        .iter()
        .any(|g| g.token == token && g.peers.matches(peer.as_str()));
    if any || granted {
        return Ok(());
    }
    if config.grants.iter().any(|g| g.token == token) {
        Err("the token does not grant this peer id")
    } else {
        Err("the token was not accepted")
    }
}

/// A new connection of a peer replaces its older ones (the newest wins, so
/// a peer's updates never split between connections); connections of the
/// HTTP request face (bots) neither replace nor are replaced.
fn replace_older(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    kind: PeerKind,
) {
    if kind == PeerKind::Bot {
        return;
    }
    let older: Vec<ChannelId> = model
        .peers
        .get(peer)
        .map(|p| p.channels.iter().copied().collect())
        .unwrap_or_default();
    for old in older {
        let bot = model
            .channels
            .get(&old)
            .is_some_and(|c| c.peer_kind == Some(PeerKind::Bot));
        if old == channel || bot {
            continue;
        }
        let message = format!("replaced by a newer connection of {peer}");
        refuse(out, old, ErrorCode::AlreadyEstablished, message.clone());
        out.cmd(Cmd::Close {
            channel: old,
            reason: message,
        });
    }
}

fn establish(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: PeerId,
    kind: PeerKind,
) {
    replace_older(model, out, channel, &peer, kind);
    if let Some(c) = model.channels.get_mut(&channel) {
        c.handshake = Handshake::Established(peer.clone());
        c.peer_kind = Some(kind);
    }
    let first = {
        let p = model.peers.entry(peer.clone()).or_insert_with(Peer::new);
        p.channels.insert(channel);
        if kind != PeerKind::Bot {
            p.sync_channels.insert(channel);
        }
        p.channels.len() == 1
    };
    super::timers::cancel(model, &Timer::ForgetPeer(peer.clone()));
    if first {
        out.emit(Event::PeerConnected { peer });
    }
}

/// A message of a kind this node does not know: answered, and the channel
/// goes on (a newer peer may try what an older one lacks).
/// No channel is sent a message its negotiated protocol does not have: a
/// peer that asked for one anyway (a `list-docs` on a version-1 channel)
/// is told it is unsupported there instead.
pub(crate) fn keep_to_protocols(model: &Model, out: &mut Effects) {
    for (channel, items) in out.sends_mut() {
        // Most sends are data and messages every protocol has: their
        // channel need not be read (every channel speaks at least the
        // oldest version; hello and welcome refuse less).
        let newer = items.iter().any(|i| {
            matches!(i, crate::io::Outgoing::Message(m) if m.since_protocol() > MIN_PROTOCOL_VERSION)
        });
        if !newer {
            continue;
        }
        let Some(ch) = model.channels.get(&channel) else {
            continue;
        };
        let spoken = ch.protocol;
        let mut refused = Vec::new();
        items.retain(|i| match i {
            crate::io::Outgoing::Message(m) if m.since_protocol() > spoken => {
                refused.push((m.name(), m.since_protocol()));
                false
            }
            _ => true,
        });
        for (name, since) in refused {
            items.push(crate::io::Outgoing::Message(Message::Error {
                code: ErrorCode::MalformedFrame,
                message: format!(
                    "{name} needs protocol {since}; this connection speaks protocol {spoken}"
                ),
            }));
        }
    }
}

/// Error replies a channel may be sent at once, and per second after.
pub(crate) const ERROR_BURST: u32 = 100;
/// A connection past this many dropped error replies sends little but
/// what is refused: it is closed.
const ERRORS_DROPPED_MOST: u32 = 10_000;

/// Error replies are rate-limited per channel: past its bucket they are
/// dropped (the first time with a note), and a connection that keeps
/// earning them is closed. Runs on every step's sends, whatever handler
/// made them, so a refusal costs its sender, never the node.
pub(crate) fn limit_error_replies(model: &mut Model, out: &mut Effects) {
    let now = model.now;
    let mut closing = Vec::new();
    for (channel, items) in out.sends_mut() {
        let errors = items
            .iter()
            .filter(|i| matches!(i, crate::io::Outgoing::Message(Message::Error { .. })))
            .count();
        if errors == 0 {
            continue;
        }
        let Some(ch) = model.channels.get_mut(&channel) else {
            continue;
        };
        let refill = now.saturating_sub(ch.error_refilled) * u64::from(ERROR_BURST) / 1000;
        if refill > 0 {
            ch.error_tokens = ch
                .error_tokens
                .saturating_add(u32::try_from(refill).unwrap_or(u32::MAX))
                .min(ERROR_BURST);
            ch.error_refilled = now;
        }
        let mut allowed = ch.error_tokens;
        let before = items.len();
        items.retain(|i| {
            if !matches!(i, crate::io::Outgoing::Message(Message::Error { .. })) {
                return true;
            }
            let keep = allowed > 0;
            allowed = allowed.saturating_sub(1);
            keep
        });
        let dropped = (before - items.len()) as u32;
        ch.error_tokens = allowed;
        if dropped > 0 {
            if ch.errors_dropped == 0 {
                items.push(crate::io::Outgoing::Message(Message::Error {
                    code: ErrorCode::TooLarge,
                    message: format!(
                        "more than {ERROR_BURST} refusals a second: further ones are not sent"
                    ),
                }));
            }
            ch.errors_dropped = ch.errors_dropped.saturating_add(dropped);
            if ch.errors_dropped >= ERRORS_DROPPED_MOST {
                closing.push(channel);
            }
        }
    }
    for channel in closing {
        out.cmd(Cmd::Close {
            channel,
            reason: "it sends little but what is refused".into(),
        });
    }
}

/// Something other than `hello` arrived on a channel before its handshake:
/// refused, and a connection that keeps at it is closed.
pub(crate) fn before_hello(model: &mut Model, out: &mut Effects, channel: ChannelId, what: &str) {
    if !model.channels.contains_key(&channel) {
        return;
    }
    refuse(
        out,
        channel,
        ErrorCode::NotEstablished,
        format!("{what} needs a completed handshake; send hello first"),
    );
    let most = model.config.bounds.refusals_before_hello;
    if let Some(c) = model.channels.get_mut(&channel) {
        c.refused = c.refused.saturating_add(1);
        if c.refused >= most {
            out.cmd(Cmd::Close {
                channel,
                reason: "messages before the handshake".into(),
            });
        }
    }
}

pub(crate) fn unsupported(model: &mut Model, out: &mut Effects, channel: ChannelId, kind: u32) {
    let Some(ch) = model.channels.get(&channel) else {
        return;
    };
    if matches!(ch.handshake, Handshake::Connecting) {
        return before_hello(model, out, channel, &format!("message kind {kind}"));
    }
    let ours = model.config.protocol;
    let message = format!(
        "unsupported: message kind {kind} is not known to this node (protocol {ours}); it was ignored"
    );
    // An older peer would not know the Unsupported code itself.
    let code = if ch.protocol >= 2 {
        ErrorCode::Unsupported
    } else {
        ErrorCode::MalformedFrame
    };
    refuse(out, channel, code, message);
}

#[cfg(test)]
mod tests {
    use crate::effects::FollowUp;
    use crate::tests::kit::*;
    use crate::{
        ChannelId, ChannelKind, Clock, Filter, Msg, PeerId, PeerKind, RemoteAddr, Welcome,
    };

    #[test]
    fn a_closed_channel_drops_its_peers_presence_before_saying_it_disconnected() {
        let mut k = Kit::hub();
        k.create(&[], "d");
        k.peer(1, "alice");
        k.follow(1, "d");
        k.recv(
            1,
            crate::Message::Ephemeral(crate::Ephemeral {
                doc: doc("d"),
                namespace: crate::Namespace::new("cursor"),
                origin: PeerId::new("alice"),
                hops: 0,
                ttl_ms: 1_000,
                data: crate::Payload::new(vec![1]),
            }),
        );
        let (cmds, follow_ups) = k.handle(|m, o| super::channel_removed(m, o, ChannelId(1)));
        assert!(follow_ups.is_empty());
        // Recorded runs pin this order: the presence goes, then the peer.
        assert!(matches!(
            events(&cmds).as_slice(),
            [
                crate::Event::Presence { data: None, .. },
                crate::Event::PeerDisconnected { .. }
            ]
        ));
    }

    #[test]
    fn a_welcome_from_a_remote_we_dialed_is_followed_by_resuming_there() {
        let mut k = Kit::new(crate::Config::new("client"));
        k.feed(Msg::Connect {
            remote: RemoteAddr::new("srv"),
            token: None,
            filter: Filter::all(),
        });
        k.feed(Msg::ChannelAdded {
            channel: ChannelId(1),
            kind: ChannelKind::Network,
            remote: Some(RemoteAddr::new("srv")),
        });
        let welcome = Welcome {
            peer: PeerId::new("hub"),
            name: "hub".into(),
            kind: PeerKind::Service,
            protocol: k.model.config().protocol,
            clock: Clock(7),
        };
        let (_, follow_ups) = k.handle(|m, o| super::welcome(m, o, ChannelId(1), welcome));
        assert_eq!(
            follow_ups,
            vec![FollowUp::Welcomed {
                peer: PeerId::new("hub"),
                channel: ChannelId(1),
                addr: RemoteAddr::new("srv"),
                clock: Clock(7),
            }]
        );
    }
}
