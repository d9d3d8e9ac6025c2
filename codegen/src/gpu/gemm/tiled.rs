//! The tiled GEMM: every product the matrix-vector kernel does not take.
//!
//! A block of [`TILED_THREADS`] threads computes one [`TILE_M`]×[`TILE_N`] tile
//! of c at a time. For each [`TILE_K`]-wide slice of k it copies the slices of
//! a and b into shared memory (converted to the accumulator type: f16 is
//! widened once here, not in the inner loop), waits at a barrier, and each
//! thread adds the products of its [`THREAD_M`]×[`THREAD_N`] register tile:
//! per k, `THREAD_M + THREAD_N` shared loads feed `THREAD_M·THREAD_N` FMAs.
//! A thread's rows (and columns) are 16 apart rather than adjacent, so the
//! threads of a warp read one or two addresses of the a tile (a broadcast) and
//! 16 consecutive ones of the b tile: no bank conflicts.
//!
//! Loads into shared memory run along whichever of an operand's dims has the
//! smaller stride (k for a row-major a or a `Wᵀ` weight, m for a transposed a),
//! so a warp's global loads are coalesced for every common layout; elements
//! past m, n or k load as zero (checks emitted only where the sizes do not
//! divide into tiles). Batch entries, tile rows and tile columns are
//! block-uniform loops over grid z, y and x, so any batch count and size fits
//! the grid limits. Alpha is applied to the sum once, when c is stored.

use super::super::build::{add, bin, block, fc, grid_dim, idx, load, mul, thread, var};
use super::super::{
    Axis, BinOp, GExpr, GStmt, GpuKernel, Launch, Mem, Scalar, SharedId, VarId, MAX_GRID_X,
    MAX_GRID_YZ,
};
use super::{times, Problem};

/// Output rows of a block's tile.
pub const TILE_M: i64 = 64;
/// Output columns of a block's tile.
pub const TILE_N: i64 = 64;
/// k elements per shared-memory slice (2 × 16 × 65 f32 = 8.1 KiB of shared
/// memory per block, 16.3 KiB for f64: several blocks fit a multiprocessor).
pub const TILE_K: i64 = 16;
/// Output rows of a thread's register tile.
pub const THREAD_M: i64 = 4;
/// Output columns of a thread's register tile.
pub const THREAD_N: i64 = 4;
/// Threads per block: one per register tile of the block's tile.
pub const TILED_THREADS: u32 = ((TILE_M / THREAD_M) * (TILE_N / THREAD_N)) as u32;
/// Padding after each k row of a shared tile: with rows of 65 elements, the
/// threads storing consecutive k of one row (a k-contiguous operand) hit
/// different banks.
const PAD: i64 = 1;

/// Threads along a tile's columns (and the distance between a thread's rows
/// and columns in its register tile).
const THREADS_N: i64 = TILE_N / THREAD_N;
const THREADS_M: i64 = TILE_M / THREAD_M;
const _: () = assert!(
    THREADS_M == THREADS_N,
    "a thread's rows and columns share one spacing"
);
const _: () = assert!((TILE_K * TILE_M) % TILED_THREADS as i64 == 0);
const _: () = assert!((TILE_K * TILE_N) % TILED_THREADS as i64 == 0);

/// The tiled kernel for `p`.
pub(crate) fn kernel(name: &str, p: &Problem, lens: [usize; 3]) -> GpuKernel {
    let tiles_m = super::ceil_div(p.m, TILE_M);
    let tiles_n = super::ceil_div(p.n, TILE_N);
    let grid = [
        tiles_n.clamp(1, MAX_GRID_X as i64) as u32,
        tiles_m.clamp(1, MAX_GRID_YZ as i64) as u32,
        p.count.clamp(1, MAX_GRID_YZ as i64) as u32,
    ];
    let mut k = p.kernel(
        name,
        Launch {
            grid,
            block: TILED_THREADS,
        },
        lens,
    );
    let a_tile = k.shared("a_tile", p.acc, (TILE_K * (TILE_M + PAD)) as usize);
    let b_tile = k.shared("b_tile", p.acc, (TILE_K * (TILE_N + PAD)) as usize);

    let mut body = Vec::new();
    let mut split = ThreadSplit::default();
    let [tx, ty] = split.get(&mut k, &mut body, THREADS_N);
    let a_load = Loader::new(&mut k, &mut body, &mut split, p.a, TILE_M);
    let b_load = Loader::new(&mut k, &mut body, &mut split, p.b, TILE_N);

    let [batch, tile_m, tile_n, row0, col0, kt, kk] = [(); 7].map(|_| k.var(Scalar::I64));
    let mut per_batch = Vec::new();
    let (oa, ob, oc) = p.batch_offsets(&mut k, &mut per_batch, var(batch));

    // One output tile.
    let accs: Vec<Vec<VarId>> = (0..THREAD_M)
        .map(|_| (0..THREAD_N).map(|_| k.var(p.acc)).collect())
        .collect();
    let mut tile = vec![GStmt::Let {
        var: col0,
        value: mul(var(tile_n), idx(TILE_N)),
    }];
    for &acc in accs.iter().flatten() {
        tile.push(GStmt::Decl {
            var: acc,
            init: fc(0.0, p.acc),
        });
    }
    let mut slice = Vec::new();
    a_load.copy(
        p,
        &mut slice,
        a_tile,
        p.a_buf,
        var(oa),
        var(row0),
        p.m,
        var(kt),
    );
    b_load.copy(
        p,
        &mut slice,
        b_tile,
        p.b_buf,
        var(ob),
        var(col0),
        p.n,
        var(kt),
    );
    slice.push(GStmt::Barrier);
    slice.push(GStmt::For {
        var: kk,
        start: idx(0),
        end: idx(TILE_K),
        step: idx(1),
        body: products(p, &mut k, &accs, [a_tile, b_tile], [ty, tx], kk),
    });
    // The next slice overwrites the tiles only after every thread used them.
    slice.push(GStmt::Barrier);
    tile.push(GStmt::For {
        var: kt,
        start: idx(0),
        end: idx(p.k),
        step: idx(TILE_K),
        body: slice,
    });
    for (i, row) in accs.iter().enumerate() {
        for (j, &acc) in row.iter().enumerate() {
            let r = add(var(row0), add(var(ty), idx(i as i64 * THREADS_M)));
            let c = add(var(col0), add(var(tx), idx(j as i64 * THREADS_N)));
            tile.push(GStmt::If {
                cond: bin(
                    BinOp::And,
                    bin(BinOp::Lt, r.clone(), idx(p.m)),
                    bin(BinOp::Lt, c.clone(), idx(p.n)),
                ),
                then: vec![GStmt::Store {
                    mem: Mem::Global(super::C),
                    index: add(oc.clone(), add(times(r, p.c[0]), times(c, p.c[1]))),
                    value: p.result(var(acc)),
                }],
                otherwise: vec![],
            });
        }
    }

    let uniform_loop = |var, axis, end, body| GStmt::For {
        var,
        start: block(axis),
        end: idx(end),
        step: grid_dim(axis),
        body,
    };
    per_batch.push(uniform_loop(
        tile_m,
        Axis::Y,
        tiles_m,
        vec![
            GStmt::Let {
                var: row0,
                value: mul(var(tile_m), idx(TILE_M)),
            },
            uniform_loop(tile_n, Axis::X, tiles_n, tile),
        ],
    ));
    body.push(uniform_loop(batch, Axis::Z, p.count, per_batch));
    k.body = body;
    k
}

/// The statements of one k step of the register tile: load the thread's
/// `THREAD_M` values of the a tile and `THREAD_N` of the b tile, add their
/// products.
fn products(
    p: &Problem,
    k: &mut GpuKernel,
    accs: &[Vec<VarId>],
    [a_tile, b_tile]: [SharedId; 2],
    [ty, tx]: [VarId; 2],
    kk: VarId,
) -> Vec<GStmt> {
    let mut out = Vec::new();
    let mut column = |tile: SharedId, len: i64, pos: VarId, count: i64| -> Vec<VarId> {
        (0..count)
            .map(|i| {
                let v = k.var(p.acc);
                out.push(GStmt::Let {
                    var: v,
                    value: load(
                        Mem::Shared(tile),
                        add(
                            mul(var(kk), idx(len + PAD)),
                            add(var(pos), idx(i * THREADS_N)),
                        ),
                    ),
                });
                v
            })
            .collect()
    };
    let a_vals = column(a_tile, TILE_M, ty, THREAD_M);
    let b_vals = column(b_tile, TILE_N, tx, THREAD_N);
    for (row, &a) in accs.iter().zip(&a_vals) {
        for (&acc, &b) in row.iter().zip(&b_vals) {
            out.push(GStmt::Assign {
                var: acc,
                value: add(var(acc), mul(var(a), var(b))),
            });
        }
    }
    out
}

/// The registers `thread % f` and `thread / f`, bound once per `f`.
#[derive(Default)]
struct ThreadSplit(Vec<(i64, [VarId; 2])>);

impl ThreadSplit {
    fn get(&mut self, k: &mut GpuKernel, out: &mut Vec<GStmt>, f: i64) -> [VarId; 2] {
        if let Some(&(_, regs)) = self.0.iter().find(|(g, _)| *g == f) {
            return regs;
        }
        let regs = [BinOp::Rem, BinOp::Div].map(|op| {
            let v = k.var(Scalar::I64);
            out.push(GStmt::Let {
                var: v,
                value: bin(op, thread(), idx(f)),
            });
            v
        });
        self.0.push((f, regs));
        regs
    }
}

/// Where a thread's elements of one operand's shared tile lie: the tile is
/// `TILE_K` rows of `len` (+ padding) elements, filled by the block's threads in
/// order along the operand's smaller stride.
struct Loader {
    /// Strides of the operand along its free dim (m or n) and along k.
    strides: [i64; 2],
    /// Tile length along the free dim.
    len: i64,
    /// The thread's first free-dim position and k row.
    outer: VarId,
    k: VarId,
    /// The position of load `l`: free dim `outer + l·outer_step`, k row `k + l·k_step`.
    outer_step: i64,
    k_step: i64,
    /// Loads per thread.
    loads: i64,
}

impl Loader {
    fn new(
        k: &mut GpuKernel,
        out: &mut Vec<GStmt>,
        split: &mut ThreadSplit,
        strides: [i64; 2],
        len: i64,
    ) -> Loader {
        let threads = TILED_THREADS as i64;
        let along_k = strides[1].abs() <= strides[0].abs();
        // Consecutive threads take consecutive positions along the fast dim.
        let fast = if along_k { TILE_K } else { len };
        let [pos_fast, pos_slow] = split.get(k, out, fast);
        let (outer, kv, outer_step, k_step) = if along_k {
            (pos_slow, pos_fast, threads / fast, 0)
        } else {
            (pos_fast, pos_slow, 0, threads / fast)
        };
        Loader {
            strides,
            len,
            outer,
            k: kv,
            outer_step,
            k_step,
            loads: TILE_K * len / threads,
        }
    }

    /// Statements copying the slice at `k0` of the tile at `outer0` (the
    /// operand's element 0 at `base`, `extent` long along its free dim) into
    /// `tile`, zeros past the operand's edges.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        p: &Problem,
        out: &mut Vec<GStmt>,
        tile: SharedId,
        buf: usize,
        base: GExpr,
        outer0: GExpr,
        extent: i64,
        k0: GExpr,
    ) {
        for l in 0..self.loads {
            let o = add(var(self.outer), idx(l * self.outer_step));
            let kk = add(var(self.k), idx(l * self.k_step));
            let go = add(outer0.clone(), o.clone());
            let gk = add(k0.clone(), kk.clone());
            let at = add(mul(kk, idx(self.len + PAD)), o);
            let value = super::convert(
                p.storage,
                p.acc,
                load(
                    Mem::Global(buf),
                    add(
                        base.clone(),
                        add(
                            times(go.clone(), self.strides[0]),
                            times(gk.clone(), self.strides[1]),
                        ),
                    ),
                ),
            );
            let store = |value| GStmt::Store {
                mem: Mem::Shared(tile),
                index: at.clone(),
                value,
            };
            // Checks only where the sizes do not divide into whole tiles.
            let mut checks = Vec::new();
            if extent % self.len != 0 {
                checks.push(bin(BinOp::Lt, go, idx(extent)));
            }
            if p.k % TILE_K != 0 {
                checks.push(bin(BinOp::Lt, gk, idx(p.k)));
            }
            match checks.into_iter().reduce(|a, b| bin(BinOp::And, a, b)) {
                None => out.push(store(value)),
                Some(cond) => out.push(GStmt::If {
                    cond,
                    then: vec![store(value)],
                    otherwise: vec![store(fc(0.0, p.acc))],
                }),
            }
        }
    }
}
