//! Reference evaluation of ONNX's `LinearAttention`: the recurrence run step by
//! step, in f64, rounded once to each output's type.

use crate::error::OpError;
use crate::op::MiscOp;
use crate::Tensor;

/// Checks that `t` is a rank-3 `[b, len, last]` float tensor and returns `last`.
fn bt_last(t: &Tensor, b: usize, len: usize, what: &str) -> Result<usize, OpError> {
    if !t.dtype().is_float() {
        return Err(OpError::dtype(format!(
            "LinearAttention {what} must be a float tensor, got {}",
            t.dtype()
        )));
    }
    match t.shape() {
        &[tb, tt, last] if tb == b && tt == len => Ok(last),
        s => Err(OpError::shape(format!(
            "LinearAttention {what} has shape {s:?}, expected [{b}, {len}, _]"
        ))),
    }
}

/// Evaluates [`MiscOp::LinearAttention`]: `[output, present_state]`.
pub(super) fn eval(op: &MiscOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let MiscOp::LinearAttention {
        q_heads,
        kv_heads,
        scale,
        update,
        past_state,
    } = op
    else {
        return Err(OpError::unsupported("not a LinearAttention op"));
    };
    let (hq, hkv) = (*q_heads, *kv_heads);
    if hq == 0 || hkv == 0 || hq % hkv != 0 {
        return Err(OpError::attribute(format!(
            "LinearAttention q_num_heads {hq} is not a positive multiple of kv_num_heads {hkv}"
        )));
    }
    let expected = 3 + *past_state as usize + update.gated() as usize + update.delta() as usize;
    if inputs.len() != expected {
        return Err(OpError::value(format!(
            "LinearAttention with update {update:?} takes {expected} inputs, got {}",
            inputs.len()
        )));
    }
    let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
    let (b, t) = match q.shape() {
        &[b, t, _] => (b, t),
        s => {
            return Err(OpError::shape(format!(
                "LinearAttention query has shape {s:?}, expected [B, T, Hq·dk]"
            )))
        }
    };
    let q_last = bt_last(q, b, t, "query")?;
    let k_last = bt_last(k, b, t, "key")?;
    let v_last = bt_last(v, b, t, "value")?;
    if q_last % hq != 0 || v_last % hkv != 0 || k_last != q_last / hq * hkv {
        return Err(OpError::shape(format!(
            "LinearAttention query, key and value last dims {q_last}, {k_last}, {v_last} \
             do not split into {hq} query and {hkv} key/value heads of one key size"
        )));
    }
    let (dk, dv, group) = (q_last / hq, v_last / hkv, hq / hkv);
    let mut next = 3;
    let mut take = |present: bool| {
        let t = present.then(|| inputs[next]);
        next += present as usize;
        t
    };
    let past = take(*past_state);
    let decay = take(update.gated());
    let beta = take(update.delta());

    let mut state = vec![0.0f64; b * hkv * dk * dv];
    let state_dtype = match past {
        Some(p) => {
            if p.shape() != [b, hkv, dk, dv] || !p.dtype().is_float() {
                return Err(OpError::shape(format!(
                    "LinearAttention past_state is {} {:?}, expected a float [{b}, {hkv}, {dk}, {dv}]",
                    p.dtype(),
                    p.shape()
                )));
            }
            state = p.to_f64_vec();
            p.dtype()
        }
        None => q.dtype(),
    };
    // Per-key-dim decay (`dk` values per head) or one per head.
    let decay = match decay {
        Some(g) => {
            let last = bt_last(g, b, t, "decay")?;
            let per_dim = if last == hkv * dk {
                true
            } else if last == hkv {
                false
            } else {
                return Err(OpError::shape(format!(
                    "LinearAttention decay last dim {last}: expected {hkv} or {}",
                    hkv * dk
                )));
            };
            Some((g.to_f64_vec(), last, per_dim))
        }
        None => None,
    };
    let beta = match beta {
        Some(x) => {
            let last = bt_last(x, b, t, "beta")?;
            if last != hkv && last != 1 {
                return Err(OpError::shape(format!(
                    "LinearAttention beta last dim {last}: expected {hkv} or 1"
                )));
            }
            Some((x.to_f64_vec(), last))
        }
        None => None,
    };
    let scale = match scale {
        Some(s) if *s != 0.0 => *s as f64,
        _ => 1.0 / (dk as f64).sqrt(),
    };
    let (qv, kv, vv) = (q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec());
    let mut out = vec![0.0f64; b * t * hq * dv];
    let mut written = vec![0.0f64; dv];
    for bi in 0..b {
        for h in 0..hkv {
            let s = &mut state[(bi * hkv + h) * dk * dv..][..dk * dv];
            for ti in 0..t {
                let row = bi * t + ti;
                let kt = &kv[row * k_last + h * dk..][..dk];
                let vt = &vv[row * v_last + h * dv..][..dv];
                if let Some((g, last, per_dim)) = &decay {
                    for d in 0..dk {
                        let at = if *per_dim { h * dk + d } else { h };
                        let f = g[row * last + at].exp();
                        s[d * dv..][..dv].iter_mut().for_each(|x| *x *= f);
                    }
                }
                written.copy_from_slice(vt);
                if let Some((bv, last)) = &beta {
                    let step = bv[row * last + if *last == 1 { 0 } else { h }];
                    for (m, w) in written.iter_mut().enumerate() {
                        let retrieved: f64 = (0..dk).map(|d| s[d * dv + m] * kt[d]).sum();
                        *w = step * (*w - retrieved);
                    }
                }
                for d in 0..dk {
                    for m in 0..dv {
                        s[d * dv + m] += kt[d] * written[m];
                    }
                }
                for qh in h * group..(h + 1) * group {
                    let qt = &qv[row * q_last + qh * dk..][..dk];
                    let o = &mut out[row * hq * dv + qh * dv..][..dv];
                    for (m, o) in o.iter_mut().enumerate() {
                        *o = scale * (0..dk).map(|d| qt[d] * s[d * dv + m]).sum::<f64>();
                    }
                }
            }
        }
    }
    Ok(vec![
        Tensor::from_f64(q.dtype(), vec![b, t, hq * dv], &out),
        Tensor::from_f64(state_dtype, vec![b, hkv, dk, dv], &state),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::LinearUpdate;
    use crate::DType;

    fn op(update: LinearUpdate, past_state: bool, q_heads: usize) -> MiscOp {
        MiscOp::LinearAttention {
            q_heads,
            kv_heads: 1,
            scale: Some(1.0),
            update,
            past_state,
        }
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    #[test]
    fn linear_rule_accumulates_outer_products() {
        // One head, dk = dv = 1, two steps: S = k0·v0, then + k1·v1.
        let q = f32s(&[1, 2, 1], &[1.0, 2.0]);
        let k = f32s(&[1, 2, 1], &[3.0, 4.0]);
        let v = f32s(&[1, 2, 1], &[5.0, 6.0]);
        let out = eval(&op(LinearUpdate::Linear, false, 1), &[&q, &k, &v]).unwrap();
        assert_eq!(out[0].to_vec::<f32>(), vec![15.0, 2.0 * (15.0 + 24.0)]);
        assert_eq!(out[1].shape(), &[1, 1, 1, 1]);
        assert_eq!(out[1].to_vec::<f32>(), vec![39.0]);
    }

    #[test]
    fn gated_delta_decays_and_corrects_and_groups_share_the_state() {
        // Two query heads read the one key/value head's state.
        let q = f32s(&[1, 1, 2], &[1.0, 2.0]);
        let k = f32s(&[1, 1, 1], &[1.0]);
        let v = f32s(&[1, 1, 1], &[3.0]);
        let past = f32s(&[1, 1, 1, 1], &[2.0]);
        let decay = f32s(&[1, 1, 1], &[0.0]);
        let beta = f32s(&[1, 1, 1], &[0.5]);
        let out = eval(
            &op(LinearUpdate::GatedDelta, true, 2),
            &[&q, &k, &v, &past, &decay, &beta],
        )
        .unwrap();
        // S = 2 + 1·0.5·(3 − 2·1) = 2.5; heads read 1·2.5 and 2·2.5.
        assert_eq!(out[1].to_vec::<f32>(), vec![2.5]);
        assert_eq!(out[0].to_vec::<f32>(), vec![2.5, 5.0]);
    }

    #[test]
    fn zero_steps_and_bad_inputs() {
        let empty = f32s(&[2, 0, 4], &[]);
        let out = eval(
            &op(LinearUpdate::Linear, false, 2),
            &[&empty, &f32s(&[2, 0, 2], &[]), &f32s(&[2, 0, 3], &[])],
        )
        .unwrap();
        assert_eq!(out[0].shape(), &[2, 0, 6]);
        assert_eq!(out[1].to_vec::<f32>(), vec![0.0; 2 * 2 * 3]);
        let q = f32s(&[1, 1, 2], &[1.0, 2.0]);
        // A gated rule without its decay input.
        assert!(eval(&op(LinearUpdate::Gated, false, 2), &[&q, &q, &q]).is_err());
        // Key heads that do not match the query's key size.
        let k3 = f32s(&[1, 1, 3], &[0.0; 3]);
        assert!(eval(&op(LinearUpdate::Linear, false, 2), &[&q, &k3, &q]).is_err());
        // Heads that do not divide.
        let bad = MiscOp::LinearAttention {
            q_heads: 3,
            kv_heads: 2,
            scale: None,
            update: LinearUpdate::Linear,
            past_state: false,
        };
        assert!(eval(&bad, &[&q, &q, &q]).is_err());
        // Integer inputs.
        let qi = Tensor::from_vec(vec![1, 1, 2], vec![1i32, 2]);
        assert!(eval(&op(LinearUpdate::Linear, false, 2), &[&qi, &q, &q]).is_err());
    }

    #[test]
    fn state_keeps_past_state_type() {
        let q = Tensor::from_f64(DType::F16, vec![1, 1, 1], &[1.0]);
        let past = f32s(&[1, 1, 1, 1], &[1.0]);
        let out = eval(&op(LinearUpdate::Linear, true, 1), &[&q, &q, &q, &past]).unwrap();
        assert_eq!(out[0].dtype(), DType::F16);
        assert_eq!(out[1].dtype(), DType::F32);
        assert_eq!(out[1].to_vec::<f32>(), vec![2.0]);
    }
}
