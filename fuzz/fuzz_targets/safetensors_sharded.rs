//! libFuzzer target: [`kiln::fuzz::safetensors_sharded`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::safetensors_sharded(data));
