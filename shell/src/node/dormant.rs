//! Replicas asleep, kept as their bytes (`DocEngine::export_asleep`: for
//! a small Loro document its updates) — those idle for a while, and those
//! evicted under a memory budget: an idle document then costs about its
//! own size (a 500-byte text, 536 bytes of updates and about 1 KB in all,
//! S12), not the 12 KB it takes awake, and comes back by importing those
//! bytes, without reading the store. Only clean replicas sleep (the store holds all of them, and no
//! edit through a handle waits for the node to take it), so the bytes are
//! never ahead of the store; the least recently put go first when the
//! budget (or, without one, the count) is short, before any replica in memory.

use docweave_core::{Clock, DocId};
use std::collections::BTreeMap;

/// What keeping one costs beyond its bytes (its id, the map entries).
pub(super) const OVERHEAD: usize = 200;

struct Sleeping {
    bytes: Vec<u8>,
    /// The store clock the replica held everything up to.
    loaded_to: Option<Clock>,
    put: u64,
}

/// The sleeping replicas, with their bytes counted.
#[derive(Default)]
pub(super) struct Dormant {
    docs: BTreeMap<DocId, Sleeping>,
    /// Oldest first.
    by_put: BTreeMap<u64, DocId>,
    puts: u64,
    bytes: usize,
}

impl Dormant {
    /// How many sleep.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// What they cost, as counted.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Puts `doc` to sleep as `bytes`.
    pub fn put(&mut self, doc: DocId, mut bytes: Vec<u8>, loaded_to: Option<Clock>) {
        // An export grows its buffer by doubling: what is kept is what is counted.
        bytes.shrink_to_fit();
        self.remove(&doc);
        self.puts += 1;
        self.bytes += bytes.len() + OVERHEAD;
        self.by_put.insert(self.puts, doc.clone());
        self.docs.insert(
            doc,
            Sleeping {
                bytes,
                loaded_to,
                put: self.puts,
            },
        );
    }

    /// The store clock a sleeping `doc` held everything up to.
    pub fn loaded_to(&self, doc: &DocId) -> Option<Clock> {
        self.docs.get(doc).and_then(|s| s.loaded_to)
    }

    /// Wakes `doc`: its bytes and the clock it was loaded to.
    /// Whether `doc` sleeps here.
    pub fn holds(&self, doc: &DocId) -> bool {
        self.docs.contains_key(doc)
    }

    pub fn take(&mut self, doc: &DocId) -> Option<(Vec<u8>, Option<Clock>)> {
        let s = self.docs.remove(doc)?;
        self.by_put.remove(&s.put);
        self.bytes -= s.bytes.len() + OVERHEAD;
        Some((s.bytes, s.loaded_to))
    }

    /// Forgets `doc` (deleted, or its replica broke).
    pub fn remove(&mut self, doc: &DocId) {
        self.take(doc);
    }

    /// Drops the least recently put until at most `most` sleep.
    pub fn keep_at_most(&mut self, most: usize) {
        while self.docs.len() > most {
            let Some((_, doc)) = self.by_put.pop_first() else {
                break;
            };
            if let Some(s) = self.docs.remove(&doc) {
                self.bytes -= s.bytes.len() + OVERHEAD;
            }
        }
    }

    /// Drops the least recently put until they cost at most `budget`.
    pub fn trim(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some((_, doc)) = self.by_put.pop_first() else {
                break;
            };
            if let Some(s) = self.docs.remove(&doc) {
                self.bytes -= s.bytes.len() + OVERHEAD;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_and_the_count_follows() {
        let mut d = Dormant::default();
        for i in 0..10 {
            d.put(DocId::new(&format!("d{i}")), vec![0; 100], Some(Clock(i)));
        }
        assert_eq!(d.bytes(), 10 * (100 + OVERHEAD));
        d.trim(3 * (100 + OVERHEAD));
        assert_eq!(d.len(), 3);
        assert!(d.take(&DocId::new("d6")).is_none(), "an old one stayed");
        assert_eq!(
            d.take(&DocId::new("d9")),
            Some((vec![0; 100], Some(Clock(9))))
        );
        assert_eq!(d.bytes(), 2 * (100 + OVERHEAD));
        d.put(DocId::new("d8"), vec![1; 10], None);
        assert_eq!(d.len(), 2, "put again replaces");
        assert_eq!(d.bytes(), (100 + OVERHEAD) + (10 + OVERHEAD));
    }
}
