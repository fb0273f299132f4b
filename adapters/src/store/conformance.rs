//! The conformance suite every [`Store`] must pass. Each check takes a fresh,
//! empty store and panics with a sentence when the store misbehaves; call
//! [`run_all`] from a test of your store.

use super::{Append, Store, StoreError};
use docweave_core::{
    Clock, Cursor, DocId, DocMeta, Filter, ListenerId, ListenerRecord, PeerId, ReadRange,
    StateRecord, VersionVector,
};

fn change(doc: &str, data: &[u8], version: &[(u64, u64)]) -> Append {
    Append {
        doc: DocId::new(doc),
        meta: DocMeta {
            doc_type: "text".into(),
            ..DocMeta::default()
        },
        data: data.to_vec(),
        version: VersionVector::from_entries(version.iter().copied()),
        authors: Vec::new(),
    }
}

fn ok<T>(r: Result<T, StoreError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: Store>(mut make: impl FnMut() -> S) {
    clocks_only_grow(&mut make());
    load_returns_changes_in_order_with_merged_version(&mut make());
    compaction_keeps_content_and_feed(&mut make());
    tombstones_refuse_and_purge(&mut make());
    records_replace_and_remove(&mut make());
    feed_filters_orders_and_limits(&mut make());
    ids_sharing_a_prefix_do_not_collide(&mut make());
    ids_apps_use_round_trip(&mut make());
    a_failed_batch_writes_nothing(&mut make());
    a_reader_sees_what_was_committed(&mut make());
    a_load_since_a_clock_brings_all_a_reader_lacks(&mut make());
    a_documents_bytes_are_its_snapshot_and_changes(&mut make());
    the_index_reads_by_clock_both_ways_and_by_id_bytewise(&mut make());
    authors_are_kept_with_their_change_paged_newest_first_and_purged(&mut make());
}

fn authored(writer: u64, start: u64, end: u64, who: &str, at: u64) -> super::Authored {
    super::Authored {
        writer,
        start,
        end,
        identity: PeerId::new(who),
        at,
        version: format!("{}@{writer}", end - 1),
        message: (start == 0).then(|| "first".to_string()),
    }
}

/// Who wrote each run is kept with its change; a writer's owner is the
/// first identity that wrote as it; history pages go newest first and on
/// from where the last ended; a run written again after a lost answer is
/// kept once; trimming drops the older entries but not the owners; a purge
/// drops all.
pub fn authors_are_kept_with_their_change_paged_newest_first_and_purged(s: &mut impl Store) {
    let d = DocId::new("authored");
    let mut first = change("authored", b"a", &[(7, 2)]);
    first.authors = vec![authored(7, 0, 2, "alice", 10), authored(9, 0, 1, "bob", 10)];
    let mut second = change("authored", b"b", &[(7, 5)]);
    second.authors = vec![authored(7, 2, 5, "alice", 20)];
    ok(s.append(&[first.clone()]), "append");
    ok(s.append(&[second]), "append");
    // The first change written again (its answer was lost), and a run of
    // writer 9 by someone else: the owner stays bob.
    let mut again = first.clone();
    again.authors.push(authored(9, 1, 2, "mallory", 30));
    ok(s.append(&[again]), "append");
    let loaded = ok(s.load(&d), "load").unwrap_or_else(|| panic!("no document"));
    let mut owners = loaded.writers.clone();
    owners.sort();
    assert_eq!(
        owners,
        vec![(7, PeerId::new("alice")), (9, PeerId::new("bob"))],
        "each writer's owner is its first identity"
    );
    let all = ok(s.history(&d, None, 100), "history");
    let runs: Vec<(u64, u64, &str)> = all
        .iter()
        .map(|e| {
            (
                e.authored.writer,
                e.authored.start,
                e.authored.identity.as_str(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            (9, 1, "mallory"),
            (7, 2, "alice"),
            (9, 0, "bob"),
            (7, 0, "alice")
        ],
        "newest first, each run once"
    );
    assert_eq!(all[3].authored, authored(7, 0, 2, "alice", 10));
    let page = ok(s.history(&d, None, 2), "history");
    let next = ok(s.history(&d, Some(page[1].seq), 2), "history");
    assert_eq!([page, next].concat(), all, "pages go on from the last");
    assert!(ok(s.history(&DocId::new("unwritten"), None, 5), "history").is_empty());
    // A run written again grown (the node folded what continued it): widened.
    let mut grown = change("authored", b"d", &[(7, 6)]);
    grown.authors = vec![authored(7, 2, 6, "alice", 40)];
    ok(s.append(&[grown]), "append");
    let widened = ok(s.history(&d, None, 100), "history");
    assert_eq!(widened.len(), 4, "widened, not added");
    assert_eq!(widened[1].authored, authored(7, 2, 6, "alice", 40));
    // Trimming keeps what is placed at or above the cut, and the owners.
    assert_eq!(ok(s.forget_history(&d, all[1].seq), "forget_history"), 2);
    assert_eq!(
        ok(s.history(&d, None, 100), "history"),
        widened[..2].to_vec()
    );
    let loaded = ok(s.load(&d), "load").unwrap_or_else(|| panic!("no document"));
    assert_eq!(loaded.writers.len(), 2, "owners outlive a trim");
    ok(s.purge(&d), "purge");
    assert!(ok(s.history(&d, None, 100), "history").is_empty());
    ok(s.append(&[change("authored", b"c", &[(1, 1)])]), "append");
    let loaded = ok(s.load(&d), "load").unwrap_or_else(|| panic!("no document"));
    assert!(loaded.writers.is_empty(), "a purge forgets the owners");
}

/// `doc_bytes` counts the snapshot and the changes after it, and knows no
/// document the store lacks.
pub fn a_documents_bytes_are_its_snapshot_and_changes(s: &mut impl Store) {
    let d = DocId::new("sized");
    assert_eq!(ok(s.doc_bytes(&d), "doc_bytes"), None);
    let c = ok(
        s.append(&[
            change("sized", b"abc", &[(1, 1)]),
            change("sized", b"de", &[(1, 2)]),
        ]),
        "append",
    );
    ok(
        s.append(&[change("other", b"0123456789", &[(2, 1)])]),
        "append",
    );
    assert_eq!(ok(s.doc_bytes(&d), "doc_bytes"), Some(5));
    ok(s.compact(&d, b"SNAPSHOT", c[1]), "compact");
    ok(s.append(&[change("sized", b"f", &[(1, 3)])]), "append");
    assert_eq!(ok(s.doc_bytes(&d), "doc_bytes"), Some(9));
}

/// Every append gets a larger clock than any before; `clock()` is the last.
pub fn clocks_only_grow(s: &mut impl Store) {
    let a = ok(
        s.append(&[change("a", b"1", &[(1, 1)]), change("b", b"2", &[(2, 1)])]),
        "append",
    );
    let b = ok(s.append(&[change("a", b"3", &[(1, 2)])]), "append");
    assert!(
        a[0] < a[1] && a[1] < b[0],
        "clocks must grow: {a:?} then {b:?}"
    );
    assert_eq!(
        ok(s.clock(), "clock"),
        b[0],
        "clock() is the last clock handed out"
    );
}

/// A document loads with all its changes, in order, and the merged version.
pub fn load_returns_changes_in_order_with_merged_version(s: &mut impl Store) {
    ok(s.append(&[change("d", b"x", &[(1, 1)])]), "append");
    ok(s.append(&[change("d", b"y", &[(2, 1)])]), "append");
    let l = ok(s.load(&DocId::new("d")), "load")
        .unwrap_or_else(|| panic!("an appended document must load"));
    assert_eq!(l.changes, vec![b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(l.version, VersionVector::from_entries([(1, 1), (2, 1)]));
    assert_eq!(l.meta.doc_type, "text");
    assert!(
        ok(s.load(&DocId::new("nothing")), "load").is_none(),
        "an unknown document loads as None"
    );
}

/// Compaction replaces changes by a snapshot; later changes and the feed survive.
pub fn compaction_keeps_content_and_feed(s: &mut impl Store) {
    let c = ok(
        s.append(&[change("d", b"x", &[(1, 1)]), change("d", b"y", &[(1, 2)])]),
        "append",
    );
    ok(s.compact(&DocId::new("d"), b"SNAP", c[1]), "compact");
    let after = ok(s.append(&[change("d", b"z", &[(1, 3)])]), "append");
    assert!(after[0] > c[1], "compaction must not rewind the clock");
    let l = ok(s.load(&DocId::new("d")), "load")
        .unwrap_or_else(|| panic!("compacted document must load"));
    assert_eq!(l.snapshot.as_deref(), Some(&b"SNAP"[..]));
    assert_eq!(l.changes, vec![b"z".to_vec()]);
    assert_eq!(l.version, VersionVector::from_entries([(1, 3)]));
    let feed = ok(
        s.changes_since(Clock(0), &Filter::all(), 10),
        "changes_since",
    );
    assert_eq!(
        feed.iter().map(|d| d.clock).collect::<Vec<_>>(),
        vec![after[0]],
        "the feed still lists the document"
    );
}

/// A tombstoned document is gone and refuses new data.
pub fn tombstones_refuse_and_purge(s: &mut impl Store) {
    ok(s.append(&[change("gone", b"x", &[(1, 1)])]), "append");
    ok(
        s.save(&StateRecord::Tombstone(DocId::new("gone"))),
        "save tombstone",
    );
    ok(s.purge(&DocId::new("gone")), "purge");
    assert!(
        ok(s.load(&DocId::new("gone")), "load").is_none(),
        "purged data must be gone"
    );
    assert!(
        matches!(
            s.append(&[change("gone", b"y", &[(1, 2)])]),
            Err(StoreError::Tombstoned(_))
        ),
        "a tombstoned document must refuse appends"
    );
    assert!(ok(s.records(), "records").contains(&StateRecord::Tombstone(DocId::new("gone"))));
}

/// Records are replaced by key; a removed listener is gone.
pub fn records_replace_and_remove(s: &mut impl Store) {
    let cursor = |n| StateRecord::Cursor {
        peer: PeerId::new("hub"),
        cursor: Cursor {
            pulled: Clock(n),
            pushed: Clock(n),
        },
    };
    ok(s.save(&cursor(1)), "save");
    ok(s.save(&cursor(2)), "save");
    let listener = StateRecord::Listener(ListenerRecord {
        id: ListenerId(3),
        owner: PeerId::new("reader"),
        filter: Filter::all(),
        floor: Clock(4),
        acked: vec![(DocId::new("a"), VersionVector::from_entries([(1, 1)]))],
    });
    ok(s.save(&listener), "save");
    let records = ok(s.records(), "records");
    assert_eq!(
        records
            .iter()
            .filter(|r| matches!(r, StateRecord::Cursor { .. }))
            .count(),
        1
    );
    assert!(records.contains(&cursor(2)) && records.contains(&listener));
    ok(s.save(&StateRecord::ListenerRemoved(ListenerId(3))), "save");
    assert!(
        !ok(s.records(), "records").contains(&listener),
        "a removed listener must be gone"
    );
}

/// The feed lists documents changed after a clock, in clock order, filtered and limited.
pub fn feed_filters_orders_and_limits(s: &mut impl Store) {
    let c = ok(
        s.append(&[
            change("a", b"1", &[(1, 1)]),
            change("b", b"2", &[(1, 1)]),
            change("c", b"3", &[(1, 1)]),
        ]),
        "append",
    );
    ok(s.append(&[change("a", b"4", &[(1, 2)])]), "append");
    let feed = ok(s.changes_since(c[0], &Filter::all(), 10), "changes_since");
    let names: Vec<&str> = feed.iter().map(|d| d.doc.as_str()).collect();
    assert_eq!(
        names,
        vec!["b", "c", "a"],
        "documents in order of their last change"
    );
    let only_c = ok(
        s.changes_since(Clock(0), &Filter::docs([DocId::new("c")]), 10),
        "changes_since",
    );
    assert_eq!(only_c.len(), 1);
    assert_eq!(
        ok(
            s.changes_since(Clock(0), &Filter::all(), 2),
            "changes_since"
        )
        .len(),
        2
    );
}

/// `read_index` reads a range of clocks oldest or newest first, and ids
/// after one in bytewise order (as ids compare in memory: `B` before `a`,
/// `a-1` before `a1`), each filtered and limited.
pub fn the_index_reads_by_clock_both_ways_and_by_id_bytewise(s: &mut impl Store) {
    let ids = ["a1", "B", "a-1", "b", "a"];
    let mut clocks = Vec::new();
    for id in ids {
        clocks.extend(ok(s.append(&[change(id, b"x", &[(1, 1)])]), "append"));
    }
    let names = |docs: Vec<docweave_core::StoredDoc>| -> Vec<String> {
        docs.into_iter().map(|d| d.doc.to_string()).collect()
    };
    let clocks_range = |newest_first| ReadRange::Clocks {
        after: clocks[0],
        up_to: clocks[3],
        newest_first,
    };
    let oldest = ok(
        s.read_index(&clocks_range(false), &Filter::all(), 10),
        "read_index",
    );
    assert_eq!(names(oldest), vec!["B", "a-1", "b"], "clocks after, up to");
    let newest = ok(
        s.read_index(&clocks_range(true), &Filter::all(), 2),
        "read_index",
    );
    assert_eq!(names(newest), vec!["b", "a-1"], "newest first, limited");
    let by_id = ok(
        s.read_index(&ReadRange::Ids { after: None }, &Filter::all(), 10),
        "read_index",
    );
    assert_eq!(names(by_id), vec!["B", "a", "a-1", "a1", "b"], "bytewise");
    let after = ReadRange::Ids {
        after: Some(DocId::new("a")),
    };
    let filter = Filter::docs([DocId::new("a1"), DocId::new("b")]);
    let filtered = ok(s.read_index(&after, &filter, 1), "read_index");
    assert_eq!(
        names(filtered),
        vec!["a1"],
        "after an id, filtered, limited"
    );
}

/// `doc1` and `doc10` are different documents (no prefix scans).
pub fn ids_sharing_a_prefix_do_not_collide(s: &mut impl Store) {
    ok(
        s.append(&[
            change("doc1", b"one", &[(1, 1)]),
            change("doc10", b"ten", &[(2, 1)]),
        ]),
        "append",
    );
    let one = ok(s.load(&DocId::new("doc1")), "load").map(|l| l.changes);
    assert_eq!(one, Some(vec![b"one".to_vec()]));
    ok(s.purge(&DocId::new("doc1")), "purge");
    assert!(
        ok(s.load(&DocId::new("doc10")), "load").is_some(),
        "purging doc1 must not touch doc10"
    );
}

/// Ids are opaque text: URLs, slashes, dots, quotes and wildcard-looking
/// characters are stored and found as they are, each its own document.
pub fn ids_apps_use_round_trip(s: &mut impl Store) {
    let ids = [
        "https://example.com/docs/x",
        "notes/",
        "/notes",
        "a/./b",
        "../up",
        "it's \"quoted\"",
        "100%_like",
        "ünï côde",
    ];
    let changes: Vec<Append> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| change(id, id.as_bytes(), &[(i as u64 + 1, 1)]))
        .collect();
    ok(s.append(&changes), "append");
    for id in ids {
        let got = ok(s.load(&DocId::new(id)), "load").map(|l| l.changes);
        assert_eq!(got, Some(vec![id.as_bytes().to_vec()]), "{id:?}");
    }
    let listed = ok(
        s.changes_since(Clock(0), &Default::default(), 100),
        "changes",
    );
    for id in ids {
        assert!(
            listed.iter().any(|c| c.doc.as_str() == id),
            "{id:?} is not listed"
        );
    }
}

/// A batch with a refused change writes none of its changes.
pub fn a_failed_batch_writes_nothing(s: &mut impl Store) {
    ok(s.save(&StateRecord::Tombstone(DocId::new("dead"))), "save");
    assert!(s
        .append(&[
            change("alive", b"1", &[(1, 1)]),
            change("dead", b"2", &[(1, 1)])
        ])
        .is_err());
    assert!(
        ok(s.load(&DocId::new("alive")), "load").is_none(),
        "half a batch was written"
    );
}

/// A load since a clock brings at least everything after it, and the
/// snapshot whenever compaction folded in changes after it.
pub fn a_load_since_a_clock_brings_all_a_reader_lacks(s: &mut impl Store) {
    let first = ok(s.append(&[change("d", b"x", &[(1, 1)])]), "append")[0];
    let second = ok(s.append(&[change("d", b"y", &[(1, 2)])]), "append")[0];
    let l = ok(s.load_since(&DocId::new("d"), first), "load_since")
        .unwrap_or_else(|| panic!("an appended document must load"));
    assert_eq!(l.changes.last().map(Vec::as_slice), Some(&b"y"[..]));
    assert_eq!(l.clock, second, "the clock is the document's whole");
    assert_eq!(l.version, VersionVector::from_entries([(1, 2)]));
    ok(s.compact(&DocId::new("d"), b"SNAP", second), "compact");
    let third = ok(s.append(&[change("d", b"z", &[(1, 3)])]), "append")[0];
    let l = ok(s.load_since(&DocId::new("d"), first), "load_since")
        .unwrap_or_else(|| panic!("a compacted document must load"));
    assert_eq!(
        l.snapshot.as_deref(),
        Some(&b"SNAP"[..]),
        "the snapshot folded in a change the reader lacks"
    );
    assert_eq!(l.changes.last().map(Vec::as_slice), Some(&b"z"[..]));
    let l = ok(s.load_since(&DocId::new("d"), third), "load_since")
        .unwrap_or_else(|| panic!("a compacted document must load"));
    assert_eq!(l.clock, third);
    assert!(
        ok(s.load_since(&DocId::new("nothing"), first), "load_since").is_none(),
        "an unknown document loads as None"
    );
}

/// A second handle ([`Store::reader`]), where the store offers one, reads
/// what the first committed, also what it committed after the reader
/// was opened.
pub fn a_reader_sees_what_was_committed(s: &mut impl Store) {
    ok(s.append(&[change("r", b"one", &[(1, 1)])]), "append");
    let Some(mut reader) = ok(s.reader(), "reader") else {
        return;
    };
    let first = ok(reader.load(&DocId::new("r")), "load on the reader");
    let first = first.unwrap_or_else(|| panic!("the reader does not see a committed document"));
    assert_eq!(first.changes, vec![b"one".to_vec()]);
    ok(s.append(&[change("r", b"two", &[(1, 2)])]), "append");
    let second = ok(reader.load(&DocId::new("r")), "load on the reader");
    let second = second.unwrap_or_else(|| panic!("the document went on the reader"));
    assert_eq!(
        second.changes,
        vec![b"one".to_vec(), b"two".to_vec()],
        "the reader does not see a change committed after it was opened"
    );
    assert_eq!(
        ok(reader.load(&DocId::new("none")), "load on the reader"),
        None
    );
}
