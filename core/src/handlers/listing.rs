//! Listing the documents a peer may read, with their sizes (protocol 2).
//!
//! ```text
//! client                                  server
//!   | -- list-docs {filter, after} ------> |  ready documents matching the filter that the
//!   | <-- doc-list {docs, more} ---------- |  client may read, in id order, one page at a time
//! ```
//! Sent only on channels that negotiated protocol 2 or later.

use super::common::{peer_channel, report};
use super::on_demand;
use crate::effects::Effects;
use crate::ids::{ChannelId, Clock, DocId, PeerId};
use crate::io::{Event, ReadRange, StoredDoc};
use crate::model::Model;
use crate::model::PendingRead;
use crate::protocol::{Filter, ListedDoc, Message};

/// Answers list-docs with one page of the readable documents; when some
/// may be only in the store, from a page of its index merged with memory
/// (`listed` once it is read).
pub(crate) fn list_docs(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
    after: Option<DocId>,
) {
    let limit = on_demand::page_size(model);
    if on_demand::below_floor(model, Clock(0)) {
        return read_page(model, out, channel, peer, filter, after, limit);
    }
    let (docs, more, _) =
        on_demand::merged_by_id(model, peer, &filter, after.as_ref(), None, limit as usize);
    out.send(channel, Message::DocList { docs, more });
}

fn read_page(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
    after: Option<DocId>,
    limit: u32,
) {
    let pending = PendingRead::Listing {
        channel,
        peer: peer.clone(),
        filter: filter.clone(),
        after: after.clone(),
        limit,
    };
    let range = ReadRange::Ids { after };
    on_demand::read_for_peer(model, out, pending, range, filter, limit);
}

/// The store's page for a list-docs is in: merged with memory and sent,
/// or, when nothing of it was for this peer, the next page is read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn listed(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
    after: Option<DocId>,
    limit: u32,
    rows: Vec<StoredDoc>,
) {
    let full = rows.len() >= limit as usize;
    let read = Some((rows, full));
    let (docs, more, last_row) =
        on_demand::merged_by_id(model, peer, &filter, after.as_ref(), read, limit as usize);
    // An empty page that says more follow would leave the peer no id to
    // go on from: read on from the store's last instead.
    if docs.is_empty() && full && last_row.is_some() {
        return read_page(model, out, channel, peer, filter, last_row, limit);
    }
    out.send(channel, Message::DocList { docs, more });
}

/// A peer's listing arrived: the application hears of it.
pub(crate) fn doc_list(out: &mut Effects, peer: &PeerId, docs: Vec<ListedDoc>, more: bool) {
    out.emit(Event::DocList {
        peer: peer.clone(),
        docs,
        more,
    });
}

/// The application asks a peer for its listing.
pub(crate) fn list_remote(
    model: &mut Model,
    out: &mut Effects,
    peer: &PeerId,
    after: Option<DocId>,
) {
    let Some(channel) = peer_channel(model, peer) else {
        return report(
            out,
            None,
            format!("{peer} is not connected; cannot list its documents"),
        );
    };
    if super::common::protocol_of(model, channel) < 2 {
        return report(
            out,
            None,
            format!("{peer} speaks protocol 1, which has no document listing"),
        );
    }
    out.send(
        channel,
        Message::ListDocs {
            filter: Filter::all(),
            after,
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::tests::kit::*;
    use crate::{ChannelId, Filter, Message, PeerId};

    #[test]
    fn a_listing_names_the_documents_in_id_order_after_the_cursor() {
        let mut k = Kit::hub();
        for d in ["c", "a", "b"] {
            k.create(&[], d);
        }
        k.peer(1, "alice");
        let alice = PeerId::new("alice");
        let (cmds, _) = k.handle(|m, o| {
            super::list_docs(m, o, ChannelId(1), &alice, Filter::all(), Some(doc("a")))
        });
        let listed: Vec<_> = match messages(&cmds, 1).as_slice() {
            [Message::DocList { docs, more: false }] => {
                docs.iter().map(|d| d.doc.clone()).collect()
            }
            other => panic!("one last page expected, got {other:?}"),
        };
        assert_eq!(listed, vec![doc("b"), doc("c")]);
    }
}
