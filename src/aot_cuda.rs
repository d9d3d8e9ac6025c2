//! Ahead-of-time artifacts for NVIDIA GPUs (`kiln compile MODEL --target cuda
//! --arch sm_90a,sm_80 -o MODEL.kiln`), written by NVRTC alone: a build server
//! needs no GPU.
//!
//! Sections: `gpu_program` (the [`GpuProgram`] as JSON: the scheduled program
//! and its GPU kernels), one `cubin <arch>` per architecture asked for, `ptx`
//! (the module for the oldest architecture as PTX, which the driver compiles
//! for newer GPUs than any cubin) and `constants` (as in CPU artifacts). The
//! manifest's `device` is `cuda`; `gpu_archs` and `ptx_arch` name the code.
//!
//! Loading opens the GPU and picks its code ([`choose_code`]): a cubin built
//! for it, else a cubin its architecture runs (same major version, an equal or
//! older minor, no `a` suffix), else the PTX when the GPU is at least as new;
//! otherwise a clear refusal naming the GPU and the architectures held.

use std::path::Path;

use kiln_codegen::gpu::cuda::module_source;
use kiln_codegen::gpu::cuda::nvrtc::{Arch, Form, Nvrtc};
use kiln_codegen::gpu::program::{GpuProgram, GpuStep};
use kiln_ir::{Graph, Shape};
use kiln_runtime::artifact::{Artifact, ArtifactWriter};
use kiln_runtime::cuda::{CudaDevice, GpuExecutable, SimDevice};

use crate::aot::{
    input_table, open_checked, pack_constants, to_exact_json, unpack_constants, validate, Meta,
};
use crate::cpu::{Build, Device};
use crate::signature::Signature;
use crate::Error;

/// The architectures `kiln compile --target cuda` builds for by default:
/// Hopper (with its architecture-specific instructions) and Ampere.
pub const DEFAULT_ARCHS: [Arch; 2] = [Arch::SM_90A, Arch::SM_80];

/// Stages of [`write`], reported to `progress` as they start.
pub const STAGES: [&str; 4] = [
    "specializing and scheduling",
    "compiling GPU kernels (NVRTC)",
    "writing the artifact",
    "done",
];

/// What [`write`] put in an artifact.
#[derive(Debug, Clone)]
pub struct CudaArtifactSummary {
    /// GPU kernels.
    pub kernels: usize,
    /// Steps of the program.
    pub steps: usize,
    /// Steps on the host interpreter.
    pub host_steps: usize,
    /// The architectures with a cubin.
    pub archs: Vec<Arch>,
    /// Bytes of GPU code (cubins and PTX).
    pub code_bytes: usize,
}

fn section_name(arch: Arch) -> String {
    format!("cubin {}", arch.sm())
}

/// Optimizes `model` for the GPU, compiles it for the input shapes that `dims`
/// give its symbolic dims, to GPU code for `archs`, and writes the artifact to
/// `path` atomically: `kiln compile MODEL --target cuda -o PATH` as a library
/// call. NVRTC is needed; a GPU is not.
pub fn compile_model(
    model: &crate::Model,
    path: &Path,
    dims: &std::collections::HashMap<String, usize>,
    archs: &[Arch],
) -> Result<CudaArtifactSummary, Error> {
    let optimized = crate::model::optimize_for(model.graph(), "cuda")?;
    let shapes = crate::cli::compile::input_shapes(&optimized, dims)?;
    write(
        &optimized,
        &Signature::with_rules(model.graph(), model.input_rules()),
        &shapes,
        archs,
        path,
        |_| {},
    )
}

/// Compiles the (optimized) `graph` for input `shapes` to GPU code for `archs`
/// and writes the artifact to `path` atomically.
pub fn write(
    graph: &Graph,
    signature: &Signature,
    shapes: &[Vec<usize>],
    archs: &[Arch],
    path: &Path,
    mut progress: impl FnMut(&str),
) -> Result<CudaArtifactSummary, Error> {
    if archs.is_empty() {
        return Err(Error::Input(
            "--arch: name at least one architecture".into(),
        ));
    }
    progress(STAGES[0]);
    let (program, specialized) = crate::aot::artifact_program(
        graph,
        signature,
        shapes,
        kiln_codegen::schedule::ScheduleOptions::default(),
        "cuda",
    )?;
    let constants = crate::cpu::own_constants_of(&program, &specialized);
    let gpu = GpuProgram::lower(program);
    progress(STAGES[1]);
    let source = module_source(&gpu.kernels).map_err(|e| Error::Codegen(e.to_string()))?;
    let nvrtc = Nvrtc::load().map_err(|e| Error::Gpu(e.to_string()))?;
    let mut cubins = Vec::new();
    for &arch in archs {
        let c = nvrtc
            .compile(&source, arch, Form::Cubin)
            .map_err(|e| Error::Gpu(e.to_string()))?;
        cubins.push((arch, c.cubin.unwrap_or_default()));
    }
    // PTX for the oldest architecture: newer GPUs compile it at load.
    let oldest = *archs.iter().min_by_key(|a| a.number).expect("not empty");
    let ptx_arch = Arch {
        number: oldest.number,
        suffix: None,
    };
    let ptx = nvrtc
        .compile(&source, ptx_arch, Form::Ptx)
        .map_err(|e| Error::Gpu(e.to_string()))?
        .ptx;
    progress(STAGES[2]);
    let (blob, table) = pack_constants(&constants);
    let meta = Meta {
        model: graph.name.clone(),
        device: "cuda".into(),
        cpu: String::new(),
        features: String::new(),
        extra_cpus: Vec::new(),
        triple: String::new(),
        gpu_archs: archs.iter().map(Arch::sm).collect(),
        ptx_arch: Some(ptx_arch.compute()),
        threads: 1,
        inputs: input_table(&gpu.program),
        outputs: signature.outputs.clone(),
        input_rules: signature.rules.clone(),
        constants: table,
    };
    let json = to_exact_json(&gpu, "GPU program")?;
    let mut w =
        ArtifactWriter::new(serde_json::to_value(&meta).map_err(|e| Error::Output(e.to_string()))?);
    let err = |e: kiln_runtime::artifact::ArtifactError| Error::Output(e.to_string());
    w.add_section("gpu_program", json).map_err(err)?;
    let mut code_bytes = ptx.len();
    for (arch, cubin) in &cubins {
        code_bytes += cubin.len();
        w.add_section(&section_name(*arch), cubin.clone())
            .map_err(err)?;
    }
    w.add_section("ptx", ptx.into_bytes()).map_err(err)?;
    w.add_section("constants", blob).map_err(err)?;
    w.write(path).map_err(err)?;
    progress(STAGES[3]);
    let (_, _, host_steps) = gpu.step_counts();
    Ok(CudaArtifactSummary {
        kernels: gpu.kernels.len(),
        steps: gpu.steps.len(),
        host_steps,
        archs: archs.to_vec(),
        code_bytes,
    })
}

/// Whether the artifact at `path` holds GPU code (its manifest says `cuda`).
pub fn is_cuda_artifact(path: &Path) -> Result<bool, Error> {
    let (_, meta) = open_checked(path)?;
    Ok(meta.device == "cuda")
}

/// Which of an artifact's code a GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The cubin for this architecture.
    Cubin(Arch),
    /// The PTX (compiled by the driver at load).
    Ptx,
}

/// The code a GPU of architecture `gpu` runs, from cubins for `cubins` and PTX
/// for `ptx`: an exact cubin, else one of the same major version and an older
/// minor without an architecture-specific suffix (binary compatible), else the
/// PTX when the GPU is at least as new; `Err` says why none fits.
pub fn choose_code(cubins: &[Arch], ptx: Option<Arch>, gpu: Arch) -> Result<Code, String> {
    if let Some(&a) = cubins
        .iter()
        .find(|a| a.number == gpu.number && (a.suffix.is_none() || a.suffix == gpu.suffix))
    {
        return Ok(Code::Cubin(a));
    }
    let compatible = cubins
        .iter()
        .filter(|a| {
            a.suffix.is_none() && a.number / 10 == gpu.number / 10 && a.number <= gpu.number
        })
        .max_by_key(|a| a.number);
    if let Some(&a) = compatible {
        return Ok(Code::Cubin(a));
    }
    if ptx.is_some_and(|p| p.number <= gpu.number) {
        return Ok(Code::Ptx);
    }
    let held: Vec<String> = cubins.iter().map(Arch::sm).collect();
    Err(format!(
        "it holds GPU code for {}{} and this GPU is {}: recompile it with `kiln compile --target cuda --arch {}`",
        held.join(", "),
        ptx.map(|p| format!(" (and PTX for {})", p.compute()))
            .unwrap_or_default(),
        gpu.sm(),
        Arch {
            number: gpu.number,
            suffix: None
        }
        .sm()
    ))
}

/// Opens and checks a CUDA artifact and loads it on `device` (the GPU by
/// default; [`Device::CudaSim`] runs its GPU program on the simulated GPU).
pub fn load(
    path: &Path,
    threads: Option<usize>,
    device: Option<Device>,
) -> Result<(Build, Signature), Error> {
    let (art, meta) = open_checked(path)?;
    let stale = |why: String| Error::Input(format!("`{}` cannot be used: {why}", path.display()));
    let gpu: GpuProgram = serde_json::from_slice(
        art.section("gpu_program")
            .map_err(|e| Error::Input(e.to_string()))?,
    )
    .map_err(|e| stale(format!("its GPU program is malformed ({e})")))?;
    validate(&gpu.program).map_err(&stale)?;
    validate_gpu(&gpu).map_err(&stale)?;
    if meta.constants.len() != gpu.program.constants.len() {
        return Err(stale("its constants do not match its program".into()));
    }
    let constants = unpack_constants(&art, &meta.constants, &stale)?;
    let signature = Signature {
        inputs: meta
            .inputs
            .iter()
            .map(|(n, d, s)| (n.clone(), *d, Shape::known(s)))
            .collect(),
        outputs: meta.outputs.clone(),
        rules: meta.input_rules.clone(),
    };
    let threads = threads.unwrap_or(1);
    let exe = match device {
        Some(Device::CudaSim) => {
            let sim = SimDevice::new(gpu.kernels.clone())?;
            GpuExecutable::new(gpu, Box::new(sim), constants, threads)?
        }
        Some(Device::Native) => {
            return Err(stale(
                "it holds GPU code: run it with --target cuda (or cuda-sim)".into(),
            ))
        }
        Some(Device::Cuda(card)) => load_on(card, &art, &meta, gpu, constants, threads)?,
        None => {
            let card = crate::gpu::open_gpu()?;
            load_on(card, &art, &meta, gpu, constants, threads)?
        }
    };
    Ok((Build::Gpu(Box::new(exe)), signature))
}

/// Loads the artifact's code for `card` and prepares the program on it.
fn load_on(
    card: std::sync::Arc<kiln_runtime::cuda::CudaGpu>,
    art: &Artifact,
    meta: &Meta,
    gpu: GpuProgram,
    constants: Vec<kiln_ir::Tensor>,
    threads: usize,
) -> Result<GpuExecutable, Error> {
    let stale =
        |why: String| Error::Input(format!("`{}` cannot be used: {why}", art.path().display()));
    let image = code_for(art, meta, card.arch(), card.name()).map_err(stale)?;
    let device = CudaDevice::new(card, &image, &gpu.kernels)?;
    Ok(GpuExecutable::new(
        gpu,
        Box::new(device),
        constants,
        threads,
    )?)
}

/// The cubin or PTX of `art` for a GPU of architecture `arch`.
fn code_for(art: &Artifact, meta: &Meta, arch: Arch, name: &str) -> Result<Vec<u8>, String> {
    let cubins = meta
        .gpu_archs
        .iter()
        .map(|a| Arch::parse(a).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let ptx = meta
        .ptx_arch
        .as_deref()
        .map(Arch::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let code = choose_code(&cubins, ptx, arch).map_err(|e| format!("{e} ({name})"))?;
    let section = match code {
        Code::Cubin(a) => section_name(a),
        Code::Ptx => "ptx".into(),
    };
    art.section(&section)
        .map(<[u8]>::to_vec)
        .map_err(|e| e.to_string())
}

/// Structural checks of a deserialized GPU program: one step per program step,
/// launches that match their kernels, well-formed kernels.
fn validate_gpu(g: &GpuProgram) -> Result<(), String> {
    let bad = |what: &str| Err(format!("its GPU program is inconsistent ({what})"));
    if g.steps.len() != g.program.steps.len() {
        return bad("its steps do not match the program's");
    }
    for k in &g.kernels {
        k.check()
            .map_err(|e| format!("its GPU program is inconsistent ({e})"))?;
    }
    let nb = g.program.buffers.len();
    for s in &g.steps {
        if let GpuStep::Check {
            kernel, indices, ..
        } = s
        {
            let ok = g.kernels.get(*kernel).is_some_and(|k| {
                k.buffers.len() == 2
                    && *indices < nb
                    && k.buffers[0].len == g.program.buffers[*indices].numel()
            });
            if !ok {
                return bad("an index check does not match its kernel");
            }
        }
        if let GpuStep::Launch { kernel, args } = s {
            let Some(k) = g.kernels.get(*kernel) else {
                return bad("a launch names a missing kernel");
            };
            if args.len() != k.buffers.len() {
                return bad("a launch does not match its kernel");
            }
            for (kb, &b) in k.buffers.iter().zip(args) {
                if b >= nb
                    || kb.len != g.program.buffers[b].numel()
                    || kb.scalar != kiln_codegen::kernel::Scalar::of(g.program.buffers[b].dtype)
                {
                    return bad("a kernel buffer does not match its program buffer");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(s: &str) -> Arch {
        Arch::parse(s).unwrap()
    }

    #[test]
    fn gpus_get_an_exact_cubin_then_a_compatible_one_then_ptx() {
        let cubins = [arch("sm_90a"), arch("sm_80")];
        let ptx = Some(arch("compute_80"));
        assert_eq!(
            choose_code(&cubins, ptx, arch("sm_90a")),
            Ok(Code::Cubin(arch("sm_90a")))
        );
        // An sm_80 cubin runs on sm_86 and sm_89 (same major, newer minor).
        assert_eq!(
            choose_code(&cubins, ptx, arch("sm_86")),
            Ok(Code::Cubin(arch("sm_80")))
        );
        // Blackwell runs neither cubin: the PTX.
        assert_eq!(choose_code(&cubins, ptx, arch("sm_100")), Ok(Code::Ptx));
        // An sm_90a cubin only runs on sm_90 itself.
        assert_eq!(
            choose_code(&[arch("sm_90a")], None, arch("sm_100")).map_err(|_| ()),
            Err(())
        );
    }

    #[test]
    fn an_older_gpu_is_refused_with_what_to_do() {
        let e = choose_code(
            &[arch("sm_90a"), arch("sm_80")],
            Some(arch("compute_80")),
            arch("sm_75"),
        )
        .unwrap_err();
        assert!(e.contains("sm_90a, sm_80"), "{e}");
        assert!(e.contains("PTX for compute_80"), "{e}");
        assert!(e.contains("this GPU is sm_75"), "{e}");
        assert!(e.contains("--arch sm_75"), "{e}");
    }
}
