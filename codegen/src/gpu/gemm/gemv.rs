//! The matrix-vector kernel: products with at most [`GEMV_MAX_ROWS`] output rows
//! (decode at batch 1, `x·Wᵀ`).
//!
//! Such a product reads each element of the column operand (the weight) once
//! and does two flops per element read: it runs at the speed of memory, so the
//! kernel is built around reading the weight well. Each output column (`j` of
//! every batch entry) is one *column task*; a block of [`GEMV_WARPS`] warps
//! takes several tasks at a time by one of two layouts ([`Lanes`]):
//!
//! - **Lanes along k** (the usual case, and the only one when the weight is
//!   contiguous along k, `Wᵀ`): a column's k elements are split over the 32
//!   lanes of a warp (over fewer when k is short, e.g. attention scores over a
//!   64-wide head: a warp then takes several columns), each lane reading 128
//!   bits at a time (4 f32, 8 f16, 2 f64) where layout and alignment allow, and
//!   a butterfly of shuffles sums the lanes. When there are too few columns to give the GPU
//!   [`SPLIT_K_MIN_WARPS`] warps, the k range is also split over up to
//!   [`GEMV_WARPS`] warps of the block (**split-K**), whose sums meet in shared
//!   memory and are added in a fixed order: the result does not depend on
//!   timing, unlike atomic adds (which f16 outputs would not allow either).
//! - **Lanes along n** (the weight contiguous along n, not along k: a row-major
//!   `[k, n]` `W`, as ONNX exports keep it): lane `l` takes the `l`-th 128-bit
//!   vector of columns of the block's 32 (one column where alignment does not
//!   allow vectors), so a warp's loads are coalesced, and the warps split k;
//!   their sums meet in shared memory.
//!
//! Every thread holds one accumulator per output row, in f32 (f64 for f64),
//! scaled by alpha and rounded to the storage type once at the end.

use super::super::build::{add, bin, fc, idx, lane, load, mul, thread, var, warp, warp_reduce};
use super::super::{
    Axis, BinOp, GExpr, GStmt, GpuKernel, Launch, Mem, Scalar, ShuffleMode, VarId, MAX_GRID_X,
    MAX_VECTOR_BYTES, WARP_SIZE,
};
use super::{div_rem, times, Problem};

/// Most output rows the matrix-vector kernel takes (each thread keeps one
/// accumulator per row and re-reads the rows' k elements, cached, per column).
pub const GEMV_MAX_ROWS: usize = 4;
/// Warps per block: 256 threads, enough to hide memory latency with a few
/// blocks per multiprocessor.
pub const GEMV_WARPS: u32 = 8;
/// Split-K below this many warps' worth of column tasks: twice the 132
/// multiprocessors of an H100 SXM, the fewest warps that keep every one of them
/// streaming.
pub const SPLIT_K_MIN_WARPS: i64 = 2 * 132;

/// How a block's threads share out column tasks and the k range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lanes {
    /// A column's k range over `lanes` lanes of a warp (fewer than 32 when k
    /// is short: a warp then takes several columns), or over all lanes of
    /// `split` warps; `width` consecutive elements per lane and step, in one
    /// vector load where `vector_a`/`vector_b`.
    AlongK {
        lanes: i64,
        split: i64,
        width: i64,
        vector_a: bool,
        vector_b: bool,
    },
    /// `span` consecutive columns per lane (one vector load of a weight row
    /// where `span` > 1), the k range over the block's warps.
    AlongN { span: i64 },
}

/// The launch plan of one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) lanes: Lanes,
    /// Column tasks one block takes at a time (a task is `span` columns).
    pub(crate) columns: i64,
    /// Partial sums per column that meet in shared memory (1: none).
    pub(crate) parts: i64,
}

/// The plan for `p` (at most [`GEMV_MAX_ROWS`] rows).
pub(crate) fn plan(p: &Problem) -> Plan {
    let warps = GEMV_WARPS as i64;
    let lanes = WARP_SIZE as i64;
    let w = (MAX_VECTOR_BYTES / p.storage.size()) as i64;
    // The column operand steps by 1 along n and not along k: lanes along n,
    // each over a vector of columns where n, the row stride and the batch
    // strides keep every vector aligned (and inside one batch entry).
    if p.n > 1 && p.b[0] == 1 && p.b[1] != 1 {
        let vector =
            p.n % w == 0 && (p.k == 1 || p.b[1] % w == 0) && p.batch.iter().all(|d| d.b % w == 0);
        return Plan {
            lanes: Lanes::AlongN {
                span: if vector { w } else { 1 },
            },
            columns: lanes,
            parts: warps,
        };
    }
    // A 128-bit vector of an operand is aligned for every row, column, batch
    // entry and k step when k and every stride it is offset by are multiples of
    // the width.
    let aligned =
        |k_stride: i64, outer: i64, outer_stride: i64, batch: &dyn Fn(&super::BatchDim) -> i64| {
            w > 1
                && p.k % w == 0
                && k_stride == 1
                && (outer == 1 || outer_stride % w == 0)
                && p.batch.iter().all(|d| batch(d) % w == 0)
        };
    let vector_a = aligned(p.a[1], p.m, p.a[0], &|d| d.a);
    let vector_b = aligned(p.b[1], p.n, p.b[0], &|d| d.b);
    let width = if vector_a || vector_b { w } else { 1 };
    // Lanes per column: half as many while they still cover k in one step
    // (k = 64 f32: 16 lanes of 4), so short reductions leave no lane idle.
    let mut group = lanes;
    while group > 1 && (group / 2) * width >= p.k {
        group /= 2;
    }
    let tasks = p.n * p.count;
    let mut split = 1;
    // Split while there are too few warps and each warp of the split still
    // gets a whole step of k.
    while split < warps && tasks * split < SPLIT_K_MIN_WARPS && p.k >= 2 * split * lanes * width {
        split *= 2;
    }
    Plan {
        lanes: Lanes::AlongK {
            lanes: group,
            split,
            width,
            vector_a,
            vector_b,
        },
        columns: warps / split * (lanes / group),
        parts: split,
    }
}

/// What a thread of the block works on, as expressions of its lane and warp.
struct Threads {
    /// Its column task in the block's group.
    task: GExpr,
    /// Which of the task's partial sums it computes (0 without split-K).
    part: GExpr,
    /// Its offset in each k step, in units of `width`, of `k_lanes`.
    k_lane: GExpr,
    k_lanes: i64,
    /// k elements per thread and step.
    width: i64,
}

impl Plan {
    fn threads(&self) -> Threads {
        let warp_lanes = WARP_SIZE as i64;
        match self.lanes {
            Lanes::AlongK {
                split: 1,
                lanes,
                width,
                ..
            } if lanes == warp_lanes => Threads {
                task: warp(),
                part: idx(0),
                k_lane: lane(),
                k_lanes: lanes,
                width,
            },
            // Several columns per warp, `lanes` lanes each.
            Lanes::AlongK {
                split: 1,
                lanes,
                width,
                ..
            } => Threads {
                task: add(
                    times(warp(), warp_lanes / lanes),
                    div_rem(BinOp::Div, lane(), lanes),
                ),
                part: idx(0),
                k_lane: div_rem(BinOp::Rem, lane(), lanes),
                k_lanes: lanes,
                width,
            },
            // Split-K, only where k fills every lane of each warp (`plan`):
            // `split` consecutive warps per column.
            Lanes::AlongK { split, width, .. } => {
                let part = bin(BinOp::Rem, warp(), idx(split));
                Threads {
                    task: bin(BinOp::Div, warp(), idx(split)),
                    part: part.clone(),
                    k_lane: add(times(part, warp_lanes), lane()),
                    k_lanes: split * warp_lanes,
                    width,
                }
            }
            Lanes::AlongN { .. } => Threads {
                task: lane(),
                part: warp(),
                k_lane: warp(),
                k_lanes: GEMV_WARPS as i64,
                width: 1,
            },
        }
    }
}

/// The matrix-vector kernel for `p` (`p.m` ≤ [`GEMV_MAX_ROWS`]).
pub(crate) fn kernel(name: &str, p: &Problem, lens: [usize; 3]) -> GpuKernel {
    let plan = plan(p);
    let rows = p.m as usize;
    let span = match plan.lanes {
        Lanes::AlongN { span } => span,
        Lanes::AlongK { .. } => 1,
    };
    let tasks = p.n * p.count / span;
    let groups = super::ceil_div(tasks, plan.columns);
    let blocks = groups.clamp(1, MAX_GRID_X as i64) as u32;
    let mut k = p.kernel(name, Launch::linear(blocks, GEMV_WARPS * WARP_SIZE), lens);
    // A thread's partial sums lie together, in (row, column) order: the parts
    // of one output element are `part_stride` apart.
    let part_stride = plan.columns * p.m * span;
    let partials =
        (plan.parts > 1).then(|| k.shared("partials", p.acc, (plan.parts * part_stride) as usize));

    let warp_lanes = WARP_SIZE as i64;
    let Threads {
        task,
        part,
        k_lane,
        k_lanes,
        width,
    } = plan.threads();

    let group = k.var(Scalar::I64);
    let unclamped = k.var(Scalar::I64);
    let mut body = vec![GStmt::Let {
        var: unclamped,
        value: add(times(var(group), plan.columns), task.clone()),
    }];
    let valid = bin(BinOp::Lt, var(unclamped), idx(tasks));
    // Where a warp's lanes share one column, a warp past the last column task
    // skips the work. Where they do not, threads past it compute the last one
    // again, unstored, so that every lane reaches the shuffles.
    let uniform = !matches!(plan.lanes, Lanes::AlongK { lanes, .. } if lanes < warp_lanes);
    let mut work = Vec::new();
    let column = if uniform {
        unclamped
    } else {
        let column = k.var(Scalar::I64);
        work.push(GStmt::Let {
            var: column,
            value: bin(BinOp::Min, var(unclamped), idx(tasks - 1)),
        });
        column
    };

    // The thread's share of its columns: Σ over its k steps.
    let (bi, j) = split_column(p, &mut k, &mut work, times(var(column), span));
    let (oa, ob, oc) = p.batch_offsets(&mut k, &mut work, bi);
    let col_base = k.var(Scalar::I64);
    work.push(GStmt::Let {
        var: col_base,
        value: add(var(ob), times(j.clone(), p.b[0])),
    });
    // One accumulator per output row and column of the task.
    let accs: Vec<Vec<VarId>> = (0..rows)
        .map(|_| (0..span).map(|_| k.var(p.acc)).collect())
        .collect();
    for &a in accs.iter().flatten() {
        work.push(GStmt::Decl {
            var: a,
            init: fc(0.0, p.acc),
        });
    }
    let kk = k.var(Scalar::I64);
    let mut step = Vec::new();
    match plan.lanes {
        Lanes::AlongK {
            vector_a, vector_b, ..
        } => {
            let b_vals = operand(
                &mut k,
                &mut step,
                p.b_buf,
                var(col_base),
                var(kk),
                p.b[1],
                width,
                vector_b,
            );
            for (r, row) in accs.iter().enumerate() {
                let row_base = add(var(oa), idx(r as i64 * p.a[0]));
                let a_vals = operand(
                    &mut k,
                    &mut step,
                    p.a_buf,
                    row_base,
                    var(kk),
                    p.a[1],
                    width,
                    vector_a,
                );
                let products = a_vals.iter().zip(&b_vals).map(|(&x, &y)| (x, y));
                step.push(accumulate(p, row[0], products));
            }
        }
        Lanes::AlongN { .. } => {
            // `span` columns of weight row kk, then each row's one element.
            let b_vals = operand(
                &mut k,
                &mut step,
                p.b_buf,
                add(var(col_base), times(var(kk), p.b[1])),
                idx(0),
                1,
                span,
                span > 1,
            );
            for (r, row) in accs.iter().enumerate() {
                let row_base = add(var(oa), idx(r as i64 * p.a[0]));
                let x = operand(
                    &mut k,
                    &mut step,
                    p.a_buf,
                    row_base,
                    var(kk),
                    p.a[1],
                    1,
                    false,
                );
                for (&acc, &y) in row.iter().zip(&b_vals) {
                    step.push(accumulate(p, acc, [(x[0], y)].into_iter()));
                }
            }
        }
    }
    work.push(GStmt::For {
        var: kk,
        start: times(k_lane, width),
        end: idx(p.k),
        step: idx(k_lanes * width),
        body: step,
    });

    // Lanes along k: the lanes of a column hold parts of its sum; add them.
    let (sums, first): (Vec<Vec<VarId>>, _) = match plan.lanes {
        Lanes::AlongK { lanes, .. } => {
            let sums = (accs.iter())
                .map(|row| vec![lane_reduce(&mut k, &mut work, row[0], lanes)])
                .collect();
            let in_group = if lanes == warp_lanes {
                lane()
            } else {
                bin(BinOp::Rem, lane(), idx(lanes))
            };
            let first = bin(BinOp::Eq, in_group, idx(0));
            (sums, Some(first))
        }
        Lanes::AlongN { .. } => (accs.clone(), None),
    };
    let c_at = |oc: GExpr, r: GExpr, j: GExpr| add(add(oc, times(r, p.c[0])), times(j, p.c[1]));
    let (cond, stores): (Option<GExpr>, Vec<GStmt>) = match partials {
        // The first lane of a column stores it (no partials: lanes along k,
        // one column per task).
        None => (
            first.map(|f| {
                if uniform {
                    f
                } else {
                    bin(BinOp::And, f, valid.clone())
                }
            }),
            (sums.iter().enumerate())
                .map(|(r, row)| GStmt::Store {
                    mem: Mem::Global(super::C),
                    index: c_at(oc.clone(), idx(r as i64), j.clone()),
                    value: p.result(var(row[0])),
                })
                .collect(),
        ),
        // Each part of an output element goes to its own slot (a clamped
        // thread's too: its slots belong to no valid column, and `combine`
        // skips them).
        Some(sh) => {
            let first_slot = add(
                times(part.clone(), part_stride),
                times(task.clone(), p.m * span),
            );
            let stores = (sums.iter().enumerate())
                .flat_map(|(r, row)| row.iter().enumerate().map(move |(w, &s)| (r, w, s)))
                .map(|(r, w, s)| GStmt::Store {
                    mem: Mem::Shared(sh),
                    index: add(first_slot.clone(), idx(r as i64 * span + w as i64)),
                    value: var(s),
                })
                .collect();
            (first, stores)
        }
    };
    match cond {
        None => work.extend(stores),
        Some(cond) => work.push(GStmt::If {
            cond,
            then: stores,
            otherwise: vec![],
        }),
    }
    if uniform {
        body.push(GStmt::If {
            cond: valid,
            then: work,
            otherwise: vec![],
        });
    } else {
        body.extend(work);
    }
    if let Some(sh) = partials {
        body.push(GStmt::Barrier);
        body.push(combine(p, &mut k, &plan, (sh, part_stride, span), group));
        // The next group's partial sums overwrite these only after every
        // thread has read them.
        body.push(GStmt::Barrier);
    }
    k.body = vec![GStmt::For {
        var: group,
        start: super::super::build::block(Axis::X),
        end: idx(groups),
        step: super::super::build::grid_dim(Axis::X),
        body,
    }];
    k
}

/// Statements adding `value` over each aligned group of `lanes` lanes (a power
/// of two ≤ 32) by a butterfly of xor shuffles, which stays inside the group;
/// every lane of the warp takes part. Returns the register holding the group's
/// sum in each of its lanes.
fn lane_reduce(k: &mut GpuKernel, out: &mut Vec<GStmt>, value: VarId, lanes: i64) -> VarId {
    if lanes == WARP_SIZE as i64 {
        return warp_reduce(k, out, BinOp::Add, value);
    }
    let ty = k.vars[value];
    let mut acc = value;
    let mut offset = lanes / 2;
    while offset > 0 {
        let other = k.var(ty);
        out.push(GStmt::Shuffle {
            dst: other,
            src: acc,
            mode: ShuffleMode::Xor,
            arg: idx(offset),
        });
        let next = k.var(ty);
        out.push(GStmt::Let {
            var: next,
            value: add(var(acc), var(other)),
        });
        acc = next;
        offset /= 2;
    }
    acc
}

fn cast_acc(p: &Problem, x: VarId) -> GExpr {
    super::convert(p.storage, p.acc, var(x))
}

/// Statements by which the block's threads add the partial sums of the group's
/// output elements, each in part order (deterministic), and store them:
/// thread `t` takes slot `t` (and `t` + the block size, …) of each part, which
/// holds row `(t / span) % m`, column `t % span` of the group's task
/// `t / (m·span)`.
fn combine(
    p: &Problem,
    k: &mut GpuKernel,
    plan: &Plan,
    (sh, part_stride, span): (usize, i64, i64),
    group: VarId,
) -> GStmt {
    let [slot, task, row, column] = [(); 4].map(|_| k.var(Scalar::I64));
    let mut store = Vec::new();
    let (bi, j) = split_column(
        p,
        k,
        &mut store,
        add(
            times(var(column), span),
            div_rem(BinOp::Rem, var(slot), span),
        ),
    );
    let partial = |s: i64| load(Mem::Shared(sh), add(idx(s * part_stride), var(slot)));
    let sum = (1..plan.parts).fold(partial(0), |sum, s| add(sum, partial(s)));
    store.push(GStmt::Store {
        mem: Mem::Global(super::C),
        index: add(
            add(times(bi, p.m * p.n), times(var(row), p.c[0])),
            times(j, p.c[1]),
        ),
        value: p.result(sum),
    });
    GStmt::For {
        var: slot,
        start: thread(),
        end: idx(part_stride),
        step: idx((GEMV_WARPS * WARP_SIZE) as i64),
        body: vec![
            GStmt::Let {
                var: task,
                value: div_rem(BinOp::Div, var(slot), p.m * span),
            },
            GStmt::Let {
                var: row,
                value: div_rem(BinOp::Rem, div_rem(BinOp::Div, var(slot), span), p.m),
            },
            GStmt::Let {
                var: column,
                value: add(times(var(group), plan.columns), var(task)),
            },
            GStmt::If {
                cond: bin(BinOp::Lt, var(column), idx(p.n * p.count / span)),
                then: store,
                otherwise: vec![],
            },
        ],
    }
}

/// `acc += Σ x·y` over `products`, in the accumulator type.
fn accumulate(p: &Problem, acc: VarId, products: impl Iterator<Item = (VarId, VarId)>) -> GStmt {
    let sum = products.fold(var(acc), |sum, (x, y)| {
        add(sum, mul(cast_acc(p, x), cast_acc(p, y)))
    });
    GStmt::Assign {
        var: acc,
        value: sum,
    }
}

/// Statements binding the batch entry and column of column task `column`.
fn split_column(
    p: &Problem,
    k: &mut GpuKernel,
    out: &mut Vec<GStmt>,
    column: GExpr,
) -> (GExpr, GExpr) {
    if p.count == 1 {
        return (idx(0), column);
    }
    let [bi, j] = [BinOp::Div, BinOp::Rem].map(|op| {
        let v = k.var(Scalar::I64);
        out.push(GStmt::Let {
            var: v,
            value: div_rem(op, column.clone(), p.n),
        });
        var(v)
    });
    (bi, j)
}

/// Statements loading `width` consecutive k elements `kk..` of one row or column
/// of an operand (`base` its element 0, `k_stride` apart), in one vector access
/// when `vector`; returns their registers.
#[allow(clippy::too_many_arguments)]
fn operand(
    k: &mut GpuKernel,
    out: &mut Vec<GStmt>,
    buf: usize,
    base: GExpr,
    kk: GExpr,
    k_stride: i64,
    width: i64,
    vector: bool,
) -> Vec<VarId> {
    let storage = k.buffers[buf].scalar;
    let dsts: Vec<VarId> = (0..width).map(|_| k.var(storage)).collect();
    if vector {
        out.push(GStmt::LoadVec {
            dsts: dsts.clone(),
            mem: Mem::Global(buf),
            index: add(base, kk),
        });
    } else {
        for (e, &d) in dsts.iter().enumerate() {
            out.push(GStmt::Let {
                var: d,
                value: load(
                    Mem::Global(buf),
                    add(
                        base.clone(),
                        times(add(kk.clone(), idx(e as i64)), k_stride),
                    ),
                ),
            });
        }
    }
    dsts
}

#[cfg(test)]
mod tests {
    use kiln_ir::DType;

    use super::super::tests::step;
    use super::*;

    /// `x·Wᵀ`: `[m, k]` activations, a weight stored `[n, k]`.
    fn decode(dtype: DType, m: usize, n: usize, k: usize) -> Plan {
        let g = step(dtype, m, n, k, [k as isize, 1], [1, k as isize]);
        plan(&Problem::new(&g))
    }

    fn along_k(split: i64, width: i64, vector_a: bool, vector_b: bool) -> Lanes {
        Lanes::AlongK {
            lanes: WARP_SIZE as i64,
            split,
            width,
            vector_a,
            vector_b,
        }
    }

    #[test]
    fn decode_reads_vectors_and_splits_k_only_when_columns_are_few() {
        // A 2048→5632 projection: a warp per column, 8 halves per load.
        let p = decode(DType::F16, 1, 5632, 2048);
        assert_eq!(p.lanes, along_k(1, 8, true, true));
        assert_eq!((p.columns, p.parts), (8, 1));
        // 128 columns: 128·4 warps reach SPLIT_K_MIN_WARPS; 64·4 do not.
        assert_eq!(
            decode(DType::F16, 1, 128, 2048).lanes,
            along_k(4, 8, true, true)
        );
        assert_eq!(
            decode(DType::F16, 1, 64, 2048).lanes,
            along_k(8, 8, true, true)
        );
        // 8 columns: every warp of the block, if k is long enough for them all.
        assert_eq!(
            decode(DType::F32, 1, 8, 8192).lanes,
            along_k(8, 4, true, true)
        );
        assert_eq!(
            decode(DType::F32, 1, 8, 256).lanes,
            along_k(2, 4, true, true)
        );
        assert_eq!(
            decode(DType::F64, 2, 8, 64).lanes,
            along_k(1, 2, true, true)
        );
    }

    #[test]
    fn short_reductions_share_a_warp_between_columns() {
        let lanes = |p: Plan| match p.lanes {
            Lanes::AlongK { lanes, split, .. } => (lanes, split, p.columns),
            Lanes::AlongN { .. } => unreachable!(),
        };
        // Attention scores over a 64-wide head: 16 lanes of 4 f32, 8 of 8 f16.
        assert_eq!(lanes(decode(DType::F32, 1, 100, 64)), (16, 1, 16));
        assert_eq!(lanes(decode(DType::F16, 1, 100, 64)), (8, 1, 32));
        // k = 1: a lane per column.
        assert_eq!(lanes(decode(DType::F32, 1, 100, 1)), (1, 1, 256));
        // Long enough for every lane: a warp per column.
        assert_eq!(lanes(decode(DType::F32, 1, 1000, 128)), (32, 1, 8));
    }

    #[test]
    fn misaligned_operands_load_scalars() {
        // k not a multiple of the width: no vector for either operand.
        assert_eq!(
            decode(DType::F16, 1, 512, 2052).lanes,
            along_k(1, 1, false, false)
        );
        // Two rows of a padded a (row stride 2049 + 3): b alone in vectors.
        let g = step(DType::F16, 2, 512, 2048, [2051, 1], [1, 2048]);
        assert_eq!(plan(&Problem::new(&g)).lanes, along_k(1, 8, false, true));
        // A single row needs no row stride.
        let g = step(DType::F16, 1, 512, 2048, [2051, 1], [1, 2048]);
        assert_eq!(plan(&Problem::new(&g)).lanes, along_k(1, 8, true, true));
    }

    #[test]
    fn a_weight_contiguous_along_n_puts_lanes_along_n() {
        // `x·W` with W stored `[k, n]`: 8 halves of a weight row per load.
        let g = step(DType::F16, 1, 512, 2048, [2048, 1], [512, 1]);
        let p = plan(&Problem::new(&g));
        assert_eq!(p.lanes, Lanes::AlongN { span: 8 });
        assert_eq!((p.columns, p.parts), (32, GEMV_WARPS as i64));
        // Rows of 510 halves: vectors would straddle rows; one column a lane.
        let g = step(DType::F16, 1, 510, 2048, [2048, 1], [510, 1]);
        assert_eq!(plan(&Problem::new(&g)).lanes, Lanes::AlongN { span: 1 });
    }
}
