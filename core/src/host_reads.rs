//! What a host reads of the model for operators, a bounded part at a time:
//! a page of the documents in id order, one document, the number of
//! connected peers. Each costs the node's thread what it returns, not what
//! it holds (a listing that copied every document to serve one page of an
//! admin API, or to count peers, stalled every other input for as long).

use crate::ids::{Clock, DocId};
use crate::model::Model;
use crate::version::VersionVector;
use std::ops::Bound;

/// A document as an operator lists it: its id, version and last clock.
pub type DocSummary = (DocId, VersionVector, Clock);

/// One page of the documents in id order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocPage {
    /// The documents, in id order.
    pub docs: Vec<DocSummary>,
    /// Where the next page starts (exclusive), if there is more.
    pub next: Option<DocId>,
}

impl Model {
    /// The first `limit` documents after `after` (exclusive), from memory
    /// and from `stored`: the store's own first `limit + 1` after `after`
    /// (by id), which holds the documents whose metadata memory let go of
    /// (see [`crate::Bounds::idle_metadata`]); `next` is right only for
    /// that page. Where both know a document, memory's version wins: it
    /// holds this node's latest change before the store does, as
    /// [`crate::Bounds::idle_metadata`]'s listings to peers do (another
    /// server's change on a shared store reaches memory through the feed).
    /// A deleted document is left out after the page is cut, so a page may
    /// be short, even empty, with a `next`; one still loading that the
    /// store does not know yet is left out too.
    pub fn doc_page(
        &self,
        after: Option<&DocId>,
        limit: usize,
        stored: Vec<DocSummary>,
    ) -> DocPage {
        let limit = limit.max(1);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut merged: std::collections::BTreeMap<DocId, (VersionVector, Clock)> = stored
            .into_iter()
            .filter(|(d, _, _)| after.is_none_or(|a| d > a))
            .map(|(d, v, c)| (d, (v, c)))
            .collect();
        // The first `limit + 1` of either source hold the first `limit + 1`
        // of both together.
        for (id, d) in self
            .docs
            .range::<_, DocId>((lower, Bound::<&DocId>::Unbounded))
            .filter(|(_, d)| d.is_ready())
            .take(limit.saturating_add(1))
        {
            merged.insert(id.clone(), (d.version.clone(), d.clock));
        }
        let more = merged.len() > limit;
        let considered: Vec<_> = merged.into_iter().take(limit).collect();
        let next = more
            .then(|| considered.last().map(|(d, _)| d.clone()))
            .flatten();
        let docs = considered
            .into_iter()
            .filter(|(d, _)| !self.tombstones.contains(d))
            .map(|(d, (v, c))| (d, v, c))
            .collect();
        DocPage { docs, next }
    }

    /// One document's version and last clock: memory's when it holds the
    /// document ready, else `stored` (what the store holds, read by the
    /// host); `None` when neither has it, or it is deleted.
    pub fn doc_summary(
        &self,
        doc: &DocId,
        stored: Option<(VersionVector, Clock)>,
    ) -> Option<(VersionVector, Clock)> {
        if self.tombstones.contains(doc) {
            return None;
        }
        self.docs
            .get(doc)
            .filter(|d| d.is_ready())
            .map(|d| (d.version.clone(), d.clock))
            .or(stored)
    }

    /// How many peers have a connection now.
    pub fn connected_peer_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| !p.channels.is_empty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::DocPage;
    use crate::tests::kit::*;
    use crate::{Clock, DocId, VersionVector};

    fn ids(page: &DocPage) -> Vec<String> {
        page.docs.iter().map(|(d, _, _)| d.to_string()).collect()
    }

    fn stored(id: &str, n: u64) -> (DocId, VersionVector, Clock) {
        (doc(id), vv(&[(9, n)]), Clock(n))
    }

    #[test]
    fn a_page_merges_memory_with_the_store_in_id_order_and_memory_wins() {
        let mut k = Kit::hub();
        for d in ["b", "d"] {
            k.create(&[], d);
        }
        if let Some(d) = k.model.docs.get_mut(&doc("d")) {
            d.version = vv(&[(1, 5)]);
        }
        // The store knows "d" at an older version, and "a", "c", "e" that
        // memory let go of.
        let from_store = vec![
            stored("a", 1),
            stored("c", 2),
            stored("d", 1),
            stored("e", 3),
        ];
        let first = k.model.doc_page(None, 3, from_store.clone());
        assert_eq!(ids(&first), ["a", "b", "c"]);
        assert_eq!(first.next, Some(doc("c")));
        let second = k.model.doc_page(first.next.as_ref(), 3, from_store);
        assert_eq!(ids(&second), ["d", "e"]);
        assert_eq!(second.next, None);
        assert_eq!(second.docs[0].1, vv(&[(1, 5)]), "memory's version wins");
    }

    #[test]
    fn one_document_is_memorys_else_the_stores_and_none_once_deleted() {
        let mut k = Kit::hub();
        k.create(&[], "a");
        if let Some(d) = k.model.docs.get_mut(&doc("a")) {
            d.version = vv(&[(1, 5)]);
        }
        let old = Some((vv(&[(9, 1)]), Clock(1)));
        let a = k.model.doc_summary(&doc("a"), old.clone());
        assert_eq!(a.map(|s| s.0), Some(vv(&[(1, 5)])), "memory's wins");
        assert_eq!(k.model.doc_summary(&doc("b"), old.clone()), old);
        assert_eq!(k.model.doc_summary(&doc("b"), None), None);
        k.model.tombstones.insert(doc("c"));
        assert_eq!(k.model.doc_summary(&doc("c"), old), None);
    }

    #[test]
    fn a_deleted_document_is_left_out_and_the_listing_goes_on_past_it() {
        let mut k = Kit::hub();
        k.create(&[], "a");
        k.model.tombstones.insert(doc("b"));
        let page = k
            .model
            .doc_page(None, 2, vec![stored("b", 1), stored("c", 2)]);
        assert_eq!(ids(&page), ["a"]);
        assert_eq!(page.next, Some(doc("b")), "the page had more behind it");
        let rest = k
            .model
            .doc_page(page.next.as_ref(), 2, vec![stored("c", 2)]);
        assert_eq!(ids(&rest), ["c"]);
        assert_eq!(rest.next, None);
    }
}
