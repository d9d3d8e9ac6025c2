//! ONNX converters of the reduce family: `Reduce*`, `ArgMax`/`ArgMin`, `CumSum`, `CumProd`, `TopK`.

use kiln_ir::op::{ReduceKind, ReduceOp};
use kiln_ir::Op;

use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    for op in [
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    ] {
        reg.insert(op, convert_reduce);
    }
    reg.insert("ArgMax", convert_arg);
    reg.insert("ArgMin", convert_arg);
    reg.insert("CumSum", convert_cumsum);
    reg.insert("CumProd", convert_cumsum);
    reg.insert("TopK", convert_top_k);
}

fn convert_reduce(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (kind, axes_became_input) = match cx.node.op_type.as_str() {
        "ReduceSum" => (ReduceKind::Sum, 13),
        "ReduceMean" => (ReduceKind::Mean, 18),
        "ReduceMax" => (ReduceKind::Max, 18),
        "ReduceMin" => (ReduceKind::Min, 18),
        "ReduceProd" => (ReduceKind::Prod, 18),
        "ReduceL1" => (ReduceKind::L1, 18),
        "ReduceL2" => (ReduceKind::L2, 18),
        "ReduceLogSum" => (ReduceKind::LogSum, 18),
        "ReduceLogSumExp" => (ReduceKind::LogSumExp, 18),
        "ReduceSumSquare" => (ReduceKind::SumSquare, 18),
        other => return Err(cx.err(format!("{other} is not a reduction"))),
    };
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let noop = cx.attrs.int_or("noop_with_empty_axes", 0) != 0;
    let keepdims = cx.attrs.int_or("keepdims", 1) != 0;
    let listed = if cx.opset < axes_became_input {
        cx.attrs.ints("axes")
    } else {
        match cx.input(1)? {
            Some(a) if cx.constant(a).is_none() => {
                // Axes known only at run time.
                let op = ReduceOp::ReduceDynamic {
                    kind,
                    keepdims,
                    noop_with_empty_axes: noop,
                };
                let y = cx.op(Op::Reduce(op), &[x, a])?;
                cx.set_output(0, y);
                return Ok(());
            }
            _ => cx.const_ints(1)?,
        }
    };
    let mut axes = match listed {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| cx.axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        _ if noop => vec![],
        _ => (0..rank).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    let op = ReduceOp::Reduce {
        kind,
        axes,
        keepdims,
    };
    let y = cx.op(Op::Reduce(op), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_arg(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let axis = cx.axis(cx.attrs.int_or("axis", 0), cx.rank(x))?;
    let keepdims = cx.attrs.int_or("keepdims", 1) != 0;
    let select_last_index = cx.attrs.int_or("select_last_index", 0) != 0;
    let op = if cx.node.op_type == "ArgMax" {
        ReduceOp::ArgMax {
            axis,
            keepdims,
            select_last_index,
        }
    } else {
        ReduceOp::ArgMin {
            axis,
            keepdims,
            select_last_index,
        }
    };
    let y = cx.op(Op::Reduce(op), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_cumsum(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let a = cx.req(1)?;
    let exclusive = cx.attrs.int_or("exclusive", 0) != 0;
    let reverse = cx.attrs.int_or("reverse", 0) != 0;
    let prod = cx.node.op_type == "CumProd";
    let y = match cx.constant(a).map(|t| t.to_i64_vec()).as_deref() {
        Some([axis]) => {
            let axis = cx.axis(*axis, cx.rank(x))?;
            let op = if prod {
                ReduceOp::CumProd {
                    axis,
                    exclusive,
                    reverse,
                }
            } else {
                ReduceOp::CumSum {
                    axis,
                    exclusive,
                    reverse,
                }
            };
            cx.op(Op::Reduce(op), &[x])?
        }
        Some(_) => return Err(cx.err("the axis input must have one element")),
        None => {
            let op = if prod {
                ReduceOp::CumProdDynamic { exclusive, reverse }
            } else {
                ReduceOp::CumSumDynamic { exclusive, reverse }
            };
            cx.op(Op::Reduce(op), &[x, a])?
        }
    };
    cx.set_output(0, y);
    Ok(())
}

fn convert_top_k(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let k = if cx.opset < 10 {
        let k = cx
            .attrs
            .int("k")
            .ok_or_else(|| cx.err("missing attribute `k`"))?;
        cx.ints(&[k])
    } else {
        cx.req(1)?
    };
    let op = ReduceOp::TopK {
        axis: cx.axis(cx.attrs.int_or("axis", -1), cx.rank(x))?,
        largest: cx.attrs.int_or("largest", 1) != 0,
        sorted: cx.attrs.int_or("sorted", 1) != 0,
    };
    let ys = cx.op_n(Op::Reduce(op), &[x, k], 2)?;
    cx.set_outputs(&ys);
    Ok(())
}
