//! The compiled targets: optimize once, then per set of input shapes
//! specialize, schedule, generate code (LLVM for the CPU; GPU kernels for CUDA
//! and its simulation) and load it (cached, so later runs with the same shapes
//! only run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_codegen::gpu::program::{GpuProgram, LowerOptions, SIM_LIBRARY_GEMM_MIN_MACS};
use kiln_codegen::llvm::isa::IsaLevel;
use kiln_codegen::llvm::object::{compile, CpuTarget};
use kiln_codegen::program::Program;
use kiln_codegen::schedule::{schedule_with, ScheduleError, ScheduleOptions};
use kiln_codegen::specialize::specialize;
use kiln_ir::{Graph, Tensor};
use kiln_runtime::cpu::CpuExecutable;
use kiln_runtime::cuda::GpuExecutable;

use crate::Error;

/// One shape-specialized build of a model.
pub enum Build {
    /// Native code.
    Native(CpuExecutable),
    /// GPU kernels on a GPU or the simulated one.
    Gpu(Box<GpuExecutable>),
    /// A graph with data-dependent shapes, run by the reference interpreter (the
    /// reason says which value).
    Interpreted {
        /// The specialized graph.
        graph: Graph,
        /// Why it could not be compiled.
        reason: String,
    },
}

impl Build {
    /// The scheduled program (none for an interpreted build).
    pub fn program(&self) -> Option<&Program> {
        match self {
            Build::Native(e) => Some(e.program()),
            Build::Gpu(e) => Some(e.program()),
            Build::Interpreted { .. } => None,
        }
    }

    /// The memory plan (none for an interpreted build).
    pub fn plan(&self) -> Option<&kiln_runtime::plan::Plan> {
        match self {
            Build::Native(e) => Some(e.plan()),
            Build::Gpu(e) => Some(e.plan()),
            Build::Interpreted { .. } => None,
        }
    }

    /// Runs a compiled build on `inputs` (in the program's input order); `None`
    /// for an interpreted one.
    pub fn run(&self, inputs: &[Tensor]) -> Option<Result<Vec<Tensor>, kiln_runtime::RunError>> {
        match self {
            Build::Native(e) => Some(e.run(inputs)),
            Build::Gpu(e) => Some(e.run(inputs)),
            Build::Interpreted { .. } => None,
        }
    }

    /// [`Build::run`] with each step's time added to `times`.
    pub fn run_profiled(
        &self,
        inputs: &[Tensor],
        times: &mut Vec<std::time::Duration>,
    ) -> Option<Result<Vec<Tensor>, kiln_runtime::RunError>> {
        match self {
            Build::Native(e) => Some(e.run_profiled(inputs, times)),
            Build::Gpu(e) => Some(e.run_profiled(inputs, times)),
            Build::Interpreted { .. } => None,
        }
    }
}

/// What runs a program's kernels.
#[derive(Clone)]
pub enum Device {
    /// Machine code for this CPU (LLVM).
    Native,
    /// GPU kernels on the SIMT interpreter (`--target cuda-sim`).
    CudaSim,
    /// GPU kernels on this GPU (`--target cuda`).
    Cuda(Arc<kiln_runtime::cuda::CudaGpu>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        matches!(
            (self, other),
            (Device::Native, Device::Native)
                | (Device::CudaSim, Device::CudaSim)
                | (Device::Cuda(_), Device::Cuda(_))
        )
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Native => f.write_str("Native"),
            Device::CudaSim => f.write_str("CudaSim"),
            Device::Cuda(g) => write!(f, "Cuda({})", g.name()),
        }
    }
}

/// A model prepared for this CPU.
pub struct CpuModel {
    /// The optimized graph every build starts from.
    pub graph: Graph,
    /// Threads each run uses.
    pub threads: usize,
    /// What runs the kernels.
    pub device: Device,
    /// The highest x86-64 level native code may use (`None`: the CPU's best).
    pub isa: Option<IsaLevel>,
    builds: Mutex<HashMap<Vec<Vec<usize>>, Arc<Build>>>,
}

impl CpuModel {
    /// Wraps an (optimized) graph.
    pub fn new(graph: Graph, threads: usize) -> CpuModel {
        CpuModel {
            graph,
            threads,
            device: Device::Native,
            isa: None,
            builds: Mutex::new(HashMap::new()),
        }
    }

    /// The same model with native code capped at `isa` (`None`: no cap).
    pub fn at_isa(mut self, isa: Option<IsaLevel>) -> CpuModel {
        self.isa = isa;
        self
    }

    /// The same model with its kernels run by `device`.
    pub fn on(mut self, device: Device) -> CpuModel {
        self.device = device;
        self
    }

    /// The build for these input shapes (compiled on first use).
    pub fn build(&self, shapes: &[Vec<usize>]) -> Result<Arc<Build>, Error> {
        let mut builds = self
            .builds
            .lock()
            .map_err(|_| Error::Internal("a compile panicked".into()))?;
        if let Some(b) = builds.get(shapes) {
            return Ok(b.clone());
        }
        let b = Arc::new(match &self.device {
            Device::Native => build_at(&self.graph, shapes, self.threads, self.isa)?,
            Device::CudaSim => build_simulated(&self.graph, shapes, self.threads)?,
            Device::Cuda(gpu) => crate::gpu::build_cuda(&self.graph, shapes, self.threads, gpu)?,
        });
        builds.insert(shapes.to_vec(), b.clone());
        Ok(b)
    }
}

/// What instruction sets native code uses on this machine, for reports
/// (`kiln bench --json`): the CPU as LLVM names it, the x86-64 level of
/// generated code (within `KILN_CPU_ISA`), the GEMM library's kernels and the
/// CPU's vector features.
pub fn isa_report() -> serde_json::Value {
    use kiln_codegen::llvm::isa;
    let level = isa::effective_level();
    serde_json::json!({
        "llvm_cpu": kiln_codegen::llvm::HostCpu::detect().cpu,
        "code": match &level {
            Ok(Some(l)) => l.llvm_cpu().to_string(),
            Ok(None) => "below x86-64-v3".to_string(),
            Err(e) => e.clone(),
        },
        "cap": std::env::var(isa::ISA_ENV).ok(),
        "gemm": kiln_runtime::cpu::gemm_library_isa(),
        "features": isa::REPORTED_FEATURES
            .into_iter()
            .filter(|f| isa::cpu_has(f))
            .collect::<Vec<_>>(),
    })
}

/// Specializes, schedules, compiles and links `graph` for `shapes`.
pub fn build(graph: &Graph, shapes: &[Vec<usize>], threads: usize) -> Result<Build, Error> {
    build_at(graph, shapes, threads, None)
}

/// [`build`] with the native code capped at x86-64 level `isa` (`None`: the
/// CPU's best, within `KILN_CPU_ISA`).
pub fn build_at(
    graph: &Graph,
    shapes: &[Vec<usize>],
    threads: usize,
    isa: Option<IsaLevel>,
) -> Result<Build, Error> {
    let (program, specialized) = match program_for(graph, shapes)? {
        Ok(p) => p,
        Err((graph, reason)) => return Ok(Build::Interpreted { graph, reason }),
    };
    // KILN_DUMP_PROGRAM=PATH writes the program's text (steps, kernels), one file
    // per build with the input shapes appended to the name.
    if let Some(path) = std::env::var_os("KILN_DUMP_PROGRAM") {
        let tag: Vec<String> = shapes
            .iter()
            .map(|s| s.iter().map(usize::to_string).collect::<Vec<_>>().join("x"))
            .collect();
        let mut path = std::path::PathBuf::from(path);
        let name = format!(
            "{}.{}.txt",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            tag.first().cloned().unwrap_or_default()
        );
        path.set_file_name(name);
        std::fs::write(&path, program.to_text())
            .map_err(|e| Error::Output(format!("KILN_DUMP_PROGRAM: {e}")))?;
    }
    // KILN_DUMP_IR=PATH writes the optimized LLVM IR of the kernels (for people
    // tuning code generation).
    let dump = std::env::var_os("KILN_DUMP_IR");
    let target = isa.map_or(CpuTarget::Host, CpuTarget::HostAt);
    let kernels: Vec<_> = program.all_kernels().into_iter().cloned().collect();
    let object =
        compile(&kernels, &target, dump.is_some()).map_err(|e| Error::Codegen(e.to_string()))?;
    if let (Some(path), Some(ir)) = (dump, &object.ir) {
        std::fs::write(&path, ir).map_err(|e| Error::Output(format!("KILN_DUMP_IR: {e}")))?;
    }
    let constants = constants_of(&program, &specialized);
    let exe = CpuExecutable::new(program, &object.object, constants, threads)?.cap_isa(isa);
    Ok(Build::Native(exe))
}

/// Specializes and schedules `graph` for `shapes`, lowers the program for the
/// GPU and runs it on the simulated GPU (the SIMT interpreter; no machine code
/// is generated). GEMMs of [`SIM_LIBRARY_GEMM_MIN_MACS`] multiply-adds or more
/// run on the host's reference GEMM.
pub fn build_simulated(
    graph: &Graph,
    shapes: &[Vec<usize>],
    threads: usize,
) -> Result<Build, Error> {
    let options = LowerOptions {
        library_gemm_min_macs: Some(SIM_LIBRARY_GEMM_MIN_MACS),
    };
    build_simulated_with(graph, shapes, threads, options)
}

/// [`build_simulated`] with the GPU lowering's `options`.
pub fn build_simulated_with(
    graph: &Graph,
    shapes: &[Vec<usize>],
    threads: usize,
    options: LowerOptions,
) -> Result<Build, Error> {
    let (program, specialized) = match program_for_with(graph, shapes, ScheduleOptions::default())?
    {
        Ok(p) => p,
        Err((graph, reason)) => return Ok(Build::Interpreted { graph, reason }),
    };
    let constants = own_constants_of(&program, &specialized);
    let gpu = GpuProgram::lower_with(program, options);
    let device = kiln_runtime::cuda::SimDevice::new(gpu.kernels.clone())?;
    let exe = GpuExecutable::new(gpu, Box::new(device), constants, threads)?;
    Ok(Build::Gpu(Box::new(exe)))
}

/// The scheduled program for `shapes` as the CPU runs it, with the specialized
/// graph it came from; `Err((graph, reason))` when a shape is only known at run
/// time.
#[allow(clippy::type_complexity)]
pub fn program_for(
    graph: &Graph,
    shapes: &[Vec<usize>],
) -> Result<Result<(Program, Graph), (Graph, String)>, Error> {
    program_for_with(graph, shapes, ScheduleOptions::CPU)
}

/// [`program_for`] with the schedule's `options` (the GPU paths use the
/// default, device-neutral ones).
#[allow(clippy::type_complexity)]
pub fn program_for_with(
    graph: &Graph,
    shapes: &[Vec<usize>],
    options: ScheduleOptions,
) -> Result<Result<(Program, Graph), (Graph, String)>, Error> {
    let specialized = specialize(graph, shapes).map_err(|e| Error::Input(e.to_string()))?;
    match schedule_with(&specialized, options) {
        Ok(p) => Ok(Ok((p, specialized))),
        Err(e @ ScheduleError::DynamicShape { .. }) => Ok(Err((specialized, e.to_string()))),
        Err(e @ ScheduleError::TooLarge { .. }) => Err(Error::Input(e.to_string())),
        Err(e) => Err(Error::Codegen(e.to_string())),
    }
}

/// The tensors of a program's constants, in order, followed by those of its
/// control steps' compiled bodies ([`Program::all_constants`]): what the CPU
/// executable takes.
pub fn constants_of(program: &Program, graph: &Graph) -> Vec<Tensor> {
    program.all_constants(graph).into_iter().cloned().collect()
}

/// The tensors of a program's own constants (not its bodies'): what the GPU
/// executable takes (it runs control flow on the interpreter).
pub fn own_constants_of(program: &Program, graph: &Graph) -> Vec<Tensor> {
    let mut all = constants_of(program, graph);
    all.truncate(program.constants.len());
    all
}
