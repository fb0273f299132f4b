//! Large values in and out of SQLite without extra copies.
//!
//! Binding a blob makes SQLite copy it and then build the row around it
//! (two more copies of a 200 MB document); reading one with `get` copies
//! it out of a buffer SQLite assembled first. Instead a row is written
//! with a `zeroblob` of the right length and filled through incremental
//! blob I/O, and read back the same way into a buffer of its exact size.

use super::StoreError;
use rusqlite::{Connection, MAIN_DB};
use std::io::{Read, Write};

/// Pieces in which a blob is written (one page-cache sized step at a time).
const PIECE: usize = 1024 * 1024;

/// Fills `table.column` of row `rowid`, which holds a zeroblob of
/// `data.len()` bytes, with `data`.
pub(crate) fn write(
    conn: &Connection,
    table: &str,
    column: &str,
    rowid: i64,
    data: &[u8],
) -> Result<(), StoreError> {
    if data.is_empty() {
        return Ok(());
    }
    let mut blob = conn.blob_open(MAIN_DB, table, column, rowid, false)?;
    for piece in data.chunks(PIECE) {
        blob.write_all(piece)
            .map_err(|e| StoreError::Unavailable(format!("blob i/o: {e}")))?;
    }
    Ok(())
}

/// Reads `table.column` of row `rowid` (of `len` bytes) into a buffer of
/// its exact size.
pub(crate) fn read(
    conn: &Connection,
    table: &str,
    column: &str,
    rowid: i64,
    len: usize,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(len);
    if len == 0 {
        return Ok(out);
    }
    let mut blob = conn.blob_open(MAIN_DB, table, column, rowid, true)?;
    blob.read_to_end(&mut out)
        .map_err(|e| StoreError::Unavailable(format!("blob i/o: {e}")))?;
    Ok(out)
}
