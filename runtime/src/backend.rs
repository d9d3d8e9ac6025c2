//! The one trait every executor's device implements: memory, copies, launches.
//!
//! A plan ([`crate::plan::Plan`]) is device independent: buffers with arena
//! offsets and an ordered list of steps. A backend supplies the memory those
//! offsets point into and runs one step at a time over resolved pointers; the CPU
//! backend ([`crate::cpu::CpuBackend`]) runs steps synchronously on a thread pool.
//! A CUDA backend will enqueue them on a stream and `synchronize` at the end.

use crate::RunError;

/// A device that runs plan steps.
pub trait Backend: Send + Sync {
    /// Device memory (the arena, copies of inputs).
    type Memory: Send;

    /// A short name for messages (`cpu`).
    fn name(&self) -> &'static str;

    /// Allocates `bytes` of device memory, aligned for any element type.
    fn allocate(&self, bytes: usize) -> Result<Self::Memory, RunError>;

    /// The device address of `memory` (for pointer tables).
    fn address(&self, memory: &mut Self::Memory) -> *mut u8;

    /// Copies host bytes into device memory at `offset`.
    fn copy_in(
        &self,
        memory: &mut Self::Memory,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), RunError>;

    /// Copies device memory at `offset` into host bytes.
    fn copy_out(
        &self,
        memory: &Self::Memory,
        offset: usize,
        out: &mut [u8],
    ) -> Result<(), RunError>;

    /// Runs step `index` of the plan over `pointers` (one per plan buffer).
    fn launch(&self, index: usize, pointers: &[*mut u8]) -> Result<(), RunError>;

    /// Waits until every launched step has finished.
    fn synchronize(&self) -> Result<(), RunError>;
}
