//! Commands that wait for a replica being read back from the store, and
//! what they hold up. A command that needs an evicted replica waits for
//! its reload; a later command waits behind it only when it concerns one
//! of the same documents (so each document keeps the core's order, on
//! every connection), and a close waits for what is still to be sent on
//! its connection. Of a send, only the items about such documents wait:
//! the rest of a connection's traffic goes on (the core orders nothing
//! across documents; an acknowledgement or a listing names no document).
//! The node keeps taking inputs and firing timers meanwhile: one slow read
//! never stalls the documents that do not need it.

use docweave_core::{ChannelId, Cmd, DocId, Event, Message, Outgoing};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Waiting commands past this many make the node say it waits for its
/// store ([`super::Node::waits_for_store`]), so drivers stop reading
/// connections until reloads catch up: a flood for a document whose read
/// is slow is held in the sockets, not in memory.
pub(super) const MOST_WAITING: usize = 4_096;

#[derive(Default)]
pub(super) struct Waiting {
    /// In the order the core gave them.
    cmds: VecDeque<Cmd>,
    /// Documents a waiting command concerns.
    docs: BTreeSet<DocId>,
    /// Connections a waiting command sends on or closes (a close waits
    /// for what is still to be sent).
    channels: BTreeSet<ChannelId>,
    /// Reloads out, by document (the store job's id).
    reloads: BTreeMap<DocId, u64>,
}

impl Waiting {
    /// How many commands wait.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Whether `cmd` (not a send: see [`Waiting::holds`]) must wait behind
    /// a waiting command: it concerns one of the same documents, or it
    /// closes a connection with items still to be sent.
    pub fn holds_up(&self, cmd: &Cmd) -> bool {
        if self.cmds.is_empty() {
            return false;
        }
        match cmd {
            Cmd::Close { channel, .. } => self.channels.contains(channel),
            Cmd::Import { doc, .. } | Cmd::Purge { doc } => self.docs.contains(doc),
            Cmd::Emit(event) => event_doc(event).is_some_and(|d| self.docs.contains(d)),
            _ => false,
        }
    }

    /// Whether a waiting command concerns `doc`: an item about it waits too.
    pub fn holds(&self, doc: &DocId) -> bool {
        self.docs.contains(doc)
    }

    /// Puts `cmd` at the end of the line; what it concerns waits from now on.
    pub fn park(&mut self, cmd: Cmd) {
        match &cmd {
            Cmd::Send { channel, items } => {
                self.channels.insert(*channel);
                for item in items {
                    self.docs.extend(item_docs(item).into_iter().cloned());
                }
            }
            Cmd::Import { doc, .. } | Cmd::Purge { doc } => {
                self.docs.insert(doc.clone());
            }
            Cmd::Emit(event) => self.docs.extend(event_doc(event).cloned()),
            Cmd::Close { channel, .. } => {
                self.channels.insert(*channel);
            }
            _ => {}
        }
        self.cmds.push_back(cmd);
    }

    /// Every waiting command, in order, to be tried again (those still
    /// waiting are parked anew).
    pub fn take(&mut self) -> VecDeque<Cmd> {
        self.docs.clear();
        self.channels.clear();
        std::mem::take(&mut self.cmds)
    }

    /// Whether a waiting command, or a reload out, concerns `doc` (its
    /// replica must stay in memory, or be kept once read).
    pub fn involves(&self, doc: &DocId) -> bool {
        self.docs.contains(doc) || self.reloads.contains_key(doc)
    }

    /// Whether a reload of `doc` is out.
    pub fn reloading(&self, doc: &DocId) -> bool {
        self.reloads.contains_key(doc)
    }

    /// A reload of `doc` went out as job `id`.
    pub fn reload_started(&mut self, doc: DocId, id: u64) {
        self.reloads.insert(doc, id);
    }

    /// The reload of `doc` came back.
    pub fn reload_done(&mut self, doc: &DocId) {
        self.reloads.remove(doc);
    }

    /// How many reloads are out.
    pub fn reloads(&self) -> usize {
        self.reloads.len()
    }
}

/// The documents an item to send is about.
pub(super) fn item_docs(item: &Outgoing) -> Vec<&DocId> {
    match item {
        Outgoing::Data { doc, .. } => vec![doc],
        Outgoing::Strands { items, .. } => items.iter().map(|s| &s.doc).collect(),
        Outgoing::Message(m) => message_doc(m).into_iter().collect(),
    }
}

/// The document a message is about, if exactly one.
fn message_doc(m: &Message) -> Option<&DocId> {
    match m {
        Message::SyncRequest { doc, .. }
        | Message::SyncResponse { doc, .. }
        | Message::Update { doc, .. }
        | Message::Delete { doc, .. }
        | Message::DeleteResult { doc, .. } => Some(doc),
        Message::Ephemeral(e) => Some(&e.doc),
        _ => None,
    }
}

/// The document an event is about, if one: the application hears of a
/// document in the order the core spoke (ready before changed).
fn event_doc(event: &Event) -> Option<&DocId> {
    match event {
        Event::DocReady { doc, .. }
        | Event::DocUnavailable { doc, .. }
        | Event::DocChanged { doc, .. }
        | Event::PeerSynced { doc, .. }
        | Event::Durable { doc, .. }
        | Event::AckedByRemote { doc, .. }
        | Event::Presence { doc, .. }
        | Event::DocDeleted { doc, .. }
        | Event::DeleteAnswered { doc, .. } => Some(doc),
        Event::Error { doc, .. } => doc.as_ref(),
        _ => None,
    }
}
