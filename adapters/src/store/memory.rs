//! An in-memory store, for tests and for nodes that keep nothing on disk.

use super::{record_key, Append, Authored, HistoryEntry, Loaded, Store, StoreError};
use docweave_core::{Clock, DocId, DocMeta, Filter, PeerId, StateRecord, StoredDoc, VersionVector};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
struct Doc {
    meta: DocMeta,
    version: VersionVector,
    clock: Clock,
    snapshot: Option<Vec<u8>>,
    changes: BTreeMap<Clock, Vec<u8>>,
    /// Its history, by place in the order of writes.
    authored: BTreeMap<u64, Authored>,
    /// The runs in it, by writer and first counter: their places.
    runs: BTreeMap<(u64, u64), u64>,
    /// Each writer number and the identity that first wrote as it.
    writers: BTreeMap<u64, PeerId>,
}

/// A store that lives as long as the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    clock: Clock,
    docs: BTreeMap<DocId, Doc>,
    by_clock: BTreeMap<Clock, DocId>,
    records: BTreeMap<String, StateRecord>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands out the next clock without a change: what a deletion in a
    /// shared store's feed is numbered with ([`super::SharedMemoryStore`]).
    pub(crate) fn take_clock(&mut self) -> Clock {
        self.clock = Clock(self.clock.0 + 1);
        self.clock
    }

    pub(crate) fn tombstoned(&self, doc: &DocId) -> bool {
        self.records
            .contains_key(&record_key(&StateRecord::Tombstone(doc.clone())))
    }
}

impl Store for MemoryStore {
    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        // All or nothing: check first, then write.
        if let Some(a) = changes.iter().find(|a| self.tombstoned(&a.doc)) {
            return Err(StoreError::Tombstoned(a.doc.clone()));
        }
        let mut clocks = Vec::with_capacity(changes.len());
        for a in changes {
            self.clock = Clock(self.clock.0 + 1);
            let d = self.docs.entry(a.doc.clone()).or_insert_with(|| Doc {
                meta: a.meta.clone(),
                ..Doc::default()
            });
            if d.clock.0 > 0 {
                self.by_clock.remove(&d.clock);
            }
            d.version = d.version.merge(&a.version);
            d.clock = self.clock;
            d.changes.insert(self.clock, a.data.clone());
            for (i, authored) in a.authors.iter().enumerate() {
                // Written again after an answer that was lost: kept once;
                // grown since (the node folded runs into it): widened.
                let key = (authored.writer, authored.start);
                match d.runs.get(&key).and_then(|seq| d.authored.get_mut(seq)) {
                    Some(kept) if authored.end > kept.end => {
                        kept.end = authored.end;
                        kept.at = authored.at;
                        kept.version = authored.version.clone();
                        kept.message = authored.message.clone().or(kept.message.take());
                    }
                    Some(_) => {}
                    None => {
                        let seq = super::authorship::authored_seq(self.clock.0, i);
                        d.runs.insert(key, seq);
                        d.authored.insert(seq, authored.clone());
                    }
                }
                d.writers
                    .entry(authored.writer)
                    .or_insert_with(|| authored.identity.clone());
            }
            self.by_clock.insert(self.clock, a.doc.clone());
            clocks.push(self.clock);
        }
        Ok(clocks)
    }

    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        Ok(self.docs.get(doc).map(|d| Loaded {
            meta: d.meta.clone(),
            version: d.version.clone(),
            clock: d.clock,
            snapshot: d.snapshot.clone(),
            changes: d.changes.values().cloned().collect(),
            writers: d.writers.iter().map(|(w, i)| (*w, i.clone())).collect(),
        }))
    }

    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let Some(d) = self.docs.get(doc) else {
            return Ok(Vec::new());
        };
        Ok(d.authored
            .range(..before.unwrap_or(u64::MAX))
            .rev()
            .take(limit)
            .map(|(seq, a)| HistoryEntry {
                seq: *seq,
                authored: a.clone(),
            })
            .collect())
    }

    fn forget_history(&mut self, doc: &DocId, below: u64) -> Result<u64, StoreError> {
        let Some(d) = self.docs.get_mut(doc) else {
            return Ok(0);
        };
        let kept = d.authored.split_off(&below);
        let gone = std::mem::replace(&mut d.authored, kept);
        for a in gone.values() {
            d.runs.remove(&(a.writer, a.start));
        }
        Ok(gone.len() as u64)
    }

    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        if let Some(d) = self.docs.get_mut(doc) {
            d.changes.retain(|c, _| *c > up_to);
            d.snapshot = Some(snapshot.to_vec());
        }
        Ok(())
    }

    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        Ok(self
            .by_clock
            .range(Clock(clock.0.saturating_add(1))..)
            .filter_map(|(c, id)| {
                let d = self.docs.get(id)?;
                filter.matches(id, &d.meta).then(|| StoredDoc {
                    doc: id.clone(),
                    meta: d.meta.clone(),
                    version: d.version.clone(),
                    clock: *c,
                })
            })
            .take(limit)
            .collect())
    }

    fn clock(&mut self) -> Result<Clock, StoreError> {
        Ok(self.clock)
    }

    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        match record {
            StateRecord::ListenerRemoved(_) => {
                self.records.remove(&record_key(record));
            }
            _ => {
                self.records.insert(record_key(record), record.clone());
            }
        }
        Ok(())
    }

    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        Ok(self.records.values().cloned().collect())
    }

    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        if let Some(d) = self.docs.remove(doc) {
            self.by_clock.remove(&d.clock);
        }
        Ok(())
    }
}
