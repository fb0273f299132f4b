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
            .unwrap_or(false));
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
        let synced = alice
            .wait_for_sync("lonely", "nobody", Duration::from_millis(200))
            .await
            .unwrap_or(true);
        assert!(!synced);
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
