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

use docweave_core::{DocId, Payload, VersionVector, WeakPayload};
use std::collections::VecDeque;

/// Most bytes kept (exports larger than a chunk are never kept).
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Most exports kept.
const MAX_ENTRIES: usize = 256;
/// Most exports remembered past the bounds, found while others hold them.
const MAX_REMEMBERED: usize = 4096;

/// One kept export: of `doc` from `since`, made at the replica's `version`.
struct Kept {
    doc: DocId,
    since: Option<VersionVector>,
    version: VersionVector,
    data: Payload,
}

/// An export past the bounds, found only while someone else holds it.
struct Remembered {
    doc: DocId,
    since: Option<VersionVector>,
    version: VersionVector,
    data: WeakPayload,
}

/// The most recent exports, newest last, within [`MAX_BYTES`] and
/// [`MAX_ENTRIES`], and older ones remembered (up to [`MAX_REMEMBERED`])
/// without being kept alive. An export is valid only while the replica is
/// at the version it was made at, which every lookup checks.
#[derive(Default)]
pub(super) struct RecentExports {
    kept: VecDeque<Kept>,
    bytes: usize,
    remembered: VecDeque<Remembered>,
}

impl RecentExports {
    /// The export of `doc` from `since` made at `version`, if kept; kept
    /// exports of `doc` at another version are dropped.
    pub(super) fn get(
        &mut self,
        doc: &DocId,
        since: Option<&VersionVector>,
        version: &VersionVector,
    ) -> Option<Payload> {
        let mut found = None;
        let mut freed = 0;
        self.kept.retain(|k| {
            if &k.doc != doc {
                return true;
            }
            if &k.version != version {
                freed += k.data.len();
                return false;
            }
            if k.since.as_ref() == since {
                found = Some(k.data.clone());
            }
            true
        });
        self.bytes -= freed;
        if found.is_some() {
            return found;
        }
        self.remembered.retain(|r| {
            if &r.doc != doc {
                return true;
            }
            if &r.version != version {
                return false;
            }
            match r.data.upgrade() {
                Some(data) => {
                    if r.since.as_ref() == since {
                        found = Some(data);
                    }
                    true
                }
                None => false,
            }
        });
        found
    }

    fn remember(&mut self, kept: Kept) {
        self.remembered.push_back(Remembered {
            doc: kept.doc,
            since: kept.since,
            version: kept.version,
            data: kept.data.downgrade(),
        });
        while self.remembered.len() > MAX_REMEMBERED {
            self.remembered.pop_front();
        }
    }

    /// Keeps an export, dropping the oldest past the bounds.
    pub(super) fn keep(
        &mut self,
        doc: &DocId,
        since: Option<&VersionVector>,
        version: &VersionVector,
        data: &Payload,
    ) {
        let kept = Kept {
            doc: doc.clone(),
            since: since.cloned(),
            version: version.clone(),
            data: data.clone(),
        };
        if data.len() > MAX_BYTES / 4 {
            return self.remember(kept);
        }
        self.bytes += data.len();
        self.kept.push_back(kept);
        while self.bytes > MAX_BYTES || self.kept.len() > MAX_ENTRIES {
            match self.kept.pop_front() {
                Some(old) => {
                    self.bytes -= old.data.len();
                    self.remember(old);
                }
                None => break,
            }
        }
    }

    /// Forgets every kept export of `doc` (its replica went).
    pub(super) fn forget(&mut self, doc: &DocId) {
        let mut freed = 0;
        self.kept.retain(|k| {
            let keep = &k.doc != doc;
            if !keep {
                freed += k.data.len();
            }
            keep
        });
        self.bytes -= freed;
        self.remembered.retain(|r| &r.doc != doc);
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
        assert_eq!(r.kept.len(), MAX_ENTRIES);
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
        assert!(r.remembered.iter().all(|k| k.doc != doc && k.doc != small));
    }
}
