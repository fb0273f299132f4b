//! The output accumulator handlers write into.
//!
//! Sends are grouped per channel so one `update` step yields at most one
//! frame per channel (edge case: per-channel aggregation at flush).

use crate::ids::ChannelId;
use crate::io::{Cmd, Event, Level, Outgoing};
use crate::protocol::Message;
use std::collections::BTreeMap;

#[derive(Default)]
pub(crate) struct Out {
    cmds: Vec<Cmd>,
    sends: BTreeMap<ChannelId, Vec<Outgoing>>,
}

impl Out {
    pub fn send(&mut self, channel: ChannelId, message: Message) {
        self.item(channel, Outgoing::Message(message));
    }

    pub fn item(&mut self, channel: ChannelId, item: Outgoing) {
        self.sends.entry(channel).or_default().push(item);
    }

    pub fn cmd(&mut self, cmd: Cmd) {
        self.cmds.push(cmd);
    }

    pub fn emit(&mut self, event: Event) {
        self.cmds.push(Cmd::Emit(event));
    }

    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        self.cmds.push(Cmd::Log {
            level,
            text: text.into(),
        });
    }

    /// What is queued for each channel so far, to trim.
    pub fn sends_mut(&mut self) -> &mut BTreeMap<ChannelId, Vec<Outgoing>> {
        &mut self.sends
    }

    /// Drops anything queued for a channel that is going away.
    pub fn discard(&mut self, channel: ChannelId) {
        self.sends.remove(&channel);
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
