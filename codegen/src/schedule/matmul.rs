//! Matrix products as GEMM steps. An operand produced by a `Transpose` is read
//! through the transpose's input with permuted strides (the transpose then has no
//! reader left and is dropped), so `x · Wᵀ` never materializes `Wᵀ`.

use kiln_ir::op::{LayoutOp, NnOp};
use kiln_ir::{DType, Node, Op, ValueId};

use super::nest::dense_strides;
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{add, bin, f32c, idx, load, mul, var};
use crate::kernel::{Access, BinOp, Kernel, KernelError, LoopKind, Scalar, Stmt};
use crate::program::{BufferId, GemmStep, HostReason, Step};

/// Lowers a `MatMul` node.
pub fn lower(s: &mut Scheduler, node: &Node) -> Lowered {
    debug_assert!(matches!(node.op, Op::Nn(NnOp::MatMul)));
    let out = node.outputs[0];
    let dt = s.graph.value(out).ty.dtype;
    let shape = s.shape(out);
    let c = s.buf(out);
    emit_gemm(s, node.inputs[0], node.inputs[1], c, dt, &shape)
}

/// An operand as the GEMM reads it: the buffer and the element stride of each of
/// the operand's dims.
pub fn operand(s: &mut Scheduler, v: ValueId) -> (BufferId, Vec<usize>, Vec<isize>) {
    let shape = s.shape(v);
    if let Some(node) = s.def_node[v.0 as usize] {
        if let Op::Layout(LayoutOp::Transpose { perm }) = &node.op {
            let src = node.inputs[0];
            let src_strides = dense_strides(&s.shape(src));
            if perm.len() == src_strides.len() {
                let strides = perm.iter().map(|&p| src_strides[p] as isize).collect();
                return (s.buf(src), shape, strides);
            }
        }
    }
    let strides = dense_strides(&shape)
        .into_iter()
        .map(|x| x as isize)
        .collect();
    (s.buf(v), shape, strides)
}

/// The weight operand of a matrix-vector product as the kernel reads it: like
/// [`operand`], also looking through a `Cast` that widens f16/bf16 to f32 (the
/// kernel converts each element as it loads it, so the weights stream at half
/// the bytes). Returns the buffer, the strides of the operand's dims and the
/// scalar type stored.
fn gemv_weight(s: &mut Scheduler, w: ValueId) -> (BufferId, Vec<isize>, Scalar) {
    let rank = s.shape(w).len();
    let mut v = w;
    // Axis i of `w` is axis perm[i] of `v`.
    let mut perm: Vec<usize> = (0..rank).collect();
    let mut stored = Scalar::F32;
    for _ in 0..3 {
        let Some(node) = s.def_node[v.0 as usize] else {
            break;
        };
        match &node.op {
            Op::Layout(LayoutOp::Transpose { perm: p }) if p.len() == rank => {
                perm = perm.iter().map(|&a| p[a]).collect();
                v = node.inputs[0];
            }
            Op::Layout(LayoutOp::Cast { to: DType::F32, .. })
                if stored == Scalar::F32
                    && matches!(
                        s.graph.value(node.inputs[0]).ty.dtype,
                        DType::F16 | DType::BF16
                    ) =>
            {
                stored = Scalar::of(s.graph.value(node.inputs[0]).ty.dtype);
                v = node.inputs[0];
            }
            _ => break,
        }
    }
    let dense = dense_strides(&s.shape(v));
    let strides = perm.iter().map(|&a| dense[a] as isize).collect();
    (s.buf(v), strides, stored)
}

/// Adds a GEMM step computing `x · w` (numpy `matmul`) into `c`, a dense buffer of
/// `out_shape`, or why not (a dtype without a GEMM: the caller falls back).
pub fn emit_gemm(
    s: &mut Scheduler,
    x: ValueId,
    w: ValueId,
    c: BufferId,
    dt: DType,
    out_shape: &[usize],
) -> Lowered {
    // An f16/bf16 weight widened by a cast is read as stored (CPU only; the
    // matrix-vector kernels below look through the cast on their own).
    let half_weight = (s.options.half_weight_gemm && dt == DType::F32 && s.shape(w).len() == 2)
        .then(|| gemv_weight(s, w))
        .filter(|(_, _, stored)| *stored != Scalar::F32)
        .filter(|_| s.graph.value(x).ty.dtype == DType::F32);
    for (what, dtype) in [
        ("the product", dt),
        ("the left operand", s.graph.value(x).ty.dtype),
        ("the right operand", s.graph.value(w).ty.dtype),
    ] {
        if !matches!(dtype, DType::F32 | DType::F64) || dtype != dt {
            return host(HostReason::UnsupportedDtype {
                what: what.into(),
                dtype,
            });
        }
    }
    let (a, a_shape, a_st) = operand(s, x);
    let (b, b_shape, b_st) = operand(s, w);
    if a_shape.is_empty() || b_shape.is_empty() {
        return host(HostReason::RegionShape("a scalar operand".into()));
    }
    // 1-D operands: a `[k]` is one row, b `[k]` one column.
    let (m, k, a_rs, a_cs, a_batch) = if a_shape.len() == 1 {
        (1, a_shape[0], 0, a_st[0], (Vec::new(), Vec::new()))
    } else {
        let r = a_shape.len();
        (
            a_shape[r - 2],
            a_shape[r - 1],
            a_st[r - 2],
            a_st[r - 1],
            (a_shape[..r - 2].to_vec(), a_st[..r - 2].to_vec()),
        )
    };
    let (kb, n, b_rs, b_cs, b_batch) = if b_shape.len() == 1 {
        (b_shape[0], 1, b_st[0], 0, (Vec::new(), Vec::new()))
    } else {
        let r = b_shape.len();
        (
            b_shape[r - 2],
            b_shape[r - 1],
            b_st[r - 2],
            b_st[r - 1],
            (b_shape[..r - 2].to_vec(), b_st[..r - 2].to_vec()),
        )
    };
    if k != kb {
        return host(HostReason::RegionShape(format!(
            "operands {a_shape:?} and {b_shape:?} disagree on k"
        )));
    }
    let batch_rank = a_batch.0.len().max(b_batch.0.len());
    let batch_dims = |(dims, st): &(Vec<usize>, Vec<isize>)| -> (Vec<usize>, Vec<isize>) {
        let lead = batch_rank - dims.len();
        let mut d = vec![1; batch_rank];
        let mut t = vec![0; batch_rank];
        for i in 0..dims.len() {
            d[lead + i] = dims[i];
            t[lead + i] = if dims[i] == 1 { 0 } else { st[i] };
        }
        (d, t)
    };
    let (ad, at) = batch_dims(&a_batch);
    let (bd, bt) = batch_dims(&b_batch);
    let batch: Vec<usize> = ad.iter().zip(&bd).map(|(&p, &q)| p.max(q)).collect();
    let numel: usize = batch.iter().product::<usize>() * m * n;
    if numel != out_shape.iter().product::<usize>() {
        return host(HostReason::RegionShape(format!(
            "output {out_shape:?} is not the product's {batch:?} × {m} × {n}"
        )));
    }
    let count: usize = batch.iter().product();
    if count == 1 && m == 1 && dt == DType::F32 {
        let (wb, w_rs, w_cs, stored) = if b_shape.len() == 2 {
            let (wb, w_st, stored) = gemv_weight(s, w);
            (wb, w_st[0], w_st[1], stored)
        } else {
            (b, b_rs, b_cs, Scalar::F32)
        };
        if emit_gemv(s, (a, a_cs), (wb, w_rs, w_cs, stored), c, n, k)? {
            return Ok(());
        }
        // The half-precision source's layout has no kernel: read the widened f32.
        if stored != Scalar::F32 && emit_gemv(s, (a, a_cs), (b, b_rs, b_cs, Scalar::F32), c, n, k)?
        {
            return Ok(());
        }
    }
    let (b, b_rs, b_cs, b_stored) = match half_weight {
        Some((hb, h_st, stored)) => (
            hb,
            h_st[0],
            h_st[1],
            Some(if stored == Scalar::F16 {
                DType::F16
            } else {
                DType::BF16
            }),
        ),
        None => (b, b_rs, b_cs, None),
    };
    s.prog.steps.push(Step::Gemm(GemmStep {
        a,
        b,
        c,
        dtype: dt,
        m,
        n,
        k,
        batch,
        a_batch_strides: at,
        b_batch_strides: bt,
        a_strides: [a_rs, a_cs],
        b_strides: [b_rs, b_cs],
        alpha: 1.0,
        b_stored,
    }));
    Ok(())
}

/// Most row groups the row-streaming matrix-vector kernel splits `W` into
/// (the parallelism it offers; each group keeps a partial `y`).
const GEMV_GROUPS: usize = 8;

/// Rows of `W` each pass over the partial `y` consumes.
const GEMV_UNROLL: usize = 4;

/// A batch-1 linear layer, `c[j] = Σₖ x[k]·W[k, j]`, is memory-bound: one pass
/// over the weights at full bandwidth is the whole game. Two kernels, by the
/// weights' layout:
/// - rows contiguous along `j` (`x·W`): groups of whole rows in parallel, each
///   streaming its rows and accumulating `x[k]·W[k, :]` into a partial `y`,
///   then one pass summing the partials;
/// - contiguous along `k` (`x·Wᵀ`, as ONNX `Gemm` exports): one vectorized dot
///   product per output, outputs in parallel.
///
/// Returns false (the caller emits a GEMM) for other layouts; an invalid kernel
/// is a scheduler bug and an error.
fn emit_gemv(
    s: &mut Scheduler,
    (a, a_cs): (BufferId, isize),
    (b, b_rs, b_cs, stored): (BufferId, isize, isize, Scalar),
    c: BufferId,
    n: usize,
    k: usize,
) -> Result<bool, KernelError> {
    let a_len = s.prog.buffers[a].numel();
    let b_len = s.prog.buffers[b].numel();
    let mut kern = Kernel::new("gemv");
    let xb = kern.buffer("x", Scalar::F32, a_len, Access::Read);
    let wb = kern.buffer("w", stored, b_len, Access::Read);
    // Half-precision weights widen as they load.
    let load_w = |index| {
        let x = load(wb, index);
        if stored == Scalar::F32 {
            x
        } else {
            crate::kernel::build::cast(Scalar::F32, x)
        }
    };
    if b_cs == 1 {
        // Split the rows of W into groups (one contiguous stream each), every
        // group accumulating into its own partial y (L1/L2-resident); then sum
        // the partials.
        let groups = (1..=GEMV_GROUPS)
            .rev()
            .find(|&g| k.is_multiple_of(g))
            .unwrap_or(1);
        let rows = k / groups;
        let partial = if groups == 1 {
            c
        } else {
            s.scratch("gemv.partial", DType::F32, vec![groups, n])
        };
        let pb = kern.buffer("partial", Scalar::F32, groups * n, Access::ReadWrite);
        // Rows are taken `unroll` at a time, so each pass over the partial y
        // serves several rows of W (fewer loads and stores of y per weight).
        let unroll = if rows.is_multiple_of(GEMV_UNROLL) {
            GEMV_UNROLL
        } else {
            1
        };
        let (g, j, r, j2, base) = (
            kern.var(Scalar::I64),
            kern.var(Scalar::I64),
            kern.var(Scalar::I64),
            kern.var(Scalar::I64),
            kern.var(Scalar::I64),
        );
        let kks: Vec<usize> = (0..unroll).map(|_| kern.var(Scalar::I64)).collect();
        let xvs: Vec<usize> = (0..unroll).map(|_| kern.var(Scalar::F32)).collect();
        let mut row_body = Vec::new();
        for u in 0..unroll {
            row_body.push(Stmt::Let {
                var: kks[u],
                value: add(
                    mul(var(g), idx(rows as i64)),
                    add(mul(var(r), idx(unroll as i64)), idx(u as i64)),
                ),
            });
            row_body.push(Stmt::Let {
                var: xvs[u],
                value: load(xb, mul(var(kks[u]), idx(a_cs as i64))),
            });
        }
        let update = (0..unroll).fold(load(pb, add(var(base), var(j2))), |acc, u| {
            bin(
                BinOp::Add,
                acc,
                bin(
                    BinOp::Mul,
                    var(xvs[u]),
                    load_w(add(mul(var(kks[u]), idx(b_rs as i64)), var(j2))),
                ),
            )
        });
        row_body.push(Stmt::For {
            var: j2,
            extent: n as i64,
            kind: LoopKind::Serial,
            body: vec![Stmt::Store {
                buf: pb,
                index: add(var(base), var(j2)),
                value: update,
            }],
        });
        let body = vec![
            Stmt::Let {
                var: base,
                value: mul(var(g), idx(n as i64)),
            },
            Stmt::For {
                var: j,
                extent: n as i64,
                kind: LoopKind::Serial,
                body: vec![Stmt::Store {
                    buf: pb,
                    index: add(var(base), var(j)),
                    value: f32c(0.0),
                }],
            },
            Stmt::For {
                var: r,
                extent: (rows / unroll) as i64,
                kind: LoopKind::Serial,
                body: row_body,
            },
        ];
        kern.body = vec![Stmt::For {
            var: g,
            extent: groups as i64,
            kind: LoopKind::Parallel,
            body,
        }];
        s.launch(kern, vec![a, b, partial])?;
        if groups > 1 {
            let mut sum = Kernel::new("gemv_sum");
            let pb = sum.buffer("partial", Scalar::F32, groups * n, Access::Read);
            let yb = sum.buffer("y", Scalar::F32, n, Access::Write);
            let j = sum.var(Scalar::I64);
            let total = (1..groups).fold(load(pb, var(j)), |acc, gi| {
                bin(BinOp::Add, acc, load(pb, add(var(j), idx((gi * n) as i64))))
            });
            sum.body = vec![Stmt::For {
                var: j,
                extent: n as i64,
                kind: LoopKind::Parallel,
                body: vec![Stmt::Store {
                    buf: yb,
                    index: var(j),
                    value: total,
                }],
            }];
            s.launch(sum, vec![partial, c])?;
        }
        Ok(true)
    } else if b_rs == 1 {
        let cb = kern.buffer("y", Scalar::F32, n, Access::Write);
        let (j, kk, acc) = (
            kern.var(Scalar::I64),
            kern.var(Scalar::I64),
            kern.var(Scalar::F32),
        );
        let body = vec![
            Stmt::Decl {
                var: acc,
                init: f32c(0.0),
            },
            Stmt::For {
                var: kk,
                extent: k as i64,
                kind: LoopKind::Serial,
                body: vec![Stmt::Assign {
                    var: acc,
                    value: bin(
                        BinOp::Add,
                        var(acc),
                        bin(
                            BinOp::Mul,
                            load(xb, mul(var(kk), idx(a_cs as i64))),
                            load_w(add(mul(var(j), idx(b_cs as i64)), var(kk))),
                        ),
                    ),
                }],
            },
            Stmt::Store {
                buf: cb,
                index: var(j),
                value: var(acc),
            },
        ];
        kern.body = vec![Stmt::For {
            var: j,
            extent: n as i64,
            kind: LoopKind::Parallel,
            body,
        }];
        s.launch(kern, vec![a, b, c])?;
        Ok(true)
    } else {
        Ok(false)
    }
}
