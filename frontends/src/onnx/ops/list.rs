//! ONNX sequences and optionals: list values of the IR (`kiln_ir::list`),
//! with what each holds tracked at import (`crate::onnx::lists`) so the ops
//! that take an element out know its type.

use kiln_ir::list::ListKind;
use kiln_ir::op::ListOp;
use kiln_ir::{DType, Op, TensorType, ValueId};

use crate::onnx::lists::{info_of_type, ListElem, ListInfo};
use crate::onnx::tensor::dtype_of;
use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert("SequenceEmpty", sequence_empty);
    reg.insert("SequenceConstruct", sequence_construct);
    reg.insert("SequenceInsert", sequence_insert);
    reg.insert("SequenceErase", sequence_erase);
    reg.insert("SequenceAt", sequence_at);
    reg.insert("SequenceLength", sequence_length);
    reg.insert("SplitToSequence", split_to_sequence);
    reg.insert("ConcatFromSequence", concat_from_sequence);
    reg.insert("SequenceMap", sequence_map);
    reg.insert("Optional", optional);
    reg.insert("OptionalHasElement", optional_has_element);
    reg.insert("OptionalGetElement", optional_get_element);
}

/// Adds a list op producing a list value holding `info`.
fn list_out(
    cx: &mut NodeCtx,
    op: ListOp,
    inputs: &[ValueId],
    info: ListInfo,
) -> Result<(), OnnxError> {
    let v = cx.op(Op::List(op), inputs)?;
    cx.set_list_info(v, info);
    cx.set_output(0, v);
    Ok(())
}

/// What the sequence operand `i` holds.
fn sequence_info(cx: &NodeCtx, i: usize) -> Result<(ValueId, ListInfo), OnnxError> {
    let v = cx.req(i)?;
    match cx.list_info(v) {
        Some(info) => Ok((v, info)),
        None => Err(cx.err(format!("input {i} is not a sequence"))),
    }
}

/// The IR type of a list's element, or an error naming the node.
fn elem_type(cx: &NodeCtx, info: &ListInfo) -> Result<TensorType, OnnxError> {
    info.elem.ir_type().ok_or_else(|| {
        cx.err("the element type of the sequence is not known here (an empty sequence whose elements' rank no producer states)")
    })
}

fn element_of(cx: &NodeCtx, v: ValueId) -> ListElem {
    ListElem::of(cx.ty(v), cx.list_info(v).as_ref())
}

fn sequence_empty(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let code = cx.attrs.int_or("dtype", 1) as i32;
    let dtype = dtype_of(code).ok_or_else(|| cx.err(format!("unsupported dtype {code}")))?;
    let info = ListInfo {
        kind: ListKind::Sequence,
        elem: ListElem::Unknown(dtype),
    };
    list_out(cx, ListOp::SequenceEmpty, &[], info)
}

fn sequence_construct(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let inputs = cx.inputs()?;
    let mut elem = element_of(cx, inputs[0]);
    for &v in &inputs[1..] {
        elem = elem.merge(&element_of(cx, v));
    }
    let info = ListInfo {
        kind: ListKind::Sequence,
        elem,
    };
    list_out(cx, ListOp::SequenceConstruct, &inputs, info)
}

fn sequence_insert(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (seq, info) = sequence_info(cx, 0)?;
    let x = cx.req(1)?;
    let elem = info.elem.merge(&element_of(cx, x));
    let mut inputs = vec![seq, x];
    if let Some(p) = cx.input(2)? {
        inputs.push(p);
    }
    let info = ListInfo {
        kind: ListKind::Sequence,
        elem,
    };
    list_out(cx, ListOp::SequenceInsert, &inputs, info)
}

fn sequence_erase(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (seq, info) = sequence_info(cx, 0)?;
    let mut inputs = vec![seq];
    if let Some(p) = cx.input(1)? {
        inputs.push(p);
    }
    list_out(cx, ListOp::SequenceErase, &inputs, info)
}

fn sequence_at(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (seq, info) = sequence_info(cx, 0)?;
    let pos = cx.req(1)?;
    let elem = elem_type(cx, &info)?;
    let v = cx.op(Op::List(ListOp::SequenceAt { elem }), &[seq, pos])?;
    if let ListElem::List(inner) = &info.elem {
        cx.set_list_info(v, (**inner).clone());
    }
    cx.set_output(0, v);
    Ok(())
}

fn sequence_length(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (seq, _) = sequence_info(cx, 0)?;
    let v = cx.op(Op::List(ListOp::SequenceLength), &[seq])?;
    cx.set_output(0, v);
    Ok(())
}

fn split_to_sequence(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let axis = cx.attrs.int_or("axis", 0);
    let keepdims = cx.attrs.int_or("keepdims", 1) != 0;
    let split = cx.input(1)?;
    let ty = cx.ty(x).clone();
    let a = cx.axis(axis, ty.shape.rank())?;
    let mut dims = ty.shape.0.clone();
    if split.is_none() && !keepdims {
        dims.remove(a);
    } else {
        dims[a] = kiln_ir::Dim::Any;
    }
    let info = ListInfo {
        kind: ListKind::Sequence,
        elem: ListElem::Tensor(TensorType::new(ty.dtype, kiln_ir::Shape(dims))),
    };
    let mut inputs = vec![x];
    inputs.extend(split);
    list_out(
        cx,
        ListOp::SplitToSequence { axis, keepdims },
        &inputs,
        info,
    )
}

fn concat_from_sequence(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (seq, info) = sequence_info(cx, 0)?;
    let axis = cx
        .attrs
        .int("axis")
        .ok_or_else(|| cx.err("missing attribute axis"))?;
    let new_axis = cx.attrs.int_or("new_axis", 0) != 0;
    let elem = elem_type(cx, &info)?;
    let v = cx.op(
        Op::List(ListOp::ConcatFromSequence {
            axis,
            new_axis,
            elem,
        }),
        &[seq],
    )?;
    cx.set_output(0, v);
    Ok(())
}

fn optional(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    match cx.input(0)? {
        Some(x) => {
            let info = ListInfo {
                kind: ListKind::Optional,
                elem: element_of(cx, x),
            };
            list_out(cx, ListOp::OptionalSome, &[x], info)
        }
        None => {
            let elem = cx
                .attrs
                .get("type")
                .and_then(|a| a.tp.as_ref())
                .map(|tp| match info_of_type(tp) {
                    Some(inner) => ListElem::List(Box::new(inner)),
                    None => match tp.value.as_ref() {
                        Some(crate::onnx::proto::type_proto::Value::TensorType(tt)) => {
                            ListElem::Unknown(dtype_of(tt.elem_type).unwrap_or(DType::F32))
                        }
                        _ => ListElem::Unknown(DType::F32),
                    },
                })
                .unwrap_or(ListElem::Unknown(DType::F32));
            let info = ListInfo {
                kind: ListKind::Optional,
                elem,
            };
            list_out(cx, ListOp::OptionalNone, &[], info)
        }
    }
}

fn optional_has_element(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let v = match cx.input(0)? {
        // No input: an absent optional.
        None => cx.scalar(DType::Bool, 0.0),
        Some(x) => match cx.list_info(x) {
            Some(info) if info.kind == ListKind::Optional => {
                cx.op(Op::List(ListOp::OptionalHasElement), &[x])?
            }
            // A tensor or a sequence is always there.
            _ => cx.scalar(DType::Bool, 1.0),
        },
    };
    cx.set_output(0, v);
    Ok(())
}

fn optional_get_element(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let Some(info) = cx.list_info(x).filter(|i| i.kind == ListKind::Optional) else {
        // A tensor or a sequence is its own value.
        cx.set_output(0, x);
        return Ok(());
    };
    let elem = elem_type(cx, &info)?;
    let v = cx.op(Op::List(ListOp::OptionalGetElement { elem }), &[x])?;
    if let ListElem::List(inner) = &info.elem {
        cx.set_list_info(v, (**inner).clone());
    }
    cx.set_output(0, v);
    Ok(())
}

/// `SequenceMap` as the `Loop` its definition describes: iteration `i`
/// applies the body to element `i` of each sequence input (and to each
/// tensor input whole) and appends each body output to its result sequence.
fn sequence_map(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    use kiln_ir::op::{list_type, ControlOp, Subgraph};
    use kiln_ir::{Graph, Shape};
    let body_g = cx
        .attrs
        .graph("body")
        .ok_or_else(|| cx.err("missing attribute body"))?;
    let inputs = cx.inputs()?;
    let (first, _) = sequence_info(cx, 0)?;
    // Each input as the body sees it: a sequence's element, a tensor whole.
    let mut leading = Vec::with_capacity(inputs.len());
    let mut leading_lists = Vec::with_capacity(inputs.len());
    let mut elems: Vec<Option<TensorType>> = Vec::with_capacity(inputs.len());
    for &v in &inputs {
        match cx.list_info(v) {
            Some(info) if info.kind == ListKind::Sequence => {
                let t = elem_type(cx, &info)?;
                leading.push(t.clone());
                leading_lists.push(match &info.elem {
                    ListElem::List(inner) => Some((**inner).clone()),
                    _ => None,
                });
                elems.push(Some(t));
            }
            other => {
                leading.push(cx.ty(v).clone());
                leading_lists.push(other);
                elems.push(None);
            }
        }
    }
    let sub = cx.subgraph(body_g, &leading, &leading_lists)?;
    let m = sub.graph.outputs.len();
    let scalar = |d: DType| TensorType::new(d, Shape::default());
    let mut lb = Graph::new(format!("{}/map", cx.name()));
    let node_err = |e: kiln_ir::NodeError| OnnxError::Malformed(e.to_string());
    let iter = lb.add_input("iter", scalar(DType::I64));
    let cond = lb.add_input("cond", scalar(DType::Bool));
    let accs: Vec<ValueId> = (0..m)
        .map(|k| lb.add_input(format!("acc{k}"), list_type()))
        .collect();
    let ins: Vec<ValueId> = inputs
        .iter()
        .enumerate()
        .map(|(k, &v)| lb.add_input(format!("in{k}"), cx.ty(v).clone()))
        .collect();
    let caps: Vec<ValueId> = sub
        .captures
        .iter()
        .enumerate()
        .map(|(k, &v)| lb.add_input(format!("cap{k}"), cx.ty(v).clone()))
        .collect();
    let mut args = Vec::with_capacity(ins.len() + caps.len());
    for (k, (&v, elem)) in ins.iter().zip(&elems).enumerate() {
        args.push(match elem {
            Some(t) => lb
                .add_node(
                    format!("at{k}"),
                    Op::List(ListOp::SequenceAt { elem: t.clone() }),
                    vec![v, iter],
                    &[format!("elem{k}")],
                    None,
                )
                .map_err(node_err)?[0],
            None => v,
        });
    }
    args.extend(&caps);
    let outs = lb.splice(&sub.graph, &args, "", None).map_err(node_err)?;
    let mut results = vec![cond];
    for (k, (&acc, &o)) in accs.iter().zip(&outs).enumerate() {
        results.push(
            lb.add_node(
                format!("append{k}"),
                Op::List(ListOp::SequenceInsert),
                vec![acc, o],
                &[format!("acc{k}_next")],
                None,
            )
            .map_err(node_err)?[0],
        );
    }
    lb.outputs = results;
    let trips = cx.op(Op::List(ListOp::SequenceLength), &[first])?;
    let mut operands = vec![trips];
    for _ in 0..m {
        operands.push(cx.op(Op::List(ListOp::SequenceEmpty), &[])?);
    }
    operands.extend(&inputs);
    operands.extend(&sub.captures);
    let out_types: Vec<TensorType> = sub
        .graph
        .outputs
        .iter()
        .map(|&o| sub.graph.value(o).ty.clone())
        .collect();
    let op = Op::Control(ControlOp::Loop {
        body: Subgraph::new(lb),
        has_trip_count: true,
        has_cond: false,
        num_carried: m,
    });
    let results = cx.op_n(op, &operands, m)?;
    for (k, &r) in results.iter().enumerate() {
        let elem = match &sub.output_lists[k] {
            Some(inner) => ListElem::List(Box::new(inner.clone())),
            None => ListElem::Tensor(out_types[k].clone()),
        };
        cx.set_list_info(
            r,
            ListInfo {
                kind: ListKind::Sequence,
                elem,
            },
        );
    }
    cx.set_outputs(&results);
    Ok(())
}
