//! Reference evaluation of composite ops, each computed directly in f64 (not through
//! its decomposition) so the interpreter does not depend on other families.

use super::broadcast::{broadcast_shapes, BroadcastIndex};
use super::elementwise::erf;
use super::reduce::split_at_axis;
use crate::error::OpError;
use crate::op::{CompositeOp, LossReduction, QkOutput};
use crate::{DType, Tensor};

/// Evaluates a composite op.
pub(super) fn eval(op: &CompositeOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let x = *inputs.first().ok_or(OpError::value("missing input"))?;
    match op {
        CompositeOp::Softmax { axis } => along_axis(x, *axis, Line::Softmax),
        CompositeOp::LogSoftmax { axis } => along_axis(x, *axis, Line::LogSoftmax),
        CompositeOp::Hardmax { axis } => along_axis(x, *axis, Line::Hardmax),
        CompositeOp::LayerNorm { axis, epsilon } => norm(x, inputs, *axis, *epsilon, false),
        CompositeOp::RmsNorm { axis, epsilon } => norm(x, inputs, *axis, *epsilon, true),
        CompositeOp::Gelu { tanh } => {
            float_only(x, "Gelu")?;
            let v: Vec<f64> = x.to_f64_vec().into_iter().map(|x| gelu(x, *tanh)).collect();
            Ok(vec![Tensor::from_f64(x.dtype(), x.shape().to_vec(), &v)])
        }
        CompositeOp::Attention { .. } => attention(op, inputs),
        CompositeOp::NllLoss {
            reduction,
            ignore_index,
        } => nll_loss(inputs, *reduction, *ignore_index),
        CompositeOp::RotaryEmbedding {
            interleaved,
            rotary_dim,
            num_heads,
            position_ids,
        } => rotary(inputs, *interleaved, *rotary_dim, *num_heads, *position_ids),
    }
}

/// Rotary position embedding (see [`CompositeOp::RotaryEmbedding`]).
fn rotary(
    inputs: &[&Tensor],
    interleaved: bool,
    rotary_dim: Option<usize>,
    num_heads: Option<usize>,
    position_ids: bool,
) -> Result<Vec<Tensor>, OpError> {
    let get = |i: usize, what: &str| {
        inputs
            .get(i)
            .copied()
            .ok_or_else(|| OpError::value(format!("RotaryEmbedding: missing {what} input")))
    };
    let (x, cos, sin) = (get(0, "x")?, get(1, "cos")?, get(2, "sin")?);
    float_only(x, "RotaryEmbedding")?;
    let sh = x.shape();
    // (batch, seq, heads, head_dim) and the flat offset of feature 0 of (b, s, h).
    let (nb, ns, nh, nd, packed) = match (sh.len(), num_heads) {
        (4, None) => (sh[0], sh[2], sh[1], sh[3], false),
        (3, Some(h)) if h > 0 && sh[2].is_multiple_of(h) => (sh[0], sh[1], h, sh[2] / h, true),
        _ => {
            return Err(OpError::shape(format!(
                "RotaryEmbedding: x {sh:?} must be [batch, heads, seq, dim], or \
                 [batch, seq, hidden] with hidden a multiple of num_heads ({num_heads:?})"
            )))
        }
    };
    let base = |b: usize, s: usize, h: usize| {
        if packed {
            ((b * ns + s) * nh + h) * nd
        } else {
            ((b * nh + h) * ns + s) * nd
        }
    };
    let rd = rotary_dim.unwrap_or(nd);
    if rd > nd || !rd.is_multiple_of(2) {
        return Err(OpError::shape(format!(
            "RotaryEmbedding: rotary dim {rd} must be even and at most the head size {nd}"
        )));
    }
    let half = rd / 2;
    if cos.shape() != sin.shape() || cos.shape().last() != Some(&half) {
        return Err(OpError::attribute(format!(
            "RotaryEmbedding: cos {:?} and sin {:?} must match, with last axis {half}",
            cos.shape(),
            sin.shape()
        )));
    }
    // The cos/sin row offset of each (batch, seq) position.
    let rows: Vec<usize> = if position_ids {
        let p = get(3, "position_ids")?;
        if p.shape() != [nb, ns] || p.dtype().is_float() {
            return Err(OpError::dtype(format!(
                "RotaryEmbedding: position_ids must be integer [{nb}, {ns}], got {} {:?}",
                p.dtype(),
                p.shape()
            )));
        }
        if cos.rank() != 2 {
            return Err(OpError::shape(format!(
                "RotaryEmbedding: with position ids, cos and sin must be [max_pos, {half}], \
                 got {:?}",
                cos.shape()
            )));
        }
        let max = cos.shape()[0];
        p.to_i64_vec()
            .into_iter()
            .map(|i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < max)
                    .map(|i| i * half)
                    .ok_or_else(|| {
                        format!("RotaryEmbedding: position id {i} out of range 0..{max}")
                    })
            })
            .collect::<Result<_, _>>()?
    } else {
        if cos.shape() != [nb, ns, half] {
            return Err(OpError::shape(format!(
                "RotaryEmbedding: without position ids, cos and sin must be \
                 [{nb}, {ns}, {half}], got {:?}",
                cos.shape()
            )));
        }
        (0..nb * ns).map(|i| i * half).collect()
    };
    let (c, s) = (cos.to_f64_vec(), sin.to_f64_vec());
    let v = x.to_f64_vec();
    let mut out = v.clone();
    for b in 0..nb {
        for q in 0..ns {
            let row = rows[b * ns + q];
            for h in 0..nh {
                let at = base(b, q, h);
                for j in 0..half {
                    let (i1, i2) = if interleaved {
                        (at + 2 * j, at + 2 * j + 1)
                    } else {
                        (at + j, at + j + half)
                    };
                    let (cj, sj) = (c[row + j], s[row + j]);
                    out[i1] = cj * v[i1] - sj * v[i2];
                    out[i2] = sj * v[i1] + cj * v[i2];
                }
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype(), sh.to_vec(), &out)])
}

fn float_only(x: &Tensor, op: &str) -> Result<(), OpError> {
    if x.dtype().is_float() {
        Ok(())
    } else {
        Err(OpError::dtype(format!(
            "{op} of {} (a float type is required)",
            x.dtype()
        )))
    }
}

/// GELU of one value.
fn gelu(x: f64, tanh: bool) -> f64 {
    if tanh {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    } else if x == 0.0 {
        // Kept off `erf(0)`, whose series loop never meets its stopping test at 0.
        x
    } else {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }
}

#[derive(Clone, Copy)]
enum Line {
    Softmax,
    LogSoftmax,
    Hardmax,
}

/// Softmax of a line in place (NaN everywhere when every element is −∞).
fn softmax_line(v: &mut [f64]) {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in v.iter_mut() {
        *x /= s;
    }
}

fn along_axis(x: &Tensor, axis: usize, kind: Line) -> Result<Vec<Tensor>, OpError> {
    float_only(x, "softmax")?;
    let (outer, n, inner) = split_at_axis(x.shape(), axis)?;
    let v = x.to_f64_vec();
    let mut out = vec![0.0; v.len()];
    let mut line = vec![0.0; n];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            for (k, l) in line.iter_mut().enumerate() {
                *l = v[at(k)];
            }
            match kind {
                Line::Softmax => softmax_line(&mut line),
                Line::LogSoftmax => {
                    let m = line.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = line.iter().map(|x| (x - m).exp()).sum();
                    let lse = m + s.ln();
                    for l in line.iter_mut() {
                        *l -= lse;
                    }
                }
                Line::Hardmax => {
                    let mut best = 0;
                    for k in 1..n {
                        if line[k] > line[best] {
                            best = k;
                        }
                    }
                    for (k, l) in line.iter_mut().enumerate() {
                        *l = (k == best) as u8 as f64;
                    }
                }
            }
            for (k, &l) in line.iter().enumerate() {
                out[at(k)] = l;
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype(), x.shape().to_vec(), &out)])
}

/// The values of `t` broadcast to `shape` (numpy rules), or why they do not broadcast.
fn broadcast_to(t: &Tensor, shape: &[usize], what: &str) -> Result<Vec<f64>, OpError> {
    let b = broadcast_shapes(&[t.shape(), shape]);
    if b.as_deref() != Some(shape) {
        return Err(OpError::shape(format!(
            "{what} of shape {:?} does not broadcast to {shape:?}",
            t.shape()
        )));
    }
    let v = t.to_f64_vec();
    Ok(BroadcastIndex::new(t.shape(), shape)
        .indices()
        .into_iter()
        .map(|i| v[i])
        .collect())
}

/// LayerNorm (`rms` false) or RMSNorm over axes `axis..`.
fn norm(
    x: &Tensor,
    inputs: &[&Tensor],
    axis: usize,
    epsilon: f32,
    rms: bool,
) -> Result<Vec<Tensor>, OpError> {
    float_only(x, "normalization")?;
    let shape = x.shape();
    if axis > shape.len() {
        return Err(OpError::attribute(format!(
            "axis {axis} out of range for shape {shape:?}"
        )));
    }
    let scale = inputs.get(1).ok_or(OpError::value("missing scale input"))?;
    let scale = broadcast_to(scale, shape, "scale")?;
    let bias = match inputs.get(2) {
        Some(b) if !rms => Some(broadcast_to(b, shape, "bias")?),
        _ => None,
    };
    let outer: usize = shape[..axis].iter().product();
    let n: usize = shape[axis..].iter().product();
    let v = x.to_f64_vec();
    let eps = epsilon as f64;
    let mut y = vec![0.0; v.len()];
    let (mut means, mut inv_stds) = (Vec::with_capacity(outer), Vec::with_capacity(outer));
    for o in 0..outer {
        let row = &v[o * n..(o + 1) * n];
        let (mean, var) = if rms {
            (0.0, row.iter().map(|x| x * x).sum::<f64>() / n as f64)
        } else {
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
            (mean, var)
        };
        let inv = 1.0 / (var + eps).sqrt();
        for (k, &xv) in row.iter().enumerate() {
            let at = o * n + k;
            let mut r = (xv - mean) * inv * scale[at];
            if let Some(b) = &bias {
                r += b[at];
            }
            y[at] = r;
        }
        means.push(mean);
        inv_stds.push(inv);
    }
    let mut out = vec![Tensor::from_f64(x.dtype(), shape.to_vec(), &y)];
    if !rms {
        let mut sshape = shape.to_vec();
        for d in &mut sshape[axis..] {
            *d = 1;
        }
        let dt = if x.dtype() == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        out.push(Tensor::from_f64(dt, sshape.clone(), &means));
        out.push(Tensor::from_f64(dt, sshape, &inv_stds));
    }
    Ok(out)
}

/// Concatenates two `[outer, a, inner]` and `[outer, b, inner]` blocks along the middle.
fn concat_mid(p: &[f64], a: usize, x: &[f64], b: usize, outer: usize, inner: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(outer * (a + b) * inner);
    for o in 0..outer {
        out.extend_from_slice(&p[o * a * inner..(o + 1) * a * inner]);
        out.extend_from_slice(&x[o * b * inner..(o + 1) * b * inner]);
    }
    out
}

fn attention(op: &CompositeOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let CompositeOp::Attention {
        scale,
        causal,
        softcap,
        mask,
        past,
        kv_lengths,
        qk_output,
    } = op
    else {
        return Err(OpError::value("not an attention op"));
    };
    let expected = 3 + *mask as usize + 2 * *past as usize + *kv_lengths as usize;
    if inputs.len() != expected {
        return Err(OpError::shape(format!(
            "expects {expected} inputs, got {}",
            inputs.len()
        )));
    }
    let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
    for t in [q, k, v] {
        float_only(t, "Attention")?;
    }
    let rank = q.rank();
    if rank < 2 || k.rank() != rank || v.rank() != rank {
        return Err(OpError::shape(format!(
            "q {:?}, k {:?} and v {:?} must have one rank of at least 2",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    let dims = |t: &Tensor| -> (Vec<usize>, usize, usize, usize) {
        let s = t.shape();
        let heads = if rank >= 3 { s[rank - 3] } else { 1 };
        let batch = s[..rank.saturating_sub(3)].to_vec();
        (batch, heads, s[rank - 2], s[rank - 1])
    };
    let (batch, hq, sq, d) = dims(q);
    let (kb, hkv, s_new, dk) = dims(k);
    let (vb, hv, sv, dv) = dims(v);
    if kb != batch || vb != batch || hv != hkv || sv != s_new || dk != d {
        return Err(OpError::shape(format!(
            "inconsistent shapes q {:?}, k {:?}, v {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(OpError::shape(format!(
            "{hq} query heads are not a multiple of {hkv} key/value heads"
        )));
    }
    let nb: usize = batch.iter().product();
    let mut kd = k.to_f64_vec();
    let mut vd = v.to_f64_vec();
    let mut s_past = 0;
    let mut at = 3;
    let mask_t = if *mask {
        at += 1;
        Some(inputs[3])
    } else {
        None
    };
    let (mut present_k, mut present_v) = (k.clone(), v.clone());
    if *past {
        let (pk, pv) = (inputs[at], inputs[at + 1]);
        at += 2;
        if pk.rank() != rank || pv.rank() != rank {
            return Err(OpError::shape(format!(
                "past key {:?} / value {:?} must have the rank of q {:?}",
                pk.shape(),
                pv.shape(),
                q.shape()
            )));
        }
        let (pkb, pkh, pks, pkd) = dims(pk);
        let (pvb, pvh, pvs, pvd) = dims(pv);
        if pkb != batch
            || pvb != batch
            || pkh != hkv
            || pvh != hkv
            || pks != pvs
            || pkd != d
            || pvd != dv
        {
            return Err(OpError::shape(format!(
                "past key {:?} / value {:?} do not match k {:?} / v {:?}",
                pk.shape(),
                pv.shape(),
                k.shape(),
                v.shape()
            )));
        }
        s_past = pks;
        kd = concat_mid(&pk.to_f64_vec(), pks * d, &kd, s_new * d, nb * hkv, 1);
        vd = concat_mid(&pv.to_f64_vec(), pks * dv, &vd, s_new * dv, nb * hkv, 1);
        let mut ks = k.shape().to_vec();
        ks[rank - 2] = pks + s_new;
        let mut vs = v.shape().to_vec();
        vs[rank - 2] = pks + s_new;
        present_k = Tensor::from_f64(k.dtype(), ks, &kd);
        present_v = Tensor::from_f64(v.dtype(), vs, &vd);
    }
    let skv = s_past + s_new;
    let lengths = if *kv_lengths {
        let l = inputs[at].to_i64_vec();
        let b0 = batch.first().copied().unwrap_or(1);
        if l.len() != b0 {
            return Err(OpError::shape(format!(
                "kv_lengths has {} entries for batch size {b0}",
                l.len()
            )));
        }
        Some(l)
    } else {
        None
    };
    // The full score shape, and the additive bias of the mask over it.
    let mut full = batch.clone();
    full.extend([hq, sq, skv]);
    let n_scores: usize = full.iter().product();
    let mut bias = vec![0.0f64; n_scores];
    if let Some(m) = mask_t {
        let mw = m.shape().last().copied().unwrap_or(1);
        if mw > skv {
            return Err(OpError::shape(format!(
                "mask of shape {:?} is wider than the {skv} keys",
                m.shape()
            )));
        }
        let mut narrow = full.clone();
        narrow[full.len() - 1] = mw;
        let bshape = broadcast_shapes(&[m.shape(), &narrow]);
        if bshape.as_deref() != Some(&narrow[..]) {
            return Err(OpError::shape(format!(
                "mask of shape {:?} does not broadcast to {narrow:?}",
                m.shape()
            )));
        }
        let idx = BroadcastIndex::new(m.shape(), &narrow).indices();
        let mv = m.to_f64_vec();
        let is_bool = m.dtype() == DType::Bool;
        for (r, b) in bias.chunks_mut(skv).enumerate() {
            for (j, b) in b.iter_mut().enumerate() {
                *b = if j >= mw {
                    f64::NEG_INFINITY
                } else {
                    let x = mv[idx[r * mw + j]];
                    if is_bool {
                        if x != 0.0 {
                            0.0
                        } else {
                            f64::NEG_INFINITY
                        }
                    } else {
                        x
                    }
                };
            }
        }
    }
    let scale = scale.map(|s| s as f64).unwrap_or(1.0 / (d as f64).sqrt());
    let group = hq / hkv;
    let qd = q.to_f64_vec();
    let mut y = vec![0.0f64; nb * hq * sq * dv];
    let mut qk_out = vec![0.0f64; n_scores];
    let mut row = vec![0.0f64; skv];
    for b in 0..nb {
        let valid = match &lengths {
            Some(l) => {
                let b0 = b / (nb / l.len().max(1)).max(1);
                l[b0].clamp(0, skv as i64) as usize
            }
            None => skv,
        };
        for h in 0..hq {
            let kh = b * hkv + h / group;
            let kbase = kh * skv * d;
            let vbase = kh * skv * dv;
            for i in 0..sq {
                let qbase = ((b * hq + h) * sq + i) * d;
                let r = (b * hq + h) * sq + i;
                for (j, s) in row.iter_mut().enumerate() {
                    let kr = &kd[kbase + j * d..kbase + (j + 1) * d];
                    let dot: f64 = qd[qbase..qbase + d]
                        .iter()
                        .zip(kr)
                        .map(|(a, b)| a * b)
                        .sum();
                    *s = dot * scale;
                }
                if *qk_output == QkOutput::Raw {
                    qk_out[r * skv..(r + 1) * skv].copy_from_slice(&row);
                }
                if let Some(c) = softcap.filter(|&c| c > 0.0) {
                    let c = c as f64;
                    for s in row.iter_mut() {
                        *s = c * (*s / c).tanh();
                    }
                }
                if *qk_output == QkOutput::Softcapped {
                    qk_out[r * skv..(r + 1) * skv].copy_from_slice(&row);
                }
                for (j, s) in row.iter_mut().enumerate() {
                    *s += bias[r * skv + j];
                    if (*causal && j > i + s_past) || j >= valid {
                        *s = f64::NEG_INFINITY;
                    }
                }
                if *qk_output == QkOutput::Masked {
                    qk_out[r * skv..(r + 1) * skv].copy_from_slice(&row);
                }
                softmax_line(&mut row);
                if *qk_output == QkOutput::Softmax {
                    qk_out[r * skv..(r + 1) * skv].copy_from_slice(&row);
                }
                let ybase = r * dv;
                for (j, &p) in row.iter().enumerate() {
                    let vr = &vd[vbase + j * dv..vbase + (j + 1) * dv];
                    for (o, &vv) in y[ybase..ybase + dv].iter_mut().zip(vr) {
                        *o += p * vv;
                    }
                }
            }
        }
    }
    let mut yshape = q.shape().to_vec();
    yshape[rank - 1] = dv;
    Ok(vec![
        Tensor::from_f64(q.dtype(), yshape, &y),
        present_k,
        present_v,
        Tensor::from_f64(q.dtype(), full, &qk_out),
    ])
}

fn nll_loss(
    inputs: &[&Tensor],
    reduction: LossReduction,
    ignore_index: Option<i64>,
) -> Result<Vec<Tensor>, OpError> {
    let (x, t) = match inputs {
        [x, t, ..] => (*x, *t),
        _ => return Err(OpError::shape("expects log_prob and target inputs")),
    };
    float_only(x, "NllLoss")?;
    let xs = x.shape();
    if xs.len() < 2
        || t.rank() != xs.len() - 1
        || t.shape()[0] != xs[0]
        || t.shape()[1..] != xs[2..]
    {
        return Err(OpError::shape(format!(
            "log_prob {xs:?} must be [n, c, d...] and target {:?} [n, d...]",
            t.shape()
        )));
    }
    let (n, c) = (xs[0], xs[1]);
    let inner: usize = xs[2..].iter().product();
    let weight = match inputs.get(2) {
        Some(w) => {
            if w.shape() != [c] {
                return Err(OpError::shape(format!(
                    "weight {:?} must be [{c}]",
                    w.shape()
                )));
            }
            Some(w.to_f64_vec())
        }
        None => None,
    };
    let xv = x.to_f64_vec();
    let tv = t.to_i64_vec();
    let mut loss = vec![0.0f64; n * inner];
    let mut wsum = 0.0;
    for b in 0..n {
        for i in 0..inner {
            let at = b * inner + i;
            let target = tv[at];
            if Some(target) == ignore_index {
                continue;
            }
            if target < 0 || target as usize >= c {
                return Err(OpError::value(format!(
                    "target {target} out of range for {c} classes"
                )));
            }
            let w = weight.as_ref().map_or(1.0, |w| w[target as usize]);
            loss[at] = -xv[(b * c + target as usize) * inner + i] * w;
            wsum += w;
        }
    }
    let out = match reduction {
        LossReduction::None => Tensor::from_f64(x.dtype(), t.shape().to_vec(), &loss),
        LossReduction::Sum => Tensor::from_f64(x.dtype(), vec![], &[loss.iter().sum()]),
        LossReduction::Mean => {
            Tensor::from_f64(x.dtype(), vec![], &[loss.iter().sum::<f64>() / wsum])
        }
    };
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn rotary_halves_interleaved_and_partial() {
        // One batch, one head, one position, head size 4; angle θ with cos c, sin s.
        let (c, s) = (0.6f64, 0.8f64);
        let x = Tensor::from_vec(vec![1, 1, 1, 4], vec![1.0f64, 2.0, 3.0, 4.0]);
        let table = |v: f64, n: usize| Tensor::from_vec(vec![1, 1, n], vec![v; n]);
        let op = |interleaved, rotary_dim| CompositeOp::RotaryEmbedding {
            interleaved,
            rotary_dim,
            num_heads: None,
            position_ids: false,
        };
        let run = |op, n| eval(&op, &[&x, &table(c, n), &table(s, n)]).unwrap()[0].to_f64_vec();
        // Halves: pairs (1, 3) and (2, 4).
        close(
            &run(op(false, None), 2),
            &[
                c - 3.0 * s,
                2.0 * c - 4.0 * s,
                s + 3.0 * c,
                2.0 * s + 4.0 * c,
            ],
        );
        // Interleaved: pairs (1, 2) and (3, 4).
        close(
            &run(op(true, None), 2),
            &[
                c - 2.0 * s,
                s + 2.0 * c,
                3.0 * c - 4.0 * s,
                3.0 * s + 4.0 * c,
            ],
        );
        // Partial: only the first two features rotate.
        close(
            &run(op(false, Some(2)), 1),
            &[c - 2.0 * s, s + 2.0 * c, 3.0, 4.0],
        );
        // Position ids index the tables, and are range-checked.
        let cos = Tensor::from_vec(vec![2, 2], vec![1.0f64, 1.0, c, c]);
        let sin = Tensor::from_vec(vec![2, 2], vec![0.0f64, 0.0, s, s]);
        let op = CompositeOp::RotaryEmbedding {
            interleaved: true,
            rotary_dim: None,
            num_heads: Some(1),
            position_ids: true,
        };
        let x3 = Tensor::from_vec(vec![1, 1, 4], vec![1.0f64, 2.0, 3.0, 4.0]);
        let p = Tensor::from_vec(vec![1, 1], vec![1i64]);
        close(
            &eval(&op, &[&x3, &cos, &sin, &p]).unwrap()[0].to_f64_vec(),
            &[
                c - 2.0 * s,
                s + 2.0 * c,
                3.0 * c - 4.0 * s,
                3.0 * s + 4.0 * c,
            ],
        );
        let bad = Tensor::from_vec(vec![1, 1], vec![2i64]);
        assert!(eval(&op, &[&x3, &cos, &sin, &bad]).is_err());
    }

    #[test]
    fn softmax_family() {
        let x = Tensor::from_vec(vec![2, 2], vec![0.0f64, 0.0, 1.0, 3.0]);
        let s = eval(&CompositeOp::Softmax { axis: 0 }, &[&x]).unwrap();
        let e = 1.0 / (1.0 + 1f64.exp());
        close(
            &s[0].to_f64_vec(),
            &[
                e,
                1.0 / (1.0 + 3f64.exp()),
                1.0 - e,
                1.0 - 1.0 / (1.0 + 3f64.exp()),
            ],
        );
        let h = eval(&CompositeOp::Hardmax { axis: 1 }, &[&x]).unwrap();
        assert_eq!(h[0].to_f64_vec(), vec![1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn layer_norm_outputs_statistics() {
        let x = Tensor::from_vec(vec![1, 2], vec![1.0f32, 3.0]);
        let w = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]);
        let op = CompositeOp::LayerNorm {
            axis: 1,
            epsilon: 0.0,
        };
        let out = eval(&op, &[&x, &w]).unwrap();
        close(&out[0].to_f64_vec(), &[-1.0, 2.0]);
        assert_eq!(out[1].to_f64_vec(), vec![2.0]);
        assert_eq!(out[2].to_f64_vec(), vec![1.0]);
    }

    #[test]
    fn attention_causal_with_past_and_gqa() {
        // One batch, 2 query heads sharing 1 kv head, 1 query, 1 past + 1 new key.
        let q = Tensor::from_vec(vec![1, 2, 1, 1], vec![1.0f32, 0.0]);
        let k = Tensor::from_vec(vec![1, 1, 1, 1], vec![1.0f32]);
        let v = Tensor::from_vec(vec![1, 1, 1, 1], vec![2.0f32]);
        let pk = Tensor::from_vec(vec![1, 1, 1, 1], vec![0.0f32]);
        let pv = Tensor::from_vec(vec![1, 1, 1, 1], vec![4.0f32]);
        let op = CompositeOp::Attention {
            scale: Some(1.0),
            causal: true,
            softcap: None,
            mask: false,
            past: true,
            kv_lengths: false,
            qk_output: QkOutput::Softmax,
        };
        let out = eval(&op, &[&q, &k, &v, &pk, &pv]).unwrap();
        // Head 0: scores [0, 1]; head 1: [0, 0]. The query sits after the past key.
        let p = 1.0 / (1.0 + 1f64.exp());
        close(&out[3].to_f64_vec(), &[p, 1.0 - p, 0.5, 0.5]);
        close(&out[0].to_f64_vec(), &[4.0 * p + 2.0 * (1.0 - p), 3.0]);
        assert_eq!(out[1].shape(), &[1, 1, 2, 1]);
    }

    #[test]
    fn nll_loss_weighted_mean_skips_ignored() {
        let x = Tensor::from_vec(vec![3, 2], vec![-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0]);
        let t = Tensor::from_vec(vec![3], vec![1i64, 0, 1]);
        let w = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]);
        let op = CompositeOp::NllLoss {
            reduction: LossReduction::Mean,
            ignore_index: Some(0),
        };
        let out = eval(&op, &[&x, &t, &w]).unwrap();
        close(&out[0].to_f64_vec(), &[(2.0 * 2.0 + 6.0 * 2.0) / 4.0]);
        let bad = Tensor::from_vec(vec![3], vec![1i64, 5, 1]);
        assert!(eval(&op, &[&x, &bad, &w]).is_err());
    }
}
