//! ONNX control flow: `If`, `Loop` and `Scan` become [`ControlOp`]s owning
//! closed subgraphs (values read from enclosing scopes are captured as extra
//! operands); an `If` whose condition is known at import time is inlined.

use kiln_ir::op::{ControlOp, Subgraph};
use kiln_ir::{DType, Dim, Graph, Op, Shape, TensorType, ValueId};

use crate::onnx::lists::ListInfo;
use crate::onnx::proto::{self, GraphProto, ValueInfoProto};
use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert("If", convert_if);
    reg.insert("Loop", convert_loop);
    reg.insert("Scan", convert_scan);
}

fn required_graph<'a>(cx: &NodeCtx<'a>, name: &str) -> Result<&'a GraphProto, OnnxError> {
    cx.attrs
        .graph(name)
        .ok_or_else(|| cx.err(format!("missing attribute {name}")))
}

fn convert_if(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let cond = cx.req(0)?;
    if let Some(c) = cx.constant(cond).and_then(|t| t.scalar_f64()) {
        let branch = if c != 0.0 {
            "then_branch"
        } else {
            "else_branch"
        };
        let g = required_graph(cx, branch)?;
        let outs = cx.inline_subgraph(g)?;
        cx.set_outputs(&outs);
        return Ok(());
    }
    let then_g = required_graph(cx, "then_branch")?;
    let else_g = required_graph(cx, "else_branch")?;
    let then_i = cx.subgraph(then_g, &[], &[])?;
    let else_i = cx.subgraph(else_g, &[], &[])?;
    let (mut then_b, then_caps) = (then_i.graph, then_i.captures);
    let (mut else_b, else_caps) = (else_i.graph, else_i.captures);
    // Both branches take the union of what either captures, in one order.
    let mut captures: Vec<ValueId> = then_caps.clone();
    for c in &else_caps {
        if !captures.contains(c) {
            captures.push(*c);
        }
    }
    align_inputs(cx, &mut then_b, &then_caps, &captures);
    align_inputs(cx, &mut else_b, &else_caps, &captures);
    let n = cx.num_outputs();
    if then_b.outputs.len() != else_b.outputs.len() {
        return Err(cx.err(format!(
            "the then branch returns {} values, the else branch {}",
            then_b.outputs.len(),
            else_b.outputs.len()
        )));
    }
    // ONNX lets the branches return values of different ranks; kiln's types have
    // one rank. The lower-rank value gets leading 1s (what numpy broadcasting
    // would give it), and the importer checks that every consumer broadcasts it
    // against an operand of at least that rank, so no result depends on it.
    let mut unified = Vec::new();
    for k in 0..then_b.outputs.len() {
        let rank_of = |g: &Graph| g.value(g.outputs[k]).ty.shape.rank();
        let (rt, re) = (rank_of(&then_b), rank_of(&else_b));
        if rt == re {
            continue;
        }
        let (low, high) = if rt < re {
            (&mut then_b, re)
        } else {
            (&mut else_b, rt)
        };
        let v = low.outputs[k];
        let name = low.fresh_name(&format!("{}#rank{high}", low.value(v).name));
        let op = Op::Layout(kiln_ir::op::LayoutOp::Unsqueeze {
            axes: (0..high - rt.min(re)).collect(),
        });
        let u = low
            .add_node(name.clone(), op, vec![v], &[name], None)
            .map_err(|e| cx.err(e.to_string()))?[0];
        low.outputs[k] = u;
        unified.push((k, high));
    }
    let op = Op::Control(ControlOp::If {
        then_branch: Subgraph::new(then_b),
        else_branch: Subgraph::new(else_b),
    });
    let mut inputs = vec![cond];
    inputs.extend(captures);
    let outs = cx.op_n(op, &inputs, n.min(then_g.output.len()))?;
    for (k, &o) in outs.iter().enumerate() {
        let info = match (&then_i.output_lists[k], &else_i.output_lists[k]) {
            (Some(a), Some(b)) => Some(ListInfo {
                kind: a.kind,
                elem: a.elem.merge(&b.elem),
            }),
            (a, b) => a.clone().or(b.clone()),
        };
        if let Some(info) = info {
            cx.set_list_info(o, info);
        }
    }
    for (k, rank) in unified {
        if let Some(&v) = outs.get(k) {
            cx.note_rank_unified(v, rank);
        }
    }
    cx.set_outputs(&outs);
    Ok(())
}

/// Makes `branch`'s capture inputs (now one per value of `own`, in that
/// order) one per value of `all`, in that order: inputs for values it does
/// not read are added unused.
fn align_inputs(cx: &NodeCtx, branch: &mut Graph, own: &[ValueId], all: &[ValueId]) {
    let lead = branch.inputs.len() - own.len();
    let own_inputs: Vec<ValueId> = branch.inputs[lead..].to_vec();
    let mut inputs: Vec<ValueId> = branch.inputs[..lead].to_vec();
    for c in all {
        match own.iter().position(|o| o == c) {
            Some(k) => inputs.push(own_inputs[k]),
            None => {
                let name = branch.fresh_name(&format!("{}#unused", cx.graph_value_name(*c)));
                let ty = cx.ty(*c).clone();
                let v = branch.add_input(name, ty);
                inputs.push(v);
            }
        }
    }
    branch.inputs = inputs;
}

/// The type of a loop body's iteration-number or condition input: its
/// declared shape when that is one element (`[1]`), else a scalar.
fn single_input_type(vi: Option<&ValueInfoProto>, dtype: DType) -> TensorType {
    let dims = vi
        .and_then(|vi| vi.r#type.as_ref())
        .and_then(|t| t.value.as_ref())
        .and_then(|v| match v {
            proto::type_proto::Value::TensorType(tt) => tt.shape.as_ref(),
            _ => None,
        })
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(proto::tensor_shape_proto::dimension::Value::DimValue(1)) => Some(1),
                    _ => None,
                })
                .collect::<Option<Vec<usize>>>()
        });
    match dims {
        Some(Some(d)) => TensorType::new(dtype, Shape::known(&d)),
        _ => TensorType::new(dtype, Shape::default()),
    }
}

fn convert_loop(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let body_g = required_graph(cx, "body")?;
    let trip = cx.input(0)?;
    let cond = cx.input(1)?;
    let carried: Vec<ValueId> = (2..cx.num_inputs())
        .map(|i| cx.req(i))
        .collect::<Result<_, _>>()?;
    if body_g.input.len() != 2 + carried.len() {
        return Err(cx.err(format!(
            "the body takes {} inputs; with {} loop-carried values it must take {}",
            body_g.input.len(),
            carried.len(),
            2 + carried.len()
        )));
    }
    let mut leading = vec![
        single_input_type(body_g.input.first(), DType::I64),
        single_input_type(body_g.input.get(1), DType::Bool),
    ];
    leading.extend(carried.iter().map(|&v| cx.ty(v).clone()));
    let mut leading_lists = vec![None, None];
    leading_lists.extend(carried.iter().map(|&v| cx.list_info(v)));
    let imported = cx.subgraph(body_g, &leading, &leading_lists)?;
    let (body, captures) = (imported.graph, imported.captures);
    let mut inputs = Vec::new();
    if let Some(m) = trip {
        let m = if cx.dtype(m) == DType::I64 {
            m
        } else {
            cx.op(Op::Layout(kiln_ir::op::LayoutOp::cast(DType::I64)), &[m])?
        };
        inputs.push(m);
    }
    if let Some(c) = cond {
        let c = if cx.dtype(c) == DType::Bool {
            c
        } else {
            cx.op(Op::Layout(kiln_ir::op::LayoutOp::cast(DType::Bool)), &[c])?
        };
        inputs.push(c);
    }
    inputs.extend(&carried);
    inputs.extend(captures);
    let op = Op::Control(ControlOp::Loop {
        body: Subgraph::new(body),
        has_trip_count: trip.is_some(),
        has_cond: cond.is_some(),
        num_carried: carried.len(),
    });
    let outs = cx.op_n(op, &inputs, cx.num_outputs())?;
    // A carried list holds what the body returns for it, as on entry.
    for (k, &o) in outs.iter().enumerate().take(carried.len()) {
        let info = match (cx.list_info(carried[k]), &imported.output_lists[1 + k]) {
            (Some(a), Some(b)) => Some(ListInfo {
                kind: a.kind,
                elem: a.elem.merge(&b.elem),
            }),
            (a, b) => a.or(b.clone()),
        };
        if let Some(info) = info {
            cx.set_list_info(o, info);
        }
    }
    cx.set_outputs(&outs);
    Ok(())
}

fn convert_scan(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    if cx.opset < 9 {
        return convert_scan8(cx);
    }
    let body_g = required_graph(cx, "body")?;
    let num_scan_inputs = cx
        .attrs
        .int("num_scan_inputs")
        .ok_or_else(|| cx.err("missing attribute num_scan_inputs"))?;
    let operands: Vec<ValueId> = (0..cx.num_inputs())
        .map(|i| cx.req(i))
        .collect::<Result<_, _>>()?;
    if num_scan_inputs < 1 || num_scan_inputs as usize > operands.len() {
        return Err(cx.err(format!(
            "num_scan_inputs is {num_scan_inputs} with {} operands",
            operands.len()
        )));
    }
    let m = num_scan_inputs as usize;
    let num_state = operands.len() - m;
    let num_scan_outputs = body_g.output.len().checked_sub(num_state).ok_or_else(|| {
        cx.err(format!(
            "the body returns {} values, fewer than the {num_state} states",
            body_g.output.len()
        ))
    })?;
    let list = |name: &str, n: usize| -> Result<Vec<i64>, OnnxError> {
        let v = cx.attrs.ints(name).unwrap_or_else(|| vec![0; n]);
        if v.len() != n {
            return Err(cx.err(format!("{name} has {} entries, {n} expected", v.len())));
        }
        Ok(v)
    };
    let input_axes = list("scan_input_axes", m)?;
    let input_dirs = list("scan_input_directions", m)?;
    let output_axes = list("scan_output_axes", num_scan_outputs)?;
    let output_dirs = list("scan_output_directions", num_scan_outputs)?;
    let mut leading: Vec<TensorType> = operands[..num_state]
        .iter()
        .map(|&v| cx.ty(v).clone())
        .collect();
    for (j, &v) in operands[num_state..].iter().enumerate() {
        let t = cx.ty(v).clone();
        let a = cx.axis(input_axes[j], t.shape.rank())?;
        let mut dims: Vec<Dim> = t.shape.0.clone();
        dims.remove(a);
        leading.push(TensorType::new(t.dtype, Shape(dims)));
    }
    let leading_lists: Vec<Option<ListInfo>> = operands[..num_state]
        .iter()
        .map(|&v| cx.list_info(v))
        .collect();
    let imported = cx.subgraph(body_g, &leading, &leading_lists)?;
    let (body, captures) = (imported.graph, imported.captures);
    let mut inputs = operands;
    inputs.extend(captures);
    let op = Op::Control(ControlOp::Scan {
        body: Subgraph::new(body),
        num_state,
        num_scan_inputs: m,
        input_axes,
        input_reverse: input_dirs.iter().map(|&d| d != 0).collect(),
        output_axes,
        output_reverse: output_dirs.iter().map(|&d| d != 0).collect(),
    });
    let outs = cx.op_n(op, &inputs, cx.num_outputs())?;
    cx.set_outputs(&outs);
    Ok(())
}

/// Scan as opset 8 defines it: operands `[sequence_lens?, states..., scan
/// inputs...]` with a leading batch axis on all of them, the scan axis after
/// it. It is the opset-9 Scan applied to each batch row: a `Loop` over the
/// rows whose body takes row `i` of each operand (`Gather`), runs the
/// opset-9 Scan along axis 0 and returns its results as the loop's scan
/// outputs, which stack the rows back along the batch axis.
fn convert_scan8(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    use kiln_ir::op::LayoutOp;
    if cx.input(0)?.is_some() {
        return Err(cx.err(
            "Scan (opset 8) with sequence_lens is not supported (every row must use the whole sequence); re-export with opset 9 or later",
        ));
    }
    let body_g = required_graph(cx, "body")?;
    let m = cx
        .attrs
        .int("num_scan_inputs")
        .ok_or_else(|| cx.err("missing attribute num_scan_inputs"))? as usize;
    let operands: Vec<ValueId> = (1..cx.num_inputs())
        .map(|i| cx.req(i))
        .collect::<Result<_, _>>()?;
    if m < 1 || m > operands.len() {
        return Err(cx.err(format!(
            "num_scan_inputs is {m} with {} operands",
            operands.len()
        )));
    }
    let num_state = operands.len() - m;
    let num_scan_outputs = body_g
        .output
        .len()
        .checked_sub(num_state)
        .ok_or_else(|| cx.err("the body returns fewer values than there are states"))?;
    let dirs = cx.attrs.ints("directions").unwrap_or_else(|| vec![0; m]);
    if dirs.len() != m {
        return Err(cx.err(format!(
            "directions has {} entries, {m} expected",
            dirs.len()
        )));
    }
    let row_type = |cx: &NodeCtx, v: ValueId| -> Result<TensorType, OnnxError> {
        let t = cx.ty(v);
        if t.shape.rank() < 1 {
            return Err(cx.err("opset-8 Scan operands need a batch axis"));
        }
        Ok(TensorType::new(t.dtype, Shape(t.shape.0[1..].to_vec())))
    };
    // The opset-9 Scan body: states, then scan slices (the row's axis 0 removed).
    let mut leading = Vec::new();
    for (k, &v) in operands.iter().enumerate() {
        let row = row_type(cx, v)?;
        leading.push(if k < num_state {
            row
        } else {
            if row.shape.rank() < 1 {
                return Err(cx.err("opset-8 Scan inputs need a scan axis after the batch axis"));
            }
            TensorType::new(row.dtype, Shape(row.shape.0[1..].to_vec()))
        });
    }
    let imported = cx.subgraph(body_g, &leading, &vec![None; leading.len()])?;
    let scan = ControlOp::Scan {
        body: Subgraph::new(imported.graph),
        num_state,
        num_scan_inputs: m,
        input_axes: vec![0; m],
        input_reverse: dirs.iter().map(|&d| d != 0).collect(),
        output_axes: vec![0; num_scan_outputs],
        output_reverse: vec![false; num_scan_outputs],
    };
    // The loop body: row `i` of every operand, the Scan, its results out.
    let scalar = |d: DType| TensorType::new(d, Shape::default());
    let node_err = |e: kiln_ir::NodeError| OnnxError::Malformed(e.to_string());
    let mut lb = Graph::new(format!("{}/rows", cx.name()));
    let iter = lb.add_input("row", scalar(DType::I64));
    let cond = lb.add_input("cond", scalar(DType::Bool));
    let whole: Vec<ValueId> = operands
        .iter()
        .enumerate()
        .map(|(k, &v)| lb.add_input(format!("operand{k}"), cx.ty(v).clone()))
        .collect();
    let caps: Vec<ValueId> = imported
        .captures
        .iter()
        .enumerate()
        .map(|(k, &v)| lb.add_input(format!("capture{k}"), cx.ty(v).clone()))
        .collect();
    let mut args = Vec::new();
    for (k, &w) in whole.iter().enumerate() {
        args.push(
            lb.add_node(
                format!("row{k}"),
                Op::Layout(LayoutOp::Gather { axis: 0 }),
                vec![w, iter],
                &[format!("row{k}")],
                None,
            )
            .map_err(node_err)?[0],
        );
    }
    args.extend(&caps);
    let names: Vec<String> = (0..num_state + num_scan_outputs)
        .map(|k| format!("result{k}"))
        .collect();
    let results = lb
        .add_node("scan", Op::Control(scan), args, &names, None)
        .map_err(node_err)?;
    let mut outs = vec![cond];
    outs.extend(results);
    lb.outputs = outs;
    let x = operands[num_state];
    let batch = cx.op(
        Op::Layout(LayoutOp::Shape {
            start: 0,
            end: Some(1),
        }),
        &[x],
    )?;
    let zero = cx.ints(&[0]);
    let batch = cx
        .op(
            Op::Layout(LayoutOp::Squeeze {
                axes: vec![0],
                not_one: vec![],
            }),
            &[batch],
        )
        .or_else(|_| cx.op(Op::Layout(LayoutOp::Gather { axis: 0 }), &[batch, zero]))?;
    let mut inputs = vec![batch];
    inputs.extend(&operands);
    inputs.extend(&imported.captures);
    let op = Op::Control(ControlOp::Loop {
        body: Subgraph::new(lb),
        has_trip_count: true,
        has_cond: false,
        num_carried: 0,
    });
    let outs = cx.op_n(op, &inputs, cx.num_outputs())?;
    cx.set_outputs(&outs);
    Ok(())
}
