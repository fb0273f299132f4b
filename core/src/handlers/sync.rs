//! sync-request, sync-response, update and ack: moving document data.
//!
//! ```text
//! requester                                  answerer
//!   | -- sync-request {doc, have, bidi} -------> |  subscribes the requester;
//!   | <-- sync-response {snapshot|delta|         |  empty have: snapshot; have >= ours:
//!   |       up-to-date|unavailable, version} -- |  up-to-date; else delta from have
//!   | <-- sync-request {doc, ours, bidi=false} - |  once, only when bidi was set
//!   | -- ack {batch, status, clock} -----------> |  data is acknowledged once durable
//! ```
//! Live changes travel as `update` to subscribers, never back to their source.

use super::common::{
    access, changed, create_doc, deliver, import, peer_channel, peer_has, refuse, release_waiters,
    report, send_data, set_peer_doc, when_durable,
};
use super::propagation::{propagate, request};
use crate::effects::{Effects, FollowUp};
use crate::ids::{BatchId, ChannelId, Clock, DocId, ImportId, PeerId};
use crate::io::{Event, ImportOutcome, Level, SyncState};
use crate::model::{
    LoadReason, Model, Notify, PeerDoc, PendingImport, Phase, Source, WaitingRequest,
};
use crate::protocol::{AckStatus, DocMeta, ErrorCode, Message, Payload, Reply, RevisionStatus};
use crate::version::VersionVector;

fn ack(out: &mut Effects, channel: ChannelId, batch: BatchId, status: AckStatus) {
    out.send(
        channel,
        Message::Ack {
            batch,
            status,
            clock: None,
        },
    );
}

fn unavailable(out: &mut Effects, channel: ChannelId, doc: &DocId) {
    out.send(
        channel,
        Message::SyncResponse {
            doc: doc.clone(),
            batch: BatchId(0),
            reply: Reply::Unavailable,
            version: VersionVector::new(),
        },
    );
}

/// After an import left changes waiting for dependencies: ask the sender
/// for what we lack from our version; if we already asked from this very
/// version (its answer did not help), ask for everything once; then stop
/// until something advances (the sender's own retries go on).
fn ask_missing(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    channel: ChannelId,
    doc: &DocId,
) {
    let ours = model
        .docs
        .get(doc)
        .map(|d| d.version.clone())
        .unwrap_or_default();
    let key = (peer.clone(), doc.clone());
    let from = match model.missing_asked.get(&key) {
        None => ours,
        Some(last) if !last.is_empty() && *last == ours => VersionVector::new(),
        Some(_) => {
            return out.log(
                Level::Info,
                format!("{doc} from {peer} still waits for dependencies; not asking again"),
            )
        }
    };
    model.missing_asked.insert(key, from.clone());
    out.send(
        channel,
        Message::SyncRequest {
            doc: doc.clone(),
            version: from,
            bidirectional: false,
        },
    );
    let now = model.now;
    set_peer_doc(model, peer, doc, PeerDoc::Pending(now));
    model.requests.insert((peer.clone(), doc.clone()), now);
    super::timers::ensure_sweep(model);
}

/// Asks a connected peer what it keeps of a document; its answer (up to
/// date with what it promises, or the data we lack) confirms.
pub(crate) fn ask_peer(model: &mut Model, out: &mut Effects, doc: &DocId, peer: &PeerId) {
    let asked = model.requests.contains_key(&(peer.clone(), doc.clone()));
    let ready = model.docs.get(doc).is_some_and(|d| d.is_ready());
    if let (Some(channel), true, false) = (peer_channel(model, peer), ready, asked) {
        request(model, out, peer, channel, doc, false);
    }
}

pub(crate) fn sync_request(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: PeerId,
    doc: DocId,
    version: VersionVector,
    bidirectional: bool,
) {
    if model.tombstones.contains(&doc) {
        unavailable(out, channel, &doc);
        return out.send(channel, Message::Delete { doc });
    }
    match model.docs.get_mut(&doc).map(|d| &mut d.phase) {
        Some(Phase::Ready) => answer(model, out, channel, &peer, &doc, version, bidirectional),
        Some(Phase::Loading { queued, .. }) => {
            queued.push(WaitingRequest::Sync {
                channel,
                version,
                bidirectional,
            });
        }
        None => {
            let q = WaitingRequest::Sync {
                channel,
                version: version.clone(),
                bidirectional,
            };
            if !model.stores.is_empty() {
                // Nothing is looked up for a reader who may not read it.
                if !access(model, &peer, &doc).read {
                    out.log(
                        Level::Info,
                        format!("{peer} may not read {doc}; answered unavailable"),
                    );
                    return unavailable(out, channel, &doc);
                }
                if !super::store_requests::reserve_lookup(model, &peer, &doc) {
                    let most = model.config.bounds.lookups_per_peer;
                    return refuse(
                        out,
                        channel,
                        ErrorCode::TooLarge,
                        format!(
                            "{most} documents this node does not hold are being looked up for you; \
                             ask for {doc} again once they are answered"
                        ),
                    );
                }
                // Storage-first: a store may hold it; answer nobody until all have said.
                super::store_requests::start_loading(
                    model,
                    out,
                    &doc,
                    DocMeta::default(),
                    LoadReason::Network,
                    Some(peer),
                    Some(q),
                );
            } else {
                // Reading never creates: the document exists once someone writes it.
                out.log(
                    Level::Info,
                    format!("{peer} asked for unknown {doc}; answered unavailable"),
                );
                unavailable(out, channel, &doc);
                // Presence lives before anyone writes: a late joiner still sees it.
                super::presence::send_existing(model, out, &doc, channel, &peer);
            }
        }
    }
}

/// Whether data bringing `doc` to `version` is already in flight on `channel`.
fn already_sending(
    model: &Model,
    channel: ChannelId,
    doc: &DocId,
    version: &VersionVector,
) -> bool {
    model
        .in_flight_on(channel, doc)
        .any(|(_, f)| f.version.includes(version))
}

/// The live update in flight on `channel` that brings `doc` to `version`.
fn live_update_on_the_way(
    model: &Model,
    channel: ChannelId,
    doc: &DocId,
    version: &VersionVector,
) -> Option<BatchId> {
    model
        .in_flight_on(channel, doc)
        .find(|(_, f)| f.as_update && f.version.includes(version))
        .map(|(b, _)| b)
}

/// Whether an answer bringing `doc` to `version` is already in flight on
/// `channel`. A live update does not count: the requester waits for a
/// sync-response (a Loro join is answered only with it), so a request that
/// crossed a live update is answered, even if that repeats some bytes.
fn already_answering(
    model: &Model,
    channel: ChannelId,
    doc: &DocId,
    version: &VersionVector,
) -> bool {
    model
        .in_flight_on(channel, doc)
        .any(|(_, f)| !f.as_update && f.version.includes(version))
}

/// Answers a sync-request for a ready document.
pub(crate) fn answer(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    doc: &DocId,
    theirs: VersionVector,
    bidirectional: bool,
) {
    if !access(model, peer, doc).read {
        out.log(
            Level::Warn,
            format!("{peer} may not read {doc}; answered unavailable"),
        );
        return unavailable(out, channel, doc);
    }
    if super::common::is_request_channel(model, channel) {
        return answer_request(model, out, channel, doc, &theirs);
    }
    let most = model.config.bounds.subscriptions_per_peer;
    let full = model
        .peers
        .get(peer)
        .is_some_and(|p| p.subscribed.len() >= most && !p.subscribed.contains(doc));
    if full {
        return refuse(
            out,
            channel,
            ErrorCode::TooLarge,
            format!("{peer} follows {most} documents already; {doc} was not answered"),
        );
    }
    super::common::subscribe(model, doc, peer);
    let Some(d) = model.docs.get(doc) else {
        return;
    };
    let ours = d.version.clone();
    peer_has(model, peer, doc, &theirs);
    if theirs.includes(&ours) {
        up_to_date(model, out, channel, doc);
    } else if already_answering(model, channel, doc, &ours) {
        // A repeated request on the same connection: the data is on its way
        // (and offered again if never acknowledged), not sent twice.
        out.log(
            Level::Info,
            format!("{peer} asked again for {doc}; its answer is already on the way"),
        );
    } else if let Some(update) = live_update_on_the_way(model, channel, doc, &ours) {
        // The request crossed a live update that brings the peer to our
        // version. The peer still waits for an answer (a Loro join is
        // answered only with it), but sending the data again would double
        // it: the answer is owed until that update is acknowledged (then
        // it is up to date) or not (then the data goes as the answer).
        out.log(
            Level::Info,
            format!(
                "{peer} asked for {doc} while an update to it was on its way; answered after it"
            ),
        );
        if let Some(f) = model.in_flight.get_mut(&update) {
            f.answer_owed = Some(match f.answer_owed.take() {
                Some(owed) => owed.meet(&theirs),
                None => theirs.clone(),
            });
        }
    } else if theirs.is_empty() {
        send_data(model, out, peer, channel, doc, None, false);
    } else {
        send_data(model, out, peer, channel, doc, Some(theirs), false);
    }
    super::presence::send_existing(model, out, doc, channel, peer);
    if bidirectional {
        out.send(
            channel,
            Message::SyncRequest {
                doc: doc.clone(),
                version: ours,
                bidirectional: false,
            },
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sync_response(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: PeerId,
    doc: DocId,
    batch: BatchId,
    reply: Reply,
    version: VersionVector,
) {
    model.requests.remove(&(peer.clone(), doc.clone()));
    let data = match reply {
        Reply::Snapshot(d) | Reply::Delta(d) => d,
        Reply::UpToDate => {
            peer_has(model, &peer, &doc, &version);
            super::common::confirm(model, &peer, &doc, Some(&version));
            // It has all we have: as good as an acknowledgement for our cursor.
            if let Some(d) = model
                .docs
                .get(&doc)
                .filter(|d| version.includes(&d.version))
            {
                let clock = d.clock;
                out.follow(FollowUp::RemoteAcked {
                    peer: peer.clone(),
                    doc: doc.clone(),
                    clock,
                });
            }
            out.emit(Event::PeerSynced {
                peer: peer.clone(),
                doc: doc.clone(),
                state: SyncState::Synced(version),
            });
            out.follow(FollowUp::Pulled {
                peer: peer.clone(),
                doc: doc.clone(),
            });
            return push_gap(model, out, &peer, &doc);
        }
        Reply::Unavailable => {
            set_peer_doc(model, &peer, &doc, PeerDoc::Absent);
            super::common::confirm(model, &peer, &doc, None);
            out.emit(Event::PeerSynced {
                peer: peer.clone(),
                doc: doc.clone(),
                state: SyncState::Absent,
            });
            out.follow(FollowUp::Pulled {
                peer: peer.clone(),
                doc: doc.clone(),
            });
            return push_gap(model, out, &peer, &doc);
        }
    };
    // An answer to our own request is not charged to the peer's quota:
    // the quota is on what a client pushes.
    take_data(model, out, channel, peer, doc, batch, data, version);
}

/// After a peer told us its version: if we have more and it follows the
/// document, send the gap (this is how the requester's side pushes).
fn push_gap(model: &mut Model, out: &mut Effects, peer: &PeerId, doc: &DocId) {
    let Some(d) = model.docs.get(doc) else {
        return;
    };
    if d.is_ready() && d.subscribers.contains(peer) && !d.version.is_empty() {
        let v = d.version.clone();
        // One read of the peer: its channel, and whether it holds all we
        // have already (nearly always, after its own update: then nothing
        // is sent, and nothing on its way need be looked for).
        let Some(p) = model.peers.get(peer) else {
            return;
        };
        if matches!(p.docs.get(doc), Some(PeerDoc::Synced(has)) if has.includes(&v)) {
            return;
        }
        // An update it has not acknowledged yet is on its way: the answer
        // was written before it arrived. Sending it again would double a
        // large document's traffic (and it is re-offered if never acked).
        let sending = p
            .sync_channels
            .get_max()
            .is_some_and(|channel| already_sending(model, *channel, doc, &v));
        if sending {
            return;
        }
        super::propagation::send_if_behind(model, out, peer, doc, &v);
    }
}

/// Data from a network peer (a sync-response with data, or an update).
#[allow(clippy::too_many_arguments)]
pub(crate) fn receive_data(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: PeerId,
    doc: DocId,
    batch: BatchId,
    data: Payload,
    version: VersionVector,
) {
    if let Err(most) = super::quotas::update_fits(model, &peer, data.len()) {
        super::quotas::tell_refused(
            model,
            out,
            channel,
            format!(
                "an update of {} bytes is larger than the largest allowed ({most} bytes)",
                data.len()
            ),
            ErrorCode::TooLarge,
        );
        return ack(out, channel, batch, AckStatus::TooLarge);
    }
    if let Err(wait) = super::quotas::charge(model, channel, &peer, data.len()) {
        out.log(
            Level::Info,
            format!("{peer} is past its update quota; {doc} refused for {wait} ms"),
        );
        super::quotas::tell_refused(
            model,
            out,
            channel,
            format!("too many updates: retry after {wait} ms"),
            ErrorCode::RateLimited,
        );
        return ack(out, channel, batch, AckStatus::RateLimited);
    }
    take_data(model, out, channel, peer, doc, batch, data, version)
}

/// Takes a peer's data for a document (once past its quota: data queued
/// while the document loaded comes here again without being charged twice).
#[allow(clippy::too_many_arguments)]
pub(crate) fn take_data(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: PeerId,
    doc: DocId,
    batch: BatchId,
    data: Payload,
    version: VersionVector,
) {
    // One write to the peer: when it last sent, and what its credential
    // lets it do here.
    let now = model.now;
    let granted = model.peers.get_mut(&peer).and_then(|p| {
        p.last_push_at = Some(now);
        super::common::credential_access(p, &doc)
    });
    // Data shows what the sender holds in memory, not what it keeps: it is
    // not a confirmation (a crash may lose it); its answers and acks are.
    if model.tombstones.contains(&doc) {
        // Tell the late peer, so it can apply the deletion (its own rules decide).
        out.send(channel, Message::Delete { doc: doc.clone() });
        return ack(out, channel, batch, AckStatus::Deleted);
    }
    let allowed = granted.unwrap_or_else(|| model.config.rules.access(&peer, &doc));
    // Read first: the document is nearly always ready, and a write would
    // copy its path in the tree for nothing.
    match model.docs.get(&doc).map(|d| d.is_ready()) {
        Some(true) => {}
        Some(false) => {
            if let Some(Phase::Loading { queued, .. }) =
                model.docs.get_mut(&doc).map(|d| &mut d.phase)
            {
                queued.push(WaitingRequest::Update {
                    channel,
                    batch,
                    data,
                    version,
                });
            }
            return;
        }
        None => {
            // A writer that may not create still writes to a document its
            // store holds and memory forgot (see `on_demand`): the load
            // decides, refusing it if the store has none.
            let forgotten = allowed.write && super::on_demand::below_floor(model, Clock(0));
            let may_write_here = allowed.write && (allowed.create || forgotten);
            if !may_write_here {
                out.log(Level::Warn, format!("{peer} may not create {doc}"));
                return ack(out, channel, batch, AckStatus::PermissionDenied);
            }
            // Too large even for a new document: nothing is created.
            if let Err(most) = super::quotas::fits(model, &peer, &doc, data.len()) {
                if model.stores.is_empty() {
                    return super::quotas::refuse_too_large(
                        model, out, channel, &peer, &doc, batch, most,
                    );
                }
            }
            if !model.stores.is_empty() {
                let q = WaitingRequest::Update {
                    channel,
                    batch,
                    data,
                    version,
                };
                super::store_requests::start_loading(
                    model,
                    out,
                    &doc,
                    DocMeta::default(),
                    LoadReason::Network,
                    Some(peer),
                    Some(q),
                );
                return;
            }
            if let Err(wait) = super::quotas::create(model, &peer) {
                super::quotas::tell_refused(
                    model,
                    out,
                    channel,
                    format!("too many documents created: retry after {wait} ms"),
                    ErrorCode::RateLimited,
                );
                return ack(out, channel, batch, AckStatus::RateLimited);
            }
            create_doc(model, &doc, DocMeta::default());
        }
    }
    if !allowed.write {
        out.log(
            Level::Warn,
            format!("{peer} may not write {doc}; its data was refused"),
        );
        return ack(out, channel, batch, AckStatus::PermissionDenied);
    }
    if let Err(most) = super::quotas::fits(model, &peer, &doc, data.len()) {
        return super::quotas::refuse_too_large(model, out, channel, &peer, &doc, batch, most);
    }
    let request = super::common::is_request_channel(model, channel);
    import(
        model,
        out,
        &doc,
        data,
        Source::Peer {
            peer,
            channel,
            batch,
            version,
            request,
        },
    );
}

pub(crate) fn imported(model: &mut Model, out: &mut Effects, id: ImportId, outcome: ImportOutcome) {
    let Some(PendingImport { doc, source, len }) = model.imports.remove(&id) else {
        out.log(
            Level::Warn,
            format!("{id} finished but was not asked for; ignored"),
        );
        return;
    };
    let (version, complete) = match outcome {
        ImportOutcome::Applied { version } => (version, true),
        ImportOutcome::Pending { version } => (version, false),
        ImportOutcome::Failed { reason } => return import_failed(model, out, &doc, source, reason),
        ImportOutcome::Refused { reason } => {
            if let Source::Peer { channel, .. } = &source {
                // The acknowledgement says `invalid`; this says why.
                if model.channels.contains_key(channel) {
                    out.send(
                        *channel,
                        Message::Error {
                            code: ErrorCode::PermissionDenied,
                            message: reason.clone(),
                        },
                    );
                }
            }
            return import_failed(model, out, &doc, source, reason);
        }
        ImportOutcome::Unavailable { reason } => {
            return import_unavailable(model, out, &doc, source, reason)
        }
    };
    let Some(d) = model.docs.get_mut(&doc) else {
        // Deleted while the import ran: the tombstone wins.
        return import_failed(model, out, &doc, source, "the document was deleted".into());
    };
    // The replica's version after the import is the truth, even when it
    // holds less than the model believed (stored data that did not import).
    let before = d.version.clone();
    d.version = version.clone();
    let advanced = !before.includes(&version);
    if advanced {
        d.bytes = d.bytes.saturating_add(len);
    }
    if advanced {
        if let Source::Peer { peer, .. } = &source {
            model.missing_asked.remove(&(peer.clone(), doc.clone()));
        }
    }
    let done = Imported {
        doc,
        version,
        advanced,
        complete,
    };
    match source {
        Source::Peer {
            peer,
            channel,
            batch,
            request: true,
            ..
        } => imported_from_request(model, out, done, channel, batch, peer),
        Source::Peer {
            peer,
            channel,
            batch,
            version: theirs,
            request: false,
        } => imported_from_peer(model, out, done, peer, channel, batch, theirs),
        Source::Push {
            peer,
            channel,
            job,
            index,
        } => {
            let request = super::common::is_request_channel(model, channel);
            imported_from_push(model, out, done, peer, job, index, request)
        }
    }
}

/// An import that finished: the document, its version after it, whether
/// that added anything, and whether nothing waits for dependencies.
struct Imported {
    doc: DocId,
    version: VersionVector,
    advanced: bool,
    complete: bool,
}

/// A peer's update is in: others hear of it, the peer gets what it lacks
/// and, once durable, its acknowledgement (or is asked for what is missing).
/// Tells `channel` it holds all of `doc` there is, with the version the
/// node promises to keep (not what it happens to hold in memory).
fn up_to_date(model: &Model, out: &mut Effects, channel: ChannelId, doc: &DocId) {
    let promised = model
        .docs
        .get(doc)
        .map(|d| super::common::promised_version(model, d))
        .unwrap_or_default();
    out.send(
        channel,
        Message::SyncResponse {
            doc: doc.clone(),
            batch: BatchId(0),
            reply: Reply::UpToDate,
            version: promised,
        },
    );
}

/// Answers one request's sync-request (see `common::is_request_channel`):
/// the data it lacks, or that it is up to date, on its channel; its
/// identity is neither subscribed nor recorded as holding anything.
fn answer_request(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    doc: &DocId,
    theirs: &VersionVector,
) {
    let Some(d) = model.docs.get(doc) else {
        return;
    };
    if theirs.includes(&d.version) {
        return up_to_date(model, out, channel, doc);
    }
    let since = (!theirs.is_empty()).then(|| theirs.clone());
    super::common::send_data_only(model, out, channel, doc, since, false);
}

fn imported_from_peer(
    model: &mut Model,
    out: &mut Effects,
    done: Imported,
    peer: PeerId,
    channel: ChannelId,
    batch: BatchId,
    theirs: VersionVector,
) {
    let Imported {
        doc,
        version,
        advanced,
        complete,
    } = done;
    peer_has(model, &peer, &doc, &theirs);
    if advanced {
        took_change(model, out, &doc, &version, &peer, true);
    }
    // We may hold concurrent changes it lacks: send only those (never its own back).
    push_gap(model, out, &peer, &doc);
    out.emit(Event::PeerSynced {
        peer: peer.clone(),
        doc: doc.clone(),
        state: SyncState::Synced(theirs.clone()),
    });
    if complete {
        when_durable(
            model,
            out,
            &doc,
            version,
            Notify::Ack {
                channel,
                peer,
                batch,
            },
        );
    } else {
        ack(out, channel, batch, AckStatus::MissingDependencies);
        // Ask for what is missing. It just sent `theirs`: that much
        // it has for sure, whatever the answer to this request says.
        if model.channels.contains_key(&channel) {
            ask_missing(model, out, &peer, channel, &doc);
            peer_has(model, &peer, &doc, &theirs);
        }
    }
}

/// One request's update is in (see `common::is_request_channel`): every
/// subscriber hears of it, its identity's live connections too (it
/// recorded nothing of theirs), and the request's acknowledgement waits
/// for durability. A request missing dependencies is told so and not
/// asked for them: it holds nothing more.
fn imported_from_request(
    model: &mut Model,
    out: &mut Effects,
    done: Imported,
    channel: ChannelId,
    batch: BatchId,
    peer: PeerId,
) {
    let Imported {
        doc,
        version,
        advanced,
        complete,
    } = done;
    if advanced {
        took_change(model, out, &doc, &version, &peer, false);
    }
    if !complete {
        return ack(out, channel, batch, AckStatus::MissingDependencies);
    }
    let notify = Notify::Ack {
        channel,
        peer,
        batch,
    };
    when_durable(model, out, &doc, version, notify);
}

/// An import added to `doc` (sent by `peer`): it is changed here, the
/// application hears of it, and the other subscribers get it: all but
/// `peer` when `skip_source` (its replica has it), every one when it came
/// from one of `peer`'s requests.
/// `version` is the document's now (the import's, just written to it).
fn took_change(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    version: &VersionVector,
    peer: &PeerId,
    skip_source: bool,
) {
    changed(model, doc);
    out.emit(Event::DocChanged {
        doc: doc.clone(),
        version: version.clone(),
        from: Some(peer.clone()),
    });
    propagate(model, out, doc, Some(peer).filter(|_| skip_source));
}

/// A listener's pushed revision is in: others hear of it, and its
/// revision is settled once durable (or says what it is missing).
fn imported_from_push(
    model: &mut Model,
    out: &mut Effects,
    done: Imported,
    peer: PeerId,
    job: u64,
    index: usize,
    request: bool,
) {
    let Imported {
        doc,
        version,
        advanced,
        complete,
    } = done;
    if advanced {
        // Pushed over the HTTP listener API (a request): the pusher's own
        // live connections hear of it too.
        took_change(model, out, &doc, &version, &peer, !request);
    }
    if complete {
        when_durable(model, out, &doc, version, Notify::Push { job, index });
    } else {
        deliver(
            model,
            out,
            Notify::Push { job, index },
            &doc,
            &version,
            None,
            RevisionStatus::MissingDependencies,
        );
    }
}

/// Our side failed, not the data: no acknowledgement, so the sender's
/// transmission times out and it offers the data again (a sync-request,
/// whose answer tells it what we lack).
fn import_unavailable(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    source: Source,
    reason: String,
) {
    report(
        out,
        Some(doc),
        format!("{doc} could not take data now: {reason}; it is asked for again"),
    );
    match source {
        Source::Peer {
            channel,
            batch,
            request: true,
            ..
        } => {
            // A request holds nothing to offer again: it is told to retry.
            ack(out, channel, batch, AckStatus::RateLimited);
        }
        Source::Peer {
            peer,
            version: theirs,
            ..
        } => {
            // Not acknowledged: the sender offers it again. What it sent, it
            // has, whatever became of it here: forgetting that would make
            // us send it its own data back once the document is readable.
            peer_has(model, &peer, doc, &theirs);
        }
        Source::Push { job, index, .. } => deliver(
            model,
            out,
            Notify::Push { job, index },
            doc,
            &VersionVector::new(),
            None,
            RevisionStatus::MissingDependencies,
        ),
    }
}

fn import_failed(
    model: &mut Model,
    out: &mut Effects,
    doc: &DocId,
    source: Source,
    reason: String,
) {
    match source {
        Source::Peer {
            peer,
            channel,
            batch,
            ..
        } => {
            report(
                out,
                Some(doc),
                format!("data for {doc} from {peer} could not be imported: {reason}"),
            );
            let status = if model.tombstones.contains(doc) {
                AckStatus::Deleted
            } else {
                AckStatus::Invalid
            };
            ack(out, channel, batch, status);
        }
        Source::Push { job, index, .. } => {
            let status = if model.tombstones.contains(doc) {
                RevisionStatus::Denied
            } else {
                RevisionStatus::Invalid
            };
            deliver(
                model,
                out,
                Notify::Push { job, index },
                doc,
                &VersionVector::new(),
                None,
                status,
            );
        }
    }
}

pub(crate) fn local_change(
    model: &mut Model,
    out: &mut Effects,
    doc: DocId,
    version: VersionVector,
) {
    if model.tombstones.contains(&doc) {
        return report(
            out,
            Some(&doc),
            format!("{doc} was deleted; the local change is not synced"),
        );
    }
    if !doc.is_valid() {
        return report(
            out,
            Some(&doc),
            format!("{doc:?} is not a valid document id"),
        );
    }
    if !model.docs.contains_key(&doc) {
        create_doc(model, &doc, DocMeta::default());
    }
    let Some(d) = model.docs.get_mut(&doc) else {
        return;
    };
    let before = d.version.clone();
    d.version = before.merge(&version);
    if d.version != before && d.is_ready() {
        changed(model, &doc);
        propagate(model, out, &doc, None);
    }
}

pub(crate) fn open_doc(model: &mut Model, out: &mut Effects, doc: DocId, meta: DocMeta) {
    if !doc.is_valid() {
        report(
            out,
            Some(&doc),
            format!("{doc:?} is not a valid document id"),
        );
        return out.emit(Event::DocUnavailable { doc });
    }
    if model.tombstones.contains(&doc) {
        report(
            out,
            Some(&doc),
            format!("{doc} was deleted and cannot be opened again"),
        );
        return out.emit(Event::DocUnavailable { doc });
    }
    match model.docs.get_mut(&doc).map(|d| &mut d.phase) {
        Some(Phase::Ready) => {
            let version = model
                .docs
                .get(&doc)
                .map(|d| d.version.clone())
                .unwrap_or_default();
            out.emit(Event::DocReady { doc, version });
        }
        Some(Phase::Loading { reason, .. }) => *reason = LoadReason::Open,
        None if !model.stores.is_empty() => super::store_requests::start_loading(
            model,
            out,
            &doc,
            meta,
            LoadReason::Open,
            None,
            None,
        ),
        None => {
            create_doc(model, &doc, meta);
            out.emit(Event::DocReady {
                doc: doc.clone(),
                version: VersionVector::new(),
            });
            out.follow(FollowUp::DocReady {
                doc: doc.clone(),
                announce: Some(None),
                ask_remotes: true,
                queued: Vec::new(),
                propagate: false,
            });
        }
    }
}

/// Who sent an acknowledgement, as the channel it came on says.
pub(crate) enum AckFrom {
    /// A store.
    Store,
    /// An established peer; `bot`: a request's (see
    /// `common::is_request_channel`).
    Peer { peer: PeerId, bot: bool },
}

pub(crate) fn ack_received(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    from: AckFrom,
    batch: BatchId,
    status: AckStatus,
    clock: Option<Clock>,
) {
    let Some(f) = model.take_in_flight(&batch) else {
        out.log(
            Level::Info,
            format!("{channel}: ack for unknown {batch}; ignored"),
        );
        return;
    };
    if f.channel != channel {
        // Not this channel's to acknowledge: keep waiting for the right one.
        let message = format!("{batch} was not sent on this channel");
        model.add_in_flight(batch, f);
        return refuse(out, channel, ErrorCode::PermissionDenied, message);
    }
    // Whose it is comes with it (the channel was read once, on arrival).
    // A request's acknowledgement of its answer records nothing of its
    // identity's (see `common::is_request_channel`).
    let peer = match from {
        AckFrom::Store => return store_ack(model, out, channel, f, status, clock),
        AckFrom::Peer { bot: true, .. } => return,
        AckFrom::Peer { peer, bot: false } => peer,
    };
    let taken = status == AckStatus::Ok;
    // One write of the peer: what it confirmed or is no longer assumed to
    // hold, and the live update on its way to it, which this ack settles.
    let settled = model.peers.get_mut(&peer).is_some_and(|p| {
        if taken {
            p.rate_refusals.remove(&f.doc);
            super::common::confirm_in(p, &f.doc, Some(&f.version));
        } else {
            // Forget what we assumed it has: the next change resends from scratch.
            p.docs.remove(&f.doc);
        }
        settle_sending(p, &f.doc, batch)
    });
    // What changed while this update was on its way, read with its clock
    // (see `waited`).
    let mut behind = None;
    match status {
        AckStatus::Ok => {
            // Acknowledging everything we have covers our latest clock for it.
            let clock = match model.docs.get(&f.doc) {
                Some(d) if f.version.includes(&d.version) => d.clock,
                Some(d) => {
                    if settled {
                        behind = waited(d, &peer, &f);
                    }
                    f.clock
                }
                None => f.clock,
            };
            out.emit(Event::AckedByRemote {
                peer: peer.clone(),
                doc: f.doc.clone(),
                version: f.version.clone(),
            });
            out.follow(FollowUp::RemoteAcked {
                peer: peer.clone(),
                doc: f.doc.clone(),
                clock,
            });
        }
        other => {
            // Refused for now, not for good: we ask again and send the gap,
            // a second later (its bucket holds a second's worth), then
            // twice as long each time it refuses again (a quota of
            // documents per hour refuses for longer), at most a minute.
            if other == AckStatus::RateLimited {
                let refusals = model.peers.get_mut(&peer).map_or(1, |p| {
                    let n = p
                        .rate_refusals
                        .get(&f.doc)
                        .map_or(1, |n| n.saturating_add(1));
                    p.rate_refusals.insert(f.doc.clone(), n);
                    n
                });
                let wait = RATE_LIMITED_RETRY_MS
                    .saturating_mul(1 << refusals.saturating_sub(1).min(6))
                    .min(RATE_LIMITED_RETRY_MAX_MS);
                let at = model.now.saturating_add(wait);
                let timer = crate::model::Timer::RetryRateLimited(peer.clone(), f.doc.clone());
                super::timers::set(model, timer, at);
            }
            if other != AckStatus::MissingDependencies {
                report(
                    out,
                    Some(&f.doc),
                    format!("{peer} refused {} ({other:?})", f.doc),
                );
            }
        }
    }
    if let Some(theirs) = f.answer_owed.clone() {
        answer_owed(model, out, channel, &peer, &f, theirs, taken);
        // The answer may have sent it: the document is read again.
        behind = model.docs.get(&f.doc).and_then(|d| waited(d, &peer, &f));
    }
    if settled && taken {
        if let Some(version) = behind {
            super::propagation::send_if_behind(model, out, &peer, &f.doc, &version);
        }
    }
}

/// How long after a `rate-limited` ack our change is offered again (the
/// first time; doubled at each refusal in a row, up to the most).
const RATE_LIMITED_RETRY_MS: crate::io::Millis = 1_000;
const RATE_LIMITED_RETRY_MAX_MS: crate::io::Millis = 60_000;

/// The retry of a change a peer refused for its rate quota: a request
/// (both ways), whose answer says what it lacks; the gap goes then.
pub(crate) fn retry_rate_limited(model: &mut Model, out: &mut Effects, peer: &PeerId, doc: &DocId) {
    let Some(channel) = peer_channel(model, peer) else {
        // Gone: its reconnect syncs everything anyway.
        return;
    };
    if model.docs.get(doc).is_some_and(|d| d.is_ready()) {
        request(model, out, peer, channel, doc, true);
    }
}

/// A request that crossed the live update `f` is answered once that update
/// is acknowledged (`taken`: the peer holds it now) or given up on.
pub(crate) fn answer_owed(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    f: &crate::model::InFlight,
    theirs: VersionVector,
    taken: bool,
) {
    if !model.docs.get(&f.doc).is_some_and(|d| d.is_ready()) {
        return;
    }
    // The update brought the peer from the base we assumed it held to
    // `f.version`: only when the request says it held that base (or the
    // update was a snapshot) does taking it bring the peer that far. A
    // base assumed wrongly (an earlier update lost to its crash) must not
    // make the answer "up to date" while it lacks what that update held.
    let base_held = f.base.as_ref().is_none_or(|b| theirs.includes(b));
    let theirs = if taken && base_held {
        theirs.merge(&f.version)
    } else {
        theirs
    };
    answer(model, out, channel, peer, &f.doc, theirs, false);
}

/// After the ack of a peer's live update `f`: the version to send it
/// now, as one update, when changes waited for that ack (see
/// `propagation::send_if_behind`).
fn waited(
    d: &crate::model::Doc,
    peer: &PeerId,
    f: &crate::model::InFlight,
) -> Option<VersionVector> {
    let waited = d.is_ready() && d.subscribers.contains(peer) && !f.version.includes(&d.version);
    waited.then(|| d.version.clone())
}

/// `batch`, now acknowledged or refused, is no longer the peer's live update
/// of `doc` on its way; whether it was (another batch on its way stays).
/// The batch has left the in-flight table already, so a send meanwhile
/// (answering a request) saw nothing on its way either way.
fn settle_sending(p: &mut crate::model::Peer, doc: &DocId, batch: BatchId) -> bool {
    // One lookup when it is this batch (nearly always): taken out, and
    // put back when another one is on its way.
    match p.sending.remove(doc) {
        Some(b) if b == batch => true,
        Some(other) => {
            p.sending.insert(doc.clone(), other);
            false
        }
        None => false,
    }
}

fn store_ack(
    model: &mut Model,
    out: &mut Effects,
    store: ChannelId,
    f: crate::model::InFlight,
    status: AckStatus,
    clock: Option<Clock>,
) {
    let doc = f.doc;
    if status == AckStatus::Ok {
        super::store_requests::store_ok(model);
    }
    let Some(d) = model.docs.get_mut(&doc) else {
        return;
    };
    let before = d.durable.get(&store).cloned().unwrap_or_default();
    if status == AckStatus::Ok && f.base.as_ref().is_some_and(|b| !before.includes(b)) {
        // A delta whose base never became durable (its write failed): the
        // store does not hold what it acknowledged. Write from what it holds.
        d.stored.insert(store, before);
        out.log(
            Level::Warn,
            format!("{store} acknowledged {doc} over a base it lacks; writing the gap"),
        );
        return super::common::persist(model, out, &doc);
    }
    if status != AckStatus::Ok {
        // Resend what is not durable with the next change; a write in doubt
        // holds cursors back, so that one is tried again without waiting.
        let durable = d.durable.get(&store).cloned().unwrap_or_default();
        d.stored.insert(store, durable);
        if model.unsettled_writes.contains_key(&doc) {
            super::store_requests::retry_doc(model, &doc);
        }
        return report(
            out,
            Some(&doc),
            format!("{store} could not store {doc} ({status:?})"),
        );
    }
    let durable = d
        .durable
        .get(&store)
        .map(|v| v.merge(&f.version))
        .unwrap_or(f.version.clone());
    d.durable.insert(store, durable.clone());
    let covers_all = durable.includes(&d.version);
    if model.stores.get_min() == Some(&store) {
        if let Some(c) = clock {
            // With the document in hand (see `common::Feed`).
            let feed = super::common::Feed {
                by_clock: &mut model.by_clock,
                clock: &mut model.clock,
                unsettled_writes: &mut model.unsettled_writes,
            };
            feed.assign(&doc, d, c);
            out.emit(Event::Durable {
                doc: doc.clone(),
                version: durable.clone(),
                clock: c,
            });
        }
        if covers_all {
            model.dirty.remove(&doc);
        }
        out.follow(FollowUp::Durable {
            doc: doc.clone(),
            version: durable.clone(),
        });
    }
    release_waiters(model, out, &doc);
    if !covers_all {
        // What changed while this write was out goes now, as one change.
        super::common::persist(model, out, &doc);
    }
}

#[cfg(test)]
mod tests {
    use crate::effects::FollowUp;
    use crate::tests::kit::*;

    #[test]
    fn a_document_opened_without_stores_is_ready_at_once_and_its_announcement_follows() {
        let mut k = Kit::hub();
        let (cmds, follow_ups) =
            k.handle(|m, o| super::open_doc(m, o, doc("d"), Default::default()));
        assert!(events(&cmds)
            .iter()
            .any(|e| matches!(e, crate::Event::DocReady { .. })));
        assert_eq!(
            follow_ups,
            vec![FollowUp::DocReady {
                doc: doc("d"),
                announce: Some(None),
                ask_remotes: true,
                queued: Vec::new(),
                propagate: false,
            }]
        );
    }

    #[test]
    fn an_update_for_a_document_being_loaded_waits_with_the_load() {
        let mut k = Kit::hub();
        k.store(10);
        k.peer(1, "alice");
        let (cmds, follow_ups) = k.handle(|m, o| {
            super::receive_data(
                m,
                o,
                crate::ChannelId(1),
                crate::PeerId::new("alice"),
                doc("d"),
                crate::BatchId(1),
                crate::Payload::new(vec![1]),
                vv(&[(1, 1)]),
            )
        });
        assert!(follow_ups.is_empty() && messages(&cmds, 1).is_empty());
        assert!(k.model.docs.get(&doc("d")).is_some_and(|d| !d.is_ready()));
    }
}
