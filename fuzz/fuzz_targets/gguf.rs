//! libFuzzer target: [`kiln::fuzz::gguf`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::gguf(data));
