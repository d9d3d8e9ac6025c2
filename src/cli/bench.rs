//! `kiln bench`: time a model's runs on a target (compile once, warm up, then
//! the median of many runs), for people and for the peer comparison script
//! (`scripts/bench_compare.py`, which reads `--json`).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::{io, CompileOptions, Error, Executable, Model, Target, Tensor};

/// Prefills a decoder benchmark runs (the first cold, the median of the rest
/// reported as the prefill time).
const PREFILL_RUNS: usize = 4;

/// Arguments of `kiln bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model (.onnx, or a .kiln artifact from `kiln compile -o`).
    pub model: PathBuf,
    /// An input as NAME=FILE (.npy or .pb); inputs not given are zeros (integers)
    /// or uniform random in [-1, 1) (floats) of the declared shape.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Size of a symbolic dim for generated inputs, NAME=SIZE (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE")]
    pub dims: Vec<String>,
    /// Where to run: cpu, cuda (an NVIDIA GPU), cuda-sim (the GPU program on the SIMT interpreter: slow) or ref.
    #[arg(long, default_value = "cpu")]
    pub target: String,
    /// Threads [default: all available].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Timed runs.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also time every step of the compiled program and print the most costly
    /// (cpu target, ONNX models).
    #[arg(long)]
    pub profile: bool,
    /// Decoders (Hugging Face folders, GGUF files): prompt tokens before the
    /// timed decode steps.
    #[arg(long, default_value_t = 16)]
    pub prompt_len: usize,
    /// Decoders: KV cache capacity in tokens.
    #[arg(long, default_value_t = 256)]
    pub context: usize,
}

/// Runs `kiln bench`.
pub fn bench(args: &BenchArgs) -> Result<i32, Error> {
    let target = Target::from_name(&args.target).ok_or_else(|| {
        Error::Input(format!(
            "--target `{}`: choose cpu, cuda, cuda-sim or ref",
            args.target
        ))
    })?;
    if args.iters == 0 {
        return Err(Error::Input("--iters must be at least 1".into()));
    }
    let options = CompileOptions {
        threads: args.threads,
        ..CompileOptions::default()
    };
    let t0 = Instant::now();
    let (exe, inputs_decl) = if crate::aot::is_artifact(&args.model) {
        let exe = Executable::load_artifact(&args.model, args.threads)?;
        let decl = exe.input_types();
        (exe, decl)
    } else {
        let model = Model::load(&args.model)?;
        if let Some(kiln_frontends::hf::ModelKind::Decoder(_)) = model.kind() {
            return bench_decode(args, &model, &target, &options);
        }
        let exe = model.compile_with(&target, &options)?;
        let decl = exe.input_types();
        (exe, decl)
    };
    let dims = super::parse_dims(&args.dims)?;
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for arg in &args.inputs {
        let (name, file) = super::parse_input(arg)?;
        named.push((name, io::read_tensor(&file)?));
    }
    for (name, dtype, shape) in &inputs_decl {
        if named.iter().any(|(n, _)| n == name) {
            continue;
        }
        let dims: Vec<usize> = shape
            .0
            .iter()
            .map(|d| match d {
                kiln_ir::Dim::Known(n) => Ok(*n),
                kiln_ir::Dim::Sym(s) => dims.get(s.as_ref()).copied().ok_or_else(|| {
                    Error::Input(format!("input `{name}` has symbolic dim `{s}`: give --dim {s}=SIZE or --input {name}=FILE"))
                }),
                kiln_ir::Dim::Any => Err(Error::Input(format!("input `{name}` has an unknown dim: give --input {name}=FILE"))),
            })
            .collect::<Result<_, _>>()?;
        named.push((name.clone(), generated_input(*dtype, dims)));
    }
    // The first run compiles native code for these shapes (when not done yet).
    let t1 = Instant::now();
    exe.run(&named)?;
    let first = t1.elapsed().as_secs_f64();
    let compile_s = t1.duration_since(t0).as_secs_f64() + first;
    for _ in 1..args.warmup {
        exe.run(&named)?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t = Instant::now();
        exe.run(&named)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let steps_ms = if args.profile {
        profile(&exe, &named, args.iters, !args.json)?
    } else {
        None
    };
    let median = times[times.len() / 2];
    let threads = options.resolved_threads();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model.display().to_string(),
                "target": target.to_string(),
                "threads": threads,
                "iterations": args.iters,
                "median_ms": median,
                "min_ms": times[0],
                "max_ms": times[times.len() - 1],
                "compile_s": compile_s,
                "steps_ms": steps_ms,
                "isa": crate::cpu::isa_report(),
            })
        );
    } else {
        println!(
            "{}: {} runs on {target} with {threads} thread{}: median {median:.3} ms (min {:.3}, max {:.3}); compile and first run {compile_s:.2} s",
            args.model.display(),
            args.iters,
            if threads == 1 { "" } else { "s" },
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(0)
}

/// A deterministic input: zeros for integers and bools, uniform [-1, 1) floats.
fn generated_input(dtype: kiln_ir::DType, shape: Vec<usize>) -> Tensor {
    let n: usize = shape.iter().product();
    if !dtype.is_float() {
        return Tensor::zeros(dtype, shape);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let v: Vec<f64> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_f64(dtype, shape, &v)
}

/// Times each step of the compiled build over `iters` runs (on a GPU, the
/// device is synchronized after each step) and, when `print`, prints the steps
/// grouped by kind (GEMM, generated kernel by name prefix, host op), costliest
/// first. Returns the steps' total time per run in milliseconds (`None` when
/// the model is not compiled).
fn profile(
    exe: &Executable,
    named: &[(String, Tensor)],
    iters: usize,
    print: bool,
) -> Result<Option<f64>, Error> {
    use kiln_codegen::program::Step;
    let shapes: Vec<Vec<usize>> = exe
        .graph()
        .map(|g| {
            g.inputs
                .iter()
                .map(|&i| {
                    let n = &g.value(i).name;
                    named
                        .iter()
                        .find(|(m, _)| m == n)
                        .map(|(_, t)| t.shape().to_vec())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(build) = exe.cpu_build(&shapes)? else {
        eprintln!("--profile: only for models compiled from ONNX on a compiled target");
        return Ok(None);
    };
    let Some(prog) = build.program() else {
        eprintln!("--profile: this model runs on the interpreter (data-dependent shapes)");
        return Ok(None);
    };
    let g = exe.graph().expect("cpu builds have graphs");
    let ordered: Vec<Tensor> = g
        .inputs
        .iter()
        .map(|&i| {
            named
                .iter()
                .find(|(n, _)| *n == g.value(i).name)
                .map(|(_, t)| t.clone())
                .expect("bound above")
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..iters {
        build
            .run_profiled(&ordered, &mut times)
            .expect("a compiled build")?;
    }
    let plan = build.plan().expect("a compiled build");
    if !print {
        let total: f64 = times.iter().map(|t| t.as_secs_f64() * 1e3).sum::<f64>() / iters as f64;
        return Ok(Some(total));
    }
    println!(
        "memory: arena {:.2} MiB for intermediates (liveness lower bound {:.2} MiB, {:.2} MiB without reuse); {} kernels, {} GEMM steps, {} host steps{}",
        plan.arena_bytes as f64 / 1048576.0,
        plan.lower_bound as f64 / 1048576.0,
        plan.unshared_bytes as f64 / 1048576.0,
        prog.kernels.len(),
        prog.steps.iter().filter(|s| matches!(s, Step::Gemm(_))).count(),
        prog.host_ops().len(),
        if prog.host_ops().is_empty() {
            String::new()
        } else {
            format!(" ({})", prog.host_ops().join(", "))
        }
    );
    let mut groups: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for (step, t) in prog.steps.iter().zip(&times) {
        let key = match step {
            Step::Gemm(gm) => format!("gemm {}x{}x{} batch {}", gm.m, gm.n, gm.k, gm.batch_count()),
            Step::Kernel { kernel, .. } => {
                let name = &prog.kernels[*kernel].name;
                let kind = name.split('_').nth(1).unwrap_or(name);
                format!("kernel {kind}")
            }
            Step::Host { op, .. } => format!("host {}", op.name()),
            Step::CheckIndices { .. } => "check indices".to_string(),
            Step::Control(c) => format!("control {} (compiled bodies)", c.op.name()),
        };
        let e = groups.entry(key).or_default();
        e.0 += t.as_secs_f64() * 1e3 / iters as f64;
        e.1 += 1;
    }
    let total: f64 = groups.values().map(|v| v.0).sum();
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("per-step profile ({iters} runs, ms per run; total {total:.3} ms):");
    for (k, (ms, n)) in rows {
        println!(
            "  {ms:9.3} ms  {:5.1}%  {n:4}×  {k}",
            100.0 * ms / total.max(1e-12)
        );
    }
    let host = super::fallbacks::host_fallbacks(prog);
    if !host.is_empty() {
        println!("on the reference interpreter (why each host step is slow):");
        print!("{}", super::fallbacks::render_lines(&host));
    }
    Ok(Some(total))
}

/// `kiln bench` on a decoder: prefill `--prompt-len` tokens, then time `--iters`
/// single-token decode steps with the KV cache (median per token), and report
/// the weight bytes streamed per second.
fn bench_decode(
    args: &BenchArgs,
    model: &Model,
    target: &Target,
    options: &CompileOptions,
) -> Result<i32, Error> {
    use crate::generate::Generator;
    let t0 = Instant::now();
    let mut g = Generator::new(model, target, options, args.context)?;
    let prompt_len = args.prompt_len.max(1);
    let steps = args.warmup + args.iters;
    if prompt_len + steps > args.context {
        return Err(Error::Input(format!(
            "--prompt-len {prompt_len} + {steps} steps do not fit --context {}",
            args.context
        )));
    }
    g.prepare(prompt_len)?;
    g.prepare(1)?;
    let compile_s = t0.elapsed().as_secs_f64();
    let vocab = g.info().vocab_size as u32;
    // Deterministic token ids spread over the vocabulary.
    let token = |i: usize| ((i as u64 * 2_654_435_761) % vocab as u64) as u32;
    let prompt: Vec<u32> = (0..prompt_len).map(token).collect();
    // The first prefill also maps the weights in and sizes the buffers: it is
    // reported apart, and the prefill figure is the median of the later ones.
    let mut prefills = Vec::with_capacity(PREFILL_RUNS);
    for i in 0..PREFILL_RUNS {
        if i > 0 {
            g.reset();
        }
        let t1 = Instant::now();
        g.forward(&prompt)?;
        prefills.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    let prefill_first_ms = prefills[0];
    let mut warm = prefills[1..].to_vec();
    warm.sort_by(|a, b| a.total_cmp(b));
    let prefill_ms = warm[warm.len() / 2];
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..steps {
        let t = Instant::now();
        g.step(token(prompt_len + i))?;
        if i >= args.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let (_, bytes) = model.graph().params();
    let gbps = bytes as f64 / (median * 1e-3) / 1e9;
    if args.profile {
        println!("prefill of {prompt_len} tokens:");
        profile(g.executable(), &g.run_inputs(&prompt)?, 3, true)?;
        println!("decode step:");
        profile(
            g.executable(),
            &g.run_inputs(&[token(0)])?,
            args.iters,
            true,
        )?;
    }
    let threads = options.resolved_threads();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model.display().to_string(),
                "target": target.to_string(),
                "threads": threads,
                "prompt_tokens": prompt_len,
                "context": args.context,
                "decode_steps": args.iters,
                "decode_median_ms": median,
                "decode_min_ms": times[0],
                "decode_max_ms": times[times.len() - 1],
                "decode_tokens_per_s": 1e3 / median,
                "prefill_ms": prefill_ms,
                "prefill_first_ms": prefill_first_ms,
                "weight_bytes": bytes,
                "weight_gb_per_s": gbps,
                "compile_s": compile_s,
                "isa": crate::cpu::isa_report(),
            })
        );
    } else {
        println!(
            "{}: decode on {target} with {threads} thread{}: median {median:.2} ms/token ({:.1} tokens/s; min {:.2}, max {:.2}) over {} steps after a {prompt_len}-token prefill ({prefill_ms:.1} ms); weights {:.1} MB → {gbps:.1} GB/s; compile {compile_s:.1} s",
            args.model.display(),
            if threads == 1 { "" } else { "s" },
            1e3 / median,
            times[0],
            times[times.len() - 1],
            args.iters,
            bytes as f64 / 1e6,
        );
    }
    Ok(0)
}
