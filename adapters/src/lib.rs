//! The edges of docweave: where bytes meet disks (and, next, networks).
//!
//! Here: the [`Store`] trait and its implementations, [`MemoryStore`] and
//! [`SqliteStore`] (the embedded default: WAL, a monotonic change clock,
//! snapshots with compaction, node state, tombstones, schema migrations).
//! Stores keep document bytes opaque: they never parse a document.
//! Not here: the event loop, documents (Loro), protocol decisions.
#![warn(missing_docs)]

mod store;

pub use store::{conformance, Append, Loaded, MemoryStore, SqliteStore, Store, StoreError};
