//! `kiln.Model` and `kiln.Executable`: the Rust facade's model and compiled
//! model, with numpy arrays in and out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln::{CompileOptions, Executable, LoadOptions, Model, Target};
use kiln_ir::{DType, Dim, Graph, Shape, Tensor};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::IntoPyObjectExt;

use crate::arrays::{numpy_name, tensor_from_py, tensor_to_py};
use crate::errors::{input_error, IntoPyResult};
use crate::text::Compiled;

/// One input or output: its name, numpy dtype and declared shape.
#[pyclass(name = "ValueInfo", module = "kiln", frozen)]
#[derive(Clone)]
pub struct ValueInfo {
    /// The name the model gives it.
    #[pyo3(get)]
    name: String,
    dtype: Option<DType>,
    shape: Option<Shape>,
}

#[pymethods]
impl ValueInfo {
    /// numpy's name of its dtype (`float32`, `int64`, `bfloat16`...), or
    /// None when the model does not record it (an artifact's outputs).
    #[getter]
    fn dtype(&self) -> Option<&'static str> {
        self.dtype.map(numpy_name)
    }

    /// Its dims: an int for a known size, a str for a symbolic one
    /// (`batch`), None for a dim of unknown size; None for an unknown rank.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(shape) = &self.shape else {
            return Ok(None);
        };
        let dims: Vec<Bound<'py, PyAny>> = shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Known(n) => n.into_bound_py_any(py),
                Dim::Sym(s) => s.as_ref().into_bound_py_any(py),
                Dim::Any => Ok(py.None().into_bound(py)),
            })
            .collect::<PyResult<_>>()?;
        PyList::new(py, dims).map(Some)
    }

    fn __repr__(&self) -> String {
        format!(
            "ValueInfo(name={:?}, dtype={}, shape={})",
            self.name,
            self.dtype
                .map_or("None".into(), |d| format!("{:?}", numpy_name(d))),
            self.shape.as_ref().map_or("None".into(), |s| s.to_string())
        )
    }
}

impl ValueInfo {
    fn of_graph(graph: &Graph, ids: &[kiln_ir::ValueId]) -> Vec<ValueInfo> {
        ids.iter()
            .map(|&i| {
                let v = graph.value(i);
                ValueInfo {
                    name: v.name.clone(),
                    dtype: Some(v.ty.dtype),
                    shape: Some(v.ty.shape.clone()),
                }
            })
            .collect()
    }

    fn of_signature(signature: &kiln::Signature) -> (Vec<ValueInfo>, Vec<ValueInfo>) {
        let inputs = signature
            .inputs
            .iter()
            .map(|(name, dtype, shape)| ValueInfo {
                name: name.clone(),
                dtype: Some(*dtype),
                shape: Some(shape.clone()),
            })
            .collect();
        let outputs = signature
            .outputs
            .iter()
            .map(|name| ValueInfo {
                name: name.clone(),
                dtype: None,
                shape: None,
            })
            .collect();
        (inputs, outputs)
    }
}

/// A functional module kiln recognized in the model (a layer, attention, an
/// FFN, a norm...).
#[pyclass(name = "Brick", module = "kiln", frozen, get_all)]
pub struct Brick {
    /// Its name (the module path, e.g. `layers.0.attention`).
    name: String,
    /// What it is (`attention`, `ffn`, `layer`...).
    kind: String,
    /// The brick it is part of, if any.
    parent: Option<String>,
    /// Parameters (weight elements) it owns.
    parameters: usize,
    /// Bytes of those weights.
    bytes: usize,
    /// Graph nodes it holds.
    nodes: usize,
}

#[pymethods]
impl Brick {
    fn __repr__(&self) -> String {
        format!(
            "Brick(name={:?}, kind={:?}, parameters={})",
            self.name, self.kind, self.parameters
        )
    }
}

/// What `kiln.generate` / `kiln.embed` compiled is kept under: the kind and
/// target (`generate:cpu`), the threads, and the KV cache capacity (0 for
/// embedders).
pub type CompiledKey = (String, Option<usize>, usize);

/// What a `kiln.Model` holds: a graph, or a compiled artifact.
enum Source {
    Graph(Model),
    Artifact(Executable),
}

/// A loaded model: an ONNX file, a Hugging Face folder, a GGUF file or a
/// `.kiln` artifact. Compile it with `compile()`.
#[pyclass(name = "Model", module = "kiln", frozen)]
pub struct PyModel {
    source: Source,
    path: PathBuf,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    /// Generators and embedders compiled for `kiln.generate` / `kiln.embed`,
    /// by target, threads and (generators) cache capacity.
    pub(crate) compiled: Mutex<HashMap<CompiledKey, Arc<Compiled>>>,
}

impl PyModel {
    /// The graph model (an artifact has none).
    pub fn model(&self) -> PyResult<&Model> {
        match &self.source {
            Source::Graph(m) => Ok(m),
            Source::Artifact(_) => Err(input_error(format!(
                "`{}` is a compiled artifact: it runs as it is (compile() it), and text generation needs the model folder",
                self.path.display()
            ))),
        }
    }

    /// Loads `path` (see `kiln.load`).
    pub fn load(py: Python<'_>, path: PathBuf, adapters: Vec<PathBuf>) -> PyResult<PyModel> {
        if kiln::aot::is_artifact(&path) {
            if !adapters.is_empty() {
                return Err(input_error(
                    "adapters attach to Hugging Face folders and GGUF files, not compiled artifacts",
                ));
            }
            let exe = py.detach(|| Executable::load_artifact(&path, None)).py()?;
            let (inputs, outputs) = ValueInfo::of_signature(exe.signature());
            return Ok(PyModel {
                source: Source::Artifact(exe),
                path,
                inputs,
                outputs,
                compiled: Mutex::default(),
            });
        }
        let model = py
            .detach(|| Model::load_with(&path, &LoadOptions { adapters }))
            .py()?;
        let graph = model.graph();
        let inputs = ValueInfo::of_graph(graph, &graph.inputs);
        let outputs = ValueInfo::of_graph(graph, &graph.outputs);
        Ok(PyModel {
            source: Source::Graph(model),
            path,
            inputs,
            outputs,
            compiled: Mutex::default(),
        })
    }
}

/// The target a name selects (`cpu`, `cuda`, `cuda-sim`, `ref`).
pub fn target_named(name: &str) -> PyResult<Target> {
    Target::from_name(name).ok_or_else(|| {
        input_error(format!(
            "unknown target `{name}` (choose cpu, cuda, cuda-sim or ref)"
        ))
    })
}

/// Compile options from the Python arguments.
pub fn compile_options(threads: Option<usize>, optimize: bool) -> PyResult<CompileOptions> {
    if threads == Some(0) {
        return Err(input_error(
            "threads must be at least 1 (or None: every core)",
        ));
    }
    Ok(CompileOptions {
        threads,
        optimize,
        ..CompileOptions::default()
    })
}

#[pymethods]
impl PyModel {
    /// The file or folder it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Its inputs, in order.
    #[getter]
    fn inputs(&self) -> Vec<ValueInfo> {
        self.inputs.clone()
    }

    /// Its outputs, in order.
    #[getter]
    fn outputs(&self) -> Vec<ValueInfo> {
        self.outputs.clone()
    }

    /// What it is: `decoder` (a causal LM: `kiln.generate`), `encoder`
    /// (`kiln.embed` when it has a pooling module), `graph` (an ONNX model)
    /// or `artifact` (compiled ahead of time).
    #[getter]
    fn kind(&self) -> &'static str {
        match &self.source {
            Source::Artifact(_) => "artifact",
            Source::Graph(m) => match m.kind() {
                Some(kiln_frontends::hf::ModelKind::Decoder(_)) => "decoder",
                Some(kiln_frontends::hf::ModelKind::Encoder(_)) => "encoder",
                None => "graph",
            },
        }
    }

    /// The bricks (functional modules) kiln recognized at import, outermost
    /// first; empty for an artifact.
    #[getter]
    fn bricks(&self) -> Vec<Brick> {
        let Source::Graph(m) = &self.source else {
            return Vec::new();
        };
        kiln::inspect::bricks_of(m.graph())
            .into_iter()
            .map(|b| Brick {
                name: b.name,
                kind: b.kind,
                parent: b.parent,
                parameters: b.parameters,
                bytes: b.bytes,
                nodes: b.nodes,
            })
            .collect()
    }

    /// Compiles the model for `target` (`cpu`: native code; `ref`: the
    /// reference interpreter; `cuda`: an NVIDIA GPU; `cuda-sim`: the GPU
    /// program on a CPU simulation) with `threads` threads (None: every
    /// core), optimized unless `optimize=False`. The GIL is released while it
    /// compiles. An artifact runs where its code is for; `target` and
    /// `optimize` must agree with it.
    #[pyo3(signature = (target = "cpu", threads = None, optimize = true))]
    fn compile(
        &self,
        py: Python<'_>,
        target: &str,
        threads: Option<usize>,
        optimize: bool,
    ) -> PyResult<PyExecutable> {
        let target = target_named(target)?;
        let options = compile_options(threads, optimize)?;
        let exe = match &self.source {
            Source::Graph(m) => py.detach(|| m.compile_with(&target, &options)).py()?,
            Source::Artifact(exe) => {
                if threads.is_none() && target == Target::Cpu {
                    exe.clone()
                } else {
                    let on = (target != Target::Cpu).then_some(target);
                    py.detach(|| Executable::load_artifact_on(&self.path, threads, on))
                        .py()?
                }
            }
        };
        Ok(PyExecutable::new(
            exe,
            target.to_string(),
            self.inputs.clone(),
            self.outputs.clone(),
        ))
    }

    /// Runs the model on the reference interpreter (exact, slow): the same as
    /// `compile("ref").run(feed)`.
    fn run<'py>(&self, py: Python<'py>, feed: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        self.compile(py, "ref", None, false)?.run(py, feed, None)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(path={:?}, kind={:?}, inputs={}, outputs={})",
            self.path.display().to_string(),
            self.kind(),
            self.inputs.len(),
            self.outputs.len()
        )
    }
}

/// A model compiled for one target. Calls to `run` from several Python
/// threads at once are safe (the GIL is released while it runs).
#[pyclass(name = "Executable", module = "kiln", frozen)]
pub struct PyExecutable {
    exe: Executable,
    target: String,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
}

impl PyExecutable {
    fn new(
        exe: Executable,
        target: String,
        inputs: Vec<ValueInfo>,
        outputs: Vec<ValueInfo>,
    ) -> PyExecutable {
        PyExecutable {
            exe,
            target,
            inputs,
            outputs,
        }
    }

    /// `feed` (a mapping of input names to arrays) as the model's tensors, in
    /// input order; every input named once, each checked against the model.
    fn tensors(&self, feed: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Tensor)>> {
        let feed = feed
            .cast::<PyDict>()
            .map_err(|_| input_error("the inputs must be a dict of input names to arrays"))?;
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        let mut given: HashMap<String, Bound<'_, PyAny>> = HashMap::new();
        for (k, v) in feed.iter() {
            let name: String = k
                .extract()
                .map_err(|_| input_error(format!("input names are strings, not {k}")))?;
            if !names.contains(&name.as_str()) {
                return Err(input_error(format!(
                    "`{name}` is not an input of the model; its inputs are {}",
                    names.join(", ")
                )));
            }
            given.insert(name, v);
        }
        // Hugging Face models' optional inputs (transformers' defaults) are
        // filled in by kiln when left out.
        let optional: Vec<String> = self
            .exe
            .optional_inputs()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let missing: Vec<String> = self
            .inputs
            .iter()
            .filter(|i| !given.contains_key(&i.name) && !optional.contains(&i.name))
            .map(describe)
            .collect();
        if !missing.is_empty() {
            return Err(input_error(format!(
                "missing input{}: {}",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", ")
            )));
        }
        self.inputs
            .iter()
            .filter(|info| given.contains_key(&info.name))
            .map(|info| {
                let dtype = info.dtype.expect("inputs have dtypes");
                let t = tensor_from_py(&given[&info.name], &info.name, dtype)?;
                if let Some(shape) = &info.shape {
                    check_shape(&info.name, shape, t.shape())?;
                }
                Ok((info.name.clone(), t))
            })
            .collect()
    }
}

/// `name` (dtype [dims]), for messages.
fn describe(i: &ValueInfo) -> String {
    format!(
        "`{}` ({} {})",
        i.name,
        i.dtype.map_or("?", numpy_name),
        i.shape.as_ref().map_or("[?]".into(), |s| s.to_string())
    )
}

/// Refuses a shape whose rank or known dims differ from the declared shape.
fn check_shape(name: &str, declared: &Shape, given: &[usize]) -> PyResult<()> {
    let fits = declared.0.len() == given.len()
        && declared.0.iter().zip(given).all(|(d, &n)| match d {
            Dim::Known(k) => *k == n,
            _ => true,
        });
    if fits {
        return Ok(());
    }
    Err(input_error(format!(
        "input `{name}` has shape {given:?} but the model takes {declared}"
    )))
}

#[pymethods]
impl PyExecutable {
    /// The target it runs on (`cpu`, `ref`, `cuda`, `cuda-sim`).
    #[getter]
    fn target(&self) -> &str {
        &self.target
    }

    /// Its inputs, in order.
    #[getter]
    fn inputs(&self) -> Vec<ValueInfo> {
        self.inputs.clone()
    }

    /// Its outputs, in order.
    #[getter]
    fn outputs(&self) -> Vec<ValueInfo> {
        self.outputs.clone()
    }

    /// Runs on `feed` (input name → array); returns output name → array, in
    /// the model's output order (only `output_names`, in that order, when
    /// given). Arrays of the input's dtype that are C-contiguous are read in
    /// place; the returned arrays own kiln's buffers.
    #[pyo3(signature = (feed, output_names = None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        feed: &Bound<'py, PyAny>,
        output_names: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        if let Some(names) = &output_names {
            for n in names {
                if !self.outputs.iter().any(|o| &o.name == n) {
                    let all: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
                    return Err(input_error(format!(
                        "`{n}` is not an output of the model; its outputs are {}",
                        all.join(", ")
                    )));
                }
            }
        }
        let inputs = self.tensors(feed)?;
        let outputs = py.detach(|| self.exe.run_exclusive(&inputs)).py()?;
        let mut by_name: HashMap<String, (Tensor, bool)> =
            outputs.into_iter().map(|(n, t, e)| (n, (t, e))).collect();
        let order: Vec<String> = match output_names {
            Some(names) => names,
            None => self.outputs.iter().map(|o| o.name.clone()).collect(),
        };
        let result = PyDict::new(py);
        for name in order {
            let (t, exclusive) = by_name.remove(&name).ok_or_else(|| {
                crate::errors::KilnError::new_err(format!("the model produced no output `{name}`"))
            })?;
            result.set_item(&name, tensor_to_py(py, t, exclusive)?)?;
        }
        Ok(result)
    }

    /// Builds the native code for inputs of these shapes (input name → shape)
    /// now, so that the first `run` at them does not pay for it.
    fn prepare(&self, py: Python<'_>, shapes: HashMap<String, Vec<usize>>) -> PyResult<()> {
        let shapes: Vec<(String, Vec<usize>)> = shapes.into_iter().collect();
        py.detach(|| self.exe.prepare(&shapes)).py()
    }

    fn __repr__(&self) -> String {
        format!(
            "Executable(target={:?}, inputs={}, outputs={})",
            self.target,
            self.inputs.len(),
            self.outputs.len()
        )
    }
}

/// Loads a model: an ONNX file, a Hugging Face folder, a GGUF file or a
/// `.kiln` artifact (written by `kiln compile -o` or `kiln.compile_file`).
/// `adapters` are PEFT LoRA adapter folders for Hugging Face and GGUF models.
#[pyfunction]
#[pyo3(signature = (path, adapters = None))]
pub fn load(py: Python<'_>, path: PathBuf, adapters: Option<Vec<PathBuf>>) -> PyResult<PyModel> {
    PyModel::load(py, path, adapters.unwrap_or_default())
}

/// Compiles the model at `path` ahead of time and writes the artifact to
/// `out` atomically (run it with `kiln.load(out).compile()` or `kiln run`).
/// `dims` sizes the symbolic input dims (`{"batch": 1, "sequence": 128}`);
/// `target` is `cpu` or `cuda`; `cpu` names the CPU the code is for
/// (`generic`: every x86-64-v3 machine, with an AVX-512 object too;
/// `native`: this machine); `threads` is the default thread count.
#[pyfunction]
#[pyo3(signature = (path, out, target = "cpu", dims = None, threads = None, cpu = "generic"))]
pub fn compile_file(
    py: Python<'_>,
    path: PathBuf,
    out: PathBuf,
    target: &str,
    dims: Option<HashMap<String, usize>>,
    threads: Option<usize>,
    cpu: &str,
) -> PyResult<()> {
    let dims = dims.unwrap_or_default();
    compile_options(threads, true)?;
    let model = PyModel::load(py, path, Vec::new())?;
    let model = model.model()?;
    match target {
        "cpu" => py
            .detach(|| kiln::aot::compile_model(model, &out, &dims, cpu, threads))
            .py()
            .map(|_| ()),
        "cuda" => py
            .detach(|| {
                kiln::aot_cuda::compile_model(model, &out, &dims, &kiln::aot_cuda::DEFAULT_ARCHS)
            })
            .py()
            .map(|_| ()),
        other => Err(input_error(format!(
            "compile_file writes code for target `cpu` or `cuda`, not `{other}`"
        ))),
    }
}
