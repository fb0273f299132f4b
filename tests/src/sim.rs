//! A deterministic multi-node simulator over the core alone.
//!
//! Each node is a [`Model`] plus a toy shell: toy documents, a toy store on a
//! storage channel, and a network of framed messages that can be dropped,
//! duplicated, reordered, partitioned and closed. Every run with the same
//! seed and the same script is identical, and can be printed as a trace.

use crate::store::ToyStore;
use crate::toy::ToyDoc;
use crate::trace;
use docweave_core::{
    decode, encode, update, ChannelId, ChannelKind, Clock, Cmd, Config, DocId, DocMeta, Event,
    Filter, ImportId, Limits, Message, Model, Msg, Namespace, Outgoing, Payload, RemoteAddr, Reply,
    Strand,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Fault probabilities in parts per thousand.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Frames lost.
    pub drop: u32,
    /// Frames delivered twice.
    pub duplicate: u32,
    /// Frames delivered out of order.
    pub reorder: u32,
}

/// One simulated node.
pub struct Node {
    /// Its name, also its address and peer id.
    pub name: String,
    config: Config,
    /// The core's model.
    pub model: Model,
    /// The shell's documents.
    pub docs: BTreeMap<DocId, ToyDoc>,
    /// Its durable store, if it has one.
    pub store: Option<ToyStore>,
    store_channel: Option<ChannelId>,
    next_channel: u64,
    /// Events emitted since start.
    pub events: Vec<Event>,
    wake: Option<u64>,
    /// The actor number of its local edits.
    pub actor: u64,
    remotes: Vec<(RemoteAddr, Option<String>, Filter)>,
    local: VecDeque<Msg>,
    /// Import id to the channel the data came from and the version its
    /// sender announced (for the echo check).
    import_from: BTreeMap<ImportId, (ChannelId, docweave_core::VersionVector)>,
    /// Local edits the store acknowledged as durable: (doc, op).
    pub durable_ops: Vec<(DocId, (u64, u64))>,
    pending_ops: Vec<(DocId, (u64, u64))>,
}

enum Item {
    Frame {
        from: String,
        from_ch: ChannelId,
        to: String,
        to_ch: ChannelId,
        bytes: Vec<u8>,
    },
    Close {
        node: String,
        ch: ChannelId,
    },
}

/// The simulator.
pub struct Sim {
    /// Simulated milliseconds.
    pub now: u64,
    /// The nodes by name.
    pub nodes: BTreeMap<String, Node>,
    links: BTreeMap<(String, ChannelId), (String, ChannelId)>,
    queue: VecDeque<Item>,
    /// Fault probabilities.
    pub faults: Faults,
    partitions: BTreeSet<(String, String)>,
    rng: u64,
    /// Trace lines, when tracing.
    pub trace: Vec<String>,
    tracing: bool,
    /// Data sent back to the channel it was just imported from.
    pub echoes: Vec<String>,
    /// Frames decoded (for sanity).
    pub frames: u64,
    /// Messages that reached raw endpoints (not nodes), by endpoint name.
    pub raw_inbox: BTreeMap<String, Vec<Message>>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Sim {
    /// An empty simulation; `seed` drives every fault.
    pub fn new(seed: u64) -> Self {
        Self {
            now: 0,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            faults: Faults::default(),
            partitions: BTreeSet::new(),
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            trace: Vec::new(),
            tracing: false,
            echoes: Vec::new(),
            frames: 0,
            raw_inbox: BTreeMap::new(),
        }
    }

    /// Records a trace from now on.
    pub fn traced(mut self) -> Self {
        self.tracing = true;
        self
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.random() % 1000 < u64::from(per_mille)
    }

    fn log(&mut self, line: String) {
        if self.tracing {
            self.trace.push(line);
        }
    }

    /// The trace as one text.
    pub fn trace_text(&self) -> String {
        self.trace.join("\n")
    }

    /// Adds a node; with `store` it gets a toy store on channel 0.
    pub fn add_node(&mut self, config: Config, actor: u64, store: bool) {
        let name = config.peer.to_string();
        let node = Node {
            name: name.clone(),
            model: Model::new(config.clone()),
            config,
            docs: BTreeMap::new(),
            store: store.then(ToyStore::default),
            store_channel: None,
            next_channel: 1,
            events: Vec::new(),
            wake: None,
            actor,
            remotes: Vec::new(),
            local: VecDeque::new(),
            import_from: BTreeMap::new(),
            durable_ops: Vec::new(),
            pending_ops: Vec::new(),
        };
        self.nodes.insert(name.clone(), node);
        if store {
            self.attach_store(&name);
        }
    }

    /// Adds a node whose store already holds data; `restore` feeds the
    /// store's metadata at start (as after a restart); without it the core
    /// discovers the documents by asking (as when another process wrote them).
    pub fn add_node_with_store(
        &mut self,
        config: Config,
        actor: u64,
        store: ToyStore,
        restore: bool,
    ) {
        let name = config.peer.to_string();
        self.add_node(config, actor, false);
        let Some(node) = self.nodes.get_mut(&name) else {
            return;
        };
        node.docs = store
            .docs
            .iter()
            .map(|(k, (d, _))| (k.clone(), d.clone()))
            .collect();
        node.store = Some(if restore {
            store
        } else {
            ToyStore {
                records: BTreeMap::new(),
                ..store
            }
        });
        if restore {
            self.attach_store(&name);
        } else {
            let ch = ChannelId(node.next_channel);
            node.next_channel += 1;
            node.store_channel = Some(ch);
            self.feed(
                &name,
                Msg::ChannelAdded {
                    channel: ch,
                    kind: ChannelKind::Storage,
                    remote: None,
                },
            );
        }
    }

    /// The channel `node` uses for its link to `peer`.
    pub fn channel_of(&self, node: &str, peer: &str) -> Option<ChannelId> {
        self.links
            .iter()
            .find(|((n, _), (p, _))| n == node && p == peer)
            .map(|(k, _)| k.1)
    }

    /// Opens a channel from a raw endpoint named `from` (not a node) to
    /// `target`: what `target` sends on it is traced and dropped.
    pub fn raw_connect(&mut self, from: &str, target: &str) {
        let Some(n) = self.nodes.get_mut(target) else {
            return;
        };
        let cb = ChannelId(n.next_channel);
        n.next_channel += 1;
        self.links
            .insert((target.to_string(), cb), (from.to_string(), ChannelId(0)));
        self.links
            .insert((from.to_string(), ChannelId(0)), (target.to_string(), cb));
        self.log(format!("{from}: connected to {target}"));
        self.feed(
            target,
            Msg::ChannelAdded {
                channel: cb,
                kind: ChannelKind::Network,
                remote: None,
            },
        );
    }

    /// Sends raw bytes from a raw endpoint and runs.
    pub fn raw_send(&mut self, from: &str, target: &str, bytes: Vec<u8>) {
        self.log(format!("{from} -> {target}  {} raw bytes", bytes.len()));
        self.inject(from, target, bytes);
        self.run();
    }

    /// Whether `a` and `b` are linked now.
    pub fn linked(&self, a: &str, b: &str) -> bool {
        self.channel_of(a, b).is_some()
    }

    fn attach_store(&mut self, name: &str) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let ch = ChannelId(node.next_channel);
        node.next_channel += 1;
        node.store_channel = Some(ch);
        let (clock, docs, records) = node
            .store
            .as_ref()
            .map(|s| s.restored())
            .unwrap_or_default();
        let restore = !docs.is_empty() || !records.is_empty() || clock > Clock(0);
        self.feed(
            name,
            Msg::ChannelAdded {
                channel: ch,
                kind: ChannelKind::Storage,
                remote: None,
            },
        );
        if restore {
            self.feed(
                name,
                Msg::Restored {
                    store: ch,
                    clock,
                    docs,
                    records,
                },
            );
        }
    }

    /// Feeds one input to a node and carries out its commands.
    pub fn feed(&mut self, name: &str, msg: Msg) {
        if let Some(line) = trace::input(&msg) {
            self.log(format!("{name}: {line}"));
        }
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let echo_source = match &msg {
            Msg::Imported { id, .. } => node.import_from.remove(id),
            _ => None,
        };
        // Stores are not checked: a queued request replayed after a store's
        // answer would be attributed to the store.
        let received_on = match &msg {
            Msg::Received {
                channel,
                message: Message::Update { version, .. } | Message::SyncResponse { version, .. },
            } if node.store_channel != Some(*channel) => Some((*channel, version.clone())),
            _ => None,
        };
        let model = std::mem::replace(&mut node.model, Model::new(node.config.clone()));
        let (model, cmds) = update(model, msg);
        node.wake = model.wake_at();
        node.model = model;
        for cmd in cmds {
            if let (Some((src, sent)), Cmd::Send { channel, items }) = (&echo_source, &cmd) {
                for item in items {
                    // Data back to the source is fine only if it starts from
                    // what the source announced: then none of its own changes return.
                    let echoed = match item {
                        Outgoing::Data { since, .. } if channel == src => {
                            !since.as_ref().is_some_and(|v| v.includes(sent))
                        }
                        _ => false,
                    };
                    if echoed {
                        self.echoes.push(format!(
                            "{name} sent data back on {channel} right after importing from it"
                        ));
                    }
                }
            }
            if let (Some(from), Cmd::Import { id, .. }) = (&received_on, &cmd) {
                if let Some(n) = self.nodes.get_mut(name) {
                    n.import_from.insert(*id, from.clone());
                }
            }
            self.execute(name, cmd);
        }
    }

    fn peer_name(&self, name: &str, ch: ChannelId) -> String {
        let node = self.nodes.get(name);
        if node.and_then(|n| n.store_channel) == Some(ch) {
            return format!("{name}.store");
        }
        self.links
            .get(&(name.to_string(), ch))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("{ch}"))
    }

    fn execute(&mut self, name: &str, cmd: Cmd) {
        if let Some(line) = trace::command(&cmd) {
            self.log(format!("{name}: {line}"));
        }
        match cmd {
            Cmd::Send { channel, items } => self.send(name, channel, items),
            Cmd::Import { id, doc, data } => {
                let Some(node) = self.nodes.get_mut(name) else {
                    return;
                };
                let outcome = node.docs.entry(doc).or_default().import(data.as_bytes());
                node.local.push_back(Msg::Imported { id, outcome });
            }
            Cmd::Close { channel, .. } => self.queue.push_back(Item::Close {
                node: name.to_string(),
                ch: channel,
            }),
            Cmd::Dial { remote } => self.dial(name, remote),
            Cmd::Save(record) => {
                if let Some(s) = self.nodes.get_mut(name).and_then(|n| n.store.as_mut()) {
                    s.save(record);
                }
            }
            Cmd::Purge { doc } => {
                if let Some(n) = self.nodes.get_mut(name) {
                    n.docs.remove(&doc);
                    if let Some(s) = n.store.as_mut() {
                        s.purge(&doc);
                    }
                }
            }
            Cmd::WakeAt(_) => {}
            Cmd::Emit(e) => {
                if let Some(n) = self.nodes.get_mut(name) {
                    if let Event::Durable { doc, version, .. } = &e {
                        let (done, waiting): (Vec<_>, Vec<_>) = n
                            .pending_ops
                            .drain(..)
                            .partition(|(d, (a, c))| d == doc && version.contains(*a, *c));
                        n.pending_ops = waiting;
                        n.durable_ops.extend(done);
                    }
                    n.events.push(e);
                }
            }
            Cmd::Log { .. } => {}
        }
    }

    fn resolve(&self, name: &str, items: Vec<Outgoing>) -> Vec<Message> {
        let Some(node) = self.nodes.get(name) else {
            return Vec::new();
        };
        let empty = ToyDoc::default();
        items
            .into_iter()
            .map(|item| match item {
                Outgoing::Message(m) => m,
                Outgoing::Data {
                    doc,
                    batch,
                    since,
                    as_update,
                } => {
                    let d = node.docs.get(&doc).unwrap_or(&empty);
                    let data = d.export(since.as_ref());
                    let version = d.version();
                    if as_update {
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
                    }
                }
                Outgoing::Strands { id, items, more } => {
                    let strands = items
                        .into_iter()
                        .map(|s| {
                            let d = node.docs.get(&s.doc).unwrap_or(&empty);
                            let since = if s.since.is_empty() {
                                None
                            } else {
                                Some(&s.since)
                            };
                            Strand {
                                data: d.export(since),
                                version: d.version(),
                                doc: s.doc,
                                meta: s.meta,
                                since: s.since,
                                clock: s.clock,
                            }
                        })
                        .collect();
                    Message::Strands { id, strands, more }
                }
            })
            .collect()
    }

    fn send(&mut self, name: &str, channel: ChannelId, items: Vec<Outgoing>) {
        let messages = self.resolve(name, items);
        let to = self.peer_name(name, channel);
        for m in &messages {
            self.log(format!("{name} -> {to}  {}", trace::message(m)));
        }
        let is_store = self.nodes.get(name).and_then(|n| n.store_channel) == Some(channel);
        if is_store {
            let Some(node) = self.nodes.get_mut(name) else {
                return;
            };
            let Some(store) = node.store.as_mut() else {
                return;
            };
            for m in &messages {
                if let Some(reply) = store.handle(m) {
                    node.local.push_back(Msg::Received {
                        channel,
                        message: reply,
                    });
                }
            }
            return;
        }
        let Some((peer, peer_ch)) = self.links.get(&(name.to_string(), channel)).cloned() else {
            return;
        };
        let bytes = encode(&messages).unwrap_or_default();
        self.queue.push_back(Item::Frame {
            from: name.to_string(),
            from_ch: channel,
            to: peer,
            to_ch: peer_ch,
            bytes,
        });
    }

    fn dial(&mut self, name: &str, remote: RemoteAddr) {
        let target = remote.to_string();
        let reachable = self.nodes.contains_key(&target)
            && target != name
            && !self.partitions.contains(&pair(name, &target));
        if !reachable {
            if let Some(n) = self.nodes.get_mut(name) {
                n.local.push_back(Msg::ConnectFailed { remote });
            }
            return;
        }
        let (Some(a), Some(b)) = (
            self.nodes.get(name).map(|n| n.next_channel),
            self.nodes.get(&target).map(|n| n.next_channel),
        ) else {
            return;
        };
        let (ca, cb) = (ChannelId(a), ChannelId(b));
        if let Some(n) = self.nodes.get_mut(name) {
            n.next_channel += 1;
        }
        if let Some(n) = self.nodes.get_mut(&target) {
            n.next_channel += 1;
        }
        self.links
            .insert((name.to_string(), ca), (target.clone(), cb));
        self.links
            .insert((target.clone(), cb), (name.to_string(), ca));
        self.log(format!("{name}: connected to {target}"));
        self.feed(
            &target,
            Msg::ChannelAdded {
                channel: cb,
                kind: ChannelKind::Network,
                remote: None,
            },
        );
        self.feed(
            name,
            Msg::ChannelAdded {
                channel: ca,
                kind: ChannelKind::Network,
                remote: Some(remote),
            },
        );
    }

    fn close_link(&mut self, name: &str, ch: ChannelId) {
        if let Some((peer, pch)) = self.links.remove(&(name.to_string(), ch)) {
            self.links.remove(&(peer.clone(), pch));
            self.log(format!("{name}: disconnected from {peer}"));
            self.feed(name, Msg::ChannelRemoved { channel: ch });
            self.feed(&peer, Msg::ChannelRemoved { channel: pch });
        }
    }

    /// Injects raw bytes on the channel from `from` to `to` (they must be linked).
    pub fn inject(&mut self, from: &str, to: &str, bytes: Vec<u8>) {
        let link = self
            .links
            .iter()
            .find(|((n, _), (p, _))| n == from && p == to)
            .map(|(k, v)| (k.1, v.1));
        if let Some((from_ch, to_ch)) = link {
            self.queue.push_back(Item::Frame {
                from: from.into(),
                from_ch,
                to: to.into(),
                to_ch,
                bytes,
            });
        }
    }

    fn settle_local(&mut self) -> bool {
        let mut any = false;
        loop {
            let next = self
                .nodes
                .iter_mut()
                .find_map(|(n, node)| node.local.pop_front().map(|m| (n.clone(), m)));
            let Some((name, msg)) = next else { break };
            any = true;
            if let Msg::Received { channel, message } = &msg {
                if self.nodes.get(&name).and_then(|n| n.store_channel) == Some(*channel) {
                    let line = format!("{name}.store -> {name}  {}", trace::message(message));
                    self.log(line);
                }
            }
            self.feed(&name, msg);
        }
        any
    }

    fn deliver_one(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let mut index = 0;
        if self.queue.len() > 1 && self.chance(self.faults.reorder) {
            index = (self.random() % self.queue.len() as u64) as usize;
        }
        let Some(item) = self.queue.remove(index) else {
            return false;
        };
        match item {
            Item::Close { node, ch } => self.close_link(&node, ch),
            Item::Frame {
                from,
                from_ch,
                to,
                to_ch,
                bytes,
            } => {
                if self.links.get(&(from.clone(), from_ch)) != Some(&(to.clone(), to_ch)) {
                    return true;
                }
                if self.chance(self.faults.drop) {
                    self.log(format!("  dropped a frame {from} -> {to}"));
                    return true;
                }
                if self.chance(self.faults.duplicate) {
                    self.queue.push_back(Item::Frame {
                        from: from.clone(),
                        from_ch,
                        to: to.clone(),
                        to_ch,
                        bytes: bytes.clone(),
                    });
                }
                self.frames += 1;
                if !self.nodes.contains_key(&to) {
                    let messages = decode(&bytes, &Limits::default()).unwrap_or_default();
                    self.raw_inbox.entry(to).or_default().extend(messages);
                    return true;
                }
                match decode(&bytes, &Limits::default()) {
                    Ok(messages) => {
                        for message in messages {
                            self.feed(
                                &to,
                                Msg::Received {
                                    channel: to_ch,
                                    message,
                                },
                            );
                        }
                    }
                    Err(e) => self.feed(
                        &to,
                        Msg::FrameRejected {
                            channel: to_ch,
                            reason: e.to_string(),
                        },
                    ),
                }
            }
        }
        true
    }

    /// Runs until nothing is in flight. Panics if it never settles (a livelock).
    pub fn run(&mut self) {
        for _ in 0..200_000 {
            if self.settle_local() {
                continue;
            }
            if !self.deliver_one() {
                return;
            }
        }
        panic!("the simulation did not settle: a message loop?");
    }

    /// Moves time forward, firing due timers, and runs.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        for round in 0.. {
            assert!(
                round < 100_000,
                "timers keep firing at the same time: a timer loop?"
            );
            let next = self
                .nodes
                .values()
                .filter_map(|n| n.wake)
                .filter(|w| *w <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            let due: Vec<String> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.wake.is_some_and(|w| w <= self.now))
                .map(|(k, _)| k.clone())
                .collect();
            for name in due {
                let now = self.now;
                self.feed(&name, Msg::Tick { now });
            }
            self.run();
        }
        self.now = end;
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            let now = self.now;
            if self.nodes.get(&name).is_some_and(|n| n.model.now() < now) {
                let before = self.tracing;
                self.tracing = false;
                self.feed(&name, Msg::Tick { now });
                self.tracing = before;
            }
        }
        self.run();
    }

    /// The application at `name` connects to `remote` (and keeps reconnecting).
    pub fn connect(&mut self, name: &str, remote: &str, token: Option<&str>) {
        let remote = RemoteAddr::new(remote);
        let token = token.map(str::to_string);
        if let Some(n) = self.nodes.get_mut(name) {
            n.remotes
                .push((remote.clone(), token.clone(), Filter::all()));
        }
        self.feed(
            name,
            Msg::Connect {
                remote,
                token,
                filter: Filter::all(),
            },
        );
        self.run();
    }

    /// The application at `name` opens a document.
    pub fn open(&mut self, name: &str, doc: &str) {
        self.feed(
            name,
            Msg::OpenDoc {
                doc: DocId::new(doc),
                meta: DocMeta::default(),
            },
        );
        self.run();
    }

    /// The application at `name` appends `value` to a document and commits.
    pub fn edit(&mut self, name: &str, doc: &str, value: &str) -> (u64, u64) {
        let op = self.feed_edit(name, doc, value);
        self.run();
        op
    }

    /// Like [`Sim::edit`], without running the network afterwards.
    pub fn feed_edit(&mut self, name: &str, doc: &str, value: &str) -> (u64, u64) {
        let doc = DocId::new(doc);
        let Some(node) = self.nodes.get_mut(name) else {
            return (0, 0);
        };
        let actor = node.actor;
        let d = node.docs.entry(doc.clone()).or_default();
        let op = d.edit(actor, value);
        let version = d.version();
        if node.store.is_some() {
            node.pending_ops.push((doc.clone(), op));
        }
        self.feed(name, Msg::LocalChange { doc, version });
        op
    }

    /// The application at `name` sets its presence.
    pub fn presence(&mut self, name: &str, doc: &str, ns: &str, data: &[u8]) {
        self.feed(
            name,
            Msg::SetPresence {
                doc: DocId::new(doc),
                namespace: Namespace::new(ns),
                data: Payload::new(data.to_vec()),
            },
        );
        self.run();
    }

    /// The application at `name` deletes a document.
    pub fn delete(&mut self, name: &str, doc: &str) {
        self.feed(
            name,
            Msg::DeleteDoc {
                doc: DocId::new(doc),
            },
        );
        self.run();
    }

    /// Cuts every link between two nodes and refuses new ones until healed.
    pub fn partition(&mut self, a: &str, b: &str) {
        self.log(format!("-- partition {a} | {b}"));
        self.partitions.insert(pair(a, b));
        let cut: Vec<(String, ChannelId)> = self
            .links
            .iter()
            .filter(|((n, _), (p, _))| n == a && p == b)
            .map(|(k, _)| k.clone())
            .collect();
        for (n, ch) in cut {
            self.close_link(&n, ch);
        }
    }

    /// Lets two nodes reach each other again.
    pub fn heal(&mut self, a: &str, b: &str) {
        self.log(format!("-- heal {a} | {b}"));
        self.partitions.remove(&pair(a, b));
    }

    /// Removes every partition.
    pub fn heal_all(&mut self) {
        self.partitions.clear();
    }

    /// Kills a node (as with SIGKILL) and starts it again from its store.
    pub fn restart(&mut self, name: &str) {
        self.log(format!("-- restart {name}"));
        let links: Vec<ChannelId> = self
            .links
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .collect();
        self.queue.retain(|i| match i {
            Item::Frame { from, to, .. } => from != name && to != name,
            Item::Close { node, .. } => node != name,
        });
        for ch in links {
            if let Some((peer, pch)) = self.links.remove(&(name.to_string(), ch)) {
                self.links.remove(&(peer.clone(), pch));
                self.feed(&peer, Msg::ChannelRemoved { channel: pch });
            }
        }
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        node.model = Model::new(node.config.clone());
        // A new session edits as a new actor, as Loro picks a fresh peer id:
        // edits lost in the crash must not collide with new ones.
        node.actor += 1_000;
        node.local.clear();
        node.import_from.clear();
        node.pending_ops.clear();
        node.wake = None;
        node.docs = node
            .store
            .as_ref()
            .map(|s| {
                s.docs
                    .iter()
                    .map(|(k, (d, _))| (k.clone(), d.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let remotes = node.remotes.clone();
        node.store_channel = None;
        if node.store.is_some() {
            self.attach_store(name);
        }
        for (remote, token, filter) in remotes {
            self.feed(
                name,
                Msg::Connect {
                    remote,
                    token,
                    filter,
                },
            );
        }
        self.run();
    }

    /// A node's document, if it holds it.
    pub fn doc(&self, name: &str, doc: &str) -> Option<&ToyDoc> {
        self.nodes.get(name)?.docs.get(&DocId::new(doc))
    }

    /// Feeds a protocol message to `to` as if it arrived from `from`'s link.
    pub fn receive_from(&mut self, to: &str, from: &str, message: Message) {
        let ch = self
            .links
            .iter()
            .find(|((n, _), (p, _))| n == to && p == from)
            .map(|(k, _)| k.1);
        if let Some(channel) = ch {
            self.feed(to, Msg::Received { channel, message });
            self.run();
        }
    }
}
