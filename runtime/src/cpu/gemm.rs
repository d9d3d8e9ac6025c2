//! GEMM steps through the `gemm` crate (packed, cache-blocked, vectorized
//! micro-kernels for the host's SIMD width, selected at run time).
//!
//! Batched products split across threads by batch when there are at least as
//! many products as threads (each product then runs on one thread); otherwise
//! each product is cut into one block of columns (or rows, when it is taller
//! than wide) per thread. The library's own threading leaves transformer-sized
//! products (128 rows) on one thread, hence the explicit split.

use gemm::Parallelism;
use kiln_codegen::program::GemmStep;
use kiln_ir::DType;
use rayon::prelude::*;

/// The instruction set the GEMM library's kernels use on this CPU: it picks
/// them itself, by the CPU's features, once per process (`KILN_CPU_ISA` does
/// not reach it).
pub fn library_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2+fma"
        } else {
            "scalar"
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "the library's choice"
    }
}

/// Products with fewer multiply-adds than this run on one thread.
pub const MIN_SPLIT_WORK: usize = 1 << 18;

/// Columns (or rows) of a block are a multiple of this (the micro-kernels'
/// register tile width).
const BLOCK_ALIGN: usize = 16;

/// Element offsets of batch entry `b` in `a` and `b`.
fn batch_offsets(g: &GemmStep, mut b: usize) -> (isize, isize) {
    let (mut oa, mut ob) = (0isize, 0isize);
    for d in (0..g.batch.len()).rev() {
        let i = (b % g.batch[d]) as isize;
        b /= g.batch[d];
        oa += i * g.a_batch_strides[d];
        ob += i * g.b_batch_strides[d];
    }
    (oa, ob)
}

/// Element offsets in `a`, `b` and `c` of the block of product `batch` that
/// starts at row `r0` and column `c0`.
fn block_offsets(g: &GemmStep, batch: usize, r0: usize, c0: usize) -> (isize, isize, isize) {
    let (oa, ob) = batch_offsets(g, batch);
    (
        oa + r0 as isize * g.a_strides[0],
        ob + c0 as isize * g.b_strides[1],
        (batch * g.m * g.n + r0 * g.n + c0) as isize,
    )
}

#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
// SAFETY: each block writes a disjoint part of the output.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// Rows `rows` and columns `cols` of product `batch`: `c[b] = alpha · a[b]·b[b]`.
///
/// # Safety
/// The pointers address buffers laid out as `g` describes.
#[allow(clippy::too_many_arguments)]
unsafe fn product<T: 'static + Copy>(
    g: &GemmStep,
    a: *const T,
    b: *const T,
    c: *mut T,
    batch: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
    alpha: T,
    zero: T,
) {
    if r0 >= r1 || c0 >= c1 {
        return;
    }
    let (oa, ob, oc) = block_offsets(g, batch, r0, c0);
    // SAFETY: offsets stay inside the buffers (strides come from their shapes).
    unsafe {
        gemm::gemm(
            r1 - r0,
            c1 - c0,
            g.k,
            c.offset(oc),
            1,
            g.n as isize,
            false,
            a.offset(oa),
            g.a_strides[1],
            g.a_strides[0],
            b.offset(ob),
            g.b_strides[1],
            g.b_strides[0],
            zero,
            alpha,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Columns of `b` packed at a time, per thread, by [`product_packed_b`]: the
/// `k × PACK_BLOCK_COLS` f32 block stays in cache while the GEMM reads it (a
/// multiple of [`BLOCK_ALIGN`]).
const PACK_BLOCK_COLS: usize = 256;

/// Rows of `k` transposed at a time when packing a `b` stored along `k`: the
/// destination lines of one tile stay in L1.
const PACK_TILE_K: usize = 64;

/// Columns transposed at a time: source rows a power-of-two apart share L1
/// sets, so a tile reads few of them (8 of 12 ways).
const PACK_TILE_J: usize = 8;

/// Padding (f32 elements) of each packed row beyond its `nb` columns: a
/// power-of-two row length would map a column onto a few L1 sets.
const PACK_ROW_PAD: usize = 16;

/// Products of at least this many rows pack an f32 `b` that is contiguous
/// along `k` (`x·Wᵀ`) into row-major blocks: the GEMM library runs such a `b`
/// at half speed or less (measured 83 vs 182 GFLOP/s at 128×2048×5632 on one
/// Zen 5 core), while packing costs one pass over `b` per run (amortized over
/// the rows).
pub const PACK_TRANSPOSED_MIN_ROWS: usize = 16;

std::thread_local! {
    /// Each thread's packed block of `b` (reused across steps and runs).
    static PACKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How `b`'s elements are stored: f32, or f16/bf16 bits widened as read.
#[derive(Clone, Copy)]
enum Stored {
    F32,
    F16,
    Bf16,
}

impl Stored {
    /// `dst.len()` contiguous elements of `src` as f32.
    ///
    /// # Safety
    /// `src` addresses that many elements.
    unsafe fn load_run(self, src: *const u8, dst: &mut [f32]) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        let n = dst.len();
        // SAFETY: caller's contract.
        unsafe {
            match self {
                Stored::F32 => {
                    dst.copy_from_slice(std::slice::from_raw_parts(src as *const f32, n))
                }
                Stored::F16 => std::slice::from_raw_parts(src as *const u16, n)
                    .reinterpret_cast::<half::f16>()
                    .convert_to_f32_slice(dst),
                Stored::Bf16 => {
                    let bits = std::slice::from_raw_parts(src as *const u16, n);
                    for (d, &b) in dst.iter_mut().zip(bits) {
                        *d = f32::from_bits(u32::from(b) << 16);
                    }
                }
            }
        }
    }
}

/// [`product`] for an f32 GEMM whose `b` is packed first, block by block of
/// [`PACK_BLOCK_COLS`] columns, into the thread's row-major f32 buffer: a `b`
/// stored in f16/bf16 ([`GemmStep::b_stored`], widened as packed) or an f32
/// `b` contiguous along `k` (transposed as packed, in [`PACK_TILE_K`] tiles).
///
/// # Safety
/// As [`product`]; `b` holds elements of `stored` laid out as `g` describes.
#[allow(clippy::too_many_arguments)]
unsafe fn product_packed_b(
    g: &GemmStep,
    stored: Stored,
    a: *const f32,
    b: *const u8,
    c: *mut f32,
    batch: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
    alpha: f32,
) {
    if r0 >= r1 || c0 >= c1 {
        return;
    }
    // Offsets of the block's first row and of column 0 (blocks add j0 below).
    let (oa, ob, oc) = block_offsets(g, batch, r0, 0);
    let [rs, cs] = g.b_strides;
    let k = g.k;
    let size = match stored {
        Stored::F32 => 4,
        Stored::F16 | Stored::Bf16 => 2,
    };
    PACKED.with(|cell| {
        let mut block = cell.borrow_mut();
        for j0 in (c0..c1).step_by(PACK_BLOCK_COLS) {
            let nb = (c1 - j0).min(PACK_BLOCK_COLS);
            // Rows of the block are PACK_ROW_PAD floats longer than nb, so that
            // a column's elements do not all fall into a few L1 sets.
            let ld = nb + PACK_ROW_PAD;
            block.resize(k * ld, 0.0);
            let base = ob + j0 as isize * cs;
            // SAFETY: every element read is b[kk, j0 + j] for kk < k, j < nb.
            unsafe {
                if cs == 1 {
                    for (kk, row) in block.chunks_exact_mut(ld).take(k).enumerate() {
                        let src = b.offset((base + kk as isize * rs) * size);
                        stored.load_run(src, &mut row[..nb]);
                    }
                } else {
                    match stored {
                        Stored::F32 => transpose_into::<0>(&mut block, b, base, rs, cs, k, nb, ld),
                        Stored::F16 => transpose_into::<1>(&mut block, b, base, rs, cs, k, nb, ld),
                        Stored::Bf16 => transpose_into::<2>(&mut block, b, base, rs, cs, k, nb, ld),
                    }
                }
            }
            // SAFETY: offsets stay inside the buffers; the block holds k × nb.
            unsafe {
                gemm::gemm(
                    r1 - r0,
                    nb,
                    k,
                    c.offset(oc + j0 as isize),
                    1,
                    g.n as isize,
                    false,
                    a.offset(oa),
                    g.a_strides[1],
                    g.a_strides[0],
                    block.as_ptr(),
                    1,
                    ld as isize,
                    0.0,
                    alpha,
                    false,
                    false,
                    false,
                    Parallelism::None,
                )
            }
        }
    });
}

/// Packs `b[kk, j]` (element `base + kk·rs + j·cs`) for `kk < k`, `j < nb`
/// into `block[kk·ld + j]`, in tiles of [`PACK_TILE_K`] × [`PACK_TILE_J`] so
/// that both the source rows and the destination lines of a tile stay in L1.
/// `KIND` is the element type: 0 f32, 1 f16, 2 bf16 (a constant, so the
/// conversion is chosen once per tile loop).
///
/// # Safety
/// `b` addresses every such element.
#[allow(clippy::too_many_arguments)]
unsafe fn transpose_into<const KIND: u8>(
    block: &mut [f32],
    b: *const u8,
    base: isize,
    rs: isize,
    cs: isize,
    k: usize,
    nb: usize,
    ld: usize,
) {
    assert!(ld >= nb && block.len() >= k * ld);
    let load = |i: isize| -> f32 {
        // SAFETY: caller's contract.
        unsafe {
            match KIND {
                0 => *(b as *const f32).offset(i),
                1 => half::f16::from_bits(*(b as *const u16).offset(i)).to_f32(),
                _ => f32::from_bits(u32::from(*(b as *const u16).offset(i)) << 16),
            }
        }
    };
    let dst = block.as_mut_ptr();
    for k0 in (0..k).step_by(PACK_TILE_K) {
        let k1 = (k0 + PACK_TILE_K).min(k);
        for j0 in (0..nb).step_by(PACK_TILE_J) {
            let j1 = (j0 + PACK_TILE_J).min(nb);
            for j in j0..j1 {
                let col = base + j as isize * cs;
                for kk in k0..k1 {
                    // SAFETY: kk·ld + j < k·ld ≤ block.len().
                    unsafe { *dst.add(kk * ld + j) = load(col + kk as isize * rs) };
                }
            }
        }
    }
}

/// [`product`] for an f32 GEMM with a bf16 `b` on a CPU with AVX-512 BF16:
/// the bf16 dot-product kernel ([`super::bf16_dot`]).
///
/// # Safety
/// As [`product_packed_b`].
#[allow(clippy::too_many_arguments)]
unsafe fn product_bf16_dot(
    g: &GemmStep,
    a: *const f32,
    b: *const u16,
    c: *mut f32,
    batch: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) {
    if r0 >= r1 || c0 >= c1 {
        return;
    }
    let (oa, ob, oc) = block_offsets(g, batch, r0, c0);
    // SAFETY: offsets stay inside the buffers (caller's contract).
    unsafe {
        super::bf16_dot::gemm(&super::bf16_dot::Operands {
            m: r1 - r0,
            n: c1 - c0,
            k: g.k,
            a: (a.offset(oa), g.a_strides[0], g.a_strides[1]),
            b: (b.offset(ob), g.b_strides[0], g.b_strides[1]),
            c: (c.offset(oc), g.n as isize),
            alpha: g.alpha as f32,
        })
    }
}

/// How [`run`] reads `g`'s `b`: packed (and how it is stored) or directly.
fn packing(g: &GemmStep) -> Option<Stored> {
    match (g.dtype, g.b_stored) {
        (DType::F32, Some(DType::F16)) => Some(Stored::F16),
        (DType::F32, Some(DType::BF16)) => Some(Stored::Bf16),
        (DType::F32, None)
            if g.m >= PACK_TRANSPOSED_MIN_ROWS
                && g.n >= BLOCK_ALIGN
                && g.b_strides[0].abs() < g.b_strides[1].abs() =>
        {
            Some(Stored::F32)
        }
        _ => None,
    }
}

/// The `i`-th of `parts` aligned blocks of `0..len`.
fn block(len: usize, parts: usize, i: usize) -> (usize, usize) {
    let size = len.div_ceil(parts).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    ((i * size).min(len), ((i + 1) * size).min(len))
}

/// Runs `g` over the step's pointers with `threads` threads; `avx512_kernels`
/// allows the hand-written AVX-512 kernels (the bf16 dot-product GEMM).
pub fn run(g: &GemmStep, ptrs: &[*mut u8], threads: usize, avx512_kernels: bool) {
    let count = g.batch_count();
    if count == 0 || g.m == 0 || g.n == 0 {
        return;
    }
    let (a, b, c) = (SendPtr(ptrs[g.a]), SendPtr(ptrs[g.b]), SendPtr(ptrs[g.c]));
    if g.k == 0 {
        let bytes = count * g.m * g.n * g.dtype.size();
        // SAFETY: `c` holds the dense output.
        unsafe { std::ptr::write_bytes(c.0, 0, bytes) };
        return;
    }
    let by_batch = threads > 1 && count >= threads;
    let work = g.m * g.n * g.k;
    let parts = if threads > 1 && !by_batch && work >= MIN_SPLIT_WORK {
        threads
    } else {
        1
    };
    let split_cols = g.n >= g.m;
    let pack = packing(g);
    let bf16_dot =
        avx512_kernels && matches!(pack, Some(Stored::Bf16)) && super::bf16_dot::available();
    let range = |part: usize| {
        if parts == 1 {
            ((0, g.m), (0, g.n))
        } else if split_cols {
            ((0, g.m), block(g.n, parts, part))
        } else {
            (block(g.m, parts, part), (0, g.n))
        }
    };
    macro_rules! go {
        ($t:ty, $alpha:expr, $zero:expr) => {{
            let one = |i: usize, part: usize| {
                let (a, b, c) = (a, b, c);
                let (rows, cols) = range(part);
                // SAFETY: the program sized the buffers for this product.
                unsafe {
                    match pack {
                        Some(Stored::Bf16) if bf16_dot => product_bf16_dot(
                            g,
                            a.0 as *const f32,
                            b.0 as *const u16,
                            c.0 as *mut f32,
                            i,
                            rows,
                            cols,
                        ),
                        Some(stored) => product_packed_b(
                            g,
                            stored,
                            a.0 as *const f32,
                            b.0 as *const u8,
                            c.0 as *mut f32,
                            i,
                            rows,
                            cols,
                            g.alpha as f32,
                        ),
                        None => product::<$t>(
                            g,
                            a.0 as *const $t,
                            b.0 as *const $t,
                            c.0 as *mut $t,
                            i,
                            rows,
                            cols,
                            $alpha,
                            $zero,
                        ),
                    }
                }
            };
            if by_batch {
                (0..count).into_par_iter().for_each(|i| one(i, 0));
            } else if parts > 1 {
                for i in 0..count {
                    (0..parts).into_par_iter().for_each(|p| one(i, p));
                }
            } else {
                (0..count).for_each(|i| one(i, 0));
            }
        }};
    }
    assert!(
        g.b_stored
            .is_none_or(|d| g.dtype == DType::F32 && matches!(d, DType::F16 | DType::BF16)),
        "a GEMM reads half-precision weights into f32 products only"
    );
    match g.dtype {
        DType::F32 => go!(f32, g.alpha as f32, 0.0f32),
        DType::F64 => go!(f64, g.alpha, 0.0f64),
        other => unreachable!("the scheduler emits GEMMs of f32/f64 only, not {other}"),
    }
}
