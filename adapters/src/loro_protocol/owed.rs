//! Acknowledgements a Loro client is owed for batches the node did not
//! durably take: the node kept part of one only pending (it depends on
//! changes the node lacks), or never acknowledged one (its store could not
//! read the document back, say, and a native sender would offer it again).
//!
//! A Loro client never sends a batch twice, so the bridge suggests a rejoin:
//! the client joins with its version and then sends all the node lacks. The
//! owed batches are answered `Ok` only once that is durable: at the join
//! answer when the node's version already covers the client's, or else when
//! the first batch the client sends after the answer is acknowledged `Ok`
//! (it carries everything the client had). "Acknowledged" keeps meaning
//! durable, and nothing the client wrote waits for a retry that never comes.

use super::codec::{LoroBatchId, UpdateStatus};
use docweave_core::VersionVector;
use std::collections::{BTreeMap, BTreeSet};

/// What follows a join answer for a room with owed batches.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterJoin {
    /// Nothing was owed in the room.
    Nothing,
    /// The node holds all the client had: these are answered `Ok`.
    Release(Vec<LoroBatchId>),
    /// The client's next batch brings what the node lacks: wait for it.
    AwaitData,
    /// The batches became owed during this very join (its version was not
    /// recorded): the client is asked to join once more.
    RejoinAgain,
}

/// The owed acknowledgements of one connection.
#[derive(Default)]
pub(crate) struct OwedAcks {
    /// Per room, the batches owed, oldest first.
    rooms: BTreeMap<String, Vec<LoroBatchId>>,
    count: usize,
    /// Per room, the client's version at its rejoin.
    rejoined_at: BTreeMap<String, VersionVector>,
    /// Rooms whose next client batch releases the owed ones.
    awaiting_data: BTreeSet<String>,
    /// The bridge's batch group that releases a room's owed batches.
    releasing: BTreeMap<u64, String>,
}

impl OwedAcks {
    /// Owes `batch` in `room`. At most `most` are owed on a connection: past
    /// that the oldest of the first room (by id) is answered now, `Unknown`
    /// (returned with its room).
    pub fn owe(
        &mut self,
        room: &str,
        batch: LoroBatchId,
        most: usize,
    ) -> Option<(String, LoroBatchId)> {
        self.rooms.entry(room.to_string()).or_default().push(batch);
        self.count += 1;
        if self.count <= most.max(1) {
            return None;
        }
        let oldest_room = self.rooms.keys().next().cloned()?;
        let list = self.rooms.get_mut(&oldest_room)?;
        let first = list.remove(0);
        if list.is_empty() {
            self.forget(&oldest_room);
        }
        self.count -= 1;
        Some((oldest_room, first))
    }

    /// Whether anything is owed in `room`.
    pub fn owes(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The client joins `room` (again) holding `version`.
    pub fn joining(&mut self, room: &str, version: &VersionVector) {
        if self.owes(room) {
            self.rejoined_at.insert(room.to_string(), version.clone());
        }
    }

    /// The node answered the join of `room`: it holds `node_version`.
    pub fn joined(&mut self, room: &str, node_version: &VersionVector) -> AfterJoin {
        if !self.owes(room) {
            return AfterJoin::Nothing;
        }
        match self.rejoined_at.remove(room) {
            Some(client) if node_version.includes(&client) => AfterJoin::Release(self.take(room)),
            Some(_) => {
                self.awaiting_data.insert(room.to_string());
                AfterJoin::AwaitData
            }
            None => AfterJoin::RejoinAgain,
        }
    }

    /// The client's batch `group` in `room` went to the node.
    pub fn sent(&mut self, room: &str, group: u64) {
        if self.awaiting_data.remove(room) {
            self.releasing.insert(group, room.to_string());
        }
    }

    /// The node answered batch `group` with `status` (`behind`: it kept part
    /// of it only pending). The owed batches it releases, with their answer.
    pub fn answered(
        &mut self,
        group: u64,
        status: UpdateStatus,
        behind: bool,
    ) -> (String, Vec<(LoroBatchId, UpdateStatus)>) {
        let Some(room) = self.releasing.remove(&group) else {
            return (String::new(), Vec::new());
        };
        if status == UpdateStatus::Ok && behind {
            // Still not all there: the next rejoin settles them all.
            return (room, Vec::new());
        }
        let batches = self.take(&room);
        (room, batches.into_iter().map(|b| (b, status)).collect())
    }

    /// The client left `room`: what it was owed can no longer be vouched for.
    pub fn left(&mut self, room: &str) -> Vec<LoroBatchId> {
        self.take(room)
    }

    fn take(&mut self, room: &str) -> Vec<LoroBatchId> {
        let batches = self.rooms.remove(room).unwrap_or_default();
        self.count = self.count.saturating_sub(batches.len());
        self.forget(room);
        batches
    }

    fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
        self.rejoined_at.remove(room);
        self.awaiting_data.remove(room);
        self.releasing.retain(|_, r| r != room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(e: &[(u64, u64)]) -> VersionVector {
        VersionVector::from_entries(e.iter().copied())
    }

    #[test]
    fn a_rejoin_the_node_already_covers_releases_the_owed_batches() {
        let mut o = OwedAcks::default();
        o.owe("doc", [1; 8], 10);
        o.joining("doc", &vv(&[(7, 3)]));
        assert_eq!(
            o.joined("doc", &vv(&[(7, 3), (1, 1)])),
            AfterJoin::Release(vec![[1; 8]])
        );
        assert!(!o.owes("doc"));
    }

    #[test]
    fn otherwise_the_first_batch_after_the_answer_releases_them_with_its_status() {
        let mut o = OwedAcks::default();
        o.owe("doc", [1; 8], 10);
        o.owe("doc", [2; 8], 10);
        o.joining("doc", &vv(&[(7, 3)]));
        assert_eq!(o.joined("doc", &vv(&[(7, 1)])), AfterJoin::AwaitData);
        o.sent("doc", 42);
        assert_eq!(
            o.answered(41, UpdateStatus::Ok, false).1,
            vec![],
            "another batch"
        );
        assert_eq!(
            o.answered(42, UpdateStatus::Ok, false).1,
            vec![([1; 8], UpdateStatus::Ok), ([2; 8], UpdateStatus::Ok)]
        );
        assert!(!o.owes("doc"));
    }

    #[test]
    fn a_release_batch_kept_only_pending_leaves_them_owed() {
        let mut o = OwedAcks::default();
        o.owe("doc", [1; 8], 10);
        o.joining("doc", &vv(&[(7, 3)]));
        o.joined("doc", &vv(&[]));
        o.sent("doc", 5);
        assert!(o.answered(5, UpdateStatus::Ok, true).1.is_empty());
        assert!(o.owes("doc"));
    }

    #[test]
    fn batches_owed_during_a_join_ask_for_another_join() {
        let mut o = OwedAcks::default();
        o.owe("doc", [1; 8], 10);
        assert_eq!(o.joined("doc", &vv(&[])), AfterJoin::RejoinAgain);
        assert_eq!(o.joined("other", &vv(&[])), AfterJoin::Nothing);
    }

    #[test]
    fn past_the_bound_the_oldest_is_answered_at_once() {
        let mut o = OwedAcks::default();
        assert_eq!(o.owe("a", [1; 8], 2), None);
        assert_eq!(o.owe("b", [2; 8], 2), None);
        assert_eq!(o.owe("b", [3; 8], 2), Some(("a".to_string(), [1; 8])));
        assert!(!o.owes("a"));
        assert_eq!(o.left("b"), vec![[2; 8], [3; 8]]);
    }
}
