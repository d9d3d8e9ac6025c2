//! ONNX converters of the miscellaneous ops: quantization, integer matmul and
//! convolution, recurrences, sampling, detection and signal processing.

use kiln_ir::op::{
    GridMode, GridPadding, LinearUpdate, MiscOp, RnnActivation, RnnCell, RnnDirection, RnnInputs,
    WindowKind,
};
use kiln_ir::{DType, Op};

use super::window::{conv_attrs, window, KernelAttr};
use crate::onnx::tensor::{dtype_of, onnx_type_name};
use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert("QuantizeLinear", convert_quantize);
    reg.insert("DequantizeLinear", convert_dequantize);
    reg.insert("DynamicQuantizeLinear", convert_dynamic_quantize);
    reg.insert("MatMulInteger", convert_matmul_integer);
    reg.insert("ConvInteger", convert_conv_integer);
    reg.insert("QLinearMatMul", convert_qlinear_matmul);
    reg.insert("QLinearConv", convert_qlinear_conv);
    for op in ["RNN", "GRU", "LSTM"] {
        reg.insert(op, convert_rnn);
    }
    reg.insert("GridSample", convert_grid_sample);
    reg.insert("RoiAlign", convert_roi_align);
    reg.insert("NonMaxSuppression", convert_nms);
    reg.insert("MaxUnpool", convert_max_unpool);
    reg.insert("Col2Im", convert_col2im);
    reg.insert("Det", convert_det);
    reg.insert("LinearAttention", convert_linear_attention);
    reg.insert("DeformConv", convert_deform_conv);
    reg.insert("DFT", convert_dft);
    reg.insert("STFT", convert_stft);
    for op in ["HannWindow", "HammingWindow", "BlackmanWindow"] {
        reg.insert(op, convert_window);
    }
    reg.insert("MelWeightMatrix", convert_mel);
    reg.insert("AffineGrid", convert_affine_grid);
    reg.insert("CenterCropPad", convert_center_crop_pad);
}

/// A kiln dtype from an ONNX type code, or a clear error for types kiln lacks
/// (float8, int4, ...).
fn dtype_attr(cx: &NodeCtx, code: i64, what: &str) -> Result<DType, OnnxError> {
    dtype_of(code as i32).ok_or_else(|| {
        cx.err(format!(
            "{what} {} is not supported (kiln has no such dtype)",
            onnx_type_name(code as i32)
        ))
    })
}

/// Non-negative integers of attribute `name` (empty when absent).
pub(super) fn usizes(cx: &NodeCtx, name: &str) -> Result<Vec<usize>, OnnxError> {
    cx.attrs
        .ints(name)
        .unwrap_or_default()
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| cx.err(format!("negative value {v} in `{name}`"))))
        .collect()
}

/// The quantization axis normalized against x's rank; an axis out of range is only
/// an error when the scale is not per tensor.
fn quant_axis(cx: &NodeCtx, rank: usize, scale_is_scalar: bool) -> Result<usize, OnnxError> {
    let axis = cx.attrs.int_or("axis", 1);
    match cx.axis(axis, rank) {
        Ok(a) => Ok(a),
        Err(_) if scale_is_scalar => Ok(0),
        Err(e) => Err(e),
    }
}

fn is_per_tensor(cx: &NodeCtx, v: kiln_ir::ValueId) -> bool {
    let s = &cx.ty(v).shape;
    s.rank() == 0 || s.numel() == Some(1)
}

fn convert_quantize(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, scale, zp) = (cx.req(0)?, cx.req(1)?, cx.input(2)?);
    let to = match (zp, cx.attrs.int_or("output_dtype", 0)) {
        (Some(z), _) => cx.dtype(z),
        (None, 0) => DType::U8,
        (None, code) => dtype_attr(cx, code, "output type")?,
    };
    let low_precision_float = to.is_float() && to.is_low_precision() && to != DType::F8E8M0;
    if !matches!(
        to,
        DType::U8
            | DType::I8
            | DType::U16
            | DType::I16
            | DType::I32
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2
    ) && !low_precision_float
    {
        return Err(cx.err(format!("quantization to {to} is not supported")));
    }
    let precision = match cx.attrs.int_or("precision", 0) {
        0 => None,
        code => Some(dtype_attr(cx, code, "precision")?),
    };
    let axis = quant_axis(cx, cx.rank(x), is_per_tensor(cx, scale))?;
    let op = MiscOp::QuantizeLinear {
        axis,
        block_size: cx.attrs.int_or("block_size", 0).max(0) as usize,
        to,
        precision,
        saturate: cx.attrs.int_or("saturate", 1) != 0,
    };
    let mut ins = vec![x, scale];
    ins.extend(zp);
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_dequantize(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, scale, zp) = (cx.req(0)?, cx.req(1)?, cx.input(2)?);
    let to = match cx.attrs.int_or("output_dtype", 0) {
        0 => cx.dtype(scale),
        code => dtype_attr(cx, code, "output type")?,
    };
    let axis = quant_axis(cx, cx.rank(x), is_per_tensor(cx, scale))?;
    let op = MiscOp::DequantizeLinear {
        axis,
        block_size: cx.attrs.int_or("block_size", 0).max(0) as usize,
        to,
    };
    let mut ins = vec![x, scale];
    ins.extend(zp);
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_dynamic_quantize(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let outs = cx.op_n(Op::Misc(MiscOp::DynamicQuantizeLinear), &[x], 3)?;
    cx.set_outputs(&outs);
    Ok(())
}

/// Inputs `first..` where absent optional inputs before a present one become zero
/// scalars of the type of `like[i]`.
fn fill_zero_points(
    cx: &mut NodeCtx,
    first: usize,
    like: &[kiln_ir::ValueId],
) -> Result<Vec<kiln_ir::ValueId>, OnnxError> {
    let present: Vec<Option<kiln_ir::ValueId>> = (0..like.len())
        .map(|i| cx.input(first + i))
        .collect::<Result<_, _>>()?;
    let last = present.iter().rposition(Option::is_some);
    let mut out = Vec::new();
    for (i, p) in present.iter().enumerate() {
        if last.is_some_and(|l| i <= l) {
            let v = match p {
                Some(v) => *v,
                None => {
                    let dt = cx.dtype(like[i]);
                    cx.scalar(dt, 0.0)
                }
            };
            out.push(v);
        }
    }
    Ok(out)
}

fn convert_matmul_integer(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (a, b) = (cx.req(0)?, cx.req(1)?);
    let mut ins = vec![a, b];
    ins.extend(fill_zero_points(cx, 2, &[a, b])?);
    let y = cx.op(Op::Misc(MiscOp::MatMulInteger), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_conv_integer(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, w) = (cx.req(0)?, cx.req(1)?);
    let mut ins = vec![x, w];
    ins.extend(fill_zero_points(cx, 2, &[x, w])?);
    let y = cx.op(Op::Misc(MiscOp::ConvInteger(conv_attrs(cx)?)), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

/// The 8 inputs of QLinearMatMul / QLinearConv, absent zero points made zero scalars
/// (y's of a's type, like the spec's reference).
fn qlinear_inputs(cx: &mut NodeCtx) -> Result<Vec<kiln_ir::ValueId>, OnnxError> {
    let (a, b) = (cx.req(0)?, cx.req(3)?);
    let mut ins = Vec::new();
    for (i, like) in [
        (0, a),
        (1, a),
        (2, a),
        (3, b),
        (4, b),
        (5, b),
        (6, a),
        (7, a),
    ] {
        let v = match cx.input(i)? {
            Some(v) => v,
            None if i % 3 == 2 || i == 7 => {
                let dt = cx.dtype(like);
                cx.scalar(dt, 0.0)
            }
            None => return Err(cx.err(format!("input {i} is required"))),
        };
        ins.push(v);
    }
    Ok(ins)
}

fn convert_qlinear_matmul(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let ins = qlinear_inputs(cx)?;
    let y = cx.op(Op::Misc(MiscOp::QLinearMatMul), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_qlinear_conv(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let mut ins = qlinear_inputs(cx)?;
    ins.extend(cx.input(8)?);
    let y = cx.op(Op::Misc(MiscOp::QLinearConv(conv_attrs(cx)?)), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

/// Parses the `activations` attribute of a recurrence, consuming `activation_alpha`
/// and `activation_beta` in order by the functions that take them.
fn rnn_activations(
    cx: &NodeCtx,
    cell: RnnCell,
    dirs: usize,
) -> Result<Vec<RnnActivation>, OnnxError> {
    let defaults: &[&str] = match cell {
        RnnCell::Rnn => &["Tanh"],
        RnnCell::Gru => &["Sigmoid", "Tanh"],
        RnnCell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
    };
    let mut names = cx
        .attrs
        .strings("activations")
        .unwrap_or_else(|| defaults.iter().map(|s| s.to_string()).collect());
    if names.len() == defaults.len() && dirs == 2 {
        names.extend(names.clone());
    }
    if names.len() != defaults.len() * dirs {
        return Err(cx.err(format!(
            "{} activations given, expected {}",
            names.len(),
            defaults.len() * dirs
        )));
    }
    let alphas = cx.attrs.floats("activation_alpha").unwrap_or_default();
    let betas = cx.attrs.floats("activation_beta").unwrap_or_default();
    let (mut ai, mut bi) = (alphas.into_iter(), betas.into_iter());
    names
        .iter()
        .map(|n| {
            let mut alpha = |d: f32| ai.next().unwrap_or(d);
            Ok(match n.to_ascii_lowercase().as_str() {
                "relu" => RnnActivation::Relu,
                "tanh" => RnnActivation::Tanh,
                "sigmoid" => RnnActivation::Sigmoid,
                "affine" => RnnActivation::Affine {
                    alpha: alpha(1.0),
                    beta: bi.next().unwrap_or(0.0),
                },
                "leakyrelu" => RnnActivation::LeakyRelu { alpha: alpha(0.01) },
                "thresholdedrelu" => RnnActivation::ThresholdedRelu { alpha: alpha(1.0) },
                "scaledtanh" => RnnActivation::ScaledTanh {
                    alpha: alpha(1.0),
                    beta: bi.next().unwrap_or(1.0),
                },
                "hardsigmoid" => RnnActivation::HardSigmoid {
                    alpha: alpha(0.2),
                    beta: bi.next().unwrap_or(0.5),
                },
                "elu" => RnnActivation::Elu { alpha: alpha(1.0) },
                "softsign" => RnnActivation::Softsign,
                "softplus" => RnnActivation::Softplus,
                other => return Err(cx.err(format!("unknown activation `{other}`"))),
            })
        })
        .collect()
}

fn convert_rnn(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let cell = match cx.node.op_type.as_str() {
        "RNN" => RnnCell::Rnn,
        "GRU" => RnnCell::Gru,
        _ => RnnCell::Lstm,
    };
    let direction = match cx.attrs.string_or("direction", "forward").as_str() {
        "forward" => RnnDirection::Forward,
        "reverse" => RnnDirection::Reverse,
        "bidirectional" => RnnDirection::Bidirectional,
        other => return Err(cx.err(format!("unknown direction `{other}`"))),
    };
    let dirs = if direction == RnnDirection::Bidirectional {
        2
    } else {
        1
    };
    let (x, w, r) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let hidden_size = match cx.attrs.int("hidden_size") {
        Some(h) if h > 0 => h as usize,
        Some(h) => return Err(cx.err(format!("hidden_size {h}"))),
        None => cx
            .ty(r)
            .shape
            .0
            .get(2)
            .and_then(|d| d.known())
            .ok_or_else(|| cx.err("hidden_size is missing and R's shape is unknown"))?,
    };
    let activations = rnn_activations(cx, cell, dirs)?;
    let mut ins = vec![x, w, r];
    let mut opt = |i: usize| -> Result<bool, OnnxError> {
        Ok(match cx.input(i)? {
            Some(v) => {
                ins.push(v);
                true
            }
            None => false,
        })
    };
    let is_lstm = cell == RnnCell::Lstm;
    let optional = RnnInputs {
        bias: opt(3)?,
        sequence_lens: opt(4)?,
        initial_h: opt(5)?,
        initial_c: is_lstm && opt(6)?,
        peepholes: is_lstm && opt(7)?,
    };
    let op = MiscOp::Rnn {
        cell,
        direction,
        hidden_size,
        activations,
        clip: cx.attrs.float("clip"),
        linear_before_reset: cx.attrs.int_or("linear_before_reset", 0) != 0,
        input_forget: cx.attrs.int_or("input_forget", 0) != 0,
        batch_first: cx.attrs.int_or("layout", 0) != 0,
        optional,
    };
    let n = if is_lstm { 3 } else { 2 };
    let outs = cx.op_n(Op::Misc(op), &ins, n)?;
    cx.set_outputs(&outs);
    Ok(())
}

fn convert_grid_sample(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, grid) = (cx.req(0)?, cx.req(1)?);
    let mode = match cx.attrs.string_or("mode", "linear").as_str() {
        "bilinear" | "linear" => GridMode::Linear,
        "nearest" => GridMode::Nearest,
        "bicubic" | "cubic" => GridMode::Cubic,
        other => return Err(cx.err(format!("unknown mode `{other}`"))),
    };
    let padding = match cx.attrs.string_or("padding_mode", "zeros").as_str() {
        "zeros" => GridPadding::Zeros,
        "border" => GridPadding::Border,
        "reflection" => GridPadding::Reflection,
        other => return Err(cx.err(format!("unknown padding_mode `{other}`"))),
    };
    let op = MiscOp::GridSample {
        mode,
        padding,
        align_corners: cx.attrs.int_or("align_corners", 0) != 0,
    };
    let y = cx.op(Op::Misc(op), &[x, grid])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_roi_align(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let ins = [cx.req(0)?, cx.req(1)?, cx.req(2)?];
    let half_pixel = cx.opset >= 16
        && cx
            .attrs
            .string_or("coordinate_transformation_mode", "half_pixel")
            == "half_pixel";
    let op = MiscOp::RoiAlign {
        max: cx.attrs.string_or("mode", "avg") == "max",
        output_height: cx.attrs.int_or("output_height", 1).max(1) as usize,
        output_width: cx.attrs.int_or("output_width", 1).max(1) as usize,
        sampling_ratio: cx.attrs.int_or("sampling_ratio", 0).max(0) as usize,
        spatial_scale: cx.attrs.float_or("spatial_scale", 1.0),
        half_pixel,
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_nms(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (boxes, scores) = (cx.req(0)?, cx.req(1)?);
    let mut ins = vec![boxes, scores];
    let present: Vec<_> = (2..5).map(|i| cx.input(i)).collect::<Result<_, _>>()?;
    let last = present.iter().rposition(Option::is_some);
    for (k, p) in present.iter().enumerate() {
        if last.is_none_or(|l| k > l) {
            break;
        }
        let v = match p {
            Some(v) => *v,
            None if k == 0 => cx.scalar(DType::I64, 0.0),
            None => cx.scalar(DType::F32, 0.0),
        };
        ins.push(v);
    }
    let op = MiscOp::NonMaxSuppression {
        center_point_box: cx.attrs.int_or("center_point_box", 0) != 0,
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_max_unpool(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let mut ins = vec![cx.req(0)?, cx.req(1)?];
    ins.extend(cx.input(2)?);
    let op = MiscOp::MaxUnpool {
        window: window(cx, KernelAttr::Required)?,
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_col2im(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let ins = [cx.req(0)?, cx.req(1)?, cx.req(2)?];
    let op = MiscOp::Col2Im {
        dilations: usizes(cx, "dilations")?,
        pads: usizes(cx, "pads")?,
        strides: usizes(cx, "strides")?,
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_det(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let y = cx.op(Op::Misc(MiscOp::Det), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// LinearAttention (opset 27): one IR op evaluated step by step (its ONNX
/// function body is a Scan; kiln keeps the recurrence whole so its state stays
/// in f64 and a backend may later give it a kernel). `chunk_size` is a tuning
/// hint without effect on the result.
fn convert_linear_attention(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let heads = |cx: &NodeCtx, name: &str| -> Result<usize, OnnxError> {
        match cx.attrs.int(name) {
            Some(h) if h > 0 => Ok(h as usize),
            Some(h) => Err(cx.err(format!("{name} {h}: expected a positive count"))),
            None => Err(cx.err(format!("missing required attribute `{name}`"))),
        }
    };
    let (q_heads, kv_heads) = (heads(cx, "q_num_heads")?, heads(cx, "kv_num_heads")?);
    if q_heads % kv_heads != 0 {
        return Err(cx.err(format!(
            "q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}"
        )));
    }
    let update = match cx.attrs.string_or("update_rule", "gated_delta").as_str() {
        "linear" => LinearUpdate::Linear,
        "gated" => LinearUpdate::Gated,
        "delta" => LinearUpdate::Delta,
        "gated_delta" => LinearUpdate::GatedDelta,
        r => {
            return Err(cx.err(format!(
                "update_rule `{r}` (linear, gated, delta or gated_delta)"
            )))
        }
    };
    let scale = cx.attrs.float("scale").filter(|&s| s != 0.0);
    let (decay, beta) = (cx.input(4)?, cx.input(5)?);
    for (given, needed, name) in [
        (decay.is_some(), update.gated(), "decay"),
        (beta.is_some(), update.delta(), "beta"),
    ] {
        if given != needed {
            let verb = if needed { "requires" } else { "forbids" };
            return Err(cx.err(format!("update_rule {update:?} {verb} the `{name}` input")));
        }
    }
    let past = cx.input(3)?;
    let mut inputs = vec![cx.req(0)?, cx.req(1)?, cx.req(2)?];
    inputs.extend(past.into_iter().chain(decay).chain(beta));
    let op = MiscOp::LinearAttention {
        q_heads,
        kv_heads,
        scale,
        update,
        past_state: past.is_some(),
    };
    let outs = cx.op_n(Op::Misc(op), &inputs, 2)?;
    cx.set_outputs(&outs);
    Ok(())
}

/// DeformConv (opsets 19 and 22), 2-D.
fn convert_deform_conv(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let offset_group = cx.attrs.int_or("offset_group", 1);
    if offset_group < 1 {
        return Err(cx.err(format!(
            "offset_group {offset_group}: expected a positive count"
        )));
    }
    let (bias, mask) = (cx.input(3)?, cx.input(4)?);
    let op = MiscOp::DeformConv {
        conv: conv_attrs(cx)?,
        offset_group: offset_group as usize,
        bias: bias.is_some(),
        mask: mask.is_some(),
    };
    let mut inputs = vec![cx.req(0)?, cx.req(1)?, cx.req(2)?];
    inputs.extend(bias.into_iter().chain(mask));
    let y = cx.op(Op::Misc(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_dft(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let length = cx.input(1)?;
    let mut ins = vec![x];
    ins.extend(length);
    // Opset 20 moved the axis to an input (default −2), possibly computed at run time.
    let axis = if cx.opset >= 20 {
        match cx.input(2)? {
            None => Some(-2),
            Some(v) => match cx.constant(v) {
                Some(t) => Some(
                    t.scalar_i64()
                        .ok_or_else(|| cx.err("axis must be a scalar"))?,
                ),
                None => {
                    ins.push(v);
                    None
                }
            },
        }
    } else {
        Some(cx.attrs.int_or("axis", 1))
    };
    let axis = match axis {
        Some(a) => {
            let a = cx.axis(a, rank)?;
            if a + 1 == rank {
                return Err(cx.err("DFT axis cannot be the last (real/imaginary) axis"));
            }
            Some(a)
        }
        None => None,
    };
    let op = MiscOp::Dft {
        axis,
        has_length: length.is_some(),
        inverse: cx.attrs.int_or("inverse", 0) != 0,
        onesided: cx.attrs.int_or("onesided", 0) != 0,
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_stft(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let mut ins = vec![cx.req(0)?, cx.req(1)?];
    let window = cx.input(2)?;
    ins.extend(window);
    ins.extend(cx.input(3)?);
    let op = MiscOp::Stft {
        onesided: cx.attrs.int_or("onesided", 1) != 0,
        has_window: window.is_some(),
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_window(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let kind = match cx.node.op_type.as_str() {
        "HannWindow" => WindowKind::Hann,
        "HammingWindow" => WindowKind::Hamming,
        _ => WindowKind::Blackman,
    };
    let to = dtype_attr(cx, cx.attrs.int_or("output_datatype", 1), "output type")?;
    let op = MiscOp::Window {
        kind,
        periodic: cx.attrs.int_or("periodic", 1) != 0,
        to,
    };
    let size = cx.req(0)?;
    let y = cx.op(Op::Misc(op), &[size])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_mel(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let ins: Vec<_> = (0..5).map(|i| cx.req(i)).collect::<Result<_, _>>()?;
    let to = dtype_attr(cx, cx.attrs.int_or("output_datatype", 1), "output type")?;
    let y = cx.op(Op::Misc(MiscOp::MelWeightMatrix { to }), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_affine_grid(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let ins = [cx.req(0)?, cx.req(1)?];
    let op = MiscOp::AffineGrid {
        align_corners: cx.attrs.int_or("align_corners", 0) != 0,
    };
    let y = cx.op(Op::Misc(op), &ins)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_center_crop_pad(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, shape) = (cx.req(0)?, cx.req(1)?);
    let rank = cx.rank(x);
    let axes = match cx.attrs.ints("axes") {
        Some(a) => a
            .iter()
            .map(|&a| cx.axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..rank).collect(),
    };
    let y = cx.op(Op::Misc(MiscOp::CenterCropPad { axes }), &[x, shape])?;
    cx.set_output(0, y);
    Ok(())
}
