//! Replays recordings: the committed log of a real multi-peer run on Loro
//! documents (the JSON-lines format of earlier versions, which still
//! replays), and live runs recorded into rotating binary files.

use docweave_adapters::MemoryStore;
use docweave_shell::{replay, ReplayOutcome, Repo};
use std::path::PathBuf;
use std::time::Duration;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/loro-hub-two-clients.jsonl")
}

#[test]
fn the_recorded_hub_log_replays_identically() {
    match replay(&fixture()) {
        Ok(ReplayOutcome::Identical { steps }) => assert!(steps > 20, "only {steps} steps"),
        Ok(ReplayOutcome::Differs {
            step,
            recorded,
            replayed,
        }) => {
            panic!("step {step} differs:\nrecorded {recorded:?}\nreplayed {replayed:?}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_tampered_log_reports_the_first_difference() {
    let text = std::fs::read_to_string(fixture()).unwrap_or_default();
    // A recorded command that update() does not produce.
    let tampered = text.replacen(
        "\"output\":[]",
        "\"output\":[{\"Purge\":{\"doc\":\"tampered\"}}]",
        1,
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tampered-{}.jsonl", std::process::id()));
    std::fs::write(&path, tampered).ok();
    assert!(matches!(replay(&path), Ok(ReplayOutcome::Differs { .. })));
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A hub recorded into `dir`, two clients editing through it.
fn recorded_run(dir: &std::path::Path, max_bytes: u64, text_bytes: usize) {
    smol::block_on(async {
        let hub = Repo::builder("hub")
            .store(MemoryStore::new())
            .record(dir)
            .record_max_bytes(max_bytes)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let alice = Repo::builder("alice")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bob = Repo::builder("bob")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        alice.connect(&hub).unwrap();
        bob.connect(&hub).unwrap();
        let a = alice.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        for i in 0..5u8 {
            let text: String = (0..text_bytes)
                .map(|j| char::from(b'a' + ((j as u8) ^ i) % 26))
                .collect();
            a.get_text("t").insert(0, &text).unwrap();
            a.commit();
        }
        let b = bob.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        b.get_map("m").insert("seen", true).unwrap();
        b.commit();
        alice.set_presence("notes", "cursor", b"5").unwrap();
        for r in [&alice, &bob] {
            assert!(r
                .wait_for_sync("notes", "hub", Duration::from_secs(10))
                .await
                .is_ok_and(|o| o.is_synced()));
        }
        for r in [alice, bob, hub] {
            r.close().await;
        }
    });
}

#[test]
fn a_live_run_recorded_in_files_replays_identically() {
    let dir = temp_dir("recorded-run");
    recorded_run(&dir, 1 << 30, 10);
    let files = docweave_shell::files_in(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    match docweave_shell::replay_files(&[dir]) {
        Ok(ReplayOutcome::Identical { steps }) => assert!(steps > 20, "only {steps} steps"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_runs_in_one_directory_replay_each_from_its_own_configuration() {
    let dir = temp_dir("recorded-two-runs");
    recorded_run(&dir, 1 << 30, 10);
    // Another process, later (the file names carry the start time).
    std::thread::sleep(Duration::from_millis(5));
    recorded_run(&dir, 1 << 30, 10);
    assert_eq!(docweave_shell::files_in(&dir).len(), 2);
    match docweave_shell::replay_files(&[dir]) {
        Ok(ReplayOutcome::Identical { steps }) => assert!(steps > 40, "only {steps} steps"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn past_its_cap_a_recording_drops_its_oldest_files_and_can_be_read_but_not_replayed() {
    let dir = temp_dir("recorded-capped");
    // Files of 64 KiB, 256 KiB in all; the run writes far more.
    recorded_run(&dir, 256 * 1024, 100_000);
    let files = docweave_shell::files_in(&dir);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    // The cap holds but for the file being written (a record is never split).
    let last = std::fs::metadata(files.last().unwrap()).unwrap().len();
    assert!(total <= 256 * 1024 + last, "{total} bytes kept");
    assert!(
        !files[0].to_string_lossy().ends_with("000001.dwrec"),
        "the first file is still there: {files:?}"
    );
    let mut steps = 0;
    docweave_shell::read_lines(std::slice::from_ref(&dir), |_, _| {
        steps += 1;
        true
    })
    .unwrap();
    assert!(steps > 0);
    assert!(matches!(
        docweave_shell::replay_files(&[dir]),
        Err(docweave_shell::ReplayError::NoConfig)
    ));
}
