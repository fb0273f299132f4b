//! Fuzz target: see `docweave_tests::fuzz::node_inputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    docweave_tests::fuzz::node_inputs(data);
});
