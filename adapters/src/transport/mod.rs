//! Transports: framed, bidirectional links between nodes.
//!
//! A [`Link`] carries whole docweave frames (`[version][flags][len][postcard]`)
//! both ways; each transport turns its connection into one, doing its I/O on
//! tasks it spawns. Bad input at the edge (garbage, a frame claiming more
//! than the limit) gets an `error` frame back and the connection closed,
//! before any byte reaches the node.

pub mod fragments;
mod http;
mod memory;
mod slots;
mod tcp;
mod websocket;

pub use http::{http_link, post, serve_http, split_frames, Connector, HttpOptions, StatusPage};
pub use memory::{memory_pair, memory_pair_with_faults, Faults};
pub use slots::{ConnectionLimit, Slot};

pub use tcp::{serve_tcp, tcp_connect, tcp_link};
pub use websocket::{serve_ws, ws_connect, ws_link, WsOptions};

use docweave_core::{encode, ErrorCode, Message};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What the node sends on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// One encoded frame.
    Frame(Vec<u8>),
    /// Close the connection; the reason goes to the log (and, on
    /// WebSocket, into the close frame).
    Close(String),
}

/// Most bytes a link holds for its peer before refusing more: a peer that
/// does not read costs this much memory, then its connection is closed.
pub const DEFAULT_BACKLOG: usize = 32 * 1024 * 1024;

/// Why a frame was not queued on a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is gone.
    #[error("the connection is closed")]
    Closed,
    /// The peer is not reading: this many bytes already wait for it.
    #[error("{0} bytes already wait for a peer that does not read them")]
    Backlog(usize),
}

/// The sending half of a link, with the bytes waiting to be written.
#[derive(Debug, Clone)]
pub struct LinkTx {
    inner: async_channel::Sender<Outbound>,
    backlog: Arc<AtomicUsize>,
    limit: usize,
}

impl LinkTx {
    /// Queues a frame, unless the connection is gone or its backlog is full.
    pub fn send(&self, frame: Vec<u8>) -> Result<(), SendError> {
        let n = frame.len();
        let before = self.backlog.fetch_add(n, Ordering::SeqCst);
        // A frame always fits into an empty backlog.
        if before > 0 && before + n > self.limit {
            self.backlog.fetch_sub(n, Ordering::SeqCst);
            return Err(SendError::Backlog(before));
        }
        self.inner.try_send(Outbound::Frame(frame)).map_err(|_| {
            self.backlog.fetch_sub(n, Ordering::SeqCst);
            SendError::Closed
        })
    }

    /// Closes the connection with a reason (after what is queued).
    pub fn close(&self, reason: &str) {
        let _ = self.inner.try_send(Outbound::Close(reason.to_string()));
        self.inner.close();
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }
}

/// The writing half of a link, for a transport's writer task.
#[derive(Debug)]
pub struct LinkOut {
    inner: async_channel::Receiver<Outbound>,
    backlog: Arc<AtomicUsize>,
}

impl LinkOut {
    /// The next thing to write; `None` once the node dropped the link.
    pub async fn recv(&self) -> Option<Outbound> {
        self.inner.recv().await.ok()
    }

    /// Something to write now, if any.
    pub fn try_recv(&self) -> Option<Outbound> {
        self.inner.try_recv().ok()
    }

    /// `n` bytes of frames were written (or dropped): room for more.
    pub fn written(&self, n: usize) {
        let _ = self
            .backlog
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Stops taking frames.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// A new outbound queue holding at most `limit` bytes.
pub fn outbound(limit: usize) -> (LinkTx, LinkOut) {
    let (tx, rx) = async_channel::unbounded();
    let backlog = Arc::new(AtomicUsize::new(0));
    (
        LinkTx {
            inner: tx,
            backlog: backlog.clone(),
            limit,
        },
        LinkOut { inner: rx, backlog },
    )
}

/// What every transport offers: whole frames both ways and a close with a
/// reason. Each transport hands its connections over as a [`Link`].
pub trait Transport {
    /// Sends a frame; `false` when the connection is gone or not reading.
    fn send(&self, frame: Vec<u8>) -> bool;
    /// The next frame; `None` once the connection is gone.
    fn recv(&self) -> impl std::future::Future<Output = Option<Vec<u8>>> + Send;
    /// Closes the connection with a reason.
    fn close(&self, reason: &str);
}

impl Transport for Link {
    fn send(&self, frame: Vec<u8>) -> bool {
        Link::send(self, frame)
    }

    fn recv(&self) -> impl std::future::Future<Output = Option<Vec<u8>>> + Send {
        let rx = self.rx.clone();
        async move { rx.recv().await.ok() }
    }

    fn close(&self, reason: &str) {
        Link::close(self, reason)
    }
}

/// A framed connection: the node writes `tx` and reads `rx`. When `rx`
/// ends, the connection is gone.
pub struct Link {
    /// Frames (and the close) to the other side.
    pub tx: LinkTx,
    /// Frames from the other side.
    pub rx: async_channel::Receiver<Vec<u8>>,
}

impl Link {
    /// Sends a frame; `false` when the connection is gone or not reading.
    pub fn send(&self, frame: Vec<u8>) -> bool {
        self.tx.send(frame).is_ok()
    }

    /// Closes the connection with a reason.
    pub fn close(&self, reason: &str) {
        self.tx.close(reason);
    }
}

/// The frame a transport sends before closing on bad input.
pub(crate) fn error_frame(code: ErrorCode, message: String) -> Vec<u8> {
    encode(&[Message::Error { code, message }]).unwrap_or_default()
}
