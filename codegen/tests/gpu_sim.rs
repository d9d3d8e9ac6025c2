//! The GPU kernel IR and its SIMT interpreter: kernels written the way the GPU
//! scheduler will write them (grid-stride elementwise loops, 128-bit vector
//! accesses, warp and block reductions, one block per row) run on random inputs
//! and match a plain CPU computation; the mistakes a GPU would make silently
//! (races, divergent barriers and shuffles, out-of-bounds, misaligned and
//! uninitialized accesses) are errors; the text form is pinned. The example
//! kernels live in `gpu_examples/`, shared with the CUDA C tests.

mod common;

mod gpu_examples;

use common::seed;
use gpu_examples::{
    atomic_sum, count_positive, elementwise, every_scalar_op, scale_bf16x8, softmax,
    vectorized_add, warp_shuffles, SCALARS,
};
use kiln_codegen::gpu::build::{add, bin, block, cast, fc, idx, lane, load, mul, thread, var};
use kiln_codegen::gpu::sim::{launch, SimBuffer, SimErrorKind};
use kiln_codegen::gpu::{
    Access, Axis, BinOp, GExpr, GStmt, GpuKernel, Launch, Mem, Scalar, ShuffleMode,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| rng.random_range(-4.0f32..4.0) as f64)
        .collect()
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn a_grid_stride_loop_covers_every_element_once() {
    let mut rng = StdRng::seed_from_u64(seed());
    // More elements than threads, fewer, and a count no launch divides.
    for (n, l) in [
        (1000, Launch::linear(2, 128)),
        (37, Launch::linear(4, 64)),
        (4099, Launch::linear(3, 256)),
    ] {
        let xs = random(&mut rng, n);
        let k = elementwise(n, l);
        let mut bufs = [
            SimBuffer::from_f64(Scalar::F32, &xs),
            SimBuffer::zeros(Scalar::F32, n),
        ];
        launch(&k, &mut bufs).unwrap();
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| ((x as f32).tanh() * 2.0 + 1.0) as f64)
            .collect();
        close(&bufs[1].to_f64_vec(), &want, 1e-6);
    }
}

#[test]
fn vector_accesses_over_half_storage_match_scalar_code() {
    let mut rng = StdRng::seed_from_u64(seed());
    let n = 1030;
    let (xs, bs) = (random(&mut rng, n), random(&mut rng, n));
    let k = vectorized_add(n);
    let mut bufs = [
        SimBuffer::from_f64(Scalar::F16, &xs),
        SimBuffer::from_f64(Scalar::F16, &bs),
        SimBuffer::zeros(Scalar::F16, n),
    ];
    let want: Vec<f64> = bufs[0]
        .to_f64_vec()
        .iter()
        .zip(bufs[1].to_f64_vec())
        .map(|(a, b)| half::f16::from_f32((*a as f32) + (b as f32)).to_f64())
        .collect();
    launch(&k, &mut bufs).unwrap();
    assert_eq!(bufs[2].to_f64_vec(), want);
}

fn softmax_reference(xs: &[f64], cols: usize) -> Vec<f64> {
    xs.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|x| (x - m).exp()).sum();
            row.iter()
                .map(move |x| (x - m).exp() / s)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn block_reductions_compute_a_row_softmax() {
    let mut rng = StdRng::seed_from_u64(seed());
    // One warp, several warps, and rows shorter than the block.
    for (rows, cols, threads) in [(3, 50, 32), (4, 300, 128), (2, 7, 96)] {
        let xs = random(&mut rng, rows * cols);
        let k = softmax(rows, cols, threads);
        k.check().unwrap();
        let mut bufs = [
            SimBuffer::from_f64(Scalar::F32, &xs),
            SimBuffer::zeros(Scalar::F32, rows * cols),
        ];
        launch(&k, &mut bufs).unwrap();
        close(&bufs[1].to_f64_vec(), &softmax_reference(&xs, cols), 1e-5);
    }
}

#[test]
fn the_text_form_is_pinned() {
    insta::assert_snapshot!("softmax_rows", softmax(2, 64, 64).to_string());
    insta::assert_snapshot!("add_f16x4", vectorized_add(10).to_string());
}

#[test]
fn atomic_adds_from_every_block_do_not_race() {
    let n = 512;
    let k = atomic_sum(n);
    let xs: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
    let mut bufs = [
        SimBuffer::from_f64(Scalar::F32, &xs),
        SimBuffer::zeros(Scalar::F32, 1),
    ];
    launch(&k, &mut bufs).unwrap();
    assert_eq!(bufs[1].to_f64_vec(), vec![xs.iter().sum::<f64>()]);
}

/// A one-warp kernel with body `body` over a 64-element f32 input and output
/// and a 32-element shared array.
fn one_block(body: impl FnOnce(&mut GpuKernel) -> Vec<GStmt>) -> (GpuKernel, Vec<SimBuffer>) {
    let mut k = GpuKernel::new("probe", Launch::linear(1, 32));
    k.buffer("x", Scalar::F32, 64, Access::Read);
    k.buffer("y", Scalar::F32, 64, Access::ReadWrite);
    k.shared("tile", Scalar::F32, 32);
    k.body = body(&mut k);
    let bufs = vec![
        SimBuffer::from_f64(Scalar::F32, &(0..64).map(|i| i as f64).collect::<Vec<_>>()),
        SimBuffer::zeros(Scalar::F32, 64),
    ];
    (k, bufs)
}

fn sim_error(k: &GpuKernel, mut bufs: Vec<SimBuffer>) -> (SimErrorKind, String) {
    let e = launch(k, &mut bufs).unwrap_err();
    (e.kind, e.to_string())
}

const X: Mem = Mem::Global(0);
const Y: Mem = Mem::Global(1);
const TILE: Mem = Mem::Shared(0);

#[test]
fn a_missing_barrier_is_a_race() {
    // Each thread stores its element, then reads its neighbour's, without a
    // barrier between: lockstep execution would give the right answer.
    let racy = |with_barrier: bool| {
        one_block(|k| {
            let v = k.var(Scalar::F32);
            let mut body = vec![GStmt::Store {
                mem: TILE,
                index: thread(),
                value: load(X, thread()),
            }];
            if with_barrier {
                body.push(GStmt::Barrier);
            }
            body.push(GStmt::Let {
                var: v,
                value: load(TILE, bin(BinOp::Rem, add(thread(), idx(1)), idx(32))),
            });
            body.push(GStmt::Store {
                mem: Y,
                index: thread(),
                value: var(v),
            });
            body
        })
    };
    let (k, bufs) = racy(false);
    let (kind, msg) = sim_error(&k, bufs);
    assert_eq!(kind, SimErrorKind::Race, "{msg}");
    assert!(msg.contains("race on s0 `tile`"), "{msg}");
    let (k, mut bufs) = racy(true);
    launch(&k, &mut bufs).unwrap();
    assert_eq!(bufs[1].data[31].as_f64(), 0.0);
    assert_eq!(bufs[1].data[0].as_f64(), 1.0);
}

#[test]
fn blocks_writing_one_element_race() {
    let mut k = GpuKernel::new("last_block_wins", Launch::linear(2, 32));
    let y = k.buffer("y", Scalar::F32, 1, Access::Write);
    k.body = vec![GStmt::If {
        cond: bin(BinOp::Eq, thread(), idx(0)),
        then: vec![GStmt::Store {
            mem: Mem::Global(y),
            index: idx(0),
            value: cast(Scalar::F32, block(Axis::X)),
        }],
        otherwise: vec![],
    }];
    let (kind, msg) = sim_error(&k, vec![SimBuffer::zeros(Scalar::F32, 1)]);
    assert_eq!(kind, SimErrorKind::Race, "{msg}");
    assert!(msg.contains("block #0"), "{msg}");
}

#[test]
fn divergent_barriers_and_shuffles_are_refused() {
    let (k, _) = one_block(|_| {
        vec![GStmt::If {
            cond: bin(BinOp::Lt, thread(), idx(16)),
            then: vec![GStmt::Barrier],
            otherwise: vec![],
        }]
    });
    let e = k.check().unwrap_err().to_string();
    assert!(e.contains("barrier under an `if`"), "{e}");

    let (k, bufs) = one_block(|k| {
        let (v, w) = (k.var(Scalar::F32), k.var(Scalar::F32));
        vec![
            GStmt::Let {
                var: v,
                value: load(X, thread()),
            },
            GStmt::If {
                cond: bin(BinOp::Lt, lane(), idx(16)),
                then: vec![GStmt::Shuffle {
                    dst: w,
                    src: v,
                    mode: ShuffleMode::Down,
                    arg: idx(16),
                }],
                otherwise: vec![],
            },
        ]
    });
    let (kind, msg) = sim_error(&k, bufs);
    assert_eq!(kind, SimErrorKind::ShuffleDivergence, "{msg}");
}

#[test]
fn shuffles_read_other_lanes() {
    for (mode, arg, want) in [
        (ShuffleMode::Xor, 1i64, [1.0, 0.0, 3.0, 2.0]),
        (ShuffleMode::Down, 2, [2.0, 3.0, 4.0, 5.0]),
        (ShuffleMode::Up, 1, [0.0, 0.0, 1.0, 2.0]),
        (ShuffleMode::Index, 5, [5.0, 5.0, 5.0, 5.0]),
    ] {
        let (k, mut bufs) = one_block(|k| {
            let (v, w) = (k.var(Scalar::F32), k.var(Scalar::F32));
            vec![
                GStmt::Let {
                    var: v,
                    value: load(X, thread()),
                },
                GStmt::Shuffle {
                    dst: w,
                    src: v,
                    mode,
                    arg: idx(arg),
                },
                GStmt::Store {
                    mem: Y,
                    index: thread(),
                    value: var(w),
                },
            ]
        });
        launch(&k, &mut bufs).unwrap();
        assert_eq!(&bufs[1].to_f64_vec()[..4], &want, "{mode:?}");
    }
}

#[test]
fn bad_accesses_are_errors() {
    let store_at = |index: GExpr| {
        one_block(move |_| {
            vec![GStmt::Store {
                mem: Y,
                index,
                value: fc(1.0, Scalar::F32),
            }]
        })
    };
    let (k, bufs) = store_at(add(thread(), idx(40)));
    let (kind, msg) = sim_error(&k, bufs);
    assert_eq!(kind, SimErrorKind::OutOfBounds, "{msg}");
    assert!(
        msg.contains("thread 24") && msg.contains("index 64"),
        "{msg}"
    );

    let (k, bufs) = one_block(|k| {
        let v = k.var(Scalar::F32);
        vec![GStmt::Let {
            var: v,
            value: load(TILE, thread()),
        }]
    });
    assert_eq!(sim_error(&k, bufs).0, SimErrorKind::Uninitialized);

    let (k, bufs) = one_block(|k| {
        let vs = vec![k.var(Scalar::F32), k.var(Scalar::F32)];
        vec![GStmt::LoadVec {
            dsts: vs,
            mem: X,
            index: add(mul(thread(), idx(2)), idx(1)),
        }]
    });
    assert_eq!(sim_error(&k, bufs).0, SimErrorKind::Misaligned);
}

#[test]
fn the_checker_refuses_malformed_kernels() {
    let check = |k: &GpuKernel| k.check().unwrap_err().to_string();
    let mut k = GpuKernel::new("odd_block", Launch::linear(1, 100));
    assert!(check(&k).contains("multiple of 32"));
    k.launch = Launch::linear(1, 64);
    k.shared("huge", Scalar::F32, 13_000);
    assert!(check(&k).contains("shared memory"), "{}", check(&k));

    let (k, _) = one_block(|k| {
        let v = k.var(Scalar::I64);
        vec![GStmt::Store {
            mem: X,
            index: idx(0),
            value: cast(Scalar::F32, var(v)),
        }]
    });
    let e = check(&k);
    assert!(e.contains("out of scope") || e.contains("read-only"), "{e}");

    let (k, _) = one_block(|k| {
        let v = k.var(Scalar::F16);
        vec![
            GStmt::Let {
                var: v,
                value: cast(Scalar::F16, fc(1.0, Scalar::F32)),
            },
            GStmt::Store {
                mem: Y,
                index: idx(0),
                value: cast(Scalar::F32, bin(BinOp::Add, var(v), var(v))),
            },
        ]
    });
    assert!(check(&k).contains("storage-only"));

    let (k, _) = one_block(|k| {
        let vs = (0..8).map(|_| k.var(Scalar::F32)).collect();
        vec![GStmt::LoadVec {
            dsts: vs,
            mem: X,
            index: idx(0),
        }]
    });
    assert!(check(&k).contains("at most 16 bytes"));

    // A loop whose bound varies by thread may not hold a barrier; one whose bound
    // is uniform may.
    let looped = |bound: GExpr| {
        one_block(move |k| {
            let i = k.var(Scalar::I64);
            vec![GStmt::For {
                var: i,
                start: idx(0),
                end: bound,
                step: idx(1),
                body: vec![GStmt::Barrier],
            }]
        })
        .0
    };
    assert!(check(&looped(thread())).contains("loop"));
    looped(cast(Scalar::I64, load(X, idx(3)))).check().unwrap();
}

#[test]
fn bool_stores_and_i64_atomics_count() {
    let mut rng = StdRng::seed_from_u64(seed());
    let n = 1000;
    let xs = random(&mut rng, n);
    let mut bufs = [
        SimBuffer::from_f64(Scalar::F32, &xs),
        SimBuffer::zeros(Scalar::Bool, n),
        SimBuffer::zeros(Scalar::I64, 1),
    ];
    launch(&count_positive(n), &mut bufs).unwrap();
    let want: Vec<f64> = xs.iter().map(|&x| (x > 0.0) as u8 as f64).collect();
    assert_eq!(bufs[1].to_f64_vec(), want);
    assert_eq!(bufs[2].to_f64_vec(), vec![want.iter().sum::<f64>()]);
}

#[test]
fn sixteen_byte_bf16_vectors_scale() {
    let mut rng = StdRng::seed_from_u64(seed());
    let n = 4096;
    let xs = random(&mut rng, n);
    let mut bufs = [
        SimBuffer::from_f64(Scalar::BF16, &xs),
        SimBuffer::from_f64(Scalar::F32, &[0.75]),
        SimBuffer::zeros(Scalar::BF16, n),
    ];
    let want: Vec<f64> = (bufs[0].to_f64_vec().iter())
        .map(|&x| half::bf16::from_f32(x as f32 * 0.75).to_f64())
        .collect();
    launch(&scale_bf16x8(n), &mut bufs).unwrap();
    assert_eq!(bufs[2].to_f64_vec(), want);
}

#[test]
fn shuffles_at_computed_offsets_keep_lanes_outside_the_warp() {
    let xs: Vec<f64> = (0..64).map(|i| i as f64).collect();
    let mut bufs = [
        SimBuffer::from_f64(Scalar::F32, &xs),
        SimBuffer::zeros(Scalar::F32, 64 * 8),
    ];
    launch(&warp_shuffles(), &mut bufs).unwrap();
    let y = bufs[1].to_f64_vec();
    // The source lane of each mode (see `warp_shuffles`), own lane when outside.
    let sources: [fn(i64) -> i64; 8] = [
        |l| l ^ 1,
        |l| l + 3,
        |l| l - 2,
        |_| 5,
        |l| l ^ (l * 2),
        |l| l + l % 5,
        |l| l - (3 - l),
        |l| (l - 7).rem_euclid(32),
    ];
    for (slot, source) in sources.iter().enumerate() {
        for t in 0..64i64 {
            let (warp, l) = (t / 32, t % 32);
            let from = source(l);
            let from = if (0..32).contains(&from) { from } else { l };
            assert_eq!(
                y[slot * 64 + t as usize],
                (warp * 32 + from) as f64,
                "slot {slot} thread {t}"
            );
        }
    }
}

/// The kernel the CUDA tests compile for every operation is valid: it runs to the
/// end on edge values (no division by zero, every access in bounds).
#[test]
fn every_scalar_op_runs_on_edge_values() {
    // NaN, infinities, −0, extremes, shift counts past the width, MIN / −1.
    let floats = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.5,
        2.5,
        -2.5,
        1e10,
        -1e10,
        3.0,
        -7.25,
        65504.0,
        1e-40,
        0.1,
    ];
    let ints = [
        i64::MIN,
        -1,
        0,
        1,
        7,
        63,
        64,
        -3,
        200,
        i64::MAX,
        31,
        32,
        8,
        16,
    ];
    let k = every_scalar_op();
    let mut bufs: Vec<SimBuffer> = SCALARS
        .iter()
        .map(|&t| {
            let data = (0..64)
                .map(|i| {
                    if t.is_float() || t.is_half() {
                        kiln_codegen::gpu::sim::Value::from_f64(t, floats[i % floats.len()])
                    } else {
                        kiln_codegen::gpu::sim::Value::from_i64(t, ints[(i * 5) % ints.len()])
                    }
                })
                .collect();
            SimBuffer { scalar: t, data }
        })
        .collect();
    bufs.extend(
        k.buffers[SCALARS.len()..]
            .iter()
            .map(|b| SimBuffer::zeros(b.scalar, b.len)),
    );
    launch(&k, &mut bufs).unwrap();
}
