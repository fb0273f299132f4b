//! Turning what the core sent during a burst into outputs: one frame per
//! channel (documents exported once per version and starting point), and
//! store jobs in the order the core asked, consecutive appends in one job.

use super::{Node, Output, Purpose, StoreItem, StoreOp};
use crate::engine::DocEngine;
use docweave_core::{
    encode, BatchId, ChannelId, DocId, Message, Outgoing, Payload, Reply, Strand, VersionVector,
};
use std::collections::HashMap;

/// Exports made during one flush, by (document, since): documents do not
/// change within a flush, so subscribers at one version share one export.
type Exports = HashMap<(DocId, Option<VersionVector>), (Payload, VersionVector)>;

impl<E: DocEngine> Node<E> {
    /// Puts out what the steps since the last flush produced.
    pub(super) fn flush(&mut self) {
        let mut appends: Vec<(BatchId, docweave_adapters::Append)> = Vec::new();
        for item in std::mem::take(&mut self.store_queue) {
            match item {
                StoreItem::Append(batch, append) => appends.push((batch, append)),
                StoreItem::Op(op, purpose) => {
                    self.append_job(&mut appends);
                    self.job(op, purpose);
                }
            }
        }
        self.append_job(&mut appends);
        let mut exports = Exports::new();
        for (channel, items) in std::mem::take(&mut self.outbox) {
            self.transmit_with(channel, items, &mut exports);
        }
        // Evict only when nothing waits: a command still to run may need
        // the very replicas that would go (and reloading them in turn for
        // ever would be a livelock the fuzzer found).
        if self.store.is_some() && self.cmds.is_empty() && self.blocked.is_none() {
            let model = self.model.as_ref();
            self.replicas.evict(self.options.max_docs, |doc| {
                model.is_some_and(|m| m.is_dirty(doc))
            });
        }
    }

    fn append_job(&mut self, appends: &mut Vec<(BatchId, docweave_adapters::Append)>) {
        if appends.is_empty() {
            return;
        }
        let (batches, changes): (Vec<BatchId>, Vec<_>) =
            std::mem::take(appends).into_iter().unzip();
        self.job(StoreOp::Append(changes), Purpose::Appends(batches));
    }

    /// Encodes items for one channel now (before a close).
    pub(super) fn transmit(&mut self, channel: ChannelId, items: Vec<Outgoing>) {
        self.transmit_with(channel, items, &mut Exports::new());
    }

    fn transmit_with(&mut self, channel: ChannelId, items: Vec<Outgoing>, exports: &mut Exports) {
        let messages = self.resolve(items, exports);
        if messages.is_empty() {
            return;
        }
        match encode(&messages) {
            Ok(frame) => self.outputs.push_back(Output::Transmit { channel, frame }),
            Err(e) => tracing::warn!("{channel}: cannot encode: {e}"),
        }
    }

    /// Exports document data for data items; ready messages pass as they are.
    fn resolve(&mut self, items: Vec<Outgoing>, exports: &mut Exports) -> Vec<Message> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Outgoing::Message(m) => out.push(m),
                Outgoing::Data {
                    doc,
                    batch,
                    since,
                    as_update,
                } => {
                    let Some((data, version)) = self.export(&doc, since.as_ref(), exports) else {
                        continue;
                    };
                    out.push(if as_update {
                        Message::Update {
                            doc,
                            batch,
                            data,
                            version,
                        }
                    } else {
                        let reply = if since.is_some() {
                            Reply::Delta(data)
                        } else {
                            Reply::Snapshot(data)
                        };
                        Message::SyncResponse {
                            doc,
                            batch,
                            reply,
                            version,
                        }
                    });
                }
                Outgoing::Strands { id, items, more } => {
                    let mut strands = Vec::with_capacity(items.len());
                    for s in items {
                        let since = (!s.since.is_empty()).then(|| s.since.clone());
                        let Some((data, version)) = self.export(&s.doc, since.as_ref(), exports)
                        else {
                            continue;
                        };
                        strands.push(Strand {
                            doc: s.doc,
                            meta: s.meta,
                            since: s.since,
                            data,
                            version,
                            clock: s.clock,
                        });
                    }
                    out.push(Message::Strands { id, strands, more });
                }
            }
        }
        out
    }

    fn export(
        &mut self,
        doc: &DocId,
        since: Option<&VersionVector>,
        exports: &mut Exports,
    ) -> Option<(Payload, VersionVector)> {
        let key = (doc.clone(), since.cloned());
        if let Some(hit) = exports.get(&key) {
            return Some(hit.clone());
        }
        let engine = self.replicas.engine().clone();
        let Some(d) = self.replicas.touch(doc) else {
            tracing::warn!("{doc} is not in memory; its data was not sent");
            return None;
        };
        let version = engine.version(d);
        match engine.export(d, since) {
            Ok(bytes) => {
                let data = Payload::new(bytes);
                exports.insert(key, (data.clone(), version.clone()));
                Some((data, version))
            }
            Err(e) => {
                tracing::warn!("export {doc}: {e}");
                None
            }
        }
    }
}
