//! `kiln compile`: optimize a model with the standard pipeline, write the optimized
//! graph in the IR text form (`--emit-graph`) and show it after chosen phases
//! (`--dump-after`). Also the shared helpers of the optimizer commands: the cost
//! model target and the pipeline run.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln_ir::Graph;
use kiln_passes::cost::{CostModel, TargetProfile};
use kiln_passes::pipeline::{Pipeline, Report};
use kiln_passes::EGraphModel;

use crate::{io, Error, Model};

/// The cost model target when `--target` is not given.
pub const DEFAULT_TARGET: &str = "h200";

/// Arguments of `kiln compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The model (.onnx).
    pub model: PathBuf,
    /// The target the cost model prices for: h200, cpu (= cpu-default) or a
    /// profile file PATH.toml; `cuda` prices for the h200 and, with `-o`,
    /// writes GPU code.
    #[arg(long, default_value = DEFAULT_TARGET, value_name = "h200|cpu|cuda|PATH.toml")]
    pub target: String,
    /// With `--target cuda -o`: the GPU architectures to compile for (a cubin
    /// each, plus PTX for the oldest, which newer GPUs compile at load), by
    /// NVRTC alone: no GPU is needed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sm_90a,sm_80",
        value_name = "ARCH,..."
    )]
    pub arch: Vec<String>,
    /// Write the optimized graph in kiln's IR text form to PATH, atomically (a file
    /// is never left half-written); `-` or no PATH writes it to stdout. Weights of
    /// more than 16 elements are written as references by name.
    #[arg(
        long,
        value_name = "PATH|-",
        num_args = 0..=1,
        default_missing_value = "-"
    )]
    pub emit_graph: Option<PathBuf>,
    /// Print the graph (IR text form) after phase PHASE on stdout, under a
    /// `// graph after phase PHASE` line; repeatable. Phases: simplify, bricks,
    /// fusion, regions.
    #[arg(long, value_name = "PHASE")]
    pub dump_after: Vec<String>,
    /// Compile to native code and write an ahead-of-time artifact here (with
    /// `--target cpu`, or GPU code with `--target cuda`), atomically; run it
    /// with `kiln run MODEL.kiln`.
    #[arg(long, short = 'o', value_name = "MODEL.kiln")]
    pub output: Option<PathBuf>,
    /// Size of a symbolic input dim, NAME=SIZE (repeatable): artifacts are
    /// compiled for one set of input shapes.
    #[arg(long = "dim", value_name = "NAME=SIZE")]
    pub dims: Vec<String>,
    /// The CPU the artifact's code is for: generic (x86-64-v3: AVX2 and FMA, any
    /// x86 server of the last decade), native (this machine's CPU, all its
    /// features), or an LLVM CPU name.
    #[arg(long, default_value = "generic", value_name = "generic|native|NAME")]
    pub cpu: String,
    /// Threads the artifact runs with unless `kiln run --threads` says otherwise
    /// [default: all available here].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The cost model profile `--target` names: a built-in name (`h200`,
/// `cpu-default`), `cpu` (the profile `kiln calibrate` measured, else
/// `cpu-default`) or a TOML profile file.
pub fn target_profile(target: &str) -> Result<TargetProfile, Error> {
    TargetProfile::resolve(target).map_err(|e| Error::Input(format!("--target: {e}")))
}

/// The standard pipeline, dumping after `phases`; an unknown phase is an error
/// listing the pipeline's phases.
pub fn pipeline(dump_after: &[String]) -> Result<Pipeline, Error> {
    let mut p = Pipeline::standard();
    let names: Vec<String> = p.phase_names().iter().map(|s| s.to_string()).collect();
    for phase in dump_after {
        if !names.contains(phase) {
            return Err(Error::Input(format!(
                "--dump-after: unknown phase `{phase}` (the phases are {})",
                names.join(", ")
            )));
        }
        p = p.dump_after(phase);
    }
    Ok(p)
}

/// What one optimizer run produced.
pub struct Compiled {
    /// The imported graph.
    pub source: Graph,
    /// Which of its inputs a caller may leave out (Hugging Face models).
    pub rules: Vec<kiln_frontends::hf::InputRule>,
    /// The optimized graph.
    pub optimized: Graph,
    /// The pipeline's report.
    pub report: Report,
    /// The saturated e-graph.
    pub egraph: EGraphModel,
    /// The cost model the pipeline priced with.
    pub cost: CostModel,
}

/// Imports `model` and runs `pipeline` on it for `profile`.
pub fn optimize(
    model: &Path,
    pipeline: &Pipeline,
    profile: &TargetProfile,
) -> Result<Compiled, Error> {
    let loaded = Model::load(model)?;
    let (source, rules) = (loaded.graph().clone(), loaded.input_rules().to_vec());
    let (optimized, report, egraph) = pipeline
        .run_keeping_egraph(&source, profile)
        .map_err(|e| Error::Input(format!("optimizing `{}` failed: {e}", model.display())))?;
    let cost = CostModel::new(profile.clone()).with_dims(pipeline.dims.clone());
    Ok(Compiled {
        source,
        rules,
        optimized,
        report,
        egraph,
        cost,
    })
}

/// Runs `kiln compile`.
pub fn compile(args: &CompileArgs) -> Result<i32, Error> {
    let cuda = args.target == "cuda";
    if args.output.is_some() && !cuda && !matches!(args.target.as_str(), "cpu" | "cpu-default") {
        return Err(Error::Input(format!(
            "-o writes compiled code: use --target cpu or --target cuda (not `{}`)",
            args.target
        )));
    }
    let archs = args
        .arch
        .iter()
        .map(|a| {
            kiln_codegen::gpu::cuda::nvrtc::Arch::parse(a.trim())
                .map_err(|e| Error::Input(format!("--arch: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let progress = super::spinner("importing and optimizing");
    if args.output.is_none() {
        progress.finish_and_clear();
    }
    let profile = target_profile(if cuda { DEFAULT_TARGET } else { &args.target })?;
    let pipeline = pipeline(&args.dump_after)?;
    let c = optimize(&args.model, &pipeline, &profile)?;
    for phase in &c.report.phases {
        if let Some(dump) = &phase.dump {
            println!("// graph after phase {}", phase.name);
            print!("{dump}");
        }
    }
    if let Some(path) = &args.emit_graph {
        let text = kiln_ir::text::print(&c.optimized);
        if path.as_os_str() == "-" {
            print!("{text}");
        } else {
            io::write_atomically(path, text.as_bytes())?;
            eprintln!("wrote the optimized graph to {}", path.display());
        }
    }
    if let Some(out) = &args.output {
        let dims = super::parse_dims(&args.dims)?;
        let shapes = input_shapes(&c.optimized, &dims)?;
        let signature = crate::Signature::with_rules(&c.source, &c.rules);
        let threads = crate::CompileOptions {
            threads: args.threads,
            ..Default::default()
        }
        .resolved_threads();
        let t = std::time::Instant::now();
        if cuda {
            let summary =
                crate::aot_cuda::write(&c.optimized, &signature, &shapes, &archs, out, |stage| {
                    progress.set_message(stage.to_string())
                });
            progress.finish_and_clear();
            let summary = summary?;
            eprintln!(
                "wrote {} ({} GPU kernels, {} steps{}, {} KiB of GPU code for {}) in {:.2} s",
                out.display(),
                summary.kernels,
                summary.steps,
                if summary.host_steps > 0 {
                    format!(", {} on the host", summary.host_steps)
                } else {
                    String::new()
                },
                summary.code_bytes / 1024,
                summary
                    .archs
                    .iter()
                    .map(|a| a.sm())
                    .collect::<Vec<_>>()
                    .join(", "),
                t.elapsed().as_secs_f64()
            );
            return Ok(0);
        }
        let summary = crate::aot::write(
            &c.optimized,
            &signature,
            &shapes,
            &crate::aot::cpu_target(&args.cpu),
            threads,
            out,
            |stage| progress.set_message(stage.to_string()),
        );
        progress.finish_and_clear();
        let summary = summary?;
        eprintln!(
            "wrote {} ({} kernels, {} steps{}, {} KiB of code for CPU {}) in {:.2} s",
            out.display(),
            summary.kernels,
            summary.steps,
            if summary.host_steps > 0 {
                format!(", {} on the host interpreter", summary.host_steps)
            } else {
                String::new()
            },
            summary.object_bytes / 1024,
            summary.cpu,
            t.elapsed().as_secs_f64()
        );
    }
    let r = &c.report;
    eprintln!(
        "compiled `{}` for {}: {} → {} nodes, modelled {:.1} µs → {:.1} µs in {:.0} ms",
        c.source.name,
        r.target,
        c.source.nodes().len(),
        c.optimized.nodes().len(),
        r.cost_before * 1e6,
        r.cost_after * 1e6,
        r.total_time.as_secs_f64() * 1e3
    );
    Ok(0)
}

/// Each input's dims with symbolic ones bound by `dims` (an error names any
/// left unbound).
pub fn input_shapes(
    graph: &Graph,
    dims: &std::collections::HashMap<String, usize>,
) -> Result<Vec<Vec<usize>>, Error> {
    graph
        .inputs
        .iter()
        .map(|&i| {
            let v = graph.value(i);
            v.ty.shape
                .0
                .iter()
                .map(|d| match d {
                    kiln_ir::Dim::Known(n) => Ok(*n),
                    kiln_ir::Dim::Sym(s) => dims.get(s.as_ref()).copied().ok_or_else(|| {
                        Error::Input(format!(
                            "input `{}` has symbolic dim `{s}`: give its size with --dim {s}=SIZE",
                            v.name
                        ))
                    }),
                    kiln_ir::Dim::Any => Err(Error::Input(format!(
                        "input `{}` has a dim of unknown size: artifacts need known input shapes",
                        v.name
                    ))),
                })
                .collect()
        })
        .collect()
}
