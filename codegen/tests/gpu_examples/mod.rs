//! Example GPU kernels, written the way the GPU scheduler will write them, shared
//! by the tests of the SIMT interpreter (`gpu_sim.rs`: they compute the right
//! values) and of the CUDA C printer (`gpu_cuda.rs`: they print, compile with
//! NVRTC and assemble without spills).

// Each test binary uses some of the examples.
#![allow(dead_code)]

use kiln_codegen::gpu::build::{
    add, bin, block, block_reduce, block_stride, cast, fc, global_thread, grid_stride, idx, lane,
    load, mul, thread, un, var,
};
use kiln_codegen::gpu::{
    Access, Axis, BinOp, GExpr, GStmt, GpuKernel, Launch, Literal, Mem, Scalar, ShuffleMode,
    Special, UnOp,
};

/// Every example kernel, with the sizes the CUDA tests compile them at.
pub fn all() -> Vec<GpuKernel> {
    vec![
        elementwise(4096, Launch::linear(8, 128)),
        vectorized_add(1030),
        softmax(4, 300, 128),
        atomic_sum(512),
        count_positive(1000),
        scale_bf16x8(4096),
        warp_shuffles(),
    ]
}

/// `y = tanh(x) · 2 + 1` over `n` f32 by a grid-stride loop.
pub fn elementwise(n: usize, launch: Launch) -> GpuKernel {
    let mut k = GpuKernel::new("tanh_affine", launch);
    let x = k.buffer("x", Scalar::F32, n, Access::Read);
    let y = k.buffer("y", Scalar::F32, n, Access::Write);
    let i = k.var(Scalar::I64);
    let value = bin(
        BinOp::Add,
        mul(
            un(UnOp::Tanh, load(Mem::Global(x), var(i))),
            fc(2.0, Scalar::F32),
        ),
        fc(1.0, Scalar::F32),
    );
    k.body = vec![grid_stride(
        i,
        idx(n as i64),
        vec![GStmt::Store {
            mem: Mem::Global(y),
            index: var(i),
            value,
        }],
    )];
    k
}

/// `y = x + b` over f16 storage, computed in f32, four elements per access.
pub fn vectorized_add(n: usize) -> GpuKernel {
    const WIDTH: usize = 4;
    let mut k = GpuKernel::new("add_f16x4", Launch::linear(2, 64));
    let x = k.buffer("x", Scalar::F16, n, Access::Read);
    let b = k.buffer("b", Scalar::F16, n, Access::Read);
    let y = k.buffer("y", Scalar::F16, n, Access::Write);
    let chunk = k.var(Scalar::I64);
    let xs: Vec<_> = (0..WIDTH).map(|_| k.var(Scalar::F16)).collect();
    let bs: Vec<_> = (0..WIDTH).map(|_| k.var(Scalar::F16)).collect();
    let sum = |j: usize| {
        cast(
            Scalar::F16,
            bin(
                BinOp::Add,
                cast(Scalar::F32, var(xs[j])),
                cast(Scalar::F32, var(bs[j])),
            ),
        )
    };
    let base = mul(var(chunk), idx(WIDTH as i64));
    let mut body = vec![
        GStmt::LoadVec {
            dsts: xs.clone(),
            mem: Mem::Global(x),
            index: base.clone(),
        },
        GStmt::LoadVec {
            dsts: bs.clone(),
            mem: Mem::Global(b),
            index: base.clone(),
        },
    ];
    body.push(GStmt::StoreVec {
        mem: Mem::Global(y),
        index: base,
        values: (0..WIDTH).map(sum).collect(),
    });
    // Whole vectors by a grid-stride loop, then the tail element by element.
    let tail = k.var(Scalar::I64);
    let full = (n / WIDTH) as i64;
    k.body = vec![
        grid_stride(chunk, idx(full), body),
        GStmt::For {
            var: tail,
            start: add(idx(full * WIDTH as i64), global_thread()),
            end: idx(n as i64),
            step: mul(
                GExpr::Special(Special::GridDim(Axis::X)),
                GExpr::Special(Special::BlockDim),
            ),
            body: vec![GStmt::Store {
                mem: Mem::Global(y),
                index: var(tail),
                value: cast(
                    Scalar::F16,
                    bin(
                        BinOp::Add,
                        cast(Scalar::F32, load(Mem::Global(x), var(tail))),
                        cast(Scalar::F32, load(Mem::Global(b), var(tail))),
                    ),
                ),
            }],
        },
    ];
    k
}

/// Softmax over the rows of `[rows, cols]` f32: one block per row, a block-wide
/// max, then a block-wide sum of exponentials.
pub fn softmax(rows: usize, cols: usize, threads: u32) -> GpuKernel {
    let mut k = GpuKernel::new("softmax_rows", Launch::linear(rows as u32, threads));
    let x = k.buffer("x", Scalar::F32, rows * cols, Access::Read);
    let y = k.buffer("y", Scalar::F32, rows * cols, Access::Write);
    let row = k.var(Scalar::I64);
    let base = k.var(Scalar::I64);
    let mut body = vec![
        GStmt::Let {
            var: row,
            value: block(Axis::X),
        },
        GStmt::Let {
            var: base,
            value: mul(var(row), idx(cols as i64)),
        },
    ];
    let at = |i: usize| load(Mem::Global(x), add(var(base), var(i)));
    // Running max of this thread's columns.
    let m = k.var(Scalar::F32);
    let i = k.var(Scalar::I64);
    body.push(GStmt::Decl {
        var: m,
        init: fc(f64::NEG_INFINITY, Scalar::F32),
    });
    body.push(block_stride(
        i,
        idx(cols as i64),
        vec![GStmt::Assign {
            var: m,
            value: bin(BinOp::Max, var(m), at(i)),
        }],
    ));
    let m_in = k.var(Scalar::F32);
    body.push(GStmt::Let {
        var: m_in,
        value: var(m),
    });
    let row_max = block_reduce(
        &mut k,
        &mut body,
        BinOp::Max,
        Literal::Float(f64::NEG_INFINITY, Scalar::F32),
        m_in,
    );
    let s = k.var(Scalar::F32);
    let j = k.var(Scalar::I64);
    body.push(GStmt::Decl {
        var: s,
        init: fc(0.0, Scalar::F32),
    });
    let e = |v: usize| un(UnOp::Exp, bin(BinOp::Sub, at(v), var(row_max)));
    body.push(block_stride(
        j,
        idx(cols as i64),
        vec![GStmt::Assign {
            var: s,
            value: bin(BinOp::Add, var(s), e(j)),
        }],
    ));
    let s_in = k.var(Scalar::F32);
    body.push(GStmt::Let {
        var: s_in,
        value: var(s),
    });
    let total = block_reduce(
        &mut k,
        &mut body,
        BinOp::Add,
        Literal::Float(0.0, Scalar::F32),
        s_in,
    );
    let c = k.var(Scalar::I64);
    body.push(block_stride(
        c,
        idx(cols as i64),
        vec![GStmt::Store {
            mem: Mem::Global(y),
            index: add(var(base), var(c)),
            value: bin(BinOp::Div, e(c), var(total)),
        }],
    ));
    k.body = body;
    k
}

/// `total += x[i]` for every `i` by f32 atomic adds from every block.
pub fn atomic_sum(n: usize) -> GpuKernel {
    let mut k = GpuKernel::new("sum_atomic", Launch::linear(4, 64));
    let x = k.buffer("x", Scalar::F32, n, Access::Read);
    let total = k.buffer("total", Scalar::F32, 1, Access::ReadWrite);
    let i = k.var(Scalar::I64);
    k.body = vec![grid_stride(
        i,
        idx(n as i64),
        vec![GStmt::AtomicAdd {
            mem: Mem::Global(total),
            index: idx(0),
            value: load(Mem::Global(x), var(i)),
        }],
    )];
    k
}

/// `mask = x > 0` (bool memory) and `count += mask` (an i64 atomic per
/// positive element).
pub fn count_positive(n: usize) -> GpuKernel {
    let mut k = GpuKernel::new("count_positive", Launch::linear(2, 128));
    let x = k.buffer("x", Scalar::F32, n, Access::Read);
    let mask = k.buffer("mask", Scalar::Bool, n, Access::Write);
    let count = k.buffer("count", Scalar::I64, 1, Access::ReadWrite);
    let i = k.var(Scalar::I64);
    let p = k.var(Scalar::Bool);
    k.body = vec![grid_stride(
        i,
        idx(n as i64),
        vec![
            GStmt::Let {
                var: p,
                value: bin(
                    BinOp::Gt,
                    load(Mem::Global(x), var(i)),
                    fc(0.0, Scalar::F32),
                ),
            },
            GStmt::Store {
                mem: Mem::Global(mask),
                index: var(i),
                value: var(p),
            },
            GStmt::AtomicAdd {
                mem: Mem::Global(count),
                index: idx(0),
                value: cast(Scalar::I64, var(p)),
            },
        ],
    )];
    k
}

/// `y = x · scale[0]` over bf16, eight elements (16 bytes) per access; `n` a
/// multiple of 8.
pub fn scale_bf16x8(n: usize) -> GpuKernel {
    const WIDTH: usize = 8;
    let mut k = GpuKernel::new("scale_bf16x8", Launch::linear(4, 128));
    let x = k.buffer("x", Scalar::BF16, n, Access::Read);
    let scale = k.buffer("scale", Scalar::F32, 1, Access::Read);
    let y = k.buffer("y", Scalar::BF16, n, Access::Write);
    let chunk = k.var(Scalar::I64);
    let s = k.var(Scalar::F32);
    let xs: Vec<_> = (0..WIDTH).map(|_| k.var(Scalar::BF16)).collect();
    let base = mul(var(chunk), idx(WIDTH as i64));
    let scaled = |v: usize| cast(Scalar::BF16, mul(cast(Scalar::F32, var(v)), var(s)));
    k.body = vec![
        GStmt::Let {
            var: s,
            value: load(Mem::Global(scale), idx(0)),
        },
        grid_stride(
            chunk,
            idx((n / WIDTH) as i64),
            vec![
                GStmt::LoadVec {
                    dsts: xs.clone(),
                    mem: Mem::Global(x),
                    index: base.clone(),
                },
                GStmt::StoreVec {
                    mem: Mem::Global(y),
                    index: base,
                    values: xs.iter().map(|&v| scaled(v)).collect(),
                },
            ],
        ),
    ];
    k
}

/// One block of 64 threads reading each other's registers by every shuffle
/// mode, at constant offsets and at offsets computed per lane (which may fall
/// outside the warp); each result to its own slice of `y`.
pub fn warp_shuffles() -> GpuKernel {
    let mut k = GpuKernel::new("warp_shuffles", Launch::linear(1, 64));
    let x = k.buffer("x", Scalar::F32, 64, Access::Read);
    let modes = [
        (ShuffleMode::Xor, idx(1)),
        (ShuffleMode::Down, idx(3)),
        (ShuffleMode::Up, idx(2)),
        (ShuffleMode::Index, idx(5)),
        (ShuffleMode::Xor, bin(BinOp::Mul, lane(), idx(2))),
        (ShuffleMode::Down, bin(BinOp::Rem, lane(), idx(5))),
        (ShuffleMode::Up, bin(BinOp::Sub, idx(3), lane())),
        (ShuffleMode::Index, bin(BinOp::Add, lane(), idx(-7))),
    ];
    let y = k.buffer("y", Scalar::F32, 64 * modes.len(), Access::Write);
    let v = k.var(Scalar::F32);
    let mut body = vec![GStmt::Let {
        var: v,
        value: load(Mem::Global(x), thread()),
    }];
    for (slot, (mode, arg)) in modes.into_iter().enumerate() {
        let w = k.var(Scalar::F32);
        body.push(GStmt::Shuffle {
            dst: w,
            src: v,
            mode,
            arg,
        });
        body.push(GStmt::Store {
            mem: Mem::Global(y),
            index: add(idx(64 * slot as i64), thread()),
            value: var(w),
        });
    }
    k.body = body;
    k
}

/// Every scalar type, in the order of [`every_scalar_op`]'s buffers.
pub const SCALARS: [Scalar; 13] = [
    Scalar::F32,
    Scalar::F64,
    Scalar::F16,
    Scalar::BF16,
    Scalar::I8,
    Scalar::I16,
    Scalar::I32,
    Scalar::I64,
    Scalar::U8,
    Scalar::U16,
    Scalar::U32,
    Scalar::U64,
    Scalar::Bool,
];

/// The unary operations the IR allows on type `t`.
fn unary_ops(t: Scalar) -> Vec<UnOp> {
    use UnOp::*;
    if t.is_float() {
        vec![
            Neg, Abs, Sqrt, Exp, Log, Tanh, Erf, Sigmoid, Sin, Cos, Tan, Asin, Acos, Atan, Sinh,
            Cosh, Asinh, Acosh, Atanh, Floor, Ceil, Round, IsNan,
        ]
    } else if t.is_signed_int() {
        vec![Neg, Abs, Not]
    } else if t.is_int() || t == Scalar::Bool {
        vec![Not]
    } else {
        vec![]
    }
}

/// The binary operations the IR allows on two operands of type `t`.
fn binary_ops(t: Scalar) -> Vec<BinOp> {
    use BinOp::*;
    let compare = [Eq, Ne, Lt, Le, Gt, Ge];
    if t.is_float() {
        [Add, Sub, Mul, Div, Rem, Max, Min, Pow]
            .into_iter()
            .chain(compare)
            .collect()
    } else if t.is_int() {
        [Add, Sub, Mul, Div, Rem, Max, Min, And, Or, Xor, Shl, Shr]
            .into_iter()
            .chain(compare)
            .collect()
    } else if t == Scalar::Bool {
        vec![And, Or, Xor, Eq, Ne]
    } else {
        vec![]
    }
}

/// Constants of type `t` that need care to spell in C: infinities, NaN, −0,
/// the most negative integer, the largest unsigned one.
fn edge_literals(t: Scalar) -> Vec<Literal> {
    if t.is_float() || t.is_half() {
        [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
            0.1,
            -1e-30,
        ]
        .into_iter()
        .map(|x| Literal::Float(x, t))
        .collect()
    } else {
        [i64::MIN, -1, 0, i64::MAX]
            .into_iter()
            .map(|n| Literal::Int(n, t))
            .collect()
    }
}

/// One warp applying every unary and binary operation the IR allows to every
/// type, every cast between any two types, `select`, shuffles of every type
/// that shuffles, and the edge constants of each type. Operands: `a =
/// in_T[lane]`, `b = in_T[32 + lane]` (input buffers of 64 elements per type,
/// in [`SCALARS`] order); each result goes to the next 32-element slot of the
/// output buffer of its type. Integer divisors of 0 are replaced by 1 (the IR
/// leaves division by zero to the scheduler).
pub fn every_scalar_op() -> GpuKernel {
    let mut k = GpuKernel::new("every_scalar_op", Launch::linear(1, 32));
    let inputs: Vec<usize> = SCALARS
        .iter()
        .map(|&t| k.buffer(format!("in_{t}"), t, 64, Access::Read))
        .collect();
    let outputs: Vec<usize> = SCALARS
        .iter()
        .map(|&t| k.buffer(format!("out_{t}"), t, 0, Access::Write))
        .collect();
    let slot_of = |t: Scalar| SCALARS.iter().position(|&s| s == t).unwrap();
    let mut slots = [0usize; SCALARS.len()];
    let mut body = Vec::new();
    let mut emit = |k: &GpuKernel, body: &mut Vec<GStmt>, value: GExpr| {
        let t = k.type_of(&value);
        let i = slot_of(t);
        body.push(GStmt::Store {
            mem: Mem::Global(outputs[i]),
            index: add(idx(32 * slots[i] as i64), thread()),
            value,
        });
        slots[i] += 1;
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    for (i, &t) in SCALARS.iter().enumerate() {
        let (va, vb) = (k.var(t), k.var(t));
        body.push(GStmt::Let {
            var: va,
            value: load(Mem::Global(inputs[i]), thread()),
        });
        body.push(GStmt::Let {
            var: vb,
            value: load(Mem::Global(inputs[i]), add(idx(32), thread())),
        });
        a.push(va);
        b.push(vb);
    }
    let flag = a[slot_of(Scalar::Bool)];
    for (i, &t) in SCALARS.iter().enumerate() {
        let (va, vb) = (var(a[i]), var(b[i]));
        for op in unary_ops(t) {
            emit(&k, &mut body, un(op, va.clone()));
        }
        for op in binary_ops(t) {
            let divisor = matches!(op, BinOp::Div | BinOp::Rem) && t.is_int();
            let rhs = if divisor {
                let zero = GExpr::Lit(Literal::Int(0, t));
                let one = GExpr::Lit(Literal::Int(1, t));
                kiln_codegen::gpu::build::select(bin(BinOp::Eq, vb.clone(), zero), one, vb.clone())
            } else {
                vb.clone()
            };
            emit(&k, &mut body, bin(op, va.clone(), rhs));
        }
        emit(
            &k,
            &mut body,
            kiln_codegen::gpu::build::select(var(flag), va.clone(), vb.clone()),
        );
        for &to in &SCALARS {
            if to != t {
                emit(&k, &mut body, cast(to, va.clone()));
            }
        }
        for l in edge_literals(t) {
            emit(&k, &mut body, GExpr::Lit(l));
        }
        if !t.is_half() && t != Scalar::Bool {
            for arg in [idx(1), bin(BinOp::Sub, idx(40), lane())] {
                let w = k.var(t);
                body.push(GStmt::Shuffle {
                    dst: w,
                    src: a[i],
                    mode: ShuffleMode::Down,
                    arg,
                });
                emit(&k, &mut body, var(w));
            }
        }
    }
    for (i, &o) in outputs.iter().enumerate() {
        k.buffers[o].len = 32 * slots[i];
    }
    k.body = body;
    k
}
