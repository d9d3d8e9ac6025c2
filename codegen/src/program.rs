//! A scheduled program: the buffers of one shape-specialized graph and the
//! ordered list of steps that compute them.
//!
//! This is the interface between the scheduler ([`crate::schedule`]) and the
//! runtime: the runtime places [`BufferKind::Temp`] buffers in one arena (by
//! liveness), binds inputs and constants, and runs the steps in order. It is
//! plain data (serde), so an ahead-of-time artifact can store it.

use kiln_ir::{DType, Op};
use serde::{Deserialize, Serialize};

pub use crate::host_reason::HostReason;
use crate::kernel::Kernel;

/// Index of a buffer in [`Program::buffers`].
pub type BufferId = usize;

/// Where a buffer's bytes come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BufferKind {
    /// Graph input `i` (the caller's tensor).
    Input(usize),
    /// Constant `i` of [`Program::constants`] (a weight, mapped or transformed).
    Const(usize),
    /// An intermediate or output, placed in the run's arena.
    Temp,
    /// The same bytes as another buffer (a reshape: same elements, new shape).
    Alias(BufferId),
}

/// One buffer: a dense, row-major tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramBuffer {
    /// The IR value it holds (for messages and the text form).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dims (all known: programs are shape-specialized).
    pub shape: Vec<usize>,
    /// Where its bytes live.
    pub kind: BufferKind,
}

impl ProgramBuffer {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

/// A (batched) matrix product `c[b] = a[b] · b[b]` (optionally `c[b] += ...`) with
/// arbitrary element strides, so transposed and broadcast operands need no copy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmStep {
    /// Left operand.
    pub a: BufferId,
    /// Right operand.
    pub b: BufferId,
    /// Output (dense `[batch..., m, n]`).
    pub c: BufferId,
    /// Element type of all three (f32, f64 or f16).
    pub dtype: DType,
    /// Rows of `a` and `c`.
    pub m: usize,
    /// Columns of `b` and `c`.
    pub n: usize,
    /// Columns of `a`, rows of `b`.
    pub k: usize,
    /// Batch dims of `c` (the matrices are the last two dims).
    pub batch: Vec<usize>,
    /// Element stride of `a` along each batch dim (0 where broadcast).
    pub a_batch_strides: Vec<isize>,
    /// Element stride of `b` along each batch dim (0 where broadcast).
    pub b_batch_strides: Vec<isize>,
    /// Strides of `a`'s rows and columns.
    pub a_strides: [isize; 2],
    /// Strides of `b`'s rows and columns.
    pub b_strides: [isize; 2],
    /// Scale of the product (`c = alpha · a·b`).
    pub alpha: f64,
    /// The element type `b` is stored in when it is not [`GemmStep::dtype`]: a
    /// half-precision (f16/bf16) weight of an f32 product, widened as the CPU
    /// GEMM reads it, block by block, instead of by a separate pass over the
    /// whole weight on every run. Only the CPU schedule emits it
    /// ([`crate::schedule::ScheduleOptions::half_weight_gemm`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_stored: Option<DType>,
}

impl GemmStep {
    /// Number of matrix products (the product of the batch dims).
    pub fn batch_count(&self) -> usize {
        self.batch.iter().product()
    }

    /// Floating-point operations (2·m·n·k per product).
    pub fn flops(&self) -> f64 {
        2.0 * self.batch_count() as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// One step of a program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Launch kernel `kernel` of [`Program::kernels`] over these buffers (in the
    /// kernel's buffer order).
    Kernel {
        /// The kernel.
        kernel: usize,
        /// Its arguments.
        args: Vec<BufferId>,
    },
    /// A matrix product through the GEMM library.
    Gemm(GemmStep),
    /// Fails the run unless every element `i` of the (integer) `indices` buffer
    /// satisfies `-b <= i < b` for `b = bounds[i % bounds.len()]` (before a
    /// gather kernel, which would otherwise read out of bounds; GatherND's index
    /// tuples check each position against its own axis).
    CheckIndices {
        /// The node whose indices these are (for the message).
        node: String,
        /// The index buffer.
        indices: BufferId,
        /// Size of the gathered axis (or of each axis an index tuple addresses).
        bounds: Vec<i64>,
        /// Negative indices count from the end (Gather); when false only
        /// `0..bound` is valid (rotary position ids).
        #[serde(default = "negative_indices_wrap")]
        wrap_negative: bool,
    },
    /// An op kiln does not generate code for (at these shapes and dtypes),
    /// evaluated by the reference interpreter on host tensors (correct, slow;
    /// `kiln explain` and `kiln bench --profile` print the reason).
    Host {
        /// The IR node's name.
        node: String,
        /// The op.
        op: Op,
        /// Operand buffers.
        inputs: Vec<BufferId>,
        /// Result buffers.
        outputs: Vec<BufferId>,
        /// Why the scheduler left it to the interpreter.
        reason: HostReason,
    },
    /// Control flow over compiled subgraph programs.
    Control(ControlStep),
}

/// A control-flow node (`If`, `Loop`, `Scan`) whose subgraphs were compiled:
/// each subgraph is a program of its own (buffers, constants, steps; its
/// kernels go into the same object as the enclosing program's), which the
/// runtime runs once per branch taken or iteration, binding its inputs and
/// outputs to the enclosing program's buffers (or slices of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlStep {
    /// The IR node's name.
    pub node: String,
    /// The op, its subgraphs specialized to this program's shapes: what a
    /// backend without compiled bodies evaluates (the interpreter), and the
    /// graphs the bodies' constants come from.
    pub op: Op,
    /// Operand buffers (in the op's operand order).
    pub inputs: Vec<BufferId>,
    /// Result buffers.
    pub outputs: Vec<BufferId>,
    /// One program per subgraph of `op`, in the order of
    /// [`kiln_ir::op::ControlOp::subgraphs`].
    pub bodies: Vec<Program>,
}

/// A shape-specialized program.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Every buffer.
    pub buffers: Vec<ProgramBuffer>,
    /// The generated kernels.
    pub kernels: Vec<Kernel>,
    /// The steps, in execution order.
    pub steps: Vec<Step>,
    /// Graph inputs in order: name and buffer.
    pub inputs: Vec<(String, BufferId)>,
    /// Graph outputs in order: name and buffer.
    pub outputs: Vec<(String, BufferId)>,
    /// The IR value id each constant buffer came from (index = constant number).
    pub constants: Vec<u32>,
    /// Each attention the scheduler lowered to three steps, described whole so
    /// a GPU can run it as one fused kernel instead (the CPU runs the steps).
    #[serde(default)]
    pub attentions: Vec<AttentionSteps>,
}

/// One operand of an attention (Q, K or V) as it lies in its buffer: element
/// strides along `[batch..., heads, seq, dim]` (Q, K and V read through a
/// transpose have the source's strides).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionOperand {
    /// The buffer.
    pub buf: BufferId,
    /// Element stride along each dim of `[batch..., heads, seq, dim]`.
    pub strides: Vec<isize>,
}

/// The mask of an attention, broadcast over the scores `[batch..., h_q, s_q,
/// s_kv]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionMask {
    /// The buffer (f32: added to the scores; bool: keep where true).
    pub buf: BufferId,
    /// Its element type: [`DType::F32`] or [`DType::Bool`].
    pub dtype: DType,
    /// Element stride along each dim of the scores (0 where broadcast).
    pub strides: Vec<isize>,
    /// The mask's last dim: keys at or past it are masked out (≤ `s_kv`).
    pub width: usize,
}

/// An attention `Y = softmax(mask(softcap(scale·Q·Kᵀ)))·V` that the scheduler
/// lowered to `steps`: the scores GEMM, the in-place masked softmax kernel and
/// the `P·V` GEMM. Query heads are `[h_kv, group]`: query head `h` reads key
/// and value head `h / group`.
///
/// The softmax kernel also lists Q, K, V and Y as (unused) arguments, so the
/// memory plan keeps them all live, and apart, at that step: a fused kernel may
/// run there in place of all three steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionSteps {
    /// The IR node (for kernel names and messages).
    pub node: String,
    /// Indices in [`Program::steps`]: scores GEMM, softmax kernel, `P·V` GEMM.
    pub steps: [usize; 3],
    /// Leading batch dims (before the heads).
    pub batch: Vec<usize>,
    /// Query heads.
    pub heads_q: usize,
    /// Key and value heads (`heads_q` is a multiple).
    pub heads_kv: usize,
    /// Query positions.
    pub seq_q: usize,
    /// Key positions.
    pub seq_kv: usize,
    /// Q and K head dim.
    pub head_dim: usize,
    /// V head dim.
    pub v_head_dim: usize,
    /// Queries `[batch..., h_q, s_q, head_dim]`.
    pub q: AttentionOperand,
    /// Keys `[batch..., h_kv, s_kv, head_dim]`.
    pub k: AttentionOperand,
    /// Values `[batch..., h_kv, s_kv, v_head_dim]`.
    pub v: AttentionOperand,
    /// The output, dense `[batch..., h_q, s_q, v_head_dim]`.
    pub out: BufferId,
    /// The scratch scores buffer of the three steps.
    pub scores: BufferId,
    /// Factor of `Q·Kᵀ`.
    pub scale: f64,
    /// Key `j` masked out for query `i` when `j > i`.
    pub causal: bool,
    /// Scores become `c·tanh(s / c)` (before the masks).
    pub softcap: Option<f64>,
    /// The mask, if any.
    pub mask: Option<AttentionMask>,
}

impl AttentionSteps {
    /// Query heads per key head.
    pub fn group(&self) -> usize {
        self.heads_q / self.heads_kv.max(1)
    }
}

impl Program {
    /// The buffer an alias chain ends at (a buffer that owns bytes).
    pub fn root(&self, mut id: BufferId) -> BufferId {
        while let BufferKind::Alias(of) = self.buffers[id].kind {
            id = of;
        }
        id
    }

    /// How many steps are host fallbacks, and which ops they run.
    pub fn host_ops(&self) -> Vec<&str> {
        self.host_steps().map(|(_, op, _)| op.name()).collect()
    }

    /// The host fallbacks in step order: node name, op and why.
    pub fn host_steps(&self) -> impl Iterator<Item = (&str, &Op, &HostReason)> {
        self.steps.iter().filter_map(|s| match s {
            Step::Host {
                node, op, reason, ..
            } => Some((node.as_str(), op, reason)),
            _ => None,
        })
    }

    /// Every kernel of the program and of its control steps' bodies (depth
    /// first, each program's own kernels before its bodies'): what one object
    /// file holds. Kernel names are unique across all of them.
    pub fn all_kernels(&self) -> Vec<&Kernel> {
        let mut out: Vec<&Kernel> = self.kernels.iter().collect();
        for s in &self.steps {
            if let Step::Control(c) = s {
                for b in &c.bodies {
                    out.extend(b.all_kernels());
                }
            }
        }
        out
    }

    /// The graph value behind each constant of the program and of its control
    /// steps' bodies, in the order the runtime numbers them (the program's own
    /// constants, then each control step's bodies depth first): `graph` is the
    /// specialized graph the program was scheduled from, bodies' constants are
    /// values of the specialized subgraphs their steps carry.
    pub fn all_constants<'g>(&'g self, graph: &'g kiln_ir::Graph) -> Vec<&'g kiln_ir::Tensor> {
        let mut out: Vec<&kiln_ir::Tensor> = self
            .constants
            .iter()
            .map(|&id| {
                graph
                    .constant(kiln_ir::ValueId(id))
                    .expect("program constants are graph constants")
            })
            .collect();
        for s in &self.steps {
            if let Step::Control(c) = s {
                let Op::Control(op) = &c.op else {
                    unreachable!("control steps carry control ops")
                };
                for (b, g) in c.bodies.iter().zip(op.subgraphs()) {
                    out.extend(b.all_constants(g.graph()));
                }
            }
        }
        out
    }

    /// Number of constants of the program and of its bodies ([`Program::all_constants`]).
    pub fn all_constants_len(&self) -> usize {
        self.constants.len()
            + self
                .steps
                .iter()
                .map(|s| match s {
                    Step::Control(c) => c.bodies.iter().map(Program::all_constants_len).sum(),
                    _ => 0,
                })
                .sum::<usize>()
    }

    /// Floating-point operations of the GEMM steps.
    pub fn gemm_flops(&self) -> f64 {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Gemm(g) => g.flops(),
                _ => 0.0,
            })
            .sum()
    }

    /// A readable listing: buffers, then steps with their kernels.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (i, b) in self.buffers.iter().enumerate() {
            let _ = writeln!(
                out,
                "buf{i} {}: {}{:?} {:?}",
                b.name, b.dtype, b.shape, b.kind
            );
        }
        for s in &self.steps {
            match s {
                Step::Kernel { kernel, args } => {
                    let _ = writeln!(out, "launch {} {args:?}", self.kernels[*kernel].name);
                }
                Step::Gemm(g) => {
                    let _ = writeln!(
                        out,
                        "gemm buf{} = {}·buf{}·buf{} batch {:?} m {} n {} k {} a {:?}/{:?} b {:?}/{:?}{}",
                        g.c, g.alpha, g.a, g.b, g.batch, g.m, g.n, g.k,
                        g.a_batch_strides, g.a_strides, g.b_batch_strides, g.b_strides,
                        g.b_stored.map_or(String::new(), |d| format!(" (b stored {d})"))
                    );
                }
                Step::Host {
                    node,
                    op,
                    inputs,
                    outputs,
                    reason,
                } => {
                    let _ = writeln!(
                        out,
                        "host {node} {} {inputs:?} -> {outputs:?} ({reason})",
                        op.name()
                    );
                }
                Step::CheckIndices {
                    node,
                    indices,
                    bounds,
                    wrap_negative,
                } => {
                    let from = if *wrap_negative { "" } else { "0.." };
                    let _ = writeln!(out, "check {node} buf{indices} within {from}{bounds:?}");
                }
                Step::Control(c) => {
                    let _ = writeln!(
                        out,
                        "control {} {} {:?} -> {:?} {{",
                        c.node,
                        c.op.name(),
                        c.inputs,
                        c.outputs
                    );
                    for (i, b) in c.bodies.iter().enumerate() {
                        let _ = writeln!(out, "body {i} {{");
                        out.push_str(&b.to_text());
                        out.push_str("}\n");
                    }
                    out.push_str("}\n");
                }
            }
        }
        for k in &self.kernels {
            let _ = write!(out, "\n{k}");
        }
        out
    }
}

/// Artifacts written before `wrap_negative` existed only checked gathers.
fn negative_indices_wrap() -> bool {
    true
}
