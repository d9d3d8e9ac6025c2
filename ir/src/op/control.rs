//! Control flow: ops that own subgraphs (`If`, `Loop`, `Scan`).
//!
//! A subgraph is closed: every value it reads from the enclosing graph is an
//! operand of the op and an input of the subgraph ("captures", always the last
//! operands and the last subgraph inputs, in the same order). So a subgraph is
//! an ordinary [`Graph`], optimized, verified, interpreted and compiled as one;
//! the op only says how often and in which order it runs.
//!
//! Type inference runs the subgraph's inference with the operands' types
//! ([`Graph::infer_with`]). A loop-carried value whose shape changes between
//! iterations (a growing sequence) is found by iterating to a fixpoint: dims
//! that differ between a carried input and the body's output become
//! [`Dim::Any`], and the body is typed again, so its type holds for every
//! iteration. Such a value has a data-dependent shape, and so does a stacked
//! output whose iteration count is not known before running.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{InferInputs, OpFamily};
use crate::{DType, Dim, Graph, OpError, Shape, TensorType};

/// Most iterations one `Loop` may run (a loop with neither a trip count nor a
/// condition never ends; a hostile file must not hang the process).
pub const MAX_LOOP_ITERATIONS: u64 = 1 << 31;

/// A graph owned by a control-flow op. Cheap to clone (shared); printed in the
/// text form (and serialized) as the graph's own text with every constant inline.
#[derive(Clone, PartialEq)]
pub struct Subgraph(pub Arc<Graph>);

impl Subgraph {
    /// Wraps a graph.
    pub fn new(graph: Graph) -> Subgraph {
        Subgraph(Arc::new(graph))
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.0
    }

    /// The text the subgraph serializes as.
    pub fn to_text(&self) -> String {
        crate::text::print_with(
            &self.0,
            &crate::text::PrintOptions {
                max_inline: usize::MAX,
            },
        )
    }
}

impl fmt::Debug for Subgraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subgraph({:?})", self.0.name)
    }
}

impl Serialize for Subgraph {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for Subgraph {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subgraph, D::Error> {
        let text = String::deserialize(d)?;
        crate::text::parse(&text)
            .map(Subgraph::new)
            .map_err(|e| serde::de::Error::custom(format!("subgraph: {e}")))
    }
}

/// Ops that own subgraphs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, strum::IntoStaticStr)]
pub enum ControlOp {
    /// `cond ? then_branch(captures) : else_branch(captures)`. Operands: the
    /// condition (a one-element tensor, true when non-zero), then the captures;
    /// both branches take the captures as their inputs and have the same
    /// number of outputs, of the same dtypes and ranks.
    If {
        /// Run when the condition holds.
        then_branch: Subgraph,
        /// Run otherwise.
        else_branch: Subgraph,
    },
    /// ONNX `Loop`. Operands: the trip count `M` (i64, one element) when
    /// `has_trip_count`, the condition (bool, one element) when `has_cond`,
    /// `num_carried` initial carried values, then the captures. The body takes
    /// `(i: i64[], cond: bool[], carried..., captures...)` and returns
    /// `(cond, carried..., scan...)`. Iteration `i` runs while `i < M` (when
    /// given) and the condition (when given; then the body's condition output
    /// is the next one) holds. Results: the final carried values, then each
    /// scan output stacked along a new leading axis, one row per iteration.
    Loop {
        /// The loop body.
        body: Subgraph,
        /// Whether the first operand is the trip count.
        has_trip_count: bool,
        /// Whether the next operand is the initial condition.
        has_cond: bool,
        /// Loop-carried values.
        num_carried: usize,
    },
    /// ONNX `Scan` (opset 9+). Operands: `num_state` initial states,
    /// `num_scan_inputs` scanned tensors, then the captures. Iteration `t`
    /// gives the body `(state..., slice_t of each scan input..., captures...)`;
    /// it returns `(state..., scan output slices...)`. Results: the final
    /// states, then the scan outputs with the slices stacked along their axis.
    Scan {
        /// The body.
        body: Subgraph,
        /// State values carried between iterations.
        num_state: usize,
        /// Tensors sliced along their scan axis.
        num_scan_inputs: usize,
        /// The scan axis of each scan input.
        input_axes: Vec<i64>,
        /// Whether each scan input is read from its last slice to its first.
        input_reverse: Vec<bool>,
        /// The axis each scan output's slices are stacked along.
        output_axes: Vec<i64>,
        /// Whether each scan output is written from its last slice to its first.
        output_reverse: Vec<bool>,
    },
}

impl ControlOp {
    /// The subgraphs of the op.
    pub fn subgraphs(&self) -> Vec<&Subgraph> {
        match self {
            ControlOp::If {
                then_branch,
                else_branch,
            } => vec![then_branch, else_branch],
            ControlOp::Loop { body, .. } | ControlOp::Scan { body, .. } => vec![body],
        }
    }

    /// The same op with each subgraph replaced by `f` of it (in the order of
    /// [`ControlOp::subgraphs`]).
    pub fn map_subgraphs<E>(
        &self,
        mut f: impl FnMut(&Graph) -> Result<Graph, E>,
    ) -> Result<ControlOp, E> {
        let mut op = self.clone();
        match &mut op {
            ControlOp::If {
                then_branch,
                else_branch,
            } => {
                *then_branch = Subgraph::new(f(then_branch.graph())?);
                *else_branch = Subgraph::new(f(else_branch.graph())?);
            }
            ControlOp::Loop { body, .. } | ControlOp::Scan { body, .. } => {
                *body = Subgraph::new(f(body.graph())?);
            }
        }
        Ok(op)
    }

    /// Operands before the captures.
    pub fn leading_operands(&self) -> usize {
        match self {
            ControlOp::If { .. } => 1,
            ControlOp::Loop {
                has_trip_count,
                has_cond,
                num_carried,
                ..
            } => *has_trip_count as usize + *has_cond as usize + num_carried,
            ControlOp::Scan {
                num_state,
                num_scan_inputs,
                ..
            } => num_state + num_scan_inputs,
        }
    }

    /// Subgraph inputs before the captures.
    fn leading_body_inputs(&self) -> usize {
        match self {
            ControlOp::If { .. } => 0,
            ControlOp::Loop { num_carried, .. } => 2 + num_carried,
            ControlOp::Scan {
                num_state,
                num_scan_inputs,
                ..
            } => num_state + num_scan_inputs,
        }
    }

    /// Number of captured values (operands after the leading ones).
    pub fn num_captures(&self) -> usize {
        let body = self.subgraphs()[0].graph();
        body.inputs.len().saturating_sub(self.leading_body_inputs())
    }

    /// The scan outputs' count of a `Loop` or `Scan` (0 for `If`).
    pub fn num_scan_outputs(&self) -> usize {
        match self {
            ControlOp::If { .. } => 0,
            ControlOp::Loop {
                body, num_carried, ..
            } => body.graph().outputs.len().saturating_sub(1 + num_carried),
            ControlOp::Scan {
                body, num_state, ..
            } => body.graph().outputs.len().saturating_sub(*num_state),
        }
    }

    /// Checks the operand and subgraph interface counts agree.
    fn check_arity(&self, operands: usize) -> Result<(), OpError> {
        let subs = self.subgraphs();
        let lead_in = self.leading_body_inputs();
        for s in &subs {
            if s.graph().inputs.len() < lead_in {
                return Err(OpError::attribute(format!(
                    "subgraph `{}` takes {} inputs, at least {lead_in} expected",
                    s.graph().name,
                    s.graph().inputs.len()
                )));
            }
        }
        let captures = self.num_captures();
        if subs
            .iter()
            .any(|s| s.graph().inputs.len() != lead_in + captures)
        {
            return Err(OpError::attribute(
                "the branches of an If take different captures",
            ));
        }
        let expected = self.leading_operands() + captures;
        if operands != expected {
            return Err(OpError::shape(format!(
                "{operands} operands, the op and its subgraph need {expected}"
            )));
        }
        match self {
            ControlOp::Loop {
                body, num_carried, ..
            } if body.graph().outputs.len() < 1 + num_carried => Err(OpError::attribute(format!(
                "the loop body returns {} values, at least {} (the condition and the carried values) expected",
                body.graph().outputs.len(),
                1 + num_carried
            ))),
            ControlOp::Scan {
                body,
                num_state,
                num_scan_inputs,
                input_axes,
                input_reverse,
                output_axes,
                output_reverse,
            } => {
                let outs = body.graph().outputs.len();
                if outs < *num_state {
                    return Err(OpError::attribute(format!(
                        "the scan body returns {outs} values, at least {num_state} states expected"
                    )));
                }
                if input_axes.len() != *num_scan_inputs
                    || input_reverse.len() != *num_scan_inputs
                    || output_axes.len() != outs - num_state
                    || output_reverse.len() != outs - num_state
                {
                    return Err(OpError::attribute(
                        "scan axes and directions must have one entry per scan input and output",
                    ));
                }
                if *num_scan_inputs == 0 {
                    return Err(OpError::attribute("a Scan needs at least one scan input"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A one-element tensor type (`[]`, `[1]`, `[1, 1]`...).
fn is_single(t: &TensorType) -> bool {
    t.shape.0.iter().all(|d| matches!(d, Dim::Known(1)))
}

/// `a` with every dim that differs from `b`'s replaced by [`Dim::Any`] (the
/// type that holds for both), or an error when dtypes or ranks differ.
fn generalize(a: &TensorType, b: &TensorType, what: &str) -> Result<TensorType, OpError> {
    if a.dtype != b.dtype {
        return Err(OpError::dtype(format!(
            "{what} is {} on entry but {} after an iteration",
            a.dtype, b.dtype
        )));
    }
    if a.shape.rank() != b.shape.rank() {
        return Err(OpError::shape(format!(
            "{what} has shape {} on entry but {} after an iteration (rank changes are not supported)",
            a.shape, b.shape
        )));
    }
    let dims = a
        .shape
        .0
        .iter()
        .zip(&b.shape.0)
        .map(|(x, y)| if x == y { x.clone() } else { Dim::Any })
        .collect();
    Ok(TensorType::new(a.dtype, Shape(dims)))
}

/// Types a loop body to a fixpoint: the carried inputs' types (positions
/// `carried` of `ins`) are generalized until the body's carried outputs
/// (positions `carried_out`) have them. Returns the body's output types.
fn fixpoint(
    body: &Graph,
    ins: &mut [TensorType],
    carried: std::ops::Range<usize>,
    carried_out: usize,
) -> Result<Vec<TensorType>, OpError> {
    // Each round makes at least one more dim `Any` (or ends): bounded by the dims.
    let rounds = 1 + ins[carried.clone()]
        .iter()
        .map(|t| t.shape.rank())
        .sum::<usize>();
    for _ in 0..rounds {
        let outs = body.infer_with(ins)?;
        let mut changed = false;
        for (k, i) in carried.clone().enumerate() {
            let out = &outs[carried_out + k];
            let g = generalize(&ins[i], out, &format!("carried value {k}"))?;
            if g != ins[i] {
                ins[i] = g;
                changed = true;
            }
        }
        if !changed {
            return Ok(outs);
        }
    }
    Err(OpError::shape("loop-carried types do not settle"))
}

/// `t` with a dim inserted at `axis` (of the result's rank).
fn insert_dim(t: &TensorType, axis: i64, dim: Dim) -> Result<TensorType, OpError> {
    let mut dims = t.shape.0.clone();
    let a = super::util::axis(axis, dims.len() + 1)?;
    dims.insert(a, dim);
    Ok(TensorType::new(t.dtype, Shape(dims)))
}

impl OpFamily for ControlOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        self.check_arity(inputs.len())?;
        let lead = self.leading_operands();
        let captures = &inputs.types[lead..];
        match self {
            ControlOp::If {
                then_branch,
                else_branch,
            } => {
                let cond = inputs.ty(0)?;
                if !is_single(cond) && cond.shape.numel() != Some(1) {
                    return Err(OpError::shape(format!(
                        "the condition must have one element, it has shape {}",
                        cond.shape
                    )));
                }
                let then_t = then_branch.graph().infer_with(captures)?;
                let else_t = else_branch.graph().infer_with(captures)?;
                if let Some(c) = inputs.constant(0).and_then(|t| t.scalar_f64()) {
                    return Ok(if c != 0.0 { then_t } else { else_t });
                }
                if then_t.len() != else_t.len() {
                    return Err(OpError::shape(format!(
                        "the then branch returns {} values, the else branch {}",
                        then_t.len(),
                        else_t.len()
                    )));
                }
                then_t
                    .iter()
                    .zip(&else_t)
                    .enumerate()
                    .map(|(k, (a, b))| {
                        if a.dtype != b.dtype || a.shape.rank() != b.shape.rank() {
                            return Err(OpError::shape(format!(
                                "output {k} is {a} in the then branch but {b} in the else branch"
                            )));
                        }
                        generalize(a, b, &format!("output {k}"))
                    })
                    .collect()
            }
            ControlOp::Loop {
                body,
                has_trip_count,
                has_cond,
                num_carried,
            } => {
                let mut k = 0;
                let mut trips = None;
                if *has_trip_count {
                    let m = inputs.ty(0)?;
                    if !m.dtype.is_int() || m.shape.numel() != Some(1) {
                        return Err(OpError::shape(format!(
                            "the trip count must be one integer, it is {m}"
                        )));
                    }
                    trips = inputs.constant(0).and_then(|t| t.scalar_f64());
                    k += 1;
                }
                let mut cond_const = None;
                if *has_cond {
                    let c = inputs.ty(k)?;
                    if c.shape.numel() != Some(1) {
                        return Err(OpError::shape(format!(
                            "the condition must have one element, it is {c}"
                        )));
                    }
                    cond_const = inputs.constant(k).and_then(|t| t.scalar_f64());
                    k += 1;
                }
                let g = body.graph();
                let declared = |i: usize, fallback: DType| {
                    let t = &g.value(g.inputs[i]).ty;
                    if t.shape.numel() == Some(1) {
                        t.clone()
                    } else {
                        TensorType::new(fallback, Shape::default())
                    }
                };
                let mut ins = vec![declared(0, DType::I64), declared(1, DType::Bool)];
                ins.extend(inputs.types[k..k + num_carried].iter().cloned());
                ins.extend(captures.iter().cloned());
                let outs = fixpoint(g, &mut ins, 2..2 + num_carried, 1)?;
                // The iteration count is known when the trip count is a
                // constant and no condition can end the loop early.
                let body_cond_true = {
                    let c = g.outputs[0];
                    g.constant(c)
                        .and_then(|t| t.scalar_f64())
                        .is_some_and(|v| v != 0.0)
                        || c == g.inputs[1]
                };
                let count = match (trips, *has_cond) {
                    (Some(m), false) => Some(m),
                    (Some(m), true) if body_cond_true && cond_const.is_some_and(|c| c != 0.0) => {
                        Some(m)
                    }
                    (Some(_), true) if cond_const == Some(0.0) => Some(0.0),
                    _ => None,
                };
                let count_dim = match count {
                    Some(m) if m <= 0.0 => Dim::Known(0),
                    Some(m) if m <= MAX_LOOP_ITERATIONS as f64 => Dim::Known(m as usize),
                    _ => Dim::Any,
                };
                let mut result: Vec<TensorType> = ins[2..2 + num_carried].to_vec();
                for t in &outs[1 + num_carried..] {
                    result.push(insert_dim(t, 0, count_dim.clone())?);
                }
                Ok(result)
            }
            ControlOp::Scan {
                body,
                num_state,
                num_scan_inputs,
                input_axes,
                output_axes,
                ..
            } => {
                let mut ins: Vec<TensorType> = inputs.types[..*num_state].to_vec();
                let mut length: Option<Dim> = None;
                for (j, &axis) in input_axes.iter().enumerate().take(*num_scan_inputs) {
                    let t = inputs.ty(num_state + j)?;
                    let a = super::util::axis(axis, t.shape.rank())?;
                    let d = t.shape.0[a].clone();
                    match (&length, &d) {
                        (Some(Dim::Known(x)), Dim::Known(y)) if x != y => {
                            return Err(OpError::shape(format!(
                                "scan inputs have {x} and {y} slices along their scan axes"
                            )))
                        }
                        (None, _) | (Some(Dim::Any), _) => length = Some(d),
                        _ => {}
                    }
                    let mut dims = t.shape.0.clone();
                    dims.remove(a);
                    ins.push(TensorType::new(t.dtype, Shape(dims)));
                }
                ins.extend(captures.iter().cloned());
                let outs = fixpoint(body.graph(), &mut ins, 0..*num_state, 0)?;
                let length = length.unwrap_or(Dim::Any);
                let mut result: Vec<TensorType> = ins[..*num_state].to_vec();
                for (t, &axis) in outs[*num_state..].iter().zip(output_axes) {
                    result.push(insert_dim(t, axis, length.clone())?);
                }
                Ok(result)
            }
        }
    }
}
