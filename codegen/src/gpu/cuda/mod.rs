//! The CUDA C printer: [`GpuKernel`]s → one CUDA C translation unit, which
//! [`nvrtc`] compiles to cubin or PTX at run time.
//!
//! The C keeps the kernel IR's semantics exactly (those of the SIMT interpreter,
//! [`crate::gpu::sim`], and of the CPU backend); where plain C differs, it calls a
//! helper (see the table in `helpers.rs`). The mapping:
//!
//! | kernel IR | CUDA C |
//! |---|---|
//! | kernel `name`, launch `block` | `extern "C" __global__ void __launch_bounds__(block) name(...)` |
//! | buffer `bI` (read / write / read-write) | parameter `const T* __restrict__ bI_name` / `T* __restrict__ bI_name` |
//! | shared array `sI` | `__shared__ __align__(16) T sI_name[len]` |
//! | register `vN` (`let` / `var`) | `const T vN = ...;` / `T vN = ...;` |
//! | `f32 f64 f16 bf16` | `float double __half __nv_bfloat16` (`cuda_fp16.h`, `cuda_bf16.h` included only when used) |
//! | `i8 … i64`, `u8 … u64` | `signed char short int long long`, `unsigned char … unsigned long long` |
//! | `bool` | `bool` in registers, one byte 0/1 (`unsigned char`) in memory |
//! | `thread`, `lane`, `warp`, `block.x`, `block_dim`, `grid_dim.x` | `long long` locals from `threadIdx.x`, `& 31`, `>> 5`, `blockIdx`, `blockDim.x`, `gridDim` |
//! | `for v in a..b step c` | `for (long long v = a; v < b; v += c)` |
//! | `barrier` | `__syncthreads()` |
//! | shuffle xor / down / up / index | `__shfl_{xor,down,up,}_sync(0xffffffff, ...)`; a non-constant offset through `kiln_shfl_lane` |
//! | `load_vec` / `store_vec` of n elements | one access through an `__align__(n·size)` struct `kiln_<type>x<n>` |
//! | `atomic_add` | `atomicAdd` (i64 on the `unsigned long long` bits) |
//! | float ops | operators, `expf`, `rintf` (round half to even), `fmodf`, `isnan`; `max`/`min` propagate NaN (`kiln_max_f32`) |
//! | integer ops | wrap (`kiln_add_i64`, …; unsigned 32/64-bit ops are plain C), shifts past the width give 0 or the sign |
//! | `cast` | ONNX `Cast`: `__float2half_rn`, `__double2bfloat16`, …, saturating float → integer (`kiln_f32_to_i32`), `≠ 0` for bool |
//!
//! `select` is C's `?:`: the IR evaluates both operands, so a scheduler keeps
//! both in bounds, and skipping the unused one changes nothing. Float `a·b + c`
//! may become one FMA (NVRTC's default `--fmad=true`; the CPU backend's
//! `contract` flag allows the same), so a result can differ from the
//! interpreter's in the last bit; nothing else is relaxed (no fast math).
//! Loop counters use plain `+=`: a loop whose counter would overflow `i64` is
//! undefined in C (the interpreter stops it), and a scheduler's loops end at
//! buffer lengths far below that. Integer division by zero is the scheduler's to
//! prevent, as on the CPU.
//!
//! Names: `vN` registers, `bI_…`/`sI_…` memories, `thread_idx`, `lane`, …
//! positions; the prefix `kiln_` belongs to the helpers, so kernel names may not
//! use it.

pub mod cache;
mod ctype;
mod emit;
mod helpers;
pub mod nvrtc;
pub mod ptxas;

use super::{GpuKernel, GpuKernelError, Scalar};
use emit::Support;

/// Why kernels could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The kernel fails [`GpuKernel::check`] (a scheduler bug).
    #[error(transparent)]
    IllFormed(#[from] GpuKernelError),
    /// The kernel's name is not a C identifier, or uses the helpers' prefix.
    #[error("GPU kernel `{name}`: {why}")]
    Name {
        /// The kernel's name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two kernels of one translation unit share a name.
    #[error("GPU kernel `{0}` is in the CUDA module twice")]
    Duplicate(String),
}

/// Several kernels printed into one CUDA C translation unit (one NVRTC program),
/// sharing their helper functions and includes.
#[derive(Debug, Default)]
pub struct CudaModule {
    support: Support,
    names: Vec<String>,
    kernels: Vec<String>,
    fp16: bool,
    bf16: bool,
}

impl CudaModule {
    /// An empty module.
    pub fn new() -> CudaModule {
        CudaModule::default()
    }

    /// Checks `kernel` and prints it into the module.
    pub fn add(&mut self, kernel: &GpuKernel) -> Result<(), CudaError> {
        kernel.check()?;
        let name = &kernel.name;
        let bad = |why| CudaError::Name {
            name: name.clone(),
            why,
        };
        if !ctype::is_identifier(name) {
            return Err(bad("not a C identifier"));
        }
        if name.starts_with("kiln_") {
            return Err(bad(
                "the prefix `kiln_` is reserved for the printer's helpers",
            ));
        }
        if self.names.contains(name) {
            return Err(CudaError::Duplicate(name.clone()));
        }
        let scalars = kernel.scalars();
        self.fp16 |= scalars.contains(&Scalar::F16);
        self.bf16 |= scalars.contains(&Scalar::BF16);
        self.kernels.push(emit::kernel(kernel, &mut self.support));
        self.names.push(name.clone());
        Ok(())
    }

    /// The names of the module's kernels (their symbols), in order.
    pub fn kernel_names(&self) -> &[String] {
        &self.names
    }

    /// The translation unit: includes, helpers, vector types, then the kernels.
    pub fn source(&self) -> String {
        let mut out = format!(
            "// CUDA C generated by kiln: {} kernel{}.\n",
            self.names.len(),
            if self.names.len() == 1 { "" } else { "s" }
        );
        if self.fp16 {
            out.push_str("#include <cuda_fp16.h>\n");
        }
        if self.bf16 {
            out.push_str("#include <cuda_bf16.h>\n");
        }
        let parts = (self.support.helpers.values())
            .chain(self.support.vectors.values())
            .chain(&self.kernels);
        for part in parts {
            out.push('\n');
            out.push_str(part);
        }
        out
    }
}

/// One kernel as a translation unit of its own.
pub fn kernel_source(kernel: &GpuKernel) -> Result<String, CudaError> {
    module_source(std::slice::from_ref(kernel))
}

/// `kernels` as one translation unit.
pub fn module_source(kernels: &[GpuKernel]) -> Result<String, CudaError> {
    let mut m = CudaModule::new();
    for k in kernels {
        m.add(k)?;
    }
    Ok(m.source())
}
