//! Fuzz target: see `docweave_tests::fuzz::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    docweave_tests::fuzz::frame(data);
});
