//! The GPU kernel IR: one SIMT kernel with an explicit launch shape, run by every
//! thread of every block, for the CUDA backend.
//!
//! It shares its scalar language with the CPU kernel IR ([`crate::kernel`]):
//! [`Scalar`] types, [`UnOp`]/[`BinOp`] operations, [`Literal`]s, and the same
//! typing rules (`f16`/`bf16` are storage types, cast to `f32` to compute; indices
//! are `i64`). What it adds is the GPU's execution model:
//!
//! - **Launch shape.** A [`Launch`] of `grid` blocks (up to three axes) of `block`
//!   threads (one axis, a multiple of [`WARP_SIZE`]). Threads read their position
//!   through [`Special`] values: thread, block, lane and warp indices.
//! - **Memory.** Global buffers ([`Buffer`], shared with the CPU kernel IR: the
//!   launch's arguments) and block-local [`SharedArray`]s; per-thread registers are
//!   the kernel's variables.
//! - **Control flow.** Loops with run-time bounds and steps (grid-stride and
//!   block-stride loops), `if`/`else` that threads of one warp may take differently.
//! - **Synchronization.** [`GStmt::Barrier`] (`__syncthreads`): every thread of the
//!   block must reach the same barrier, so it may only stand where control flow
//!   is uniform across the block ([`GpuKernel::check`] verifies this statically).
//! - **Warp shuffles** ([`GStmt::Shuffle`]) read another lane's register; warp and
//!   block reductions are built from them ([`build::warp_reduce`],
//!   [`build::block_reduce`]).
//! - **Vector memory access** ([`GStmt::LoadVec`], [`GStmt::StoreVec`]): up to
//!   [`MAX_VECTOR_BYTES`] (128 bits) in one access, aligned to its size.
//! - **Atomic adds** to global memory (split-K partial sums).
//!
//! Four things consume a kernel: the checker ([`GpuKernel::check`]), the text form
//! (`Display`, for snapshots), the SIMT interpreter ([`sim`]), which runs it on
//! the CPU with every thread of a block in lockstep and reports out-of-bounds
//! accesses, divergent barriers and races, and the CUDA C printer ([`cuda`]),
//! whose output NVRTC compiles.

pub mod attention;
mod check;
pub mod check_indices;
pub mod cuda;
pub mod elementwise;
pub mod from_cpu;
pub mod gemm;
pub mod lower;
mod print;
pub mod program;
mod rewrite;
pub mod rows;
pub mod sim;

pub use check::GpuKernelError;
pub use lower::lower_kernel;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::kernel::{Access, BinOp, BufId, Buffer, Literal, Scalar, UnOp, VarId};

/// Threads of one warp: they execute in lockstep and exchange registers by shuffles.
pub const WARP_SIZE: u32 = 32;
/// Most threads one block may have (every CUDA architecture kiln targets).
pub const MAX_BLOCK_THREADS: u32 = 1024;
/// Most blocks along grid axis x.
pub const MAX_GRID_X: u32 = (1 << 31) - 1;
/// Most blocks along grid axes y and z.
pub const MAX_GRID_YZ: u32 = 65_535;
/// Shared memory one block may use without opting in to more (48 KiB on every
/// architecture; Hopper allows up to 227 KiB with an attribute kiln does not set yet).
pub const MAX_SHARED_BYTES: usize = 48 * 1024;
/// Widest single memory access: 128 bits (`float4`, eight halves).
pub const MAX_VECTOR_BYTES: usize = 16;

/// How many blocks and threads a launch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// Blocks along x, y and z.
    pub grid: [u32; 3],
    /// Threads per block (one axis), a multiple of [`WARP_SIZE`].
    pub block: u32,
}

impl Launch {
    /// A one-axis grid of `blocks` blocks of `threads` threads.
    pub fn linear(blocks: u32, threads: u32) -> Launch {
        Launch {
            grid: [blocks, 1, 1],
            block: threads,
        }
    }

    /// Blocks in the whole grid.
    pub fn blocks(&self) -> u64 {
        self.grid.iter().map(|&g| g as u64).product()
    }

    /// Warps per block.
    pub fn warps(&self) -> u32 {
        self.block.div_ceil(WARP_SIZE)
    }
}

/// A grid axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Axis {
    /// The first axis.
    X,
    /// The second axis.
    Y,
    /// The third axis.
    Z,
}

impl Axis {
    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        match self {
            Axis::X => 0,
            Axis::Y => 1,
            Axis::Z => 2,
        }
    }

    /// `x`, `y` or `z`.
    pub fn name(self) -> &'static str {
        ["x", "y", "z"][self.index()]
    }
}

/// A value fixed by a thread's position in the launch (all `i64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Special {
    /// The thread's index in its block (`threadIdx.x`).
    Thread,
    /// The block's index along an axis (`blockIdx`).
    Block(Axis),
    /// Threads per block (`blockDim.x`).
    BlockDim,
    /// Blocks along an axis (`gridDim`).
    GridDim(Axis),
    /// The thread's lane in its warp (`threadIdx.x % 32`).
    Lane,
    /// The thread's warp in its block (`threadIdx.x / 32`).
    Warp,
}

impl Special {
    /// True when the value differs between threads of one block.
    pub fn varies_in_block(self) -> bool {
        matches!(self, Special::Thread | Special::Lane | Special::Warp)
    }
}

/// Index of a shared array in [`GpuKernel::shared`].
pub type SharedId = usize;

/// A block-local array in shared memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedArray {
    /// A readable name.
    pub name: String,
    /// Element type.
    pub scalar: Scalar,
    /// Number of elements.
    pub len: usize,
}

/// Where a load or store goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mem {
    /// A global buffer (a launch argument).
    Global(BufId),
    /// A shared array of the block.
    Shared(SharedId),
}

/// A pure scalar expression evaluated by one thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GExpr {
    /// A constant.
    Lit(Literal),
    /// A register's current value.
    Var(VarId),
    /// The thread's position in the launch.
    Special(Special),
    /// `mem[index]`.
    Load {
        /// The memory.
        mem: Mem,
        /// Element index (`i64`).
        index: Box<GExpr>,
    },
    /// One operand.
    Unary(UnOp, Box<GExpr>),
    /// Two operands of one type.
    Binary(BinOp, Box<GExpr>, Box<GExpr>),
    /// `cond ? a : b` (both evaluated).
    Select(Box<GExpr>, Box<GExpr>, Box<GExpr>),
    /// Conversion, with the CPU kernel IR's (ONNX `Cast`) semantics.
    Cast(Scalar, Box<GExpr>),
}

/// How a shuffle picks the lane it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShuffleMode {
    /// Lane `lane ^ arg` (butterfly reductions).
    Xor,
    /// Lane `lane + arg`; lanes past the warp keep their own value.
    Down,
    /// Lane `lane − arg`; lanes before 0 keep their own value.
    Up,
    /// Lane `arg` (a broadcast when `arg` is uniform).
    Index,
}

/// A statement, executed by each thread that reaches it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GStmt {
    /// Binds an immutable register for the rest of the enclosing block.
    Let {
        /// The register.
        var: VarId,
        /// Its value.
        value: GExpr,
    },
    /// Declares a mutable register with an initial value.
    Decl {
        /// The register.
        var: VarId,
        /// Its initial value.
        init: GExpr,
    },
    /// Updates a register declared by [`GStmt::Decl`].
    Assign {
        /// The register.
        var: VarId,
        /// Its new value.
        value: GExpr,
    },
    /// `mem[index] = value`.
    Store {
        /// The memory (of `value`'s storage type).
        mem: Mem,
        /// Element index (`i64`).
        index: GExpr,
        /// The stored value.
        value: GExpr,
    },
    /// `for (var = start; var < end; var += step) body` over `i64`; `step` > 0.
    For {
        /// The induction variable (an `i64` register, immutable in the body).
        var: VarId,
        /// First value.
        start: GExpr,
        /// Exclusive bound.
        end: GExpr,
        /// Increment (positive).
        step: GExpr,
        /// The loop body.
        body: Vec<GStmt>,
    },
    /// `if cond { then } else { otherwise }`; threads may disagree on `cond`.
    If {
        /// A bool.
        cond: GExpr,
        /// Run where `cond` holds.
        then: Vec<GStmt>,
        /// Run where it does not.
        otherwise: Vec<GStmt>,
    },
    /// Waits until every thread of the block arrives; orders shared and global
    /// memory accesses of the block across it (`__syncthreads`).
    Barrier,
    /// `dst = src` of another lane of the warp (`__shfl_*_sync` over the full
    /// warp): reads the source lane's `src` as it is before this statement.
    Shuffle {
        /// The register written (a new immutable binding, of `src`'s type).
        dst: VarId,
        /// The register read in the source lane.
        src: VarId,
        /// How the source lane is chosen.
        mode: ShuffleMode,
        /// The mode's operand (`i64`).
        arg: GExpr,
    },
    /// Binds `dsts.len()` consecutive elements `mem[index ..]` to new immutable
    /// registers in one access (`index` a multiple of the width).
    LoadVec {
        /// One register per element, of the memory's type.
        dsts: Vec<VarId>,
        /// The memory.
        mem: Mem,
        /// First element (`i64`).
        index: GExpr,
    },
    /// Stores `values` to consecutive elements `mem[index ..]` in one access.
    StoreVec {
        /// The memory.
        mem: Mem,
        /// First element (`i64`), a multiple of the width.
        index: GExpr,
        /// One value per element.
        values: Vec<GExpr>,
    },
    /// `mem[index] += value` atomically (global f32/i32/i64 memory).
    AtomicAdd {
        /// The memory.
        mem: Mem,
        /// Element index (`i64`).
        index: GExpr,
        /// The addend.
        value: GExpr,
    },
}

/// A GPU kernel: one `__global__` function over its buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuKernel {
    /// Symbol name (unique in a program).
    pub name: String,
    /// Blocks and threads.
    pub launch: Launch,
    /// Global buffers, in argument order.
    pub buffers: Vec<Buffer>,
    /// Shared arrays of each block.
    pub shared: Vec<SharedArray>,
    /// The type of every register.
    pub vars: Vec<Scalar>,
    /// The statements every thread runs.
    pub body: Vec<GStmt>,
    /// Blocks that should fit on one multiprocessor at once (CUDA's second
    /// `__launch_bounds__` argument), or `None` to leave it to the compiler.
    /// Without it ptxas may squeeze a kernel into fewer registers for
    /// occupancy and spill; with it, registers are capped at what that many
    /// blocks leave each thread.
    #[serde(default)]
    pub min_blocks: Option<u32>,
}

impl GpuKernel {
    /// An empty kernel named `name` with launch shape `launch`.
    pub fn new(name: impl Into<String>, launch: Launch) -> GpuKernel {
        GpuKernel {
            name: name.into(),
            launch,
            buffers: Vec::new(),
            shared: Vec::new(),
            vars: Vec::new(),
            body: Vec::new(),
            min_blocks: None,
        }
    }

    /// Adds a global buffer and returns its id.
    pub fn buffer(
        &mut self,
        name: impl Into<String>,
        scalar: Scalar,
        len: usize,
        access: Access,
    ) -> BufId {
        self.buffers.push(Buffer {
            name: name.into(),
            scalar,
            len,
            access,
        });
        self.buffers.len() - 1
    }

    /// Adds a shared array and returns its id.
    pub fn shared(&mut self, name: impl Into<String>, scalar: Scalar, len: usize) -> SharedId {
        self.shared.push(SharedArray {
            name: name.into(),
            scalar,
            len,
        });
        self.shared.len() - 1
    }

    /// Adds a register of type `scalar` and returns its id.
    pub fn var(&mut self, scalar: Scalar) -> VarId {
        self.vars.push(scalar);
        self.vars.len() - 1
    }

    /// Bytes of shared memory one block uses.
    pub fn shared_bytes(&self) -> usize {
        self.shared.iter().map(|s| s.len * s.scalar.size()).sum()
    }

    /// The element type of `mem`.
    pub fn mem_scalar(&self, mem: Mem) -> Scalar {
        match mem {
            Mem::Global(b) => self.buffers[b].scalar,
            Mem::Shared(s) => self.shared[s].scalar,
        }
    }

    /// The element count of `mem`.
    pub fn mem_len(&self, mem: Mem) -> usize {
        match mem {
            Mem::Global(b) => self.buffers[b].len,
            Mem::Shared(s) => self.shared[s].len,
        }
    }

    /// The readable name of `mem`.
    pub fn mem_name(&self, mem: Mem) -> &str {
        match mem {
            Mem::Global(b) => &self.buffers[b].name,
            Mem::Shared(s) => &self.shared[s].name,
        }
    }

    /// The type of `e` (assuming the kernel is well typed; see [`GpuKernel::check`]).
    pub fn type_of(&self, e: &GExpr) -> Scalar {
        match e {
            GExpr::Lit(l) => l.scalar(),
            GExpr::Var(v) => self.vars[*v],
            GExpr::Special(_) => Scalar::I64,
            GExpr::Load { mem, .. } => self.mem_scalar(*mem),
            GExpr::Unary(UnOp::IsNan, _) => Scalar::Bool,
            GExpr::Unary(_, x) => self.type_of(x),
            GExpr::Binary(op, _, _) if op.is_comparison() => Scalar::Bool,
            GExpr::Binary(_, a, _) => self.type_of(a),
            GExpr::Select(_, a, _) => self.type_of(a),
            GExpr::Cast(s, _) => *s,
        }
    }

    /// Every scalar type the kernel names (buffers, shared arrays, registers,
    /// literals and cast targets), each once (those of buffers, shared arrays and
    /// registers first, in their order). A backend
    /// reads it to know what support code a kernel needs (CUDA's `cuda_fp16.h`).
    pub fn scalars(&self) -> Vec<Scalar> {
        let mut seen = Vec::new();
        let mut note = |s: Scalar| {
            if !seen.contains(&s) {
                seen.push(s);
            }
        };
        self.buffers.iter().for_each(|b| note(b.scalar));
        self.shared.iter().for_each(|s| note(s.scalar));
        self.vars.iter().for_each(|&s| note(s));
        let mut exprs: Vec<&GExpr> = Vec::new();
        let mut stmts: Vec<&GStmt> = self.body.iter().collect();
        while let Some(s) = stmts.pop() {
            match s {
                GStmt::Let { value: e, .. }
                | GStmt::Decl { init: e, .. }
                | GStmt::Assign { value: e, .. } => exprs.push(e),
                GStmt::Store { index, value, .. } | GStmt::AtomicAdd { index, value, .. } => {
                    exprs.extend([index, value])
                }
                GStmt::For {
                    start,
                    end,
                    step,
                    body,
                    ..
                } => {
                    exprs.extend([start, end, step]);
                    stmts.extend(body);
                }
                GStmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    exprs.push(cond);
                    stmts.extend(then.iter().chain(otherwise));
                }
                GStmt::Shuffle { arg, .. } => exprs.push(arg),
                GStmt::LoadVec { index, .. } => exprs.push(index),
                GStmt::StoreVec { index, values, .. } => {
                    exprs.push(index);
                    exprs.extend(values);
                }
                GStmt::Barrier => {}
            }
        }
        while let Some(e) = exprs.pop() {
            match e {
                GExpr::Lit(l) => note(l.scalar()),
                GExpr::Var(_) | GExpr::Special(_) => {}
                GExpr::Load { index, .. } => exprs.push(index),
                GExpr::Unary(_, x) => exprs.push(x),
                GExpr::Binary(_, a, b) => exprs.extend([&**a, &**b]),
                GExpr::Select(c, a, b) => exprs.extend([&**c, &**a, &**b]),
                GExpr::Cast(s, x) => {
                    note(*s);
                    exprs.push(x);
                }
            }
        }
        seen
    }

    /// Checks the kernel is well formed, well typed, within the launch and
    /// shared-memory limits, and reaches its barriers uniformly (see [`check`]).
    pub fn check(&self) -> Result<(), GpuKernelError> {
        check::check(self)
    }
}

impl fmt::Display for GpuKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print::print(self, f)
    }
}

/// Builders, so GPU schedulers read like the kernels they emit.
pub mod build {
    use super::{
        Axis, BinOp, GExpr, GStmt, GpuKernel, Literal, Mem, Scalar, ShuffleMode, Special, UnOp,
        VarId, WARP_SIZE,
    };

    /// An `i64` constant.
    pub fn idx(n: i64) -> GExpr {
        GExpr::Lit(Literal::Int(n, Scalar::I64))
    }

    /// A float constant of type `s` (f32 or f64).
    pub fn fc(x: f64, s: Scalar) -> GExpr {
        GExpr::Lit(Literal::Float(x, s))
    }

    /// A register.
    pub fn var(v: VarId) -> GExpr {
        GExpr::Var(v)
    }

    /// `threadIdx.x`.
    pub fn thread() -> GExpr {
        GExpr::Special(Special::Thread)
    }

    /// `blockIdx` along `axis`.
    pub fn block(axis: Axis) -> GExpr {
        GExpr::Special(Special::Block(axis))
    }

    /// `blockDim.x`.
    pub fn block_dim() -> GExpr {
        GExpr::Special(Special::BlockDim)
    }

    /// `gridDim` along `axis`.
    pub fn grid_dim(axis: Axis) -> GExpr {
        GExpr::Special(Special::GridDim(axis))
    }

    /// The lane in the warp.
    pub fn lane() -> GExpr {
        GExpr::Special(Special::Lane)
    }

    /// The warp in the block.
    pub fn warp() -> GExpr {
        GExpr::Special(Special::Warp)
    }

    /// `mem[index]`.
    pub fn load(mem: Mem, index: GExpr) -> GExpr {
        GExpr::Load {
            mem,
            index: Box::new(index),
        }
    }

    /// `op(a, b)`.
    pub fn bin(op: BinOp, a: GExpr, b: GExpr) -> GExpr {
        GExpr::Binary(op, Box::new(a), Box::new(b))
    }

    /// `op(x)`.
    pub fn un(op: UnOp, x: GExpr) -> GExpr {
        GExpr::Unary(op, Box::new(x))
    }

    /// `a + b`, folding integer zeros.
    pub fn add(a: GExpr, b: GExpr) -> GExpr {
        match (&a, &b) {
            (GExpr::Lit(Literal::Int(0, _)), _) => b,
            (_, GExpr::Lit(Literal::Int(0, _))) => a,
            _ => bin(BinOp::Add, a, b),
        }
    }

    /// `a · b`, folding integer ones.
    pub fn mul(a: GExpr, b: GExpr) -> GExpr {
        match (&a, &b) {
            (GExpr::Lit(Literal::Int(1, _)), _) => b,
            (_, GExpr::Lit(Literal::Int(1, _))) => a,
            _ => bin(BinOp::Mul, a, b),
        }
    }

    /// `cond ? a : b`.
    pub fn select(c: GExpr, a: GExpr, b: GExpr) -> GExpr {
        GExpr::Select(Box::new(c), Box::new(a), Box::new(b))
    }

    /// `x as s`.
    pub fn cast(s: Scalar, x: GExpr) -> GExpr {
        GExpr::Cast(s, Box::new(x))
    }

    /// The thread's index in the whole one-axis grid: `blockIdx.x · blockDim.x +
    /// threadIdx.x`.
    pub fn global_thread() -> GExpr {
        add(mul(block(Axis::X), block_dim()), thread())
    }

    /// A grid-stride loop of `var` over `0..n`: each thread starts at its global
    /// index and steps by the number of threads in the grid.
    pub fn grid_stride(var: VarId, n: GExpr, body: Vec<GStmt>) -> GStmt {
        GStmt::For {
            var,
            start: global_thread(),
            end: n,
            step: mul(grid_dim(Axis::X), block_dim()),
            body,
        }
    }

    /// A block-stride loop of `var` over `0..n`: the block's threads split the
    /// range, each starting at its thread index.
    pub fn block_stride(var: VarId, n: GExpr, body: Vec<GStmt>) -> GStmt {
        GStmt::For {
            var,
            start: thread(),
            end: n,
            step: block_dim(),
            body,
        }
    }

    /// Statements reducing `value` (an `f32`/`i32`/… register) across the warp
    /// with `op` (an associative, commutative [`BinOp`] such as `Add` or `Max`) by
    /// a butterfly of xor shuffles; returns the register holding the result,
    /// the same in every lane.
    pub fn warp_reduce(k: &mut GpuKernel, out: &mut Vec<GStmt>, op: BinOp, value: VarId) -> VarId {
        let ty = k.vars[value];
        let mut acc = value;
        let mut offset = WARP_SIZE / 2;
        while offset > 0 {
            let other = k.var(ty);
            out.push(GStmt::Shuffle {
                dst: other,
                src: acc,
                mode: ShuffleMode::Xor,
                arg: idx(offset as i64),
            });
            let next = k.var(ty);
            out.push(GStmt::Let {
                var: next,
                value: bin(op, var(acc), var(other)),
            });
            acc = next;
            offset /= 2;
        }
        acc
    }

    /// Statements reducing `value` across the whole block with `op` (identity
    /// `identity`): a warp reduction, each warp's result through a shared array,
    /// then a warp reduction of those. Every thread of the block must run them
    /// (they hold barriers); returns the register holding the result in every
    /// thread.
    pub fn block_reduce(
        k: &mut GpuKernel,
        out: &mut Vec<GStmt>,
        op: BinOp,
        identity: Literal,
        value: VarId,
    ) -> VarId {
        let ty = k.vars[value];
        let warps = k.launch.warps() as usize;
        let in_warp = warp_reduce(k, out, op, value);
        if warps == 1 {
            return in_warp;
        }
        let partial = k.shared(format!("partials{}", k.shared.len()), ty, warps);
        out.push(GStmt::If {
            cond: bin(BinOp::Eq, lane(), idx(0)),
            then: vec![GStmt::Store {
                mem: Mem::Shared(partial),
                index: warp(),
                value: var(in_warp),
            }],
            otherwise: vec![],
        });
        out.push(GStmt::Barrier);
        let mine = k.var(ty);
        out.push(GStmt::Let {
            var: mine,
            value: select(
                bin(BinOp::Lt, lane(), idx(warps as i64)),
                load(
                    Mem::Shared(partial),
                    bin(BinOp::Min, lane(), idx(warps as i64 - 1)),
                ),
                GExpr::Lit(identity),
            ),
        });
        let total = warp_reduce(k, out, op, mine);
        // The partials may be rewritten by a later reduction only after every
        // warp has read them.
        out.push(GStmt::Barrier);
        total
    }
}
