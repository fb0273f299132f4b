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

mod authorship;
mod checks;
mod chunks;
mod counting;
mod dormant;
mod input;
mod outbox;
mod output;
mod recent_exports;
mod repeated_logs;
mod replicas;
mod store_answers;
mod store_jobs;
mod waiting;

pub use input::Input;
pub use output::Output;
pub use replicas::LocalNotify;
pub use store_jobs::{run_job, JobError, StoreAnswer, StoreJob, StoreOp, StoreResult};

use crate::engine::{DocEngine, ExportError};
use docweave_core::{
    decode_frame, update_in_place, AckStatus, Author, BatchId, ChannelId, ChannelKind, Clock, Cmd,
    Config, DocId, Event, Filter, ImportId, ImportOutcome, Limits, LoadOutcome, Message, Millis,
    Model, Msg, Namespace, Outgoing, Payload, RemoteAddr, StateRecord, StoreFailure,
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
    /// Most bytes of memory the replicas may take, as the engine estimates
    /// it ([`DocEngine::resident_estimate`]); least recently used ones go
    /// first (only with a store). `usize::MAX`: no budget.
    pub memory_budget: usize,
    /// A replica unused this long sleeps as its bytes, to wake on
    /// its next use without a store read (0: never; only with a store). Not
    /// one the application was given a handle on.
    pub sleep_after_ms: Millis,
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
            memory_budget: usize::MAX,
            sleep_after_ms: 0,
            limits: Limits::default(),
            chunk_size: 1024 * 1024,
            max_message: 512 * 1024 * 1024,
            reassembly_budget: 1024 * 1024 * 1024,
            reassembly_deadline_ms: 120_000,
        }
    }
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
    /// The node reloads an evicted replica; the commands that need it wait.
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
    /// The core read the store's index (its job id).
    Read(u64),
}

/// One thing for the store, in the order the core asked.
enum StoreItem {
    Append(BatchId, docweave_adapters::Append),
    Op(StoreOp, Purpose),
}

/// An import waiting to be carried out with the others into its document.
type Deferred = (ImportId, DocId, Payload, Option<Author>);

/// The deterministic node. See the module docs for the host loop.
pub struct Node<E: DocEngine> {
    model: Model,
    replicas: Replicas<E>,
    options: NodeOptions,
    now: Millis,
    store: Option<ChannelId>,
    channels: BTreeSet<ChannelId>,
    next_channel: u64,
    next_job: u64,
    jobs: BTreeMap<u64, Purpose>,
    /// Core commands not yet carried out.
    cmds: VecDeque<Cmd>,
    /// Commands that wait for replicas read back from the store, and the
    /// reloads out.
    waiting: waiting::Waiting,
    /// Follow-ups for the core, fed after the current commands.
    internal: VecDeque<Msg>,
    /// How many `Imported` answers lead `internal`: each import's answer
    /// goes after those (in the order imports were asked for) and before
    /// every other follow-up. The count falls as they are fed, never all
    /// at once: an answer still queued when a later batch of imports into
    /// the same document ran must not be overtaken by that batch's answer,
    /// or the core would take the older version for the replica's.
    imports_ahead: usize,
    /// Whether the input being taken may still stop once before a message
    /// that brings data, to put out what the messages before it sent (see
    /// [`Node::run`]).
    may_yield: bool,
    /// Imports into one document not carried out yet, in order: updates
    /// that arrive together are imported together (see [`Node::run`]).
    deferred: Vec<Deferred>,
    /// Who wrote what: writers' owners, and records waiting for a write.
    authorship: authorship::Authorship,
    /// Unix milliseconds at the node's time 0, when its clock is not the
    /// wall clock (the smol driver counts from its start): history entries
    /// say when on the wall clock.
    wall_clock_at_zero: Option<Millis>,
    /// Exports kept across flushes for readers that come one after another.
    recent_exports: recent_exports::RecentExports,
    /// Lines the core logs again and again (a store that is down).
    repeated_logs: repeated_logs::RepeatedLogs,
    /// The start-up read of the store everything waits for (nothing is
    /// decided before the node knows what its store remembers).
    restoring: Option<u64>,
    /// A start-up read of the store that failed is tried again at this
    /// time, after this pause (which doubles, up to 5 s); everything waits.
    restore_retry: Option<(Millis, Millis)>,
    held: VecDeque<(Millis, Held)>,
    outbox: BTreeMap<ChannelId, Vec<Outgoing>>,
    store_queue: Vec<StoreItem>,
    outputs: VecDeque<Output>,
    hook: Option<StepHook>,
    /// A call that changes the node is under way: still set when the next
    /// one starts means the last panicked (a bug, caught by the host: the
    /// C host's guard, PyO3), which may have left the model or the
    /// replicas half changed.
    busy: bool,
    /// A call panicked: the node decides nothing more, and said so once.
    failed: bool,
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
            model: Model::new(config),
            replicas: Replicas::new(
                engine,
                options.actor,
                notify,
                options.memory_budget < usize::MAX,
            ),
            options,
            now: 0,
            store: None,
            channels: BTreeSet::new(),
            next_channel: 1,
            next_job: 1,
            jobs: BTreeMap::new(),
            cmds: VecDeque::new(),
            waiting: Default::default(),
            internal: VecDeque::new(),
            imports_ahead: 0,
            may_yield: false,
            deferred: Vec::new(),
            authorship: Default::default(),
            wall_clock_at_zero: None,
            recent_exports: Default::default(),
            repeated_logs: Default::default(),
            restoring: None,
            restore_retry: None,
            held: VecDeque::new(),
            outbox: BTreeMap::new(),
            store_queue: Vec::new(),
            outputs: VecDeque::new(),
            hook: None,
            busy: false,
            failed: false,
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
            let id = node.job(node.restore_op(), Purpose::Restore);
            node.restoring = Some(id);
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

    /// The core's model, for queries.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        self.replicas.engine()
    }

    /// A handle on an open document for an edit made and committed at once
    /// (or none), if its replica is in memory: unlike [`Node::doc_handle`]
    /// it leaves the replica free to sleep once idle, so it must not be
    /// kept.
    pub fn doc_handle_briefly(&mut self, doc: &DocId) -> Option<E::Handle> {
        let engine = self.replicas.engine().clone();
        self.replicas.touch(doc).map(|d| engine.handle(d))
    }

    /// The application's handle on an open document, if its replica is in
    /// memory. The replica then never sleeps for being idle (an edit
    /// through the handle must reach the replica the node watches); it may
    /// still be evicted under `max_docs` or a memory budget.
    pub fn doc_handle(&mut self, doc: &DocId) -> Option<E::Handle> {
        let engine = self.replicas.engine().clone();
        let handle = self.replicas.touch(doc).map(|d| engine.handle(d));
        self.replicas.handed_out(doc);
        handle
    }

    /// The replica of a document, if in memory.
    pub fn replica(&self, doc: &DocId) -> Option<&E::Doc> {
        self.replicas.get(doc)
    }

    /// How many replicas are in memory.
    pub fn resident(&self) -> usize {
        self.replicas.len()
    }

    /// The replicas' memory as estimated at the last eviction (0 without a
    /// memory budget), with the bytes of those asleep.
    pub fn resident_bytes_estimate(&self) -> usize {
        self.replicas.estimated_bytes()
    }

    /// How many replicas sleep as their bytes (idle ones, and
    /// those evicted under a memory budget), to wake without a store read.
    pub fn dormant(&self) -> usize {
        self.replicas.dormant()
    }

    /// Whether the node wants no more frames for now: it waits for its
    /// store's start-up read, or so many commands wait for replicas being
    /// read back that more should stay in the connections until the
    /// store catches up. Store answers and timeouts are always taken.
    pub fn waits_for_store(&self) -> bool {
        self.restoring.is_some() || self.waiting.len() >= waiting::MOST_WAITING
    }

    /// How many replicas are being read back from the store for commands
    /// that wait for them.
    pub fn reloads(&self) -> usize {
        self.waiting.reloads()
    }

    /// When the node next wants [`Input::Timeout`]. `None` while it waits
    /// for its store's start-up read (timers fire once the answer is in).
    /// Reloads of single replicas stop no timer.
    pub fn poll_timeout(&self) -> Option<Millis> {
        // A failed node wants nothing (a time due would make its host spin).
        if self.failed {
            return None;
        }
        // A host that did not drain the outputs: the rest is due now.
        if self.work_left() {
            return Some(self.now);
        }
        if self.restoring.is_some() {
            return self
                .restore_retry
                .map(|(at, _)| at)
                .filter(|at| *at != Millis::MAX);
        }
        let sleep = if self.store.is_some() {
            // Never sooner than a second on: a replica that cannot sleep
            // yet (a reload is out) must not make the driver spin.
            self.replicas
                .next_sleep(self.options.sleep_after_ms)
                .map(|at| at.max(self.now.saturating_add(1_000)))
        } else {
            None
        };
        match (self.model().wake_at(), sleep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A connection opened (accepted, or dialed for `remote`): its channel id
    /// names it in inputs and outputs from now on.
    pub fn channel_opened(&mut self, now: Millis, remote: Option<RemoteAddr>) -> ChannelId {
        let channel = self.new_channel();
        if self.begin() {
            self.channels.insert(channel);
            self.arrive(now, Held::Opened { channel, remote });
            self.busy = false;
        }
        channel
    }

    /// Feeds one input, which happened at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        if self.begin() {
            self.arrive(now, Held::Input(input));
            self.busy = false;
        }
    }

    /// The next thing to do; `None` when there is nothing now.
    pub fn poll_output(&mut self) -> Option<Output> {
        if !self.begin() {
            // Only the report of the failure is left.
            return self.outputs.pop_front();
        }
        if self.outputs.is_empty() {
            self.flush();
        }
        // What was put out went first; now the rest of the input.
        if self.outputs.is_empty() && self.work_left() {
            self.run();
            self.flush();
        }
        self.busy = false;
        self.outputs.pop_front()
    }

    /// Starts a call that changes the node; `false` when it failed. A call
    /// still under way means the last one panicked: going on with what it
    /// left half changed could send or store anything, so the node stops
    /// deciding, drops what it had not put out, and says so once.
    fn begin(&mut self) -> bool {
        if self.busy && !self.failed {
            self.failed = true;
            let reason = "docweave failed inside an earlier call (a bug); this node does \
                          nothing more: drop it and make another"
                .to_string();
            tracing::error!("{reason}");
            self.outputs.clear();
            self.outputs
                .push_back(Output::Event(Event::Error { doc: None, reason }));
        }
        if self.failed {
            return false;
        }
        self.busy = true;
        true
    }

    fn new_channel(&mut self) -> ChannelId {
        let c = ChannelId(self.next_channel);
        self.next_channel += 1;
        c
    }

    fn me(&self) -> docweave_core::PeerId {
        self.model().config().peer.clone()
    }

    /// Feeds one message to the core and queues its commands.
    fn step(&mut self, msg: Msg) {
        self.count_step(&msg);
        let cmds = match self.hook.as_mut() {
            Some(hook) => {
                let copy = msg.clone();
                let cmds = update_in_place(&mut self.model, self.now, msg);
                hook(self.now, &copy, &cmds);
                cmds
            }
            None => update_in_place(&mut self.model, self.now, msg),
        };
        self.cmds.extend(cmds);
    }

    /// Whether a call panicked (a bug): the node then does nothing more.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Carries out queued commands and the follow-ups they cause. A
    /// command that needs a replica not in memory waits for its reload, and
    /// so do later ones for the same documents or connections; the rest go on.
    fn run(&mut self) {
        if self.restoring.is_some() {
            return;
        }
        loop {
            while let Some(cmd) = self.cmds.pop_front() {
                let Some(cmd) = self.hold_back(cmd) else {
                    continue;
                };
                // Imports into the same document wait, so that a run of
                // updates is imported as one (each import of concurrent
                // changes otherwise recomputes the state); anything else is
                // carried out after them, so it sees the replica they make.
                let joins = matches!(&cmd, Cmd::Import { doc, .. }
                    if self.deferred.first().is_none_or(|(_, d, _, _)| d == doc));
                if !joins {
                    self.import_deferred();
                }
                match cmd {
                    Cmd::Import {
                        id,
                        doc,
                        data,
                        author,
                    } if joins => self.deferred.push((id, doc, data, author)),
                    cmd => self.execute(cmd),
                }
            }
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
            if self.yields_before_data() {
                return;
            }
            match self.internal.pop_front() {
                Some(msg) => {
                    self.imports_ahead = self.imports_ahead.saturating_sub(1);
                    self.step(msg)
                }
                None => return,
            }
        }
    }

    /// Whether to stop, once per input, before a message that brings data
    /// when what came before it sent something: those sends go out first
    /// ([`Node::poll_output`] puts them out, then goes on), so the peer
    /// works on them while this node imports. A cold sync's next page of
    /// requests otherwise left only after this page's data was imported,
    /// and the two sides took turns, each idle half the time. Nothing is
    /// left half done: the node stops between two messages, as between
    /// two inputs, and the next input finishes the rest first. Eviction
    /// waits for the rest; what reads the node meanwhile (`replica`,
    /// `model`) sees it between those two messages. A host that feeds
    /// several inputs before draining gets the early sends of the last only.
    fn yields_before_data(&mut self) -> bool {
        let data_next = matches!(
            self.internal.front(),
            Some(Msg::Received {
                message: Message::SyncResponse { .. } | Message::Update { .. },
                ..
            })
        );
        if !(self.may_yield && data_next && self.deferred.is_empty() && !self.outbox.is_empty()) {
            return false;
        }
        self.may_yield = false;
        true
    }

    /// Whether messages of an input wait to be taken (the node stopped
    /// before one to put out what came before it).
    fn work_left(&self) -> bool {
        !self.internal.is_empty() && self.restoring.is_none()
    }

    /// Whether the node stopped in the input it was given last, to put out
    /// what it sent before a message bringing data: the outputs put that
    /// out, then take the rest ([`Node::poll_output`]).
    pub fn stopped_before_data(&self) -> bool {
        self.work_left()
    }

    /// Carries out the waiting imports as one; the core learns their
    /// outcomes before anything else, in the order they were asked for
    /// (the last holds the replica's newest version).
    fn import_deferred(&mut self) {
        let batch = std::mem::take(&mut self.deferred);
        let Some((_, doc, _, _)) = batch.first() else {
            return;
        };
        let doc = doc.clone();
        let engine = self.replicas.engine().clone();
        let d = self.replicas.get_or_create(&doc);
        // Who may write what, checked before anything is imported: an
        // update carrying changes of a writer another identity owns here
        // is refused whole.
        let held = engine.version(d);
        let bind = self.model.config().bind_writers;
        let mut seen = BTreeMap::new();
        let mut claimed = BTreeMap::new();
        let mut refusals: Vec<Option<ImportOutcome>> = Vec::with_capacity(batch.len());
        let mut fresh: Vec<Vec<crate::engine::Run>> = Vec::with_capacity(batch.len());
        for (_, _, data, author) in &batch {
            let Some(author) = author else {
                refusals.push(None);
                fresh.push(Vec::new());
                continue;
            };
            let checked = engine.runs(data.as_bytes()).and_then(|runs| {
                // Every run past what the replica holds is checked, whatever
                // earlier imports of the batch brought: a refused import
                // sent twice is refused twice. Only what passes counts as
                // seen, so records are not made twice.
                let past_held =
                    authorship::Authorship::new_part(&runs, &held, &mut BTreeMap::new());
                let checked = match bind {
                    true => self
                        .authorship
                        .check(&doc, &author.identity, &past_held, &mut claimed),
                    false => Ok(()),
                };
                checked
                    .map(|()| authorship::Authorship::new_part(&runs, &held, &mut seen))
                    .map_err(|reason| format!("refused: {reason}"))
            });
            match checked {
                Ok(new) => {
                    refusals.push(None);
                    fresh.push(new);
                }
                Err(reason) => {
                    refusals.push(Some(match reason.strip_prefix("refused: ") {
                        Some(why) => ImportOutcome::Refused {
                            reason: why.to_string(),
                        },
                        None => ImportOutcome::Failed { reason },
                    }));
                    fresh.push(Vec::new());
                }
            }
        }
        let bytes: Vec<&[u8]> = batch
            .iter()
            .zip(&refusals)
            .filter(|(_, refused)| refused.is_none())
            .map(|((_, _, data, _), _)| data.as_bytes())
            .collect();
        let started = std::time::Instant::now();
        let imported = if bytes.is_empty() {
            Ok(Vec::new())
        } else {
            engine.import_many(d, &bytes)
        };
        if let Some(m) = &self.metrics {
            m.import.observe(started.elapsed().as_secs_f64());
        }
        let outcomes = match imported {
            Ok(outcomes) if outcomes.len() == bytes.len() => outcomes,
            Ok(outcomes) => {
                let reason = format!(
                    "the engine answered {} imports with {} outcomes",
                    bytes.len(),
                    outcomes.len()
                );
                tracing::error!("{doc}: {reason}");
                vec![ImportOutcome::Unavailable { reason }; bytes.len()]
            }
            Err(e) => {
                self.replica_broke(&doc, &e);
                // Refused like any bytes that do not import: the senders
                // are told `invalid`, nothing of them is stored.
                vec![
                    ImportOutcome::Failed {
                        reason: e.to_string(),
                    };
                    bytes.len()
                ]
            }
        };
        let mut outcomes = outcomes.into_iter();
        let mut taken = Vec::with_capacity(batch.len());
        for ((id, _, _, author), refused) in batch.into_iter().zip(refusals) {
            let outcome = match refused {
                Some(refused) => refused,
                None => outcomes.next().unwrap_or(ImportOutcome::Unavailable {
                    reason: "the engine gave no outcome".into(),
                }),
            };
            taken.push((id, author, outcome));
        }
        self.keep_authors(&doc, &taken, &fresh);
        for (id, _, outcome) in taken {
            let at = self.imports_ahead.min(self.internal.len());
            self.internal.insert(at, Msg::Imported { id, outcome });
            self.imports_ahead += 1;
        }
    }

    /// Says that the node's time 0 was `unix_ms` on the wall clock, for a
    /// host whose clock counts from elsewhere (history entries are dated by
    /// the wall clock). Without it, the node's time is taken as Unix ms.
    pub fn set_wall_clock(&mut self, unix_ms: Millis) {
        self.wall_clock_at_zero = Some(unix_ms);
    }

    /// Records who wrote the runs of the imports that were taken.
    fn keep_authors(
        &mut self,
        doc: &DocId,
        taken: &[(ImportId, Option<Author>, ImportOutcome)],
        fresh: &[Vec<crate::engine::Run>],
    ) {
        let engine = self.replicas.engine().clone();
        let Some(d) = self.replicas.get(doc) else {
            return;
        };
        for ((_, author, outcome), runs) in taken.iter().zip(fresh) {
            let (Some(author), false) = (author, runs.is_empty()) else {
                continue;
            };
            if !matches!(
                outcome,
                ImportOutcome::Applied { .. } | ImportOutcome::Pending { .. }
            ) {
                continue;
            }
            let message =
                |run: &crate::engine::Run| engine.message(d, run.writer, run.end.saturating_sub(1));
            if self.store.is_none() {
                // Nothing to keep records in: who owns a writer still holds.
                self.authorship.own(doc, &author.identity, runs);
                continue;
            }
            let dated = Author {
                identity: author.identity.clone(),
                at: author
                    .at
                    .saturating_add(self.wall_clock_at_zero.unwrap_or(0)),
            };
            self.authorship.took(doc, &dated, runs, message);
        }
    }
}

/// What waits while the store's start-up read is in progress.
enum Held {
    Input(Input),
    Opened {
        channel: ChannelId,
        remote: Option<RemoteAddr>,
    },
}
