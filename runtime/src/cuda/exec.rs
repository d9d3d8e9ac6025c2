//! A GPU program ready to run on one device: constants uploaded once at load,
//! device memory for the arena, inputs and outputs allocated at the first run
//! and kept, steps launched in order, and — for programs whose every step runs
//! on the device's stream (kernels, and library GEMMs the device says it
//! captures) — a graph captured at the second run and replayed from then on.
//!
//! Runs of one executable are serialized (the device's stream orders its work
//! anyway, and a capture must see only its own run's launches), so one set of
//! device buffers serves every run and a captured graph's pointers stay valid.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kiln_codegen::gpu::program::{GpuProgram, GpuStep};
use kiln_codegen::program::{BufferId, Program, Step};
use kiln_ir::{DType, Tensor};

use super::device::{DevicePtr, GpuDevice, GraphId};
use crate::cpu::AlignedBuf;
use crate::plan::{Location, Plan};
use crate::RunError;

/// Environment variable that turns graph capture off (`0`).
pub const GRAPHS_ENV: &str = "KILN_CUDA_GRAPHS";

/// Device memory of the runs: the arena, one allocation per input and per
/// output memory, and the address of every program buffer.
struct Resident {
    allocations: Vec<DevicePtr>,
    inputs: Vec<DevicePtr>,
    ptrs: Vec<DevicePtr>,
    /// One i64 word per device index check (zeroed before each run).
    status: DevicePtr,
}

/// Bytes of one status word of a device index check.
const STATUS_WORD: usize = 8;

/// What persists between runs.
struct RunState {
    resident: Option<Resident>,
    runs: usize,
    graph: Option<GraphId>,
}

/// A compiled GPU program on its device. `Send + Sync`; runs are serialized.
pub struct GpuExecutable {
    device: Box<dyn GpuDevice>,
    program: GpuProgram,
    plan: Plan,
    /// Host copies of the constants (host steps read them).
    constants: Vec<Tensor>,
    constant_ptrs: Vec<DevicePtr>,
    threads: usize,
    graphs: bool,
    state: Mutex<RunState>,
}

impl GpuExecutable {
    /// Prepares `program` on `device` (whose loaded kernels are the program's,
    /// in order), uploading `constants` (one per program constant); host steps
    /// use `threads` threads.
    pub fn new(
        program: GpuProgram,
        device: Box<dyn GpuDevice>,
        constants: Vec<Tensor>,
        threads: usize,
    ) -> Result<GpuExecutable, RunError> {
        if constants.len() != program.program.constants.len() {
            return Err(RunError::Internal(format!(
                "{} constants given, the program has {}",
                constants.len(),
                program.program.constants.len()
            )));
        }
        if program.steps.len() != program.program.steps.len() {
            return Err(RunError::Internal(
                "the GPU program's steps do not match the program's".into(),
            ));
        }
        let mut constant_ptrs = Vec::with_capacity(constants.len());
        for t in &constants {
            let p = device.alloc(t.bytes().len())?;
            constant_ptrs.push(p);
            if let Err(e) = device.upload(p, t.bytes()) {
                for &q in &constant_ptrs {
                    device.free(q);
                }
                return Err(e);
            }
        }
        let plan = Plan::new(&program.program);
        let graphs = std::env::var(GRAPHS_ENV).map_or(true, |v| v != "0");
        Ok(GpuExecutable {
            device,
            program,
            plan,
            constants,
            constant_ptrs,
            threads: threads.max(1),
            graphs,
            state: Mutex::new(RunState {
                resident: None,
                runs: 0,
                graph: None,
            }),
        })
    }

    /// The scheduled program.
    pub fn program(&self) -> &Program {
        &self.program.program
    }

    /// The GPU program (kernels and steps).
    pub fn gpu_program(&self) -> &GpuProgram {
        &self.program
    }

    /// The memory plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The device, in words.
    pub fn device(&self) -> &dyn GpuDevice {
        &*self.device
    }

    /// Whether a captured graph now runs the program.
    pub fn uses_graph(&self) -> bool {
        self.lock().graph.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs on `inputs` (one per program input, in order, with exactly the
    /// shapes and dtypes the program was specialized for); returns the outputs.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        self.run_timed(inputs, None)
    }

    /// [`GpuExecutable::run`] with the device synchronized after every step and
    /// each step's wall time added to `times` (indexed like the steps); never
    /// through a graph.
    pub fn run_profiled(
        &self,
        inputs: &[Tensor],
        times: &mut Vec<Duration>,
    ) -> Result<Vec<Tensor>, RunError> {
        times.resize(self.program.steps.len(), Duration::ZERO);
        self.run_timed(inputs, Some(times))
    }

    fn run_timed(
        &self,
        inputs: &[Tensor],
        times: Option<&mut Vec<Duration>>,
    ) -> Result<Vec<Tensor>, RunError> {
        crate::inputs::check(&self.program.program, inputs)?;
        let mut state = self.lock();
        if state.resident.is_none() {
            state.resident = Some(self.allocate(inputs)?);
        }
        let resident = state.resident.as_ref().expect("allocated above");
        for (t, &p) in inputs.iter().zip(&resident.inputs) {
            self.device.upload(p, t.bytes())?;
        }
        let slots = self.program.check_slots();
        let status = resident.status;
        if slots > 0 {
            self.device
                .upload(status, &vec![0u8; slots * STATUS_WORD])?;
        }
        let ptrs = resident.ptrs.clone();
        let capturable = self.graphs && times.is_none() && self.capturable();
        if let (true, Some(g)) = (capturable, state.graph) {
            self.device.replay(g)?;
        } else if capturable && state.runs >= 1 && self.device.begin_capture()? {
            let launched = self.launch_all(&ptrs, status);
            let graph = self.device.end_capture();
            launched?;
            let g = graph?;
            state.graph = Some(g);
            self.device.replay(g)?;
        } else {
            self.run_steps(&ptrs, status, times)?;
        }
        state.runs += 1;
        self.device.synchronize()?;
        if slots > 0 {
            self.check_status(status, slots)?;
        }
        let prog = &self.program.program;
        prog.outputs
            .iter()
            .map(|&(_, b)| {
                let buf = &prog.buffers[b];
                let mut bytes = vec![0u8; buf.bytes()];
                self.device.download(ptrs[b], &mut bytes)?;
                Tensor::from_bytes(buf.dtype, buf.shape.clone(), bytes.into())
                    .map_err(|e| RunError::Internal(e.to_string()))
            })
            .collect()
    }

    /// Device memory for the arena, the inputs and the outputs, and the address
    /// of every buffer.
    fn allocate(&self, inputs: &[Tensor]) -> Result<Resident, RunError> {
        let prog = &self.program.program;
        let mut r = Resident {
            allocations: Vec::new(),
            inputs: Vec::new(),
            ptrs: Vec::new(),
            status: 0,
        };
        let result = (|| {
            r.status = self
                .device
                .alloc(self.program.check_slots() * STATUS_WORD)?;
            r.allocations.push(r.status);
            let arena = self.device.alloc(self.plan.arena_bytes)?;
            r.allocations.push(arena);
            for t in inputs {
                let p = self.device.alloc(t.bytes().len())?;
                r.allocations.push(p);
                r.inputs.push(p);
            }
            let mut outputs = Vec::with_capacity(self.plan.outputs.len());
            for &b in &self.plan.outputs {
                let p = self.device.alloc(prog.buffers[b].bytes())?;
                r.allocations.push(p);
                outputs.push(p);
            }
            r.ptrs = self
                .plan
                .locations
                .iter()
                .map(|l| match *l {
                    Location::Arena(off) if arena != 0 => arena + off as DevicePtr,
                    Location::Arena(_) => 0,
                    Location::Input(i) => r.inputs[i],
                    Location::Const(c) => self.constant_ptrs[c],
                    Location::Output(k) => outputs[k],
                })
                .collect();
            Ok(())
        })();
        match result {
            Ok(()) => Ok(r),
            Err(e) => {
                for &p in &r.allocations {
                    self.device.free(p);
                }
                Err(e)
            }
        }
    }

    /// Whether every step runs on the device's stream: a kernel, or a GEMM
    /// the device's library takes in a way a capture records (on the simulated
    /// device library steps run on the host, so never).
    fn capturable(&self) -> bool {
        let prog = &self.program.program;
        self.program
            .steps
            .iter()
            .zip(&prog.steps)
            .all(|(s, step)| match (s, step) {
                (GpuStep::Launch { .. } | GpuStep::Check { .. } | GpuStep::Skip, _) => true,
                (GpuStep::Library, Step::Gemm(g)) => self.device.library_captures(g),
                _ => false,
            })
    }

    /// Submits every step (the capturable case: kernels and library GEMMs
    /// that stay on the device).
    fn launch_all(&self, ptrs: &[DevicePtr], status: DevicePtr) -> Result<(), RunError> {
        for (i, step) in self.program.steps.iter().enumerate() {
            match step {
                GpuStep::Launch { kernel, args } => {
                    let a: Vec<DevicePtr> = args.iter().map(|&b| ptrs[b]).collect();
                    self.device.launch(*kernel, &a)?;
                }
                GpuStep::Check {
                    kernel,
                    indices,
                    slot,
                } => self.launch_check(*kernel, ptrs[*indices], status, *slot)?,
                GpuStep::Library => {
                    let Step::Gemm(g) = &self.program.program.steps[i] else {
                        return Err(RunError::Internal(format!(
                            "GPU step {i} is a library step but not a GEMM"
                        )));
                    };
                    // Never the host fallback here: it would copy, and copies
                    // are not allowed while capturing.
                    if !self
                        .device
                        .library_gemm(g, ptrs[g.a], ptrs[g.b], ptrs[g.c])?
                    {
                        return Err(RunError::Internal(format!(
                            "GPU step {i}: the device said it captures this GEMM, then declined it"
                        )));
                    }
                }
                GpuStep::Skip => {}
                GpuStep::Host => {
                    return Err(RunError::Internal(format!(
                        "GPU step {i} runs on the host inside a capture"
                    )))
                }
            }
        }
        Ok(())
    }

    fn run_steps(
        &self,
        ptrs: &[DevicePtr],
        status: DevicePtr,
        mut times: Option<&mut Vec<Duration>>,
    ) -> Result<(), RunError> {
        for (i, step) in self.program.steps.iter().enumerate() {
            let t = times.is_some().then(Instant::now);
            match step {
                GpuStep::Launch { kernel, args } => {
                    let a: Vec<DevicePtr> = args.iter().map(|&b| ptrs[b]).collect();
                    self.device.launch(*kernel, &a)?;
                }
                GpuStep::Check {
                    kernel,
                    indices,
                    slot,
                } => self.launch_check(*kernel, ptrs[*indices], status, *slot)?,
                GpuStep::Library => self.library_step(i, ptrs)?,
                GpuStep::Host => self.host_step(i, ptrs)?,
                // Another step's kernel computes it (a fused attention).
                GpuStep::Skip => {}
            }
            if let (Some(times), Some(t)) = (times.as_deref_mut(), t) {
                self.device.synchronize()?;
                times[i] += t.elapsed();
            }
        }
        Ok(())
    }

    /// Launches device index check `kernel` over `indices` with status word
    /// `slot`.
    fn launch_check(
        &self,
        kernel: usize,
        indices: DevicePtr,
        status: DevicePtr,
        slot: usize,
    ) -> Result<(), RunError> {
        let word = status + (slot * STATUS_WORD) as DevicePtr;
        self.device.launch(kernel, &[indices, word])
    }

    /// Fails the run when a device index check counted indices out of range
    /// (the first such check, in program order, with its node's name).
    fn check_status(&self, status: DevicePtr, slots: usize) -> Result<(), RunError> {
        let mut words = vec![0u8; slots * STATUS_WORD];
        self.device.download(status, &mut words)?;
        for (step, gpu_step) in self.program.steps.iter().enumerate() {
            let GpuStep::Check { slot, .. } = gpu_step else {
                continue;
            };
            let at = slot * STATUS_WORD;
            let count =
                i64::from_le_bytes(words[at..at + STATUS_WORD].try_into().expect("8 bytes"));
            if count == 0 {
                continue;
            }
            let Step::CheckIndices { node, bounds, .. } = &self.program.program.steps[step] else {
                return Err(RunError::Internal(format!(
                    "GPU step {step} is a device check but not an index check"
                )));
            };
            let axes = if bounds.len() == 1 {
                format!("an axis of size {}", bounds[0])
            } else {
                format!("axes of sizes {bounds:?}")
            };
            return Err(RunError::Node {
                node: node.clone(),
                kind: kiln_ir::ErrorKind::Value,
                message: format!(
                    "{count} ind{} out of range for {axes}",
                    if count == 1 { "ex is" } else { "ices are" }
                ),
            });
        }
        Ok(())
    }

    /// A GEMM through the device's library, or on the host when it has none.
    fn library_step(&self, index: usize, ptrs: &[DevicePtr]) -> Result<(), RunError> {
        let Step::Gemm(g) = &self.program.program.steps[index] else {
            return Err(RunError::Internal(format!(
                "GPU step {index} is a library step but not a GEMM"
            )));
        };
        if self
            .device
            .library_gemm(g, ptrs[g.a], ptrs[g.b], ptrs[g.c])?
        {
            return Ok(());
        }
        // The host's GEMM has f32 and f64 only (an f16 step that the library
        // declines would otherwise reach its `unreachable!`).
        if !matches!(g.dtype, DType::F32 | DType::F64) {
            return Err(RunError::Internal(format!(
                "GPU step {index}: a GEMM over {} that neither the device's library \
                 nor the host computes",
                g.dtype
            )));
        }
        let staged = self.stage(&[g.a, g.b], &[g.c], ptrs)?;
        crate::cpu::gemm::run(g, &staged.table, self.threads, true);
        staged.upload(&*self.device, &self.program.program, &[g.c], ptrs)
    }

    /// An index check or host op, on host copies of its buffers.
    fn host_step(&self, index: usize, ptrs: &[DevicePtr]) -> Result<(), RunError> {
        let prog = &self.program.program;
        match &prog.steps[index] {
            Step::CheckIndices {
                node,
                indices,
                bounds,
                wrap_negative,
            } => {
                let staged = self.stage(&[*indices], &[], ptrs)?;
                crate::cpu::check_indices(
                    prog,
                    node,
                    *indices,
                    bounds,
                    *wrap_negative,
                    &staged.table,
                )
            }
            Step::Host {
                node,
                op,
                inputs,
                outputs,
                ..
            } => {
                let staged = self.stage(inputs, outputs, ptrs)?;
                crate::cpu::host::run(prog, node, op, inputs, outputs, &staged.table, |c| {
                    &self.constants[c]
                })?;
                staged.upload(&*self.device, prog, outputs, ptrs)
            }
            Step::Control(c) => {
                // The GPU runs no compiled subgraphs yet: the interpreter
                // evaluates the whole op on host copies.
                let staged = self.stage(&c.inputs, &c.outputs, ptrs)?;
                crate::cpu::host::run(
                    prog,
                    &c.node,
                    &c.op,
                    &c.inputs,
                    &c.outputs,
                    &staged.table,
                    |k| &self.constants[k],
                )?;
                staged.upload(&*self.device, prog, &c.outputs, ptrs)
            }
            _ => Err(RunError::Internal(format!(
                "GPU step {index} runs on the host but is a kernel or GEMM"
            ))),
        }
    }

    /// Host memory for `reads` (downloaded) and `writes`, and a pointer table
    /// over the program's buffers addressing it (null elsewhere).
    fn stage(
        &self,
        reads: &[BufferId],
        writes: &[BufferId],
        ptrs: &[DevicePtr],
    ) -> Result<Staged, RunError> {
        let prog = &self.program.program;
        let mut s = Staged {
            memory: Vec::new(),
            table: vec![std::ptr::null_mut(); prog.buffers.len()],
        };
        for (&b, read) in reads
            .iter()
            .map(|b| (b, true))
            .chain(writes.iter().map(|b| (b, false)))
        {
            if !s.table[b].is_null() {
                continue;
            }
            let m = AlignedBuf::zeroed(prog.buffers[b].bytes())?;
            if read && !m.is_empty() {
                // SAFETY: `m` owns `m.len()` bytes.
                let out = unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), m.len()) };
                self.device.download(ptrs[b], out)?;
            }
            s.table[b] = m.as_ptr();
            s.memory.push(m);
        }
        Ok(s)
    }
}

/// Host copies of some buffers for a host step.
struct Staged {
    /// The memory the table addresses (kept alive with it).
    #[allow(dead_code)]
    memory: Vec<AlignedBuf>,
    table: Vec<*mut u8>,
}

impl Staged {
    /// Uploads the staged `buffers` to their device addresses.
    fn upload(
        &self,
        device: &dyn GpuDevice,
        program: &Program,
        buffers: &[BufferId],
        ptrs: &[DevicePtr],
    ) -> Result<(), RunError> {
        for &b in buffers {
            let len = program.buffers[b].bytes();
            if len > 0 {
                // SAFETY: `table[b]` addresses one of `memory`'s buffers, staged
                // for `b` with its `len` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(self.table[b], len) };
                device.upload(ptrs[b], bytes)?;
            }
        }
        Ok(())
    }
}

impl Drop for GpuExecutable {
    fn drop(&mut self) {
        if let Some(r) = self.lock().resident.take() {
            for &p in &r.allocations {
                self.device.free(p);
            }
        }
        for &p in &self.constant_ptrs {
            self.device.free(p);
        }
    }
}
