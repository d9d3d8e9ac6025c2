//! The device a GPU executable runs on: memory, copies, kernel launches and
//! graph capture, implemented by the CUDA driver ([`super::driver::CudaDevice`])
//! and by the SIMT interpreter ([`super::sim::SimDevice`]).
//!
//! Everything above this trait (the executable: its arena, pointer table,
//! uploads, host steps, graph capture and replay) is the same code on both, so
//! running on the simulated device tests the runtime as well as the kernels.

use kiln_codegen::program::GemmStep;

use crate::RunError;

/// An address in device memory (`CUdeviceptr` on CUDA). Zero is the address of
/// every empty allocation and is never read or written.
pub type DevicePtr = u64;

/// A captured sequence of launches, replayed as one unit (a CUDA graph).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphId(pub usize);

/// A GPU with one module of kernels loaded (the kernels of one program, by
/// index) and one stream: work is ordered in the order it is submitted.
pub trait GpuDevice: Send + Sync {
    /// The device in words, for messages (`NVIDIA H100 80GB HBM3 (sm_90)`).
    fn describe(&self) -> String;

    /// Allocates `bytes` of device memory, aligned to at least 256 bytes; zero
    /// bytes give the address 0.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RunError>;

    /// Frees an allocation (0 is ignored).
    fn free(&self, ptr: DevicePtr);

    /// Copies host bytes to `dst`, in stream order.
    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RunError>;

    /// Copies device bytes at `src` to the host; returns when they are there
    /// (after all work submitted before it).
    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), RunError>;

    /// Launches kernel `kernel` of the loaded module with one pointer per
    /// kernel buffer, in the kernel's buffer order.
    fn launch(&self, kernel: usize, args: &[DevicePtr]) -> Result<(), RunError>;

    /// A matrix product through the device's GEMM library, if it has one for
    /// `step` (`Ok(false)`: the caller computes it another way).
    fn library_gemm(
        &self,
        step: &GemmStep,
        a: DevicePtr,
        b: DevicePtr,
        c: DevicePtr,
    ) -> Result<bool, RunError> {
        let _ = (step, a, b, c);
        Ok(false)
    }

    /// Whether [`GpuDevice::library_gemm`] runs `step` on the device's stream
    /// in a way a graph capture records (so a program with library steps can
    /// still be captured). `false` (the default) when the library might leave
    /// it to the host, which copies: copies are not allowed while capturing.
    fn library_captures(&self, step: &GemmStep) -> bool {
        let _ = step;
        false
    }

    /// Waits until all submitted work has finished.
    fn synchronize(&self) -> Result<(), RunError>;

    /// Starts recording launches instead of running them (until
    /// [`GpuDevice::end_capture`]); copies are not allowed meanwhile.
    /// `Ok(false)`: this device cannot capture, and nothing changed.
    fn begin_capture(&self) -> Result<bool, RunError>;

    /// Stops recording; the launches recorded become a graph.
    fn end_capture(&self) -> Result<GraphId, RunError>;

    /// Runs a captured graph (its launches, in order, with the pointers they
    /// were captured with).
    fn replay(&self, graph: GraphId) -> Result<(), RunError>;
}
