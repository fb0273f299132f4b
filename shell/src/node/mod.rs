//! The node: everything docweave does besides raw I/O, deterministic and
//! driven from outside.
//!
//! It holds the core's model, the document replicas, frame assembly and the
//! store jobs. It owns no thread, socket or clock: every input comes with the
//! time, and what it wants done comes out as [`Output`]s to poll. The smol
//! loop behind [`crate::Repo`] is one driver; the simulator in `tests/`
//! and a host's own loop are others.
//!
//! A host loop, in outline:
//!
//! ```
//! use docweave_core::Config;
//! use docweave_shell::{LoroEngine, Node, NodeOptions, Output};
//!
//! let mut node = Node::new(Config::new("laptop"), LoroEngine, NodeOptions::default());
//! let start = std::time::Instant::now();
//! let now = || start.elapsed().as_millis() as u64;
//! node.handle(now(), docweave_shell::Input::Open { doc: docweave_core::DocId::new("notes") });
//! while let Some(output) = node.poll_output() {
//!     match output {
//!         Output::Transmit { channel, frame } => { /* write `frame` to that connection */ }
//!         Output::TransmitShared { channel, frame } => {
//!             /* write `frame.chunk(0)`, `frame.chunk(1)`, ... up to `frame.chunk_count()` */
//!         }
//!         Output::Close { channel, reason } => { /* close it */ }
//!         Output::Dial { remote } => { /* connect, then `channel_opened(now, Some(remote))` */ }
//!         Output::Store(job) => { /* run_job(store, job.op), then feed `Input::Store` */ }
//!         Output::Event(event) => { /* tell the application */ }
//!         Output::Authenticate { channel, check } => {
//!             /* await `check.take()` aside, then feed `Input::Checked` */
//!         }
//!     }
//! }
//! // Sleep until `node.poll_timeout()` or the next input, then feed `Input::Timeout`.
//! ```

mod checks;
mod chunks;
mod counting;
mod outbox;
mod recent_exports;
mod repeated_logs;
mod replicas;
mod store_jobs;

pub use replicas::LocalNotify;
pub use store_jobs::{run_job, JobError, StoreAnswer, StoreJob, StoreOp, StoreResult};

use crate::engine::{DocEngine, ExportError};
use docweave_core::{
    decode_frame, update, AckStatus, BatchId, ChannelId, ChannelKind, Clock, Cmd, Config, DocId,
    Event, Filter, ImportId, ImportOutcome, Limits, LoadOutcome, Message, Millis, Model, Msg,
    Namespace, Outgoing, Payload, RemoteAddr, StateRecord, StoreFailure,
};
use replicas::Replicas;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Settings of a node that are not the core's configuration.
#[derive(Debug, Clone, Copy)]
pub struct NodeOptions {
    /// The CRDT actor number of local edits; must differ across sessions of a node.
    pub actor: u64,
    /// Whether a store is attached (its jobs come out as [`Output::Store`]).
    pub store: bool,
    /// Most replicas kept in memory (evicted least recently used; only with a store).
    pub max_docs: usize,
    /// Bounds on frames read from channels.
    pub limits: Limits,
    /// Frames larger than this cross as chunk frames of this size.
    pub chunk_size: usize,
    /// The largest message (a snapshot or an update) sent or accepted.
    pub max_message: usize,
    /// Bytes held at once for messages being put back together, on all
    /// channels together.
    pub reassembly_budget: usize,
    /// A split message not whole this long after its first chunk is dropped.
    pub reassembly_deadline_ms: Millis,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            actor: 1,
            store: false,
            max_docs: usize::MAX,
            limits: Limits::default(),
            chunk_size: 1024 * 1024,
            max_message: 512 * 1024 * 1024,
            reassembly_budget: 1024 * 1024 * 1024,
            reassembly_deadline_ms: 120_000,
        }
    }
}

/// What a driver feeds the node, always with the time it happened. New
/// inputs may come with new versions (`Output`, which a host must carry
/// out in full, stays exhaustive).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// One frame arrived on a channel.
    Frame {
        /// The channel, from [`Node::channel_opened`].
        channel: ChannelId,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// A channel's connection ended.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
    },
    /// A dial asked for with [`Output::Dial`] failed.
    DialFailed {
        /// Where.
        remote: RemoteAddr,
    },
    /// The answer to an [`Output::Store`] job.
    Store(StoreAnswer),
    /// The time from [`Node::poll_timeout`] has come.
    Timeout,
    /// The application committed edits through a document's handle.
    LocalChange {
        /// The document.
        doc: DocId,
    },
    /// The application made an update with its own CRDT library: import it
    /// as a local change (the document must be open).
    LocalUpdate {
        /// The document.
        doc: DocId,
        /// The update's bytes.
        bytes: Vec<u8>,
    },
    /// The application wants a document: [`Event::DocReady`] (then
    /// [`Node::doc_handle`]) or [`Event::DocUnavailable`] follows.
    Open {
        /// The document.
        doc: DocId,
    },
    /// The application deletes a document.
    Delete {
        /// The document.
        doc: DocId,
    },
    /// The application sets (or clears, with empty data) its presence.
    SetPresence {
        /// The document.
        doc: DocId,
        /// The namespace.
        namespace: Namespace,
        /// The data.
        data: Payload,
    },
    /// The application wants a peer to confirm what it keeps of a
    /// document (the answer updates [`docweave_core::Model::peer_state`]).
    AskPeer {
        /// The document.
        doc: DocId,
        /// The peer.
        peer: docweave_core::PeerId,
    },
    /// The application asks a connected peer which documents it may read
    /// there ([`Event::DocList`] answers).
    ListRemote {
        /// The peer.
        peer: docweave_core::PeerId,
        /// Continue after this document (paging).
        after: Option<DocId>,
    },
    /// The application wants to stay connected to a remote.
    Connect {
        /// Where.
        remote: RemoteAddr,
        /// The token to present.
        token: Option<String>,
        /// Which documents to follow there.
        filter: Filter,
    },
    /// The store, shared with other processes, announced that one of them
    /// wrote ([`Store::watch`](docweave_adapters::Store::watch)): the node
    /// reads its change feed now.
    StoreAnnounced,
    /// The operator's permission rules now, replacing the configured ones.
    Rules(docweave_core::Rules),
    /// The static tokens (and grants) now, replacing the configured ones.
    Tokens {
        /// Tokens that grant any peer id.
        tokens: Vec<String>,
        /// Tokens that grant some peer ids.
        grants: Vec<docweave_core::Grant>,
    },
    /// A new token for a remote (a refresh before the old one expires):
    /// presented at once on a live connection that speaks protocol 3, and
    /// in every later hello.
    SetToken {
        /// Where.
        remote: RemoteAddr,
        /// The token.
        token: String,
    },
    /// The operator's revocations now (replacing the last): connections of
    /// revoked tokens and identities are closed at once.
    Revoked(docweave_core::Revocations),
    /// The answer to [`Output::Authenticate`] for a channel's token.
    Checked {
        /// The channel whose hello (or reauth) waited for it.
        channel: ChannelId,
        /// What the checker said.
        checked: crate::Checked,
    },
    /// The host stops this node: clients are told to go elsewhere and come
    /// back after `retry_after_ms` (see `docweave_core::Msg::Drain`).
    Drain {
        /// Why, for the clients' logs.
        reason: String,
        /// When they should dial again, in milliseconds.
        retry_after_ms: Millis,
    },
    /// The operator cuts connections off (see `docweave_core::Msg::Disconnect`).
    Disconnect {
        /// Every connection of this identity.
        peer: Option<docweave_core::PeerId>,
        /// This connection.
        channel: Option<ChannelId>,
        /// Why, for the client.
        reason: String,
    },
    /// Another process sharing the store published these bytes (a frame of
    /// presence messages, see [`Store::publish`](docweave_adapters::Store::publish)).
    StorePublished {
        /// The frame.
        bytes: Vec<u8>,
    },
}

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
    /// Run a job on the store ([`run_job`]) and feed the answer back, in job order.
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

/// Sees every step of the core: the time, the input and the commands.
pub type StepHook = Box<dyn FnMut(Millis, &Msg, &[Cmd]) + Send>;

/// Why the node asked its store for something.
enum Purpose {
    Restore,
    Appends(Vec<BatchId>),
    /// The core asked to load a document (since a clock: only what the
    /// replica, resident when asked, lacks).
    Load(DocId, Option<Clock>),
    /// The node reloads an evicted replica; everything waits for it.
    Reload(DocId),
    Changes {
        since: Clock,
        limit: usize,
    },
    Save(StateRecord),
    Purge(DocId),
    Publish,
    /// The core asked whether another server registered this listener.
    Listener(docweave_core::ListenerId),
}

/// One thing for the store, in the order the core asked.
enum StoreItem {
    Append(BatchId, docweave_adapters::Append),
    Op(StoreOp, Purpose),
}

/// The deterministic node. See the module docs for the host loop.
pub struct Node<E: DocEngine> {
    model: Option<Model>,
    replicas: Replicas<E>,
    options: NodeOptions,
    now: Millis,
    store: Option<ChannelId>,
    channels: BTreeSet<ChannelId>,
    next_channel: u64,
    next_job: u64,
    jobs: BTreeMap<u64, Purpose>,
    /// Core commands not yet carried out (a reload may hold them).
    cmds: VecDeque<Cmd>,
    /// Follow-ups for the core, fed after the current commands.
    internal: VecDeque<Msg>,
    /// `Imported` answers queued at the front by the commands being run.
    imports_ahead: usize,
    /// Imports into one document not carried out yet, in order: updates
    /// that arrive together are imported together (see [`Node::run`]).
    deferred: Vec<(ImportId, DocId, Payload)>,
    /// Exports kept across flushes for readers that come one after another.
    recent_exports: recent_exports::RecentExports,
    /// Lines the core logs again and again (a store that is down).
    repeated_logs: repeated_logs::RepeatedLogs,
    /// The reload everything waits for, and the inputs that wait with it.
    blocked: Option<u64>,
    /// A start-up read of the store that failed is tried again at this
    /// time, after this pause (which doubles, up to 5 s); everything waits.
    restore_retry: Option<(Millis, Millis)>,
    held: VecDeque<(Millis, Held)>,
    outbox: BTreeMap<ChannelId, Vec<Outgoing>>,
    store_queue: Vec<StoreItem>,
    outputs: VecDeque<Output>,
    hook: Option<StepHook>,
    /// Checks signed tokens of hellos before the core sees them.
    authenticator: Option<Arc<dyn crate::Authenticator>>,
    /// Connections whose token is being checked elsewhere.
    checking: BTreeMap<ChannelId, checks::Checking>,
    chunks: chunks::Chunks,
    next_chunk_id: u32,
    /// Where it counts for operators, if anywhere.
    metrics: Option<crate::metrics::Metrics>,
    /// Counters by message kind, and when each update not yet
    /// acknowledged arrived (for its latency).
    counting: counting::Counting,
}

impl<E: DocEngine> Node<E> {
    /// A node with `config`, documents of `engine`. With `options.store`,
    /// its first output is the job that restores what the store remembers.
    pub fn new(config: Config, engine: E, options: NodeOptions) -> Self {
        Self::with_notify(config, engine, options, Arc::new(|_| {}))
    }

    /// Like [`Node::new`]; `notify` is called whenever the application
    /// commits an edit through a handle (feed [`Input::LocalChange`] then).
    pub fn with_notify(
        config: Config,
        engine: E,
        options: NodeOptions,
        notify: LocalNotify,
    ) -> Self {
        let mut node = Self {
            model: Some(Model::new(config)),
            replicas: Replicas::new(engine, options.actor, notify),
            options,
            now: 0,
            store: None,
            channels: BTreeSet::new(),
            next_channel: 1,
            next_job: 1,
            jobs: BTreeMap::new(),
            cmds: VecDeque::new(),
            internal: VecDeque::new(),
            imports_ahead: 0,
            deferred: Vec::new(),
            recent_exports: Default::default(),
            repeated_logs: Default::default(),
            blocked: None,
            restore_retry: None,
            held: VecDeque::new(),
            outbox: BTreeMap::new(),
            store_queue: Vec::new(),
            outputs: VecDeque::new(),
            hook: None,
            authenticator: None,
            checking: BTreeMap::new(),
            chunks: chunks::Chunks::new(
                options.max_message,
                options.reassembly_budget,
                options.reassembly_deadline_ms,
            ),
            next_chunk_id: 1,
            metrics: None,
            counting: Default::default(),
        };
        if options.store {
            let channel = node.new_channel();
            node.store = Some(channel);
            // Fed with the restore's answer, so a hook set now sees it.
            node.internal.push_back(Msg::ChannelAdded {
                channel,
                kind: ChannelKind::Storage,
                remote: None,
            });
            // Nothing is decided before the store said what it remembers.
            let id = node.job(StoreOp::Restore, Purpose::Restore);
            node.blocked = Some(id);
        }
        node
    }

    /// Sees every core step from now on (recording, traces).
    pub fn set_hook(&mut self, hook: StepHook) {
        self.hook = Some(hook);
    }

    /// Checks the token of every hello from now on. Set the core's
    /// `Config::signed_tokens` too, so a hello without any token is refused
    /// ([`crate::RepoBuilder::authenticator`] does both).
    pub fn set_authenticator(&mut self, authenticator: Arc<dyn crate::Authenticator>) {
        self.authenticator = Some(authenticator);
    }

    /// A frame from a connection: chunks put together, messages decoded
    /// and handed on; held whole while the connection's token is checked
    /// elsewhere.
    fn frame_in(&mut self, channel: ChannelId, bytes: Vec<u8>) {
        if self.checking.contains_key(&channel) {
            return self.hold(channel, checks::Later::Frame(bytes));
        }
        let bytes = match docweave_core::parse_chunk(&bytes) {
            // Nothing is held for a channel before its handshake.
            Some(_) if self.model().channel_peer(channel).is_none() => {
                self.internal.push_back(Msg::ChunkBeforeHello { channel });
                return;
            }
            Some(chunk) => match self.chunks.take(channel, chunk, self.now) {
                chunks::Taken::Pending => return,
                chunks::Taken::Whole(frame) => frame,
                chunks::Taken::TooLarge { size, limit } => {
                    self.internal.push_back(Msg::TooLarge {
                        channel,
                        size,
                        limit,
                    });
                    return;
                }
                chunks::Taken::Refused(e) => {
                    tracing::warn!("{channel}: {e}; the frame is dropped");
                    return;
                }
            },
            None => bytes,
        };
        // A whole (reassembled) frame may be larger than one frame.
        let limits = Limits {
            max_frame: self.options.limits.max_frame.max(self.options.max_message),
            ..self.options.limits
        };
        match decode_frame(&bytes, &limits) {
            Ok(frame) => {
                for message in frame.messages {
                    self.message_in(channel, message);
                }
                for kind in frame.unknown {
                    self.internal.push_back(Msg::Unsupported { channel, kind });
                }
            }
            Err(e) => {
                tracing::warn!("{channel}: bad frame: {e}");
                self.internal.push_back(Msg::FrameRejected {
                    channel,
                    reason: e.to_string(),
                });
            }
        }
    }

    /// The core's model, for queries.
    pub fn model(&self) -> &Model {
        // Only empty during a step, and no caller can observe that.
        self.model.as_ref().unwrap_or_else(|| empty_model())
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        self.replicas.engine()
    }

    /// The application's handle on an open document, if its replica is in memory.
    pub fn doc_handle(&mut self, doc: &DocId) -> Option<E::Handle> {
        let engine = self.replicas.engine().clone();
        self.replicas.touch(doc).map(|d| engine.handle(d))
    }

    /// The replica of a document, if in memory.
    pub fn replica(&self, doc: &DocId) -> Option<&E::Doc> {
        self.replicas.get(doc)
    }

    /// How many replicas are in memory.
    pub fn resident(&self) -> usize {
        self.replicas.len()
    }

    /// Whether everything waits for a store answer (a replica reload).
    pub fn waits_for_store(&self) -> bool {
        self.blocked.is_some()
    }

    /// When the node next wants [`Input::Timeout`]. `None` while it waits
    /// for its store (timers fire once the answer is in).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.blocked.is_some() {
            return self
                .restore_retry
                .map(|(at, _)| at)
                .filter(|at| *at != Millis::MAX);
        }
        self.model().wake_at()
    }

    /// A connection opened (accepted, or dialed for `remote`): its channel id
    /// names it in inputs and outputs from now on.
    pub fn channel_opened(&mut self, now: Millis, remote: Option<RemoteAddr>) -> ChannelId {
        let channel = self.new_channel();
        self.channels.insert(channel);
        self.arrive(now, Held::Opened { channel, remote });
        channel
    }

    /// Feeds one input, which happened at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.arrive(now, Held::Input(input));
    }

    /// The next thing to do; `None` when there is nothing now.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.flush();
        }
        self.outputs.pop_front()
    }

    fn arrive(&mut self, now: Millis, item: Held) {
        if let (Some((at, pause)), Held::Input(Input::Timeout)) = (self.restore_retry, &item) {
            if now >= at {
                // The store is asked again what it remembers (no other
                // retry while this one is out).
                self.now = self.now.max(now);
                self.restore_retry = Some((Millis::MAX, pause));
                let id = self.job(StoreOp::Restore, Purpose::Restore);
                self.blocked = Some(id);
                return;
            }
        }
        if let Some(blocker) = self.blocked {
            let unblocks = matches!(&item, Held::Input(Input::Store(a)) if a.id == blocker);
            if !unblocks {
                // One pending timeout is enough.
                let again = matches!(item, Held::Input(Input::Timeout))
                    && self
                        .held
                        .iter()
                        .any(|(_, h)| matches!(h, Held::Input(Input::Timeout)));
                if !again {
                    self.held.push_back((now, item));
                }
                return;
            }
        }
        self.take(now, item);
        self.drain_held();
    }

    /// Inputs that waited for a reload, in arrival order, until the next one blocks.
    fn drain_held(&mut self) {
        while self.blocked.is_none() {
            let Some((now, item)) = self.held.pop_front() else {
                break;
            };
            self.take(now, item);
        }
    }

    fn take(&mut self, now: Millis, item: Held) {
        self.now = self.now.max(now);
        self.chunks.expire(self.now);
        match item {
            Held::Opened { channel, remote } => self.step(Msg::ChannelAdded {
                channel,
                kind: ChannelKind::Network,
                remote,
            }),
            Held::Input(input) => self.input(input),
        }
        self.run();
    }

    fn new_channel(&mut self) -> ChannelId {
        let c = ChannelId(self.next_channel);
        self.next_channel += 1;
        c
    }

    fn me(&self) -> docweave_core::PeerId {
        self.model().config().peer.clone()
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Frame { channel, bytes } => {
                if !self.channels.contains(&channel) {
                    return;
                }
                self.count_frame_in(bytes.len());
                self.frame_in(channel, bytes);
            }
            Input::ChannelClosed { channel } => {
                self.chunks.drop_channel(channel);
                self.checking.remove(&channel);
                if self.channels.remove(&channel) {
                    self.outbox.remove(&channel);
                    self.step(Msg::ChannelRemoved { channel });
                }
            }
            Input::DialFailed { remote } => self.step(Msg::ConnectFailed { remote }),
            Input::Store(answer) => self.store_answer(answer),
            Input::Timeout => self.step(Msg::Tick),
            Input::LocalChange { doc } => self.local_change(doc),
            Input::LocalUpdate { doc, bytes } => {
                let ready = self.model().doc_version(&doc).is_some();
                let engine = self.replicas.engine().clone();
                match self.replicas.touch(&doc) {
                    Some(d) if ready => match engine.import(d, &bytes) {
                        Ok(ImportOutcome::Failed { reason }) => {
                            self.outputs.push_back(Output::Event(Event::Error {
                                doc: Some(doc),
                                reason: format!("the local update does not import: {reason}"),
                            }));
                        }
                        Ok(_) => self.local_change(doc),
                        Err(e) => self.replica_broke(&doc, &e),
                    },
                    _ => self.outputs.push_back(Output::Event(Event::Error {
                        reason: format!("{doc} is not open here; open it before updating it"),
                        doc: Some(doc),
                    })),
                }
            }
            Input::Open { doc } => self.step(Msg::OpenDoc {
                doc,
                meta: Default::default(),
            }),
            Input::Delete { doc } => self.step(Msg::DeleteDoc { doc }),
            Input::StoreAnnounced => {
                if let Some(store) = self.store {
                    self.step(Msg::StoreAnnounced { store });
                }
            }
            Input::StorePublished { bytes } => self.published(&bytes),
            Input::Revoked(r) => self.step(Msg::Revoked(r)),
            Input::Drain {
                reason,
                retry_after_ms,
            } => self.step(Msg::Drain {
                reason,
                retry_after_ms,
            }),
            Input::Disconnect {
                peer,
                channel,
                reason,
            } => self.step(Msg::Disconnect {
                peer,
                channel,
                reason,
            }),
            Input::Checked { channel, checked } => self.checked(channel, checked),
            Input::Rules(r) => self.step(Msg::Rules(r)),
            Input::Tokens { tokens, grants } => self.step(Msg::Tokens { tokens, grants }),
            Input::SetToken { remote, token } => self.step(Msg::SetToken { remote, token }),
            Input::SetPresence {
                doc,
                namespace,
                data,
            } => self.step(Msg::SetPresence {
                doc,
                namespace,
                data,
            }),
            Input::AskPeer { doc, peer } => self.step(Msg::AskPeer { doc, peer }),
            Input::ListRemote { peer, after } => self.step(Msg::ListRemote { peer, after }),
            Input::Connect {
                remote,
                token,
                filter,
            } => self.step(Msg::Connect {
                remote,
                token,
                filter,
            }),
        }
    }

    fn local_change(&mut self, doc: DocId) {
        let engine = self.replicas.engine().clone();
        let Some(version) = self.replicas.get(&doc).map(|d| engine.version(d)) else {
            tracing::info!("a local change to {doc}, which is not in memory; ignored");
            return;
        };
        self.step(Msg::LocalChange {
            doc: doc.clone(),
            version: version.clone(),
        });
        // The core reports remote changes; local ones are told here.
        let me = self.me();
        self.outputs.push_back(Output::Event(Event::DocChanged {
            doc,
            version,
            from: Some(me),
        }));
    }

    /// Feeds one message to the core and queues its commands.
    fn step(&mut self, msg: Msg) {
        self.count_step(&msg);
        let Some(model) = self.model.take() else {
            return;
        };
        let (model, cmds) = match self.hook.as_mut() {
            Some(hook) => {
                let copy = msg.clone();
                let (model, cmds) = update(model, self.now, msg);
                hook(self.now, &copy, &cmds);
                (model, cmds)
            }
            None => update(model, self.now, msg),
        };
        self.model = Some(model);
        self.cmds.extend(cmds);
    }

    /// Carries out queued commands and the follow-ups they cause, until done
    /// or until a reload must come first.
    fn run(&mut self) {
        if self.blocked.is_some() {
            return;
        }
        loop {
            while let Some(cmd) = self.cmds.pop_front() {
                // Imports into the same document wait, so that a run of
                // updates is imported as one (each import of concurrent
                // changes otherwise recomputes the state); anything else is
                // carried out after them, so it sees the replica they make.
                let joins = matches!(&cmd, Cmd::Import { doc, .. }
                    if self.deferred.first().is_none_or(|(_, d, _)| d == doc));
                if !joins {
                    self.import_deferred();
                }
                if let Some(doc) = self.missing_replica(&cmd) {
                    self.import_deferred();
                    self.cmds.push_front(cmd);
                    let id = self.job(StoreOp::Load(doc.clone()), Purpose::Reload(doc));
                    self.blocked = Some(id);
                    return;
                }
                match cmd {
                    Cmd::Import { id, doc, data } if joins => self.deferred.push((id, doc, data)),
                    cmd => self.execute(cmd),
                }
            }
            self.imports_ahead = 0;
            // Only another update may join the waiting imports.
            let update_next = matches!(
                self.internal.front(),
                Some(Msg::Received {
                    message: Message::Update { .. },
                    ..
                })
            );
            if !update_next && !self.deferred.is_empty() {
                self.import_deferred();
                continue;
            }
            match self.internal.pop_front() {
                Some(msg) => self.step(msg),
                None => return,
            }
        }
    }

    /// Carries out the waiting imports as one; the core learns their
    /// outcomes before anything else, in the order they were asked for
    /// (the last holds the replica's newest version).
    fn import_deferred(&mut self) {
        let batch = std::mem::take(&mut self.deferred);
        let Some((_, doc, _)) = batch.first() else {
            return;
        };
        let doc = doc.clone();
        let engine = self.replicas.engine().clone();
        let d = self.replicas.get_or_create(&doc);
        let bytes: Vec<&[u8]> = batch.iter().map(|(_, _, data)| data.as_bytes()).collect();
        let started = std::time::Instant::now();
        let imported = engine.import_many(d, &bytes);
        if let Some(m) = &self.metrics {
            m.import.observe(started.elapsed().as_secs_f64());
        }
        let outcomes = match imported {
            Ok(outcomes) if outcomes.len() == batch.len() => outcomes,
            Ok(outcomes) => {
                let reason = format!(
                    "the engine answered {} imports with {} outcomes",
                    batch.len(),
                    outcomes.len()
                );
                tracing::error!("{doc}: {reason}");
                vec![ImportOutcome::Unavailable { reason }; batch.len()]
            }
            Err(e) => {
                self.replica_broke(&doc, &e);
                // Refused like any bytes that do not import: the senders
                // are told `invalid`, nothing of them is stored.
                vec![
                    ImportOutcome::Failed {
                        reason: e.to_string(),
                    };
                    batch.len()
                ]
            }
        };
        for ((id, _, _), outcome) in batch.into_iter().zip(outcomes) {
            let at = self.imports_ahead.min(self.internal.len());
            self.internal.insert(at, Msg::Imported { id, outcome });
            self.imports_ahead += 1;
        }
    }

    /// A document a command needs whose replica is not in memory and must
    /// be read from the store first (without a store, memory is the only copy).
    fn missing_replica(&self, cmd: &Cmd) -> Option<DocId> {
        self.store?;
        let needs = |doc: &DocId| {
            (!self.replicas.contains(doc) && !self.model().is_tombstoned(doc)).then(|| doc.clone())
        };
        match cmd {
            Cmd::Import { doc, .. } => needs(doc),
            Cmd::Emit(Event::DocReady { doc, .. }) => needs(doc),
            Cmd::Send { items, .. } => items.iter().find_map(|item| match item {
                Outgoing::Data { doc, .. } => needs(doc),
                Outgoing::Strands { items, .. } => items.iter().find_map(|s| needs(&s.doc)),
                Outgoing::Message(_) => None,
            }),
            _ => None,
        }
    }

    fn execute(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Send { channel, items } => {
                if Some(channel) == self.store {
                    self.for_store(items);
                } else if self.channels.contains(&channel) {
                    self.outbox.entry(channel).or_default().extend(items);
                }
            }
            Cmd::Import { id, doc, data } => {
                self.deferred.push((id, doc, data));
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
    fn replica_broke(&mut self, doc: &DocId, panic: &docweave_adapters::EnginePanic) {
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
    fn for_store(&mut self, items: Vec<Outgoing>) {
        for item in items {
            match item {
                Outgoing::Data {
                    doc, batch, since, ..
                } => {
                    let engine = self.replicas.engine().clone();
                    let Some(d) = self.replicas.touch(&doc) else {
                        continue;
                    };
                    match engine.export(d, since.as_ref()) {
                        Ok(data) => {
                            let version = engine.version(d);
                            let append = docweave_adapters::Append {
                                doc,
                                meta: Default::default(),
                                data,
                                version,
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
                Outgoing::Strands { .. } => {}
            }
        }
    }

    /// Presence another server published through the shared store: only
    /// presence is taken from it, as the core hears it from the store.
    fn published(&mut self, bytes: &[u8]) {
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

    fn store_failed(&mut self, failure: StoreFailure) {
        if let Some(store) = self.store {
            self.internal.push_back(Msg::StoreFailed { store, failure });
        }
    }

    /// Gives a job an id and puts it out.
    fn job(&mut self, op: StoreOp, purpose: Purpose) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, purpose);
        self.outputs.push_back(Output::Store(StoreJob { id, op }));
        id
    }

    fn store_answer(&mut self, answer: StoreAnswer) {
        let Some(purpose) = self.jobs.remove(&answer.id) else {
            tracing::info!("an answer to unknown store job {}; ignored", answer.id);
            return;
        };
        let Some(store) = self.store else {
            return;
        };
        let failure = |e: JobError| e.reason;
        match (purpose, answer.result) {
            (
                Purpose::Restore,
                StoreResult::Restored {
                    clock,
                    docs,
                    records,
                },
            ) => {
                self.blocked = None;
                self.restore_retry = None;
                self.internal.push_back(Msg::Restored {
                    store,
                    clock,
                    docs,
                    records,
                });
            }
            (Purpose::Restore, other) => {
                // Nothing is decided on a store not read: everything waits,
                // and the read is tried again (a node that went on as if
                // its store were empty would answer for data it holds).
                let reason = match other {
                    StoreResult::Failed(e) => failure(e),
                    _ => "the store gave an unexpected answer".into(),
                };
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
            }
            (Purpose::Appends(batches), StoreResult::Appended(results)) => {
                for (i, batch) in batches.into_iter().enumerate() {
                    match results.get(i) {
                        Some(Ok(clock)) => self.internal.push_back(store_ack(
                            store,
                            batch,
                            AckStatus::Ok,
                            Some(*clock),
                        )),
                        Some(Err(e)) if e.tombstoned => self.internal.push_back(store_ack(
                            store,
                            batch,
                            AckStatus::Deleted,
                            None,
                        )),
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
            (Purpose::Appends(batches), other) => {
                let reason = match other {
                    StoreResult::Failed(e) => failure(e),
                    _ => "the store gave an unexpected answer".into(),
                };
                for batch in batches {
                    self.store_failed(StoreFailure::Append {
                        batch,
                        reason: reason.clone(),
                    });
                }
            }
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
            (Purpose::Load(doc, _), other) => {
                let reason = match other {
                    StoreResult::Failed(e) => failure(e),
                    _ => "the store gave an unexpected answer".into(),
                };
                self.store_failed(StoreFailure::Load { doc, reason });
            }
            (Purpose::Reload(doc), result) => self.reloaded(doc, result),
            (Purpose::Changes { since, limit }, StoreResult::Changes { docs, deletions }) => {
                let more = docs.len() >= limit;
                let last = docs.last().map(|d| d.clock).unwrap_or(since);
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
            (Purpose::Changes { .. }, other) => {
                let reason = match other {
                    StoreResult::Failed(e) => failure(e),
                    _ => "the store gave an unexpected answer".into(),
                };
                self.store_failed(StoreFailure::Feed { reason });
            }
            (Purpose::Save(record), StoreResult::Done) => {
                self.internal.push_back(Msg::StoreSaved { store, record })
            }
            (Purpose::Purge(_), StoreResult::Done) => {}
            (Purpose::Listener(id), result) => {
                let record = match result {
                    StoreResult::Record(Some(StateRecord::Listener(r))) => Some(r),
                    StoreResult::Record(_) => None,
                    other => {
                        // The client is told to register again: a fresh
                        // listener resyncs, nothing is lost.
                        tracing::warn!("the store could not read listener {id}: {other:?}");
                        None
                    }
                };
                self.internal
                    .push_back(Msg::ListenerLoaded { store, id, record });
            }
            // Presence is best effort: its TTL covers a lost publication.
            (Purpose::Publish, StoreResult::Done) => {}
            (Purpose::Publish, other) => {
                tracing::debug!("presence was not published: {other:?}");
            }
            (Purpose::Save(record), other) => {
                let reason = match other {
                    StoreResult::Failed(e) => failure(e),
                    _ => "the store gave an unexpected answer".into(),
                };
                self.store_failed(StoreFailure::Save { record, reason });
            }
            (Purpose::Purge(doc), other) => {
                let reason = match other {
                    StoreResult::Failed(e) => failure(e),
                    _ => "the store gave an unexpected answer".into(),
                };
                self.store_failed(StoreFailure::Purge { doc, reason });
            }
        }
    }

    /// The core's load came back: import what the store held, then tell the core.
    fn loaded(&mut self, store: ChannelId, doc: DocId, loaded: Option<docweave_adapters::Loaded>) {
        if self.model().is_tombstoned(&doc) {
            return;
        }
        let outcome = match loaded {
            Some(l) => {
                let got = self.replicas.import_loaded(&doc, &l);
                LoadOutcome::Found {
                    version: got.version,
                    stored: got.stored,
                    unreadable: got.unreadable,
                    clock: l.clock,
                    bytes: l.bytes(),
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
        self.run();
        let known = self.model().doc_version(&doc).is_some() || self.model().is_dirty(&doc);
        if !known && self.blocked.is_none() {
            self.replicas.remove(&doc);
        }
    }

    /// An evicted replica came back from the store: what waited for it goes on.
    fn reloaded(&mut self, doc: DocId, result: StoreResult) {
        self.blocked = None;
        match result {
            StoreResult::Loaded(Some(l)) => {
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
                        },
                    });
                }
            }
            other => {
                let reason = match other {
                    StoreResult::Failed(e) => e.reason,
                    _ => "the store gave an unexpected answer".into(),
                };
                tracing::warn!("{doc} could not be read back from the store: {reason}");
                self.fail_waiting(&doc, &reason);
            }
        }
    }

    /// The command that waited for a replica cannot be carried out.
    fn fail_waiting(&mut self, doc: &DocId, reason: &str) {
        let Some(cmd) = self.cmds.pop_front() else {
            return;
        };
        let why = format!("{doc} could not be read back from the store: {reason}");
        match cmd {
            Cmd::Import { id, .. } => self.internal.push_back(Msg::Imported {
                id,
                outcome: ImportOutcome::Unavailable { reason: why },
            }),
            Cmd::Emit(Event::DocReady { doc, .. }) => {
                self.outputs.push_back(Output::Event(Event::Error {
                    doc: Some(doc.clone()),
                    reason: why,
                }));
                self.outputs
                    .push_back(Output::Event(Event::DocUnavailable { doc }));
            }
            Cmd::Send { channel, items } => {
                // Its transmissions time out and are offered again later.
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
                self.cmds.push_front(Cmd::Send { channel, items });
            }
            other => self.cmds.push_front(other),
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

/// What waits while a reload is in progress.
enum Held {
    Input(Input),
    Opened {
        channel: ChannelId,
        remote: Option<RemoteAddr>,
    },
}

/// A model to show in the one state no caller can see (during a step).
fn empty_model() -> &'static Model {
    static EMPTY: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Model::new(Config::new("none")))
}
