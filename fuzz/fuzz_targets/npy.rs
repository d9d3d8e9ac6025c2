//! libFuzzer target: [`kiln::fuzz::npy`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::npy(data));
