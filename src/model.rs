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
    /// Native code for this CPU (LLVM). Not built yet.
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

    /// Prepares the model to run on `target`.
    pub fn compile(&self, target: &Target) -> Result<Executable, Error> {
        match target {
            Target::Reference => Ok(Executable {
                graph: self.graph.clone(),
            }),
            other => Err(Error::TargetUnavailable(other.to_string())),
        }
    }

    /// Runs the model with the reference interpreter.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        self.compile(&Target::Reference)?.run(inputs)
    }
}

/// A model ready to run on one target. `Send + Sync`: share it between threads.
#[derive(Clone, Debug)]
pub struct Executable {
    graph: Graph,
}

impl Executable {
    /// Runs on named inputs; returns every output with its name, in order.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let outs = kiln_ir::interp::run(&self.graph, inputs)?;
        Ok(self
            .graph
            .outputs
            .iter()
            .map(|&o| self.graph.value(o).name.clone())
            .zip(outs)
            .collect())
    }
}
