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
    /// A bound this one also counts against (see [`ConnectionLimit::within`]).
    pool: Option<Box<ConnectionLimit>>,
}

impl ConnectionLimit {
    /// At most `max` connections.
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            closed: Arc::default(),
            pool: None,
        }
    }

    /// A limit of its own (`max`, counted and closed on its own) whose
    /// connections also count against this one: endpoints that share the
    /// process's file descriptors, so any of them may use what the others
    /// leave.
    pub fn within(&self, max: usize) -> Self {
        Self {
            pool: Some(Box::new(self.clone())),
            ..Self::new(max)
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
        let pool = match &self.pool {
            Some(pool) => match pool.enter_even_closed() {
                Some(slot) => Some(Box::new(slot)),
                None => {
                    self.open.fetch_sub(1, Ordering::SeqCst);
                    return None;
                }
            },
            None => None,
        };
        Some(Slot {
            open: self.open.clone(),
            _pool: pool,
        })
    }
}

/// One counted connection; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<AtomicUsize>,
    /// The slot taken in the pool, given back with this one.
    _pool: Option<Box<Slot>>,
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

#[cfg(test)]
mod tests {
    use super::ConnectionLimit;

    #[test]
    fn endpoints_within_one_pool_use_what_the_others_leave() {
        let all = ConnectionLimit::new(3);
        let (ws, http) = (all.within(3), all.within(3));
        let a = ws.enter();
        let b = ws.enter();
        let c = http.enter();
        assert!(a.is_some() && b.is_some() && c.is_some());
        assert!(ws.enter().is_none(), "the pool is full");
        assert!(http.enter().is_none(), "the pool is full");
        assert_eq!((ws.open(), http.open(), all.open()), (2, 1, 3));
        drop(a);
        let d = http.enter();
        assert!(
            d.is_some(),
            "a slot the WebSocket endpoint left is the HTTP endpoint's"
        );
        assert_eq!((ws.open(), http.open(), all.open()), (1, 2, 3));
        // Closing one endpoint leaves the other open.
        ws.close();
        drop(b);
        assert!(ws.enter().is_none());
        drop(c);
        assert!(http.enter().is_some());
    }
}
