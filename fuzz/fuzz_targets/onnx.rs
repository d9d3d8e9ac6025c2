//! libFuzzer target: [`kiln::fuzz::onnx`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzz::onnx(data));
