//! ONNX converters of the layout family: data movement, shapes, selection, creation.
//!
//! Each converter normalizes what changed across opsets (attributes that became
//! inputs, optional inputs, negative axes) into the IR op's explicit attributes.

use kiln_ir::op::{LayoutOp, PadMode, ScatterReduction};
use kiln_ir::{DType, Dim, Op, Tensor, ValueId};

use crate::onnx::tensor::{dtype_of, onnx_type_name};
use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert("Constant", convert_constant);
    reg.insert("Reshape", convert_reshape);
    reg.insert("Transpose", convert_transpose);
    reg.insert("Squeeze", convert_squeeze);
    reg.insert("Unsqueeze", convert_unsqueeze);
    reg.insert("Flatten", convert_flatten);
    reg.insert("Expand", convert_expand);
    reg.insert("Concat", convert_concat);
    reg.insert("Split", convert_split);
    reg.insert("Slice", convert_slice);
    reg.insert("Gather", convert_gather);
    reg.insert("GatherElements", convert_gather_elements);
    reg.insert("GatherND", convert_gather_nd);
    reg.insert("ScatterND", convert_scatter_nd);
    reg.insert("ScatterElements", convert_scatter_elements);
    reg.insert("Scatter", convert_scatter_elements);
    reg.insert("Tile", convert_tile);
    reg.insert("Pad", convert_pad);
    reg.insert("TensorScatter", convert_tensor_scatter);
    reg.insert("Shape", convert_shape);
    reg.insert("Size", convert_size);
    reg.insert("ConstantOfShape", convert_constant_of_shape);
    reg.insert("Range", convert_range);
    reg.insert("Trilu", convert_trilu);
    reg.insert("OneHot", convert_one_hot);
    reg.insert("NonZero", convert_nonzero);
    reg.insert("DepthToSpace", convert_depth_to_space);
    reg.insert("SpaceToDepth", convert_space_to_depth);
    reg.insert("ReverseSequence", convert_reverse_sequence);
    reg.insert("Compress", convert_compress);
    reg.insert("Unique", convert_unique);
    reg.insert("BitCast", convert_bitcast);
    reg.insert("EyeLike", convert_eye_like);
}

fn layout(cx: &mut NodeCtx, op: LayoutOp, inputs: &[ValueId]) -> Result<(), OnnxError> {
    let y = cx.op(Op::Layout(op), inputs)?;
    cx.set_output(0, y);
    Ok(())
}

/// Normalizes axes against `rank`, sorted and checked for repeats.
fn norm_axes(cx: &NodeCtx, axes: &[i64], rank: usize) -> Result<Vec<usize>, OnnxError> {
    let mut out = axes
        .iter()
        .map(|&a| cx.axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(cx.err(format!("repeated axis in {axes:?}")));
    }
    Ok(out)
}

fn convert_constant(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let a = &cx.attrs;
    let t = if let Some(t) = cx.attr_tensor("value")? {
        t
    } else if let Some(v) = a.float("value_float") {
        Tensor::scalar(v)
    } else if let Some(v) = a.get("value_floats") {
        Tensor::from_vec(vec![v.floats.len()], v.floats.clone())
    } else if let Some(v) = a.int("value_int") {
        Tensor::scalar(v)
    } else if let Some(v) = a.get("value_ints") {
        Tensor::from_vec(vec![v.ints.len()], v.ints.clone())
    } else if a.has("sparse_value") {
        return Err(cx.err("sparse constants are not supported"));
    } else if a.has("value_string") || a.has("value_strings") {
        return Err(cx.err("string constants are not supported (kiln has no string dtype)"));
    } else {
        return Err(cx.err("Constant has no value attribute"));
    };
    let v = cx.konst(t);
    cx.set_output(0, v);
    Ok(())
}

fn convert_reshape(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let shape = if cx.opset < 5 {
        let s = cx
            .attrs
            .ints("shape")
            .ok_or_else(|| cx.err("missing attribute `shape`"))?;
        cx.ints(&s)
    } else {
        cx.req(1)?
    };
    let allowzero = cx.attrs.int_or("allowzero", 0) != 0;
    layout(cx, LayoutOp::Reshape { allowzero }, &[x, shape])
}

fn convert_transpose(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let perm = match cx.attrs.ints("perm") {
        Some(p) => p
            .iter()
            .map(|&a| cx.axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..rank).rev().collect(),
    };
    layout(cx, LayoutOp::Transpose { perm }, &[x])
}

fn convert_squeeze(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    if cx.opset >= 13 {
        if let Some(a) = cx.input(1)?.filter(|&a| cx.constant(a).is_none()) {
            let op = LayoutOp::Squeeze {
                axes: vec![],
                not_one: vec![],
            };
            return layout(cx, op, &[x, a]);
        }
    }
    let axes = if cx.opset < 13 {
        cx.attrs.ints("axes")
    } else {
        cx.const_ints(1)?
    };
    let (axes, not_one) = match axes {
        Some(a) => (norm_axes(cx, &a, rank)?, vec![]),
        // Every size-1 dim: those known to be 1 now; a dim unknown here stays,
        // checked not to be 1 when its size is known (specialization, run time).
        None => {
            let shape = &cx.ty(x).shape;
            let ones = (0..rank).filter(|&i| shape.0[i] == Dim::Known(1));
            let unknown = (0..rank).filter(|&i| shape.0[i].known().is_none());
            (ones.collect(), unknown.collect())
        }
    };
    layout(cx, LayoutOp::Squeeze { axes, not_one }, &[x])
}

fn convert_unsqueeze(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    if cx.opset >= 13 {
        if let Some(a) = cx.input(1)?.filter(|&a| cx.constant(a).is_none()) {
            return layout(cx, LayoutOp::Unsqueeze { axes: vec![] }, &[x, a]);
        }
    }
    let axes = if cx.opset < 13 {
        cx.attrs.ints("axes")
    } else {
        cx.const_ints(1)?
    }
    .ok_or_else(|| cx.err("Unsqueeze needs axes"))?;
    let out_rank = cx.rank(x) + axes.len();
    let axes = norm_axes(cx, &axes, out_rank)?;
    layout(cx, LayoutOp::Unsqueeze { axes }, &[x])
}

fn convert_flatten(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x) as i64;
    let a = cx.attrs.int_or("axis", 1);
    let axis = if a < 0 { a + rank } else { a };
    if !(0..=rank).contains(&axis) {
        return Err(cx.err(format!("flatten axis {a} out of range for rank {rank}")));
    }
    layout(
        cx,
        LayoutOp::Flatten {
            axis: axis as usize,
        },
        &[x],
    )
}

fn convert_expand(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, s) = (cx.req(0)?, cx.req(1)?);
    layout(cx, LayoutOp::Expand, &[x, s])
}

fn convert_concat(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let inputs = cx.inputs()?;
    let first = *inputs
        .first()
        .ok_or_else(|| cx.err("Concat of no inputs"))?;
    let rank = cx.rank(first);
    let axis = cx.axis(cx.attrs.int_or("axis", 1), rank)?;
    layout(cx, LayoutOp::Concat { axis }, &inputs)
}

fn convert_split(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let axis = cx.axis(cx.attrs.int_or("axis", 0), rank)?;
    if cx.opset >= 13 {
        if let Some(s) = cx.input(1)?.filter(|&s| cx.constant(s).is_none()) {
            let n = cx
                .ty(s)
                .shape
                .0
                .first()
                .and_then(Dim::known)
                .ok_or_else(|| cx.err("Split sizes must be 1-D of known length"))?;
            let op = LayoutOp::Split {
                axis,
                sizes: vec![],
            };
            let outs = cx.op_n(Op::Layout(op), &[x, s], n)?;
            cx.set_outputs(&outs);
            return Ok(());
        }
    }
    let given = if cx.opset < 13 {
        cx.attrs.ints("split").filter(|s| !s.is_empty())
    } else {
        cx.const_ints(1)?
    };
    let sizes: Vec<usize> = match given {
        Some(s) => {
            if s.iter().any(|&v| v < 0) {
                return Err(cx.err(format!("negative split sizes {s:?}")));
            }
            s.iter().map(|&v| v as usize).collect()
        }
        None => {
            let n = cx.ty(x).shape.0[axis]
                .known()
                .ok_or_else(|| cx.err("equal Split of an axis of unknown size"))?;
            let parts = match cx.attrs.int("num_outputs") {
                Some(k) if k > 0 => k as usize,
                Some(k) => return Err(cx.err(format!("num_outputs {k}"))),
                None => cx.num_outputs(),
            };
            if parts == 0 {
                return Err(cx.err("Split with no outputs"));
            }
            let chunk = n.div_ceil(parts);
            (0..parts)
                .map(|i| chunk.min(n.saturating_sub(i * chunk)))
                .collect()
        }
    };
    let n = sizes.len();
    let outs = cx.op_n(Op::Layout(LayoutOp::Split { axis, sizes }), &[x], n)?;
    cx.set_outputs(&outs);
    Ok(())
}

fn convert_slice(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let get = |n: &str| cx.attrs.ints(n);
        let starts = get("starts").ok_or_else(|| cx.err("missing `starts`"))?;
        let ends = get("ends").ok_or_else(|| cx.err("missing `ends`"))?;
        let axes = get("axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = vec![1; starts.len()];
        (
            cx.ints(&starts),
            cx.ints(&ends),
            cx.ints(&axes),
            cx.ints(&steps),
        )
    } else {
        let (starts, ends) = (cx.req(1)?, cx.req(2)?);
        let n = cx
            .ty(starts)
            .shape
            .0
            .first()
            .and_then(Dim::known)
            .ok_or_else(|| cx.err("Slice starts of unknown length"))?;
        let axes = match cx.input(3)? {
            Some(a) => a,
            None => cx.ints(&(0..n as i64).collect::<Vec<_>>()),
        };
        let steps = match cx.input(4)? {
            Some(s) => s,
            None => cx.ints(&vec![1; n]),
        };
        (starts, ends, axes, steps)
    };
    layout(cx, LayoutOp::Slice, &[x, starts, ends, axes, steps])
}

fn convert_gather(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, i) = (cx.req(0)?, cx.req(1)?);
    let axis = cx.axis(cx.attrs.int_or("axis", 0), cx.rank(x))?;
    layout(cx, LayoutOp::Gather { axis }, &[x, i])
}

fn convert_gather_elements(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, i) = (cx.req(0)?, cx.req(1)?);
    let axis = cx.axis(cx.attrs.int_or("axis", 0), cx.rank(x))?;
    layout(cx, LayoutOp::GatherElements { axis }, &[x, i])
}

fn convert_gather_nd(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, i) = (cx.req(0)?, cx.req(1)?);
    let b = cx.attrs.int_or("batch_dims", 0);
    if b < 0 {
        return Err(cx.err(format!("batch_dims {b}")));
    }
    layout(
        cx,
        LayoutOp::GatherND {
            batch_dims: b as usize,
        },
        &[x, i],
    )
}

fn reduction(cx: &NodeCtx) -> Result<ScatterReduction, OnnxError> {
    Ok(match cx.attrs.string_or("reduction", "none").as_str() {
        "none" => ScatterReduction::None,
        "add" => ScatterReduction::Add,
        "mul" => ScatterReduction::Mul,
        "max" => ScatterReduction::Max,
        "min" => ScatterReduction::Min,
        r => return Err(cx.err(format!("unknown reduction `{r}`"))),
    })
}

fn convert_scatter_nd(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, i, u) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let reduction = reduction(cx)?;
    layout(cx, LayoutOp::ScatterND { reduction }, &[x, i, u])
}

fn convert_scatter_elements(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, i, u) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let axis = cx.axis(cx.attrs.int_or("axis", 0), cx.rank(x))?;
    let reduction = reduction(cx)?;
    layout(
        cx,
        LayoutOp::ScatterElements { axis, reduction },
        &[x, i, u],
    )
}

fn convert_tile(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, r) = (cx.req(0)?, cx.req(1)?);
    layout(cx, LayoutOp::Tile, &[x, r])
}

fn convert_pad(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let dt = cx.dtype(x);
    let mode = match cx.attrs.string_or("mode", "constant").as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => return Err(cx.err(format!("unknown pad mode `{m}`"))),
    };
    let (pads, value) = if cx.opset < 11 {
        let p = cx
            .attrs
            .ints("pads")
            .or_else(|| cx.attrs.ints("paddings"))
            .ok_or_else(|| cx.err("missing attribute `pads`"))?;
        let v = cx.attrs.float_or("value", 0.0) as f64;
        (cx.ints(&p), cx.scalar(dt, v))
    } else {
        let mut pads = cx.req(1)?;
        let dynamic_axes = cx.input(3)?.filter(|&a| cx.constant(a).is_none());
        if dynamic_axes.is_some() || cx.constant(pads).is_none() {
            // Spread at run time by the op itself.
        } else if let Some(axes) = cx.const_ints(3)? {
            // Pads given for some axes only: spread them over all axes.
            let axes = axes
                .iter()
                .map(|&a| cx.axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            let p = cx.const_ints(1)?.unwrap_or_default();
            if p.len() != 2 * axes.len() {
                return Err(cx.err(format!("{} pads for {} axes", p.len(), axes.len())));
            }
            let mut full = vec![0i64; 2 * rank];
            for (k, &a) in axes.iter().enumerate() {
                full[a] = p[k];
                full[a + rank] = p[k + axes.len()];
            }
            pads = cx.ints(&full);
        }
        let value = match cx.input(2)? {
            Some(v) if cx.ty(v).shape.numel() != Some(0) => v,
            _ => cx.scalar(dt, 0.0),
        };
        if let (Some(axes), true) = (
            cx.input(3)?,
            cx.constant(pads).is_none() || dynamic_axes.is_some(),
        ) {
            return layout(cx, LayoutOp::Pad { mode }, &[x, pads, value, axes]);
        }
        (pads, value)
    };
    layout(cx, LayoutOp::Pad { mode }, &[x, pads, value])
}

/// TensorScatter (opset 24): the KV-cache write, one IR op.
fn convert_tensor_scatter(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (cache, update) = (cx.req(0)?, cx.req(1)?);
    let circular = match cx.attrs.string_or("mode", "linear").as_str() {
        "linear" => false,
        "circular" => true,
        m => return Err(cx.err(format!("mode `{m}` (linear or circular)"))),
    };
    let rank = cx.rank(cache);
    let axis = cx.axis(cx.attrs.int_or("axis", -2), rank)?;
    if axis == 0 {
        return Err(cx.err("TensorScatter axis must not be the batch axis 0"));
    }
    let mut inputs = vec![cache, update];
    inputs.extend(cx.input(2)?);
    layout(cx, LayoutOp::TensorScatter { axis, circular }, &inputs)
}

fn convert_shape(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let start = cx.attrs.int_or("start", 0);
    let end = cx.attrs.int("end");
    layout(cx, LayoutOp::Shape { start, end }, &[x])
}

fn convert_size(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    layout(cx, LayoutOp::Size, &[x])
}

fn convert_constant_of_shape(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let s = cx.req(0)?;
    let (dtype, value) = match cx.attr_tensor("value")? {
        Some(t) => (
            t.dtype(),
            t.scalar_f64()
                .ok_or_else(|| cx.err("ConstantOfShape value must have one element"))?,
        ),
        None => (DType::F32, 0.0),
    };
    layout(cx, LayoutOp::ConstantOfShape { dtype, value }, &[s])
}

fn convert_range(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (s, l, d) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    layout(cx, LayoutOp::Range, &[s, l, d])
}

fn convert_trilu(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let k = match cx.input(1)? {
        Some(k) => k,
        None => cx.konst(Tensor::scalar(0i64)),
    };
    let upper = cx.attrs.int_or("upper", 1) != 0;
    layout(cx, LayoutOp::Trilu { upper }, &[x, k])
}

fn convert_one_hot(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (i, d, v) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let rank = cx.rank(i);
    let axis = cx.axis(cx.attrs.int_or("axis", -1), rank + 1)? as i64;
    layout(cx, LayoutOp::OneHot { axis }, &[i, d, v])
}

fn convert_nonzero(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    layout(cx, LayoutOp::NonZero, &[x])
}

fn blocksize(cx: &NodeCtx) -> Result<usize, OnnxError> {
    match cx.attrs.int("blocksize") {
        Some(b) if b > 0 => Ok(b as usize),
        b => Err(cx.err(format!("invalid blocksize {b:?}"))),
    }
}

fn convert_depth_to_space(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let blocksize = blocksize(cx)?;
    let crd = match cx.attrs.string_or("mode", "DCR").as_str() {
        "DCR" => false,
        "CRD" => true,
        m => return Err(cx.err(format!("unknown mode `{m}`"))),
    };
    layout(cx, LayoutOp::DepthToSpace { blocksize, crd }, &[x])
}

fn convert_space_to_depth(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let blocksize = blocksize(cx)?;
    layout(cx, LayoutOp::SpaceToDepth { blocksize }, &[x])
}

fn convert_reverse_sequence(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, l) = (cx.req(0)?, cx.req(1)?);
    let batch_axis = cx.attrs.int_or("batch_axis", 1);
    let time_axis = cx.attrs.int_or("time_axis", 0);
    let ok = |a: i64| a == 0 || a == 1;
    if !ok(batch_axis) || !ok(time_axis) || batch_axis == time_axis {
        return Err(cx.err("batch_axis and time_axis must be 0 and 1"));
    }
    layout(
        cx,
        LayoutOp::ReverseSequence {
            batch_axis: batch_axis as usize,
            time_axis: time_axis as usize,
        },
        &[x, l],
    )
}

fn convert_compress(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, c) = (cx.req(0)?, cx.req(1)?);
    let axis = match cx.attrs.int("axis") {
        Some(a) => Some(cx.axis(a, cx.rank(x))?),
        None => None,
    };
    layout(cx, LayoutOp::Compress { axis }, &[x, c])
}

fn convert_unique(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let axis = match cx.attrs.int("axis") {
        Some(a) => Some(cx.axis(a, cx.rank(x))?),
        None => None,
    };
    let op = LayoutOp::Unique {
        axis,
        sorted: cx.attrs.int_or("sorted", 1) != 0,
    };
    let ys = cx.op_n(Op::Layout(op), &[x], 4)?;
    let n = cx.num_outputs().min(4);
    cx.set_outputs(&ys[..n]);
    Ok(())
}

fn convert_bitcast(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let code = cx
        .attrs
        .int("to")
        .ok_or_else(|| cx.err("missing attribute `to`"))?;
    let to = dtype_of(code as i32).ok_or_else(|| {
        cx.err(format!(
            "BitCast to unsupported type {}",
            onnx_type_name(code as i32)
        ))
    })?;
    if cx.dtype(x).bits() != to.bits() {
        return Err(cx.err(format!(
            "BitCast from {} to {to}: the element sizes differ",
            cx.dtype(x)
        )));
    }
    layout(cx, LayoutOp::BitCast { to }, &[x])
}

fn convert_eye_like(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let dtype = match cx.attrs.int("dtype") {
        Some(code) => dtype_of(code as i32).ok_or_else(|| {
            cx.err(format!(
                "EyeLike to unsupported type {}",
                onnx_type_name(code as i32)
            ))
        })?,
        None => cx.dtype(x),
    };
    let k = cx.attrs.int_or("k", 0);
    layout(cx, LayoutOp::EyeLike { k, dtype }, &[x])
}
