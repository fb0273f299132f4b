//! A deterministic simulation of real docweave nodes.
//!
//! Each simulated node is the node users run ([`docweave_shell::Node`]):
//! the real core, real document replicas ([`LoroEngine`] or the operation
//! log), real store code ([`MemoryStore`] under a fault-injecting
//! [`FaultyStore`]). The simulator is only a driver: it carries frames over
//! faulty in-memory links, runs store jobs (slowly, or failing, or lost in a
//! crash), keeps a virtual clock and plays the application (opens, edits,
//! presence, deletions). The same seed and the same steps give the same run.

mod docs;
mod loro;
mod net;
mod shared;

pub use docs::{Lines, SimEngine};
pub use loro::{LoroEdit, LoroMember};
pub use net::{End, Faults};

use crate::faulty_store::{Backing, FaultyStore, StoreFaults};
use crate::trace;
use docweave_adapters::{Announcement, MemoryStore};
use docweave_core::{
    decode, ChannelId, Clock, Config, DocId, Event, Filter, Message, Model, Namespace, Payload,
    PeerId, RemoteAddr, Reply, VersionVector,
};
use docweave_shell::{
    run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer, StoreJob, StoreOp,
};
use net::Net;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Something due at a time.
#[derive(Debug)]
enum Due {
    Frame {
        from: String,
        to: String,
        channel: ChannelId,
        bytes: Vec<u8>,
        /// The receiver's incarnation when it was sent: a frame for a
        /// process that crashed since is lost with it (its channel number
        /// may belong to a new connection by then).
        incarnation: u64,
    },
    Closed {
        node: String,
        channel: ChannelId,
        /// As for frames: the close of a connection to a process that
        /// crashed since is not news to the new process, whose channel of
        /// that number is another connection.
        incarnation: u64,
    },
    Dial {
        node: String,
        remote: String,
        epoch: u64,
    },
    Store {
        node: String,
        epoch: u64,
    },
    /// A read the node allowed to run beside its other store jobs
    /// ([`StoreJob::aside`]) is done: answered out of order.
    Read {
        node: String,
        epoch: u64,
        job: StoreJob,
    },
    Wake {
        node: String,
    },
    /// A store shared with other nodes tells this one something.
    Announce {
        node: String,
        what: Announcement,
    },
    /// A Loro client's message reaches its session.
    LoroToSession {
        name: String,
        generation: u64,
        bytes: Vec<u8>,
    },
    /// A Loro session may read its client again (its pace allows).
    LoroResume {
        name: String,
        generation: u64,
    },
    /// A Loro session's clock is due.
    LoroTick {
        name: String,
        generation: u64,
    },
    /// A Loro session's message reaches its client.
    LoroToClient {
        name: String,
        generation: u64,
        message: docweave_adapters::loro_protocol::LoroMessage,
    },
    /// A Loro client opens a new connection.
    LoroReconnect {
        name: String,
    },
    /// A Loro client's keepalive is due.
    LoroPing {
        name: String,
        generation: u64,
    },
}

impl Due {
    /// Clocks, not work: `run` stops before them, `advance` fires them.
    fn is_timer(&self) -> bool {
        matches!(
            self,
            Due::Wake { .. } | Due::LoroTick { .. } | Due::LoroPing { .. }
        )
    }
}

/// An edit the application made, and whether something durable holds it.
#[derive(Debug, Clone)]
pub struct Edit {
    /// The document.
    pub doc: DocId,
    /// The value appended.
    pub value: String,
    /// The replica's version right after the edit.
    pub version: VersionVector,
    /// Who acknowledged it as durable: the node's own store (`"store"`) or a peer.
    pub acked_by: Option<String>,
}

/// One simulated node: the real node plus what outlives a crash.
pub struct SimNode<E: SimEngine> {
    /// The configuration it restarts with.
    pub config: Config,
    /// The running node; `None` while crashed.
    pub node: Option<Node<E>>,
    /// Its store, if any: survives restarts.
    pub store: Option<FaultyStore>,
    /// Store jobs not yet run (lost in a crash).
    jobs: VecDeque<StoreJob>,
    store_busy: bool,
    /// Store latency per job, milliseconds.
    pub store_delay: u64,
    /// Latency of reads that may run aside, milliseconds; 0: they run in
    /// order with the other jobs.
    pub read_delay: u64,
    /// Bumped by each restart; stale work is dropped.
    epoch: u64,
    actor_base: u64,
    /// Remotes the application connects to: (name, token).
    remotes: Vec<(String, Option<String>)>,
    local: Arc<Mutex<Vec<DocId>>>,
    /// Everything it told the application, across restarts.
    pub events: Vec<Event>,
    /// Edits waiting for their document to open.
    pending_edits: Vec<(DocId, String)>,
    /// Every edit the application made here.
    pub edits: Vec<Edit>,
    wake: Option<u64>,
}

/// Counts of what the nodes were fed, for the coverage table.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Inputs to `update`, by kind.
    pub inputs: BTreeMap<&'static str, u64>,
    /// Protocol messages received, by kind.
    pub messages: BTreeMap<&'static str, u64>,
    /// Loro-protocol messages between Loro clients and their sessions, by
    /// kind (`client:` what clients sent, `server:` what they were sent).
    pub loro: BTreeMap<String, u64>,
}

impl Coverage {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Coverage) {
        for (k, v) in &other.inputs {
            *self.inputs.entry(k).or_default() += v;
        }
        for (k, v) in &other.messages {
            *self.messages.entry(k).or_default() += v;
        }
        for (k, v) in &other.loro {
            *self.loro.entry(k.clone()).or_default() += v;
        }
    }
}

/// The coverage entry counting inputs a node took while a reload was out.
pub const TAKEN_DURING_RELOAD: &str = "(taken during a reload)";
/// The coverage entry counting inputs a node took while replicas slept as
/// their bytes (idle, or under a memory budget).
pub const TAKEN_WITH_REPLICAS_ASLEEP: &str = "(taken with replicas asleep)";
/// The coverage entry counting inputs a node stopped in, to put out what
/// it sent before taking a message that brings data.
pub const STOPPED_BEFORE_DATA: &str = "(stopped to send before data)";

/// How long the simulator's reader of a link (and a raw endpoint) waits
/// for the rest of a message split into chunks before giving it up.
pub const REASSEMBLY_DEADLINE_MS: u64 = 10_000;

/// The simulator.
pub struct Sim<E: SimEngine = LoroEngine> {
    /// Virtual milliseconds.
    pub now: u64,
    /// The nodes by name.
    pub nodes: BTreeMap<String, SimNode<E>>,
    net: Net,
    due: BTreeMap<(u64, u64), Due>,
    seq: u64,
    /// Raw endpoints (not nodes): the messages they received.
    pub raw_inbox: BTreeMap<String, Vec<Message>>,
    raw: std::collections::BTreeSet<String>,
    /// Trace lines, when tracing.
    pub trace: Vec<String>,
    tracing: bool,
    /// Data sent to a peer that brought nothing the peer had not sent itself.
    pub echoes: Vec<String>,
    /// Documents whose last write a node's store lost in a crash
    /// ([`StoreFaults::amnesia`]): what follows from it is the store's fault.
    pub store_losses: Vec<(String, DocId)>,
    /// Clock numbers a node's store gave out, lost in a crash and gives
    /// again: (node, first, last).
    pub reissued: Vec<(String, Clock, Clock)>,
    /// Chunk frames the checks put back together, per sender, receiver,
    /// channel and side.
    observed: BTreeMap<(String, String, u64, bool), docweave_adapters::reassembly::Reassembly<u32>>,
    /// What each node received from each peer, per document: (node, peer, doc).
    received: BTreeMap<(String, String, DocId), VersionVector>,
    /// What each peer promised each node it keeps, per document (its
    /// up-to-date answers and change listings): (node, peer, doc).
    promised: BTreeMap<(String, String, DocId), VersionVector>,
    coverage: Arc<Mutex<Coverage>>,
    /// Trace lines the nodes' hooks wrote, not yet taken into `trace`.
    lines: Arc<Mutex<Vec<String>>>,
    /// Store faults for nodes added from now on.
    pub store_faults: StoreFaults,
    /// Frames larger than this cross as chunk frames.
    pub chunk_size: usize,
    /// Most documents a node with a store keeps in memory.
    pub max_docs: usize,
    /// The nodes' memory budget for replicas (evicted ones sleep as bytes).
    pub memory_budget: usize,
    /// How long a node's replica may stay unused before it sleeps (0: never).
    pub sleep_after_ms: u64,
    /// Idle documents whose metadata a node with a store keeps in memory
    /// (0: all), for nodes added from now on.
    pub idle_metadata: usize,
    seed: u64,
    /// Events carried out so far, and the most a run may take (a livelock
    /// ends the run instead of hanging it).
    pub events_done: u64,
    /// See `events_done`.
    pub max_events: u64,
    /// What shared stores told their watching nodes, not yet delivered.
    announced: Arc<Mutex<Vec<(String, Announcement)>>>,
    /// Announcements of shared stores are lost (their listening
    /// connections are cut); the feed poll is then all that is left.
    announcements_cut: bool,
    /// Loro-protocol clients, by name.
    loro: BTreeMap<String, LoroMember>,
    /// Virtual millisecond 0, for code that takes an `Instant`.
    epoch: std::time::Instant,
}

impl<E: SimEngine> Sim<E> {
    /// An empty simulation; `seed` drives every fault.
    pub fn new(seed: u64) -> Self {
        Self {
            now: 0,
            nodes: BTreeMap::new(),
            net: Net::new(seed),
            due: BTreeMap::new(),
            seq: 0,
            raw_inbox: BTreeMap::new(),
            raw: Default::default(),
            trace: Vec::new(),
            tracing: false,
            echoes: Vec::new(),
            store_losses: Vec::new(),
            reissued: Vec::new(),
            observed: BTreeMap::new(),
            received: BTreeMap::new(),
            promised: BTreeMap::new(),
            coverage: Arc::new(Mutex::new(Coverage::default())),
            lines: Arc::new(Mutex::new(Vec::new())),
            store_faults: StoreFaults::default(),
            chunk_size: NodeOptions::default().chunk_size,
            max_docs: usize::MAX,
            memory_budget: usize::MAX,
            sleep_after_ms: 0,
            idle_metadata: 0,
            seed,
            events_done: 0,
            max_events: u64::MAX,
            announced: Arc::new(Mutex::new(Vec::new())),
            announcements_cut: false,
            loro: BTreeMap::new(),
            epoch: std::time::Instant::now(),
        }
    }

    /// Records a trace from now on.
    pub fn traced(mut self) -> Self {
        self.tracing = true;
        self
    }

    /// Network faults from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.net.faults = faults;
    }

    /// The trace as one text.
    pub fn trace_text(&self) -> String {
        self.trace.join("\n")
    }

    /// What the nodes were fed so far.
    pub fn coverage(&self) -> Coverage {
        self.coverage.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn log(&mut self, line: String) {
        if self.tracing {
            self.trace.push(line);
        }
    }

    fn at(&mut self, t: u64, due: Due) {
        self.seq += 1;
        self.due.insert((t.max(self.now), self.seq), due);
    }

    /// Adds a node, with a store (memory, faults as set) or without.
    pub fn add_node(&mut self, config: Config, store: bool) {
        let store = store.then(MemoryStore::new);
        self.add_node_with_store(config, store);
    }

    /// Adds a node whose store already holds data (written by another process).
    pub fn add_node_with_store(&mut self, config: Config, store: Option<MemoryStore>) {
        self.add_node_on(config, store.map(Backing::Own));
    }

    /// Adds a node on `store`, perhaps shared with other nodes.
    pub fn add_node_on(&mut self, mut config: Config, store: Option<Backing>) {
        config.bounds.idle_metadata = self.idle_metadata;
        let name = config.peer.to_string();
        let index = self.nodes.len() as u64 + 1;
        let faults = self.store_faults;
        let seed = self.seed.wrapping_add(index);
        let n = SimNode {
            config,
            node: None,
            store: store.map(|s| FaultyStore::new(s, faults, seed)),
            jobs: VecDeque::new(),
            store_busy: false,
            store_delay: 1,
            read_delay: 0,
            epoch: 0,
            actor_base: index * 1_000,
            remotes: Vec::new(),
            local: Arc::new(Mutex::new(Vec::new())),
            events: Vec::new(),
            pending_edits: Vec::new(),
            edits: Vec::new(),
            wake: None,
        };
        self.nodes.insert(name.clone(), n);
        self.start(&name);
    }

    /// Starts (or restarts) a node's process from its configuration and store.
    fn start(&mut self, name: &str) {
        let tracing = self.tracing;
        let trace_name = name.to_string();
        let coverage = self.coverage.clone();
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        n.epoch += 1;
        let options = NodeOptions {
            actor: n.actor_base + n.epoch,
            store: n.store.is_some(),
            chunk_size: self.chunk_size,
            max_docs: self.max_docs,
            memory_budget: self.memory_budget,
            sleep_after_ms: self.sleep_after_ms,
            ..NodeOptions::default()
        };
        let local = n.local.clone();
        let notify = Arc::new(move |doc: &DocId| {
            if let Ok(mut l) = local.lock() {
                l.push(doc.clone());
            }
        });
        let mut node = Node::with_notify(n.config.clone(), E::make(), options, notify);
        let lines = self.lines.clone();
        node.set_hook(Box::new(move |_, msg, cmds| {
            if let Ok(mut c) = coverage.lock() {
                *c.inputs.entry(msg.name()).or_default() += 1;
                if let docweave_core::Msg::Received { message, .. } = msg {
                    *c.messages.entry(message.name()).or_default() += 1;
                }
            }
            if tracing {
                if let Ok(mut l) = lines.lock() {
                    trace::step(&trace_name, msg, cmds, &mut l);
                }
            }
        }));
        n.node = Some(node);
        let remotes = n.remotes.clone();
        self.watch_shared_store(name);
        for (remote, token) in remotes {
            self.feed(
                name,
                Input::Connect {
                    remote: RemoteAddr::new(&remote),
                    token,
                    filter: Filter::all(),
                },
            );
        }
        self.pump(name);
    }

    /// Feeds one input to a node now (no processing of what follows).
    pub fn feed(&mut self, name: &str, input: Input) {
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(name).and_then(|n| n.node.as_mut()) {
            // What the node takes while a replica is read back for other
            // commands (it no longer holds everything for a reload).
            if let Ok(mut c) = self.coverage.lock() {
                if node.reloads() > 0 && !matches!(input, Input::Store(_)) {
                    *c.inputs.entry(TAKEN_DURING_RELOAD).or_default() += 1;
                }
                if node.dormant() > 0 {
                    *c.inputs.entry(TAKEN_WITH_REPLICAS_ASLEEP).or_default() += 1;
                }
            }
            node.handle(now, input);
            if node.stopped_before_data() {
                if let Ok(mut c) = self.coverage.lock() {
                    *c.inputs.entry(STOPPED_BEFORE_DATA).or_default() += 1;
                }
            }
        }
        self.pump(name);
    }

    /// Carries out everything a node put out, and the application's part.
    fn pump(&mut self, name: &str) {
        loop {
            self.take_trace();
            let output = self
                .nodes
                .get_mut(name)
                .and_then(|n| n.node.as_mut())
                .and_then(|n| n.poll_output());
            let Some(output) = output else {
                // Local edits the application committed meanwhile.
                let local: Vec<DocId> = self
                    .nodes
                    .get(name)
                    .and_then(|n| n.local.lock().ok().map(|mut l| std::mem::take(&mut *l)))
                    .unwrap_or_default();
                if local.is_empty() {
                    break;
                }
                let now = self.now;
                if let Some(node) = self.nodes.get_mut(name).and_then(|n| n.node.as_mut()) {
                    for doc in local {
                        node.handle(now, Input::LocalChange { doc });
                    }
                }
                continue;
            };
            self.output(name, output);
        }
        self.take_trace();
        let now = self.now;
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let next = n.node.as_ref().and_then(|n| n.poll_timeout());
        if next.is_some() && next != n.wake {
            n.wake = next;
            let at = next.unwrap_or(now).max(now);
            self.at(
                at,
                Due::Wake {
                    node: name.to_string(),
                },
            );
        }
    }

    fn take_trace(&mut self) {
        let lines: Vec<String> = self
            .lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for l in lines {
            self.log(l);
        }
    }

    fn output(&mut self, name: &str, output: Output) {
        match output {
            Output::Transmit { channel, frame } => self.transmit(name, channel, frame),
            Output::TransmitShared { channel, frame } => {
                for i in 0..frame.chunk_count() {
                    self.transmit(name, channel, frame.chunk(i));
                }
            }
            Output::Close { channel, reason } => {
                self.log(format!("{name}: close {channel} ({reason})"));
                if let Some(other) = self.net.unlink(name, channel) {
                    let t = self.now + 1;
                    let due = self.closed_due(other.node, other.channel);
                    self.at(t, due);
                }
            }
            Output::Dial { remote } => {
                let epoch = self.nodes.get(name).map(|n| n.epoch).unwrap_or(0);
                let t = self.now + 1;
                self.at(
                    t,
                    Due::Dial {
                        node: name.to_string(),
                        remote: remote.to_string(),
                        epoch,
                    },
                );
            }
            Output::Store(job) => {
                self.log(format!(
                    "{name} -> {name}.store  {}",
                    trace::store_op(&job.op)
                ));
                let Some(n) = self.nodes.get_mut(name) else {
                    return;
                };
                if job.aside && n.read_delay > 0 {
                    // Reads beside the others take different times, so
                    // their answers overtake one another and the writes.
                    let t = self.now + n.read_delay * (1 + job.id % 3);
                    let due = Due::Read {
                        node: name.to_string(),
                        epoch: n.epoch,
                        job,
                    };
                    self.at(t, due);
                    return;
                }
                n.jobs.push_back(job);
                if !n.store_busy {
                    n.store_busy = true;
                    let (t, epoch) = (self.now + n.store_delay, n.epoch);
                    self.at(
                        t,
                        Due::Store {
                            node: name.to_string(),
                            epoch,
                        },
                    );
                }
            }
            Output::Event(event) => self.event(name, event),
            // The simulated nodes have no checker that asks elsewhere.
            Output::Authenticate { channel, .. } => {
                self.feed(
                    name,
                    Input::Checked {
                        channel,
                        checked: docweave_shell::Checked::Refused("nobody to ask".into()),
                    },
                );
            }
        }
    }

    fn event(&mut self, name: &str, event: Event) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        match &event {
            Event::DocReady { doc, .. } => {
                let (ready, keep): (Vec<_>, Vec<_>) =
                    n.pending_edits.drain(..).partition(|(d, _)| d == doc);
                n.pending_edits = keep;
                for (_, value) in ready {
                    self.apply_edit(name, doc, &value);
                }
            }
            Event::Durable { doc, version, .. } => {
                for e in n.edits.iter_mut() {
                    if &e.doc == doc && e.acked_by.is_none() && version.includes(&e.version) {
                        e.acked_by = Some("store".into());
                    }
                }
            }
            Event::AckedByRemote { peer, doc, version } => {
                for e in n.edits.iter_mut() {
                    if &e.doc == doc && e.acked_by.is_none() && version.includes(&e.version) {
                        e.acked_by = Some(peer.to_string());
                    }
                }
            }
            _ => {}
        }
        if let Some(n) = self.nodes.get_mut(name) {
            n.events.push(event);
        }
    }

    fn transmit(&mut self, name: &str, channel: ChannelId, frame: Vec<u8>) {
        let Some(other) = self.net.peer_of(name, channel).cloned() else {
            return;
        };
        let messages = self.observe(
            (name.to_string(), other.node.clone(), channel.0, true),
            &frame,
        );
        for m in &messages {
            self.check_echo(name, &other.node, m);
            self.log(format!("{name} -> {}  {}", other.node, trace::message(m)));
        }
        // A Loro session runs in its hub's process: nothing between them is lost.
        let arrivals = if self.loro.contains_key(&other.node) {
            vec![self.now + 1]
        } else {
            self.net.schedule(name, channel, self.now)
        };
        if arrivals.is_empty() {
            self.log(format!("{name} -> {}  (lost)", other.node));
        }
        let incarnation = self.incarnation(&other.node);
        for t in arrivals {
            self.at(
                t,
                Due::Frame {
                    from: name.to_string(),
                    to: other.node.clone(),
                    channel: other.channel,
                    bytes: frame.clone(),
                    incarnation,
                },
            );
        }
    }

    /// The messages of a frame the checks look at: chunk frames are put
    /// back together first (per sender, receiver, channel and side), as a
    /// node would, so a large message is checked like any other.
    fn observe(&mut self, key: (String, String, u64, bool), frame: &[u8]) -> Vec<Message> {
        let Some(c) = docweave_core::parse_chunk(frame) else {
            return decode(frame, &Default::default()).unwrap_or_default();
        };
        let now = self.now;
        let r = self.observed.entry(key).or_insert_with(|| {
            docweave_adapters::reassembly::Reassembly::new(
                docweave_adapters::reassembly::ReassemblyLimits {
                    max_message: usize::MAX / 2,
                    max_pending: 4,
                    max_held: usize::MAX / 2,
                    // A message a lost chunk left incomplete is given up on,
                    // as a node gives it up, so lost chunks do not fill the
                    // slots of a raw endpoint for good.
                    deadline_ms: REASSEMBLY_DEADLINE_MS,
                },
            )
        });
        r.expire(now);
        if c.index == 0 && r.begin(c.id, c.count, Some(c.total), now).is_err() {
            return Vec::new();
        }
        match r.piece(c.id, c.index, c.bytes, now) {
            Ok(Some(whole)) => {
                let limits = docweave_core::Limits {
                    max_frame: usize::MAX / 2,
                    ..Default::default()
                };
                decode(&whole, &limits).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// A live update sent to a peer must bring something the peer neither
    /// sent itself nor promised to keep. (An answer to a request follows
    /// what the request said it has, which a reordered request may
    /// understate; data a peer holds but has not made durable is pushed
    /// again, so its loss in a crash is not final.)
    fn check_echo(&mut self, from: &str, to: &str, m: &Message) {
        let Message::Update { doc, version, .. } = m else {
            return;
        };
        let key = (from.to_string(), to.to_string(), doc.clone());
        let covered = |map: &BTreeMap<(String, String, DocId), VersionVector>| {
            map.get(&key)
                .is_some_and(|got| !version.is_empty() && got.includes(version))
        };
        if covered(&self.received) && covered(&self.promised) {
            self.echoes.push(format!(
                "{from} sent {to} {doc} at {version}, all of which {to} had sent it"
            ));
        }
    }

    fn note_received(&mut self, to: &str, from: &str, m: &Message) {
        let mut promise = |doc: &DocId, version: &VersionVector| {
            let e = self
                .promised
                .entry((to.to_string(), from.to_string(), doc.clone()))
                .or_default();
            *e = e.merge(version);
        };
        match m {
            Message::SyncResponse {
                doc,
                reply: Reply::UpToDate,
                version,
                ..
            } => promise(doc, version),
            Message::Changes { docs, .. } => {
                for d in docs {
                    promise(&d.doc, &d.version);
                }
            }
            _ => {}
        }
        let (doc, version) = match m {
            Message::Update { doc, version, .. } => (doc, version),
            Message::SyncResponse {
                doc,
                reply: Reply::Snapshot(_) | Reply::Delta(_),
                version,
                ..
            } => (doc, version),
            _ => return,
        };
        let e = self
            .received
            .entry((to.to_string(), from.to_string(), doc.clone()))
            .or_default();
        *e = e.merge(version);
    }

    /// Carries out the next due thing. `false` when nothing is due.
    fn step(&mut self, until: u64, timers: bool) -> bool {
        if self.events_done >= self.max_events {
            return false;
        }
        self.events_done += 1;
        let next = self
            .due
            .iter()
            .find(|((t, _), d)| *t <= until && (timers || !d.is_timer()));
        let Some((&key, _)) = next else {
            return false;
        };
        // Timers due before the next piece of work fire first.
        let key = self.due.range(..key).next().map(|(k, _)| *k).unwrap_or(key);
        let Some(due) = self.due.remove(&key) else {
            return false;
        };
        self.now = self.now.max(key.0);
        self.happen(due);
        true
    }

    fn happen(&mut self, due: Due) {
        let now = self.now;
        match due {
            Due::Frame {
                from,
                to,
                channel,
                bytes,
                incarnation,
            } => {
                // Frames already on the wire arrive even if the sender closed
                // after them (a close follows its last words); a cut drops
                // them, and so does the receiver's crash.
                if self.net.cut(&from, &to) || self.incarnation(&to) != incarnation {
                    return;
                }
                let messages = self.observe((from.clone(), to.clone(), channel.0, false), &bytes);
                for m in &messages {
                    self.note_received(&to, &from, m);
                }
                if self.loro.contains_key(&to) {
                    return self.loro_node_frame(&to, bytes);
                }
                if self.raw.contains(&to) {
                    self.raw_inbox.entry(to).or_default().extend(messages);
                    return;
                }
                self.feed(&to, Input::Frame { channel, bytes });
            }
            Due::Closed {
                node,
                channel,
                incarnation,
            } => {
                if self.incarnation(&node) != incarnation {
                    return;
                }
                if self.loro.contains_key(&node) {
                    return self.loro_link_closed(&node);
                }
                if self.raw.contains(&node) {
                    return;
                }
                self.feed(&node, Input::ChannelClosed { channel });
            }
            Due::Dial {
                node,
                remote,
                epoch,
            } => self.dial(&node, &remote, epoch),
            Due::Store { node, epoch } => self.run_store_job(&node, epoch),
            Due::Read { node, epoch, job } => self.run_read_aside(&node, epoch, job),
            Due::Announce { node, what } => self.announced_to(&node, what),
            Due::LoroToSession {
                name,
                generation,
                bytes,
            } => self.loro_session_reads(&name, generation, bytes),
            Due::LoroResume { name, generation } => self.loro_resume(&name, generation),
            Due::LoroTick { name, generation } => self.loro_tick(&name, generation),
            Due::LoroToClient {
                name,
                generation,
                message,
            } => self.loro_client_reads(&name, generation, message),
            Due::LoroReconnect { name } => self.loro_reconnect(&name),
            Due::LoroPing { name, generation } => self.loro_ping(&name, generation),
            Due::Wake { node } => {
                let due = self.nodes.get_mut(&node).and_then(|n| {
                    n.wake = None;
                    n.node.as_ref().and_then(|x| x.poll_timeout())
                });
                if due.is_some_and(|t| t <= now) {
                    self.feed(&node, Input::Timeout);
                } else {
                    self.pump(&node);
                }
            }
        }
    }

    fn dial(&mut self, name: &str, remote: &str, epoch: u64) {
        if self.nodes.get(name).map(|n| n.epoch) != Some(epoch) {
            return;
        }
        let up = self.nodes.get(remote).is_some_and(|n| n.node.is_some());
        if !up || self.net.cut(name, remote) {
            self.log(format!("{name}: dial {remote} failed"));
            self.feed(
                name,
                Input::DialFailed {
                    remote: RemoteAddr::new(remote),
                },
            );
            return;
        }
        let now = self.now;
        let (Some(a), Some(b)) = (
            self.nodes
                .get_mut(name)
                .and_then(|n| n.node.as_mut())
                .map(|n| n.channel_opened(now, Some(RemoteAddr::new(remote)))),
            self.nodes
                .get_mut(remote)
                .and_then(|n| n.node.as_mut())
                .map(|n| n.channel_opened(now, None)),
        ) else {
            return;
        };
        self.log(format!("{name}: connected to {remote}"));
        self.net.link(
            End {
                node: name.to_string(),
                channel: a,
            },
            End {
                node: remote.to_string(),
                channel: b,
            },
        );
        self.pump(name);
        self.pump(remote);
    }

    /// Runs a read beside the node's other jobs and answers it at once.
    fn run_read_aside(&mut self, name: &str, epoch: u64, job: StoreJob) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let (true, Some(store)) = (n.epoch == epoch, n.store.as_mut()) else {
            return;
        };
        let answer = StoreAnswer {
            id: job.id,
            result: run_job(store, job.op),
        };
        self.log(format!(
            "{name}.store -> {name}  {} (read aside)",
            trace::store_result(&answer.result)
        ));
        self.feed(name, Input::Store(answer));
    }

    fn run_store_job(&mut self, name: &str, epoch: u64) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if n.epoch != epoch {
            return;
        }
        let (Some(job), Some(store)) = (n.jobs.pop_front(), n.store.as_mut()) else {
            n.store_busy = false;
            return;
        };
        let result = run_job(store, job.op);
        self.deliver_announcements();
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let answer = StoreAnswer { id: job.id, result };
        let line = format!(
            "{name}.store -> {name}  {}",
            trace::store_result(&answer.result)
        );
        if n.jobs.is_empty() {
            n.store_busy = false;
        } else {
            let t = now + n.store_delay;
            self.at(
                t,
                Due::Store {
                    node: name.to_string(),
                    epoch,
                },
            );
        }
        self.log(line);
        self.feed(name, Input::Store(answer));
    }

    /// Runs until no frame, dial or store job is pending (timers due
    /// before those fire on the way).
    pub fn run(&mut self) {
        let mut budget = 1_000_000u64;
        while budget > 0 && self.step(u64::MAX, false) {
            budget -= 1;
        }
    }

    /// Lets `ms` of virtual time pass, firing every timer due.
    pub fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        let mut budget = 1_000_000u64;
        while budget > 0 && self.step(until, true) {
            budget -= 1;
        }
        self.now = self.now.max(until);
    }

    /// Node `name` keeps connected to `remote`, presenting `token`.
    pub fn connect(&mut self, name: &str, remote: &str, token: Option<&str>) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.remotes
                .push((remote.to_string(), token.map(str::to_string)));
        }
        self.feed(
            name,
            Input::Connect {
                remote: RemoteAddr::new(remote),
                token: token.map(str::to_string),
                filter: Filter::all(),
            },
        );
        self.run();
    }

    /// The application opens a document and waits for it.
    pub fn open(&mut self, name: &str, doc: &str) {
        self.feed(
            name,
            Input::Open {
                doc: DocId::new(doc),
            },
        );
        self.run();
    }

    fn apply_edit(&mut self, name: &str, doc: &DocId, value: &str) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let Some(node) = n.node.as_mut() else {
            return;
        };
        let Some(handle) = node.doc_handle(doc) else {
            return;
        };
        E::append(&handle, value);
        let version = node
            .replica(doc)
            .map(|d| node.engine().version(d))
            .unwrap_or_default();
        n.edits.push(Edit {
            doc: doc.clone(),
            value: value.to_string(),
            version,
            acked_by: None,
        });
    }

    /// The application appends `value` to a document (opening it first if
    /// needed), without letting anything else happen yet.
    pub fn edit_now(&mut self, name: &str, doc: &str, value: &str) {
        let id = DocId::new(doc);
        let ready = self
            .nodes
            .get(name)
            .and_then(|n| n.node.as_ref())
            .is_some_and(|n| n.model().doc_version(&id).is_some());
        self.log(format!("{name}: edit {doc} +{value}"));
        if ready {
            self.apply_edit(name, &id, value);
            self.pump(name);
        } else {
            if let Some(n) = self.nodes.get_mut(name) {
                n.pending_edits.push((id.clone(), value.to_string()));
            }
            self.feed(name, Input::Open { doc: id });
        }
    }

    /// The application appends `value` to a document, then everything settles.
    pub fn edit(&mut self, name: &str, doc: &str, value: &str) {
        self.edit_now(name, doc, value);
        self.run();
    }

    /// The application sets presence.
    pub fn presence(&mut self, name: &str, doc: &str, namespace: &str, data: &[u8]) {
        self.log(format!("{name}: presence {doc}/{namespace}"));
        self.feed(
            name,
            Input::SetPresence {
                doc: DocId::new(doc),
                namespace: Namespace::new(namespace),
                data: Payload::new(data.to_vec()),
            },
        );
        self.run();
    }

    /// The application deletes a document.
    pub fn delete(&mut self, name: &str, doc: &str) {
        self.log(format!("{name}: delete {doc}"));
        self.feed(
            name,
            Input::Delete {
                doc: DocId::new(doc),
            },
        );
        self.run();
    }

    /// `node` reaches the others by HTTP polling every `every_ms`.
    pub fn polls(&mut self, node: &str, every_ms: u64) {
        self.net.polling.insert(node.to_string(), every_ms);
    }

    /// Cuts `a` from `b`: their connections break, dials fail until healed.
    pub fn partition(&mut self, a: &str, b: &str) {
        self.log(format!("partition {a} | {b}"));
        self.net.partition(a, b);
        for (channel, other) in self.net.ends_at(a) {
            if other.node == b {
                self.net.unlink(a, channel);
                let t = self.now + 1;
                let due = self.closed_due(a.to_string(), channel);
                self.at(t, due);
                let due = self.closed_due(other.node, other.channel);
                self.at(t, due);
            }
        }
        self.run();
    }

    /// Lets `a` and `b` reach each other again.
    pub fn heal(&mut self, a: &str, b: &str) {
        self.log(format!("heal {a} | {b}"));
        self.net.heal(a, b);
    }

    /// Heals every partition.
    pub fn heal_all(&mut self) {
        self.net.heal_all();
        self.cut_announcements(false);
    }

    /// Kills a node (store jobs not yet run are lost) and starts it again.
    pub fn crash(&mut self, name: &str) {
        self.log(format!("{name}: crash"));
        let lost = self
            .nodes
            .get_mut(name)
            .and_then(|n| n.store.as_mut())
            .and_then(FaultyStore::crash);
        if let Some(loss) = lost {
            let (first, last) = loss.clocks;
            self.log(format!(
                "{name}: its store lost its last write ({:?}, clocks {}..={})",
                loss.docs, first.0, last.0
            ));
            self.store_losses
                .extend(loss.docs.into_iter().map(|d| (name.to_string(), d)));
            self.reissued.push((name.to_string(), first, last));
        }
        if let Some(n) = self.nodes.get_mut(name) {
            n.node = None;
            n.jobs.clear();
            n.store_busy = false;
            n.pending_edits.clear();
            n.wake = None;
            if let Ok(mut l) = n.local.lock() {
                l.clear();
            }
        }
        for (channel, other) in self.net.ends_at(name) {
            self.net.unlink(name, channel);
            let t = self.now + 1;
            let due = self.closed_due(other.node, other.channel);
            self.at(t, due);
        }
        // Whatever anyone sent it or got from it before is gone with it.
        self.received
            .retain(|(a, b, _), _| a.as_str() != name && b.as_str() != name);
        self.promised
            .retain(|(a, b, _), _| a.as_str() != name && b.as_str() != name);
        self.start(name);
    }

    /// A node leaves for good: its process stops and never comes back.
    pub fn depart(&mut self, name: &str) {
        self.log(format!("{name}: leaves"));
        if let Some(n) = self.nodes.get_mut(name) {
            n.node = None;
            n.jobs.clear();
            n.epoch += 1;
        }
        for (channel, other) in self.net.ends_at(name) {
            self.net.unlink(name, channel);
            let t = self.now + 1;
            let due = self.closed_due(other.node, other.channel);
            self.at(t, due);
        }
        self.run();
    }

    /// Stores stop failing from now on.
    pub fn clear_store_faults(&mut self) {
        self.store_faults = StoreFaults::default();
        for n in self.nodes.values_mut() {
            if let Some(s) = n.store.as_mut() {
                s.faults = StoreFaults::default();
            }
        }
    }

    /// Restarts a node (a crash), then lets everything settle.
    pub fn restart(&mut self, name: &str) {
        self.crash(name);
        self.run();
    }

    /// A raw endpoint (not a node) connects to `target`: frames it is sent
    /// land in `raw_inbox[from]`.
    pub fn raw_connect(&mut self, from: &str, target: &str) {
        let now = self.now;
        let Some(ch) = self
            .nodes
            .get_mut(target)
            .and_then(|n| n.node.as_mut())
            .map(|n| n.channel_opened(now, None))
        else {
            return;
        };
        self.raw.insert(from.to_string());
        self.net.link(
            End {
                node: from.to_string(),
                channel: ChannelId(0),
            },
            End {
                node: target.to_string(),
                channel: ch,
            },
        );
        self.log(format!("{from}: connected to {target}"));
        self.pump(target);
        self.run();
    }

    /// A raw endpoint sends one message, framed, to the node it connected to.
    pub fn raw_say(&mut self, from: &str, m: Message) {
        self.raw_send(from, docweave_core::encode(&[m]).unwrap_or_default());
    }

    /// A raw endpoint introduces itself as the bot `from` and registers a
    /// listener for every document (listener 1 on a fresh node).
    pub fn raw_listener(&mut self, from: &str) {
        self.raw_hello(from);
        let filter = Filter::all();
        self.raw_say(from, Message::ListenerRegister { filter, id: None });
    }

    /// A raw endpoint introduces itself as the bot `from`.
    pub fn raw_hello(&mut self, from: &str) {
        use docweave_core::{Clock, Hello, PeerKind, PROTOCOL_VERSION};
        let hello = Hello {
            peer: PeerId::new(from),
            name: from.into(),
            kind: PeerKind::Bot,
            protocol: PROTOCOL_VERSION,
            token: None,
            clock: Clock(0),
        };
        self.raw_say(from, Message::Hello(hello));
    }

    /// Whether a raw endpoint is still connected (a crash of its node ends it).
    pub fn raw_connected(&self, from: &str) -> bool {
        self.net.peer_of(from, ChannelId(0)).is_some()
    }

    /// A raw endpoint sends bytes to the node it connected to.
    pub fn raw_send(&mut self, from: &str, bytes: Vec<u8>) {
        let Some(to) = self.net.peer_of(from, ChannelId(0)).cloned() else {
            return;
        };
        match decode(&bytes, &Default::default()) {
            Ok(ms) => {
                for m in &ms {
                    self.log(format!("{from} -> {}  {}", to.node, trace::message(m)));
                }
            }
            Err(_) => self.log(format!(
                "{from} -> {}  {} bytes of garbage",
                to.node,
                bytes.len()
            )),
        }
        let t = self.now + 1;
        let incarnation = self.incarnation(&to.node);
        self.at(
            t,
            Due::Frame {
                from: from.to_string(),
                to: to.node,
                channel: to.channel,
                bytes,
                incarnation,
            },
        );
        self.run();
    }

    /// Which life of a node (or Loro client connection) this is: bumped by
    /// every restart (or reconnection).
    /// The close of `channel` at `node`, for the process (or Loro
    /// connection) there now.
    fn closed_due(&self, node: String, channel: ChannelId) -> Due {
        let incarnation = self.incarnation(&node);
        Due::Closed {
            node,
            channel,
            incarnation,
        }
    }

    fn incarnation(&self, name: &str) -> u64 {
        match (self.nodes.get(name), self.loro.get(name)) {
            (Some(n), _) => n.epoch,
            (None, Some(m)) => m.generation(),
            (None, None) => 0,
        }
    }

    /// The running node.
    pub fn node(&self, name: &str) -> Option<&Node<E>> {
        self.nodes.get(name).and_then(|n| n.node.as_ref())
    }

    /// A running node's model.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.node(name).map(|n| n.model())
    }

    /// The values in a node's copy of a document (`None`: not held). A copy
    /// not in memory is read from the node's store, as the node would.
    pub fn content(&self, name: &str, doc: &str) -> Option<Vec<String>> {
        let id = DocId::new(doc);
        let n = self.nodes.get(name)?;
        let node = n.node.as_ref()?;
        let in_memory = node.model().doc_version(&id).is_some();
        // A node that keeps few documents' metadata in memory holds the
        // others in its store, read when asked for.
        let in_store_only = n.config.bounds.idle_metadata > 0 && !node.model().is_tombstoned(&id);
        if !in_memory && !in_store_only {
            return None;
        }
        if let Some(d) = node.replica(&id).filter(|_| in_memory) {
            return Some(E::values(d));
        }
        // Without a store nothing is evicted: no replica means no data yet.
        let Some(store) = n.store.as_ref() else {
            return Some(Vec::new());
        };
        let mut store = store.inner.contents();
        let loaded = docweave_adapters::Store::load(&mut store, &id).ok()??;
        let engine = E::make();
        let mut d = engine.create(0);
        for bytes in loaded.snapshot.iter().chain(loaded.changes.iter()) {
            // A piece that does not import is what the node, too, leaves out.
            let _ = engine.import(&mut d, bytes);
        }
        Some(E::values(&d))
    }

    /// A node's version of a document.
    pub fn version(&self, name: &str, doc: &str) -> VersionVector {
        self.node(name)
            .and_then(|n| n.model().doc_version(&DocId::new(doc)).cloned())
            .unwrap_or_default()
    }

    /// The channel at `node` that leads to `peer`.
    pub fn channel_of(&self, node: &str, peer: &str) -> Option<ChannelId> {
        self.net.channel_to(node, peer)
    }

    /// Whether `a` and `b` have an established connection.
    pub fn linked(&self, a: &str, b: &str) -> bool {
        let Some(ch) = self.net.channel_to(a, b) else {
            return false;
        };
        self.model(a)
            .and_then(|m| m.channel_peer(ch))
            .is_some_and(|p| p == &PeerId::new(b))
    }

    /// The store of a node (to write into it as another process would).
    pub fn store_mut(&mut self, name: &str) -> Option<&mut Backing> {
        self.nodes
            .get_mut(name)
            .and_then(|n| n.store.as_mut())
            .map(|s| &mut s.inner)
    }

    /// Sets how long each store job of a node takes.
    pub fn set_store_delay(&mut self, name: &str, ms: u64) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.store_delay = ms.max(1);
        }
    }

    /// Sets how long each read a node allows to run aside takes (0: such
    /// reads run in order with its other jobs).
    pub fn set_read_delay(&mut self, name: &str, ms: u64) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.read_delay = ms;
        }
    }

    /// Jobs waiting on a node's store.
    pub fn queued_jobs(&self, name: &str) -> Vec<StoreOp> {
        self.nodes
            .get(name)
            .map(|n| n.jobs.iter().map(|j| j.op.clone()).collect())
            .unwrap_or_default()
    }
}
