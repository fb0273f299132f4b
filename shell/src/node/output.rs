//! What the node wants done ([`Output`]), and the core's commands carried
//! out: frames to send (exported from replicas), imports, store jobs.

use super::*;

/// What the node wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write one frame to a channel's connection.
    Transmit {
        /// The channel.
        channel: ChannelId,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Write a frame that shares the document bytes it carries, as its
    /// chunk frames in order (one, the frame itself, when it fits): build
    /// each with [`SharedFrame::chunk`](docweave_core::SharedFrame::chunk)
    /// just before writing it, so the bytes stay shared until then.
    TransmitShared {
        /// The channel.
        channel: ChannelId,
        /// The frame.
        frame: docweave_core::SharedFrame,
    },
    /// Close a channel's connection (the node already forgot it).
    Close {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: String,
    },
    /// Connect to a remote, then call [`Node::channel_opened`] (or feed [`Input::DialFailed`]).
    Dial {
        /// Where.
        remote: RemoteAddr,
    },
    /// Run a job on the store ([`run_job`]) and feed the answer back, in job
    /// order (a job marked [`StoreJob::aside`] may run beside the others).
    Store(StoreJob),
    /// Tell the application.
    Event(Event),
    /// Ask elsewhere whether a channel's token is good (the
    /// [`crate::Authenticator`] said so): run `check` aside and feed its
    /// answer back as [`Input::Checked`]. The channel's messages wait.
    Authenticate {
        /// The channel.
        channel: ChannelId,
        /// The question.
        check: crate::RemoteCheck,
    },
}

impl<E: DocEngine> Node<E> {
    /// Parks what of `cmd` must wait for a replica read back from the
    /// store (asking for the read), and gives back what may go now: of a
    /// send, the items about documents nothing waits for.
    pub(super) fn hold_back(&mut self, cmd: Cmd) -> Option<Cmd> {
        let (channel, items) = match cmd {
            Cmd::Send { channel, items } => (channel, items),
            Cmd::Close { channel, reason } => {
                self.waiting.drop_channel(channel);
                return Some(Cmd::Close { channel, reason });
            }
            cmd => {
                let missing = self.missing_replica(&cmd);
                if let Some(doc) = &missing {
                    self.reload(doc);
                }
                if missing.is_some() || self.waiting.holds_up(&cmd) {
                    let held = match &cmd {
                        Cmd::Import { doc, .. } | Cmd::Purge { doc } => vec![doc.clone()],
                        Cmd::Emit(event) => {
                            waiting::event_doc(event).into_iter().cloned().collect()
                        }
                        _ => Vec::new(),
                    };
                    self.waiting.park(cmd, held);
                    return None;
                }
                return Some(cmd);
            }
        };
        let (mut go, mut wait) = (Vec::new(), Vec::new());
        // Documents the items parked from this send wait for.
        let mut held: BTreeSet<DocId> = BTreeSet::new();
        for item in items {
            // Data is exported from the replica; a message carries its own.
            let exported = !matches!(item, Outgoing::Message(_));
            let mut waits_for = Vec::new();
            for doc in waiting::item_docs(&item) {
                if exported && self.needs_reload(doc) {
                    self.reload(doc);
                    waits_for.push(doc.clone());
                } else if self.waiting.holds(doc) || held.contains(doc) {
                    waits_for.push(doc.clone());
                }
            }
            if waits_for.is_empty() {
                go.push(item);
            } else {
                held.extend(waits_for);
                wait.push(item);
            }
        }
        if !wait.is_empty() {
            let cmd = Cmd::Send {
                channel,
                items: wait,
            };
            self.waiting.park(cmd, held.into_iter().collect());
        }
        (!go.is_empty()).then_some(Cmd::Send { channel, items: go })
    }

    /// Whether a document's replica is not in memory (nor asleep: it wakes
    /// now) and must be read from the store first (without a store, memory
    /// is the only copy).
    fn needs_reload(&mut self, doc: &DocId) -> bool {
        self.store.is_some() && !self.model().is_tombstoned(doc) && !self.replicas.wake(doc)
    }

    /// A document a command other than a send needs whose replica must be
    /// read from the store first.
    fn missing_replica(&mut self, cmd: &Cmd) -> Option<DocId> {
        match cmd {
            Cmd::Import { doc, .. } | Cmd::Emit(Event::DocReady { doc, .. }) => {
                self.needs_reload(doc).then(|| doc.clone())
            }
            _ => None,
        }
    }

    pub(super) fn execute(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Send { channel, items } => {
                if Some(channel) == self.store {
                    self.for_store(items);
                } else if self.channels.contains(&channel) {
                    self.outbox.entry(channel).or_default().extend(items);
                }
            }
            Cmd::Import {
                id,
                doc,
                data,
                author,
            } => {
                self.deferred.push((id, doc, data, author));
                self.import_deferred();
            }
            Cmd::Close { channel, reason } => {
                if !self.channels.remove(&channel) {
                    return;
                }
                // What was said on this channel goes out before it closes.
                if let Some(items) = self.outbox.remove(&channel) {
                    self.transmit(channel, items);
                }
                tracing::info!("closing {channel}: {reason}");
                self.outputs.push_back(Output::Close { channel, reason });
                self.internal.push_back(Msg::ChannelRemoved { channel });
            }
            Cmd::Dial { remote } => self.outputs.push_back(Output::Dial { remote }),
            Cmd::Save(record) => {
                if self.store.is_some() {
                    let op = StoreOp::Save(record.clone());
                    self.store_queue
                        .push(StoreItem::Op(op, Purpose::Save(record)));
                }
            }
            Cmd::Purge { doc } => {
                self.replicas.remove(&doc);
                self.authorship.forget(&doc);
                if self.store.is_some() {
                    let op = StoreOp::Purge(doc.clone());
                    self.store_queue
                        .push(StoreItem::Op(op, Purpose::Purge(doc)));
                }
            }
            Cmd::WakeAt(_) => {}
            Cmd::Emit(event) => {
                if let Event::DocReady { doc, .. } = &event {
                    // The application asks for the handle next.
                    self.replicas.get_or_create(doc);
                }
                self.outputs.push_back(Output::Event(event));
            }
            Cmd::Log { level, text } => {
                let Some(line) = self.repeated_logs.admit(&text, self.now) else {
                    return;
                };
                match level {
                    docweave_core::Level::Info => tracing::info!("{line}"),
                    docweave_core::Level::Warn => tracing::warn!("{line}"),
                }
            }
        }
    }

    /// A panic in the document library left `doc`'s replica in an unknown
    /// state: it goes. With a store, the next command that needs it reads
    /// it back (and the core learns what it then holds); without one, the
    /// document's data in this process is lost, which the event says.
    pub(super) fn replica_broke(&mut self, doc: &DocId, panic: &docweave_adapters::EnginePanic) {
        self.replicas.remove(doc);
        self.recent_exports.forget(doc);
        let reason = match self.store {
            Some(_) => {
                format!("{doc} was dropped from memory and is read back from the store: {panic}")
            }
            None => format!("{doc} was dropped from memory (no store holds it): {panic}"),
        };
        tracing::error!("{reason}");
        self.outputs.push_back(Output::Event(Event::Error {
            doc: Some(doc.clone()),
            reason,
        }));
    }

    /// Turns what the core says to its store into store items.
    pub(super) fn for_store(&mut self, items: Vec<Outgoing>) {
        for item in items {
            match item {
                Outgoing::Data {
                    doc, batch, since, ..
                } => {
                    let engine = self.replicas.engine().clone();
                    // Kept from the first write: a document read back on
                    // demand (or after a restart) has it again.
                    let meta = self.model().doc_meta(&doc).cloned().unwrap_or_default();
                    let Some(d) = self.replicas.touch(&doc) else {
                        continue;
                    };
                    match engine.export(d, since.as_ref()) {
                        Ok(data) => {
                            let version = engine.version(d);
                            // Who wrote what goes in the same transaction.
                            let authors = self.authorship.for_write(&doc, batch);
                            let append = docweave_adapters::Append {
                                doc,
                                meta,
                                data,
                                version,
                                authors,
                            };
                            self.store_queue.push(StoreItem::Append(batch, append));
                        }
                        Err(e) => {
                            if let ExportError::Broken(panic) = &e {
                                self.replica_broke(&doc, panic);
                            }
                            let failure = StoreFailure::Append {
                                batch,
                                reason: format!("{doc} could not be exported: {e}"),
                            };
                            self.store_failed(failure);
                        }
                    }
                }
                Outgoing::Message(Message::SyncRequest { doc, .. }) => {
                    // A resident replica (say, one another server's write
                    // made stale) needs only what followed its last load.
                    let after = self.replicas.loaded_to(&doc);
                    let op = match after {
                        Some(after) => StoreOp::LoadSince(doc.clone(), after),
                        None => StoreOp::Load(doc.clone()),
                    };
                    self.store_queue
                        .push(StoreItem::Op(op, Purpose::Load(doc, after)));
                }
                Outgoing::Message(Message::ChangesSince { clock, .. }) => {
                    let limit = self.model().config().timing.changes_page.max(1);
                    let op = StoreOp::Changes {
                        since: clock,
                        limit,
                    };
                    let purpose = Purpose::Changes {
                        since: clock,
                        limit,
                    };
                    self.store_queue.push(StoreItem::Op(op, purpose));
                }
                Outgoing::Message(m @ Message::Ephemeral(_)) => {
                    match docweave_core::encode(std::slice::from_ref(&m)) {
                        Ok(bytes) => self
                            .store_queue
                            .push(StoreItem::Op(StoreOp::Publish(bytes), Purpose::Publish)),
                        Err(e) => tracing::debug!("presence not published: {e}"),
                    }
                }
                Outgoing::Message(Message::ListenerPull { id, .. }) => {
                    // A listener's record and its removal share one key.
                    let key = StateRecord::ListenerRemoved(id).key();
                    self.store_queue
                        .push(StoreItem::Op(StoreOp::Record(key), Purpose::Listener(id)));
                }
                Outgoing::Message(m) => {
                    tracing::debug!("{} for the store; stores do not take it", m.name());
                }
                Outgoing::Read(read) => {
                    let op = StoreOp::ReadIndex {
                        range: read.range,
                        filter: read.filter,
                        limit: read.limit as usize,
                    };
                    self.store_queue
                        .push(StoreItem::Op(op, Purpose::Read(read.job)));
                }
                Outgoing::Strands { .. } => {}
            }
        }
    }
}
