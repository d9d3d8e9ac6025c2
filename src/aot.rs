//! Ahead-of-time artifacts (`MODEL.kiln`): a scheduled program, its kernels as
//! object code, and its constants, in the versioned container of
//! [`kiln_runtime::artifact`].
//!
//! Sections: `program` (the [`Program`] as JSON), `object` (the kernels' ELF
//! object for the CPU named in the manifest), `object <cpu>` (the same kernels
//! for each further CPU the manifest lists: a portable artifact holds one
//! object per x86-64 level, [`ARTIFACT_LEVELS`]) and `constants` (every
//! constant's bytes, 64-byte aligned, used in place from the memory map). The
//! manifest's `meta` holds the model's signature, the CPUs and triple, the
//! default thread count and the constants' table. Loading picks the best object
//! this CPU runs ([`choose_object`]), links it and maps the constants: nothing
//! is optimized, scheduled or compiled again.

use std::path::Path;

use kiln_codegen::llvm::isa::{self, IsaLevel, ARTIFACT_LEVELS};
use kiln_codegen::llvm::object::{compile, CompiledObject, CpuTarget, GENERIC_X86_CPU};
use kiln_codegen::program::Program;
use kiln_codegen::schedule::ScheduleOptions;
use kiln_ir::{DType, Graph, Shape, Tensor};
use kiln_runtime::artifact::{Artifact, ArtifactWriter, MAGIC};
use kiln_runtime::cpu::CpuExecutable;
use serde::{Deserialize, Serialize};

use crate::signature::Signature;
use crate::Error;

/// Alignment of each constant inside the `constants` section.
const CONSTANT_ALIGN: usize = 64;

/// What `meta` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// Model name.
    pub(crate) model: String,
    /// What runs the code: `cpu` (absent in older artifacts) or `cuda`.
    #[serde(default = "cpu_device")]
    pub(crate) device: String,
    /// CPU the object code is for (an LLVM CPU name; empty for `cuda`).
    pub(crate) cpu: String,
    /// LLVM features the `object` section was compiled with (`+a,-b,...`),
    /// for an object compiled for the host CPU (`--cpu native`); empty otherwise.
    #[serde(default)]
    pub(crate) features: String,
    /// Further CPUs with an object each, in section `object <cpu>` (a portable
    /// artifact: x86-64-v4 beside the x86-64-v3 of `object`).
    #[serde(default)]
    pub(crate) extra_cpus: Vec<String>,
    /// Target triple (empty for `cuda`).
    pub(crate) triple: String,
    /// `cuda`: the architectures of the `cubin <arch>` sections (`sm_90a`).
    #[serde(default)]
    pub(crate) gpu_archs: Vec<String>,
    /// `cuda`: the virtual architecture of the `ptx` section, if any.
    #[serde(default)]
    pub(crate) ptx_arch: Option<String>,
    /// Threads to run with unless the loader says otherwise.
    pub(crate) threads: usize,
    /// Inputs: name, dtype, shape.
    pub(crate) inputs: Vec<(String, DType, Vec<usize>)>,
    /// Output names.
    pub(crate) outputs: Vec<String>,
    /// Inputs a caller may leave out and value ranges (Hugging Face models;
    /// absent in older artifacts).
    #[serde(default)]
    pub(crate) input_rules: Vec<kiln_frontends::hf::InputRule>,
    /// Each constant's dtype, shape and byte range in the `constants` section.
    pub(crate) constants: Vec<ConstEntry>,
}

fn cpu_device() -> String {
    "cpu".into()
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConstEntry {
    dtype: DType,
    shape: Vec<usize>,
    offset: usize,
    len: usize,
}

/// The program's inputs as the manifest lists them: name, dtype, shape.
pub(crate) fn input_table(program: &Program) -> Vec<(String, DType, Vec<usize>)> {
    program
        .inputs
        .iter()
        .map(|(n, b)| {
            let buf = &program.buffers[*b];
            (n.clone(), buf.dtype, buf.shape.clone())
        })
        .collect()
}

/// `value` as JSON, refused when it would not read back identically (JSON
/// cannot spell every float an op attribute may hold: ±∞, NaN). Identity is
/// judged by writing the value read back again: kernel literals may be NaN
/// (stored as bits), which no `==` would call equal to itself.
pub(crate) fn to_exact_json<T>(value: &T, what: &str) -> Result<Vec<u8>, Error>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_vec(value).map_err(|e| Error::Output(e.to_string()))?;
    let again = serde_json::from_slice::<T>(&json)
        .ok()
        .and_then(|reread| serde_json::to_vec(&reread).ok());
    if again.as_deref() != Some(&json[..]) {
        return Err(Error::Codegen(format!(
            "the {what} does not survive serialization (a non-finite op attribute?)"
        )));
    }
    Ok(json)
}

/// The constants' section and table: each tensor's bytes at a
/// [`CONSTANT_ALIGN`]-aligned offset.
pub(crate) fn pack_constants(constants: &[Tensor]) -> (Vec<u8>, Vec<ConstEntry>) {
    let mut blob: Vec<u8> = Vec::new();
    let mut table = Vec::new();
    for t in constants {
        let offset = blob.len().div_ceil(CONSTANT_ALIGN) * CONSTANT_ALIGN;
        blob.resize(offset, 0);
        blob.extend_from_slice(t.bytes());
        table.push(ConstEntry {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            offset,
            len: t.bytes().len(),
        });
    }
    (blob, table)
}

/// The constants of an artifact, viewing its `constants` section.
pub(crate) fn unpack_constants(
    art: &Artifact,
    table: &[ConstEntry],
    stale: &impl Fn(String) -> Error,
) -> Result<Vec<Tensor>, Error> {
    let blob = art
        .section_bytes("constants")
        .map_err(|e| Error::Input(e.to_string()))?;
    table
        .iter()
        .map(|c| {
            let end = c.offset.checked_add(c.len).filter(|&e| e <= blob.len());
            let Some(end) = end else {
                return Err(stale("a constant lies outside its section".into()));
            };
            Tensor::from_bytes(c.dtype, c.shape.clone(), blob.slice(c.offset..end))
                .map_err(|e| stale(e.to_string()))
        })
        .collect()
}

/// Whether `path` looks like a kiln artifact (by its first bytes).
pub fn is_artifact(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == MAGIC)
}

/// The CPU an artifact is compiled for, as `kiln compile --cpu` spells it:
/// `generic` (x86-64-v3, the default), `native` (this machine) or an LLVM CPU name.
pub fn cpu_target(name: &str) -> CpuTarget {
    match name {
        "generic" => CpuTarget::Named(GENERIC_X86_CPU.to_string()),
        "native" | "host" => CpuTarget::Host,
        other => CpuTarget::Named(other.to_string()),
    }
}

/// Stages of [`write`], reported to `progress` as they start.
pub const STAGES: [&str; 4] = [
    "specializing and scheduling",
    "generating code (LLVM O3)",
    "writing the artifact",
    "done",
];

/// Optimizes `model` for the CPU, compiles it for the input shapes that
/// `dims` give its symbolic dims, for `cpu` (see [`cpu_target`]), and writes
/// the artifact to `path` atomically: `kiln compile MODEL --target cpu -o
/// PATH` as a library call.
pub fn compile_model(
    model: &crate::Model,
    path: &Path,
    dims: &std::collections::HashMap<String, usize>,
    cpu: &str,
    threads: Option<usize>,
) -> Result<ArtifactSummary, Error> {
    let optimized = crate::model::optimize_for(model.graph(), "cpu")?;
    let shapes = crate::cli::compile::input_shapes(&optimized, dims)?;
    let threads = crate::CompileOptions {
        threads,
        ..Default::default()
    }
    .resolved_threads();
    write(
        &optimized,
        &Signature::with_rules(model.graph(), model.input_rules()),
        &shapes,
        &cpu_target(cpu),
        threads,
        path,
        |_| {},
    )
}

/// Compiles the (optimized) `graph` for input `shapes` and `cpu`, and writes the
/// artifact to `path` atomically. `signature` is the model's interface (the
/// source graph's, which may have inputs the optimized graph no longer reads).
pub fn write(
    graph: &Graph,
    signature: &Signature,
    shapes: &[Vec<usize>],
    cpu: &CpuTarget,
    threads: usize,
    path: &Path,
    mut progress: impl FnMut(&str),
) -> Result<ArtifactSummary, Error> {
    progress(STAGES[0]);
    let (program, specialized) =
        artifact_program(graph, signature, shapes, ScheduleOptions::CPU, "cpu")?;
    progress(STAGES[1]);
    let objects = compile_objects(&program, cpu)?;
    let object = &objects[0];
    progress(STAGES[2]);
    let constants = crate::cpu::constants_of(&program, &specialized);
    let (blob, table) = pack_constants(&constants);
    let meta = Meta {
        model: graph.name.clone(),
        device: cpu_device(),
        cpu: object.cpu.clone(),
        features: match cpu {
            CpuTarget::Host | CpuTarget::HostAt(_) => object.features.clone(),
            CpuTarget::Named(_) => String::new(),
        },
        extra_cpus: objects[1..].iter().map(|o| o.cpu.clone()).collect(),
        triple: object.triple.clone(),
        gpu_archs: Vec::new(),
        ptx_arch: None,
        threads,
        inputs: input_table(&program),
        outputs: signature.outputs.clone(),
        input_rules: signature.rules.clone(),
        constants: table,
    };
    let program_json = to_exact_json(&program, "program")?;
    let mut w =
        ArtifactWriter::new(serde_json::to_value(&meta).map_err(|e| Error::Output(e.to_string()))?);
    let err = |e: kiln_runtime::artifact::ArtifactError| Error::Output(e.to_string());
    w.add_section("program", program_json).map_err(err)?;
    w.add_section("object", object.object.clone())
        .map_err(err)?;
    for o in &objects[1..] {
        w.add_section(&object_section(&o.cpu), o.object.clone())
            .map_err(err)?;
    }
    w.add_section("constants", blob).map_err(err)?;
    w.write(path).map_err(err)?;
    progress(STAGES[3]);
    Ok(ArtifactSummary {
        kernels: program.all_kernels().len(),
        steps: program.steps.len(),
        host_steps: program.host_ops().len(),
        object_bytes: objects.iter().map(|o| o.object.len()).sum(),
        cpu: objects
            .iter()
            .map(|o| o.cpu.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
    })
}

/// The scheduled program an artifact stores, with the specialized graph its
/// constants come from: every shape known and every model input still read.
/// `target` names the `--target` to run the model with instead, in the error.
pub(crate) fn artifact_program(
    graph: &Graph,
    signature: &Signature,
    shapes: &[Vec<usize>],
    options: ScheduleOptions,
    target: &str,
) -> Result<(Program, Graph), Error> {
    let (program, specialized) = match crate::cpu::program_for_with(graph, shapes, options)? {
        Ok(p) => p,
        Err((_, reason)) => {
            return Err(Error::Input(format!(
                "cannot compile ahead of time: {reason}; run it with `kiln run MODEL.onnx --target {target}` instead"
            )))
        }
    };
    if program.inputs.len() != signature.inputs.len() {
        return Err(Error::Input(
            "the optimizer removed model inputs nothing reads; artifacts need every input (compile without them)".into(),
        ));
    }
    Ok((program, specialized))
}

/// The artifact section holding the object for `cpu` when it is not the
/// manifest's first CPU.
fn object_section(cpu: &str) -> String {
    format!("object {cpu}")
}

/// Compiles the program's kernels for `cpu`: once for the host or a named CPU;
/// for the portable default ([`GENERIC_X86_CPU`]) once per level of
/// [`ARTIFACT_LEVELS`], in parallel, lowest level first.
fn compile_objects(program: &Program, cpu: &CpuTarget) -> Result<Vec<CompiledObject>, Error> {
    let targets: Vec<CpuTarget> = match cpu {
        CpuTarget::Named(n) if n == GENERIC_X86_CPU => ARTIFACT_LEVELS
            .iter()
            .map(|l| CpuTarget::Named(l.llvm_cpu().to_string()))
            .collect(),
        other => vec![other.clone()],
    };
    let kernels: Vec<_> = program.all_kernels().into_iter().cloned().collect();
    let kernels = &kernels;
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| s.spawn(move || compile(kernels, t, false)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("LLVM compile thread panicked"))
            .collect()
    });
    results
        .into_iter()
        .map(|r| r.map_err(|e| Error::Codegen(e.to_string())))
        .collect()
}

/// What [`write`] put in an artifact.
#[derive(Debug, Clone)]
pub struct ArtifactSummary {
    /// Generated kernels.
    pub kernels: usize,
    /// Steps of the program.
    pub steps: usize,
    /// Steps that run on the host interpreter.
    pub host_steps: usize,
    /// Size of the object code.
    pub object_bytes: usize,
    /// CPU it is compiled for.
    pub cpu: String,
}

/// Whether this machine (within the user's instruction-set cap) runs code
/// compiled for `cpu` with the LLVM `features` the manifest records; the
/// reason, naming the missing features, when not.
fn host_runs(cpu: &str, features: &str) -> Result<(), String> {
    if let Some(level) = IsaLevel::from_llvm_cpu(cpu) {
        let missing = level.missing_here();
        if !missing.is_empty() {
            return Err(format!(
                "it needs {level}, and this CPU lacks {}",
                missing.join(", ")
            ));
        }
        return match isa::isa_cap()? {
            Some(cap) if cap < level => Err(format!(
                "it needs {level}, above the cap {}={}",
                isa::ISA_ENV,
                cap.short_name()
            )),
            _ => Ok(()),
        };
    }
    let host = kiln_codegen::llvm::HostCpu::for_jit().map_err(|e| e.to_string())?;
    if features.is_empty() {
        // A CPU named at compile time without a feature list: only that CPU is known to run it.
        return if cpu == host.cpu {
            Ok(())
        } else {
            Err(format!(
                "it was compiled for CPU `{cpu}` and this machine's is `{}`; recompile it here, or with `--cpu generic` to run on any x86-64-v3 CPU",
                host.cpu
            ))
        };
    }
    let missing = missing_features(features, &host.features);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "it was compiled for CPU `{cpu}` (this machine's is `{}`) and uses CPU features this one lacks or {} turns off: {}; recompile it here, or with `--cpu generic` to run on any x86-64-v3 CPU",
            host.cpu,
            isa::ISA_ENV,
            missing.join(", ")
        ))
    }
}

/// The features `needed` turns on (`+name`) that `have` does not.
fn missing_features(needed: &str, have: &str) -> Vec<String> {
    let on: std::collections::HashSet<&str> = have
        .split(',')
        .filter_map(|f| f.strip_prefix('+'))
        .collect();
    needed
        .split(',')
        .filter_map(|f| f.strip_prefix('+'))
        .filter(|f| !on.contains(f))
        .map(str::to_string)
        .collect()
}

/// The object section an artifact's code is loaded from: the highest of its
/// CPUs that this machine runs (within the user's cap); the reason, naming
/// the missing features, when it runs none.
fn choose_object(meta: &Meta) -> Result<String, String> {
    let mut best: Option<(Option<IsaLevel>, String)> = None;
    let mut first_reason = None;
    let candidates = std::iter::once((&meta.cpu, "object".to_string(), meta.features.as_str()))
        .chain(meta.extra_cpus.iter().map(|c| (c, object_section(c), "")));
    for (cpu, section, features) in candidates {
        match host_runs(cpu, features) {
            Ok(()) => {
                let level = IsaLevel::from_llvm_cpu(cpu);
                if best.as_ref().is_none_or(|(l, _)| level > *l) {
                    best = Some((level, section));
                }
            }
            Err(why) => {
                first_reason.get_or_insert(why);
            }
        }
    }
    best.map(|(_, s)| s)
        .ok_or_else(|| first_reason.unwrap_or_else(|| "it holds no object code".into()))
}

/// An artifact opened and checked (version, CPU, manifest, program structure,
/// constants' ranges) but not yet linked: everything a file can get wrong short
/// of its object code, which is native code the user chose to run.
pub struct Checked {
    art: Artifact,
    object_section: String,
    cpu: String,
    program: Program,
    constants: Vec<Tensor>,
    threads: usize,
    signature: Signature,
}

impl Checked {
    /// The program's constants, viewing the artifact's mapping.
    pub fn constants(&self) -> &[Tensor] {
        &self.constants
    }

    /// The CPU of the object that loading links ([`choose_object`]'s pick),
    /// e.g. `x86-64-v4`.
    pub fn object_cpu(&self) -> &str {
        self.object_section
            .strip_prefix("object ")
            .unwrap_or(&self.cpu)
    }
}

/// Opens, checks and loads an artifact: a CPU artifact is linked; a CUDA one
/// is loaded on the GPU (or, with `device` = [`crate::cpu::Device::CudaSim`], its
/// GPU program runs on the simulated GPU).
pub fn load(
    path: &Path,
    threads: Option<usize>,
    device: Option<crate::cpu::Device>,
) -> Result<(crate::cpu::Build, Signature), Error> {
    if crate::aot_cuda::is_cuda_artifact(path)? {
        return crate::aot_cuda::load(path, threads, device);
    }
    if let Some(d) = device.filter(|d| *d != crate::cpu::Device::Native) {
        return Err(Error::Input(format!(
            "`{}` holds native CPU code: it runs on the cpu target, not {d:?}",
            path.display()
        )));
    }
    let (exe, signature) = load_cpu(path, threads)?;
    Ok((crate::cpu::Build::Native(exe), signature))
}

/// Opens, checks and links a CPU artifact.
pub fn load_cpu(path: &Path, threads: Option<usize>) -> Result<(CpuExecutable, Signature), Error> {
    let checked = check(path)?;
    let object = checked
        .art
        .section(&checked.object_section)
        .map_err(|e| Error::Input(e.to_string()))?;
    let exe = CpuExecutable::new(
        checked.program,
        object,
        checked.constants,
        threads.unwrap_or(checked.threads),
    )?;
    Ok((exe, checked.signature))
}

/// Opens an artifact and reads its manifest, refusing one from another kiln
/// version.
pub(crate) fn open_checked(path: &Path) -> Result<(Artifact, Meta), Error> {
    let art = Artifact::open(path).map_err(|e| Error::Input(e.to_string()))?;
    let stale = |why: String| Error::Input(format!("`{}` cannot be used: {why}", path.display()));
    if art.kiln_version() != env!("CARGO_PKG_VERSION") {
        return Err(stale(format!(
            "it was compiled by kiln {} and this is kiln {}; recompile it with `kiln compile`",
            art.kiln_version(),
            env!("CARGO_PKG_VERSION")
        )));
    }
    let meta: Meta = serde_json::from_value(art.meta().clone())
        .map_err(|e| stale(format!("its manifest is malformed ({e})")))?;
    Ok((art, meta))
}

/// Opens a CPU artifact and checks everything but its object code ([`Checked`]).
pub fn check(path: &Path) -> Result<Checked, Error> {
    let (art, meta) = open_checked(path)?;
    let stale = |why: String| Error::Input(format!("`{}` cannot be used: {why}", path.display()));
    if meta.device != "cpu" {
        return Err(stale(format!(
            "it holds code for `{}`, not the CPU",
            meta.device
        )));
    }
    let object_section = choose_object(&meta).map_err(stale)?;
    let program: Program = serde_json::from_slice(
        art.section("program")
            .map_err(|e| Error::Input(e.to_string()))?,
    )
    .map_err(|e| stale(format!("its program is malformed ({e})")))?;
    art.section(&object_section)
        .map_err(|e| Error::Input(e.to_string()))?;
    if meta.constants.len() != program.all_constants_len() {
        return Err(stale("its constants do not match its program".into()));
    }
    let constants = unpack_constants(&art, &meta.constants, &stale)?;
    validate(&program).map_err(stale)?;
    let signature = Signature {
        inputs: meta
            .inputs
            .iter()
            .map(|(n, d, s)| (n.clone(), *d, Shape::known(s)))
            .collect(),
        outputs: meta.outputs,
        rules: meta.input_rules,
    };
    Ok(Checked {
        art,
        object_section,
        cpu: meta.cpu.clone(),
        program,
        constants,
        threads: meta.threads,
        signature,
    })
}

/// A control step's interface must match its op and bodies (the runtime
/// indexes bodies' inputs and outputs by the op's counts), and each body must
/// pass [`validate`] itself.
fn validate_control(c: &kiln_codegen::program::ControlStep) -> Result<(), String> {
    let bad = |what: &str| Err(format!("its program is inconsistent ({what})"));
    let kiln_ir::Op::Control(op) = &c.op else {
        return bad("a control step without a control op");
    };
    let subs = op.subgraphs();
    if c.bodies.len() != subs.len() {
        return bad("a control step's bodies do not match its subgraphs");
    }
    if c.inputs.len() != op.leading_operands() + op.num_captures() {
        return bad("a control step's operands do not match its op");
    }
    for (b, g) in c.bodies.iter().zip(&subs) {
        if b.inputs.len() != g.graph().inputs.len() || b.outputs.len() != g.graph().outputs.len() {
            return bad("a control body's interface does not match its subgraph");
        }
        validate(b)?;
    }
    let expected_outputs = match op {
        kiln_ir::op::ControlOp::If { then_branch, .. } => then_branch.graph().outputs.len(),
        kiln_ir::op::ControlOp::Loop { num_carried, .. } => num_carried + op.num_scan_outputs(),
        kiln_ir::op::ControlOp::Scan { num_state, .. } => num_state + op.num_scan_outputs(),
    };
    if c.outputs.len() != expected_outputs {
        return bad("a control step's results do not match its op");
    }
    Ok(())
}

/// Structural checks a deserialized program must pass before it runs (ids in
/// range, kernels well formed): a hand-edited or damaged program is refused.
pub(crate) fn validate(p: &Program) -> Result<(), String> {
    let nb = p.buffers.len();
    let bad = |what: &str| Err(format!("its program is inconsistent ({what})"));
    for k in &p.kernels {
        k.check()
            .map_err(|e| format!("its program is inconsistent ({e})"))?;
    }
    for b in &p.buffers {
        if let kiln_codegen::program::BufferKind::Alias(a) = b.kind {
            if a >= nb {
                return bad("an alias of a missing buffer");
            }
        }
    }
    for (_, b) in p.inputs.iter().chain(&p.outputs) {
        if *b >= nb {
            return bad("an input or output buffer is missing");
        }
    }
    for s in &p.steps {
        if let kiln_codegen::program::Step::Kernel { kernel, args } = s {
            if *kernel >= p.kernels.len() || args.len() != p.kernels[*kernel].buffers.len() {
                return bad("a launch does not match its kernel");
            }
            for (kb, &b) in p.kernels[*kernel].buffers.iter().zip(args) {
                if b >= nb {
                    return bad("a launch names a missing buffer");
                }
                if kb.len != p.buffers[b].numel()
                    || kb.scalar != kiln_codegen::kernel::Scalar::of(p.buffers[b].dtype)
                {
                    return bad("a kernel buffer does not match its program buffer");
                }
            }
        }
        let (reads, writes) = kiln_codegen::schedule::step_io(p, s);
        if reads.iter().chain(&writes).any(|&b| b >= nb) {
            return bad("a step names a missing buffer");
        }
        if let kiln_codegen::program::Step::Control(c) = s {
            validate_control(c)?;
        }
        if let kiln_codegen::program::Step::Gemm(g) = s {
            let b_dtype = g.b_stored.unwrap_or(g.dtype);
            if p.buffers[g.a].dtype != g.dtype
                || p.buffers[g.c].dtype != g.dtype
                || p.buffers[g.b].dtype != b_dtype
            {
                return bad("a GEMM's operands do not have its element types");
            }
        }
    }
    Ok(())
}
