//! The body of the `loro_import` fuzz target: Loro bytes from anyone, taken
//! the way the server takes them.
//!
//! The first byte chooses what the rest is and where it goes:
//! - a document blob (update or snapshot), with its checksum fixed up so
//!   that mutations get past Loro's header check, imported into one of a
//!   few replicas (empty, or holding text, maps, lists, a tree, a counter),
//!   after the metadata read the Loro endpoint does; then what the node does
//!   with an imported replica: its version, a snapshot, a delta, and a
//!   snapshot imported into a fresh replica;
//! - a presence message applied to a member's store;
//! - a version vector (a Loro join's version).
//!
//! Any panic is a finding: the server contains them (`contained`), but a
//! contained panic still costs a client an error it did not deserve.

use docweave_adapters::loro_protocol::{sent_version, version_from_loro, MemberPresence};
use docweave_core::ImportOutcome;
use docweave_shell::{DocEngine, LoroEngine};
use loro::{ExportMode, LoroDoc};
use std::sync::OnceLock;

/// Replicas the fuzzed bytes are imported into, as snapshots.
fn bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        let rich = LoroDoc::new();
        let _ = rich.set_peer_id(42);
        let _ = rich.get_text("text").insert(0, "hello world");
        let _ = rich.get_map("root").insert("k", "v");
        let _ = rich.get_list("list").push(1);
        let _ = rich.get_movable_list("moves").push("a");
        let tree = rich.get_tree("tree");
        if let Ok(node) = tree.create(None) {
            let _ = tree.create(node);
        }
        let _ = rich.get_counter("count").increment(2.0);
        rich.commit();
        let text = LoroDoc::new();
        let _ = text.set_peer_id(7);
        let _ = text.get_text("text").insert(0, "abc");
        text.commit();
        [LoroDoc::new(), rich, text]
            .iter()
            .map(|d| d.export(ExportMode::Snapshot).unwrap_or_default())
            .collect()
    })
}

/// `bytes` with a Loro header whose checksum matches its body, when they
/// are long enough to hold one (a mutated body would fail the check and
/// never reach the decoders).
pub fn with_checksum(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.len() < 22 {
        return b;
    }
    b[..4].copy_from_slice(b"loro");
    match u16::from_be_bytes([b[20], b[21]]) {
        // Outdated encodings: md5 of everything after the checksum.
        1 | 2 => {
            let sum = md5::compute(&b[20..]).0;
            b[4..20].copy_from_slice(&sum);
        }
        // Fast snapshot and fast updates: xxh32 in the checksum's last 4.
        _ => {
            let sum = xxhash_rust::xxh32::xxh32(&b[20..], u32::from_le_bytes(*b"LORO"));
            b[16..20].copy_from_slice(&sum.to_le_bytes());
        }
    }
    b
}

/// See the module docs.
pub fn loro_import(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 | 1 => document(usize::from(selector / 4), rest),
        2 => {
            let mut member = MemberPresence::new(30_000);
            // Refused or taken; a panic is contained and reported as refused,
            // which is why the count of contained panics is checked.
            let before = docweave_adapters::panics_caught();
            let _ = member.apply(rest, 64 * 1024);
            assert_eq!(
                docweave_adapters::panics_caught(),
                before,
                "presence panicked"
            );
        }
        _ => {
            let before = docweave_adapters::panics_caught();
            let _ = version_from_loro(rest);
            let _ = sent_version(&with_checksum(rest));
            assert_eq!(
                docweave_adapters::panics_caught(),
                before,
                "a version panicked"
            );
        }
    }
}

fn document(base: usize, blob: &[u8]) {
    let engine = LoroEngine;
    let bases = bases();
    let snapshot = &bases[base % bases.len()];
    let mut doc = engine.create(1);
    let _ = doc.import(snapshot);
    let before = engine.version(&doc);
    let blob = with_checksum(blob);
    let caught = docweave_adapters::panics_caught();
    let _ = sent_version(&blob);
    let outcome = engine
        .import(&mut doc, &blob)
        .unwrap_or_else(|e| panic!("{e}"));
    if matches!(outcome, ImportOutcome::Failed { .. }) {
        assert!(
            engine.version(&doc) == before,
            "a refused import changed the replica"
        );
    }
    // What the node does next with the replica: send it, store it.
    let version = engine.version(&doc);
    let full = engine.export(&doc, None).unwrap_or_else(|e| panic!("{e}"));
    engine
        .export(&doc, Some(&before))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut again = engine.create(2);
    let reimported = engine
        .import(&mut again, &full)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(reimported, ImportOutcome::Applied { .. }),
        "a replica's own snapshot does not import: {reimported:?}"
    );
    assert_eq!(engine.version(&again), version, "a snapshot lost changes");
    assert_eq!(
        docweave_adapters::panics_caught(),
        caught,
        "the document library panicked"
    );
}
