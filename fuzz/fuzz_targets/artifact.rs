//! libFuzzer target: [`kiln::fuzz::artifact`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::artifact(data));
