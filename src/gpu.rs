//! The CUDA target: a scheduled program lowered to GPU kernels, printed as one
//! CUDA C module, compiled by NVRTC for the GPU's architecture (through the
//! on-disk kernel cache) and run by the CUDA driver.

use std::sync::Arc;

use kiln_codegen::gpu::cuda::cache::{CachedModule, KernelCache};
use kiln_codegen::gpu::cuda::module_source;
use kiln_codegen::gpu::cuda::nvrtc::{Arch, Nvrtc};
use kiln_codegen::gpu::program::{GpuProgram, LowerOptions};
use kiln_codegen::gpu::GpuKernel;
use kiln_ir::Graph;
use kiln_runtime::cuda::{cublas_present, CudaDevice, CudaGpu, GpuExecutable};

use crate::cpu::{own_constants_of, Build};
use crate::Error;

/// GEMM steps of at least this many multiply-adds go to cuBLAS when the
/// library loads; smaller ones stay kiln's kernels (matrix-vector for at most
/// four rows, tiled otherwise).
///
/// A million multiply-adds is 2 MFLOP: under a microsecond even for kiln's
/// plain tiled kernel at a few TFLOP/s, while any launch costs a few: below
/// it, the launch and reading the operands once dominate, and kiln's kernels
/// pay no more for them than a library call. Above it cuBLAS's tuned tiles
/// (49 TFLOP/s in f32 without TF32, measured on this project's GPU) pull
/// ahead. Single-sequence decode's matrix-vector products are not GEMM steps
/// (the scheduler emits them as kernels that read f16 weights at full
/// bandwidth), so this threshold does not move them; batched decode's
/// few-row products above it do go to cuBLAS (over f32 operands either way).
/// A reasoned starting point, not yet a measured crossover.
pub const CUDA_LIBRARY_GEMM_MIN_MACS: u64 = 1 << 20;

/// Environment variable choosing the GPU (its ordinal; default 0).
pub const DEVICE_ENV: &str = "KILN_CUDA_DEVICE";

/// Opens the GPU kiln runs on (`KILN_CUDA_DEVICE`, default the first); a
/// machine without a driver or device gets a one-line error.
pub fn open_gpu() -> Result<Arc<CudaGpu>, Error> {
    let ordinal = match std::env::var(DEVICE_ENV) {
        Ok(v) => v.trim().parse::<usize>().map_err(|_| {
            Error::Input(format!("{DEVICE_ENV}=`{v}` is not a GPU number (0, 1, …)"))
        })?,
        Err(_) => 0,
    };
    Ok(CudaGpu::open(ordinal)?)
}

/// `kernels` as one CUDA C module compiled for `arch`: a cubin when NVRTC
/// knows the architecture, PTX otherwise; from the kernel cache when it holds
/// the module.
pub fn compile_kernels(kernels: &[GpuKernel], arch: Arch) -> Result<CachedModule, Error> {
    let source = module_source(kernels).map_err(|e| Error::Codegen(e.to_string()))?;
    let nvrtc = Nvrtc::load().map_err(|e| Error::Gpu(e.to_string()))?;
    KernelCache::default_location()
        .compile_for(&nvrtc, &source, arch)
        .map_err(|e| Error::Codegen(e.to_string()))
}

/// Specializes and schedules `graph` for `shapes`, compiles its GPU kernels for
/// `gpu` and loads them; large GEMMs go to cuBLAS when it loads
/// ([`CUDA_LIBRARY_GEMM_MIN_MACS`]).
pub fn build_cuda(
    graph: &Graph,
    shapes: &[Vec<usize>],
    threads: usize,
    gpu: &Arc<CudaGpu>,
) -> Result<Build, Error> {
    let (program, specialized) = match crate::cpu::program_for_with(
        graph,
        shapes,
        kiln_codegen::schedule::ScheduleOptions::default(),
    )? {
        Ok(p) => p,
        Err((graph, reason)) => return Ok(Build::Interpreted { graph, reason }),
    };
    let constants = own_constants_of(&program, &specialized);
    let options = LowerOptions {
        library_gemm_min_macs: cublas_present().then_some(CUDA_LIBRARY_GEMM_MIN_MACS),
    };
    let gpu_program = GpuProgram::lower_with(program, options);
    let module = compile_kernels(&gpu_program.kernels, gpu.arch())?;
    let device = CudaDevice::new(gpu.clone(), &module.image, &gpu_program.kernels)?;
    let exe = GpuExecutable::new(gpu_program, Box::new(device), constants, threads)?;
    Ok(Build::Gpu(Box::new(exe)))
}
