//! The ONNX conformance harness: the backend test data shipped in the `onnx` PyPI
//! package (pinned to 1.22.0, installed into `.venv` by `scripts/setup-python.sh`)
//! run through the reference interpreter, and every case that passes also after
//! the standard optimization pipeline (same inputs, same tolerance).
//!
//! `tests/onnx-manifest.txt` lists the cases expected to pass (`suite/case`); a
//! listed case that fails fails the test. Unlisted cases are run and counted too,
//! so progress shows. Environment:
//! - `KILN_CONFORMANCE_UPDATE=1` rewrites the manifest with every passing case;
//! - `KILN_CONFORMANCE_FILTER=substr` runs only matching cases;
//! - `KILN_CONFORMANCE_REPORT=path` writes every failure with its reason.

use std::collections::{BTreeMap, BTreeSet};

use kiln_codegen::gpu::GpuKernel;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use kiln::ir::{interp, Graph, Tensor};
use kiln_frontends::onnx;
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use rayon::prelude::*;

/// The whole run is aborted (listing the cases still running) after this long:
/// a hang in one case must fail CI quickly, not eat its time limit.
const WATCHDOG_SECS: u64 = 900;

/// How close an output must be: `|got - want| <= atol + rtol * |want|`, as
/// `np.testing.assert_allclose` checks.
#[derive(Clone, Copy, Debug)]
struct Tolerance {
    rtol: f64,
    atol: f64,
}

/// The suites' tolerance: `np.testing.assert_allclose(rtol=1e-3, atol=1e-7)`.
const DEFAULT_TOLERANCE: Tolerance = Tolerance {
    rtol: 1e-3,
    atol: 1e-7,
};

/// Cases whose expected outputs carry the round-off of the numpy code that
/// made them, so the default absolute tolerance cannot hold for any exact
/// implementation: (case name prefix, absolute tolerance). The DFT cases were
/// made with numpy's float32 FFT, which leaves ~2e-7 where the exact result is
/// 0; ONNX's own reference-evaluator backend test runs them with atol 1e-6 on
/// Linux, the figure used here.
const TOLERANCE_OVERRIDES: &[(&str, f64)] = &[("test_dft", 1e-6)];

/// The tolerance of the case named `name` (a folder name such as `test_dft_axis`).
fn tolerance_for(name: &str) -> Tolerance {
    TOLERANCE_OVERRIDES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map_or(DEFAULT_TOLERANCE, |&(_, atol)| Tolerance {
            atol,
            ..DEFAULT_TOLERANCE
        })
}

/// Cases kiln does not run, by the exclusions of the conformance goal, with
/// why: (case name prefix, reason). Every case neither in the manifest nor
/// here fails the test, so a newly unsupported case cannot go unnoticed.
const EXCLUDED: &[(&str, &str)] = &[
    ("node/test_adagrad", TRAINING),
    ("node/test_adam", TRAINING),
    ("node/test_momentum", TRAINING),
    ("node/test_nesterov_momentum", TRAINING),
    ("simple/test_gradient_of_", TRAINING),
    ("node/test_bernoulli", RANDOM),
    ("node/test_training_dropout", RANDOM),
    ("node/test_ai_onnx_ml_label_encoder_", STRINGS),
    ("node/test_equal_string", STRINGS),
    ("node/test_regex_full_match", STRINGS),
    ("node/test_string_", STRINGS),
    ("node/test_strnormalizer", STRINGS),
    ("simple/test_strnorm_", STRINGS),
    ("node/test_image_decoder", "image decoding"),
    (
        "node/test_flexattention",
        "opset-24 preview op (ai.onnx.preview)",
    ),
];

/// Reasons of [`EXCLUDED`] shared by several prefixes.
const TRAINING: &str = "training op (ai.onnx.preview.training)";
const RANDOM: &str = "random generator";
const STRINGS: &str = "string tensors";

/// Why `case` is excluded, if it is.
fn exclusion(case: &str) -> Option<&'static str> {
    EXCLUDED
        .iter()
        .find(|(prefix, _)| case.starts_with(prefix))
        .map(|&(_, why)| why)
}

/// Stack of each conformance worker thread.
const CASE_STACK_BYTES: usize = 64 << 20;

/// The pipeline every passing case is optimized with (built once, shared by threads).
static PIPELINE: LazyLock<Pipeline> = LazyLock::new(Pipeline::standard);

/// One test data set: named inputs and expected outputs.
type DataSet = (Vec<(String, Tensor)>, Vec<Tensor>);

/// One case's results: unoptimized, and optimized and through the CPU backend
/// when the unoptimized run passed.
struct Outcome {
    plain: Result<(), String>,
    optimized: Option<Result<(), String>>,
    cpu: Option<Result<CpuRun, String>>,
    /// The same through the GPU lowering on the SIMT interpreter.
    cuda_sim: Option<Result<CpuRun, String>>,
}

/// How the CPU backend ran a case: natively (with how many host steps), or on
/// the interpreter because a shape is data dependent.
#[derive(Clone, Copy)]
struct CpuRun {
    native: bool,
    host_steps: usize,
}

impl Outcome {
    fn failed(e: String) -> Outcome {
        Outcome {
            plain: Err(e),
            optimized: None,
            cpu: None,
            cuda_sim: None,
        }
    }
}

/// Runs `f`, turning a panic into an error.
fn catch<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(format!("PANIC: {}", msg.unwrap_or_default()))
    })
}

/// The graph after the standard pipeline (for the H200 profile).
fn optimize(graph: &Graph) -> Result<Graph, String> {
    let (out, _) = PIPELINE
        .run(graph, &TargetProfile::h200())
        .map_err(|e| format!("optimize: {e}"))?;
    kiln::ir::verify(&out).map_err(|e| format!("verify optimized: {e}"))?;
    Ok(out)
}

/// Runs `graph` on each (named inputs, expected outputs) set and compares.
fn check_sets(graph: &Graph, sets: &[DataSet], tol: Tolerance) -> Result<(), String> {
    for (named, expected) in sets {
        // The optimizer may drop inputs nothing reads any more.
        let named: Vec<(String, Tensor)> = named
            .iter()
            .filter(|(n, _)| {
                graph
                    .value_by_name(n)
                    .is_some_and(|id| graph.inputs.contains(&id))
            })
            .cloned()
            .collect();
        let outs = interp::run(graph, &named).map_err(|e| format!("run: {e}"))?;
        if outs.len() != expected.len() {
            return Err(format!(
                "{} outputs, expected {}",
                outs.len(),
                expected.len()
            ));
        }
        for (i, (g, w)) in outs.iter().zip(expected).enumerate() {
            compare(i, g, w, tol)?;
        }
    }
    Ok(())
}

/// Runs the optimized `graph` through the CPU backend (code generated for each
/// set's shapes, one thread), or with `device` = `CudaSim` through the GPU
/// lowering of every kernel on the SIMT interpreter, and compares.
fn check_backend(
    graph: &Graph,
    sets: &[DataSet],
    device: kiln::cpu::Device,
    tol: Tolerance,
) -> Result<CpuRun, String> {
    let mut run = CpuRun {
        native: true,
        host_steps: 0,
    };
    for (named, expected) in sets {
        let ordered: Vec<Tensor> = graph
            .inputs
            .iter()
            .map(|&i| {
                let name = &graph.value(i).name;
                named
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.clone())
                    .ok_or_else(|| format!("no input {name}"))
            })
            .collect::<Result<_, _>>()?;
        let shapes: Vec<Vec<usize>> = ordered.iter().map(|t| t.shape().to_vec()).collect();
        let build = match &device {
            kiln::cpu::Device::Native => kiln::cpu::build(graph, &shapes, 1),
            kiln::cpu::Device::CudaSim => kiln::cpu::build_simulated(graph, &shapes, 1),
            kiln::cpu::Device::Cuda(gpu) => kiln::gpu::build_cuda(graph, &shapes, 1, gpu),
        };
        let outs = match build.map_err(|e| format!("build: {e}"))? {
            kiln::cpu::Build::Native(exe) => {
                run.host_steps = exe.program().host_ops().len();
                exe.run(&ordered).map_err(|e| format!("run: {e}"))?
            }
            kiln::cpu::Build::Gpu(exe) => {
                run.host_steps = exe.program().host_ops().len();
                record_gpu_kernels(&exe.gpu_program().kernels);
                exe.run(&ordered).map_err(|e| format!("run: {e}"))?
            }
            kiln::cpu::Build::Interpreted { graph, .. } => {
                run.native = false;
                interp::run(
                    &graph,
                    &named
                        .iter()
                        .filter(|(n, _)| {
                            graph
                                .value_by_name(n)
                                .is_some_and(|id| graph.inputs.contains(&id))
                        })
                        .cloned()
                        .collect::<Vec<_>>(),
                )
                .map_err(|e| format!("run: {e}"))?
            }
        };
        if outs.len() != expected.len() {
            return Err(format!(
                "{} outputs, expected {}",
                outs.len(),
                expected.len()
            ));
        }
        for (i, (g, w)) in outs.iter().zip(expected).enumerate() {
            compare(i, g, w, tol)?;
        }
    }
    Ok(run)
}

/// Every distinct GPU kernel the cuda-sim runs lowered (by CUDA C source, with
/// the kernel's name left out), for NVRTC after the suite.
static GPU_KERNELS: Mutex<BTreeMap<String, GpuKernel>> = Mutex::new(BTreeMap::new());

/// Cases the suite names as its slowest (where its time goes).
const SLOWEST_SHOWN: usize = 12;

/// Kernels per NVRTC program when the suite's kernels are compiled.
const NVRTC_BATCH: usize = 64;

/// Records the GPU kernels of a cuda-sim build (deduplicated by source).
fn record_gpu_kernels(kernels: &[GpuKernel]) {
    for k in kernels {
        let mut g = k.clone();
        g.name = "k".into();
        let Ok(source) = kiln_codegen::gpu::cuda::kernel_source(&g) else {
            continue; // a printer error is reported when the batch is compiled
        };
        GPU_KERNELS.lock().unwrap().entry(source).or_insert(g);
    }
}

/// Compiles every recorded kernel to cubin for sm_90a and sm_80 in batches;
/// returns (kernels, failures), or `None` (after a skip line) without NVRTC.
fn compile_gpu_kernels() -> Option<(usize, Vec<String>)> {
    use kiln_codegen::gpu::cuda::nvrtc::{Arch, Form, Nvrtc};
    use kiln_test_support::{require, Resource};
    let test = "onnx_backend_suites (NVRTC)";
    let lib = require(Resource::Nvrtc, test)?;
    let include = require(Resource::CudaHeaders, test)?;
    let nvrtc = Nvrtc::load_from(&[lib])
        .unwrap_or_else(|e| panic!("{test}: {e}"))
        .with_include_dir(include);
    let kernels: Vec<GpuKernel> = GPU_KERNELS
        .lock()
        .unwrap()
        .values()
        .enumerate()
        .map(|(i, k)| {
            let mut k = k.clone();
            k.name = format!("k{i}");
            k
        })
        .collect();
    // Batches compile in parallel: NVRTC programs are independent, and this
    // phase otherwise runs on one core after the cases are done.
    let jobs: Vec<(&[GpuKernel], Arch)> = kernels
        .chunks(NVRTC_BATCH)
        .flat_map(|batch| [Arch::SM_90A, Arch::SM_80].map(|arch| (batch, arch)))
        .collect();
    let failures: Vec<String> = jobs
        .par_iter()
        .filter_map(|(batch, arch)| {
            let source = match kiln_codegen::gpu::cuda::module_source(batch) {
                Ok(s) => s,
                // Reported once, with the first architecture.
                Err(e) if *arch == Arch::SM_90A => return Some(format!("CUDA C: {e}")),
                Err(_) => return None,
            };
            let e = nvrtc.compile(&source, *arch, Form::Cubin).err()?;
            Some(format!("{}: {e}", arch.sm()))
        })
        .collect();
    Some((kernels.len(), failures))
}

/// Thread time spent in each phase of the cases (reference, optimizer,
/// optimized reference, CPU build and run, cuda-sim build and run), in
/// microseconds, printed after the suite to show where its time goes.
static PHASE_MICROS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// The phases' names, in `PHASE_MICROS` order.
const PHASES: [&str; 5] = [
    "reference",
    "optimizer",
    "optimized reference",
    "cpu",
    "cuda-sim",
];

/// `f()`, its time added to phase `phase`.
fn timed<T>(phase: usize, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let out = f();
    PHASE_MICROS[phase].fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    out
}

/// Checks `graph` on `sets`, then (if that passed) its optimized form, on the
/// interpreter and through the CPU backend, and with `simulate` on cuda-sim.
fn check_both(graph: &Graph, sets: &[DataSet], simulate: bool, tol: Tolerance) -> Outcome {
    let plain = timed(0, || catch(|| check_sets(graph, sets, tol)));
    if plain.is_err() {
        return Outcome {
            plain,
            optimized: None,
            cpu: None,
            cuda_sim: None,
        };
    }
    let opt = timed(1, || catch(|| optimize(graph)));
    let optimized = Some(timed(2, || {
        opt.clone()
            .and_then(|g| catch(|| check_sets(&g, sets, tol)))
    }));
    let cpu = Some(timed(3, || {
        opt.clone()
            .and_then(|g| catch(|| check_backend(&g, sets, kiln::cpu::Device::Native, tol)))
    }));
    let cuda_sim = simulate.then(|| {
        timed(4, || {
            opt.and_then(|g| catch(|| check_backend(&g, sets, kiln::cpu::Device::CudaSim, tol)))
        })
    });
    Outcome {
        plain,
        optimized,
        cpu,
        cuda_sim,
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data_root() -> PathBuf {
    // Always required (also outside CI): the conformance suite is the point of
    // this test file.
    kiln_test_support::find(kiln_test_support::Resource::OnnxTestData).unwrap_or_else(|| {
        panic!("ONNX test data not found: run scripts/setup-python.sh (installs onnx==1.22.0 into .venv)")
    })
}

fn manifest_path() -> PathBuf {
    repo_root().join("tests/onnx-manifest.txt")
}

fn read_manifest() -> BTreeSet<String> {
    std::fs::read_to_string(manifest_path())
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Compares one output with the expected tensor like numpy's `assert_allclose`
/// (a sequence or optional element by element).
fn compare(i: usize, got: &Tensor, want: &Tensor, tol: Tolerance) -> Result<(), String> {
    if got.dtype() == kiln::ir::DType::List && want.dtype() == kiln::ir::DType::List {
        let (gk, gv) = kiln::ir::list::decode(got).map_err(|e| format!("output {i}: {e}"))?;
        let (wk, wv) = kiln::ir::list::decode(want).map_err(|e| format!("output {i}: {e}"))?;
        if gk != wk || gv.len() != wv.len() {
            return Err(format!(
                "output {i}: {gk:?} of {} elements, expected {wk:?} of {}",
                gv.len(),
                wv.len()
            ));
        }
        for (g, w) in gv.iter().zip(&wv) {
            compare(i, g, w, tol)?;
        }
        return Ok(());
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "output {i}: shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if got.dtype() != want.dtype() {
        return Err(format!(
            "output {i}: dtype {}, expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    for (k, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok =
            (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol.atol + tol.rtol * b.abs();
        if !ok {
            return Err(format!("output {i}: element {k} is {a}, expected {b}"));
        }
    }
    Ok(())
}

/// The `{prefix}_{k}.pb` files of a data set; `kinds[k]` says which hold a
/// sequence or optional instead of a tensor.
fn read_pbs(
    dir: &Path,
    prefix: &str,
    kinds: &[Option<kiln::ir::list::ListKind>],
) -> Result<Vec<Tensor>, String> {
    let mut out = Vec::new();
    for k in 0.. {
        let p = dir.join(format!("{prefix}_{k}.pb"));
        if !p.exists() {
            break;
        }
        let t = match kinds.get(k).copied().flatten() {
            Some(kind) => onnx::read_list_file(&p, kind),
            None => onnx::read_tensor_file(&p),
        };
        out.push(t.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Runs a case folder (`model.onnx` + `test_data_set_*`).
fn run_case(dir: &Path) -> Outcome {
    let loaded = catch(|| {
        let graph = onnx::load(&dir.join("model.onnx")).map_err(|e| format!("import: {e}"))?;
        kiln::ir::verify(&graph).map_err(|e| format!("verify: {e}"))?;
        let sets = read_sets(dir, &graph)?;
        Ok((graph, sets))
    });
    match loaded {
        Ok((graph, sets)) => {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            let tol = tolerance_for(name.as_deref().unwrap_or_default());
            check_both(&graph, &sets, true, tol)
        }
        Err(e) => Outcome::failed(e),
    }
}

/// The test data sets of a case folder: named inputs and expected outputs.
fn read_sets(dir: &Path, graph: &Graph) -> Result<Vec<DataSet>, String> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set"))
        })
        .collect();
    sets.sort();
    let model = onnx::read_model(&dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let (in_kinds, out_kinds) = onnx::io_list_kinds(&model);
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        let inputs = read_pbs(&set, "input", &in_kinds)?;
        let expected = read_pbs(&set, "output", &out_kinds)?;
        let named: Vec<(String, Tensor)> = graph
            .inputs
            .iter()
            .zip(inputs)
            .map(|(&id, t)| (graph.value(id).name.clone(), t))
            .collect();
        out.push((named, expected));
    }
    Ok(out)
}

/// Runs a `light` model: inputs are `arange(n)/n` in f32 as the ONNX runner
/// makes them. Not on cuda-sim: these are ImageNet-sized CNNs (VGG-19,
/// DenseNet, Inception...) whose kernels are the node cases' kernels at full
/// size, and the SIMT interpreter took ~350 s of the suite's thread time on
/// them (half of it on VGG-19 and AlexNet) for no kernel it does not run elsewhere.
fn run_light(model: &Path) -> Outcome {
    match catch(|| read_light(model)) {
        Ok((graph, sets)) => check_both(&graph, &sets, false, DEFAULT_TOLERANCE),
        Err(e) => Outcome::failed(e),
    }
}

/// A `light` model, its inputs and its expected outputs.
fn read_light(model: &Path) -> Result<(Graph, Vec<DataSet>), String> {
    let graph = onnx::load(model).map_err(|e| format!("import: {e}"))?;
    kiln::ir::verify(&graph).map_err(|e| format!("verify: {e}"))?;
    let mut inputs = Vec::new();
    for &id in &graph.inputs {
        let v = graph.value(id);
        let dims: Vec<usize> =
            v.ty.shape
                .0
                .iter()
                .map(|d| d.known().unwrap_or(1))
                .collect();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
        inputs.push((v.name.clone(), Tensor::from_vec(dims, data)));
    }
    let stem = model.with_extension("");
    let mut expected = Vec::new();
    for i in 0..graph.outputs.len() {
        expected.push(
            onnx::read_tensor_file(Path::new(&format!("{}_output_{i}.pb", stem.display())))
                .map_err(|e| e.to_string())?,
        );
    }
    Ok((graph, vec![(inputs, expected)]))
}

/// Every case of every suite: (`suite/name`, runner input).
fn all_cases(root: &Path) -> Vec<(String, PathBuf)> {
    let mut cases = Vec::new();
    for suite in ["node", "pytorch-converted", "pytorch-operator", "simple"] {
        if let Ok(rd) = std::fs::read_dir(root.join(suite)) {
            for e in rd.filter_map(Result::ok) {
                cases.push((
                    format!("{suite}/{}", e.file_name().to_string_lossy()),
                    e.path(),
                ));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(root.join("light")) {
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".onnx") {
                cases.push((format!("light/{stem}"), e.path()));
            }
        }
    }
    cases.sort();
    cases
}

#[test]
fn onnx_backend_suites() {
    let root = data_root();
    let filter = std::env::var("KILN_CONFORMANCE_FILTER").ok();
    let manifest = read_manifest();
    let cases: Vec<(String, PathBuf)> = all_cases(&root)
        .into_iter()
        .filter(|(n, _)| filter.as_deref().is_none_or(|f| n.contains(f)))
        .collect();
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());
    let running: &'static Mutex<BTreeSet<String>> = Box::leak(Box::default());
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(WATCHDOG_SECS));
        eprintln!(
            "conformance: still running after {WATCHDOG_SECS} s (hung?): {:?}",
            running.lock().unwrap()
        );
        std::process::exit(1);
    });
    // Cases run on a pool of their own with deep stacks: a thread waiting in a
    // nested parallel loop (the interpreter's GEMM) steals other cases, so one
    // stack can hold several cases' LLVM compiles at once.
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(CASE_STACK_BYTES)
        .build()
        .expect("thread pool");
    let cases_started = std::time::Instant::now();
    let durations: Mutex<Vec<(f64, String)>> = Mutex::new(Vec::new());
    pool.install(|| {
        cases.par_iter().for_each(|(name, path)| {
            running.lock().unwrap().insert(name.clone());
            let started = std::time::Instant::now();
            let r = if name.starts_with("light/") {
                run_light(path)
            } else {
                run_case(path)
            };
            durations
                .lock()
                .unwrap()
                .push((started.elapsed().as_secs_f64(), name.clone()));
            running.lock().unwrap().remove(name);
            results.lock().unwrap().push((name.clone(), r));
        })
    });
    let phases: Vec<String> = PHASES
        .iter()
        .zip(&PHASE_MICROS)
        .map(|(name, t)| format!("{name} {:.0} s", t.load(Ordering::Relaxed) as f64 / 1e6))
        .collect();
    println!(
        "conformance: {} cases ran in {:.0} s (thread time: {})",
        cases.len(),
        cases_started.elapsed().as_secs_f64(),
        phases.join(", ")
    );
    let mut durations = durations.into_inner().unwrap();
    durations.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest: Vec<String> = durations
        .iter()
        .take(SLOWEST_SHOWN)
        .map(|(t, n)| format!("{n} {t:.1} s"))
        .collect();
    println!("conformance: slowest cases: {}", slowest.join(", "));
    let mut outcomes = results.into_inner().unwrap();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    // (cases run, failures) of one stage over the manifest's cases.
    let stage = |pick: &dyn Fn(&Outcome) -> Option<Result<(), String>>| {
        let picked: Vec<(String, Result<(), String>)> = outcomes
            .iter()
            .filter(|(n, _)| manifest.contains(n))
            .filter_map(|(n, o)| pick(o).map(|r| (n.clone(), r)))
            .collect();
        let failures: Vec<(String, String)> = picked
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.clone())))
            .collect();
        (picked.len(), failures)
    };
    let (optimized_run, optimized_failures) = stage(&|o| o.optimized.clone());
    let (_, cpu_failures) = stage(&|o| o.cpu.clone().map(|r| r.map(|_| ())));
    let (sim_run, sim_failures) = stage(&|o| o.cuda_sim.clone().map(|r| r.map(|_| ())));
    let cpu_runs: Vec<CpuRun> = outcomes
        .iter()
        .filter(|(n, _)| manifest.contains(n))
        .filter_map(|(_, o)| o.cpu.as_ref().and_then(|r| r.as_ref().ok().copied()))
        .collect();
    let cpu_run = cpu_runs.len() + cpu_failures.len();
    let cpu_native = cpu_runs.iter().filter(|r| r.native).count();
    let cpu_all_compiled = cpu_runs
        .iter()
        .filter(|r| r.native && r.host_steps == 0)
        .count();
    let results: Vec<(String, Result<(), String>)> =
        outcomes.into_iter().map(|(n, o)| (n, o.plain)).collect();

    let passing: BTreeSet<String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n.clone())
        .collect();
    if let Ok(path) = std::env::var("KILN_CONFORMANCE_REPORT") {
        let report: String = results
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}\n")))
            .collect();
        std::fs::write(path, report).unwrap();
    }
    if std::env::var("KILN_CONFORMANCE_UPDATE").is_ok_and(|v| v == "1") {
        let mut text = String::from("# ONNX backend test cases expected to pass through the reference interpreter.\n# Regenerate: KILN_CONFORMANCE_UPDATE=1 cargo test --release --test onnx_conformance\n");
        for n in &passing {
            text.push_str(n);
            text.push('\n');
        }
        std::fs::write(manifest_path(), text).unwrap();
    }
    let listed_failures: Vec<&(String, Result<(), String>)> = results
        .iter()
        .filter(|(n, r)| manifest.contains(n) && r.is_err())
        .collect();
    let listed_run = results.iter().filter(|(n, _)| manifest.contains(n)).count();
    let unlisted = results.len() - listed_run;
    let unlisted_passing = results
        .iter()
        .filter(|(n, r)| !manifest.contains(n) && r.is_ok())
        .count();
    for suite in [
        "node",
        "pytorch-converted",
        "pytorch-operator",
        "simple",
        "light",
    ] {
        let total = results
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{suite}/")))
            .count();
        let ok = passing
            .iter()
            .filter(|n| n.starts_with(&format!("{suite}/")))
            .count();
        println!("{suite:>18}: {ok} of {total} cases pass");
    }
    for (n, r) in &listed_failures {
        println!("FAILED {n}: {}", r.as_ref().unwrap_err());
    }
    println!("unlisted (unsupported) cases: {unlisted} ({unlisted_passing} of them pass now: add them with KILN_CONFORMANCE_UPDATE=1)");
    let mut excluded: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexplained: Vec<&str> = Vec::new();
    for (n, r) in &results {
        if manifest.contains(n) || r.is_ok() {
            continue;
        }
        match exclusion(n) {
            Some(why) => *excluded.entry(why).or_default() += 1,
            None => unexplained.push(n),
        }
    }
    for (why, count) in &excluded {
        println!("excluded: {count} cases ({why})");
    }
    for n in &unexplained {
        println!("FAILED UNEXPLAINED {n}: neither in the manifest nor excluded (EXCLUDED)");
    }
    for (n, e) in &optimized_failures {
        println!("FAILED OPTIMIZED {n}: {e}");
    }
    for (n, e) in &cpu_failures {
        println!("FAILED CPU {n}: {e}");
    }
    println!(
        "cpu backend: {cpu_native} cases native ({cpu_all_compiled} with every step compiled, the rest with host steps), {} on the interpreter (data-dependent shapes)",
        cpu_runs.len() - cpu_native
    );
    for (n, e) in &sim_failures {
        println!("FAILED CUDA-SIM {n}: {e}");
    }
    println!(
        "cpu: {} passed, {} failed",
        cpu_run - cpu_failures.len(),
        cpu_failures.len()
    );
    println!(
        "cuda-sim: {} passed, {} failed (every kernel lowered to a GPU kernel and run on the SIMT interpreter; all but the light CNNs)",
        sim_run - sim_failures.len(),
        sim_failures.len()
    );
    let nvrtc_started = std::time::Instant::now();
    let nvrtc = compile_gpu_kernels();
    if let Some((n, failures)) = &nvrtc {
        for f in failures.iter().take(5) {
            println!("FAILED NVRTC: {f}");
        }
        println!(
            "nvrtc: {n} distinct GPU kernels of the cuda-sim runs compiled to cubin for sm_90a and sm_80 ({} failed) in {:.0} s",
            failures.len(),
            nvrtc_started.elapsed().as_secs_f64()
        );
    }
    println!(
        "conformance: {} passed, {} failed; optimized: {} passed, {} failed",
        listed_run - listed_failures.len(),
        listed_failures.len(),
        optimized_run - optimized_failures.len(),
        optimized_failures.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} cases are neither in the manifest nor excluded: {unexplained:?}",
        unexplained.len()
    );
    assert!(
        listed_failures.is_empty()
            && optimized_failures.is_empty()
            && cpu_failures.is_empty()
            && sim_failures.is_empty()
            && nvrtc.as_ref().is_none_or(|(_, f)| f.is_empty()),
        "{} manifest cases failed, {} after optimization, {} on the CPU backend, {} on cuda-sim",
        listed_failures.len(),
        optimized_failures.len(),
        cpu_failures.len(),
        sim_failures.len()
    );
}
