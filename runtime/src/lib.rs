//! The runtime: executable plans, memory planning and the backends that run them.
//!
//! - [`memory`]: the liveness-based arena planner;
//! - [`plan`]: where every buffer of a scheduled program lives;
//! - [`backend`]: the trait devices implement (allocate, copy, launch, synchronize);
//! - [`cpu`]: the CPU executor (JIT-linked kernels, GEMM library calls, host steps);
//! - [`cuda`]: the GPU executor, on the CUDA driver or the simulated GPU;
//! - [`artifact`]: the on-disk container of ahead-of-time compiled models.
#![warn(missing_docs)]

pub mod artifact;
pub mod backend;
pub mod cpu;
pub mod cuda;
mod inputs;
pub mod memory;
pub mod plan;

/// A failure while loading or running a compiled program.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The inputs do not match what the program was compiled for.
    #[error("{0}")]
    Input(String),
    /// A step failed (the node's name and why).
    #[error("node `{node}`: {message}")]
    Node {
        /// The node.
        node: String,
        /// What kind of failure (the interpreter's for host steps; an index out
        /// of range is [`kiln_ir::ErrorKind::Value`]).
        kind: kiln_ir::ErrorKind,
        /// What went wrong.
        message: String,
    },
    /// Machine code could not be loaded.
    #[error("loading compiled code: {0}")]
    Load(String),
    /// Memory could not be allocated.
    #[error("out of memory allocating {0} bytes")]
    OutOfMemory(usize),
    /// No GPU can be used (no driver, no device); the message says why.
    #[error("{0}")]
    NoDevice(String),
    /// A GPU call failed.
    #[error("CUDA: {0}")]
    Device(String),
    /// A bug in kiln (an inconsistent program).
    #[error("internal error: {0}")]
    Internal(String),
}
