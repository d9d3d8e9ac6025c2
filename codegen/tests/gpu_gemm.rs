//! The GPU GEMM kernels (`gpu::gemm`): on the SIMT interpreter they match a plain
//! f64 GEMM, written here with `GemmStep`'s semantics (those of the CPU
//! runtime's `cpu/gemm.rs`), on random products — shapes with edges that no tile
//! divides, transposed operands, padded rows, broadcast batch dims, f32, f16 and
//! f64, alpha ≠ 1 — of every kernel variant; their text form is pinned; every
//! variant compiles with NVRTC for `sm_90a` and `sm_80`, and `ptxas` finds no
//! spills in a decode GEMV and the tiled kernel.

mod common;

use common::{nvrtc, seed};
use kiln_codegen::gpu::cuda::nvrtc::{Arch, Form};
use kiln_codegen::gpu::cuda::{kernel_source, module_source, ptxas};
use kiln_codegen::gpu::gemm::{gemm_kernel, variant, Variant, GEMV_MAX_ROWS};
use kiln_codegen::gpu::sim::{launch, SimBuffer};
use kiln_codegen::gpu::{GpuKernel, Scalar, MAX_SHARED_BYTES};
use kiln_codegen::program::GemmStep;
use kiln_ir::DType;
use kiln_test_support::{require, Resource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sizes of m, n and k the random products draw from: 1, tiny, around a warp,
/// around a tile and past two tiles.
const SIZES: [usize; 9] = [1, 2, 3, 7, 31, 33, 64, 65, 130];
/// Most multiply-adds of one random product (130³ fits): the interpreter is
/// slow, and the whole file runs in seconds in release.
const MAX_WORK: usize = 2_500_000;

/// How one operand is laid out in its buffer.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Stored as the transpose (`[cols, rows]`).
    transposed: bool,
    /// Extra elements after each stored row (a view of a wider matrix).
    pad: usize,
}

/// A product of `rows × cols` operands laid out as `layout`, with one batch
/// dim per entry of `batch` (`true`: broadcast, stride 0): returns the
/// element strides of rows and columns, the batch strides and the buffer length.
fn strides(
    rows: usize,
    cols: usize,
    layout: Layout,
    batch: &[(usize, bool)],
) -> ([isize; 2], Vec<isize>, usize) {
    let (outer, inner) = if layout.transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let ld = inner + layout.pad;
    let matrix = [ld as isize, 1];
    let s = if layout.transposed {
        [matrix[1], matrix[0]]
    } else {
        matrix
    };
    let mut size = outer * ld;
    let mut batch_strides = vec![0; batch.len()];
    for (d, &(len, broadcast)) in batch.iter().enumerate().rev() {
        if !broadcast {
            batch_strides[d] = size as isize;
            size *= len;
        }
    }
    (s, batch_strides, size)
}

/// A step over dense `c` and operands laid out as given.
#[allow(clippy::too_many_arguments)]
fn step(
    dtype: DType,
    [m, n, k]: [usize; 3],
    batch: &[(usize, bool, bool)],
    a: Layout,
    b: Layout,
    alpha: f64,
) -> (GemmStep, [usize; 3]) {
    let a_batch: Vec<_> = batch.iter().map(|&(l, ba, _)| (l, ba)).collect();
    let b_batch: Vec<_> = batch.iter().map(|&(l, _, bb)| (l, bb)).collect();
    let (a_strides, a_batch_strides, a_len) = strides(m, k, a, &a_batch);
    let (b_strides, b_batch_strides, b_len) = strides(k, n, b, &b_batch);
    let batch: Vec<usize> = batch.iter().map(|d| d.0).collect();
    let c_len = batch.iter().product::<usize>() * m * n;
    let g = GemmStep {
        a: 0,
        b: 1,
        c: 2,
        dtype,
        m,
        n,
        k,
        batch,
        a_batch_strides,
        b_batch_strides,
        a_strides,
        b_strides,
        alpha,
        b_stored: None,
    };
    (g, [a_len, b_len, c_len])
}

/// `GemmStep`'s semantics in f64: the product and, per element, Σ|a·b|·|alpha|
/// (the scale of its rounding error).
fn reference(g: &GemmStep, a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let count = g.batch_count();
    let mut c = vec![0.0; count * g.m * g.n];
    let mut scale = c.clone();
    for bi in 0..count {
        let (mut oa, mut ob, mut rest) = (0isize, 0isize, bi);
        for d in (0..g.batch.len()).rev() {
            let i = (rest % g.batch[d]) as isize;
            rest /= g.batch[d];
            oa += i * g.a_batch_strides[d];
            ob += i * g.b_batch_strides[d];
        }
        for i in 0..g.m {
            for j in 0..g.n {
                let (mut sum, mut abs) = (0.0, 0.0);
                for kk in 0..g.k {
                    let x = a[(oa + i as isize * g.a_strides[0] + kk as isize * g.a_strides[1])
                        as usize];
                    let y = b[(ob + kk as isize * g.b_strides[0] + j as isize * g.b_strides[1])
                        as usize];
                    sum += x * y;
                    abs += (x * y).abs();
                }
                c[(bi * g.m + i) * g.n + j] = g.alpha * sum;
                scale[(bi * g.m + i) * g.n + j] = g.alpha.abs() * abs;
            }
        }
    }
    (c, scale)
}

fn scalar(dtype: DType) -> Scalar {
    match dtype {
        DType::F32 => Scalar::F32,
        DType::F64 => Scalar::F64,
        DType::F16 => Scalar::F16,
        other => unreachable!("{other}"),
    }
}

/// Runs `g`'s kernel on the interpreter over random inputs and compares it with
/// [`reference`]; returns the kernel.
fn check(rng: &mut StdRng, g: &GemmStep, lens: [usize; 3]) -> GpuKernel {
    check_kernel(rng, g, lens, gemm_kernel("gemm", g, lens))
}

/// [`check`] of `kernel`, the kernel of `g` (perhaps with its launch changed).
fn check_kernel(rng: &mut StdRng, g: &GemmStep, lens: [usize; 3], kernel: GpuKernel) -> GpuKernel {
    let s = scalar(g.dtype);
    let random = |rng: &mut StdRng, n: usize| -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    };
    // Inputs rounded to the storage type, so the reference sees what the kernel does.
    let a = SimBuffer::from_f64(s, &random(rng, lens[0]));
    let b = SimBuffer::from_f64(s, &random(rng, lens[1]));
    let (want, scale) = reference(g, &a.to_f64_vec(), &b.to_f64_vec());
    // A c full of NaN: every element must be written.
    let c = SimBuffer::from_f64(s, &vec![f64::NAN; lens[2]]);
    let mut bufs = vec![a, b, c];
    launch(&kernel, &mut bufs).unwrap_or_else(|e| panic!("{g:?}: {e}\n{kernel}"));
    // Unit roundoff of the accumulator (every product and sum) and of the stored
    // result (once).
    // f16 rounds results below 2^-14 to multiples of 2^-24.
    let (acc_u, store_u, store_abs) = match g.dtype {
        DType::F64 => (f64::EPSILON, f64::EPSILON, 0.0),
        DType::F32 => (f32::EPSILON as f64, f32::EPSILON as f64, 0.0),
        _ => (f32::EPSILON as f64, 2f64.powi(-10), 2f64.powi(-24)),
    };
    for (i, ((got, w), sc)) in bufs[2]
        .to_f64_vec()
        .iter()
        .zip(&want)
        .zip(&scale)
        .enumerate()
    {
        let tol = acc_u * (g.k as f64 + 2.0) * sc + store_u * w.abs() + store_abs;
        assert!(
            (got - w).abs() <= tol,
            "{:?} element {i}: {got} vs {w} (tolerance {tol})\n{g:?}",
            g.dtype
        );
    }
    kernel
}

/// A random product with sizes from `ms`, `ns` and `ks` (within [`MAX_WORK`]).
fn random_step(
    rng: &mut StdRng,
    ms: &[usize],
    ns: &[usize],
    ks: &[usize],
) -> (GemmStep, [usize; 3]) {
    loop {
        let pick = |rng: &mut StdRng, s: &[usize]| s[rng.random_range(0..s.len())];
        let (m, n, k) = (pick(rng, ms), pick(rng, ns), pick(rng, ks));
        let dims = rng.random_range(0..=2);
        let batch: Vec<(usize, bool, bool)> = (0..dims)
            .map(|_| {
                let len = rng.random_range(1..=3);
                // Broadcast of a, of b, of both (each product the same), or neither.
                match rng.random_range(0..6) {
                    0 => (len, true, false),
                    1 => (len, false, true),
                    2 => (len, true, true),
                    _ => (len, false, false),
                }
            })
            .collect();
        let count: usize = batch.iter().map(|d| d.0).product();
        if m * n * k * count > MAX_WORK {
            continue;
        }
        let layout = |rng: &mut StdRng| Layout {
            transposed: rng.random_bool(0.5),
            pad: [0, 0, 0, 1, 8][rng.random_range(0..5)],
        };
        let dtype = [DType::F32, DType::F16, DType::F64][rng.random_range(0..3)];
        let alpha = [1.0, 0.125, -1.5][rng.random_range(0..3)];
        let (a, b) = (layout(rng), layout(rng));
        return step(dtype, [m, n, k], &batch, a, b, alpha);
    }
}

fn random_products(ms: &[usize], ns: &[usize], ks: &[usize], count: usize, want: &[Variant]) {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut seen = Vec::new();
    for _ in 0..count {
        let (g, lens) = random_step(&mut rng, ms, ns, ks);
        let v = variant(&g);
        assert!(want.contains(&v), "{v:?} for {g:?}");
        seen.push(v);
        check(&mut rng, &g, lens);
    }
    for v in want {
        assert!(seen.contains(v), "no product took {v:?}");
    }
}

#[test]
fn the_matrix_vector_kernel_matches_a_plain_gemm() {
    let small = &SIZES[..GEMV_MAX_ROWS - 1];
    random_products(small, &SIZES, &SIZES, 60, &[Variant::Gemv]);
}

#[test]
fn thin_products_take_the_transposed_matrix_vector_kernel() {
    let small = &SIZES[..GEMV_MAX_ROWS - 1];
    random_products(&SIZES[4..], small, &SIZES, 30, &[Variant::GemvTransposed]);
}

#[test]
fn the_tiled_kernel_matches_a_plain_gemm() {
    random_products(&SIZES[3..], &SIZES[3..], &SIZES, 30, &[Variant::Tiled]);
}

/// `x·Wᵀ` at decode: one to three rows of activations against a weight stored
/// `[n, k]` (contiguous along k).
fn decode(
    dtype: DType,
    m: usize,
    n: usize,
    k: usize,
    batch: &[(usize, bool, bool)],
) -> (GemmStep, [usize; 3]) {
    let dense = Layout {
        transposed: false,
        pad: 0,
    };
    let weight = Layout {
        transposed: true,
        pad: 0,
    };
    step(dtype, [m, n, k], batch, dense, weight, 0.5)
}

#[test]
fn decode_products_read_the_weight_in_vectors_and_split_k() {
    let mut rng = StdRng::seed_from_u64(seed());
    for (dtype, width) in [(DType::F16, 8), (DType::F32, 4), (DType::F64, 2)] {
        for m in [1, 3] {
            // Few columns: split-K over the block's warps; many: one warp each.
            for (n, split) in [(5, true), (300, false)] {
                let k = 4096 / width;
                let (g, lens) = decode(dtype, m, n, k, &[]);
                let kernel = check(&mut rng, &g, lens);
                let text = kernel.to_string();
                assert!(text.contains(&format!("..+{width}]")), "{text}");
                assert_eq!(text.contains("partials"), split, "{text}");
            }
        }
        // A k no vector divides: scalar loads, still correct.
        let (g, lens) = decode(dtype, 2, 9, 2048 / width + 1, &[]);
        let kernel = check(&mut rng, &g, lens);
        assert!(!kernel.to_string().contains("..+"), "{kernel}");
    }
    // A weight stored `[k, n]` (`x·W`, as ONNX exports keep it): lanes along
    // n, a vector of columns each, four rows of f16 filling 32 KiB of partial
    // sums.
    let dense = Layout {
        transposed: false,
        pad: 0,
    };
    for (dtype, width) in [(DType::F16, 8), (DType::F32, 4), (DType::F64, 2)] {
        for m in [1, 4] {
            let (g, lens) = step(dtype, [m, 1024 / width, 77], &[], dense, dense, 1.0);
            let kernel = check(&mut rng, &g, lens);
            assert!(
                kernel.to_string().contains(&format!("..+{width}]")),
                "{kernel}"
            );
            assert!(kernel.shared_bytes() <= 32 * 1024, "{kernel}");
        }
    }
    // Batched, the weight broadcast (a stride-0 batch dim of b): vector loads
    // still aligned.
    let (g, lens) = decode(DType::F16, 1, 12, 512, &[(3, false, true)]);
    assert!(check(&mut rng, &g, lens).to_string().contains("..+8]"));
}

#[test]
fn a_grid_smaller_than_the_product_is_covered_by_block_loops() {
    // What happens past the grid limits (65,535 batch entries or tile rows,
    // 2³¹ − 1 column groups): each block takes every grid-size-th task.
    let mut rng = StdRng::seed_from_u64(seed());
    let dense = Layout {
        transposed: false,
        pad: 0,
    };
    let batch = [(3, false, false)];
    for (mnk, grid) in [
        ([70, 130, 20], [1, 1, 1]),
        ([130, 70, 20], [2, 1, 2]),
        ([2, 700, 64], [3, 1, 1]),
        ([1, 400, 300], [1, 1, 1]),
    ] {
        let (g, lens) = step(DType::F32, mnk, &batch, dense, dense, 1.0);
        let mut kernel = gemm_kernel("gemm", &g, lens);
        assert!(kernel.launch.blocks() > 1, "{mnk:?}");
        kernel.launch.grid = grid;
        check_kernel(&mut rng, &g, lens, kernel);
    }
}

#[test]
fn empty_reductions_write_zeros_and_empty_outputs_nothing() {
    let mut rng = StdRng::seed_from_u64(seed());
    let dense = Layout {
        transposed: false,
        pad: 0,
    };
    for mnk in [[3, 5, 0], [70, 70, 0], [70, 2, 0], [1, 1, 1]] {
        let (g, lens) = step(DType::F32, mnk, &[(2, false, false)], dense, dense, 2.0);
        check(&mut rng, &g, lens);
    }
    for mnk in [[0, 5, 3], [5, 0, 3]] {
        let (g, lens) = step(DType::F16, mnk, &[], dense, dense, 1.0);
        assert_eq!(variant(&g), Variant::Empty);
        check(&mut rng, &g, lens);
    }
}

/// One product of each kernel variant and layout, at sizes a model has: the
/// decode GEMV of a 2048→5632 f16 projection (one warp per column), the same
/// with few columns (split-K), f32 and f64 GEMVs, attention scores over a
/// 64-wide head (eight lanes per column), GEMVs over a row-major weight
/// (lanes along n) of one and four rows, a thin product (transposed GEMV), tiled f32, f16 and
/// f64 products with a transposed operand and a broadcast batch.
fn variants() -> Vec<GpuKernel> {
    let dense = Layout {
        transposed: false,
        pad: 0,
    };
    let t = Layout {
        transposed: true,
        pad: 0,
    };
    let cases = [
        ("gemv_f16_decode", decode(DType::F16, 1, 5632, 2048, &[])),
        ("gemv_f16_split_k", decode(DType::F16, 1, 64, 2048, &[])),
        ("gemv_f32_rows4", decode(DType::F32, 4, 1024, 1024, &[])),
        ("gemv_f64", decode(DType::F64, 1, 512, 512, &[])),
        (
            "gemv_f16_short_k",
            decode(DType::F16, 1, 333, 64, &[(8, false, false)]),
        ),
        (
            "gemv_f16_along_n",
            step(DType::F16, [1, 2048, 512], &[], dense, dense, 1.0),
        ),
        (
            "gemv_f16_rows4_along_n",
            step(DType::F16, [4, 2048, 512], &[], dense, dense, 1.0),
        ),
        (
            "gemv_f32_transposed",
            step(
                DType::F32,
                [512, 1, 768],
                &[(4, false, false)],
                dense,
                dense,
                1.0,
            ),
        ),
        (
            "tiled_f32",
            step(DType::F32, [512, 512, 512], &[], dense, t, 1.0),
        ),
        (
            "tiled_f16",
            step(
                DType::F16,
                [128, 2048, 512],
                &[(2, false, true)],
                dense,
                t,
                0.5,
            ),
        ),
        (
            "tiled_f64_transposed_a",
            step(
                DType::F64,
                [300, 200, 100],
                &[(3, false, false)],
                t,
                dense,
                2.0,
            ),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, (g, lens))| gemm_kernel(name, &g, lens))
        .collect()
}

#[test]
fn the_text_of_each_kernel_is_pinned() {
    let dense = Layout {
        transposed: false,
        pad: 0,
    };
    // Decode at a small shape: f16 vector loads, split-K over four warps.
    let (g, lens) = decode(DType::F16, 2, 3, 1024, &[]);
    insta::assert_snapshot!("gemv_split_k", gemm_kernel("gemv", &g, lens).to_string());
    // A short k: four lanes per column, eight columns per warp.
    let (g, lens) = decode(DType::F32, 1, 5, 16, &[(2, false, false)]);
    insta::assert_snapshot!("gemv_short_k", gemm_kernel("gemv", &g, lens).to_string());
    // A row-major weight: lanes along n; batch dims, b broadcast.
    let (g, lens) = step(
        DType::F32,
        [1, 40, 24],
        &[(2, false, true)],
        dense,
        dense,
        1.0,
    );
    insta::assert_snapshot!("gemv_along_n", gemm_kernel("gemv", &g, lens).to_string());
    // Edges in m, n and k; a transposed b; alpha.
    let t = Layout {
        transposed: true,
        pad: 0,
    };
    let (g, lens) = step(DType::F16, [70, 65, 33], &[], dense, t, 0.5);
    insta::assert_snapshot!("tiled", gemm_kernel("tiled", &g, lens).to_string());
}

#[test]
fn every_variant_compiles_and_assembles_without_spills() {
    let test = "every_variant_compiles_and_assembles_without_spills";
    let Some(nvrtc) = nvrtc(test) else {
        return;
    };
    let Some(ptxas_path) = require(Resource::Ptxas, test) else {
        return;
    };
    let kernels = variants();
    let source = module_source(&kernels).unwrap();
    for arch in [Arch::SM_90A, Arch::SM_80] {
        let c = nvrtc
            .compile(&source, arch, Form::Cubin)
            .unwrap_or_else(|e| panic!("{e}\n--- source ---\n{source}"));
        assert_eq!(&c.cubin.as_deref().unwrap()[..4], b"\x7fELF");
        assert!(c.log.is_empty(), "{arch}: {}", c.log);
        let report = ptxas::resources(&ptxas_path, &c.ptx, arch).unwrap();
        for k in &kernels {
            let r = report.iter().find(|r| r.name == k.name).unwrap();
            eprintln!(
                "{arch} {}: {} registers, {} B spill stores, {} B spill loads, {} B stack, {} B shared",
                r.name, r.registers, r.spill_stores, r.spill_loads, r.stack_frame, r.shared_bytes
            );
            assert_eq!((r.spill_stores, r.spill_loads), (0, 0), "{arch}: {r:?}");
            assert_eq!(r.stack_frame, 0, "{arch}: {r:?}");
            assert_eq!(r.shared_bytes, k.shared_bytes() as u64, "{arch}: {r:?}");
            assert!(r.shared_bytes <= MAX_SHARED_BYTES as u64, "{arch}: {r:?}");
            assert!(r.registers <= 65536 / k.launch.block, "{arch}: {r:?}");
        }
    }
    // The decode GEMV reads the weight 128 bits at a time and sums lanes by
    // butterfly shuffles.
    let decode = &kernels[0];
    let c = nvrtc
        .compile(&kernel_source(decode).unwrap(), Arch::SM_90A, Form::Cubin)
        .unwrap();
    for want in ["ld.global.nc.v4.u32", "shfl.sync.bfly"] {
        assert!(
            c.ptx.contains(want),
            "{}: no {want}\n{}",
            decode.name,
            c.ptx
        );
    }
}

#[test]
fn the_variants_are_the_kernels_their_names_say() {
    for k in variants() {
        let text = k.to_string();
        let tiled = k.name.starts_with("tiled");
        assert_eq!(text.contains("a_tile"), tiled, "{}", k.name);
        let vector = [
            "decode",
            "split_k",
            "rows4",
            "f64",
            "transposed",
            "short_k",
            "along_n",
        ]
        .iter()
        .any(|s| k.name.ends_with(s));
        assert_eq!(text.contains("..+"), vector, "{text}");
        let split = k.name.contains("split_k") || k.name.contains("along_n");
        assert_eq!(text.contains("partials"), split, "{}", k.name);
    }
}
