//! Fused attention: one kernel computing what the scheduler's three attention
//! steps compute (scores GEMM, masked softmax, `P·V` GEMM), flash-attention
//! style, without writing the scores to memory.
//!
//! The rows of a problem are the `group · s_q` (query head of the group, query
//! position) pairs of one key/value head: every row reads the same keys and
//! values (grouped-query attention needs no copy). A block takes a tile of
//! rows of one (batch, kv head); each warp keeps [`ROWS_PER_WARP`] rows in
//! registers and streams over the keys [`KEY_TILE`] at a time, one key per
//! lane: each lane computes its key's scores, the warp's running maximum and
//! sum are updated by shuffles (an online softmax: the accumulator is rescaled
//! by `exp(m_old − m_new)` when the maximum grows), and the lanes, each owning
//! output columns `lane + 32·t`, add `p_j·v_j` with `p_j` broadcast from lane
//! `j`. Sums are f32.
//!
//! Two shapes ([`AttentionShape`]):
//! - **Rows** (prefill): [`ATTENTION_WARPS`] warps take different rows; each
//!   key tile of K and V is copied once into shared memory for all of them.
//!   With a causal mask, key tiles past the block's last query are skipped
//!   (every score there is masked: −∞, weight 0).
//! - **Split keys** (decode: at most [`ROWS_PER_WARP`] rows): every warp takes
//!   all rows and every `ATTENTION_WARPS`-th key tile, read straight from
//!   global memory (each is read once); the warps' maxima, sums and
//!   accumulators meet in shared memory and are combined in a fixed order.
//!
//! Semantics are the three steps', element for element: `s = scale·q·k` (the
//! GEMM's alpha), `c·tanh(s/c)`, then the mask (`s + bias`, or −∞ where a bool
//! mask is false or past the mask's width), then the causal mask (−∞ where
//! `key > query`). A row whose every score is −∞ is NaN, as `exp(−∞ − (−∞))`
//! makes it in the softmax kernel; a NaN score makes its row NaN (the maximum
//! propagates NaN). While a row has seen only −∞ scores, the running maximum
//! used for the exponentials is 0, so those keys weigh 0 instead of NaN.

use kiln_ir::DType;

use super::build::{
    add, bin, block, block_stride, fc, grid_dim, idx, lane, load, select, un, var, warp,
    warp_reduce,
};
use super::{
    Access, Axis, BinOp, BufId, GExpr, GStmt, GpuKernel, Launch, Literal, Mem, Scalar, ShuffleMode,
    UnOp, VarId, MAX_GRID_X, MAX_GRID_YZ, MAX_SHARED_BYTES, WARP_SIZE,
};
use crate::program::{AttentionOperand, AttentionSteps, BufferId, Program, Step};

/// Warps per block.
pub const ATTENTION_WARPS: u32 = 4;
/// Rows (query head, query position) one warp keeps in registers: each lane
/// holds `ROWS_PER_WARP · ⌈v_head_dim / 32⌉` accumulators, and every K element
/// read from shared memory feeds this many FMAs.
pub const ROWS_PER_WARP: usize = 4;
/// Blocks per multiprocessor the kernel asks ptxas to fit (at 128 threads,
/// any register count up to 255): left to itself ptxas squeezes small-head
/// kernels into 32 or 40 registers for occupancy, and spills; with 4 (128
/// registers) a head dim of 128 at decode spills on `sm_80`.
pub const ATTENTION_MIN_BLOCKS: u32 = 2;
/// Keys per tile: one per lane.
pub const KEY_TILE: i64 = WARP_SIZE as i64;

/// How a fused kernel splits its work (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionShape {
    /// Warps take different rows and share key tiles in shared memory.
    Rows,
    /// Every warp takes all (at most [`ROWS_PER_WARP`]) rows and a share of
    /// the keys; partial results are combined at the end.
    SplitKeys,
}

/// The shape [`attention_kernel`] gives `a`.
pub fn shape(a: &AttentionSteps) -> AttentionShape {
    let rows = a.group() * a.seq_q;
    if rows <= ROWS_PER_WARP && a.seq_kv as i64 > KEY_TILE {
        AttentionShape::SplitKeys
    } else {
        AttentionShape::Rows
    }
}

/// The buffers a fused kernel takes, in its order: Q, K, V, the mask if any,
/// and the output.
pub fn attention_args(a: &AttentionSteps) -> Vec<BufferId> {
    let mut args = vec![a.q.buf, a.k.buf, a.v.buf];
    args.extend(a.mask.as_ref().map(|m| m.buf));
    args.push(a.out);
    args
}

/// The fused kernel computing `a` (a record of `prog`), named `name`, over
/// [`attention_args`]; `None` when the record does not describe three steps of
/// `prog` the kernel can take (f32 operands, shared memory within
/// [`MAX_SHARED_BYTES`]): those steps then run as they are.
pub fn attention_kernel(name: &str, a: &AttentionSteps, prog: &Program) -> Option<GpuKernel> {
    if !fits(a, prog) {
        return None;
    }
    let k = Builder::new(name, a, prog).build();
    (k.shared_bytes() <= MAX_SHARED_BYTES && k.check().is_ok()).then_some(k)
}

/// Whether `a` is consistent with `prog` (artifacts store both: a damaged
/// record must not index out of bounds) and of a form the kernel takes.
fn fits(a: &AttentionSteps, prog: &Program) -> bool {
    let buf = |b: BufferId| prog.buffers.get(b);
    let steps_ok = matches!(
        a.steps.map(|s| prog.steps.get(s)),
        [
            Some(Step::Gemm(_)),
            Some(Step::Kernel { .. }),
            Some(Step::Gemm(_))
        ]
    );
    let bs = a.batch.clone();
    let operand = |o: &AttentionOperand, heads: usize, seq: usize, dim: usize| {
        let mut dims = bs.clone();
        dims.extend([heads, seq, dim]);
        buf(o.buf).is_some_and(|b| b.dtype == DType::F32 && within(&dims, &o.strides, b.numel()))
    };
    let mask_ok = a.mask.as_ref().is_none_or(|m| {
        let mut dims = bs.clone();
        dims.extend([a.heads_q, a.seq_q, m.width]);
        m.width <= a.seq_kv
            && matches!(m.dtype, DType::F32 | DType::Bool)
            && buf(m.buf).is_some_and(|b| {
                b.dtype == m.dtype && b.numel() > 0 && within(&dims, &m.strides, b.numel())
            })
    });
    let out_len = a.batch.iter().product::<usize>() * a.heads_q * a.seq_q * a.v_head_dim;
    steps_ok
        && a.heads_kv > 0
        && a.heads_q.is_multiple_of(a.heads_kv)
        && a.seq_kv > 0
        && a.head_dim > 0
        && out_len > 0
        && operand(&a.q, a.heads_q, a.seq_q, a.head_dim)
        && operand(&a.k, a.heads_kv, a.seq_kv, a.head_dim)
        && operand(&a.v, a.heads_kv, a.seq_kv, a.v_head_dim)
        && mask_ok
        && buf(a.out).is_some_and(|b| b.dtype == DType::F32 && b.numel() == out_len)
}

/// Whether every element of `dims` at non-negative `strides` lies in `len`.
fn within(dims: &[usize], strides: &[isize], len: usize) -> bool {
    if dims.len() != strides.len() || strides.iter().any(|&s| s < 0) {
        return false;
    }
    if dims.contains(&0) {
        return true;
    }
    let last = dims.iter().zip(strides).try_fold(0usize, |acc, (&d, &s)| {
        acc.checked_add((d - 1).checked_mul(s as usize)?)
    });
    last.is_some_and(|l| l < len)
}

/// Kernel buffers, in [`attention_args`] order.
const Q: BufId = 0;
const K: BufId = 1;
const V: BufId = 2;

/// The running state of one of a warp's rows, in registers through the key
/// loop. Where the row is (query position, mask row) is recomputed per key
/// tile from `slot`: a few integer operations, while keeping them live would
/// push small kernels past 32 registers, where ptxas prefers to spill.
struct Row {
    /// The row's position among the warp's rows.
    slot: usize,
    /// Running maximum of the scores.
    max: VarId,
    /// Running sum of `exp(score − max)`.
    sum: VarId,
    /// Accumulators of output columns `lane + 32·t`.
    acc: Vec<VarId>,
}

/// Where a row is: its query position and its mask row's offset.
struct Position {
    query: VarId,
    mask_at: Option<VarId>,
}

/// Generates one fused kernel.
struct Builder<'a> {
    a: &'a AttentionSteps,
    k: GpuKernel,
    shape: AttentionShape,
    /// Rows of a block's tile.
    block_rows: i64,
    /// Rows per kv head (`group · s_q`).
    rows: i64,
    /// Output column slots per lane (`⌈v_head_dim / 32⌉`).
    slots: usize,
    mask: Option<BufId>,
    out: BufId,
}

impl<'a> Builder<'a> {
    fn new(name: &str, a: &'a AttentionSteps, prog: &Program) -> Builder<'a> {
        let shape = shape(a);
        let warps = ATTENTION_WARPS as i64;
        let block_rows = match shape {
            AttentionShape::Rows => warps * ROWS_PER_WARP as i64,
            AttentionShape::SplitKeys => ROWS_PER_WARP as i64,
        };
        let rows = (a.group() * a.seq_q) as i64;
        let tiles = (rows + block_rows - 1) / block_rows;
        let heads = a.batch.iter().product::<usize>() as i64 * a.heads_kv as i64;
        let launch = Launch {
            grid: [
                tiles.clamp(1, MAX_GRID_X as i64) as u32,
                heads.clamp(1, MAX_GRID_YZ as i64) as u32,
                1,
            ],
            block: ATTENTION_WARPS * WARP_SIZE,
        };
        let mut k = GpuKernel::new(name, launch);
        k.min_blocks = Some(ATTENTION_MIN_BLOCKS);
        let len = |b: BufferId| prog.buffers[b].numel();
        k.buffer("q", Scalar::F32, len(a.q.buf), Access::Read);
        k.buffer("k", Scalar::F32, len(a.k.buf), Access::Read);
        k.buffer("v", Scalar::F32, len(a.v.buf), Access::Read);
        let mask = a
            .mask
            .as_ref()
            .map(|m| k.buffer("mask", Scalar::of(m.dtype), len(m.buf), Access::Read));
        let out = k.buffer("y", Scalar::F32, len(a.out), Access::Write);
        Builder {
            a,
            k,
            shape,
            block_rows,
            rows,
            slots: a.v_head_dim.div_ceil(WARP_SIZE as usize),
            mask,
            out,
        }
    }

    fn i64(&mut self, out: &mut Vec<GStmt>, value: GExpr) -> VarId {
        self.let_(out, Scalar::I64, value)
    }

    fn let_(&mut self, out: &mut Vec<GStmt>, ty: Scalar, value: GExpr) -> VarId {
        let v = self.k.var(ty);
        out.push(GStmt::Let { var: v, value });
        v
    }

    fn decl(&mut self, out: &mut Vec<GStmt>, ty: Scalar, init: GExpr) -> VarId {
        let v = self.k.var(ty);
        out.push(GStmt::Decl { var: v, init });
        v
    }

    fn build(mut self) -> GpuKernel {
        let a = self.a;
        let lead = a.batch.len();
        let d = a.head_dim as i64;
        let q_sh = self
            .k
            .shared("q_tile", Scalar::F32, (self.block_rows * d) as usize);

        let bh = self.k.var(Scalar::I64);
        let mut per_head = Vec::new();
        let hkv = a.heads_kv as i64;
        let b = self.i64(&mut per_head, bin(BinOp::Div, var(bh), idx(hkv)));
        let h = self.i64(&mut per_head, bin(BinOp::Rem, var(bh), idx(hkv)));
        // Offsets of the batch entry in each operand (and the first query head
        // of the group), computed once per (batch, kv head).
        let mut strides: Vec<&[isize]> = vec![&a.q.strides, &a.k.strides, &a.v.strides];
        if let Some(m) = &a.mask {
            strides.push(&m.strides);
        }
        let mut offs = self.batch_offsets(&mut per_head, var(b), &strides);
        let group = a.group() as i64;
        let head0 = mul(var(h), idx(group));
        offs[0] = add(
            offs[0].clone(),
            mul(head0.clone(), idx(a.q.strides[lead] as i64)),
        );
        offs[1] = add(offs[1].clone(), mul(var(h), idx(a.k.strides[lead] as i64)));
        offs[2] = add(offs[2].clone(), mul(var(h), idx(a.v.strides[lead] as i64)));
        if let Some(m) = &a.mask {
            offs[3] = add(
                offs[3].clone(),
                mul(head0.clone(), idx(m.strides[lead] as i64)),
            );
        }
        let offs: Vec<VarId> = offs
            .into_iter()
            .map(|o| self.i64(&mut per_head, o))
            .collect();
        // The output is dense [batch..., h_q, s_q, dv].
        let out_head = self.i64(
            &mut per_head,
            mul(
                add(mul(var(b), idx(a.heads_q as i64)), head0),
                idx((a.seq_q * a.v_head_dim) as i64),
            ),
        );

        let tile = self.k.var(Scalar::I64);
        let tile_body = self.tile(q_sh, &offs, out_head, tile);
        let tiles = (self.rows + self.block_rows - 1) / self.block_rows;
        per_head.push(uniform_loop(tile, Axis::X, tiles, tile_body));
        let heads = a.batch.iter().product::<usize>() as i64 * hkv;
        self.k.body = vec![uniform_loop(bh, Axis::Y, heads, per_head)];
        self.k
    }

    /// Statements binding `Σ_d index_d · strides[s][d]` over the leading batch
    /// dims of the flat batch index `b`, for each stride vector `s`.
    fn batch_offsets(
        &mut self,
        out: &mut Vec<GStmt>,
        b: GExpr,
        strides: &[&[isize]],
    ) -> Vec<GExpr> {
        let dims = self.a.batch.clone();
        let mut offs = vec![idx(0); strides.len()];
        let mut rest = b;
        for (dim, &len) in dims.iter().enumerate().rev() {
            let i = if dim == 0 {
                rest.clone()
            } else {
                bin(BinOp::Rem, rest.clone(), idx(len as i64))
            };
            for (o, s) in offs.iter_mut().zip(strides) {
                if s[dim] != 0 {
                    *o = add(o.clone(), mul(i.clone(), idx(s[dim] as i64)));
                }
            }
            if dim > 0 {
                let next = self.i64(out, bin(BinOp::Div, rest, idx(len as i64)));
                rest = var(next);
            }
        }
        offs
    }

    /// The statements of one row tile: Q into shared memory, the key loop,
    /// the output.
    fn tile(&mut self, q_sh: usize, offs: &[VarId], out_head: VarId, tile: VarId) -> Vec<GStmt> {
        let a = self.a;
        let lead = a.batch.len();
        let (d, sq) = (a.head_dim as i64, a.seq_q as i64);
        let mut body = Vec::new();
        let r0 = self.i64(&mut body, mul(var(tile), idx(self.block_rows)));

        // Q rows of the tile (zeros past the last row).
        let e = self.k.var(Scalar::I64);
        let mut copy = Vec::new();
        let rg = self.i64(&mut copy, add(var(r0), bin(BinOp::Div, var(e), idx(d))));
        let c = self.i64(&mut copy, bin(BinOp::Rem, var(e), idx(d)));
        let rc = self.i64(&mut copy, bin(BinOp::Min, var(rg), idx(self.rows - 1)));
        let q_at = add(
            var(offs[0]),
            add(
                add(
                    mul(
                        bin(BinOp::Div, var(rc), idx(sq)),
                        idx(a.q.strides[lead] as i64),
                    ),
                    mul(
                        bin(BinOp::Rem, var(rc), idx(sq)),
                        idx(a.q.strides[lead + 1] as i64),
                    ),
                ),
                mul(var(c), idx(a.q.strides[lead + 2] as i64)),
            ),
        );
        copy.push(GStmt::Store {
            mem: Mem::Shared(q_sh),
            index: var(e),
            value: select(
                bin(BinOp::Lt, var(rg), idx(self.rows)),
                load(Mem::Global(Q), q_at),
                fc(0.0, Scalar::F32),
            ),
        });
        body.push(block_stride(e, idx(self.block_rows * d), copy));
        body.push(GStmt::Barrier);

        // The keys any row of the tile attends to: with a causal mask, none
        // past the tile's last query position.
        let kv_end = if a.causal {
            let last = self.i64(
                &mut body,
                bin(
                    BinOp::Min,
                    add(var(r0), idx(self.block_rows - 1)),
                    idx(self.rows - 1),
                ),
            );
            let same = bin(
                BinOp::Eq,
                bin(BinOp::Div, var(r0), idx(sq)),
                bin(BinOp::Div, var(last), idx(sq)),
            );
            let max_query = select(same, bin(BinOp::Rem, var(last), idx(sq)), idx(sq - 1));
            self.i64(
                &mut body,
                bin(BinOp::Min, add(max_query, idx(1)), idx(a.seq_kv as i64)),
            )
        } else {
            self.i64(&mut body, idx(a.seq_kv as i64))
        };

        // This warp's rows.
        let first = match self.shape {
            AttentionShape::Rows => mul(warp(), idx(ROWS_PER_WARP as i64)),
            AttentionShape::SplitKeys => idx(0),
        };
        let first = self.i64(&mut body, first);
        let rows: Vec<Row> = (0..ROWS_PER_WARP).map(|r| self.row(&mut body, r)).collect();

        match self.shape {
            AttentionShape::Rows => {
                let k_stride = d | 1; // odd: lanes reading their key's row hit distinct banks
                let dv = a.v_head_dim as i64;
                let k_sh = self
                    .k
                    .shared("k_tile", Scalar::F32, (KEY_TILE * k_stride) as usize);
                let v_sh = self
                    .k
                    .shared("v_tile", Scalar::F32, (KEY_TILE * dv) as usize);
                let k0 = self.k.var(Scalar::I64);
                let mut step = Vec::new();
                self.copy_tile(&mut step, k_sh, K, offs[1], k0, d, k_stride, &a.k.strides);
                self.copy_tile(&mut step, v_sh, V, offs[2], k0, dv, dv, &a.v.strides);
                step.push(GStmt::Barrier);
                let src = Source::Shared {
                    k_sh,
                    v_sh,
                    k_stride,
                };
                self.key_tile(&mut step, &rows, q_sh, [r0, first], offs, k0, src);
                // The next tile overwrites K and V once every warp used them.
                step.push(GStmt::Barrier);
                body.push(GStmt::For {
                    var: k0,
                    start: idx(0),
                    end: var(kv_end),
                    step: idx(KEY_TILE),
                    body: step,
                });
                self.store_rows(&mut body, &rows, out_head, [r0, first]);
            }
            AttentionShape::SplitKeys => {
                let k0 = self.k.var(Scalar::I64);
                let mut step = Vec::new();
                self.key_tile(
                    &mut step,
                    &rows,
                    q_sh,
                    [r0, first],
                    offs,
                    k0,
                    Source::Global,
                );
                // Warp w takes key tiles w, w + warps, ...: no barrier inside.
                body.push(GStmt::For {
                    var: k0,
                    start: mul(warp(), idx(KEY_TILE)),
                    end: var(kv_end),
                    step: idx(KEY_TILE * ATTENTION_WARPS as i64),
                    body: step,
                });
                self.combine(&mut body, &rows, r0, out_head);
            }
        }
        // The next tile overwrites Q (and the partials) once every thread is done.
        body.push(GStmt::Barrier);
        body
    }

    /// The running state of row `r` of the warp.
    fn row(&mut self, out: &mut Vec<GStmt>, r: usize) -> Row {
        let max = self.decl(out, Scalar::F32, fc(f64::NEG_INFINITY, Scalar::F32));
        let sum = self.decl(out, Scalar::F32, fc(0.0, Scalar::F32));
        let acc = (0..self.slots)
            .map(|_| self.decl(out, Scalar::F32, fc(0.0, Scalar::F32)))
            .collect();
        Row {
            slot: r,
            max,
            sum,
            acc,
        }
    }

    /// Statements binding the position of row `r` of the warp (tile row
    /// `first + r`).
    fn position(
        &mut self,
        out: &mut Vec<GStmt>,
        offs: &[VarId],
        [r0, first]: [VarId; 2],
        r: usize,
    ) -> Position {
        let a = self.a;
        let lead = a.batch.len();
        let sq = a.seq_q as i64;
        let index = self.i64(out, add(var(r0), add(var(first), idx(r as i64))));
        // Rows past the end compute on the last row (in bounds) and store nothing.
        let rc = self.i64(out, bin(BinOp::Min, var(index), idx(self.rows - 1)));
        let g = self.i64(out, bin(BinOp::Div, var(rc), idx(sq)));
        let query = self.i64(out, bin(BinOp::Rem, var(rc), idx(sq)));
        let mask_at = a.mask.as_ref().map(|m| {
            let at = add(
                var(offs[3]),
                add(
                    mul(var(g), idx(m.strides[lead] as i64)),
                    mul(var(query), idx(m.strides[lead + 1] as i64)),
                ),
            );
            self.i64(out, at)
        });
        Position { query, mask_at }
    }

    /// Copies keys `k0..k0 + KEY_TILE` (`dim` elements each, zeros past the
    /// last key) of `buf` into `tile`, rows `stride` apart.
    #[allow(clippy::too_many_arguments)]
    fn copy_tile(
        &mut self,
        out: &mut Vec<GStmt>,
        tile: usize,
        buf: BufId,
        base: VarId,
        k0: VarId,
        dim: i64,
        stride: i64,
        strides: &[isize],
    ) {
        let lead = self.a.batch.len();
        let skv = self.a.seq_kv as i64;
        let e = self.k.var(Scalar::I64);
        let mut copy = Vec::new();
        let key = self.i64(&mut copy, add(var(k0), bin(BinOp::Div, var(e), idx(dim))));
        let c = self.i64(&mut copy, bin(BinOp::Rem, var(e), idx(dim)));
        let at = add(
            var(base),
            add(
                mul(
                    bin(BinOp::Min, var(key), idx(skv - 1)),
                    idx(strides[lead + 1] as i64),
                ),
                mul(var(c), idx(strides[lead + 2] as i64)),
            ),
        );
        copy.push(GStmt::Store {
            mem: Mem::Shared(tile),
            index: add(mul(bin(BinOp::Div, var(e), idx(dim)), idx(stride)), var(c)),
            value: select(
                bin(BinOp::Lt, var(key), idx(skv)),
                load(Mem::Global(buf), at),
                fc(0.0, Scalar::F32),
            ),
        });
        out.push(block_stride(e, idx(KEY_TILE * dim), copy));
    }

    /// One key tile at `k0` for the warp's rows: scores, the online softmax
    /// update, and the accumulation of `p·V`.
    #[allow(clippy::too_many_arguments)]
    fn key_tile(
        &mut self,
        out: &mut Vec<GStmt>,
        rows: &[Row],
        q_sh: usize,
        [r0, first]: [VarId; 2],
        offs: &[VarId],
        k0: VarId,
        src: Source,
    ) {
        let a = self.a;
        let lead = a.batch.len();
        let (d, skv, dv) = (a.head_dim as i64, a.seq_kv as i64, a.v_head_dim as i64);
        let f32 = Scalar::F32;
        let neg_inf = fc(f64::NEG_INFINITY, f32);
        let key = self.i64(out, add(var(k0), lane()));
        // In-bounds key for global reads past the last key.
        let key_c = self.i64(out, bin(BinOp::Min, var(key), idx(skv - 1)));

        // Dot products of the lane's key with each row's query.
        let dots: Vec<VarId> = rows
            .iter()
            .map(|_| self.decl(out, f32, fc(0.0, f32)))
            .collect();
        let c = self.k.var(Scalar::I64);
        let mut inner = Vec::new();
        let k_at = match src {
            Source::Shared { k_sh, k_stride, .. } => {
                load(Mem::Shared(k_sh), add(mul(lane(), idx(k_stride)), var(c)))
            }
            Source::Global => load(
                Mem::Global(K),
                add(
                    var(offs[1]),
                    add(
                        mul(var(key_c), idx(a.k.strides[lead + 1] as i64)),
                        mul(var(c), idx(a.k.strides[lead + 2] as i64)),
                    ),
                ),
            ),
        };
        let kv = self.let_(&mut inner, f32, k_at);
        for (r, &dot) in dots.iter().enumerate() {
            let q = load(
                Mem::Shared(q_sh),
                add(mul(add(var(first), idx(r as i64)), idx(d)), var(c)),
            );
            inner.push(GStmt::Assign {
                var: dot,
                value: add(var(dot), mul(q, var(kv))),
            });
        }
        out.push(GStmt::For {
            var: c,
            start: idx(0),
            end: idx(d),
            step: idx(1),
            body: inner,
        });

        // Scores with the three steps' semantics, then the online softmax.
        let mut probs = Vec::new();
        for (row, &dot) in rows.iter().zip(&dots) {
            let pos = self.position(out, offs, [r0, first], row.slot);
            let mut s = mul(var(dot), fc(a.scale, f32));
            if let Some(cap) = a.softcap {
                s = mul(
                    fc(cap, f32),
                    un(UnOp::Tanh, bin(BinOp::Div, s, fc(cap, f32))),
                );
            }
            if let (Some(m), Some(mbuf), Some(at)) = (&a.mask, self.mask, pos.mask_at) {
                let inside = bin(BinOp::Lt, var(key), idx(m.width as i64));
                let full = add(var(at), mul(var(key), idx(m.strides[lead + 2] as i64)));
                let raw = load(Mem::Global(mbuf), select(inside.clone(), full, idx(0)));
                let bias = if m.dtype == DType::Bool {
                    let f = GExpr::Lit(Literal::Int(0, Scalar::Bool));
                    select(bin(BinOp::Ne, raw, f), fc(0.0, f32), neg_inf.clone())
                } else {
                    raw
                };
                s = select(inside, bin(BinOp::Add, s, bias), neg_inf.clone());
            }
            if a.causal {
                s = select(bin(BinOp::Gt, var(key), var(pos.query)), neg_inf.clone(), s);
            }
            // Lanes past the last key are no key at all.
            s = select(bin(BinOp::Lt, var(key), idx(skv)), s, neg_inf.clone());
            let s = self.let_(out, f32, s);
            let tile_max = warp_reduce(&mut self.k, out, BinOp::Max, s);
            let new_max = self.let_(out, f32, bin(BinOp::Max, var(row.max), var(tile_max)));
            // While every score so far is −∞, exponentials are taken against 0
            // (weights 0) rather than −∞ (NaN).
            let base = self.let_(
                out,
                f32,
                select(
                    bin(BinOp::Eq, var(new_max), neg_inf.clone()),
                    fc(0.0, f32),
                    var(new_max),
                ),
            );
            let rescale = self.let_(
                out,
                f32,
                un(UnOp::Exp, bin(BinOp::Sub, var(row.max), var(base))),
            );
            let p = self.let_(out, f32, un(UnOp::Exp, bin(BinOp::Sub, var(s), var(base))));
            let tile_sum = warp_reduce(&mut self.k, out, BinOp::Add, p);
            out.push(GStmt::Assign {
                var: row.sum,
                value: add(mul(var(row.sum), var(rescale)), var(tile_sum)),
            });
            out.push(GStmt::Assign {
                var: row.max,
                value: var(new_max),
            });
            for &acc in &row.acc {
                out.push(GStmt::Assign {
                    var: acc,
                    value: mul(var(acc), var(rescale)),
                });
            }
            probs.push(p);
        }

        // acc += p_j · v_j over the tile's keys, p_j broadcast from lane j.
        let keys = self.i64(
            out,
            bin(
                BinOp::Min,
                idx(KEY_TILE),
                bin(BinOp::Sub, idx(skv), var(k0)),
            ),
        );
        let j = self.k.var(Scalar::I64);
        let mut inner = Vec::new();
        let pj: Vec<VarId> = probs
            .iter()
            .map(|&p| {
                let dst = self.k.var(f32);
                inner.push(GStmt::Shuffle {
                    dst,
                    src: p,
                    mode: ShuffleMode::Index,
                    arg: var(j),
                });
                dst
            })
            .collect();
        for t in 0..self.slots {
            let col = bin(
                BinOp::Min,
                add(lane(), idx(t as i64 * WARP_SIZE as i64)),
                idx(dv - 1),
            );
            let v_at = match src {
                Source::Shared { v_sh, .. } => {
                    load(Mem::Shared(v_sh), add(mul(var(j), idx(dv)), col))
                }
                Source::Global => load(
                    Mem::Global(V),
                    add(
                        var(offs[2]),
                        add(
                            mul(add(var(k0), var(j)), idx(a.v.strides[lead + 1] as i64)),
                            mul(col, idx(a.v.strides[lead + 2] as i64)),
                        ),
                    ),
                ),
            };
            let vv = self.let_(&mut inner, f32, v_at);
            for (row, &p) in rows.iter().zip(&pj) {
                inner.push(GStmt::Assign {
                    var: row.acc[t],
                    value: add(var(row.acc[t]), mul(var(p), var(vv))),
                });
            }
        }
        out.push(GStmt::For {
            var: j,
            start: idx(0),
            end: var(keys),
            step: idx(1),
            body: inner,
        });
    }

    /// `acc / sum`, or NaN where every score of the row was −∞ (the softmax
    /// kernel's `exp(−∞ − (−∞))`).
    fn finish(&self, max: GExpr, acc: GExpr, sum: GExpr) -> GExpr {
        let f32 = Scalar::F32;
        select(
            bin(BinOp::Eq, max, fc(f64::NEG_INFINITY, f32)),
            fc(f64::NAN, f32),
            mul(acc, bin(BinOp::Div, fc(1.0, f32), sum)),
        )
    }

    /// Statements binding whether row `index` (of the kv head's rows) exists
    /// and the offset of its output row: bound after the key loop, so these
    /// registers are not live through it.
    fn out_row(&mut self, out: &mut Vec<GStmt>, out_head: VarId, index: GExpr) -> (VarId, VarId) {
        let (sq, dv) = (self.a.seq_q as i64, self.a.v_head_dim as i64);
        let valid = self.let_(
            out,
            Scalar::Bool,
            bin(BinOp::Lt, index.clone(), idx(self.rows)),
        );
        let at = add(
            var(out_head),
            add(
                mul(bin(BinOp::Div, index.clone(), idx(sq)), idx(sq * dv)),
                mul(bin(BinOp::Rem, index, idx(sq)), idx(dv)),
            ),
        );
        (valid, self.i64(out, at))
    }

    /// Stores each valid row's output columns (the rows shape).
    fn store_rows(
        &mut self,
        out: &mut Vec<GStmt>,
        rows: &[Row],
        out_head: VarId,
        [r0, first]: [VarId; 2],
    ) {
        let dv = self.a.v_head_dim as i64;
        for row in rows {
            let index = add(var(r0), add(var(first), idx(row.slot as i64)));
            let (valid, out_at) = self.out_row(out, out_head, index);
            for (t, &acc) in row.acc.iter().enumerate() {
                let col = add(lane(), idx(t as i64 * WARP_SIZE as i64));
                let value = self.finish(var(row.max), var(acc), var(row.sum));
                out.push(GStmt::If {
                    cond: bin(BinOp::And, var(valid), bin(BinOp::Lt, col.clone(), idx(dv))),
                    then: vec![GStmt::Store {
                        mem: Mem::Global(self.out),
                        index: add(var(out_at), col),
                        value,
                    }],
                    otherwise: vec![],
                });
            }
        }
    }

    /// The split-keys shape's end: each warp's maxima, sums and accumulators
    /// into shared memory, then the block combines them per output element,
    /// warps in order.
    fn combine(&mut self, out: &mut Vec<GStmt>, rows: &[Row], r0: VarId, out_head: VarId) {
        let f32 = Scalar::F32;
        let warps = ATTENTION_WARPS as i64;
        let r_n = ROWS_PER_WARP as i64;
        let dv = self.a.v_head_dim as i64;
        let max_sh = self.k.shared("part_max", f32, (warps * r_n) as usize);
        let sum_sh = self.k.shared("part_sum", f32, (warps * r_n) as usize);
        let acc_sh = self.k.shared("part_acc", f32, (warps * r_n * dv) as usize);
        let mut lane0 = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let slot = add(mul(warp(), idx(r_n)), idx(r as i64));
            lane0.push(GStmt::Store {
                mem: Mem::Shared(max_sh),
                index: slot.clone(),
                value: var(row.max),
            });
            lane0.push(GStmt::Store {
                mem: Mem::Shared(sum_sh),
                index: slot.clone(),
                value: var(row.sum),
            });
            for (t, &acc) in row.acc.iter().enumerate() {
                let col = add(lane(), idx(t as i64 * WARP_SIZE as i64));
                out.push(GStmt::If {
                    cond: bin(BinOp::Lt, col.clone(), idx(dv)),
                    then: vec![GStmt::Store {
                        mem: Mem::Shared(acc_sh),
                        index: add(mul(slot.clone(), idx(dv)), col),
                        value: var(acc),
                    }],
                    otherwise: vec![],
                });
            }
        }
        out.push(GStmt::If {
            cond: bin(BinOp::Eq, lane(), idx(0)),
            then: lane0,
            otherwise: vec![],
        });
        out.push(GStmt::Barrier);

        // One thread per (row, column) of the tile.
        let e = self.k.var(Scalar::I64);
        let mut body = Vec::new();
        let r = self.i64(&mut body, bin(BinOp::Div, var(e), idx(dv)));
        let c = self.i64(&mut body, bin(BinOp::Rem, var(e), idx(dv)));
        let part = |w: i64| add(idx(w * r_n), var(r));
        let mut max = load(Mem::Shared(max_sh), part(0));
        for w in 1..warps {
            max = bin(BinOp::Max, max, load(Mem::Shared(max_sh), part(w)));
        }
        let max = self.let_(&mut body, f32, max);
        let (mut num, mut den): (Option<GExpr>, Option<GExpr>) = (None, None);
        for w in 0..warps {
            // Warps that saw no key or only −∞ scores have max −∞: weight 0.
            let weight = self.let_(
                &mut body,
                f32,
                un(
                    UnOp::Exp,
                    bin(BinOp::Sub, load(Mem::Shared(max_sh), part(w)), var(max)),
                ),
            );
            let acc = load(Mem::Shared(acc_sh), add(mul(part(w), idx(dv)), var(c)));
            let term = mul(acc, var(weight));
            num = Some(num.map_or(term.clone(), |n| add(n, term)));
            let term = mul(load(Mem::Shared(sum_sh), part(w)), var(weight));
            den = Some(den.map_or(term.clone(), |d| add(d, term)));
        }
        let (num, den) = (num.expect("warps > 0"), den.expect("warps > 0"));
        let value = self.finish(var(max), num, den);
        let (valid, out_at) = self.out_row(&mut body, out_head, add(var(r0), var(r)));
        body.push(GStmt::If {
            cond: var(valid),
            then: vec![GStmt::Store {
                mem: Mem::Global(self.out),
                index: add(var(out_at), var(c)),
                value,
            }],
            otherwise: vec![],
        });
        out.push(block_stride(e, idx(r_n * dv), body));
    }
}

/// Where a key tile's K and V come from.
#[derive(Clone, Copy)]
enum Source {
    /// Tiles the block copied into shared memory (K rows `k_stride` apart).
    Shared {
        k_sh: usize,
        v_sh: usize,
        k_stride: i64,
    },
    /// Global memory (each key read by one warp only).
    Global,
}

/// `a · b`, folding integer zeros and ones (index arithmetic of broadcast and
/// unit strides stays readable).
fn mul(a: GExpr, b: GExpr) -> GExpr {
    let zero = |e: &GExpr| matches!(e, GExpr::Lit(Literal::Int(0, _)));
    if zero(&a) || zero(&b) {
        idx(0)
    } else {
        super::build::mul(a, b)
    }
}

/// A block-uniform loop of `v` over `0..end`, each block starting at its index
/// along `axis` and stepping by the grid's length (any count fits the grid).
fn uniform_loop(v: VarId, axis: Axis, end: i64, body: Vec<GStmt>) -> GStmt {
    GStmt::For {
        var: v,
        start: block(axis),
        end: idx(end),
        step: grid_dim(axis),
        body,
    }
}
