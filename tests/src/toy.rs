//! A toy document: a grow-only set of operations keyed by (actor, counter).
//!
//! Its version is a version vector counting, per actor, the operations
//! present without a gap; operations after a gap wait, as Loro's pending
//! imports do, and the import reports `Pending`.

use docweave_core::{ImportOutcome, Payload, VersionVector};
use std::collections::BTreeMap;

/// One replica of a toy document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToyDoc {
    ops: BTreeMap<(u64, u64), String>,
}

impl ToyDoc {
    /// The version: per actor, the count of operations present from 0 without a gap.
    pub fn version(&self) -> VersionVector {
        let mut next: BTreeMap<u64, u64> = BTreeMap::new();
        for (actor, counter) in self.ops.keys() {
            let n = next.entry(*actor).or_insert(0);
            if *counter == *n {
                *n += 1;
            }
        }
        VersionVector::from_entries(next)
    }

    /// Appends a local operation by `actor`.
    pub fn edit(&mut self, actor: u64, value: &str) -> (u64, u64) {
        let counter = self.version().get(actor);
        self.ops.insert((actor, counter), value.to_string());
        (actor, counter)
    }

    /// Whether an operation is present.
    pub fn has(&self, op: (u64, u64)) -> bool {
        self.ops.contains_key(&op)
    }

    /// The content, in key order.
    pub fn content(&self) -> Vec<String> {
        self.ops.values().cloned().collect()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Operations the holder of `since` lacks (all of them for `None`).
    pub fn export(&self, since: Option<&VersionVector>) -> Payload {
        let mut out = Vec::new();
        for ((actor, counter), value) in &self.ops {
            if since.is_some_and(|v| v.contains(*actor, *counter)) {
                continue;
            }
            out.extend_from_slice(&actor.to_le_bytes());
            out.extend_from_slice(&counter.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        Payload::new(out)
    }

    /// Imports exported bytes.
    pub fn import(&mut self, data: &[u8]) -> ImportOutcome {
        let mut ops = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            if rest.len() < 20 {
                return ImportOutcome::Failed {
                    reason: "truncated operation".into(),
                };
            }
            let actor = u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default());
            let counter = u64::from_le_bytes(rest[8..16].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(rest[16..20].try_into().unwrap_or_default()) as usize;
            if rest.len() < 20 + len {
                return ImportOutcome::Failed {
                    reason: "truncated value".into(),
                };
            }
            let value = String::from_utf8_lossy(&rest[20..20 + len]).into_owned();
            ops.push(((actor, counter), value));
            rest = &rest[20 + len..];
        }
        for (k, v) in ops {
            self.ops.entry(k).or_insert(v);
        }
        let version = self.version();
        let gapped = self.ops.keys().any(|(a, c)| !version.contains(*a, *c));
        if gapped {
            ImportOutcome::Pending { version }
        } else {
            ImportOutcome::Applied { version }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_import_and_pending() {
        let mut a = ToyDoc::default();
        a.edit(1, "x");
        a.edit(1, "y");
        let mut b = ToyDoc::default();
        let since = VersionVector::from_entries([(1, 1)]);
        assert!(matches!(
            b.import(a.export(Some(&since)).as_bytes()),
            ImportOutcome::Pending { .. }
        ));
        assert!(matches!(
            b.import(a.export(None).as_bytes()),
            ImportOutcome::Applied { .. }
        ));
        assert_eq!(a, b);
    }
}
