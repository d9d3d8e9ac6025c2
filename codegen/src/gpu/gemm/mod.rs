//! GPU kernels for [`GemmStep`]s: `c[batch…, m, n] = alpha · a·b` with any element
//! strides (transposed operands, stride-0 broadcast batch dims), f32, f64 or f16
//! stored, accumulated in f32 (f64 for f64).
//!
//! Two kernels, chosen by shape ([`gemm_kernel`]):
//!
//! - **Matrix-vector** ([`gemv`]) when one side of the product has at most
//!   [`GEMV_MAX_ROWS`] rows (decode at batch 1: `x·Wᵀ`). Its time is the weight's
//!   bytes, so threads read the weight along k with 128-bit vector loads where
//!   layout and alignment allow, and the reduction over k is split across the
//!   lanes of a warp (and across warps of one block when there are too few
//!   columns to fill the GPU: split-K, reduced in shared memory, so the sum is
//!   deterministic). A product with few *columns* (`n` ≤ [`GEMV_MAX_ROWS`]) is
//!   the same kernel on the transposed problem `cᵀ = bᵀ·aᵀ`.
//! - **Tiled** ([`tiled`]) otherwise: a block computes a
//!   [`tiled::TILE_M`]×[`tiled::TILE_N`] output tile from shared-memory tiles of
//!   a and b, each thread a small register tile.
//!
//! Both cover every shape, stride and batch layout the CPU accepts; they are
//! tested against a plain GEMM on the SIMT interpreter (`tests/gpu_gemm.rs`).
//! Large products go to cuBLAS on a real GPU; these are the GEMMs of the
//! simulated GPU, of decode, and of a GPU without cuBLAS.

pub mod gemv;
pub mod tiled;

use kiln_ir::DType;

use super::build::{add, bin, idx, mul, var};
use super::{Access, BinOp, BufId, GExpr, GStmt, GpuKernel, Scalar, VarId};
use crate::program::GemmStep;

pub use gemv::GEMV_MAX_ROWS;

/// Which kernel computes a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// c has no elements: a kernel that does nothing.
    Empty,
    /// The matrix-vector kernel over at most [`GEMV_MAX_ROWS`] rows of a.
    Gemv,
    /// The matrix-vector kernel on `cᵀ = bᵀ·aᵀ`: at most [`GEMV_MAX_ROWS`]
    /// columns of b.
    GemvTransposed,
    /// The shared-memory tiled kernel.
    Tiled,
}

/// The kernel [`gemm_kernel`] chooses for `g`.
pub fn variant(g: &GemmStep) -> Variant {
    let rows = GEMV_MAX_ROWS;
    if g.m == 0 || g.n == 0 || g.batch_count() == 0 {
        Variant::Empty
    } else if g.m <= rows {
        Variant::Gemv
    } else if g.n <= rows {
        Variant::GemvTransposed
    } else {
        Variant::Tiled
    }
}

/// The GPU kernel computing `g`, named `name`, over the buffers `[a, b, c]` of
/// `lens` elements (a and b read, c written, of `g.dtype`). Vector loads
/// assume each buffer starts 16-byte aligned, as the runtime places them.
///
/// # Panics
/// If `g.dtype` is not f32, f64 or f16 (the scheduler emits no other GEMM).
pub fn gemm_kernel(name: &str, g: &GemmStep, lens: [usize; 3]) -> GpuKernel {
    let p = Problem::new(g);
    match variant(g) {
        // Nothing to compute (the CPU returns early too).
        Variant::Empty => p.kernel(name, super::Launch::linear(1, super::WARP_SIZE), lens),
        Variant::Gemv => gemv::kernel(name, &p, lens),
        Variant::GemvTransposed => gemv::kernel(name, &p.transposed(), lens),
        Variant::Tiled => tiled::kernel(name, &p, lens),
    }
}

/// One batch dim after merging: its length and the element strides of the
/// row operand and the column operand along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchDim {
    len: i64,
    a: i64,
    b: i64,
}

/// A product as the kernels see it: `c[bi, i, j] = alpha · Σ_k a[i, k]·b[k, j]`,
/// where `a` (the *row operand*) and `b` (the *column operand*) are two of the
/// launch's buffers and `c`'s rows and columns have their own strides (the
/// transposed problem swaps both).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Problem {
    /// Output rows.
    m: i64,
    /// Output columns.
    n: i64,
    /// Reduction length.
    k: i64,
    /// Products in the batch.
    count: i64,
    /// Batch dims, outermost first, merged where both operands allow, without
    /// dims of length 1.
    batch: Vec<BatchDim>,
    /// Buffer of the row operand.
    a_buf: BufId,
    /// Strides of the row operand along m and k.
    a: [i64; 2],
    /// Buffer of the column operand.
    b_buf: BufId,
    /// Strides of the column operand along n and k.
    b: [i64; 2],
    /// Strides of c along m and n; products are `m·n` apart.
    c: [i64; 2],
    /// Scale of the product.
    alpha: f64,
    /// The element type in memory.
    storage: Scalar,
    /// The type sums are accumulated in.
    acc: Scalar,
}

/// Buffer order of every GEMM kernel.
const A: BufId = 0;
const B: BufId = 1;
const C: BufId = 2;

impl Problem {
    fn new(g: &GemmStep) -> Problem {
        let (storage, acc) = match g.dtype {
            DType::F32 => (Scalar::F32, Scalar::F32),
            DType::F64 => (Scalar::F64, Scalar::F64),
            DType::F16 => (Scalar::F16, Scalar::F32),
            other => panic!("GPU GEMM of {other}: the scheduler emits f32, f64 and f16 only"),
        };
        let dims = g.batch.iter().enumerate().map(|(d, &len)| BatchDim {
            len: len as i64,
            a: g.a_batch_strides[d] as i64,
            b: g.b_batch_strides[d] as i64,
        });
        Problem {
            m: g.m as i64,
            n: g.n as i64,
            k: g.k as i64,
            count: g.batch_count() as i64,
            batch: merge_batch(dims),
            a_buf: A,
            // a[i, k] and b[k, j]: the column operand's n stride is its second.
            a: [g.a_strides[0] as i64, g.a_strides[1] as i64],
            b_buf: B,
            b: [g.b_strides[1] as i64, g.b_strides[0] as i64],
            c: [g.n as i64, 1],
            alpha: g.alpha,
            storage,
            acc,
        }
    }

    /// `cᵀ = bᵀ·aᵀ`: the same output elements, rows and columns swapped.
    fn transposed(&self) -> Problem {
        Problem {
            m: self.n,
            n: self.m,
            batch: (self.batch.iter())
                .map(|d| BatchDim {
                    len: d.len,
                    a: d.b,
                    b: d.a,
                })
                .collect(),
            a_buf: self.b_buf,
            a: self.b,
            b_buf: self.a_buf,
            b: self.a,
            c: [self.c[1], self.c[0]],
            ..self.clone()
        }
    }

    /// The kernel with the three buffers, in the step's order.
    fn kernel(&self, name: &str, launch: super::Launch, lens: [usize; 3]) -> GpuKernel {
        let mut k = GpuKernel::new(name, launch);
        for (label, len, access) in [
            ("a", lens[0], Access::Read),
            ("b", lens[1], Access::Read),
            ("c", lens[2], Access::Write),
        ] {
            k.buffer(label, self.storage, len, access);
        }
        k
    }

    /// Statements binding the element offsets of product `bi` (an `i64`) in the
    /// row operand and the column operand; returns their registers and the
    /// offset in c (an expression: not every kernel needs it).
    fn batch_offsets(
        &self,
        k: &mut GpuKernel,
        out: &mut Vec<GStmt>,
        bi: GExpr,
    ) -> (VarId, VarId, GExpr) {
        let (mut oa, mut ob) = (idx(0), idx(0));
        let mut rest = bi.clone();
        for (d, dim) in self.batch.iter().enumerate().rev() {
            // The outermost dim needs no remainder: `rest` is below its length.
            let i = if d == 0 {
                rest.clone()
            } else {
                bin(BinOp::Rem, rest.clone(), idx(dim.len))
            };
            oa = add(oa, times(i.clone(), dim.a));
            ob = add(ob, times(i, dim.b));
            if d > 0 {
                let next = k.var(Scalar::I64);
                out.push(GStmt::Let {
                    var: next,
                    value: bin(BinOp::Div, rest, idx(dim.len)),
                });
                rest = var(next);
            }
        }
        let [oa, ob] = [oa, ob].map(|value| {
            let v = k.var(Scalar::I64);
            out.push(GStmt::Let { var: v, value });
            v
        });
        (oa, ob, times(bi, self.m * self.n))
    }

    /// `x` (of the accumulator type) scaled by alpha and rounded to storage.
    fn result(&self, x: GExpr) -> GExpr {
        let scaled = if self.alpha == 1.0 {
            x
        } else {
            mul(x, super::build::fc(self.alpha, self.acc))
        };
        convert(self.acc, self.storage, scaled)
    }
}

/// `e · c` for an `i64` constant `c`, folded where `c` is 0 or 1 or `e` a
/// constant (index arithmetic of unit and zero strides stays readable).
fn times(e: GExpr, c: i64) -> GExpr {
    match e {
        _ if c == 0 => idx(0),
        GExpr::Lit(super::Literal::Int(x, Scalar::I64)) => idx(x.wrapping_mul(c)),
        e => mul(e, idx(c)),
    }
}

/// `e / c` (`div`) or `e % c` (`rem`) for an `i64` constant `c` > 0, folded
/// where `c` is 1.
fn div_rem(op: BinOp, e: GExpr, c: i64) -> GExpr {
    match op {
        _ if c != 1 => bin(op, e, idx(c)),
        BinOp::Div => e,
        _ => idx(0),
    }
}

/// `⌈a / b⌉` of a count `a` ≥ 0 (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// `x` converted to `to` unless it already is of that type (`from`).
fn convert(from: Scalar, to: Scalar, x: GExpr) -> GExpr {
    if from == to {
        x
    } else {
        super::build::cast(to, x)
    }
}

/// Batch dims without those of length 1, adjacent dims merged where both
/// operands step through them as one (`stride[d] = stride[d+1]·len[d+1]`), so
/// the kernels divide the batch index as little as possible.
fn merge_batch(dims: impl Iterator<Item = BatchDim>) -> Vec<BatchDim> {
    let mut out: Vec<BatchDim> = Vec::new();
    for d in dims.filter(|d| d.len != 1) {
        match out.last_mut() {
            Some(prev) if prev.a == d.a * d.len && prev.b == d.b * d.len => {
                *prev = BatchDim {
                    len: prev.len * d.len,
                    a: d.a,
                    b: d.b,
                };
            }
            _ => out.push(d),
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An unbatched product of `dtype` with the given strides of a and b.
    pub(in super::super) fn step(
        dtype: DType,
        m: usize,
        n: usize,
        k: usize,
        a_strides: [isize; 2],
        b_strides: [isize; 2],
    ) -> GemmStep {
        GemmStep {
            a: 0,
            b: 1,
            c: 2,
            dtype,
            m,
            n,
            k,
            batch: vec![],
            a_batch_strides: vec![],
            b_batch_strides: vec![],
            a_strides,
            b_strides,
            alpha: 1.0,
            b_stored: None,
        }
    }

    #[test]
    fn variants_by_shape() {
        let s = |m, n| step(DType::F32, m, n, 8, [8, 1], [n as isize, 1]);
        assert_eq!(variant(&s(1, 100)), Variant::Gemv);
        assert_eq!(variant(&s(GEMV_MAX_ROWS, 100)), Variant::Gemv);
        assert_eq!(variant(&s(100, 3)), Variant::GemvTransposed);
        assert_eq!(variant(&s(5, 5)), Variant::Tiled);
        assert_eq!(variant(&s(0, 5)), Variant::Empty);
    }

    #[test]
    fn launches_stay_within_the_grid_limits() {
        // 100,000 batch entries of 5×5 products: grid z stops at its limit (the
        // kernel loops over the rest; tests/gpu_gemm.rs runs such loops).
        let mut g = step(DType::F32, 5, 5, 1, [1, 1], [5, 1]);
        g.batch = vec![100_000];
        g.a_batch_strides = vec![5];
        g.b_batch_strides = vec![5];
        let lens = [500_000, 500_000, 2_500_000];
        let k = gemm_kernel("many", &g, lens);
        assert_eq!(k.launch.grid, [1, 1, super::super::MAX_GRID_YZ]);
        k.check().unwrap();
        // The same as matrix-vector products (lanes along n): a block per 32
        // of the 500,000 columns.
        g.m = 1;
        let k = gemm_kernel("many_gemv", &g, [100_000, 500_000, 500_000]);
        assert_eq!(k.launch.grid, [15_625, 1, 1]);
        k.check().unwrap();
    }

    #[test]
    fn the_transposed_problem_swaps_operands_and_c_strides() {
        let mut g = step(DType::F16, 100, 3, 8, [8, 1], [3, 1]);
        g.batch = vec![2];
        g.a_batch_strides = vec![800];
        g.b_batch_strides = vec![0];
        let p = Problem::new(&g).transposed();
        assert_eq!((p.m, p.n, p.k), (3, 100, 8));
        assert_eq!((p.a_buf, p.a, p.b_buf, p.b), (B, [1, 3], A, [8, 1]));
        assert_eq!(p.c, [1, 3]);
        assert_eq!(p.batch, vec![dim(2, 0, 800)]);
    }

    fn dim(len: i64, a: i64, b: i64) -> BatchDim {
        BatchDim { len, a, b }
    }

    #[test]
    fn batch_dims_merge_where_both_operands_are_contiguous() {
        // [2, 3] batches of dense 4×5 and broadcast b: a merges, b (0, 0) too.
        let merged = merge_batch([dim(2, 60, 0), dim(3, 20, 0)].into_iter());
        assert_eq!(merged, vec![dim(6, 20, 0)]);
        // b broadcast along the outer dim only: no merge.
        let kept = merge_batch([dim(2, 60, 0), dim(3, 20, 7)].into_iter());
        assert_eq!(kept, vec![dim(2, 60, 0), dim(3, 20, 7)]);
        // Length-1 dims vanish whatever their strides.
        let ones = merge_batch([dim(1, 99, 5), dim(4, 8, 8), dim(1, 3, 3)].into_iter());
        assert_eq!(ones, vec![dim(4, 8, 8)]);
    }
}
