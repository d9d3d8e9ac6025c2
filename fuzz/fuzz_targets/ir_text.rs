//! libFuzzer target: [`kiln::fuzz::ir_text`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::ir_text(data));
