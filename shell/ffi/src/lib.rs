//! docweave for C (and anything that can call C): a node the host drives.
//!
//! The host owns the sockets, the clock and the loop; the node decides.
//! Every call takes the time in milliseconds on the host's monotonic clock.
//! The contract, also in `docweave.h`:
//!
//! - Every function returns `DW_OK` (0) or an error code; `dw_last_error()`
//!   then says why (a NUL-terminated string owned by the library, valid on
//!   this thread until the next call). Nothing panics across the boundary.
//! - Byte buffers given to the library are borrowed for the call only.
//!   Bytes the library hands out in a `dw_output` stay valid until the next
//!   `dw_poll` or `dw_node_free`; bytes from `dw_export` are the caller's
//!   and go back with `dw_bytes_free`.
//! - The store is built in: SQLite at `"sqlite": PATH` in the config, else
//!   memory. Its jobs run inside `dw_poll`.
//!
//! Here: the C functions and their safety checks, and [`host::Host`], the
//! node with its store run inline that the Python package shares. Not here:
//! any decision (the core) or the node itself (`docweave-shell`).
#![warn(missing_docs)]

mod api;
mod error;
pub mod host;

pub use api::*;
pub use error::{DW_ERR_INVALID, DW_ERR_NULL, DW_ERR_PANIC, DW_ERR_STORE, DW_OK};
