//! A store that fails on purpose: real [`MemoryStore`] code underneath, with
//! failed appends, loads, feed reads, saves and purges drawn from a seeded
//! generator. What it did before a failure stays done: a crash of its node
//! loses only the jobs not yet run (the simulator drops those).

use docweave_adapters::{Append, Loaded, MemoryStore, Store, StoreError};
use docweave_core::{Clock, DocId, Filter, StateRecord, StoredDoc};

/// Failure rates, per mille, per operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFaults {
    /// Appends that fail (the whole batch).
    pub append: u32,
    /// Loads that fail.
    pub load: u32,
    /// Feed reads that fail.
    pub feed: u32,
    /// Saves of node state that fail.
    pub save: u32,
    /// Purges that fail.
    pub purge: u32,
    /// Appends that are committed and then reported failed (the answer
    /// was lost): the node writes them again, and a store must take that.
    pub append_after_commit: u32,
    /// Compactions that fail.
    pub compact: u32,
    /// Start-up reads that fail (the clock, the records, the whole feed).
    pub startup: u32,
}

/// A [`MemoryStore`] with injected failures.
#[derive(Debug, Clone, Default)]
pub struct FaultyStore {
    /// The real store underneath.
    pub inner: MemoryStore,
    /// How often each operation fails.
    pub faults: StoreFaults,
    rng: crate::rng::Rng,
    /// Failures injected so far.
    pub injected: u64,
}

impl FaultyStore {
    /// A store over `inner` failing at `faults` rates, drawn from `seed`.
    pub fn new(inner: MemoryStore, faults: StoreFaults, seed: u64) -> Self {
        Self {
            inner,
            faults,
            rng: crate::rng::Rng::new(seed ^ 0x5151_7eed),
            injected: 0,
        }
    }

    fn fails(&mut self, per_mille: u32, what: &str) -> Result<(), StoreError> {
        if self.rng.chance(per_mille) {
            self.injected += 1;
            return Err(StoreError::Unavailable(format!("injected {what} failure")));
        }
        Ok(())
    }
}

impl Store for FaultyStore {
    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        self.fails(self.faults.append, "append")?;
        let clocks = self.inner.append(changes)?;
        self.fails(
            self.faults.append_after_commit,
            "answer to a committed append",
        )?;
        Ok(clocks)
    }

    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        self.fails(self.faults.load, "load")?;
        self.inner.load(doc)
    }

    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        self.fails(self.faults.compact, "compact")?;
        self.inner.compact(doc, snapshot, up_to)
    }

    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        // The start-up read (from clock 0, everything) is not a feed poll.
        if limit != usize::MAX {
            self.fails(self.faults.feed, "feed")?;
        } else {
            self.fails(self.faults.startup, "start-up read")?;
        }
        self.inner.changes_since(clock, filter, limit)
    }

    fn clock(&mut self) -> Result<Clock, StoreError> {
        self.fails(self.faults.startup, "clock")?;
        self.inner.clock()
    }

    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        self.fails(self.faults.save, "save")?;
        self.inner.save(record)
    }

    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.fails(self.faults.startup, "records")?;
        self.inner.records()
    }

    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        self.fails(self.faults.purge, "purge")?;
        self.inner.purge(doc)
    }
}
