//! ONNX converters of the nn family: MatMul, Gemm, convolutions, pooling,
//! normalizations, Resize/Upsample, Einsum.

use kiln_ir::op::ConvAttrs;
use kiln_ir::op::{
    BinaryOp, KeepAspect, LayoutOp, NnOp, ReduceKind, ReduceOp, ResizeAttrs, ResizeCoord,
    ResizeMode, ResizeNearest, Window,
};
use kiln_ir::{DType, Op, Tensor};

use super::window::{conv_attrs, spatial_rank, uint_list, window, KernelAttr};
use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert("MatMul", convert_matmul);
    reg.insert("Gemm", convert_gemm);
    reg.insert("Conv", convert_conv);
    reg.insert("ConvTranspose", convert_conv_transpose);
    reg.insert("MaxPool", convert_pool);
    reg.insert("AveragePool", convert_pool);
    reg.insert("LpPool", convert_pool);
    reg.insert("GlobalAveragePool", convert_global_pool);
    reg.insert("GlobalMaxPool", convert_global_pool);
    reg.insert("GlobalLpPool", convert_global_pool);
    reg.insert("BatchNormalization", convert_batch_norm);
    reg.insert("InstanceNormalization", convert_instance_norm);
    reg.insert("GroupNormalization", convert_group_norm);
    reg.insert("LRN", convert_lrn);
    reg.insert("LpNormalization", convert_lp_normalization);
    reg.insert("MeanVarianceNormalization", convert_mvn);
    reg.insert("Resize", convert_resize);
    reg.insert("Upsample", convert_resize);
    reg.insert("Einsum", convert_einsum);
    reg.insert("CausalConvWithState", convert_causal_conv_with_state);
}

fn convert_matmul(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (a, b) = (cx.req(0)?, cx.req(1)?);
    let y = cx.op(Op::Nn(NnOp::MatMul), &[a, b])?;
    cx.set_output(0, y);
    Ok(())
}

/// `v` transposed. A large constant weight stays a mapped view with a `Transpose`
/// node after it (frontends do not transform weights; the optimizer may fold it);
/// small constants are folded by the importer like any constant computation.
fn transposed(cx: &mut NodeCtx, v: kiln_ir::ValueId) -> Result<kiln_ir::ValueId, OnnxError> {
    cx.op(Op::Layout(LayoutOp::Transpose { perm: vec![1, 0] }), &[v])
}

/// Gemm: `alpha · A' · B' + beta · C` as MatMul, Transpose, Mul and Add.
fn convert_gemm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (mut a, mut b) = (cx.req(0)?, cx.req(1)?);
    let alpha = cx.attrs.float_or("alpha", 1.0) as f64;
    let beta = cx.attrs.float_or("beta", 1.0) as f64;
    if cx.rank(a) != 2 || cx.rank(b) != 2 {
        return Err(cx.err("Gemm needs 2-D A and B"));
    }
    if cx.attrs.int_or("transA", 0) != 0 {
        a = transposed(cx, a)?;
    }
    if cx.attrs.int_or("transB", 0) != 0 {
        b = transposed(cx, b)?;
    }
    let dtype = cx.dtype(a);
    let mut y = cx.op(Op::Nn(NnOp::MatMul), &[a, b])?;
    if alpha != 1.0 {
        let s = cx.scalar(dtype, alpha);
        y = cx.op(Op::Binary(BinaryOp::Mul), &[y, s])?;
    }
    if let Some(mut c) = cx.input(2)? {
        if beta != 0.0 {
            if beta != 1.0 {
                let s = cx.scalar(dtype, beta);
                c = cx.op(Op::Binary(BinaryOp::Mul), &[c, s])?;
            }
            y = cx.op(Op::Binary(BinaryOp::Add), &[y, c])?;
        }
    }
    cx.set_output(0, y);
    Ok(())
}

fn convert_conv(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let op = NnOp::Conv(conv_attrs(cx)?);
    let inputs = cx.inputs()?;
    let y = cx.op(Op::Nn(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_conv_transpose(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let nd = spatial_rank(cx)?;
    let output_shape = match cx.attrs.ints("output_shape") {
        Some(v) if !v.is_empty() => {
            if v.len() < nd || v.iter().any(|&x| x < 0) {
                return Err(cx.err(format!(
                    "output_shape {v:?}: expected {nd} non-negative values"
                )));
            }
            Some(v[v.len() - nd..].iter().map(|&x| x as usize).collect())
        }
        _ => None,
    };
    let op = NnOp::ConvTranspose {
        conv: conv_attrs(cx)?,
        output_padding: uint_list(cx, "output_padding", nd, 0)?.unwrap_or_else(|| vec![0; nd]),
        output_shape,
    };
    let inputs = cx.inputs()?;
    let y = cx.op(Op::Nn(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_pool(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let window = window(cx, KernelAttr::Required)?;
    let x = cx.req(0)?;
    let (op, n) = match cx.node.op_type.as_str() {
        "MaxPool" => (
            NnOp::MaxPool {
                window,
                storage_order: cx.attrs.int_or("storage_order", 0) as usize,
            },
            if cx.has_output(1) { 2 } else { 1 },
        ),
        "AveragePool" => (
            NnOp::AveragePool {
                window,
                count_include_pad: cx.attrs.int_or("count_include_pad", 0) != 0,
            },
            1,
        ),
        _ => (
            NnOp::LpPool {
                window,
                p: cx.attrs.int_or("p", 2),
            },
            1,
        ),
    };
    let ys = cx.op_n(Op::Nn(op), &[x], n)?;
    cx.set_outputs(&ys);
    Ok(())
}

/// Global pooling: a window over the whole (known) spatial extent, else a reduction.
fn convert_global_pool(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let nd = spatial_rank(cx)?;
    let x = cx.req(0)?;
    let p = cx.attrs.int_or("p", 2);
    let spatial = cx.ty(x).shape.as_known().map(|d| d[2..].to_vec());
    let op_type = cx.node.op_type.clone();
    let y = if let Some(kernel) = spatial {
        let window = Window {
            strides: vec![1; nd],
            pads: vec![0; 2 * nd],
            dilations: vec![1; nd],
            ..Window::of_kernel(kernel)
        };
        let op = match op_type.as_str() {
            "GlobalAveragePool" => NnOp::AveragePool {
                window,
                count_include_pad: false,
            },
            "GlobalMaxPool" => NnOp::MaxPool {
                window,
                storage_order: 0,
            },
            _ => NnOp::LpPool { window, p },
        };
        cx.op(Op::Nn(op), &[x])?
    } else {
        let kind = match (op_type.as_str(), p) {
            ("GlobalAveragePool", _) => ReduceKind::Mean,
            ("GlobalMaxPool", _) => ReduceKind::Max,
            (_, 1) => ReduceKind::L1,
            (_, 2) => ReduceKind::L2,
            _ => return Err(cx.err(format!("GlobalLpPool with p={p} on unknown spatial dims"))),
        };
        let op = ReduceOp::Reduce {
            kind,
            axes: (2..nd + 2).collect(),
            keepdims: true,
        };
        cx.op(Op::Reduce(op), &[x])?
    };
    cx.set_output(0, y);
    Ok(())
}

fn convert_batch_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let training = cx.attrs.int_or("training_mode", 0) != 0;
    if cx.opset >= 14 && (training || (1..3).any(|i| cx.has_output(i))) {
        return batch_norm_training(cx);
    }
    if training || (1..5).any(|i| cx.has_output(i)) {
        return Err(cx.err(
            "training-mode BatchNormalization before opset 14 (saved statistics outputs) is not supported",
        ));
    }
    let inputs: Vec<_> = (0..5).map(|i| cx.req(i)).collect::<Result<_, _>>()?;
    let op = NnOp::BatchNorm {
        epsilon: cx.attrs.float_or("epsilon", 1e-5),
    };
    let y = cx.op(Op::Nn(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

/// BatchNormalization in training mode (opsets 14 and 15): normalized by the batch
/// statistics over every axis but 1 (population variance), with the running
/// statistics `input · momentum + batch · (1 − momentum)` as outputs 1 and 2.
/// Lowered to reductions and the inference-mode op, which is exact: the ONNX
/// reference computes the same mean, variance and expression.
fn batch_norm_training(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let [x, scale, bias, running_mean, running_var] = [0, 1, 2, 3, 4].map(|i| cx.req(i));
    let (x, scale, bias) = (x?, scale?, bias?);
    let (running_mean, running_var) = (running_mean?, running_var?);
    let rank = cx.rank(x);
    if rank < 2 {
        return Err(cx.err(format!("BatchNormalization of a rank-{rank} input")));
    }
    let dt = cx.dtype(x);
    let momentum = cx.attrs.float_or("momentum", 0.9) as f64;
    let epsilon = cx.attrs.float_or("epsilon", 1e-5);
    let axes: Vec<usize> = std::iter::once(0).chain(2..rank).collect();
    let mean_over = |keepdims| {
        Op::Reduce(ReduceOp::Reduce {
            kind: ReduceKind::Mean,
            axes: axes.clone(),
            keepdims,
        })
    };
    let mean = cx.op(mean_over(false), &[x])?;
    let mean_kept = cx.op(
        Op::Layout(LayoutOp::Unsqueeze { axes: axes.clone() }),
        &[mean],
    )?;
    let centered = cx.op(Op::Binary(BinaryOp::Sub), &[x, mean_kept])?;
    let squares = cx.op(Op::Binary(BinaryOp::Mul), &[centered, centered])?;
    let var = cx.op(mean_over(false), &[squares])?;
    let y = cx.op(
        Op::Nn(NnOp::BatchNorm { epsilon }),
        &[x, scale, bias, mean, var],
    )?;
    cx.set_output(0, y);
    // The ONNX reference returns the running statistics in x's type.
    let kept = cx.scalar(dt, momentum);
    let taken = cx.scalar(dt, 1.0 - momentum);
    for (i, mut running, batch) in [(1, running_mean, mean), (2, running_var, var)] {
        if !cx.has_output(i) {
            continue;
        }
        if cx.dtype(running) != dt {
            running = cx.op(Op::Layout(cast(dt)), &[running])?;
        }
        let old = cx.op(Op::Binary(BinaryOp::Mul), &[running, kept])?;
        let new = cx.op(Op::Binary(BinaryOp::Mul), &[batch, taken])?;
        let v = cx.op(Op::Binary(BinaryOp::Add), &[old, new])?;
        cx.set_output(i, v);
    }
    Ok(())
}

fn convert_instance_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let inputs: Vec<_> = (0..3).map(|i| cx.req(i)).collect::<Result<_, _>>()?;
    let op = NnOp::InstanceNorm {
        epsilon: cx.attrs.float_or("epsilon", 1e-5),
    };
    let y = cx.op(Op::Nn(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

/// GroupNormalization: scale/bias are per group in opset 18, per channel from 21;
/// the IR op tells them apart by length.
fn convert_group_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let inputs: Vec<_> = (0..3).map(|i| cx.req(i)).collect::<Result<_, _>>()?;
    let g = cx
        .attrs
        .int("num_groups")
        .ok_or_else(|| cx.err("num_groups is required"))?;
    if g <= 0 {
        return Err(cx.err(format!("num_groups {g}")));
    }
    let op = NnOp::GroupNorm {
        epsilon: cx.attrs.float_or("epsilon", 1e-5),
        num_groups: g as usize,
    };
    let y = cx.op(Op::Nn(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_lrn(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let size = cx
        .attrs
        .int("size")
        .ok_or_else(|| cx.err("size is required"))?;
    if size <= 0 {
        return Err(cx.err(format!("size {size}")));
    }
    let op = NnOp::Lrn {
        size: size as usize,
        alpha: cx.attrs.float_or("alpha", 1e-4),
        beta: cx.attrs.float_or("beta", 0.75),
        bias: cx.attrs.float_or("bias", 1.0),
    };
    let y = cx.op(Op::Nn(op), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_lp_normalization(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let axis = cx.axis(cx.attrs.int_or("axis", -1), cx.rank(x))?;
    let p = cx.attrs.int_or("p", 2);
    if p != 1 && p != 2 {
        return Err(cx.err(format!("p = {p} (1 or 2 allowed)")));
    }
    let y = cx.op(Op::Nn(NnOp::LpNormalization { axis, p }), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_mvn(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let mut axes = cx
        .attrs
        .ints("axes")
        .unwrap_or_else(|| vec![0, 2, 3])
        .into_iter()
        .map(|a| cx.axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    let y = cx.op(Op::Nn(NnOp::MeanVarianceNormalization { axes }), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// Resize (opsets 10..) and Upsample: scales or sizes for all axes or `axes`.
fn convert_resize(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let legacy = cx.node.op_type == "Upsample" || cx.opset < 11;
    let a = &cx.attrs;
    let mode = match a.string_or("mode", "nearest").as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic,
        m => return Err(cx.err(format!("mode `{m}`"))),
    };
    let coord = if legacy {
        ResizeCoord::Asymmetric
    } else {
        match a
            .string_or("coordinate_transformation_mode", "half_pixel")
            .as_str()
        {
            "half_pixel" => ResizeCoord::HalfPixel,
            "pytorch_half_pixel" => ResizeCoord::PytorchHalfPixel,
            "align_corners" => ResizeCoord::AlignCorners,
            "asymmetric" => ResizeCoord::Asymmetric,
            "tf_crop_and_resize" => ResizeCoord::TfCropAndResize,
            "half_pixel_symmetric" => ResizeCoord::HalfPixelSymmetric,
            m => return Err(cx.err(format!("coordinate_transformation_mode `{m}`"))),
        }
    };
    let nearest = if legacy {
        ResizeNearest::Floor
    } else {
        match a.string_or("nearest_mode", "round_prefer_floor").as_str() {
            "round_prefer_floor" => ResizeNearest::RoundPreferFloor,
            "round_prefer_ceil" => ResizeNearest::RoundPreferCeil,
            "floor" => ResizeNearest::Floor,
            "ceil" => ResizeNearest::Ceil,
            m => return Err(cx.err(format!("nearest_mode `{m}`"))),
        }
    };
    let keep_aspect = match a.string_or("keep_aspect_ratio_policy", "stretch").as_str() {
        "stretch" => KeepAspect::Stretch,
        "not_larger" => KeepAspect::NotLarger,
        "not_smaller" => KeepAspect::NotSmaller,
        m => return Err(cx.err(format!("keep_aspect_ratio_policy `{m}`"))),
    };
    let axes = match a.ints("axes") {
        Some(v) => v
            .into_iter()
            .map(|ax| cx.axis(ax, rank))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let cubic_coeff_a = a.float_or("cubic_coeff_a", -0.75);
    let exclude_outside = a.int_or("exclude_outside", 0) != 0;
    let extrapolation_value = a.float_or("extrapolation_value", 0.0);
    let antialias = a.int_or("antialias", 0) != 0;
    // The scales or sizes input.
    let (param, by_sizes) = if cx.node.op_type == "Upsample" && cx.opset < 9 {
        let s = a
            .floats("scales")
            .ok_or_else(|| cx.err("scales attribute is required"))?;
        let n = s.len();
        (cx.konst(Tensor::from_vec(vec![n], s)), false)
    } else if legacy {
        (cx.req(1)?, false)
    } else {
        let nonempty = |cx: &NodeCtx, i: usize| -> Result<Option<kiln_ir::ValueId>, OnnxError> {
            Ok(cx.input(i)?.filter(|&v| {
                cx.constant(v).is_none_or(|t| t.numel() > 0)
                    && cx
                        .ty(v)
                        .shape
                        .as_known()
                        .is_none_or(|d| d.iter().product::<usize>() > 0)
            }))
        };
        match (nonempty(cx, 2)?, nonempty(cx, 3)?) {
            (_, Some(sizes)) => (sizes, true),
            (Some(scales), None) => (scales, false),
            (None, None) => return Err(cx.err("one of scales and sizes is required")),
        }
    };
    let mut inputs = vec![x, param];
    if coord == ResizeCoord::TfCropAndResize {
        inputs.push(
            cx.input(1)?
                .ok_or_else(|| cx.err("tf_crop_and_resize needs roi"))?,
        );
    }
    let op = NnOp::Resize(ResizeAttrs {
        mode,
        coord,
        nearest,
        cubic_coeff_a,
        exclude_outside,
        extrapolation_value,
        by_sizes,
        antialias,
        keep_aspect,
        axes,
    });
    let y = cx.op(Op::Nn(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_einsum(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let equation = cx
        .attrs
        .string("equation")
        .ok_or_else(|| cx.err("equation is required"))?;
    let inputs = cx.inputs()?;
    let y = cx.op(Op::Nn(NnOp::Einsum { equation }), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

/// CausalConvWithState (opset 27): a depthwise causal 1-D convolution carrying its
/// left context between calls. `input [B, C, L]` is prefixed by `past_state
/// [B, C, k−1]` (zeros when absent), convolved with `weight [C, 1, k]` (one group
/// per channel, valid padding, optional bias), optionally followed by SiLU
/// (`activation` `silu` or its alias `swish`, computed in f32 as the ONNX
/// reference does); `present_state` is the last k−1 positions of the prefixed
/// input. Lowered to Concat (or Pad), Conv, Sigmoid/Mul and Slice: the same
/// computation as the reference, step for step.
fn convert_causal_conv_with_state(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, w) = (cx.req(0)?, cx.req(1)?);
    let (bias, past) = (cx.input(2)?, cx.input(3)?);
    let silu = match cx.attrs.string_or("activation", "none").as_str() {
        "none" => false,
        "silu" | "swish" => true,
        a => return Err(cx.err(format!("activation `{a}` (expected none, silu or swish)"))),
    };
    if cx.rank(x) != 3 || cx.rank(w) != 3 {
        return Err(cx.err(format!(
            "input and weight must be rank 3, got ranks {} and {}",
            cx.rank(x),
            cx.rank(w)
        )));
    }
    let wdims = &cx.ty(w).shape.0;
    let (Some(channels), Some(one), Some(k)) =
        (wdims[0].known(), wdims[1].known(), wdims[2].known())
    else {
        return Err(cx.err(format!(
            "weight needs a known shape [C, 1, k], got {}",
            cx.ty(w).shape
        )));
    };
    if channels == 0 || one != 1 || k == 0 {
        return Err(cx.err(format!(
            "weight shape [{channels}, {one}, {k}]: expected [C, 1, k] with C, k > 0"
        )));
    }
    let dt = cx.dtype(x);
    let context = (k - 1) as i64;
    let padded = match past {
        Some(p) => cx.op(Op::Layout(LayoutOp::Concat { axis: 2 }), &[p, x])?,
        None => {
            let pads = cx.ints(&[0, 0, context, 0, 0, 0]);
            let zero = cx.scalar(dt, 0.0);
            cx.op(
                Op::Layout(LayoutOp::Pad {
                    mode: kiln_ir::op::PadMode::Constant,
                }),
                &[x, pads, zero],
            )?
        }
    };
    let mut conv_inputs = vec![padded, w];
    conv_inputs.extend(bias);
    let conv = ConvAttrs {
        window: Window::default(),
        group: channels,
    };
    let mut y = cx.op(Op::Nn(NnOp::Conv(conv)), &conv_inputs)?;
    if silu {
        let wide = !matches!(dt, DType::F32 | DType::F64);
        let f = if wide {
            cx.op(Op::Layout(cast(DType::F32)), &[y])?
        } else {
            y
        };
        let s = cx.op(Op::Unary(kiln_ir::op::UnaryOp::Sigmoid), &[f])?;
        y = cx.op(Op::Binary(BinaryOp::Mul), &[f, s])?;
        if wide {
            y = cx.op(Op::Layout(cast(dt)), &[y])?;
        }
    }
    // The last k−1 positions; with k = 1 none (a start past the end clamps).
    let start = if context > 0 { -context } else { i64::MAX };
    let slice = [
        cx.ints(&[start]),
        cx.ints(&[i64::MAX]),
        cx.ints(&[2]),
        cx.ints(&[1]),
    ];
    let present = cx.op(
        Op::Layout(LayoutOp::Slice),
        &[padded, slice[0], slice[1], slice[2], slice[3]],
    )?;
    cx.set_outputs(&[y, present]);
    Ok(())
}

/// A saturating cast to `to`.
fn cast(to: DType) -> LayoutOp {
    LayoutOp::Cast { to, saturate: true }
}
