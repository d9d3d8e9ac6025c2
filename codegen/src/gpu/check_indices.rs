//! Index checks on the GPU: the device-side form of `Step::CheckIndices`, so a
//! program that gathers (embeddings, rotary tables) needs no host round trip
//! per check and can be captured into a graph.
//!
//! The kernel counts the indices out of range into a status word (an atomic
//! add) and replaces each of them with 0, so the gather that follows reads in
//! bounds whatever the input. The runtime zeroes the status words before a
//! run and reads them after it: a non-zero count fails the run with the node's
//! name, so a replaced index never reaches the caller. (Replacing in place is
//! sound because the run fails: inputs and intermediates are written anew by
//! the next run, and a constant holding a bad index fails every run.)
//!
//! The ranges follow `Step::CheckIndices`: element `i` must satisfy
//! `low ≤ index < b` with `b = bounds[i % bounds.len()]` and `low = -b` when
//! negative indices wrap, else 0.

use super::build::{bin, grid_stride, idx, load, select, var};
use super::{BinOp, Buffer, GStmt, GpuKernel, Launch, Literal, Mem, Scalar, WARP_SIZE};
use crate::kernel::Access;

/// Most distinct bounds a device check takes (GatherND tuples name one per
/// axis); longer lists stay host checks.
pub const MAX_DEVICE_BOUNDS: usize = 8;
/// Threads per block of the check.
const THREADS: u32 = 256;
/// Most blocks (the grid-stride loop covers the rest).
const MAX_BLOCKS: u32 = 1024;

/// The check of `len` indices of type `scalar` (i64 or i32) against `bounds`,
/// counting failures into element 0 of an i64 status buffer; `None` for a form
/// the device check does not take (another index type, too many bounds).
pub fn check_indices_kernel(
    name: &str,
    scalar: Scalar,
    len: usize,
    bounds: &[i64],
    wrap_negative: bool,
) -> Option<GpuKernel> {
    if !matches!(scalar, Scalar::I64 | Scalar::I32)
        || bounds.is_empty()
        || bounds.len() > MAX_DEVICE_BOUNDS
    {
        return None;
    }
    let blocks = (len as u64)
        .div_ceil(THREADS as u64)
        .clamp(1, MAX_BLOCKS as u64) as u32;
    let threads = if len < THREADS as usize {
        WARP_SIZE
    } else {
        THREADS
    };
    let mut k = GpuKernel::new(name, Launch::linear(blocks, threads));
    k.buffers = vec![
        Buffer {
            name: "indices".into(),
            scalar,
            len,
            access: Access::ReadWrite,
        },
        Buffer {
            name: "status".into(),
            scalar: Scalar::I64,
            len: 1,
            access: Access::ReadWrite,
        },
    ];
    let i = k.var(Scalar::I64);
    let x = k.var(Scalar::I64);
    let b = k.var(Scalar::I64);
    let lit = |v: i64| super::GExpr::Lit(Literal::Int(v, Scalar::I64));
    // The bound of position i: a select chain over i % bounds.len().
    let pos = bin(BinOp::Rem, var(i), idx(bounds.len() as i64));
    let bound = bounds
        .iter()
        .enumerate()
        .skip(1)
        .fold(lit(bounds[0]), |acc, (j, &v)| {
            select(bin(BinOp::Eq, pos.clone(), idx(j as i64)), lit(v), acc)
        });
    let value = load(Mem::Global(0), var(i));
    let low = if wrap_negative {
        super::GExpr::Unary(super::UnOp::Neg, Box::new(var(b)))
    } else {
        lit(0)
    };
    let zero = super::GExpr::Lit(Literal::Int(0, scalar));
    let bad = bin(
        BinOp::Or,
        bin(BinOp::Lt, var(x), low),
        bin(BinOp::Ge, var(x), var(b)),
    );
    let body = vec![
        GStmt::Let {
            var: x,
            value: value_as(scalar, value),
        },
        GStmt::Let {
            var: b,
            value: bound,
        },
        GStmt::If {
            cond: bad,
            then: vec![
                GStmt::AtomicAdd {
                    mem: Mem::Global(1),
                    index: idx(0),
                    value: super::GExpr::Lit(Literal::Int(1, Scalar::I64)),
                },
                GStmt::Store {
                    mem: Mem::Global(0),
                    index: var(i),
                    value: zero,
                },
            ],
            otherwise: vec![],
        },
    ];
    k.body = vec![grid_stride(i, idx(len as i64), body)];
    Some(k)
}

/// `e` (of the index type) as i64, the type the comparison registers hold.
fn value_as(scalar: Scalar, e: super::GExpr) -> super::GExpr {
    if scalar == Scalar::I64 {
        e
    } else {
        super::GExpr::Cast(Scalar::I64, Box::new(e))
    }
}
