//! Storage-first loading: a document we do not know is asked of every store
//! before anyone is answered.
//!
//! ```text
//! peer            node                      stores (each)
//!  | sync-request  |                           |
//!  |-------------->| doc unknown: queue it     |
//!  |               |-- sync-request {empty} -->|
//!  |               |<-- snapshot|unavailable --|  a removed store counts as answered
//!  |<--------------| all answered and imported: answer every queued request
//! ```
//! Nothing is created when no store has the document and the requester may
//! not create it; the requester is told `unavailable`.

use super::common::{access, changed, propagate};
use crate::ids::{ChannelId, DocId, PeerId};
use crate::io::{Event, Level};
use crate::model::{Doc, LoadReason, Model, Phase, Queued};
use crate::out::Out;
use crate::protocol::{AckStatus, DocMeta, Message, Reply};
use crate::version::VersionVector;

pub(crate) fn start_loading(
    model: &mut Model,
    out: &mut Out,
    doc: &DocId,
    meta: DocMeta,
    reason: LoadReason,
    creator: Option<PeerId>,
    first: Option<Queued>,
) {
    let mut d = Doc::new(meta);
    d.phase = Phase::Loading {
        waiting: model.stores.clone(),
        imports: 0,
        queued: first.into_iter().collect(),
        found: false,
        reason,
        creator,
    };
    model.docs.insert(doc.clone(), d);
    let at = model
        .now
        .saturating_add(model.config.timing.request_timeout_ms);
    super::timers::set(model, crate::model::Timer::LoadTimeout(doc.clone()), at);
    let stores: Vec<ChannelId> = model.stores.iter().copied().collect();
    for s in stores {
        out.send(
            s,
            Message::SyncRequest {
                doc: doc.clone(),
                version: VersionVector::new(),
                bidirectional: false,
            },
        );
    }
    maybe_finish_loading(model, out, doc);
}

/// A store answered a sync-request.
pub(crate) fn store_response(
    model: &mut Model,
    out: &mut Out,
    store: ChannelId,
    doc: DocId,
    reply: Reply,
    version: VersionVector,
) {
    if model.tombstones.contains(&doc) {
        // Never resurrect a deleted document from storage.
        out.log(
            Level::Info,
            format!("{store} still had deleted {doc}; ignored"),
        );
        return;
    }
    let Some(d) = model.docs.get_mut(&doc) else {
        return;
    };
    let data = match reply {
        Reply::Snapshot(data) | Reply::Delta(data) => Some(data),
        Reply::UpToDate | Reply::Unavailable => None,
    };
    if let Phase::Loading {
        waiting,
        imports,
        found,
        ..
    } = &mut d.phase
    {
        waiting.remove(&store);
        if data.is_some() {
            *imports += 1;
            *found = true;
        }
    }
    match data {
        Some(data) => super::sync::import(
            model,
            out,
            &doc,
            data,
            crate::model::Source::Store { channel: store },
        ),
        None => {
            if let Some(d) = model.docs.get_mut(&doc) {
                d.stored.insert(store, version.clone());
                d.durable.insert(store, version);
            }
            maybe_finish_loading(model, out, &doc);
        }
    }
}

/// Once every store answered and every import finished, the document is
/// ready (or unavailable) and queued requests are answered in order.
pub(crate) fn maybe_finish_loading(model: &mut Model, out: &mut Out, doc: &DocId) {
    let Some(d) = model.docs.get(doc) else {
        return;
    };
    let Phase::Loading {
        waiting,
        imports,
        queued,
        found,
        reason,
        creator,
    } = &d.phase
    else {
        return;
    };
    if !waiting.is_empty() || *imports > 0 {
        return;
    }
    let (queued, found, reason, creator) = (queued.clone(), *found, *reason, creator.clone());
    let may_create = match (reason, &creator) {
        (LoadReason::Open, _) => true,
        (LoadReason::Network, Some(p)) => access(model, p, doc).create,
        (LoadReason::Network, None) => false,
    };
    if !found && !may_create {
        super::timers::cancel(model, &crate::model::Timer::LoadTimeout(doc.clone()));
        model.docs.remove(doc);
        refuse_queued(model, out, doc, queued);
        return;
    }
    if let Some(d) = model.docs.get_mut(doc) {
        d.phase = Phase::Ready;
    }
    super::timers::cancel(model, &crate::model::Timer::LoadTimeout(doc.clone()));
    if !found {
        changed(model, doc);
        // A queued update or push persists with its import; an empty write first would be wasted.
        let brings_data = queued.iter().any(|q| !matches!(q, Queued::Sync { .. }));
        if !brings_data {
            super::common::persist(model, out, doc);
        }
    }
    if reason == LoadReason::Open {
        let version = model
            .docs
            .get(doc)
            .map(|d| d.version.clone())
            .unwrap_or_default();
        out.emit(Event::DocReady {
            doc: doc.clone(),
            version,
        });
        if !found {
            super::changes::announce(model, out, doc);
        }
        super::sync::request_from_remotes(model, out, doc);
    }
    // Answer the waiting requesters first: propagation then skips them.
    for q in queued {
        replay_queued(model, out, doc, q);
    }
    if found {
        // Local edits made while loading, or a store that lacks what another had.
        propagate(model, out, doc, None);
    }
}

fn replay_queued(model: &mut Model, out: &mut Out, doc: &DocId, q: Queued) {
    let channel = match &q {
        Queued::Sync { channel, .. }
        | Queued::Update { channel, .. }
        | Queued::Push { channel, .. } => *channel,
    };
    // Requests from a channel that closed meanwhile are dropped.
    let Some(peer) = super::common::established_peer(model, channel) else {
        return;
    };
    match q {
        Queued::Sync {
            version,
            bidirectional,
            ..
        } => super::sync::answer(model, out, channel, &peer, doc, version, bidirectional),
        Queued::Update {
            batch,
            data,
            version,
            ..
        } => {
            super::sync::receive_data(model, out, channel, peer, doc.clone(), batch, data, version)
        }
        Queued::Push {
            job, index, data, ..
        } => super::listeners::replay_push(model, out, doc, &peer, (channel, job, index, data)),
    }
}

fn refuse_queued(model: &mut Model, out: &mut Out, doc: &DocId, queued: Vec<Queued>) {
    out.log(
        Level::Warn,
        format!("no store has {doc} and the requester may not create it"),
    );
    for q in queued {
        match q {
            Queued::Sync { channel, .. } if model.channels.contains_key(&channel) => out.send(
                channel,
                Message::SyncResponse {
                    doc: doc.clone(),
                    batch: crate::ids::BatchId(0),
                    reply: Reply::Unavailable,
                    version: VersionVector::new(),
                },
            ),
            Queued::Update { channel, batch, .. } if model.channels.contains_key(&channel) => out
                .send(
                    channel,
                    Message::Ack {
                        batch,
                        status: AckStatus::PermissionDenied,
                        clock: None,
                    },
                ),
            _ => {}
        }
    }
}

/// A store did not answer in time: it counts as having answered, so one
/// stuck store cannot hold a document (and its requesters) forever.
pub(crate) fn load_timed_out(model: &mut Model, out: &mut Out, doc: &DocId) {
    let Some(d) = model.docs.get_mut(doc) else {
        return;
    };
    if let Phase::Loading {
        waiting, imports, ..
    } = &mut d.phase
    {
        if !waiting.is_empty() {
            out.log(
                Level::Warn,
                format!(
                    "{} store(s) did not answer for {doc} in time",
                    waiting.len()
                ),
            );
        }
        waiting.clear();
        *imports = 0;
    }
    maybe_finish_loading(model, out, doc);
}
