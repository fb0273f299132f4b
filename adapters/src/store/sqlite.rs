//! The embedded default store: one SQLite file in WAL mode.
//!
//! Clocks are `AUTOINCREMENT` row ids of the change log: strictly growing,
//! never reused (also after compaction deletes rows), and shared by every
//! process that opens the file, so each sees the others' changes through
//! `changes_since`. Writes run in `BEGIN IMMEDIATE` transactions with
//! `synchronous = FULL`: a write that returned is on disk.

use super::{
    authorship::authored_seq, corrupt, decode_version, encode_version, record_key, schema,
    sqlite_blobs, Append, Authored, HistoryEntry, Loaded, Store, StoreError,
};
use docweave_core::{
    Clock, DocId, DocMeta, Filter, PeerId, ReadRange, StateRecord, StoredDoc, VersionVector,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A store in one SQLite database file.
pub struct SqliteStore {
    conn: Connection,
    /// The database file, for readers beside this connection; `None` for
    /// a database in memory (no other connection sees it) and for readers.
    path: Option<std::path::PathBuf>,
}

/// Statements kept prepared per connection: more than the store has (its
/// own, history's and the blob helpers'), so a busy store never parses one
/// twice (rusqlite keeps 16 by default, fewer than there are).
const STATEMENT_CACHE: usize = 64;

impl SqliteStore {
    /// Opens (or creates) the database at `path` and migrates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        // Only a database that is a file on disk is seen by a second
        // connection (not ":memory:", nor a URI naming a memory database).
        Ok(Self {
            conn,
            path: path.is_file().then(|| path.to_path_buf()),
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn tombstoned(conn: &Connection, doc: &DocId) -> Result<bool, StoreError> {
        let key = record_key(&StateRecord::Tombstone(doc.clone()));
        Ok(conn
            .prepare_cached("SELECT 1 FROM records WHERE key = ?1")?
            .query_row([key], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

impl Store for SqliteStore {
    /// A second connection to the same file (WAL mode lets it read while
    /// this one writes; it sees committed transactions only).
    fn reader(&mut self) -> Result<Option<Box<dyn Store>>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Some(Box::new(SqliteStore { conn, path: None })))
    }

    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut clocks = Vec::with_capacity(changes.len());
        // Each document's row is written once per batch, with its last
        // clock and every version merged: a version grows with the writers,
        // so a row per change made a batch quadratic in them.
        let mut rows: BTreeMap<&str, (&Append, VersionVector, i64)> = BTreeMap::new();
        for a in changes {
            if !rows.contains_key(a.doc.as_str()) && Self::tombstoned(&tx, &a.doc)? {
                return Err(StoreError::Tombstoned(a.doc.clone()));
            }
            tx.prepare_cached("INSERT INTO changes (doc, data) VALUES (?1, zeroblob(?2))")?
                .execute(params![a.doc.as_str(), a.data.len() as i64])?;
            let clock = tx.last_insert_rowid();
            sqlite_blobs::write(&tx, "changes", "data", clock, &a.data)?;
            match rows.get_mut(a.doc.as_str()) {
                Some((_, version, last)) => {
                    *version = version.merge(&a.version);
                    *last = clock;
                }
                None => {
                    rows.insert(a.doc.as_str(), (a, a.version.clone(), clock));
                }
            }
            clocks.push(Clock(clock as u64));
            write_authors(&tx, &a.doc, clock, &a.authors)?;
        }
        for (doc, (first, version, clock)) in rows {
            let old: Option<Vec<u8>> = tx
                .prepare_cached("SELECT version FROM docs WHERE doc = ?1")?
                .query_row([doc], |r| r.get(0))
                .optional()?;
            let version = match old {
                Some(bytes) => decode_version(doc, &bytes)?.merge(&version),
                None => version,
            };
            let meta = &first.meta;
            tx.prepare_cached(
                "INSERT INTO docs (doc, doc_type, scope, branch, version, clock) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (doc) DO UPDATE SET version = excluded.version, clock = excluded.clock",
            )?
            .execute(params![doc, meta.doc_type, meta.scope, meta.branch, encode_version(&version)?, clock])?;
        }
        tx.commit()?;
        Ok(clocks)
    }

    fn doc_bytes(&mut self, doc: &DocId) -> Result<Option<u64>, StoreError> {
        let tx = self.conn.transaction()?;
        let snapshot = tx
            .prepare_cached("SELECT COALESCE(length(snapshot), 0) FROM docs WHERE doc = ?1")?
            .query_row([doc.as_str()], |r| r.get::<_, i64>(0))
            .optional()?;
        let Some(snapshot) = snapshot else {
            return Ok(None);
        };
        let changes: i64 = tx
            .prepare_cached("SELECT COALESCE(SUM(length(data)), 0) FROM changes WHERE doc = ?1")?
            .query_row([doc.as_str()], |r| r.get(0))?;
        Ok(Some(u64::try_from(snapshot + changes).unwrap_or(0)))
    }

    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        let tx = self.conn.transaction()?;
        // Cached: a server loads documents all day, and parsing the
        // statement each time cost more than running it.
        let mut stmt = tx.prepare_cached(
            "SELECT doc_type, scope, branch, version, clock, rowid, length(snapshot) \
             FROM docs WHERE doc = ?1",
        )?;
        let row = stmt
            .query_row([doc.as_str()], |r| {
                Ok((
                    DocMeta {
                        doc_type: r.get(0)?,
                        scope: r.get(1)?,
                        branch: r.get(2)?,
                    },
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .optional()?;
        drop(stmt);
        let Some((meta, version, clock, rowid, snapshot_len)) = row else {
            return Ok(None);
        };
        let snapshot = match snapshot_len {
            Some(len) => Some(sqlite_blobs::read(
                &tx,
                "docs",
                "snapshot",
                rowid,
                len as usize,
            )?),
            None => None,
        };
        let changes = {
            let mut stmt = tx.prepare_cached(
                "SELECT clock, length(data) FROM changes WHERE doc = ?1 ORDER BY clock",
            )?;
            let rows = stmt.query_map([doc.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
            let rows = rows.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(clock, len)| sqlite_blobs::read(&tx, "changes", "data", clock, len as usize))
                .collect::<Result<Vec<_>, _>>()?
        };
        let writers = read_writers(&tx, doc)?;
        tx.commit()?;
        Ok(Some(Loaded {
            meta,
            version: decode_version(doc.as_str(), &version)?,
            clock: Clock(clock as u64),
            snapshot,
            changes,
            writers,
        }))
    }

    fn forget_history(&mut self, doc: &DocId, below: u64) -> Result<u64, StoreError> {
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        let gone = self.conn.execute(
            "DELETE FROM authored WHERE doc = ?1 AND seq < ?2",
            params![doc.as_str(), below],
        )?;
        Ok(gone as u64)
    }

    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, writer, start, stop, identity, at, version, message FROM authored
             WHERE doc = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![doc.as_str(), before, limit], |r| {
            Ok(HistoryEntry {
                seq: r.get::<_, i64>(0)? as u64,
                authored: Authored {
                    writer: r.get::<_, i64>(1)? as u64,
                    start: r.get::<_, i64>(2)? as u64,
                    end: r.get::<_, i64>(3)? as u64,
                    identity: PeerId::new(&r.get::<_, String>(4)?),
                    at: r.get::<_, i64>(5)? as u64,
                    version: r.get(6)?,
                    message: r.get(7)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM changes WHERE doc = ?1 AND clock <= ?2",
            params![doc.as_str(), up_to.0 as i64],
        )?;
        tx.execute(
            "UPDATE docs SET snapshot = zeroblob(?2) WHERE doc = ?1",
            params![doc.as_str(), snapshot.len() as i64],
        )?;
        let rowid: Option<i64> = tx
            .query_row(
                "SELECT rowid FROM docs WHERE doc = ?1",
                [doc.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(rowid) = rowid {
            sqlite_blobs::write(&tx, "docs", "snapshot", rowid, snapshot)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT doc, doc_type, scope, branch, version, clock FROM docs WHERE clock > ?1 ORDER BY clock",
        )?;
        let rows = stmt.query([clock.0 as i64])?;
        read_docs(rows, filter, limit)
    }

    fn read_index(
        &mut self,
        range: &ReadRange,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        const COLUMNS: &str = "SELECT doc, doc_type, scope, branch, version, clock FROM docs";
        match range {
            ReadRange::Clocks {
                after,
                up_to,
                newest_first,
            } => {
                let order = if *newest_first { "DESC" } else { "ASC" };
                let sql =
                    format!("{COLUMNS} WHERE clock > ?1 AND clock <= ?2 ORDER BY clock {order}");
                let mut stmt = self.conn.prepare_cached(&sql)?;
                let rows = stmt.query([sql_clock(*after), sql_clock(*up_to)])?;
                read_docs(rows, filter, limit)
            }
            ReadRange::Ids { after } => {
                // Text compares bytewise here (SQLite's default collation),
                // as document ids do in memory.
                let sql = format!("{COLUMNS} WHERE doc > ?1 ORDER BY doc");
                let mut stmt = self.conn.prepare_cached(&sql)?;
                let after = after.as_ref().map_or("", |a| a.as_str());
                let rows = stmt.query([after])?;
                read_docs(rows, filter, limit)
            }
        }
    }

    fn clock(&mut self) -> Result<Clock, StoreError> {
        // Cached: the store's feed is polled several times a second.
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(Clock(seq.unwrap_or(0) as u64))
    }

    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        let key = record_key(record);
        if let StateRecord::ListenerRemoved(_) = record {
            self.conn
                .execute("DELETE FROM records WHERE key = ?1", [key])?;
            return Ok(());
        }
        let value = serde_json::to_string(record).map_err(|e| corrupt("a record", e))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO records (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM records ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, value) = row?;
            out.push(
                serde_json::from_str(&value).map_err(|e| corrupt(&format!("record {key}"), e))?,
            );
        }
        Ok(out)
    }

    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM changes WHERE doc = ?1", [doc.as_str()])?;
        tx.execute("DELETE FROM docs WHERE doc = ?1", [doc.as_str()])?;
        tx.execute("DELETE FROM authored WHERE doc = ?1", [doc.as_str()])?;
        tx.execute("DELETE FROM writers WHERE doc = ?1", [doc.as_str()])?;
        tx.commit()?;
        Ok(())
    }
}

/// Keeps who wrote the runs of one change (a run written again after a
/// lost answer is kept once, and one the node grew since, say by folding
/// runs that continue it, is widened); the first identity to write as a writer
/// number on a document owns it there. Numbers are kept as SQLite's
/// signed integers, bit for bit.
fn write_authors(
    tx: &rusqlite::Transaction<'_>,
    doc: &DocId,
    clock: i64,
    authors: &[Authored],
) -> Result<(), StoreError> {
    for (i, a) in authors.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO authored (seq, doc, writer, start, stop, identity, at, version, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (doc, writer, start) DO UPDATE SET
                 stop = max(stop, excluded.stop),
                 at = CASE WHEN excluded.stop > stop THEN excluded.at ELSE at END,
                 version = CASE WHEN excluded.stop > stop THEN excluded.version ELSE version END,
                 message = CASE WHEN excluded.stop > stop
                           THEN COALESCE(excluded.message, message) ELSE message END",
        )?
        .execute(params![
            authored_seq(clock as u64, i) as i64,
            doc.as_str(),
            a.writer as i64,
            a.start as i64,
            a.end as i64,
            a.identity.as_str(),
            a.at as i64,
            a.version,
            a.message
        ])?;
        tx.prepare_cached(
            "INSERT INTO writers (doc, writer, identity) VALUES (?1, ?2, ?3)
             ON CONFLICT (doc, writer) DO NOTHING",
        )?
        .execute(params![doc.as_str(), a.writer as i64, a.identity.as_str()])?;
    }
    Ok(())
}

/// Each writer number of `doc` and the identity that owns it.
fn read_writers(
    tx: &rusqlite::Transaction<'_>,
    doc: &DocId,
) -> Result<Vec<(u64, PeerId)>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT writer, identity FROM writers WHERE doc = ?1")?;
    let rows = stmt.query_map([doc.as_str()], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            PeerId::new(&r.get::<_, String>(1)?),
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn sql_clock(clock: Clock) -> i64 {
    i64::try_from(clock.0).unwrap_or(i64::MAX)
}

/// Documents from rows of `docs` (doc, doc_type, scope, branch, version,
/// clock), those `filter` matches, at most `limit`.
fn read_docs(
    mut rows: rusqlite::Rows<'_>,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<StoredDoc>, StoreError> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        if out.len() >= limit {
            break;
        }
        let id: String = r.get(0)?;
        let Ok(doc) = DocId::parse(&id) else {
            return Err(corrupt(
                "a document id",
                format!("{id:?} is not a valid id"),
            ));
        };
        let meta = DocMeta {
            doc_type: r.get(1)?,
            scope: r.get(2)?,
            branch: r.get(3)?,
        };
        if !filter.matches(&doc, &meta) {
            continue;
        }
        let version = decode_version(&id, &r.get::<_, Vec<u8>>(4)?)?;
        out.push(StoredDoc {
            doc,
            meta,
            version,
            clock: Clock(r.get::<_, i64>(5)? as u64),
        });
    }
    Ok(out)
}
