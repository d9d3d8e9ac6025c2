//! Code generation: scheduling into kernels, the kernel IR, LLVM and CUDA C backends.
//!
//! So far: the LLVM toolchain for the CPU backend ([`llvm`]: host target
//! machine, O3, JIT), proven on a vectorized add kernel.
#![warn(missing_docs)]

pub mod host_reason;
pub mod kernel;
pub mod llvm;
pub mod program;
pub mod schedule;
pub mod specialize;
