//! Integration tests for docweave: a deterministic multi-node simulator over
//! the core, a toy document model and store, and readable trace formatting.
//! The scenario traces, properties and end-to-end tests live in `tests/`.
//! Not here: real transports, real stores or Loro (see the shell and adapters).
#![warn(missing_docs)]

pub mod script;
mod sim;
mod store;
mod toy;
pub mod trace;

pub use sim::{Faults, Node, Sim};
pub use store::ToyStore;
pub use toy::ToyDoc;
