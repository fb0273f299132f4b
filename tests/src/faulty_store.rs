//! A store that fails on purpose: real [`MemoryStore`] code underneath (or
//! a [`SharedMemoryStore`] handle, for nodes sharing one store), with
//! failed appends, loads, feed reads, saves and purges drawn from a seeded
//! generator. What it did before a failure stays done: a crash of its node
//! loses only the jobs not yet run (the simulator drops those).

use docweave_adapters::{
    Announce, Append, Loaded, MemoryStore, SharedMemoryStore, Store, StoreError,
};
use docweave_core::{Clock, DocId, Filter, StateRecord, StoredDoc};

/// What a [`FaultyStore`] keeps its data in.
#[derive(Debug, Clone)]
pub enum Backing {
    /// A store of its own.
    Own(MemoryStore),
    /// A handle on a store other nodes share.
    Shared(SharedMemoryStore),
}

impl Default for Backing {
    fn default() -> Self {
        Backing::Own(MemoryStore::new())
    }
}

impl Backing {
    fn store(&mut self) -> &mut dyn Store {
        match self {
            Backing::Own(s) => s,
            Backing::Shared(s) => s,
        }
    }

    /// A copy of what is stored now.
    pub fn contents(&self) -> MemoryStore {
        match self {
            Backing::Own(s) => s.clone(),
            Backing::Shared(s) => s.contents(),
        }
    }
}

impl Store for Backing {
    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        self.store().append(changes)
    }
    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        self.store().load(doc)
    }
    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        self.store().compact(doc, snapshot, up_to)
    }
    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<docweave_adapters::HistoryEntry>, StoreError> {
        self.store().history(doc, before, limit)
    }
    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.store().changes_since(clock, filter, limit)
    }
    fn clock(&mut self) -> Result<Clock, StoreError> {
        self.store().clock()
    }
    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        self.store().save(record)
    }
    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.store().records()
    }
    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        self.store().purge(doc)
    }
    fn deletions_since(
        &mut self,
        clock: Clock,
        up_to: Option<Clock>,
    ) -> Result<Vec<(DocId, Clock)>, StoreError> {
        self.store().deletions_since(clock, up_to)
    }
    fn watch(&mut self, announce: Announce) -> Result<bool, StoreError> {
        self.store().watch(announce)
    }
    fn publish(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.store().publish(bytes)
    }
}

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
    /// Crashes after which the store has lost its last write, although it
    /// said it was durable (a disk that lied). Not docweave's fault: the
    /// simulator reports what it breaks apart from docweave's failures.
    pub amnesia: u32,
}

/// A [`MemoryStore`] with injected failures.
#[derive(Debug, Clone, Default)]
pub struct FaultyStore {
    /// The real store underneath.
    pub inner: Backing,
    /// How often each operation fails.
    pub faults: StoreFaults,
    rng: crate::rng::Rng,
    /// Failures injected so far.
    pub injected: u64,
    /// The store before its last append, and what that append wrote: what
    /// an amnesia goes back to, and what it loses.
    before_last: Option<(Backing, Loss)>,
}

/// What a store lost in an amnesia: its last append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The documents it wrote.
    pub docs: Vec<DocId>,
    /// The first and last clock it was given: the store gives these numbers
    /// again to other changes, which a peer that saw the lost ones skips.
    pub clocks: (Clock, Clock),
}

impl FaultyStore {
    /// A store over `inner` failing at `faults` rates, drawn from `seed`.
    /// A shared store never forgets (no amnesia): what it lost would be
    /// other nodes' writes too, and the simulator could not tell whose.
    pub fn new(inner: Backing, mut faults: StoreFaults, seed: u64) -> Self {
        if matches!(inner, Backing::Shared(_)) {
            faults.amnesia = 0;
        }
        Self {
            inner,
            faults,
            rng: crate::rng::Rng::new(seed ^ 0x5151_7eed),
            injected: 0,
            before_last: None,
        }
    }

    /// At a crash: perhaps (at the `amnesia` rate) the last append is lost;
    /// what it wrote, when it is.
    pub fn crash(&mut self) -> Option<Loss> {
        if !self.rng.chance(self.faults.amnesia) {
            return None;
        }
        let (before, loss) = self.before_last.take()?;
        self.inner = before;
        self.injected += 1;
        Some(loss)
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
        let before = (self.faults.amnesia > 0).then(|| Backing::Own(self.inner.contents()));
        let clocks = self.inner.append(changes)?;
        if let Some(before) = before {
            let docs = changes.iter().map(|c| c.doc.clone()).collect();
            let first = clocks.iter().min().copied().unwrap_or(Clock(0));
            let last = clocks.iter().max().copied().unwrap_or(Clock(0));
            let loss = Loss {
                docs,
                clocks: (first, last),
            };
            self.before_last = Some((before, loss));
        }
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
        self.before_last = None;
        self.inner.compact(doc, snapshot, up_to)
    }
    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<docweave_adapters::HistoryEntry>, StoreError> {
        self.inner.history(doc, before, limit)
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
        // An amnesia loses only an append that was the last write.
        self.before_last = None;
        self.inner.save(record)
    }

    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.fails(self.faults.startup, "records")?;
        self.inner.records()
    }

    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        self.fails(self.faults.purge, "purge")?;
        self.before_last = None;
        self.inner.purge(doc)
    }

    fn deletions_since(
        &mut self,
        clock: Clock,
        up_to: Option<Clock>,
    ) -> Result<Vec<(DocId, Clock)>, StoreError> {
        // Part of a feed read, which fails (or not) as a whole above.
        self.inner.deletions_since(clock, up_to)
    }

    fn watch(&mut self, announce: Announce) -> Result<bool, StoreError> {
        self.inner.watch(announce)
    }

    fn publish(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.publish(bytes)
    }
}
