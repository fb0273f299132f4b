//! Replays the committed log of a real multi-peer run on Loro documents.
//! Regenerate it with:
//! `cargo test -p docweave-shell --test replay -- --ignored record_fixture`

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

#[test]
#[ignore = "writes the fixture; run by hand when the protocol changes"]
fn record_fixture() {
    smol::block_on(async {
        let hub = Repo::builder("hub")
            .store(MemoryStore::new())
            .record(fixture())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let alice = Repo::builder("alice")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bob = Repo::builder("bob")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        alice.connect(&hub).ok();
        bob.connect(&hub).ok();
        let a = alice.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        a.get_text("t").insert(0, "hello").ok();
        a.commit();
        let b = bob.open("notes").await.unwrap_or_else(|e| panic!("{e}"));
        b.get_map("m").insert("seen", true).ok();
        b.commit();
        alice.set_presence("notes", "cursor", b"5").ok();
        for r in [&alice, &bob] {
            assert!(r
                .wait_for_sync("notes", "hub", Duration::from_secs(5))
                .await
                .is_ok_and(|o| o.is_synced()));
        }
        for r in [alice, bob, hub] {
            r.close().await;
        }
    });
}
