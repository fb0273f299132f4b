//! Maps and sets that are nearly always tiny: a peer's channels, the
//! documents it follows, what it confirmed of each.
//!
//! An `imbl` B-tree allocates a whole leaf of 16 entries for its first one
//! (and keeps it when emptied), so a peer of a server with one connection
//! and one document held about 2.5 KB of empty slots across its maps. Up to
//! [`FEW`] entries these keep a sorted vector instead (what it holds, and
//! once empty at most the room of a few entries); beyond, the `imbl` map,
//! so a peer that follows a million documents costs what it did. Both
//! iterate in key order, so nothing that reaches output depends on which
//! form a map is in.

use imbl::OrdMap;
use std::borrow::Borrow;

/// Entries kept in the sorted vector; the next one moves the map to a B-tree.
const FEW: usize = 8;

/// Room an emptied map keeps (the vector's first allocation): a map that
/// goes from empty to one entry and back at every change (a peer's live
/// update on its way, settled by its acknowledgement) would otherwise
/// allocate and free each time, in every live update's path.
const KEPT_WHEN_EMPTY: usize = 4;

/// A map ordered by key, small or large (see the module's notes).
#[derive(Clone)]
pub(crate) struct SmallMap<K, V>(Repr<K, V>);

#[derive(Clone)]
enum Repr<K, V> {
    /// Sorted by key, at most [`FEW`] entries.
    Few(Vec<(K, V)>),
    Many(OrdMap<K, V>),
}

impl<K: Ord + Clone, V: Clone> SmallMap<K, V> {
    /// An empty map (no allocation).
    pub(crate) fn new() -> Self {
        SmallMap(Repr::Few(Vec::new()))
    }

    fn find<Q: Ord + ?Sized>(few: &[(K, V)], key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        few.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value of `key`.
    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        match &self.0 {
            Repr::Few(few) => Self::find(few, key).ok().map(|i| &few[i].1),
            Repr::Many(many) => many.get(key),
        }
    }

    /// The value of `key`, to change in place.
    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        match &mut self.0 {
            Repr::Few(few) => Self::find(few, key).ok().map(|i| &mut few[i].1),
            Repr::Many(many) => many.get_mut(key),
        }
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; the value it had.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match &mut self.0 {
            Repr::Few(few) => match Self::find(few, &key) {
                Ok(i) => Some(std::mem::replace(&mut few[i].1, value)),
                Err(i) if few.len() < FEW => {
                    few.insert(i, (key, value));
                    None
                }
                Err(_) => {
                    let mut many: OrdMap<K, V> = std::mem::take(few).into_iter().collect();
                    many.insert(key, value);
                    self.0 = Repr::Many(many);
                    None
                }
            },
            Repr::Many(many) => many.insert(key, value),
        }
    }

    /// Removes `key`; the value it had.
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        match &mut self.0 {
            Repr::Few(few) => {
                let i = Self::find(few, key).ok()?;
                let (_, v) = few.remove(i);
                if few.is_empty() && few.capacity() > KEPT_WHEN_EMPTY {
                    // An emptied map that had grown holds nothing, as a new one.
                    *few = Vec::new();
                }
                Some(v)
            }
            Repr::Many(many) => {
                let v = many.remove(key)?;
                // Back to the vector once it is small again (half the
                // threshold, so a map near it does not flip each time): an
                // emptied B-tree keeps its leaf.
                if many.len() <= FEW / 2 {
                    self.0 = Repr::Few(many.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
                }
                Some(v)
            }
        }
    }

    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Repr::Few(few) => few.len(),
            Repr::Many(many) => many.len(),
        }
    }

    /// Whether it has no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        let (few, many) = match &self.0 {
            Repr::Few(few) => (Some(few.iter().map(|(k, v)| (k, v))), None),
            Repr::Many(many) => (None, Some(many.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// The keys in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// The entry of the greatest key.
    pub(crate) fn get_max(&self) -> Option<(&K, &V)> {
        match &self.0 {
            Repr::Few(few) => few.last().map(|(k, v)| (k, v)),
            Repr::Many(many) => many.get_max().map(|(k, v)| (k, v)),
        }
    }
}

impl<K: Ord + Clone, V: Clone> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for SmallMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone + Eq> Eq for SmallMap<K, V> {}

impl<K: Ord + Clone + std::fmt::Debug, V: Clone + std::fmt::Debug> std::fmt::Debug
    for SmallMap<K, V>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

/// A set ordered by its values, small or large (see the module's notes).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SmallSet<K: Ord + Clone>(SmallMap<K, ()>);

impl<K: Ord + Clone> Default for SmallSet<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone> SmallSet<K> {
    /// An empty set (no allocation).
    pub(crate) fn new() -> Self {
        SmallSet(SmallMap::new())
    }

    /// Adds `key`; whether it was new.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        self.0.insert(key, ()).is_none()
    }

    /// Whether `key` is in it.
    pub(crate) fn contains<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.contains_key(key)
    }

    /// Takes `key` out; whether it was in.
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.remove(key).is_some()
    }

    /// How many values.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &K> + '_ {
        self.0.keys()
    }

    /// The greatest value.
    pub(crate) fn get_max(&self) -> Option<&K> {
        self.0.get_max().map(|(k, _)| k)
    }
}

impl<K: Ord + Clone + std::fmt::Debug> std::fmt::Debug for SmallSet<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone> FromIterator<K> for SmallSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        SmallSet(iter.into_iter().map(|k| (k, ())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Random inserts and removes over few and many keys give what a
    /// `BTreeMap` gives, in order, whichever form the map is in.
    #[test]
    fn a_small_map_answers_as_an_ordered_map_does_small_and_large() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |below: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % below
        };
        for keys in [3u64, FEW as u64, 40] {
            let mut ours: SmallMap<u64, u64> = SmallMap::new();
            let mut theirs: BTreeMap<u64, u64> = BTreeMap::new();
            for step in 0..2_000u64 {
                let k = next(keys);
                match next(4) {
                    0 => assert_eq!(ours.remove(&k), theirs.remove(&k)),
                    1 => {
                        if let (Some(a), Some(b)) = (ours.get_mut(&k), theirs.get_mut(&k)) {
                            *a += 1;
                            *b += 1;
                        }
                    }
                    _ => assert_eq!(ours.insert(k, step), theirs.insert(k, step)),
                }
                assert_eq!(ours.get(&k), theirs.get(&k));
                assert_eq!(ours.len(), theirs.len());
                assert_eq!(ours.get_max(), theirs.iter().next_back());
                assert!(ours.iter().eq(theirs.iter()), "{keys} keys, step {step}");
            }
        }
    }

    #[test]
    fn an_emptied_small_map_keeps_at_most_its_first_allocation_whatever_it_held() {
        let kept = |map: &SmallMap<u64, u64>| match &map.0 {
            Repr::Few(v) => v.capacity(),
            Repr::Many(_) => usize::MAX,
        };
        let mut map: SmallMap<u64, u64> = SmallMap::new();
        map.insert(1, 1);
        map.remove(&1);
        // The room of its first entry stays, for the next one.
        assert!(kept(&map) <= KEPT_WHEN_EMPTY);
        for k in 0..6 {
            map.insert(k, k);
        }
        for k in 0..6 {
            map.remove(&k);
        }
        assert_eq!(kept(&map), 0, "a vector that grew is freed");
        for k in 0..100 {
            map.insert(k, k);
        }
        assert!(matches!(&map.0, Repr::Many(_)));
        for k in 0..100 {
            map.remove(&k);
        }
        assert!(kept(&map) <= KEPT_WHEN_EMPTY);
    }

    #[test]
    fn a_small_set_keeps_its_values_in_order_once_each() {
        let mut set: SmallSet<u64> = [5, 1, 3].into_iter().collect();
        assert!(!set.insert(3));
        assert!(set.insert(2));
        assert!(set.remove(&5));
        assert!(!set.remove(&5));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(set.get_max(), Some(&3));
    }
}
