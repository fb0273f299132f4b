//! The store's answers to the node's jobs, turned into the core's
//! messages: restores, acknowledged or failed appends, loads and reloads,
//! the change feed, saved records, listeners.

use super::*;

impl<E: DocEngine> Node<E> {
    /// Presence another server published through the shared store: only
    /// presence is taken from it, as the core hears it from the store.
    pub(super) fn published(&mut self, bytes: &[u8]) {
        let Some(store) = self.store else {
            return;
        };
        let limits = docweave_core::Limits::default();
        match docweave_core::decode(bytes, &limits) {
            Ok(messages) => {
                for message in messages {
                    if let Message::Ephemeral(_) = message {
                        self.step(Msg::Received {
                            channel: store,
                            message,
                        });
                    }
                }
            }
            Err(e) => tracing::warn!("a publication from the store does not decode: {e}"),
        }
    }

    pub(super) fn store_failed(&mut self, failure: StoreFailure) {
        if let Some(store) = self.store {
            self.internal.push_back(Msg::StoreFailed { store, failure });
        }
    }

    /// What the store is asked at start: every document's metadata, or,
    /// when the core keeps only some in memory, those its cursors need.
    pub(super) fn restore_op(&self) -> StoreOp {
        match self.model().config().bounds.idle_metadata {
            0 => StoreOp::Restore,
            _ => StoreOp::RestoreRecent,
        }
    }

    /// Gives a job an id and puts it out, to run in order.
    pub(super) fn job(&mut self, op: StoreOp, purpose: Purpose) -> u64 {
        self.job_with(op, purpose, false)
    }

    /// Gives a job an id and puts it out; `aside`: it may run beside the
    /// others and be answered in any order (see [`StoreJob::aside`]).
    pub(super) fn job_with(&mut self, op: StoreOp, purpose: Purpose, aside: bool) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, purpose);
        self.outputs
            .push_back(Output::Store(StoreJob { id, op, aside }));
        id
    }

    pub(super) fn store_answer(&mut self, answer: StoreAnswer) {
        let Some(purpose) = self.jobs.remove(&answer.id) else {
            tracing::info!("an answer to unknown store job {}; ignored", answer.id);
            return;
        };
        let Some(store) = self.store else {
            return;
        };
        match (purpose, answer.result) {
            (Purpose::Restore, result) => self.restore_answered(store, result),
            (Purpose::Appends(batches), result) => self.appends_answered(store, batches, result),
            (Purpose::Load(doc, Some(after)), StoreResult::Loaded(_))
                if self
                    .replicas
                    .loaded_to(&doc)
                    .is_none_or(|held| held < after) =>
            {
                // The replica went (or was reloaded) meanwhile: what
                // followed `after` is not enough; read it all.
                self.store_queue.push(StoreItem::Op(
                    StoreOp::Load(doc.clone()),
                    Purpose::Load(doc, None),
                ));
            }
            (Purpose::Load(doc, _), StoreResult::Loaded(loaded)) => self.loaded(store, doc, loaded),
            (Purpose::Load(doc, _), other) => self.store_failed(StoreFailure::Load {
                doc,
                reason: failure_reason(other),
            }),
            (Purpose::Reload(doc), result) => self.reloaded(doc, result),
            (Purpose::Changes { since, limit }, StoreResult::Changes { docs, deletions }) => {
                self.changes_read(store, since, limit, docs, deletions)
            }
            (Purpose::Changes { .. }, other) => self.store_failed(StoreFailure::Feed {
                reason: failure_reason(other),
            }),
            (Purpose::Save(record), StoreResult::Done) => {
                self.internal.push_back(Msg::StoreSaved { store, record })
            }
            (Purpose::Save(record), other) => self.store_failed(StoreFailure::Save {
                record,
                reason: failure_reason(other),
            }),
            (Purpose::Purge(_), StoreResult::Done) => {}
            (Purpose::Purge(doc), other) => self.store_failed(StoreFailure::Purge {
                doc,
                reason: failure_reason(other),
            }),
            (Purpose::Listener(id), result) => self.listener_read(store, id, result),
            (Purpose::Read(job), StoreResult::Index(docs)) => {
                self.internal.push_back(Msg::StoreRead { store, job, docs })
            }
            (Purpose::Read(job), other) => self.store_failed(StoreFailure::Read {
                job,
                reason: failure_reason(other),
            }),
            // Presence is best effort: its TTL covers a lost publication.
            (Purpose::Publish, StoreResult::Done) => {}
            (Purpose::Publish, other) => {
                tracing::debug!("presence was not published: {other:?}");
            }
        }
    }

    /// The store was read at start, or could not be: nothing is decided on
    /// a store not read, so everything waits and the read is tried again
    /// (a node that went on as if its store were empty would answer for
    /// data it holds).
    fn restore_answered(&mut self, store: ChannelId, result: StoreResult) {
        let StoreResult::Restored {
            clock,
            floor,
            docs,
            records,
        } = result
        else {
            let reason = failure_reason(result);
            let pause = self.restore_retry.map_or(100, |(_, p)| (p * 2).min(5_000));
            self.restore_retry = Some((self.now.saturating_add(pause), pause));
            let why = format!(
                "the store could not be read at start ({reason}); trying again in {pause} ms"
            );
            tracing::warn!("{why}");
            self.outputs.push_back(Output::Event(Event::Error {
                doc: None,
                reason: why,
            }));
            return;
        };
        self.restoring = None;
        self.restore_retry = None;
        self.internal.push_back(Msg::Restored {
            store,
            clock,
            floor,
            docs,
            records,
        });
    }

    /// Appends came back: each change is acknowledged to the core with its
    /// clock, refused as deleted, or reported as failed.
    fn appends_answered(&mut self, store: ChannelId, batches: Vec<BatchId>, result: StoreResult) {
        let results = match result {
            StoreResult::Appended(results) => results,
            other => {
                let reason = failure_reason(other);
                for batch in batches {
                    self.authorship.not_written(batch);
                    self.store_failed(StoreFailure::Append {
                        batch,
                        reason: reason.clone(),
                    });
                }
                return;
            }
        };
        for (i, batch) in batches.into_iter().enumerate() {
            match results.get(i) {
                Some(Ok(_)) => self.authorship.durable(batch),
                _ => self.authorship.not_written(batch),
            }
            match results.get(i) {
                Some(Ok(clock)) => {
                    self.internal
                        .push_back(store_ack(store, batch, AckStatus::Ok, Some(*clock)))
                }
                Some(Err(e)) if e.tombstoned => {
                    self.internal
                        .push_back(store_ack(store, batch, AckStatus::Deleted, None))
                }
                Some(Err(e)) => self.store_failed(StoreFailure::Append {
                    batch,
                    reason: e.reason.clone(),
                }),
                None => self.store_failed(StoreFailure::Append {
                    batch,
                    reason: "the store did not answer for this change".into(),
                }),
            }
        }
    }

    /// A page of the store's change feed: its deletions, then its changes.
    fn changes_read(
        &mut self,
        store: ChannelId,
        since: Clock,
        limit: usize,
        docs: Vec<docweave_core::StoredDoc>,
        deletions: Vec<(DocId, Clock)>,
    ) {
        let more = docs.len() >= limit;
        let last = docs.last().map(|d| d.clock).unwrap_or(since);
        self.drop_forgotten_replicas(&docs);
        let last_deleted = deletions.last().map(|d| d.1).unwrap_or(since);
        // Deletions first: a document deleted in the span read is
        // not loaded again for a change it had before.
        for (doc, _) in deletions {
            self.internal.push_back(Msg::Received {
                channel: store,
                message: Message::Delete { doc },
            });
        }
        self.internal.push_back(Msg::StoreChanged {
            store,
            docs,
            up_to: last.max(last_deleted).max(since),
            more,
        });
    }

    /// Replicas of documents in a feed answer that the core forgot (idle
    /// metadata past its bound) and that lack what the store has go:
    /// another server changed them in the store, and the core takes each as
    /// the store has it, without reading it, so a replica kept from before
    /// would be sent for the newer version, and the peers acknowledging it
    /// would be taken to hold what it lacked. What goes is clean (the core
    /// has nothing of it to write, and the application no handle on it), so
    /// the next command that needs it reads it back whole. Kept: replicas
    /// the application holds or edited (they may hold what no store does),
    /// those a waiting command, a reload or data still to be sent needs.
    fn drop_forgotten_replicas(&mut self, docs: &[docweave_core::StoredDoc]) {
        let mut dropped = false;
        for d in docs {
            let model = self.model();
            let known = model.doc_version(&d.doc).is_some() || model.is_dirty(&d.doc);
            if known
                || !self.replicas.holds(&d.doc)
                || self.replicas.in_use(&d.doc)
                || self.waiting.involves(&d.doc)
            {
                continue;
            }
            let engine = self.replicas.engine();
            let current = self
                .replicas
                .get(&d.doc)
                .is_some_and(|r| engine.version(r).includes(&d.version));
            // Read last: the outbox holds every item not yet sent.
            let to_send = || {
                self.outbox
                    .values()
                    .flatten()
                    .any(|item| waiting::item_docs(item).contains(&&d.doc))
            };
            if current || to_send() {
                continue;
            }
            self.replicas.remove(&d.doc);
            self.recent_exports.forget(&d.doc);
            dropped = true;
        }
        if dropped {
            let replicas = &self.replicas;
            self.authorship.retain(|doc| replicas.holds(doc));
        }
    }

    /// Another server's listener, read for the core (or not found).
    fn listener_read(
        &mut self,
        store: ChannelId,
        id: docweave_core::ListenerId,
        result: StoreResult,
    ) {
        let (record, failed) = match result {
            StoreResult::Record(Some(StateRecord::Listener(r))) => (Some(r), false),
            StoreResult::Record(_) => (None, false),
            other => {
                // Not "none": the client is told to try again, and a
                // listener the store may hold is not registered anew.
                tracing::warn!("the store could not read listener {id}: {other:?}");
                (None, true)
            }
        };
        self.internal.push_back(Msg::ListenerLoaded {
            store,
            id,
            record,
            failed,
        });
    }

    /// The core's load came back: import what the store held, then tell the core.
    pub(super) fn loaded(
        &mut self,
        store: ChannelId,
        doc: DocId,
        loaded: Option<docweave_adapters::Loaded>,
    ) {
        if self.model().is_tombstoned(&doc) {
            return;
        }
        let outcome = match loaded {
            Some(l) => {
                self.authorship.learn(&doc, &l.writers);
                let got = self.replicas.import_loaded(&doc, &l);
                LoadOutcome::Found {
                    version: got.version,
                    stored: got.stored,
                    unreadable: got.unreadable,
                    clock: l.clock,
                    bytes: l.bytes(),
                    meta: Some(l.meta.clone()),
                }
            }
            None => {
                // Likely created next; dropped again below if it is not.
                self.replicas.get_or_create(&doc);
                LoadOutcome::Missing
            }
        };
        self.step(Msg::StoreLoaded {
            store,
            doc: doc.clone(),
            outcome,
        });
        // All of it now: what is known of the document is read next.
        let may_yield = std::mem::replace(&mut self.may_yield, false);
        self.run();
        self.may_yield = may_yield;
        let known = self.model().doc_version(&doc).is_some() || self.model().is_dirty(&doc);
        if !known && !self.waiting.involves(&doc) {
            self.replicas.remove(&doc);
        }
    }

    /// Reads an evicted replica back from the store for the commands that
    /// need it (once: later commands wait for the same read).
    pub(super) fn reload(&mut self, doc: &DocId) {
        if self.waiting.reloading(doc) {
            return;
        }
        // A replica the store holds all of has no write out that a read
        // beside the writes could miss: such a read may run concurrently.
        let aside = !self.model().is_dirty(doc);
        let id = self.job_with(
            StoreOp::Load(doc.clone()),
            Purpose::Reload(doc.clone()),
            aside,
        );
        self.waiting.reload_started(doc.clone(), id);
    }

    /// An evicted replica came back from the store: what waited for it
    /// goes on, before what the core asks next.
    pub(super) fn reloaded(&mut self, doc: DocId, result: StoreResult) {
        self.waiting.reload_done(&doc);
        let mut waited = self.waiting.take();
        match result {
            StoreResult::Loaded(Some(l)) => {
                self.authorship.learn(&doc, &l.writers);
                let got = self.replicas.import_loaded(&doc, &l);
                // The core learns what the replica really holds, and what
                // the store does (both may be less than it believed).
                if let Some(store) = self.store {
                    self.step(Msg::StoreLoaded {
                        store,
                        doc: doc.clone(),
                        outcome: LoadOutcome::Found {
                            version: got.version,
                            stored: got.stored,
                            unreadable: got.unreadable,
                            clock: l.clock,
                            bytes: l.bytes(),
                            meta: Some(l.meta.clone()),
                        },
                    });
                }
            }
            StoreResult::Loaded(None) => {
                self.replicas.get_or_create(&doc);
                // The store has nothing: the replica holds nothing either.
                if let Some(store) = self.store {
                    self.step(Msg::StoreLoaded {
                        store,
                        doc: doc.clone(),
                        outcome: LoadOutcome::Found {
                            version: Default::default(),
                            stored: Default::default(),
                            unreadable: 0,
                            clock: Clock(0),
                            bytes: 0,
                            meta: None,
                        },
                    });
                }
            }
            other => {
                let reason = failure_reason(other);
                tracing::warn!("{doc} could not be read back from the store: {reason}");
                // Reading it again at once would fail again: the commands
                // that need it go without it (the core's own timeouts
                // offer the data again later).
                waited = waited
                    .into_iter()
                    .flat_map(|cmd| self.without_replica(&doc, &reason, cmd))
                    .collect();
            }
        }
        // They came before what the answer's step asked for.
        while let Some(cmd) = waited.pop_back() {
            self.cmds.push_front(cmd);
        }
    }

    /// A command that needs `doc`, whose replica could not be read back,
    /// without it: an import is answered as unavailable, a readiness
    /// becomes an error and the document's unavailability (in the
    /// application's order of events about it), a send loses that
    /// document's data (its transmissions time out and are offered again
    /// later). Other commands are kept.
    fn without_replica(&mut self, doc: &DocId, reason: &str, cmd: Cmd) -> Vec<Cmd> {
        let why = || format!("{doc} could not be read back from the store: {reason}");
        match cmd {
            Cmd::Import { id, doc: d, .. } if &d == doc => {
                self.internal.push_back(Msg::Imported {
                    id,
                    outcome: ImportOutcome::Unavailable { reason: why() },
                });
                Vec::new()
            }
            Cmd::Emit(Event::DocReady { doc: d, .. }) if &d == doc => vec![
                Cmd::Emit(Event::Error {
                    doc: Some(d.clone()),
                    reason: why(),
                }),
                Cmd::Emit(Event::DocUnavailable { doc: d }),
            ],
            Cmd::Send { channel, items } => {
                let items: Vec<Outgoing> = items
                    .into_iter()
                    .filter_map(|item| match item {
                        Outgoing::Data { doc: d, .. } if &d == doc => None,
                        Outgoing::Strands { id, items, more } => Some(Outgoing::Strands {
                            id,
                            items: items.into_iter().filter(|s| &s.doc != doc).collect(),
                            more,
                        }),
                        other => Some(other),
                    })
                    .collect();
                vec![Cmd::Send { channel, items }]
            }
            other => vec![other],
        }
    }
}

/// An acknowledgement from the store, as the core reads it.
fn store_ack(store: ChannelId, batch: BatchId, status: AckStatus, clock: Option<Clock>) -> Msg {
    Msg::Received {
        channel: store,
        message: Message::Ack {
            batch,
            status,
            clock,
        },
    }
}

/// Why a job failed, from an answer that is not the one it asked for.
fn failure_reason(result: StoreResult) -> String {
    match result {
        StoreResult::Failed(e) => e.reason,
        _ => "the store gave an unexpected answer".into(),
    }
}
