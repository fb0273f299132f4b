//! Listing the documents a peer may read, with their sizes (protocol 2).
//!
//! ```text
//! client                                  server
//!   | -- list-docs {filter, after} ------> |  ready documents matching the filter that the
//!   | <-- doc-list {docs, more} ---------- |  client may read, in id order, one page at a time
//! ```
//! Sent only on channels that negotiated protocol 2 or later.

use super::common::{access, peer_channel, report};
use crate::effects::Effects;
use crate::ids::{ChannelId, DocId, PeerId};
use crate::io::Event;
use crate::model::Model;
use crate::protocol::{Filter, ListedDoc, Message};

/// Answers list-docs with one page of the readable documents.
pub(crate) fn list_docs(
    model: &mut Model,
    out: &mut Effects,
    channel: ChannelId,
    peer: &PeerId,
    filter: Filter,
    after: Option<DocId>,
) {
    let page = model.config.timing.changes_page.max(1);
    let mut docs = Vec::new();
    let mut more = false;
    let start = match &after {
        Some(a) => std::ops::Bound::Excluded(a.clone()),
        None => std::ops::Bound::Unbounded,
    };
    for (id, d) in model.docs.range((start, std::ops::Bound::Unbounded)) {
        if !d.is_ready() || !filter.matches(id, &d.meta) || !access(model, peer, id).read {
            continue;
        }
        if docs.len() == page {
            more = true;
            break;
        }
        docs.push(ListedDoc {
            doc: id.clone(),
            meta: d.meta.clone(),
            version: d.version.clone(),
            clock: d.clock,
        });
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
