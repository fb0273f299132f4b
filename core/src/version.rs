//! Version vectors: what a replica has seen, per actor.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// How two versions relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionOrder {
    /// Both have seen exactly the same changes.
    Equal,
    /// The left side has seen everything the right side has, and more.
    Ahead,
    /// The right side has seen everything the left side has, and more.
    Behind,
    /// Each side has seen changes the other has not.
    Concurrent,
}

/// Actor (a CRDT peer number) to the **next** counter expected from it, as
/// Loro counts: an entry `a -> 3` means changes 0, 1 and 2 of `a` are present.
///
/// Kept sorted, so its encoding and its `Display` never depend on insertion
/// order; one shared allocation (`Arc<[(actor, next)]>`), so cloning into
/// messages is cheap and a hub holding many documents stays small.
/// Encoded as a map from actor to next counter.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionVector(Arc<[(u64, u64)]>);

impl Default for VersionVector {
    fn default() -> Self {
        Self(Arc::from(Vec::new()))
    }
}

impl VersionVector {
    /// The version of an empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a version from `(actor, next counter)` pairs; zero entries are dropped.
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut entries: Vec<(u64, u64)> = entries.into_iter().filter(|(_, n)| *n > 0).collect();
        // A version decoded from a peer comes in actor order, once each (as
        // we encode it): then there is nothing to sort. (Every update's
        // version is decoded here; a tree built for it cost an allocation
        // per few entries.)
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // By actor, each actor's highest first: the one kept.
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            entries.dedup_by_key(|e| e.0);
        }
        Self(entries.into())
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next counter expected from `actor` (0 when none seen).
    pub fn get(&self, actor: u64) -> u64 {
        self.0
            .binary_search_by_key(&actor, |(a, _)| *a)
            .map(|i| self.0[i].1)
            .unwrap_or(0)
    }

    /// `(actor, next counter)` pairs, in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    /// Number of actors seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Total number of changes seen (sum over actors), saturating.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |s, (_, n)| s.saturating_add(*n))
    }

    /// Records that change `counter` of `actor` has been seen.
    pub fn observe(&mut self, actor: u64, counter: u64) {
        let next = counter.saturating_add(1);
        if self.get(actor) < next {
            *self = self.merge(&VersionVector(Arc::from(vec![(actor, next)])));
        }
    }

    /// Whether change `counter` of `actor` is included.
    pub fn contains(&self, actor: u64, counter: u64) -> bool {
        counter < self.get(actor)
    }

    /// Whether every change in `other` is included here (`self >= other`).
    pub fn includes(&self, other: &VersionVector) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        // Both sorted by actor: one walk.
        let mut mine = self.0.iter().peekable();
        for (a, n) in other.0.iter() {
            while mine.peek().is_some_and(|(b, _)| b < a) {
                mine.next();
            }
            match mine.peek() {
                Some((b, m)) if b == a && m >= n => {}
                _ => return false,
            }
        }
        true
    }

    /// The partial order between two versions.
    pub fn compare(&self, other: &VersionVector) -> VersionOrder {
        if Arc::ptr_eq(&self.0, &other.0) {
            return VersionOrder::Equal;
        }
        match (self.includes(other), other.includes(self)) {
            (true, true) => VersionOrder::Equal,
            (true, false) => VersionOrder::Ahead,
            (false, true) => VersionOrder::Behind,
            (false, false) => VersionOrder::Concurrent,
        }
    }

    /// The least version that includes both.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        if self.includes(other) {
            return self.clone();
        }
        if other.includes(self) {
            return other.clone();
        }
        // Counted first, then built straight into its shared allocation:
        // `Arc<[_]>` collects an iterator the standard library trusts for
        // its length (`TrustedLen`: a range, mapped) in one allocation,
        // where a `Vec` turned into one is a second allocation and a copy
        // (a merge is in every live update's path, several times).
        let len = union_len(&self.0, &other.0);
        let mut merged = MergedEntries::new(&self.0, &other.0);
        Self((0..len).map(|_| merged.next_entry()).collect())
    }

    /// The greatest version both include.
    pub fn meet(&self, other: &VersionVector) -> VersionVector {
        if other.includes(self) {
            return self.clone();
        }
        if self.includes(other) {
            return other.clone();
        }
        Self::from_entries(
            self.iter()
                .map(|(actor, n)| (actor, n.min(other.get(actor))))
                .filter(|(_, n)| *n > 0),
        )
    }
}

/// Number of distinct actors in two sorted entry lists.
fn union_len(a: &[(u64, u64)], b: &[(u64, u64)]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
        n += 1;
    }
    n + (a.len() - i) + (b.len() - j)
}

/// The entries of two sorted lists merged, the larger counter of an actor
/// in both: one at a time, in actor order.
struct MergedEntries<'a> {
    a: &'a [(u64, u64)],
    b: &'a [(u64, u64)],
}

impl<'a> MergedEntries<'a> {
    fn new(a: &'a [(u64, u64)], b: &'a [(u64, u64)]) -> Self {
        Self { a, b }
    }

    /// The next entry; `(0, 0)` past the end (never asked for: the caller
    /// takes exactly [`union_len`] of them).
    fn next_entry(&mut self) -> (u64, u64) {
        let (out, a_taken, b_taken) = match (self.a.first(), self.b.first()) {
            (Some(&(x, n)), Some(&(y, m))) if x == y => ((x, n.max(m)), 1, 1),
            (Some(&(x, n)), Some(&(y, _))) if x < y => ((x, n), 1, 0),
            (_, Some(&e)) => (e, 0, 1),
            (Some(&e), None) => (e, 1, 0),
            (None, None) => {
                debug_assert!(false, "more entries asked for than the union holds");
                ((0, 0), 0, 0)
            }
        };
        self.a = &self.a[a_taken..];
        self.b = &self.b[b_taken..];
        out
    }
}

impl Serialize for VersionVector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (a, n) in self.0.iter() {
            m.serialize_entry(a, n)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Vec<(u64, u64)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from actor to next counter")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                // Bounded by the message's bytes, not by a count of actors: a
                // document may have any number of writers.
                let mut out = Vec::new();
                loop {
                    crate::budget::charge::<A::Error>(2 * std::mem::size_of::<(u64, u64)>())?;
                    match m.next_entry::<u64, u64>()? {
                        Some(e) => out.push(e),
                        None => return Ok(out),
                    }
                }
            }
        }
        // Untrusted input: entries in any order, duplicates merged, zeros dropped.
        Ok(Self::from_entries(d.deserialize_map(Entries)?))
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (a, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}:{n}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(e: &[(u64, u64)]) -> VersionVector {
        VersionVector::from_entries(e.iter().copied())
    }

    #[test]
    fn partial_order_covers_all_four_cases() {
        assert_eq!(vv(&[(1, 2)]).compare(&vv(&[(1, 2)])), VersionOrder::Equal);
        assert_eq!(vv(&[(1, 3)]).compare(&vv(&[(1, 2)])), VersionOrder::Ahead);
        assert_eq!(vv(&[]).compare(&vv(&[(1, 2)])), VersionOrder::Behind);
        assert_eq!(
            vv(&[(1, 3)]).compare(&vv(&[(2, 1)])),
            VersionOrder::Concurrent
        );
        // A zero entry means nothing seen: it is equal to absence.
        assert_eq!(vv(&[(1, 0)]).compare(&vv(&[])), VersionOrder::Equal);
    }

    #[test]
    fn from_entries_keeps_each_actors_highest_counter_in_actor_order_and_drops_zeros() {
        // Entries in any order, repeated actors, zeros: against a tree.
        let mut seed = 7u64;
        for round in 0..500 {
            let mut next = || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                seed >> 33
            };
            let n = (next() % 12) as usize;
            let entries: Vec<(u64, u64)> = (0..n).map(|_| (next() % 6, next() % 4)).collect();
            let mut expected = std::collections::BTreeMap::new();
            for &(a, c) in entries.iter().filter(|(_, c)| *c > 0) {
                let e = expected.entry(a).or_insert(0);
                *e = c.max(*e);
            }
            let got: Vec<(u64, u64)> = vv(&entries).iter().collect();
            assert_eq!(
                got,
                expected.into_iter().collect::<Vec<_>>(),
                "round {round}: {entries:?}"
            );
        }
    }

    #[test]
    fn merge_is_the_least_upper_bound() {
        let m = vv(&[(1, 3), (2, 1)]).merge(&vv(&[(1, 1), (3, 4)]));
        assert_eq!(m, vv(&[(1, 3), (2, 1), (3, 4)]));
        assert!(m.includes(&vv(&[(1, 3)])) && m.contains(3, 3) && !m.contains(3, 4));
    }

    #[test]
    fn merge_keeps_every_actor_of_both_with_the_larger_counter() {
        // Pairs of small versions from a fixed generator, against the
        // merge's definition: every entry of both, the larger per actor.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2_000 {
            let mut pick = || {
                (0..next(5))
                    .map(|_| (next(6), 1 + next(4)))
                    .collect::<Vec<_>>()
            };
            let (a, b) = (pick(), pick());
            let both = vv(&[a.clone(), b.clone()].concat());
            assert_eq!(vv(&a).merge(&vv(&b)), both, "{a:?} and {b:?}");
            assert_eq!(vv(&b).merge(&vv(&a)), both, "{b:?} and {a:?}");
        }
    }

    #[test]
    fn observe_moves_forward_only() {
        let mut v = vv(&[(7, 5)]);
        v.observe(7, 2);
        assert_eq!(v.get(7), 5);
        v.observe(7, 9);
        assert_eq!(v.get(7), 10);
        assert_eq!(v.to_string(), "{7:10}");
    }

    #[test]
    fn serde_roundtrip_is_order_independent() {
        let a = VersionVector::from_entries([(2, 1), (1, 4)]);
        let b = VersionVector::from_entries([(1, 4), (2, 1)]);
        let ea = postcard::to_stdvec(&a).unwrap_or_default();
        assert_eq!(ea, postcard::to_stdvec(&b).unwrap_or_default());
        let back: VersionVector = postcard::from_bytes(&ea).unwrap_or_default();
        assert_eq!(back, a);
    }
}
