//! The host behind the C and Python APIs, in Rust: a store that cannot be
//! read fails the host's creation with the reason, instead of giving a node
//! that goes on as if the store were empty.

use docweave_ffi::host::{Host, HostConfig};

#[test]
fn a_store_that_cannot_be_read_fails_the_host_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("docweave-ffi-restore-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("host.db");
    let config = || HostConfig {
        peer: "host".into(),
        sqlite: Some(db.display().to_string()),
        token: None,
    };
    // A store with a record, then that record damaged on disk.
    {
        let mut store = docweave_adapters::SqliteStore::open(&db).unwrap();
        docweave_adapters::Store::save(
            &mut store,
            &docweave_core::StateRecord::Tombstone(docweave_core::DocId::new("gone")),
        )
        .unwrap();
    }
    assert!(Host::new(config(), 0).is_ok(), "a healthy store");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE records SET value = 'not json'", [])
        .unwrap();
    drop(conn);
    let err = Host::new(config(), 0)
        .err()
        .expect("a host on an unreadable store");
    assert!(err.contains("could not be read"), "{err}");
}
