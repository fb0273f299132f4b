//! Who wrote what, as this node vouches for it (see
//! [`docweave_adapters::Authored`]).
//!
//! Before the node imports a client's update it checks that every writer
//! number (Loro peer) with changes new to the document is the sender's:
//! nobody's yet, or first written as by the same identity. Then it keeps a
//! record of each run it took until the store has it: the document's next
//! write carries the records in the same transaction, and they are dropped
//! once that write is durable (a failed write leaves them for the next).
//! Owners come from the store with each load of the document, and from the
//! node's own imports meanwhile; they are forgotten with the replica.

use crate::engine::Run;
use docweave_adapters::{bounded_message, Authored};
use docweave_core::{Author, BatchId, DocId, PeerId, VersionVector};
use std::collections::BTreeMap;

/// Records of one document waiting for a write, past which runs that
/// continue one another (same writer and identity) are folded into one:
/// what a client can make the node hold stays bounded, and so does what
/// one write carries.
const PENDING_MOST: usize = 1024;

/// A record waiting for its write: its number, and what it says.
type Pending = (u64, Authored);

#[derive(Default)]
pub(super) struct Authorship {
    /// Per document the node holds, each writer number's owner.
    owners: BTreeMap<DocId, BTreeMap<u64, PeerId>>,
    /// Per document, the records not yet durable, oldest first.
    pending: BTreeMap<DocId, Vec<Pending>>,
    /// The last record number handed out.
    numbered: u64,
    /// Per write out, its document and the newest record it carries.
    out: BTreeMap<BatchId, (DocId, u64)>,
}

impl Authorship {
    /// The runs in `runs` that neither `held` (the replica's version) nor
    /// an earlier import of the same batch (`seen`, which this extends)
    /// brought: what this import adds, by writer.
    pub fn new_part(runs: &[Run], held: &VersionVector, seen: &mut BTreeMap<u64, u64>) -> Vec<Run> {
        let mut fresh = Vec::new();
        for run in runs {
            let reached = seen
                .get(&run.writer)
                .copied()
                .unwrap_or_else(|| held.get(run.writer));
            if run.end > reached {
                fresh.push(Run {
                    writer: run.writer,
                    start: run.start.max(reached),
                    end: run.end,
                });
                seen.insert(run.writer, run.end);
            }
        }
        fresh
    }

    /// Whether `identity` may write the runs `fresh` of `doc`: every
    /// writer in them is nobody's yet, or its own. `claimed` holds the
    /// writers earlier imports of the same batch took, and this one's are
    /// added to it when it may.
    pub fn check(
        &self,
        doc: &DocId,
        identity: &PeerId,
        fresh: &[Run],
        claimed: &mut BTreeMap<u64, PeerId>,
    ) -> Result<(), String> {
        let owners = self.owners.get(doc);
        for run in fresh {
            let owner = owners
                .and_then(|o| o.get(&run.writer))
                .or_else(|| claimed.get(&run.writer));
            if let Some(owner) = owner {
                if owner != identity {
                    return Err(format!(
                        "writer {} of {doc} belongs to another identity: {identity} may not write as it \
                         (a Loro peer id is its first writer's on each document; use a fresh one)",
                        run.writer
                    ));
                }
            }
        }
        for run in fresh {
            claimed
                .entry(run.writer)
                .or_insert_with(|| identity.clone());
        }
        Ok(())
    }

    /// Keeps the records of runs `author` wrote to `doc` and the node took;
    /// `message` gives the commit message of a run's last change. A run's
    /// version is its last operation (`COUNTER@PEER`): the document as of
    /// this change and all it built on, a constant size however many
    /// writers the document has (the document's whole frontiers would grow
    /// with its concurrent writers, in every record).
    pub fn took(
        &mut self,
        doc: &DocId,
        author: &Author,
        fresh: &[Run],
        message: impl Fn(&Run) -> Option<String>,
    ) {
        if fresh.is_empty() {
            return;
        }
        self.own(doc, &author.identity, fresh);
        let pending = self.pending.entry(doc.clone()).or_default();
        for run in fresh {
            self.numbered += 1;
            pending.push((
                self.numbered,
                Authored {
                    writer: run.writer,
                    start: run.start,
                    end: run.end,
                    identity: author.identity.clone(),
                    at: author.at,
                    version: format!("{}@{}", run.end.saturating_sub(1), run.writer),
                    message: message(run).map(|m| bounded_message(&m)),
                },
            ));
        }
        // Folded at 1,024, 2,048, 4,096...: runs that do not fold (each
        // of a writer of its own) cost a sort only each time they double.
        if pending.len() >= PENDING_MOST && pending.len().is_power_of_two() {
            fold(pending);
        }
    }

    /// `identity` owns the writers of `fresh` on `doc` that nobody owned
    /// (a node without a store keeps no records, only owners).
    pub fn own(&mut self, doc: &DocId, identity: &PeerId, fresh: &[Run]) {
        if fresh.is_empty() {
            return;
        }
        let owners = self.owners.entry(doc.clone()).or_default();
        for run in fresh {
            owners.entry(run.writer).or_insert_with(|| identity.clone());
        }
    }

    /// What the store says of `doc`'s writers: it decides (another server
    /// sharing it may have been first).
    pub fn learn(&mut self, doc: &DocId, writers: &[(u64, PeerId)]) {
        if writers.is_empty() {
            return;
        }
        let owners = self.owners.entry(doc.clone()).or_default();
        for (writer, identity) in writers {
            owners.insert(*writer, identity.clone());
        }
    }

    /// The records `doc`'s write `batch` carries: all not yet durable.
    pub fn for_write(&mut self, doc: &DocId, batch: BatchId) -> Vec<Authored> {
        let Some(pending) = self.pending.get(doc).filter(|p| !p.is_empty()) else {
            return Vec::new();
        };
        let newest = pending.last().map_or(0, |(n, _)| *n);
        self.out.insert(batch, (doc.clone(), newest));
        pending.iter().map(|(_, a)| a.clone()).collect()
    }

    /// `batch` is durable: the records it carried are kept by the store.
    pub fn durable(&mut self, batch: BatchId) {
        let Some((doc, newest)) = self.out.remove(&batch) else {
            return;
        };
        if let Some(pending) = self.pending.get_mut(&doc) {
            pending.retain(|(n, _)| *n > newest);
            if pending.is_empty() {
                self.pending.remove(&doc);
            }
        }
    }

    /// `batch` failed (or was refused): its records wait for the next write.
    pub fn not_written(&mut self, batch: BatchId) {
        self.out.remove(&batch);
    }

    /// Forgets the owners of documents `held` says the node no longer
    /// holds (they come back with the next load); records not yet durable
    /// stay.
    pub fn retain(&mut self, held: impl Fn(&DocId) -> bool) {
        let pending = &self.pending;
        self.owners
            .retain(|doc, _| held(doc) || pending.contains_key(doc));
    }

    /// A deleted document: nothing of it is kept.
    pub fn forget(&mut self, doc: &DocId) {
        self.owners.remove(doc);
        self.pending.remove(doc);
        self.out.retain(|_, (d, _)| d != doc);
    }
}

/// Folds runs that continue one another (same writer and identity, one
/// starting where another ended, wherever they are in the list: writers
/// taking turns fold too) into one, keeping the later one's time, version,
/// message and number; then keeps the list in the order of numbers.
fn fold(pending: &mut Vec<Pending>) {
    pending.sort_by(|(na, a), (nb, b)| {
        (a.writer, a.identity.as_str(), a.start, *na).cmp(&(
            b.writer,
            b.identity.as_str(),
            b.start,
            *nb,
        ))
    });
    let mut folded: Vec<Pending> = Vec::with_capacity(pending.len());
    for (n, a) in pending.drain(..) {
        match folded.last_mut() {
            Some((last_n, last))
                if last.writer == a.writer
                    && last.identity == a.identity
                    && last.end == a.start =>
            {
                last.end = a.end;
                if n > *last_n {
                    last.at = a.at;
                    last.version = a.version;
                    last.message = a.message.or(last.message.take());
                    *last_n = n;
                }
            }
            _ => folded.push((n, a)),
        }
    }
    folded.sort_by_key(|(n, _)| *n);
    *pending = folded;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(writer: u64, start: u64, end: u64) -> Run {
        Run { writer, start, end }
    }

    fn author(who: &str) -> Author {
        Author {
            identity: PeerId::new(who),
            at: 5,
        }
    }

    #[test]
    fn a_writer_first_written_as_by_one_identity_is_refused_to_another() {
        let doc = DocId::new("d");
        let mut a = Authorship::default();
        let mut claimed = BTreeMap::new();
        a.check(&doc, &PeerId::new("alice"), &[run(7, 0, 3)], &mut claimed)
            .unwrap();
        a.took(&doc, &author("alice"), &[run(7, 0, 3)], |_| None);
        let mut claimed = BTreeMap::new();
        let refused = a
            .check(&doc, &PeerId::new("bob"), &[run(7, 3, 4)], &mut claimed)
            .unwrap_err();
        assert!(refused.contains("writer 7"), "{refused}");
        assert!(a
            .check(&doc, &PeerId::new("alice"), &[run(7, 3, 4)], &mut claimed)
            .is_ok());
        // Another document's writer 7 is nobody's yet.
        assert!(a
            .check(
                &DocId::new("e"),
                &PeerId::new("bob"),
                &[run(7, 0, 1)],
                &mut BTreeMap::new()
            )
            .is_ok());
    }

    #[test]
    fn two_imports_of_one_batch_cannot_both_claim_a_new_writer() {
        let doc = DocId::new("d");
        let a = Authorship::default();
        let mut claimed = BTreeMap::new();
        a.check(&doc, &PeerId::new("alice"), &[run(9, 0, 1)], &mut claimed)
            .unwrap();
        assert!(a
            .check(&doc, &PeerId::new("bob"), &[run(9, 1, 2)], &mut claimed)
            .is_err());
    }

    #[test]
    fn the_store_decides_who_owns_a_writer() {
        let doc = DocId::new("d");
        let mut a = Authorship::default();
        a.took(&doc, &author("alice"), &[run(3, 0, 1)], |_| None);
        a.learn(&doc, &[(3, PeerId::new("bob"))]);
        let mut claimed = BTreeMap::new();
        assert!(a
            .check(&doc, &PeerId::new("alice"), &[run(3, 1, 2)], &mut claimed)
            .is_err());
    }

    #[test]
    fn only_what_the_replica_and_earlier_imports_lack_is_new() {
        let held = VersionVector::from_entries([(1, 5)]);
        let mut seen = BTreeMap::new();
        let first = Authorship::new_part(&[run(1, 0, 8), run(2, 0, 2)], &held, &mut seen);
        assert_eq!(first, vec![run(1, 5, 8), run(2, 0, 2)]);
        let again = Authorship::new_part(&[run(1, 0, 10)], &held, &mut seen);
        assert_eq!(again, vec![run(1, 8, 10)]);
        assert!(Authorship::new_part(&[run(2, 0, 2)], &held, &mut seen).is_empty());
    }

    #[test]
    fn records_stay_until_the_write_carrying_them_is_durable() {
        let doc = DocId::new("d");
        let mut a = Authorship::default();
        a.took(&doc, &author("alice"), &[run(1, 0, 1)], |_| None);
        assert_eq!(a.for_write(&doc, BatchId(1)).len(), 1);
        a.not_written(BatchId(1));
        a.took(&doc, &author("alice"), &[run(1, 1, 2)], |_| None);
        assert_eq!(a.for_write(&doc, BatchId(2)).len(), 2);
        a.took(&doc, &author("alice"), &[run(1, 2, 3)], |_| None);
        a.durable(BatchId(2));
        let left = a.for_write(&doc, BatchId(3));
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].start, 2);
        a.durable(BatchId(3));
        assert!(a.for_write(&doc, BatchId(4)).is_empty());
    }

    #[test]
    fn writers_taking_turns_fold_into_one_run_each() {
        let doc = DocId::new("d");
        let mut a = Authorship::default();
        for i in 0..(PENDING_MOST as u64 + 10) {
            a.took(&doc, &author("alice"), &[run(1, i, i + 1)], |_| None);
            a.took(&doc, &author("bob"), &[run(2, i, i + 1)], |_| None);
        }
        let pending = a.for_write(&doc, BatchId(1));
        assert!(pending.len() < 64, "{}", pending.len());
        let ops: u64 = pending.iter().map(|r| r.end - r.start).sum();
        assert_eq!(
            ops,
            2 * (PENDING_MOST as u64 + 10),
            "every operation still counted"
        );
    }

    #[test]
    fn many_runs_that_continue_one_another_fold_into_one() {
        let doc = DocId::new("d");
        let mut a = Authorship::default();
        for i in 0..(PENDING_MOST as u64 + 10) {
            let message = move |_: &Run| (i == 3).then(|| "named".to_string());
            a.took(&doc, &author("alice"), &[run(1, i, i + 1)], message);
        }
        let pending = a.for_write(&doc, BatchId(1));
        assert!(pending.len() < PENDING_MOST, "{}", pending.len());
        assert_eq!(pending[0].start, 0);
        assert_eq!(pending[0].message.as_deref(), Some("named"));
        assert_eq!(pending.last().unwrap().end, PENDING_MOST as u64 + 10);
    }
}
