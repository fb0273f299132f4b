//! Large frames in bounded chunk frames, put back together on the way in
//! (see `docweave_adapters::reassembly`): per channel, within the node's
//! largest message, a deadline, and a budget shared by every channel.

use docweave_adapters::reassembly::{Reassembly, ReassemblyLimits, Refused, SharedBudget};
use docweave_core::{ChannelId, Chunk, Millis};
use std::collections::BTreeMap;

/// Split messages gathered at once on one channel.
const PENDING_PER_CHANNEL: usize = 2;

/// What became of a chunk.
pub(crate) enum Taken {
    /// More chunks are needed.
    Pending,
    /// The frame is whole.
    Whole(Vec<u8>),
    /// The frame is larger than allowed, or than there is room for now: its
    /// chunks are dropped.
    TooLarge {
        /// The announced (or gathered) size.
        size: u64,
        /// What was allowed.
        limit: u64,
    },
    /// The chunk does not fit what came before it: the frame is dropped.
    Refused(Refused),
}

/// Reassembly for every channel.
pub(crate) struct Chunks {
    channels: BTreeMap<ChannelId, Reassembly<u32>>,
    limits: ReassemblyLimits,
    budget: SharedBudget,
}

impl Chunks {
    pub fn new(max_message: usize, budget: usize, deadline_ms: Millis) -> Self {
        Self {
            channels: BTreeMap::new(),
            limits: ReassemblyLimits {
                max_message,
                max_pending: PENDING_PER_CHANNEL,
                max_held: max_message,
                deadline_ms,
            },
            budget: SharedBudget::new(budget),
        }
    }

    /// Takes one chunk that arrived on `channel` (established: the caller
    /// refuses chunks before the handshake).
    pub fn take(&mut self, channel: ChannelId, c: Chunk<'_>, now: Millis) -> Taken {
        let limits = self.limits;
        let budget = self.budget.clone();
        let r = self
            .channels
            .entry(channel)
            .or_insert_with(|| Reassembly::new(limits).with_budget(budget));
        if c.index == 0 {
            if let Err(e) = r.begin(c.id, c.count, Some(c.total), now) {
                return refused(e);
            }
        }
        match r.piece(c.id, c.index, c.bytes, now) {
            Ok(Some(frame)) => Taken::Whole(frame),
            Ok(None) => Taken::Pending,
            Err(e) => refused(e),
        }
    }

    /// Drops frames not whole by their deadline.
    pub fn expire(&mut self, now: Millis) {
        for r in self.channels.values_mut() {
            r.expire(now);
        }
        self.channels.retain(|_, r| r.pending() > 0);
    }

    /// Forgets what a channel was gathering (it closed).
    pub fn drop_channel(&mut self, channel: ChannelId) {
        self.channels.remove(&channel);
    }
}

fn refused(e: Refused) -> Taken {
    match e {
        Refused::TooLarge { size, limit } => Taken::TooLarge { size, limit },
        other => Taken::Refused(other),
    }
}
