//! Code generation: from an optimized graph to machine code.
//!
//! [`specialize`] binds a graph's symbolic dims to concrete shapes and folds
//! weight-only subgraphs; [`schedule`] turns the graph into a [`program::Program`]
//! of kernel launches, GEMMs, host steps (ops left to the reference interpreter)
//! and index checks; [`kernel`] is the printable, checked loop-nest kernel IR;
//! [`llvm`] lowers kernels to LLVM IR, optimizes them (O3 for the host or a named
//! CPU) and emits the ELF object that the CPU runtime links with ORC or stores in
//! an artifact. [`gpu`] is the GPU kernel IR of the CUDA backend (launch shapes,
//! shared memory, barriers, shuffles) with its checker and a SIMT interpreter that
//! runs GPU kernels on the CPU, and its CUDA C printer with NVRTC compilation
//! ([`gpu::cuda`]); the GPU scheduler and runtime are not built yet.
#![warn(missing_docs)]

pub mod gpu;
pub mod host_reason;
pub mod kernel;
pub mod llvm;
pub mod program;
pub mod schedule;
pub mod specialize;
