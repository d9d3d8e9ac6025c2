//! Reference evaluation of control flow: subgraphs run by the interpreter,
//! once per branch taken or iteration.

use super::{execute, EvalError};
use crate::error::OpError;
use crate::op::{ControlOp, MAX_LOOP_ITERATIONS};
use crate::{DType, Graph, Tensor, TensorType};

/// Evaluates a control-flow op.
pub(super) fn eval(op: &ControlOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let lead = op.leading_operands();
    if inputs.len() < lead {
        return Err(OpError::value(format!(
            "{} operands, at least {lead} expected",
            inputs.len()
        )));
    }
    let captures: Vec<Tensor> = inputs[lead..].iter().map(|&t| t.clone()).collect();
    match op {
        ControlOp::If {
            then_branch,
            else_branch,
        } => {
            let branch = if truth(inputs[0])? {
                then_branch
            } else {
                else_branch
            };
            run_body(branch.graph(), captures)
        }
        ControlOp::Loop {
            body,
            has_trip_count,
            has_cond,
            num_carried,
        } => {
            let mut k = 0;
            let trips = if *has_trip_count {
                k += 1;
                Some(
                    inputs[0]
                        .scalar_i64()
                        .ok_or_else(|| OpError::value("the trip count must be one integer"))?,
                )
            } else {
                None
            };
            let mut cond = if *has_cond {
                k += 1;
                truth(inputs[k - 1])?
            } else {
                true
            };
            let mut carried: Vec<Tensor> = inputs[k..k + num_carried]
                .iter()
                .map(|&t| t.clone())
                .collect();
            let g = body.graph();
            let iter_shape = g.value(g.inputs[0]).ty.shape.as_known().unwrap_or_default();
            let cond_shape = g.value(g.inputs[1]).ty.shape.as_known().unwrap_or_default();
            let num_scans = op.num_scan_outputs();
            let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); num_scans];
            let mut i: i64 = 0;
            while trips.is_none_or(|m| i < m) && cond {
                if i as u64 >= MAX_LOOP_ITERATIONS {
                    return Err(OpError::too_large(format!(
                        "the loop ran {MAX_LOOP_ITERATIONS} iterations (MAX_LOOP_ITERATIONS) without ending"
                    )));
                }
                let mut args = Vec::with_capacity(g.inputs.len());
                args.push(Tensor::from_i64(DType::I64, iter_shape.clone(), &[i]));
                args.push(Tensor::from_i64(
                    DType::Bool,
                    cond_shape.clone(),
                    &[cond as i64],
                ));
                args.append(&mut carried);
                args.extend(captures.iter().cloned());
                let mut outs = run_body(g, args)?.into_iter();
                let next_cond = outs.next().expect("checked by the op's arity");
                if *has_cond {
                    cond = truth(&next_cond)?;
                }
                carried = outs.by_ref().take(*num_carried).collect();
                for (s, t) in scans.iter_mut().zip(outs) {
                    s.push(t);
                }
                i += 1;
            }
            let mut results = carried;
            for (j, slices) in scans.into_iter().enumerate() {
                let empty = || {
                    // No iteration ran: the body's output type gives the slice shape.
                    let types: Vec<TensorType> = g
                        .inputs
                        .iter()
                        .enumerate()
                        .map(|(n, &v)| match n {
                            0 | 1 => g.value(v).ty.clone(),
                            _ => {
                                let t = inputs[k + n - 2];
                                TensorType::new(t.dtype(), t.ir_shape())
                            }
                        })
                        .collect();
                    let t = &g.infer_with(&types)?[1 + num_carried + j];
                    let dims: Vec<usize> =
                        t.shape.0.iter().map(|d| d.known().unwrap_or(0)).collect();
                    Ok::<_, OpError>(Tensor::zeros(t.dtype, dims))
                };
                results.push(if slices.is_empty() {
                    let e = empty()?;
                    stack(&[], 0, &e)?
                } else {
                    stack(&slices, 0, &slices[0])?
                });
            }
            Ok(results)
        }
        ControlOp::Scan {
            body,
            num_state,
            num_scan_inputs,
            input_axes,
            input_reverse,
            output_axes,
            output_reverse,
        } => {
            let mut state: Vec<Tensor> = inputs[..*num_state].iter().map(|&t| t.clone()).collect();
            let scanned = &inputs[*num_state..num_state + num_scan_inputs];
            let mut axes = Vec::with_capacity(scanned.len());
            let mut length = None;
            for (t, &a) in scanned.iter().zip(input_axes) {
                let a = crate::op::util::axis(a, t.rank())?;
                let n = t.shape()[a];
                if length.is_some_and(|l| l != n) {
                    return Err(OpError::shape(format!(
                        "scan inputs have {} and {n} slices along their scan axes",
                        length.unwrap_or(0)
                    )));
                }
                length = Some(n);
                axes.push(a);
            }
            let length = length.unwrap_or(0);
            let g = body.graph();
            let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); op.num_scan_outputs()];
            for step in 0..length {
                let mut args = Vec::with_capacity(g.inputs.len());
                args.append(&mut state);
                for ((t, &a), &rev) in scanned.iter().zip(&axes).zip(input_reverse) {
                    let at = if rev { length - 1 - step } else { step };
                    args.push(slice(t, a, at));
                }
                args.extend(captures.iter().cloned());
                let mut res = run_body(g, args)?.into_iter();
                state = res.by_ref().take(*num_state).collect();
                for (o, t) in outs.iter_mut().zip(res) {
                    o.push(t);
                }
            }
            let mut results = state;
            for ((mut slices, &axis), &rev) in outs.into_iter().zip(output_axes).zip(output_reverse)
            {
                if rev {
                    slices.reverse();
                }
                let Some(first) = slices.first().cloned() else {
                    return Err(OpError::unsupported(
                        "a Scan over zero slices (its outputs' shapes are unknown)",
                    ));
                };
                let a = crate::op::util::axis(axis, first.rank() + 1)?;
                results.push(stack(&slices, a, &first)?);
            }
            Ok(results)
        }
    }
}

/// Whether a one-element condition holds.
fn truth(t: &Tensor) -> Result<bool, OpError> {
    t.scalar_f64().map(|v| v != 0.0).ok_or_else(|| {
        OpError::value(format!(
            "a condition must have one element, it has shape {:?}",
            t.shape()
        ))
    })
}

/// Runs a subgraph on positional inputs (dtypes and ranks must match its
/// inputs'; dims may differ from the declared ones, as loop-carried values'
/// do between iterations).
pub(crate) fn run_body(graph: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OpError> {
    if inputs.len() != graph.inputs.len() {
        return Err(OpError::value(format!(
            "subgraph `{}` takes {} inputs, {} given",
            graph.name,
            graph.inputs.len(),
            inputs.len()
        )));
    }
    let mut env: Vec<Option<Tensor>> = vec![None; graph.values().len()];
    for (&id, t) in graph.inputs.iter().zip(inputs) {
        let v = graph.value(id);
        if v.ty.dtype != t.dtype() || v.ty.shape.rank() != t.rank() {
            return Err(OpError::dtype(format!(
                "subgraph `{}` input `{}` is {}, given {}{:?}",
                graph.name,
                v.name,
                v.ty,
                t.dtype(),
                t.shape()
            )));
        }
        env[id.0 as usize] = Some(t);
    }
    execute(graph, env, crate::limits::MAX_TENSOR_BYTES).map_err(|e| match e {
        EvalError::Node {
            node,
            op,
            kind,
            message,
        } => OpError::new(
            kind,
            format!(
                "in subgraph `{}`, node `{node}` ({op}): {message}",
                graph.name
            ),
        ),
        other => OpError::value(format!("in subgraph `{}`: {other}", graph.name)),
    })
}

/// Slice `at` of `t` along `axis` (that axis removed).
fn slice(t: &Tensor, axis: usize, at: usize) -> Tensor {
    let dims = t.shape();
    let es = t.dtype().size();
    let outer: usize = dims[..axis].iter().product();
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product::<usize>() * es;
    let src = t.bytes();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let start = (o * n + at) * inner;
        out.extend_from_slice(&src[start..start + inner]);
    }
    let mut shape = dims.to_vec();
    shape.remove(axis);
    Tensor::from_bytes(t.dtype(), shape, out.into()).expect("sized from the shape")
}

/// `slices` (each shaped like `like`) stacked along a new `axis`.
fn stack(slices: &[Tensor], axis: usize, like: &Tensor) -> Result<Tensor, OpError> {
    for s in slices {
        if s.shape() != like.shape() || s.dtype() != like.dtype() {
            return Err(OpError::shape(format!(
                "iterations produced a scan output of shape {:?} and one of {:?} (they must agree)",
                like.shape(),
                s.shape()
            )));
        }
    }
    let dims = like.shape();
    let es = like.dtype().size();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis..].iter().product::<usize>() * es;
    let mut out = Vec::with_capacity(outer * inner * slices.len());
    for o in 0..outer {
        for s in slices {
            out.extend_from_slice(&s.bytes()[o * inner..(o + 1) * inner]);
        }
    }
    let mut shape = dims.to_vec();
    shape.insert(axis, slices.len());
    Tensor::from_bytes(like.dtype(), shape, out.into()).map_err(|e| OpError::shape(e.to_string()))
}
