//! Durability under SIGKILL: a child process appends and reports each
//! acknowledged change; it is killed at varying points; after every kill the
//! database reopens and holds every change the child had acknowledged.
#![cfg(feature = "sqlite")]

use docweave_adapters::{Append, SqliteStore, Store};
use docweave_core::{DocId, DocMeta, VersionVector};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "DOCWEAVE_CRASH_DB";

/// The writer. Does nothing unless started by the test below.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round = std::env::var("DOCWEAVE_CRASH_ROUND").unwrap_or_default();
    let mut store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("child: {e}"));
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let doc = format!("doc{}", i % 7);
        let data = format!("{round}-{i}").into_bytes();
        let change = Append {
            doc: DocId::new(&doc),
            meta: DocMeta::default(),
            data,
            version: VersionVector::from_entries([(1, i + 1)]),
            authors: Vec::new(),
        };
        let batch = if i % 3 == 0 {
            vec![
                change.clone(),
                Append {
                    data: format!("{round}-{i}b").into_bytes(),
                    ..change
                },
            ]
        } else {
            vec![change]
        };
        if store.append(&batch).is_err() {
            return;
        }
        for a in &batch {
            // Printed only after the append returned: this is the
            // acknowledgement. A parent that stopped reading is done with
            // this child: it stops, rather than writing in a loop that
            // starves the parent's own writes of the database's lock.
            let line = format!("acked {} {}", a.doc, String::from_utf8_lossy(&a.data));
            if writeln!(out, "{line}").is_err() {
                return;
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("crash-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env("DOCWEAVE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        // Kill at a different point each round.
        let kill_after = 5 + round * 23;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("acked ") {
                let (doc, data) = rest.split_once(' ').unwrap_or((rest, ""));
                acked.push((doc.to_string(), data.as_bytes().to_vec()));
                seen += 1;
                if seen >= kill_after {
                    break;
                }
            }
        }
        child.kill().ok(); // SIGKILL on Unix
        child.wait().ok();
        assert!(seen >= kill_after, "round {round}: the child stopped early");
        let mut store =
            SqliteStore::open(&path).unwrap_or_else(|e| panic!("reopen after kill: {e}"));
        for (doc, data) in &acked {
            let loaded = store
                .load(&DocId::new(doc))
                .ok()
                .flatten()
                .map(|l| l.changes)
                .unwrap_or_default();
            assert!(
                loaded.contains(data),
                "round {round}: acknowledged change {} of {doc} was lost",
                String::from_utf8_lossy(data)
            );
        }
    }
}

#[test]
fn two_processes_share_one_database_through_the_clock_feed() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("two-procs-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // This process holds the database open the whole time.
    let mut mine = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let before = mine.clock().unwrap_or_default();
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(&exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .env("DOCWEAVE_CRASH_ROUND", "other")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut acked = 0;
    for line in BufReader::new(stdout).lines() {
        if line.map(|l| l.starts_with("acked ")).unwrap_or(false) {
            acked += 1;
            if acked >= 20 {
                break;
            }
        }
    }
    // While the other process is still writing, its changes show in our feed.
    let seen = mine
        .changes_since(before, &docweave_core::Filter::all(), 100)
        .unwrap_or_default();
    assert!(
        !seen.is_empty(),
        "the other process's changes are not in the feed"
    );
    let ours = mine
        .append(&[Append {
            doc: DocId::new("mine"),
            meta: DocMeta::default(),
            data: b"m".to_vec(),
            version: VersionVector::from_entries([(9, 1)]),
            authors: Vec::new(),
        }])
        .unwrap_or_else(|e| panic!("our append: {e}"));
    assert!(
        ours[0] > seen.last().map(|d| d.clock).unwrap_or_default(),
        "one clock for both processes"
    );
    child.kill().ok();
    child.wait().ok();
}
