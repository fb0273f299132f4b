//! The simulated network: links between node channels (or raw endpoints),
//! with seeded faults (drop, duplicate, reorder), partitions and latency.

use docweave_core::ChannelId;
use std::collections::{BTreeMap, BTreeSet};

/// Fault rates in parts per thousand, and latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Frames lost.
    pub drop: u32,
    /// Frames delivered twice.
    pub duplicate: u32,
    /// Frames delivered after a later one.
    pub reorder: u32,
    /// Most extra milliseconds of latency beyond 1 (0: always 1 ms).
    pub jitter_ms: u64,
}

/// One end of a link: a node (or raw endpoint) and its channel there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct End {
    /// The node or raw endpoint's name.
    pub node: String,
    /// Its channel (0 for raw endpoints).
    pub channel: ChannelId,
}

/// The links, partitions and the seeded generator of faults.
#[derive(Debug, Default)]
pub(crate) struct Net {
    links: BTreeMap<(String, ChannelId), End>,
    /// The time the last frame on each directed link is due, so frames stay in order.
    last_due: BTreeMap<(String, ChannelId), u64>,
    partitions: BTreeSet<(String, String)>,
    rng: crate::rng::Rng,
    pub faults: Faults,
    /// Nodes that reach the others by HTTP polling, and how often they
    /// poll: what they send and what is sent to them moves only at a poll.
    pub polling: BTreeMap<String, u64>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Net {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: crate::rng::Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            ..Self::default()
        }
    }

    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        self.rng.chance(per_mille)
    }

    pub fn link(&mut self, a: End, b: End) {
        self.links.insert((a.node.clone(), a.channel), b.clone());
        self.links.insert((b.node, b.channel), a);
    }

    pub fn peer_of(&self, node: &str, channel: ChannelId) -> Option<&End> {
        self.links.get(&(node.to_string(), channel))
    }

    /// Removes a link; returns the other end.
    pub fn unlink(&mut self, node: &str, channel: ChannelId) -> Option<End> {
        let other = self.links.remove(&(node.to_string(), channel))?;
        self.links.remove(&(other.node.clone(), other.channel));
        self.last_due.remove(&(node.to_string(), channel));
        self.last_due.remove(&(other.node.clone(), other.channel));
        Some(other)
    }

    /// Every link end at `node`, with its other end.
    pub fn ends_at(&self, node: &str) -> Vec<(ChannelId, End)> {
        self.links
            .iter()
            .filter(|((n, _), _)| n == node)
            .map(|((_, c), e)| (*c, e.clone()))
            .collect()
    }

    /// The channel at `node` that leads to `peer`.
    pub fn channel_to(&self, node: &str, peer: &str) -> Option<ChannelId> {
        self.links
            .iter()
            .find(|((n, _), e)| n == node && e.node == peer)
            .map(|((_, c), _)| *c)
    }

    pub fn partition(&mut self, a: &str, b: &str) {
        self.partitions.insert(pair(a, b));
    }

    pub fn heal(&mut self, a: &str, b: &str) {
        self.partitions.remove(&pair(a, b));
    }

    pub fn heal_all(&mut self) {
        self.partitions.clear();
    }

    pub fn cut(&self, a: &str, b: &str) -> bool {
        self.partitions.contains(&pair(a, b))
    }

    /// When each copy of a frame sent now on `(node, channel)` arrives;
    /// empty when it is lost.
    pub fn schedule(&mut self, node: &str, channel: ChannelId, now: u64) -> Vec<u64> {
        if self.chance(self.faults.drop) {
            return Vec::new();
        }
        let jitter = match self.faults.jitter_ms {
            0 => 0,
            j => self.random() % (j + 1),
        };
        let key = (node.to_string(), channel);
        let mut due = now + 1 + jitter;
        if self.chance(self.faults.reorder) {
            // Held back: a later frame may overtake it.
            due += 5 + self.random() % 20;
        } else {
            due = due.max(self.last_due.get(&key).copied().unwrap_or(0));
            self.last_due.insert(key, due);
        }
        // HTTP polling: frames wait for the poll (the client's next request
        // carries what it sends, and its answer what waited for it).
        let other = self.peer_of(node, channel).map(|e| e.node.clone());
        let every = [Some(node.to_string()), other]
            .into_iter()
            .flatten()
            .filter_map(|n| self.polling.get(&n).copied())
            .max();
        if let Some(every) = every.filter(|e| *e > 0) {
            due = due.div_ceil(every) * every;
            if let Some(last) = self.last_due.get_mut(&(node.to_string(), channel)) {
                *last = (*last).max(due);
            }
        }
        let mut out = vec![due];
        if self.chance(self.faults.duplicate) {
            out.push(due + 1);
        }
        out
    }
}
