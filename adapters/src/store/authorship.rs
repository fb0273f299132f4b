//! Who wrote what, as the server that took the changes vouches for it.
//!
//! A Loro change carries a writer number (its peer) that the client picks,
//! so any client could write under another's number. A server knows who
//! each connection is (its credentials), so for every run of changes new
//! to a document it keeps an [`Authored`] record, written in the same
//! transaction as the changes ([`super::Append::authors`]). The first
//! identity to write as a writer number on a document owns it there: the
//! node refuses that number from anyone else ([`super::Loaded::writers`]).

use docweave_core::{Millis, PeerId};

/// The most bytes of a change's commit message a record keeps: the message
/// is the client's, so what it makes the store hold is bounded.
pub const MESSAGE_MOST: usize = 1024;

/// One run of one writer's changes that a server accepted from one
/// identity: what its history lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authored {
    /// The writer: the Loro peer the changes carry.
    pub writer: u64,
    /// The run's first counter.
    pub start: u64,
    /// Past its last counter (`end - start` operations, as Loro counts
    /// them: one per character of text).
    pub end: u64,
    /// Who sent it: the identity its connection's credentials let in.
    pub identity: PeerId,
    /// When the server received it, on the server's clock (Unix ms).
    pub at: Millis,
    /// The document's version once the server took it, printed
    /// (`COUNTER@PEER` of each frontier, by peer, joined by commas).
    pub version: String,
    /// The commit message of the run's last change, if its writer set one
    /// (at most [`MESSAGE_MOST`] bytes).
    pub message: Option<String>,
}

/// One entry of a document's history: a record and its place in the
/// store's order of writes (higher is later; pages go on from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its place in the order of writes, unique per store.
    pub seq: u64,
    /// What was written, by whom, when.
    pub authored: Authored,
}

/// Records one change may carry: its records' places are its clock times
/// this plus their index, so the order of writes holds across servers
/// sharing a store (clocks are handed out in commit order). The node folds
/// a document's records into fewer long before this many.
pub const AUTHORED_PER_CHANGE: u64 = 1 << 20;

/// The place of a change's `index`th record.
pub fn authored_seq(clock: u64, index: usize) -> u64 {
    clock
        .saturating_mul(AUTHORED_PER_CHANGE)
        .saturating_add((index as u64).min(AUTHORED_PER_CHANGE - 1))
}

/// Cuts a commit message to [`MESSAGE_MOST`] bytes, at a character boundary.
pub fn bounded_message(message: &str) -> String {
    let mut end = message.len().min(MESSAGE_MOST);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary_within_the_bound() {
        let long = "é".repeat(MESSAGE_MOST);
        let cut = bounded_message(&long);
        assert!(cut.len() <= MESSAGE_MOST);
        assert!(cut.len() >= MESSAGE_MOST - 1);
        assert!(long.starts_with(&cut));
        assert_eq!(bounded_message("short"), "short");
    }
}
