//! libFuzzer target: [`kiln::fuzz::tokenizer`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::tokenizer(data));
