//! GEMM steps through the `gemm` crate (packed, cache-blocked, vectorized
//! micro-kernels for the host's SIMD width, selected at run time).
//!
//! Batched products split across threads by batch when there are at least as
//! many products as threads (each product then runs on one thread); otherwise
//! each product uses every thread.

use gemm::Parallelism;
use kiln_codegen::program::GemmStep;
use kiln_ir::DType;
use rayon::prelude::*;

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
// SAFETY: each batch entry writes a disjoint matrix of the output.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// One product `c[b] = alpha · a[b]·b[b]`.
///
/// # Safety
/// The pointers address buffers laid out as `g` describes.
unsafe fn product<T: 'static + Copy>(
    g: &GemmStep,
    a: *const T,
    b: *const T,
    c: *mut T,
    batch: usize,
    alpha: T,
    zero: T,
    par: Parallelism,
) {
    let (oa, ob) = batch_offsets(g, batch);
    let oc = (batch * g.m * g.n) as isize;
    // SAFETY: offsets stay inside the buffers (strides come from their shapes).
    unsafe {
        gemm::gemm(
            g.m,
            g.n,
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
            par,
        )
    }
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
    let inner = if threads > 1 && !by_batch {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    macro_rules! go {
        ($t:ty, $alpha:expr, $zero:expr) => {{
            let one = |i: usize| {
                let (a, b, c) = (a, b, c);
                // SAFETY: the program sized the buffers for this product.
                unsafe {
                    product::<$t>(
                        g,
                        a.0 as *const $t,
                        b.0 as *const $t,
                        c.0 as *mut $t,
                        i,
                        $alpha,
                        $zero,
                        inner,
                    )
                }
            };
            if by_batch {
                (0..count).into_par_iter().for_each(one);
            } else {
                (0..count).for_each(one);
            }
        }};
    }
    match g.dtype {
        DType::F32 => go!(f32, g.alpha as f32, 0.0f32),
        DType::F64 => go!(f64, g.alpha, 0.0f64),
        other => unreachable!("the scheduler emits GEMMs of f32/f64 only, not {other}"),
    }
}
