//! The PostgreSQL schema and its migrations, tracked in `docweave_schema`.
//!
//! Every table is prefixed `docweave_` so the store can share a database
//! with an application's own tables.

use super::StoreError;
use postgres::Client;

/// Any constant both servers agree on: serialises migrations across
/// processes that start at once.
const MIGRATION_LOCK: i64 = 0x646f_6377_6561_7665; // "docweave"

/// Each entry migrates from version `i` to `i + 1`. Only ever append.
const MIGRATIONS: &[&str] = &[
    // 1: change log keyed by the shared clock, documents, node state,
    //    deletions (the feed of tombstones), and the clock itself: one row
    //    whose lock every writer holds until it commits, so clocks become
    //    visible in the order they were handed out (see `postgres.rs`).
    "CREATE TABLE docweave_clock (
         id   INT PRIMARY KEY CHECK (id = 1),
         last BIGINT NOT NULL
     );
     INSERT INTO docweave_clock (id, last) VALUES (1, 0);
     CREATE TABLE docweave_changes (
         clock BIGINT PRIMARY KEY,
         doc   TEXT NOT NULL,
         data  BYTEA NOT NULL
     );
     CREATE INDEX docweave_changes_by_doc ON docweave_changes (doc, clock);
     CREATE TABLE docweave_docs (
         doc      TEXT PRIMARY KEY,
         doc_type TEXT NOT NULL,
         scope    TEXT NOT NULL,
         branch   TEXT NOT NULL,
         version  BYTEA NOT NULL,
         clock    BIGINT NOT NULL,
         snapshot BYTEA
     );
     CREATE INDEX docweave_docs_by_clock ON docweave_docs (clock);
     CREATE TABLE docweave_records (
         key   TEXT PRIMARY KEY,
         value TEXT NOT NULL
     );
     CREATE TABLE docweave_deletions (
         clock BIGINT PRIMARY KEY,
         doc   TEXT NOT NULL
     );",
    // 2: the clock up to which the snapshot folded changes, so a reader
    //    that holds changes up to some clock can be sent only the rest.
    "ALTER TABLE docweave_docs ADD COLUMN compacted_to BIGINT NOT NULL DEFAULT 0;",
    // 3: each server's revocation list (`serve --revoked-file`), so that a
    //    revocation on one server cuts the identity off on all.
    "CREATE TABLE docweave_revocations (
         server     TEXT PRIMARY KEY,
         list       TEXT NOT NULL,
         updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );",
    // 4: documents in id order compared bytewise, as a node lists them
    //    when it keeps only some documents' metadata in memory.
    "CREATE INDEX docweave_docs_by_id_bytes ON docweave_docs (doc COLLATE \"C\");",
    // 5: who wrote what (`authorship.rs`): each run of changes a server
    //    took, with its author, placed by its change's clock; and each
    //    writer number's owner per document, shared by every server.
    "CREATE TABLE docweave_authored (
         seq      BIGINT PRIMARY KEY,
         doc      TEXT NOT NULL,
         writer   BIGINT NOT NULL,
         start    BIGINT NOT NULL,
         stop     BIGINT NOT NULL,
         identity TEXT NOT NULL,
         at       BIGINT NOT NULL,
         version  TEXT NOT NULL,
         message  TEXT,
         UNIQUE (doc, writer, start)
     );
     CREATE INDEX docweave_authored_by_doc ON docweave_authored (doc, seq);
     CREATE TABLE docweave_writers (
         doc      TEXT NOT NULL,
         writer   BIGINT NOT NULL,
         identity TEXT NOT NULL,
         PRIMARY KEY (doc, writer)
     );",
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database up to the latest schema in one transaction, under
/// an advisory lock so that servers starting together migrate once.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS docweave_schema (version BIGINT NOT NULL)")?;
    let found: i64 = match tx.query_opt("SELECT version FROM docweave_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO docweave_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if found > latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            known: latest(),
        });
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        tx.batch_execute(sql)?;
    }
    tx.execute("UPDATE docweave_schema SET version = $1", &[&latest()])?;
    tx.commit()?;
    Ok(())
}
