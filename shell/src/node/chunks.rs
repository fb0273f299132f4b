//! Large frames in bounded chunk frames: split on the way out, put back
//! together on the way in, with bounds on size and on what is held.

use docweave_core::{ChannelId, Chunk};
use std::collections::BTreeMap;

/// A frame being put back together on one channel.
struct Partial {
    id: u32,
    count: u32,
    next: u32,
    total: usize,
    bytes: Vec<u8>,
}

/// What became of a chunk.
pub(crate) enum Taken {
    /// More chunks are needed.
    Pending,
    /// The frame is whole.
    Whole(Vec<u8>),
    /// The frame is larger than allowed, or than there is room for now: its
    /// chunks are dropped.
    TooLarge {
        /// The announced size.
        size: u64,
        /// What was allowed.
        limit: u64,
    },
    /// The chunk does not follow the one before: what was gathered is dropped.
    OutOfOrder,
}

/// Reassembly for every channel: one frame at a time per channel, at most
/// `max_message` bytes each, and at most `budget` bytes reserved in all (a
/// frame's whole size is reserved when its first chunk arrives).
pub(crate) struct Chunks {
    partial: BTreeMap<ChannelId, Partial>,
    reserved: usize,
    max_message: usize,
    budget: usize,
}

impl Chunks {
    pub fn new(max_message: usize, budget: usize) -> Self {
        Self {
            partial: BTreeMap::new(),
            reserved: 0,
            max_message,
            budget,
        }
    }

    /// Takes one chunk that arrived on `channel`.
    pub fn take(&mut self, channel: ChannelId, c: Chunk<'_>) -> Taken {
        if c.index == 0 {
            // A new frame replaces one left unfinished.
            self.drop_channel(channel);
            let total = usize::try_from(c.total).unwrap_or(usize::MAX);
            let room = self.budget.saturating_sub(self.reserved);
            if total > self.max_message || total > room {
                return Taken::TooLarge {
                    size: c.total,
                    limit: self.max_message.min(room) as u64,
                };
            }
            self.reserved += total;
            self.partial.insert(
                channel,
                Partial {
                    id: c.id,
                    count: c.count,
                    next: 0,
                    total,
                    bytes: Vec::with_capacity(total),
                },
            );
        }
        let Some(p) = self.partial.get_mut(&channel) else {
            return Taken::OutOfOrder;
        };
        let follows = p.id == c.id
            && p.next == c.index
            && p.count == c.count
            && p.total as u64 == c.total
            && p.bytes.len() + c.bytes.len() <= p.total;
        if !follows {
            self.drop_channel(channel);
            return Taken::OutOfOrder;
        }
        p.bytes.extend_from_slice(c.bytes);
        p.next += 1;
        if p.next < p.count {
            return Taken::Pending;
        }
        let Some(p) = self.partial.remove(&channel) else {
            return Taken::OutOfOrder;
        };
        self.reserved = self.reserved.saturating_sub(p.total);
        if p.bytes.len() != p.total {
            return Taken::OutOfOrder;
        }
        Taken::Whole(p.bytes)
    }

    /// Forgets what a channel was gathering (it closed, or sent nonsense).
    pub fn drop_channel(&mut self, channel: ChannelId) {
        if let Some(p) = self.partial.remove(&channel) {
            self.reserved = self.reserved.saturating_sub(p.total);
        }
    }
}
