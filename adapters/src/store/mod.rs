//! Durable storage of document changes and node state.

mod authorship;
pub mod conformance;
mod memory;
mod memory_shared;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_lease;
#[cfg(feature = "postgres")]
mod postgres_schema;
#[cfg(feature = "postgres")]
mod postgres_tls;
#[cfg(feature = "sqlite")]
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_blobs;

pub use authorship::{bounded_message, Authored, HistoryEntry, MESSAGE_MOST};
pub use memory::MemoryStore;
pub use memory_shared::SharedMemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "postgres")]
pub use postgres_lease::PostgresLease;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use docweave_core::{
    Clock, DocId, DocMeta, Filter, PeerId, ReadRange, StateRecord, StoredDoc, VersionVector,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[cfg(feature = "sqlite")]
    #[error("the database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed, or could not be reached.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL failed: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// Stored bytes could not be read back.
    #[error("stored data for {what} is corrupt: {why}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it could not be read.
        why: String,
    },
    /// The document was deleted; its tombstone refuses new data.
    #[error("{0} was deleted; its tombstone refuses new data")]
    Tombstoned(DocId),
    /// The store could not be reached or refused the operation.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database was written by a newer docweave.
    #[error(
        "the database has schema version {found}; this build knows up to {known}: upgrade docweave"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
}

/// One change to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The document.
    pub doc: DocId,
    /// Its metadata (kept from the first append).
    pub meta: DocMeta,
    /// The change bytes (opaque).
    pub data: Vec<u8>,
    /// The document's version once this change is applied.
    pub version: VersionVector,
    /// Who wrote the runs of changes in it that the node took from its
    /// clients: kept in the same transaction, so a change is never
    /// durable without its authors (see [`Authored`]).
    pub authors: Vec<Authored>,
}

/// What a store holds of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Its metadata.
    pub meta: DocMeta,
    /// The version of everything stored.
    pub version: VersionVector,
    /// The clock of its last change.
    pub clock: Clock,
    /// The compacted snapshot, if any.
    pub snapshot: Option<Vec<u8>>,
    /// Changes after the snapshot, in clock order.
    pub changes: Vec<Vec<u8>>,
    /// Each writer number (Loro peer) of the document and the identity
    /// that first wrote as it: nobody else may write as it there.
    pub writers: Vec<(u64, PeerId)>,
}

impl Loaded {
    /// Bytes stored: the snapshot and the changes after it.
    pub fn bytes(&self) -> u64 {
        let snapshot = self.snapshot.as_ref().map_or(0, Vec::len);
        let changes: usize = self.changes.iter().map(Vec::len).sum();
        (snapshot + changes) as u64
    }
}

/// What a store shared with other processes tells its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Another process may have written: read the change feed now.
    Written,
    /// Another process published these bytes ([`Store::publish`]).
    Published(Vec<u8>),
}

/// Called from a thread of the store's with each [`Announcement`].
pub type Announce = std::sync::Arc<dyn Fn(Announcement) + Send + Sync>;

/// A durable store. Every write is atomic; a write that returned `Ok` survives
/// a crash. Clocks only grow, also across processes sharing the store.
pub trait Store: Send {
    /// Appends changes in one transaction; each gets the next clock.
    fn append(&mut self, changes: &[Append]) -> Result<Vec<Clock>, StoreError>;
    /// Everything stored for a document.
    fn load(&mut self, doc: &DocId) -> Result<Option<Loaded>, StoreError>;
    /// What a reader that already holds every change up to `after` lacks:
    /// the changes after it (and the snapshot, when compaction folded
    /// changes after `after` into it). The metadata, version and clock are
    /// the document's whole. A store may always answer with everything.
    fn load_since(&mut self, doc: &DocId, after: Clock) -> Result<Option<Loaded>, StoreError> {
        let _ = after;
        self.load(doc)
    }
    /// Bytes stored for a document (its snapshot and its changes), `None`
    /// when the store has no such document. Stores with an index override
    /// this reading of the whole document.
    fn doc_bytes(&mut self, doc: &DocId) -> Result<Option<u64>, StoreError> {
        Ok(self.load(doc)?.map(|l| l.bytes()))
    }
    /// Replaces the changes up to `up_to` by a snapshot. The document keeps
    /// its clock, so the change feed is intact.
    fn compact(&mut self, doc: &DocId, snapshot: &[u8], up_to: Clock) -> Result<(), StoreError>;
    /// Documents whose last change is after `clock`, in clock order, at most `limit`.
    fn changes_since(
        &mut self,
        clock: Clock,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError>;
    /// The documents in `range` that `filter` matches, in the range's
    /// order, at most `limit`: the store's indexes by clock and by id, read
    /// by a node that keeps only some documents' metadata in memory. The
    /// default reads the whole change feed; stores with indexes override it.
    fn read_index(
        &mut self,
        range: &ReadRange,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        let mut all = self.changes_since(Clock(0), filter, usize::MAX)?;
        match range {
            ReadRange::Clocks {
                after,
                up_to,
                newest_first,
            } => {
                all.retain(|d| d.clock > *after && d.clock <= *up_to);
                if *newest_first {
                    all.reverse();
                }
            }
            ReadRange::Ids { after } => {
                all.retain(|d| after.as_ref().is_none_or(|a| d.doc > *a));
                all.sort_by(|a, b| a.doc.cmp(&b.doc));
            }
        }
        all.truncate(limit);
        Ok(all)
    }
    /// The highest clock handed out.
    fn clock(&mut self) -> Result<Clock, StoreError>;
    /// Persists node state (cursors, listeners, tombstones), replacing the previous value.
    fn save(&mut self, record: &StateRecord) -> Result<(), StoreError>;
    /// All persisted node state.
    fn records(&mut self) -> Result<Vec<StateRecord>, StoreError>;
    /// The persisted record saved under `key` ([`StateRecord::key`]), if any.
    fn record(&mut self, key: &str) -> Result<Option<StateRecord>, StoreError> {
        Ok(self.records()?.into_iter().find(|r| r.key() == key))
    }
    /// Drops a document's data. Its tombstone is a record saved separately.
    fn purge(&mut self, doc: &DocId) -> Result<(), StoreError>;
    /// Documents purged after `clock` (and at most at `up_to`), with the
    /// clock of their purge, in clock order: how a store shared by several
    /// processes tells the others of a deletion. Stores that one process
    /// owns have none to tell.
    fn deletions_since(
        &mut self,
        clock: Clock,
        up_to: Option<Clock>,
    ) -> Result<Vec<(DocId, Clock)>, StoreError> {
        let _ = (clock, up_to);
        Ok(Vec::new())
    }
    /// Starts calling `announce` soon after another process writes, and
    /// after any spell in which such writes could have been missed.
    /// `false`: this store cannot tell, and the node polls its feed.
    fn watch(&mut self, announce: Announce) -> Result<bool, StoreError> {
        let _ = announce;
        Ok(false)
    }
    /// Hands `bytes` (small: a few KB at most) to the other processes
    /// watching this store, as [`Announcement::Published`]; nothing is
    /// stored. How servers on one store share presence. Stores that one
    /// process owns have nobody to tell.
    fn publish(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let _ = bytes;
        Ok(())
    }
    /// Replaces the revocation list `server` keeps in the store (its text,
    /// one entry per line), so that every server sharing the store cuts
    /// off what any of them revoked. Stores that one process owns share
    /// with nobody and keep none.
    fn share_revocations(&mut self, server: &str, list: &str) -> Result<(), StoreError> {
        let _ = (server, list);
        Ok(())
    }
    /// Every server's revocation list kept in the store, by server name.
    fn shared_revocations(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }
    /// A document's history, newest first: the [`Authored`] records kept
    /// with its changes whose place is below `before` (all for `None`), at
    /// most `limit`. Purged with the document.
    fn history(
        &mut self,
        doc: &DocId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Drops `doc`'s history entries placed below `below` (what `compact
    /// --history-before` trimmed from the document); who owns each writer
    /// number stays. Answers how many went.
    fn forget_history(&mut self, doc: &DocId, below: u64) -> Result<u64, StoreError> {
        // A store without history has nothing to trim; it says so below.
        let _ = (doc, below);
        Err(StoreError::Unavailable(
            "this store keeps no history to trim".into(),
        ))
    }
    /// Another handle on the same data (a second connection), for reads
    /// run beside this handle's work: one slow read then holds up neither
    /// the writes nor other reads. It sees what was committed. `None`:
    /// this store has no second handle, and its reads run in order with
    /// everything else.
    fn reader(&mut self) -> Result<Option<Box<dyn Store>>, StoreError> {
        Ok(None)
    }
}

/// Stored bytes that could not be read back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn corrupt(what: &str, why: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        why: why.to_string(),
    }
}

/// A version as database stores keep it (postcard).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn encode_version(v: &VersionVector) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(|e| corrupt("a version", e))
}

/// A version read back from a database store.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_version(doc: &str, bytes: &[u8]) -> Result<VersionVector, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(&format!("the version of {doc}"), e))
}

/// The key a record is stored under: saving again replaces it.
pub(crate) fn record_key(record: &StateRecord) -> String {
    record.key()
}
