//! The application's handle: open documents, edit them, connect, wait.

use crate::loro_engine::LoroEngine;
use crate::node::{Input, Link, Node, WatchLocal};
use crate::recording::Recorder;
use docweave_adapters::Store;
use docweave_core::{Config, DocId, Event, Model, PeerId, RemoteAddr, SyncState};
use loro::LoroDoc;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The recording log could not be created.
    #[error("cannot record to {path}: {why}")]
    Recording {
        /// The log path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Builds a [`Repo`].
pub struct RepoBuilder {
    config: Config,
    store: Option<Box<dyn Store>>,
    record: Option<PathBuf>,
}

impl RepoBuilder {
    /// Keeps documents and node state in `store`.
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Changes the core's configuration (rules, tokens, timings).
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Records every input of the core to a JSON-lines log at `path`.
    pub fn record(mut self, path: impl Into<PathBuf>) -> Self {
        self.record = Some(path.into());
        self
    }

    /// Starts the repository's loop on its own thread.
    pub fn build(self) -> Result<Repo, RepoError> {
        let recorder = match &self.record {
            Some(p) => {
                Some(
                    Recorder::create(p, &self.config).map_err(|e| RepoError::Recording {
                        path: p.clone(),
                        why: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let (tx, rx) = async_channel::unbounded();
        let peer = self.config.peer.clone();
        let mut node = Node::new(
            Model::new(self.config),
            LoroEngine,
            session_actor(&peer),
            rx,
            tx.clone(),
            recorder,
        );
        if let Some(store) = self.store {
            node.attach_store(store).map_err(RepoError::Store)?;
        }
        let thread = std::thread::Builder::new()
            .name(format!("docweave-{peer}"))
            .spawn(move || smol::block_on(node.run()))
            .map_err(|e| RepoError::Store(e.to_string()))?;
        Ok(Repo {
            input: tx,
            peer,
            thread: Some(thread),
        })
    }
}

/// A fresh actor number for this session: Loro peer ids must not repeat
/// across sessions of one node, or edits lost in a crash would collide.
fn session_actor(peer: &PeerId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    peer.hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    h.finish() >> 12
}

impl WatchLocal for LoroEngine {
    fn watch_local(
        &self,
        doc: &LoroDoc,
        notify: Box<dyn Fn() + Send + Sync>,
    ) -> Box<dyn std::any::Any + Send> {
        let sub = doc.subscribe_local_update(Box::new(move |_| {
            notify();
            true
        }));
        Box::new(sub)
    }

    fn handle(&self, doc: &LoroDoc) -> Box<dyn std::any::Any + Send> {
        Box::new(doc.clone())
    }
}

/// A running docweave node that syncs Loro documents.
pub struct Repo {
    input: async_channel::Sender<Input>,
    peer: PeerId,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Repo {
    /// Starts building a repository for node `peer`.
    pub fn builder(peer: &str) -> RepoBuilder {
        RepoBuilder {
            config: Config::new(peer),
            store: None,
            record: None,
        }
    }

    /// This node's id.
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(async_channel::Sender<T>) -> Input,
    ) -> Result<T, RepoError> {
        let (tx, rx) = async_channel::bounded(1);
        self.input
            .send(make(tx))
            .await
            .map_err(|_| RepoError::Closed)?;
        rx.recv().await.map_err(|_| RepoError::Closed)
    }

    /// Opens a document (loading it from the store, or creating it) and
    /// returns the live replica: edit it and `commit()`; changes sync by themselves.
    pub async fn open(&self, doc: &str) -> Result<LoroDoc, RepoError> {
        let id = DocId::parse(doc)?;
        self.ask(|reply| Input::Open {
            doc: id.clone(),
            reply,
        })
        .await?
        .map_err(RepoError::Unavailable)?;
        let handle = self
            .ask(|reply| Input::Handle {
                doc: id.clone(),
                reply,
            })
            .await?;
        handle
            .and_then(|h| h.downcast::<LoroDoc>().ok())
            .map(|b| *b)
            .ok_or_else(|| RepoError::Unavailable(format!("{doc} is not loaded")))
    }

    /// Edits a document through a closure and commits.
    pub async fn edit<R>(&self, doc: &str, f: impl FnOnce(&LoroDoc) -> R) -> Result<R, RepoError> {
        let d = self.open(doc).await?;
        let r = f(&d);
        d.commit();
        Ok(r)
    }

    /// Events as they happen (documents changed, peers synced, acknowledgements, errors).
    pub async fn events(&self) -> Result<async_channel::Receiver<Event>, RepoError> {
        self.ask(|reply| Input::Watch { reply }).await
    }

    /// Connects to another repository in this process (in-memory transport),
    /// and keeps reconnecting if the link drops.
    pub fn connect(&self, other: &Repo) -> Result<(), RepoError> {
        let remote = RemoteAddr::new(other.peer.as_str());
        self.input
            .try_send(Input::AddRemote {
                remote,
                inbox: other.input.clone(),
            })
            .map_err(|_| RepoError::Closed)
    }

    /// Accepts a link made elsewhere (a transport adapter).
    pub fn accept(&self, link: Link) -> Result<(), RepoError> {
        self.input
            .try_send(Input::Accept(link))
            .map_err(|_| RepoError::Closed)
    }

    /// Waits until `peer` has everything we have of `doc` (or said it has no
    /// such document); `false` when `timeout` passes first.
    pub async fn wait_for_sync(
        &self,
        doc: &str,
        peer: &str,
        timeout: Duration,
    ) -> Result<bool, RepoError> {
        let id = DocId::parse(doc)?;
        let peer = PeerId::parse(peer)?;
        let events = self.events().await?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (state, ours) = self
                .ask(|reply| Input::PeerState {
                    doc: id.clone(),
                    peer: peer.clone(),
                    reply,
                })
                .await?;
            match (state, ours) {
                (Some(SyncState::Absent), _) => return Ok(true),
                (Some(SyncState::Synced(theirs)), Some(ours)) if theirs.includes(&ours) => {
                    return Ok(true)
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
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

    /// Flushes every pending write and stops the loop.
    pub async fn close(mut self) {
        let _ = self.ask(|reply| Input::Close { reply }).await;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// [`Repo::close`] for blocking code.
    pub fn close_blocking(self) {
        smol::block_on(self.close());
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not closed explicitly: ask the loop to flush and stop, without waiting.
            self.input.close();
        }
    }
}
