//! Exports kept across flushes, so readers that ask one after another for
//! a document nobody changed meanwhile share one export: a hundred readers
//! each asking for forty documents of 870 KB cost the node four thousand
//! exports (seconds in which every other client waited), now forty.

use docweave_core::{DocId, Payload, VersionVector};
use std::collections::VecDeque;

/// Most bytes kept (exports larger than a chunk are never kept).
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Most exports kept.
const MAX_ENTRIES: usize = 256;

/// One kept export: of `doc` from `since`, made at the replica's `version`.
struct Kept {
    doc: DocId,
    since: Option<VersionVector>,
    version: VersionVector,
    data: Payload,
}

/// The most recent exports, newest last, within [`MAX_BYTES`] and
/// [`MAX_ENTRIES`]. An export is valid only while the replica is at the
/// version it was made at, which every lookup checks.
#[derive(Default)]
pub(super) struct RecentExports {
    kept: VecDeque<Kept>,
    bytes: usize,
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
        if data.len() > MAX_BYTES / 4 {
            return;
        }
        self.bytes += data.len();
        self.kept.push_back(Kept {
            doc: doc.clone(),
            since: since.cloned(),
            version: version.clone(),
            data: data.clone(),
        });
        while self.bytes > MAX_BYTES || self.kept.len() > MAX_ENTRIES {
            match self.kept.pop_front() {
                Some(old) => self.bytes -= old.data.len(),
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
}
