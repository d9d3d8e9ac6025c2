//! kiln's model frontends.
#![warn(missing_docs)]
pub mod gguf;
pub mod hf;
pub mod onnx;
pub mod safetensors;
pub mod tokenizer;
