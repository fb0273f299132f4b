//! Fuzz target: see `docweave_tests::fuzz_memory::decode_memory`.
#![no_main]

#[global_allocator]
static METER: docweave_tests::alloc_meter::Meter = docweave_tests::alloc_meter::Meter;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    docweave_tests::fuzz_memory::decode_memory(data);
});
