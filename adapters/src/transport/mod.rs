//! Transports: framed, bidirectional links between nodes.
//!
//! A [`Link`] carries whole docweave frames (`[version][flags][len][postcard]`)
//! both ways; each transport turns its connection into one, doing its I/O on
//! tasks it spawns. Bad input at the edge (garbage, a frame claiming more
//! than the limit) gets an `error` frame back and the connection closed,
//! before any byte reaches the node.

pub mod fragments;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod http_api;
mod lane;
mod memory;
mod pace;
mod slots;
#[cfg(feature = "http")]
mod static_files;
#[cfg(feature = "tcp")]
mod tcp;
// The network transports' TLS; the PostgreSQL store uses its client half.
#[cfg(any(
    feature = "websocket",
    feature = "http",
    feature = "tcp",
    feature = "postgres"
))]
mod tls;
#[cfg(feature = "postgres")]
pub(crate) use tls::client_config;
#[cfg(feature = "websocket")]
mod websocket;

#[cfg(feature = "http")]
pub use http::{
    http_link, http_link_to, post, request, request_capped, request_hello, request_to, serve_http,
    serve_http_with_web, split_frames, Connector, HealthCheck, HttpFigures, HttpOptions, HttpPages,
    HttpTarget, MetricsPage, PeerOfToken, StatusPage, StatusRequest,
};
#[cfg(feature = "http")]
pub use http_api::{ApiAnswer, ApiGate, ApiHandler, ApiRequest, ApiRoutes};
pub use memory::{memory_pair, memory_pair_with_faults, polled_pair, Faults, PolledLink};
pub use pace::{InboundRate, Pacer};
pub use slots::{ConnectionLimit, Slot};

#[cfg(feature = "tcp")]
pub use tcp::{serve_tcp, serve_tcp_tls, tcp_connect, tcp_link};
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
pub use tls::{TlsClient, TlsServer};
#[cfg(feature = "loro-endpoint")]
pub use websocket::serve_ws_with_loro;
#[cfg(feature = "websocket")]
pub use websocket::{serve_ws, ws_connect, ws_link, WsOptions};

use docweave_core::SharedFrame;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The reason a node gives the links it closes when it stops: WebSocket
/// clients see close code 1001 ("going away") with it.
pub const SERVER_STOPPING: &str = "the node is closing";

/// How a close for a server going away begins: the WebSocket close frame
/// then carries code 1001 ("going away") instead of 1000. (The Loro
/// endpoint's `GOING_AWAY` is this.)
#[cfg(feature = "websocket")]
pub(crate) const GOING_AWAY: &str = "going away: ";

/// What waits in a link's queue: a shared frame keeps its document bytes
/// shared until the writer takes its chunks (or the whole frame) one by one.
#[derive(Debug)]
enum Queued {
    Frame(Vec<u8>),
    /// Boxed: an entry is as large as its largest kind (72 bytes unboxed,
    /// 32 boxed), and a burst of small frames is the common case.
    Shared(Box<SharedFrame>),
    Close(String),
}

/// What the node sends on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// One encoded frame.
    Frame(Vec<u8>),
    /// Close the connection; the reason goes to the log (and, on
    /// WebSocket, into the close frame).
    Close(String),
}

/// Most bytes of ordinary frames a link holds for its peer before refusing
/// more: a peer that does not read costs this much memory, then its
/// connection is closed.
pub const DEFAULT_BACKLOG: usize = 32 * 1024 * 1024;

/// Most frames a transport holds, read from its connection and not yet taken
/// by the node: when the node falls behind, the transport stops reading and
/// TCP's own flow control slows the sender, instead of memory growing.
pub const INBOUND_FRAMES: usize = 4;

/// Most bytes of large messages (sent as chunk frames) a link holds for its
/// peer: a new large message is refused (and the connection closed) when it
/// would pass this, unless nothing else is waiting. A peer that stops
/// reading altogether is closed sooner by the transport's write timeout.
pub const DEFAULT_BULK_BACKLOG: usize = 512 * 1024 * 1024;

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

/// Bytes waiting to be written on one link.
#[derive(Debug, Default)]
struct Waiting {
    /// All bytes queued.
    all: AtomicUsize,
    /// Of which chunk frames of large messages.
    bulk: AtomicUsize,
}

/// The sending half of a link, with the bytes waiting to be written.
#[derive(Debug, Clone)]
pub struct LinkTx {
    inner: lane::Lane<Queued>,
    waiting: Arc<Waiting>,
    limit: usize,
    bulk_limit: usize,
}

impl LinkTx {
    /// Queues a frame, unless the connection is gone or its backlog is full.
    ///
    /// Ordinary frames and large messages (chunk frames) have separate
    /// bounds, so one large document on its way does not shut out the small
    /// messages behind it. Whether a large message goes is decided at its
    /// first chunk; the rest follow, so a link never holds half a message.
    pub fn send(&self, frame: Vec<u8>) -> Result<(), SendError> {
        let n = frame.len();
        let all = self.waiting.all.load(Ordering::SeqCst);
        let bulk = self.waiting.bulk.load(Ordering::SeqCst);
        let chunk = docweave_core::parse_chunk(&frame).map(|c| (c.index, c.total));
        let is_chunk = chunk.is_some();
        // Anything fits into an empty backlog of its kind.
        let refused = match chunk {
            Some((index, _)) if index > 0 => None,
            Some((_, total)) => {
                let total = usize::try_from(total).unwrap_or(usize::MAX);
                (bulk > 0 && bulk.saturating_add(total) > self.bulk_limit).then_some(bulk)
            }
            None => {
                let small = all.saturating_sub(bulk);
                (small > 0 && small + n > self.limit).then_some(small)
            }
        };
        if let Some(waiting) = refused {
            return Err(SendError::Backlog(waiting));
        }
        self.waiting.all.fetch_add(n, Ordering::SeqCst);
        if is_chunk {
            self.waiting.bulk.fetch_add(n, Ordering::SeqCst);
        }
        self.inner.try_send(Queued::Frame(frame)).map_err(|_| {
            self.waiting.all.fetch_sub(n, Ordering::SeqCst);
            if is_chunk {
                self.waiting.bulk.fetch_sub(n, Ordering::SeqCst);
            }
            SendError::Closed
        })
    }

    /// Queues a frame that shares its document bytes, to be written as its
    /// chunk frames (or whole, when it fits). A chunked one is refused when
    /// the large messages already waiting would pass their bound; a whole
    /// one is charged, at its full length, to the ordinary frames' bound,
    /// as if it were a copy: what waits for a reader is its backlog,
    /// however many others share the bytes.
    pub fn send_shared(&self, frame: SharedFrame) -> Result<(), SendError> {
        let n = frame.wire_len();
        let chunked = frame.is_chunked();
        let all = self.waiting.all.load(Ordering::SeqCst);
        let bulk = self.waiting.bulk.load(Ordering::SeqCst);
        let refused = if chunked {
            (bulk > 0 && bulk.saturating_add(n) > self.bulk_limit).then_some(bulk)
        } else {
            let small = all.saturating_sub(bulk);
            (small > 0 && small + n > self.limit).then_some(small)
        };
        if let Some(waiting) = refused {
            return Err(SendError::Backlog(waiting));
        }
        self.waiting.all.fetch_add(n, Ordering::SeqCst);
        if chunked {
            self.waiting.bulk.fetch_add(n, Ordering::SeqCst);
        }
        self.inner
            .try_send(Queued::Shared(Box::new(frame)))
            .map_err(|_| {
                self.waiting.all.fetch_sub(n, Ordering::SeqCst);
                if chunked {
                    self.waiting.bulk.fetch_sub(n, Ordering::SeqCst);
                }
                SendError::Closed
            })
    }

    /// Closes the connection with a reason (after what is queued).
    pub fn close(&self, reason: &str) {
        let _ = self.inner.try_send(Queued::Close(reason.to_string()));
        self.inner.close();
    }

    /// Whether the transport has stopped taking frames: its task ended,
    /// having written what it owed the other side (a close frame, an HTTP
    /// session's close).
    pub fn finished(&self) -> bool {
        self.inner.receiver_gone()
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.waiting.all.load(Ordering::SeqCst)
    }
}

/// The writing half of a link, for a transport's writer task.
#[derive(Debug)]
pub struct LinkOut {
    inner: lane::LaneOut<Queued>,
    waiting: Arc<Waiting>,
    /// The large frame being written, and its next chunk.
    large: Mutex<Option<(SharedFrame, u32)>>,
}

impl LinkOut {
    /// The next thing to write; `None` once the node dropped the link.
    pub async fn recv(&self) -> Option<Outbound> {
        if let Some(chunk) = self.next_chunk() {
            return Some(chunk);
        }
        let queued = self.inner.recv().await?;
        Some(self.take(queued))
    }

    /// Something to write now, if any.
    pub fn try_recv(&self) -> Option<Outbound> {
        if let Some(chunk) = self.next_chunk() {
            return Some(chunk);
        }
        let queued = self.inner.try_recv()?;
        Some(self.take(queued))
    }

    /// The next chunk of the large frame being written, built now.
    fn next_chunk(&self) -> Option<Outbound> {
        let mut large = self.large.lock().unwrap_or_else(|e| e.into_inner());
        let (frame, next) = large.as_mut()?;
        let chunk = frame.chunk(*next);
        *next += 1;
        if *next >= frame.chunk_count() {
            *large = None;
        }
        (!chunk.is_empty()).then_some(Outbound::Frame(chunk))
    }

    fn take(&self, queued: Queued) -> Outbound {
        match queued {
            Queued::Frame(f) => Outbound::Frame(f),
            Queued::Close(reason) => Outbound::Close(reason),
            Queued::Shared(frame) => {
                let first = frame.chunk(0);
                if frame.chunk_count() > 1 {
                    *self.large.lock().unwrap_or_else(|e| e.into_inner()) = Some((*frame, 1));
                }
                Outbound::Frame(first)
            }
        }
    }

    /// A frame was written (or dropped): room for more.
    pub fn written(&self, frame: &[u8]) {
        let less = |counter: &AtomicUsize| {
            let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                Some(q.saturating_sub(frame.len()))
            });
        };
        less(&self.waiting.all);
        if docweave_core::parse_chunk(frame).is_some() {
            less(&self.waiting.bulk);
        }
    }

    /// Stops taking frames.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// A new outbound queue holding at most `limit` bytes of ordinary frames
/// and [`DEFAULT_BULK_BACKLOG`] bytes of large messages.
pub fn outbound(limit: usize) -> (LinkTx, LinkOut) {
    let (tx, rx) = lane::lane();
    let waiting = Arc::new(Waiting::default());
    (
        LinkTx {
            inner: tx,
            waiting: waiting.clone(),
            limit,
            bulk_limit: DEFAULT_BULK_BACKLOG,
        },
        LinkOut {
            inner: rx,
            waiting,
            large: Mutex::new(None),
        },
    )
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
#[cfg(any(feature = "tcp", feature = "websocket"))]
pub(crate) fn error_frame(code: docweave_core::ErrorCode, message: String) -> Vec<u8> {
    docweave_core::encode(&[docweave_core::Message::Error { code, message }]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use docweave_core::{decode, encode, BatchId, DocId, Limits, Message, Payload, VersionVector};

    fn update(bytes: usize) -> Message {
        Message::Update {
            doc: DocId::new("d"),
            batch: BatchId(1),
            data: Payload::new(vec![7u8; bytes]),
            version: VersionVector::new(),
        }
    }

    #[test]
    fn a_whole_shared_frame_is_charged_to_the_ordinary_backlog_and_written_as_the_frame() {
        let (tx, out) = outbound(150_000);
        let m = update(100_000);
        let frame = SharedFrame::whole(std::slice::from_ref(&m)).unwrap();
        // An empty backlog takes it; a second one would pass the bound.
        tx.send_shared(frame.clone()).unwrap();
        assert_eq!(tx.backlog(), frame.len());
        assert!(matches!(
            tx.send_shared(frame.clone()),
            Err(SendError::Backlog(_))
        ));
        // It is charged as an ordinary frame: a plain one is refused too.
        assert!(matches!(
            tx.send(encode(std::slice::from_ref(&m)).unwrap()),
            Err(SendError::Backlog(_))
        ));
        let Some(Outbound::Frame(bytes)) = out.try_recv() else {
            panic!("nothing to write")
        };
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), vec![m]);
        out.written(&bytes);
        assert_eq!(tx.backlog(), 0);
        assert!(out.try_recv().is_none());
    }
}
