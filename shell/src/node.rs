//! The loop: feeds inputs to `update` and carries out the commands.
//! No protocol decision is made here.

use crate::engine::DocEngine;
use crate::recording::Recorder;
use crate::storage::{Job, StoreBridge};
use docweave_core::{
    decode, encode, update, ChannelId, ChannelKind, Cmd, DocId, Event, Limits, Message, Model, Msg,
    Outgoing, Payload, PeerId, RemoteAddr, Reply, Strand,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Exports by (document, since): the bytes and the version they bring.
type ExportCache = std::collections::HashMap<
    (DocId, Option<docweave_core::VersionVector>),
    (Payload, docweave_core::VersionVector),
>;

/// Most inputs handled before the writes of a burst go out.
const BURST: usize = 256;

pub use docweave_adapters::Link;

/// How a remote is reached.
pub(crate) enum Remote<E: DocEngine> {
    /// A Repo of this process, through its input.
    Local(async_channel::Sender<Input<E>>),
    /// Anything else, through a dialer.
    Dialer(Dialer),
}

impl<E: DocEngine> Clone for Remote<E> {
    fn clone(&self) -> Self {
        match self {
            Remote::Local(s) => Remote::Local(s.clone()),
            Remote::Dialer(d) => Remote::Dialer(d.clone()),
        }
    }
}
use docweave_adapters::Outbound;

/// Opens links to remotes that are not Repos of this process (TCP, WebSocket, ...).
pub type Dialer = std::sync::Arc<
    dyn Fn(
            RemoteAddr,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Link, String>> + Send>>
        + Send
        + Sync,
>;

/// Asks the application side for something and gets an answer.
pub(crate) type Answer<T> = async_channel::Sender<T>;

/// The answer to an open: the application's handle, or why not.
type OpenAnswer<E> = Answer<Result<<E as DocEngine>::Handle, String>>;

pub(crate) enum Input<E: DocEngine> {
    Msg(Msg),
    Frame {
        channel: ChannelId,
        bytes: Vec<u8>,
    },
    Closed {
        channel: ChannelId,
    },
    Accept(Link),
    AddRemote {
        remote: RemoteAddr,
        how: Remote<E>,
        token: Option<String>,
    },
    Dialed {
        remote: RemoteAddr,
        link: Link,
    },
    LocalUpdate(DocId),
    Open {
        doc: DocId,
        reply: Answer<Result<E::Handle, String>>,
    },
    Watch {
        reply: Answer<async_channel::Receiver<Event>>,
    },
    PeerState {
        doc: DocId,
        peer: PeerId,
        reply: Answer<(
            Option<docweave_core::SyncState>,
            Option<docweave_core::VersionVector>,
        )>,
    },
    Dirty {
        doc: DocId,
        reply: Answer<(bool, Option<String>)>,
    },
    Resident {
        reply: Answer<usize>,
    },
    Summary {
        reply: Answer<crate::repo::Summary>,
    },
    Close {
        reply: Answer<()>,
    },
}

pub(crate) struct Node<E: DocEngine> {
    model: Option<Model>,
    engine: E,
    actor: u64,
    docs: BTreeMap<DocId, E::Doc>,
    guards: BTreeMap<DocId, Box<dyn std::any::Any + Send>>,
    links: BTreeMap<ChannelId, async_channel::Sender<Outbound>>,
    next_channel: u64,
    store: Option<(ChannelId, StoreBridge)>,
    remotes: BTreeMap<RemoteAddr, Remote<E>>,
    pending_opens: BTreeMap<DocId, Vec<OpenAnswer<E>>>,
    watchers: Vec<async_channel::Sender<Event>>,
    input: async_channel::Receiver<Input<E>>,
    me: async_channel::Sender<Input<E>>,
    started: Instant,
    wake_at: Option<u64>,
    recorder: Option<Recorder>,
    limits: Limits,
    /// Most documents kept in memory (evicted least recently used, with a store).
    max_docs: usize,
    /// Sends of the current burst, per channel, in order.
    outbox: BTreeMap<ChannelId, Vec<Outgoing>>,
    /// Exports made during the current flush, by (document, since).
    exports: Option<ExportCache>,
    /// Last use of each replica, by a counter: least recently used goes first.
    used: BTreeMap<DocId, u64>,
    uses: u64,
    /// The last error per document, for its status.
    errors: BTreeMap<DocId, String>,
}

impl<E: DocEngine> Node<E> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: Model,
        engine: E,
        actor: u64,
        input: async_channel::Receiver<Input<E>>,
        me: async_channel::Sender<Input<E>>,
        recorder: Option<Recorder>,
    ) -> Self {
        Self {
            model: Some(model),
            engine,
            actor,
            docs: BTreeMap::new(),
            guards: BTreeMap::new(),
            links: BTreeMap::new(),
            next_channel: 1,
            store: None,
            remotes: BTreeMap::new(),
            pending_opens: BTreeMap::new(),
            watchers: Vec::new(),
            input,
            me,
            started: Instant::now(),
            wake_at: None,
            recorder,
            limits: Limits::default(),
            max_docs: usize::MAX,
            outbox: BTreeMap::new(),
            exports: None,
            used: BTreeMap::new(),
            uses: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn set_max_docs(&mut self, n: usize) {
        self.max_docs = n;
    }

    /// Drops the least recently used replicas over the bound. Only with a
    /// store: without one, memory is the only copy.
    fn evict(&mut self) {
        if self.store.is_none() || self.docs.len() <= self.max_docs {
            return;
        }
        let mut by_age: Vec<(u64, DocId)> =
            self.used.iter().map(|(d, n)| (*n, d.clone())).collect();
        by_age.sort();
        for (_, doc) in by_age.into_iter().take(self.docs.len() - self.max_docs) {
            if self.model.as_ref().is_some_and(|m| m.is_dirty(&doc)) {
                continue;
            }
            self.docs.remove(&doc);
            self.guards.remove(&doc);
            self.used.remove(&doc);
        }
    }

    fn channel_id(&mut self) -> ChannelId {
        let c = ChannelId(self.next_channel);
        self.next_channel += 1;
        c
    }

    /// Attaches the store and tells the core what it remembered.
    pub fn attach_store(
        &mut self,
        mut store: Box<dyn docweave_adapters::Store>,
    ) -> Result<(), String> {
        let remembered = crate::storage::remembered(&mut *store).map_err(|e| e.to_string())?;
        let channel = self.channel_id();
        let bridge = crate::storage::spawn(store, self.engine.clone(), channel, self.me.clone());
        self.store = Some((channel, bridge));
        self.feed(Msg::ChannelAdded {
            channel,
            kind: ChannelKind::Storage,
            remote: None,
        });
        self.feed(Msg::Restored {
            store: channel,
            clock: remembered.clock,
            docs: remembered.docs,
            records: remembered.records,
        });
        Ok(())
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs until closed.
    pub async fn run(mut self) {
        self.flush();
        loop {
            let next = match self.wake_at {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(self.now()));
                    futures_lite::future::or(async { self.input.recv().await.ok() }, async {
                        smol::Timer::after(wait).await;
                        None
                    })
                    .await
                }
                None => self.input.recv().await.ok(),
            };
            match next {
                Some(Input::Close { reply }) => {
                    self.flush();
                    self.shutdown();
                    let _ = reply.send(()).await;
                    return;
                }
                Some(input) => {
                    self.handle(input);
                    // Take what else is already waiting before writing, so
                    // the answers to one burst leave as one frame per link.
                    for _ in 0..BURST {
                        match self.input.try_recv() {
                            Ok(Input::Close { reply }) => {
                                self.flush();
                                self.shutdown();
                                let _ = reply.send(()).await;
                                return;
                            }
                            Ok(more) => self.handle(more),
                            Err(_) => break,
                        }
                    }
                    self.flush();
                }
                None if self.input.is_closed() => {
                    self.flush();
                    self.shutdown();
                    return;
                }
                None => {
                    let now = self.now();
                    self.wake_at = None;
                    self.feed(Msg::Tick { now });
                    self.flush();
                }
            }
        }
    }

    /// Writes what the steps since the last flush sent, one frame per channel.
    fn flush(&mut self) {
        // Within one flush documents do not change: subscribers at the same
        // version share one export (a fan-out to 50 clients exports once).
        self.exports = Some(std::collections::HashMap::new());
        for (channel, items) in std::mem::take(&mut self.outbox) {
            self.send(channel, items);
        }
        self.exports = None;
    }

    fn shutdown(&mut self) {
        for (_, tx) in std::mem::take(&mut self.links) {
            tx.close();
        }
        if let Some((_, bridge)) = self.store.take() {
            bridge.close();
        }
    }

    fn handle(&mut self, input: Input<E>) {
        match input {
            Input::Msg(m) => self.feed(m),
            Input::Frame { channel, bytes } => match decode(&bytes, &self.limits) {
                Ok(messages) => {
                    for message in messages {
                        self.feed(Msg::Received { channel, message });
                    }
                }
                Err(e) => {
                    tracing::warn!("{channel}: bad frame: {e}");
                    self.feed(Msg::FrameRejected {
                        channel,
                        reason: e.to_string(),
                    });
                }
            },
            Input::Closed { channel } => {
                if self.links.remove(&channel).is_some() {
                    self.feed(Msg::ChannelRemoved { channel });
                }
            }
            Input::Accept(link) => self.add_link(link, None),
            Input::Dialed { remote, link } => {
                if self.remotes.contains_key(&remote) {
                    self.add_link(link, Some(remote));
                } else {
                    link.close("no longer wanted");
                }
            }
            Input::AddRemote { remote, how, token } => {
                self.remotes.insert(remote.clone(), how);
                self.feed(Msg::Connect {
                    remote,
                    token,
                    filter: docweave_core::Filter::all(),
                });
            }
            Input::LocalUpdate(doc) => {
                if let Some(d) = self.docs.get(&doc) {
                    let version = self.engine.version(d);
                    self.feed(Msg::LocalChange {
                        doc: doc.clone(),
                        version: version.clone(),
                    });
                    // The core reports remote changes; local ones are told here.
                    let me = self.model.as_ref().map(|m| m.config().peer.clone());
                    self.emit(Event::DocChanged {
                        doc,
                        version,
                        from: me,
                    });
                }
            }
            Input::Open { doc, reply } => {
                if self
                    .model
                    .as_ref()
                    .is_some_and(|m| m.doc_version(&doc).is_some())
                {
                    let engine = self.engine.clone();
                    let handle = engine.handle(self.doc_mut(&doc));
                    let _ = reply.try_send(Ok(handle));
                    return;
                }
                self.pending_opens
                    .entry(doc.clone())
                    .or_default()
                    .push(reply);
                self.feed(Msg::OpenDoc {
                    doc,
                    meta: Default::default(),
                });
            }
            Input::Watch { reply } => {
                let (tx, rx) = async_channel::unbounded();
                self.watchers.push(tx);
                let _ = reply.try_send(rx);
            }
            Input::PeerState { doc, peer, reply } => {
                let state = self
                    .model
                    .as_ref()
                    .map(|m| (m.peer_state(&peer, &doc), m.doc_version(&doc).cloned()));
                let _ = reply.try_send(state.unwrap_or((None, None)));
            }
            Input::Dirty { doc, reply } => {
                let dirty = self.model.as_ref().is_some_and(|m| m.is_dirty(&doc));
                let _ = reply.try_send((dirty, self.errors.get(&doc).cloned()));
            }
            Input::Summary { reply } => {
                let summary = match self.model.as_ref() {
                    Some(m) => crate::repo::Summary {
                        peer: m.config().peer.clone(),
                        clock: m.clock(),
                        docs: m.doc_summaries(),
                        peers: m.peer_summaries(),
                        resident: self.docs.len(),
                    },
                    None => crate::repo::Summary::default(),
                };
                let _ = reply.try_send(summary);
            }
            Input::Resident { reply } => {
                let _ = reply.try_send(self.docs.len());
            }
            Input::Close { .. } => {}
        }
    }

    fn add_link(&mut self, link: Link, remote: Option<RemoteAddr>) {
        let channel = self.channel_id();
        self.links.insert(channel, link.tx);
        let me = self.me.clone();
        let rx = link.rx;
        smol::spawn(async move {
            while let Ok(bytes) = rx.recv().await {
                if me.send(Input::Frame { channel, bytes }).await.is_err() {
                    return;
                }
            }
            let _ = me.send(Input::Closed { channel }).await;
        })
        .detach();
        self.feed(Msg::ChannelAdded {
            channel,
            kind: ChannelKind::Network,
            remote,
        });
    }

    /// Feeds one message to the core and carries out what it says.
    pub fn feed(&mut self, msg: Msg) {
        let Some(model) = self.model.take() else {
            return;
        };
        let recorded = self.recorder.is_some().then(|| msg.clone());
        let (model, cmds) = update(model, msg);
        if let (Some(r), Some(input)) = (self.recorder.as_mut(), recorded) {
            r.record(input, &cmds);
        }
        self.wake_at = model.wake_at();
        self.model = Some(model);
        for cmd in cmds {
            self.execute(cmd);
        }
        self.evict();
    }

    /// The shell's replica of a document, loaded from the store the first
    /// time it is needed (after a restart, or after eviction).
    fn doc_mut(&mut self, doc: &DocId) -> &mut E::Doc {
        self.uses += 1;
        self.used.insert(doc.clone(), self.uses);
        let Self {
            docs,
            guards,
            engine,
            me,
            actor,
            store,
            ..
        } = self;
        docs.entry(doc.clone()).or_insert_with(|| {
            let mut d = engine.create(*actor);
            if let Some(loaded) = store.as_ref().and_then(|(_, s)| s.load(doc)) {
                for bytes in loaded.snapshot.iter().chain(loaded.changes.iter()) {
                    let _ = engine.import(&mut d, bytes);
                }
            }
            let me = me.clone();
            let id = doc.clone();
            let notify = Box::new(move || {
                let _ = me.try_send(Input::LocalUpdate(id.clone()));
            });
            guards.insert(doc.clone(), engine.watch_local(&d, notify));
            d
        })
    }

    fn execute(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Send { channel, items } => self.outbox.entry(channel).or_default().extend(items),
            Cmd::Import { id, doc, data } => {
                let engine = self.engine.clone();
                let d = self.doc_mut(&doc);
                let outcome = engine.import(d, data.as_bytes());
                let _ = self.me.try_send(Input::Msg(Msg::Imported { id, outcome }));
            }
            Cmd::Close { channel, reason } => {
                // What was said on this channel goes out before it closes.
                if let Some(items) = self.outbox.remove(&channel) {
                    self.send(channel, items);
                }
                tracing::info!("closing {channel}: {reason}");
                if let Some(tx) = self.links.remove(&channel) {
                    let _ = tx.try_send(Outbound::Close(reason));
                    tx.close();
                    let _ = self
                        .me
                        .try_send(Input::Msg(Msg::ChannelRemoved { channel }));
                }
            }
            Cmd::Dial { remote } => match self.remotes.get(&remote).cloned() {
                Some(Remote::Local(inbox)) => {
                    let (mine, theirs) = docweave_adapters::transport::memory_pair();
                    if inbox.try_send(Input::Accept(theirs)).is_ok() {
                        self.add_link(mine, Some(remote));
                    } else {
                        let _ = self.me.try_send(Input::Msg(Msg::ConnectFailed { remote }));
                    }
                }
                Some(Remote::Dialer(dial)) => {
                    // Dialing takes time: it runs aside and reports back.
                    let me = self.me.clone();
                    smol::spawn(async move {
                        let input = match dial(remote.clone()).await {
                            Ok(link) => Input::Dialed { remote, link },
                            Err(e) => {
                                tracing::info!("dialing {remote} failed: {e}");
                                Input::Msg(Msg::ConnectFailed { remote })
                            }
                        };
                        let _ = me.send(input).await;
                    })
                    .detach();
                }
                None => {
                    let _ = self.me.try_send(Input::Msg(Msg::ConnectFailed { remote }));
                }
            },
            Cmd::Save(record) => {
                if let Some((_, s)) = &self.store {
                    s.send(Job::Save(record));
                }
            }
            Cmd::Purge { doc } => {
                self.docs.remove(&doc);
                self.guards.remove(&doc);
                if let Some((_, s)) = &self.store {
                    s.send(Job::Purge(doc));
                }
            }
            Cmd::WakeAt(_) => {}
            Cmd::Emit(event) => self.emit(event),
            Cmd::Log { level, text } => match level {
                docweave_core::Level::Info => tracing::info!("{text}"),
                docweave_core::Level::Warn => tracing::warn!("{text}"),
            },
        }
    }

    fn emit(&mut self, event: Event) {
        // The last error of a document stands until something succeeds for it.
        match &event {
            Event::Error {
                doc: Some(doc),
                reason,
            } => {
                self.errors.insert(doc.clone(), reason.clone());
            }
            Event::DocChanged { doc, .. }
            | Event::Durable { doc, .. }
            | Event::AckedByRemote { doc, .. } => {
                self.errors.remove(doc);
            }
            _ => {}
        }
        match &event {
            Event::DocReady { doc, .. } => {
                let engine = self.engine.clone();
                let handle = engine.handle(self.doc_mut(doc));
                for r in self.pending_opens.remove(doc).unwrap_or_default() {
                    let _ = r.try_send(Ok(handle.clone()));
                }
            }
            Event::DocUnavailable { doc } => {
                for r in self.pending_opens.remove(doc).unwrap_or_default() {
                    let _ = r.try_send(Err(format!("{doc} is not available")));
                }
            }
            _ => {}
        }
        self.watchers.retain(|w| w.try_send(event.clone()).is_ok());
    }

    fn resolve(&mut self, items: Vec<Outgoing>) -> Vec<Message> {
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
                    let key = (doc.clone(), since.clone());
                    let cached = self.exports.as_ref().and_then(|c| c.get(&key).cloned());
                    let (data, version) = match cached {
                        Some(hit) => hit,
                        None => {
                            let engine = self.engine.clone();
                            let d = self.doc_mut(&doc);
                            let version = engine.version(d);
                            let data = match engine.export(d, since.as_ref()) {
                                Ok(b) => Payload::new(b),
                                Err(e) => {
                                    tracing::warn!("export {doc}: {e}");
                                    continue;
                                }
                            };
                            if let Some(c) = self.exports.as_mut() {
                                c.insert(key, (data.clone(), version.clone()));
                            }
                            (data, version)
                        }
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
                    let engine = self.engine.clone();
                    let mut strands = Vec::with_capacity(items.len());
                    for s in items {
                        let d = self.doc_mut(&s.doc);
                        let since = if s.since.is_empty() {
                            None
                        } else {
                            Some(&s.since)
                        };
                        let Ok(data) = engine.export(d, since) else {
                            continue;
                        };
                        let version = engine.version(d);
                        strands.push(Strand {
                            doc: s.doc,
                            meta: s.meta,
                            since: s.since,
                            data: Payload::new(data),
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

    fn send(&mut self, channel: ChannelId, items: Vec<Outgoing>) {
        let messages = self.resolve(items);
        if messages.is_empty() {
            return;
        }
        if let Some((store_channel, bridge)) = &self.store {
            if *store_channel == channel {
                for m in messages {
                    bridge.send(Job::Message(m));
                }
                return;
            }
        }
        let Some(tx) = self.links.get(&channel) else {
            return;
        };
        match encode(&messages) {
            Ok(frame) => {
                let _ = tx.try_send(Outbound::Frame(frame));
            }
            Err(e) => tracing::warn!("{channel}: cannot encode: {e}"),
        }
    }
}
