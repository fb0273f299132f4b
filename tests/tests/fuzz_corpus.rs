//! Replays every input the fuzzers kept (`fixtures/fuzz/<target>/`, grown
//! by `cargo +nightly fuzz run <target>` in `tests/fuzz`) through the same
//! target bodies, on stable, in every test run.

use std::path::PathBuf;

// Counts what each thread holds, for the memory target.
#[global_allocator]
static METER: docweave_tests::alloc_meter::Meter = docweave_tests::alloc_meter::Meter;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../fixtures/fuzz/{target}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, body: fn(&[u8])) {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= 10,
        "{target}: only {} corpus inputs; run the fuzzer and commit its corpus",
        inputs.len()
    );
    for (path, bytes) in &inputs {
        let outcome = std::panic::catch_unwind(|| body(bytes));
        assert!(outcome.is_ok(), "{target}: {} failed", path.display());
    }
    println!("{target}: {} corpus inputs replayed", inputs.len());
}

#[test]
fn every_kept_frame_input_decodes_or_fails_cleanly() {
    replay("frame", docweave_tests::fuzz::frame);
}

#[test]
fn every_kept_message_input_decodes_or_fails_cleanly() {
    replay("message", docweave_tests::fuzz::message);
}

#[test]
fn every_kept_loro_blob_imports_or_is_refused_without_a_panic() {
    replay("loro_import", docweave_tests::fuzz_loro::loro_import);
    // Nor with an allocation an attacker chose: the fuzzer found blobs of a
    // few hundred bytes that asked for gigabytes (an abort in production).
    for (path, bytes) in corpus("loro_import") {
        let (_, peak) =
            docweave_tests::alloc_meter::peak_of(|| docweave_tests::fuzz_loro::loro_import(&bytes));
        assert!(
            peak < 256 << 20,
            "{} held {} MiB",
            path.display(),
            peak >> 20
        );
    }
}

#[test]
fn every_kept_input_decodes_within_its_memory_bound() {
    // The meter counts (a replay with no meter would check nothing).
    let (_, peak) = docweave_tests::alloc_meter::peak_of(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "the allocation meter is not installed");
    replay("decode_memory", docweave_tests::fuzz_memory::decode_memory);
    // The native frames the other targets kept, too.
    for (path, bytes) in corpus("frame").iter().chain(corpus("message").iter()) {
        let mut input = vec![0u8];
        input.extend_from_slice(bytes.get(6..).unwrap_or(bytes));
        let outcome =
            std::panic::catch_unwind(|| docweave_tests::fuzz_memory::decode_memory(&input));
        assert!(outcome.is_ok(), "decode_memory: {} failed", path.display());
    }
}

#[test]
fn the_update_that_once_aborted_the_server_is_refused() {
    let poison = include_bytes!("../../fixtures/poison/loro-update-oplog-1571.bin");
    // As it came (the document path), and as fuzzed presence and versions.
    for selector in 0..4u8 {
        let mut input = vec![selector];
        input.extend_from_slice(poison);
        docweave_tests::fuzz_loro::loro_import(&input);
    }
}

#[test]
fn every_kept_node_input_sequence_leaves_a_working_node() {
    replay("node_inputs", docweave_tests::fuzz::node_inputs);
}
