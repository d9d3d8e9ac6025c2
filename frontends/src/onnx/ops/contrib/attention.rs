//! ONNX Runtime's attention-family contrib ops with separate Q, K, V inputs,
//! lowered onto kiln's `Attention` and `RotaryEmbedding` ops (semantics from
//! ONNX Runtime's contrib-op documentation and its CPU kernels):
//!
//! - `RotaryEmbedding`: rotary position embedding of a 3-D `[batch, seq,
//!   hidden]` or 4-D `[batch, heads, seq, head]` input with `[max_pos, rd/2]`
//!   cos/sin caches indexed by `position_ids` (`[batch, seq]`, or `[1]`: the
//!   position of the first token, the others following it);
//! - `MultiHeadAttention`: Q, K, V projections (3-D, packed `[b, l, n, 2|3,
//!   h]`, or K/V already `[b, n, l, h]`), input-projection bias, key padding
//!   mask, attention bias, past and present key/value;
//! - `GroupQueryAttention`: the form onnxruntime-genai's LLM exports use —
//!   fewer K/V heads than Q heads, a KV cache that grows by concatenation
//!   (`total_sequence_length = past + new`), the cache's valid lengths from
//!   `seqlens_k`, causal and sliding-window (`local_window_size`) masks,
//!   rotary embedding from cos/sin caches, soft cap, packed QKV.

use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, QkOutput};
use kiln_ir::{DType, Op, ValueId};

use super::super::composite::{merge_heads, split_heads};
use super::{add, DEFAULT_MASK_FILTER};
use crate::onnx::{NodeCtx, OnnxError};

fn bin(cx: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId, OnnxError> {
    cx.op(Op::Binary(op), &[a, b])
}

fn reshape(cx: &mut NodeCtx, x: ValueId, shape: &[i64]) -> Result<ValueId, OnnxError> {
    let s = cx.ints(shape);
    cx.op(Op::Layout(LayoutOp::Reshape { allowzero: false }), &[x, s])
}

/// Dim `axis` of `x` as a 1-D i64 tensor of one element.
fn dim_1d(cx: &mut NodeCtx, x: ValueId, axis: usize) -> Result<ValueId, OnnxError> {
    cx.op(
        Op::Layout(LayoutOp::Shape {
            start: axis as i64,
            end: Some(axis as i64 + 1),
        }),
        &[x],
    )
}

/// Dim `axis` of `x` as an i64 scalar.
fn dim_scalar(cx: &mut NodeCtx, x: ValueId, axis: usize) -> Result<ValueId, OnnxError> {
    let d = dim_1d(cx, x, axis)?;
    reshape(cx, d, &[])
}

/// `0, 1, …, n − 1` (i64) for an i64 scalar `n`.
fn range(cx: &mut NodeCtx, n: ValueId) -> Result<ValueId, OnnxError> {
    let (zero, one) = (cx.scalar(DType::I64, 0.0), cx.scalar(DType::I64, 1.0));
    cx.op(Op::Layout(LayoutOp::Range), &[zero, n, one])
}

fn cast(cx: &mut NodeCtx, x: ValueId, to: DType) -> Result<ValueId, OnnxError> {
    if cx.dtype(x) == to {
        return Ok(x);
    }
    cx.op(Op::Layout(LayoutOp::cast(to)), &[x])
}

/// A known dim of `x`, or an error naming `what`.
fn known_dim(cx: &NodeCtx, x: ValueId, axis: usize, what: &str) -> Result<usize, OnnxError> {
    cx.ty(x)
        .shape
        .0
        .get(axis)
        .and_then(kiln_ir::Dim::known)
        .ok_or_else(|| cx.err(format!("the {what} must be known when the model is loaded")))
}

/// Refuses an integer attribute set to anything but `default`.
fn refuse_attr(cx: &NodeCtx, name: &str, default: i64) -> Result<(), OnnxError> {
    match cx.attrs.int(name) {
        Some(v) if v != default => Err(cx.err(format!("{name}={v} is not supported"))),
        _ => Ok(()),
    }
}

/// Refuses optional input `i` (named `name`) when present.
fn refuse_input(cx: &NodeCtx, i: usize, name: &str) -> Result<(), OnnxError> {
    if cx.input(i)?.is_some() {
        return Err(cx.err(format!("the `{name}` input is not supported")));
    }
    Ok(())
}

/// Kiln's rotary embedding of a 3-D `[batch, seq, heads·head]` `x` with
/// `[max_pos, rd/2]` tables indexed by `positions` `[batch, seq]`.
fn rotate(
    cx: &mut NodeCtx,
    x: ValueId,
    tables: (ValueId, ValueId),
    positions: ValueId,
    heads: usize,
    head: usize,
    interleaved: bool,
) -> Result<ValueId, OnnxError> {
    let half = known_dim(cx, tables.0, 1, "cos cache's width")?;
    let rd = 2 * half;
    if rd == 0 || rd > head {
        return Err(cx.err(format!(
            "a cos cache of width {half} does not fit heads of size {head}"
        )));
    }
    let op = CompositeOp::RotaryEmbedding {
        interleaved,
        rotary_dim: (rd < head).then_some(rd),
        num_heads: Some(heads),
        position_ids: true,
    };
    cx.op(Op::Composite(op), &[x, tables.0, tables.1, positions])
}

/// `RotaryEmbedding(input, position_ids, cos_cache, sin_cache)`.
pub(super) fn convert_rotary(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, pos, cos, sin) = (cx.req(0)?, cx.req(1)?, cx.req(2)?, cx.req(3)?);
    refuse_attr(cx, "is_packed_batching", 0)?;
    // `scale` is read but not applied by ONNX Runtime's kernels: ignored alike.
    if cx.rank(cos) != 2 || cx.rank(sin) != 2 {
        return Err(cx.err("cos_cache and sin_cache must be 2-D [max_position, rotary_dim / 2]"));
    }
    let half = known_dim(cx, cos, 1, "cos cache's width")?;
    let rd_attr = cx.attrs.int_or("rotary_embedding_dim", 0);
    let heads_attr = cx.attrs.int_or("num_heads", 0);
    if rd_attr < 0 || heads_attr < 0 {
        return Err(cx.err("rotary_embedding_dim and num_heads must not be negative"));
    }
    let rank = cx.rank(x);
    let (heads, head, seq_axis) = match rank {
        3 => {
            let hidden = known_dim(cx, x, 2, "hidden size")?;
            let heads = match (heads_attr, rd_attr) {
                (h, _) if h > 0 => h as usize,
                (_, 0) if half > 0 => hidden / (2 * half),
                _ => return Err(cx.err("rotary_embedding_dim needs num_heads with a 3-D input")),
            };
            if heads == 0 || hidden % heads != 0 {
                return Err(cx.err(format!(
                    "hidden size {hidden} is not a multiple of {heads} heads"
                )));
            }
            (Some(heads), hidden / heads, 1)
        }
        4 => (None, known_dim(cx, x, 3, "head size")?, 2),
        r => return Err(cx.err(format!("input must be 3-D or 4-D, got rank {r}"))),
    };
    let rd = if rd_attr > 0 { rd_attr as usize } else { head };
    if rd != 2 * half || rd > head {
        return Err(cx.err(format!(
            "rotary dim {rd} does not fit the cos cache width {half} and head size {head}"
        )));
    }
    let positions = match cx.rank(pos) {
        2 => cast(cx, pos, DType::I64)?,
        1 => {
            // The first token's position; the others follow it.
            let start = cast(cx, pos, DType::I64)?;
            let n = dim_scalar(cx, x, seq_axis)?;
            let steps = range(cx, n)?;
            let p = add(cx, steps, start)?;
            let b = dim_1d(cx, x, 0)?;
            let s = dim_1d(cx, x, seq_axis)?;
            let shape = cx.op(Op::Layout(LayoutOp::Concat { axis: 0 }), &[b, s])?;
            cx.op(Op::Layout(LayoutOp::Expand), &[p, shape])?
        }
        r => {
            return Err(cx.err(format!(
                "position_ids must be [1] or [batch, seq], got rank {r}"
            )))
        }
    };
    let op = CompositeOp::RotaryEmbedding {
        interleaved: cx.attrs.int_or("interleaved", 0) != 0,
        rotary_dim: (rd < head).then_some(rd),
        num_heads: heads,
        position_ids: true,
    };
    let y = cx.op(Op::Composite(op), &[x, cos, sin, positions])?;
    cx.set_output(0, y);
    Ok(())
}

/// `[b, l, n, parts, h]` → `parts` tensors `[b, n, l, h]`.
fn unpack_heads(cx: &mut NodeCtx, x: ValueId, parts: usize) -> Result<Vec<ValueId>, OnnxError> {
    let got = cx.ty(x).shape.0.get(3).and_then(kiln_ir::Dim::known);
    if got != Some(parts) {
        return Err(cx.err(format!(
            "a packed input {} must be [batch, seq, heads, {parts}, head]",
            cx.ty(x).shape
        )));
    }
    let pieces = cx.op_n(
        Op::Layout(LayoutOp::Split {
            axis: 3,
            sizes: vec![1; parts],
        }),
        &[x],
        parts,
    )?;
    pieces
        .into_iter()
        .map(|p| {
            let p = cx.op(
                Op::Layout(LayoutOp::Squeeze {
                    axes: vec![3],
                    not_one: vec![],
                }),
                &[p],
            )?;
            cx.op(
                Op::Layout(LayoutOp::Transpose {
                    perm: vec![0, 2, 1, 3],
                }),
                &[p],
            )
        })
        .collect()
}

/// The additive mask (0 where attended, `filter` where masked) of a
/// `MultiHeadAttention` key padding mask: `[batch]` valid key counts (right
/// padding), `[batch, keys]` or `[batch, seq, keys]` of 1 = attend, 0 = pad;
/// broadcastable to `[batch, heads, seq, keys]`.
/// `query` gives the batch size, `keys` (an i64 scalar) the number of keys.
fn padding_mask(
    cx: &mut NodeCtx,
    mask: ValueId,
    query: ValueId,
    keys: ValueId,
    dtype: DType,
    filter: f64,
) -> Result<ValueId, OnnxError> {
    match cx.rank(mask) {
        1 => {
            let batch = known_dim(cx, query, 0, "batch size").ok();
            let len = cx.ty(mask).shape.0.first().and_then(kiln_ir::Dim::known);
            if let (Some(b), Some(l)) = (batch, len) {
                if l != b {
                    return Err(cx.err(format!(
                        "a key_padding_mask of {l} values for {b} rows (the 3·batch + 2 form) \
                         is not supported"
                    )));
                }
            }
            let positions = range(cx, keys)?;
            let end = cast(cx, mask, DType::I64)?;
            let end = reshape(cx, end, &[-1, 1])?;
            let valid = bin(cx, BinaryOp::Less, positions, end)?;
            let (zero, masked) = (cx.scalar(dtype, 0.0), cx.scalar(dtype, filter));
            let m = cx.op(Op::Layout(LayoutOp::Where), &[valid, zero, masked])?;
            cx.op(Op::Layout(LayoutOp::Unsqueeze { axes: vec![1, 2] }), &[m])
        }
        r @ (2 | 3) => {
            let m = cast(cx, mask, dtype)?;
            let one = cx.scalar(dtype, 1.0);
            let off = bin(cx, BinaryOp::Sub, one, m)?;
            let f = cx.scalar(dtype, filter);
            let m = bin(cx, BinaryOp::Mul, off, f)?;
            let axes = if r == 2 { vec![1, 2] } else { vec![1] };
            cx.op(Op::Layout(LayoutOp::Unsqueeze { axes }), &[m])
        }
        r => Err(cx.err(format!("a rank-{r} key_padding_mask is not supported"))),
    }
}

/// `MultiHeadAttention(query, key?, value?, bias?, key_padding_mask?,
/// attention_bias?, past_key?, past_value?)` → `output, present_key?,
/// present_value?, qk?` (qk: the scaled scores q·kᵀ·scale).
pub(super) fn convert_multi_head_attention(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let heads = cx
        .attrs
        .int("num_heads")
        .filter(|&h| h > 0)
        .ok_or_else(|| cx.err("needs a positive `num_heads`"))?;
    refuse_input(cx, 8, "past_sequence_length")?;
    refuse_input(cx, 9, "cache_indirection")?;
    let query = cx.req(0)?;
    let bias = cx.input(3)?;
    let (key, value) = (cx.input(1)?, cx.input(2)?);
    let rank = |v: Option<ValueId>| v.map(|v| cx.rank(v));
    let (q, k, v, projected) = match (cx.rank(query), rank(key), rank(value)) {
        (5, None, None) => {
            let qkv = unpack_heads(cx, query, 3)?;
            (qkv[0], qkv[1], qkv[2], false)
        }
        (3, Some(5), None) => {
            let kv = unpack_heads(cx, key.unwrap_or(query), 2)?;
            let q = split_heads(cx, query, heads)?;
            (q, kv[0], kv[1], false)
        }
        (3, Some(4), Some(4)) => {
            let q = split_heads(cx, query, heads)?;
            (q, key.unwrap_or(query), value.unwrap_or(query), false)
        }
        (3, Some(3), Some(3)) => {
            let (mut q, mut k, mut v) = (query, key.unwrap_or(query), value.unwrap_or(query));
            if let Some(bias) = bias {
                let sizes = vec![
                    known_dim(cx, q, 2, "query's hidden size")?,
                    known_dim(cx, k, 2, "key's hidden size")?,
                    known_dim(cx, v, 2, "value's hidden size")?,
                ];
                let b = cx.op_n(Op::Layout(LayoutOp::Split { axis: 0, sizes }), &[bias], 3)?;
                q = add(cx, q, b[0])?;
                k = add(cx, k, b[1])?;
                v = add(cx, v, b[2])?;
            }
            let q = split_heads(cx, q, heads)?;
            let k = split_heads(cx, k, heads)?;
            let v = split_heads(cx, v, heads)?;
            (q, k, v, true)
        }
        (q, k, v) => {
            return Err(cx.err(format!(
                "unsupported input ranks: query {q}, key {k:?}, value {v:?} (3-D Q/K/V, \
                 packed QKV [b, l, n, 3, h], packed KV [b, l, n, 2, h] or 4-D K/V)"
            )))
        }
    };
    if bias.is_some() && !projected {
        return Err(cx.err("bias with packed or 4-D key/value inputs is not supported"));
    }
    let past = match (cx.input(6)?, cx.input(7)?) {
        (Some(pk), Some(pv)) => Some((pk, pv)),
        (None, None) => None,
        _ => return Err(cx.err("past_key and past_value must be given together")),
    };
    if past.is_some() && key.is_some_and(|k| cx.rank(k) == 4) {
        return Err(cx.err("past key/value with 4-D key/value inputs is not supported"));
    }
    let dtype = cx.dtype(q);
    let filter = cx
        .attrs
        .float("mask_filter_value")
        .map_or(DEFAULT_MASK_FILTER, |f| f as f64);
    let mut mask = match cx.input(4)? {
        Some(m) => {
            // The keys the mask spans: past and new.
            let mut keys = dim_scalar(cx, k, 2)?;
            if let Some((pk, _)) = past {
                let p = dim_scalar(cx, pk, 2)?;
                keys = add(cx, p, keys)?;
            }
            Some(padding_mask(cx, m, query, keys, dtype, filter)?)
        }
        None => None,
    };
    if let Some(b) = cx.input(5)? {
        mask = Some(match mask {
            Some(m) => add(cx, m, b)?,
            None => b,
        });
    }
    let mut inputs = vec![q, k, v];
    inputs.extend(mask);
    if let Some((pk, pv)) = past {
        inputs.extend([pk, pv]);
    }
    let op = CompositeOp::Attention {
        scale: cx.attrs.float("scale").filter(|&s| s != 0.0),
        causal: cx.attrs.int_or("unidirectional", 0) != 0,
        softcap: None,
        mask: mask.is_some(),
        past: past.is_some(),
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    };
    let n = (0..4).rev().find(|&i| cx.has_output(i)).unwrap_or(0) + 1;
    let mut ys = cx.op_n(Op::Composite(op), &inputs, n)?;
    ys[0] = merge_heads(cx, ys[0])?;
    cx.set_outputs(&ys);
    Ok(())
}

/// `GroupQueryAttention(query, key?, value?, past_key?, past_value?,
/// seqlens_k, total_sequence_length, cos_cache?, sin_cache?, position_ids?,
/// attention_bias?)` → `output, present_key, present_value`.
///
/// The KV cache grows by concatenation (ONNX Runtime's dynamic cache:
/// `total_sequence_length = past + new`, present `[b, kv_heads, past + new,
/// h]`). Batch entry b holds `p_b = seqlens_k[b] + 1 − seq` valid past keys
/// (at least 0); query i is at position `p_b + i` and sees the valid past
/// keys and the new keys up to itself (all of them when `causal=0`), only
/// the last `local_window_size` positions (its own included) when that is set. The present outputs are
/// `concat(past, new)`, which is ONNX Runtime's layout when every batch
/// entry's past fills the past buffer (batch 1, or equal lengths).
pub(super) fn convert_group_query_attention(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let positive = |cx: &NodeCtx, name: &str| {
        cx.attrs
            .int(name)
            .filter(|&h| h > 0)
            .map(|h| h as usize)
            .ok_or_else(|| cx.err(format!("needs a positive `{name}`")))
    };
    let (nq, nkv) = (positive(cx, "num_heads")?, positive(cx, "kv_num_heads")?);
    if nq % nkv != 0 {
        return Err(cx.err(format!(
            "num_heads {nq} is not a multiple of kv_num_heads {nkv}"
        )));
    }
    for (attr, default) in [
        ("smooth_softmax", 0),
        ("qk_output", 0),
        ("sliding_window_cache", 0),
    ] {
        refuse_attr(cx, attr, default)?;
    }
    if let Some(bits) = cx.attrs.int("kv_cache_bit_width") {
        return Err(cx.err(format!(
            "kv_cache_bit_width={bits} (a quantized KV cache) is not supported"
        )));
    }
    for attr in ["k_quant_type", "v_quant_type"] {
        let t = cx.attrs.string_or(attr, "NONE");
        if t != "NONE" {
            return Err(cx.err(format!(
                "{attr}={t} (a quantized KV cache) is not supported"
            )));
        }
    }
    for (i, name) in [
        (9, "position_ids"),
        (11, "head_sink"),
        (12, "k_scale"),
        (13, "v_scale"),
        (14, "q_norm_weight"),
        (15, "k_norm_weight"),
        (16, "query_seqlens"),
    ] {
        refuse_input(cx, i, name)?;
    }
    if cx.has_output(3) {
        return Err(cx.err("the output_qk output is not supported"));
    }
    let causal = match cx.attrs.int_or("causal", 1) {
        0 => false,
        1 => true,
        c => return Err(cx.err(format!("causal={c} must be 0 or 1"))),
    };
    let window = cx.attrs.int_or("local_window_size", -1);
    if window >= 0 && !causal {
        return Err(cx.err("local_window_size needs causal=1"));
    }
    let query = cx.req(0)?;
    if cx.rank(query) != 3 {
        return Err(cx.err(format!(
            "query must be [batch, seq, hidden], got {}",
            cx.ty(query).shape
        )));
    }
    let (q, k, v, head) = match (cx.input(1)?, cx.input(2)?) {
        (None, None) => {
            let width = known_dim(cx, query, 2, "packed QKV width")?;
            let parts = nq + 2 * nkv;
            if width % parts != 0 {
                return Err(cx.err(format!(
                    "packed QKV width {width} is not a multiple of {parts} heads"
                )));
            }
            let h = width / parts;
            let sizes = vec![nq * h, nkv * h, nkv * h];
            let qkv = cx.op_n(Op::Layout(LayoutOp::Split { axis: 2, sizes }), &[query], 3)?;
            (qkv[0], qkv[1], qkv[2], h)
        }
        (Some(k), Some(v)) => {
            let width = known_dim(cx, query, 2, "query's hidden size")?;
            if width % nq != 0 {
                return Err(cx.err(format!(
                    "query width {width} is not a multiple of {nq} heads"
                )));
            }
            (query, k, v, width / nq)
        }
        _ => return Err(cx.err("key and value must be given together")),
    };
    let past = match (cx.input(3)?, cx.input(4)?) {
        (Some(pk), Some(pv)) => Some((pk, pv)),
        (None, None) => None,
        _ => return Err(cx.err("past_key and past_value must be given together")),
    };
    let seqlens = cx.req(5)?;
    let total = cx.req(6)?;
    // A static cache (present as long as past, the new keys written inside
    // it) has total ≤ past; kiln only implements the growing one.
    if let (Some(t), Some((pk, _))) = (cx.constant(total), past) {
        let t = t.to_i64_vec().first().copied().unwrap_or(0);
        let p = cx.ty(pk).shape.0.get(2).and_then(kiln_ir::Dim::known);
        let s = cx.ty(query).shape.0.get(1).and_then(kiln_ir::Dim::known);
        if let (Some(p), Some(s)) = (p, s) {
            if t != (p + s) as i64 {
                return Err(cx.err(format!(
                    "total_sequence_length {t} is not past {p} + new {s}: a static \
                     (shared-buffer) KV cache is not supported"
                )));
            }
        }
    }
    // p_b: the valid past keys of each batch entry, [b, 1, 1, 1].
    let s_new = dim_scalar(cx, query, 1)?;
    let lens = cast(cx, seqlens, DType::I64)?;
    let one = cx.scalar(DType::I64, 1.0);
    let lens = add(cx, lens, one)?;
    let p_b = bin(cx, BinaryOp::Sub, lens, s_new)?;
    let zero = cx.scalar(DType::I64, 0.0);
    let p_b = bin(cx, BinaryOp::Max, p_b, zero)?;
    let p_b = reshape(cx, p_b, &[-1, 1, 1, 1])?;
    let (mut q, mut k) = (q, k);
    if cx.attrs.int_or("do_rotary", 0) != 0 {
        let (cos, sin) = match (cx.input(7)?, cx.input(8)?) {
            (Some(c), Some(s)) => (c, s),
            _ => return Err(cx.err("do_rotary=1 needs cos_cache and sin_cache")),
        };
        // Positions p_b + i, [b, s].
        let steps = range(cx, s_new)?;
        let at = reshape(cx, p_b, &[-1, 1])?;
        let positions = add(cx, at, steps)?;
        let interleaved = cx.attrs.int_or("rotary_interleaved", 0) != 0;
        q = rotate(cx, q, (cos, sin), positions, nq, head, interleaved)?;
        k = rotate(cx, k, (cos, sin), positions, nkv, head, interleaved)?;
    }
    let q = split_heads(cx, q, nq as i64)?;
    let k = split_heads(cx, k, nkv as i64)?;
    let v = split_heads(cx, v, nkv as i64)?;
    let dtype = cx.dtype(q);
    let attention_bias = cx.input(10)?;
    let (mask, causal_flag) = if past.is_none() && window < 0 {
        // A prompt: the new keys only; the causal mask is the op's own.
        (attention_bias, causal)
    } else {
        let keep = gqa_keep(cx, past.map(|(pk, _)| pk), s_new, p_b, causal, window)?;
        let m = match attention_bias {
            Some(b) => {
                let zero = cx.scalar(dtype, 0.0);
                let off = cx.scalar(dtype, f64::NEG_INFINITY);
                let m = cx.op(Op::Layout(LayoutOp::Where), &[keep, zero, off])?;
                add(cx, m, b)?
            }
            None => keep,
        };
        (Some(m), false)
    };
    let mut inputs = vec![q, k, v];
    inputs.extend(mask);
    if let Some((pk, pv)) = past {
        inputs.extend([pk, pv]);
    }
    let op = CompositeOp::Attention {
        scale: cx.attrs.float("scale").filter(|&s| s != 0.0),
        causal: causal_flag,
        softcap: cx.attrs.float("softcap").filter(|&c| c > 0.0),
        mask: mask.is_some(),
        past: past.is_some(),
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    };
    let mut ys = cx.op_n(Op::Composite(op), &inputs, 3)?;
    ys[0] = merge_heads(cx, ys[0])?;
    cx.set_outputs(&ys);
    Ok(())
}

/// Which of `concat(past, new)`'s keys each query sees, bool `[b, 1, s, past
/// + s]`: key j < past is at position j and valid below p_b; new key j ≥
/// past is at position p_b + j − past; query i is at p_b + i and sees
/// positions ≤ its own (causal) and > its own − window (window ≥ 0: the
/// last `window` positions, its own included).
fn gqa_keep(
    cx: &mut NodeCtx,
    past_key: Option<ValueId>,
    s_new: ValueId,
    p_b: ValueId,
    causal: bool,
    window: i64,
) -> Result<ValueId, OnnxError> {
    let past_len = match past_key {
        Some(pk) => dim_scalar(cx, pk, 2)?,
        None => cx.scalar(DType::I64, 0.0),
    };
    let keys = add(cx, past_len, s_new)?;
    let j = range(cx, keys)?;
    let is_new = bin(cx, BinaryOp::GreaterOrEqual, j, past_len)?;
    let offset = bin(cx, BinaryOp::Sub, j, past_len)?;
    let new_at = add(cx, p_b, offset)?;
    let at = cx.op(Op::Layout(LayoutOp::Where), &[is_new, new_at, j])?;
    let valid_past = bin(cx, BinaryOp::Less, j, p_b)?;
    let mut keep = bin(cx, BinaryOp::Or, is_new, valid_past)?;
    let steps = range(cx, s_new)?;
    let steps = reshape(cx, steps, &[-1, 1])?;
    let query_at = add(cx, p_b, steps)?;
    if causal {
        let seen = bin(cx, BinaryOp::LessOrEqual, at, query_at)?;
        keep = bin(cx, BinaryOp::And, keep, seen)?;
    }
    if window >= 0 {
        let w = cx.scalar(DType::I64, window as f64);
        let from = bin(cx, BinaryOp::Sub, query_at, w)?;
        let inside = bin(cx, BinaryOp::Greater, at, from)?;
        keep = bin(cx, BinaryOp::And, keep, inside)?;
    }
    // [b, 1, 1|s, keys] → [b, 1, s, keys] (shapes broadcast in the op).
    Ok(keep)
}
