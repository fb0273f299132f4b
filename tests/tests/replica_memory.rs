//! What a loaded document costs in memory, measured by counting the heap
//! (this test binary's allocator counts every byte held), against the
//! estimate the node evicts by (`DocEngine::resident_estimate`).

use docweave_shell::{DocEngine, LoroEngine};
use docweave_tests::alloc_meter;

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

/// A document's snapshot: `edits` insertions of `each` characters, typed
/// one after another (as a person types), by one peer.
fn snapshot(edits: usize, each: usize) -> Vec<u8> {
    let engine = LoroEngine;
    let doc = engine.create(1);
    let text = doc.get_text("t");
    let piece: String = "abcdefghij".chars().cycle().take(each).collect();
    for _ in 0..edits {
        text.insert(text.len_unicode(), &piece).unwrap();
        doc.commit();
    }
    engine.export(&doc, None).unwrap()
}

/// A map of `keys` keys, each set by one of `peers` peers.
fn map_snapshot(keys: usize, peers: u64) -> Vec<u8> {
    let engine = LoroEngine;
    let doc = engine.create(1);
    for k in 0..keys {
        doc.set_peer_id(1 + k as u64 % peers).unwrap();
        doc.get_map("m")
            .insert(&format!("key{k}"), k as i64)
            .unwrap();
        doc.commit();
    }
    engine.export(&doc, None).unwrap()
}

/// Heap held by a replica made from `bytes` and read once (what a
/// served document holds), and the node's estimate of it.
fn measured(bytes: &[u8]) -> (usize, usize) {
    let engine = LoroEngine;
    let before = alloc_meter::held();
    let mut doc = engine.create(2);
    engine.import(&mut doc, bytes).unwrap();
    let read = doc.get_text("t").to_string();
    drop(read);
    let held = alloc_meter::held().saturating_sub(before);
    let estimate = engine.resident_estimate(&doc);
    drop(doc);
    (held, estimate)
}

#[test]
fn the_estimate_of_a_replicas_memory_is_within_a_factor_of_two_of_its_heap() {
    let mut shapes: Vec<(String, Vec<u8>)> = Vec::new();
    for (edits, each) in [
        (1, 500),
        (50, 10),
        (1, 20_000),
        (500, 100),
        (5_000, 20),
        (100_000, 1),
        (1, 1_000_000),
        (20_000, 50),
    ] {
        shapes.push((
            format!("text, {edits} edits of {each} chars"),
            snapshot(edits, each),
        ));
    }
    for (keys, peers) in [(10, 1), (1_000, 10), (20_000, 100)] {
        shapes.push((
            format!("map, {keys} keys by {peers} peers"),
            map_snapshot(keys, peers),
        ));
    }
    let mut lines = Vec::new();
    let mut off = Vec::new();
    for (shape, bytes) in &shapes {
        let (held, estimate) = measured(bytes);
        let ratio = estimate as f64 / held.max(1) as f64;
        lines.push(format!(
            "{shape}: snapshot {} B, heap {held} B, estimate {estimate} B ({ratio:.2}x)",
            bytes.len()
        ));
        if !(0.5..=2.0).contains(&ratio) {
            off.push(shape.clone());
        }
    }
    eprintln!("{}", lines.join("\n"));
    assert!(
        off.is_empty(),
        "the estimate is off by more than 2x for {off:?}:\n{}",
        lines.join("\n")
    );
}
