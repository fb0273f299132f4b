//! Repos syncing real Loro documents over the in-memory transport.

use docweave_adapters::{MemoryStore, SqliteStore};
use docweave_shell::Repo;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn text(doc: &loro::LoroDoc) -> String {
    doc.get_text("t").to_string()
}

/// Polls until `f` holds (sync is asynchronous), up to `WAIT`.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if f() {
            return true;
        }
        smol::Timer::after(Duration::from_millis(10)).await;
    }
    f()
}

fn repo(name: &str) -> Repo {
    Repo::builder(name)
        .store(MemoryStore::new())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn two_repos_converge_on_text_map_and_list_including_concurrent_edits() {
    smol::block_on(async {
        let hub = repo("hub");
        let alice = repo("alice");
        let bob = repo("bob");
        alice.connect(&hub).ok();
        bob.connect(&hub).ok();
        let a = alice.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        a.get_text("t").insert(0, "hello").ok();
        a.get_map("m").insert("k", 1).ok();
        a.get_list("l").push("x").ok();
        a.commit();
        let b = bob.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            eventually(|| text(&b) == "hello").await,
            "bob got {:?}",
            text(&b)
        );
        // Concurrent edits on both sides.
        a.get_text("t").insert(5, " alice").ok();
        b.get_text("t").insert(0, "bob: ").ok();
        a.commit();
        b.commit();
        assert!(
            eventually(|| text(&a) == text(&b)
                && text(&a).contains("alice")
                && text(&a).contains("bob"))
            .await,
            "{} vs {}",
            text(&a),
            text(&b)
        );
        assert_eq!(a.get_deep_value(), b.get_deep_value());
        assert!(alice
            .wait_for_sync("notes", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));
        alice.close().await;
        bob.close().await;
        hub.close().await;
    });
}

#[test]
fn wait_for_sync_times_out_when_the_peer_never_answers() {
    smol::block_on(async {
        let alice = repo("alice");
        let d = alice.open("lonely").await.unwrap_or_else(|e| panic!("{e}"));
        d.get_text("t").insert(0, "x").ok();
        d.commit();
        let outcome = alice
            .wait_for_sync("lonely", "nobody", Duration::from_millis(200))
            .await
            .ok();
        assert_eq!(outcome, Some(docweave_shell::SyncOutcome::TimedOut));
        alice.close().await;
    });
}

#[test]
fn close_and_reopen_from_sqlite_keeps_everything() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("repo-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    smol::block_on(async {
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let r = Repo::builder("solo")
            .store(store)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        r.edit("diary", |d| d.get_text("t").insert(0, "day one"))
            .await
            .ok();
        r.edit("diary", |d| d.get_text("t").insert(7, ", day two"))
            .await
            .ok();
        r.close().await;
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let r = Repo::builder("solo")
            .store(store)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let d = r.open("diary").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&d), "day one, day two");
        r.close().await;
    });
}

fn fast(c: &mut docweave_core::Config) {
    c.timing.presence_ttl_ms = 300;
}

#[test]
/// (Expiry after a TTL is checked on the core, where time is a parameter:
/// `core/src/tests/presence.rs`, and in the `presence` trace.)
fn presence_arrives_and_goes_when_its_owner_clears_it() {
    smol::block_on(async {
        let hub = Repo::builder("hub")
            .configure(fast)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let alice = Repo::builder("alice")
            .configure(fast)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bob = Repo::builder("bob")
            .configure(fast)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        alice.connect(&hub).ok();
        bob.connect(&hub).ok();
        alice.open("room").await.ok();
        bob.open("room").await.ok();
        let events = bob
            .watch_presence("room", "cursor")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut events = Box::pin(events);
        assert!(alice
            .wait_for_sync("room", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));
        assert!(bob
            .wait_for_sync("room", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));
        alice.set_presence("room", "cursor", b"line 3").ok();
        let mut arrived = false;
        let mut expired = false;
        let start = std::time::Instant::now();
        while start.elapsed() < WAIT && !expired {
            let next = futures_lite::future::or(
                async { futures_lite::StreamExt::next(&mut events).await },
                async {
                    smol::Timer::after(Duration::from_millis(100)).await;
                    None
                },
            )
            .await;
            match next {
                Some((peer, Some(_))) if peer.as_str() == "alice" => {
                    arrived = true;
                    // Alice clears it: bob hears it went.
                    alice.set_presence("room", "cursor", b"").ok();
                }
                Some((peer, None)) if peer.as_str() == "alice" => expired = true,
                _ => {}
            }
        }
        assert!(arrived && expired, "arrived {arrived}, cleared {expired}");
        for r in [alice, bob, hub] {
            r.close().await;
        }
    });
}

#[test]
fn eviction_and_reload_keep_everything() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("evict-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    smol::block_on(async {
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let r = Repo::builder("solo")
            .store(store)
            .max_docs_in_memory(2)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..6 {
            r.edit(&format!("d{i}"), |d| {
                d.get_text("t").insert(0, &format!("content {i}"))
            })
            .await
            .ok();
        }
        // Give the store a moment to acknowledge, so replicas may be evicted.
        smol::Timer::after(Duration::from_millis(200)).await;
        let resident = r.resident_docs().await.unwrap_or(usize::MAX);
        assert!(resident <= 3, "{resident} documents still in memory");
        for i in 0..6 {
            let d = r
                .open(&format!("d{i}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(text(&d), format!("content {i}"));
        }
        r.close().await;
    });
}

#[test]
fn eviction_by_memory_budget_keeps_the_estimate_within_it_and_loses_nothing() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("budget-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    let long: String = "abcdefghij".chars().cycle().take(20_000).collect();
    smol::block_on(async {
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        // Each document is about 100 KB in memory (18 KB and 4 bytes per
        // character): three fit.
        let r = Repo::builder("solo")
            .store(store)
            .memory_budget(320 * 1024)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..8 {
            r.edit(&format!("d{i}"), |d| d.get_text("t").insert(0, &long))
                .await
                .ok();
        }
        // Replicas go once the store acknowledged them (a dirty one stays).
        let mut resident = usize::MAX;
        let deadline = std::time::Instant::now() + WAIT;
        while resident > 4 && std::time::Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(20)).await;
            // A request is a burst: the node evicts after it.
            resident = r.resident_docs().await.unwrap_or(usize::MAX);
        }
        assert!(
            resident <= 4,
            "{resident} documents of 100 KB still in memory"
        );
        for i in 0..8 {
            let d = r
                .open(&format!("d{i}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(text(&d), long, "d{i} lost content");
        }
        r.close().await;
    });
}

#[test]
fn status_tells_saved_and_acknowledged() {
    smol::block_on(async {
        let hub = repo("hub");
        let alice = repo("alice");
        alice.connect(&hub).ok();
        alice
            .edit("notes", |d| d.get_text("t").insert(0, "x"))
            .await
            .ok();
        assert!(alice
            .wait_for_sync("notes", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));
        let status = alice.status("notes", "hub").await.ok();
        assert_eq!(
            status,
            Some(docweave_shell::SyncStatus::Acknowledged(
                docweave_core::PeerId::new("hub")
            ))
        );
        assert_eq!(
            alice.status("never-opened", "hub").await.ok(),
            Some(docweave_shell::SyncStatus::Unknown)
        );
        alice.close().await;
        hub.close().await;
    });
}

#[test]
fn two_repos_sharing_one_store_see_each_others_changes_through_the_feed() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("shared-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    smol::block_on(async {
        let open = || SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let a = Repo::builder("tab-a")
            .store(open())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        a.edit("shared", |d| d.get_text("t").insert(0, "from a"))
            .await
            .ok();
        smol::Timer::after(Duration::from_millis(100)).await;
        let b = Repo::builder("tab-b")
            .store(open())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let db = b.open("shared").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&db), "from a");
        // No network between them: only the store's clock feed.
        a.edit("shared", |d| d.get_text("t").insert(6, ", again"))
            .await
            .ok();
        assert!(
            eventually(|| text(&db) == "from a, again").await,
            "b sees {:?}",
            text(&db)
        );
        a.close().await;
        b.close().await;
    });
}

#[test]
fn operation_logs_converge_with_the_same_folded_state() {
    struct Lines;
    impl docweave_shell::Reducer for Lines {
        type State = Vec<String>;
        fn initial(&self) -> Vec<String> {
            Vec::new()
        }
        fn apply(&self, state: &mut Vec<String>, op: &[u8]) {
            state.push(String::from_utf8_lossy(op).into_owned());
        }
    }
    smol::block_on(async {
        let build = |name: &str| {
            Repo::builder(name)
                .engine(docweave_shell::OpLogEngine::new(Lines))
                .store(MemoryStore::new())
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (hub, a, b) = (build("hub"), build("a"), build("b"));
        a.connect(&hub).ok();
        b.connect(&hub).ok();
        let da = a.open("log").await.unwrap_or_else(|e| panic!("{e}"));
        let db = b.open("log").await.unwrap_or_else(|e| panic!("{e}"));
        for i in 0..20 {
            da.append(format!("a{i}"));
            db.append(format!("b{i}"));
        }
        let dh = hub.open("log").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            eventually(|| da.state().len() == 40
                && db.state().len() == 40
                && dh.state().len() == 40)
            .await
        );
        assert_eq!(da.state(), db.state());
        assert_eq!(da.state(), dh.state());
        for r in [a, b, hub] {
            r.close().await;
        }
    });
}

#[test]
fn status_carries_the_reason_of_a_refusal() {
    smol::block_on(async {
        let hub = Repo::builder("hub")
            .configure(|c| {
                c.rules = docweave_core::Rules::allow_all().with(
                    docweave_core::Pattern::Exact("alice".into()),
                    docweave_core::Pattern::Any,
                    docweave_core::Access::READ,
                )
            })
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bob = repo("bob");
        let alice = repo("alice");
        bob.connect(&hub).ok();
        alice.connect(&hub).ok();
        bob.edit("notes", |d| d.get_text("t").insert(0, "by bob"))
            .await
            .ok();
        assert!(bob
            .wait_for_sync("notes", "hub", WAIT)
            .await
            .is_ok_and(|o| o.is_synced()));
        let a = alice.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(eventually(|| text(&a) == "by bob").await);
        a.get_text("t").insert(0, "alice was here: ").ok();
        a.commit();
        let mut status = None;
        let start = std::time::Instant::now();
        while start.elapsed() < WAIT {
            status = alice.status("notes", "hub").await.ok();
            if matches!(status, Some(docweave_shell::SyncStatus::Error(_))) {
                break;
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        assert!(
            matches!(&status, Some(docweave_shell::SyncStatus::Error(r)) if r.contains("PermissionDenied")),
            "{status:?}"
        );
        for r in [alice, bob, hub] {
            r.close().await;
        }
    });
}

#[test]
fn documents_loaded_for_peers_or_fetched_from_them_sleep_once_idle() {
    smol::block_on(async {
        let sleepy = |name: &str| {
            Repo::builder(name)
                .store(MemoryStore::new())
                .sleep_after(Duration::from_millis(300))
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let hub = sleepy("hub");
        let alice = repo("alice");
        alice.connect(&hub).unwrap();
        for i in 0..3 {
            alice
                .edit(&format!("d{i}"), |d| {
                    d.get_text("t").insert(0, &format!("text {i}"))
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(alice
                .wait_for_sync(&format!("d{i}"), "hub", WAIT)
                .await
                .is_ok_and(|o| o.is_synced()));
        }
        // A second server follows the hub: it fetches every document,
        // for no one that holds a handle.
        let mirror = sleepy("mirror");
        mirror.connect(&hub).unwrap();
        let mut known = 0;
        for _ in 0..500 {
            known = mirror.summary().await.map(|s| s.docs.len()).unwrap_or(0);
            if known == 3 {
                break;
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        assert_eq!(known, 3, "the mirror did not fetch every document");
        for (name, r) in [("hub", &hub), ("mirror", &mirror)] {
            let mut awake = usize::MAX;
            for _ in 0..500 {
                awake = r.resident_docs().await.unwrap_or(usize::MAX);
                if awake == 0 {
                    break;
                }
                smol::Timer::after(Duration::from_millis(10)).await;
            }
            assert_eq!(awake, 0, "{name} keeps idle documents awake");
        }
        // Asleep is still there: the mirror wakes one with all of it.
        let d = mirror.open("d1").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&d), "text 1");
        alice.close().await;
        mirror.close().await;
        hub.close().await;
    });
}

#[test]
fn a_hub_on_sqlite_lists_who_wrote_each_change_in_its_history() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("repo-history-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        // A file left by an earlier run, if any: none is the usual case.
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
    smol::block_on(async {
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let hub = Repo::builder("hub")
            .store(store)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let (alice, bob) = (repo("alice"), repo("bob"));
        // A connection that failed shows as the sync below that never comes.
        alice.connect(&hub).ok();
        bob.connect(&hub).ok();
        for (who, words) in [(&alice, "from alice"), (&bob, ", from bob")] {
            let d = who.open("shared").await.unwrap_or_else(|e| panic!("{e}"));
            let end = d.get_text("t").len_unicode();
            d.get_text("t").insert(end, words).ok();
            d.commit();
            assert!(who
                .wait_for_sync("shared", "hub", WAIT)
                .await
                .is_ok_and(|o| o.is_synced()));
        }
        let entries = hub.history("shared", None, 10).await.unwrap();
        let authors: Vec<&str> = entries
            .iter()
            .map(|e| e.authored.identity.as_str())
            .collect();
        assert_eq!(authors, ["bob", "alice"], "{entries:?}");
        assert_eq!(entries[0].authored.end - entries[0].authored.start, 10);
        // A page goes on below where the last one ended.
        let older = hub
            .history("shared", Some(entries[0].seq), 10)
            .await
            .unwrap();
        assert_eq!(older, entries[1..].to_vec());
        // Without a second handle on its store there is nothing to read.
        assert!(alice.history("shared", None, 10).await.is_err());
        alice.close().await;
        bob.close().await;
        hub.close().await;
    });
}

/// An application's handle outlives the document's metadata in memory: with
/// one idle document's metadata kept, six others push this one's out, and
/// the handle still takes a peer's edit, and its own edits still go out,
/// before and after that peer's.
#[test]
fn a_handle_keeps_syncing_after_memory_lets_its_documents_metadata_go() {
    smol::block_on(async {
        let hub = Repo::builder("hub")
            .store(MemoryStore::new())
            .configure(|c| c.bounds.idle_metadata = 1)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let h = hub.open("a").await.unwrap_or_else(|e| panic!("{e}"));
        h.get_text("t").insert(0, "x").unwrap();
        h.commit();
        for d in ["b", "c", "d", "e", "f", "g"] {
            hub.edit(d, |doc| doc.get_text("t").insert(0, "q"))
                .await
                .unwrap()
                .unwrap();
        }
        let mut forgotten = false;
        for _ in 0..100 {
            let s = hub.summary().await.unwrap();
            if !s.docs.iter().any(|(d, _, _)| d.as_str() == "a") {
                forgotten = true;
                break;
            }
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        assert!(forgotten, "a's metadata stayed in memory");
        h.get_text("t").insert(1, "!").unwrap();
        h.commit();
        let alice = Repo::builder("alice")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        alice.connect(&hub).unwrap();
        let a = alice.open("a").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(eventually(|| text(&a) == "x!").await, "alice: {}", text(&a));
        a.get_text("t").insert(2, "y").unwrap();
        a.commit();
        assert!(eventually(|| text(&h) == "x!y").await, "hub: {}", text(&h));
        h.get_text("t").insert(3, "z").unwrap();
        h.commit();
        assert!(
            eventually(|| text(&a) == "x!yz").await,
            "alice: {}",
            text(&a)
        );
    });
}
