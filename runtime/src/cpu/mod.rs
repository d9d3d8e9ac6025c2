//! The CPU executor: a scheduled program's kernels linked into this process, its
//! GEMMs through the `gemm` crate, its host steps through the reference
//! interpreter, all on a rayon thread pool of the size asked for.
//!
//! [`CpuExecutable`] is `Send + Sync`: concurrent [`CpuExecutable::run`] calls
//! each take an arena of their own (from a pool, so repeated runs allocate
//! nothing) and share the code, the constants and the threads.

pub mod bf16_dot;
mod control;
pub(crate) mod gemm;
pub(crate) mod host;

pub use gemm::library_isa as gemm_library_isa;

use std::sync::{Arc, Mutex};

use kiln_codegen::llvm::isa::IsaLevel;
use kiln_codegen::llvm::lower::KernelFn;
use kiln_codegen::llvm::object::LoadedObject;
use kiln_codegen::program::{BufferId, Program, Step};
use kiln_ir::{DType, Tensor};
use rayon::prelude::*;

use crate::backend::Backend;
use crate::plan::{Location, Plan};
use crate::RunError;

/// Kernels whose buffers hold fewer elements than this run on one thread (the
/// cost of waking the pool would dominate).
pub const MIN_PARALLEL_ELEMENTS: usize = 1 << 15;

/// Most chunks a parallel loop is split into per thread (some slack for
/// uneven cores; more would only add scheduling).
pub const CHUNKS_PER_THREAD: i64 = 2;

/// Memory aligned to 64 bytes (a cache line, any vector load).
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain owned memory; access is synchronized by its users.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    const ALIGN: usize = 64;

    /// `len` zeroed bytes.
    pub fn zeroed(len: usize) -> Result<AlignedBuf, RunError> {
        if len == 0 {
            return Ok(AlignedBuf {
                ptr: Self::ALIGN as *mut u8,
                len,
            });
        }
        let layout = std::alloc::Layout::from_size_align(len, Self::ALIGN)
            .map_err(|_| RunError::OutOfMemory(len))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(RunError::OutOfMemory(len));
        }
        Ok(AlignedBuf { ptr, len })
    }

    /// A copy of `bytes`.
    pub fn copy_of(bytes: &[u8]) -> Result<AlignedBuf, RunError> {
        let b = AlignedBuf::zeroed(bytes.len())?;
        // SAFETY: `b` holds `bytes.len()` bytes and does not overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), b.ptr, bytes.len()) };
        Ok(b)
    }

    /// Start of the memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len > 0 {
            let layout =
                std::alloc::Layout::from_size_align(self.len, Self::ALIGN).expect("was valid");
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { std::alloc::dealloc(self.ptr, layout) };
        }
    }
}

/// Output memory handed to the caller inside a [`Tensor`]; when the last view
/// of it is dropped it goes back to its executable's pool, so steady-state runs
/// neither allocate nor fault in fresh pages.
struct PooledBuf {
    buf: Option<AlignedBuf>,
    pool: std::sync::Weak<Mutex<Vec<AlignedBuf>>>,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        let b = self.buf.as_ref().expect("present until dropped");
        // SAFETY: the buffer holds `len` initialized bytes, written by the run.
        unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buf.take(), self.pool.upgrade()) {
            if let Ok(mut p) = pool.lock() {
                if p.len() < MAX_POOLED_OUTPUTS {
                    p.push(buf);
                }
            }
        }
    }
}

/// Most spare output buffers an executable keeps.
pub const MAX_POOLED_OUTPUTS: usize = 64;

/// A pointer table that may cross to pool threads (the steps it is used for write
/// disjoint memory, as the plan guarantees).
#[derive(Clone, Copy)]
struct Ptrs<'a>(&'a [*mut u8]);
// SAFETY: see the type's documentation.
unsafe impl Send for Ptrs<'_> {}
// SAFETY: see the type's documentation.
unsafe impl Sync for Ptrs<'_> {}

impl<'a> Ptrs<'a> {
    /// The table (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> &'a [*mut u8] {
        self.0
    }
}

/// A constant as kernels see it: the tensor, and an aligned copy when the
/// tensor's own bytes (a view of a mapped file) are not aligned for its dtype.
struct Constant {
    tensor: Tensor,
    aligned: Option<AlignedBuf>,
}

impl Constant {
    fn ptr(&self) -> *mut u8 {
        match &self.aligned {
            Some(b) => b.as_ptr(),
            None => self.tensor.bytes().as_ptr() as *mut u8,
        }
    }
}

/// The CPU device: runs one program's steps.
pub struct CpuBackend {
    program: Arc<Program>,
    kernels: KernelCode,
    constants: Vec<Constant>,
    /// The compiled subgraphs of each control step (indexed by step; empty
    /// for other steps).
    controls: Vec<Vec<control::Body>>,
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
    /// Whether every step runs on one thread whatever the pool (one thread,
    /// or kernels too small to split, and no GEMM or host step that could
    /// split): runs then stay on the caller's thread, which saves waking the
    /// pool (tens of microseconds, more than a small model's whole run).
    inline: bool,
    /// Whether hand-written AVX-512 kernels may run (the bf16 dot-product
    /// GEMM); false when the build is capped at AVX2.
    avx512_kernels: bool,
}

/// How a backend runs the program's kernels.
enum KernelCode {
    /// Machine code for this CPU, one function per kernel.
    Native {
        /// The entry points.
        fns: Vec<KernelFn>,
        /// Keeps the machine code of `fns` alive (shared with the bodies of
        /// control steps, whose kernels are in the same object).
        _object: Arc<LoadedObject>,
    },
}

impl CpuBackend {
    /// The backend of `program` (and, recursively, of its control steps'
    /// bodies): kernels looked up in `object`, constants taken in
    /// [`Program::all_constants`] order.
    fn build(
        program: Program,
        object: &Arc<LoadedObject>,
        constants: &mut impl Iterator<Item = Tensor>,
        pool: &Arc<rayon::ThreadPool>,
        threads: usize,
    ) -> Result<CpuBackend, RunError> {
        let fns = program
            .kernels
            .iter()
            .map(|k| {
                object
                    .kernel(&k.name)
                    .map_err(|e| RunError::Load(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let own = constants
            .by_ref()
            .take(program.constants.len())
            .map(|t| {
                let misaligned =
                    !(t.bytes().as_ptr() as usize).is_multiple_of(t.dtype().size().max(1));
                let aligned = if misaligned {
                    Some(AlignedBuf::copy_of(t.bytes())?)
                } else {
                    None
                };
                Ok(Constant { tensor: t, aligned })
            })
            .collect::<Result<Vec<_>, RunError>>()?;
        if own.len() != program.constants.len() {
            return Err(RunError::Internal(
                "fewer constants than the program has".into(),
            ));
        }
        let mut controls = Vec::with_capacity(program.steps.len());
        for step in &program.steps {
            let mut bodies = Vec::new();
            if let Step::Control(c) = step {
                for b in &c.bodies {
                    let backend = CpuBackend::build(b.clone(), object, constants, pool, threads)?;
                    bodies.push(control::Body::new(backend));
                }
            }
            controls.push(bodies);
        }
        let mut backend = CpuBackend {
            program: Arc::new(program),
            kernels: KernelCode::Native {
                fns,
                _object: object.clone(),
            },
            constants: own,
            controls,
            pool: pool.clone(),
            threads,
            inline: false,
            avx512_kernels: true,
        };
        backend.inline = backend.all_serial();
        Ok(backend)
    }

    /// Whether `kernel` runs as one chunk (see [`launch_kernel`](Self::launch_kernel)).
    fn serial(&self, kernel: &kiln_codegen::kernel::Kernel) -> bool {
        let work: usize = kernel.buffers.iter().map(|b| b.len).sum();
        self.threads <= 1 || work < MIN_PARALLEL_ELEMENTS || kernel.parallel_extent() < 2
    }

    /// Allows (or not) the hand-written AVX-512 kernels, bodies included.
    fn cap_isa(&mut self, avx512: bool) {
        self.avx512_kernels = avx512;
        for b in self.controls.iter_mut().flatten() {
            b.backend.cap_isa(avx512);
        }
    }

    /// Whether every step of the program runs on the calling thread.
    fn all_serial(&self) -> bool {
        self.program.steps.iter().all(|s| match s {
            Step::Kernel { kernel, .. } => self.serial(&self.program.kernels[*kernel]),
            Step::Gemm(_) => self.threads <= 1,
            Step::CheckIndices { .. } => true,
            Step::Host { .. } => false,
            // Serial when its bodies are (checked below).
            Step::Control(_) => true,
        }) && self.controls.iter().flatten().all(|b| b.backend.inline)
    }

    fn launch_kernel(
        &self,
        kernel: usize,
        args: &[BufferId],
        ptrs: &[*mut u8],
    ) -> Result<(), RunError> {
        let KernelCode::Native { fns, .. } = &self.kernels;
        let f = fns[kernel];
        let k = &self.program.kernels[kernel];
        let table: Vec<*mut u8> = args.iter().map(|&b| ptrs[b]).collect();
        let extent = k.parallel_extent();
        let chunks = if self.serial(k) {
            1
        } else {
            extent.min(self.threads as i64 * CHUNKS_PER_THREAD)
        };
        if chunks == 1 {
            // SAFETY: `table` has one pointer per kernel buffer, each to memory of
            // the buffer's length (the plan sizes them from the same program).
            unsafe { f(table.as_ptr(), 0, extent) };
            return Ok(());
        }
        let t = Ptrs(&table);
        (0..chunks).into_par_iter().for_each(|c| {
            let lo = extent * c / chunks;
            let hi = extent * (c + 1) / chunks;
            // SAFETY: as above; chunks of the parallel loop write disjoint elements.
            unsafe { f(t.get().as_ptr(), lo, hi) };
        });
        Ok(())
    }
}

impl Backend for CpuBackend {
    type Memory = AlignedBuf;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn allocate(&self, bytes: usize) -> Result<AlignedBuf, RunError> {
        AlignedBuf::zeroed(bytes)
    }

    fn address(&self, memory: &mut AlignedBuf) -> *mut u8 {
        memory.as_ptr()
    }

    fn copy_in(
        &self,
        memory: &mut AlignedBuf,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), RunError> {
        if offset + bytes.len() > memory.len() {
            return Err(RunError::Internal(
                "copy past the end of device memory".into(),
            ));
        }
        // SAFETY: bounds checked above; `bytes` is host memory, not the arena.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), memory.as_ptr().add(offset), bytes.len())
        };
        Ok(())
    }

    fn copy_out(&self, memory: &AlignedBuf, offset: usize, out: &mut [u8]) -> Result<(), RunError> {
        if offset + out.len() > memory.len() {
            return Err(RunError::Internal(
                "copy past the end of device memory".into(),
            ));
        }
        // SAFETY: bounds checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(memory.as_ptr().add(offset), out.as_mut_ptr(), out.len())
        };
        Ok(())
    }

    fn launch(&self, index: usize, ptrs: &[*mut u8]) -> Result<(), RunError> {
        match &self.program.steps[index] {
            Step::Kernel { kernel, args } => self.launch_kernel(*kernel, args, ptrs),
            Step::Gemm(g) => {
                gemm::run(g, ptrs, self.threads, self.avx512_kernels);
                Ok(())
            }
            Step::Host {
                node,
                op,
                inputs,
                outputs,
                ..
            } => host::run(&self.program, node, op, inputs, outputs, ptrs, |c| {
                &self.constants[c].tensor
            }),
            Step::CheckIndices {
                node,
                indices,
                bounds,
                wrap_negative,
            } => check_indices(&self.program, node, *indices, bounds, *wrap_negative, ptrs),
            Step::Control(c) => control::run(&self.program, c, &self.controls[index], ptrs),
        }
    }

    fn synchronize(&self) -> Result<(), RunError> {
        Ok(())
    }
}

/// Fails with the node's message when an index in `indices` (read through
/// `ptrs`) is out of range for its axis.
pub(crate) fn check_indices(
    program: &Program,
    node: &str,
    indices: BufferId,
    bounds: &[i64],
    wrap_negative: bool,
    ptrs: &[*mut u8],
) -> Result<(), RunError> {
    let b = &program.buffers[indices];
    let n = b.numel();
    let p = ptrs[indices];
    if bounds.is_empty() {
        return Ok(());
    }
    let bad = |(k, i): (usize, i64)| {
        let bound = bounds[k % bounds.len()];
        let low = if wrap_negative { -bound } else { 0 };
        (i < low || i >= bound).then_some((i, bound))
    };
    // SAFETY: the buffer holds `n` elements of its dtype at `p`, aligned.
    let found = unsafe {
        match b.dtype {
            DType::I64 => std::slice::from_raw_parts(p as *const i64, n)
                .iter()
                .copied()
                .enumerate()
                .find_map(bad),
            DType::I32 => std::slice::from_raw_parts(p as *const i32, n)
                .iter()
                .map(|&i| i as i64)
                .enumerate()
                .find_map(bad),
            _ => None,
        }
    };
    match found {
        Some((i, bound)) => Err(RunError::Node {
            node: node.to_string(),
            kind: kiln_ir::ErrorKind::Value,
            message: format!("index {i} is out of range for an axis of size {bound}"),
        }),
        None => Ok(()),
    }
}

/// A compiled program ready to run on this CPU.
pub struct CpuExecutable {
    backend: CpuBackend,
    plan: Plan,
    arenas: Mutex<Vec<AlignedBuf>>,
    /// Spare output memory (of any size; taken by exact length).
    outputs: std::sync::Arc<Mutex<Vec<AlignedBuf>>>,
}

impl CpuExecutable {
    /// Links `object` (the program's kernels, from `kiln_codegen::llvm::object::compile`)
    /// and prepares to run `program` with `constants` (one tensor per program
    /// constant) on `threads` threads.
    pub fn new(
        program: Program,
        object: &[u8],
        constants: Vec<Tensor>,
        threads: usize,
    ) -> Result<CpuExecutable, RunError> {
        let loaded =
            Arc::new(LoadedObject::load(object).map_err(|e| RunError::Load(e.to_string()))?);
        if constants.len() != program.all_constants_len() {
            return Err(RunError::Internal(format!(
                "{} constants given, the program has {}",
                constants.len(),
                program.all_constants_len()
            )));
        }
        let mut constants = constants.into_iter();
        let threads = threads.max(1);
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("kiln-cpu-{i}"))
                .build()
                .map_err(|e| RunError::Internal(format!("thread pool: {e}")))?,
        );
        let plan = Plan::new(&program);
        let backend = CpuBackend::build(program, &loaded, &mut constants, &pool, threads)?;
        Ok(CpuExecutable {
            backend,
            plan,
            arenas: Mutex::new(Vec::new()),
            outputs: std::sync::Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The same executable with its hand-written kernels kept within x86-64
    /// level `isa` (`None`: the CPU's best): [`IsaLevel::V3`] keeps the bf16
    /// dot-product GEMM off, as the build's generated code is.
    pub fn cap_isa(mut self, isa: Option<IsaLevel>) -> CpuExecutable {
        self.backend.cap_isa(isa.is_none_or(|l| l >= IsaLevel::V4));
        self
    }

    /// The program this runs.
    pub fn program(&self) -> &Program {
        &self.backend.program
    }

    /// The memory plan (arena size and its lower bound).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Threads it runs on.
    pub fn threads(&self) -> usize {
        self.backend.threads
    }

    /// Runs on `inputs` (one per program input, in order, with exactly the shapes
    /// and dtypes the program was specialized for); returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        self.run_timed(inputs, None)
    }

    /// [`CpuExecutable::run`], also adding each step's wall time to `times`
    /// (indexed like the program's steps).
    pub fn run_profiled(
        &self,
        inputs: &[Tensor],
        times: &mut Vec<std::time::Duration>,
    ) -> Result<Vec<Tensor>, RunError> {
        times.resize(self.backend.program.steps.len(), std::time::Duration::ZERO);
        self.run_timed(inputs, Some(times))
    }

    /// For each output of [`run`](Self::run): whether its buffer is the
    /// caller's alone (a buffer of its own, not shared with another output;
    /// the executable keeps no reference to what it returns).
    pub fn exclusive_outputs(&self) -> Vec<bool> {
        let outputs = &self.backend.program.outputs;
        outputs
            .iter()
            .map(|&(_, b)| outputs.iter().filter(|&&(_, c)| c == b).count() == 1)
            .collect()
    }

    fn run_timed(
        &self,
        inputs: &[Tensor],
        mut times: Option<&mut Vec<std::time::Duration>>,
    ) -> Result<Vec<Tensor>, RunError> {
        let prog = &self.backend.program;
        crate::inputs::check(prog, inputs)?;
        let mut arena = match self.arenas.lock().map(|mut a| a.pop()) {
            Ok(Some(a)) => a,
            _ => self.backend.allocate(self.plan.arena_bytes)?,
        };
        // Inputs whose bytes are not aligned for their dtype are copied.
        let copies: Vec<Option<AlignedBuf>> = inputs
            .iter()
            .map(|t| {
                let misaligned =
                    !(t.bytes().as_ptr() as usize).is_multiple_of(t.dtype().size().max(1));
                if misaligned {
                    AlignedBuf::copy_of(t.bytes()).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<_, _>>()?;
        let mut out_mem: Vec<AlignedBuf> = Vec::with_capacity(self.plan.outputs.len());
        for &b in &self.plan.outputs {
            let len = prog.buffers[b].bytes();
            let spare = self.outputs.lock().ok().and_then(|mut pool| {
                let i = pool.iter().position(|m| m.len() == len)?;
                Some(pool.swap_remove(i))
            });
            out_mem.push(match spare {
                Some(m) => m,
                None => self.backend.allocate(len)?,
            });
        }
        let base = self.backend.address(&mut arena);
        let ptrs: Vec<*mut u8> = self
            .plan
            .locations
            .iter()
            .map(|l| match *l {
                // SAFETY: offsets are inside the arena (the plan sized it).
                Location::Arena(off) => unsafe { base.add(off) },
                Location::Input(i) => match &copies[i] {
                    Some(c) => c.as_ptr(),
                    None => inputs[i].bytes().as_ptr() as *mut u8,
                },
                Location::Const(c) => self.backend.constants[c].ptr(),
                Location::Output(k) => out_mem[k].as_ptr(),
            })
            .collect();
        let table = Ptrs(&ptrs);
        let mut steps = || -> Result<(), RunError> {
            for i in 0..prog.steps.len() {
                let t = times.is_some().then(std::time::Instant::now);
                self.backend.launch(i, table.get())?;
                if let (Some(times), Some(t)) = (times.as_deref_mut(), t) {
                    times[i] += t.elapsed();
                }
            }
            self.backend.synchronize()
        };
        let result = if self.backend.inline {
            steps()
        } else {
            self.backend.pool.install(steps)
        };
        // Output memory becomes the returned tensors' storage (shared by views
        // when one buffer is several outputs).
        let mut shared: Vec<Option<bytes::Bytes>> = out_mem
            .into_iter()
            .map(|m| {
                Some(bytes::Bytes::from_owner(PooledBuf {
                    buf: Some(m),
                    pool: std::sync::Arc::downgrade(&self.outputs),
                }))
            })
            .collect();
        let outputs = result.and_then(|()| {
            prog.outputs
                .iter()
                .map(|&(_, b)| {
                    let buf = &prog.buffers[b];
                    if let Location::Output(k) = self.plan.locations[b] {
                        let bytes = shared[k].clone().expect("present");
                        return Tensor::from_bytes(buf.dtype, buf.shape.clone(), bytes)
                            .map_err(|e| RunError::Internal(e.to_string()));
                    }
                    let mut bytes = vec![0u8; buf.bytes()];
                    // SAFETY: the pointer addresses `buf.bytes()` bytes of this run.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptrs[b], bytes.as_mut_ptr(), bytes.len())
                    };
                    Tensor::from_bytes(buf.dtype, buf.shape.clone(), bytes.into())
                        .map_err(|e| RunError::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        shared.clear();
        if let Ok(mut a) = self.arenas.lock() {
            a.push(arena);
        }
        outputs
    }
}
