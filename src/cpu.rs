//! The CPU target: optimize once, then per set of input shapes specialize,
//! schedule, generate code and link it (cached, so later runs with the same
//! shapes only run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_codegen::llvm::object::{compile, CpuTarget};
use kiln_codegen::program::Program;
use kiln_codegen::schedule::{schedule, ScheduleError};
use kiln_codegen::specialize::specialize;
use kiln_ir::{Graph, Tensor, ValueId};
use kiln_runtime::cpu::CpuExecutable;

use crate::Error;

/// One shape-specialized build of a model.
pub enum Build {
    /// Native code.
    Native(CpuExecutable),
    /// A graph with data-dependent shapes, run by the reference interpreter (the
    /// reason says which value).
    Interpreted {
        /// The specialized graph.
        graph: Graph,
        /// Why it could not be compiled.
        reason: String,
    },
}

/// What runs a program's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Machine code for this CPU (LLVM).
    Native,
    /// GPU kernels on the SIMT interpreter (`--target cuda-sim`).
    CudaSim,
}

/// A model prepared for this CPU.
pub struct CpuModel {
    /// The optimized graph every build starts from.
    pub graph: Graph,
    /// Threads each run uses.
    pub threads: usize,
    /// What runs the kernels.
    pub device: Device,
    builds: Mutex<HashMap<Vec<Vec<usize>>, Arc<Build>>>,
}

impl CpuModel {
    /// Wraps an (optimized) graph.
    pub fn new(graph: Graph, threads: usize) -> CpuModel {
        CpuModel {
            graph,
            threads,
            device: Device::Native,
            builds: Mutex::new(HashMap::new()),
        }
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
        let b = Arc::new(match self.device {
            Device::Native => build(&self.graph, shapes, self.threads)?,
            Device::CudaSim => build_simulated(&self.graph, shapes, self.threads)?,
        });
        builds.insert(shapes.to_vec(), b.clone());
        Ok(b)
    }
}

/// Specializes, schedules, compiles and links `graph` for `shapes`.
pub fn build(graph: &Graph, shapes: &[Vec<usize>], threads: usize) -> Result<Build, Error> {
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
    let object = compile(&program.kernels, &CpuTarget::Host, dump.is_some())
        .map_err(|e| Error::Codegen(e.to_string()))?;
    if let (Some(path), Some(ir)) = (dump, &object.ir) {
        std::fs::write(&path, ir).map_err(|e| Error::Output(format!("KILN_DUMP_IR: {e}")))?;
    }
    let constants = constants_of(&program, &specialized);
    let exe = CpuExecutable::new(program, &object.object, constants, threads)?;
    Ok(Build::Native(exe))
}

/// Specializes and schedules `graph` for `shapes`, with every kernel lowered to a
/// GPU kernel for the SIMT interpreter (no machine code is generated).
pub fn build_simulated(
    graph: &Graph,
    shapes: &[Vec<usize>],
    threads: usize,
) -> Result<Build, Error> {
    let (program, specialized) = match program_for(graph, shapes)? {
        Ok(p) => p,
        Err((graph, reason)) => return Ok(Build::Interpreted { graph, reason }),
    };
    let constants = constants_of(&program, &specialized);
    let exe = CpuExecutable::simulated(program, constants, threads)?;
    Ok(Build::Native(exe))
}

/// The scheduled program for `shapes`, with the specialized graph it came from;
/// `Err((graph, reason))` when a shape is only known at run time.
#[allow(clippy::type_complexity)]
pub fn program_for(
    graph: &Graph,
    shapes: &[Vec<usize>],
) -> Result<Result<(Program, Graph), (Graph, String)>, Error> {
    let specialized = specialize(graph, shapes).map_err(|e| Error::Input(e.to_string()))?;
    match schedule(&specialized) {
        Ok(p) => Ok(Ok((p, specialized))),
        Err(e @ ScheduleError::DynamicShape { .. }) => Ok(Err((specialized, e.to_string()))),
        Err(e @ ScheduleError::TooLarge { .. }) => Err(Error::Input(e.to_string())),
        Err(e) => Err(Error::Codegen(e.to_string())),
    }
}

/// The tensors of a program's constants, in order.
pub fn constants_of(program: &Program, graph: &Graph) -> Vec<Tensor> {
    program
        .constants
        .iter()
        .map(|&id| {
            graph
                .constant(ValueId(id))
                .expect("program constants are graph constants")
                .clone()
        })
        .collect()
}
