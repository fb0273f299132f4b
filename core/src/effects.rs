//! [`Effects`]: what one `update` step produces, as handlers write it
//! (commands, sends grouped per channel), and the follow-ups they record
//! for `update` to run.
//!
//! Sends are grouped per channel so one `update` step yields at most one
//! frame per channel (edge case: per-channel aggregation at flush).
//!
//! A handler never calls another handler: when what it did concerns
//! another (a document is ready, a change is durable, a peer got what it
//! pulled, ...), it records a [`FollowUp`], and `update` hands each to the
//! handler it concerns, first recorded first, until none is left.

use crate::ids::{ChannelId, Clock, DocId, PeerId, RemoteAddr};
use crate::io::{Cmd, Event, Level, Outgoing};
use crate::model::WaitingRequest;
use crate::protocol::{Message, Revision};
use crate::version::VersionVector;
use std::collections::VecDeque;

#[derive(Default)]
pub(crate) struct Effects {
    cmds: Vec<Cmd>,
    /// Per channel, in channel order. A step sends to a few channels
    /// (the sender, a document's subscribers, the store): a sorted vector
    /// finds them as fast as a tree and allocates once, where a tree
    /// allocated a node for every step that sent anything.
    sends: Vec<(ChannelId, Vec<Outgoing>)>,
    /// A follow-up recorded when the queue was empty, so every one in
    /// `follow_ups` was recorded after it: most steps record one at most,
    /// and a queue allocated for each was an allocation and a free per step.
    next: Option<FollowUp>,
    /// The follow-ups recorded after `next`, first recorded first.
    follow_ups: VecDeque<FollowUp>,
}

/// What one handler's work means for another, run by `update` after the
/// handler returns (see the module's documentation).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FollowUp {
    /// A document finished loading and is ready (`changes`, `sync`,
    /// `listeners`): in this order, peers that follow no filter hear of a
    /// document new here (all but `announce_but`, its creator), the remotes
    /// we dialed are asked for it, the requests that waited are answered,
    /// and, when it was found in a store, its subscribers get what they lack.
    DocReady {
        doc: DocId,
        announce: Option<Option<PeerId>>,
        ask_remotes: bool,
        queued: Vec<WaitingRequest>,
        propagate: bool,
    },
    /// A peer has a document it pulled from our change feed (`changes`).
    Pulled { peer: PeerId, doc: DocId },
    /// A remote acknowledged our write of a document at its clock (`changes`).
    RemoteAcked {
        peer: PeerId,
        doc: DocId,
        clock: Clock,
    },
    /// A document is durable up to `version` (`changes`: pulls that wait
    /// for durable data).
    Durable { doc: DocId, version: VersionVector },
    /// One revision of a listener's push is settled (`listeners`).
    RevisionFilled {
        job: u64,
        index: usize,
        revision: Revision,
    },
    /// A remote we dialed welcomed us: resume where we left off (`changes`).
    Welcomed {
        peer: PeerId,
        channel: ChannelId,
        addr: RemoteAddr,
        clock: Clock,
    },
}

/// Commands a step's first one makes room for (see `Effects::push`).
const CMDS_ROOM: usize = 6;

impl Effects {
    /// Records what another handler must do once this one returns.
    pub fn follow(&mut self, follow_up: FollowUp) {
        // Inline only when nothing waits: it must stay the first.
        if self.next.is_none() && self.follow_ups.is_empty() {
            self.next = Some(follow_up);
        } else {
            self.follow_ups.push_back(follow_up);
        }
    }

    /// The follow-up recorded first and not yet run.
    pub fn next_follow_up(&mut self) -> Option<FollowUp> {
        self.next.take().or_else(|| self.follow_ups.pop_front())
    }

    pub fn send(&mut self, channel: ChannelId, message: Message) {
        self.item(channel, Outgoing::Message(message));
    }

    pub fn item(&mut self, channel: ChannelId, item: Outgoing) {
        match self.sends.binary_search_by_key(&channel, |(c, _)| *c) {
            Ok(at) => self.sends[at].1.push(item),
            Err(at) => self.sends.insert(at, (channel, vec![item])),
        }
    }

    pub fn cmd(&mut self, cmd: Cmd) {
        self.push(cmd);
    }

    pub fn emit(&mut self, event: Event) {
        self.push(Cmd::Emit(event));
    }

    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        self.push(Cmd::Log {
            level,
            text: text.into(),
        });
    }

    fn push(&mut self, cmd: Cmd) {
        if self.cmds.capacity() == 0 {
            // A step that writes a command nearly always writes several
            // (events, then the sends `finish` adds): room for them at
            // once, where the vector's first four slots were often
            // reallocated (by `finish`, or the fifth command).
            self.cmds.reserve(CMDS_ROOM);
        }
        self.cmds.push(cmd);
    }

    /// What is queued for each channel so far, to trim.
    pub fn sends_mut(&mut self) -> impl Iterator<Item = (ChannelId, &mut Vec<Outgoing>)> {
        // The channels as values: a caller cannot unsort them.
        self.sends.iter_mut().map(|(c, items)| (*c, items))
    }

    /// Drops anything queued for a channel that is going away.
    pub fn discard(&mut self, channel: ChannelId) {
        self.sends.retain(|(c, _)| *c != channel);
    }

    pub fn finish(self) -> Vec<Cmd> {
        let mut cmds = self.cmds;
        // Closes come after the frames for the same channel, so an error
        // message reaches the peer before the close.
        let closes: Vec<Cmd> = if cmds.iter().any(|c| matches!(c, Cmd::Close { .. })) {
            let (closes, rest): (Vec<Cmd>, Vec<Cmd>) =
                cmds.drain(..).partition(|c| matches!(c, Cmd::Close { .. }));
            cmds = rest;
            closes
        } else {
            Vec::new()
        };
        cmds.reserve(self.sends.len() + closes.len());
        for (channel, items) in self.sends {
            cmds.push(Cmd::Send { channel, items });
        }
        cmds.extend(closes);
        cmds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(n: &str) -> FollowUp {
        FollowUp::Pulled {
            peer: PeerId::new(n),
            doc: DocId::new("d"),
        }
    }

    #[test]
    fn follow_ups_run_first_recorded_first_however_they_interleave() {
        let mut out = Effects::default();
        out.follow(pulled("a"));
        out.follow(pulled("b"));
        assert_eq!(out.next_follow_up(), Some(pulled("a")));
        out.follow(pulled("c"));
        assert_eq!(out.next_follow_up(), Some(pulled("b")));
        assert_eq!(out.next_follow_up(), Some(pulled("c")));
        out.follow(pulled("d"));
        assert_eq!(out.next_follow_up(), Some(pulled("d")));
        assert_eq!(out.next_follow_up(), None);
    }
}
