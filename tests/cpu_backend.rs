//! Differential tests of the CPU backend against the reference interpreter.
//!
//! Every case builds a small graph with the IR API, runs it on random inputs
//! through the reference interpreter (the oracle) and through
//! `Target::Cpu` — once without and once with the optimizer — and compares
//! every output. Each case also checks that the scheduler compiled the ops it
//! is meant to handle natively: a silent `Step::Host` fallback fails the test
//! unless the op is listed as an expected fallback.
//!
//! Random inputs come from a fixed seed plus one fresh seed per run; the fresh
//! seed is printed, and `KILN_TEST_SEED=<n>` reruns exactly that seed.

use kiln::cpu::Build;
use kiln::ir::op::{
    BinaryOp, CompositeOp, FusedArg, FusedOp, FusedStep, LayoutOp, NnOp, QkOutput, ReduceKind,
    ReduceOp, UnaryOp,
};
use kiln::ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use kiln::{CompileOptions, IsaLevel, Model, Target};
use kiln_codegen::program::{Program, Step};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Seeds, shapes, random tensors.

/// The fixed seed every run uses, then a fresh one (or only `KILN_TEST_SEED`).
fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("KILN_TEST_SEED") {
        let s: u64 = s.parse().expect("KILN_TEST_SEED must be an integer");
        println!("seed from KILN_TEST_SEED: {s}");
        return vec![s];
    }
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh} (reproduce with KILN_TEST_SEED={fresh})");
    vec![0x6b69_6c6e, fresh]
}

/// Most elements of a random shape.
const MAX_ELEMS: usize = 40_000;

/// A random shape of rank `0..=5`: small dims (many of size 1), the last one
/// sometimes long and odd so vector loops get a remainder.
fn random_shape(rng: &mut StdRng) -> Vec<usize> {
    let rank = rng.random_range(0..=5usize);
    let mut s: Vec<usize> = (0..rank)
        .map(|_| *[1, 1, 2, 3, 4, 5, 7].choose(rng).unwrap())
        .collect();
    if let Some(last) = s.last_mut() {
        *last = *[1, 3, 17, 127, 1031, 8].choose(rng).unwrap();
    }
    while s.iter().product::<usize>() > MAX_ELEMS {
        let i = s.iter().enumerate().max_by_key(|p| p.1).unwrap().0;
        s[i] = s[i].div_ceil(2);
    }
    s
}

/// Shapes every elementwise case sees (rank 0..5, size-1 dims, odd vector
/// remainders, and one large enough that its loops run on several threads),
/// plus two random ones.
fn elementwise_shapes(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut v = vec![
        vec![],
        vec![1],
        vec![3],
        vec![17],
        vec![127],
        vec![1031],
        vec![2, 1, 3],
        vec![1, 1, 1, 1, 1],
        vec![2, 3, 1, 5, 7],
        vec![2, 17, 1031],
    ];
    v.push(random_shape(rng));
    v.push(random_shape(rng));
    v
}

/// A shape that broadcasts to `out` (numpy rules): leading dims dropped at
/// random, other dims set to 1 at random.
fn broadcast_operand(rng: &mut StdRng, out: &[usize]) -> Vec<usize> {
    let drop = rng.random_range(0..=out.len());
    out[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect()
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// f32 uniform in `[lo, hi)`; with `ties`, values are multiples of 0.5 so that
/// comparisons, max/min and rounding meet equal operands and halves.
fn uniform(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    Tensor::from_vec(
        shape.to_vec(),
        (0..numel(shape))
            .map(|_| rng.random_range(lo..hi))
            .collect::<Vec<f32>>(),
    )
}

fn ties(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    Tensor::from_vec(
        shape.to_vec(),
        (0..numel(shape))
            .map(|_| rng.random_range(-6i32..=6) as f32 * 0.5)
            .collect::<Vec<f32>>(),
    )
}

/// Integers of `dtype` uniform in `[lo, hi]` (converted with wrapping).
fn ints(rng: &mut StdRng, dtype: DType, shape: &[usize], lo: i64, hi: i64) -> Tensor {
    let v: Vec<i64> = (0..numel(shape))
        .map(|_| rng.random_range(lo..=hi))
        .collect();
    Tensor::from_i64(dtype, shape.to_vec(), &v)
}

fn bools(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    Tensor::from_vec(
        shape.to_vec(),
        (0..numel(shape))
            .map(|_| rng.random_bool(0.5))
            .collect::<Vec<bool>>(),
    )
}

/// Values of every integer type's full range (wrapping arithmetic is exercised).
fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        DType::I16 => (-32768, 32767),
        DType::U16 => (0, 65535),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::U32 => (0, u32::MAX as i64),
        // i64/u64 within ±2^40: the reference converts integers to float through
        // f64, which is exact only below 2^53.
        DType::I64 => (-(1 << 40), 1 << 40),
        DType::U64 => (0, 1 << 40),
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------------------
// Graph building.

/// A small builder over `Graph`.
struct G {
    g: Graph,
    n: usize,
    inputs: Vec<(String, Tensor)>,
}

impl G {
    fn new(name: &str) -> G {
        G {
            g: Graph::new(name),
            n: 0,
            inputs: Vec::new(),
        }
    }

    /// A graph input fed with `value`.
    fn input(&mut self, name: &str, value: Tensor) -> ValueId {
        let ty = TensorType::new(value.dtype(), Shape::known(value.shape()));
        let id = self.g.add_input(name, ty);
        self.inputs.push((self.g.value(id).name.clone(), value));
        id
    }

    fn konst(&mut self, value: Tensor) -> ValueId {
        self.n += 1;
        self.g.add_const(format!("c{}", self.n), value)
    }

    fn ints(&mut self, v: &[i64]) -> ValueId {
        self.konst(Tensor::from_vec(vec![v.len()], v.to_vec()))
    }

    /// A single-output node; its value is named `name`.
    fn op(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> ValueId {
        self.op_n(name, op, inputs, 1)[0]
    }

    fn op_n(&mut self, name: &str, op: Op, inputs: &[ValueId], outputs: usize) -> Vec<ValueId> {
        self.n += 1;
        let names: Vec<String> = if outputs == 1 {
            vec![name.to_string()]
        } else {
            (0..outputs).map(|i| format!("{name}.{i}")).collect()
        };
        self.g
            .add_node(
                format!("n{}_{name}", self.n),
                op,
                inputs.to_vec(),
                &names,
                None,
            )
            .unwrap_or_else(|e| panic!("building {name}: {e}"))
    }

    fn out(&mut self, v: ValueId) {
        self.g.outputs.push(v);
    }

    fn transpose(&mut self, name: &str, x: ValueId, perm: &[usize]) -> ValueId {
        self.op(
            name,
            Op::Layout(LayoutOp::Transpose {
                perm: perm.to_vec(),
            }),
            &[x],
        )
    }
}

// ---------------------------------------------------------------------------
// Comparison.

/// What an error bound is relative to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cond {
    /// The expected value itself.
    Value,
    /// The reference's output on the absolute values of the float inputs (the
    /// condition scale of sums and products: Σ|x|, |A|·|B|).
    AbsInputs,
    /// The largest |x| over the float inputs (outputs that are convex
    /// combinations of inputs, like attention).
    MaxInput,
}

/// How float outputs are compared (integer and bool outputs are always exact).
#[derive(Clone, Copy, Debug)]
struct Tol {
    rel: f64,
    abs: f64,
    cond: Cond,
    /// Bit-exact apart from NaN payloads and the sign of zero (casts, data movement).
    exact: bool,
}

/// f32 default: relative 1e-5 with an absolute floor of 1e-6.
const F32: Tol = Tol {
    rel: 1e-5,
    abs: 1e-6,
    cond: Cond::Value,
    exact: false,
};

const EXACT: Tol = Tol {
    rel: 0.0,
    abs: 0.0,
    cond: Cond::Value,
    exact: true,
};

impl Tol {
    fn cond(self, cond: Cond) -> Tol {
        Tol { cond, ..self }
    }
    fn abs(self, abs: f64) -> Tol {
        Tol { abs, ..self }
    }
    fn rel(self, rel: f64) -> Tol {
        Tol { rel, ..self }
    }
}

fn index_of(shape: &[usize], mut flat: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = flat % shape[d].max(1);
        flat /= shape[d].max(1);
    }
    idx
}

/// `Ok` when `got` matches `want` under `tol` (`scale`: the condition scale of
/// each element, for `Cond::AbsInputs`/`MaxInput`).
fn close(
    got: &Tensor,
    want: &Tensor,
    tol: Tol,
    scale: &dyn Fn(usize) -> f64,
) -> Result<(), String> {
    if got.shape() != want.shape() || got.dtype() != want.dtype() {
        return Err(format!(
            "got {}{:?}, expected {}{:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let mut bad = Vec::new();
    let mut count = 0;
    if !want.dtype().is_float() {
        let (g, w) = (got.to_i64_vec(), want.to_i64_vec());
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            if a != b {
                count += 1;
                if bad.len() < 5 {
                    bad.push(format!(
                        "at {:?}: got {a}, expected {b}",
                        index_of(want.shape(), i)
                    ));
                }
            }
        }
    } else {
        let (mut rel, mut abs) = (tol.rel, tol.abs);
        if !tol.exact {
            // One rounding to the storage type after computing in f32 can land one
            // unit in the last place away from the reference's rounding from f64.
            match want.dtype() {
                DType::F16 => (rel, abs) = (rel.max(1e-3), abs.max(1e-7)),
                DType::BF16 => (rel, abs) = (rel.max(8e-3), abs.max(1e-7)),
                _ => {}
            }
        }
        let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            let ok = if b.is_nan() || a.is_nan() {
                a.is_nan() && b.is_nan()
            } else if b.is_infinite() || a.is_infinite() || tol.exact {
                a == b
            } else {
                (a - b).abs() <= rel * b.abs().max(scale(i)) + abs
            };
            if !ok {
                count += 1;
                if bad.len() < 5 {
                    bad.push(format!(
                        "at {:?}: got {a:e}, expected {b:e} (diff {:.3e})",
                        index_of(want.shape(), i),
                        (a - b).abs()
                    ));
                }
            }
        }
    }
    if count == 0 {
        Ok(())
    } else {
        Err(format!(
            "{count} of {} elements differ; {}",
            want.numel(),
            bad.join("; ")
        ))
    }
}

fn abs_inputs(inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    inputs
        .iter()
        .map(|(n, t)| {
            if t.dtype().is_float() {
                let v: Vec<f64> = t.to_f64_vec().into_iter().map(f64::abs).collect();
                (
                    n.clone(),
                    Tensor::from_f64(t.dtype(), t.shape().to_vec(), &v),
                )
            } else {
                (n.clone(), t.clone())
            }
        })
        .collect()
}

fn shape_list(inputs: &[(String, Tensor)]) -> String {
    inputs
        .iter()
        .map(|(n, t)| format!("{n}: {}{:?}", t.dtype(), t.shape()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The input shapes in `graph`'s input order.
fn shapes_for(graph: &Graph, inputs: &[(String, Tensor)]) -> Vec<Vec<usize>> {
    graph
        .inputs
        .iter()
        .map(|&i| {
            let name = &graph.value(i).name;
            inputs
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no input {name}"))
                .1
                .shape()
                .to_vec()
        })
        .collect()
}

/// Compiles `b`'s graph for the CPU with and without the optimizer, runs it on
/// `b`'s inputs and compares every output with the reference interpreter.
/// Ops in `host_ok` may run on the host; any other host step fails. Returns the
/// two programs (unoptimized, optimized) for further checks.
fn check(case: &str, b: &G, tol: Tol, host_ok: &[&str]) -> Vec<Program> {
    let g = &b.g;
    let inputs = &b.inputs;
    kiln::ir::verify(g).unwrap_or_else(|e| panic!("{case}: invalid test graph: {e}"));
    let want = interp::run(g, inputs).unwrap_or_else(|e| panic!("{case}: reference: {e}"));
    let cond_out = match tol.cond {
        Cond::AbsInputs => Some(
            interp::run(g, &abs_inputs(inputs))
                .unwrap_or_else(|e| panic!("{case}: reference on |inputs|: {e}")),
        ),
        _ => None,
    };
    let max_input = inputs
        .iter()
        .filter(|(_, t)| t.dtype().is_float())
        .flat_map(|(_, t)| t.to_f64_vec())
        .filter(|x| x.is_finite())
        .fold(0f64, |m, x| m.max(x.abs()));
    let mut programs = Vec::new();
    // The CPU without and with the optimizer, then the optimized GPU program
    // on the simulated GPU (every kernel on the SIMT interpreter). The
    // unoptimized CPU code is capped at AVX2 (x86-64-v3) and the optimized
    // code uses everything the CPU has, so an AVX-512 machine checks both
    // instruction sets' code.
    for (target, optimize, threads, isa) in [
        (Target::Cpu, false, 3, Some(IsaLevel::V3)),
        (Target::Cpu, true, 4, None),
        (Target::CudaSim, true, 2, None),
    ] {
        let what = format!(
            "{case} [{target}{}, optimize {optimize}] ({})",
            isa.map_or(String::new(), |l| format!(" {}", l.short_name())),
            shape_list(inputs)
        );
        let exe = Model::from_graph(g.clone())
            .compile_with(
                &target,
                &CompileOptions {
                    threads: Some(threads),
                    optimize,
                    isa,
                },
            )
            .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
        let build = exe
            .cpu_build(&shapes_for(
                exe.graph().expect("a CPU executable has a graph"),
                inputs,
            ))
            .unwrap_or_else(|e| panic!("{what}: build: {e}"))
            .expect("a CPU executable has CPU builds");
        let program = match &*build {
            Build::Native(_) | Build::Gpu(_) => build.program().expect("compiled").clone(),
            Build::Interpreted { reason, .. } => panic!("{what}: not compiled: {reason}"),
        };
        let host: Vec<String> = program
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Host { node, op, .. } if !host_ok.contains(&op.name()) => {
                    Some(format!("{node} ({})", op.to_text()))
                }
                _ => None,
            })
            .collect();
        assert!(
            host.is_empty(),
            "{what}: ran on the host instead of natively: {host:?}"
        );
        let got = exe
            .run(inputs)
            .unwrap_or_else(|e| panic!("{what}: run: {e}"));
        assert_eq!(got.len(), want.len(), "{what}: output count");
        let mut failures = Vec::new();
        for (k, ((name, got), want)) in got.iter().zip(&want).enumerate() {
            let cv = cond_out.as_ref().map(|c| c[k].to_f64_vec());
            let scale = |i: usize| match tol.cond {
                Cond::Value => 0.0,
                Cond::AbsInputs => cv.as_ref().map_or(0.0, |c| c[i].abs()),
                Cond::MaxInput => max_input,
            };
            if let Err(e) = close(got, want, tol, &scale) {
                failures.push(format!("output `{name}`: {e}"));
            }
        }
        assert!(failures.is_empty(), "{what}:\n  {}", failures.join("\n  "));
        if target == Target::Cpu {
            programs.push(program);
        }
    }
    programs
}

/// Names of a program's kernels.
fn kernel_names(p: &Program) -> Vec<&str> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Step::Kernel { kernel, .. } => Some(p.kernels[*kernel].name.as_str()),
            _ => None,
        })
        .collect()
}

fn gemm_count(p: &Program) -> usize {
    p.steps
        .iter()
        .filter(|s| matches!(s, Step::Gemm(_)))
        .count()
}

// ---------------------------------------------------------------------------
// Elementwise ops.

/// Which inputs a unary op reads (its domain).
#[derive(Clone, Copy)]
enum Domain {
    /// [-3, 3]
    Any,
    /// (0.01, 5]
    Positive,
    /// (-0.99, 0.99)
    Unit,
    /// [1, 5]
    AtLeastOne,
}

fn unary_ops() -> Vec<(Op, Domain)> {
    use Domain::*;
    use UnaryOp as U;
    let u = |o: U, d| (Op::Unary(o), d);
    vec![
        u(U::Neg, Any),
        u(U::Abs, Any),
        u(U::Sqrt, Positive),
        u(U::Exp, Any),
        u(U::Log, Positive),
        u(U::Sin, Any),
        u(U::Cos, Any),
        u(U::Tan, Any),
        u(U::Asin, Unit),
        u(U::Acos, Unit),
        u(U::Atan, Any),
        u(U::Sinh, Any),
        u(U::Cosh, Any),
        u(U::Asinh, Any),
        u(U::Acosh, AtLeastOne),
        u(U::Atanh, Unit),
        u(U::Tanh, Any),
        u(U::Sigmoid, Any),
        u(U::Relu, Any),
        u(U::Erf, Any),
        u(U::Reciprocal, Any),
        u(U::Floor, Any),
        u(U::Ceil, Any),
        u(U::Round, Any),
        u(U::Sign, Any),
        u(U::IsNaN, Any),
        u(
            U::IsInf {
                pos: true,
                neg: true,
            },
            Any,
        ),
        u(
            U::IsInf {
                pos: true,
                neg: false,
            },
            Any,
        ),
        u(
            U::IsInf {
                pos: false,
                neg: true,
            },
            Any,
        ),
        u(U::Softplus, Any),
        u(U::Softsign, Any),
        u(U::Mish, Any),
        u(U::LeakyRelu { alpha: 0.1 }, Any),
        u(U::Elu { alpha: 1.3 }, Any),
        u(
            U::Selu {
                alpha: 1.673_263_2,
                gamma: 1.050_701,
            },
            Any,
        ),
        u(U::Celu { alpha: 0.7 }, Any),
        u(
            U::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Any,
        ),
        u(U::HardSwish, Any),
        u(U::ThresholdedRelu { alpha: 0.5 }, Any),
        u(
            U::Shrink {
                bias: 0.5,
                lambd: 1.0,
            },
            Any,
        ),
        (Op::Composite(CompositeOp::Gelu { tanh: false }), Any),
        (Op::Composite(CompositeOp::Gelu { tanh: true }), Any),
    ]
}

/// Ops the scheduler deliberately leaves to the host (see
/// `codegen/src/schedule/elementwise.rs`): ln(1 + eˣ) needs log1p for accuracy.
const UNARY_HOST: &[&str] = &["Softplus", "Mish"];

/// Every unary f32 op (and both GELUs) on one graph per shape.
#[test]
fn unary_f32_ops_match_the_reference() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for shape in elementwise_shapes(&mut rng) {
            let mut b = G::new("unary");
            let x = b.input("x", uniform(&mut rng, &shape, -3.0, 3.0));
            let pos = b.input("pos", uniform(&mut rng, &shape, 0.01, 5.0));
            let unit = b.input("unit", uniform(&mut rng, &shape, -0.99, 0.99));
            let ge1 = b.input("ge1", uniform(&mut rng, &shape, 1.0, 5.0));
            let t = b.input("ties", ties(&mut rng, &shape));
            for (op, dom) in unary_ops() {
                let src = match dom {
                    Domain::Any => x,
                    Domain::Positive => pos,
                    Domain::Unit => unit,
                    Domain::AtLeastOne => ge1,
                };
                let name = op.to_text();
                let v = b.op(&name, op.clone(), &[src]);
                b.out(v);
                // Rounding, sign, thresholds and comparisons also on halves and zeros.
                let v = b.op(&format!("{name}@ties"), op, &[t]);
                b.out(v);
            }
            check(&format!("unary ops, seed {seed}"), &b, F32, UNARY_HOST);
        }
    }
}

/// f32 edge values: overflow and underflow of exp, log of 0 and negatives,
/// saturation of tanh/erf/sigmoid, huge arguments, subnormals, ±0, ±inf and NaN.
/// The values repeat along a long axis so they meet both the vectorized body
/// and the scalar remainder of each loop.
#[test]
fn unary_f32_ops_at_edge_values() {
    let edges: Vec<f32> = vec![
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        1e-40,
        -1e-40,
        f32::MIN_POSITIVE,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        1.0,
        -1.0,
        0.999,
        -0.999,
        1.001,
        0.625,
        -0.625,
        4.0,
        -4.0,
        9.0,
        -9.0,
        10.0,
        -10.0,
        20.0,
        -20.0,
        44.0,
        -44.0,
        50.0,
        -50.0,
        88.0,
        88.72,
        88.73,
        89.0,
        100.0,
        -87.0,
        -88.0,
        -100.0,
        -103.0,
        -104.0,
        -110.0,
        1e10,
        -1e10,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for len in [edges.len(), 1031] {
        let v: Vec<f32> = (0..len).map(|i| edges[(i * 7) % edges.len()]).collect();
        let mut b = G::new("edges");
        let no_nan: Vec<f32> = v
            .iter()
            .map(|&e| if e.is_nan() { 0.0 } else { e })
            .collect();
        let x = b.input("x", Tensor::from_vec(vec![len], v));
        // Celu(NaN) differs (see `celu_of_nan_matches_the_reference`).
        let x_no_nan = b.input("x_no_nan", Tensor::from_vec(vec![len], no_nan));
        for (op, _) in unary_ops() {
            let src = if matches!(op, Op::Unary(UnaryOp::Celu { .. })) {
                x_no_nan
            } else {
                x
            };
            let v = b.op(&op.to_text(), op, &[src]);
            b.out(v);
        }
        check(
            &format!("unary edge values, {len} elements"),
            &b,
            F32,
            UNARY_HOST,
        );
    }
}

/// Pins: Celu(NaN) is NaN on the reference and on the backend, as ONNX/numpy
/// give. The discrepancy this test was written for, since fixed in the
/// reference: it computed max(0, x) + min(0, α(e^{x/α} − 1)) with Rust's
/// `f64::max`/`min`, which drop a NaN operand, and returned 0, while the
/// backend's max/min propagate NaN (as `BinaryOp::Max`/`Min` are documented to).
#[test]
fn celu_of_nan_matches_the_reference() {
    let mut b = G::new("celu_nan");
    let x = b.input("x", Tensor::from_vec(vec![2], vec![f32::NAN, 1.0]));
    let y = b.op("celu", Op::Unary(UnaryOp::Celu { alpha: 0.7 }), &[x]);
    b.out(y);
    check("Celu(NaN)", &b, F32, &[]);
}

fn float_binary_ops() -> Vec<BinaryOp> {
    use BinaryOp as B;
    vec![
        B::Add,
        B::Sub,
        B::Mul,
        B::Div,
        B::Pow,
        B::Max,
        B::Min,
        B::Mod { fmod: true },
        B::Mod { fmod: false },
        B::PRelu,
        B::Equal,
        B::Less,
        B::LessOrEqual,
        B::Greater,
        B::GreaterOrEqual,
    ]
}

/// Every binary f32 op with numpy broadcasting both ways.
#[test]
fn binary_f32_ops_broadcast() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for out in elementwise_shapes(&mut rng) {
            let (sa, sb) = match rng.random_range(0..3) {
                0 => (out.clone(), broadcast_operand(&mut rng, &out)),
                1 => (broadcast_operand(&mut rng, &out), out.clone()),
                _ => (
                    broadcast_operand(&mut rng, &out),
                    broadcast_operand(&mut rng, &out),
                ),
            };
            let mut b = G::new("binary");
            let quantized = rng.random_bool(0.5);
            let (ta, tb) = if quantized {
                (ties(&mut rng, &sa), ties(&mut rng, &sb))
            } else {
                (
                    uniform(&mut rng, &sa, -3.0, 3.0),
                    uniform(&mut rng, &sb, -3.0, 3.0),
                )
            };
            let a = b.input("a", ta);
            let c = b.input("b", tb);
            for op in float_binary_ops() {
                let v = b.op(&Op::Binary(op.clone()).to_text(), Op::Binary(op), &[a, c]);
                b.out(v);
            }
            check(&format!("binary f32 ops, seed {seed}"), &b, F32, &[]);
        }
    }
}

/// Unary and binary ops on f16, bf16 (stored narrow, computed in f32) and f64
/// (computed in f64, libm for the transcendentals), with broadcasting.
#[test]
fn elementwise_ops_on_f16_bf16_and_f64() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for dt in [DType::F16, DType::BF16, DType::F64] {
            for out in [vec![], vec![17], vec![2, 3, 127], random_shape(&mut rng)] {
                let sb = broadcast_operand(&mut rng, &out);
                let mut b = G::new("narrow_floats");
                let mut input = |b: &mut G, name: &str, shape: &[usize], lo: f32, hi: f32| {
                    let t = uniform(&mut rng, shape, lo, hi).cast(dt);
                    b.input(name, t)
                };
                let x = input(&mut b, "x", &out, -3.0, 3.0);
                let y = input(&mut b, "y", &sb, -3.0, 3.0);
                let pos = input(&mut b, "pos", &out, 0.01, 5.0);
                let unit = input(&mut b, "unit", &out, -0.99, 0.99);
                let ge1 = input(&mut b, "ge1", &out, 1.0, 5.0);
                for (op, dom) in unary_ops() {
                    let src = match dom {
                        Domain::Any => x,
                        Domain::Positive => pos,
                        Domain::Unit => unit,
                        Domain::AtLeastOne => ge1,
                    };
                    let v = b.op(&op.to_text(), op, &[src]);
                    b.out(v);
                }
                for op in float_binary_ops() {
                    let v = b.op(&Op::Binary(op.clone()).to_text(), Op::Binary(op), &[x, y]);
                    b.out(v);
                }
                check(
                    &format!("{dt} elementwise, seed {seed}"),
                    &b,
                    F32,
                    UNARY_HOST,
                );
            }
        }
    }
}

/// f32 binary ops on edge values (every pair of them).
#[test]
fn binary_f32_ops_at_edge_values() {
    let edges: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        2.5,
        -3.0,
        1e-40,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let n = edges.len();
    let mut b = G::new("binary_edges");
    let a = b.input("a", Tensor::from_vec(vec![n, 1], edges.clone()));
    let c = b.input("b", Tensor::from_vec(vec![1, n], edges));
    for op in float_binary_ops() {
        let v = b.op(&Op::Binary(op.clone()).to_text(), Op::Binary(op), &[a, c]);
        b.out(v);
    }
    check("binary f32 edge values", &b, F32, &[]);
}

/// Integer and bool elementwise ops (exact), Where on every branch type.
#[test]
fn integer_and_bool_ops_are_exact() {
    use BinaryOp as B;
    use UnaryOp as U;
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for out in [vec![], vec![17], vec![3, 1031], random_shape(&mut rng)] {
            let (sa, sb) = (out.clone(), broadcast_operand(&mut rng, &out));
            let mut b = G::new("ints");
            for dt in [DType::I64, DType::I32, DType::I8, DType::U8, DType::U32] {
                let (lo, hi) = int_range(dt);
                // Half the elements small (ties, equal operands), half anywhere.
                let small = rng.random_bool(0.5);
                let (lo, hi) = if small {
                    (lo.max(-4), hi.min(4))
                } else {
                    (lo, hi)
                };
                let x = b.input(&format!("x_{dt}"), ints(&mut rng, dt, &sa, lo, hi));
                let y = b.input(&format!("y_{dt}"), ints(&mut rng, dt, &sb, lo, hi));
                let mut bins = vec![
                    B::Add,
                    B::Sub,
                    B::Mul,
                    B::Max,
                    B::Min,
                    B::Equal,
                    B::Less,
                    B::LessOrEqual,
                    B::Greater,
                    B::GreaterOrEqual,
                    B::BitwiseAnd,
                    B::BitwiseOr,
                    B::BitwiseXor,
                ];
                let mut uns = vec![U::Abs, U::BitwiseNot];
                if !matches!(dt, DType::U8 | DType::U32) {
                    bins.push(B::PRelu);
                    uns.extend([U::Neg, U::Sign, U::Relu]);
                }
                for op in bins {
                    let name = format!("{}_{dt}", Op::Binary(op.clone()).to_text());
                    let v = b.op(&name, Op::Binary(op), &[x, y]);
                    b.out(v);
                }
                for op in uns {
                    let name = format!("{}_{dt}", Op::Unary(op.clone()).to_text());
                    let v = b.op(&name, Op::Unary(op), &[x]);
                    b.out(v);
                }
            }
            let p = b.input("p", bools(&mut rng, &sa));
            let q = b.input("q", bools(&mut rng, &sb));
            for op in [B::And, B::Or, B::Xor, B::Equal] {
                let name = format!("{}_bool", Op::Binary(op.clone()).to_text());
                let v = b.op(&name, Op::Binary(op), &[p, q]);
                b.out(v);
            }
            let v = b.op("not", Op::Unary(U::Not), &[p]);
            b.out(v);
            // Where over three different broadcast shapes, for f32, i64 and bool.
            let sc = broadcast_operand(&mut rng, &out);
            let cond = b.input("cond", bools(&mut rng, &sc));
            let fa = b.input("fa", uniform(&mut rng, &sa, -3.0, 3.0));
            let fb = b.input("fb", uniform(&mut rng, &sb, -3.0, 3.0));
            let ia = b.input("ia", ints(&mut rng, DType::I64, &sb, -9, 9));
            let ib = b.input("ib", ints(&mut rng, DType::I64, &sa, -9, 9));
            for (name, t, f) in [
                ("where_f32", fa, fb),
                ("where_i64", ia, ib),
                ("where_bool", p, q),
            ] {
                let v = b.op(name, Op::Layout(LayoutOp::Where), &[cond, t, f]);
                b.out(v);
            }
            check(&format!("integer/bool ops, seed {seed}"), &b, EXACT, &[]);
        }
    }
}

const ALL_DTYPES: [DType; 13] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I64,
    DType::I32,
    DType::I16,
    DType::I8,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::Bool,
];

/// Source values for a cast test: edges first, then random values.
fn cast_source(rng: &mut StdRng, dt: DType, n: usize) -> Tensor {
    if dt == DType::Bool {
        return bools(rng, &[n]);
    }
    if dt.is_float() {
        let mut v: Vec<f64> = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            127.9,
            128.0,
            -129.0,
            255.5,
            256.0,
            -1.0,
            65504.0,
            70000.0,
            -70000.0,
            3e9,
            -3e9,
            1e20,
            -1e20,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        while v.len() < n {
            let x: f64 = rng.random_range(-300.0..300.0);
            v.push(x);
        }
        v.truncate(n);
        // Values of the source dtype (rounded once from f64).
        return Tensor::from_f64(dt, vec![n], &v);
    }
    let (lo, hi) = int_range(dt);
    let mut v: Vec<i64> = vec![0, 1, -1, lo, hi, 127, 128, 255, 256, -129, 65504, 65536];
    while v.len() < n {
        v.push(rng.random_range(lo..=hi));
    }
    v.truncate(n);
    Tensor::from_i64(dt, vec![n], &v)
}

/// Values of at most 20 significant bits (plus edges): exact in f32, and rounded
/// to bf16 the same way by every rounding path.
fn bf16_safe_source(rng: &mut StdRng, dt: DType, n: usize) -> Tensor {
    if dt.is_int() {
        let v: Vec<i64> = (0..n)
            .map(|_| rng.random_range(-(1 << 20)..=1 << 20))
            .collect();
        return Tensor::from_i64(dt, vec![n], &v);
    }
    let mut v = vec![
        0.0,
        -0.0,
        0.5,
        1.5,
        -2.5,
        65504.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    while v.len() < n {
        let k = rng.random_range(-(1i64 << 20)..=1 << 20) as f64;
        v.push(k * 2f64.powi(-rng.random_range(0..=12)));
    }
    v.truncate(n);
    Tensor::from_f64(dt, vec![n], &v)
}

/// Cast between every pair of dtypes (f16 and bf16 included) is exact: ONNX
/// semantics, saturating float → int, NaN → 0, anything → bool is x ≠ 0.
#[test]
fn casts_between_all_dtypes_are_exact() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for n in [30, 1031] {
            let mut b = G::new("casts");
            for from in ALL_DTYPES {
                let x = b.input(&format!("x_{from}"), cast_source(&mut rng, from, n));
                // → bf16 reads values of at most 20 significant bits, on which every
                // rounding path agrees. Wider values expose two roundings that are
                // not correct: the backend's integer → f32 → bf16 (pinned by
                // `cast_from_int_to_bf16_rounds_once`), and the reference's f64 →
                // bf16 (the `half` crate ignores the low 32 bits of the f64 mantissa
                // when rounding, e.g. f32 12484609 → 12451840 instead of 12517376).
                let narrow = (from.is_float() || from.is_int())
                    .then(|| b.input(&format!("x20_{from}"), bf16_safe_source(&mut rng, from, n)));
                for to in ALL_DTYPES {
                    let src = match narrow {
                        Some(x20) if to == DType::BF16 => x20,
                        _ => x,
                    };
                    let v = b.op(
                        &format!("{from}_to_{to}"),
                        Op::Layout(LayoutOp::cast(to)),
                        &[src],
                    );
                    b.out(v);
                }
            }
            // Casts to f16/bf16 from sources wider than f32's significand
            // (f64, 32/64-bit integers) run on the host, which rounds once.
            check(&format!("casts, seed {seed}, {n}"), &b, EXACT, &["Cast"]);
        }
    }
}

/// f64 → f16/bf16 at values just above a half-way point of the narrow type that
/// are not f32 values (1 + 2⁻⁸ + 2⁻³⁰ lies just above the midpoint of two bf16).
/// Correct single rounding gives the upper neighbour; rounding through f32 first
/// lands exactly on the midpoint and then rounds to even. Both the backend
/// (through f32) and the reference (the `half` crate: through f32 on f16c hosts
/// for f16, dropping the low 32 mantissa bits for bf16) round twice here, so they
/// agree; this pins that agreement.
#[test]
fn cast_from_f64_to_half_types_at_half_way_points() {
    let v = vec![
        1.0 + 2f64.powi(-8) + 2f64.powi(-30),
        1.0 + 2f64.powi(-11) + 2f64.powi(-40),
        -(1.0 + 2f64.powi(-8) + 2f64.powi(-30)),
    ];
    let mut b = G::new("double_rounding");
    let x = b.input("x", Tensor::from_vec(vec![3], v));
    for to in [DType::BF16, DType::F16] {
        let y = b.op(&format!("to_{to}"), Op::Layout(LayoutOp::cast(to)), &[x]);
        b.out(y);
    }
    check("f64 → half casts", &b, EXACT, &["Cast"]);
}

/// Pins: integer → bf16 rounds once, as the reference does. 16973823 =
/// 2²⁴ + 3·2¹⁶ − 1 lies just below the midpoint between the bf16 values
/// 2²⁴ + 2¹⁷ and 2²⁴ + 2¹⁸, so it must round down to 16908288; a kernel that
/// rounds to f32 first gets the midpoint itself (16973824), which then rounds
/// to even: 17039360 (the bug this test was written for, since fixed).
#[test]
fn cast_from_int_to_bf16_rounds_once() {
    let mut b = G::new("int_to_bf16");
    let x = b.input(
        "x",
        Tensor::from_vec(vec![2], vec![16_973_823i64, -16_973_823]),
    );
    let y = b.input("y", Tensor::from_vec(vec![1], vec![16_973_823i32]));
    for (name, v) in [("i64_to_bf16", x), ("i32_to_bf16", y)] {
        let c = b.op(name, Op::Layout(LayoutOp::cast(DType::BF16)), &[v]);
        b.out(c);
    }
    check("integer → bf16 cast", &b, EXACT, &["Cast"]);
}

// ---------------------------------------------------------------------------
// Reductions, softmax, norms.

const ALL_KINDS: [ReduceKind; 10] = [
    ReduceKind::Sum,
    ReduceKind::Mean,
    ReduceKind::Max,
    ReduceKind::Min,
    ReduceKind::Prod,
    ReduceKind::L1,
    ReduceKind::L2,
    ReduceKind::LogSum,
    ReduceKind::LogSumExp,
    ReduceKind::SumSquare,
];

fn random_axes(rng: &mut StdRng, rank: usize) -> Vec<usize> {
    loop {
        let axes: Vec<usize> = (0..rank).filter(|_| rng.random_bool(0.5)).collect();
        if !axes.is_empty() {
            return axes;
        }
    }
}

fn random_reduce_shape(rng: &mut StdRng) -> Vec<usize> {
    loop {
        let s = random_shape(rng);
        if !s.is_empty() {
            return s;
        }
    }
}

/// Every reduction kind over random axis sets (single axes, several, all), with
/// and without keepdims. Sums accumulate in f32, so their error is bounded
/// relative to Σ|x| (the sum's condition scale), not to the (possibly cancelled)
/// result.
#[test]
fn reductions_of_every_kind_over_axis_sets() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![1031], vec![0]),
            (vec![3, 17], vec![1]),
            (vec![3, 17], vec![0]),
            (vec![2, 3, 4, 5], vec![0, 2]),
            (vec![2, 1, 3, 1, 5], vec![1, 3]),
            (vec![2, 3, 1, 5, 7], vec![0, 1, 2, 3, 4]),
            (vec![64, 600], vec![1]),
        ];
        for _ in 0..3 {
            let s = random_reduce_shape(&mut rng);
            let axes = random_axes(&mut rng, s.len());
            cases.push((s, axes));
        }
        for (shape, axes) in cases {
            for keepdims in [false, true] {
                let mut b = G::new("reduce");
                let x = b.input("x", uniform(&mut rng, &shape, -3.0, 3.0));
                // Products of many factors stay finite near 1; logs need positive sums.
                let near1 = {
                    let v: Vec<f32> = (0..numel(&shape))
                        .map(|_| {
                            let m = rng.random_range(0.8f32..1.25);
                            if rng.random_bool(0.2) {
                                -m
                            } else {
                                m
                            }
                        })
                        .collect();
                    b.input("near1", Tensor::from_vec(shape.clone(), v))
                };
                let pos = b.input("pos", uniform(&mut rng, &shape, 0.1, 3.0));
                for kind in ALL_KINDS {
                    let src = match kind {
                        ReduceKind::Prod => near1,
                        ReduceKind::LogSum => pos,
                        _ => x,
                    };
                    let v = b.op(
                        &format!("{kind:?}"),
                        Op::Reduce(ReduceOp::Reduce {
                            kind,
                            axes: axes.clone(),
                            keepdims,
                        }),
                        &[src],
                    );
                    b.out(v);
                }
                check(
                    &format!("reduce over {axes:?}, keepdims {keepdims}, seed {seed}"),
                    &b,
                    F32.cond(Cond::AbsInputs),
                    &[],
                );
            }
        }
    }
}

/// A reduction over no axes maps each element on its own (x for Sum, x² for
/// SumSquare, ...); the scheduler leaves it to the host (allowed here).
#[test]
fn reduction_over_no_axes() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut b = G::new("reduce_none");
    let x = b.input("x", uniform(&mut rng, &[3, 5], 0.1, 3.0));
    for kind in ALL_KINDS {
        let v = b.op(
            &format!("{kind:?}"),
            Op::Reduce(ReduceOp::Reduce {
                kind,
                axes: vec![],
                keepdims: true,
            }),
            &[x],
        );
        b.out(v);
    }
    check("reduce over no axes", &b, F32, &["Reduce"]);
}

/// Max/Min reductions propagate NaN; an all −∞ row gives LogSumExp −∞.
#[test]
fn reductions_with_nan_and_infinities() {
    let v = vec![
        1.0,
        f32::NAN,
        3.0,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        1.0,
        2.0,
        -1.0,
        0.0,
        2.0,
    ];
    let mut b = G::new("reduce_edges");
    // LogSumExp of a row holding +∞ is NaN instead of +∞ (a known bug pinned by
    // `log_sum_exp_of_a_row_with_plus_infinity`): it gets that row without the ∞.
    let mut lse = v.clone();
    lse[6] = 5.0;
    let x = b.input("x", Tensor::from_vec(vec![4, 3], v));
    let x_lse = b.input("x_lse", Tensor::from_vec(vec![4, 3], lse));
    for kind in ALL_KINDS {
        let x = if kind == ReduceKind::LogSumExp {
            x_lse
        } else {
            x
        };
        let v = b.op(
            &format!("{kind:?}"),
            Op::Reduce(ReduceOp::Reduce {
                kind,
                axes: vec![1],
                keepdims: false,
            }),
            &[x],
        );
        b.out(v);
    }
    check("reductions with NaN/inf rows", &b, F32, &[]);
}

/// Pins: ReduceLogSumExp over [+∞, 1, 2] is +∞ (the reference's value), not
/// NaN. A kernel that subtracts the row maximum (+∞) from every element before
/// exponentiating gets ∞ − ∞ = NaN unless a +∞ maximum is special-cased as an
/// all −∞ row is (the bug this test was written for, since fixed).
#[test]
fn log_sum_exp_of_a_row_with_plus_infinity() {
    let mut b = G::new("lse_inf");
    let x = b.input(
        "x",
        Tensor::from_vec(vec![1, 3], vec![f32::INFINITY, 1.0, 2.0]),
    );
    let y = b.op(
        "lse",
        Op::Reduce(ReduceOp::Reduce {
            kind: ReduceKind::LogSumExp,
            axes: vec![1],
            keepdims: false,
        }),
        &[x],
    );
    b.out(y);
    check("LogSumExp with +inf", &b, F32, &[]);
}

/// Softmax and log-softmax along every axis of shapes of rank 1..5.
#[test]
fn softmax_and_log_softmax_on_every_axis() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shapes = vec![
            vec![1],
            vec![1031],
            vec![3, 127],
            vec![2, 1, 17],
            vec![2, 3, 1, 5, 7],
            vec![40, 1031],
        ];
        shapes.push(random_reduce_shape(&mut rng));
        for shape in shapes {
            let mut b = G::new("softmax");
            // Wide logits: large differences, so exp underflows for some entries.
            let x = b.input("x", uniform(&mut rng, &shape, -30.0, 30.0));
            for axis in 0..shape.len() {
                let v = b.op(
                    &format!("softmax{axis}"),
                    Op::Composite(CompositeOp::Softmax { axis }),
                    &[x],
                );
                b.out(v);
                let v = b.op(
                    &format!("log_softmax{axis}"),
                    Op::Composite(CompositeOp::LogSoftmax { axis }),
                    &[x],
                );
                b.out(v);
            }
            // log-softmax is x − (max + ln Σ): an absolute error of a few ulp of
            // the logits' magnitude (30), ~1e-5, where the result is near zero.
            check(&format!("softmax, seed {seed}"), &b, F32.abs(1e-5), &[]);
        }
    }
}

/// LayerNorm with and without bias, all three outputs, over every start axis,
/// with scale/bias spanning the normalized axes or a suffix of them; RmsNorm.
#[test]
fn layer_norm_and_rms_norm() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shapes = vec![vec![17], vec![3, 127], vec![2, 3, 1031], vec![2, 1, 3, 5]];
        shapes.push(random_reduce_shape(&mut rng));
        for shape in shapes {
            for axis in 0..shape.len() {
                let mut b = G::new("norms");
                let x = b.input("x", uniform(&mut rng, &shape, -3.0, 5.0));
                // Full normalized shape, or a broadcast suffix of it.
                let pshape = if rng.random_bool(0.5) {
                    shape[axis..].to_vec()
                } else {
                    let p = broadcast_operand(&mut rng, &shape[axis..]);
                    if p.is_empty() {
                        vec![1]
                    } else {
                        p
                    }
                };
                let scale = b.input("scale", uniform(&mut rng, &pshape, -2.0, 2.0));
                let bias = b.input("bias", uniform(&mut rng, &pshape, -1.0, 1.0));
                let eps = 1e-5;
                let with_bias = b.op_n(
                    "ln",
                    Op::Composite(CompositeOp::LayerNorm { axis, epsilon: eps }),
                    &[x, scale, bias],
                    3,
                );
                for v in with_bias {
                    b.out(v);
                }
                let no_bias = b.op_n(
                    "ln_nobias",
                    Op::Composite(CompositeOp::LayerNorm { axis, epsilon: eps }),
                    &[x, scale],
                    3,
                );
                for v in no_bias {
                    b.out(v);
                }
                let y_only = b.op(
                    "ln_y",
                    Op::Composite(CompositeOp::LayerNorm { axis, epsilon: 0.1 }),
                    &[x, scale, bias],
                );
                b.out(y_only);
                let rms = b.op(
                    "rms",
                    Op::Composite(CompositeOp::RmsNorm { axis, epsilon: eps }),
                    &[x, scale],
                );
                b.out(rms);
                // y = (x − μ)·σ⁻¹·γ + β: f32 row statistics leave an absolute error of
                // a few ulp of |x − μ|/σ·|γ| + |β| (≈ 4), so the floor is 1e-5 here.
                check(
                    &format!("norms over {axis}.., seed {seed}"),
                    &b,
                    F32.abs(1e-5),
                    &[],
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Matrix products.

/// MatMul with 1-D operands, batch broadcasting and odd sizes. Dot products
/// accumulate in f32: the bound is relative to |A|·|B|.
#[test]
fn matmul_shapes() {
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![17], vec![17]),
        (vec![1], vec![1]),
        (vec![17], vec![17, 5]),
        (vec![3, 17], vec![17]),
        (vec![1, 1], vec![1, 1]),
        (vec![3, 17], vec![17, 5]),
        (vec![127, 64], vec![64, 33]),
        (vec![2, 3, 17], vec![17, 5]),
        (vec![17], vec![2, 17, 5]),
        (vec![2, 1, 3, 7], vec![4, 7, 5]),
        (vec![2, 3, 1, 7], vec![1, 7, 5]),
        (vec![3, 1, 1, 7], vec![2, 7, 1]),
        (vec![5, 130, 40], vec![5, 40, 70]),
    ];
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for (sa, sb) in &cases {
            let mut b = G::new("matmul");
            let x = b.input("a", uniform(&mut rng, sa, -3.0, 3.0));
            let w = b.input("b", uniform(&mut rng, sb, -3.0, 3.0));
            let y = b.op("y", Op::Nn(NnOp::MatMul), &[x, w]);
            b.out(y);
            let progs = check(
                &format!("matmul {sa:?}·{sb:?}, seed {seed}"),
                &b,
                F32.cond(Cond::AbsInputs),
                &[],
            );
            // A GEMM step, or a matrix-vector kernel for batch-1 rows; never a copy.
            let names = kernel_names(&progs[0]);
            assert!(
                gemm_count(&progs[0]) + names.len() >= 1
                    && names.iter().all(|n| !n.contains("copy")),
                "{sa:?}·{sb:?}: {names:?}"
            );
        }
    }
}

/// Operands produced by transposes are read through strides: the transposes
/// disappear from the program (no copy kernel), and the results stay right.
#[test]
fn matmul_reads_transposed_operands_through_strides() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        // (a's stored shape, a's perm, b's stored shape, b's perm)
        let cases: Vec<[Vec<usize>; 4]> = vec![
            [vec![17, 3], vec![1, 0], vec![5, 17], vec![1, 0]],
            [vec![3, 17], vec![0, 1], vec![5, 17], vec![1, 0]],
            [vec![2, 17, 3], vec![0, 2, 1], vec![17, 5], vec![0, 1]],
            [vec![3, 2, 17], vec![1, 0, 2], vec![2, 5, 17], vec![0, 2, 1]],
            [vec![17, 2, 3], vec![1, 2, 0], vec![2, 17, 5], vec![0, 1, 2]],
            [
                vec![2, 3, 4, 9],
                vec![2, 0, 1, 3],
                vec![4, 1, 5, 9],
                vec![0, 1, 3, 2],
            ],
        ];
        for [sa, pa, sb, pb] in &cases {
            let mut b = G::new("matmul_t");
            let at = b.input("at", uniform(&mut rng, sa, -3.0, 3.0));
            let bt = b.input("bt", uniform(&mut rng, sb, -3.0, 3.0));
            let a = b.transpose("a", at, pa);
            let w = b.transpose("b", bt, pb);
            let y = b.op("y", Op::Nn(NnOp::MatMul), &[a, w]);
            b.out(y);
            let progs = check(
                &format!("matmul of transposes {sa:?}/{pa:?} · {sb:?}/{pb:?}, seed {seed}"),
                &b,
                F32.cond(Cond::AbsInputs),
                &[],
            );
            let copies: Vec<&str> = kernel_names(&progs[0])
                .into_iter()
                .filter(|n| n.contains("copy"))
                .collect();
            assert!(
                copies.is_empty(),
                "{sa:?}/{pa:?} · {sb:?}/{pb:?}: transposes were materialized: {copies:?}"
            );
        }
    }
}

/// A Gemm-like fused region: MatMul → +bias → Relu (and → GELU), bias of `[n]`
/// or `[m, 1]`, 2-D and batched, weights transposed.
#[test]
fn fused_matmul_bias_activation() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for (xs, n, act) in [
            (vec![3, 17], 5, 0),
            (vec![127, 64], 33, 1),
            (vec![2, 7, 9], 1, 0),
            (vec![1, 1031], 3, 1),
            (vec![64, 128], 96, 2),
        ] {
            let k = *xs.last().unwrap();
            let m = xs[xs.len() - 2];
            let mut b = G::new("gemm");
            let x = b.input("x", uniform(&mut rng, &xs, -3.0, 3.0));
            let wt = b.input("wt", uniform(&mut rng, &[n, k], -1.0, 1.0));
            let w = b.transpose("w", wt, &[1, 0]);
            let bias_shape = if act == 2 { vec![m, 1] } else { vec![n] };
            let bias = b.input("bias", uniform(&mut rng, &bias_shape, -1.0, 1.0));
            let act_op = match act {
                0 => Op::Unary(UnaryOp::Relu),
                1 => Op::Composite(CompositeOp::Gelu { tanh: false }),
                _ => Op::Composite(CompositeOp::Gelu { tanh: true }),
            };
            let region = FusedOp {
                steps: vec![
                    FusedStep {
                        op: Op::Nn(NnOp::MatMul),
                        args: vec![FusedArg::Input(0), FusedArg::Input(1)],
                    },
                    FusedStep {
                        op: Op::Binary(BinaryOp::Add),
                        args: vec![FusedArg::Step(0), FusedArg::Input(2)],
                    },
                    FusedStep {
                        op: act_op,
                        args: vec![FusedArg::Step(1)],
                    },
                ],
            };
            let y = b.op("y", Op::Fused(region), &[x, w, bias]);
            b.out(y);
            // GELU's slope is at most 1.13: the product's bound, a little wider.
            let progs = check(
                &format!("fused gemm {xs:?}·[{k}, {n}], act {act}, seed {seed}"),
                &b,
                F32.cond(Cond::AbsInputs).rel(2e-5),
                &[],
            );
            assert!(
                gemm_count(&progs[0]) + kernel_names(&progs[0]).len() >= 1,
                "the product is computed"
            );
        }
    }
}

/// Pins (performance): a fused MatMul → Add region whose weights come from a
/// Transpose reads them through the GEMM's strides, with no copy kernel for the
/// transpose, as a plain MatMul of the same transpose does. The bug this test
/// was written for, since fixed: the epilogue kernel bound every region input,
/// the matmul operands included, which kept the transpose's copy kernel
/// (`k0_copy_…_w`) alive on every call.
#[test]
fn fused_matmul_does_not_copy_transposed_weights() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut b = G::new("gemm_copy");
    let x = b.input("x", uniform(&mut rng, &[2, 3], -1.0, 1.0));
    let wt = b.input("wt", uniform(&mut rng, &[4, 3], -1.0, 1.0));
    let w = b.transpose("w", wt, &[1, 0]);
    let bias = b.input("bias", uniform(&mut rng, &[4], -1.0, 1.0));
    let region = FusedOp {
        steps: vec![
            FusedStep {
                op: Op::Nn(NnOp::MatMul),
                args: vec![FusedArg::Input(0), FusedArg::Input(1)],
            },
            FusedStep {
                op: Op::Binary(BinaryOp::Add),
                args: vec![FusedArg::Step(0), FusedArg::Input(2)],
            },
        ],
    };
    let y = b.op("y", Op::Fused(region), &[x, w, bias]);
    b.out(y);
    let progs = check(
        "fused gemm of a transpose",
        &b,
        F32.cond(Cond::AbsInputs),
        &[],
    );
    let names = kernel_names(&progs[0]);
    assert!(
        names.iter().all(|n| !n.contains("copy")),
        "transposed weights were copied: {names:?}\n{}",
        progs[0].to_text()
    );
}

/// Fused regions with a row anchor: a prologue into a reduction/softmax/RMS norm
/// and an epilogue after it.
#[test]
fn fused_row_regions() {
    let mut rng = StdRng::seed_from_u64(11);
    for shape in [vec![3, 17], vec![2, 5, 127], vec![1, 1031]] {
        let r = shape.len();
        let mut b = G::new("row_regions");
        let x = b.input("x", uniform(&mut rng, &shape, -3.0, 3.0));
        let gamma = b.input("gamma", uniform(&mut rng, &shape[r - 1..], -2.0, 2.0));
        let s = |op: Op, args: Vec<FusedArg>| FusedStep { op, args };
        // ‖x·γ‖₂ over the last axis, then + 1 → sqrt
        let l2 = FusedOp {
            steps: vec![
                s(
                    Op::Binary(BinaryOp::Mul),
                    vec![FusedArg::Input(0), FusedArg::Input(1)],
                ),
                s(
                    Op::Reduce(ReduceOp::Reduce {
                        kind: ReduceKind::SumSquare,
                        axes: vec![r - 1],
                        keepdims: true,
                    }),
                    vec![FusedArg::Step(0)],
                ),
                s(Op::Unary(UnaryOp::Sqrt), vec![FusedArg::Step(1)]),
            ],
        };
        let v = b.op("l2", Op::Fused(l2), &[x, gamma]);
        b.out(v);
        // softmax(x·0.5 on axis 0) · γ
        let half = b.konst(Tensor::scalar(0.5f32));
        let sm = FusedOp {
            steps: vec![
                s(
                    Op::Binary(BinaryOp::Mul),
                    vec![FusedArg::Input(0), FusedArg::Input(1)],
                ),
                s(
                    Op::Composite(CompositeOp::Softmax { axis: 0 }),
                    vec![FusedArg::Step(0)],
                ),
                s(
                    Op::Binary(BinaryOp::Mul),
                    vec![FusedArg::Step(1), FusedArg::Input(2)],
                ),
            ],
        };
        let v = b.op("softmax_region", Op::Fused(sm), &[x, half, gamma]);
        b.out(v);
        // rms_norm(x + 1) then tanh
        let one = b.konst(Tensor::scalar(1.0f32));
        let rms = FusedOp {
            steps: vec![
                s(
                    Op::Binary(BinaryOp::Add),
                    vec![FusedArg::Input(0), FusedArg::Input(1)],
                ),
                s(
                    Op::Composite(CompositeOp::RmsNorm {
                        axis: r - 1,
                        epsilon: 1e-6,
                    }),
                    vec![FusedArg::Step(0), FusedArg::Input(2)],
                ),
                s(Op::Unary(UnaryOp::Tanh), vec![FusedArg::Step(1)]),
            ],
        };
        let v = b.op("rms_region", Op::Fused(rms), &[x, one, gamma]);
        b.out(v);
        // A region without an anchor: (x·γ + 1) → exp → min with x
        let ew = FusedOp {
            steps: vec![
                s(
                    Op::Binary(BinaryOp::Mul),
                    vec![FusedArg::Input(0), FusedArg::Input(1)],
                ),
                s(
                    Op::Binary(BinaryOp::Add),
                    vec![FusedArg::Step(0), FusedArg::Input(2)],
                ),
                s(Op::Unary(UnaryOp::Exp), vec![FusedArg::Step(1)]),
                s(
                    Op::Binary(BinaryOp::Min),
                    vec![FusedArg::Step(2), FusedArg::Input(0)],
                ),
            ],
        };
        let v = b.op("ew_region", Op::Fused(ew), &[x, gamma, one]);
        b.out(v);
        check(
            &format!("fused row regions {shape:?}"),
            &b,
            F32.abs(1e-5),
            &[],
        );
    }
}

// ---------------------------------------------------------------------------
// Attention.

struct Attn {
    batch: Vec<usize>,
    hq: usize,
    hkv: usize,
    sq: usize,
    skv: usize,
    d: usize,
    dv: usize,
    causal: bool,
    scale: Option<f32>,
    softcap: Option<f32>,
    /// Mask dtype and shape.
    mask: Option<(DType, Vec<usize>)>,
    /// Q, K and V come from `[.., s, h, d]` tensors through transposes.
    transposed: bool,
}

impl Attn {
    fn base() -> Attn {
        Attn {
            batch: vec![2],
            hq: 2,
            hkv: 2,
            sq: 5,
            skv: 5,
            d: 8,
            dv: 8,
            causal: false,
            scale: None,
            softcap: None,
            mask: None,
            transposed: false,
        }
    }
}

fn attention_case(rng: &mut StdRng, a: &Attn) -> G {
    let mut b = G::new("attention");
    let shape = |h: usize, s: usize, d: usize| {
        let mut v = a.batch.clone();
        v.extend([h, s, d]);
        v
    };
    let mut qkv = Vec::new();
    for (name, h, s, d) in [
        ("q", a.hq, a.sq, a.d),
        ("k", a.hkv, a.skv, a.d),
        ("v", a.hkv, a.skv, a.dv),
    ] {
        let v = if a.transposed {
            // Stored [.., s, h, d], read as [.., h, s, d].
            let l = a.batch.len();
            let mut stored = a.batch.clone();
            stored.extend([s, h, d]);
            let raw = b.input(&format!("{name}_bshd"), uniform(rng, &stored, -2.0, 2.0));
            let mut perm: Vec<usize> = (0..l).collect();
            perm.extend([l + 1, l, l + 2]);
            b.transpose(name, raw, &perm)
        } else {
            b.input(name, uniform(rng, &shape(h, s, d), -2.0, 2.0))
        };
        qkv.push(v);
    }
    if let Some((dt, ms)) = &a.mask {
        let m = if *dt == DType::Bool {
            // Keep key 0 visible in every row, so no row is masked out entirely.
            let n = numel(ms);
            let w = *ms.last().unwrap_or(&1);
            let v: Vec<bool> = (0..n).map(|i| i % w == 0 || rng.random_bool(0.6)).collect();
            Tensor::from_vec(ms.clone(), v)
        } else {
            uniform(rng, ms, -4.0, 1.0)
        };
        let m = b.input("mask", m);
        qkv.push(m);
    }
    let op = Op::Composite(CompositeOp::Attention {
        scale: a.scale,
        causal: a.causal,
        softcap: a.softcap,
        mask: a.mask.is_some(),
        past: false,
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    });
    let y = b.op("y", op, &qkv);
    b.out(y);
    b
}

/// Attention: causal, float/bool/narrow masks, GQA (h_q = 4·h_kv), softcap,
/// explicit and default scale, Q/K/V produced by transposes, no batch dims and
/// two of them. The output is a convex combination of V's rows: its error is
/// bounded relative to max |V|.
#[test]
fn attention_variants() {
    let variants: Vec<(&str, Attn)> = vec![
        ("plain", Attn::base()),
        (
            "causal",
            Attn {
                causal: true,
                sq: 7,
                skv: 7,
                ..Attn::base()
            },
        ),
        (
            "causal, fewer queries",
            Attn {
                causal: true,
                sq: 3,
                skv: 9,
                ..Attn::base()
            },
        ),
        (
            "float mask [sq, skv]",
            Attn {
                mask: Some((DType::F32, vec![5, 5])),
                ..Attn::base()
            },
        ),
        (
            "float mask [b, 1, 1, skv]",
            Attn {
                mask: Some((DType::F32, vec![2, 1, 1, 5])),
                ..Attn::base()
            },
        ),
        (
            "bool mask [b, 1, sq, skv]",
            Attn {
                mask: Some((DType::Bool, vec![2, 1, 5, 5])),
                ..Attn::base()
            },
        ),
        (
            "narrow float mask",
            Attn {
                skv: 9,
                mask: Some((DType::F32, vec![5, 6])),
                ..Attn::base()
            },
        ),
        (
            "narrow bool mask, causal",
            Attn {
                skv: 9,
                sq: 9,
                causal: true,
                mask: Some((DType::Bool, vec![1, 1, 1, 4])),
                ..Attn::base()
            },
        ),
        (
            "gqa",
            Attn {
                hq: 8,
                hkv: 2,
                ..Attn::base()
            },
        ),
        (
            "gqa, causal, mask",
            Attn {
                hq: 4,
                hkv: 1,
                sq: 6,
                skv: 6,
                causal: true,
                mask: Some((DType::F32, vec![2, 4, 6, 6])),
                ..Attn::base()
            },
        ),
        (
            "softcap, scale",
            Attn {
                softcap: Some(5.0),
                scale: Some(0.9),
                ..Attn::base()
            },
        ),
        (
            "scale, dv ≠ d",
            Attn {
                scale: Some(0.25),
                dv: 3,
                d: 17,
                ..Attn::base()
            },
        ),
        (
            "transposed q/k/v",
            Attn {
                transposed: true,
                ..Attn::base()
            },
        ),
        (
            "transposed, gqa, causal",
            Attn {
                transposed: true,
                hq: 8,
                hkv: 2,
                sq: 7,
                skv: 7,
                causal: true,
                ..Attn::base()
            },
        ),
        (
            "no batch dims",
            Attn {
                batch: vec![],
                ..Attn::base()
            },
        ),
        (
            "two batch dims",
            Attn {
                batch: vec![2, 3],
                mask: Some((DType::F32, vec![3, 1, 5, 5])),
                ..Attn::base()
            },
        ),
        (
            "one key",
            Attn {
                skv: 1,
                sq: 1,
                ..Attn::base()
            },
        ),
        (
            "long",
            Attn {
                sq: 130,
                skv: 130,
                d: 32,
                dv: 32,
                causal: true,
                hq: 4,
                hkv: 4,
                ..Attn::base()
            },
        ),
    ];
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for (name, a) in &variants {
            let b = attention_case(&mut rng, a);
            let progs = check(
                &format!("attention ({name}), seed {seed}"),
                &b,
                F32.cond(Cond::MaxInput),
                &[],
            );
            // Q·Kᵀ and P·V as GEMMs (or matrix-vector kernels for one query).
            assert!(
                gemm_count(&progs[0]) + kernel_names(&progs[0]).len() >= 2,
                "{name}: {}",
                progs[0].to_text()
            );
            if a.transposed {
                let names = kernel_names(&progs[0]);
                assert!(
                    names.iter().all(|n| !n.contains("copy")),
                    "{name}: transposed Q/K/V were copied: {names:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Data movement.

/// Gather along axes 0 and 1 with negative indices, i64 and i32 indices, scalar
/// and 2-D index tensors, f32 and i64 data.
#[test]
fn gather_with_negative_indices() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let data_shape = [5, 7, 3];
        let mut b = G::new("gather");
        let x = b.input("x", uniform(&mut rng, &data_shape, -3.0, 3.0));
        let xi = b.input("xi", ints(&mut rng, DType::I64, &data_shape, -99, 99));
        for axis in [0usize, 1] {
            let n = data_shape[axis] as i64;
            for (k, ishape) in [vec![], vec![4], vec![2, 3]].into_iter().enumerate() {
                for idt in [DType::I64, DType::I32] {
                    let idx = b.input(
                        &format!("idx{axis}_{k}_{idt}"),
                        ints(&mut rng, idt, &ishape, -n, n - 1),
                    );
                    let v = b.op(
                        &format!("g{axis}_{k}_{idt}"),
                        Op::Layout(LayoutOp::Gather { axis }),
                        &[x, idx],
                    );
                    b.out(v);
                    let v = b.op(
                        &format!("gi{axis}_{k}_{idt}"),
                        Op::Layout(LayoutOp::Gather { axis }),
                        &[xi, idx],
                    );
                    b.out(v);
                }
            }
        }
        check(&format!("gather, seed {seed}"), &b, EXACT, &[]);
    }
}

/// Out-of-range gather indices are an error from `run`, not a crash or a read
/// out of bounds, for both signs and both index dtypes.
#[test]
fn gather_out_of_range_is_an_error() {
    for (bad, idt) in [
        (5i64, DType::I64),
        (-6, DType::I64),
        (7, DType::I32),
        (i64::MIN, DType::I64),
    ] {
        let mut b = G::new("gather_oob");
        let x = b.input(
            "x",
            Tensor::from_vec(vec![5, 2], (0..10).map(|i| i as f32).collect()),
        );
        let idx = b.input("idx", Tensor::from_i64(idt, vec![3], &[0, bad, 1]));
        let v = b.op("g", Op::Layout(LayoutOp::Gather { axis: 0 }), &[x, idx]);
        b.out(v);
        assert!(
            interp::run(&b.g, &b.inputs).is_err(),
            "the reference rejects {bad}"
        );
        // The CPU, and the GPU program on the simulated GPU (its index check
        // runs on the device and fails the run after it).
        for (target, optimize) in [
            (Target::Cpu, false),
            (Target::Cpu, true),
            (Target::CudaSim, true),
        ] {
            let exe = Model::from_graph(b.g.clone())
                .compile_with(
                    &target,
                    &CompileOptions {
                        threads: Some(2),
                        optimize,
                        isa: None,
                    },
                )
                .unwrap();
            let build = exe
                .cpu_build(&shapes_for(
                    exe.graph().expect("a CPU executable has a graph"),
                    &b.inputs,
                ))
                .unwrap()
                .unwrap();
            let program = build.program().expect("gather compiled");
            assert!(program.host_ops().is_empty(), "gather ran on the host");
            let r = exe.run(&b.inputs);
            let err = r.as_ref().map(|_| ()).unwrap_err().to_string();
            assert!(
                err.contains("out of range") && err.contains("axis of size 5"),
                "index {bad} ({idt}), {target}, optimize {optimize}: {err}"
            );
            // The executable stays usable after the error (also when a graph
            // replays the run, from the second good run on).
            let mut ok = b.inputs.clone();
            ok[1].1 = Tensor::from_i64(idt, vec![3], &[0, 4, -5]);
            let want = interp::run(&b.g, &ok).unwrap();
            for _ in 0..3 {
                let got = exe.run(&ok).unwrap();
                assert_eq!(got[0].1.to_f64_vec(), want[0].to_f64_vec());
            }
            assert!(exe.run(&b.inputs).is_err(), "{target}: the replayed check");
        }
    }
}

/// A slice test: shape, starts, ends, axes, steps.
type SliceCase = (Vec<usize>, Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

/// Slices with constant starts/ends, negative and positive steps, clamped and
/// negative bounds, several axes.
#[test]
fn slices() {
    let mut rng = StdRng::seed_from_u64(3);
    // (shape, starts, ends, axes, steps)
    let cases: Vec<SliceCase> = vec![
        (vec![10], vec![2], vec![8], vec![0], vec![1]),
        (vec![10], vec![-1], vec![i64::MIN], vec![0], vec![-1]),
        (vec![10], vec![8], vec![1], vec![0], vec![-3]),
        (vec![10], vec![100], vec![-100], vec![-1], vec![-2]),
        (
            vec![7, 9, 4],
            vec![-1, 1],
            vec![-100, 8],
            vec![0, 1],
            vec![-2, 3],
        ),
        (
            vec![7, 9, 4],
            vec![0, 3],
            vec![i64::MAX, -1],
            vec![2, -2],
            vec![2, 1],
        ),
        (
            vec![3, 1031],
            vec![1, 5],
            vec![3, 1030],
            vec![0, 1],
            vec![1, 7],
        ),
        (
            vec![2, 3, 4, 5, 6],
            vec![4, 0],
            vec![0, 6],
            vec![3, 4],
            vec![-1, 5],
        ),
        (vec![4, 4], vec![2], vec![2], vec![0], vec![1]),
    ];
    for (shape, starts, ends, axes, steps) in cases {
        for dt in [DType::F32, DType::I64, DType::Bool] {
            let mut b = G::new("slice");
            let t = match dt {
                DType::F32 => uniform(&mut rng, &shape, -3.0, 3.0),
                DType::I64 => ints(&mut rng, dt, &shape, -100, 100),
                _ => bools(&mut rng, &shape),
            };
            let x = b.input("x", t);
            let c = [
                b.ints(&starts),
                b.ints(&ends),
                b.ints(&axes),
                b.ints(&steps),
            ];
            let y = b.op(
                "y",
                Op::Layout(LayoutOp::Slice),
                &[x, c[0], c[1], c[2], c[3]],
            );
            b.out(y);
            check(
                &format!("slice {shape:?} {starts:?}..{ends:?} axes {axes:?} steps {steps:?} {dt}"),
                &b,
                EXACT,
                &[],
            );
        }
    }
}

/// Concat, Split, Expand, Transpose and Reshape chains, with elementwise ops
/// between them so aliases feed kernels.
#[test]
fn layout_chains() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        // Concat along every axis, with a size-1 piece; split back.
        for axis in 0..3usize {
            let mut b = G::new("concat");
            let mut base = vec![2, 3, 5];
            let mut pieces = Vec::new();
            let mut sizes = Vec::new();
            for (i, len) in [1usize, base[axis], 4].into_iter().enumerate() {
                base[axis] = len;
                sizes.push(len);
                pieces.push(b.input(&format!("p{i}"), uniform(&mut rng, &base, -3.0, 3.0)));
            }
            let c = b.op("cat", Op::Layout(LayoutOp::Concat { axis }), &pieces);
            b.out(c);
            let parts = b.op_n(
                "split",
                Op::Layout(LayoutOp::Split {
                    axis,
                    sizes: vec![sizes[2], sizes[0], sizes[1]],
                }),
                &[c],
                3,
            );
            for p in parts {
                b.out(p);
            }
            check(
                &format!("concat/split on axis {axis}, seed {seed}"),
                &b,
                EXACT,
                &[],
            );
        }
        // Expand both ways, then an op on the result.
        for (from, to) in [
            (vec![3, 1], vec![2, 3, 5]),
            (vec![3], vec![4, 1]),
            (vec![1], vec![17]),
            (vec![], vec![2, 3]),
            (vec![2, 1, 1031], vec![2, 17, 1031]),
        ] {
            let mut b = G::new("expand");
            let x = b.input("x", uniform(&mut rng, &from, -3.0, 3.0));
            let shape = b.ints(&to.iter().map(|&d| d as i64).collect::<Vec<_>>());
            let y = b.op("y", Op::Layout(LayoutOp::Expand), &[x, shape]);
            b.out(y);
            let z = b.op("z", Op::Unary(UnaryOp::Neg), &[y]);
            b.out(z);
            check(&format!("expand {from:?} to {to:?}"), &b, EXACT, &[]);
        }
        // Transposes of every rank up to 5 with random permutations.
        for rank in 1..=5usize {
            let shape: Vec<usize> = (0..rank).map(|i| [2, 3, 1, 5, 4][i]).collect();
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                let j = rng.random_range(0..=i);
                perm.swap(i, j);
            }
            let mut b = G::new("transpose");
            let x = b.input("x", ints(&mut rng, DType::I32, &shape, -1000, 1000));
            let y = b.transpose("y", x, &perm);
            b.out(y);
            check(&format!("transpose {shape:?} by {perm:?}"), &b, EXACT, &[]);
        }
        // Reshape → transpose → reshape → add → reshape: views between kernels.
        let mut b = G::new("reshape_chain");
        let x = b.input("x", uniform(&mut rng, &[2, 3, 4, 5], -3.0, 3.0));
        let bias = b.input("bias", uniform(&mut rng, &[5, 1], -3.0, 3.0));
        let s1 = b.ints(&[6, 4, 5]);
        let r1 = b.op(
            "r1",
            Op::Layout(LayoutOp::Reshape { allowzero: false }),
            &[x, s1],
        );
        let t = b.transpose("t", r1, &[0, 2, 1]);
        let s2 = b.ints(&[0, -1, 2, 2]);
        let r2 = b.op(
            "r2",
            Op::Layout(LayoutOp::Reshape { allowzero: false }),
            &[t, s2],
        );
        let s3 = b.ints(&[6, 5, 4]);
        let r3 = b.op(
            "r3",
            Op::Layout(LayoutOp::Reshape { allowzero: false }),
            &[r2, s3],
        );
        let a = b.op("a", Op::Binary(BinaryOp::Add), &[r3, bias]);
        let s4 = b.ints(&[-1]);
        let r4 = b.op(
            "r4",
            Op::Layout(LayoutOp::Reshape { allowzero: false }),
            &[a, s4],
        );
        b.out(r4);
        b.out(r2);
        check(&format!("reshape chain, seed {seed}"), &b, F32, &[]);
    }
}

/// Graph outputs that are inputs, constants, reshapes (aliases) of inputs, or
/// the same value twice.
#[test]
fn outputs_that_alias_inputs_constants_or_each_other() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut b = G::new("aliases");
    let x = b.input("x", uniform(&mut rng, &[3, 4], -3.0, 3.0));
    let c = b.konst(uniform(&mut rng, &[2, 2], -1.0, 1.0));
    let s = b.ints(&[4, 3]);
    let r = b.op(
        "r",
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[x, s],
    );
    let y = b.op("y", Op::Unary(UnaryOp::Exp), &[x]);
    let s2 = b.ints(&[12]);
    let ry = b.op(
        "ry",
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[y, s2],
    );
    let id = b.op("id", Op::Layout(LayoutOp::Identity), &[x]);
    for v in [x, c, r, y, y, ry, id] {
        b.out(v);
    }
    check("outputs aliasing inputs/constants", &b, F32, &[]);
}

/// Rotary embedding: 4-D and packed 3-D x, halves and interleaved pairs, partial
/// rotary dims, tables indexed by i64 and i32 position ids or given per token.
/// Each output is c·x₁ ∓ s·x₂ with |c|, |s| ≤ 1: bounded by max |x|.
#[test]
fn rotary_embedding_variants() {
    // (x shape, num_heads, rotary dim, interleaved, position id dtype)
    type RotaryCase = (
        Vec<usize>,
        Option<usize>,
        Option<usize>,
        bool,
        Option<DType>,
    );
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let cases: Vec<RotaryCase> = vec![
            (vec![1, 4, 1, 16], None, None, false, Some(DType::I64)),
            (vec![2, 3, 5, 8], None, None, true, Some(DType::I64)),
            (vec![2, 2, 3, 10], None, Some(6), false, Some(DType::I32)),
            (vec![2, 5, 12], Some(3), None, false, Some(DType::I64)),
            (vec![1, 7, 3, 64], None, None, false, None),
            (vec![2, 3, 4, 6], None, Some(4), true, None),
        ];
        for (shape, num_heads, rotary_dim, interleaved, pos_dt) in cases {
            let (nb, ns, nd) = match num_heads {
                None => (shape[0], shape[2], shape[3]),
                Some(h) => (shape[0], shape[1], shape[2] / h),
            };
            let half = rotary_dim.unwrap_or(nd) / 2;
            let max_pos = 11;
            let mut b = G::new("rotary");
            let x = b.input("x", uniform(&mut rng, &shape, -2.0, 2.0));
            let table = match pos_dt {
                Some(_) => vec![max_pos, half],
                None => vec![nb, ns, half],
            };
            let angles: Vec<f32> = (0..numel(&table))
                .map(|_| rng.random_range(-3.0..3.0))
                .collect();
            let cos = b.input(
                "cos",
                Tensor::from_vec(table.clone(), angles.iter().map(|a| a.cos()).collect()),
            );
            let sin = b.input(
                "sin",
                Tensor::from_vec(table, angles.iter().map(|a| a.sin()).collect()),
            );
            let mut inputs = vec![x, cos, sin];
            if let Some(dt) = pos_dt {
                let p = b.input(
                    "position_ids",
                    ints(&mut rng, dt, &[nb, ns], 0, max_pos as i64 - 1),
                );
                inputs.push(p);
            }
            let op = Op::Composite(CompositeOp::RotaryEmbedding {
                interleaved,
                rotary_dim,
                num_heads,
                position_ids: pos_dt.is_some(),
            });
            let y = b.op("y", op, &inputs);
            b.out(y);
            let case = format!(
                "rotary {shape:?} heads {num_heads:?} rd {rotary_dim:?} interleaved {interleaved}"
            );
            let programs = check(&case, &b, F32.cond(Cond::MaxInput), &[]);
            assert!(
                programs
                    .iter()
                    .all(|p| kernel_names(p).iter().any(|k| k.contains("rotary"))),
                "{case}: no rotary kernel"
            );
        }
    }
}

/// Position ids outside the table are an error on the CPU path, as on the
/// reference interpreter, and the executable stays usable.
#[test]
fn rotary_position_out_of_range_is_an_error() {
    let mut b = G::new("rotary_oob");
    let mut rng = StdRng::seed_from_u64(3);
    let x = b.input("x", uniform(&mut rng, &[1, 2, 2, 4], -1.0, 1.0));
    let cos = b.input("cos", uniform(&mut rng, &[5, 2], -1.0, 1.0));
    let sin = b.input("sin", uniform(&mut rng, &[5, 2], -1.0, 1.0));
    let p = b.input("position_ids", Tensor::from_vec(vec![1, 2], vec![0i64, 1]));
    let op = Op::Composite(CompositeOp::RotaryEmbedding {
        interleaved: false,
        rotary_dim: None,
        num_heads: None,
        position_ids: true,
    });
    let y = b.op("y", op, &[x, cos, sin, p]);
    b.out(y);
    let exe = Model::from_graph(b.g.clone())
        .compile_with(
            &Target::Cpu,
            &CompileOptions {
                threads: Some(1),
                optimize: false,
                isa: None,
            },
        )
        .unwrap();
    for bad in [-1i64, 5] {
        let mut inputs = b.inputs.clone();
        inputs[3].1 = Tensor::from_vec(vec![1, 2], vec![0i64, bad]);
        let err = exe
            .run(&inputs)
            .expect_err("out-of-range position")
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }
    assert!(exe.run(&b.inputs).is_ok());
}

/// Batch-1 products with half-precision weights (`x · Cast(W)ᵀ` and
/// `x · Cast(W)`, W above the specializer's fold limit so the cast stays): the
/// matrix-vector kernels read the f16/bf16 bytes and widen them as they load,
/// and the cast itself never runs.
#[test]
fn matvec_reads_half_precision_weights() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for dt in [DType::BF16, DType::F16] {
            for transposed in [true, false] {
                let (n, k) = (300, 257);
                let mut b = G::new("matvec_half");
                let x = b.input("x", uniform(&mut rng, &[1, k], -1.0, 1.0));
                let shape = if transposed { vec![n, k] } else { vec![k, n] };
                let w = b.konst(uniform(&mut rng, &shape, -1.0, 1.0).cast(dt));
                let wf = b.op("wf", Op::Layout(LayoutOp::cast(DType::F32)), &[w]);
                let wf = if transposed {
                    b.transpose("wt", wf, &[1, 0])
                } else {
                    wf
                };
                let y = b.op("y", Op::Nn(NnOp::MatMul), &[x, wf]);
                b.out(y);
                let case = format!("matvec {dt} weights, transposed {transposed}");
                let programs = check(&case, &b, F32.cond(Cond::AbsInputs), &[]);
                for p in &programs {
                    let names = kernel_names(p);
                    assert!(
                        names.iter().any(|k| k.contains("gemv")),
                        "{case}: no gemv: {names:?}"
                    );
                    assert!(
                        !names
                            .iter()
                            .any(|k| k.contains("Cast") || k.contains("ew_")),
                        "{case}: the cast ran: {names:?}"
                    );
                }
            }
        }
    }
}

/// Products of several rows with half-precision weights (`X · Cast(W)ᵀ` and
/// `X · Cast(W)`): the CPU GEMM reads the f16/bf16 weight itself and widens
/// it block by block (more columns than one block, split across threads), so
/// the cast never runs; the GPU program keeps the cast. f32 weights run the
/// same packing when transposed and the rows are many enough (2..70 rows
/// cover both sides of the threshold).
#[test]
fn gemm_reads_half_precision_weights() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for dt in [DType::BF16, DType::F16, DType::F32] {
            for transposed in [true, false] {
                let (m, n, k) = (rng.random_range(2..70), 600, 257);
                let mut b = G::new("gemm_half");
                // With bf16 weights the CPU may round the activations to bf16
                // (the bf16 dot-product GEMM, AVX-512 BF16): activations that
                // bf16 holds exactly keep the comparison to f32 summation error
                // (that kernel's rounding is tested in `kiln-runtime`).
                let x = uniform(&mut rng, &[m, k], -1.0, 1.0);
                let x = if dt == DType::BF16 {
                    x.cast(DType::BF16).cast(DType::F32)
                } else {
                    x
                };
                let x = b.input("x", x);
                let shape = if transposed { vec![n, k] } else { vec![k, n] };
                let w = b.konst(uniform(&mut rng, &shape, -1.0, 1.0).cast(dt));
                let wf = if dt == DType::F32 {
                    w
                } else {
                    b.op("wf", Op::Layout(LayoutOp::cast(DType::F32)), &[w])
                };
                let wf = if transposed {
                    b.transpose("wt", wf, &[1, 0])
                } else {
                    wf
                };
                let y = b.op("y", Op::Nn(NnOp::MatMul), &[x, wf]);
                b.out(y);
                let case = format!("gemm {m} rows, {dt} weights, transposed {transposed}");
                let stored = (dt != DType::F32).then_some(dt);
                // The weight is a constant (not made absolute by Cond::AbsInputs):
                // allow f32 summation error over k products of magnitude ≤ 1.
                let programs = check(&case, &b, F32.abs(1e-4), &[]);
                for p in &programs {
                    let half = p
                        .steps
                        .iter()
                        .filter(|s| matches!(s, Step::Gemm(g) if g.b_stored == stored))
                        .count();
                    assert_eq!(half, 1, "{case}: no GEMM reads the {dt} weight");
                    let names = kernel_names(p);
                    assert!(
                        names.is_empty(),
                        "{case}: kernels ran besides the GEMM: {names:?}"
                    );
                }
            }
        }
    }
}

/// Weight-only nodes run just before their first reader: a graph listing every
/// half-precision weight's widening cast first (as an optimizer may) still never
/// holds more than one widened weight at a time in its arena. (f16 weights: a
/// bf16 one may take the bf16 dot-product GEMM, whose rounding of the
/// activations `gemm_reads_half_precision_weights` accounts for.)
#[test]
fn widened_weights_are_live_only_while_needed() {
    let (m, d, layers) = (8, 300, 4);
    let mut rng = StdRng::seed_from_u64(11);
    let mut b = G::new("widen_late");
    let mut x = b.input("x", uniform(&mut rng, &[m, d], -1.0, 1.0));
    let casts: Vec<ValueId> = (0..layers)
        .map(|i| {
            let w = b.konst(uniform(&mut rng, &[d, d], -0.1, 0.1).cast(DType::F16));
            b.op(
                &format!("w{i}"),
                Op::Layout(LayoutOp::cast(DType::F32)),
                &[w],
            )
        })
        .collect();
    for (i, &w) in casts.iter().enumerate() {
        let wt = b.transpose(&format!("wt{i}"), w, &[1, 0]);
        let y = b.op(&format!("y{i}"), Op::Nn(NnOp::MatMul), &[x, wt]);
        x = b.op(&format!("r{i}"), Op::Unary(UnaryOp::Relu), &[y]);
    }
    b.out(x);
    let programs = check("widened weights", &b, F32.cond(Cond::AbsInputs), &[]);
    assert!(!programs.is_empty());
    let exe = Model::from_graph(b.g.clone())
        .compile_with(
            &Target::Cpu,
            &CompileOptions {
                threads: Some(1),
                optimize: false,
                isa: None,
            },
        )
        .unwrap();
    let build = exe.cpu_build(&[vec![m, d]]).unwrap().unwrap();
    let Build::Native(native) = &*build else {
        panic!("not native")
    };
    let one_weight = d * d * 4;
    let arena = native.plan().arena_bytes;
    assert!(
        arena < 2 * one_weight + 4 * m * d * 4,
        "arena {arena} B holds several widened weights ({one_weight} B each)"
    );
}

/// Convolutions on the CPU against the reference: dense, grouped and
/// depthwise (a direct kernel, with channel multipliers), with strides,
/// dilations, symmetric and asymmetric padding, and a bias.
#[test]
fn convolutions_match_the_reference() {
    use kiln::ir::op::{ConvAttrs, Window};
    // (batch, in channels, out channels, groups, H, W, kernel, strides, dilations, pads, bias)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 4],
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            2,
            3,
            8,
            1,
            [9, 11],
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            true,
        ),
        (
            1,
            8,
            8,
            8,
            [12, 13],
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            true,
        ),
        (
            2,
            8,
            8,
            8,
            [15, 14],
            [3, 3],
            [2, 2],
            [1, 1],
            [0, 1, 1, 0],
            false,
        ),
        (
            1,
            4,
            8,
            4,
            [16, 9],
            [5, 3],
            [2, 1],
            [2, 1],
            [2, 1, 2, 1],
            true,
        ),
        (
            1,
            6,
            4,
            2,
            [10, 10],
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            false,
        ),
        (
            1,
            5,
            5,
            5,
            [7, 33],
            [3, 5],
            [1, 1],
            [1, 1],
            [0, 0, 0, 0],
            true,
        ),
        (
            1,
            16,
            16,
            16,
            [1, 1],
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            false,
        ),
    ];
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for &(n, cin, m, group, hw, k, strides, dil, pads, bias) in &cases {
            let mut b = G::new("conv");
            let x = b.input("x", uniform(&mut rng, &[n, cin, hw[0], hw[1]], -1.0, 1.0));
            let w = b.konst(uniform(&mut rng, &[m, cin / group, k[0], k[1]], -1.0, 1.0));
            let mut inputs = vec![x, w];
            if bias {
                inputs.push(b.konst(uniform(&mut rng, &[m], -1.0, 1.0)));
            }
            let attrs = ConvAttrs {
                window: Window {
                    kernel: Vec::new(),
                    strides: strides.to_vec(),
                    pads: pads.to_vec(),
                    dilations: dil.to_vec(),
                    ..Window::default()
                },
                group,
            };
            let y = b.op("y", Op::Nn(NnOp::Conv(attrs)), &inputs);
            // With a bias, an activation follows (the optimizer fuses both
            // into the convolution's epilogue).
            let y = if bias {
                let r = b.op("relu", Op::Unary(UnaryOp::Relu), &[y]);
                b.op("twice", Op::Binary(BinaryOp::Add), &[r, r])
            } else {
                y
            };
            b.out(y);
            let case = format!(
                "conv {n}×{cin}×{hw:?} → {m} channels, {group} groups, kernel {k:?}, strides {strides:?}, dilations {dil:?}, pads {pads:?}, bias {bias}"
            );
            let programs = check(&case, &b, F32.abs(1e-4), &[]);
            if group == cin && cin > 1 {
                for p in &programs {
                    assert!(
                        kernel_names(p).iter().any(|n| n.contains("dwconv")) && gemm_count(p) == 0,
                        "{case}: not a direct depthwise kernel: {:?}",
                        kernel_names(p)
                    );
                }
                // Optimized, the epilogue runs inside the convolution kernel.
                let names = kernel_names(&programs[1]);
                assert!(
                    !names.iter().any(|n| n.starts_with("epi")),
                    "{case}: a separate epilogue kernel: {names:?}"
                );
            }
        }
    }
}

/// 2-D max pooling on the CPU (a −∞-bordered copy and row-wise taps) against
/// the reference on random inputs holding NaNs and infinities: strides,
/// dilations, asymmetric pads, ceil mode (windows past the end pad), windows
/// wider than the input's border, and a pool with no padding at all.
#[test]
fn max_pools_match_the_reference() {
    use kiln::ir::op::Window;
    // (input [n, c, h, w], kernel, strides, dilations, pads, ceil mode)
    type Case = (
        [usize; 4],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 4],
        bool,
    );
    let cases: Vec<Case> = vec![
        ([1, 3, 12, 12], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
        ([2, 2, 9, 13], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], true),
        ([1, 4, 11, 7], [2, 3], [1, 2], [2, 1], [0, 1, 1, 0], true),
        ([1, 1, 5, 5], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], false),
        ([2, 3, 8, 10], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], false),
        ([1, 2, 6, 17], [1, 4], [3, 3], [1, 2], [0, 3, 0, 2], true),
    ];
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for &(shape, kernel, strides, dil, pads, ceil) in &cases {
            let mut data = uniform(&mut rng, &shape, -4.0, 4.0).to_f32_vec();
            for _ in 0..data.len() / 16 {
                let at = rng.random_range(0..data.len());
                data[at] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][at % 3];
            }
            let mut b = G::new("maxpool");
            let x = b.input("x", Tensor::from_vec(shape.to_vec(), data));
            let window = Window {
                kernel: kernel.to_vec(),
                strides: strides.to_vec(),
                pads: pads.to_vec(),
                dilations: dil.to_vec(),
                ceil_mode: ceil,
                ..Window::default()
            };
            let y = b.op(
                "y",
                Op::Nn(NnOp::MaxPool {
                    window,
                    storage_order: 0,
                }),
                &[x],
            );
            b.out(y);
            let case = format!(
                "max pool {shape:?}, kernel {kernel:?}, strides {strides:?}, dilations {dil:?}, pads {pads:?}, ceil {ceil}"
            );
            check(&case, &b, F32.abs(0.0), &[]);
        }
    }
}
