//! The SQLite schema and its migrations, tracked in `PRAGMA user_version`.

use super::StoreError;
use rusqlite::Connection;

/// Each entry migrates from version `i` to `i + 1`. Only ever append.
const MIGRATIONS: &[&str] = &[
    // 1: change log keyed by a monotonic clock, documents, node state.
    "CREATE TABLE changes (
         clock INTEGER PRIMARY KEY AUTOINCREMENT,
         doc   TEXT NOT NULL,
         data  BLOB NOT NULL
     );
     CREATE INDEX changes_by_doc ON changes (doc, clock);
     CREATE TABLE docs (
         doc      TEXT PRIMARY KEY,
         doc_type TEXT NOT NULL,
         scope    TEXT NOT NULL,
         branch   TEXT NOT NULL,
         version  BLOB NOT NULL,
         clock    INTEGER NOT NULL,
         snapshot BLOB
     );
     CREATE INDEX docs_by_clock ON docs (clock);
     CREATE TABLE records (
         key   TEXT PRIMARY KEY,
         value TEXT NOT NULL
     );",
    // 2: who wrote what (`authorship.rs`): each run of changes a server
    //    took, with its author, in the order written; and each writer
    //    number's owner per document.
    "CREATE TABLE authored (
         seq      INTEGER PRIMARY KEY,
         doc      TEXT NOT NULL,
         writer   INTEGER NOT NULL,
         start    INTEGER NOT NULL,
         stop     INTEGER NOT NULL,
         identity TEXT NOT NULL,
         at       INTEGER NOT NULL,
         version  TEXT NOT NULL,
         message  TEXT,
         UNIQUE (doc, writer, start)
     );
     CREATE INDEX authored_by_doc ON authored (doc, seq);
     CREATE TABLE writers (
         doc      TEXT NOT NULL,
         writer   INTEGER NOT NULL,
         identity TEXT NOT NULL,
         PRIMARY KEY (doc, writer)
     ) WITHOUT ROWID;",
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database up to the latest schema, one transaction per step.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            known: latest(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}
