//! The reference interpreter: evaluates any graph naively and exactly.
//!
//! It is the oracle every pass and backend is checked against, so it favours
//! clarity and accuracy over speed: float math is done in f64 and rounded once to
//! the output dtype; long sums accumulate in f64. Each op family has its own
//! module; [`eval_op`] dispatches.

use crate::error::OpError;
mod broadcast;
mod composite;
mod control;
mod elementwise;
mod layout;
mod list;
mod misc;
mod nn;
mod reduce;
mod strides;

pub use broadcast::{broadcast_shapes, BroadcastIndex};

use std::collections::HashMap;

use crate::{Graph, Op, Tensor, ValueDef, ValueId};

/// An evaluation failure, naming the node.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A node failed.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// Op name.
        op: &'static str,
        /// What kind of failure (an op the interpreter does not implement, a
        /// shape or dtype mismatch, a tensor over the size limit...).
        kind: crate::ErrorKind,
        /// What went wrong.
        message: String,
    },
    /// A graph input was not given.
    #[error("missing input `{0}`")]
    MissingInput(String),
    /// An input was given that the graph does not have.
    #[error("the model has no input named `{name}` (its inputs: {expected})")]
    UnknownInput {
        /// The name given.
        name: String,
        /// The graph's input names.
        expected: String,
    },
    /// An input does not match the graph's declared type.
    #[error("input `{name}`: {message}")]
    InputMismatch {
        /// Input name.
        name: String,
        /// What differs.
        message: String,
    },
}

impl EvalError {
    /// The kind of a node's failure; `None` for errors about the graph's inputs.
    pub fn kind(&self) -> Option<crate::ErrorKind> {
        match self {
            EvalError::Node { kind, .. } => Some(*kind),
            EvalError::MissingInput(_)
            | EvalError::UnknownInput { .. }
            | EvalError::InputMismatch { .. } => None,
        }
    }
}

/// Evaluates one op on concrete inputs; `n_outputs` is how many outputs the node has.
pub fn eval_op(op: &Op, inputs: &[&Tensor], n_outputs: usize) -> Result<Vec<Tensor>, OpError> {
    let mut out = match op {
        Op::Unary(o) => elementwise::eval_unary(o, inputs),
        Op::Binary(o) => elementwise::eval_binary(o, inputs),
        Op::Reduce(o) => reduce::eval(o, inputs),
        Op::Layout(o) => layout::eval(o, inputs, n_outputs),
        Op::Nn(o) => nn::eval(o, inputs, n_outputs),
        Op::Composite(o) => composite::eval(o, inputs),
        Op::Misc(o) => misc::eval(o, inputs, n_outputs),
        Op::Fused(o) => eval_fused(o, inputs),
        Op::Control(o) => control::eval(o, inputs),
        Op::List(o) => list::eval(o, inputs),
    }?;
    if out.len() < n_outputs {
        return Err(OpError::shape(format!(
            "produced {} outputs, node has {n_outputs}",
            out.len()
        )));
    }
    out.truncate(n_outputs);
    Ok(out)
}

/// Evaluates a fused region step by step (the reference semantics of a region is
/// exactly its steps run as separate ops).
fn eval_fused(op: &crate::op::FusedOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    use crate::op::FusedArg;
    let mut values: Vec<Tensor> = Vec::with_capacity(op.steps.len());
    for (j, step) in op.steps.iter().enumerate() {
        let args: Vec<&Tensor> = step
            .args
            .iter()
            .map(|a| match *a {
                FusedArg::Input(i) => inputs
                    .get(i)
                    .copied()
                    .ok_or_else(|| OpError::value(format!("step {j} reads missing input {i}"))),
                FusedArg::Step(k) => values.get(k).filter(|_| k < j).ok_or_else(|| {
                    OpError::value(format!("step {j} reads step {k}, which is not earlier"))
                }),
            })
            .collect::<Result<_, _>>()?;
        let out = eval_op(&step.op, &args, 1)
            .map_err(|e| OpError::value(format!("step {j} ({}): {e}", step.op.name())))?;
        values.extend(out);
    }
    values
        .pop()
        .map(|v| vec![v])
        .ok_or_else(|| OpError::value("empty fused region"))
}

/// Checks a fed tensor against the declared input type (dtype, rank, known dims,
/// and consistent sizes for symbolic dims).
fn check_input(
    graph: &Graph,
    id: ValueId,
    t: &Tensor,
    bound: &mut HashMap<String, usize>,
) -> Result<(), EvalError> {
    let v = graph.value(id);
    let mismatch = |message: String| EvalError::InputMismatch {
        name: v.name.clone(),
        message,
    };
    if t.dtype() != v.ty.dtype {
        return Err(mismatch(format!(
            "expected dtype {}, got {}",
            v.ty.dtype,
            t.dtype()
        )));
    }
    if t.rank() != v.ty.shape.rank() {
        return Err(mismatch(format!(
            "expected shape {}, got {:?} (rank {} instead of {})",
            v.ty.shape,
            t.shape(),
            t.rank(),
            v.ty.shape.rank()
        )));
    }
    for (i, (d, &n)) in v.ty.shape.0.iter().zip(t.shape()).enumerate() {
        match d {
            crate::Dim::Known(k) if *k != n => {
                return Err(mismatch(format!(
                    "expected shape {}, got {:?} (dim {i} is {n}, expected {k})",
                    v.ty.shape,
                    t.shape()
                )))
            }
            crate::Dim::Sym(s) => {
                if let Some(&prev) = bound.get(s.as_ref()) {
                    if prev != n {
                        return Err(mismatch(format!(
                            "dim {i} (`{s}`) is {n} but `{s}` is {prev} in another input"
                        )));
                    }
                } else {
                    bound.insert(s.to_string(), n);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub use crate::limits::MAX_TENSOR_BYTES;

/// Refuses a node whose outputs, inferred from the actual inputs, exceed
/// `max_bytes` each.
fn check_output_sizes(op: &Op, args: &[&Tensor], max_bytes: u64) -> Result<(), OpError> {
    let types: Vec<crate::TensorType> = args
        .iter()
        .map(|t| crate::TensorType::new(t.dtype(), t.ir_shape()))
        .collect();
    let consts: Vec<Option<&Tensor>> = args.iter().map(|&t| Some(t)).collect();
    let Ok(outs) = op.infer(&crate::op::InferInputs {
        types: &types,
        consts: &consts,
    }) else {
        return Ok(()); // the evaluation reports what is wrong
    };
    for t in outs {
        let numel = t.shape.0.iter().try_fold(1u64, |acc, d| {
            d.known().map_or(Some(acc), |n| acc.checked_mul(n as u64))
        });
        let bytes = numel.and_then(|n| n.checked_mul(t.dtype.size() as u64));
        if bytes.is_none_or(|b| b > max_bytes) {
            return Err(OpError::too_large(format!(
                "would create a tensor {t} of {} bytes, over the limit of {max_bytes} (MAX_TENSOR_BYTES)",
                bytes.map_or("more than 2^64".to_string(), |b| b.to_string())
            )));
        }
    }
    Ok(())
}

/// Runs a graph on named inputs and returns its outputs in order.
pub fn run(graph: &Graph, inputs: &[(String, Tensor)]) -> Result<Vec<Tensor>, EvalError> {
    run_limited(graph, inputs, MAX_TENSOR_BYTES)
}

/// [`run`] refusing any node whose output would exceed `max_tensor_bytes` (at most
/// [`MAX_TENSOR_BYTES`]): what the fuzz harnesses use to run hostile models within
/// a small memory budget.
pub fn run_limited(
    graph: &Graph,
    inputs: &[(String, Tensor)],
    max_tensor_bytes: u64,
) -> Result<Vec<Tensor>, EvalError> {
    let max_tensor_bytes = max_tensor_bytes.min(MAX_TENSOR_BYTES);
    let mut env: Vec<Option<Tensor>> = vec![None; graph.values().len()];
    let mut bound = HashMap::new();
    for (name, t) in inputs {
        let id = graph
            .value_by_name(name)
            .filter(|id| graph.inputs.contains(id))
            .ok_or_else(|| EvalError::UnknownInput {
                name: name.clone(),
                expected: graph
                    .inputs
                    .iter()
                    .map(|&i| graph.value(i).name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        check_input(graph, id, t, &mut bound)?;
        env[id.0 as usize] = Some(t.clone());
    }
    for &i in &graph.inputs {
        if env[i.0 as usize].is_none() {
            return Err(EvalError::MissingInput(graph.value(i).name.clone()));
        }
    }
    execute(graph, env, max_tensor_bytes)
}

/// Runs `graph`'s nodes over `env` (the inputs bound, every other value `None`)
/// and returns its outputs.
pub(crate) fn execute(
    graph: &Graph,
    mut env: Vec<Option<Tensor>>,
    max_tensor_bytes: u64,
) -> Result<Vec<Tensor>, EvalError> {
    for (i, v) in graph.values().iter().enumerate() {
        if let ValueDef::Const(t) = &v.def {
            env[i] = Some(t.clone());
        }
    }
    // Last use of each value, to free intermediates early.
    let mut last_use = vec![usize::MAX; graph.values().len()];
    for (ni, n) in graph.nodes().iter().enumerate() {
        for i in &n.inputs {
            last_use[i.0 as usize] = ni;
        }
    }
    for o in &graph.outputs {
        last_use[o.0 as usize] = usize::MAX;
    }
    for (ni, node) in graph.nodes().iter().enumerate() {
        let node_err = |e: OpError| EvalError::Node {
            node: node.name.clone(),
            op: node.op.name(),
            kind: e.kind,
            message: e.message,
        };
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|i| env.get(i.0 as usize).and_then(Option::as_ref))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                node_err(OpError::value(
                    "an input is used before it is defined (unverified graph)",
                ))
            })?;
        check_output_sizes(&node.op, &args, max_tensor_bytes).map_err(node_err)?;
        let outs = eval_op(&node.op, &args, node.outputs.len()).map_err(node_err)?;
        for (o, t) in node.outputs.iter().zip(outs) {
            env[o.0 as usize] = Some(t);
        }
        for i in &node.inputs {
            if last_use[i.0 as usize] == ni && !matches!(graph.value(*i).def, ValueDef::Const(_)) {
                env[i.0 as usize] = None;
            }
        }
    }
    graph
        .outputs
        .iter()
        .map(|o| {
            env.get(o.0 as usize)
                .cloned()
                .flatten()
                .ok_or_else(|| EvalError::Node {
                    node: "<graph outputs>".into(),
                    op: "output",
                    kind: crate::ErrorKind::Value,
                    message: format!(
                        "output `{}` was never computed (unverified graph)",
                        graph.value(*o).name
                    ),
                })
        })
        .collect()
}
