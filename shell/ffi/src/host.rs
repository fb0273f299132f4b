//! The node behind a `dw_node*`: a `docweave_shell::Node` with its store
//! run inline, large frames expanded into chunk frames, and the bytes of
//! the last output kept alive for the host.

use docweave_adapters::{MemoryStore, SqliteStore, Store};
use docweave_core::{ChannelId, Config, DocId, Event, Filter, RemoteAddr};
use docweave_shell::{run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer};
use std::collections::VecDeque;
use std::ffi::CString;

/// What the host asks for (JSON in C).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// This node's peer id.
    pub peer: String,
    /// An SQLite file for the built-in store (default: memory).
    #[serde(default)]
    pub sqlite: Option<String>,
    /// The token presented to servers this node dials.
    #[serde(default)]
    pub token: Option<String>,
}

/// One output for the host (store jobs never come out: they run inside).
pub enum HostOutput {
    /// Write this frame to the connection of `channel`.
    Transmit {
        /// The channel.
        channel: ChannelId,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Close the connection of `channel`.
    Close {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: String,
    },
    /// Connect to the remote of this name, then `channel_opened`.
    Dial {
        /// The remote's name.
        remote: String,
    },
    /// Tell the application.
    Event(Event),
}

/// A node with its store (run inline) and the last output's bytes.
pub struct Host {
    /// The node.
    pub node: Node<LoroEngine>,
    store: Box<dyn Store>,
    /// The token presented to servers this node dials.
    pub token: Option<String>,
    ready: VecDeque<HostOutput>,
    /// The frame the last C poll handed out, alive until the next.
    pub held_bytes: Vec<u8>,
    /// The text the last C poll handed out, alive until the next.
    pub held_text: CString,
}

/// A CRDT actor number that differs across sessions of the same peer.
fn session_actor(peer: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    peer.hash(&mut h);
    std::process::id().hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .hash(&mut h);
    h.finish() >> 1
}

impl Host {
    /// A node for `c`, its store opened.
    pub fn new(c: HostConfig, now: u64) -> Result<Self, String> {
        let store: Box<dyn Store> = match &c.sqlite {
            Some(path) => Box::new(
                SqliteStore::open(std::path::Path::new(path))
                    .map_err(|e| format!("cannot open {path}: {e}"))?,
            ),
            None => Box::new(MemoryStore::new()),
        };
        let peer = docweave_core::PeerId::parse(&c.peer).map_err(|e| e.to_string())?;
        let options = NodeOptions {
            store: true,
            actor: session_actor(peer.as_str()),
            ..NodeOptions::default()
        };
        let mut node = Node::new(Config::new(peer.as_str()), LoroEngine, options);
        // The host's clock is monotonic: history entries are dated by the
        // wall clock, which read `now` then.
        node.set_wall_clock(docweave_shell::now_ms().saturating_sub(now));
        // The store is read now: a host whose store cannot be read gets an
        // error, not a node that goes on as if the store were empty.
        let mut store = store;
        if let Some(Output::Store(job)) = node.poll_output() {
            let result = run_job(store.as_mut(), job.op);
            if let docweave_shell::StoreResult::Failed(e) = &result {
                return Err(format!("the store could not be read: {}", e.reason));
            }
            node.handle(now, Input::Store(StoreAnswer { id: job.id, result }));
        }
        node.handle(now, Input::Timeout);
        Ok(Self {
            node,
            store,
            token: c.token,
            ready: VecDeque::new(),
            held_bytes: Vec::new(),
            held_text: CString::default(),
        })
    }

    /// Stay connected to the remote called `remote` (a dial comes out).
    pub fn connect(&mut self, remote: RemoteAddr, now: u64) {
        let token = self.token.clone();
        let filter = Filter::all();
        self.node.handle(
            now,
            Input::Connect {
                remote,
                token,
                filter,
            },
        );
    }

    /// A new token for `remote` (a refresh before the old one expires):
    /// presented at once on a live connection that speaks protocol 3
    /// (`reauth`), and in every hello from now on.
    pub fn set_token(&mut self, remote: RemoteAddr, token: String, now: u64) {
        self.token = Some(token.clone());
        self.node.handle(now, Input::SetToken { remote, token });
    }

    /// Applies a Loro update the host made with its own Loro, as a local
    /// change of an open document.
    pub fn apply_update(&mut self, doc: DocId, bytes: Vec<u8>, now: u64) -> Result<(), String> {
        if bytes.is_empty() {
            return Err("an update has at least one byte".into());
        }
        if self.node.replica(&doc).is_none() {
            return Err(format!(
                "{doc} is not open (open it, then wait for DocReady)"
            ));
        }
        self.node.handle(now, Input::LocalUpdate { doc, bytes });
        Ok(())
    }

    /// An open document as a Loro snapshot.
    pub fn export(&self, doc: &DocId) -> Result<Vec<u8>, String> {
        let replica = self
            .node
            .replica(doc)
            .ok_or_else(|| format!("{doc} is not open"))?;
        self.node
            .engine()
            .export_snapshot(replica)
            .map_err(|e| format!("{doc} does not export: {e}"))
    }

    /// The next output for the host, running store jobs on the way.
    pub fn poll(&mut self, now: u64) -> Option<HostOutput> {
        loop {
            if let Some(out) = self.ready.pop_front() {
                return Some(out);
            }
            match self.node.poll_output()? {
                Output::Store(job) => {
                    let result = run_job(self.store.as_mut(), job.op);
                    self.node
                        .handle(now, Input::Store(StoreAnswer { id: job.id, result }));
                }
                Output::Transmit { channel, frame } => {
                    return Some(HostOutput::Transmit { channel, frame })
                }
                Output::TransmitShared { channel, frame } => {
                    for i in 0..frame.chunk_count() {
                        self.ready.push_back(HostOutput::Transmit {
                            channel,
                            frame: frame.chunk(i),
                        });
                    }
                }
                Output::Close { channel, reason } => {
                    return Some(HostOutput::Close { channel, reason })
                }
                Output::Dial { remote } => {
                    return Some(HostOutput::Dial {
                        remote: remote.as_str().to_string(),
                    })
                }
                Output::Event(e) => return Some(HostOutput::Event(e)),
                // A host's node has no checker that asks elsewhere; should
                // one ever ask, the answer is a refusal, not a wait.
                Output::Authenticate { channel, .. } => {
                    let checked = docweave_shell::Checked::Refused(
                        "this host cannot check tokens elsewhere".into(),
                    );
                    self.node.handle(now, Input::Checked { channel, checked });
                }
            }
        }
    }
}
