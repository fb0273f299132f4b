//! Store conformance, plus what only a durable store can show: reopening,
//! two connections (as two processes) sharing one file, schema versions.
//! The SQLite tests need the `sqlite` feature.

#[cfg(feature = "sqlite")]
use docweave_adapters::SqliteStore;
use docweave_adapters::{
    conformance, Announcement, Append, MemoryStore, SharedMemoryStore, Store, StoreError,
};
use docweave_core::{Clock, DocId, DocMeta, Filter, StateRecord, VersionVector};
#[cfg(feature = "sqlite")]
use std::path::PathBuf;
#[cfg(feature = "sqlite")]
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[cfg(feature = "sqlite")]
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh database path under the target directory, removed first.
#[cfg(feature = "sqlite")]
fn db_path() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let p = dir.join(format!("stores-{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    p
}

#[cfg(feature = "sqlite")]
fn open(p: &PathBuf) -> SqliteStore {
    SqliteStore::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

fn change(doc: &str, data: &[u8], v: u64) -> Append {
    Append {
        doc: DocId::new(doc),
        meta: DocMeta::default(),
        data: data.to_vec(),
        version: VersionVector::from_entries([(1, v)]),
        authors: Vec::new(),
    }
}

#[test]
fn memory_store_conforms() {
    conformance::run_all(MemoryStore::new);
}

#[test]
fn shared_memory_store_conforms() {
    conformance::run_all(SharedMemoryStore::default);
}

/// Everything `store`'s watcher is told, in order.
fn watching(store: &mut SharedMemoryStore) -> Arc<Mutex<Vec<Announcement>>> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let into = heard.clone();
    let watches = store
        .watch(Arc::new(move |a| into.lock().unwrap().push(a)))
        .unwrap();
    assert!(watches, "a shared store announces others' writes");
    heard
}

#[test]
fn a_shared_memory_store_announces_the_others_writes_and_publications_not_our_own() {
    let mut a = SharedMemoryStore::default();
    let mut b = a.handle();
    let heard = watching(&mut b);
    b.append(&[change("mine", b"1", 1)]).unwrap();
    b.publish(b"from b").unwrap();
    assert!(
        heard.lock().unwrap().is_empty(),
        "{:?}",
        heard.lock().unwrap()
    );
    a.append(&[change("theirs", b"2", 2)]).unwrap();
    a.publish(b"from a").unwrap();
    assert_eq!(
        *heard.lock().unwrap(),
        vec![
            Announcement::Written,
            Announcement::Published(b"from a".to_vec())
        ]
    );
    // Both see one feed.
    let feed = b.changes_since(Clock(0), &Filter::all(), 10).unwrap();
    assert_eq!(feed.len(), 2);
}

#[test]
fn a_deletion_through_one_handle_is_numbered_in_the_feed_of_another_once() {
    let mut a = SharedMemoryStore::default();
    let mut b = a.handle();
    let heard = watching(&mut b);
    a.append(&[change("kept", b"1", 1), change("gone", b"2", 2)])
        .unwrap();
    let before = b.clock().unwrap();
    a.save(&StateRecord::Tombstone(DocId::new("gone"))).unwrap();
    a.purge(&DocId::new("gone")).unwrap();
    let deleted = b.deletions_since(before, None).unwrap();
    assert_eq!(deleted, vec![(DocId::new("gone"), Clock(before.0 + 1))]);
    assert_eq!(
        heard.lock().unwrap().len(),
        2,
        "the append and the deletion"
    );
    assert!(
        b.deletions_since(before, Some(before)).unwrap().is_empty(),
        "nothing past the horizon"
    );
    assert!(matches!(
        b.append(&[change("gone", b"3", 3)]),
        Err(StoreError::Tombstoned(_))
    ));
    // Every server that hears of it saves the tombstone too: no news again.
    b.save(&StateRecord::Tombstone(DocId::new("gone"))).unwrap();
    assert_eq!(b.deletions_since(before, None).unwrap().len(), 1);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_store_conforms() {
    conformance::run_all(|| open(&db_path()));
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_keeps_everything_across_a_reopen() {
    let p = db_path();
    let clocks = {
        let mut s = open(&p);
        s.save(&docweave_core::StateRecord::Tombstone(DocId::new("t")))
            .ok();
        s.append(&[change("a", b"1", 1), change("b", b"2", 1)])
            .unwrap_or_default()
    };
    let mut s = open(&p);
    assert_eq!(s.clock().ok(), clocks.last().copied());
    assert_eq!(
        s.load(&DocId::new("a")).ok().flatten().map(|l| l.changes),
        Some(vec![b"1".to_vec()])
    );
    assert_eq!(s.records().map(|r| r.len()).ok(), Some(1));
    assert_eq!(s.schema_version().ok(), Some(2));
}

#[cfg(feature = "sqlite")]
#[test]
fn two_connections_on_one_file_see_each_others_changes_through_the_feed() {
    let p = db_path();
    let mut a = open(&p);
    let mut b = open(&p);
    let ca = a.append(&[change("from-a", b"1", 1)]).unwrap_or_default();
    let cb = b.append(&[change("from-b", b"2", 1)]).unwrap_or_default();
    assert!(cb[0] > ca[0], "clocks are shared: one feed");
    let seen_by_a = a
        .changes_since(ca[0], &Filter::all(), 10)
        .unwrap_or_default();
    assert_eq!(
        seen_by_a.iter().map(|d| d.doc.as_str()).collect::<Vec<_>>(),
        vec!["from-b"]
    );
    let seen_by_b = b
        .changes_since(Clock(0), &Filter::all(), 10)
        .unwrap_or_default();
    assert_eq!(seen_by_b.len(), 2);
}

#[cfg(feature = "sqlite")]
#[test]
fn a_database_from_a_newer_build_is_refused_with_a_clear_error() {
    let p = db_path();
    drop(open(&p));
    {
        let conn = rusqlite_conn(&p);
        conn.execute_batch("PRAGMA user_version = 99").ok();
    }
    match SqliteStore::open(&p) {
        Err(e) => assert!(e.to_string().contains("upgrade docweave"), "{e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

#[cfg(feature = "sqlite")]
fn rusqlite_conn(p: &PathBuf) -> rusqlite::Connection {
    rusqlite::Connection::open(p).unwrap_or_else(|e| panic!("{e}"))
}
