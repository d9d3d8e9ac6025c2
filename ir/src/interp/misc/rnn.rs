//! Reference evaluation of the recurrences (ONNX RNN, GRU, LSTM).

use crate::error::OpError;
use crate::op::{MiscOp, RnnActivation, RnnCell, RnnDirection};
use crate::Tensor;

/// A `[d0, d1, d2]` f64 array.
struct A3 {
    v: Vec<f64>,
    d1: usize,
    d2: usize,
}

impl A3 {
    fn new(t: &Tensor, shape: [usize; 3], what: &str) -> Result<A3, OpError> {
        if t.shape() != shape {
            return Err(OpError::shape(format!(
                "{what} has shape {:?}, expected {shape:?}",
                t.shape()
            )));
        }
        Ok(A3 {
            v: t.to_f64_vec(),
            d1: shape[1],
            d2: shape[2],
        })
    }

    /// A `[d0, d2]` tensor viewed as `[d0, 1, d2]`.
    fn new2(t: &Tensor, shape: [usize; 2], what: &str) -> Result<A3, OpError> {
        if t.shape() != shape {
            return Err(OpError::shape(format!(
                "{what} has shape {:?}, expected {shape:?}",
                t.shape()
            )));
        }
        Ok(A3 {
            v: t.to_f64_vec(),
            d1: 1,
            d2: shape[1],
        })
    }

    fn row(&self, a: usize, b: usize) -> &[f64] {
        &self.v[(a * self.d1 + b) * self.d2..][..self.d2]
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Evaluates [`MiscOp::Rnn`].
pub(super) fn eval(op: &MiscOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let MiscOp::Rnn {
        cell,
        direction,
        hidden_size: h,
        activations,
        clip,
        linear_before_reset,
        input_forget,
        batch_first,
        optional,
    } = op
    else {
        return Err(OpError::value("not a recurrence"));
    };
    let h = *h;
    let [x, w, r, rest @ ..] = inputs else {
        return Err(OpError::shape(format!(
            "expects at least 3 inputs, got {}",
            inputs.len()
        )));
    };
    let mut rest = rest.iter();
    let mut next = |present: bool, what: &str| -> Result<Option<&Tensor>, OpError> {
        if !present {
            return Ok(None);
        }
        rest.next()
            .map(|t| Some(*t))
            .ok_or_else(|| OpError::value(format!("missing input {what}")))
    };
    let b = next(optional.bias, "B")?;
    let seq_lens = next(optional.sequence_lens, "sequence_lens")?;
    let h0 = next(optional.initial_h, "initial_h")?;
    let c0 = next(optional.initial_c, "initial_c")?;
    let p = next(optional.peepholes, "P")?;

    if x.rank() != 3 {
        return Err(OpError::shape(format!(
            "X must have rank 3, got {:?}",
            x.shape()
        )));
    }
    let (seq, batch, input) = if *batch_first {
        (x.shape()[1], x.shape()[0], x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2])
    };
    let dirs = if *direction == RnnDirection::Bidirectional {
        2
    } else {
        1
    };
    let gates = match cell {
        RnnCell::Rnn => 1,
        RnnCell::Gru => 3,
        RnnCell::Lstm => 4,
    };
    let n_act = match cell {
        RnnCell::Rnn => 1,
        RnnCell::Gru => 2,
        RnnCell::Lstm => 3,
    };
    if activations.len() != n_act * dirs {
        return Err(OpError::attribute(format!(
            "{} activations given, expected {}",
            activations.len(),
            n_act * dirs
        )));
    }
    let xv = x.to_f64_vec();
    let xat = |t: usize, bi: usize| -> &[f64] {
        let (i0, i1) = if *batch_first { (bi, t) } else { (t, bi) };
        let d1 = if *batch_first { seq } else { batch };
        &xv[(i0 * d1 + i1) * input..][..input]
    };
    let w = A3::new(w, [dirs, gates * h, input], "W")?;
    let r = A3::new(r, [dirs, gates * h, h], "R")?;
    let b = b
        .map(|t| A3::new2(t, [dirs, 2 * gates * h], "B"))
        .transpose()?;
    let p = p.map(|t| A3::new2(t, [dirs, 3 * h], "P")).transpose()?;
    let state_shape = if *batch_first {
        [batch, dirs, h]
    } else {
        [dirs, batch, h]
    };
    let state = |t: Option<&Tensor>, what: &str| -> Result<Vec<f64>, OpError> {
        match t {
            None => Ok(vec![0.0; dirs * batch * h]),
            Some(t) => Ok(A3::new(t, state_shape, what)?.v),
        }
    };
    let state_at = |d: usize, bi: usize| -> usize {
        if *batch_first {
            (bi * dirs + d) * h
        } else {
            (d * batch + bi) * h
        }
    };
    let h0 = state(h0, "initial_h")?;
    let c0 = state(c0, "initial_c")?;
    let lens: Vec<usize> = match seq_lens {
        None => vec![seq; batch],
        Some(t) => {
            let v = t.to_i64_vec();
            if v.len() != batch {
                return Err(OpError::shape(format!(
                    "sequence_lens has {} elements, batch is {batch}",
                    v.len()
                )));
            }
            v.into_iter()
                .map(|l| {
                    if l < 0 || l as usize > seq {
                        Err(OpError::shape(format!(
                            "sequence length {l} outside [0, {seq}]"
                        )))
                    } else {
                        Ok(l as usize)
                    }
                })
                .collect::<Result<_, _>>()?
        }
    };
    let clip = |v: f64| match clip {
        Some(c) => v.clamp(-(*c as f64), *c as f64),
        None => v,
    };
    let y_at = |t: usize, d: usize, bi: usize| -> usize {
        if *batch_first {
            ((bi * seq + t) * dirs + d) * h
        } else {
            ((t * dirs + d) * batch + bi) * h
        }
    };
    let mut y = vec![0.0; seq * dirs * batch * h];
    let mut yh = vec![0.0; dirs * batch * h];
    let mut yc = vec![0.0; dirs * batch * h];
    for d in 0..dirs {
        let reverse = *direction == RnnDirection::Reverse || d == 1;
        let act: &[RnnActivation] = &activations[d * n_act..(d + 1) * n_act];
        let zero = vec![0.0; 2 * gates * h];
        let bias = b.as_ref().map(|b| b.row(d, 0)).unwrap_or(&zero);
        let (wb, rb) = bias.split_at(gates * h);
        let zp = vec![0.0; 3 * h];
        let peep = p.as_ref().map(|p| p.row(d, 0)).unwrap_or(&zp);
        for (bi, &len) in lens.iter().enumerate() {
            let so = state_at(d, bi);
            let mut hs = h0[so..so + h].to_vec();
            let mut cs = c0[so..so + h].to_vec();
            for step in 0..len {
                let t = if reverse { len - 1 - step } else { step };
                let xt = xat(t, bi);
                // Input and recurrence contributions of every gate row.
                let xw: Vec<f64> = (0..gates * h)
                    .map(|j| dot(xt, w.row(d, j)) + wb[j])
                    .collect();
                let hr: Vec<f64> = (0..gates * h)
                    .map(|j| dot(&hs, r.row(d, j)) + rb[j])
                    .collect();
                let new_h: Vec<f64> = match cell {
                    RnnCell::Rnn => (0..h).map(|j| act[0].apply(clip(xw[j] + hr[j]))).collect(),
                    RnnCell::Gru => {
                        let z: Vec<f64> =
                            (0..h).map(|j| act[0].apply(clip(xw[j] + hr[j]))).collect();
                        let rg: Vec<f64> = (0..h)
                            .map(|j| act[0].apply(clip(xw[h + j] + hr[h + j])))
                            .collect();
                        let hh: Vec<f64> = if *linear_before_reset {
                            (0..h)
                                .map(|j| act[1].apply(clip(xw[2 * h + j] + rg[j] * hr[2 * h + j])))
                                .collect()
                        } else {
                            let rh: Vec<f64> = (0..h).map(|j| rg[j] * hs[j]).collect();
                            (0..h)
                                .map(|j| {
                                    let rec = dot(&rh, r.row(d, 2 * h + j)) + rb[2 * h + j];
                                    act[1].apply(clip(xw[2 * h + j] + rec))
                                })
                                .collect()
                        };
                        (0..h)
                            .map(|j| (1.0 - z[j]) * hh[j] + z[j] * hs[j])
                            .collect()
                    }
                    RnnCell::Lstm => {
                        // Gate rows: i, o, f, c; peepholes: i, o, f.
                        let mut nh = vec![0.0; h];
                        for j in 0..h {
                            let i = act[0].apply(clip(xw[j] + hr[j] + peep[j] * cs[j]));
                            let f = if *input_forget {
                                1.0 - i
                            } else {
                                act[0].apply(clip(
                                    xw[2 * h + j] + hr[2 * h + j] + peep[2 * h + j] * cs[j],
                                ))
                            };
                            let g = act[1].apply(clip(xw[3 * h + j] + hr[3 * h + j]));
                            let c = f * cs[j] + i * g;
                            let o = act[0].apply(clip(xw[h + j] + hr[h + j] + peep[h + j] * c));
                            cs[j] = c;
                            nh[j] = o * act[2].apply(c);
                        }
                        nh
                    }
                };
                hs = new_h;
                let yo = y_at(t, d, bi);
                y[yo..yo + h].copy_from_slice(&hs);
            }
            yh[so..so + h].copy_from_slice(&hs);
            yc[so..so + h].copy_from_slice(&cs);
        }
    }
    let dt = x.dtype();
    let y_shape = if *batch_first {
        vec![batch, seq, dirs, h]
    } else {
        vec![seq, dirs, batch, h]
    };
    let mut out = vec![
        Tensor::from_f64(dt, y_shape, &y),
        Tensor::from_f64(dt, state_shape.to_vec(), &yh),
    ];
    if *cell == RnnCell::Lstm {
        out.push(Tensor::from_f64(dt, state_shape.to_vec(), &yc));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::RnnInputs;

    #[test]
    fn rnn_respects_sequence_lengths_and_reverse() {
        // hidden 1, input 1, identity-like activation: h_t = x_t + h_{t-1}.
        let op = MiscOp::Rnn {
            cell: RnnCell::Rnn,
            direction: RnnDirection::Reverse,
            hidden_size: 1,
            activations: vec![RnnActivation::Affine {
                alpha: 1.0,
                beta: 0.0,
            }],
            clip: None,
            linear_before_reset: false,
            input_forget: false,
            batch_first: false,
            optional: RnnInputs {
                sequence_lens: true,
                ..Default::default()
            },
        };
        let x = Tensor::from_vec(vec![3, 2, 1], vec![1f32, 10., 2., 20., 3., 30.]);
        let w = Tensor::from_vec(vec![1, 1, 1], vec![1f32]);
        let r = Tensor::from_vec(vec![1, 1, 1], vec![1f32]);
        let lens = Tensor::from_vec(vec![2], vec![2i32, 3]);
        let out = eval(&op, &[&x, &w, &r, &lens]).unwrap();
        // Batch 0 runs t = 1, 0: Y[1] = 2, Y[0] = 3; Y[2] stays 0. Batch 1: 30, 50, 60.
        assert_eq!(out[0].to_vec::<f32>(), vec![3., 60., 2., 50., 0., 30.]);
        assert_eq!(out[1].to_vec::<f32>(), vec![3., 60.]);
    }
}
