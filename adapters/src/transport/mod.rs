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
mod tcp;
mod websocket;

pub use http::{http_link, post, serve_http, split_frames, Connector, HttpOptions, StatusPage};
pub use memory::{memory_pair, memory_pair_with_faults, Faults};
pub use tcp::{serve_tcp, tcp_connect, tcp_link, ConnectionLimit};
pub use websocket::{serve_ws, ws_connect, ws_link, WsOptions};

use docweave_core::{encode, ErrorCode, Message};

/// What the node sends on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// One encoded frame.
    Frame(Vec<u8>),
    /// Close the connection; the reason goes to the log (and, on
    /// WebSocket, into the close frame).
    Close(String),
}

/// What every transport offers: whole frames both ways and a close with a
/// reason. Each transport hands its connections over as a [`Link`].
pub trait Transport {
    /// Sends a frame; `false` when the connection is gone.
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
    pub tx: async_channel::Sender<Outbound>,
    /// Frames from the other side.
    pub rx: async_channel::Receiver<Vec<u8>>,
}

impl Link {
    /// Sends a frame; `false` when the connection is gone.
    pub fn send(&self, frame: Vec<u8>) -> bool {
        self.tx.try_send(Outbound::Frame(frame)).is_ok()
    }

    /// Closes the connection with a reason.
    pub fn close(&self, reason: &str) {
        let _ = self.tx.try_send(Outbound::Close(reason.to_string()));
        self.tx.close();
    }
}

/// The frame a transport sends before closing on bad input.
pub(crate) fn error_frame(code: ErrorCode, message: String) -> Vec<u8> {
    encode(&[Message::Error { code, message }]).unwrap_or_default()
}
