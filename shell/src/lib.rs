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
//!
//! # Bring your own loop
//!
//! [`Repo`] runs a [`Node`] on a thread of its own with smol. A host with a
//! loop of its own (tokio, a game loop, an actor system) drives a [`Node`]
//! directly: it owns no thread, socket or clock. The host feeds it inputs
//! with the time, carries out what it asks, and sleeps until its timer or
//! the next input:
//!
//! ```
//! use docweave_adapters::MemoryStore;
//! use docweave_core::{Config, DocId, Event};
//! use docweave_shell::{run_job, Input, LoroEngine, Node, NodeOptions, Output, StoreAnswer};
//!
//! let options = NodeOptions { store: true, ..NodeOptions::default() };
//! let mut node = Node::new(Config::new("laptop"), LoroEngine, options);
//! let mut store = MemoryStore::new();
//! let start = std::time::Instant::now();
//! let now = || start.elapsed().as_millis() as u64;
//! node.handle(now(), Input::Open { doc: DocId::new("notes") });
//! // Each turn: carry out every output, then wait for a socket or the timer.
//! while let Some(output) = node.poll_output() {
//!     match output {
//!         // Connect (a WebSocket, a TCP stream...), then tell the node.
//!         Output::Dial { remote } => { let _channel = node.channel_opened(now(), Some(remote)); }
//!         // Write the frame to that channel's connection.
//!         Output::Transmit { channel, frame } => {}
//!         // Write `frame.chunk(0)`, `frame.chunk(1)`, ... (`frame.chunk_count()` of them).
//!         Output::TransmitShared { channel, frame } => {}
//!         Output::Close { channel, reason } => {}
//!         // Run the job on the store (here inline) and answer, in job order.
//!         Output::Store(job) => {
//!             let result = run_job(&mut store, job.op);
//!             node.handle(now(), Input::Store(StoreAnswer { id: job.id, result }));
//!         }
//!         Output::Event(Event::DocReady { doc, .. }) => {
//!             // Edit through the handle, then say so.
//!             if let Some(d) = node.doc_handle(&doc) {
//!                 d.get_text("body").insert(0, "hello").unwrap();
//!                 d.commit();
//!             }
//!             node.handle(now(), Input::LocalChange { doc });
//!         }
//!         Output::Event(_) => {}
//!         // Only with a checker that asks elsewhere: run the question aside,
//!         // then feed `Input::Checked { channel, checked }`.
//!         Output::Authenticate { channel, check } => {}
//!     }
//! }
//! // Frames that arrive: `node.handle(now(), Input::Frame { channel, bytes })`;
//! // a closed connection: `Input::ChannelClosed`; a failed dial: `Input::DialFailed`.
//! // Sleep until `node.poll_timeout()` (a time in the same milliseconds) or
//! // the next input, and feed `Input::Timeout` when it is due.
//! ```
//!
//! On docweave's WebSocket endpoint each binary message carries a one-byte
//! tag (a whole frame or a piece of one): use
//! `docweave_adapters::transport::fragments::{split, Reassembler}`.
//! `shell/cli/tests/host_loop.rs` is a complete tokio host that syncs with
//! `docweave serve` over a WebSocket it opened itself.
#![warn(missing_docs)]

mod authenticator;
mod driver;
mod engine;
mod failover;
mod fault;
mod health;
mod loro_engine;
mod metrics;
mod node;
mod oplog_engine;
mod recording;
mod repo;
mod store_threads;
mod token_refresh;
pub mod trace;

/// The README's embedding example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub use authenticator::{Authenticator, Checked, Question, RemoteCheck};
pub use docweave_adapters::EnginePanic;
pub use docweave_adapters::Link;
pub use driver::Dialer;
pub use engine::{DocEngine, ExportError, Run};
pub use failover::failover;
pub use health::Health;
pub use loro_engine::{print_frontiers, to_core_version, to_loro_version, LoroEngine};
pub use metrics::{HookCounts, Metrics};
pub use node::{
    run_job, Input, JobError, LocalNotify, Node, NodeOptions, Output, StepHook, StoreAnswer,
    StoreJob, StoreOp, StoreResult,
};
pub use oplog_engine::{Op, OpLogDoc, OpLogEngine, Reducer};
pub use recording::{
    files_in, read_lines, recording_files, replay, replay_files, Line, RecordOptions, ReplayError,
    ReplayOutcome,
};
pub use repo::{Repo, RepoBuilder, RepoError, Summary, SyncOutcome, SyncStatus};
pub use token_refresh::{now_ms, refresh_in, token_expiry};
