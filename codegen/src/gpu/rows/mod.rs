//! Row kernels: one block per iteration of a CPU kernel's parallel loop (a
//! *row*: a softmax, a norm, a reduction), its threads splitting the inner
//! loops over the row.
//!
//! **Shape.** The CPU kernel is one parallel loop over rows whose body is a
//! sequence of top-level statements. On the GPU, block `b` runs rows `b, b +
//! gridDim, …` (at most [`MAX_ROW_BLOCKS`] blocks), and each top-level
//! statement becomes one of:
//!
//! - **redundant**: `let`/`var`/assignments run in every thread of the block,
//!   so every thread holds the same registers;
//! - **single**: a store outside any inner loop, or an inner loop that stores
//!   but cannot be split, runs in thread 0 only (a loop that would also update
//!   registers every thread needs, such as a cumulative sum, makes the whole
//!   kernel fall back);
//! - **distributed**: an inner loop whose iterations are independent becomes a
//!   block-stride loop (thread `t` runs iterations `t, t + blockDim, …`); its
//!   reductions fold per-thread partials, combined by [`build::block_reduce`],
//!   whose result every thread receives;
//! - an inner loop that cannot be split and stores nothing runs serially in
//!   every thread (redundant).
//!
//! **When a loop may be split** (`analysis`), all of:
//!
//! 1. every register declared outside the loop that the loop assigns is a
//!    *reduction*: each update is `r = op(r, e)` or `r = op(e, r)` with one `op`
//!    that is associative and commutative in the kernel IR's semantics —
//!    integer add (wrapping), float add, max, min — and `r` is read nowhere
//!    else in the loop (a running sum that is stored, `acc += x; y[j] = acc`,
//!    is not a reduction);
//! 2. every index of a buffer the loop stores to, loads of it included, is the
//!    same affine function `c·j + Σ cₖ·kₖ + rest` of the loop variable `j` and
//!    of nested loop variables `kₖ` (extents `nₖ`), with constant coefficients,
//!    `rest` the same in every iteration, and `|c| > Σ |cₖ|·(nₖ − 1)`: no two
//!    iterations touch one element (a scatter through loaded indices, or a
//!    store every iteration makes to one element, is not split);
//! 3. everything else the loop reads is the same in every iteration or private
//!    to one (its own lets, declarations and nested loops).
//!
//! **Float sums are reassociated**: per-thread partials and a tree across the
//! block add in another order than the CPU's loop, so results may differ in
//! the last bits (the tests compare with a small relative tolerance). Max and
//! min still propagate NaN (each step does), and are exact, except that the
//! sign of a zero result may differ where `+0` and `−0` tie (as `maxnum` may
//! pick either). Integer results are exact.
//!
//! **Ordering.** Between top-level statements where one thread may read or
//! write an element another thread wrote (or read, then written), a barrier
//! is inserted; every thread reaches it (the rows a block runs and the
//! statement sequence are uniform in the block). Rows touch disjoint elements
//! (the CPU kernel IR's invariant for parallel iterations), so no barrier is
//! needed between rows.

mod analysis;

use std::collections::{BTreeSet, HashMap};

use super::build::{bin, block, block_reduce, block_stride, grid_dim, idx, thread, var};
use super::from_cpu::{stmt, stmts};
use super::rewrite;
use super::{Axis, GExpr, GStmt, GpuKernel, Launch, WARP_SIZE};
use crate::kernel::{BinOp, BufId, Kernel, LoopKind, Stmt};
use analysis::{distributable, Reduction};

/// Fewest threads of a row block: one warp (short rows).
pub const MIN_ROW_THREADS: u32 = WARP_SIZE;
/// Most threads of a row block (long rows): enough to hide memory latency on a
/// multiprocessor with a few resident blocks, few enough that `ptxas` has 128
/// registers per thread.
pub const MAX_ROW_THREADS: u32 = 512;
/// Iterations of the longest inner loop per thread the block size aims at: a
/// few per thread amortize the reductions' shuffles and barriers.
pub const ROW_ITEMS_PER_THREAD: u64 = 4;
/// Most blocks of a row kernel; more rows are covered by a grid-stride loop.
pub const MAX_ROW_BLOCKS: u32 = 65_535;

/// What runs a top-level statement of a row.
enum Plan<'k> {
    /// Every thread (same registers everywhere).
    Redundant(&'k Stmt),
    /// Thread 0 only (stores).
    Single(&'k Stmt),
    /// The block's threads split the loop's iterations.
    Distributed {
        var: usize,
        extent: i64,
        body: &'k [Stmt],
        reductions: Vec<Reduction>,
    },
}

/// The row lowering of `k`, or `None` when `k` has no parallel loop, no inner
/// loop that may be split, or a loop that can only run in one thread and
/// updates registers every thread needs.
pub fn lower_rows(k: &Kernel) -> Option<GpuKernel> {
    let [Stmt::For {
        var: row,
        extent: rows,
        kind: LoopKind::Parallel,
        body,
    }] = k.body.as_slice()
    else {
        return None;
    };
    let plans = body
        .iter()
        .map(|s| plan(k, s))
        .collect::<Option<Vec<Plan>>>()?;
    let longest = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Distributed { extent, .. } => Some(*extent),
            _ => None,
        })
        .max()?;
    let reduces = plans
        .iter()
        .any(|p| matches!(p, Plan::Distributed { reductions, .. } if !reductions.is_empty()));
    if !reduces && longest < MIN_ROW_THREADS as i64 {
        // Short rows of pure maps would leave most of a warp idle; one thread
        // per row does no worse.
        return None;
    }
    let threads = threads_for(longest.max(0) as u64);
    let blocks = (*rows).clamp(1, MAX_ROW_BLOCKS as i64) as u32;
    let mut g = GpuKernel::new(k.name.clone(), Launch::linear(blocks, threads));
    g.buffers = k.buffers.clone();
    g.vars = k.vars.clone();
    let mut out = Vec::new();
    let mut since = Accesses::default();
    for p in &plans {
        let s = match p {
            Plan::Redundant(s) | Plan::Single(s) => std::slice::from_ref(*s),
            Plan::Distributed { body, .. } => body,
        };
        if since.conflict(s) {
            out.push(GStmt::Barrier);
            since = Accesses::default();
        }
        since.add(s);
        match p {
            Plan::Redundant(s) => out.push(stmt(s)),
            Plan::Single(s) => out.push(GStmt::If {
                cond: bin(BinOp::Eq, thread(), idx(0)),
                then: vec![stmt(s)],
                otherwise: vec![],
            }),
            Plan::Distributed {
                var,
                extent,
                body,
                reductions,
            } => {
                distribute(&mut g, &mut out, *var, *extent, body, reductions);
                if !reductions.is_empty() && g.launch.warps() > 1 {
                    // The block reduction's barriers order everything before it.
                    since = Accesses::default();
                }
            }
        }
    }
    g.body = vec![GStmt::For {
        var: *row,
        start: block(Axis::X),
        end: idx(*rows),
        step: grid_dim(Axis::X),
        body: out,
    }];
    Some(g)
}

fn plan<'k>(k: &Kernel, s: &'k Stmt) -> Option<Plan<'k>> {
    Some(match s {
        Stmt::For {
            var, extent, body, ..
        } => match distributable(k, *var, *extent, body) {
            Some(reductions) => Plan::Distributed {
                var: *var,
                extent: *extent,
                body,
                reductions,
            },
            None => {
                let (_, stores) = rewrite::buffers(body);
                if stores.is_empty() {
                    Plan::Redundant(s)
                } else if assigns_outer(body) {
                    // Thread 0 alone would update registers every thread reads.
                    return None;
                } else {
                    Plan::Single(s)
                }
            }
        },
        Stmt::Store { .. } => Plan::Single(s),
        Stmt::Let { .. } | Stmt::Decl { .. } | Stmt::Assign { .. } => Plan::Redundant(s),
    })
}

/// True when `body` assigns a register it does not declare itself.
fn assigns_outer(body: &[Stmt]) -> bool {
    fn walk(body: &[Stmt], declared: &mut Vec<usize>) -> bool {
        body.iter().any(|s| match s {
            Stmt::Decl { var, .. } => {
                declared.push(*var);
                false
            }
            Stmt::Assign { var, .. } => !declared.contains(var),
            Stmt::For { body, .. } => walk(body, declared),
            Stmt::Let { .. } | Stmt::Store { .. } => false,
        })
    }
    walk(body, &mut Vec::new())
}

/// Threads for a row whose longest inner loop has `extent` iterations: about
/// [`ROW_ITEMS_PER_THREAD`] each, a power of two from one warp to
/// [`MAX_ROW_THREADS`].
fn threads_for(extent: u64) -> u32 {
    let wanted = extent.div_ceil(ROW_ITEMS_PER_THREAD).next_power_of_two();
    wanted.clamp(MIN_ROW_THREADS as u64, MAX_ROW_THREADS as u64) as u32
}

/// Emits the block-stride loop of `var` over `0..extent` running `body`, its
/// reductions into per-thread partials, and their block reductions folded into
/// the reduction registers (in every thread).
fn distribute(
    g: &mut GpuKernel,
    out: &mut Vec<GStmt>,
    loop_var: usize,
    extent: i64,
    body: &[Stmt],
    reductions: &[Reduction],
) {
    let mut partial = HashMap::new();
    for r in reductions {
        let p = g.var(g.vars[r.var]);
        out.push(GStmt::Decl {
            var: p,
            init: GExpr::Lit(r.identity),
        });
        partial.insert(r.var, p);
    }
    let body = rewrite::stmts(body, &partial, &|_| None);
    out.push(block_stride(loop_var, idx(extent), stmts(&body)));
    for r in reductions {
        let mine = g.var(g.vars[r.var]);
        out.push(GStmt::Let {
            var: mine,
            value: GExpr::Var(partial[&r.var]),
        });
        let total = block_reduce(g, out, r.op, r.identity, mine);
        out.push(GStmt::Assign {
            var: r.var,
            value: bin(r.op, var(r.var), var(total)),
        });
    }
}

/// The buffers statements of a row read and wrote since the last barrier.
#[derive(Default)]
struct Accesses {
    loads: BTreeSet<BufId>,
    stores: BTreeSet<BufId>,
}

impl Accesses {
    /// True when running `s` after these accesses needs a barrier: it writes
    /// what was read or written, or reads what was written (possibly by another
    /// thread: the analysis does not track which elements each thread touched).
    fn conflict(&self, s: &[Stmt]) -> bool {
        let (loads, stores) = rewrite::buffers(s);
        stores
            .iter()
            .any(|b| self.loads.contains(b) || self.stores.contains(b))
            || loads.iter().any(|b| self.stores.contains(b))
    }

    fn add(&mut self, s: &[Stmt]) {
        let (loads, stores) = rewrite::buffers(s);
        self.loads.extend(loads);
        self.stores.extend(stores);
    }
}

#[cfg(test)]
mod tests {
    use super::threads_for;

    #[test]
    fn blocks_grow_with_rows_from_a_warp_to_the_cap() {
        assert_eq!(threads_for(0), 32);
        assert_eq!(threads_for(1), 32);
        assert_eq!(threads_for(33), 32);
        assert_eq!(threads_for(200), 64);
        assert_eq!(threads_for(1000), 256);
        assert_eq!(threads_for(1 << 20), 512);
    }
}
