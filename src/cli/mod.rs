//! The `kiln` command line.

pub mod bench;
pub mod calibrate;
pub mod calibrate_gpu;
pub mod compile;
pub mod explain;
pub mod fallbacks;
pub mod rules;
pub mod text;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::{inspect, io, Error, Model, Target, Tensor};

/// kiln: a model compiler for neural networks.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a model on input tensors and write its outputs to a .safetensors file.
    Run {
        /// The model (.onnx, a Hugging Face folder, .gguf), or an artifact from `kiln compile --target cpu|cuda -o MODEL.kiln`.
        model: PathBuf,
        /// An input as NAME=FILE, FILE a .npy or an ONNX TensorProto .pb (repeat per input).
        /// Hugging Face folders take transformers' inputs: input_ids and an int64
        /// attention_mask [batch, seq]; position_ids (decoders) and token_type_ids
        /// (BERT) may be left out, as `kiln inspect` shows.
        #[arg(long = "input", short = 'i', value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Where to write every output, under its model output name.
        #[arg(long, short = 'o', value_name = "OUT.safetensors")]
        output: Option<PathBuf>,
        /// Where to run: ref (reference interpreter), cpu, cuda (an NVIDIA GPU), cuda-sim (the GPU program on the SIMT interpreter) [default: ref; an artifact's own device].
        #[arg(long)]
        target: Option<String>,
        /// Threads for the cpu target [default: all available].
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Also run on this target (ref, cpu, cuda-sim, cuda) and compare every
        /// output: prints each one's largest error and fails (exit 1) when one
        /// exceeds the tolerance.
        #[arg(long, value_name = "TARGET")]
        compare: Option<String>,
        /// Tolerance of --compare: an element passes when |a − b| ≤ TOL · (1 +
        /// |b|), b the compared target's value.
        #[arg(long, value_name = "TOL", default_value_t = 1e-3)]
        tolerance: f64,
    },
    /// Generate text with a decoder (Hugging Face folder or GGUF file), streaming
    /// it, with a KV cache; prints prefill and decode speed at the end.
    Generate(text::GenerateArgs),
    /// Sentence embeddings with a sentence-transformers folder.
    Embed(text::EmbedArgs),
    /// Time a model's runs: compile once, warm up, report the median.
    Bench(bench::BenchArgs),
    /// Show a model's inputs, outputs, bricks with parameter counts, ops, unsupported ops.
    Inspect {
        /// The model (.onnx, a Hugging Face folder, .gguf).
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "ir")]
        json: bool,
        /// Print the imported graph in kiln's IR text form instead.
        #[arg(long)]
        ir: bool,
    },
    /// Optimize a model (standard pipeline) and write the optimized graph.
    Compile(compile::CompileArgs),
    /// Show what the optimizer does to a model: per brick the modelled cost before
    /// and after, the rules fired and the fused regions chosen; per phase the
    /// e-graph statistics.
    Explain(explain::ExplainArgs),
    /// List the rewrite rules or check their soundness.
    Rules {
        /// What to do with the rules.
        #[command(subcommand)]
        command: rules::RulesCommand,
    },
    /// Measure this CPU (GEMM peak, copy bandwidth, task overhead) and write a target
    /// profile that `--target cpu` then uses.
    Calibrate {
        /// Where to write the profile [default: $XDG_CONFIG_HOME/kiln/targets/cpu.toml,
        /// else ~/.config/kiln/targets/cpu.toml].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Threads to measure with [default: all available].
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Small sizes and few repetitions: fast, rough.
        #[arg(long)]
        quick: bool,
        /// What to measure: cpu (this CPU), cuda (the GPU; its profile is what
        /// the optimizer prices `--target cuda` with) or cuda-sim.
        #[arg(long, default_value = "cpu")]
        target: String,
    },
}

/// Parses the arguments, runs the command, prints errors as one line; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// A ticking spinner on stderr with the elapsed time and `message` (drawn only
/// when stderr is a terminal); finish it with `finish_and_clear`.
pub(crate) fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .expect("valid template"),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Parses `--dim NAME=SIZE` arguments.
pub fn parse_dims(args: &[String]) -> Result<std::collections::HashMap<String, usize>, Error> {
    let mut dims = std::collections::HashMap::new();
    for arg in args {
        let parsed = arg
            .split_once('=')
            .and_then(|(n, v)| Some((n, v.parse::<usize>().ok()?)))
            .filter(|(n, _)| !n.is_empty());
        let Some((name, size)) = parsed else {
            return Err(Error::Input(format!("--dim `{arg}`: expected NAME=SIZE")));
        };
        if dims.insert(name.to_string(), size).is_some() {
            return Err(Error::Input(format!("--dim `{name}` given twice")));
        }
    }
    Ok(dims)
}

fn parse_input(arg: &str) -> Result<(String, PathBuf), Error> {
    let (name, file) = arg
        .split_once('=')
        .filter(|(n, f)| !n.is_empty() && !f.is_empty())
        .ok_or_else(|| Error::Input(format!("--input `{arg}`: expected NAME=FILE")))?;
    Ok((name.to_string(), PathBuf::from(file)))
}

/// Runs one command; `Ok` carries the exit code.
pub fn execute(command: Command) -> Result<i32, Error> {
    match command {
        Command::Run {
            model,
            inputs,
            output,
            target,
            threads,
            compare,
            tolerance,
        } => run(
            &model,
            &inputs,
            output.as_deref(),
            target.as_deref(),
            threads,
            compare.as_deref().map(|c| (c, tolerance)),
        ),
        Command::Bench(args) => bench::bench(&args),
        Command::Generate(args) => text::generate(&args),
        Command::Embed(args) => text::embed(&args),
        Command::Calibrate {
            out,
            threads,
            quick,
            target,
        } => match Target::from_name(&target) {
            Some(Target::Cpu) => calibrate::run(out.as_deref(), threads, quick),
            Some(t @ (Target::Cuda | Target::CudaSim)) => {
                calibrate_gpu::run(out.as_deref(), t, quick)
            }
            _ => Err(Error::Input(format!(
                "--target `{target}`: calibrate cpu, cuda or cuda-sim"
            ))),
        },
        Command::Inspect {
            model, ir: true, ..
        } => {
            print!("{}", kiln_ir::text::print(Model::load(&model)?.graph()));
            Ok(0)
        }
        Command::Inspect { model, json, .. } => {
            let report = inspect::inspect(&model)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| Error::Output(e.to_string()))?
                );
            } else {
                print!("{}", inspect::render(&report));
            }
            if let Some(e) = report.import_error {
                return Err(Error::Input(e));
            }
            if !report.unsupported.is_empty() {
                let n = report.unsupported.len();
                return Err(Error::Input(format!(
                    "the model uses {n} unsupported op type{} (listed above)",
                    if n == 1 { "" } else { "s" }
                )));
            }
            Ok(0)
        }
        Command::Compile(args) => compile::compile(&args),
        Command::Explain(args) => explain::explain(&args),
        Command::Rules { command } => rules::rules(&command),
    }
}

fn run(
    model: &Path,
    inputs: &[String],
    output: Option<&Path>,
    target: Option<&str>,
    threads: Option<usize>,
    compare: Option<(&str, f64)>,
) -> Result<i32, Error> {
    let artifact = crate::aot::is_artifact(model);
    let compare_target = match compare {
        Some((name, tol)) => {
            let t = Target::from_name(name).ok_or_else(|| {
                Error::Input(format!(
                    "--compare: unknown target `{name}` (choose ref, cpu, cuda or cuda-sim)"
                ))
            })?;
            if artifact {
                return Err(Error::Input(
                    "--compare needs a model, not a compiled artifact".into(),
                ));
            }
            if !(tol >= 0.0 && tol.is_finite()) {
                return Err(Error::Input(format!(
                    "--tolerance {tol}: give a finite number ≥ 0"
                )));
            }
            Some((t, tol))
        }
        None => None,
    };
    let artifact_device = if artifact {
        Some(if crate::aot_cuda::is_cuda_artifact(model)? {
            "cuda"
        } else {
            "cpu"
        })
    } else {
        None
    };
    let target_name = target.unwrap_or(artifact_device.unwrap_or("ref"));
    let target = Target::from_name(target_name).ok_or_else(|| {
        Error::Input(format!(
            "unknown target `{target_name}` (choose ref, cpu, cuda or cuda-sim)"
        ))
    })?;
    let fits = match artifact_device {
        None => true,
        Some("cpu") => target == Target::Cpu,
        Some(_) => matches!(target, Target::Cuda | Target::CudaSim),
    };
    if !fits {
        return Err(Error::Input(format!(
            "`{}` is a compiled artifact for {}: it runs on {} only",
            model.display(),
            artifact_device.unwrap_or_default(),
            if artifact_device == Some("cpu") {
                "the cpu target"
            } else {
                "the cuda target (or cuda-sim)"
            }
        )));
    }
    let mut named = Vec::new();
    for arg in inputs {
        let (name, file) = parse_input(arg)?;
        if named.iter().any(|(n, _): &(String, Tensor)| *n == name) {
            return Err(Error::Input(format!("input `{name}` given twice")));
        }
        named.push((name, io::read_tensor(&file)?));
    }
    let t0 = Instant::now();
    let exe = if artifact {
        crate::Executable::load_artifact_on(model, threads, Some(target))?
    } else {
        let options = crate::CompileOptions {
            threads,
            ..crate::CompileOptions::default()
        };
        Model::load(model)?.compile_with(&target, &options)?
    };
    let load = t0.elapsed();
    let t1 = Instant::now();
    let outputs = exe.run(&named)?;
    let run = t1.elapsed();
    let width = outputs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, t) in &outputs {
        println!(
            "{name:width$}  {}{:?}  {}",
            t.dtype(),
            t.shape(),
            summary(t)
        );
    }
    if let Some(path) = output {
        io::safetensors_out::write(path, &outputs)?;
        println!(
            "wrote {} output{} to {}",
            outputs.len(),
            if outputs.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    eprintln!(
        "target {target}: loaded in {:.1} ms, ran in {:.1} ms",
        load.as_secs_f64() * 1e3,
        run.as_secs_f64() * 1e3
    );
    let Some((other, tol)) = compare_target else {
        return Ok(0);
    };
    let options = crate::CompileOptions {
        threads,
        ..crate::CompileOptions::default()
    };
    let expected = Model::load(model)?
        .compile_with(&other, &options)?
        .run(&named)?;
    let mut failed = 0;
    for ((name, got), (_, want)) in outputs.iter().zip(&expected) {
        let (err, ok) = compare_outputs(got, want, tol);
        if !ok {
            failed += 1;
        }
        println!(
            "compare {name:width$} with {other}: {} (largest |a - b| / (1 + |b|) {err:.2e})",
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} outputs differ from target {other} beyond {tol:e}",
            outputs.len()
        );
        return Ok(1);
    }
    Ok(0)
}

/// The largest `|a − b| / (1 + |b|)` over two tensors' elements, and whether
/// every element is within `tol` of it (shapes and dtypes must match; NaNs
/// must be NaN in both).
fn compare_outputs(got: &Tensor, want: &Tensor, tol: f64) -> (f64, bool) {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return (f64::INFINITY, false);
    }
    let mut worst = 0f64;
    let mut ok = true;
    for (a, b) in got.to_f64_vec().into_iter().zip(want.to_f64_vec()) {
        let e = if a.is_nan() || b.is_nan() {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else if a == b {
            0.0
        } else {
            (a - b).abs() / (1.0 + b.abs())
        };
        worst = worst.max(e);
        ok &= e <= tol;
    }
    (worst, ok)
}

/// A short description of a tensor's values: a few of them, and min/mean/max.
fn summary(t: &Tensor) -> String {
    let v = t.to_f64_vec();
    if v.is_empty() {
        return "(empty)".into();
    }
    let fmt = |x: f64| {
        if t.dtype().is_float() {
            format!("{x:.5}")
        } else {
            format!("{x}")
        }
    };
    let head: Vec<String> = v.iter().take(4).map(|&x| fmt(x)).collect();
    let more = if v.len() > 4 { ", ..." } else { "" };
    let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &x in &v {
        lo = lo.min(x);
        hi = hi.max(x);
        sum += x;
    }
    format!(
        "[{}{more}]  min {} mean {} max {}",
        head.join(", "),
        fmt(lo),
        fmt(sum / v.len() as f64),
        fmt(hi)
    )
}
