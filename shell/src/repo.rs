//! The application's handle: open documents, edit them, connect, wait.

use crate::driver::{Dialer, Driver, Remote, Request};
use crate::engine::DocEngine;
use crate::health::Health;
use crate::loro_engine::LoroEngine;
use crate::node::{Input, Node, NodeOptions};
use crate::recording::Recorder;
use docweave_adapters::Link;
use docweave_adapters::Store;
use docweave_core::{
    ChannelId, Config, DocId, Event, Namespace, Payload, PeerId, RemoteAddr, SyncState,
};
use std::path::PathBuf;
use std::time::Duration;

/// The shortest wait between reads of the store's change feed, by default.
const FEED_POLL_MS: u64 = 200;
/// The longest, while reads find nothing another process wrote: a store
/// nobody else writes to is read every 2 s when idle, not five times a
/// second, and another process's first write after a quiet spell is seen
/// within 2 s (at once on a store that announces it).
const FEED_POLL_QUIET_MS: u64 = 2_000;

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The document id was refused.
    #[error("{0}")]
    BadDocId(#[from] docweave_core::IdError),
    /// The document does not exist and could not be created.
    #[error("{0}")]
    Unavailable(String),
    /// The repository was closed.
    #[error("the repository is closed")]
    Closed,
    /// The store could not be opened or read.
    #[error("the store failed: {0}")]
    Store(String),
    /// A token provider gave no token (or could not be started).
    #[error("no token: {0}")]
    Token(String),
    /// The recording log could not be created.
    #[error("cannot record to {path}: {why}")]
    Recording {
        /// The log path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// What a recording keeps by default: 1 GiB.
const DEFAULT_RECORD_BYTES: u64 = 1 << 30;

/// How long a document is unused before it sleeps as its bytes by default.
const DEFAULT_SLEEP_AFTER_MS: u64 = 60_000;

/// Builds a [`Repo`].
pub struct RepoBuilder<E: DocEngine = LoroEngine> {
    config: Config,
    store: Option<Box<dyn Store>>,
    record: Option<crate::recording::RecordOptions>,
    engine: E,
    max_docs: usize,
    memory_budget: usize,
    sleep_after_ms: u64,
    follow_feed: bool,
    max_message: usize,
    chunk_size: usize,
    actor: Option<u64>,
    authenticator: Option<std::sync::Arc<dyn crate::Authenticator>>,
    metrics: Option<crate::Metrics>,
}

impl<E: DocEngine> RepoBuilder<E> {
    /// Uses another document engine.
    pub fn engine<F: DocEngine>(self, engine: F) -> RepoBuilder<F> {
        RepoBuilder {
            config: self.config,
            store: self.store,
            record: self.record,
            engine,
            max_docs: self.max_docs,
            memory_budget: self.memory_budget,
            sleep_after_ms: self.sleep_after_ms,
            follow_feed: self.follow_feed,
            max_message: self.max_message,
            chunk_size: self.chunk_size,
            actor: self.actor,
            authenticator: self.authenticator,
            metrics: self.metrics,
        }
    }

    /// Keeps documents and node state in `store`.
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Like [`RepoBuilder::store`], for a store chosen at run time.
    pub fn boxed_store(mut self, store: Box<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Changes the core's configuration (permission rules, tokens, timings).
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// The seed of the node's jitter; by default one drawn from the OS at
    /// start-up (and recorded in the log), so nodes restarted together do
    /// not redial in lockstep.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Whether to read the store's change feed for other processes' writes
    /// (on by default: every 200 ms while reads find such writes, and every
    /// 2 s at most while they find none). A `timing.feed_poll_ms` set in the
    /// configuration replaces both, and the wait then stays at it unless
    /// `timing.feed_poll_quiet_ms` is set too. A store that announces other
    /// processes' writes (PostgreSQL) has them read at once anyway.
    pub fn follow_store_feed(mut self, follow: bool) -> Self {
        self.follow_feed = follow;
        self
    }

    /// Records every input of the core, with its commands, into rotating
    /// files in directory `dir` (1 GiB in all unless
    /// [`RepoBuilder::record_max_bytes`] says otherwise): `replay` checks
    /// them, `docweave trace` prints them.
    pub fn record(mut self, dir: impl Into<PathBuf>) -> Self {
        self.record = Some(crate::recording::RecordOptions {
            dir: dir.into(),
            max_bytes: self
                .record
                .as_ref()
                .map_or(DEFAULT_RECORD_BYTES, |r| r.max_bytes),
        });
        self
    }

    /// The most bytes a recording keeps: past it, its oldest files go.
    pub fn record_max_bytes(mut self, bytes: u64) -> Self {
        if let Some(r) = self.record.as_mut() {
            r.max_bytes = bytes;
        }
        self
    }

    /// Keeps at most `n` documents in memory; idle ones are evicted and
    /// reloaded from the store on demand (only with a store).
    pub fn max_docs_in_memory(mut self, n: usize) -> Self {
        self.max_docs = n.max(1);
        self
    }

    /// Keeps the documents in memory within about `bytes` (as the engine
    /// estimates their memory: for Loro, about 18 KB each plus 4 bytes per
    /// operation); least recently used ones are evicted and reloaded from
    /// the store on demand (only with a store). Documents with changes not
    /// yet durable, or that a waiting command needs, stay.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// A document unused this long (60 s by default; `Duration::ZERO`:
    /// never) sleeps as its bytes: an idle 500-byte document then
    /// costs about 1 KB, not the 12 KB it takes awake, and wakes on its
    /// next use without a store read (only with a store). A document the
    /// application was given a handle on ([`Repo::open`]) does not sleep
    /// for being idle (the count and the budget may still evict it).
    pub fn sleep_after(mut self, idle: std::time::Duration) -> Self {
        self.sleep_after_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// The largest message (a document's snapshot, or one update) this node
    /// sends or accepts; 512 MiB by default. Larger ones are refused with a
    /// `TooLarge` error naming both sizes.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// The CRDT peer id (actor) of this session's local edits, instead of
    /// a fresh one. Only for a caller that holds it alone (no other session,
    /// here or elsewhere, edits with it now) and whose previous session's
    /// edits with it are all where this one loads the documents from: two
    /// sessions with one actor would give different changes the same ids.
    pub fn actor(mut self, actor: u64) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Checks the tokens of connecting peers' hellos with `authenticator`
    /// (signed tokens: see the CLI's `--jwt-*` options): a token it knows
    /// gets its verdict; any other must be one of the configured static
    /// tokens, and a hello without a token is refused.
    pub fn authenticator(
        mut self,
        authenticator: std::sync::Arc<dyn crate::Authenticator>,
    ) -> Self {
        self.config.signed_tokens = true;
        self.authenticator = Some(authenticator);
        self
    }

    /// Counts into `metrics` what the node receives, sends, stores and
    /// decides (for an operator's `GET /metrics`).
    pub fn metrics(mut self, metrics: crate::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Messages larger than this cross as chunk frames of this size
    /// (1 MiB by default): no frame ever exceeds a receiver's frame limit.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(docweave_core::CHUNK_HEADER + 64);
        self
    }

    /// Starts the repository's loop on its own thread.
    pub fn build(mut self) -> Result<Repo<E>, RepoError> {
        if self.store.is_some() && self.follow_feed && self.config.timing.feed_poll_ms == 0 {
            self.config.timing.feed_poll_ms = FEED_POLL_MS;
            if self.config.timing.feed_poll_quiet_ms == 0 {
                self.config.timing.feed_poll_quiet_ms = FEED_POLL_QUIET_MS;
            }
        }
        tracing::info!(
            "node {} starts with jitter seed {:#x}",
            self.config.peer,
            self.config.seed
        );
        let health = Health::default();
        let recorder = match &self.record {
            Some(r) => Some(
                Recorder::create(r.clone(), &self.config, health.clone()).map_err(|e| {
                    RepoError::Recording {
                        path: r.dir.clone(),
                        why: e.to_string(),
                    }
                })?,
            ),
            None => None,
        };
        let (tx, rx) = async_channel::unbounded();
        let peer = self.config.peer.clone();
        let options = NodeOptions {
            actor: self.actor.unwrap_or_else(|| session_actor(&peer)),
            store: self.store.is_some(),
            max_docs: self.max_docs,
            memory_budget: self.memory_budget,
            sleep_after_ms: self.sleep_after_ms,
            max_message: self.max_message,
            chunk_size: self.chunk_size,
            ..NodeOptions::default()
        };
        let notify_tx = tx.clone();
        let notify: crate::node::LocalNotify = std::sync::Arc::new(move |doc: &DocId| {
            let _ = notify_tx.try_send(Request::Node(Input::LocalChange { doc: doc.clone() }));
        });
        let mut node = Node::with_notify(self.config, self.engine, options, notify);
        if let Some(a) = self.authenticator {
            node.set_authenticator(a);
        }
        if let Some(m) = self.metrics {
            node.set_metrics(m);
        }
        if let Some(mut r) = recorder {
            node.set_hook(Box::new(move |now, msg, cmds| r.record(now, msg, cmds)));
        }
        // Histories are read on a second handle, beside the node's work.
        let history = match self.store.as_mut() {
            Some(store) => store
                .reader()
                .map_err(|e| RepoError::Store(e.to_string()))?
                .map(|r| std::sync::Arc::new(std::sync::Mutex::new(r))),
            None => None,
        };
        let driver = Driver::new(node, self.store, rx, tx.clone(), health.clone())
            .map_err(RepoError::Store)?;
        let watch = health.clone();
        let thread = std::thread::Builder::new()
            .name(format!("docweave-{peer}"))
            .spawn(move || {
                // A panic in the loop (a bug: document bytes are contained
                // where they are used) stops the node, visibly. Not
                // `smol::block_on`: the loop waits on channels and a timer
                // off the reactor, and a thread that waits on the reactor
                // takes it from the executor's (see
                // `docweave_adapters::timer_thread`).
                let run =
                    std::panic::AssertUnwindSafe(|| futures_lite::future::block_on(driver.run()));
                if let Err(p) = std::panic::catch_unwind(run) {
                    watch.stop(format!(
                        "its loop panicked: {}",
                        crate::health::panic_message(&*p)
                    ));
                }
            })
            .map_err(|e| RepoError::Store(e.to_string()))?;
        Ok(Repo {
            input: tx,
            peer,
            thread: Some(thread),
            health,
            history,
        })
    }
}

/// A seed for the jitter generator, from the OS: nodes restarted together
/// must not redial in lockstep.
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A fresh actor number for this session: CRDT peer ids must not repeat
/// across sessions of one node, or edits lost in a crash would collide.
fn session_actor(peer: &PeerId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    peer.hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    h.finish() >> 12
}

/// A running docweave node (Loro documents unless built with another engine).
///
/// Its loop runs on its own thread, so a `Repo` can be driven from any async
/// runtime, or from blocking code through the `*_blocking` methods.
pub struct Repo<E: DocEngine = LoroEngine> {
    input: async_channel::Sender<Request<E>>,
    peer: PeerId,
    thread: Option<std::thread::JoinHandle<()>>,
    health: Health,
    /// A second handle on the store, where histories are read.
    history: Option<std::sync::Arc<std::sync::Mutex<Box<dyn Store>>>>,
}

impl Repo<LoroEngine> {
    /// Starts building a repository for node `peer`, with Loro documents.
    pub fn builder(peer: &str) -> RepoBuilder<LoroEngine> {
        let mut config = Config::new(peer);
        config.seed = os_seed();
        RepoBuilder {
            config,
            store: None,
            record: None,
            engine: LoroEngine,
            max_docs: usize::MAX,
            memory_budget: usize::MAX,
            sleep_after_ms: DEFAULT_SLEEP_AFTER_MS,
            follow_feed: true,
            max_message: NodeOptions::default().max_message,
            chunk_size: NodeOptions::default().chunk_size,
            actor: None,
            authenticator: None,
            metrics: None,
        }
    }
}

impl<E: DocEngine> Repo<E> {
    /// Whether the node still runs, and what stopped it or its recording.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// This node's id.
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    /// A page of `doc`'s history, newest first: who wrote what and when,
    /// as the node that took each change vouches for it (entries placed
    /// below `before`, at most `limit`). Reads the store on a handle of its
    /// own; a store with no second handle (the in-memory ones) has none
    /// to read, and says so. The state at an entry's version is Loro's
    /// (`fork_at` or `checkout` of the document's frontiers).
    pub async fn history(
        &self,
        doc: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<docweave_adapters::HistoryEntry>, RepoError> {
        let doc = DocId::parse(doc)?;
        let Some(store) = self.history.clone() else {
            return Err(RepoError::Store(
                "this repository's store has no second handle to read histories on \
                 (use SQLite or PostgreSQL)"
                    .into(),
            ));
        };
        smol::unblock(move || {
            // A reader that panicked left no transaction open: each call is one.
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            store
                .history(&doc, before, limit)
                .map_err(|e| RepoError::Store(e.to_string()))
        })
        .await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(async_channel::Sender<T>) -> Request<E>,
    ) -> Result<T, RepoError> {
        let (tx, rx) = async_channel::bounded(1);
        self.input
            .send(make(tx))
            .await
            .map_err(|_| RepoError::Closed)?;
        rx.recv().await.map_err(|_| RepoError::Closed)
    }

    /// Opens a document (loading it from the store, or creating it) and
    /// returns the live replica: edit it and commit; changes sync by themselves.
    ///
    /// Bytes imported straight into the handle are not noticed (the CRDT
    /// reports no local edit for them): bring foreign updates and snapshots
    /// in with [`Repo::import`].
    ///
    /// The document then stays awake however long it is idle (see
    /// [`RepoBuilder::sleep_after`]); use [`Repo::load`] or [`Repo::edit`]
    /// where no handle is kept.
    pub async fn open(&self, doc: &str) -> Result<E::Handle, RepoError> {
        self.open_with(doc, true).await
    }

    /// Loads a document (from the store, or creates it) without keeping a
    /// handle on it: it may sleep once idle.
    pub async fn load(&self, doc: &str) -> Result<(), RepoError> {
        self.open_with(doc, false).await.map(|_| ())
    }

    async fn open_with(&self, doc: &str, lasting: bool) -> Result<E::Handle, RepoError> {
        let id = DocId::parse(doc)?;
        self.ask(|reply| Request::Open {
            doc: id,
            reply,
            lasting,
        })
        .await?
        .map_err(RepoError::Unavailable)
    }

    /// [`Repo::open`] for blocking code.
    pub fn open_blocking(&self, doc: &str) -> Result<E::Handle, RepoError> {
        smol::block_on(self.open(doc))
    }

    /// Imports an update or snapshot made elsewhere (a file, another CRDT
    /// library) into a document, opening it first, and syncs it as a local
    /// change. Bytes that do not import are reported as an [`Event::Error`].
    pub async fn import(&self, doc: &str, bytes: Vec<u8>) -> Result<(), RepoError> {
        self.load(doc).await?;
        let doc = DocId::parse(doc)?;
        self.input
            .send(Request::Node(Input::LocalUpdate { doc, bytes }))
            .await
            .map_err(|_| RepoError::Closed)
    }

    /// Edits a document through a closure, then commits.
    pub async fn edit<R>(
        &self,
        doc: &str,
        f: impl FnOnce(&E::Handle) -> R,
    ) -> Result<R, RepoError> {
        // The handle lives only for the edit: the document may sleep later.
        let d = self.open_with(doc, false).await?;
        let r = f(&d);
        E::commit(&d);
        Ok(r)
    }

    /// Events as they happen (documents changed, peers synced, acknowledgements, presence, errors).
    pub async fn events(&self) -> Result<async_channel::Receiver<Event>, RepoError> {
        self.ask(|reply| Request::Watch { reply }).await
    }

    /// Changes to one document, as they arrive (local ones included).
    pub async fn watch(
        &self,
        doc: &str,
    ) -> Result<impl futures_lite::Stream<Item = Event> + use<E>, RepoError> {
        let id = DocId::parse(doc)?;
        let events = self.events().await?;
        Ok(futures_lite::StreamExt::filter(events, move |e| match e {
            Event::DocChanged { doc, .. }
            | Event::Durable { doc, .. }
            | Event::AckedByRemote { doc, .. } => *doc == id,
            _ => false,
        }))
    }

    /// Presence in one namespace of a document, as it arrives, changes and
    /// expires: `(peer, Some(data))`, or `(peer, None)` when it is gone.
    pub async fn watch_presence(
        &self,
        doc: &str,
        namespace: &str,
    ) -> Result<impl futures_lite::Stream<Item = (PeerId, Option<Payload>)> + use<E>, RepoError>
    {
        let (id, ns) = (DocId::parse(doc)?, Namespace::parse(namespace)?);
        let events = self.events().await?;
        Ok(futures_lite::StreamExt::filter_map(
            events,
            move |e| match e {
                Event::Presence {
                    doc,
                    namespace,
                    peer,
                    data,
                } if doc == id && namespace == ns => Some((peer, data)),
                _ => None,
            },
        ))
    }

    /// Sets (or, with empty data, clears) this node's presence in a namespace of a document.
    pub fn set_presence(&self, doc: &str, namespace: &str, data: &[u8]) -> Result<(), RepoError> {
        let input = Input::SetPresence {
            doc: DocId::parse(doc)?,
            namespace: Namespace::parse(namespace)?,
            data: Payload::new(data.to_vec()),
        };
        self.input
            .try_send(Request::Node(input))
            .map_err(|_| RepoError::Closed)
    }

    /// Connects to another repository in this process (in-memory transport),
    /// and keeps reconnecting if the link drops.
    pub fn connect(&self, other: &Repo<E>) -> Result<(), RepoError> {
        let remote = RemoteAddr::new(other.peer.as_str());
        let how = Remote::Local(other.input.clone());
        self.input
            .try_send(Request::AddRemote {
                remote,
                how,
                token: None,
            })
            .map_err(|_| RepoError::Closed)
    }

    /// Connects to a remote through a dialer (TCP, WebSocket, ...), presenting
    /// `token`, and keeps reconnecting with backoff if the link drops.
    pub fn connect_with(
        &self,
        remote: &str,
        token: Option<&str>,
        dialer: Dialer,
    ) -> Result<(), RepoError> {
        let remote = RemoteAddr::parse(remote)?;
        let how = Remote::Dialer(dialer);
        let token = token.map(str::to_string);
        self.input
            .try_send(Request::AddRemote { remote, how, token })
            .map_err(|_| RepoError::Closed)
    }

    /// Gives a remote connected with [`Repo::connect_with`] a new token (a
    /// refresh, before the old one expires): a live connection presents it
    /// at once (`reauth`, protocol 3; an older server takes it at the next
    /// reconnection), and every later reconnection uses it. A refused token
    /// comes back as [`docweave_core::Event::Error`]; the connection keeps
    /// its old credential meanwhile.
    pub fn set_token(&self, remote: &str, token: &str) -> Result<(), RepoError> {
        let remote = RemoteAddr::parse(remote)?;
        let token = token.to_string();
        self.input
            .try_send(Request::Node(Input::SetToken { remote, token }))
            .map_err(|_| RepoError::Closed)
    }

    /// Keeps `remote`'s token fresh: `provider` (a callback of the app,
    /// asking its backend say) is asked for a new token each time the one
    /// in use nears its expiry (see [`crate::refresh_in`]), starting from
    /// `current`, the token the remote was connected with
    /// ([`Repo::connect_with`]); each new one is presented at once as
    /// [`Repo::set_token`] does. A provider that fails is asked again
    /// after 5 s and says why in the log. Stops when the repository closes.
    pub fn keep_token_fresh(
        &self,
        remote: &str,
        current: &str,
        mut provider: impl FnMut() -> Result<String, String> + Send + 'static,
    ) -> Result<(), RepoError> {
        use crate::token_refresh::{now_ms, refresh_in, LOOK, RETRY};
        let addr = RemoteAddr::parse(remote)?;
        let first = current.to_string();
        let input = self.input.downgrade();
        std::thread::Builder::new()
            .name("docweave-token".into())
            .spawn(move || {
                let mut due = std::time::Instant::now() + refresh_in(&first, now_ms());
                loop {
                    // Looks every second whether the repository is gone.
                    while std::time::Instant::now() < due {
                        if input.upgrade().is_none() {
                            return;
                        }
                        std::thread::sleep(LOOK.min(due - std::time::Instant::now()));
                    }
                    let token = match provider() {
                        Ok(token) => token,
                        Err(why) => {
                            tracing::warn!("no new token for {addr}: {why}; asking again in 5 s");
                            due = std::time::Instant::now() + RETRY;
                            continue;
                        }
                    };
                    let Some(input) = input.upgrade() else {
                        return;
                    };
                    let remote = addr.clone();
                    let next = refresh_in(&token, now_ms());
                    if input
                        .try_send(Request::Node(Input::SetToken { remote, token }))
                        .is_err()
                    {
                        return;
                    }
                    tracing::info!(
                        "token for {addr} refreshed; the next in {} s",
                        next.as_secs()
                    );
                    due = std::time::Instant::now() + next;
                }
            })
            .map(|_| ())
            .map_err(|e| RepoError::Token(format!("cannot start the token refresher: {e}")))
    }

    /// Connects to one remote served by several servers (sharing one
    /// store), through whichever of `dialers` answers: when the server of
    /// the moment goes away, the next reconnection tries the others.
    pub fn connect_any(
        &self,
        remote: &str,
        token: Option<&str>,
        dialers: Vec<Dialer>,
    ) -> Result<(), RepoError> {
        self.connect_with(remote, token, crate::failover(dialers))
    }

    /// Hands every link a transport server accepts to this repository
    /// (for `serve_tcp`, `serve_ws`).
    pub fn acceptor(self: &std::sync::Arc<Self>) -> impl Fn(Link) + Send + Sync + 'static {
        let repo = self.clone();
        move |link| {
            let _ = repo.accept(link);
        }
    }

    /// Opens an in-memory link into this repository on each call (for
    /// `serve_http`), read only when polled.
    pub fn connector(
        self: &std::sync::Arc<Self>,
    ) -> std::sync::Arc<dyn Fn() -> docweave_adapters::transport::PolledLink + Send + Sync> {
        let repo = self.clone();
        std::sync::Arc::new(move || {
            let (mine, theirs) = docweave_adapters::transport::polled_pair();
            let _ = repo.accept(theirs);
            mine
        })
    }

    /// Accepts a link made elsewhere (a transport adapter).
    pub fn accept(&self, link: Link) -> Result<(), RepoError> {
        self.input
            .try_send(Request::Accept(link))
            .map_err(|_| RepoError::Closed)
    }

    /// What this node holds and whom it knows: for status pages and tools.
    pub async fn summary(&self) -> Result<Summary, RepoError> {
        self.ask(|reply| Request::Summary { reply }).await
    }

    /// Brings the metrics' gauges (documents, peers, presence, ...) up to
    /// date, counted now on the node's thread; call before rendering them.
    pub async fn count_gauges(&self) -> Result<(), RepoError> {
        self.ask(|reply| Request::Gauges { reply }).await
    }

    /// How many document replicas are in memory now.
    pub async fn resident_docs(&self) -> Result<usize, RepoError> {
        self.ask(|reply| Request::Resident { reply }).await
    }

    /// Where a document stands with a peer, as an app would show it.
    pub async fn status(&self, doc: &str, peer: &str) -> Result<SyncStatus, RepoError> {
        let id = DocId::parse(doc)?;
        let peer = PeerId::parse(peer)?;
        let (state, ours, deleted) = self
            .ask(|reply| Request::PeerState {
                doc: id.clone(),
                peer: peer.clone(),
                reply,
            })
            .await?;
        let (dirty, error) = self.ask(|reply| Request::Dirty { doc: id, reply }).await?;
        Ok(match (state, ours) {
            _ if deleted => SyncStatus::Deleted,
            (_, None) => SyncStatus::Unknown,
            _ if error.is_some() => SyncStatus::Error(error.unwrap_or_default()),
            (Some(SyncState::Synced(theirs)), Some(ours)) if theirs.includes(&ours) => {
                SyncStatus::Acknowledged(peer)
            }
            (Some(SyncState::Absent), Some(ours)) if ours.is_empty() => SyncStatus::Absent(peer),
            _ if dirty => SyncStatus::Syncing,
            _ => SyncStatus::SavedLocally,
        })
    }

    /// Waits until `peer` keeps everything we have of `doc`
    /// ([`SyncOutcome::Synced`]), or says it has no such document while we
    /// have nothing of it either ([`SyncOutcome::Absent`]), or the document
    /// is deleted ([`SyncOutcome::Deleted`]); [`SyncOutcome::TimedOut`] when
    /// `timeout` passes first.
    pub async fn wait_for_sync(
        &self,
        doc: &str,
        peer: &str,
        timeout: Duration,
    ) -> Result<SyncOutcome, RepoError> {
        let id = DocId::parse(doc)?;
        let peer = PeerId::parse(peer)?;
        let events = self.events().await?;
        let deadline = std::time::Instant::now() + timeout;
        let mut asked: Option<std::time::Instant> = None;
        loop {
            let (state, ours, deleted) = self
                .ask(|reply| Request::PeerState {
                    doc: id.clone(),
                    peer: peer.clone(),
                    reply,
                })
                .await?;
            if deleted {
                return Ok(SyncOutcome::Deleted);
            }
            match (state, ours) {
                // "It has no such document" is in sync only when we have nothing to give.
                (Some(SyncState::Absent), None) => return Ok(SyncOutcome::Absent),
                (Some(SyncState::Absent), Some(ours)) if ours.is_empty() => {
                    return Ok(SyncOutcome::Absent)
                }
                (Some(SyncState::Synced(theirs)), Some(ours)) if theirs.includes(&ours) => {
                    return Ok(SyncOutcome::Synced)
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(SyncOutcome::TimedOut);
            }
            // Only the peer's word counts: ask it, and again each second.
            if asked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                asked = Some(std::time::Instant::now());
                let ask = Input::AskPeer {
                    doc: id.clone(),
                    peer: peer.clone(),
                };
                self.input
                    .send(Request::Node(ask))
                    .await
                    .map_err(|_| RepoError::Closed)?;
            }
            // Wake on the next event, or re-check after a short while.
            let wait = left.min(Duration::from_millis(50));
            futures_lite::future::or(
                async {
                    let _ = events.recv().await;
                },
                async {
                    smol::Timer::after(wait).await;
                },
            )
            .await;
        }
    }

    /// Drains the node for a stop (a rolling restart): every client on
    /// protocol 4 is told `going-away` (come back after `retry_after_ms`),
    /// what clients already sent is still answered and written, and new
    /// hellos are turned away. Close the transports' connection limits
    /// too, so no new connection comes; then [`Repo::shutdown`].
    pub fn drain(&self, reason: &str, retry_after_ms: u64) -> Result<(), RepoError> {
        self.input
            .try_send(Request::Node(Input::Drain {
                reason: reason.to_string(),
                retry_after_ms,
            }))
            .map_err(|_| RepoError::Closed)
    }

    /// The network connections now: channel, identity, kind, protocol.
    pub async fn connections(&self) -> Result<Vec<docweave_core::ConnectionInfo>, RepoError> {
        self.ask(|reply| Request::Connections { reply }).await
    }

    /// Cuts off every connection of `peer`, telling each why. The client
    /// may connect again: revoke its token ([`Repo::revoke`]) to keep it out.
    pub fn disconnect_peer(&self, peer: &str, reason: &str) -> Result<(), RepoError> {
        let peer = PeerId::parse(peer)?;
        self.disconnect(Some(peer), None, reason)
    }

    /// Cuts off the connection on `channel` (an id from [`Repo::connections`]).
    pub fn disconnect_channel(&self, channel: ChannelId, reason: &str) -> Result<(), RepoError> {
        self.disconnect(None, Some(channel), reason)
    }

    fn disconnect(
        &self,
        peer: Option<PeerId>,
        channel: Option<ChannelId>,
        reason: &str,
    ) -> Result<(), RepoError> {
        self.input
            .try_send(Request::Node(Input::Disconnect {
                peer,
                channel,
                reason: reason.to_string(),
            }))
            .map_err(|_| RepoError::Closed)
    }

    /// How many peers are connected now (counted on the node's thread).
    pub async fn connected_peers(&self) -> Result<usize, RepoError> {
        self.ask(|reply| Request::ConnectedPeers { reply }).await
    }

    /// The first `limit` documents after `after` in id order, from memory
    /// merged with `stored`: the store's first `limit + 1` after `after`
    /// ([`docweave_adapters::Store::read_index`] by id), which holds the
    /// documents whose metadata memory let go of. What the node's thread
    /// does is bounded by the page, not by the documents it holds.
    pub async fn doc_page(
        &self,
        after: Option<DocId>,
        limit: usize,
        stored: Vec<docweave_core::DocSummary>,
    ) -> Result<docweave_core::DocPage, RepoError> {
        self.ask(|reply| Request::DocPage {
            after,
            limit,
            stored,
            reply,
        })
        .await
    }

    /// One document's version and last clock: memory's when it holds the
    /// document ready, else `stored` (what the store holds, as
    /// [`docweave_adapters::Store::load_since`] reads it); `None` when
    /// neither has it or it is deleted. Never loads or creates it.
    pub async fn doc_summary(
        &self,
        doc: &str,
        stored: Option<(docweave_core::VersionVector, docweave_core::Clock)>,
    ) -> Result<Option<(docweave_core::VersionVector, docweave_core::Clock)>, RepoError> {
        let doc = DocId::parse(doc)?;
        self.ask(|reply| Request::DocSummary { doc, stored, reply })
            .await
    }

    /// Replaces the revoked tokens (by `jti`) and identities: every
    /// connection holding one is closed now with a `token-revoked` error,
    /// and no hello presenting one is welcomed until it is lifted.
    pub fn revoke(&self, revocations: docweave_core::Revocations) -> Result<(), RepoError> {
        self.input
            .try_send(Request::Node(Input::Revoked(revocations)))
            .map_err(|_| RepoError::Closed)
    }

    /// Replaces the static tokens and grants (re-read from a file, say):
    /// every connection a withdrawn token let in is told and closed, and
    /// later hellos are checked against the new ones.
    pub fn set_tokens(
        &self,
        tokens: Vec<String>,
        grants: Vec<docweave_core::Grant>,
    ) -> Result<(), RepoError> {
        self.input
            .try_send(Request::Node(Input::Tokens { tokens, grants }))
            .map_err(|_| RepoError::Closed)
    }

    /// Replaces the permission rules (re-read from a file, say): every
    /// decision from now on follows them.
    pub fn set_rules(&self, rules: docweave_core::Rules) -> Result<(), RepoError> {
        self.input
            .try_send(Request::Node(Input::Rules(rules)))
            .map_err(|_| RepoError::Closed)
    }

    /// On a store shared with other servers: drops what this node holds of
    /// a listener in memory, so that the next message about it reads its
    /// record from the store (another server may have moved it on). Returns
    /// once the node has done so.
    pub async fn forget_listener(&self, id: docweave_core::ListenerId) -> Result<(), RepoError> {
        self.input
            .send(Request::Node(Input::ForgetListener(id)))
            .await
            .map_err(|_| RepoError::Closed)?;
        // Inputs are taken in order: once this is answered, so was that.
        self.resident_docs().await.map(|_| ())
    }

    /// Deletes a document here and on every connected peer that follows it
    /// (each peer's rules decide there).
    pub fn delete(&self, doc: &str) -> Result<(), RepoError> {
        let doc = DocId::parse(doc)?;
        self.input
            .try_send(Request::Node(Input::Delete { doc }))
            .map_err(|_| RepoError::Closed)
    }

    /// Deletes a document and waits for `peer`'s answer: `Some(true)` when
    /// it deleted it, `Some(false)` when it refused, `None` on timeout.
    pub async fn delete_on(
        &self,
        doc: &str,
        peer: &str,
        timeout: Duration,
    ) -> Result<Option<bool>, RepoError> {
        let id = DocId::parse(doc)?;
        let peer = PeerId::parse(peer)?;
        let events = self.events().await?;
        self.delete(doc)?;
        let answer = async {
            while let Ok(e) = events.recv().await {
                if let Event::DeleteAnswered {
                    peer: p,
                    doc: d,
                    deleted,
                } = e
                {
                    if p == peer && d == id {
                        return Some(deleted);
                    }
                }
            }
            None
        };
        let late = async {
            smol::Timer::after(timeout).await;
            None
        };
        Ok(futures_lite::future::or(answer, late).await)
    }

    /// The documents `peer` lets us read there, with their sizes, all pages;
    /// `None` on timeout (or when the peer speaks protocol 1).
    pub async fn list(
        &self,
        peer: &str,
        timeout: Duration,
    ) -> Result<Option<Vec<docweave_core::ListedDoc>>, RepoError> {
        let peer = PeerId::parse(peer)?;
        let events = self.events().await?;
        let deadline = std::time::Instant::now() + timeout;
        let mut all: Vec<docweave_core::ListedDoc> = Vec::new();
        loop {
            let after = all.last().map(|d| d.doc.clone());
            self.input
                .send(Request::Node(Input::ListRemote {
                    peer: peer.clone(),
                    after,
                }))
                .await
                .map_err(|_| RepoError::Closed)?;
            let page = async {
                while let Ok(e) = events.recv().await {
                    match e {
                        Event::DocList {
                            peer: p,
                            docs,
                            more,
                        } if p == peer => return Some((docs, more)),
                        Event::Error { reason, .. } if reason.contains(peer.as_str()) => {
                            return None
                        }
                        _ => {}
                    }
                }
                None
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let late = async {
                smol::Timer::after(left).await;
                None
            };
            match futures_lite::future::or(page, late).await {
                Some((docs, more)) => {
                    let progressed = !docs.is_empty();
                    all.extend(docs);
                    if !more || !progressed {
                        return Ok(Some(all));
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// Flushes every pending write and stops the loop, for a `Repo` shared
    /// behind an `Arc` (servers); later calls fail with `Closed`.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Request::Close { reply }).await;
    }

    /// Flushes every pending write and stops the loop.
    pub async fn close(mut self) {
        // A loop that already stopped cannot answer: its reason is in `health`.
        let _ = self.ask(|reply| Request::Close { reply }).await;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                self.health.stop("its thread ended in a panic".into());
            }
        }
    }

    /// [`Repo::close`] for blocking code.
    pub fn close_blocking(self) {
        smol::block_on(self.close());
    }
}

/// A snapshot of a node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// This node.
    pub peer: PeerId,
    /// Its change clock.
    pub clock: docweave_core::Clock,
    /// Documents: id, version, last clock.
    pub docs: Vec<(DocId, docweave_core::VersionVector, docweave_core::Clock)>,
    /// Peers: id, connected now, cursor.
    pub peers: Vec<(PeerId, bool, docweave_core::Cursor)>,
    /// Replicas in memory.
    pub resident: usize,
    /// Per server this node dials: changes announced, not pulled yet.
    pub lags: Vec<(PeerId, u64)>,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            peer: PeerId::new("?"),
            clock: Default::default(),
            docs: Vec::new(),
            peers: Vec::new(),
            resident: 0,
            lags: Vec::new(),
        }
    }
}

/// How waiting for a peer to have a document ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The peer keeps everything we have of the document.
    Synced,
    /// The peer has no such document, and neither do we (nothing to sync).
    Absent,
    /// The document was deleted (here, or by the peer and accepted here).
    Deleted,
    /// The time ran out first.
    TimedOut,
}

impl SyncOutcome {
    /// Whether nothing is left to sync (`Synced`, or `Absent` on both sides).
    pub fn is_synced(self) -> bool {
        matches!(self, SyncOutcome::Synced | SyncOutcome::Absent)
    }
}

/// A document's standing with one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// The document is not open here.
    Unknown,
    /// Changed here, not yet durable in the local store.
    Syncing,
    /// Durable locally; the peer does not have all of it yet.
    SavedLocally,
    /// The peer has everything we have.
    Acknowledged(PeerId),
    /// The peer has no such document, and neither do we.
    Absent(PeerId),
    /// The document was deleted.
    Deleted,
    /// The last attempt failed, for this reason.
    Error(String),
}

impl<E: DocEngine> Drop for Repo<E> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not closed explicitly: the loop flushes and stops when its input closes.
            self.input.close();
        }
    }
}
