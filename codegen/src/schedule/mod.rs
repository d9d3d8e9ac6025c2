//! Scheduling: a shape-specialized [`Graph`] becomes a [`Program`] of kernels,
//! GEMM calls and host fallbacks.
//!
//! Every node is lowered by the first of these that applies:
//! - reshapes (`Reshape`, `Squeeze`, `Unsqueeze`, `Flatten`, `Identity`) become
//!   aliases: the same bytes under a new shape, no step at all;
//! - elementwise ops and fused regions without an anchor become one loop nest
//!   over the output ([`region`]);
//! - matrix products become GEMM steps, reading transposed operands through
//!   strides ([`matmul`]); a fused region anchored on a matmul adds its epilogue
//!   as an in-place kernel over the product;
//! - reductions, softmax and norms (alone or as region anchors with prologue and
//!   epilogue) become row kernels ([`region`]);
//! - data movement (transpose, concat, split, slice, expand, gather) becomes copy
//!   kernels ([`layout`]); attention becomes two GEMMs around a softmax kernel
//!   ([`attention`]);
//! - anything else runs on the host through the reference interpreter
//!   ([`Step::Host`]), so every graph the interpreter runs, runs. Each lowering
//!   that declines a node says why ([`HostReason`], stored on the step).
//!
//! A generated kernel that fails its own check is a scheduler bug: scheduling
//! fails with [`ScheduleError::Bug`] naming the node (never a silent fallback).
//!
//! Steps whose results nothing reads (a transpose absorbed into a GEMM's strides)
//! are dropped at the end.

mod attention;
mod control;
mod conv;
pub mod elementwise;
mod layout;
mod matmul;
pub mod nest;
mod pool;
mod region;
mod rotary;

use kiln_ir::op::LayoutOp;
use kiln_ir::{Graph, Node, Op, ValueDef, ValueId};

use crate::kernel::{Kernel, KernelError};
use crate::program::{BufferId, BufferKind, HostReason, Program, ProgramBuffer, Step};

/// Why a graph cannot be scheduled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A value's shape is not fully known after specialization.
    #[error("value `{name}` has shape {shape}, which is not known before running (a data-dependent shape)")]
    DynamicShape {
        /// The value.
        name: String,
        /// Its (partly unknown) shape.
        shape: String,
    },
    /// A value would need more memory than a tensor may take.
    #[error("value `{name}` of shape {shape} would take more than {limit} bytes")]
    TooLarge {
        /// The value.
        name: String,
        /// Its shape.
        shape: String,
        /// The limit ([`kiln_ir::interp::MAX_TENSOR_BYTES`]).
        limit: u64,
    },
    /// A generated kernel failed its check: a bug in kiln's scheduler, reported
    /// rather than hidden behind a host fallback.
    #[error("scheduling node `{node}` generated an invalid kernel (a bug in kiln's scheduler): {source}")]
    Bug {
        /// The node being lowered.
        node: String,
        /// What the kernel check found.
        source: KernelError,
    },
}

/// Why a lowering produced no code for a node.
#[derive(Debug)]
pub(crate) enum NotLowered {
    /// The node runs on the host, for this reason.
    Host(HostReason),
    /// A generated kernel failed its check (a scheduler bug).
    Bug(KernelError),
}

impl From<HostReason> for NotLowered {
    fn from(r: HostReason) -> Self {
        NotLowered::Host(r)
    }
}

impl From<KernelError> for NotLowered {
    fn from(e: KernelError) -> Self {
        NotLowered::Bug(e)
    }
}

/// What a lowering returns: the node's steps were emitted, or why not.
pub(crate) type Lowered = Result<(), NotLowered>;

/// A lowering's refusal for `reason` (the node runs on the host).
pub(crate) fn host<T>(reason: HostReason) -> Result<T, NotLowered> {
    Err(NotLowered::Host(reason))
}

/// Choices of the schedule that depend on what runs the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// An f32 GEMM whose 2-D right operand is an f16/bf16 weight widened by a
    /// `Cast` reads the half-precision weight itself
    /// ([`crate::program::GemmStep::b_stored`]; the CPU runtime widens it block
    /// by block) instead of the cast's per-run f32 copy. The CPU runtime
    /// supports it; the GPU lowering does not (the default, off).
    pub half_weight_gemm: bool,
}

impl ScheduleOptions {
    /// What the CPU runtime executes.
    pub const CPU: ScheduleOptions = ScheduleOptions {
        half_weight_gemm: true,
    };
}

/// Schedules a graph whose values all have known shapes, for any device
/// ([`ScheduleOptions::default`]).
pub fn schedule(graph: &Graph) -> Result<Program, ScheduleError> {
    schedule_with(graph, ScheduleOptions::default())
}

/// [`schedule`] with `options`.
pub fn schedule_with(graph: &Graph, options: ScheduleOptions) -> Result<Program, ScheduleError> {
    let mut s = Scheduler::new(graph, options)?;
    for i in lowering_order(graph) {
        s.lower(&graph.nodes()[i])?;
    }
    s.finish()
}

/// The nodes in an order that runs weight-only nodes (reading only constants
/// and other weight-only nodes: a half-precision weight widened per run) just
/// before their first reader instead of where the graph lists them, so their
/// results are live only while needed (an optimizer may list every such cast
/// first, and a prefill's arena would hold every widened weight at once).
fn lowering_order(graph: &Graph) -> Vec<usize> {
    let nodes = graph.nodes();
    let mut producer: Vec<Option<usize>> = vec![None; graph.values().len()];
    for (i, n) in nodes.iter().enumerate() {
        for &o in &n.outputs {
            producer[o.0 as usize] = Some(i);
        }
    }
    let mut weight_only = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        weight_only[i] = !n.inputs.is_empty()
            && n.inputs.iter().all(|v| match producer[v.0 as usize] {
                Some(p) => weight_only[p],
                None => graph.constant(*v).is_some(),
            });
    }
    let mut emitted = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    // Emits node `i` after the deferred nodes it reads (iteratively: chains of
    // weight transforms can be long).
    fn emit(
        i: usize,
        nodes: &[Node],
        producer: &[Option<usize>],
        emitted: &mut [bool],
        order: &mut Vec<usize>,
    ) {
        let mut stack = vec![(i, false)];
        while let Some((j, ready)) = stack.pop() {
            if emitted[j] {
                continue;
            }
            if ready {
                emitted[j] = true;
                order.push(j);
                continue;
            }
            stack.push((j, true));
            for v in nodes[j].inputs.iter().rev() {
                if let Some(p) = producer[v.0 as usize] {
                    if !emitted[p] {
                        stack.push((p, false));
                    }
                }
            }
        }
    }
    for (i, _) in weight_only.iter().enumerate().filter(|(_, &w)| !w) {
        emit(i, nodes, &producer, &mut emitted, &mut order);
    }
    for i in 0..nodes.len() {
        emit(i, nodes, &producer, &mut emitted, &mut order);
    }
    order
}

/// The scheduler's state: the program so far and each IR value's buffer.
pub(crate) struct Scheduler<'g> {
    pub graph: &'g Graph,
    pub prog: Program,
    buf_of: Vec<Option<BufferId>>,
    /// The node that defines each value (for looking through transposes).
    pub def_node: Vec<Option<&'g Node>>,
    /// Whether a node or the graph's outputs read each value.
    used: Vec<bool>,
    /// What the program's device supports.
    pub options: ScheduleOptions,
}

impl<'g> Scheduler<'g> {
    fn new(graph: &'g Graph, options: ScheduleOptions) -> Result<Self, ScheduleError> {
        for v in graph.values() {
            let Some(dims) = v.ty.shape.as_known() else {
                return Err(ScheduleError::DynamicShape {
                    name: v.name.clone(),
                    shape: v.ty.shape.to_string(),
                });
            };
            let limit = kiln_ir::interp::MAX_TENSOR_BYTES;
            let bytes = dims.iter().try_fold(v.ty.dtype.size() as u64, |acc, &d| {
                acc.checked_mul(d as u64)
            });
            if bytes.is_none_or(|b| b > limit) {
                return Err(ScheduleError::TooLarge {
                    name: v.name.clone(),
                    shape: v.ty.shape.to_string(),
                    limit,
                });
            }
        }
        let mut def_node = vec![None; graph.values().len()];
        for n in graph.nodes() {
            for &o in &n.outputs {
                def_node[o.0 as usize] = Some(n);
            }
        }
        let mut used = vec![false; graph.values().len()];
        for n in graph.nodes() {
            for &i in &n.inputs {
                used[i.0 as usize] = true;
            }
        }
        for &o in &graph.outputs {
            used[o.0 as usize] = true;
        }
        let mut s = Scheduler {
            graph,
            prog: Program::default(),
            buf_of: vec![None; graph.values().len()],
            def_node,
            used,
            options,
        };
        for (i, &id) in graph.inputs.iter().enumerate() {
            let b = s.new_buffer(id, BufferKind::Input(i));
            s.prog.inputs.push((graph.value(id).name.clone(), b));
        }
        Ok(s)
    }

    /// The known dims of value `id`.
    pub fn shape(&self, id: ValueId) -> Vec<usize> {
        self.graph
            .value(id)
            .ty
            .shape
            .as_known()
            .expect("checked in new")
    }

    fn new_buffer(&mut self, id: ValueId, kind: BufferKind) -> BufferId {
        let v = self.graph.value(id);
        self.prog.buffers.push(ProgramBuffer {
            name: v.name.clone(),
            dtype: v.ty.dtype,
            shape: v.ty.shape.as_known().expect("checked in new"),
            kind,
        });
        let b = self.prog.buffers.len() - 1;
        self.buf_of[id.0 as usize] = Some(b);
        b
    }

    /// Whether any node or graph output reads `id`.
    pub fn is_used(&self, id: ValueId) -> bool {
        self.used[id.0 as usize]
    }

    /// A buffer for intermediate results that no IR value names (attention
    /// scores, a product before its epilogue).
    pub fn scratch(&mut self, name: &str, dtype: kiln_ir::DType, shape: Vec<usize>) -> BufferId {
        self.prog.buffers.push(ProgramBuffer {
            name: name.to_string(),
            dtype,
            shape,
            kind: BufferKind::Temp,
        });
        self.prog.buffers.len() - 1
    }

    /// The buffer holding value `id` (constants get theirs on first use).
    pub fn buf(&mut self, id: ValueId) -> BufferId {
        if let Some(b) = self.buf_of[id.0 as usize] {
            return b;
        }
        match self.graph.value(id).def {
            ValueDef::Const(_) => {
                let c = self.prog.constants.len();
                self.prog.constants.push(id.0);
                self.new_buffer(id, BufferKind::Const(c))
            }
            _ => self.new_buffer(id, BufferKind::Temp),
        }
    }

    /// Adds a kernel and a step launching it over `args`.
    pub fn launch(&mut self, kernel: Kernel, args: Vec<BufferId>) -> Result<(), KernelError> {
        kernel.check()?;
        let mut kernel = kernel;
        kernel.name = format!("k{}_{}", self.prog.kernels.len(), sanitize(&kernel.name));
        self.prog.kernels.push(kernel);
        self.prog.steps.push(Step::Kernel {
            kernel: self.prog.kernels.len() - 1,
            args,
        });
        Ok(())
    }

    fn lower(&mut self, node: &'g Node) -> Result<(), ScheduleError> {
        if self.try_alias(node) {
            return Ok(());
        }
        if let Some(reason) = self.low_precision_operand(node) {
            return self.settle(node, host(reason));
        }
        let lowered = match &node.op {
            Op::Nn(kiln_ir::op::NnOp::MatMul) => matmul::lower(self, node),
            Op::Nn(kiln_ir::op::NnOp::Conv { .. }) => region::lower_node(self, node),
            Op::Nn(kiln_ir::op::NnOp::MaxPool { .. } | kiln_ir::op::NnOp::AveragePool { .. }) => {
                pool::lower(self, node)
            }
            Op::Fused(f) => region::lower_fused(self, node, f),
            Op::Composite(kiln_ir::op::CompositeOp::Attention { .. }) => {
                attention::lower(self, node)
            }
            Op::Composite(kiln_ir::op::CompositeOp::RotaryEmbedding { .. }) => {
                rotary::lower(self, node)
            }
            op if elementwise::is_elementwise(op) => region::lower_node(self, node),
            Op::Reduce(_) | Op::Composite(_) => region::lower_row_op(self, node),
            Op::Layout(_) => layout::lower(self, node),
            Op::Control(c) => control::lower(self, node, c),
            op => host(HostReason::OpNotLowered {
                op: op.name().to_string(),
            }),
        };
        self.settle(node, lowered)
    }

    /// Completes a lowering: a declined node runs on the host with its reason;
    /// an invalid kernel is a scheduler bug and fails scheduling.
    fn settle(&mut self, node: &Node, lowered: Lowered) -> Result<(), ScheduleError> {
        match lowered {
            Ok(()) => Ok(()),
            Err(NotLowered::Host(reason)) => {
                self.host(node, reason);
                Ok(())
            }
            Err(NotLowered::Bug(source)) => Err(ScheduleError::Bug {
                node: node.name.clone(),
                source,
            }),
        }
    }

    /// Why `node` must run on the host because it reads, writes or (inside a
    /// fused region) casts to a low-precision dtype (float8, float4, 4- and
    /// 2-bit integers), which kernels do not compute in.
    fn low_precision_operand(&self, node: &Node) -> Option<HostReason> {
        let values = node
            .inputs
            .iter()
            .map(|&i| ("input", i))
            .chain(node.outputs.iter().map(|&o| ("output", o)));
        for (k, (what, id)) in values.enumerate() {
            let dtype = self.graph.value(id).ty.dtype;
            if dtype.is_low_precision() || dtype == kiln_ir::DType::List {
                let index = if what == "input" {
                    k
                } else {
                    k - node.inputs.len()
                };
                return Some(HostReason::UnsupportedDtype {
                    what: format!("{what} {index}"),
                    dtype,
                });
            }
        }
        if let Op::Fused(f) = &node.op {
            for step in &f.steps {
                if let Op::Layout(LayoutOp::Cast { to, .. }) = &step.op {
                    if to.is_low_precision() {
                        return Some(HostReason::UnsupportedDtype {
                            what: "a fused cast's result".into(),
                            dtype: *to,
                        });
                    }
                }
            }
        }
        None
    }

    /// Same-bytes ops become aliases of their input.
    fn try_alias(&mut self, node: &Node) -> bool {
        let is_view = matches!(
            node.op,
            Op::Layout(
                LayoutOp::Reshape { .. }
                    | LayoutOp::Squeeze { .. }
                    | LayoutOp::Unsqueeze { .. }
                    | LayoutOp::Flatten { .. }
                    | LayoutOp::Identity
            )
        );
        if !is_view || node.outputs.len() != 1 || node.inputs.is_empty() {
            return false;
        }
        let (x, y) = (node.inputs[0], node.outputs[0]);
        let (vx, vy) = (self.graph.value(x), self.graph.value(y));
        if vx.ty.dtype != vy.ty.dtype
            || self.shape(x).iter().product::<usize>() != self.shape(y).iter().product::<usize>()
        {
            return false;
        }
        let src = self.buf(x);
        self.new_buffer(y, BufferKind::Alias(src));
        true
    }

    /// Runs `node` on the host, for `reason`.
    pub fn host(&mut self, node: &Node, reason: HostReason) {
        let inputs = node.inputs.iter().map(|&i| self.buf(i)).collect();
        let outputs = node.outputs.iter().map(|&o| self.buf(o)).collect();
        self.prog.steps.push(Step::Host {
            node: node.name.clone(),
            op: node.op.clone(),
            inputs,
            outputs,
            reason,
        });
    }

    fn finish(mut self) -> Result<Program, ScheduleError> {
        for &o in &self.graph.outputs {
            let b = self.buf(o);
            self.prog
                .outputs
                .push((self.graph.value(o).name.clone(), b));
        }
        prune_dead_steps(&mut self.prog);
        Ok(self.prog)
    }
}

/// A kernel name made of identifier characters.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    out.truncate(48);
    out
}

/// The buffers a step reads and writes.
pub fn step_io(prog: &Program, step: &Step) -> (Vec<BufferId>, Vec<BufferId>) {
    match step {
        Step::Kernel { kernel, args } => {
            let k = &prog.kernels[*kernel];
            let mut reads = Vec::new();
            let mut writes = Vec::new();
            for (b, &a) in k.buffers.iter().zip(args) {
                match b.access {
                    crate::kernel::Access::Read => reads.push(a),
                    crate::kernel::Access::Write => writes.push(a),
                    crate::kernel::Access::ReadWrite => {
                        reads.push(a);
                        writes.push(a);
                    }
                }
            }
            (reads, writes)
        }
        Step::Gemm(g) => (vec![g.a, g.b], vec![g.c]),
        Step::Host {
            inputs, outputs, ..
        } => (inputs.clone(), outputs.clone()),
        Step::CheckIndices { indices, .. } => (vec![*indices], vec![]),
        Step::Control(c) => (c.inputs.clone(), c.outputs.clone()),
    }
}

/// Drops steps none of whose writes is read later or is an output.
fn prune_dead_steps(prog: &mut Program) {
    let mut needed = vec![false; prog.buffers.len()];
    for &(_, b) in &prog.outputs {
        needed[prog.root(b)] = true;
    }
    let mut keep = vec![false; prog.steps.len()];
    for (i, step) in prog.steps.iter().enumerate().rev() {
        let (reads, writes) = step_io(prog, step);
        let is_check = matches!(step, Step::CheckIndices { .. });
        if is_check || writes.iter().any(|&w| needed[prog.root(w)]) {
            keep[i] = true;
            for r in reads {
                needed[prog.root(r)] = true;
            }
        }
    }
    let mut i = 0;
    prog.steps.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    // Attention records follow their steps' new indices; one whose steps were
    // dropped (its output unused) goes with them.
    let mut new_step = vec![None; keep.len()];
    let mut next = 0;
    for (old, &kept) in keep.iter().enumerate() {
        if kept {
            new_step[old] = Some(next);
            next += 1;
        }
    }
    prog.attentions.retain_mut(|a| {
        let steps = a.steps.map(|s| new_step[s]);
        match steps {
            [Some(x), Some(y), Some(z)] => {
                a.steps = [x, y, z];
                true
            }
            _ => false,
        }
    });
    // Kernels no step launches any more are dropped (and the rest renumbered),
    // so they are not compiled.
    let mut new_index = vec![None; prog.kernels.len()];
    let mut kept = Vec::new();
    for step in &mut prog.steps {
        if let Step::Kernel { kernel, .. } = step {
            let k = *new_index[*kernel].get_or_insert_with(|| {
                kept.push(*kernel);
                kept.len() - 1
            });
            *kernel = k;
        }
    }
    let mut old: Vec<Option<Kernel>> = std::mem::take(&mut prog.kernels)
        .into_iter()
        .map(Some)
        .collect();
    prog.kernels = kept
        .into_iter()
        .map(|k| old[k].take().expect("each kernel once"))
        .collect();
}

#[cfg(test)]
mod tests;
