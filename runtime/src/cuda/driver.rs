//! The real GPU, through the CUDA driver API (`cudarc`, loaded at run time).
//!
//! [`CudaGpu::open`] finds the driver and a device and retains its primary
//! context; [`CudaDevice::new`] loads one program's compiled module (a cubin,
//! or PTX the driver compiles) on a stream of its own. Every entry point makes
//! the context current on the calling thread first, so executables may be used
//! from any thread.
//!
//! Large GEMM steps go through cuBLAS ([`super::cublas`]) when the library
//! loads: one handle per [`CudaDevice`], on its stream, so its calls are ordered
//! with the kernels and captured into graphs with them.
//!
//! **No driver, no panic.** `cudarc` panics when a library it needs is missing,
//! so nothing here reaches it before [`driver_present`] has said the driver
//! library loads; without one, [`CudaGpu::open`] returns
//! [`RunError::NoDevice`] with a one-line reason.

use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys};
use kiln_codegen::gpu::cuda::nvrtc::Arch;
use kiln_codegen::gpu::{GpuKernel, Launch};
use kiln_codegen::program::GemmStep;

use super::cublas::{cublas_present, Cublas};
use super::cublas_plan;
use super::device::{DevicePtr, GpuDevice, GraphId};
use crate::RunError;

/// The driver library's file name, as messages cite it.
pub const DRIVER_LIB: &str = "libcuda.so.1";

/// Whether the CUDA driver library can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library; no CUDA call is made.
    unsafe { sys::is_culib_present() }
}

fn driver_error(call: &str, e: result::DriverError) -> RunError {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e
        .error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    RunError::Device(format!("{call} failed: {name} ({text})"))
}

/// One GPU and its primary context.
pub struct CudaGpu {
    ordinal: usize,
    device: sys::CUdevice,
    context: sys::CUcontext,
    name: String,
    arch: Arch,
    multiprocessors: u32,
    memory_bytes: usize,
}

// SAFETY: a CUDA context may be made current on any thread; every use below
// does so first.
unsafe impl Send for CudaGpu {}
// SAFETY: as above; the driver API is thread-safe.
unsafe impl Sync for CudaGpu {}

impl CudaGpu {
    /// Opens GPU number `ordinal` (0 for the first).
    pub fn open(ordinal: usize) -> Result<Arc<CudaGpu>, RunError> {
        if !driver_present() {
            return Err(RunError::NoDevice(format!(
                "no CUDA driver found ({DRIVER_LIB}): this machine has no NVIDIA \
                 driver; use --target cpu, or --target cuda-sim to run the GPU \
                 program on the SIMT interpreter"
            )));
        }
        result::init().map_err(|e| {
            RunError::NoDevice(format!(
                "the CUDA driver ({DRIVER_LIB}) did not initialize: {}",
                driver_error("cuInit", e)
            ))
        })?;
        let count = result::device::get_count().map_err(|e| driver_error("cuDeviceGetCount", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(RunError::NoDevice(format!(
                "no CUDA device {ordinal}: the driver reports {count}"
            )));
        }
        let device =
            result::device::get(ordinal as i32).map_err(|e| driver_error("cuDeviceGet", e))?;
        // SAFETY: `device` came from `cuDeviceGet`.
        let context = unsafe { result::primary_ctx::retain(device) }
            .map_err(|e| driver_error("cuDevicePrimaryCtxRetain", e))?;
        let attribute = |a| {
            // SAFETY: as above.
            unsafe { result::device::get_attribute(device, a) }
                .map_err(|e| driver_error("cuDeviceGetAttribute", e))
        };
        use sys::CUdevice_attribute as A;
        let major = attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let multiprocessors = attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let name = result::device::get_name(device).unwrap_or_else(|_| "NVIDIA GPU".into());
        // SAFETY: as above.
        let memory_bytes = unsafe { result::device::total_mem(device) }.unwrap_or(0);
        Ok(Arc::new(CudaGpu {
            ordinal,
            device,
            context,
            name,
            arch: arch_of(major as u32, minor as u32),
            multiprocessors: multiprocessors.max(1) as u32,
            memory_bytes,
        }))
    }

    /// The architecture kiln compiles for on this GPU.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The device's name (`NVIDIA H100 80GB HBM3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Streaming multiprocessors.
    pub fn multiprocessors(&self) -> u32 {
        self.multiprocessors
    }

    /// Device memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Makes the context current on this thread.
    fn bind(&self) -> Result<(), RunError> {
        // SAFETY: the context is retained until `self` drops.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| driver_error("cuCtxSetCurrent", e))
    }
}

/// The architecture kiln compiles for on a GPU of compute capability
/// `major.minor`: Hopper's architecture-specific `sm_90a` (wgmma, TMA), the
/// GPU's own `sm_XY` otherwise.
pub fn arch_of(major: u32, minor: u32) -> Arch {
    let number = major * 10 + minor;
    Arch {
        number,
        suffix: (number == 90).then_some('a'),
    }
}

impl Drop for CudaGpu {
    fn drop(&mut self) {
        // SAFETY: retained in `open`; released once.
        let _ = unsafe { result::primary_ctx::release(self.device) };
    }
}

/// A GPU with one program's module loaded, and a stream for its work.
pub struct CudaDevice {
    gpu: Arc<CudaGpu>,
    module: sys::CUmodule,
    stream: sys::CUstream,
    functions: Vec<(sys::CUfunction, Launch)>,
    graphs: Mutex<Vec<sys::CUgraphExec>>,
    /// cuBLAS on `stream`, when the library loads.
    blas: Option<Cublas>,
}

// SAFETY: the handles belong to a context made current before every use; the
// driver API is thread-safe, and graph handles are guarded by a mutex.
unsafe impl Send for CudaDevice {}
// SAFETY: as above.
unsafe impl Sync for CudaDevice {}

impl CudaDevice {
    /// Loads `image` (a cubin, or PTX text) holding `kernels` (by name) onto
    /// `gpu`, with a new stream, and a cuBLAS handle on it when
    /// [`cublas_present`] (a library that loads but fails to start is an
    /// error: the program was lowered expecting it).
    pub fn new(
        gpu: Arc<CudaGpu>,
        image: &[u8],
        kernels: &[GpuKernel],
    ) -> Result<CudaDevice, RunError> {
        gpu.bind()?;
        // PTX is text: the driver reads it up to a NUL.
        let mut owned;
        let image = if image.starts_with(b"\x7fELF") || image.ends_with(&[0]) {
            image
        } else {
            owned = image.to_vec();
            owned.push(0);
            &owned[..]
        };
        // SAFETY: `image` is a cubin or NUL-terminated PTX, alive for the call.
        let module = unsafe { result::module::load_data(image.as_ptr() as *const c_void) }
            .map_err(|e| RunError::Load(driver_error("cuModuleLoadData", e).to_string()))?;
        let mut functions = Vec::with_capacity(kernels.len());
        for k in kernels {
            let name = CString::new(k.name.as_str())
                .map_err(|_| RunError::Internal(format!("kernel name `{}`", k.name)))?;
            // SAFETY: `module` was loaded above and is not unloaded.
            let f = unsafe { result::module::get_function(module, name) }.map_err(|e| {
                RunError::Load(format!(
                    "kernel `{}`: {}",
                    k.name,
                    driver_error("cuModuleGetFunction", e)
                ))
            })?;
            functions.push((f, k.launch));
        }
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(|e| driver_error("cuStreamCreate", e))?;
        let mut device = CudaDevice {
            gpu,
            module,
            stream,
            functions,
            graphs: Mutex::new(Vec::new()),
            blas: None,
        };
        // Created last: on failure, dropping `device` releases the stream and
        // the module.
        if cublas_present() {
            // SAFETY: the stream was created above in the current context and
            // is destroyed only after the handle (`Drop`).
            device.blas = Some(unsafe { Cublas::new(device.stream) }?);
        }
        Ok(device)
    }

    /// Whether GEMM library steps run through cuBLAS.
    pub fn uses_cublas(&self) -> bool {
        self.blas.is_some()
    }
}

impl GpuDevice for CudaDevice {
    fn describe(&self) -> String {
        format!(
            "{} (GPU {}, {}, {} SMs, {:.1} GiB)",
            self.gpu.name,
            self.gpu.ordinal,
            self.gpu.arch,
            self.gpu.multiprocessors,
            self.gpu.memory_bytes as f64 / (1u64 << 30) as f64
        )
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RunError> {
        if bytes == 0 {
            return Ok(0);
        }
        self.gpu.bind()?;
        // SAFETY: the context is current.
        unsafe { result::malloc_sync(bytes) }.map_err(|e| match e.0 {
            sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => RunError::OutOfMemory(bytes),
            _ => driver_error("cuMemAlloc", e),
        })
    }

    fn free(&self, ptr: DevicePtr) {
        if ptr != 0 && self.gpu.bind().is_ok() {
            // SAFETY: allocated by `alloc`, freed once (the executable's
            // bookkeeping); the stream is synchronized first so no work uses it.
            unsafe {
                let _ = result::stream::synchronize(self.stream);
                let _ = result::free_sync(ptr);
            }
        }
    }

    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RunError> {
        if src.is_empty() {
            return Ok(());
        }
        self.gpu.bind()?;
        // SAFETY: `dst` addresses at least `src.len()` bytes (the caller's
        // plan); from pageable memory the call returns once `src` is staged.
        unsafe { result::memcpy_htod_async(dst, src, self.stream) }
            .map_err(|e| driver_error("cuMemcpyHtoDAsync", e))
    }

    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), RunError> {
        if dst.is_empty() {
            return Ok(());
        }
        self.gpu.bind()?;
        // SAFETY: `src` addresses at least `dst.len()` bytes; the stream is
        // synchronized before `dst` is read.
        unsafe {
            result::memcpy_dtoh_async(dst, src, self.stream)
                .map_err(|e| driver_error("cuMemcpyDtoHAsync", e))?;
            result::stream::synchronize(self.stream)
                .map_err(|e| driver_error("cuStreamSynchronize", e))
        }
    }

    fn launch(&self, kernel: usize, args: &[DevicePtr]) -> Result<(), RunError> {
        let &(f, launch) = self
            .functions
            .get(kernel)
            .ok_or_else(|| RunError::Internal(format!("no GPU kernel {kernel}")))?;
        self.gpu.bind()?;
        let mut values: Vec<DevicePtr> = args.to_vec();
        let mut params: Vec<*mut c_void> = values
            .iter_mut()
            .map(|v| v as *mut DevicePtr as *mut c_void)
            .collect();
        let [x, y, z] = launch.grid;
        // SAFETY: `f` belongs to the loaded module; the parameters are the
        // kernel's buffer pointers in order (the driver copies them at launch).
        unsafe {
            result::launch_kernel(
                f,
                (x, y, z),
                (launch.block, 1, 1),
                0,
                self.stream,
                &mut params,
            )
        }
        .map_err(|e| driver_error("cuLaunchKernel", e))
    }

    fn library_gemm(
        &self,
        step: &GemmStep,
        a: DevicePtr,
        b: DevicePtr,
        c: DevicePtr,
    ) -> Result<bool, RunError> {
        let Some(blas) = &self.blas else {
            return Ok(false);
        };
        let Some(plan) = cublas_plan::plan(step) else {
            return Ok(false);
        };
        self.gpu.bind()?;
        // SAFETY: `a`, `b` and `c` are the step's buffers (the executable's
        // pointer table over the program the step belongs to), and
        // `self.stream` is the handle's stream.
        unsafe { blas.gemm(&plan, step.dtype, [a, b, c], self.stream) }?;
        Ok(true)
    }

    fn library_captures(&self, step: &GemmStep) -> bool {
        // Exactly when `library_gemm` takes the step: then it only submits
        // cuBLAS calls or a memset to the stream.
        self.blas.is_some() && cublas_plan::plan(step).is_some()
    }

    fn synchronize(&self) -> Result<(), RunError> {
        self.gpu.bind()?;
        // SAFETY: the stream is alive until `self` drops.
        unsafe { result::stream::synchronize(self.stream) }
            .map_err(|e| driver_error("cuStreamSynchronize", e))
    }

    fn begin_capture(&self) -> Result<bool, RunError> {
        self.gpu.bind()?;
        // SAFETY: as above. Relaxed mode: other threads' unrelated CUDA calls
        // do not invalidate the capture.
        unsafe {
            result::stream::begin_capture(
                self.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED,
            )
        }
        .map_err(|e| driver_error("cuStreamBeginCapture", e))?;
        Ok(true)
    }

    fn end_capture(&self) -> Result<GraphId, RunError> {
        self.gpu.bind()?;
        // SAFETY: a capture was begun on this stream.
        let graph = unsafe { result::stream::end_capture(self.stream) }
            .map_err(|e| driver_error("cuStreamEndCapture", e))?;
        // SAFETY: `graph` is the captured graph; it is destroyed once
        // instantiated (the executable graph is independent of it).
        let exec = unsafe {
            let exec = result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0));
            let _ = result::graph::destroy(graph);
            exec
        }
        .map_err(|e| driver_error("cuGraphInstantiate", e))?;
        let mut graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
        graphs.push(exec);
        Ok(GraphId(graphs.len() - 1))
    }

    fn replay(&self, graph: GraphId) -> Result<(), RunError> {
        let exec = *self
            .graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(graph.0)
            .ok_or_else(|| RunError::Internal(format!("no CUDA graph {}", graph.0)))?;
        self.gpu.bind()?;
        // SAFETY: `exec` was instantiated on this context and not destroyed.
        unsafe { result::graph::launch(exec, self.stream) }
            .map_err(|e| driver_error("cuGraphLaunch", e))
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        if self.gpu.bind().is_err() {
            return;
        }
        // SAFETY: the handles were created in `new`/`end_capture` and are
        // destroyed once, after the stream's work has finished; the cuBLAS
        // handle goes before the stream it is bound to.
        unsafe {
            let _ = result::stream::synchronize(self.stream);
            drop(self.blas.take());
            for &g in self.graphs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = result::graph::exec_destroy(g);
            }
            let _ = result::stream::destroy(self.stream);
            let _ = result::module::unload(self.module);
        }
    }
}
