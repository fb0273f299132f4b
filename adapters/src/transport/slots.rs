//! Bounds on the connections a server holds, and an accept loop that
//! survives errors.

use super::Link;
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
use smol::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
use std::time::Duration;

/// Bounds how many connections a server holds at once.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    open: Arc<AtomicUsize>,
    max: usize,
    /// Set when the server stops taking connections (it drains).
    closed: Arc<AtomicBool>,
}

impl ConnectionLimit {
    /// At most `max` connections.
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            closed: Arc::default(),
        }
    }

    /// Takes no more connections (every clone of this limit): the server
    /// drains. Open ones are not touched.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether it takes no more connections.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The most connections held at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts one more connection, or `None` when full or closed. The slot is given
    /// back when it is dropped, on every path.
    pub fn enter(&self) -> Option<Slot> {
        if self.is_closed() {
            return None;
        }
        self.enter_even_closed()
    }

    /// Like [`ConnectionLimit::enter`], closed or not: for an endpoint that
    /// still answers some requests while the server drains (HTTP's health
    /// and metrics).
    pub fn enter_even_closed(&self) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot {
            open: self.open.clone(),
        })
    }
}

/// One counted connection; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slot {
    /// Holds the slot for as long as the link's frames flow. The relay is
    /// bounded like every link's inbound queue: when the node falls behind,
    /// the transport stops reading (an unbounded relay here once let one
    /// client grow the server by 140 MB a second).
    pub fn wrap(self, link: Link) -> Link {
        let (tx, rx) = async_channel::bounded(crate::transport::INBOUND_FRAMES);
        let inner = link.rx;
        smol::spawn(async move {
            let _slot = self;
            while let Ok(frame) = inner.recv().await {
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
            tx.close();
        })
        .detach();
        Link { tx: link.tx, rx }
    }
}

/// Accepts connections for ever: an error (out of file descriptors, say)
/// is logged and retried after a short pause that grows while it lasts.
#[cfg(any(feature = "websocket", feature = "http", feature = "tcp"))]
pub(crate) async fn accept(listener: &TcpListener, pause: &mut Duration) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                *pause = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}; retrying in {pause:?}");
                smol::Timer::after(*pause).await;
                *pause = (*pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
