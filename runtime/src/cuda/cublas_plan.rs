//! A GEMM step as cuBLAS calls: a pure mapping from [`GemmStep`] to the
//! arguments of `cublasGemmStridedBatchedEx`, with no CUDA in sight, so that it
//! is proven on the host (the tests run each described call with cuBLAS's
//! column-major semantics against a plain row-major evaluation of the step).
//!
//! **The swap.** cuBLAS is column-major, and a row-major `[r, c]` matrix is the
//! column-major `[c, r]` matrix over the same memory. So row-major
//! `C = A·B` is column-major `Cᵀ = Bᵀ·Aᵀ`: cuBLAS's first operand (its `A`) is
//! the step's `b`, its second (its `B`) the step's `a`, its `m × n` output is
//! `n × m` with `ldc = n` (the step's dense `c`).
//!
//! **Operands.** A row-major view with unit column stride is, column-major,
//! an untransposed matrix whose leading dimension is the row stride (`N`); one
//! with unit row stride is a transposed matrix whose leading dimension is the
//! column stride (`T`). A dim of size 1 has no stride to speak of, so it
//! never stands in the way. Anything else (neither stride 1, a negative
//! stride, rows broadcast with stride 0, a leading dimension smaller than the
//! dim it spans) is refused: cuBLAS cannot address it.
//!
//! **Batches.** Batch dims of size 1 are dropped. Inner batch dims along which
//! `b` is broadcast and `a`'s matrices follow one another row after row fold
//! into `m` (grouped-query attention's heads of one group: one larger product
//! instead of a batch). The innermost run of dims whose strides compose
//! (`stride[d] = stride[d + 1] · size[d + 1]` for a, b and c alike; all zero
//! is a broadcast) becomes one strided batch; the dims outside it become a
//! loop of calls, one per combination of their indices (at most
//! [`MAX_CUBLAS_CALLS`]).

use kiln_codegen::program::GemmStep;
use kiln_ir::DType;

/// Most cuBLAS calls one GEMM step may become (one per combination of the
/// outer batch dims that do not flatten into a strided batch). Each call costs
/// a few microseconds of host time when not replayed from a graph; beyond this
/// the plan's own size and that overhead stop being small next to the work,
/// and the step is left to the caller's other ways.
pub const MAX_CUBLAS_CALLS: usize = 4096;

/// Whether cuBLAS reads an operand as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// As stored (`CUBLAS_OP_N`).
    N,
    /// Transposed (`CUBLAS_OP_T`).
    T,
}

/// The shape arguments of one `cublasGemmStridedBatchedEx` call, with
/// cuBLAS's names and meaning (column-major): `A` is the step's `b`, `B` the
/// step's `a`, and `C[batch] = alpha · op(A[batch]) · op(B[batch])` is
/// `m × n` with leading dimension `ldc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StridedBatched {
    /// How `A` (the step's `b`) is read.
    pub transa: Trans,
    /// How `B` (the step's `a`) is read.
    pub transb: Trans,
    /// Rows of `op(A)` and `C`: the step's `n`.
    pub m: i32,
    /// Columns of `op(B)` and `C`: the step's `m` (times any folded batch dims).
    pub n: i32,
    /// Columns of `op(A)`, rows of `op(B)`: the step's `k`.
    pub k: i32,
    /// Leading dimension of `A`.
    pub lda: i32,
    /// Elements between consecutive `A`s of the batch (0: the same matrix).
    pub stride_a: i64,
    /// Leading dimension of `B`.
    pub ldb: i32,
    /// Elements between consecutive `B`s of the batch (0: the same matrix).
    pub stride_b: i64,
    /// Leading dimension of `C` (the step's `n`: `c` is dense).
    pub ldc: i32,
    /// Elements between consecutive `C`s of the batch.
    pub stride_c: i64,
    /// Products in the batch.
    pub batch_count: i32,
}

/// Where one call of a [`CublasPlan::Calls`] starts, in elements from the
/// start of the step's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bases {
    /// Offset into the step's `a` (cuBLAS's `B`).
    pub a: i64,
    /// Offset into the step's `b` (cuBLAS's `A`).
    pub b: i64,
    /// Offset into the step's `c`.
    pub c: i64,
}

/// What a GEMM step takes on cuBLAS.
#[derive(Clone, Debug, PartialEq)]
pub enum CublasPlan {
    /// Nothing: the output is empty (a zero batch dim, `m` or `n`).
    Nothing,
    /// `k = 0`: every output element is an empty sum, zero (as on the CPU);
    /// `bytes` of `c` are cleared instead of calling cuBLAS (which refuses a
    /// leading dimension of 0).
    Zero {
        /// Bytes of the dense output.
        bytes: usize,
    },
    /// One strided-batched call per entry of `bases`, with `beta = 0`.
    Calls {
        /// The call's shape.
        call: StridedBatched,
        /// The scale of the product (the step's `alpha`).
        alpha: f64,
        /// Each call's starting offsets (one entry when the batch flattens).
        bases: Vec<Bases>,
    },
}

/// One batch dim: its size and the element stride of a, b and c along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dim {
    size: usize,
    a: isize,
    b: isize,
    c: isize,
}

/// How cuBLAS reads the transpose of a row-major `rows × cols` operand whose
/// element `(r, c)` lies at `r·rs + c·cs`, and with which leading dimension;
/// `None` when it cannot.
///
/// `N`: the column-major `cols × rows` matrix itself (`cs = 1`, `ld = rs`,
/// `ld ≥ cols`); `T`: the transpose of the column-major `rows × cols` matrix
/// (`rs = 1`, `ld = cs`, `ld ≥ rows`). A dim of size 1 never moves, so its
/// stride may be anything: taken as 1 for the unit side, as the smallest legal
/// leading dimension for the other.
fn operand(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<(Trans, i32)> {
    let unit = |size: usize, stride: isize| size == 1 || stride == 1;
    let ld = |size: usize, stride: isize, min: usize| -> Option<i32> {
        let min = min.max(1);
        let ld = if size == 1 {
            min
        } else {
            usize::try_from(stride).ok()?
        };
        (ld >= min).then(|| i32::try_from(ld).ok()).flatten()
    };
    if unit(cols, cs) {
        if let Some(ld) = ld(rows, rs, cols) {
            return Some((Trans::N, ld));
        }
    }
    if unit(rows, rs) {
        if let Some(ld) = ld(cols, cs, rows) {
            return Some((Trans::T, ld));
        }
    }
    None
}

/// Whether cuBLAS has this element type (with the accumulation the runtime
/// asks for: f32 for f32 and f16, f64 for f64).
pub fn dtype_supported(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64 | DType::F16)
}

/// `g` as cuBLAS calls, or `None` when cuBLAS cannot express it (an element
/// type it lacks, a layout it cannot address, a step whose batch strides do
/// not match its batch dims, sizes beyond its 32-bit arguments, or more than
/// [`MAX_CUBLAS_CALLS`] calls).
pub fn plan(g: &GemmStep) -> Option<CublasPlan> {
    if !dtype_supported(g.dtype)
        || g.a_batch_strides.len() != g.batch.len()
        || g.b_batch_strides.len() != g.batch.len()
    {
        return None;
    }
    let count = g.batch.iter().try_fold(1usize, |p, &d| p.checked_mul(d))?;
    let outputs = count.checked_mul(g.m)?.checked_mul(g.n)?;
    if outputs == 0 {
        return Some(CublasPlan::Nothing);
    }
    if g.k == 0 {
        let bytes = outputs.checked_mul(g.dtype.size())?;
        return Some(CublasPlan::Zero { bytes });
    }

    // The batch dims that move, outermost first, with c's dense strides.
    let mut dims = Vec::with_capacity(g.batch.len());
    let mut c_stride = g.m.checked_mul(g.n)?;
    for d in (0..g.batch.len()).rev() {
        let size = g.batch[d];
        if size != 1 {
            dims.push(Dim {
                size,
                a: g.a_batch_strides[d],
                b: g.b_batch_strides[d],
                c: isize::try_from(c_stride).ok()?,
            });
        }
        c_stride = c_stride.checked_mul(size)?;
    }
    dims.reverse();
    if dims.iter().any(|d| d.a < 0 || d.b < 0) {
        return None;
    }

    // Fold inner dims into m while b is broadcast along them and a's matrices
    // continue each other's rows (and a stays addressable).
    let (mut m, mut a_rs) = (g.m, g.a_strides[0]);
    while let Some(&d) = dims.last() {
        let row = if m == 1 { d.a } else { a_rs };
        let Some(folded) = m.checked_mul(d.size) else {
            break;
        };
        let continues = d.b == 0 && d.a != 0 && Some(d.a) == row.checked_mul(m as isize);
        if !continues || operand(folded, g.k, row, g.a_strides[1]).is_none() {
            break;
        }
        m = folded;
        a_rs = row;
        dims.pop();
    }

    let (transa, lda) = operand(g.k, g.n, g.b_strides[0], g.b_strides[1])?;
    let (transb, ldb) = operand(m, g.k, a_rs, g.a_strides[1])?;

    // The innermost run of dims that composes into one strided batch: a dim
    // joins the run inside it when, for a, b and c alike, its stride is the
    // run's outermost stride times that dim's size (all zero: broadcast).
    let composes = |outer: Dim, inner: Dim| {
        let fits = |o: isize, i: isize| i as i128 * inner.size as i128 == o as i128;
        fits(outer.a, inner.a) && fits(outer.b, inner.b) && fits(outer.c, inner.c)
    };
    let mut inner = dims.len().saturating_sub(1);
    while inner > 0 && composes(dims[inner - 1], dims[inner]) {
        inner -= 1;
    }
    let (stride_a, stride_b, stride_c, batch_count) = match dims.get(inner..).and_then(|r| r.last())
    {
        Some(last) => {
            let n: usize = dims[inner..].iter().map(|d| d.size).product();
            (last.b as i64, last.a as i64, last.c as i64, n)
        }
        None => (0, 0, i64::try_from(m.checked_mul(g.n)?).ok()?, 1),
    };

    // One call per combination of the outer dims' indices.
    let outer = &dims[..inner];
    let calls = outer
        .iter()
        .try_fold(1usize, |p, d| p.checked_mul(d.size))
        .filter(|&c| c <= MAX_CUBLAS_CALLS)?;
    let mut bases = Vec::with_capacity(calls);
    for mut i in 0..calls {
        let mut at = Bases { a: 0, b: 0, c: 0 };
        for d in outer.iter().rev() {
            let x = (i % d.size) as i64;
            i /= d.size;
            at.a += x * d.a as i64;
            at.b += x * d.b as i64;
            at.c += x * d.c as i64;
        }
        bases.push(at);
    }

    let int = |x: usize| i32::try_from(x).ok();
    Some(CublasPlan::Calls {
        call: StridedBatched {
            transa,
            transb,
            m: int(g.n)?,
            n: int(m)?,
            k: int(g.k)?,
            lda,
            stride_a,
            ldb,
            stride_b,
            ldc: int(g.n)?,
            stride_c,
            batch_count: int(batch_count)?,
        },
        alpha: g.alpha,
        bases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A step over buffers 0, 1, 2 (the ids do not matter here).
    fn step(
        (m, n, k): (usize, usize, usize),
        a_strides: [isize; 2],
        b_strides: [isize; 2],
        batch: Vec<usize>,
        a_batch_strides: Vec<isize>,
        b_batch_strides: Vec<isize>,
    ) -> GemmStep {
        GemmStep {
            a: 0,
            b: 1,
            c: 2,
            dtype: DType::F32,
            m,
            n,
            k,
            batch,
            a_batch_strides,
            b_batch_strides,
            a_strides,
            b_strides,
            alpha: 1.0,
            b_stored: None,
        }
    }

    /// `c` as the CPU computes it: row-major, batch by batch, each element a
    /// sum over `l` in order.
    fn naive(g: &GemmStep, a: &[f64], b: &[f64]) -> Vec<f64> {
        let count: usize = g.batch.iter().product();
        let mut c = vec![0.0; count * g.m * g.n];
        for p in 0..count {
            let (mut oa, mut ob, mut rest) = (0isize, 0isize, p);
            for d in (0..g.batch.len()).rev() {
                let i = (rest % g.batch[d]) as isize;
                rest /= g.batch[d];
                oa += i * g.a_batch_strides[d];
                ob += i * g.b_batch_strides[d];
            }
            for i in 0..g.m {
                for j in 0..g.n {
                    let mut s = 0.0;
                    for l in 0..g.k {
                        let x = a[(oa + i as isize * g.a_strides[0] + l as isize * g.a_strides[1])
                            as usize];
                        let y = b[(ob + l as isize * g.b_strides[0] + j as isize * g.b_strides[1])
                            as usize];
                        s += x * y;
                    }
                    c[(p * g.m + i) * g.n + j] = g.alpha * s;
                }
            }
        }
        c
    }

    /// Checks the arguments as cuBLAS documents it does (`CUBLAS_STATUS_INVALID_VALUE`
    /// otherwise).
    fn check_arguments(call: &StridedBatched) {
        let min = |x: i32| x.max(1);
        assert!(call.m >= 0 && call.n >= 0 && call.k >= 0 && call.batch_count >= 0);
        let lda_min = match call.transa {
            Trans::N => min(call.m),
            Trans::T => min(call.k),
        };
        let ldb_min = match call.transb {
            Trans::N => min(call.k),
            Trans::T => min(call.n),
        };
        assert!(
            call.lda >= lda_min,
            "lda {} < {lda_min}: {call:?}",
            call.lda
        );
        assert!(
            call.ldb >= ldb_min,
            "ldb {} < {ldb_min}: {call:?}",
            call.ldb
        );
        assert!(call.ldc >= min(call.m), "ldc: {call:?}");
        assert!(call.stride_a >= 0 && call.stride_b >= 0 && call.stride_c >= 0);
    }

    /// Runs `plan` with cuBLAS's column-major semantics on host arrays (`A` is
    /// the step's `b`, `B` its `a`, `beta = 0`): every index is bounds-checked,
    /// and every element of `c` must be written exactly once.
    fn run_plan(plan: &CublasPlan, elem: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
        let mut writes = vec![0u32; c.len()];
        match plan {
            CublasPlan::Nothing => {}
            CublasPlan::Zero { bytes } => {
                assert_eq!(bytes % elem, 0);
                c[..bytes / elem].fill(0.0);
                writes[..bytes / elem].fill(1);
            }
            CublasPlan::Calls { call, alpha, bases } => {
                check_arguments(call);
                let (ma, mb) = (b, a);
                let op_a = |base: usize, i: usize, l: usize| match call.transa {
                    Trans::N => ma[base + i + l * call.lda as usize],
                    Trans::T => ma[base + l + i * call.lda as usize],
                };
                let op_b = |base: usize, l: usize, j: usize| match call.transb {
                    Trans::N => mb[base + l + j * call.ldb as usize],
                    Trans::T => mb[base + j + l * call.ldb as usize],
                };
                for at in bases {
                    for p in 0..call.batch_count as i64 {
                        let ba = (at.b + p * call.stride_a) as usize;
                        let bb = (at.a + p * call.stride_b) as usize;
                        let bc = (at.c + p * call.stride_c) as usize;
                        for i in 0..call.m as usize {
                            for j in 0..call.n as usize {
                                let mut s = 0.0;
                                for l in 0..call.k as usize {
                                    s += op_b(bb, l, j) * op_a(ba, i, l);
                                }
                                let at = bc + i + j * call.ldc as usize;
                                c[at] = alpha * s;
                                writes[at] += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            writes.iter().all(|&w| w == 1),
            "not every element of c written once: {writes:?}"
        );
    }

    /// Elements a buffer laid out with these strides needs (`sizes` and
    /// `strides` paired; 0 when a size is 0).
    fn extent(sizes: &[usize], strides: &[isize]) -> usize {
        if sizes.contains(&0) {
            return 0;
        }
        1 + sizes
            .iter()
            .zip(strides)
            .map(|(&s, &t)| (s - 1) * t as usize)
            .sum::<usize>()
    }

    /// Checks `g` against its plan (which must exist) on random values;
    /// returns the plan.
    fn check(g: &GemmStep, rng: &mut StdRng) -> CublasPlan {
        let plan = plan(g).unwrap_or_else(|| panic!("no plan for {g:?}"));
        let mut sizes_a = g.batch.clone();
        sizes_a.extend([g.m, g.k]);
        let mut strides_a = g.a_batch_strides.clone();
        strides_a.extend(g.a_strides);
        let mut sizes_b = g.batch.clone();
        sizes_b.extend([g.k, g.n]);
        let mut strides_b = g.b_batch_strides.clone();
        strides_b.extend(g.b_strides);
        let a: Vec<f64> = (0..extent(&sizes_a, &strides_a))
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let b: Vec<f64> = (0..extent(&sizes_b, &strides_b))
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let want = naive(g, &a, &b);
        let mut got = vec![f64::NAN; want.len()];
        run_plan(&plan, g.dtype.size(), &a, &b, &mut got);
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                "c[{i}] = {x}, want {y}: {g:?} {plan:?}"
            );
        }
        plan
    }

    /// Strides of a `rows × cols` matrix cuBLAS can read: row-major or
    /// column-major, padded or not, and any stride on a dim of size 1.
    fn matrix(rng: &mut StdRng, rows: usize, cols: usize) -> [isize; 2] {
        let pad = rng.random_range(0..3) as isize;
        let any = |rng: &mut StdRng| rng.random_range(0..7) as isize;
        match rng.random_range(0..4) {
            0 if rows == 1 => [any(rng), 1],
            1 if cols == 1 => [1, any(rng)],
            0 | 2 => [cols as isize + pad, 1],
            _ => [1, rows as isize + pad],
        }
    }

    /// Batch strides of an operand whose matrices span `span` elements: each
    /// dim broadcast or stored, the stored ones nested in a random order with
    /// random gaps.
    fn batch_strides(rng: &mut StdRng, batch: &[usize], span: usize) -> Vec<isize> {
        let mut strides = vec![0isize; batch.len()];
        let mut order: Vec<usize> = (0..batch.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut at = span;
        for &d in order.iter().rev() {
            if rng.random_bool(0.3) {
                continue;
            }
            at += rng.random_range(0..3);
            strides[d] = at as isize;
            at *= batch[d].max(1);
        }
        strides
    }

    #[test]
    fn random_layouts_run_as_planned() {
        let mut rng = StdRng::seed_from_u64(0x6b69_6c6e);
        let mut seen = [0usize; 8];
        for _ in 0..3000 {
            let dim = |rng: &mut StdRng| {
                if rng.random_bool(0.05) {
                    0
                } else {
                    rng.random_range(1..6)
                }
            };
            let (m, n, k) = (dim(&mut rng), dim(&mut rng), dim(&mut rng));
            let rank = rng.random_range(0..4);
            let batch: Vec<usize> = (0..rank)
                .map(|_| {
                    if rng.random_bool(0.03) {
                        0
                    } else {
                        rng.random_range(1..4)
                    }
                })
                .collect();
            let a_strides = matrix(&mut rng, m, k);
            let b_strides = matrix(&mut rng, k, n);
            let span_a = extent(&[m, k], &a_strides).max(1);
            let span_b = extent(&[k, n], &b_strides).max(1);
            let mut g = step(
                (m, n, k),
                a_strides,
                b_strides,
                batch.clone(),
                batch_strides(&mut rng, &batch, span_a),
                batch_strides(&mut rng, &batch, span_b),
            );
            g.alpha = if rng.random_bool(0.5) {
                1.0
            } else {
                rng.random_range(-2.0..2.0)
            };
            match check(&g, &mut rng) {
                CublasPlan::Nothing => seen[0] += 1,
                CublasPlan::Zero { .. } => seen[1] += 1,
                CublasPlan::Calls { call, bases, .. } => {
                    seen[2] += 1;
                    seen[3] += usize::from(bases.len() > 1);
                    seen[4] += usize::from(call.n as usize != g.m);
                    seen[5] += usize::from(call.batch_count > 1);
                    seen[6] += usize::from(call.transa == Trans::T);
                    seen[7] += usize::from(call.transb == Trans::T);
                }
            }
        }
        // Empty outputs, empty sums, products, loops of calls, batch dims
        // folded into rows, strided batches, and both transpositions of both
        // operands were all met.
        assert!(seen.iter().all(|&c| c > 20), "{seen:?}");
    }

    #[test]
    fn dense_batches_flatten_into_one_call() {
        let mut rng = StdRng::seed_from_u64(1);
        // [2, 3] batches of [4, 5] · [5, 6], both dense.
        let g = step(
            (4, 6, 5),
            [5, 1],
            [6, 1],
            vec![2, 3],
            vec![60, 20],
            vec![90, 30],
        );
        let CublasPlan::Calls { call, bases, .. } = check(&g, &mut rng) else {
            panic!("a product")
        };
        assert_eq!(bases, vec![Bases { a: 0, b: 0, c: 0 }]);
        assert_eq!(
            (call.transa, call.transb, call.m, call.n, call.k),
            (Trans::N, Trans::N, 6, 4, 5)
        );
        assert_eq!((call.lda, call.ldb, call.ldc), (6, 5, 6));
        assert_eq!((call.stride_a, call.stride_b, call.stride_c), (30, 20, 24));
        assert_eq!(call.batch_count, 6);
    }

    #[test]
    fn transposed_operands_are_read_transposed() {
        let mut rng = StdRng::seed_from_u64(2);
        // a stored as [k, m] (unit row stride), b as [n, k] with padding.
        let g = step((3, 4, 5), [1, 3], [1, 7], vec![], vec![], vec![]);
        let CublasPlan::Calls { call, .. } = check(&g, &mut rng) else {
            panic!("a product")
        };
        assert_eq!((call.transa, call.lda), (Trans::T, 7));
        assert_eq!((call.transb, call.ldb), (Trans::T, 3));
    }

    #[test]
    fn a_weight_broadcast_over_the_batch_has_stride_zero() {
        let mut rng = StdRng::seed_from_u64(3);
        // x [2, 3, m, k] · w [k, n]: the weight is the same for every product.
        let g = step(
            (4, 8, 6),
            [6, 1],
            [8, 1],
            vec![2, 3],
            vec![72, 24],
            vec![0, 0],
        );
        let CublasPlan::Calls { call, bases, .. } = check(&g, &mut rng) else {
            panic!("a product")
        };
        // b broadcast and a's matrices one after another: all rows of one product.
        assert_eq!((call.n, call.batch_count, bases.len()), (24, 1, 1));
        assert_eq!(call.stride_a, 0);
    }

    #[test]
    fn grouped_query_heads_fold_into_rows() {
        let mut rng = StdRng::seed_from_u64(4);
        // Scores of grouped-query attention as the scheduler emits them:
        // batch [b, h_kv, group], q [b, h_kv·group, s, d] dense, Kᵀ read from
        // k [b, h_kv, t, d] (rows along d, columns along keys), shared by the
        // group.
        let (b, hkv, group, s, t, d) = (2, 2, 3, 4, 5, 8);
        let hq = hkv * group;
        let q_head = (s * d) as isize;
        let k_head = (t * d) as isize;
        let mut g = step(
            (s, t, d),
            [d as isize, 1],
            [1, d as isize],
            vec![b, hkv, group],
            vec![hq as isize * q_head, group as isize * q_head, q_head],
            vec![hkv as isize * k_head, k_head, 0],
        );
        g.alpha = 0.125;
        let CublasPlan::Calls { call, bases, alpha } = check(&g, &mut rng) else {
            panic!("a product")
        };
        assert_eq!(alpha, 0.125);
        // The group's rows are one product; b × h_kv products in one batch.
        assert_eq!(
            (call.n, call.batch_count, bases.len()),
            ((group * s) as i32, 4, 1)
        );
    }

    #[test]
    fn rows_fold_only_while_a_stays_addressable() {
        let mut rng = StdRng::seed_from_u64(7);
        let (m, k, n, s) = (3, 4, 5, 2);
        // a stored as [k, s, m]: the s matrices' rows follow each other along
        // the unit stride, the leading dimension spans them all: one product.
        let g = step(
            (m, n, k),
            [1, (s * m) as isize],
            [n as isize, 1],
            vec![s],
            vec![m as isize],
            vec![0],
        );
        let CublasPlan::Calls { call, .. } = check(&g, &mut rng) else {
            panic!("a product")
        };
        assert_eq!((call.n, call.ldb, call.batch_count), ((s * m) as i32, 6, 1));
        // Overlapping matrices (column l of matrix 1 is column l + 1 of
        // matrix 0): folding would need a leading dimension below the folded
        // rows, so the batch stays a batch.
        let g = step(
            (m, n, k),
            [1, m as isize],
            [n as isize, 1],
            vec![s],
            vec![m as isize],
            vec![0],
        );
        let CublasPlan::Calls { call, .. } = check(&g, &mut rng) else {
            panic!("a product")
        };
        assert_eq!(
            (call.n, call.ldb, call.batch_count),
            (m as i32, 3, s as i32)
        );
    }

    #[test]
    fn grouped_convolution_loops_over_images() {
        let mut rng = StdRng::seed_from_u64(5);
        // Convolution as the scheduler emits it: batch [images, groups], the
        // weight broadcast over images but not over groups.
        let (images, groups, mg, kk, ohw) = (3, 2, 4, 6, 5);
        let g = step(
            (mg, ohw, kk),
            [kk as isize, 1],
            [ohw as isize, 1],
            vec![images, groups],
            vec![0, (mg * kk) as isize],
            vec![(groups * kk * ohw) as isize, (kk * ohw) as isize],
        );
        let CublasPlan::Calls { call, bases, .. } = check(&g, &mut rng) else {
            panic!("a product")
        };
        assert_eq!((call.batch_count, bases.len()), (groups as i32, images));
    }

    #[test]
    fn vectors_take_any_stride_on_their_unit_dim() {
        let mut rng = StdRng::seed_from_u64(6);
        // matmul of a 1-D a ([k]: row stride 0) and a 1-D b ([k]: column stride 0).
        let g = step((1, 1, 7), [0, 1], [1, 0], vec![], vec![], vec![]);
        check(&g, &mut rng);
        let g = step((1, 5, 7), [0, 2], [5, 1], vec![], vec![], vec![]);
        let p = check(&g, &mut rng);
        let CublasPlan::Calls { call, .. } = p else {
            panic!("a product")
        };
        assert_eq!(
            (call.transb, call.ldb),
            (Trans::T, 2),
            "a's row read with stride 2"
        );
    }

    #[test]
    fn empty_outputs_and_empty_sums() {
        let g = step((0, 3, 2), [2, 1], [3, 1], vec![], vec![], vec![]);
        assert_eq!(plan(&g), Some(CublasPlan::Nothing));
        let g = step(
            (2, 3, 2),
            [2, 1],
            [3, 1],
            vec![4, 0],
            vec![4, 1],
            vec![0, 6],
        );
        assert_eq!(plan(&g), Some(CublasPlan::Nothing));
        // k = 0: c is zeroed, as the CPU does (2 · 2 · 3 f32).
        let g = step((2, 3, 0), [0, 1], [3, 1], vec![2], vec![0], vec![0]);
        assert_eq!(plan(&g), Some(CublasPlan::Zero { bytes: 48 }));
    }

    #[test]
    fn layouts_cublas_cannot_address_are_refused() {
        let plain = |a: [isize; 2], b: [isize; 2]| step((3, 4, 5), a, b, vec![], vec![], vec![]);
        // Neither stride of a is 1.
        assert_eq!(plan(&plain([10, 2], [4, 1])), None);
        // a's rows broadcast (stride 0).
        assert_eq!(plan(&plain([0, 1], [4, 1])), None);
        // A leading dimension smaller than the dim it spans (overlapping rows).
        assert_eq!(plan(&plain([2, 1], [4, 1])), None);
        assert_eq!(plan(&plain([5, 1], [1, 3])), None);
        // Negative strides.
        assert_eq!(plan(&plain([-5, 1], [4, 1])), None);
        let g = step((3, 4, 5), [5, 1], [4, 1], vec![2], vec![-15], vec![0]);
        assert_eq!(plan(&g), None);
        // An element type cuBLAS is not asked for here.
        let mut g = plain([5, 1], [4, 1]);
        g.dtype = DType::BF16;
        assert_eq!(plan(&g), None);
        // Batch strides that do not match the batch dims.
        let g = step((3, 4, 5), [5, 1], [4, 1], vec![2], vec![15], vec![]);
        assert_eq!(plan(&g), None);
        // Too many calls: outer dims that never flatten.
        let many = MAX_CUBLAS_CALLS + 1;
        let g = step(
            (2, 2, 2),
            [2, 1],
            [2, 1],
            vec![many, 2],
            vec![0, 4],
            vec![0, 4],
        );
        assert_eq!(plan(&g), None);
    }
}
