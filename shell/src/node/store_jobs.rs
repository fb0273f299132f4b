//! Store jobs: what the node asks of its store, and the answers. A driver
//! runs each job with [`run_job`] (on a thread, inline in a simulation, or
//! in a host's own code) and hands the answer back: in job order, except
//! jobs marked [`StoreJob::aside`], which may run beside the others.

use docweave_adapters::{Append, Loaded, Store, StoreError};
use docweave_core::{Clock, DocId, Filter, ReadRange, StateRecord, StoredDoc};

/// One job for the store, named by an id the answer repeats (only the
/// node makes them; new fields may come).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreJob {
    /// Repeated in the answer.
    pub id: u64,
    /// What to do.
    pub op: StoreOp,
    /// A read that may run beside the other jobs (on another connection
    /// to the same store) and be answered out of order: no write it could
    /// miss is out. Drivers that run every job in order are right too.
    pub aside: bool,
}

/// What a store job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Read the node's state at start: the clock, every document, the records.
    Restore,
    /// Read the node's state at start, but only the documents its cursors
    /// need in memory (above [`docweave_core::metadata_kept_from`]): the
    /// node reads the others when asked for them.
    RestoreRecent,
    /// Read the store's index of documents ([`Store::read_index`]).
    ReadIndex {
        /// Which documents.
        range: ReadRange,
        /// Only those it matches.
        filter: Filter,
        /// At most this many.
        limit: usize,
    },
    /// Append changes in one transaction (each alone if the batch fails).
    Append(Vec<Append>),
    /// Read everything stored of a document.
    Load(DocId),
    /// Read what is stored of a document after a clock (the replica holds
    /// the rest).
    LoadSince(DocId, Clock),
    /// Documents changed after a clock (the change feed), at most `limit`.
    Changes {
        /// Read after this clock.
        since: Clock,
        /// At most this many documents.
        limit: usize,
    },
    /// Persist node state.
    Save(StateRecord),
    /// Read the record saved under a key.
    Record(String),
    /// Drop a deleted document's data.
    Purge(DocId),
    /// Hand bytes (presence) to the other processes sharing the store.
    Publish(Vec<u8>),
}

/// Why one store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// For a person.
    pub reason: String,
    /// The document was deleted: its tombstone refuses data.
    pub tombstoned: bool,
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        Self {
            tombstoned: matches!(e, StoreError::Tombstoned(_)),
            reason: e.to_string(),
        }
    }
}

/// The answer to a [`StoreJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAnswer {
    /// The job's id.
    pub id: u64,
    /// How it went.
    pub result: StoreResult,
}

/// What a job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreResult {
    /// [`StoreOp::Restore`] or [`StoreOp::RestoreRecent`].
    Restored {
        /// The highest clock handed out.
        clock: Clock,
        /// Every document whose last clock is above it is in `docs` (0:
        /// every document is).
        floor: Clock,
        /// The documents above `floor` with their version and last clock.
        docs: Vec<StoredDoc>,
        /// Persisted node state.
        records: Vec<StateRecord>,
    },
    /// [`StoreOp::Append`]: one result per change, in order.
    Appended(Vec<Result<Clock, JobError>>),
    /// [`StoreOp::Load`]: `None` when the store has no such document.
    Loaded(Option<Loaded>),
    /// [`StoreOp::ReadIndex`]: the documents, in the range's order.
    Index(Vec<StoredDoc>),
    /// [`StoreOp::Changes`].
    Changes {
        /// Documents changed, in clock order.
        docs: Vec<StoredDoc>,
        /// Documents other processes deleted in the span read, with the
        /// clock of the deletion, in clock order.
        deletions: Vec<(DocId, Clock)>,
    },
    /// [`StoreOp::Save`] or [`StoreOp::Purge`] is durable, or
    /// [`StoreOp::Publish`] is sent.
    Done,
    /// [`StoreOp::Record`].
    Record(Option<StateRecord>),
    /// The job failed as a whole.
    Failed(JobError),
}

impl StoreResult {
    /// Why the store failed this job, if it did (a write refused for a
    /// deleted document is an answer, not a failure of the store).
    pub fn store_failure(&self) -> Option<&str> {
        match self {
            StoreResult::Failed(e) if !e.tombstoned => Some(&e.reason),
            StoreResult::Appended(results) => results.iter().find_map(|r| match r {
                Err(e) if !e.tombstoned => Some(e.reason.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }
}

/// Runs one job against a store. Blocking: drivers call it off their loop.
pub fn run_job(store: &mut dyn Store, op: StoreOp) -> StoreResult {
    let failed = |e: StoreError| StoreResult::Failed(e.into());
    match op {
        StoreOp::Restore => {
            let mut read = || -> Result<StoreResult, StoreError> {
                Ok(StoreResult::Restored {
                    clock: store.clock()?,
                    floor: Clock(0),
                    docs: store.changes_since(Clock(0), &Filter::all(), usize::MAX)?,
                    records: store.records()?,
                })
            };
            read().unwrap_or_else(failed)
        }
        StoreOp::RestoreRecent => {
            let mut read = || -> Result<StoreResult, StoreError> {
                // The clock first: a document written after it is read
                // with a clock above the floor, which memory must hold.
                let clock = store.clock()?;
                let records = store.records()?;
                let floor = docweave_core::metadata_kept_from(clock, &records);
                Ok(StoreResult::Restored {
                    clock,
                    floor,
                    docs: store.changes_since(floor, &Filter::all(), usize::MAX)?,
                    records,
                })
            };
            read().unwrap_or_else(failed)
        }
        StoreOp::ReadIndex {
            range,
            filter,
            limit,
        } => store
            .read_index(&range, &filter, limit)
            .map_or_else(failed, StoreResult::Index),
        StoreOp::Append(changes) => match store.append(&changes) {
            Ok(clocks) => StoreResult::Appended(clocks.into_iter().map(Ok).collect()),
            Err(e) if changes.len() == 1 => StoreResult::Appended(vec![Err(e.into())]),
            // One bad change must not sink the others: each alone.
            Err(_) => StoreResult::Appended(
                changes
                    .iter()
                    .map(|a| {
                        store
                            .append(std::slice::from_ref(a))
                            .map_err(JobError::from)
                            .and_then(|c| {
                                c.first().copied().ok_or_else(|| JobError {
                                    reason: "the store assigned no clock".into(),
                                    tombstoned: false,
                                })
                            })
                    })
                    .collect(),
            ),
        },
        StoreOp::Load(doc) => store.load(&doc).map_or_else(failed, StoreResult::Loaded),
        StoreOp::LoadSince(doc, after) => store
            .load_since(&doc, after)
            .map_or_else(failed, StoreResult::Loaded),
        StoreOp::Changes { since, limit } => {
            let mut read = || -> Result<StoreResult, StoreError> {
                // Every clock up to the horizon is committed before the
                // documents are read (stores make clocks visible in order),
                // so deletions read later up to the horizon, or to the last
                // document read, leave no gap behind the position.
                let horizon = store.clock()?;
                // Nothing was written past `since` (every change and every
                // deletion takes a clock up to the horizon), so both reads
                // would find nothing: an idle server polls its feed five
                // times a second, and each poll is one query instead of three.
                if horizon <= since {
                    return Ok(StoreResult::Changes {
                        docs: Vec::new(),
                        deletions: Vec::new(),
                    });
                }
                let docs = store.changes_since(since, &Filter::all(), limit)?;
                let last = docs.last().map(|d| d.clock);
                let up_to = if docs.len() >= limit {
                    last.unwrap_or(since)
                } else {
                    last.unwrap_or(since).max(horizon)
                };
                let deletions = store.deletions_since(since, Some(up_to))?;
                Ok(StoreResult::Changes { docs, deletions })
            };
            read().unwrap_or_else(failed)
        }
        StoreOp::Save(record) => store
            .save(&record)
            .map_or_else(failed, |_| StoreResult::Done),
        StoreOp::Purge(doc) => store.purge(&doc).map_or_else(failed, |_| StoreResult::Done),
        StoreOp::Record(key) => store.record(&key).map_or_else(failed, StoreResult::Record),
        StoreOp::Publish(bytes) => store
            .publish(&bytes)
            .map_or_else(failed, |_| StoreResult::Done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docweave_adapters::MemoryStore;
    use docweave_core::{DocMeta, VersionVector};

    fn changed_docs(store: &mut MemoryStore, since: u64) -> Vec<(String, u64)> {
        match run_job(
            store,
            StoreOp::Changes {
                since: Clock(since),
                limit: 10,
            },
        ) {
            StoreResult::Changes { docs, deletions } => {
                assert!(deletions.is_empty());
                docs.iter()
                    .map(|d| (d.doc.as_str().to_string(), d.clock.0))
                    .collect()
            }
            other => panic!("not changes: {other:?}"),
        }
    }

    #[test]
    fn a_feed_read_finds_every_change_past_its_position_and_none_at_the_stores_clock() {
        let mut store = MemoryStore::new();
        for (doc, counter) in [("a", 1), ("b", 1)] {
            store
                .append(&[Append {
                    doc: DocId::new(doc),
                    meta: DocMeta::default(),
                    data: vec![1],
                    version: VersionVector::from_entries([(7, counter)]),
                    authors: Vec::new(),
                }])
                .unwrap();
        }
        let horizon = store.clock().unwrap().0;
        assert_eq!(horizon, 2);
        assert_eq!(
            changed_docs(&mut store, 0),
            vec![("a".to_string(), 1), ("b".to_string(), 2)]
        );
        assert_eq!(changed_docs(&mut store, 1), vec![("b".to_string(), 2)]);
        // At the store's clock (an idle server's every poll): nothing.
        assert!(changed_docs(&mut store, horizon).is_empty());
    }
}
