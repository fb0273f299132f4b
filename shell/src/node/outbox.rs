//! Turning what the core sent during a burst into outputs: one frame per
//! channel (documents exported once per version and starting point), and
//! store jobs in the order the core asked, consecutive appends in one job.

use super::{Node, Output, Purpose, StoreItem, StoreOp};
use crate::engine::{DocEngine, ExportError};
use docweave_core::{
    encode, encoded_len, worth_sharing, BatchId, ChannelId, DocId, Message, Outgoing, Payload,
    Reply, SharedFrame, Strand, VersionVector,
};
use std::collections::HashMap;

/// Exports made during one flush, by (document, since): documents do not
/// change within a flush, so subscribers at one version share one export.
type Exports = HashMap<(DocId, Option<VersionVector>), (Payload, VersionVector)>;

/// Most presence publications one flush hands a shared store: presence is
/// best effort (its TTL covers a lost one), the store's writes are not.
const MOST_PUBLISHED_PER_FLUSH: usize = 64;

impl<E: DocEngine> Node<E> {
    /// Puts out what the steps since the last flush produced.
    pub(super) fn flush(&mut self) {
        let mut appends: Vec<(BatchId, docweave_adapters::Append)> = Vec::new();
        let mut publishes: Vec<Vec<u8>> = Vec::new();
        for item in std::mem::take(&mut self.store_queue) {
            match item {
                StoreItem::Append(batch, append) => appends.push((batch, append)),
                // Presence keeps no order with writes: it must not split a
                // batch of appends (one transaction each on a shared store).
                StoreItem::Op(StoreOp::Publish(bytes), _) => {
                    if publishes.len() < MOST_PUBLISHED_PER_FLUSH && !publishes.contains(&bytes) {
                        publishes.push(bytes);
                    }
                }
                StoreItem::Op(op, purpose) => {
                    self.append_job(&mut appends);
                    let aside = self.may_read_aside(&purpose);
                    self.job_with(op, purpose, aside);
                }
            }
        }
        self.append_job(&mut appends);
        for bytes in publishes {
            self.job(StoreOp::Publish(bytes), Purpose::Publish);
        }
        let mut exports = Exports::new();
        for (channel, items) in std::mem::take(&mut self.outbox) {
            self.transmit_with(channel, items, &mut exports);
        }
        // Evict only between bursts (not in an input the node stopped in
        // to put out its sends first), and never a replica a waiting
        // command or a reload concerns: a command may need the very
        // replicas that would go (and reloading them in turn for ever
        // would be a livelock the fuzzer found).
        if self.store.is_some()
            && self.cmds.is_empty()
            && self.internal.is_empty()
            && self.restoring.is_none()
        {
            let model = &self.model;
            let waiting = &self.waiting;
            let before = self.replicas.len();
            let (max, budget) = (self.options.max_docs, self.options.memory_budget);
            let keep = |doc: &DocId| model.is_dirty(doc) || waiting.involves(doc);
            self.replicas.evict(max, budget, keep);
            self.replicas
                .sleep_idle(self.options.sleep_after_ms, max, keep);
            if self.replicas.len() < before {
                let replicas = &self.replicas;
                self.authorship.retain(|doc| replicas.holds(doc));
            }
            if let Some(m) = &self.metrics {
                m.evicted
                    .inc_by(before.saturating_sub(self.replicas.len()) as u64);
            }
        }
    }

    /// Whether a store job may run beside the others: the first read of a
    /// document the core holds nothing of yet (it is loading, nothing of
    /// it is unwritten), which no write still out can concern.
    fn may_read_aside(&self, purpose: &Purpose) -> bool {
        match purpose {
            Purpose::Load(doc, None) => {
                self.model().doc_version(doc).is_none() && !self.model().is_dirty(doc)
            }
            // What lies below the memory floor: a write still out is of a
            // document memory holds, whichever clock the read sees for it.
            Purpose::Read(_) => true,
            _ => false,
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
        let mut messages = self.resolve(items, exports);
        // No frame holds more messages than a receiver reads in one.
        let most = self.options.limits.max_messages.max(1);
        while messages.len() > most {
            let rest = messages.split_off(most);
            self.frame_out(channel, std::mem::replace(&mut messages, rest));
        }
        self.frame_out(channel, messages);
    }

    /// Puts out one frame of `messages` (as chunk frames when large).
    fn frame_out(&mut self, channel: ChannelId, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        // Larger than a frame: as chunk frames cut when they are written,
        // sharing the document bytes rather than copying them, so no frame
        // ever exceeds what the receiver reads.
        let large = encoded_len(&messages).is_ok_and(|n| n > self.options.chunk_size);
        if large {
            let id = self.next_chunk_id;
            self.next_chunk_id = self.next_chunk_id.wrapping_add(1);
            let size = self
                .options
                .chunk_size
                .saturating_sub(docweave_core::CHUNK_HEADER + 16);
            match SharedFrame::encode(&messages, size.max(1), id) {
                Ok(frame) => {
                    self.count_out(channel, &messages, frame.wire_len());
                    self.outputs
                        .push_back(Output::TransmitShared { channel, frame })
                }
                Err(e) => tracing::warn!("{channel}: cannot encode: {e}"),
            }
            return;
        }
        // A frame that fits but carries a document worth sharing shares it
        // too: the same export queued for many readers who do not read is
        // then held once, not once per reader.
        let sent = if worth_sharing(&messages) {
            SharedFrame::whole(&messages).map(|frame| Output::TransmitShared { channel, frame })
        } else {
            encode(&messages).map(|frame| Output::Transmit { channel, frame })
        };
        match sent {
            Ok(output) => {
                let len = match &output {
                    Output::Transmit { frame, .. } => frame.len(),
                    Output::TransmitShared { frame, .. } => frame.len(),
                    _ => 0,
                };
                self.count_out(channel, &messages, len);
                self.outputs.push_back(output);
            }
            Err(e) => tracing::warn!("{channel}: cannot encode: {e}"),
        }
    }

    /// Exports document data for data items; ready messages pass as they are.
    fn resolve(&mut self, items: Vec<Outgoing>, exports: &mut Exports) -> Vec<Message> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Outgoing::Message(m) => out.push(m),
                Outgoing::Read(_) => {
                    tracing::debug!("a store read for a network channel; not sent")
                }
                Outgoing::Data {
                    doc,
                    batch,
                    since,
                    as_update,
                } => {
                    let (data, version) = match self.export(&doc, since.as_ref(), exports) {
                        Exported::Data(data, version) => (data, version),
                        Exported::TooLarge(message) => {
                            out.push(too_large(message));
                            continue;
                        }
                        Exported::Nothing => continue,
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
                        if s.deleted {
                            strands.push(Strand {
                                doc: s.doc,
                                meta: s.meta,
                                since: s.since,
                                data: Payload::default(),
                                version: VersionVector::new(),
                                clock: s.clock,
                            });
                            continue;
                        }
                        if let Some(version) = s.versions_only {
                            strands.push(Strand {
                                doc: s.doc,
                                meta: s.meta,
                                since: s.since,
                                data: Payload::default(),
                                version,
                                clock: s.clock,
                            });
                            continue;
                        }
                        let since = (!s.since.is_empty()).then(|| s.since.clone());
                        let (data, version) = match self.export(&s.doc, since.as_ref(), exports) {
                            Exported::Data(data, version) => (data, version),
                            Exported::TooLarge(message) => {
                                out.push(too_large(message));
                                continue;
                            }
                            Exported::Nothing => continue,
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
    ) -> Exported {
        let key = (doc.clone(), since.cloned());
        if let Some((data, version)) = exports.get(&key) {
            return Exported::Data(data.clone(), version.clone());
        }
        let engine = self.replicas.engine().clone();
        let Some(d) = self.replicas.touch(doc) else {
            tracing::warn!("{doc} is not in memory; its data was not sent");
            return Exported::Nothing;
        };
        let version = engine.version(d);
        if let Some(data) = self.recent_exports.get(doc, since, &version) {
            exports.insert(key, (data.clone(), version.clone()));
            return Exported::Data(data, version);
        }
        let started = std::time::Instant::now();
        let exported = engine.export(d, since);
        if let Some(m) = &self.metrics {
            m.export.observe(started.elapsed().as_secs_f64());
        }
        match exported {
            Ok(bytes) if bytes.len() > self.options.max_message => {
                let reason = format!(
                    "{doc} is {} bytes, more than the largest message this node sends ({} bytes); it was not sent",
                    bytes.len(),
                    self.options.max_message
                );
                tracing::warn!("{reason}");
                self.outputs
                    .push_back(Output::Event(docweave_core::Event::Error {
                        doc: Some(doc.clone()),
                        reason: reason.clone(),
                    }));
                Exported::TooLarge(reason)
            }
            Ok(bytes) => {
                let data = Payload::new(bytes);
                // Shared with the other channels of this flush, whatever its
                // size: their frames share its bytes rather than copy them,
                // so a hundred followers of a 12 MB change hold it once
                // (exported for each, it took 1.3 GB and 45 s).
                exports.insert(key, (data.clone(), version.clone()));
                self.recent_exports.keep(doc, since, &version, &data);
                Exported::Data(data, version)
            }
            Err(ExportError::Refused(e)) => {
                // Told, not swallowed: the transmission is not sent, times
                // out unacknowledged and is offered again later.
                let reason = format!("{doc} could not be exported, so it was not sent: {e}");
                tracing::warn!("{reason}");
                self.outputs
                    .push_back(Output::Event(docweave_core::Event::Error {
                        doc: Some(doc.clone()),
                        reason,
                    }));
                Exported::Nothing
            }
            Err(ExportError::Broken(e)) => {
                self.replica_broke(doc, &e);
                Exported::Nothing
            }
        }
    }
}

/// What exporting a document's data gave.
enum Exported {
    /// The bytes, and the version they bring a receiver to.
    Data(Payload, VersionVector),
    /// The data is larger than this node sends; the receiver is told why.
    TooLarge(String),
    /// Nothing to send (not in memory, or the engine failed; logged).
    Nothing,
}

/// The message telling a receiver that data it asked for is too large.
fn too_large(message: String) -> Message {
    Message::Error {
        code: docweave_core::ErrorCode::TooLarge,
        message,
    }
}
