//! Code generation: scheduling into kernels, the kernel IR, LLVM and CUDA C backends.
//!
//! Not built yet: the foundation issue only lays out the crate.
#![warn(missing_docs)]
