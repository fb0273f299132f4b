//! [`Batches`]: the batch ids of the transmissions in flight on one channel
//! about one document, in order, the first of them without an allocation.

use crate::ids::BatchId;

/// Batch ids in increasing order, never empty: the first kept inline,
/// since nearly always there is just one (a live update, or one answer),
/// and a vector for each transmission was an allocation and a free on
/// every data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batches {
    first: BatchId,
    /// The others, each after `first`, in order.
    rest: Vec<BatchId>,
}

impl Batches {
    /// One batch.
    pub fn one(batch: BatchId) -> Self {
        Self {
            first: batch,
            rest: Vec::new(),
        }
    }

    /// Adds `batch` in its place (nothing if it is there already).
    pub fn insert(&mut self, batch: BatchId) {
        if batch < self.first {
            self.rest.insert(0, self.first);
            self.first = batch;
        } else if batch > self.first {
            if let Err(at) = self.rest.binary_search(&batch) {
                self.rest.insert(at, batch);
            }
        }
    }

    /// Takes `batch` out; false when none is left (the caller drops the
    /// whole entry, which is never left empty).
    pub fn remove(&mut self, batch: BatchId) -> bool {
        if batch == self.first {
            if self.rest.is_empty() {
                return false;
            }
            self.first = self.rest.remove(0);
        } else {
            self.rest.retain(|b| *b != batch);
        }
        true
    }

    /// Every batch, in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchId> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(b: &Batches) -> Vec<u64> {
        b.iter().map(|b| b.0).collect()
    }

    #[test]
    fn batches_stay_in_order_whatever_order_they_come_in() {
        let mut b = Batches::one(BatchId(5));
        for n in [3, 9, 7, 5, 1] {
            b.insert(BatchId(n));
        }
        assert_eq!(ids(&b), vec![1, 3, 5, 7, 9]);
    }

    #[test]
    fn removing_the_last_batch_says_none_is_left() {
        let mut b = Batches::one(BatchId(2));
        b.insert(BatchId(4));
        assert!(b.remove(BatchId(2)), "4 is left");
        assert_eq!(ids(&b), vec![4]);
        assert!(b.remove(BatchId(8)), "not there: 4 is still left");
        assert!(!b.remove(BatchId(4)));
    }
}
