//! Loop nests for elementwise ops, fused regions, reductions, softmax and norms.
//!
//! A region is evaluated at one position of a nest by binding each step's value
//! to a variable ([`eval::StepEval`]). Without an anchor the nest is the output's
//! (dims merged where every operand allows: [`pointwise`]). A matmul or
//! convolution anchor is a GEMM followed by its epilogue ([`epilogue`]). With a
//! reduction, softmax or norm anchor, the kernel runs one parallel loop over the
//! *kept* positions (the anchor operand's dims that are not reduced) and, inside,
//! passes over the reduced dims ([`row`]): statistics first (max and sum for
//! softmax, the sum of squares for RMS norm, the accumulator for a reduction),
//! then the normalized values with the epilogue. The prologue is recomputed in
//! every pass (it is elementwise and cheap; it never crosses memory). Layer norm,
//! with its three outputs, is a kernel of its own ([`layer_norm`]).
//!
//! Every refusal names its [`HostReason`].

mod epilogue;
mod eval;
mod layer_norm;
mod pointwise;
mod reduce;
mod rms_norm;
mod row;
mod softmax;

use kiln_ir::op::{CompositeOp, FusedArg, FusedOp, FusedStep, InferInputs, NnOp, ReduceOp};
use kiln_ir::{DType, Node, Op, TensorType, ValueId};

use super::elementwise::to_storage;
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{bin, fc, un};
use crate::kernel::{Access, BinOp, Expr, Kernel, Scalar, Stmt, UnOp};
use crate::program::{BufferId, HostReason};
use eval::{Reader, StepEval};

/// Lowers a plain elementwise or convolution node as a one-step region (a
/// convolution's bias, if any, is the epilogue).
pub fn lower_node(s: &mut Scheduler, node: &Node) -> Lowered {
    lower_fused(s, node, &single_step(node))
}

/// Lowers a reduction or composite (softmax, log-softmax, RMS norm, layer norm)
/// node as a region with that op as its anchor.
pub fn lower_row_op(s: &mut Scheduler, node: &Node) -> Lowered {
    match &node.op {
        Op::Composite(CompositeOp::LayerNorm { axis, epsilon }) => {
            layer_norm::lower(s, node, *axis, *epsilon)
        }
        Op::Reduce(ReduceOp::Reduce { .. })
        | Op::Composite(
            CompositeOp::Softmax { .. }
            | CompositeOp::LogSoftmax { .. }
            | CompositeOp::RmsNorm { .. },
        ) => lower_fused(s, node, &single_step(node)),
        op => host(HostReason::OpNotLowered {
            op: op.name().to_string(),
        }),
    }
}

fn single_step(node: &Node) -> FusedOp {
    FusedOp {
        steps: vec![FusedStep {
            op: node.op.clone(),
            args: (0..node.inputs.len()).map(FusedArg::Input).collect(),
        }],
    }
}

/// Lowers a fused region node (or a one-step region made of a plain node).
pub fn lower_fused(s: &mut Scheduler, node: &Node, f: &FusedOp) -> Lowered {
    if node.outputs.len() != 1 {
        return host(HostReason::MultipleOutputs {
            count: node.outputs.len(),
        });
    }
    let types: Vec<TensorType> = node
        .inputs
        .iter()
        .map(|&i| s.graph.value(i).ty.clone())
        .collect();
    let consts: Vec<Option<&kiln_ir::Tensor>> =
        node.inputs.iter().map(|&i| s.graph.constant(i)).collect();
    let inputs = InferInputs {
        types: &types,
        consts: &consts,
    };
    let step_types = if f.steps.len() == 1 {
        f.steps[0].op.infer(&inputs)
    } else {
        f.step_types(&inputs)
    }
    .map_err(|e| HostReason::Inference(e.to_string()))?;
    let Some(step_types) = step_types
        .iter()
        .map(|t| t.shape.as_known().map(|sh| (t.dtype, sh)))
        .collect::<Option<Vec<_>>>()
    else {
        return host(HostReason::RegionShape(
            "a step's shape is known only at run time".into(),
        ));
    };
    let anchor = f.steps.iter().position(|st| st.op.is_anchor());
    let ctx = Region {
        node,
        steps: &f.steps,
        step_types,
        inputs: node.inputs.clone(),
        input_types: node
            .inputs
            .iter()
            .map(|&i| (s.graph.value(i).ty.dtype, s.shape(i)))
            .collect(),
    };
    match anchor {
        None => ctx.elementwise(s),
        Some(a) => match &f.steps[a].op {
            Op::Nn(NnOp::MatMul | NnOp::Conv { .. }) => ctx.matmul_epilogue(s, a),
            Op::Reduce(ReduceOp::Reduce { .. })
            | Op::Composite(
                CompositeOp::Softmax { .. }
                | CompositeOp::LogSoftmax { .. }
                | CompositeOp::RmsNorm { .. },
            ) => ctx.row(s, a),
            op => host(HostReason::OpNotLowered {
                op: op.name().to_string(),
            }),
        },
    }
}

/// A region being lowered.
struct Region<'a> {
    node: &'a Node,
    steps: &'a [FusedStep],
    /// Dtype and shape of each step's value.
    step_types: Vec<(DType, Vec<usize>)>,
    /// The IR values of the region's inputs.
    inputs: Vec<ValueId>,
    /// Dtype and shape of each region input.
    input_types: Vec<(DType, Vec<usize>)>,
}

impl Region<'_> {
    fn input_dtype(&self, i: usize) -> DType {
        self.input_types[i].0
    }

    fn out_type(&self) -> &(DType, Vec<usize>) {
        self.step_types.last().expect("non-empty")
    }

    /// Adds one read-only kernel buffer per region input; returns the kernel
    /// buffers and the program buffers to pass.
    fn input_buffers(&self, s: &mut Scheduler, k: &mut Kernel) -> (Vec<usize>, Vec<BufferId>) {
        self.used_input_buffers(s, k, &vec![true; self.inputs.len()])
    }

    /// Like [`Region::input_buffers`] for the inputs marked in `used` only (the
    /// others get the id `usize::MAX`, never read): an epilogue must not hold on
    /// to the operands its GEMM consumed, or their producers stay alive.
    fn used_input_buffers(
        &self,
        s: &mut Scheduler,
        k: &mut Kernel,
        used: &[bool],
    ) -> (Vec<usize>, Vec<BufferId>) {
        let mut kb = Vec::new();
        let mut pb = Vec::new();
        for (i, &v) in self.inputs.iter().enumerate() {
            if !used[i] {
                kb.push(usize::MAX);
                continue;
            }
            let (dt, shape) = &self.input_types[i];
            kb.push(k.buffer(
                s.graph.value(v).name.clone(),
                Scalar::of(*dt),
                shape.iter().product(),
                Access::Read,
            ));
            pb.push(s.buf(v));
        }
        (kb, pb)
    }

    /// The output's kernel buffer (with `access`), its program buffer appended
    /// to `args`.
    fn output_buffer(
        &self,
        s: &mut Scheduler,
        k: &mut Kernel,
        access: Access,
        args: &mut Vec<BufferId>,
    ) -> usize {
        let (out_dt, out_shape) = self.out_type();
        let out = self.node.outputs[0];
        let b = k.buffer(
            s.graph.value(out).name.clone(),
            Scalar::of(*out_dt),
            out_shape.iter().product(),
            access,
        );
        args.push(s.buf(out));
        b
    }

    fn reader<'n>(&self, bufs: Vec<usize>, nest: &'n [usize]) -> Reader<'n> {
        Reader {
            bufs,
            shapes: self.input_types.iter().map(|t| t.1.clone()).collect(),
            dtypes: self.input_types.iter().map(|t| t.0).collect(),
            nest,
        }
    }
}

/// Stores the region's value (its last step, bound by `eval`) at `index`.
fn store_result(eval: &StepEval, stmts: &mut Vec<Stmt>, buf: usize, index: Expr, dt: DType) {
    let value = eval
        .vals
        .last()
        .cloned()
        .flatten()
        .expect("every step evaluated");
    stmts.push(Stmt::Store {
        buf,
        index,
        value: to_storage(value, dt),
    });
}

/// `1 / sqrt(sum / n + epsilon)` in compute type `cs`: layer norm's inverse
/// standard deviation (`sum` of squared deviations) and RMS norm's inverse root
/// mean square (`sum` of squares).
fn inverse_sqrt_mean(sum: Expr, n: Expr, epsilon: f32, cs: Scalar) -> Expr {
    bin(
        BinOp::Div,
        fc(1.0, cs),
        un(
            UnOp::Sqrt,
            bin(BinOp::Add, bin(BinOp::Div, sum, n), fc(epsilon as f64, cs)),
        ),
    )
}

/// Launches `k` with `body`, unless a step had no kernel expression (`failed`:
/// the node then runs on the host, for that reason).
fn finish(
    s: &mut Scheduler,
    mut k: Kernel,
    body: Vec<Stmt>,
    failed: Option<HostReason>,
    args: Vec<BufferId>,
) -> Lowered {
    if let Some(reason) = failed {
        return host(reason);
    }
    k.body = body;
    s.launch(k, args)?;
    Ok(())
}
