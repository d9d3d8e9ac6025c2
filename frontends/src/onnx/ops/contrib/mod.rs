//! ONNX Runtime's contrib ops (domain `com.microsoft`) that ORT-optimized
//! transformer exports contain, lowered to kiln's own ops (semantics from
//! ONNX Runtime's contrib-op documentation):
//!
//! - `Gelu` (erf form), `FastGelu` (tanh form, optional bias), `BiasGelu`
//!   (erf form of `A + B`), `QuickGelu` (`x · σ(alpha·x)`), `BiasAdd`
//!   (`X + bias + skip`);
//! - `FusedMatMul`: `alpha · op(A) · op(B)` with `transA`/`transB`;
//! - `SkipLayerNormalization`, `SkipSimplifiedLayerNormalization`,
//!   `SimplifiedLayerNormalization` (ORT's, in the default domain): `s = input + skip (+ bias)` normalized
//!   (layer or RMS norm) over the last axis, `s` itself as the optional fourth
//!   output;
//! - `MatMulNBits`: `A · dequantize(B)ᵀ` with blocked 2-, 4- or 8-bit weights,
//!   dequantized once at import (kiln has no quantized GEMM yet);
//! - `Attention` (self-attention with packed QKV weights, a key-padding
//!   mask as end positions, a 0/1 matrix or a 3-D mask, added as
//!   `mask_filter_value` where masked; causal with `unidirectional`) onto
//!   kiln's attention op; `EmbedLayerNormalization` (word + position +
//!   segment embeddings, layer-normalized; `mask_index` the count of ones of
//!   each mask row);
//! - `MultiHeadAttention`, `GroupQueryAttention`, `RotaryEmbedding`
//!   (`attention.rs`);
//! - `DynamicQuantizeMatMul`, `MatMulIntegerToFloat` (`quant.rs`).
//!
//! Attributes whose other values change the result and that kiln does not
//! implement are refused with the node's name, never ignored.

use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, NnOp, QkOutput, UnaryOp};
use kiln_ir::{DType, Op, Tensor, ValueId};

use super::composite::{merge_heads, split_heads};
use crate::onnx::{NodeCtx, OnnxError, Registry};

mod attention;
mod quant;

/// ONNX Runtime's contrib-op domain.
pub const MICROSOFT: &str = "com.microsoft";

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert_in(MICROSOFT, "Gelu", convert_gelu);
    reg.insert_in(MICROSOFT, "BiasGelu", convert_gelu);
    reg.insert_in(MICROSOFT, "FastGelu", convert_gelu);
    reg.insert_in(MICROSOFT, "QuickGelu", convert_quick_gelu);
    reg.insert_in(MICROSOFT, "BiasAdd", convert_bias_add);
    reg.insert_in(MICROSOFT, "FusedMatMul", convert_fused_matmul);
    reg.insert_in(MICROSOFT, "SkipLayerNormalization", convert_skip_norm);
    reg.insert_in(
        MICROSOFT,
        "SkipSimplifiedLayerNormalization",
        convert_skip_norm,
    );
    // ONNX Runtime registers this one in the default domain (an ORT
    // extension of it); some exporters write it under com.microsoft.
    reg.insert("SimplifiedLayerNormalization", convert_simplified_norm);
    reg.insert_in(
        MICROSOFT,
        "SimplifiedLayerNormalization",
        convert_simplified_norm,
    );
    reg.insert_in(MICROSOFT, "MatMulNBits", convert_matmul_nbits);
    reg.insert_in(MICROSOFT, "Attention", convert_attention);
    reg.insert_in(
        MICROSOFT,
        "EmbedLayerNormalization",
        convert_embed_layer_norm,
    );
    reg.insert_in(
        MICROSOFT,
        "MultiHeadAttention",
        attention::convert_multi_head_attention,
    );
    reg.insert_in(
        MICROSOFT,
        "GroupQueryAttention",
        attention::convert_group_query_attention,
    );
    reg.insert_in(MICROSOFT, "RotaryEmbedding", attention::convert_rotary);
    reg.insert_in(
        MICROSOFT,
        "DynamicQuantizeMatMul",
        quant::convert_dynamic_quantize_matmul,
    );
    reg.insert_in(
        MICROSOFT,
        "MatMulIntegerToFloat",
        quant::convert_matmul_integer_to_float,
    );
}

/// ONNX Runtime's default for masked scores: added, not −∞.
const DEFAULT_MASK_FILTER: f64 = -10000.0;

/// `0, 1, …, n − 1` (i64) where n is dim `axis` of `x`.
fn positions_along(cx: &mut NodeCtx, x: ValueId, axis: usize) -> Result<ValueId, OnnxError> {
    let dim = cx.op(
        Op::Layout(LayoutOp::Shape {
            start: axis as i64,
            end: Some(axis as i64 + 1),
        }),
        &[x],
    )?;
    let no_dims = cx.ints(&[]);
    let n = cx.op(
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[dim, no_dims],
    )?;
    let (zero, one) = (cx.scalar(DType::I64, 0.0), cx.scalar(DType::I64, 1.0));
    cx.op(Op::Layout(LayoutOp::Range), &[zero, n, one])
}

/// The additive mask `[batch, 1, 1 or seq, total]` (0 where attended,
/// `filter` where masked) of an `Attention` node's `mask_index`.
fn additive_mask(
    cx: &mut NodeCtx,
    mask: ValueId,
    x: ValueId,
    filter: f64,
) -> Result<ValueId, OnnxError> {
    let dtype = cx.dtype(x);
    match cx.rank(mask) {
        1 => {
            // End positions (exclusive) of each row's tokens: right padding.
            let batch = cx.ty(x).shape.0.first().and_then(kiln_ir::Dim::known);
            let len = cx.ty(mask).shape.0.first().and_then(kiln_ir::Dim::known);
            if let (Some(b), Some(l)) = (batch, len) {
                if l != b {
                    return Err(cx.err(format!(
                        "a mask_index of {l} values for {b} rows (end and start positions, left padding) is not supported"
                    )));
                }
            }
            let positions = positions_along(cx, x, 1)?;
            let end = cx.op(Op::Layout(LayoutOp::cast(DType::I64)), &[mask])?;
            let column = cx.ints(&[-1, 1]);
            let end = cx.op(
                Op::Layout(LayoutOp::Reshape { allowzero: false }),
                &[end, column],
            )?;
            let valid = cx.op(Op::Binary(BinaryOp::Less), &[positions, end])?;
            let (zero, masked) = (cx.scalar(dtype, 0.0), cx.scalar(dtype, filter));
            let add = cx.op(Op::Layout(LayoutOp::Where), &[valid, zero, masked])?;
            cx.op(Op::Layout(LayoutOp::Unsqueeze { axes: vec![1, 2] }), &[add])
        }
        r @ (2 | 3) => {
            // 1 = attend, 0 = masked: (1 − m) · filter.
            let m = cx.op(Op::Layout(LayoutOp::cast(dtype)), &[mask])?;
            let one = cx.scalar(dtype, 1.0);
            let off = cx.op(Op::Binary(BinaryOp::Sub), &[one, m])?;
            let f = cx.scalar(dtype, filter);
            let add = cx.op(Op::Binary(BinaryOp::Mul), &[off, f])?;
            let axes = if r == 2 { vec![1, 2] } else { vec![1] };
            cx.op(Op::Layout(LayoutOp::Unsqueeze { axes }), &[add])
        }
        r => Err(cx.err(format!("a rank-{r} mask_index is not supported"))),
    }
}

/// `Attention(input, weights, bias?, mask_index?, past?, attention_bias?)`:
/// self-attention of `input` with the packed Q, K, V projections of
/// `weights`; output `[batch, seq, v_hidden]`.
fn convert_attention(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, w) = (cx.req(0)?, cx.req(1)?);
    let heads = cx
        .attrs
        .int("num_heads")
        .filter(|&h| h > 0)
        .ok_or_else(|| cx.err("needs a positive `num_heads`"))?;
    if cx.input(4)?.is_some() || cx.input(6)?.is_some() || cx.has_output(1) {
        return Err(cx.err("past and present key/value state is not supported"));
    }
    for attr in ["do_rotary", "past_present_share_buffer"] {
        if cx.attrs.int_or(attr, 0) != 0 {
            return Err(cx.err(format!("{attr}=1 is not supported")));
        }
    }
    if cx.rank(x) != 3 || cx.rank(w) != 2 {
        return Err(cx.err("input must be [batch, seq, hidden] and weights 2-D"));
    }
    let total = cx.ty(w).shape.0[1]
        .known()
        .ok_or_else(|| cx.err("the weights' width must be known"))?;
    let sizes: Vec<usize> = match cx.attrs.ints("qkv_hidden_sizes").filter(|s| !s.is_empty()) {
        Some(s) if s.len() == 3 && s.iter().all(|&v| v > 0) => {
            s.iter().map(|&v| v as usize).collect()
        }
        Some(s) => {
            return Err(cx.err(format!(
                "qkv_hidden_sizes {s:?} must be three positive sizes"
            )))
        }
        None if total % 3 == 0 => vec![total / 3; 3],
        None => return Err(cx.err(format!("weights width {total} is not three equal parts"))),
    };
    if sizes.iter().sum::<usize>() != total || sizes[0] != sizes[1] {
        return Err(cx.err(format!(
            "qkv_hidden_sizes {sizes:?} do not fit weights of width {total}"
        )));
    }
    let mut qkv = cx.op(Op::Nn(NnOp::MatMul), &[x, w])?;
    if let Some(bias) = cx.input(2)? {
        qkv = add(cx, qkv, bias)?;
    }
    let parts = cx.op_n(Op::Layout(LayoutOp::Split { axis: 2, sizes }), &[qkv], 3)?;
    let q = split_heads(cx, parts[0], heads)?;
    let k = split_heads(cx, parts[1], heads)?;
    let v = split_heads(cx, parts[2], heads)?;
    let filter = cx
        .attrs
        .float("mask_filter_value")
        .map_or(DEFAULT_MASK_FILTER, |f| f as f64);
    let mut mask = match cx.input(3)? {
        Some(m) => Some(additive_mask(cx, m, x, filter)?),
        None => None,
    };
    if let Some(bias) = cx.input(5)? {
        mask = Some(match mask {
            Some(m) => add(cx, m, bias)?,
            None => bias,
        });
    }
    let mut inputs = vec![q, k, v];
    inputs.extend(mask);
    let op = CompositeOp::Attention {
        scale: cx.attrs.float("scale").filter(|&s| s != 0.0),
        causal: cx.attrs.int_or("unidirectional", 0) != 0,
        softcap: None,
        mask: mask.is_some(),
        past: false,
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    };
    let y = cx.op(Op::Composite(op), &inputs)?;
    let y = merge_heads(cx, y)?;
    cx.set_output(0, y);
    Ok(())
}

/// `EmbedLayerNormalization(input_ids, segment_ids?, word_embedding,
/// position_embedding, segment_embedding?, gamma, beta, mask?, position_ids?)`:
/// the summed embeddings layer-normalized; `mask_index` (output 1) the count
/// of ones in each row of `mask`; the sum itself as output 2.
fn convert_embed_layer_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let ids = cx.req(0)?;
    let (word, position) = (cx.req(2)?, cx.req(3)?);
    let (gamma, beta) = (cx.req(5)?, cx.req(6)?);
    let mut sum = cx.op(Op::Layout(LayoutOp::Gather { axis: 0 }), &[word, ids])?;
    let positions = match cx.input(8)? {
        Some(p) => p,
        None => positions_along(cx, ids, 1)?,
    };
    let pos = cx.op(
        Op::Layout(LayoutOp::Gather { axis: 0 }),
        &[position, positions],
    )?;
    sum = add(cx, sum, pos)?;
    match (cx.input(1)?, cx.input(4)?) {
        (Some(seg_ids), Some(seg)) => {
            let s = cx.op(Op::Layout(LayoutOp::Gather { axis: 0 }), &[seg, seg_ids])?;
            sum = add(cx, sum, s)?;
        }
        (None, None) => {}
        _ => return Err(cx.err("segment_ids and segment_embedding must be given together")),
    }
    let axis = cx.rank(sum) - 1;
    let epsilon = cx.attrs.float_or("epsilon", 1e-12);
    let y = cx.op(
        Op::Composite(CompositeOp::LayerNorm { axis, epsilon }),
        &[sum, gamma, beta],
    )?;
    cx.set_output(0, y);
    if cx.has_output(1) {
        let Some(mask) = cx.input(7)? else {
            return Err(cx.err("mask_index without a mask input is not supported"));
        };
        let m = cx.op(Op::Layout(LayoutOp::cast(DType::I64)), &[mask])?;
        let count = cx.op(
            Op::Reduce(kiln_ir::op::ReduceOp::Reduce {
                kind: kiln_ir::op::ReduceKind::Sum,
                axes: vec![1],
                keepdims: false,
            }),
            &[m],
        )?;
        let count = cx.op(Op::Layout(LayoutOp::cast(DType::I32)), &[count])?;
        cx.set_output(1, count);
    }
    if cx.has_output(2) {
        cx.set_output(2, sum);
    }
    Ok(())
}

fn add(cx: &mut NodeCtx, a: ValueId, b: ValueId) -> Result<ValueId, OnnxError> {
    cx.op(Op::Binary(BinaryOp::Add), &[a, b])
}

/// `Gelu(X)`, `BiasGelu(A, B)` (exact GELU of `A + B`), `FastGelu(X, bias?)`
/// (the tanh approximation of GELU of `X + bias`).
fn convert_gelu(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let mut x = cx.req(0)?;
    if let Some(bias) = cx.input(1)? {
        x = add(cx, x, bias)?;
    }
    let tanh = cx.node.op_type == "FastGelu";
    let y = cx.op(Op::Composite(CompositeOp::Gelu { tanh }), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// `QuickGelu(X) = X · σ(alpha · X)`, alpha 1.702 by default.
fn convert_quick_gelu(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let alpha = cx.attrs.float_or("alpha", 1.702) as f64;
    let s = cx.scalar(cx.dtype(x), alpha);
    let ax = cx.op(Op::Binary(BinaryOp::Mul), &[x, s])?;
    let gate = cx.op(Op::Unary(UnaryOp::Sigmoid), &[ax])?;
    let y = cx.op(Op::Binary(BinaryOp::Mul), &[x, gate])?;
    cx.set_output(0, y);
    Ok(())
}

/// `BiasAdd(X, bias, skip) = X + bias + skip`.
fn convert_bias_add(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, bias, skip) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let xb = add(cx, x, bias)?;
    let y = add(cx, xb, skip)?;
    cx.set_output(0, y);
    Ok(())
}

/// `v` with its last two axes swapped.
fn swap_last_two(cx: &mut NodeCtx, v: ValueId) -> Result<ValueId, OnnxError> {
    let rank = cx.rank(v);
    if rank < 2 {
        return Err(cx.err(format!(
            "a transposed operand must be at least 2-D, got rank {rank}"
        )));
    }
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(rank - 2, rank - 1);
    cx.op(Op::Layout(LayoutOp::Transpose { perm }), &[v])
}

/// `FusedMatMul(A, B) = alpha · op(A) · op(B)`.
fn convert_fused_matmul(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (mut a, mut b) = (cx.req(0)?, cx.req(1)?);
    for attr in ["transBatchA", "transBatchB"] {
        if cx.attrs.int_or(attr, 0) != 0 {
            return Err(cx.err(format!("{attr}=1 is not supported")));
        }
    }
    if cx.attrs.int_or("transA", 0) != 0 {
        a = swap_last_two(cx, a)?;
    }
    if cx.attrs.int_or("transB", 0) != 0 {
        b = swap_last_two(cx, b)?;
    }
    let mut y = cx.op(Op::Nn(NnOp::MatMul), &[a, b])?;
    let alpha = cx.attrs.float_or("alpha", 1.0) as f64;
    if alpha != 1.0 {
        let s = cx.scalar(cx.dtype(y), alpha);
        y = cx.op(Op::Binary(BinaryOp::Mul), &[y, s])?;
    }
    cx.set_output(0, y);
    Ok(())
}

/// `SkipLayerNormalization(input, skip, gamma, beta?, bias?)` and
/// `SkipSimplifiedLayerNormalization(input, skip, gamma, bias?)`: outputs the
/// normalized sum, and as output 3 the sum `input + skip + bias`.
fn convert_skip_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let simplified = cx.node.op_type == "SkipSimplifiedLayerNormalization";
    let (x, skip, gamma) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let (beta, bias) = if simplified {
        (None, cx.input(3)?)
    } else {
        (cx.input(3)?, cx.input(4)?)
    };
    let mut sum = add(cx, x, skip)?;
    if let Some(bias) = bias {
        sum = add(cx, sum, bias)?;
    }
    if cx.has_output(1) || cx.has_output(2) {
        return Err(cx.err("the mean and inverse-deviation outputs are not supported"));
    }
    let axis = cx.rank(sum).saturating_sub(1);
    let epsilon = cx.attrs.float_or("epsilon", 1e-12);
    let y = if simplified {
        cx.op(
            Op::Composite(CompositeOp::RmsNorm { axis, epsilon }),
            &[sum, gamma],
        )?
    } else {
        let mut inputs = vec![sum, gamma];
        inputs.extend(beta);
        cx.op(
            Op::Composite(CompositeOp::LayerNorm { axis, epsilon }),
            &inputs,
        )?
    };
    cx.set_output(0, y);
    if cx.has_output(3) {
        cx.set_output(3, sum);
    }
    Ok(())
}

/// `SimplifiedLayerNormalization(X, scale)`: RMS norm from `axis` (−1).
fn convert_simplified_norm(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, scale) = (cx.req(0)?, cx.req(1)?);
    if cx.has_output(1) {
        return Err(cx.err("the inverse-deviation output is not supported"));
    }
    let rank = cx.rank(x);
    let axis = cx.axis(cx.attrs.int_or("axis", -1), rank)?;
    let epsilon = cx.attrs.float_or("epsilon", 1e-5);
    let y = cx.op(
        Op::Composite(CompositeOp::RmsNorm { axis, epsilon }),
        &[x, scale],
    )?;
    cx.set_output(0, y);
    Ok(())
}

/// `MatMulNBits(A, B, scales, zero_points?, g_idx?, bias?)`: `A · Wᵀ (+ bias)`
/// where `W` `[N, K]` is `B`'s `bits`-bit values in blocks of `block_size`
/// along K, each `(q − zero_point) · scale`. B and its scales must be
/// constants; `W` is dequantized here, once.
fn convert_matmul_nbits(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let a = cx.req(0)?;
    let k = positive(cx, "K")?;
    let n = positive(cx, "N")?;
    let block = positive(cx, "block_size")?;
    let bits = cx.attrs.int_or("bits", 4);
    if !matches!(bits, 2 | 4 | 8) {
        return Err(cx.err(format!("bits={bits} is not supported (2, 4 or 8)")));
    }
    if !block.is_power_of_two() || block < 16 {
        return Err(cx.err(format!("block_size {block} must be a power of two ≥ 16")));
    }
    if cx.input(4)?.is_some() {
        return Err(cx.err("g_idx (act-order) is not supported"));
    }
    let constant = |cx: &NodeCtx, i: usize, what: &str| -> Result<Tensor, OnnxError> {
        let v = cx.req(i)?;
        cx.constant(v)
            .cloned()
            .ok_or_else(|| cx.err(format!("{what} must be a constant (an initializer)")))
    };
    let packed = constant(cx, 1, "B")?;
    let scales = constant(cx, 2, "scales")?.to_f32_vec();
    let zero_points = match cx.input(3)? {
        Some(v) => Some(
            cx.constant(v)
                .cloned()
                .ok_or_else(|| cx.err("zero_points must be a constant (an initializer)"))?,
        ),
        None => None,
    };
    let bits = bits as usize;
    let blocks = k.div_ceil(block);
    let blob = block * bits / 8;
    if packed.dtype() != DType::U8 || packed.numel() != n * blocks * blob {
        return Err(cx.err(format!(
            "B must be uint8 [{n}, {blocks}, {blob}], got {}{:?}",
            packed.dtype(),
            packed.shape()
        )));
    }
    if scales.len() != n * blocks {
        return Err(cx.err(format!(
            "scales must hold N × blocks = {} values, got {}",
            n * blocks,
            scales.len()
        )));
    }
    let default_zero = (1u32 << (bits - 1)) as f32;
    let zero = |row: usize, b: usize| -> Result<f32, OnnxError> {
        let Some(z) = &zero_points else {
            return Ok(default_zero);
        };
        if z.dtype() == DType::U8 {
            // Packed like B: `8 / bits` zero points a byte, rows padded to bytes.
            let per_byte = 8 / bits;
            let row_bytes = blocks.div_ceil(per_byte);
            let bytes = z.bytes();
            let at = row * row_bytes + b / per_byte;
            let byte = *bytes
                .get(at)
                .ok_or_else(|| cx.err("zero_points is too short"))?;
            let shift = (b % per_byte) * bits;
            Ok(((byte >> shift) & ((1u16 << bits) - 1) as u8) as f32)
        } else {
            let zs = z.to_f32_vec();
            zs.get(row * blocks + b)
                .copied()
                .ok_or_else(|| cx.err("zero_points is too short"))
        }
    };
    let q = packed.bytes();
    let mask = ((1u16 << bits) - 1) as u8;
    let per_byte = 8 / bits;
    // W transposed, [K, N], so that `A · W` is a plain MatMul.
    let mut w = vec![0f32; k * n];
    for row in 0..n {
        for b in 0..blocks {
            let scale = scales[row * blocks + b];
            let zp = zero(row, b)?;
            let base = (row * blocks + b) * blob;
            for j in 0..block {
                let kk = b * block + j;
                if kk >= k {
                    break;
                }
                let byte = q[base + j / per_byte];
                let v = (byte >> ((j % per_byte) * bits)) & mask;
                w[kk * n + row] = (v as f32 - zp) * scale;
            }
        }
    }
    let dtype = cx.dtype(a);
    let weight = Tensor::from_vec(vec![k, n], w);
    let weight = if dtype == DType::F32 {
        weight
    } else {
        weight.cast(dtype)
    };
    let wv = cx.konst(weight);
    let mut y = cx.op(Op::Nn(NnOp::MatMul), &[a, wv])?;
    if let Some(bias) = cx.input(5)? {
        y = add(cx, y, bias)?;
    }
    cx.set_output(0, y);
    Ok(())
}

/// A required positive integer attribute.
fn positive(cx: &NodeCtx, name: &str) -> Result<usize, OnnxError> {
    match cx.attrs.int(name) {
        Some(v) if v > 0 => Ok(v as usize),
        Some(v) => Err(cx.err(format!("`{name}` must be positive, got {v}"))),
        None => Err(cx.err(format!("missing attribute `{name}`"))),
    }
}
