//! cuBLAS on a [`CudaDevice`](super::driver::CudaDevice)'s stream: a GEMM
//! step, planned by [`cublas_plan`](super::cublas_plan), becomes
//! `cublasGemmStridedBatchedEx` calls (or a memset of `c` when `k = 0`).
//!
//! **Precision.** f32 accumulates in f32 (`CUBLAS_COMPUTE_32F`, no TF32: the
//! results stay within f32 rounding of the CPU's); `KILN_CUDA_TF32=1` opts
//! into TF32 tensor cores (`CUBLAS_COMPUTE_32F_FAST_TF32`, about 10 bits of
//! mantissa per product). f16 is stored as f16 and accumulated in f32
//! (`CUBLAS_COMPUTE_32F`, alpha and beta as f32), f64 in f64.
//!
//! **Graphs.** The handle gets a workspace of its own ([`WORKSPACE_BYTES`])
//! after its stream is set, so a call captured into a CUDA graph allocates
//! nothing and the graph's workspace stays valid for every replay: the calls
//! are as capturable as kiln's own launches.
//!
//! **No library, no panic.** `cudarc` panics when it cannot load libcublas;
//! [`Cublas::new`] asks [`cublas_present`] first and returns an error.

use std::ffi::c_void;
use std::sync::OnceLock;

use cudarc::cublas::result::CublasError;
use cudarc::cublas::sys;
use cudarc::driver::result as driver;
use cudarc::driver::sys as driver_sys;
use kiln_ir::DType;

use super::cublas_plan::{CublasPlan, Trans};
use super::device::DevicePtr;
use crate::RunError;

/// The cuBLAS library's file name, as messages cite it.
pub const CUBLAS_LIB: &str = "libcublas.so.13";

/// Environment variable that lets f32 GEMMs use TF32 tensor cores (`1`).
pub const TF32_ENV: &str = "KILN_CUDA_TF32";

/// Device memory each handle gets as its workspace: what the cuBLAS guide
/// recommends for Hopper (32 MiB; 4 MiB suffices on older GPUs). Set
/// explicitly so that captured calls never allocate one of their own.
pub const WORKSPACE_BYTES: usize = 32 << 20;

/// Whether the cuBLAS library loads on this machine (asked once: the answer
/// does not change while the process runs, and each look opens the library).
pub fn cublas_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to open the library; no cuBLAS call is made.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// How scale factors are passed: as the compute type's scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// `float` alpha and beta.
    F32,
    /// `double` alpha and beta.
    F64,
}

/// The cuBLAS types of a GEMM over one element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTypes {
    /// Storage type of A, B and C.
    pub data: sys::cudaDataType,
    /// Accumulation.
    pub compute: sys::cublasComputeType_t,
    /// Type of alpha and beta.
    pub scale: Scale,
}

/// The types for `dtype` (`tf32`: f32 may use TF32 tensor cores), or `None`
/// for an element type kiln does not send to cuBLAS.
pub fn gemm_types(dtype: DType, tf32: bool) -> Option<GemmTypes> {
    use sys::cublasComputeType_t as C;
    use sys::cudaDataType as D;
    Some(match dtype {
        DType::F32 => GemmTypes {
            data: D::CUDA_R_32F,
            compute: if tf32 {
                C::CUBLAS_COMPUTE_32F_FAST_TF32
            } else {
                C::CUBLAS_COMPUTE_32F
            },
            scale: Scale::F32,
        },
        DType::F16 => GemmTypes {
            data: D::CUDA_R_16F,
            compute: C::CUBLAS_COMPUTE_32F,
            scale: Scale::F32,
        },
        DType::F64 => GemmTypes {
            data: D::CUDA_R_64F,
            compute: C::CUBLAS_COMPUTE_64F,
            scale: Scale::F64,
        },
        _ => return None,
    })
}

/// Whether `KILN_CUDA_TF32` asks for TF32 (exactly `1`).
fn tf32_requested() -> bool {
    std::env::var(TF32_ENV).is_ok_and(|v| v.trim() == "1")
}

fn op(t: Trans) -> sys::cublasOperation_t {
    match t {
        Trans::N => sys::cublasOperation_t::CUBLAS_OP_N,
        Trans::T => sys::cublasOperation_t::CUBLAS_OP_T,
    }
}

/// A failed cuBLAS call as a device error naming the call and the status
/// (`CUBLAS_STATUS_INVALID_VALUE`: the enum's own name, so no library call is
/// needed to spell it).
fn blas_error(call: &str, e: CublasError) -> RunError {
    RunError::Device(format!("{call} failed: {:?}", e.0))
}

fn driver_error(call: &str, e: driver::DriverError) -> RunError {
    RunError::Device(format!("{call} failed: {:?}", e.0))
}

/// A cuBLAS handle bound to one stream, with its workspace.
pub struct Cublas {
    handle: sys::cublasHandle_t,
    workspace: DevicePtr,
    tf32: bool,
}

// SAFETY: the handle's configuration (stream, workspace) is set once in `new`
// and never changed; cuBLAS allows calls on one handle from several threads
// under that condition, and the calls are ordered by the one stream.
unsafe impl Send for Cublas {}
// SAFETY: as above.
unsafe impl Sync for Cublas {}

impl Cublas {
    /// A handle whose calls run on `stream`, with a workspace of its own.
    /// Without the library: [`RunError::NoDevice`], never a panic.
    ///
    /// # Safety
    /// `stream` is a live stream whose context is current on this thread, and
    /// it outlives the handle.
    pub unsafe fn new(stream: driver_sys::CUstream) -> Result<Cublas, RunError> {
        if !cublas_present() {
            return Err(RunError::NoDevice(format!(
                "no cuBLAS library found ({CUBLAS_LIB})"
            )));
        }
        let handle =
            cudarc::cublas::result::create_handle().map_err(|e| blas_error("cublasCreate", e))?;
        let mut blas = Cublas {
            handle,
            workspace: 0,
            tf32: tf32_requested(),
        };
        // SAFETY: the context is current (the caller's contract).
        blas.workspace =
            unsafe { driver::malloc_sync(WORKSPACE_BYTES) }.map_err(|e| match e.0 {
                driver_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                    RunError::OutOfMemory(WORKSPACE_BYTES)
                }
                _ => driver_error("cuMemAlloc", e),
            })?;
        // SAFETY: `handle` was just created and `stream` is alive (the
        // caller's); the workspace is set after the stream because setting the
        // stream resets it to cuBLAS's own pool. The workspace is device memory
        // of `WORKSPACE_BYTES` owned by `blas` until its drop.
        unsafe {
            cudarc::cublas::result::set_stream(handle, stream as sys::cudaStream_t)
                .map_err(|e| blas_error("cublasSetStream", e))?;
            sys::cublasSetWorkspace_v2(handle, blas.workspace as *mut c_void, WORKSPACE_BYTES)
                .result()
                .map_err(|e| blas_error("cublasSetWorkspace", e))?;
        }
        Ok(blas)
    }

    /// Whether f32 products use TF32 tensor cores.
    pub fn tf32(&self) -> bool {
        self.tf32
    }

    /// Submits `plan` (of a step over `dtype`) on the handle's stream, with
    /// `a`, `b` and `c` the step's buffers. The context must be current.
    ///
    /// # Safety
    /// `a`, `b` and `c` address device buffers laid out as the planned step
    /// describes; `stream` is the handle's stream (for the memset of
    /// [`CublasPlan::Zero`]).
    pub unsafe fn gemm(
        &self,
        plan: &CublasPlan,
        dtype: DType,
        [a, b, c]: [DevicePtr; 3],
        stream: driver_sys::CUstream,
    ) -> Result<(), RunError> {
        let (call, alpha, bases) = match plan {
            CublasPlan::Nothing => return Ok(()),
            CublasPlan::Zero { bytes } => {
                // SAFETY: `c` holds the step's dense output of `bytes` bytes
                // (the caller's contract); a memset on the stream is ordered
                // and capturable like the calls.
                return unsafe { driver::memset_d8_async(c, 0, *bytes, stream) }
                    .map_err(|e| driver_error("cuMemsetD8Async", e));
            }
            CublasPlan::Calls { call, alpha, bases } => (call, *alpha, bases),
        };
        let types = gemm_types(dtype, self.tf32)
            .ok_or_else(|| RunError::Internal(format!("a cuBLAS plan for a GEMM over {dtype}")))?;
        // alpha and beta live on the host for the call (cuBLAS's default
        // pointer mode), as the compute type's scalar.
        let (alpha32, alpha64, zero32, zero64) = (alpha as f32, alpha, 0f32, 0f64);
        let (alpha, beta): (*const c_void, *const c_void) = match types.scale {
            Scale::F32 => (
                &alpha32 as *const f32 as *const c_void,
                &zero32 as *const f32 as *const c_void,
            ),
            Scale::F64 => (
                &alpha64 as *const f64 as *const c_void,
                &zero64 as *const f64 as *const c_void,
            ),
        };
        let elem = dtype.size() as u64;
        for at in bases {
            // cuBLAS's A is the step's b, its B the step's a (the plan's swap).
            let (pa, pb, pc) = (
                b + at.b as u64 * elem,
                a + at.a as u64 * elem,
                c + at.c as u64 * elem,
            );
            // SAFETY: the plan's shapes, leading dimensions, strides and bases
            // address only elements of the step's buffers (proven on the host
            // by the plan's tests); alpha and beta outlive the call, which
            // reads them before returning (host pointer mode).
            unsafe {
                sys::cublasGemmStridedBatchedEx(
                    self.handle,
                    op(call.transa),
                    op(call.transb),
                    call.m,
                    call.n,
                    call.k,
                    alpha,
                    pa as *const c_void,
                    types.data,
                    call.lda,
                    call.stride_a,
                    pb as *const c_void,
                    types.data,
                    call.ldb,
                    call.stride_b,
                    beta,
                    pc as *mut c_void,
                    types.data,
                    call.ldc,
                    call.stride_c,
                    call.batch_count,
                    types.compute,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .result()
            .map_err(|e| blas_error("cublasGemmStridedBatchedEx", e))?;
        }
        Ok(())
    }
}

impl Drop for Cublas {
    /// Destroys the handle, then frees its workspace; the owner makes the
    /// context current and lets the stream's work finish first.
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once; the workspace is no longer
        // used once the handle is gone and the stream has drained.
        unsafe {
            let _ = cudarc::cublas::result::destroy_handle(self.handle);
            if self.workspace != 0 {
                let _ = driver::free_sync(self.workspace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_follows_the_element_type_and_tf32_is_opt_in() {
        use sys::cublasComputeType_t as C;
        use sys::cudaDataType as D;
        let t = gemm_types(DType::F32, false).unwrap();
        assert_eq!(
            (t.data, t.compute, t.scale),
            (D::CUDA_R_32F, C::CUBLAS_COMPUTE_32F, Scale::F32)
        );
        let t = gemm_types(DType::F32, true).unwrap();
        assert_eq!(t.compute, C::CUBLAS_COMPUTE_32F_FAST_TF32);
        for tf32 in [false, true] {
            let t = gemm_types(DType::F16, tf32).unwrap();
            assert_eq!(
                (t.data, t.compute, t.scale),
                (D::CUDA_R_16F, C::CUBLAS_COMPUTE_32F, Scale::F32)
            );
            let t = gemm_types(DType::F64, tf32).unwrap();
            assert_eq!(
                (t.data, t.compute, t.scale),
                (D::CUDA_R_64F, C::CUBLAS_COMPUTE_64F, Scale::F64)
            );
        }
        assert_eq!(gemm_types(DType::BF16, false), None);
        assert_eq!(gemm_types(DType::I64, false), None);
    }

    #[test]
    fn errors_name_the_call_and_the_status() {
        let e = blas_error(
            "cublasGemmStridedBatchedEx",
            CublasError(sys::cublasStatus_t::CUBLAS_STATUS_INVALID_VALUE),
        );
        assert_eq!(
            e.to_string(),
            "CUDA: cublasGemmStridedBatchedEx failed: CUBLAS_STATUS_INVALID_VALUE"
        );
    }

    #[test]
    fn without_the_library_a_handle_is_an_error_not_a_panic() {
        if cublas_present() {
            eprintln!("skip: {CUBLAS_LIB} loads here; this test is for machines without it");
            return;
        }
        // SAFETY: without the library no CUDA call is reached, so the null
        // stream is never used.
        let e = unsafe { Cublas::new(std::ptr::null_mut()) }
            .err()
            .expect("no library, no handle");
        assert!(matches!(e, RunError::NoDevice(_)), "{e}");
        assert!(e.to_string().contains(CUBLAS_LIB), "{e}");
    }
}
