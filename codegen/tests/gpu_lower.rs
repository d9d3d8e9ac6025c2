//! The specialized GPU lowerings (`gpu::lower_kernel`): row kernels (a block
//! per row) and vectorized elementwise kernels, with the general `from_cpu`
//! lowering as the fallback.
//!
//! Differential: CPU kernels the scheduler emits for softmax, log-softmax,
//! layer norm, RMS norm and reductions, and hand-written ones (integer sums,
//! elementwise chains over halves), at random shapes with rows of 1, 31, 33,
//! 1000 elements and extents of 0 and 1, run lowered on the SIMT interpreter
//! (which reports races, divergent barriers and out-of-bounds accesses) and
//! match the `from_cpu` lowering: exactly for integers and elementwise
//! kernels, within a small relative tolerance for float sums (the row lowering
//! reassociates them). Negative: a cumulative sum and a scatter are not row
//! kernels and still give the right answers. Every lowered kernel compiles
//! with NVRTC for `sm_90a` and `sm_80`; the hot kernels (softmax, layer norm,
//! RMS norm, an elementwise chain) have no spills and little shared memory
//! (`ptxas -v`). The text form and CUDA C of a softmax and an elementwise
//! kernel are pinned.

mod common;

use common::{nvrtc, seed};
use kiln_codegen::gpu::cuda::nvrtc::{Arch, Form};
use kiln_codegen::gpu::cuda::{kernel_source, module_source, ptxas};
use kiln_codegen::gpu::elementwise::lower_elementwise;
use kiln_codegen::gpu::from_cpu::from_cpu_kernel;
use kiln_codegen::gpu::rows::lower_rows;
use kiln_codegen::gpu::sim::{launch, SimBuffer};
use kiln_codegen::gpu::{lower_kernel, GStmt, GpuKernel, MAX_SHARED_BYTES};
use kiln_codegen::kernel::build::{add, bin, cast, f32c, idx, load, mul, parallel, un, var};
use kiln_codegen::kernel::{Access, BinOp, Kernel, LoopKind, Scalar, Stmt, UnOp};
use kiln_codegen::schedule::schedule;
use kiln_ir::op::{BinaryOp, CompositeOp, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use kiln_test_support::{require, Resource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The architectures kiln compiles for: Hopper (with wgmma) and Ampere.
const ARCHS: [Arch; 2] = [Arch::SM_90A, Arch::SM_80];

/// Row lengths the differential tests cover: one element, around a warp, long,
/// and not multiples of four.
const ROW_LENGTHS: [usize; 7] = [1, 7, 31, 33, 130, 1000, 1027];

/// Relative tolerance of reassociated f32 sums.
const F32_TOL: f64 = 1e-4;
/// Relative tolerance where a result is rounded to f16 (one ulp is 2⁻¹⁰).
const F16_TOL: f64 = 2e-3;

/// A row kernel, unless its rows are one element (the scheduler then emits no
/// inner loop).
fn row_kernel(cols: usize) -> &'static [Family] {
    if cols > 1 {
        &[Family::Rows]
    } else {
        &[Family::Elementwise, Family::Fallback]
    }
}

/// Vectorized, unless the extent is one (the scheduler then emits no loop).
fn elementwise(n: usize) -> &'static [Family] {
    if n > 1 {
        &[Family::Elementwise]
    } else {
        &[Family::Fallback]
    }
}

/// Which lowering `lower_kernel` is expected to pick.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Rows,
    Elementwise,
    Fallback,
}

fn family(k: &Kernel) -> Family {
    if lower_rows(k).is_some() {
        Family::Rows
    } else if lower_elementwise(k).is_some() {
        Family::Elementwise
    } else {
        Family::Fallback
    }
}

/// Random contents for each buffer of `k` (zeros for outputs).
fn inputs(k: &Kernel, rng: &mut StdRng) -> Vec<SimBuffer> {
    k.buffers
        .iter()
        .map(|b| {
            if b.access == Access::Write {
                return SimBuffer::zeros(b.scalar, b.len);
            }
            let xs: Vec<f64> = (0..b.len)
                .map(|_| {
                    if b.scalar.is_int() {
                        rng.random_range(-50i64..50) as f64
                    } else {
                        rng.random_range(-4.0f32..4.0) as f64
                    }
                })
                .collect();
            SimBuffer::from_f64(b.scalar, &xs)
        })
        .collect()
}

/// Runs `k` lowered and through `from_cpu` on `bufs` and compares what they
/// write; returns the lowered kernel.
fn differential(k: &Kernel, want: &[Family], bufs: Vec<SimBuffer>) -> GpuKernel {
    k.check().unwrap_or_else(|e| panic!("{e}\n{k}"));
    let picked = family(k);
    assert!(want.contains(&picked), "{picked:?}, not {want:?}: {k}");
    let lowered = lower_kernel(k);
    let mut got = bufs.clone();
    launch(&lowered, &mut got).unwrap_or_else(|e| panic!("{e}\n{k}\n{lowered}"));
    let mut reference = bufs;
    launch(&from_cpu_kernel(k), &mut reference).unwrap();
    for (b, (g, r)) in k.buffers.iter().zip(got.iter().zip(&reference)) {
        let tol = match b.scalar {
            s if picked != Family::Rows || s.is_int() => 0.0,
            Scalar::F16 | Scalar::BF16 => F16_TOL,
            _ => F32_TOL,
        };
        for (i, (x, y)) in g.to_f64_vec().iter().zip(r.to_f64_vec()).enumerate() {
            let same = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * (1.0 + y.abs());
            assert!(same, "{} `{}`[{i}]: {x} vs {y}\n{lowered}", k.name, b.name);
        }
    }
    lowered
}

fn check(k: &Kernel, want: &[Family], rng: &mut StdRng) -> GpuKernel {
    let bufs = inputs(k, rng);
    differential(k, want, bufs)
}

/// The kernels the CPU scheduler emits for `op` over inputs of these types and
/// constants.
fn scheduled(op: Op, inputs: &[(DType, &[usize])], consts: Vec<Tensor>) -> Vec<Kernel> {
    let mut g = Graph::new("lower");
    let mut ins: Vec<ValueId> = (inputs.iter().enumerate())
        .map(|(i, (dt, dims))| {
            g.add_input(format!("x{i}"), TensorType::new(*dt, Shape::known(dims)))
        })
        .collect();
    for (i, c) in consts.into_iter().enumerate() {
        ins.push(g.add_const(format!("c{i}"), c));
    }
    let outs = g.add_node("n", op, ins, &["y".to_string()], None).unwrap();
    g.outputs.push(outs[0]);
    schedule(&g).unwrap().kernels
}

fn one(kernels: Vec<Kernel>) -> Kernel {
    assert_eq!(kernels.len(), 1, "{kernels:?}");
    kernels.into_iter().next().unwrap()
}

fn softmax(rows: usize, cols: usize, log: bool) -> Kernel {
    let op = if log {
        CompositeOp::LogSoftmax { axis: 1 }
    } else {
        CompositeOp::Softmax { axis: 1 }
    };
    one(scheduled(
        Op::Composite(op),
        &[(DType::F32, &[rows, cols])],
        vec![],
    ))
}

fn scale(cols: usize) -> Tensor {
    Tensor::from_vec(
        vec![cols],
        (0..cols).map(|i| 0.5 + i as f32 / 64.0).collect(),
    )
}

fn layer_norm(rows: usize, cols: usize) -> Kernel {
    let op = Op::Composite(CompositeOp::LayerNorm {
        axis: 1,
        epsilon: 1e-5,
    });
    one(scheduled(
        op,
        &[(DType::F32, &[rows, cols])],
        vec![scale(cols)],
    ))
}

fn rms_norm(rows: usize, cols: usize, dt: DType) -> Kernel {
    let op = Op::Composite(CompositeOp::RmsNorm {
        axis: 1,
        epsilon: 1e-5,
    });
    one(scheduled(op, &[(dt, &[rows, cols])], vec![scale(cols)]))
}

fn reduce(kind: ReduceKind, dims: &[usize], axes: Vec<usize>) -> Kernel {
    let op = Op::Reduce(ReduceOp::Reduce {
        kind,
        axes,
        keepdims: false,
    });
    one(scheduled(op, &[(DType::F32, dims)], vec![]))
}

/// `y[r] = Σⱼ x[r·cols + j]` over integers of type `s`, written by hand (the
/// scheduler leaves integer reductions to the host).
fn int_sum(rows: usize, cols: usize, s: Scalar) -> Kernel {
    let mut k = Kernel::new("int_sum");
    let x = k.buffer("x", s, rows * cols, Access::Read);
    let y = k.buffer("y", s, rows, Access::Write);
    let (r, acc, j) = (k.var(Scalar::I64), k.var(s), k.var(Scalar::I64));
    let at = add(mul(var(r), idx(cols as i64)), var(j));
    k.body = vec![parallel(
        r,
        rows,
        vec![
            Stmt::Decl {
                var: acc,
                init: kiln_codegen::kernel::Expr::Lit(kiln_codegen::kernel::Literal::Int(7, s)),
            },
            Stmt::For {
                var: j,
                extent: cols as i64,
                kind: LoopKind::Serial,
                body: vec![Stmt::Assign {
                    var: acc,
                    value: bin(BinOp::Add, load(x, at), var(acc)),
                }],
            },
            Stmt::Store {
                buf: y,
                index: var(r),
                value: var(acc),
            },
        ],
    )];
    k
}

/// A running sum along each row: `acc += x; y[j] = acc` (must not be split).
fn cumsum(rows: usize, cols: usize) -> Kernel {
    let mut k = Kernel::new("cumsum");
    let x = k.buffer("x", Scalar::F32, rows * cols, Access::Read);
    let y = k.buffer("y", Scalar::F32, rows * cols, Access::Write);
    let (r, acc, j) = (k.var(Scalar::I64), k.var(Scalar::F32), k.var(Scalar::I64));
    let at = || add(mul(var(r), idx(cols as i64)), var(j));
    k.body = vec![parallel(
        r,
        rows,
        vec![
            Stmt::Decl {
                var: acc,
                init: f32c(0.0),
            },
            Stmt::For {
                var: j,
                extent: cols as i64,
                kind: LoopKind::Serial,
                body: vec![
                    Stmt::Assign {
                        var: acc,
                        value: bin(BinOp::Add, var(acc), load(x, at())),
                    },
                    Stmt::Store {
                        buf: y,
                        index: at(),
                        value: var(acc),
                    },
                ],
            },
        ],
    )];
    k
}

/// Each row adds its elements into `y` at indices it loads (`y[r·w + idx[j]] +=
/// x[j]`, colliding indices included): the loop must not be split.
fn scatter_add(rows: usize, cols: usize, width: usize) -> Kernel {
    let mut k = Kernel::new("scatter_add");
    let x = k.buffer("x", Scalar::F32, rows * cols, Access::Read);
    let ix = k.buffer("idx", Scalar::I64, cols, Access::Read);
    let y = k.buffer("y", Scalar::F32, rows * width, Access::ReadWrite);
    let (r, j) = (k.var(Scalar::I64), k.var(Scalar::I64));
    let dst = || add(mul(var(r), idx(width as i64)), load(ix, var(j)));
    k.body = vec![parallel(
        r,
        rows,
        vec![Stmt::For {
            var: j,
            extent: cols as i64,
            kind: LoopKind::Serial,
            body: vec![Stmt::Store {
                buf: y,
                index: dst(),
                value: bin(
                    BinOp::Add,
                    load(y, dst()),
                    load(x, add(mul(var(r), idx(cols as i64)), var(j))),
                ),
            }],
        }],
    )];
    k
}

/// `y = f16(tanh(x·a[i % 3] + b) · sigmoid(x))` over f16 `x`, `b`, with `a` a
/// broadcast f32 table: contiguous loads, a gathered load, and a cast chain.
fn chain_f16(n: usize) -> Kernel {
    let mut k = Kernel::new("chain_f16");
    let x = k.buffer("x", Scalar::F16, n, Access::Read);
    let a = k.buffer("a", Scalar::F32, 3, Access::Read);
    let b = k.buffer("b", Scalar::F16, n, Access::Read);
    let y = k.buffer("y", Scalar::F16, n, Access::Write);
    let (i, xv, t) = (k.var(Scalar::I64), k.var(Scalar::F32), k.var(Scalar::F32));
    k.body = vec![parallel(
        i,
        n,
        vec![
            Stmt::Let {
                var: xv,
                value: cast(Scalar::F32, load(x, var(i))),
            },
            Stmt::Let {
                var: t,
                value: un(
                    UnOp::Tanh,
                    add(
                        mul(var(xv), load(a, bin(BinOp::Rem, var(i), idx(3)))),
                        cast(Scalar::F32, load(b, var(i))),
                    ),
                ),
            },
            Stmt::Store {
                buf: y,
                index: var(i),
                value: cast(Scalar::F16, mul(var(t), un(UnOp::Sigmoid, var(xv)))),
            },
        ],
    )];
    k
}

/// `y = y · x + 1` in place over f32 (a read-write buffer loaded before its store).
fn fma_in_place(n: usize) -> Kernel {
    let mut k = Kernel::new("fma_in_place");
    let x = k.buffer("x", Scalar::F32, n, Access::Read);
    let y = k.buffer("y", Scalar::F32, n, Access::ReadWrite);
    let i = k.var(Scalar::I64);
    k.body = vec![parallel(
        i,
        n,
        vec![Stmt::Store {
            buf: y,
            index: var(i),
            value: add(mul(load(y, var(i)), load(x, var(i))), f32c(1.0)),
        }],
    )];
    k
}

/// The kernels every test below lowers, for the NVRTC test (renamed uniquely).
fn all_lowered() -> Vec<GpuKernel> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Vec::new();
    let mut push = |mut g: GpuKernel| {
        g.name = format!("{}_{}", g.name, out.len());
        out.push(g);
    };
    for cols in [1, 33, 1000] {
        push(check(&softmax(3, cols, false), row_kernel(cols), &mut rng));
        push(check(&softmax(2, cols, true), row_kernel(cols), &mut rng));
        push(check(&layer_norm(3, cols), row_kernel(cols), &mut rng));
        push(check(
            &rms_norm(2, cols, DType::F16),
            row_kernel(cols),
            &mut rng,
        ));
        push(check(
            &reduce(ReduceKind::Max, &[2, cols], vec![1]),
            row_kernel(cols),
            &mut rng,
        ));
    }
    push(check(
        &int_sum(3, 100, Scalar::I32),
        row_kernel(100),
        &mut rng,
    ));
    push(check(&cumsum(2, 40), &[Family::Fallback], &mut rng));
    for n in [5, 1024] {
        push(check(&chain_f16(n), &[Family::Elementwise], &mut rng));
        push(check(&fma_in_place(n), &[Family::Elementwise], &mut rng));
    }
    out
}

#[test]
fn softmax_and_log_softmax_rows_match_the_general_lowering() {
    let mut rng = StdRng::seed_from_u64(seed());
    for cols in ROW_LENGTHS {
        let rows = rng.random_range(1..6);
        for log in [false, true] {
            let g = check(&softmax(rows, cols, log), row_kernel(cols), &mut rng);
            if cols > 1 {
                assert_eq!(g.launch.grid[0] as usize, rows);
            }
        }
    }
}

#[test]
fn norm_rows_match_the_general_lowering() {
    let mut rng = StdRng::seed_from_u64(seed());
    for cols in ROW_LENGTHS {
        let rows = rng.random_range(1..5);
        check(&layer_norm(rows, cols), row_kernel(cols), &mut rng);
        for dt in [DType::F32, DType::F16] {
            check(&rms_norm(rows, cols, dt), row_kernel(cols), &mut rng);
        }
    }
}

#[test]
fn reductions_match_and_max_propagates_nan() {
    let mut rng = StdRng::seed_from_u64(seed());
    for cols in ROW_LENGTHS {
        let rows = rng.random_range(1..5);
        for kind in [
            ReduceKind::Sum,
            ReduceKind::Mean,
            ReduceKind::Min,
            ReduceKind::SumSquare,
        ] {
            check(
                &reduce(kind, &[rows, cols], vec![1]),
                row_kernel(cols),
                &mut rng,
            );
        }
        // Several reduced dims (a nested loop inside the split one).
        check(
            &reduce(ReduceKind::Sum, &[rows, 3, cols], vec![1, 2]),
            row_kernel(3 * cols),
            &mut rng,
        );
        // A NaN in one row's maximum wins wherever it lies in the row.
        let k = reduce(ReduceKind::Max, &[rows, cols], vec![1]);
        let mut bufs = inputs(&k, &mut rng);
        let at = rng.random_range(0..cols);
        bufs[0].data[at] = kiln_codegen::gpu::sim::Value::Float(f64::NAN);
        let g = lower_kernel(&k);
        let mut got = bufs.clone();
        launch(&g, &mut got).unwrap();
        assert!(got[1].to_f64_vec()[0].is_nan(), "{g}");
        differential(&k, row_kernel(cols), bufs);
    }
}

#[test]
fn integer_sums_are_exact() {
    let mut rng = StdRng::seed_from_u64(seed());
    for cols in ROW_LENGTHS {
        for s in [Scalar::I32, Scalar::I64, Scalar::U8] {
            check(
                &int_sum(rng.random_range(1..4), cols, s),
                &[Family::Rows],
                &mut rng,
            );
        }
    }
}

#[test]
fn empty_rows_and_empty_grids_are_handled() {
    let mut rng = StdRng::seed_from_u64(seed());
    // No rows at all, and rows of no elements: the reduction is its initial value.
    for (n, cols) in [(0, 10), (3, 0), (1, 1), (0, 0)] {
        check(&int_sum(n, cols, Scalar::I32), &[Family::Rows], &mut rng);
    }
    for n in [0, 1, 3, 4, 9] {
        check(&chain_f16(n), &[Family::Elementwise], &mut rng);
        check(&fma_in_place(n), &[Family::Elementwise], &mut rng);
    }
}

#[test]
fn elementwise_kernels_are_vectorized_and_exact() {
    let mut rng = StdRng::seed_from_u64(seed());
    for n in [1, 7, 31, 33, 1000, 1027, 4096, 20_003] {
        let g = check(&chain_f16(n), &[Family::Elementwise], &mut rng);
        if n >= 8 {
            // Eight halves per access.
            assert!(has_vector(&g.body, 8), "{g}");
        }
        check(&fma_in_place(n), &[Family::Elementwise], &mut rng);
        let relu = one(scheduled(
            Op::Unary(UnaryOp::Relu),
            &[(DType::F16, &[n])],
            vec![],
        ));
        check(&relu, elementwise(n), &mut rng);
        let sum = one(scheduled(
            Op::Binary(BinaryOp::Mul),
            &[(DType::F32, &[n]), (DType::F32, &[n])],
            vec![],
        ));
        check(&sum, elementwise(n), &mut rng);
    }
}

fn has_vector(body: &[GStmt], width: usize) -> bool {
    body.iter().any(|s| match s {
        GStmt::LoadVec { dsts, .. } => dsts.len() == width,
        GStmt::For { body, .. } => has_vector(body, width),
        _ => false,
    })
}

#[test]
fn running_sums_and_scatters_fall_back() {
    let mut rng = StdRng::seed_from_u64(seed());
    for cols in [1, 33, 100] {
        let k = cumsum(3, cols);
        let g = check(&k, &[Family::Fallback], &mut rng);
        assert_eq!(g, from_cpu_kernel(&k));
        // The running sum is exact against a plain CPU computation too.
        let bufs = inputs(&k, &mut rng);
        let x = bufs[0].to_f64_vec();
        let mut got = bufs.clone();
        launch(&g, &mut got).unwrap();
        for (r, row) in x.chunks(cols).enumerate() {
            let mut acc = 0.0f32;
            for (j, v) in row.iter().enumerate() {
                acc += *v as f32;
                assert_eq!(got[1].to_f64_vec()[r * cols + j], acc as f64);
            }
        }
    }
    // Colliding indices: several elements of a row add into one output.
    let (rows, cols, width) = (3, 40, 5);
    let k = scatter_add(rows, cols, width);
    assert_eq!(family(&k), Family::Fallback);
    let mut bufs = inputs(&k, &mut rng);
    let ix: Vec<f64> = (0..cols)
        .map(|_| rng.random_range(0..width) as f64)
        .collect();
    bufs[1] = SimBuffer::from_f64(Scalar::I64, &ix);
    differential(&k, &[Family::Fallback], bufs);
}

#[test]
fn the_lowered_softmax_and_elementwise_kernels_are_pinned() {
    let s = lower_kernel(&softmax(4, 1000, false));
    insta::assert_snapshot!("softmax_rows_text", s.to_string());
    insta::assert_snapshot!("softmax_rows_cuda", kernel_source(&s).unwrap());
    let e = lower_kernel(&chain_f16(1030));
    insta::assert_snapshot!("chain_f16_text", e.to_string());
    insta::assert_snapshot!("chain_f16_cuda", kernel_source(&e).unwrap());
}

#[test]
fn every_lowered_kernel_compiles_for_hopper_and_ampere() {
    let Some(nvrtc) = nvrtc("every_lowered_kernel_compiles_for_hopper_and_ampere") else {
        return;
    };
    let kernels = all_lowered();
    let source = module_source(&kernels).unwrap();
    for arch in ARCHS {
        let c = nvrtc
            .compile(&source, arch, Form::Cubin)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.log.is_empty(), "{arch}: {}", c.log);
        for k in &kernels {
            assert!(c.ptx.contains(&format!(".entry {}(", k.name)), "{}", k.name);
        }
        eprintln!(
            "{arch}: {} lowered kernels in {:.0} ms",
            kernels.len(),
            c.elapsed.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn hot_kernels_have_no_spills_and_little_shared_memory() {
    let test = "hot_kernels_have_no_spills_and_little_shared_memory";
    let Some(nvrtc) = nvrtc(test) else {
        return;
    };
    let Some(ptxas_path) = require(Resource::Ptxas, test) else {
        return;
    };
    let mut kernels: Vec<GpuKernel> = [
        ("softmax", softmax(64, 4096, false)),
        ("layer_norm", layer_norm(64, 4096)),
        ("rms_norm_f16", rms_norm(64, 4096, DType::F16)),
        ("chain_f16", chain_f16(1 << 20)),
    ]
    .into_iter()
    .map(|(name, k)| {
        let mut g = lower_kernel(&k);
        g.name = name.into();
        g
    })
    .collect();
    kernels.sort_by(|a, b| a.name.cmp(&b.name));
    let source = module_source(&kernels).unwrap();
    for arch in ARCHS {
        let c = nvrtc.compile(&source, arch, Form::Cubin).unwrap();
        let report = ptxas::resources(&ptxas_path, &c.ptx, arch).unwrap();
        for k in &kernels {
            let r = report.iter().find(|r| r.name == k.name).unwrap();
            eprintln!(
                "{arch} {} <<<{}, {}>>>: {} registers, {} B spill stores, {} B spill loads, {} B stack, {} B shared",
                r.name, k.launch.grid[0], k.launch.block, r.registers, r.spill_stores, r.spill_loads, r.stack_frame, r.shared_bytes
            );
            assert_eq!((r.spill_stores, r.spill_loads), (0, 0), "{arch}: {r:?}");
            assert_eq!(r.stack_frame, 0, "{arch}: {r:?}");
            assert!(r.shared_bytes as usize <= MAX_SHARED_BYTES, "{arch}: {r:?}");
            assert!(r.registers <= 65536 / k.launch.block, "{arch}: {r:?}");
        }
    }
}
