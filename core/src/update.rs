//! `update(model, msg) -> (model, commands)`: the one entry point.

use crate::effects::Effects;
use crate::effects::FollowUp;
use crate::frame::{validate, FrameError, Limits};
use crate::handlers::on_demand;
use crate::handlers::{
    changes, common, connection, deletion, ephemeral, listeners, listing, restore, storage, sync,
    timers,
};
use crate::ids::ChannelId;
use crate::io::{ChannelKind, Cmd, Level, Millis, Msg};
use crate::model::{Handshake, Model};
use crate::model::{Parked, PendingRead};
use crate::protocol::{ErrorCode, Message};

/// Feeds one message, arriving at time `now`, to the core and returns the
/// new model and what to do.
///
/// Pure, total and deterministic: no I/O, no clock of its own (time is
/// `now`, given with every input), no randomness outside the model's seeded
/// generator, and no input makes it panic.
pub fn update(mut model: Model, now: Millis, msg: Msg) -> (Model, Vec<Cmd>) {
    let cmds = update_in_place(&mut model, now, msg);
    (model, cmds)
}

/// [`update`] on a model the caller keeps where it is: the same step, but
/// the model (over a kilobyte of maps' roots) is not moved in and out for
/// every message, which was a twentieth of a hub's time in `memmove`.
pub fn update_in_place(model: &mut Model, now: Millis, msg: Msg) -> Vec<Cmd> {
    let mut out = Effects::default();
    // Time never runs backwards in the model, whatever the shell says.
    model.now = model.now.max(now);
    step(model, &mut out, msg);
    crate::follow_ups::run(model, &mut out);
    connection::keep_to_protocols(model, &mut out);
    connection::limit_error_replies(model, &mut out);
    timers::refresh_wake(model, &mut out);
    out.finish()
}

fn step(model: &mut Model, out: &mut Effects, msg: Msg) {
    match msg {
        Msg::Tick => crate::tick::tick(model, out),
        Msg::Restored {
            store,
            clock,
            floor,
            docs,
            records,
        } => restore::restored(model, store, clock, floor, docs, records),
        Msg::ChannelAdded {
            channel,
            kind,
            remote,
        } => connection::channel_added(model, out, channel, kind, remote),
        Msg::ChannelRemoved { channel } => connection::channel_removed(model, out, channel),
        Msg::Received { channel, message } => received(model, out, channel, message, None),
        Msg::Revoked(revocations) => connection::revoked(model, out, revocations),
        Msg::Tokens { tokens, grants } => connection::tokens_replaced(model, out, tokens, grants),
        Msg::Drain {
            reason,
            retry_after_ms,
        } => connection::drain(model, out, reason, retry_after_ms),
        Msg::Disconnect {
            peer,
            channel,
            reason,
        } => connection::disconnect(model, out, peer, channel, reason),
        Msg::Rules(rules) => rules_replaced(model, out, rules),
        Msg::ForgetListener(id) => listeners::forget(model, id),
        Msg::Authenticated {
            channel,
            message,
            verdict,
        } => received(model, out, channel, message, Some(verdict)),
        Msg::FrameRejected { channel, reason } => {
            connection::frame_rejected(model, out, channel, reason)
        }
        Msg::Unsupported { channel, kind } => connection::unsupported(model, out, channel, kind),
        Msg::ChunkBeforeHello { channel } => {
            connection::before_hello(model, out, channel, "a chunk of a split message")
        }
        Msg::TooLarge {
            channel,
            size,
            limit,
        } => too_large(model, out, channel, size, limit),
        Msg::ListRemote { peer, after } => listing::list_remote(model, out, &peer, after),
        Msg::Imported { id, outcome } => sync::imported(model, out, id, outcome),
        Msg::LocalChange { doc, version } => sync::local_change(model, out, doc, version),
        Msg::OpenDoc { doc, meta } => sync::open_doc(model, out, doc, meta),
        Msg::DeleteDoc { doc } => deletion::delete_local(model, out, doc),
        Msg::SetPresence {
            doc,
            namespace,
            data,
        } => ephemeral::set_presence(model, out, doc, namespace, data),
        Msg::Connect {
            remote,
            token,
            filter,
        } => connection::connect(model, out, remote, token, filter),
        Msg::ConnectFailed { remote } => connection::connect_failed(model, out, remote),
        Msg::SetToken { remote, token } => connection::set_token(model, out, remote, token),
        Msg::AskPeer { doc, peer } => sync::ask_peer(model, out, &doc, &peer),
        Msg::StoreLoaded {
            store,
            doc,
            outcome,
        } => storage::loaded(model, out, store, doc, outcome),
        Msg::StoreFailed { store, failure } => storage::failed(model, out, store, failure),
        Msg::StoreAnnounced { store } => storage::feed_announced(model, out, store),
        Msg::StoreRead { store, job, docs } => store_read(model, out, store, job, docs),
        Msg::StoreChanged {
            store,
            docs,
            up_to,
            more,
        } => storage::feed_changes(model, out, store, docs, up_to, more),
        Msg::ListenerLoaded {
            store,
            id,
            record,
            failed,
        } => listeners::record_loaded(model, out, store, id, record, failed),
        Msg::StoreSaved { store, record } => {
            if model.stores.get_min() == Some(&store) {
                crate::handlers::store_requests::store_ok(model);
                if let crate::io::StateRecord::Tombstone(doc) = record {
                    deletion::tombstone_durable(model, out, &doc);
                }
            }
        }
    }
}

/// The operator's permission rules (and quotas) replace the ones in force.
fn rules_replaced(model: &mut Model, out: &mut Effects, rules: crate::policy::Rules) {
    let mut config = (*model.config).clone();
    if let Some(q) = &rules.quotas {
        config.quotas = (**q).clone();
    }
    config.rules = rules;
    model.config = std::sync::Arc::new(config);
    out.log(Level::Info, "permission rules replaced");
}

/// The shell dropped a message larger than the node's limit: the sender is told.
fn too_large(model: &Model, out: &mut Effects, channel: ChannelId, size: u64, limit: u64) {
    if model.channels.contains_key(&channel) {
        let m = format!(
            "a message of {size} bytes exceeds this node's limit of {limit} bytes; it was dropped"
        );
        common::refuse(out, channel, ErrorCode::TooLarge, m);
    }
}

fn bound_code(e: &FrameError) -> ErrorCode {
    match e {
        FrameError::DocId(_) => ErrorCode::BadDocId,
        _ => ErrorCode::TooLarge,
    }
}

/// A message from a channel; `verdict` is the shell's word on a hello's
/// signed token, when it checked one.
/// The primary store answered a read of its index: the answer it was for
/// is built, or the floor came down and what waited for it runs again.
fn store_read(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    job: u64,
    docs: Vec<crate::io::StoredDoc>,
) {
    let Some(pending) = model.reads.remove(&job) else {
        return;
    };
    if model.stores.get_min() != Some(&store) {
        return;
    }
    let peer_on = |model: &Model, channel: ChannelId, peer: &crate::ids::PeerId| {
        model.channel_peer(channel) == Some(peer)
    };
    match pending {
        PendingRead::Changes {
            channel,
            peer,
            clock,
            filter,
            read_to,
            limit,
        } if peer_on(model, channel, &peer) => {
            let full = docs.len() >= limit as usize;
            let read = changes::StoreAnswer {
                docs,
                read_to,
                full,
            };
            changes::answer_changes(model, out, channel, &peer, clock, filter, Some(read))
        }
        PendingRead::Listing {
            channel,
            peer,
            filter,
            after,
            limit,
        } if peer_on(model, channel, &peer) => {
            listing::listed(model, out, channel, &peer, filter, after, limit, docs)
        }
        PendingRead::Directory {
            channel,
            peer,
            filter,
            limit,
        } if peer_on(model, channel, &peer) => {
            changes::directory_answer(model, out, channel, &peer, filter, limit, Some(docs))
        }
        PendingRead::Cover {
            after,
            up_to,
            limit,
        } => {
            for parked in on_demand::covered(model, out, store, (after, up_to, limit), docs) {
                rerun(model, out, parked);
            }
        }
        // The peer that asked is gone: nobody to answer.
        _ => {}
    }
}

/// What waited for the floor to come down runs again, as it would have.
fn rerun(model: &mut Model, out: &mut Effects, parked: Parked) {
    match parked {
        Parked::Welcomed {
            peer,
            channel,
            addr,
            clock,
        } => out.follow(FollowUp::Welcomed {
            peer,
            channel,
            addr,
            clock,
        }),
        Parked::RemoteAcked { peer, doc, clock } => {
            out.follow(FollowUp::RemoteAcked { peer, doc, clock })
        }
        Parked::Message(channel, message) => {
            let Some(peer) = model.channel_peer(channel).cloned() else {
                return;
            };
            match message {
                Message::ListenerPull { id, limit } => {
                    listeners::pull(model, out, channel, &peer, id, limit)
                }
                Message::ListenerAck { id, revisions } => {
                    listeners::acknowledge(model, out, channel, &peer, id, revisions)
                }
                other => out.log(
                    Level::Info,
                    format!("{} does not wait for the store; dropped", other.name()),
                ),
            }
        }
    }
}

fn received(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    message: Message,
    verdict: Option<crate::policy::Verdict>,
) {
    let Some(ch) = model.channels.get(&channel) else {
        out.log(
            Level::Info,
            format!("{} arrived on unknown {channel}; ignored", message.name()),
        );
        return;
    };
    // Messages may come from a decoder, a test or a replayed log: check them here too.
    if let Err(e) = validate(&message, &Limits::default()) {
        return common::refuse(
            out,
            channel,
            bound_code(&e),
            format!("{} refused: {e}", message.name()),
        );
    }
    if ch.kind == ChannelKind::Storage {
        return from_store(model, out, channel, message);
    }
    match &ch.handshake {
        Handshake::Established(p) => {
            let peer = p.clone();
            // Read here once: an acknowledgement needs it, and the channel
            // is in hand.
            let bot = ch.peer_kind == Some(crate::protocol::PeerKind::Bot);
            from_peer(model, out, channel, (peer, bot), message, verdict)
        }
        Handshake::Connecting => before_handshake(model, out, channel, message, verdict),
    }
}

/// A message on a channel whose handshake is not done: only the handshake's own.
fn before_handshake(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    message: Message,
    verdict: Option<crate::policy::Verdict>,
) {
    match message {
        Message::Hello(h) => connection::hello(model, out, channel, h, verdict),
        Message::Welcome(w) => connection::welcome(model, out, channel, w),
        Message::Error { code, message } => common::report(
            out,
            None,
            format!("{channel} refused the handshake: {code:?}: {message}"),
        ),
        // A server that drains turns new clients away at once; they
        // dial again after their usual backoff.
        Message::GoingAway { reason, .. } => common::report(
            out,
            None,
            format!("{channel} refused the handshake: going away: {reason}"),
        ),
        other => connection::before_hello(model, out, channel, other.name()),
    }
}

/// A message from an established peer (and whether it is a bot: a
/// request's channel), handed to the handler of its kind.
fn from_peer(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    (peer, bot): (crate::ids::PeerId, bool),
    message: Message,
    verdict: Option<crate::policy::Verdict>,
) {
    match message {
        Message::Hello(h) => connection::hello(model, out, channel, h, verdict),
        Message::Welcome(w) => connection::welcome(model, out, channel, w),
        Message::SyncRequest {
            doc,
            version,
            bidirectional,
        } => sync::sync_request(model, out, channel, peer, doc, version, bidirectional),
        Message::SyncResponse {
            doc,
            batch,
            reply,
            version,
        } => sync::sync_response(model, out, channel, peer, doc, batch, reply, version),
        Message::Update {
            doc,
            batch,
            data,
            version,
        } => sync::receive_data(model, out, channel, peer, doc, batch, data, version),
        Message::Ack {
            batch,
            status,
            clock,
        } => {
            let from = sync::AckFrom::Peer { peer, bot };
            sync::ack_received(model, out, channel, from, batch, status, clock)
        }
        Message::Subscribe { filter } => changes::subscribe(model, out, channel, &peer, filter),
        Message::Unsubscribe { filter } => changes::unsubscribe(model, &peer, filter),
        Message::ChangesSince { clock, filter } => {
            changes::changes_since(model, out, channel, &peer, clock, filter)
        }
        Message::Changes { docs, up_to, more } => {
            changes::changes(model, out, channel, &peer, docs, up_to, more)
        }
        Message::DirectoryRequest { filter } => {
            changes::directory_request(model, out, channel, &peer, filter)
        }
        Message::DirectoryResponse { docs } | Message::NewDocs { docs } => {
            changes::discovered(model, out, &peer, docs)
        }
        Message::Delete { doc } => deletion::delete_received(model, out, channel, &peer, doc),
        Message::Ephemeral(e) => ephemeral::received(model, out, &peer, e),
        Message::Error { code, message } => {
            common::report(out, None, format!("{peer} reported {code:?}: {message}"))
        }
        Message::ListenerRegister { filter, id } => {
            listeners::register(model, out, channel, &peer, filter, id)
        }
        Message::ListenerPull { id, limit } => {
            listeners::pull(model, out, channel, &peer, id, limit)
        }
        Message::ListenerAck { id, revisions } => {
            listeners::acknowledge(model, out, channel, &peer, id, revisions)
        }
        Message::Push { strands } => listeners::push(model, out, channel, &peer, strands),
        Message::ListDocs { filter, after } => {
            listing::list_docs(model, out, channel, &peer, filter, after)
        }
        Message::DocList { docs, more } => listing::doc_list(out, &peer, docs, more),
        Message::Reauth { token } => {
            connection::reauth(model, out, channel, &peer, &token, verdict)
        }
        Message::GoingAway {
            reason,
            retry_after_ms,
        } => connection::going_away(model, out, channel, &peer, &reason, retry_after_ms),
        Message::DeleteResult { doc, outcome } => out.emit(crate::io::Event::DeleteAnswered {
            peer,
            doc,
            deleted: outcome == crate::protocol::DeleteOutcome::Deleted,
        }),
        other @ (Message::ListenerRegistered { .. }
        | Message::Strands { .. }
        | Message::ListenerAcked { .. }
        | Message::PushResult { .. }) => out.log(
            Level::Info,
            format!("{peer} sent {}; nothing to do here", other.name()),
        ),
    }
}

fn from_store(model: &mut Model, out: &mut Effects, channel: ChannelId, message: Message) {
    match message {
        // A store speaking the wire message (a recorded log, a test) gives
        // no metadata; the shell's stores answer with `Msg::StoreChanged`.
        Message::Changes { docs, up_to, more } => {
            let docs = docs
                .into_iter()
                .map(|cd| crate::io::StoredDoc {
                    doc: cd.doc,
                    meta: Default::default(),
                    version: cd.version,
                    clock: cd.clock,
                })
                .collect();
            storage::feed_changes(model, out, channel, docs, up_to, more)
        }
        Message::Ack {
            batch,
            status,
            clock,
        } => sync::ack_received(
            model,
            out,
            channel,
            sync::AckFrom::Store,
            batch,
            status,
            clock,
        ),
        Message::Error { code, message } => common::report(
            out,
            None,
            format!("{channel} (store) reported {code:?}: {message}"),
        ),
        Message::Delete { doc } => deletion::deleted_in_store(model, out, channel, doc),
        Message::Ephemeral(e) => ephemeral::received_from_store(model, out, channel, e),
        other => out.log(
            Level::Info,
            format!("{channel} (store) sent {}; ignored", other.name()),
        ),
    }
}
