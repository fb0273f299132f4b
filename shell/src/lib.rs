//! The shell of docweave: the loop around the pure core.
//!
//! It feeds messages to `docweave_core::update` and carries out the
//! commands: sends on transports, imports and exports on documents (Loro by
//! default, any [`DocEngine`]), writes to the store on its own thread, timers,
//! events for the application. It makes no protocol decision.
//! Not here: the protocol's rules (the core), stores and network transports
//! (the adapters).
//!
//! ```
//! use docweave_adapters::MemoryStore;
//! use docweave_shell::Repo;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), docweave_shell::RepoError> {
//! smol::block_on(async {
//!     // Two nodes; each could as well be another process or a server.
//!     let server = Repo::builder("server").store(MemoryStore::new()).build()?;
//!     let laptop = Repo::builder("laptop").store(MemoryStore::new()).build()?;
//!     laptop.connect(&server)?;
//!
//!     // Open (or create) a document and edit it: it syncs by itself.
//!     laptop.edit("notes", |doc| doc.get_text("body").insert(0, "hello")).await?;
//!     assert!(laptop.wait_for_sync("notes", "server", Duration::from_secs(10)).await?.is_synced());
//!
//!     let there = server.open("notes").await?;
//!     assert_eq!(there.get_text("body").to_string(), "hello");
//!
//!     laptop.close().await; // flushes everything
//!     server.close().await;
//!     Ok(())
//! })
//! # }
//! ```
#![warn(missing_docs)]

mod driver;
mod engine;
mod loro_engine;
mod node;
mod oplog_engine;
mod recording;
mod repo;

/// The README's embedding example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub use docweave_adapters::Link;
pub use driver::Dialer;
pub use engine::DocEngine;
pub use loro_engine::{to_core_version, to_loro_version, LoroEngine};
pub use node::{
    run_job, Input, JobError, LocalNotify, Node, NodeOptions, Output, StepHook, StoreAnswer,
    StoreJob, StoreOp, StoreResult,
};
pub use oplog_engine::{Op, OpLogDoc, OpLogEngine, Reducer};
pub use recording::{replay, Line, ReplayError, ReplayOutcome};
pub use repo::{Repo, RepoBuilder, RepoError, Summary, SyncOutcome, SyncStatus};
