//! The shell of docweave: the loop around the pure core.
//!
//! It feeds messages to `docweave_core::update` and carries out the
//! commands: sends on transports, imports and exports on documents (Loro by
//! default, any [`DocEngine`]), writes to the store on its own thread, timers,
//! events for the application. It makes no protocol decision.
//! Not here: the protocol's rules (the core), stores and network transports
//! (the adapters).
#![warn(missing_docs)]

mod engine;
mod loro_engine;
mod node;
mod oplog_engine;
mod recording;
mod repo;
mod storage;

pub use engine::DocEngine;
pub use loro_engine::{to_core_version, to_loro_version, LoroEngine};
pub use node::Link;
pub use oplog_engine::{Op, OpLogDoc, OpLogEngine, Reducer};
pub use recording::{replay, Line, ReplayError, ReplayOutcome};
pub use repo::{Repo, RepoBuilder, RepoError, SyncStatus};
