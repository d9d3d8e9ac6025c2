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
    let (oa, ob) = batch_offsets(g, batch);
    let oc = (batch * g.m * g.n + r0 * g.n + c0) as isize;
    let oa = oa + r0 as isize * g.a_strides[0];
    let ob = ob + c0 as isize * g.b_strides[1];
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

/// The `i`-th of `parts` aligned blocks of `0..len`.
fn block(len: usize, parts: usize, i: usize) -> (usize, usize) {
    let size = len.div_ceil(parts).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    ((i * size).min(len), ((i + 1) * size).min(len))
}

/// Runs `g` over the step's pointers with `threads` threads.
pub fn run(g: &GemmStep, ptrs: &[*mut u8], threads: usize) {
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
    macro_rules! go {
        ($t:ty, $alpha:expr, $zero:expr) => {{
            let one = |i: usize, part: usize| {
                let (a, b, c) = (a, b, c);
                let (rows, cols) = if parts == 1 {
                    ((0, g.m), (0, g.n))
                } else if split_cols {
                    ((0, g.m), block(g.n, parts, part))
                } else {
                    (block(g.m, parts, part), (0, g.n))
                };
                // SAFETY: the program sized the buffers for this product.
                unsafe {
                    product::<$t>(
                        g,
                        a.0 as *const $t,
                        b.0 as *const $t,
                        c.0 as *mut $t,
                        i,
                        rows,
                        cols,
                        $alpha,
                        $zero,
                    )
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
    match g.dtype {
        DType::F32 => go!(f32, g.alpha as f32, 0.0f32),
        DType::F64 => go!(f64, g.alpha, 0.0f64),
        other => unreachable!("the scheduler emits GEMMs of f32/f64 only, not {other}"),
    }
}
