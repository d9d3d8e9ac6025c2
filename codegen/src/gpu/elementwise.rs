//! Vectorized elementwise kernels: a CPU kernel whose parallel loop over `i`
//! has no inner loop and stores only at `i` becomes a grid-stride loop over
//! vectors of `W` consecutive elements per thread, with one 128-bit (at most
//! [`MAX_VECTOR_BYTES`]) access per buffer read or written at `i`.
//!
//! **Conditions** (anything else declines, and the general lowering runs):
//! the body is lets, declarations, assignments and stores; every store is at
//! index `i` exactly, at most one per buffer; a buffer that is stored is
//! loaded only at `i` and only up to the statement storing it (the vector
//! loads all happen before the body and the vector stores after it).
//!
//! **Lowering.** `W` is the widest vector every contiguous buffer (loaded or
//! stored at `i`) allows: [`MAX_VECTOR_BYTES`] over the largest element size,
//! at most [`MAX_LANES`]. A thread loads its `W` elements of each such buffer
//! in one access, runs the body once per lane (lane `l` is iteration
//! `W·q + l`, with fresh registers; other loads, such as broadcasts and
//! gathers, stay scalar per lane), and stores each output in one access. The
//! last `n mod W` iterations run one per thread in a scalar grid-stride loop.
//! Vector accesses need each buffer to start 16-byte aligned, as the runtime
//! allocates them.

use std::collections::HashMap;

use super::build::{add, global_thread, grid_dim, grid_stride, idx, mul, var};
use super::from_cpu::stmts;
use super::rewrite;
use super::{Axis, GExpr, GStmt, GpuKernel, Launch, Mem, MAX_VECTOR_BYTES, WARP_SIZE};
use crate::kernel::{BufId, Expr, Kernel, LoopKind, Stmt};

/// Threads per block of an elementwise kernel.
pub const ELEMENTWISE_THREADS: u32 = 256;
/// Most blocks of an elementwise kernel: enough to fill a large GPU (132
/// multiprocessors × 8 resident blocks of 256 threads) twice; the grid-stride
/// loop covers the rest.
pub const MAX_ELEMENTWISE_BLOCKS: u32 = 2048;
/// Most elements per thread and access (eight halves or bytes in 16 bytes):
/// each lane is a copy of the body, so more would cost registers.
pub const MAX_LANES: usize = 8;

/// The vectorized lowering of `k`, or `None` when it is not elementwise in the
/// module's sense or no vector of two elements fits.
pub fn lower_elementwise(k: &Kernel) -> Option<GpuKernel> {
    let [Stmt::For {
        var: i,
        extent: n,
        kind: LoopKind::Parallel,
        body,
    }] = k.body.as_slice()
    else {
        return None;
    };
    let at_i = |index: &Expr| *index == Expr::Var(*i);
    // Where each buffer is stored (statement position), and which are loaded at `i`.
    let mut stored: HashMap<BufId, usize> = HashMap::new();
    for (pos, s) in body.iter().enumerate() {
        match s {
            Stmt::For { .. } => return None,
            Stmt::Store { buf, index, .. } => {
                if !at_i(index) || stored.insert(*buf, pos).is_some() {
                    return None;
                }
            }
            Stmt::Let { .. } | Stmt::Decl { .. } | Stmt::Assign { .. } => {}
        }
    }
    if stored.is_empty() {
        return None;
    }
    let mut loaded_at_i: Vec<BufId> = Vec::new();
    let mut ok = true;
    for (pos, s) in body.iter().enumerate() {
        rewrite::each_expr(std::slice::from_ref(s), &mut |e| {
            rewrite::each_sub(e, &mut |x| {
                if let Expr::Load { buf, index } = x {
                    if let Some(&at) = stored.get(buf) {
                        ok &= at_i(index) && pos <= at;
                    }
                    if at_i(index) && !loaded_at_i.contains(buf) {
                        loaded_at_i.push(*buf);
                    }
                }
            })
        });
    }
    if !ok {
        return None;
    }
    let widest = (loaded_at_i.iter().chain(stored.keys()))
        .map(|&b| k.buffers[b].scalar.size())
        .max()?;
    let width = (MAX_VECTOR_BYTES / widest).min(MAX_LANES);
    if width < 2 {
        return None;
    }
    let n = (*n).max(0);
    let vectors = n / width as i64;
    let tail = n - vectors * width as i64;
    let items = vectors.max(tail) as u64;
    let threads = (items.div_ceil(WARP_SIZE as u64) * WARP_SIZE as u64)
        .clamp(WARP_SIZE as u64, ELEMENTWISE_THREADS as u64);
    let blocks = items
        .div_ceil(threads)
        .clamp(1, MAX_ELEMENTWISE_BLOCKS as u64);
    let mut g = GpuKernel::new(
        k.name.clone(),
        Launch::linear(blocks as u32, threads as u32),
    );
    g.buffers = k.buffers.clone();
    g.vars = k.vars.clone();
    let mut out = Vec::new();
    if vectors > 0 {
        let q = g.var(crate::kernel::Scalar::I64);
        let vector_body = lanes(&mut g, *i, body, width, q, &loaded_at_i);
        out.push(grid_stride(q, idx(vectors), vector_body));
    }
    if tail > 0 {
        // The remainder, one element per thread, as the general lowering runs it.
        out.push(GStmt::For {
            var: *i,
            start: add(idx(vectors * width as i64), global_thread()),
            end: idx(n),
            step: mul(grid_dim(Axis::X), super::build::block_dim()),
            body: stmts(body),
        });
    }
    g.body = out;
    Some(g)
}

/// The body of the vector loop over `q`: vector loads of the buffers `loaded`
/// at `i`, the CPU body once per lane, and vector stores.
fn lanes(
    g: &mut GpuKernel,
    i: usize,
    body: &[Stmt],
    width: usize,
    q: usize,
    loaded: &[BufId],
) -> Vec<GStmt> {
    let mut out = Vec::new();
    let base = g.var(crate::kernel::Scalar::I64);
    out.push(GStmt::Let {
        var: base,
        value: mul(var(q), idx(width as i64)),
    });
    let mut elements: HashMap<BufId, Vec<usize>> = HashMap::new();
    for &b in loaded {
        let dsts: Vec<usize> = (0..width).map(|_| g.var(g.buffers[b].scalar)).collect();
        out.push(GStmt::LoadVec {
            dsts: dsts.clone(),
            mem: Mem::Global(b),
            index: var(base),
        });
        elements.insert(b, dsts);
    }
    let mut stored: Vec<(BufId, Vec<GExpr>)> = Vec::new();
    for lane in 0..width {
        // Fresh registers for this lane's copy of the body; `i` is its element.
        let mut names = HashMap::new();
        let at = g.var(crate::kernel::Scalar::I64);
        names.insert(i, at);
        for s in body {
            if let Stmt::Let { var: v, .. } | Stmt::Decl { var: v, .. } = s {
                names.insert(*v, g.var(g.vars[*v]));
            }
        }
        let element = |e: &Expr| match e {
            Expr::Load { buf, index } if **index == Expr::Var(i) => {
                elements.get(buf).map(|d| Expr::Var(d[lane]))
            }
            _ => None,
        };
        let lane_body = rewrite::stmts(body, &names, &element);
        let mut uses_index = false;
        for s in &lane_body {
            // A store's index is the vector store's; other reads need the index.
            let e = match s {
                Stmt::Store { value, .. } => value,
                Stmt::Let { value, .. } | Stmt::Assign { value, .. } => value,
                Stmt::Decl { init, .. } => init,
                Stmt::For { .. } => unreachable!("elementwise bodies have no loops"),
            };
            rewrite::each_sub(e, &mut |x| uses_index |= *x == Expr::Var(at));
        }
        if uses_index {
            // The element index, where the body reads it beyond the vector loads.
            out.push(GStmt::Let {
                var: at,
                value: add(var(base), idx(lane as i64)),
            });
        }
        for s in lane_body {
            match s {
                Stmt::Store { buf, value, .. } => {
                    // Computed here: a later assignment may change its registers.
                    let v = g.var(g.buffers[buf].scalar);
                    out.extend(stmts(&[Stmt::Let { var: v, value }]));
                    match stored.iter_mut().find(|(b, _)| *b == buf) {
                        Some((_, values)) => values.push(var(v)),
                        None => stored.push((buf, vec![var(v)])),
                    }
                }
                s => out.extend(stmts(&[s])),
            }
        }
    }
    for (buf, values) in stored {
        out.push(GStmt::StoreVec {
            mem: Mem::Global(buf),
            index: var(base),
            values,
        });
    }
    out
}
