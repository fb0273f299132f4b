//! The edges of docweave: where bytes meet disks (and, next, networks).
//!
//! Here: the [`Store`] trait and its implementations, [`MemoryStore`]
//! ([`SharedMemoryStore`] when several nodes of one process share it) and
//! [`SqliteStore`] (the embedded default: WAL, a monotonic change clock,
//! snapshots with compaction, node state, tombstones, schema migrations),
//! and [`PostgresStore`] (one database shared by several servers, with a
//! change feed without gaps and LISTEN/NOTIFY announcements);
//! transports as framed [`Link`]s (memory with seeded faults, TCP,
//! WebSocket, HTTP polling); the Loro Syncing Protocol endpoint
//! ([`loro_protocol`]), which translates Loro clients into native peers.
//! Stores keep document bytes opaque: they never parse a document (the
//! Loro endpoint only reads Loro version vectors).
//! Not here: the event loop, documents, protocol decisions.
//!
//! # Features
//!
//! All are on by default; an embedder that needs less turns the default
//! off and names what it uses. The memory store, the memory transport,
//! connection limits, pacing and reassembly are always there.
//!
//! - `sqlite`: `SqliteStore` (rusqlite, with SQLite bundled).
//! - `postgres`: `PostgresStore`, with TLS to the database (postgres,
//!   rustls).
//! - `websocket`: `serve_ws`, `ws_connect`, `ws_link` and `WsOptions` in
//!   [`transport`], with `wss://` (async-tungstenite, rustls).
//! - `http`: the HTTP polling transport, its API and static pages, and
//!   the HTTP client (`serve_http`, `http_link`, `request`, ...), with
//!   `https://` (hyper, rustls).
//! - `tcp`: `serve_tcp`, `serve_tcp_tls`, `tcp_connect` and `tcp_link`,
//!   with TLS (rustls).
//! - `loro-endpoint`: the `loro_protocol` module and `serve_ws_with_loro`
//!   (loro); it turns on `websocket`, whose port serves it.
//!
//! `TlsServer` and `TlsClient` come with any of `websocket`, `http` and
//! `tcp`.
#![warn(missing_docs)]

mod contained;
#[cfg(feature = "loro-endpoint")]
pub mod loro_protocol;
pub mod reassembly;
mod store;
pub mod timer_thread;
pub mod transport;

pub use contained::{contained, panics_caught, EnginePanic};
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{
    bounded_message, conformance, Announce, Announcement, Append, Authored, HistoryEntry, Loaded,
    MemoryStore, SharedMemoryStore, Store, StoreError, MESSAGE_MOST,
};
#[cfg(feature = "postgres")]
pub use store::{PostgresLease, PostgresStore};
pub use transport::{Link, Outbound};
