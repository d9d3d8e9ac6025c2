//! The GPU executor: a [`GpuProgram`](kiln_codegen::gpu::program::GpuProgram)
//! run on a [`GpuDevice`].
//!
//! - [`device`]: the device trait (memory, copies, launches, graph capture);
//! - [`driver`]: the real GPU through the CUDA driver API ([`CudaDevice`]),
//!   its large GEMMs through [`cublas`] as [`cublas_plan`] maps them;
//! - [`sim`]: the simulated GPU, kernels on the SIMT interpreter ([`SimDevice`]);
//! - [`GpuExecutable`]: constants uploaded once, resident device buffers, host
//!   steps between copies, a graph captured and replayed — the same code on
//!   both devices, so `--target cuda-sim` tests the runtime with the kernels.

pub mod cublas;
pub mod cublas_plan;
pub mod device;
pub mod driver;
mod exec;
pub mod sim;

pub use cublas::cublas_present;
pub use device::{DevicePtr, GpuDevice, GraphId};
pub use driver::{driver_present, CudaDevice, CudaGpu};
pub use exec::{GpuExecutable, GRAPHS_ENV};
pub use sim::SimDevice;
