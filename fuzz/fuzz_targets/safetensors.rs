//! libFuzzer target: [`kiln::fuzz::safetensors`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::safetensors(data));
