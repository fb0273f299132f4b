//! A store reached as a storage channel: it speaks the protocol, on its own
//! thread, because store calls block (SQLite owns its connection there).
//!
//! sync-request -> load, fold snapshot and changes into one snapshot -> sync-response;
//! data -> append (consecutive writes share one transaction) -> ack with the clock.

use crate::engine::DocEngine;
use crate::node::Input;
use docweave_adapters::{Append, Store, StoreError};
use docweave_core::{
    AckStatus, BatchId, ChannelId, Clock, DocId, DocMeta, Filter, Message, Msg, Reply, StateRecord,
    StoredDoc, VersionVector,
};
use std::sync::mpsc;

pub(crate) enum Job {
    Message(Message),
    /// Everything stored of a document, for the shell's own replica.
    Load(DocId, mpsc::Sender<Option<docweave_adapters::Loaded>>),
    Save(StateRecord),
    Purge(DocId),
}

/// The loop's handle on the store thread.
pub(crate) struct StoreBridge {
    jobs: mpsc::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the store remembered, for `Msg::Restored`.
pub(crate) struct Remembered {
    pub clock: Clock,
    pub docs: Vec<StoredDoc>,
    pub records: Vec<StateRecord>,
}

impl StoreBridge {
    /// Reads a document back, after every write queued before (jobs run in order).
    pub fn load(&self, doc: &DocId) -> Option<docweave_adapters::Loaded> {
        let (tx, rx) = mpsc::channel();
        self.jobs.send(Job::Load(doc.clone(), tx)).ok()?;
        rx.recv().ok().flatten()
    }

    pub fn send(&self, job: Job) {
        // A closed store thread means the node is closing; nothing to do.
        let _ = self.jobs.send(job);
    }

    /// Waits for every queued write to finish.
    pub fn close(mut self) {
        drop(self.jobs);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn remembered(store: &mut dyn Store) -> Result<Remembered, StoreError> {
    Ok(Remembered {
        clock: store.clock()?,
        docs: store.changes_since(Clock(0), &Filter::all(), usize::MAX)?,
        records: store.records()?,
    })
}

pub(crate) fn spawn<E: DocEngine + Clone>(
    mut store: Box<dyn Store>,
    engine: E,
    channel: ChannelId,
    to_loop: async_channel::Sender<Input<E>>,
) -> StoreBridge {
    let (jobs, rx) = mpsc::channel::<Job>();
    let thread = std::thread::spawn(move || {
        let reply = |message: Message| {
            let _ = to_loop.send_blocking(Input::Msg(Msg::Received { channel, message }));
        };
        let mut feed = Feed {
            seen: store.clock().unwrap_or_default(),
            own: Vec::new(),
        };
        loop {
            let first = match rx.recv_timeout(FEED_POLL) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    feed.poll(&mut *store, &engine, &reply);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut writes: Vec<(BatchId, Append)> = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Message(Message::Update {
                        doc,
                        batch,
                        data,
                        version,
                    }) => writes.push((batch, append(doc, data, version))),
                    Job::Message(Message::SyncResponse {
                        doc,
                        batch,
                        reply: Reply::Snapshot(data) | Reply::Delta(data),
                        version,
                    }) => writes.push((batch, append(doc, data, version))),
                    other => {
                        flush(&mut *store, &mut writes, &reply, &mut feed.own);
                        handle(&mut *store, &engine, other, &reply);
                    }
                }
                next = rx.try_recv().ok();
            }
            flush(&mut *store, &mut writes, &reply, &mut feed.own);
        }
    });
    StoreBridge {
        jobs,
        thread: Some(thread),
    }
}

fn append(doc: DocId, data: docweave_core::Payload, version: VersionVector) -> Append {
    Append {
        doc,
        meta: DocMeta::default(),
        data: data.as_bytes().to_vec(),
        version,
    }
}

/// Writes the pending appends in one transaction, then acknowledges each.
/// How often the store's clock feed is checked for other processes' writes.
const FEED_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Follows the store's clock feed: changes written by another process (or
/// another `Repo` on the same file) reach this node as store answers.
struct Feed {
    seen: Clock,
    own: Vec<Clock>,
}

impl Feed {
    fn poll<E: DocEngine>(&mut self, store: &mut dyn Store, engine: &E, reply: &impl Fn(Message)) {
        let Ok(now) = store.clock() else { return };
        if now <= self.seen {
            return;
        }
        let own = self
            .own
            .iter()
            .filter(|c| **c > self.seen && **c <= now)
            .count() as u64;
        let foreign = now.0 - self.seen.0 > own;
        if foreign {
            let changed = store
                .changes_since(self.seen, &Filter::all(), usize::MAX)
                .unwrap_or_default();
            for entry in changed {
                handle(
                    store,
                    engine,
                    Job::Message(Message::SyncRequest {
                        doc: entry.doc,
                        version: VersionVector::new(),
                        bidirectional: false,
                    }),
                    reply,
                );
            }
        }
        self.own.retain(|c| *c > now);
        self.seen = now;
    }
}

fn flush(
    store: &mut dyn Store,
    writes: &mut Vec<(BatchId, Append)>,
    reply: &impl Fn(Message),
    own: &mut Vec<Clock>,
) {
    if writes.is_empty() {
        return;
    }
    let batch: Vec<Append> = writes.iter().map(|(_, a)| a.clone()).collect();
    match store.append(&batch) {
        Ok(clocks) => {
            own.extend(clocks.iter().copied());
            for ((b, _), clock) in writes.iter().zip(clocks) {
                reply(Message::Ack {
                    batch: *b,
                    status: AckStatus::Ok,
                    clock: Some(clock),
                });
            }
        }
        Err(_) if writes.len() > 1 => {
            // One bad change must not sink the others: retry one by one.
            for (b, a) in writes.iter() {
                let status = match store.append(std::slice::from_ref(a)) {
                    Ok(clocks) => {
                        own.extend(clocks.iter().copied());
                        reply(Message::Ack {
                            batch: *b,
                            status: AckStatus::Ok,
                            clock: clocks.first().copied(),
                        });
                        continue;
                    }
                    Err(StoreError::Tombstoned(_)) => AckStatus::Deleted,
                    Err(e) => {
                        tracing::warn!("store: {e}");
                        AckStatus::Invalid
                    }
                };
                reply(Message::Ack {
                    batch: *b,
                    status,
                    clock: None,
                });
            }
        }
        Err(e) => {
            let status = if matches!(e, StoreError::Tombstoned(_)) {
                AckStatus::Deleted
            } else {
                AckStatus::Invalid
            };
            tracing::warn!("store: {e}");
            reply(Message::Ack {
                batch: writes[0].0,
                status,
                clock: None,
            });
        }
    }
    writes.clear();
}

fn handle<E: DocEngine>(store: &mut dyn Store, engine: &E, job: Job, reply: &impl Fn(Message)) {
    match job {
        Job::Message(Message::SyncRequest { doc, .. }) => {
            let (answer, version) = match store.load(&doc) {
                Ok(Some(loaded)) => {
                    // Fold snapshot and changes into one snapshot for the node.
                    let mut d = engine.create(0);
                    for bytes in loaded.snapshot.iter().chain(loaded.changes.iter()) {
                        let _ = engine.import(&mut d, bytes);
                    }
                    match engine.export(&d, None) {
                        Ok(data) => (
                            Reply::Snapshot(docweave_core::Payload::new(data)),
                            loaded.version,
                        ),
                        Err(e) => {
                            tracing::warn!("store: cannot rebuild {doc}: {e}");
                            (Reply::Unavailable, VersionVector::new())
                        }
                    }
                }
                Ok(None) => (Reply::Unavailable, VersionVector::new()),
                Err(e) => {
                    tracing::warn!("store: load {doc}: {e}");
                    (Reply::Unavailable, VersionVector::new())
                }
            };
            reply(Message::SyncResponse {
                doc,
                batch: BatchId(0),
                reply: answer,
                version,
            });
        }
        Job::Message(_) => {}
        Job::Load(doc, answer) => {
            let loaded = store.load(&doc).unwrap_or_else(|e| {
                tracing::warn!("store: load {doc}: {e}");
                None
            });
            let _ = answer.send(loaded);
        }
        Job::Save(record) => {
            if let Err(e) = store.save(&record) {
                tracing::warn!("store: save: {e}");
            }
        }
        Job::Purge(doc) => {
            if let Err(e) = store.purge(&doc) {
                tracing::warn!("store: purge {doc}: {e}");
            }
        }
    }
}
