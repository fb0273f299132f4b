//! The production driver: a smol task that feeds the node what happens
//! (frames from links, store answers, application requests, the clock) and
//! carries out what it puts out. It decides nothing.

use crate::engine::DocEngine;
use crate::health::Health;
use crate::node::{run_job, Input, Node, Output, StoreAnswer};
use crate::store_threads::StoreThreads;
use docweave_adapters::timer_thread::{later, ThreadTimer};
use docweave_adapters::transport::{LinkTx, SendError};
use docweave_adapters::{Link, Store};
use docweave_core::{ChannelId, DocId, Event, Millis, PeerId, RemoteAddr};
use smol::lock::Semaphore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the loop takes next.
enum Next<E: DocEngine> {
    Request(Request<E>),
    Frame(Inbound),
    Closed,
    Timeout,
}

/// Most inputs taken before the writes of a burst go out.
const BURST: usize = 256;
/// How long a closing node waits for its store to answer the writes still
/// out (and the ones they release).
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest a closing node waits for its transports to finish closing.
const CLOSE_LINKS: Duration = Duration::from_secs(2);

/// Bytes of frames from all links together waiting for the node: past it,
/// links stop reading their sockets (TCP's flow control then slows the
/// senders) instead of memory growing.
const INBOUND_BYTES: usize = 64 * 1024 * 1024;
/// The gate counts bytes in units of this size.
const INBOUND_UNIT: usize = 16 * 1024;
/// Frames one link may have waiting for the node at once: the queue then
/// takes links in turn, so a client that floods waits behind itself, not
/// in front of everyone else.
const INBOUND_TURNS: usize = 2;

/// Units of the inbound gate a frame of `len` bytes takes.
fn units(len: usize) -> usize {
    len.div_ceil(INBOUND_UNIT)
        .clamp(1, INBOUND_BYTES / INBOUND_UNIT)
}

/// Opens links to remotes that are not Repos of this process (TCP, WebSocket, ...).
pub type Dialer = std::sync::Arc<
    dyn Fn(
            RemoteAddr,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Link, String>> + Send>>
        + Send
        + Sync,
>;

/// How a remote is reached.
pub(crate) enum Remote<E: DocEngine> {
    /// A Repo of this process, through its input.
    Local(async_channel::Sender<Request<E>>),
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

/// Asks the application side for something and gets an answer.
pub(crate) type Answer<T> = async_channel::Sender<T>;

/// The answer to an open: the application's handle, or why not.
type OpenAnswer<E> = Answer<Result<<E as DocEngine>::Handle, String>>;

/// What a document's standing with a peer is made of: what the peer
/// confirmed, our version, whether the document was deleted here.
pub(crate) type PeerState = (
    Option<docweave_core::SyncState>,
    Option<docweave_core::VersionVector>,
    bool,
);

/// What a link hands the node, in the order it happened: a frame, holding
/// its share of the inbound gate until the node took it, or its end.
pub(crate) enum Inbound {
    Frame {
        channel: ChannelId,
        bytes: Vec<u8>,
        units: usize,
        /// The link's turn in the queue, given back once the node took it.
        _turn: smol::lock::SemaphoreGuardArc,
    },
    Closed {
        channel: ChannelId,
    },
}

/// Everything the driver's loop reacts to (what links hand the node comes
/// on a queue of its own, see [`Inbound`]).
pub(crate) enum Request<E: DocEngine> {
    Node(Input),
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
    Store(StoreAnswer),
    Open {
        doc: DocId,
        reply: OpenAnswer<E>,
        /// The caller keeps the handle (the replica must not sleep under
        /// it); else it is dropped at once after an edit, or not used.
        lasting: bool,
    },
    Watch {
        reply: Answer<async_channel::Receiver<Event>>,
    },
    PeerState {
        doc: DocId,
        peer: PeerId,
        reply: Answer<PeerState>,
    },
    Dirty {
        doc: DocId,
        reply: Answer<(bool, Option<String>)>,
    },
    Resident {
        reply: Answer<usize>,
    },
    Gauges {
        reply: Answer<()>,
    },
    Summary {
        reply: Answer<crate::repo::Summary>,
    },
    /// One page of documents in id order, merged with the store's page.
    DocPage {
        after: Option<DocId>,
        limit: usize,
        stored: Vec<docweave_core::DocSummary>,
        reply: Answer<docweave_core::DocPage>,
    },
    /// One document's version and clock: memory's, else the store's.
    DocSummary {
        doc: DocId,
        stored: Option<(docweave_core::VersionVector, docweave_core::Clock)>,
        reply: Answer<Option<(docweave_core::VersionVector, docweave_core::Clock)>>,
    },
    /// How many peers have a connection now.
    ConnectedPeers {
        reply: Answer<usize>,
    },
    Connections {
        reply: Answer<Vec<docweave_core::ConnectionInfo>>,
    },
    Close {
        reply: Answer<()>,
    },
}

/// Asks a store shared with other processes to announce their writes, so
/// the node reads the feed at once instead of at its next poll.
/// Whether it does.
fn watch<E: DocEngine>(store: &mut dyn Store, me: async_channel::Sender<Request<E>>) -> bool {
    let announce: docweave_adapters::Announce = std::sync::Arc::new(move |a| {
        let input = match a {
            docweave_adapters::Announcement::Written => Input::StoreAnnounced,
            docweave_adapters::Announcement::Published(bytes) => Input::StorePublished { bytes },
        };
        // Called on the store's listening thread. The channel is
        // unbounded; what comes is bounded by the other servers (their
        // writes, and their peers' presence under their bounds).
        let _ = me.send_blocking(Request::Node(input));
    });
    match store.watch(announce) {
        Ok(true) => {
            tracing::debug!("the store announces other processes' writes");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!("the store cannot announce writes ({e}); its feed is polled");
            false
        }
    }
}

/// The loop: one node, its links, its store thread, the application's requests.
pub(crate) struct Driver<E: DocEngine> {
    node: Node<E>,
    links: BTreeMap<ChannelId, LinkTx>,
    remotes: BTreeMap<RemoteAddr, Remote<E>>,
    pending_opens: BTreeMap<DocId, Vec<(OpenAnswer<E>, bool)>>,
    watchers: Vec<async_channel::Sender<Event>>,
    input: async_channel::Receiver<Request<E>>,
    me: async_channel::Sender<Request<E>>,
    /// Frames from links, bounded in bytes by `gate`.
    frames: async_channel::Receiver<Inbound>,
    frames_tx: async_channel::Sender<Inbound>,
    gate: Arc<Semaphore>,
    store: Option<StoreThreads>,
    started: Instant,
    /// The last error per document, for its status.
    errors: BTreeMap<DocId, String>,
    /// The node's next timer, kept across inputs: it is moved only when
    /// the node's next deadline moves (see `docweave_adapters::timer_thread`).
    timer: ThreadTimer,
}

impl<E: DocEngine> Driver<E> {
    /// Wraps a node. With a store, its restore job runs here and now, so a
    /// store that cannot be read fails the build, not the first request.
    pub fn new(
        mut node: Node<E>,
        store: Option<Box<dyn Store>>,
        input: async_channel::Receiver<Request<E>>,
        me: async_channel::Sender<Request<E>>,
        health: Health,
    ) -> Result<Self, String> {
        let started = Instant::now();
        // Authors' times are the wall clock's, not the loop's.
        node.set_wall_clock(crate::token_refresh::now_ms());
        let store = match store {
            Some(mut store) => {
                if let Some(Output::Store(job)) = node.poll_output() {
                    let result = run_job(&mut *store, job.op);
                    if let crate::node::StoreResult::Failed(e) = &result {
                        return Err(e.reason.clone());
                    }
                    node.handle(0, Input::Store(StoreAnswer { id: job.id, result }));
                }
                // A shared store is known as shared before any peer comes:
                // listener ids are then drawn at random from the first.
                if node.model().config().timing.feed_poll_ms > 0 && watch(&mut *store, me.clone()) {
                    node.handle(0, Input::StoreAnnounced);
                }
                let metrics = node.metrics().cloned();
                let answers = me.clone();
                let answer: crate::store_threads::Answer = Arc::new(move |a| {
                    // A closed loop is closing: the remaining jobs still
                    // run, and nobody is left to hear their answers.
                    let _ = answers.send_blocking(Request::Store(a));
                });
                Some(StoreThreads::spawn(store, answer, health, metrics))
            }
            None => None,
        };
        let (frames_tx, frames) = async_channel::unbounded();
        Ok(Self {
            node,
            links: BTreeMap::new(),
            remotes: BTreeMap::new(),
            pending_opens: BTreeMap::new(),
            watchers: Vec::new(),
            input,
            me,
            frames,
            frames_tx,
            gate: Arc::new(Semaphore::new(INBOUND_BYTES / INBOUND_UNIT)),
            store,
            started,
            errors: BTreeMap::new(),
            timer: ThreadTimer::at(started),
        })
    }

    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// Runs until closed.
    pub async fn run(mut self) {
        self.pump();
        loop {
            match self.next().await {
                Next::Request(Request::Close { reply }) => return self.close(Some(reply)).await,
                Next::Request(request) => self.request(request),
                Next::Frame(frame) => self.frame(frame),
                Next::Closed => return self.close(None).await,
                Next::Timeout => {
                    let now = self.now();
                    self.node.handle(now, Input::Timeout);
                    self.pump();
                    continue;
                }
            }
            // Take what else is already waiting before writing, so the
            // answers to one burst leave as one frame per link.
            for _ in 0..BURST {
                match self.input.try_recv() {
                    Ok(Request::Close { reply }) => return self.close(Some(reply)).await,
                    Ok(more) => {
                        self.request(more);
                        continue;
                    }
                    Err(_) => {}
                }
                if self.node.waits_for_store() {
                    break;
                }
                match self.frames.try_recv() {
                    Ok(frame) => self.frame(frame),
                    Err(_) => break,
                }
            }
            self.pump();
        }
    }

    /// What comes next: a request, a frame (not while the node waits for
    /// its store: frames then wait in their links, which stop reading), or
    /// the node's timer.
    async fn next(&mut self) -> Next<E> {
        let started = self.started;
        let deadline = self.node.poll_timeout().map(|at| {
            // A deadline past what an `Instant` holds never comes.
            later(started, Duration::from_millis(at))
        });
        let waits_for_store = self.node.waits_for_store();
        let (input, frames, timer) = (&self.input, &self.frames, &mut self.timer);
        let request = async {
            match input.recv().await {
                Ok(r) => Next::Request(r),
                Err(_) => Next::Closed,
            }
        };
        let frame = async {
            if waits_for_store {
                return std::future::pending().await;
            }
            match frames.recv().await {
                Ok(f) => Next::Frame(f),
                Err(_) => std::future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    timer.set_at(at);
                    timer.await;
                    Next::Timeout
                }
                None => std::future::pending().await,
            }
        };
        futures_lite::future::or(request, futures_lite::future::or(frame, timer)).await
    }

    /// A frame goes to the node, and its share of the gate comes back; or
    /// a link ended.
    fn frame(&mut self, f: Inbound) {
        let now = self.now();
        match f {
            Inbound::Frame {
                channel,
                bytes,
                units,
                _turn,
            } => {
                self.node.handle(now, Input::Frame { channel, bytes });
                self.gate.add_permits(units);
            }
            Inbound::Closed { channel } => {
                if self.links.remove(&channel).is_some() {
                    self.node.handle(now, Input::ChannelClosed { channel });
                }
            }
        }
    }

    /// Flushes, stops the links and waits for every store job to finish.
    async fn close(mut self, reply: Option<Answer<()>>) {
        self.pump();
        self.flush_writes().await;
        let links: Vec<LinkTx> = std::mem::take(&mut self.links).into_values().collect();
        for tx in &links {
            tx.close(docweave_adapters::transport::SERVER_STOPPING);
        }
        // Each transport finishes what it owes the other side (a WebSocket's
        // close frame, an HTTP session's close) before the process may end:
        // a CLI that exited first left its HTTP session open on the server,
        // which holds 32 per address. Bounded, so a peer that does not read
        // cannot hold the shutdown.
        let deadline = Instant::now() + CLOSE_LINKS;
        while links.iter().any(|tx| !tx.finished()) && Instant::now() < deadline {
            ThreadTimer::at(later(Instant::now(), Duration::from_millis(5))).await;
        }
        if let Some(store) = self.store.take() {
            store.close();
        }
        if let Some(reply) = reply {
            let _ = reply.send(()).await;
        }
    }

    /// Takes the store's answers to the writes still out, so the changes
    /// waiting behind them are written too (the core keeps one write per
    /// document and store out at a time), for at most [`CLOSE_FLUSH`].
    /// Other requests that come meanwhile are dropped: the node is closing.
    async fn flush_writes(&mut self) {
        let deadline = std::time::Instant::now() + CLOSE_FLUSH;
        while self.store.is_some() && self.node.model().store_writes_in_flight() > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let next = futures_lite::future::or(async { self.input.recv().await.ok() }, async {
                ThreadTimer::at(later(Instant::now(), left)).await;
                None
            })
            .await;
            match next {
                Some(Request::Store(answer)) => {
                    let now = self.now();
                    self.node.handle(now, Input::Store(answer));
                    self.pump();
                }
                Some(_) => {}
                None => {
                    tracing::warn!(
                        "closing with {} store writes unanswered",
                        self.node.model().store_writes_in_flight()
                    );
                    break;
                }
            }
        }
    }

    fn request(&mut self, request: Request<E>) {
        let now = self.now();
        match request {
            Request::Node(input) => self.node.handle(now, input),
            Request::Store(answer) => self.node.handle(now, Input::Store(answer)),
            Request::Accept(link) => self.add_link(link, None),
            Request::Dialed { remote, link } => {
                if self.remotes.contains_key(&remote) {
                    self.add_link(link, Some(remote));
                } else {
                    link.close("no longer wanted");
                }
            }
            Request::AddRemote { remote, how, token } => {
                self.remotes.insert(remote.clone(), how);
                self.node.handle(
                    now,
                    Input::Connect {
                        remote,
                        token,
                        filter: docweave_core::Filter::all(),
                    },
                );
            }
            Request::Open {
                doc,
                reply,
                lasting,
            } => {
                self.pending_opens
                    .entry(doc.clone())
                    .or_default()
                    .push((reply, lasting));
                self.node.handle(now, Input::Open { doc });
            }
            Request::Watch { reply } => {
                let (tx, rx) = async_channel::unbounded();
                self.watchers.push(tx);
                let _ = reply.try_send(rx);
            }
            Request::PeerState { doc, peer, reply } => {
                let m = self.node.model();
                let _ = reply.try_send((
                    m.peer_state(&peer, &doc),
                    m.doc_version(&doc).cloned(),
                    m.is_tombstoned(&doc),
                ));
            }
            Request::Dirty { doc, reply } => {
                let dirty = self.node.model().is_dirty(&doc);
                let _ = reply.try_send((dirty, self.errors.get(&doc).cloned()));
            }
            Request::Resident { reply } => {
                let _ = reply.try_send(self.node.resident());
            }
            Request::Gauges { reply } => {
                self.node.count_gauges();
                // An asker that gave up needs no answer.
                let _ = reply.try_send(());
            }
            Request::Summary { reply } => {
                let m = self.node.model();
                let summary = crate::repo::Summary {
                    peer: m.config().peer.clone(),
                    clock: m.clock(),
                    docs: m.doc_summaries(),
                    peers: m.peer_summaries(),
                    resident: self.node.resident(),
                    lags: m.remote_lags(),
                };
                let _ = reply.try_send(summary);
            }
            Request::DocPage {
                after,
                limit,
                stored,
                reply,
            } => {
                let page = self.node.model().doc_page(after.as_ref(), limit, stored);
                // An asker that gave up needs no answer.
                let _ = reply.try_send(page);
            }
            Request::DocSummary { doc, stored, reply } => {
                // An asker that gave up needs no answer.
                let _ = reply.try_send(self.node.model().doc_summary(&doc, stored));
            }
            Request::ConnectedPeers { reply } => {
                // An asker that gave up needs no answer.
                let _ = reply.try_send(self.node.model().connected_peer_count());
            }
            Request::Connections { reply } => {
                // An asker that gave up needs no answer.
                let _ = reply.try_send(self.node.model().connections());
            }
            Request::Close { .. } => {}
        }
    }

    fn add_link(&mut self, link: Link, remote: Option<RemoteAddr>) {
        let now = self.now();
        let channel = self.node.channel_opened(now, remote);
        self.links.insert(channel, link.tx);
        let frames = self.frames_tx.clone();
        let gate = self.gate.clone();
        let rx = link.rx;
        let turns = Arc::new(Semaphore::new(INBOUND_TURNS));
        smol::spawn(async move {
            while let Ok(bytes) = rx.recv().await {
                let turn = turns.acquire_arc().await;
                // Room for it among the frames waiting for the node first:
                // until then this link's frames wait, and so does its socket.
                let units = units(bytes.len());
                for _ in 0..units {
                    gate.acquire().await.forget();
                }
                let frame = Inbound::Frame {
                    channel,
                    bytes,
                    units,
                    _turn: turn,
                };
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
            // A closed loop is closing: nothing to tell it.
            let _ = frames.send(Inbound::Closed { channel }).await;
        })
        .detach();
    }

    /// A peer that does not read costs a bounded backlog, then its connection.
    fn refused(&mut self, channel: ChannelId, sent: Option<Result<(), SendError>>) {
        let Some(Err(SendError::Backlog(waiting))) = sent else {
            return;
        };
        let reason = format!("the peer does not read: {waiting} bytes wait for it; closing");
        tracing::warn!("{channel}: {reason}");
        if let Some(tx) = self.links.remove(&channel) {
            tx.close(&reason);
        }
        let now = self.now();
        self.node.handle(now, Input::ChannelClosed { channel });
    }

    /// Carries out everything the node put out.
    fn pump(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { channel, frame } => {
                    let sent = self.links.get(&channel).map(|tx| tx.send(frame));
                    self.refused(channel, sent);
                }
                Output::TransmitShared { channel, frame } => {
                    let sent = self.links.get(&channel).map(|tx| tx.send_shared(frame));
                    self.refused(channel, sent);
                }
                Output::Close { channel, reason } => {
                    if let Some(tx) = self.links.remove(&channel) {
                        tx.close(&reason);
                    }
                }
                Output::Dial { remote } => self.dial(remote),
                Output::Store(job) => {
                    if let Some(store) = &self.store {
                        store.run(job);
                    }
                }
                Output::Event(event) => self.emit(event),
                Output::Authenticate { channel, check } => self.authenticate(channel, check),
            }
        }
    }

    /// A token checked elsewhere: the question runs aside (bounded by the
    /// checker) and its answer comes back; meanwhile the node goes on.
    fn authenticate(&mut self, channel: ChannelId, check: crate::RemoteCheck) {
        let me = self.me.clone();
        smol::spawn(async move {
            let checked = match check.take() {
                Some(question) => question.await,
                None => crate::Checked::Refused("the token check was lost".into()),
            };
            // A closed loop is closing: nobody waits for the answer.
            let _ = me
                .send(Request::Node(Input::Checked { channel, checked }))
                .await;
        })
        .detach();
    }

    fn dial(&mut self, remote: RemoteAddr) {
        let now = self.now();
        match self.remotes.get(&remote).cloned() {
            Some(Remote::Local(inbox)) => {
                let (mine, theirs) = docweave_adapters::transport::memory_pair();
                if inbox.try_send(Request::Accept(theirs)).is_ok() {
                    self.add_link(mine, Some(remote));
                } else {
                    self.node.handle(now, Input::DialFailed { remote });
                }
            }
            Some(Remote::Dialer(dial)) => {
                // Dialing takes time: it runs aside and reports back.
                let me = self.me.clone();
                smol::spawn(async move {
                    let request = match dial(remote.clone()).await {
                        Ok(link) => Request::Dialed { remote, link },
                        Err(e) => {
                            // A warning: the reason (refused, an untrusted
                            // certificate) is what the user must see; retries
                            // back off to one a minute at most.
                            tracing::warn!("dialing {remote} failed: {e}");
                            Request::Node(Input::DialFailed { remote })
                        }
                    };
                    let _ = me.send(request).await;
                })
                .detach();
            }
            None => self.node.handle(now, Input::DialFailed { remote }),
        }
    }

    fn emit(&mut self, event: Event) {
        // The last error of a document stands until a peer takes or sends
        // data for it again (a local write succeeding says nothing of that).
        let me = &self.node.model().config().peer;
        match &event {
            Event::Error {
                doc: Some(doc),
                reason,
            } => {
                self.errors.insert(doc.clone(), reason.clone());
            }
            Event::DocChanged {
                doc,
                from: Some(from),
                ..
            } if from != me => {
                self.errors.remove(doc);
            }
            Event::AckedByRemote { doc, .. } => {
                self.errors.remove(doc);
            }
            _ => {}
        }
        match &event {
            Event::DocReady { doc, .. } => {
                let answers = self.pending_opens.remove(doc).unwrap_or_default();
                // A document loaded for no one (a peer's, fetched) gives
                // out no handle, so it may sleep once idle.
                let handle = if answers.iter().any(|(_, lasting)| *lasting) {
                    self.node.doc_handle(doc)
                } else if answers.is_empty() {
                    None
                } else {
                    self.node.doc_handle_briefly(doc)
                };
                for (r, _) in answers {
                    let answer = handle
                        .clone()
                        .ok_or_else(|| format!("{doc} could not be kept in memory; open it again"));
                    let _ = r.try_send(answer);
                }
            }
            Event::DocUnavailable { doc } => {
                for (r, _) in self.pending_opens.remove(doc).unwrap_or_default() {
                    let _ = r.try_send(Err(format!("{doc} is not available")));
                }
            }
            _ => {}
        }
        self.watchers.retain(|w| w.try_send(event.clone()).is_ok());
    }
}
