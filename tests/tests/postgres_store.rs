//! The PostgreSQL store against a real server: the conformance suite every
//! store passes, the shared feed under concurrent writers of several
//! servers, deletions and announcements between servers.

use docweave_adapters::{conformance, Announcement, Append, PostgresStore, Store, StoreError};
use docweave_core::{Clock, DocId, DocMeta, Filter, StateRecord, VersionVector};
use docweave_tests::postgres::fresh_database;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn change(doc: &str, byte: u8) -> Append {
    Append {
        doc: DocId::new(doc),
        meta: DocMeta::default(),
        data: vec![byte],
        version: VersionVector::from_entries([(u64::from(byte) + 1, 1)]),
        authors: Vec::new(),
    }
}

/// What `store`'s watcher announces, as it comes.
fn watching(store: &mut PostgresStore) -> std::sync::mpsc::Receiver<Announcement> {
    let (tx, rx) = std::sync::mpsc::channel::<Announcement>();
    let announced = std::sync::Mutex::new(tx);
    let watches = store
        .watch(Arc::new(move |a| {
            let _ = announced.lock().unwrap().send(a);
        }))
        .unwrap();
    assert!(watches, "a PostgreSQL store announces others' writes");
    rx
}

#[test]
fn the_postgres_store_passes_the_conformance_suite() {
    // Each check wants an empty store: a database of its own.
    conformance::run_all(|| {
        let url = fresh_database("conformance");
        PostgresStore::open(&url).unwrap()
    });
}

#[test]
fn four_servers_see_ten_thousand_concurrent_changes_in_one_order_none_twice() {
    const SERVERS: usize = 4;
    const WRITERS: usize = 8;
    const CHANGES: usize = 10_000;
    let url = fresh_database("feed_order");
    PostgresStore::open(&url).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    // Two writers per server, each its own connection, batches of 1 to 7:
    // transactions of different lengths commit out of the order they began.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, written) = (url.clone(), written.clone());
            std::thread::spawn(move || {
                let mut store = PostgresStore::open(&url).unwrap();
                let mine = CHANGES / WRITERS;
                let mut i = 0;
                while i < mine {
                    let n = (1 + (i * 7 + w) % 7).min(mine - i);
                    let batch: Vec<Append> = (i..i + n)
                        .map(|k| change(&format!("w{w}-{k}"), (k % 200) as u8))
                        .collect();
                    store.append(&batch).unwrap();
                    written.fetch_add(n, Ordering::Relaxed);
                    i += n;
                }
            })
        })
        .collect();
    // Each server follows the feed from where it was, as a node does.
    let readers: Vec<_> = (0..SERVERS)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut store = PostgresStore::open(&url).unwrap();
                let mut seen = Clock(0);
                let mut feed: Vec<(DocId, Clock)> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(120);
                while feed.len() < CHANGES && Instant::now() < deadline {
                    let docs = store.changes_since(seen, &Filter::all(), 256).unwrap();
                    if let Some(last) = docs.last() {
                        seen = last.clock;
                    }
                    feed.extend(docs.into_iter().map(|d| (d.doc, d.clock)));
                }
                feed
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(written.load(Ordering::Relaxed), CHANGES);
    let feeds: Vec<Vec<(DocId, Clock)>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    for (s, feed) in feeds.iter().enumerate() {
        let distinct: HashSet<&DocId> = feed.iter().map(|(d, _)| d).collect();
        assert_eq!(
            distinct.len(),
            CHANGES,
            "server {s} saw {} distinct changes of {CHANGES}",
            distinct.len()
        );
        assert_eq!(feed.len(), CHANGES, "server {s} saw a change twice");
        assert!(
            feed.windows(2).all(|w| w[0].1 < w[1].1),
            "server {s}'s feed is not in clock order"
        );
        assert_eq!(feed, &feeds[0], "servers {s} and 0 saw different orders");
    }
}

#[test]
fn a_deletion_on_one_server_is_in_the_feed_of_another() {
    let url = fresh_database("deletions");
    let mut a = PostgresStore::open(&url).unwrap();
    let mut b = PostgresStore::open(&url).unwrap();
    a.append(&[change("kept", 1), change("gone", 2)]).unwrap();
    let before = b.clock().unwrap();
    a.save(&StateRecord::Tombstone(DocId::new("gone"))).unwrap();
    // In the feed from the tombstone on, before (or without) the purge.
    assert_eq!(b.deletions_since(before, None).unwrap().len(), 1);
    a.purge(&DocId::new("gone")).unwrap();
    let deleted = b.deletions_since(before, None).unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].0, DocId::new("gone"));
    assert!(
        deleted[0].1 > before,
        "a deletion takes a clock of the feed"
    );
    assert!(b.deletions_since(deleted[0].1, None).unwrap().is_empty());
    assert!(
        matches!(
            b.append(&[change("gone", 3)]),
            Err(StoreError::Tombstoned(_))
        ),
        "the other server's write to the deleted document is refused"
    );
    // Saving the tombstone and purging again (every server that hears of a
    // deletion does) adds nothing to the feed.
    b.save(&StateRecord::Tombstone(DocId::new("gone"))).unwrap();
    b.purge(&DocId::new("gone")).unwrap();
    assert_eq!(b.deletions_since(before, None).unwrap().len(), 1);
}

#[test]
fn another_servers_write_is_announced_and_our_own_is_not() {
    let url = fresh_database("announce");
    let mut a = PostgresStore::open(&url).unwrap();
    let mut b = PostgresStore::open(&url).unwrap();
    let rx = watching(&mut b);
    // The first announcement comes with the connection: read what was missed.
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    b.append(&[change("mine", 1)]).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(600)).is_err(),
        "a server's own write was announced to it"
    );
    let start = Instant::now();
    a.append(&[change("theirs", 2)]).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Announcement::Written
    );
    eprintln!("announced after {:?}", start.elapsed());
    // Published bytes reach the others as they were, and not the publisher.
    let bytes: Vec<u8> = (0..=255).collect();
    b.publish(b"from b").unwrap();
    a.publish(&bytes).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Announcement::Published(bytes)
    );
    assert!(
        a.publish(&vec![0; 4_000]).is_err(),
        "a publication too large for a notification is refused, not cut"
    );
}

#[test]
fn a_listener_whose_connection_is_cut_reconnects_and_announces() {
    let url = fresh_database("reconnect");
    let mut b = PostgresStore::open(&url).unwrap();
    let rx = watching(&mut b);
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let cut = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .unwrap();
    assert_eq!(cut, 1, "one listening connection");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a listener that came back announces, so the feed is read again");
    // The store's own connection was not the one cut, and still works.
    b.append(&[change("after", 1)]).unwrap();
}

#[test]
fn each_servers_revocation_list_is_read_by_every_server_and_replaced_by_its_own() {
    let url = fresh_database("revocations");
    let (mut a, mut b) = (
        PostgresStore::open(&url).unwrap(),
        PostgresStore::open(&url).unwrap(),
    );
    a.share_revocations("a", "sub:mallory\n").unwrap();
    b.share_revocations("b", "tok-1\n").unwrap();
    a.share_revocations("a", "sub:eve\n").unwrap();
    assert_eq!(
        b.shared_revocations().unwrap(),
        vec![
            ("a".to_string(), "sub:eve\n".to_string()),
            ("b".to_string(), "tok-1\n".to_string())
        ]
    );
}

#[test]
fn a_database_from_a_newer_docweave_is_refused() {
    let url = fresh_database("schema");
    let mut s = PostgresStore::open(&url).unwrap();
    assert_eq!(s.schema_version().unwrap(), 5);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .execute("UPDATE docweave_schema SET version = 99", &[])
        .unwrap();
    assert!(matches!(
        PostgresStore::open(&url),
        Err(StoreError::SchemaTooNew { found: 99, .. })
    ));
}

/// A store on a fresh database holding changes 1, 2 and 3 to `d`, one
/// append each, and their clocks.
fn three_changes_to_d(test: &str) -> (PostgresStore, Vec<Clock>) {
    let url = fresh_database(test);
    let mut s = PostgresStore::open(&url).unwrap();
    let clocks = (1..=3u8)
        .map(|i| s.append(&[change("d", i)]).unwrap()[0])
        .collect();
    (s, clocks)
}

#[test]
fn a_load_since_a_clock_sends_only_the_changes_after_it() {
    let (mut s, clocks) = three_changes_to_d("load_since");
    let l = s.load_since(&DocId::new("d"), clocks[1]).unwrap().unwrap();
    assert_eq!(l.changes, vec![vec![3u8]]);
    assert_eq!(l.snapshot, None);
    assert_eq!(l.clock, clocks[2]);
    assert_eq!(s.load(&DocId::new("d")).unwrap().unwrap().changes.len(), 3);
}

#[test]
fn a_compaction_folding_in_less_does_not_replace_a_newer_snapshot() {
    let (mut s, clocks) = three_changes_to_d("compaction_race");
    s.compact(&DocId::new("d"), b"UP TO 3", clocks[2]).unwrap();
    // A slower compaction, begun earlier, finishes last.
    s.compact(&DocId::new("d"), b"UP TO 1", clocks[0]).unwrap();
    let l = s.load(&DocId::new("d")).unwrap().unwrap();
    assert_eq!(l.snapshot.as_deref(), Some(&b"UP TO 3"[..]));
    assert!(l.changes.is_empty());
}
