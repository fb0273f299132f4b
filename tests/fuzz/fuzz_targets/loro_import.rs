//! Fuzz target: see `docweave_tests::fuzz_loro::loro_import`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    docweave_tests::fuzz_loro::loro_import(data);
});
