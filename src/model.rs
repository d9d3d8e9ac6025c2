//! The library facade: load a model, pick a target, run it.

use std::fmt;
use std::path::{Path, PathBuf};

use std::borrow::Cow;
use std::sync::Arc;

use kiln_frontends::hf::InputRule;
use kiln_ir::{Graph, Tensor};

use crate::signature::Signature;
use crate::Error;

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The reference interpreter: exact, slow, always available.
    Reference,
    /// Native code for this CPU (LLVM), multi-threaded.
    Cpu,
    /// NVIDIA GPUs (CUDA): GPU kernels compiled by NVRTC, run by the CUDA
    /// driver (the GPU `KILN_CUDA_DEVICE`, default the first).
    Cuda,
    /// The GPU program on a simulated device: every kernel lowered to a GPU
    /// kernel and run by the SIMT interpreter on this CPU, through the same GPU
    /// runtime as [`Target::Cuda`] (library GEMMs and host steps on the host).
    /// Slow; how the GPU path is tested without a GPU.
    CudaSim,
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

    /// The first NVIDIA GPU ([`Target::Cuda`]).
    pub fn cuda() -> Target {
        Target::Cuda
    }

    /// The GPU program on the SIMT interpreter ([`Target::CudaSim`]).
    pub fn cuda_sim() -> Target {
        Target::CudaSim
    }

    /// Parses a target name as the command line spells it (`ref`, `cpu`, `cuda`,
    /// `cuda-sim`).
    pub fn from_name(s: &str) -> Option<Target> {
        match s {
            "ref" | "reference" => Some(Target::Reference),
            "cpu" => Some(Target::Cpu),
            "cuda" => Some(Target::Cuda),
            "cuda-sim" => Some(Target::CudaSim),
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
            Target::CudaSim => "cuda-sim",
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
    /// The highest x86-64 level the CPU target's code may use (default: all
    /// the CPU has, within `KILN_CPU_ISA`): [`crate::IsaLevel::V3`] runs the
    /// AVX2 code on an AVX-512 machine. Library GEMMs choose their own kernels
    /// by the CPU's features.
    pub isa: Option<crate::IsaLevel>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            threads: None,
            optimize: true,
            isa: None,
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
    kind: Option<kiln_frontends::hf::ModelKind>,
    /// Hugging Face inputs a caller may leave out, and their value ranges.
    rules: Arc<[InputRule]>,
    /// Decoders: the KV-cache graph the generator runs.
    kv_cache: Option<Arc<Graph>>,
    /// A GGUF file's own vocabulary (folders read `tokenizer.json` instead).
    gguf_vocab: Option<std::sync::Arc<kiln_frontends::tokenizer::GgufVocab>>,
}

/// How [`Model::load_with`] reads a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// PEFT LoRA adapter folders attached to the model, in order (Hugging Face
    /// folders and GGUF files).
    pub adapters: Vec<PathBuf>,
}

impl Model {
    /// Loads a model: an ONNX file (`.onnx`), a Hugging Face folder (`config.json`
    /// with `model.safetensors` or its shards) or a GGUF file (`.gguf`). Weights are
    /// memory-mapped, not copied (quantized GGUF tensors are dequantized).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        Model::load_with(path, &LoadOptions::default())
    }

    /// [`Model::load`] with options (LoRA adapters).
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model, Error> {
        let path = path.as_ref();
        if path.is_dir() {
            if !path.join("config.json").is_file() {
                return Err(Error::UnknownModel(format!(
                    "`{}` is a folder without config.json; kiln loads Hugging Face model folders (config.json + model.safetensors), ONNX files and GGUF files",
                    path.display()
                )));
            }
            let hf = kiln_frontends::hf::load_folder(path, &options.adapters)?;
            return Ok(Model::of_hf(hf, path, None));
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            let (hf, vocab) = crate::gguf::load(path, &options.adapters)?;
            return Ok(Model::of_hf(hf, path, Some(Arc::new(vocab))));
        }
        if !options.adapters.is_empty() {
            return Err(Error::Input(
                "adapters attach to Hugging Face folders and GGUF files, not ONNX models".into(),
            ));
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
            kind: None,
            rules: Arc::new([]),
            kv_cache: None,
            gguf_vocab: None,
        })
    }

    fn of_hf(
        hf: kiln_frontends::hf::HfModel,
        path: &Path,
        gguf_vocab: Option<Arc<kiln_frontends::tokenizer::GgufVocab>>,
    ) -> Model {
        Model {
            graph: hf.graph,
            path: path.to_path_buf(),
            kind: Some(hf.kind),
            rules: hf.inputs.into(),
            kv_cache: hf.kv_cache.map(Arc::new),
            gguf_vocab,
        }
    }

    /// Wraps a graph built in process.
    pub fn from_graph(graph: Graph) -> Model {
        Model {
            graph,
            path: PathBuf::new(),
            kind: None,
            rules: Arc::new([]),
            kv_cache: None,
            gguf_vocab: None,
        }
    }

    /// For a decoder (Hugging Face folder or GGUF file): the same model with the
    /// KV-cache interface (`past_key.l`, a bool `[batch, 1, seq, cache + seq]`
    /// mask, `present_key.l` …; see `kiln_frontends::hf::decoder`), which
    /// [`crate::generate::Generator`] runs. `None` for other models, whose one
    /// graph is [`Model::graph`].
    pub fn kv_cache(&self) -> Option<Model> {
        let graph = self.kv_cache.as_ref()?;
        Some(Model {
            graph: (**graph).clone(),
            path: self.path.clone(),
            kind: self.kind.clone(),
            rules: Arc::new([]),
            kv_cache: None,
            gguf_vocab: self.gguf_vocab.clone(),
        })
    }

    /// The rules of a Hugging Face model's inputs: which ones a caller may leave
    /// out (transformers' defaults, which [`Executable::run`] fills in) and the
    /// ranges their values must lie in. Empty for other models.
    pub fn input_rules(&self) -> &[InputRule] {
        &self.rules
    }

    /// The model's tokenizer: a folder's `tokenizer.json` (with
    /// `tokenizer_config.json`'s special tokens and chat template) or the vocabulary
    /// a GGUF file stores.
    pub fn tokenizer(&self) -> Result<kiln_frontends::tokenizer::TextTokenizer, Error> {
        use kiln_frontends::tokenizer::TextTokenizer;
        if let Some(v) = &self.gguf_vocab {
            return Ok(TextTokenizer::from_gguf_parts((**v).clone())?);
        }
        if self.path.is_dir() {
            return Ok(TextTokenizer::from_folder(&self.path)?);
        }
        Err(Error::Input(format!(
            "`{}` has no tokenizer (Hugging Face folders and GGUF files have one)",
            self.path.display()
        )))
    }

    /// For Hugging Face folders and GGUF files: whether it is a decoder (with what
    /// drives its KV-cache interface) or an encoder. `None` for ONNX models.
    pub fn kind(&self) -> Option<&kiln_frontends::hf::ModelKind> {
        self.kind.as_ref()
    }

    /// The model's graph (for a Hugging Face folder or GGUF file, the one with
    /// transformers' forward signature).
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
            Target::Reference => Ok(Executable::new(
                Engine::Reference(self.graph.clone()),
                Signature::with_rules(&self.graph, &self.rules),
            )),
            Target::Cpu | Target::CudaSim | Target::Cuda => {
                // The GPU first: a machine without one fails before the
                // optimizer's work.
                let device = match target {
                    Target::Cuda => crate::cpu::Device::Cuda(crate::gpu::open_gpu()?),
                    Target::CudaSim => crate::cpu::Device::CudaSim,
                    _ => crate::cpu::Device::Native,
                };
                let graph = if options.optimize {
                    let profile = if *target == Target::Cpu {
                        "cpu"
                    } else {
                        "cuda"
                    };
                    optimize_for(&self.graph, profile)?
                } else {
                    self.graph.clone()
                };
                let cpu = crate::cpu::CpuModel::new(graph.clone(), options.resolved_threads())
                    .on(device)
                    .at_isa(options.isa);
                let known: Option<Vec<Vec<usize>>> = graph
                    .inputs
                    .iter()
                    .map(|&i| graph.value(i).ty.shape.as_known())
                    .collect();
                if let Some(shapes) = known {
                    cpu.build(&shapes)?;
                }
                // The model's own signature: the optimizer may drop inputs
                // nothing reads, which callers still pass.
                Ok(Executable::new(
                    Engine::Cpu(std::sync::Arc::new(cpu)),
                    Signature::with_rules(&self.graph, &self.rules),
                ))
            }
        }
    }

    /// Runs the model with the reference interpreter.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        self.compile(&Target::Reference)?.run(inputs)
    }
}

/// The standard optimizer pipeline with the cost model profile `profile`
/// (`cpu`, `cuda`: the calibrated ones, else the defaults).
pub(crate) fn optimize_for(graph: &Graph, profile: &str) -> Result<Graph, Error> {
    let profile = kiln_passes::cost::TargetProfile::resolve(profile).map_err(Error::Optimize)?;
    let (optimized, _report) = kiln_passes::pipeline::Pipeline::standard()
        .run(graph, &profile)
        .map_err(|e| Error::Optimize(e.to_string()))?;
    kiln_ir::verify(&optimized).map_err(Error::OptimizedIllFormed)?;
    Ok(optimized)
}

/// A model ready to run on one target. `Send + Sync`: share it between threads
/// (concurrent [`Executable::run`] calls are safe and give the same results).
#[derive(Clone)]
pub struct Executable {
    /// Its interface, with the inputs that may be left out
    /// ([`Signature::rules`]).
    signature: Signature,
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    Reference(Graph),
    Cpu(std::sync::Arc<crate::cpu::CpuModel>),
    Artifact(std::sync::Arc<crate::cpu::Build>),
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.engine {
            Engine::Reference(_) => "ref",
            Engine::Cpu(m) => match m.device {
                crate::cpu::Device::Native => "cpu",
                crate::cpu::Device::CudaSim => "cuda-sim",
                crate::cpu::Device::Cuda(_) => "cuda",
            },
            Engine::Artifact(b) => match **b {
                crate::cpu::Build::Gpu(_) => "cuda (artifact)",
                _ => "cpu (artifact)",
            },
        };
        f.debug_struct("Executable")
            .field("inputs", &self.signature.inputs.len())
            .field("target", &target)
            .finish()
    }
}

impl Executable {
    fn new(engine: Engine, signature: Signature) -> Executable {
        Executable { signature, engine }
    }

    /// The inputs [`Executable::run`] fills in when left out, with what it fills
    /// them with (Hugging Face models: transformers' defaults).
    pub fn optional_inputs(&self) -> Vec<(String, kiln_frontends::hf::InputDefault)> {
        self.signature
            .rules
            .iter()
            .filter_map(|r| r.default.map(|d| (r.name.clone(), d)))
            .collect()
    }

    /// `inputs` with the left-out optional inputs filled in, every input's values
    /// checked against its rule (a clear error naming the input, not an index
    /// error deep in the graph).
    fn complete<'a>(
        &self,
        inputs: &'a [(String, Tensor)],
    ) -> Result<Cow<'a, [(String, Tensor)]>, Error> {
        if self.signature.rules.is_empty() {
            return Ok(Cow::Borrowed(inputs));
        }
        let given = |name: &str| inputs.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let mut all = Cow::Borrowed(inputs);
        for rule in self.signature.rules.iter() {
            let (Some(default), None) = (rule.default, given(&rule.name)) else {
                continue;
            };
            let ids = given("input_ids")
                .ok_or_else(|| kiln_ir::interp::EvalError::MissingInput("input_ids".into()))?;
            let &[batch, seq] = ids.shape() else {
                continue; // the input check names input_ids' shape
            };
            all.to_mut()
                .push((rule.name.clone(), default.tensor(batch, seq)));
        }
        for rule in self.signature.rules.iter() {
            let Some((_, t)) = all.iter().find(|(n, _)| *n == rule.name) else {
                continue;
            };
            check_rule(rule, t, given(&rule.name).is_none())?;
        }
        Ok(all)
    }

    /// Loads an ahead-of-time compiled artifact (`kiln compile MODEL --target cpu
    /// -o MODEL.kiln`) without compiling anything; `threads` overrides the
    /// thread count it was compiled with.
    pub fn load_artifact(
        path: impl AsRef<Path>,
        threads: Option<usize>,
    ) -> Result<Executable, Error> {
        Executable::load_artifact_on(path, threads, None)
    }

    /// [`Executable::load_artifact`] on a chosen target: `None` runs it where
    /// its code is for (the CPU, or the GPU for `--target cuda` artifacts);
    /// [`Target::CudaSim`] runs a GPU artifact's program on the simulated GPU.
    pub fn load_artifact_on(
        path: impl AsRef<Path>,
        threads: Option<usize>,
        target: Option<Target>,
    ) -> Result<Executable, Error> {
        let device = match target {
            None => None,
            Some(Target::Cpu) => Some(crate::cpu::Device::Native),
            Some(Target::CudaSim) => Some(crate::cpu::Device::CudaSim),
            Some(Target::Cuda) => Some(crate::cpu::Device::Cuda(crate::gpu::open_gpu()?)),
            Some(Target::Reference) => {
                return Err(Error::Input(
                    "a compiled artifact holds no graph for the reference interpreter".into(),
                ))
            }
        };
        let (build, signature) = crate::aot::load(path.as_ref(), threads, device)?;
        Ok(Executable::new(
            Engine::Artifact(std::sync::Arc::new(build)),
            signature,
        ))
    }

    /// The graph it runs (optimized for the CPU target; none for an artifact).
    pub fn graph(&self) -> Option<&Graph> {
        match &self.engine {
            Engine::Reference(g) => Some(g),
            Engine::Cpu(c) => Some(&c.graph),
            Engine::Artifact(_) => None,
        }
    }

    /// Its inputs and outputs.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Name, dtype and declared shape of each input, in order.
    pub fn input_types(&self) -> Vec<(String, kiln_ir::DType, kiln_ir::Shape)> {
        self.signature.inputs.clone()
    }

    /// For the CPU target: the native build for these input shapes (compiling it
    /// if needed), to inspect its program and memory plan.
    pub fn cpu_build(
        &self,
        shapes: &[Vec<usize>],
    ) -> Result<Option<std::sync::Arc<crate::cpu::Build>>, Error> {
        match &self.engine {
            Engine::Cpu(c) => c.build(shapes).map(Some),
            _ => Ok(None),
        }
    }

    /// For the CPU target: builds the native code for inputs of these shapes (by
    /// input name) now, so that the first run at them does not pay for it. Other
    /// targets have nothing to prepare.
    pub fn prepare(&self, shapes: &[(String, Vec<usize>)]) -> Result<(), Error> {
        let Engine::Cpu(cpu) = &self.engine else {
            return Ok(());
        };
        // Inputs left out take input_ids' shape (see `complete`).
        let ids_shape = shapes
            .iter()
            .find(|(n, _)| n == "input_ids")
            .map(|(_, s)| s);
        let defaulted = |name: &str| {
            self.signature
                .rules
                .iter()
                .any(|r| r.name == name && r.default.is_some())
                .then_some(ids_shape)
                .flatten()
        };
        let ordered: Vec<Vec<usize>> = cpu
            .graph
            .inputs
            .iter()
            .map(|&i| {
                let name = &cpu.graph.value(i).name;
                shapes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, s)| s)
                    .or_else(|| defaulted(name))
                    .cloned()
                    .ok_or_else(|| Error::Input(format!("prepare: no shape for input `{name}`")))
            })
            .collect::<Result<_, _>>()?;
        cpu.build(&ordered).map(|_| ())
    }

    /// Runs on named inputs; returns every output with its name, in order.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let (outs, _) = self.run_flagged(inputs)?;
        Ok(self.signature.outputs.iter().cloned().zip(outs).collect())
    }

    /// [`run`](Self::run), also saying of each output whether its buffer is
    /// the caller's alone: kiln keeps no reference to it and no other output
    /// shares it, so it may be handed on as writable memory (the Python
    /// package's zero-copy arrays). `false` promises nothing: the buffer may
    /// be a constant of the model, or shared.
    pub fn run_exclusive(
        &self,
        inputs: &[(String, Tensor)],
    ) -> Result<Vec<(String, Tensor, bool)>, Error> {
        let (outs, exclusive) = self.run_flagged(inputs)?;
        Ok(self
            .signature
            .outputs
            .iter()
            .cloned()
            .zip(outs)
            .zip(exclusive)
            .map(|((n, t), e)| (n, t, e))
            .collect())
    }

    fn run_flagged(&self, inputs: &[(String, Tensor)]) -> Result<(Vec<Tensor>, Vec<bool>), Error> {
        let inputs = &*self.complete(inputs)?;
        let mut exclusive: Option<Vec<bool>> = None;
        let outs = match &self.engine {
            Engine::Reference(g) => kiln_ir::interp::run(g, inputs)?,
            Engine::Cpu(cpu) => {
                let all = order_inputs(&self.signature, inputs)?;
                let ordered: Vec<Tensor> = cpu
                    .graph
                    .inputs
                    .iter()
                    .map(|&i| {
                        let name = &cpu.graph.value(i).name;
                        let pos = self.signature.inputs.iter().position(|(n, _, _)| n == name);
                        pos.map(|p| all[p].clone()).ok_or_else(|| {
                            Error::Internal(format!(
                                "optimized input `{name}` is not a model input"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let shapes: Vec<Vec<usize>> = ordered.iter().map(|t| t.shape().to_vec()).collect();
                match &*cpu.build(&shapes)? {
                    crate::cpu::Build::Native(exe) => {
                        exclusive = Some(exe.exclusive_outputs());
                        exe.run(&ordered)?
                    }
                    crate::cpu::Build::Gpu(exe) => exe.run(&ordered)?,
                    crate::cpu::Build::Interpreted { .. } => {
                        let named: Vec<(String, Tensor)> = cpu
                            .graph
                            .inputs
                            .iter()
                            .map(|&i| cpu.graph.value(i).name.clone())
                            .zip(ordered)
                            .collect();
                        kiln_ir::interp::run(&cpu.graph, &named)?
                    }
                }
            }
            Engine::Artifact(build) => {
                let ordered = order_inputs(&self.signature, inputs)?;
                if let crate::cpu::Build::Native(exe) = &**build {
                    exclusive = Some(exe.exclusive_outputs());
                }
                build
                    .run(&ordered)
                    .ok_or_else(|| Error::Internal("an artifact is always compiled".into()))??
            }
        };
        let exclusive = exclusive.unwrap_or_else(|| vec![false; outs.len()]);
        Ok((outs, exclusive))
    }
}

/// Checks an input's values against its rule; `filled` says it was left out
/// and filled in with its default.
fn check_rule(rule: &InputRule, t: &Tensor, filled: bool) -> Result<(), Error> {
    use kiln_ir::interp::EvalError;
    if t.dtype() != kiln_ir::DType::I64 {
        return Ok(()); // the input check names the dtype
    }
    let mismatch = |message: String| -> Error {
        EvalError::InputMismatch {
            name: rule.name.clone(),
            message,
        }
        .into()
    };
    if let (Some(max), Some(&len)) = (rule.max_len, t.shape().last()) {
        if len > max {
            return Err(mismatch(format!(
                "a sequence of {len} tokens is longer than the model's {max} positions"
            )));
        }
    }
    let Some(bound) = &rule.below else {
        return Ok(());
    };
    if filled && rule.default == Some(kiln_frontends::hf::InputDefault::Absent) {
        return Ok(()); // −1 by design: the graph reads it as "not given"
    }
    let values = t.to_i64_vec();
    let Some(at) = values
        .iter()
        .position(|&v| v < 0 || v as u64 >= bound.limit as u64)
    else {
        return Ok(());
    };
    let (row, col) = match t.shape() {
        &[_, seq] if seq > 0 => (at / seq, at % seq),
        _ => (0, at),
    };
    Err(mismatch(if filled {
        format!(
            "left out, it would be 0..{} ({}): give it explicitly",
            t.shape().last().copied().unwrap_or(0),
            bound.what
        )
    } else {
        format!(
            "value {} at [{row}, {col}] is out of range 0..{} ({})",
            values[at], bound.limit, bound.what
        )
    }))
}

/// The inputs in the signature's order, with the interpreter's checks and
/// messages (unknown, missing or repeated names, dtype, rank, known dims, and
/// one size per symbolic dim).
fn order_inputs(sig: &Signature, inputs: &[(String, Tensor)]) -> Result<Vec<Tensor>, Error> {
    use kiln_ir::interp::EvalError;
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    let mut bound: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (name, t) in inputs {
        let pos = sig
            .inputs
            .iter()
            .position(|(n, _, _)| n == name)
            .ok_or_else(|| EvalError::UnknownInput {
                name: name.clone(),
                expected: sig
                    .inputs
                    .iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let (_, dtype, shape) = &sig.inputs[pos];
        let mismatch = |message: String| -> Error {
            EvalError::InputMismatch {
                name: name.clone(),
                message,
            }
            .into()
        };
        if t.dtype() != *dtype {
            return Err(mismatch(format!(
                "expected dtype {dtype}, got {}",
                t.dtype()
            )));
        }
        let fits = t.rank() == shape.rank()
            && shape
                .0
                .iter()
                .zip(t.shape())
                .all(|(d, &n)| d.known().is_none_or(|k| k == n));
        if !fits {
            return Err(mismatch(format!(
                "expected shape {shape}, got {:?}",
                t.shape()
            )));
        }
        for (i, (d, &n)) in shape.0.iter().zip(t.shape()).enumerate() {
            if let kiln_ir::Dim::Sym(s) = d {
                let prev = *bound.entry(s.as_ref()).or_insert(n);
                if prev != n {
                    return Err(mismatch(format!(
                        "dim {i} (`{s}`) is {n} but `{s}` is {prev} in another input"
                    )));
                }
            }
        }
        if slots[pos].replace(t.clone()).is_some() {
            return Err(Error::Input(format!("input `{name}` given twice")));
        }
    }
    slots
        .into_iter()
        .zip(&sig.inputs)
        .map(|(t, (n, _, _))| t.ok_or_else(|| EvalError::MissingInput(n.clone()).into()))
        .collect()
}
