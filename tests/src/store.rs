//! A toy store that speaks the protocol over a storage channel: it answers
//! sync-requests with a snapshot or `unavailable`, stores data it is sent,
//! and acknowledges with the next clock of its feed. It survives restarts.

use crate::toy::ToyDoc;
use docweave_core::{
    AckStatus, Clock, DocId, DocMeta, Message, Reply, StateRecord, StoredDoc, VersionVector,
};
use std::collections::BTreeMap;

/// The durable state of one node.
#[derive(Debug, Clone, Default)]
pub struct ToyStore {
    /// Stored documents with their last clock.
    pub docs: BTreeMap<DocId, (ToyDoc, Clock)>,
    /// The feed's clock.
    pub clock: Clock,
    /// Node state records, keyed for replacement.
    pub records: BTreeMap<String, StateRecord>,
}

impl ToyStore {
    /// Answers a message from the node; `data` carries exported bytes for data items.
    pub fn handle(&mut self, message: &Message) -> Option<Message> {
        match message {
            Message::SyncRequest { doc, .. } => Some(match self.docs.get(doc) {
                Some((d, _)) => Message::SyncResponse {
                    doc: doc.clone(),
                    batch: docweave_core::BatchId(0),
                    reply: Reply::Snapshot(d.export(None)),
                    version: d.version(),
                },
                None => Message::SyncResponse {
                    doc: doc.clone(),
                    batch: docweave_core::BatchId(0),
                    reply: Reply::Unavailable,
                    version: VersionVector::new(),
                },
            }),
            Message::Update {
                doc, batch, data, ..
            }
            | Message::SyncResponse {
                doc,
                batch,
                reply: Reply::Snapshot(data) | Reply::Delta(data),
                ..
            } => {
                self.clock = Clock(self.clock.0 + 1);
                let entry = self.docs.entry(doc.clone()).or_default();
                let status = match entry.0.import(data.as_bytes()) {
                    docweave_core::ImportOutcome::Failed { .. } => AckStatus::Invalid,
                    _ => AckStatus::Ok,
                };
                entry.1 = self.clock;
                Some(Message::Ack {
                    batch: *batch,
                    status,
                    clock: Some(self.clock),
                })
            }
            _ => None,
        }
    }

    /// Applies a state record.
    pub fn save(&mut self, record: StateRecord) {
        let key = match &record {
            StateRecord::Cursor { peer, .. } => format!("cursor/{peer}"),
            StateRecord::Listener(l) => format!("listener/{}", l.id.0),
            StateRecord::ListenerRemoved(id) => {
                self.records.remove(&format!("listener/{}", id.0));
                return;
            }
            StateRecord::Tombstone(doc) => format!("tombstone/{doc}"),
        };
        self.records.insert(key, record);
    }

    /// Drops a deleted document's data.
    pub fn purge(&mut self, doc: &DocId) {
        self.docs.remove(doc);
    }

    /// What a restarting node is fed.
    pub fn restored(&self) -> (Clock, Vec<StoredDoc>, Vec<StateRecord>) {
        let docs = self
            .docs
            .iter()
            .map(|(id, (d, c))| StoredDoc {
                doc: id.clone(),
                meta: DocMeta::default(),
                version: d.version(),
                clock: *c,
            })
            .collect();
        (self.clock, docs, self.records.values().cloned().collect())
    }
}
