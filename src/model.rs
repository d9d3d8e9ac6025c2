//! The library facade: load a model, pick a target, run it.

use std::fmt;
use std::path::{Path, PathBuf};

use kiln_ir::{Graph, Tensor};

use crate::Error;

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The reference interpreter: exact, slow, always available.
    Reference,
    /// Native code for this CPU (LLVM), multi-threaded.
    Cpu,
    /// NVIDIA GPUs (CUDA). Not built yet.
    Cuda,
}

impl Target {
    /// The reference interpreter.
    pub fn reference() -> Target {
        Target::Reference
    }

    /// This machine's CPU.
    pub fn cpu() -> Target {
        Target::Cpu
    }

    /// Parses a target name as the command line spells it (`ref`, `cpu`, `cuda`).
    pub fn from_name(s: &str) -> Option<Target> {
        match s {
            "ref" | "reference" => Some(Target::Reference),
            "cpu" => Some(Target::Cpu),
            "cuda" => Some(Target::Cuda),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Reference => "ref",
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
        })
    }
}

/// How [`Model::compile_with`] prepares a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Threads each run uses (default: the machine's available parallelism).
    pub threads: Option<usize>,
    /// Run the equality-saturation optimizer first (default: yes).
    pub optimize: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            threads: None,
            optimize: true,
        }
    }
}

impl CompileOptions {
    /// The thread count these options ask for, with the default resolved.
    pub fn resolved_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// A model loaded into kiln's IR.
#[derive(Clone, Debug)]
pub struct Model {
    graph: Graph,
    path: PathBuf,
}

impl Model {
    /// Loads a model: an ONNX file (`.onnx`). Weights are memory-mapped, not copied.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(Error::UnknownModel(format!(
                "`{}` is a folder; kiln loads ONNX files (.onnx) for now",
                path.display()
            )));
        }
        if !path.exists() {
            return Err(Error::UnknownModel(format!(
                "`{}` does not exist",
                path.display()
            )));
        }
        let graph = kiln_frontends::onnx::load(path)?;
        kiln_ir::verify(&graph)?;
        Ok(Model {
            graph,
            path: path.to_path_buf(),
        })
    }

    /// Wraps a graph built in process.
    pub fn from_graph(graph: Graph) -> Model {
        Model {
            graph,
            path: PathBuf::new(),
        }
    }

    /// The model's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The file it was loaded from (empty for an in-process graph).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Prepares the model to run on `target` with default options.
    pub fn compile(&self, target: &Target) -> Result<Executable, Error> {
        self.compile_with(target, &CompileOptions::default())
    }

    /// Prepares the model to run on `target`. For the CPU the graph is optimized
    /// once; native code is generated for each set of input shapes when first
    /// run (at once here when every input dim is known).
    pub fn compile_with(
        &self,
        target: &Target,
        options: &CompileOptions,
    ) -> Result<Executable, Error> {
        match target {
            Target::Reference => Ok(Executable {
                graph: self.graph.clone(),
                cpu: None,
            }),
            Target::Cpu => {
                let graph = if options.optimize {
                    optimize_for_cpu(&self.graph)?
                } else {
                    self.graph.clone()
                };
                let cpu = crate::cpu::CpuModel::new(graph.clone(), options.resolved_threads());
                let known: Option<Vec<Vec<usize>>> = graph
                    .inputs
                    .iter()
                    .map(|&i| graph.value(i).ty.shape.as_known())
                    .collect();
                if let Some(shapes) = known {
                    cpu.build(&shapes)?;
                }
                Ok(Executable {
                    graph,
                    cpu: Some(std::sync::Arc::new(cpu)),
                })
            }
            other => Err(Error::TargetUnavailable(other.to_string())),
        }
    }

    /// Runs the model with the reference interpreter.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        self.compile(&Target::Reference)?.run(inputs)
    }
}

/// The standard optimizer pipeline with this CPU's profile.
fn optimize_for_cpu(graph: &Graph) -> Result<Graph, Error> {
    let profile = kiln_passes::cost::TargetProfile::resolve("cpu").map_err(Error::Optimize)?;
    let (optimized, _report) = kiln_passes::pipeline::Pipeline::standard()
        .run(graph, &profile)
        .map_err(|e| Error::Optimize(e.to_string()))?;
    kiln_ir::verify(&optimized)?;
    Ok(optimized)
}

/// A model ready to run on one target. `Send + Sync`: share it between threads
/// (concurrent [`Executable::run`] calls are safe and give the same results).
#[derive(Clone)]
pub struct Executable {
    graph: Graph,
    cpu: Option<std::sync::Arc<crate::cpu::CpuModel>>,
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executable")
            .field("graph", &self.graph.name)
            .field("target", &if self.cpu.is_some() { "cpu" } else { "ref" })
            .finish()
    }
}

impl Executable {
    /// The graph it runs (optimized for compiled targets).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// For the CPU target: the native build for these input shapes (compiling it
    /// if needed), to inspect its program and memory plan.
    pub fn cpu_build(
        &self,
        shapes: &[Vec<usize>],
    ) -> Result<Option<std::sync::Arc<crate::cpu::Build>>, Error> {
        self.cpu.as_ref().map(|c| c.build(shapes)).transpose()
    }

    /// Runs on named inputs; returns every output with its name, in order.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let outs = match &self.cpu {
            None => kiln_ir::interp::run(&self.graph, inputs)?,
            Some(cpu) => {
                let ordered = order_inputs(&self.graph, inputs)?;
                let shapes: Vec<Vec<usize>> = ordered.iter().map(|t| t.shape().to_vec()).collect();
                match &*cpu.build(&shapes)? {
                    crate::cpu::Build::Native(exe) => exe.run(&ordered)?,
                    crate::cpu::Build::Interpreted { .. } => {
                        kiln_ir::interp::run(&self.graph, inputs)?
                    }
                }
            }
        };
        Ok(self
            .graph
            .outputs
            .iter()
            .map(|&o| self.graph.value(o).name.clone())
            .zip(outs)
            .collect())
    }
}

/// The inputs in the graph's order, with the interpreter's checks and messages
/// (unknown or missing names, dtype and declared dims).
fn order_inputs(graph: &Graph, inputs: &[(String, Tensor)]) -> Result<Vec<Tensor>, Error> {
    use kiln_ir::interp::EvalError;
    let mut slots: Vec<Option<Tensor>> = vec![None; graph.inputs.len()];
    for (name, t) in inputs {
        let pos = graph
            .inputs
            .iter()
            .position(|&i| graph.value(i).name == *name)
            .ok_or_else(|| EvalError::UnknownInput {
                name: name.clone(),
                expected: graph
                    .inputs
                    .iter()
                    .map(|&i| graph.value(i).name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let v = graph.value(graph.inputs[pos]);
        if t.dtype() != v.ty.dtype {
            return Err(EvalError::InputMismatch {
                name: name.clone(),
                message: format!("expected dtype {}, got {}", v.ty.dtype, t.dtype()),
            }
            .into());
        }
        slots[pos] = Some(t.clone());
    }
    slots
        .into_iter()
        .zip(&graph.inputs)
        .map(|(t, &i)| t.ok_or_else(|| EvalError::MissingInput(graph.value(i).name.clone()).into()))
        .collect()
}
