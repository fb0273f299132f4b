//! Integration tests for docweave: a deterministic simulator that drives
//! real nodes (real core, real Loro or operation-log replicas, real store
//! code under injected faults) over faulty in-memory links with a virtual
//! clock, random schedules with the properties they must keep, and readable
//! trace formatting. The scenario traces, properties and end-to-end tests
//! live in `tests/`.
//! Also small helpers for the end-to-end tests here (`endpoints`) and a
//! PostgreSQL server for tests (`postgres`).
//! Not here: the smol driver itself (see the shell, adapters and cli tests).
#![warn(missing_docs)]

pub mod alloc_meter;
pub mod endpoints;
pub mod fake_server;
mod faulty_store;
pub mod fuzz;
pub mod fuzz_loro;
pub mod fuzz_memory;
pub mod listener_mirror;
pub mod postgres;
pub mod rng;
pub mod schedule;
pub mod sim;
/// The trace formatting lives with the shell (`docweave trace` prints it too).
pub use docweave_shell::trace;

pub use faulty_store::{Backing, FaultyStore, Loss, StoreFaults};
pub use sim::{Coverage, Edit, Faults, Lines, Sim, SimEngine};
