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
#![warn(missing_docs)]

mod contained;
pub mod loro_protocol;
pub mod reassembly;
mod store;
pub mod transport;

pub use contained::{contained, panics_caught, EnginePanic};
pub use store::{
    conformance, Announce, Announcement, Append, Loaded, MemoryStore, PostgresStore,
    SharedMemoryStore, SqliteStore, Store, StoreError,
};
pub use transport::{Link, Outbound};
