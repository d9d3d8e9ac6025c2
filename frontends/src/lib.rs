//! kiln's model frontends.
#![warn(missing_docs)]
pub mod onnx;
pub mod safetensors;
