//! Commands that wait for a replica being read back from the store, and
//! what they hold up. A command that needs an evicted replica waits for
//! its reload; a later command waits behind it only when it concerns a
//! document something waits for (so each document keeps the core's order,
//! on every connection). Of a send, only the items about such documents
//! wait: the rest of a connection's traffic goes on (the core orders
//! nothing across documents; an acknowledgement or a listing names no
//! document). A connection that closes closes at once: what waited to be
//! sent on it is dropped (a close must not wait: a revoked client would
//! go on meanwhile).
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
    /// In the order the core gave them, each with the documents it waits
    /// for (missing, or held by an earlier one).
    cmds: VecDeque<(Cmd, Vec<DocId>)>,
    /// Documents a waiting command waits for: later commands about them wait too.
    docs: BTreeSet<DocId>,
    /// Documents a waiting command will need (also those in memory now):
    /// kept in memory, or reading one back would evict another for ever.
    needed: BTreeSet<DocId>,
    /// Reloads out, by document (the store job's id).
    reloads: BTreeMap<DocId, u64>,
}

impl Waiting {
    /// How many commands wait.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Whether `cmd` (not a send: see [`Waiting::holds`]) must wait behind
    /// a waiting command about the same document.
    pub fn holds_up(&self, cmd: &Cmd) -> bool {
        if self.cmds.is_empty() {
            return false;
        }
        match cmd {
            Cmd::Import { doc, .. } | Cmd::Purge { doc } => self.docs.contains(doc),
            Cmd::Emit(event) => event_doc(event).is_some_and(|d| self.docs.contains(d)),
            _ => false,
        }
    }

    /// Whether a waiting command waits for `doc`: an item about it waits too.
    pub fn holds(&self, doc: &DocId) -> bool {
        self.docs.contains(doc)
    }

    /// Puts `cmd` at the end of the line, waiting for `held`.
    pub fn park(&mut self, cmd: Cmd, held: Vec<DocId>) {
        self.note(&cmd, &held);
        self.cmds.push_back((cmd, held));
    }

    fn note(&mut self, cmd: &Cmd, held: &[DocId]) {
        self.docs.extend(held.iter().cloned());
        self.needed.extend(held.iter().cloned());
        if let Cmd::Send { items, .. } = cmd {
            for item in items {
                self.needed.extend(item_docs(item).into_iter().cloned());
            }
        }
    }

    /// Every waiting command, in order, to be tried again (those still
    /// waiting are parked anew).
    pub fn take(&mut self) -> VecDeque<Cmd> {
        self.docs.clear();
        self.needed.clear();
        std::mem::take(&mut self.cmds)
            .into_iter()
            .map(|(cmd, _)| cmd)
            .collect()
    }

    /// Drops what waits to be sent on a connection that closes: it never
    /// left, and the peer asks again when it comes back.
    pub fn drop_channel(&mut self, channel: ChannelId) {
        let before = self.cmds.len();
        self.cmds
            .retain(|(cmd, _)| !matches!(cmd, Cmd::Send { channel: c, .. } if *c == channel));
        if self.cmds.len() == before {
            return;
        }
        self.docs.clear();
        self.needed.clear();
        let kept = std::mem::take(&mut self.cmds);
        for (cmd, held) in &kept {
            self.note(cmd, held);
        }
        self.cmds = kept;
    }

    /// Whether a waiting command needs `doc`, or a reload of it is out
    /// (its replica must stay in memory, or be kept once read).
    pub fn involves(&self, doc: &DocId) -> bool {
        self.needed.contains(doc) || self.reloads.contains_key(doc)
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
        // A deleted document's strand carries no data: nothing to wait for.
        Outgoing::Strands { items, .. } => items
            .iter()
            .filter(|s| !s.deleted && s.versions_only.is_none())
            .map(|s| &s.doc)
            .collect(),
        Outgoing::Message(m) => message_doc(m).into_iter().collect(),
        Outgoing::Read(_) => Vec::new(),
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
pub(super) fn event_doc(event: &Event) -> Option<&DocId> {
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
