//! ONNX converters of the composite family: softmax and friends, normalizations,
//! GELU, attention, and the losses (as a log-softmax and an NLL loss).

use kiln_ir::op::{CompositeOp, LayoutOp, LossReduction, QkOutput};
use kiln_ir::{Op, ValueId};

use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    for op in ["Softmax", "LogSoftmax", "Hardmax"] {
        reg.insert(op, convert_softmax);
    }
    reg.insert("LayerNormalization", convert_layer_norm);
    reg.insert("RMSNormalization", convert_rms_norm);
    reg.insert("Gelu", convert_gelu);
    reg.insert("Attention", convert_attention);
    reg.insert("NegativeLogLikelihoodLoss", convert_loss);
    reg.insert("SoftmaxCrossEntropyLoss", convert_loss);
    reg.insert("RotaryEmbedding", convert_rotary);
}

fn convert_rotary(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let mut inputs = vec![x, cx.req(1)?, cx.req(2)?];
    let position_ids = cx.input(3)?;
    inputs.extend(position_ids);
    let num_heads = match cx.rank(x) {
        3 => {
            let h = cx.attrs.int_or("num_heads", 0);
            if h <= 0 {
                return Err(cx.err("3-D input needs a positive `num_heads`"));
            }
            Some(h as usize)
        }
        4 => None,
        r => return Err(cx.err(format!("input must be 3-D or 4-D, got rank {r}"))),
    };
    let rotary_dim = match cx.attrs.int_or("rotary_embedding_dim", 0) {
        0 => None,
        d if d > 0 => Some(d as usize),
        d => return Err(cx.err(format!("negative rotary_embedding_dim {d}"))),
    };
    let op = CompositeOp::RotaryEmbedding {
        interleaved: cx.attrs.int_or("interleaved", 0) != 0,
        rotary_dim,
        num_heads,
        position_ids: position_ids.is_some(),
    };
    let y = cx.op(Op::Composite(op), &inputs)?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_softmax(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let rank = cx.rank(x);
    let make = |axis| match cx.node.op_type.as_str() {
        "Softmax" => CompositeOp::Softmax { axis },
        "LogSoftmax" => CompositeOp::LogSoftmax { axis },
        _ => CompositeOp::Hardmax { axis },
    };
    let y = if cx.opset < 13 {
        // Before opset 13 the input is coerced to 2-D at `axis`: the op runs over the
        // whole trailing block. When that block is one axis, nothing needs reshaping.
        let axis = cx.axis(cx.attrs.int_or("axis", 1), rank)?;
        if axis + 1 >= rank {
            let op = make(axis);
            cx.op(Op::Composite(op), &[x])?
        } else {
            let op = make(1);
            let flat = cx.op(Op::Layout(LayoutOp::Flatten { axis }), &[x])?;
            let y = cx.op(Op::Composite(op), &[flat])?;
            let shape = cx.op(
                Op::Layout(LayoutOp::Shape {
                    start: 0,
                    end: None,
                }),
                &[x],
            )?;
            cx.op(
                Op::Layout(LayoutOp::Reshape { allowzero: false }),
                &[y, shape],
            )?
        }
    } else {
        let op = make(cx.axis(cx.attrs.int_or("axis", -1), rank)?);
        cx.op(Op::Composite(op), &[x])?
    };
    cx.set_output(0, y);
    Ok(())
}

/// The first normalized axis of a normalization node (default −1).
fn norm_axis(cx: &NodeCtx, x: ValueId) -> Result<usize, OnnxError> {
    let rank = cx.rank(x);
    let a = cx.attrs.int_or("axis", -1);
    let w = if a < 0 { a + rank as i64 } else { a };
    if w < 0 || w as usize >= rank {
        return Err(cx.err(format!("axis {a} out of range for rank {rank}")));
    }
    Ok(w as usize)
}

fn convert_layer_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let mut inputs = vec![x, cx.req(1)?];
    inputs.extend(cx.input(2)?);
    let op = CompositeOp::LayerNorm {
        axis: norm_axis(cx, x)?,
        epsilon: cx.attrs.float_or("epsilon", 1e-5),
    };
    let n = cx.num_outputs().clamp(1, 3);
    let ys = cx.op_n(Op::Composite(op), &inputs, n)?;
    cx.set_outputs(&ys);
    Ok(())
}

fn convert_rms_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let scale = cx.req(1)?;
    let op = CompositeOp::RmsNorm {
        axis: norm_axis(cx, x)?,
        epsilon: cx.attrs.float_or("epsilon", 1e-5),
    };
    let y = cx.op(Op::Composite(op), &[x, scale])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_gelu(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let tanh = match cx.attrs.string_or("approximate", "none").as_str() {
        "none" => false,
        "tanh" => true,
        other => return Err(cx.err(format!("unknown approximation `{other}`"))),
    };
    let y = cx.op(Op::Composite(CompositeOp::Gelu { tanh }), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// `[batch, seq, heads·dim]` → `[batch, heads, seq, dim]`.
pub(super) fn split_heads(cx: &mut NodeCtx, x: ValueId, heads: i64) -> Result<ValueId, OnnxError> {
    let shape = cx.ints(&[0, 0, heads, -1]);
    let x = cx.op(
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[x, shape],
    )?;
    cx.op(
        Op::Layout(LayoutOp::Transpose {
            perm: vec![0, 2, 1, 3],
        }),
        &[x],
    )
}

/// `[batch, heads, seq, dim]` → `[batch, seq, heads·dim]`.
pub(super) fn merge_heads(cx: &mut NodeCtx, y: ValueId) -> Result<ValueId, OnnxError> {
    let y = cx.op(
        Op::Layout(LayoutOp::Transpose {
            perm: vec![0, 2, 1, 3],
        }),
        &[y],
    )?;
    let shape = cx.ints(&[0, 0, -1]);
    cx.op(
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[y, shape],
    )
}

fn convert_attention(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (mut q, mut k, mut v) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let packed = cx.rank(q) == 3;
    if packed {
        let heads = |name: &str| {
            cx.attrs
                .int(name)
                .filter(|&h| h > 0)
                .ok_or_else(|| cx.err(format!("3-D inputs need a positive `{name}`")))
        };
        let (hq, hkv) = (heads("q_num_heads")?, heads("kv_num_heads")?);
        q = split_heads(cx, q, hq)?;
        k = split_heads(cx, k, hkv)?;
        v = split_heads(cx, v, hkv)?;
    } else if cx.rank(q) != 4 {
        return Err(cx.err(format!("Q must be 3-D or 4-D, got rank {}", cx.rank(q))));
    }
    let mut inputs = vec![q, k, v];
    let mask = cx.input(3)?;
    inputs.extend(mask);
    let past = match (cx.input(4)?, cx.input(5)?) {
        (Some(pk), Some(pv)) => {
            inputs.extend([pk, pv]);
            true
        }
        (None, None) => false,
        _ => return Err(cx.err("past_key and past_value must be given together")),
    };
    let kv_lengths = cx.input(6)?;
    inputs.extend(kv_lengths);
    let qk_output = match cx.attrs.int_or("qk_matmul_output_mode", 0) {
        0 => QkOutput::Raw,
        1 => QkOutput::Softcapped,
        2 => QkOutput::Masked,
        3 => QkOutput::Softmax,
        m => return Err(cx.err(format!("unknown qk_matmul_output_mode {m}"))),
    };
    let op = CompositeOp::Attention {
        scale: cx.attrs.float("scale"),
        causal: cx.attrs.int_or("is_causal", 0) != 0,
        softcap: cx.attrs.float("softcap").filter(|&c| c > 0.0),
        mask: mask.is_some(),
        past,
        kv_lengths: kv_lengths.is_some(),
        qk_output,
    };
    let n = (0..4).rev().find(|&i| cx.has_output(i)).unwrap_or(0) + 1;
    let mut ys = cx.op_n(Op::Composite(op), &inputs, n)?;
    if packed {
        ys[0] = merge_heads(cx, ys[0])?;
    }
    cx.set_outputs(&ys);
    Ok(())
}

fn convert_loss(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, target) = (cx.req(0)?, cx.req(1)?);
    let reduction = match cx.attrs.string_or("reduction", "mean").as_str() {
        "none" => LossReduction::None,
        "sum" => LossReduction::Sum,
        "mean" => LossReduction::Mean,
        other => return Err(cx.err(format!("unknown reduction `{other}`"))),
    };
    let log_prob = if cx.node.op_type == "SoftmaxCrossEntropyLoss" {
        if cx.rank(x) < 2 {
            return Err(cx.err("scores must be [n, c, d...]"));
        }
        cx.op(Op::Composite(CompositeOp::LogSoftmax { axis: 1 }), &[x])?
    } else {
        x
    };
    let mut inputs = vec![log_prob, target];
    inputs.extend(cx.input(2)?);
    let op = CompositeOp::NllLoss {
        reduction,
        ignore_index: cx.attrs.int("ignore_index"),
    };
    let loss = cx.op(Op::Composite(op), &inputs)?;
    cx.set_output(0, loss);
    if cx.node.op_type == "SoftmaxCrossEntropyLoss" {
        cx.set_output(1, log_prob);
    }
    Ok(())
}
