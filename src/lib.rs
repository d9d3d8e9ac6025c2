//! kiln: a model compiler for neural networks.
#![warn(missing_docs)]
pub use kiln_ir as ir;
