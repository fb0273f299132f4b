//! One in-memory store shared by several nodes of one process: what a
//! shared database (PostgreSQL) is to several servers, without one.
//!
//! Each [`SharedMemoryStore::handle`] is one process's connection to it.
//! Like [`super::PostgresStore`] it numbers every deletion in the change feed
//! ([`Store::deletions_since`]), announces a write to every other watching
//! handle ([`Store::watch`]) and carries what one handle publishes to the
//! others. The simulator runs two hubs on one of these; an embedder may run
//! several nodes over one.

use super::{Announce, Announcement, Append, HistoryEntry, Loaded, MemoryStore, Store, StoreError};
use docweave_core::{Clock, DocId, Filter, StateRecord, StoredDoc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What every handle shares.
#[derive(Default)]
struct Shared {
    store: MemoryStore,
    /// Each durable deletion under the clock it took.
    deletions: BTreeMap<Clock, DocId>,
    /// Who listens, by handle: one entry per handle, the last `watch` wins.
    watchers: BTreeMap<u64, Announce>,
    handles: u64,
}

/// A handle on an in-memory store that several nodes share.
#[derive(Clone)]
pub struct SharedMemoryStore {
    shared: Arc<Mutex<Shared>>,
    me: u64,
}

impl std::fmt::Debug for SharedMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemoryStore")
            .field("handle", &self.me)
            .finish()
    }
}

impl Default for SharedMemoryStore {
    fn default() -> Self {
        Self::new(MemoryStore::new())
    }
}

impl SharedMemoryStore {
    /// A shared store holding what `store` holds; this is its first handle.
    pub fn new(store: MemoryStore) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                store,
                handles: 1,
                ..Shared::default()
            })),
            me: 0,
        }
    }

    /// Another process's handle on the same store: its writes are announced
    /// to this one and this one's to it.
    pub fn handle(&self) -> Self {
        let mut s = self.lock();
        let me = s.handles;
        s.handles += 1;
        Self {
            shared: self.shared.clone(),
            me,
        }
    }

    /// A copy of everything stored now (documents and records).
    pub fn contents(&self) -> MemoryStore {
        self.lock().store.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A handle that panicked while holding the lock left the store as
        // its last complete operation wrote it: every operation below
        // changes it only once it cannot fail.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every other watching handle; called with the lock released, so
    /// a watcher may use the store.
    fn announce(&self, what: Announcement) {
        let others: Vec<Announce> = self
            .lock()
            .watchers
            .iter()
            .filter(|(h, _)| **h != self.me)
            .map(|(_, a)| a.clone())
            .collect();
        for a in others {
            a(what.clone());
        }
    }
}

impl Store for SharedMemoryStore {
    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        let clocks = self.lock().store.append(changes)?;
        self.announce(Announcement::Written);
        Ok(clocks)
    }

    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        self.lock().store.load(doc)
    }

    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        self.lock().store.compact(doc, snapshot, up_to)
    }

    fn forget_history(&mut self, doc: &DocId, below: u64) -> Result<u64, StoreError> {
        self.lock().store.forget_history(doc, below)
    }

    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.lock().store.history(doc, before, limit)
    }

    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.lock().store.changes_since(clock, filter, limit)
    }

    fn clock(&mut self) -> Result<Clock, StoreError> {
        self.lock().store.clock()
    }

    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        let news = {
            let mut s = self.lock();
            // The tombstone and the feed's news of it are one write, as in
            // PostgreSQL: only the first server to save it makes news.
            let news = match record {
                StateRecord::Tombstone(doc) if !s.store.tombstoned(doc) => {
                    let clock = s.store.take_clock();
                    s.deletions.insert(clock, doc.clone());
                    true
                }
                _ => false,
            };
            s.store.save(record)?;
            news
        };
        if news {
            self.announce(Announcement::Written);
        }
        Ok(())
    }

    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.lock().store.records()
    }

    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        self.lock().store.purge(doc)
    }

    fn deletions_since(
        &mut self,
        clock: Clock,
        up_to: Option<Clock>,
    ) -> Result<Vec<(DocId, Clock)>, StoreError> {
        let s = self.lock();
        let from = Clock(clock.0.saturating_add(1));
        let to = up_to.unwrap_or(Clock(u64::MAX));
        if from > to {
            return Ok(Vec::new());
        }
        Ok(s.deletions
            .range(from..=to)
            .map(|(c, d)| (d.clone(), *c))
            .collect())
    }

    fn watch(&mut self, announce: Announce) -> Result<bool, StoreError> {
        self.lock().watchers.insert(self.me, announce);
        Ok(true)
    }

    fn publish(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.announce(Announcement::Published(bytes.to_vec()));
        Ok(())
    }
}
