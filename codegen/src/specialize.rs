//! Shape specialization: a graph with symbolic input dims becomes one whose every
//! value has known dims, for one set of input shapes.
//!
//! Inputs get the given shapes; each node's outputs are re-inferred from its
//! (now concrete) operands, and nodes whose operands are all constants, or that
//! only read shapes (`Shape`, `Size`), are evaluated on the spot by the reference
//! interpreter (size-guarded), which is what turns exporters' shape arithmetic
//! (`Shape → Gather → Concat → Reshape`) into constant reshapes.
//!
//! Half-precision weights widened to f32 (`Cast` of an f16/bf16 constant) are not
//! folded: the `Cast` stays, so a batch-1 matrix-vector kernel can read the
//! half-precision bytes (half the memory traffic) and a GEMM reads the cast's
//! result computed per run. Data movement over such casts (a QKV concatenation,
//! a split, a reshape) is folded on the half-precision tensors and cast again.

use kiln_ir::op::{ControlOp, InferInputs, LayoutOp};
use kiln_ir::{Dim, Graph, Op, OpError, Shape, Tensor, TensorType, ValueDef, ValueId};

pub use kiln_ir::limits::FOLD_MAX_ELEMENTS;

/// Most elements a node computing only from constants (weights) may produce to
/// be folded at specialization: such weight transforms are done once at build
/// time, and the result is what artifacts store.
pub const WEIGHT_FOLD_MAX_ELEMENTS: usize = 1 << 26;

/// Why a graph cannot be specialized for the given inputs.
#[derive(Debug, thiserror::Error)]
pub enum SpecializeError {
    /// The number of input shapes differs from the graph's inputs.
    #[error("the model takes {expected} inputs, {given} shapes given")]
    InputCount {
        /// Inputs of the graph.
        expected: usize,
        /// Shapes given.
        given: usize,
    },
    /// An input shape contradicts the declared one (rank, a known dim, or a
    /// symbolic dim bound twice to different sizes).
    #[error("input `{name}`: {message}")]
    Input {
        /// The input.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A node rejects its operands at these shapes.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// The node.
        node: String,
        /// Its op.
        op: &'static str,
        /// What kind of failure.
        kind: kiln_ir::ErrorKind,
        /// Why.
        message: String,
    },
}

/// Binds every input's dims to `shapes` (in input order).
pub fn specialize(graph: &Graph, shapes: &[Vec<usize>]) -> Result<Graph, SpecializeError> {
    if shapes.len() != graph.inputs.len() {
        return Err(SpecializeError::InputCount {
            expected: graph.inputs.len(),
            given: shapes.len(),
        });
    }
    let mut out = Graph::new(graph.name.clone());
    for b in &graph.bricks {
        out.push_brick(b.clone());
    }
    let mut map: Vec<Option<ValueId>> = vec![None; graph.values().len()];
    let mut bound: std::collections::HashMap<String, usize> = Default::default();
    for (&id, shape) in graph.inputs.iter().zip(shapes) {
        let v = graph.value(id);
        let err = |message: String| SpecializeError::Input {
            name: v.name.clone(),
            message,
        };
        if v.ty.shape.rank() != shape.len() {
            return Err(err(format!(
                "expected rank {} ({}), got {:?}",
                v.ty.shape.rank(),
                v.ty.shape,
                shape
            )));
        }
        for (d, &n) in v.ty.shape.0.iter().zip(shape) {
            match d {
                Dim::Known(k) if *k != n => {
                    return Err(err(format!("expected shape {}, got {shape:?}", v.ty.shape)))
                }
                Dim::Sym(s) => {
                    if let Some(&prev) = bound.get(s.as_ref()) {
                        if prev != n {
                            return Err(err(format!(
                                "dim `{s}` is {n} here but {prev} in another input"
                            )));
                        }
                    }
                    bound.insert(s.to_string(), n);
                }
                _ => {}
            }
        }
        map[id.0 as usize] = Some(out.add_input(
            v.name.clone(),
            TensorType::new(v.ty.dtype, Shape::known(shape)),
        ));
    }
    for (i, v) in graph.values().iter().enumerate() {
        if let ValueDef::Const(t) = &v.def {
            map[i] = Some(out.add_const(v.name.clone(), t.clone()));
        }
    }
    // Values that are `Cast(c)` of a half-precision constant `c` (its id in `out`).
    let mut widened: std::collections::HashMap<ValueId, ValueId> = Default::default();
    // Values that are `Transpose(w)` of a widened `w`, with the permutation.
    let mut transposed: std::collections::HashMap<ValueId, (ValueId, Vec<usize>)> =
        Default::default();
    for node in graph.nodes() {
        let inputs: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|i| map[i.0 as usize].expect("topological order"))
            .collect();
        let names: Vec<String> = node
            .outputs
            .iter()
            .map(|&o| graph.value(o).name.clone())
            .collect();
        let err = |e: OpError| SpecializeError::Node {
            node: node.name.clone(),
            op: node.op.name(),
            kind: e.kind,
            message: e.message,
        };
        let types: Vec<TensorType> = inputs.iter().map(|&v| out.value(v).ty.clone()).collect();
        let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&v| out.constant(v)).collect();
        let out_types = node
            .op
            .infer(&InferInputs {
                types: &types,
                consts: &consts,
            })
            .map_err(err)?;
        // concat(Wᵢᵀ) = (concat(Wᵢ) along the permuted axis)ᵀ: fold the concatenation on
        // the half-precision weights and keep the transpose, which matrix-vector
        // kernels read through (a dot product per output, contiguous along k).
        if let Some((joined, perm)) =
            transposed_concat(&node.op, &inputs, &out, &widened, &transposed)
        {
            let name = &names[0];
            let to = out_types[0].dtype;
            let (cast, half) = widen(&mut out, joined, &format!("{name}.wide"), node, to)
                .map_err(|e| err(OpError::new(e.kind, e.message)))?;
            widened.insert(cast, half);
            let t = out
                .add_node_typed(
                    format!("{}.transpose", node.name),
                    Op::Layout(LayoutOp::Transpose { perm: perm.clone() }),
                    vec![cast],
                    std::slice::from_ref(name),
                    vec![out_types[0].clone()],
                    node.brick,
                )
                .map_err(|e| err(OpError::new(e.kind, e.message)))?[0];
            transposed.insert(t, (cast, perm));
            map[node.outputs[0].0 as usize] = Some(t);
            continue;
        }
        if let Some(raw) = widened_input(&node.op, &inputs, &types, &out, &widened) {
            if let Some(results) =
                fold_widened(&node.op, &inputs, &raw, &out, &widened, node.outputs.len())
            {
                for (((&o, name), t), ty) in
                    node.outputs.iter().zip(&names).zip(results).zip(&out_types)
                {
                    let (cast, half) = widen(&mut out, t, name, node, ty.dtype)
                        .map_err(|e| err(OpError::new(e.kind, e.message)))?;
                    widened.insert(cast, half);
                    map[o.0 as usize] = Some(cast);
                }
                continue;
            }
        }
        // An `If` whose condition is now known is its branch, inlined.
        if let (
            Op::Control(ControlOp::If {
                then_branch,
                else_branch,
            }),
            Some(c),
        ) = (
            &node.op,
            consts
                .first()
                .copied()
                .flatten()
                .and_then(Tensor::scalar_f64),
        ) {
            let branch = if c != 0.0 { then_branch } else { else_branch };
            let shapes: Vec<Vec<usize>> = types[1..]
                .iter()
                .map(|t| t.shape.as_known().unwrap_or_default())
                .collect();
            let spec = specialize(branch.graph(), &shapes)?;
            let results = out
                .splice(&spec, &inputs[1..], &node.name, node.brick)
                .map_err(|e| err(OpError::new(e.kind, e.message)))?;
            for (&o, r) in node.outputs.iter().zip(results) {
                map[o.0 as usize] = Some(r);
            }
            continue;
        }
        // Small casts (norm scales) fold; weights stay half precision.
        let keep_cast = is_widening_cast(&node.op, &types)
            && consts[0].is_some_and(|t| t.numel() > FOLD_MAX_ELEMENTS);
        let first_input = inputs.first().copied();
        if keep_cast {
            // Left as a node; recorded so data movement and GEMVs can see through it.
        } else if let Some(values) = fold(&node.op, &types, &consts, &out_types, node.outputs.len())
        {
            for ((&o, name), t) in node.outputs.iter().zip(&names).zip(values) {
                map[o.0 as usize] = Some(out.add_const(name.clone(), t));
            }
            continue;
        }
        let mut out_types = out_types;
        out_types.truncate(node.outputs.len());
        let new = out
            .add_node_typed(
                node.name.clone(),
                node.op.clone(),
                inputs,
                &names,
                out_types,
                node.brick,
            )
            .map_err(|e| err(OpError::new(e.kind, e.message)))?;
        if keep_cast {
            widened.insert(new[0], first_input.expect("a cast has an input"));
        }
        if let (Op::Layout(LayoutOp::Transpose { perm }), Some(x)) = (&node.op, first_input) {
            if widened.contains_key(&x) {
                transposed.insert(new[0], (x, perm.clone()));
            }
        }
        for (&o, n) in node.outputs.iter().zip(new) {
            map[o.0 as usize] = Some(n);
        }
    }
    out.outputs = graph
        .outputs
        .iter()
        .map(|o| map[o.0 as usize].expect("defined"))
        .collect();
    out.prune();
    Ok(out)
}

/// Adds the half-precision constant `half` and a `Cast` of it to `to` whose
/// value is called `name`; returns the cast's value and the constant.
fn widen(
    out: &mut Graph,
    half: Tensor,
    name: &str,
    node: &kiln_ir::Node,
    to: kiln_ir::DType,
) -> Result<(ValueId, ValueId), kiln_ir::NodeError> {
    let c = out.add_const(format!("{name}.half"), half);
    let ty = TensorType::new(to, out.value(c).ty.shape.clone());
    let cast = out.add_node_typed(
        format!("{}.widen", node.name),
        Op::Layout(LayoutOp::cast(to)),
        vec![c],
        &[name.to_string()],
        vec![ty],
        node.brick,
    )?[0];
    Ok((cast, c))
}

/// concat(Wᵢᵀ) = (concat(Wᵢ) along the permuted axis)ᵀ: for a concatenation of
/// transposes (one permutation) of widened half-precision weights, their
/// half-precision concatenation and the permutation. The caller keeps the
/// transpose, which matrix-vector kernels read through (a dot product per
/// output, contiguous along k).
fn transposed_concat(
    op: &Op,
    inputs: &[ValueId],
    out: &Graph,
    widened: &std::collections::HashMap<ValueId, ValueId>,
    transposed: &std::collections::HashMap<ValueId, (ValueId, Vec<usize>)>,
) -> Option<(Tensor, Vec<usize>)> {
    let Op::Layout(LayoutOp::Concat { axis }) = op else {
        return None;
    };
    let perm = &transposed.get(inputs.first()?)?.1;
    let halves: Vec<&Tensor> = inputs
        .iter()
        .map(|v| {
            let (w, p) = transposed.get(v)?;
            (p == perm).then_some(())?;
            out.constant(*widened.get(w)?)
        })
        .collect::<Option<_>>()?;
    if halves.windows(2).any(|w| w[0].dtype() != w[1].dtype())
        || halves.iter().map(|t| t.numel()).sum::<usize>() > WEIGHT_FOLD_MAX_ELEMENTS
    {
        return None;
    }
    let concat = Op::Layout(LayoutOp::Concat { axis: perm[*axis] });
    let joined = kiln_ir::interp::eval_op(&concat, &halves, 1).ok()?;
    Some((joined.into_iter().next()?, perm.clone()))
}

/// `Cast` of an f16/bf16 value to f32.
fn is_widening_cast(op: &Op, types: &[TensorType]) -> bool {
    matches!(
        op,
        Op::Layout(LayoutOp::Cast {
            to: kiln_ir::DType::F32,
            ..
        })
    ) && matches!(
        types.first().map(|t| t.dtype),
        Some(kiln_ir::DType::F16 | kiln_ir::DType::BF16)
    )
}

/// Data movement that commutes with a cast (transposes are not folded, as for
/// f32 weights: matrix products read them through strides).
fn moves_data(op: &Op) -> bool {
    matches!(
        op,
        Op::Layout(
            LayoutOp::Concat { .. }
                | LayoutOp::Split { .. }
                | LayoutOp::Reshape { .. }
                | LayoutOp::Squeeze { .. }
                | LayoutOp::Unsqueeze { .. }
                | LayoutOp::Flatten { .. }
                | LayoutOp::Slice
                | LayoutOp::Identity
        )
    )
}

/// For data movement whose float operands are all widened half constants (the
/// rest constants), the half-precision constant of each operand.
fn widened_input(
    op: &Op,
    inputs: &[ValueId],
    types: &[TensorType],
    out: &Graph,
    widened: &std::collections::HashMap<ValueId, ValueId>,
) -> Option<Vec<ValueId>> {
    if !moves_data(op) || inputs.is_empty() {
        return None;
    }
    let mut any = false;
    let raw = inputs
        .iter()
        .zip(types)
        .map(|(v, t)| match widened.get(v) {
            Some(&h) => {
                any = true;
                Some(h)
            }
            None if out.constant(*v).is_some() && !t.dtype.is_float() => Some(*v),
            None => None,
        })
        .collect::<Option<Vec<_>>>()?;
    any.then_some(raw)
}

/// Evaluates data movement on the half-precision constants (every widened
/// operand must share one dtype).
fn fold_widened(
    op: &Op,
    inputs: &[ValueId],
    raw: &[ValueId],
    out: &Graph,
    widened: &std::collections::HashMap<ValueId, ValueId>,
    n_outputs: usize,
) -> Option<Vec<Tensor>> {
    let halves: Vec<kiln_ir::DType> = inputs
        .iter()
        .filter(|v| widened.contains_key(v))
        .map(|&v| out.constant(widened[&v]).map(Tensor::dtype))
        .collect::<Option<_>>()?;
    if halves.windows(2).any(|w| w[0] != w[1]) {
        return None;
    }
    let args: Vec<&Tensor> = raw
        .iter()
        .map(|&v| out.constant(v))
        .collect::<Option<_>>()?;
    let total: usize = args.iter().map(|t| t.numel()).sum();
    if total > WEIGHT_FOLD_MAX_ELEMENTS {
        return None;
    }
    kiln_ir::interp::eval_op(op, &args, n_outputs).ok()
}

/// The node's outputs as constants, when it can and should be evaluated now.
fn fold(
    op: &Op,
    types: &[TensorType],
    consts: &[Option<&Tensor>],
    out_types: &[TensorType],
    n_outputs: usize,
) -> Option<Vec<Tensor>> {
    // Control flow may run for long: it runs when the model does.
    if matches!(op, Op::Control(_)) {
        return None;
    }
    let all_const = !consts.is_empty() && consts.iter().all(|c| c.is_some());
    // Weight-only computations (a QKV concatenation, a merged LoRA delta) are
    // done once here instead of on every run, up to WEIGHT_FOLD_MAX_ELEMENTS;
    // a transposed weight is left alone (GEMMs read it through strides).
    let limit = if all_const && !matches!(op, Op::Layout(LayoutOp::Transpose { .. })) {
        WEIGHT_FOLD_MAX_ELEMENTS
    } else {
        FOLD_MAX_ELEMENTS
    };
    let small = out_types
        .iter()
        .take(n_outputs)
        .all(|t| t.shape.numel().is_some_and(|n| n <= limit));
    if !small {
        return None;
    }
    // Shape and Size read only the (now known) shape of their operand.
    if let Op::Layout(LayoutOp::Shape { .. } | LayoutOp::Size) = op {
        let dims = types[0].shape.as_known()?;
        if dims.iter().product::<usize>() > FOLD_MAX_ELEMENTS * 256 {
            return None;
        }
        let probe = Tensor::zeros(types[0].dtype, dims);
        return kiln_ir::interp::eval_op(op, &[&probe], n_outputs).ok();
    }
    if consts.is_empty() || consts.iter().any(|c| c.is_none()) {
        return None;
    }
    let args: Vec<&Tensor> = consts.iter().map(|c| c.expect("checked")).collect();
    kiln_ir::interp::eval_op(op, &args, n_outputs).ok()
}
