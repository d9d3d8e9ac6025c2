//! A GPU kernel for every CPU kernel: the first, general lowering of the CUDA
//! backend. A CPU kernel's outermost parallel loop writes disjoint elements per
//! iteration (the kernel IR's invariant), so it becomes a grid-stride loop with one
//! iteration per GPU thread; the loops inside it run serially in each thread. A
//! kernel without a parallel loop runs on one thread.
//!
//! The result is correct for every kernel the CPU scheduler emits, but not fast:
//! specialized GPU kernels (vectorized elementwise regions, a warp or block per
//! row for reductions and norms, fused attention) replace these one family at a
//! time, and the SIMT interpreter holds both to the same answers.

use super::build::{bin, global_thread, grid_stride, idx};
use super::{GExpr, GStmt, GpuKernel, Launch, Mem, WARP_SIZE};
use crate::kernel::{BinOp, Expr, Kernel, LoopKind, Stmt};

/// Threads per block of a translated kernel.
pub const THREADS_PER_BLOCK: u32 = 256;
/// Most blocks a translated kernel launches; the grid-stride loop covers the rest
/// (a few waves of a large GPU's multiprocessors).
pub const MAX_BLOCKS: u32 = 1024;

/// The GPU kernel computing what `k` computes.
pub fn from_cpu_kernel(k: &Kernel) -> GpuKernel {
    let extent = k.parallel_extent().max(0) as u64;
    let (threads, blocks) = launch_for(extent);
    let mut g = GpuKernel::new(k.name.clone(), Launch::linear(blocks, threads));
    g.buffers = k.buffers.clone();
    g.vars = k.vars.clone();
    g.body = match k.body.as_slice() {
        [Stmt::For {
            var,
            extent,
            kind: LoopKind::Parallel,
            body,
        }] => vec![grid_stride(*var, idx(*extent), stmts(body))],
        body => vec![GStmt::If {
            cond: bin(BinOp::Eq, global_thread(), idx(0)),
            then: stmts(body),
            otherwise: vec![],
        }],
    };
    g
}

/// Threads per block and blocks for `extent` parallel iterations: whole warps, no
/// more threads than iterations where that is less than a block.
fn launch_for(extent: u64) -> (u32, u32) {
    let warp = WARP_SIZE as u64;
    let threads = (extent.div_ceil(warp) * warp).clamp(warp, THREADS_PER_BLOCK as u64);
    let blocks = extent.div_ceil(threads).clamp(1, MAX_BLOCKS as u64);
    (threads as u32, blocks as u32)
}

/// The GPU statements running `body` in one thread (shared with the
/// specialized lowerings, which translate the statements they leave per thread).
pub(super) fn stmts(body: &[Stmt]) -> Vec<GStmt> {
    body.iter().map(stmt).collect()
}

/// One statement run in one thread.
pub(super) fn stmt(s: &Stmt) -> GStmt {
    match s {
        Stmt::For {
            var, extent, body, ..
        } => GStmt::For {
            var: *var,
            start: idx(0),
            end: idx(*extent),
            step: idx(1),
            body: stmts(body),
        },
        Stmt::Let { var, value } => GStmt::Let {
            var: *var,
            value: expr(value),
        },
        Stmt::Decl { var, init } => GStmt::Decl {
            var: *var,
            init: expr(init),
        },
        Stmt::Assign { var, value } => GStmt::Assign {
            var: *var,
            value: expr(value),
        },
        Stmt::Store { buf, index, value } => GStmt::Store {
            mem: Mem::Global(*buf),
            index: expr(index),
            value: expr(value),
        },
    }
}

/// One expression evaluated by one thread.
pub(super) fn expr(e: &Expr) -> GExpr {
    match e {
        Expr::Lit(l) => GExpr::Lit(*l),
        Expr::Var(v) => GExpr::Var(*v),
        Expr::Load { buf, index } => GExpr::Load {
            mem: Mem::Global(*buf),
            index: Box::new(expr(index)),
        },
        Expr::Unary(op, x) => GExpr::Unary(*op, Box::new(expr(x))),
        Expr::Binary(op, a, b) => GExpr::Binary(*op, Box::new(expr(a)), Box::new(expr(b))),
        Expr::Select(c, a, b) => {
            GExpr::Select(Box::new(expr(c)), Box::new(expr(a)), Box::new(expr(b)))
        }
        Expr::Cast(s, x) => GExpr::Cast(*s, Box::new(expr(x))),
    }
}

#[cfg(test)]
mod tests {
    use super::launch_for;

    #[test]
    fn launches_cover_small_and_large_loops_with_whole_warps() {
        assert_eq!(launch_for(0), (32, 1));
        assert_eq!(launch_for(1), (32, 1));
        assert_eq!(launch_for(100), (128, 1));
        assert_eq!(launch_for(1000), (256, 4));
        assert_eq!(launch_for(1 << 30), (256, 1024));
    }
}
