//! A GEMM for bf16 weights on CPUs with AVX-512 BF16: `c = alpha · a·b` with
//! `a` f32 (rounded to bf16 as it is packed, round-to-nearest-even), `b` bf16
//! and f32 accumulation, through `vdpbf16ps` (two products per f32 lane per
//! instruction: twice the multiply-adds of an f32 FMA).
//!
//! This is the precision a bf16 model's own framework computes in (its
//! activations are bf16 too); an f32 model never comes here, and
//! [`DISABLE_ENV`] keeps the f32 activations of a bf16 model exact.
//!
//! Blocking (GotoBLAS order): `a` is packed once for the whole `k` into panels
//! of [`MR`] rows, each `k`-pair of a row one 32-bit word; `b` is packed per
//! block of [`KC`] × [`NC`] into panels of [`NR`] columns, each `k`-pair of a
//! column one word; the micro-kernel keeps an `MR × NR` tile of `c` in 24
//! registers while it walks a block's pairs.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Environment variable that, set to `0`, keeps bf16-weight GEMMs in f32
/// (weights widened, activations not rounded).
pub const DISABLE_ENV: &str = "KILN_BF16_DOT";

/// Rows of the micro-kernel's tile.
pub const MR: usize = 12;
/// Columns of the micro-kernel's tile (two 16-lane registers).
pub const NR: usize = 32;
/// `k` per packed block of `b` (even): `KC × NC` bf16 = 256 KiB, in L2.
pub const KC: usize = 512;
/// Columns per packed block of `b` (a multiple of [`NR`]).
pub const NC: usize = 256;

/// Whether this CPU runs the kernel and the user allows it: AVX-512 F/BW/VL
/// and BF16 detected, generated code not capped below AVX-512
/// (`KILN_CPU_ISA`), and [`DISABLE_ENV`] not `0`.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let allowed = std::env::var(DISABLE_ENV).map_or(true, |v| v.trim() != "0");
        let capped = matches!(
            kiln_codegen::llvm::isa::isa_cap(),
            Ok(Some(kiln_codegen::llvm::isa::IsaLevel::V3))
        );
        allowed && !capped && cpu_runs_it()
    })
}

/// Whether the CPU has the instructions (regardless of the user's choices).
pub fn cpu_runs_it() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `f` rounded to bf16 (nearest, ties to even; NaN stays NaN), as bits.
#[inline(always)]
fn to_bf16(f: f32) -> u32 {
    u32::from(half::bf16::from_f32(f).to_bits())
}

/// Operands of one product: `c[i, j] = alpha · Σ a[i, p]·b[p, j]` for
/// `i < m`, `j < n`, `p < k`.
#[derive(Clone, Copy, Debug)]
pub struct Operands {
    /// Rows of `a` and `c`.
    pub m: usize,
    /// Columns of `b` and `c`.
    pub n: usize,
    /// Columns of `a`, rows of `b`.
    pub k: usize,
    /// `a` (f32) and its row and column strides, in elements.
    pub a: (*const f32, isize, isize),
    /// `b` (bf16 bits) and its row and column strides, in elements.
    pub b: (*const u16, isize, isize),
    /// `c` (f32, dense rows) and its row stride, in elements.
    pub c: (*mut f32, isize),
    /// Scale of the product.
    pub alpha: f32,
}

/// Computes the product ([`Operands`]); overwrites `c`.
///
/// # Safety
/// The pointers address the elements the strides describe, `c` does not
/// overlap `a` or `b`, and [`cpu_runs_it`] holds.
pub unsafe fn gemm(op: &Operands) {
    if op.m == 0 || op.n == 0 {
        return;
    }
    if op.k == 0 {
        for i in 0..op.m {
            for j in 0..op.n {
                // SAFETY: inside c (caller's contract).
                unsafe { *op.c.0.offset(i as isize * op.c.1 + j as isize) = 0.0 };
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked the CPU; the pointers are the caller's.
    unsafe {
        gemm_avx512(op)
    }
}

/// Pairs of `k` (rounded up).
fn pairs(k: usize) -> usize {
    k.div_ceil(2)
}

/// `a` packed for the whole `k`: panel `r` (rows `r·MR ..`) holds, for each
/// pair `p`, the words of its `MR` rows; rows and pairs past the end are 0.
///
/// # Safety
/// `a` addresses the elements of `op`; the CPU has AVX-512 BF16.
#[cfg_attr(
    target_arch = "x86_64",
    target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")
)]
unsafe fn pack_a(op: &Operands) -> Vec<u32> {
    let (kp, panels) = (pairs(op.k), op.m.div_ceil(MR));
    let mut out = vec![0u32; panels * kp * MR];
    let (a, rs, cs) = op.a;
    for i in 0..op.m {
        let (panel, lane) = (i / MR, i % MR);
        let base = panel * kp * MR + lane;
        // SAFETY (all reads): elements of row i of a (caller's contract).
        let row = unsafe { a.offset(i as isize * rs) };
        let mut p = 0;
        // Rows contiguous: 32 elements (16 pairs) rounded at a time.
        #[cfg(target_arch = "x86_64")]
        if cs == 1 {
            let mut words = [0u32; 16];
            while 2 * p + 32 <= op.k {
                unsafe {
                    let lo = _mm512_loadu_ps(row.add(2 * p));
                    let hi = _mm512_loadu_ps(row.add(2 * p + 16));
                    let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_storeu_si512(words.as_mut_ptr() as *mut _, packed);
                }
                for (w, &v) in words.iter().enumerate() {
                    out[base + (p + w) * MR] = v;
                }
                p += 16;
            }
        }
        for p in p..kp {
            let k0 = 2 * p;
            let (lo, hi) = unsafe {
                let lo = *row.offset(k0 as isize * cs);
                let hi = if k0 + 1 < op.k {
                    *row.offset((k0 + 1) as isize * cs)
                } else {
                    0.0
                };
                (lo, hi)
            };
            out[base + p * MR] = to_bf16(lo) | (to_bf16(hi) << 16);
        }
    }
    out
}

/// Where pair `p`, column `j` of a block of `b` goes in the packed block:
/// `k` is cut into blocks of [`KC`]`/2` pairs, each holding panels of [`NR`]
/// columns, each panel the pairs of its block one after the other.
#[inline(always)]
fn packed_index(p: usize, j: usize, kp_all: usize) -> usize {
    let kc = KC / 2;
    let (blk, pl) = (p / kc, p % kc);
    let kpb = (kp_all - blk * kc).min(kc);
    blk * kc * NC + (j / NR) * kpb * NR + pl * NR + j % NR
}

/// Packs columns `j0 .. j0 + nb` of `b` over the whole `k` into `out`
/// ([`packed_index`] order); entries past `k` or `n` are 0. Each stored row or
/// column of `b` is read front to back once (streams the prefetcher follows).
///
/// # Safety
/// `b` addresses the elements of `op`; the CPU has AVX-512 F.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn pack_b(op: &Operands, j0: usize, nb: usize, out: &mut [u32]) {
    let (b, rs, cs) = op.b;
    let kp_all = pairs(op.k);
    out.fill(0);
    let full = op.k / 2;
    // SAFETY (all reads below): rows < k of columns j0 .. j0 + nb of b
    // (caller's contract).
    if rs == 1 {
        // Along k contiguous (`x·Wᵀ`): a pair is one unaligned 32-bit word;
        // 16 columns × 16 pairs at a time are transposed in registers.
        let kc = KC / 2;
        let (groups, tiles) = (nb / 16, full / 16);
        #[cfg(target_arch = "x86_64")]
        for g in 0..groups {
            let j = 16 * g;
            for t in 0..tiles {
                let p = 16 * t;
                // SAFETY: 16 pairs (32 elements) of 16 columns, inside b.
                unsafe {
                    let rows: [__m512i; 16] = std::array::from_fn(|r| {
                        let col = b.offset((j0 + j + r) as isize * cs) as *const u32;
                        _mm512_loadu_si512(col.add(p) as *const _)
                    });
                    let cols = transpose16(rows);
                    for (c, v) in cols.iter().enumerate() {
                        let at = packed_index(p + c, j, kp_all);
                        _mm512_storeu_si512(out.as_mut_ptr().add(at) as *mut _, *v);
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let (groups, tiles) = (0, 0);
        // What the tiles left: the last columns, and the last pairs of all.
        for j in 0..nb {
            let col = unsafe { b.offset((j0 + j) as isize * cs) } as *const u32;
            let from = if j < 16 * groups { 16 * tiles } else { 0 };
            let mut p0 = from;
            while p0 < full {
                // Up to the end of p0's block of k.
                let p1 = ((p0 / kc + 1) * kc).min(full);
                let base = packed_index(p0, j, kp_all);
                for (pl, p) in (p0..p1).enumerate() {
                    out[base + pl * NR] = unsafe { col.add(p).read_unaligned() };
                }
                p0 = p1;
            }
            if full < kp_all {
                let last = unsafe { *(col as *const u16).add(2 * full) };
                out[packed_index(full, j, kp_all)] = u32::from(last);
            }
        }
    } else if cs == 1 {
        // Rows contiguous (`x·W`): interleave rows 2p and 2p + 1.
        for p in 0..kp_all {
            let lo = unsafe { b.offset(2 * p as isize * rs + j0 as isize) };
            let hi = (2 * p + 1 < op.k).then(|| unsafe { lo.offset(rs) });
            for j in 0..nb {
                let l = u32::from(unsafe { *lo.add(j) });
                let h = hi.map_or(0, |h| u32::from(unsafe { *h.add(j) }));
                out[packed_index(p, j, kp_all)] = l | (h << 16);
            }
        }
    } else {
        for j in 0..nb {
            let col = unsafe { b.offset((j0 + j) as isize * cs) };
            for p in 0..kp_all {
                let kk = 2 * p;
                let lo = u32::from(unsafe { *col.offset(kk as isize * rs) });
                let hi = if kk + 1 < op.k {
                    u32::from(unsafe { *col.offset((kk + 1) as isize * rs) })
                } else {
                    0
                };
                out[packed_index(p, j, kp_all)] = lo | (hi << 16);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn gemm_avx512(op: &Operands) {
    let kp_all = pairs(op.k);
    // SAFETY: the caller's operands and CPU.
    let packed_a = unsafe { pack_a(op) };
    let kc_pairs = KC / 2;
    let mut packed_b = vec![0u32; kp_all * NC];
    let (c, ldc) = op.c;
    for j0 in (0..op.n).step_by(NC) {
        let nb = (op.n - j0).min(NC);
        // SAFETY: the caller's operands.
        unsafe { pack_b(op, j0, nb, &mut packed_b) };
        for p0 in (0..kp_all).step_by(kc_pairs) {
            let kp = (kp_all - p0).min(kc_pairs);
            let block = &packed_b[p0 * NC..];
            let first = p0 == 0;
            for i0 in (0..op.m).step_by(MR) {
                let rows = (op.m - i0).min(MR);
                let a_panel = &packed_a[(i0 / MR) * kp_all * MR + p0 * MR..];
                for q0 in (0..nb).step_by(NR) {
                    let cols = (nb - q0).min(NR);
                    let b_panel = &block[(q0 / NR) * kp * NR..];
                    // SAFETY: the tile lies inside c; the panels hold kp pairs.
                    unsafe {
                        tile(
                            a_panel.as_ptr(),
                            b_panel.as_ptr(),
                            kp,
                            c.offset(i0 as isize * ldc + (j0 + q0) as isize),
                            ldc,
                            (rows, cols),
                            op.alpha,
                            first,
                        )
                    };
                }
            }
        }
    }
}

/// Transposes a 16 × 16 matrix of 32-bit words held one row per register
/// (unpack within 128-bit lanes, then two rounds of lane shuffles).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // t: rows 2i, 2i+1 interleaved by words; u[4g + c], lane L: column 4L + c
    // of rows 4g .. 4g + 4.
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + c / 2], t[4 * g + 2 + c / 2]);
        if c % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_i32x4::<0xDD>(u[c], u[4 + c]);
        let w0 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
        let w1 = _mm512_shuffle_i32x4::<0xDD>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
        out[8 + c] = _mm512_shuffle_i32x4::<0xDD>(v0, w0);
        out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
        out[12 + c] = _mm512_shuffle_i32x4::<0xDD>(v1, w1);
    }
    out
}

/// The micro-kernel: `c[0..rows, 0..cols] (+)= alpha · A·B` over `kp` pairs of
/// an `a` panel (`MR` words per pair) and a `b` panel (`NR` words per pair);
/// `first` overwrites `c` instead of adding to it.
///
/// # Safety
/// The panels hold `kp` pairs; `c` addresses `rows × cols` elements at row
/// stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    a: *const u32,
    b: *const u32,
    kp: usize,
    c: *mut f32,
    ldc: isize,
    (rows, cols): (usize, usize),
    alpha: f32,
    first: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kp {
        // SAFETY: pair p of both panels.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR) as *const _));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16) as *const _));
            let ap = a.add(p * MR);
            for (i, row) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(i) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
            }
        }
    }
    let scale = _mm512_set1_ps(alpha);
    let mask = |lo: usize| -> __mmask16 {
        let n = cols.saturating_sub(lo).min(16);
        if n == 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let (m0, m1) = (mask(0), mask(16));
    for (i, row) in acc.iter().enumerate().take(rows) {
        // SAFETY: row i of the tile, the masked lanes inside c.
        unsafe {
            let dst = c.offset(i as isize * ldc);
            for (h, (&v, m)) in row.iter().zip([m0, m1]).enumerate() {
                if m == 0 {
                    continue;
                }
                let at = dst.add(16 * h);
                let mut v = _mm512_mul_ps(v, scale);
                if !first {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, at));
                }
                _mm512_mask_storeu_ps(at, m, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic value in [-1, 1) for index `i` of stream `s`.
    fn value(s: u64, i: usize) -> f32 {
        let mut x = (i as u64 ^ (s << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        (x % 2000) as f32 / 1000.0 - 1.0
    }

    /// The kernel equals the f64 product of the bf16-rounded operands (to f32
    /// summation error), for shapes with partial tiles and blocks, odd `k`,
    /// and `b` stored along either axis.
    #[test]
    fn matches_the_rounded_product() {
        if !cpu_runs_it() {
            eprintln!("NOTE: this CPU has no AVX-512 BF16: the bf16 dot-product GEMM was not run");
            return;
        }
        for (m, n, k) in [
            (1, 1, 1),
            (13, 33, 7),
            (12, 32, 1024),
            (29, 300, 1031),
            (5, 600, 64),
        ] {
            for transposed in [false, true] {
                let a: Vec<f32> = (0..m * k).map(|i| value(1, i)).collect();
                let b: Vec<u16> = (0..k * n)
                    .map(|i| half::bf16::from_f32(value(2, i)).to_bits())
                    .collect();
                let (b_rs, b_cs) = if transposed {
                    (1, k as isize)
                } else {
                    (n as isize, 1)
                };
                let mut c = vec![f32::NAN; m * n];
                let op = Operands {
                    m,
                    n,
                    k,
                    a: (a.as_ptr(), k as isize, 1),
                    b: (b.as_ptr(), b_rs, b_cs),
                    c: (c.as_mut_ptr(), n as isize),
                    alpha: 0.5,
                };
                // SAFETY: the buffers hold the shapes; the CPU was checked.
                unsafe { gemm(&op) };
                for i in 0..m {
                    for j in 0..n {
                        let (mut want, mut mag) = (0f64, 0f64);
                        for p in 0..k {
                            let x = f64::from(half::bf16::from_f32(a[i * k + p]).to_f32());
                            let bi = (p as isize * b_rs + j as isize * b_cs) as usize;
                            let w = f64::from(half::bf16::from_bits(b[bi]).to_f32());
                            want += x * w;
                            mag += (x * w).abs();
                        }
                        want *= 0.5;
                        let got = f64::from(c[i * n + j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * mag + 1e-6,
                            "{m}×{n}×{k} transposed {transposed} at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
