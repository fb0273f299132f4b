//! Exports kept across flushes, so readers that ask one after another for
//! a document nobody changed meanwhile share one export: a hundred readers
//! each asking for forty documents of 870 KB cost the node four thousand
//! exports (seconds in which every other client waited), now forty.
//!
//! Past its bounds an export is still found while anyone holds it (a
//! reader's queue, a frame being written): a reader asking for it then
//! shares those bytes instead of a new export of its own, so readers who
//! do not read hold one copy between them, however many documents they ask
//! for. Such an export costs this cache only its key.
//!
//! Lookups go by document (an index), never through the whole cache: a
//! scan of 4,000 entries per export made a cold sync of 10,000 documents
//! spend a third of the server's time comparing document ids.

use docweave_core::{DocId, Payload, VersionVector, WeakPayload};
use std::collections::{HashMap, VecDeque};

/// Most bytes kept (exports larger than a chunk are never kept).
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Most exports kept.
const MAX_ENTRIES: usize = 256;
/// Most exports remembered past the bounds, found while others hold them.
const MAX_REMEMBERED: usize = 4096;

/// An export's bytes: kept alive, or only remembered (found while someone
/// else holds them).
enum Held {
    Kept(Payload),
    Remembered(WeakPayload),
}

/// One export of a document: from `since`, made at the replica's `version`.
struct Entry {
    /// Its place in the order of the cache (oldest first).
    seq: u64,
    since: Option<VersionVector>,
    version: VersionVector,
    data: Held,
}

/// The most recent exports, within [`MAX_BYTES`] and [`MAX_ENTRIES`], and
/// older ones remembered (up to [`MAX_REMEMBERED`]) without being kept
/// alive. An export is valid only while the replica is at the version it
/// was made at, which every lookup checks.
#[derive(Default)]
pub(super) struct RecentExports {
    by_doc: HashMap<DocId, Vec<Entry>>,
    /// Kept exports, oldest first (some may be gone already: skipped).
    kept_order: VecDeque<(u64, DocId)>,
    /// Remembered exports, oldest first (likewise).
    remembered_order: VecDeque<(u64, DocId)>,
    kept: usize,
    remembered: usize,
    bytes: usize,
    next_seq: u64,
}

impl RecentExports {
    /// The export of `doc` from `since` made at `version`, if kept (or
    /// remembered and still held); exports of `doc` at another version,
    /// and remembered ones nobody holds, are dropped.
    pub(super) fn get(
        &mut self,
        doc: &DocId,
        since: Option<&VersionVector>,
        version: &VersionVector,
    ) -> Option<Payload> {
        let entries = self.by_doc.get_mut(doc)?;
        let mut found = None;
        let (mut kept_gone, mut remembered_gone, mut freed) = (0, 0, 0);
        entries.retain(|e| {
            let data = match &e.data {
                Held::Kept(data) if &e.version == version => Some(data.clone()),
                Held::Kept(data) => {
                    freed += data.len();
                    kept_gone += 1;
                    return false;
                }
                Held::Remembered(weak) => match weak.upgrade() {
                    Some(data) if &e.version == version => Some(data),
                    _ => {
                        remembered_gone += 1;
                        return false;
                    }
                },
            };
            if e.since.as_ref() == since && found.is_none() {
                found = data;
            }
            true
        });
        if entries.is_empty() {
            self.by_doc.remove(doc);
        }
        self.kept -= kept_gone;
        self.remembered -= remembered_gone;
        self.bytes -= freed;
        self.compact_orders();
        found
    }

    /// Keeps an export, dropping the oldest past the bounds.
    pub(super) fn keep(
        &mut self,
        doc: &DocId,
        since: Option<&VersionVector>,
        version: &VersionVector,
        data: &Payload,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let large = data.len() > MAX_BYTES / 4;
        let held = if large {
            self.remembered += 1;
            self.remembered_order.push_back((seq, doc.clone()));
            Held::Remembered(data.downgrade())
        } else {
            self.kept += 1;
            self.bytes += data.len();
            self.kept_order.push_back((seq, doc.clone()));
            Held::Kept(data.clone())
        };
        self.by_doc.entry(doc.clone()).or_default().push(Entry {
            seq,
            since: since.cloned(),
            version: version.clone(),
            data: held,
        });
        while self.bytes > MAX_BYTES || self.kept > MAX_ENTRIES {
            let Some((seq, doc)) = self.kept_order.pop_front() else {
                break;
            };
            self.demote(seq, &doc);
        }
        while self.remembered > MAX_REMEMBERED {
            let Some((seq, doc)) = self.remembered_order.pop_front() else {
                break;
            };
            self.drop_entry(seq, &doc);
        }
    }

    /// A kept export past the bounds becomes remembered (if it still is).
    fn demote(&mut self, seq: u64, doc: &DocId) {
        let Some(e) = self
            .by_doc
            .get_mut(doc)
            .and_then(|es| es.iter_mut().find(|e| e.seq == seq))
        else {
            return;
        };
        if let Held::Kept(data) = &e.data {
            let weak = data.downgrade();
            self.bytes -= data.len();
            self.kept -= 1;
            e.data = Held::Remembered(weak);
            self.remembered += 1;
            self.remembered_order.push_back((seq, doc.clone()));
        }
    }

    /// Drops a remembered export (if it still is).
    fn drop_entry(&mut self, seq: u64, doc: &DocId) {
        let Some(entries) = self.by_doc.get_mut(doc) else {
            return;
        };
        let before = entries.len();
        entries.retain(|e| !(e.seq == seq && matches!(e.data, Held::Remembered(_))));
        if entries.len() < before {
            self.remembered -= 1;
        }
        if entries.is_empty() {
            self.by_doc.remove(doc);
        }
    }

    /// Drops order places of exports that went by a lookup, once they
    /// outnumber the live ones (so the orders stay bounded).
    fn compact_orders(&mut self) {
        let live = |by_doc: &HashMap<DocId, Vec<Entry>>, seq: u64, doc: &DocId, kept: bool| {
            by_doc.get(doc).is_some_and(|es| {
                es.iter()
                    .any(|e| e.seq == seq && matches!(e.data, Held::Kept(_)) == kept)
            })
        };
        if self.kept_order.len() > 2 * self.kept + MAX_ENTRIES {
            let by_doc = &self.by_doc;
            self.kept_order
                .retain(|(seq, doc)| live(by_doc, *seq, doc, true));
        }
        if self.remembered_order.len() > 2 * self.remembered + MAX_ENTRIES {
            let by_doc = &self.by_doc;
            self.remembered_order
                .retain(|(seq, doc)| live(by_doc, *seq, doc, false));
        }
    }

    /// Forgets every export of `doc` (its replica went).
    pub(super) fn forget(&mut self, doc: &DocId) {
        let Some(entries) = self.by_doc.remove(doc) else {
            return;
        };
        for e in entries {
            match e.data {
                Held::Kept(data) => {
                    self.kept -= 1;
                    self.bytes -= data.len();
                }
                Held::Remembered(_) => self.remembered -= 1,
            }
        }
        self.compact_orders();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64) -> VersionVector {
        VersionVector::from_entries([(1, n)])
    }

    #[test]
    fn an_export_is_shared_while_its_version_holds_and_dropped_after() {
        let mut r = RecentExports::default();
        let doc = DocId::new("d");
        let data = Payload::new(vec![7; 100]);
        r.keep(&doc, None, &v(1), &data);
        assert_eq!(r.get(&doc, None, &v(1)), Some(data.clone()));
        assert_eq!(r.get(&doc, Some(&v(0)), &v(1)), None);
        // The replica moved on: the old export goes.
        assert_eq!(r.get(&doc, None, &v(2)), None);
        assert_eq!(r.get(&doc, None, &v(1)), None);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn the_oldest_exports_go_past_the_bounds() {
        let mut r = RecentExports::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            let doc = DocId::new(&format!("d{i}"));
            r.keep(&doc, None, &v(1), &Payload::new(vec![0; 10]));
        }
        assert_eq!(r.kept, MAX_ENTRIES);
        assert_eq!(r.get(&DocId::new("d0"), None, &v(1)), None);
        let last = DocId::new(&format!("d{}", MAX_ENTRIES + 9));
        assert!(r.get(&last, None, &v(1)).is_some());
        let big = Payload::new(vec![0; MAX_BYTES / 4]);
        for i in 0..6 {
            r.keep(&DocId::new(&format!("big{i}")), None, &v(1), &big);
        }
        assert!(r.bytes <= MAX_BYTES);
    }

    #[test]
    fn an_export_past_the_bounds_is_found_while_someone_holds_it() {
        let mut r = RecentExports::default();
        let doc = DocId::new("big");
        let held = Payload::new(vec![1; MAX_BYTES / 4 + 1]);
        r.keep(&doc, None, &v(1), &held);
        assert_eq!(r.bytes, 0, "too large to keep");
        assert_eq!(r.get(&doc, None, &v(1)), Some(held.clone()));
        // Pushed out of the kept ones by newer exports, still held.
        let small = DocId::new("small");
        let pushed = Payload::new(vec![2; 10]);
        r.keep(&small, None, &v(1), &pushed);
        for i in 0..MAX_ENTRIES {
            r.keep(
                &DocId::new(&format!("d{i}")),
                None,
                &v(1),
                &Payload::new(vec![0; 10]),
            );
        }
        assert_eq!(r.get(&small, None, &v(1)), Some(pushed.clone()));
        // Nobody holds them any more: gone, and forgotten.
        drop((held, pushed));
        assert_eq!(r.get(&doc, None, &v(1)), None);
        assert_eq!(r.get(&small, None, &v(1)), None);
        assert!(!r.by_doc.contains_key(&doc) && !r.by_doc.contains_key(&small));
    }

    #[test]
    fn exports_dropped_by_lookups_leave_the_orders_bounded() {
        let mut r = RecentExports::default();
        let doc = DocId::new("busy");
        let held: Vec<Payload> = (0..10_000u64)
            .map(|i| {
                let data = Payload::new(vec![1; 10]);
                r.keep(&doc, None, &v(i), &data);
                // The replica moved on before anyone else asked.
                assert_eq!(r.get(&doc, None, &v(i + 1)), None);
                data
            })
            .collect();
        assert_eq!((r.kept, r.bytes), (0, 0));
        assert!(
            r.kept_order.len() <= MAX_ENTRIES + 1,
            "{}",
            r.kept_order.len()
        );
        drop(held);
    }
}
