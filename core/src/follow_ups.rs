//! Runs the follow-ups handlers record (see `out`), first recorded first,
//! each by the handler it concerns, until none is left. The top layer,
//! beside `update`: it may call any handler, and no handler calls it.

use crate::effects::{Effects, FollowUp};
use crate::handlers::{changes, common, listeners, propagation, sync};
use crate::ids::DocId;
use crate::model::{Model, WaitingRequest};

/// Runs every follow-up recorded so far, and those they record in turn.
pub(crate) fn run(model: &mut Model, out: &mut Effects) {
    while let Some(follow_up) = out.next_follow_up() {
        run_one(model, out, follow_up);
    }
}

fn run_one(model: &mut Model, out: &mut Effects, follow_up: FollowUp) {
    match follow_up {
        FollowUp::DocReady {
            doc,
            announce,
            ask_remotes,
            queued,
            propagate,
        } => {
            if let Some(creator) = announce {
                changes::announce_but(model, out, &doc, creator.as_ref());
            }
            if ask_remotes {
                propagation::request_from_remotes(model, out, &doc);
            }
            // The waiting requesters are answered first: propagation then skips them.
            for request in queued {
                replay(model, out, &doc, request);
            }
            if propagate {
                propagation::propagate(model, out, &doc, None);
            }
        }
        FollowUp::Pulled { peer, doc } => changes::pulled_doc(model, out, &peer, &doc),
        FollowUp::RemoteAcked { peer, doc, clock } => {
            changes::remote_acked(model, out, &peer, &doc, clock)
        }
        FollowUp::Durable { doc, version } => {
            changes::durable_for_pulls(model, out, &doc, &version)
        }
        FollowUp::RevisionFilled {
            job,
            index,
            revision,
        } => listeners::fill_revision(model, out, job, index, revision),
        FollowUp::Welcomed {
            peer,
            channel,
            addr,
            clock,
        } => changes::resume_with(model, out, &peer, channel, &addr, clock),
    }
}

/// A request that waited for a document's load, handled now that the
/// document is ready; one from a channel that closed meanwhile is dropped.
fn replay(model: &mut Model, out: &mut Effects, doc: &DocId, request: WaitingRequest) {
    let channel = match &request {
        WaitingRequest::Sync { channel, .. }
        | WaitingRequest::Update { channel, .. }
        | WaitingRequest::Push { channel, .. } => *channel,
    };
    let Some(peer) = common::established_peer(model, channel) else {
        return;
    };
    match request {
        WaitingRequest::Sync {
            version,
            bidirectional,
            ..
        } => sync::answer(model, out, channel, &peer, doc, version, bidirectional),
        WaitingRequest::Update {
            batch,
            data,
            version,
            ..
        } => sync::take_data(model, out, channel, peer, doc.clone(), batch, data, version),
        WaitingRequest::Push {
            job, index, data, ..
        } => listeners::replay_push(model, out, doc, &peer, (channel, job, index, data)),
    }
}
