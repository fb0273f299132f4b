//! A store in PostgreSQL, shared by several docweave servers.
//!
//! **The feed without gaps.** Clocks come from one row, `docweave_clock`,
//! which every writing transaction updates first and whose row lock it
//! holds until it commits. So a transaction takes its clocks only after the
//! previous writer's commit is visible, and clocks become visible in the
//! order they were handed out: a reader that has seen clock 11 has seen 10.
//! (A sequence would not do: its values are taken at insert time, and two
//! writers can commit 11 before 10; a reader remembering 11 would skip 10
//! for ever.) The price is that writers of all servers take turns: one
//! transaction per batch, so batching keeps it cheap.
//!
//! **Announcements.** Every write also sends `NOTIFY docweave_feed` (the
//! writer's tag, never document bytes) inside its transaction, so it is
//! delivered when the write commits. [`Store::watch`] listens on a second
//! connection and tells the node to read the feed at once; after the
//! listening connection drops and comes back it announces once, since
//! notifications sent meanwhile are lost, and the node re-reads from its
//! last clock.
//!
//! **Deletions** are rows of `docweave_deletions` on the same clock,
//! written with the tombstone, so another server learns of every durable
//! deletion from the feed.
//!
//! **Presence** is never stored: [`Store::publish`] sends it as
//! `NOTIFY docweave_presence` (hex, under PostgreSQL's 8,000-byte payload
//! limit), and the other servers' watchers hand it on as it arrives.

use super::postgres_tls::Target;
use super::{
    authorship::authored_seq, corrupt, decode_version, encode_version, postgres_schema as schema,
    record_key, Announce, Announcement, Append, Authored, HistoryEntry, Loaded, Store, StoreError,
};
use docweave_core::{
    Clock, DocId, DocMeta, Filter, PeerId, ReadRange, StateRecord, StoredDoc, VersionVector,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Statement, Transaction};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The notification channel writes announce themselves on.
const FEED_CHANNEL: &str = "docweave_feed";
/// The notification channel published bytes (presence) travel on.
const PUBLISH_CHANNEL: &str = "docweave_presence";
/// The most bytes one publication carries: hex doubles them, and a
/// notification's payload (with our tag) must stay under 8,000 bytes.
pub const MAX_PUBLISHED: usize = 3_900;

/// A store in a PostgreSQL database, shared with other processes.
pub struct PostgresStore {
    target: Target,
    conn: Option<Connection>,
    /// Names this store's own notifications, so its watcher skips them.
    tag: String,
    /// Set when the store is dropped: its watcher thread ends.
    stop: Arc<AtomicBool>,
}

/// An open connection and its prepared statements (one round trip each).
struct Connection {
    client: Client,
    take_clocks: Statement,
    tombstoned: Statement,
    insert_changes: Statement,
    versions: Statement,
    upsert_docs: Statement,
    notify: Statement,
    feed: Statement,
    feed_limited: Statement,
    doc_row: Statement,
    doc_snapshot: Statement,
    doc_changes: Statement,
    insert_authored: Statement,
    insert_writers: Statement,
    doc_writers: Statement,
}

impl Connection {
    fn open(target: &Target) -> Result<Self, StoreError> {
        let mut client = target.connect()?;
        // A server that hangs inside a transaction must not hold the clock
        // row (and with it every writer of every server) for long.
        client.batch_execute(
            "SET idle_in_transaction_session_timeout = '30s'; SET lock_timeout = '30s'",
        )?;
        schema::migrate(&mut client)?;
        Ok(Self {
            take_clocks: client.prepare(
                "UPDATE docweave_clock SET last = last + $1 WHERE id = 1 RETURNING last",
            )?,
            tombstoned: client.prepare("SELECT key FROM docweave_records WHERE key = ANY($1)")?,
            insert_changes: client.prepare(
                "INSERT INTO docweave_changes (clock, doc, data)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
            )?,
            versions: client
                .prepare("SELECT doc, version FROM docweave_docs WHERE doc = ANY($1)")?,
            upsert_docs: client.prepare(
                "INSERT INTO docweave_docs (doc, doc_type, scope, branch, version, clock)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bigint[])
                 ON CONFLICT (doc) DO UPDATE SET version = excluded.version, clock = excluded.clock",
            )?,
            notify: client.prepare("SELECT pg_notify($1, $2)")?,
            feed: client.prepare(
                "SELECT doc, doc_type, scope, branch, version, clock FROM docweave_docs
                 WHERE clock > $1 ORDER BY clock",
            )?,
            feed_limited: client.prepare(
                "SELECT doc, doc_type, scope, branch, version, clock FROM docweave_docs
                 WHERE clock > $1 ORDER BY clock LIMIT $2",
            )?,
            doc_row: client.prepare(
                "SELECT doc_type, scope, branch, version, clock, compacted_to
                 FROM docweave_docs WHERE doc = $1",
            )?,
            doc_snapshot: client.prepare("SELECT snapshot FROM docweave_docs WHERE doc = $1")?,
            doc_changes: client.prepare(
                "SELECT data FROM docweave_changes WHERE doc = $1 AND clock > $2 ORDER BY clock",
            )?,
            insert_authored: client.prepare(
                "INSERT INTO docweave_authored (seq, doc, writer, start, stop, identity, at, version, message)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                                      $6::text[], $7::bigint[], $8::text[], $9::text[])
                 ON CONFLICT (doc, writer, start) DO UPDATE SET
                     stop = GREATEST(docweave_authored.stop, EXCLUDED.stop),
                     at = CASE WHEN EXCLUDED.stop > docweave_authored.stop
                          THEN EXCLUDED.at ELSE docweave_authored.at END,
                     version = CASE WHEN EXCLUDED.stop > docweave_authored.stop
                               THEN EXCLUDED.version ELSE docweave_authored.version END,
                     message = CASE WHEN EXCLUDED.stop > docweave_authored.stop
                               THEN COALESCE(EXCLUDED.message, docweave_authored.message)
                               ELSE docweave_authored.message END",
            )?,
            insert_writers: client.prepare(
                "INSERT INTO docweave_writers (doc, writer, identity)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
                 ON CONFLICT (doc, writer) DO NOTHING",
            )?,
            doc_writers: client
                .prepare("SELECT writer, identity FROM docweave_writers WHERE doc = $1")?,
            client,
        })
    }
}

/// Keeps who wrote the runs of the changes appended at `clocks` (a run
/// written again after a lost answer is kept once, one the node grew since
/// is widened); the first identity to
/// write as a writer number on a document owns it there, on every server.
fn write_authors(
    tx: &mut Transaction<'_>,
    (insert_authored, insert_writers): (&Statement, &Statement),
    changes: &[Append],
    clocks: &[i64],
) -> Result<(), StoreError> {
    let mut seqs = Vec::new();
    let mut docs = Vec::new();
    let mut writers = Vec::new();
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    let mut identities = Vec::new();
    let mut ats = Vec::new();
    let mut versions = Vec::new();
    let mut messages = Vec::new();
    for (a, clock) in changes.iter().zip(clocks) {
        for (i, authored) in a.authors.iter().enumerate() {
            seqs.push(authored_seq(*clock as u64, i) as i64);
            docs.push(a.doc.as_str());
            // Kept as PostgreSQL's signed integers, bit for bit.
            writers.push(authored.writer as i64);
            starts.push(authored.start as i64);
            stops.push(authored.end as i64);
            identities.push(authored.identity.as_str());
            ats.push(authored.at as i64);
            versions.push(authored.version.as_str());
            messages.push(authored.message.as_deref());
        }
    }
    if seqs.is_empty() {
        return Ok(());
    }
    tx.execute(
        insert_authored,
        &[
            &seqs,
            &docs,
            &writers,
            &starts,
            &stops,
            &identities,
            &ats,
            &versions,
            &messages,
        ],
    )?;
    tx.execute(insert_writers, &[&docs, &writers, &identities])?;
    Ok(())
}

fn parse_doc(id: &str) -> Result<DocId, StoreError> {
    DocId::parse(id).map_err(|_| corrupt("a document id", format!("{id:?} is not a valid id")))
}

/// A row of the documents table (doc, doc_type, scope, branch, version,
/// clock) as a stored document, if `filter` matches it.
fn stored_doc(r: &postgres::Row, filter: &Filter) -> Result<Option<StoredDoc>, StoreError> {
    let id: &str = r.get(0);
    let doc = parse_doc(id)?;
    let meta = DocMeta {
        doc_type: r.get(1),
        scope: r.get(2),
        branch: r.get(3),
    };
    if !filter.matches(&doc, &meta) {
        return Ok(None);
    }
    let version = decode_version(id, r.get(4))?;
    Ok(Some(StoredDoc {
        doc,
        meta,
        version,
        clock: clock_of(r.get(5)),
    }))
}

fn clock_of(value: i64) -> Clock {
    Clock(value.max(0) as u64)
}

fn sql_clock(clock: Clock) -> i64 {
    i64::try_from(clock.0).unwrap_or(i64::MAX)
}

/// A writing transaction. READ COMMITTED whatever the database's default:
/// a writer waiting on the clock row must see the previous writer's
/// commit once the row is free (module docs).
fn writing<'a>(client: &'a mut Client) -> Result<Transaction<'a>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::ReadCommitted)
        .start()?)
}

/// Takes `n` clocks for this transaction, holding the clock row until it
/// ends: the next writer waits for our commit (module docs).
fn take_clocks(tx: &mut Transaction<'_>, stmt: &Statement, n: usize) -> Result<i64, StoreError> {
    let n = i64::try_from(n).map_err(|_| StoreError::Unavailable("too many changes".into()))?;
    let last: i64 = tx.query_one(stmt, &[&n])?.get(0);
    Ok(last - n + 1)
}

/// What one batch does to one document's row.
struct DocRow<'a> {
    meta: &'a DocMeta,
    version: VersionVector,
    clock: i64,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`,
    /// or key=value pairs) and migrates it.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let target = Target::parse(url)?;
        let conn = Connection::open(&target)?;
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).map_err(|e| {
            StoreError::Unavailable(format!("no randomness for the store's tag: {e}"))
        })?;
        Ok(Self {
            target,
            conn: Some(conn),
            tag: tag.iter().map(|b| format!("{b:02x}")).collect(),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The schema version of the database.
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        Ok(self
            .conn()?
            .client
            .query_one("SELECT version FROM docweave_schema", &[])?
            .get(0))
    }

    /// The open connection, opened again if the last one was lost.
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(Connection::open(&self.target)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Runs `f` on the connection; a lost connection is dropped so that the
    /// next operation opens a fresh one.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tag = self.tag.clone();
        let conn = self.conn()?;
        let result = f(conn, &tag);
        if result.is_err() && conn.client.is_closed() {
            self.conn = None;
        }
        result
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Store for PostgresStore {
    /// Another connection to the same database, opened when first used.
    fn reader(&mut self) -> Result<Option<Box<dyn Store>>, StoreError> {
        Ok(Some(Box::new(PostgresStore {
            target: self.target.clone(),
            conn: None,
            tag: self.tag.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        })))
    }

    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c, tag| {
            let mut tx = writing(&mut c.client)?;
            // Clocks first: holding the clock row also orders us after a
            // deletion that committed meanwhile, so its tombstone is seen.
            let first = take_clocks(&mut tx, &c.take_clocks, changes.len())?;
            let keys: Vec<String> = changes
                .iter()
                .map(|a| record_key(&StateRecord::Tombstone(a.doc.clone())))
                .collect();
            let dead = tx.query(&c.tombstoned, &[&keys])?;
            if let Some(row) = dead.first() {
                let key: String = row.get(0);
                let doc = keys
                    .iter()
                    .position(|k| *k == key)
                    .map(|i| changes[i].doc.clone())
                    .unwrap_or_else(|| DocId::new(&key));
                return Err(StoreError::Tombstoned(doc));
            }
            let clocks: Vec<i64> = (0..changes.len() as i64).map(|i| first + i).collect();
            let docs: Vec<&str> = changes.iter().map(|a| a.doc.as_str()).collect();
            let data: Vec<&[u8]> = changes.iter().map(|a| a.data.as_slice()).collect();
            tx.execute(&c.insert_changes, &[&clocks, &docs, &data])?;
            let statements = (&c.insert_authored, &c.insert_writers);
            write_authors(&mut tx, statements, changes, &clocks)?;
            let first_of: BTreeMap<&str, &Append> =
                changes.iter().rev().map(|a| (a.doc.as_str(), a)).collect();
            let mut rows: BTreeMap<&str, DocRow<'_>> = BTreeMap::new();
            for row in tx.query(&c.versions, &[&docs])? {
                let id: &str = row.get(0);
                if let Some((doc, a)) = first_of.get_key_value(id) {
                    let version = decode_version(id, row.get(1))?;
                    rows.insert(
                        doc,
                        DocRow {
                            meta: &a.meta,
                            version,
                            clock: 0,
                        },
                    );
                }
            }
            for (a, clock) in changes.iter().zip(&clocks) {
                let row = rows.entry(a.doc.as_str()).or_insert_with(|| DocRow {
                    meta: &a.meta,
                    version: VersionVector::new(),
                    clock: 0,
                });
                row.version = row.version.merge(&a.version);
                row.clock = *clock;
            }
            let ids: Vec<&str> = rows.keys().copied().collect();
            let types: Vec<&str> = rows.values().map(|r| r.meta.doc_type.as_str()).collect();
            let scopes: Vec<&str> = rows.values().map(|r| r.meta.scope.as_str()).collect();
            let branches: Vec<&str> = rows.values().map(|r| r.meta.branch.as_str()).collect();
            let versions = rows
                .values()
                .map(|r| encode_version(&r.version))
                .collect::<Result<Vec<_>, _>>()?;
            let last: Vec<i64> = rows.values().map(|r| r.clock).collect();
            tx.execute(
                &c.upsert_docs,
                &[&ids, &types, &scopes, &branches, &versions, &last],
            )?;
            tx.query(&c.notify, &[&FEED_CHANNEL, &tag])?;
            tx.commit()?;
            Ok(clocks.into_iter().map(clock_of).collect())
        })
    }

    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError> {
        self.load_since(doc, Clock(0))
    }

    fn load_since(&mut self, doc: &DocId, after: Clock) -> Result<Option<Loaded>, StoreError> {
        self.with(|c, _| {
            // One snapshot for the document row and its changes.
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let Some(row) = tx.query_opt(&c.doc_row, &[&doc.as_str()])? else {
                return Ok(None);
            };
            let meta = DocMeta {
                doc_type: row.get(0),
                scope: row.get(1),
                branch: row.get(2),
            };
            let version = decode_version(doc.as_str(), row.get(3))?;
            let clock = clock_of(row.get(4));
            let compacted_to: i64 = row.get(5);
            // The snapshot only when it holds something the reader lacks.
            let after = if compacted_to > sql_clock(after) {
                0
            } else {
                sql_clock(after)
            };
            let snapshot: Option<Vec<u8>> = if after == 0 {
                tx.query_one(&c.doc_snapshot, &[&doc.as_str()])?.get(0)
            } else {
                None
            };
            let changes = tx
                .query(&c.doc_changes, &[&doc.as_str(), &after])?
                .into_iter()
                .map(|r| r.get::<_, Vec<u8>>(0))
                .collect();
            let writers = tx
                .query(&c.doc_writers, &[&doc.as_str()])?
                .into_iter()
                .map(|r| (r.get::<_, i64>(0) as u64, PeerId::new(r.get(1))))
                .collect();
            tx.commit()?;
            Ok(Some(Loaded {
                meta,
                version,
                clock,
                snapshot,
                changes,
                writers,
            }))
        })
    }

    fn forget_history(&mut self, doc: &DocId, below: u64) -> Result<u64, StoreError> {
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        self.with(|c, _| {
            Ok(c.client.execute(
                "DELETE FROM docweave_authored WHERE doc = $1 AND seq < $2",
                &[&doc.as_str(), &below],
            )?)
        })
    }

    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c, _| {
            let rows = c.client.query(
                "SELECT seq, writer, start, stop, identity, at, version, message FROM docweave_authored
                 WHERE doc = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                &[&doc.as_str(), &before, &limit],
            )?;
            Ok(rows
                .into_iter()
                .map(|r| HistoryEntry {
                    seq: r.get::<_, i64>(0) as u64,
                    authored: Authored {
                        writer: r.get::<_, i64>(1) as u64,
                        start: r.get::<_, i64>(2) as u64,
                        end: r.get::<_, i64>(3) as u64,
                        identity: PeerId::new(r.get(4)),
                        at: r.get::<_, i64>(5) as u64,
                        version: r.get(6),
                        message: r.get(7),
                    },
                })
                .collect())
        })
    }

    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError> {
        self.with(|c, _| {
            let mut tx = writing(&mut c.client)?;
            // Two compactions at once: the one folding in less must not
            // replace the other's snapshot, nor drop changes it lacks.
            let replaced = tx.execute(
                "UPDATE docweave_docs SET snapshot = $2, compacted_to = $3
                 WHERE doc = $1 AND compacted_to <= $3",
                &[&doc.as_str(), &snapshot, &sql_clock(up_to)],
            )?;
            if replaced > 0 {
                tx.execute(
                    "DELETE FROM docweave_changes WHERE doc = $1 AND clock <= $2",
                    &[&doc.as_str(), &sql_clock(up_to)],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.with(|c, _| {
            let since = sql_clock(clock);
            // A filter is applied here, so only an unfiltered read can stop early.
            let rows = if *filter == Filter::all() {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                c.client.query(&c.feed_limited, &[&since, &limit])?
            } else {
                c.client.query(&c.feed, &[&since])?
            };
            let mut out = Vec::new();
            for r in rows {
                if out.len() >= limit {
                    break;
                }
                out.extend(stored_doc(&r, filter)?);
            }
            Ok(out)
        })
    }

    fn read_index(
        &mut self,
        range: &ReadRange,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        const COLUMNS: &str =
            "SELECT doc, doc_type, scope, branch, version, clock FROM docweave_docs";
        // Read in batches: a filter is applied here, so a batch may hold
        // fewer matches than asked for, and the next starts after its last.
        let batch = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        let mut out = Vec::new();
        let mut position = range.clone();
        self.with(|c, _| loop {
            let rows = match &position {
                ReadRange::Clocks {
                    after,
                    up_to,
                    newest_first,
                } => {
                    let order = if *newest_first { "DESC" } else { "ASC" };
                    let sql = format!(
                        "{COLUMNS} WHERE clock > $1 AND clock <= $2 ORDER BY clock {order} LIMIT $3"
                    );
                    c.client
                        .query(&sql, &[&sql_clock(*after), &sql_clock(*up_to), &batch])?
                }
                ReadRange::Ids { after } => {
                    // Bytewise, as document ids compare in memory (the
                    // database's collation may not be): an index of that
                    // collation serves it (schema 4).
                    let sql = format!(
                        "{COLUMNS} WHERE doc COLLATE \"C\" > $1 ORDER BY doc COLLATE \"C\" LIMIT $2"
                    );
                    let after = after.as_ref().map_or("", |a| a.as_str());
                    c.client.query(&sql, &[&after, &batch])?
                }
            };
            let exhausted = (rows.len() as i64) < batch;
            let mut last = None;
            for r in rows {
                last = Some((parse_doc(r.get(0))?, clock_of(r.get(5))));
                if out.len() >= limit {
                    break;
                }
                out.extend(stored_doc(&r, filter)?);
            }
            let Some((doc, clock)) = last.filter(|_| !exhausted && out.len() < limit) else {
                return Ok(std::mem::take(&mut out));
            };
            position = match position {
                ReadRange::Clocks {
                    after,
                    up_to: _,
                    newest_first: true,
                } => ReadRange::Clocks {
                    after,
                    up_to: Clock(clock.0.saturating_sub(1)).max(after),
                    newest_first: true,
                },
                ReadRange::Clocks { up_to, .. } => ReadRange::Clocks {
                    after: clock,
                    up_to,
                    newest_first: false,
                },
                ReadRange::Ids { .. } => ReadRange::Ids { after: Some(doc) },
            };
        })
    }

    fn clock(&mut self) -> Result<Clock, StoreError> {
        self.with(|c, _| {
            let last: i64 = c
                .client
                .query_one("SELECT last FROM docweave_clock WHERE id = 1", &[])?
                .get(0);
            Ok(clock_of(last))
        })
    }

    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError> {
        let key = record_key(record);
        if let StateRecord::ListenerRemoved(_) = record {
            return self.with(|c, _| {
                c.client
                    .execute("DELETE FROM docweave_records WHERE key = $1", &[&key])?;
                Ok(())
            });
        }
        let value = serde_json::to_string(record).map_err(|e| corrupt("a record", e))?;
        let deleted = match record {
            StateRecord::Tombstone(doc) => Some(doc.as_str()),
            _ => None,
        };
        self.with(|c, tag| {
            let mut tx = writing(&mut c.client)?;
            if let Some(doc) = deleted {
                // The tombstone and the feed's news of it are one write: the
                // other servers hear of every deletion that is durable, even
                // if this one dies before purging. Holding the clock row also
                // orders it against appends (`append` checks tombstones).
                let clock = take_clocks(&mut tx, &c.take_clocks, 1)?;
                // Every server that hears of it saves the tombstone too:
                // only the first is news.
                let known = tx.query(&c.tombstoned, &[&vec![key.clone()]])?;
                if known.is_empty() {
                    tx.execute(
                        "INSERT INTO docweave_deletions (clock, doc) VALUES ($1, $2)",
                        &[&clock, &doc],
                    )?;
                    tx.query(&c.notify, &[&FEED_CHANNEL, &tag])?;
                }
            }
            tx.execute(
                "INSERT INTO docweave_records (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError> {
        self.with(|c, _| {
            let rows = c
                .client
                .query("SELECT key, value FROM docweave_records ORDER BY key", &[])?;
            rows.iter()
                .map(|r| {
                    let (key, value): (&str, &str) = (r.get(0), r.get(1));
                    serde_json::from_str(value).map_err(|e| corrupt(&format!("record {key}"), e))
                })
                .collect()
        })
    }

    fn record(&mut self, key: &str) -> Result<Option<StateRecord>, StoreError> {
        self.with(|c, _| {
            let row = c
                .client
                .query_opt("SELECT value FROM docweave_records WHERE key = $1", &[&key])?;
            row.map(|r| {
                serde_json::from_str(r.get(0)).map_err(|e| corrupt(&format!("record {key}"), e))
            })
            .transpose()
        })
    }

    fn doc_bytes(&mut self, doc: &DocId) -> Result<Option<u64>, StoreError> {
        self.with(|c, _| {
            let row = c.client.query_opt(
                "SELECT COALESCE(octet_length(snapshot), 0)::BIGINT, \
                 (SELECT COALESCE(SUM(octet_length(data)), 0)::BIGINT \
                  FROM docweave_changes WHERE doc = $1) \
                 FROM docweave_docs WHERE doc = $1",
                &[&doc.as_str()],
            )?;
            Ok(row.map(|r| {
                let (snapshot, changes): (i64, i64) = (r.get(0), r.get(1));
                u64::try_from(snapshot + changes).unwrap_or(0)
            }))
        })
    }

    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError> {
        // The feed heard of the deletion with its tombstone (`save`).
        self.with(|c, _| {
            let mut tx = writing(&mut c.client)?;
            tx.execute(
                "DELETE FROM docweave_changes WHERE doc = $1",
                &[&doc.as_str()],
            )?;
            tx.execute("DELETE FROM docweave_docs WHERE doc = $1", &[&doc.as_str()])?;
            tx.execute(
                "DELETE FROM docweave_authored WHERE doc = $1",
                &[&doc.as_str()],
            )?;
            tx.execute(
                "DELETE FROM docweave_writers WHERE doc = $1",
                &[&doc.as_str()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn deletions_since(
        &mut self,
        clock: Clock,
        up_to: Option<Clock>,
    ) -> Result<Vec<(DocId, Clock)>, StoreError> {
        self.with(|c, _| {
            let rows = c.client.query(
                "SELECT doc, clock FROM docweave_deletions WHERE clock > $1 AND clock <= $2 ORDER BY clock",
                &[&sql_clock(clock), &up_to.map_or(i64::MAX, sql_clock)],
            )?;
            rows.iter()
                .map(|r| Ok((parse_doc(r.get(0))?, clock_of(r.get(1)))))
                .collect()
        })
    }

    fn publish(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() > MAX_PUBLISHED {
            return Err(StoreError::Unavailable(format!(
                "{} bytes are too many to publish (at most {MAX_PUBLISHED})",
                bytes.len()
            )));
        }
        let mut payload = String::with_capacity(self.tag.len() + 1 + bytes.len() * 2);
        payload.push_str(&self.tag);
        payload.push(':');
        for b in bytes {
            payload.push_str(&format!("{b:02x}"));
        }
        self.with(|c, _| {
            c.client.query(&c.notify, &[&PUBLISH_CHANNEL, &payload])?;
            Ok(())
        })
    }

    fn share_revocations(&mut self, server: &str, list: &str) -> Result<(), StoreError> {
        self.with(|c, _| {
            c.client.execute(
                "INSERT INTO docweave_revocations (server, list) VALUES ($1, $2)
                 ON CONFLICT (server) DO UPDATE SET list = $2, updated_at = now()",
                &[&server, &list],
            )?;
            Ok(())
        })
    }

    fn shared_revocations(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c, _| {
            let rows = c.client.query(
                "SELECT server, list FROM docweave_revocations ORDER BY server",
                &[],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn watch(&mut self, announce: Announce) -> Result<bool, StoreError> {
        let (target, tag, stop) = (self.target.clone(), self.tag.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name("docweave-pg-listen".into())
            .spawn(move || listen(target, tag, stop, announce))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the listener: {e}")))?;
        Ok(true)
    }
}

/// Listens for other servers' writes until the store is dropped. Every
/// (re)connection announces once: what was sent while nobody listened is
/// read from the feed, not from notifications.
fn listen(target: Target, tag: String, stop: Arc<AtomicBool>, announce: Announce) {
    let mut backoff = Duration::from_millis(50);
    // A database that stays down is said once, then again when it is back
    // (with how many tries it took), not at every try.
    let mut failures = 0u32;
    let failed = |failures: &mut u32, what: String| {
        *failures += 1;
        if *failures == 1 {
            tracing::warn!("{what}; trying again (quietly until it works)");
        } else {
            tracing::debug!("{what}; try {failures}");
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let mut client = match target.connect() {
            Ok(client) => client,
            Err(e) => {
                failed(
                    &mut failures,
                    format!("cannot listen for other servers' writes: {e}"),
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) =
            client.batch_execute(&format!("LISTEN {FEED_CHANNEL}; LISTEN {PUBLISH_CHANNEL}"))
        {
            failed(&mut failures, format!("LISTEN failed: {e}"));
            std::thread::sleep(backoff);
            continue;
        }
        if failures > 0 {
            tracing::info!(
                "listening for other servers' writes again, after {failures} failed tries"
            );
            failures = 0;
        }
        backoff = Duration::from_millis(50);
        announce(Announcement::Written);
        while !stop.load(Ordering::Relaxed) && !client.is_closed() {
            let mut notifications = client.notifications();
            let mut written = false;
            let mut waiting = notifications.timeout_iter(Duration::from_millis(250));
            // Wait for the first notification of another server (our own
            // are skipped)...
            loop {
                match waiting.next() {
                    Ok(Some(n)) => {
                        if take(&n, &tag, &announce, &mut written) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("the listening connection failed: {e}");
                        break;
                    }
                }
            }
            drop(waiting);
            // ...then take what is already queued: one announcement for
            // all the writes among it.
            while let Ok(Some(n)) = notifications.iter().next() {
                take(&n, &tag, &announce, &mut written);
            }
            if written {
                announce(Announcement::Written);
            }
        }
    }
}

/// Handles one notification: a publication is handed on at once, a write
/// is noted in `written`. Whether it came from another server.
fn take(n: &postgres::Notification, tag: &str, announce: &Announce, written: &mut bool) -> bool {
    let payload = n.payload();
    if n.channel() == PUBLISH_CHANNEL {
        let Some((from, hex)) = payload.split_once(':') else {
            return false;
        };
        if from == tag {
            return false;
        }
        match unhex(hex) {
            Some(bytes) => announce(Announcement::Published(bytes)),
            None => tracing::warn!("a publication on {PUBLISH_CHANNEL} is not hex; dropped"),
        }
        true
    } else if payload != tag {
        *written = true;
        true
    } else {
        false
    }
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || hex.len() > MAX_PUBLISHED * 2 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
