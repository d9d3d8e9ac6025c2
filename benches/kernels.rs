//! Kernel families of the CPU backend, timed through `CpuExecutable::run` (inputs
//! prepared outside the timed loop; each run's output tensors are allocated and
//! dropped inside it, as for any caller), on 1 and 2 threads:
//!
//! 1. GEMM f32 1024³ and 4096³ (two inputs);
//! 2. a batch-1 linear layer `x[1,4096] · W[4096,4096]` with W a constant, and with
//!    W given transposed (a `Transpose` of a constant feeding the matmul, read
//!    through strides);
//! 3. elementwise chains `act(x·a + b)·c` (act = tanh, relu) over 64M f32, compiled through
//!    [`kiln::Model::compile_with`] with the optimizer (which fuses it), next to a
//!    plain memory copy of the same bytes;
//! 4. row kernels: softmax and LayerNorm over `[512, 1024]`;
//! 5. attention, BERT-base shape: q, k, v `[1, 12, 128, 64]`, no mask.
//!
//! Every case's output is checked once against a reference (naive loops or the
//! reference interpreter) before it is timed. After criterion's report, one
//! `summary` line per case gives the median (the median of criterion's samples,
//! recorded through `iter_custom`) with the derived GFLOP/s or GB/s (GB = 10⁹ bytes).
//! Each line also gives the program's steps alone (`run_profiled`: no input
//! checks, arena handling or output copies; not measured for 4096³, where they are
//! all of the run), which separates a kernel's speed from the runtime's overhead.
//! GEMM and attention throughputs are given to criterion as elements = FLOPs, so
//! its `elem/s` reads as FLOP/s.
//!
//! `KILN_BENCH_ONLY=chain,rows` runs only those families (gemm, matvec, chain,
//! rows, attention), setup included; `KILN_BENCH_DUMP=1` prints each program
//! with its kernels.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use kiln::cpu::Build;
use kiln::ir::op::{BinaryOp, CompositeOp, LayoutOp, NnOp, QkOutput, UnaryOp};
use kiln::ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use kiln::{CompileOptions, Model, Target};
use kiln_runtime::cpu::CpuExecutable;

/// Thread counts every case runs with.
const THREADS: [usize; 2] = [1, 2];

/// Elements of the elementwise chain (64M f32, 256 MiB).
const CHAIN_LEN: usize = 64 << 20;

/// Deterministic values in `[-1, 1)` (an LCG; the bench needs no statistics).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn f32_type(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(shape))
}

fn node(g: &mut Graph, name: &str, op: Op, inputs: Vec<ValueId>) -> ValueId {
    g.add_node(name, op, inputs, &[name.to_string()], None)
        .unwrap_or_else(|e| panic!("node {name}: {e}"))[0]
}

/// Native code for `g`; panics when the build falls back to the interpreter.
fn native(g: &Graph, shapes: &[Vec<usize>], threads: usize) -> CpuExecutable {
    match kiln::cpu::build(g, shapes, threads).expect("cpu build") {
        Build::Native(exe) => exe,
        Build::Gpu(_) => unreachable!("kiln::cpu::build builds native code"),
        Build::Interpreted { reason, .. } => panic!("{}: not compiled: {reason}", g.name),
    }
}

/// Prints the program's steps (the whole program, kernel bodies included, when
/// `KILN_BENCH_DUMP` is set) and warns about host fallbacks, which would make the
/// timing meaningless.
fn show_program(case: &str, exe: &CpuExecutable) {
    let text = exe.program().to_text();
    eprintln!(
        "program of {case} (arena {} bytes):",
        exe.plan().arena_bytes
    );
    for line in text.lines().filter(|l| {
        ["launch ", "gemm ", "host ", "check "]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        eprintln!("  {line}");
    }
    if std::env::var_os("KILN_BENCH_DUMP").is_some() {
        eprintln!("{text}");
    }
    let host = exe.program().host_ops();
    if !host.is_empty() {
        eprintln!("  WARNING: {case} runs {host:?} on the host interpreter");
    }
}

/// Panics unless `got` matches `want` within `atol + rtol·|want|` everywhere.
fn check_close(case: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{case}: output length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let excess = err / (atol + rtol * w.abs());
        assert!(
            excess <= 1.0 && g.is_finite(),
            "{case}: element {i} is {g}, expected {w}"
        );
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    eprintln!(
        "verified {case}: {} elements, worst at {} ({:.2} of the tolerance)",
        got.len(),
        worst.1,
        worst.0
    );
}

/// Checks the `interp`reter's outputs against the native ones.
fn check_with_interpreter(case: &str, g: &Graph, inputs: &[Tensor], got: &[Tensor], tol: f64) {
    let named: Vec<(String, Tensor)> = g
        .inputs
        .iter()
        .zip(inputs)
        .map(|(&id, t)| (g.value(id).name.clone(), t.clone()))
        .collect();
    let want = kiln::ir::interp::run(g, &named).expect("interpreter");
    assert_eq!(got.len(), want.len(), "{case}: outputs");
    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "{case}: output {o} shape");
        check_close(case, &g.to_f32_vec(), &w.to_f64_vec(), tol, tol);
    }
}

/// What a case's summary line derives from its median.
#[derive(Clone, Copy)]
enum Metric {
    /// Floating-point operations per run.
    Flops(f64),
    /// Bytes moved per run (GB/s), with the label of what they are.
    Bytes(f64, &'static str),
}

/// One timed case.
struct Record {
    name: String,
    median: Duration,
    metric: Metric,
    /// Median over a few runs of the program's steps alone (no input checks,
    /// arena or output copies), from `run_profiled`, with the median of plain
    /// runs interleaved with them (the same load on a shared machine).
    steps: Option<(Duration, Duration)>,
}

/// The recorded cases, printed after criterion's report.
#[derive(Default)]
struct Summary {
    records: Vec<Record>,
    notes: Vec<String>,
}

impl Summary {
    fn median(&self, name: &str) -> Option<Duration> {
        self.records
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.median)
    }

    /// Times the steps of `exe` alone for the case recorded as `name`.
    fn profile_steps(&mut self, name: &str, exe: &CpuExecutable, inputs: &[Tensor]) {
        let Some(r) = self.records.iter_mut().find(|r| r.name == name) else {
            return;
        };
        // About two seconds of run pairs, 3 to 51.
        let reps = (1.0 / r.median.as_secs_f64()).clamp(3.0, 51.0) as usize;
        let (mut steps, mut runs) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let mut times = Vec::new();
            black_box(exe.run_profiled(inputs, &mut times).expect("run"));
            steps.push(times.iter().sum::<Duration>());
            let start = Instant::now();
            black_box(exe.run(inputs).expect("run"));
            runs.push(start.elapsed());
        }
        steps.sort();
        runs.sort();
        r.steps = Some((steps[reps / 2], runs[reps / 2]));
    }

    fn print(&self) {
        println!();
        let derived = |metric: Metric, d: Duration| {
            let secs = d.as_secs_f64();
            match metric {
                Metric::Flops(f) => format!("{:.1} GFLOP/s", f / secs / 1e9),
                Metric::Bytes(b, what) => format!("{:.2} GB/s ({what})", b / secs / 1e9),
            }
        };
        for r in &self.records {
            let steps = r.steps.map_or(String::new(), |(s, run)| {
                format!(
                    "; steps alone {s:?}, {} = {:.0}% of an interleaved run ({run:?})",
                    derived(r.metric, s),
                    100.0 * s.as_secs_f64() / run.as_secs_f64(),
                )
            });
            println!(
                "summary {:<44} median {:>12?}  {}{steps}",
                r.name,
                r.median,
                derived(r.metric, r.median)
            );
        }
        for n in &self.notes {
            println!("summary {n}");
        }
    }
}

/// Benchmarks `f` under criterion as `id` in `group`, records the median of the
/// measurement samples (the last `samples` calls of the routine; the earlier ones
/// are criterion's warm-up) under `name`.
#[allow(clippy::too_many_arguments)]
fn time_case(
    summary: &mut Summary,
    group: &mut BenchmarkGroup<'_, WallTime>,
    samples: usize,
    id: BenchmarkId,
    name: String,
    metric: Metric,
    mut f: impl FnMut(),
) {
    let mut taken: Vec<(u64, Duration)> = Vec::new();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            let d = start.elapsed();
            taken.push((iters, d));
            d
        })
    });
    if taken.is_empty() {
        return; // filtered out
    }
    let mut per_iter: Vec<f64> = taken[taken.len().saturating_sub(samples)..]
        .iter()
        .map(|&(n, d)| d.as_secs_f64() / n as f64)
        .collect();
    per_iter.sort_by(f64::total_cmp);
    let len = per_iter.len();
    let median = (per_iter[(len - 1) / 2] + per_iter[len / 2]) / 2.0;
    summary.records.push(Record {
        name,
        median: Duration::from_secs_f64(median),
        metric,
        steps: None,
    });
}

/// Times `exe.run(inputs)` (output dropped inside the loop).
fn run_exe<'a>(exe: &'a CpuExecutable, inputs: &'a [Tensor]) -> impl FnMut() + 'a {
    move || {
        black_box(exe.run(black_box(inputs)).expect("run"));
    }
}

fn gemm(c: &mut Criterion, summary: &mut Summary) {
    // 4096³ takes about 1.5 s a run on one core: 10 samples of one iteration.
    for (size, samples, warm, measure) in [(1024usize, 10, 1, 3), (4096, 10, 1, 15)] {
        let (m, n, k) = (size, size, size);
        let flops = 2.0 * (m * n * k) as f64;
        let mut g = Graph::new(format!("gemm{size}"));
        let a = g.add_input("a", f32_type(&[m, k]));
        let b = g.add_input("b", f32_type(&[k, n]));
        let y = node(&mut g, "c", Op::Nn(NnOp::MatMul), vec![a, b]);
        g.outputs.push(y);
        let av = values(m * k, 1);
        let bv = values(k * n, 2);
        let inputs = [
            Tensor::from_vec(vec![m, k], av.clone()),
            Tensor::from_vec(vec![k, n], bv.clone()),
        ];
        let shapes = vec![vec![m, k], vec![k, n]];
        let mut group = c.benchmark_group("gemm_f32");
        group
            .sample_size(samples)
            .warm_up_time(Duration::from_secs(warm))
            .measurement_time(Duration::from_secs(measure))
            .throughput(Throughput::Elements(flops as u64));
        if size > 1024 {
            group.sampling_mode(SamplingMode::Flat);
        }
        for t in THREADS {
            let exe = native(&g, &shapes, t);
            let case = format!("gemm f32 {m}x{n}x{k} t{t}");
            if t == 1 {
                show_program(&case, &exe);
            }
            let out = exe.run(&inputs).expect("run")[0].to_f32_vec();
            // 64×64 corners at the top left and the bottom right.
            for (r0, c0) in [(0, 0), (m - 64, n - 64)] {
                let (mut got, mut want) = (Vec::new(), Vec::new());
                for i in r0..r0 + 64 {
                    for j in c0..c0 + 64 {
                        got.push(out[i * n + j]);
                        want.push(
                            (0..k)
                                .map(|l| av[i * k + l] as f64 * bv[l * n + j] as f64)
                                .sum::<f64>(),
                        );
                    }
                }
                check_close(
                    &format!("{case} corner ({r0},{c0})"),
                    &got,
                    &want,
                    1e-3,
                    1e-4,
                );
            }
            time_case(
                summary,
                &mut group,
                samples,
                BenchmarkId::new(format!("{size}^3"), format!("t{t}")),
                case.clone(),
                Metric::Flops(flops),
                run_exe(&exe, &inputs),
            );
            if size <= 1024 {
                summary.profile_steps(&case, &exe, &inputs);
            }
        }
        group.finish();
    }
}

fn matvec(c: &mut Criterion, summary: &mut Summary) {
    let (k, n) = (4096usize, 4096usize);
    let weight_bytes = (k * n * 4) as f64;
    let xv = values(k, 3);
    let wv = values(k * n, 4);
    let inputs = [Tensor::from_vec(vec![1, k], xv.clone())];
    let shapes = vec![vec![1, k]];
    let mut group = c.benchmark_group("matvec_f32");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::BytesDecimal(weight_bytes as u64));
    for transposed in [false, true] {
        let mut g = Graph::new("linear");
        let x = g.add_input("x", f32_type(&[1, k]));
        let w = if transposed {
            // Wᵀ stored [n, k]; `want` below reads it as such.
            let mut wt = vec![0f32; k * n];
            for l in 0..k {
                for j in 0..n {
                    wt[j * k + l] = wv[l * n + j];
                }
            }
            let wt = g.add_const("w_t", Tensor::from_vec(vec![n, k], wt));
            node(
                &mut g,
                "w",
                Op::Layout(LayoutOp::Transpose { perm: vec![1, 0] }),
                vec![wt],
            )
        } else {
            g.add_const("w", Tensor::from_vec(vec![k, n], wv.clone()))
        };
        let y = node(&mut g, "y", Op::Nn(NnOp::MatMul), vec![x, w]);
        g.outputs.push(y);
        let want: Vec<f64> = {
            let mut acc = vec![0f64; n];
            for l in 0..k {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a += xv[l] as f64 * wv[l * n + j] as f64;
                }
            }
            acc
        };
        let form = if transposed {
            "x·Wᵀ(strided)"
        } else {
            "x·W"
        };
        for t in THREADS {
            let exe = native(&g, &shapes, t);
            let case = format!("matvec 1x{k}·{k}x{n} {form} t{t}");
            if t == 1 {
                show_program(&case, &exe);
            }
            let out = exe.run(&inputs).expect("run")[0].to_f32_vec();
            check_close(&case, &out, &want, 1e-3, 1e-4);
            time_case(
                summary,
                &mut group,
                20,
                BenchmarkId::new(if transposed { "wt_strided" } else { "w" }, format!("t{t}")),
                case.clone(),
                Metric::Bytes(weight_bytes, "weights"),
                run_exe(&exe, &inputs),
            );
            summary.profile_steps(&case, &exe, &inputs);
        }
    }
    group.finish();
}

fn chain(c: &mut Criterion, summary: &mut Summary) {
    let n = CHAIN_LEN;
    let bytes = n * 4;
    let moved = 2.0 * bytes as f64; // read x, write y
    let (a, b, cc) = (0.75f32, 0.25f32, 1.5f32);
    let xv: Vec<f32> = values(n, 5).iter().map(|v| v * 3.0).collect();
    let mut group = c.benchmark_group("chain_64M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::BytesDecimal(moved as u64));
    // A transcendental chain (compute-heavy: tanh costs tens of instructions per
    // vector) and the bias + activation + scale chain of a fused epilogue.
    for (label, act) in [("tanh", UnaryOp::Tanh), ("relu", UnaryOp::Relu)] {
        let mut g = Graph::new("chain");
        let x = g.add_input("x", f32_type(&[n]));
        let av = g.add_const("a", Tensor::scalar(a));
        let bv = g.add_const("b", Tensor::scalar(b));
        let cv = g.add_const("c", Tensor::scalar(cc));
        let m1 = node(&mut g, "xa", Op::Binary(BinaryOp::Mul), vec![x, av]);
        let a1 = node(&mut g, "xab", Op::Binary(BinaryOp::Add), vec![m1, bv]);
        let th = node(&mut g, "th", Op::Unary(act.clone()), vec![a1]);
        let y = node(&mut g, "y", Op::Binary(BinaryOp::Mul), vec![th, cv]);
        g.outputs.push(y);
        let model = Model::from_graph(g);
        let inputs = [Tensor::from_vec(vec![n], xv.clone())];
        let reference = |i: usize| {
            let z = xv[i] as f64 * a as f64 + b as f64;
            let z = if label == "tanh" {
                z.tanh()
            } else {
                z.max(0.0)
            };
            z * cc as f64
        };
        // Every element of the first and last 1M, and every 61st in between.
        let edge = 1 << 20;
        let checked: Vec<usize> = (0..edge)
            .chain((edge..n - edge).step_by(61))
            .chain(n - edge..n)
            .collect();
        let want: Vec<f64> = checked.iter().map(|&i| reference(i)).collect();
        for t in THREADS {
            let exe = model
                .compile_with(
                    &Target::Cpu,
                    &CompileOptions {
                        threads: Some(t),
                        optimize: true,
                        isa: None,
                    },
                )
                .expect("compile");
            let build: Arc<Build> = exe
                .cpu_build(&[vec![n]])
                .expect("build")
                .expect("a cpu build");
            let Build::Native(native) = &*build else {
                panic!("chain not compiled")
            };
            let case = format!("chain {label}(x·a+b)·c 64M f32 t{t}");
            if t == 1 {
                show_program(&case, native);
            }
            let out = native.run(&inputs).expect("run")[0].to_f32_vec();
            let got: Vec<f32> = checked.iter().map(|&i| out[i]).collect();
            drop(out);
            check_close(&case, &got, &want, 1e-5, 1e-5);
            time_case(
                summary,
                &mut group,
                10,
                BenchmarkId::new(format!("{label}_fma_mul"), format!("t{t}")),
                case.clone(),
                Metric::Bytes(moved, "read x + write y"),
                run_exe(native, &inputs),
            );
            summary.profile_steps(&case, native, &inputs);
        }
    }

    // The same bytes through memcpy, on 1 and 2 threads (destination touched
    // before timing, so no page faults are timed).
    let src = xv.clone();
    let mut dst = vec![0f32; n];
    dst.copy_from_slice(&src);
    time_case(
        summary,
        &mut group,
        10,
        BenchmarkId::new("memcpy", "t1"),
        "memcpy 256 MiB t1".into(),
        Metric::Bytes(moved, "read + write"),
        || {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        },
    );
    time_case(
        summary,
        &mut group,
        10,
        BenchmarkId::new("memcpy", "t2"),
        "memcpy 256 MiB t2".into(),
        Metric::Bytes(moved, "read + write"),
        || {
            let (s0, s1) = black_box(&src).split_at(n / 2);
            let (d0, d1) = dst.split_at_mut(n / 2);
            std::thread::scope(|sc| {
                sc.spawn(|| d0.copy_from_slice(s0));
                d1.copy_from_slice(s1);
            });
            black_box(&mut dst);
        },
    );
    group.finish();
    for label in ["tanh", "relu"] {
        for t in THREADS {
            let chain = summary.median(&format!("chain {label}(x·a+b)·c 64M f32 t{t}"));
            let copy = summary.median(&format!("memcpy 256 MiB t{t}"));
            if let (Some(ch), Some(cp)) = (chain, copy) {
                summary.notes.push(format!(
                    "chain {label}/memcpy t{t}: {:.2} (chain {ch:?}, memcpy {cp:?})",
                    ch.as_secs_f64() / cp.as_secs_f64()
                ));
            }
        }
    }
}

fn rows(c: &mut Criterion, summary: &mut Summary) {
    let (r, w) = (512usize, 1024usize);
    let moved = 2.0 * (r * w * 4) as f64;
    let mut group = c.benchmark_group("rows_512x1024");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::BytesDecimal(moved as u64));
    let xv: Vec<f32> = values(r * w, 6).iter().map(|v| v * 4.0).collect();
    let inputs = [Tensor::from_vec(vec![r, w], xv)];
    let shapes = vec![vec![r, w]];
    for kind in ["softmax", "layernorm"] {
        let mut g = Graph::new(kind);
        let x = g.add_input("x", f32_type(&[r, w]));
        let y = if kind == "softmax" {
            node(
                &mut g,
                "y",
                Op::Composite(CompositeOp::Softmax { axis: 1 }),
                vec![x],
            )
        } else {
            let scale = g.add_const(
                "scale",
                Tensor::from_vec(vec![w], values(w, 7).iter().map(|v| 1.0 + v).collect()),
            );
            let bias = g.add_const("bias", Tensor::from_vec(vec![w], values(w, 8)));
            node(
                &mut g,
                "y",
                Op::Composite(CompositeOp::LayerNorm {
                    axis: 1,
                    epsilon: 1e-5,
                }),
                vec![x, scale, bias],
            )
        };
        g.outputs.push(y);
        for t in THREADS {
            let exe = native(&g, &shapes, t);
            let case = format!("{kind} [{r},{w}] t{t}");
            if t == 1 {
                show_program(&case, &exe);
            }
            let out = exe.run(&inputs).expect("run");
            check_with_interpreter(&case, &g, &inputs, &out, 1e-5);
            time_case(
                summary,
                &mut group,
                20,
                BenchmarkId::new(kind, format!("t{t}")),
                case.clone(),
                Metric::Bytes(moved, "read x + write y"),
                run_exe(&exe, &inputs),
            );
            summary.profile_steps(&case, &exe, &inputs);
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion, summary: &mut Summary) {
    let shape = [1usize, 12, 128, 64];
    let (h, s, d) = (shape[1], shape[2], shape[3]);
    let flops = 4.0 * (h * s * s * d) as f64; // Q·Kᵀ and P·V
    let mut g = Graph::new("attention");
    let q = g.add_input("q", f32_type(&shape));
    let k = g.add_input("k", f32_type(&shape));
    let v = g.add_input("v", f32_type(&shape));
    let y = node(
        &mut g,
        "y",
        Op::Composite(CompositeOp::Attention {
            scale: None,
            causal: false,
            softcap: None,
            mask: false,
            past: false,
            kv_lengths: false,
            qk_output: QkOutput::Raw,
        }),
        vec![q, k, v],
    );
    g.outputs.push(y);
    let numel: usize = shape.iter().product();
    let inputs: Vec<Tensor> = (0..3)
        .map(|i| Tensor::from_vec(shape.to_vec(), values(numel, 10 + i)))
        .collect();
    let shapes = vec![shape.to_vec(); 3];
    let mut group = c.benchmark_group("attention_bert_base");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(flops as u64));
    for t in THREADS {
        let exe = native(&g, &shapes, t);
        let case = format!("attention [1,12,128,64] t{t}");
        if t == 1 {
            show_program(&case, &exe);
        }
        let out = exe.run(&inputs).expect("run");
        check_with_interpreter(&case, &g, &inputs, &out, 1e-5);
        time_case(
            summary,
            &mut group,
            20,
            BenchmarkId::new("q_k_v_1x12x128x64", format!("t{t}")),
            case.clone(),
            Metric::Flops(flops),
            run_exe(&exe, &inputs),
        );
        summary.profile_steps(&case, &exe, &inputs);
    }
    group.finish();
}

/// One family of cases.
type Family = fn(&mut Criterion, &mut Summary);

fn main() {
    let start = Instant::now();
    let mut c = Criterion::default().configure_from_args();
    let mut summary = Summary::default();
    // KILN_BENCH_ONLY=chain,rows runs only those families (their setup too, which
    // a criterion filter does not skip).
    let only = std::env::var("KILN_BENCH_ONLY").ok();
    let families: [(&str, Family); 5] = [
        ("gemm", gemm),
        ("matvec", matvec),
        ("chain", chain),
        ("rows", rows),
        ("attention", attention),
    ];
    for (name, family) in families {
        if only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|f| f == name))
        {
            family(&mut c, &mut summary);
        }
    }
    c.final_summary();
    summary.print();
    println!("summary whole bench: {:?}", start.elapsed());
}
