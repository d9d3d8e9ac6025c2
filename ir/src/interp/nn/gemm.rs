//! A blocked, rayon-parallel f64 matrix product: the engine of `MatMul`, `Conv`,
//! `ConvTranspose` and large `Einsum`s in the reference interpreter.
//!
//! Products of f32 (or narrower) values are exact in f64, and sums accumulate in
//! f64, so results are as exact as the oracle needs. B is packed once into column
//! panels of [`NR`] values; rows of A are processed [`MR`] at a time against each
//! panel in [`KC`]-deep slices so that a panel slice stays in L1.

use rayon::prelude::*;

/// Rows of C computed together by the micro-kernel.
const MR: usize = 4;
/// Columns of C computed together by the micro-kernel (one packed panel).
const NR: usize = 8;
/// Depth of one slice of the inner dimension.
const KC: usize = 256;
/// Rows of A handed to one rayon task.
const ROWS_PER_TASK: usize = 32;

/// B (`k × n`) packed into panels of [`NR`] columns: panel `j`, row `p` holds
/// `B[p][j·NR .. j·NR + NR]` (zero-padded past `n`).
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f64>,
}

impl PackedB {
    /// Packs B given by an element accessor `get(p, j)` (`p < k`, `j < n`).
    pub(crate) fn new(k: usize, n: usize, get: impl Fn(usize, usize) -> f64) -> PackedB {
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0; panels * k * NR];
        for jp in 0..panels {
            let base = jp * k * NR;
            for p in 0..k {
                for c in 0..NR {
                    let j = jp * NR + c;
                    if j < n {
                        data[base + p * NR + c] = get(p, j);
                    }
                }
            }
        }
        PackedB { k, n, data }
    }

    /// Packs a row-major `k × n` matrix.
    pub(crate) fn from_row_major(k: usize, n: usize, b: &[f64]) -> PackedB {
        PackedB::new(k, n, |p, j| b[p * n + j])
    }
}

#[inline(always)]
fn kernel<const FMA: bool, const R: usize>(
    a: &[f64],
    lda: usize,
    panel: &[f64],
    k0: usize,
    k1: usize,
    acc: &mut [[f64; NR]; MR],
) {
    for p in k0..k1 {
        let b: &[f64; NR] = panel[p * NR..p * NR + NR].try_into().expect("panel row");
        for r in 0..R {
            let av = a[r * lda + p];
            let row = &mut acc[r];
            for c in 0..NR {
                row[c] = if FMA {
                    av.mul_add(b[c], row[c])
                } else {
                    row[c] + av * b[c]
                };
            }
        }
    }
}

#[inline(always)]
fn rows_generic<const FMA: bool>(a: &[f64], rows: usize, b: &PackedB, out: &mut [f64]) {
    let (k, n) = (b.k, b.n);
    let panels = n.div_ceil(NR);
    let mut k0 = 0;
    while k0 < k.max(1) {
        let k1 = (k0 + KC).min(k);
        for jp in 0..panels {
            let panel = &b.data[jp * k * NR..(jp + 1) * k * NR];
            let cols = NR.min(n - jp * NR);
            let mut i = 0;
            while i < rows {
                let r = MR.min(rows - i);
                let mut acc = [[0.0f64; NR]; MR];
                let a_rows = &a[i * k..];
                match r {
                    4 => kernel::<FMA, 4>(a_rows, k, panel, k0, k1, &mut acc),
                    3 => kernel::<FMA, 3>(a_rows, k, panel, k0, k1, &mut acc),
                    2 => kernel::<FMA, 2>(a_rows, k, panel, k0, k1, &mut acc),
                    _ => kernel::<FMA, 1>(a_rows, k, panel, k0, k1, &mut acc),
                }
                for (rr, acc_row) in acc.iter().enumerate().take(r) {
                    let o = &mut out[(i + rr) * n + jp * NR..(i + rr) * n + jp * NR + cols];
                    for (x, v) in o.iter_mut().zip(acc_row) {
                        *x += v;
                    }
                }
                i += MR;
            }
        }
        if k == 0 {
            break;
        }
        k0 = k1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_fma(a: &[f64], rows: usize, b: &PackedB, out: &mut [f64]) {
    rows_generic::<true>(a, rows, b, out)
}

/// `out += A · B` for `rows` rows of A (row-major, `rows × k`, contiguous) and
/// `out` (`rows × n`, row-major). Single-threaded.
pub(crate) fn gemm_rows(a: &[f64], rows: usize, b: &PackedB, out: &mut [f64]) {
    debug_assert!(a.len() >= rows * b.k && out.len() >= rows * b.n);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { rows_fma(a, rows, b, out) };
            return;
        }
    }
    rows_generic::<false>(a, rows, b, out)
}

/// `A · B` for a row-major `m × k` A; returns the row-major `m × n` product.
/// Parallel over blocks of rows.
pub(crate) fn gemm(a: &[f64], m: usize, b: &PackedB) -> Vec<f64> {
    let (k, n) = (b.k, b.n);
    let mut out = vec![0.0; m * n];
    if n == 0 || m == 0 {
        return out;
    }
    let work = m * n * k.max(1);
    if work < 1 << 16 {
        gemm_rows(a, m, b, &mut out);
        return out;
    }
    out.par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each(|(t, o)| {
            let r0 = t * ROWS_PER_TASK;
            let rows = o.len() / n;
            gemm_rows(&a[r0 * k..(r0 + rows) * k], rows, b, o);
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_ragged_shapes() {
        for &(m, k, n) in &[(1, 1, 1), (5, 3, 9), (37, 300, 17), (70, 513, 8), (3, 0, 4)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
            let got = gemm(&a, m, &PackedB::from_row_major(k, n, &b));
            assert_eq!(got, naive(&a, &b, m, k, n), "{m}x{k}x{n}");
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -p kiln-ir gemm_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gemm_speed() {
        let (m, k, n) = (8192, 576, 64);
        let a = vec![0.5; m * k];
        let b = PackedB::from_row_major(k, n, &vec![0.25; k * n]);
        let t = std::time::Instant::now();
        let mut out = vec![0.0; m * n];
        gemm_rows(&a, m, &b, &mut out);
        let s = t.elapsed().as_secs_f64();
        println!(
            "gemm one thread: {:.2} GFLOP/s",
            2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
}
