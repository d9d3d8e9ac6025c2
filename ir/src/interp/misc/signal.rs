//! Reference evaluation of the linear-algebra and signal ops: Det, DFT, STFT, window
//! functions, MelWeightMatrix.

use crate::error::OpError;
use std::f64::consts::PI;

use crate::op::{MiscOp, WindowKind};
use crate::{DType, Tensor};

/// Evaluates a signal op.
pub(super) fn eval(op: &MiscOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let x = *inputs.first().ok_or(OpError::value("missing input 0"))?;
    let scalar_i = |i: usize, what: &str| -> Result<Option<i64>, OpError> {
        match inputs.get(i) {
            None => Ok(None),
            Some(t) => t.scalar_i64().map(Some).ok_or_else(|| {
                OpError::shape(format!("{what} must have one element, got {:?}", t.shape()))
            }),
        }
    };
    let out = match op {
        MiscOp::Det => det(x)?,
        MiscOp::Dft {
            axis,
            inverse,
            onesided,
            has_length,
        } => {
            let length = if *has_length {
                scalar_i(1, "dft_length")?
            } else {
                None
            };
            let axis = match axis {
                Some(a) => *a,
                None => {
                    let a = scalar_i(1 + *has_length as usize, "axis")?
                        .ok_or(OpError::attribute("missing axis"))?;
                    let r = x.rank() as i64;
                    let a = if a < 0 { a + r } else { a };
                    if a < 0 || a >= r {
                        return Err(OpError::attribute(format!(
                            "axis {a} out of range for rank {r}"
                        )));
                    }
                    a as usize
                }
            };
            dft(x, length, axis, *inverse, *onesided)?
        }
        MiscOp::Stft {
            onesided,
            has_window,
        } => {
            let step = scalar_i(1, "frame_step")?.ok_or(OpError::value("missing frame_step"))?;
            let window = if *has_window {
                inputs.get(2).copied()
            } else {
                None
            };
            let len_at = if *has_window { 3 } else { 2 };
            stft(
                x,
                step,
                window,
                scalar_i(len_at, "frame_length")?,
                *onesided,
            )?
        }
        MiscOp::Window { kind, periodic, to } => {
            let n = scalar_i(0, "size")?.ok_or(OpError::shape("missing size"))?;
            window(*kind, *periodic, *to, n)?
        }
        MiscOp::MelWeightMatrix { to } => mel(inputs, *to)?,
        other => return Err(OpError::value(format!("{other:?} is not a signal op"))),
    };
    Ok(vec![out])
}

/// Determinants by LU decomposition with partial pivoting.
fn det(x: &Tensor) -> Result<Tensor, OpError> {
    let s = x.shape();
    let r = s.len();
    if r < 2 || s[r - 1] != s[r - 2] {
        return Err(OpError::shape(format!(
            "Det needs square matrices, got {s:?}"
        )));
    }
    let n = s[r - 1];
    let v = x.to_f64_vec();
    let count: usize = s[..r - 2].iter().product();
    let out: Vec<f64> = (0..count)
        .map(|b| {
            let mut a = v[b * n * n..(b + 1) * n * n].to_vec();
            let mut d = 1.0;
            for c in 0..n {
                let p = (c..n)
                    .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
                    .unwrap_or(c);
                if a[p * n + c] == 0.0 {
                    return 0.0;
                }
                if p != c {
                    for k in 0..n {
                        a.swap(p * n + k, c * n + k);
                    }
                    d = -d;
                }
                let piv = a[c * n + c];
                d *= piv;
                for i in c + 1..n {
                    let f = a[i * n + c] / piv;
                    for k in c..n {
                        a[i * n + k] -= f * a[c * n + k];
                    }
                }
            }
            d
        })
        .collect();
    Ok(Tensor::from_f64(x.dtype(), s[..r - 2].to_vec(), &out))
}

/// DFT along `axis` of x (`[..., 1 | 2]`, real or complex interleaved).
fn dft(
    x: &Tensor,
    length: Option<i64>,
    axis: usize,
    inverse: bool,
    onesided: bool,
) -> Result<Tensor, OpError> {
    let s = x.shape();
    let r = s.len();
    if r < 2 || axis + 1 >= r || !(s[r - 1] == 1 || s[r - 1] == 2) {
        return Err(OpError::attribute(format!(
            "DFT of {s:?} along axis {axis}"
        )));
    }
    let complex_in = s[r - 1] == 2;
    let m = s[axis];
    let n = match length {
        Some(l) => usize::try_from(l).map_err(|_| OpError::shape(format!("dft_length {l}")))?,
        None if inverse && onesided => 2 * m.saturating_sub(1),
        None => m,
    };
    if n == 0 {
        return Err(OpError::shape("dft_length must be positive"));
    }
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..r - 1].iter().product();
    let v = x.to_f64_vec();
    let at = |o: usize, k: usize, i: usize| -> (f64, f64) {
        let base = ((o * m + k) * inner + i) * s[r - 1];
        if complex_in {
            (v[base], v[base + 1])
        } else {
            (v[base], 0.0)
        }
    };
    let irfft = inverse && onesided;
    let (out_len, out_last) = if irfft {
        (n, 1)
    } else if onesided {
        (n / 2 + 1, 2)
    } else {
        (n, 2)
    };
    let mut out = vec![0.0; outer * out_len * inner * out_last];
    let sign = if inverse { 1.0 } else { -1.0 };
    for o in 0..outer {
        for i in 0..inner {
            for k in 0..out_len {
                let base = ((o * out_len + k) * inner + i) * out_last;
                if irfft {
                    // Hermitian extension of the first n/2 + 1 bins.
                    let half = n / 2;
                    let mut acc = 0.0;
                    for f in 0..=half {
                        let (re, im) = if f < m { at(o, f, i) } else { (0.0, 0.0) };
                        let th = 2.0 * PI * ((f * k) % n) as f64 / n as f64;
                        let weight = if f == 0 || (n % 2 == 0 && f == half) {
                            1.0
                        } else {
                            2.0
                        };
                        let im = if f == 0 || (n % 2 == 0 && f == half) {
                            0.0
                        } else {
                            im
                        };
                        acc += weight * (re * th.cos() - im * th.sin());
                    }
                    out[base] = acc / n as f64;
                    continue;
                }
                let (mut re, mut im) = (0.0, 0.0);
                for t in 0..n.min(m) {
                    let (a, b) = at(o, t, i);
                    let th = sign * 2.0 * PI * ((k * t) % n) as f64 / n as f64;
                    let (c, sn) = (th.cos(), th.sin());
                    re += a * c - b * sn;
                    im += a * sn + b * c;
                }
                if inverse {
                    re /= n as f64;
                    im /= n as f64;
                }
                out[base] = re;
                out[base + 1] = im;
            }
        }
    }
    let mut shape = s.to_vec();
    shape[axis] = out_len;
    shape[r - 1] = out_last;
    Ok(Tensor::from_f64(x.dtype(), shape, &out))
}

fn stft(
    signal: &Tensor,
    step: i64,
    window: Option<&Tensor>,
    frame_length: Option<i64>,
    onesided: bool,
) -> Result<Tensor, OpError> {
    let s = signal.shape();
    if s.len() != 3 || !(s[2] == 1 || s[2] == 2) {
        return Err(OpError::shape(format!(
            "STFT signal must be [batch, length, 1|2], got {s:?}"
        )));
    }
    let (batch, len, comp) = (s[0], s[1], s[2]);
    let win: Option<Vec<f64>> = window.map(Tensor::to_f64_vec);
    let fl = match (frame_length, &win) {
        (Some(l), Some(w)) if l as usize != w.len() => {
            return Err(OpError::shape(format!(
                "frame_length {l} but window of {}",
                w.len()
            )))
        }
        (Some(l), _) => {
            usize::try_from(l).map_err(|_| OpError::shape(format!("frame_length {l}")))?
        }
        (None, Some(w)) => w.len(),
        (None, None) => return Err(OpError::shape("STFT needs a window or a frame_length")),
    };
    let step = usize::try_from(step)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| OpError::value(format!("frame_step {step}")))?;
    if fl == 0 || fl > len {
        return Err(OpError::shape(format!(
            "frame length {fl} for a signal of {len}"
        )));
    }
    let frames = (len - fl) / step + 1;
    let bins = if onesided { fl / 2 + 1 } else { fl };
    let v = signal.to_f64_vec();
    let mut out = vec![0.0; batch * frames * bins * 2];
    for b in 0..batch {
        for f in 0..frames {
            for k in 0..bins {
                let (mut re, mut im) = (0.0, 0.0);
                for t in 0..fl {
                    let idx = (b * len + f * step + t) * comp;
                    let w = win.as_ref().map_or(1.0, |w| w[t]);
                    let (a, c) = (v[idx] * w, if comp == 2 { v[idx + 1] * w } else { 0.0 });
                    let th = -2.0 * PI * ((k * t) % fl) as f64 / fl as f64;
                    re += a * th.cos() - c * th.sin();
                    im += a * th.sin() + c * th.cos();
                }
                let o = ((b * frames + f) * bins + k) * 2;
                out[o] = re;
                out[o + 1] = im;
            }
        }
    }
    Ok(Tensor::from_f64(
        signal.dtype(),
        vec![batch, frames, bins, 2],
        &out,
    ))
}

fn window(kind: WindowKind, periodic: bool, to: DType, n: i64) -> Result<Tensor, OpError> {
    let n = usize::try_from(n).map_err(|_| OpError::shape(format!("window size {n}")))?;
    let denom = if periodic { n } else { n.saturating_sub(1) } as f64;
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let th = 2.0 * PI * i as f64 / denom;
            match kind {
                WindowKind::Hann => 0.5 - 0.5 * th.cos(),
                WindowKind::Hamming => 25.0 / 46.0 - (21.0 / 46.0) * th.cos(),
                WindowKind::Blackman => 0.42 - 0.5 * th.cos() + 0.08 * (2.0 * th).cos(),
            }
        })
        .collect();
    Ok(Tensor::from_f64(to, vec![n], &v))
}

/// Triangular mel filters, following the spec's reference (mel scale split into
/// `bins + 2` steps, f32 edge computations).
fn mel(inputs: &[&Tensor], to: DType) -> Result<Tensor, OpError> {
    let [bins, len, rate, lo, hi] = inputs else {
        return Err(OpError::shape(format!(
            "MelWeightMatrix expects 5 inputs, got {}",
            inputs.len()
        )));
    };
    let one = |t: &Tensor, what: &str| {
        t.scalar_f64()
            .ok_or_else(|| OpError::value(format!("{what} must have one element")))
    };
    let nb = usize::try_from(one(bins, "num_mel_bins")? as i64)
        .map_err(|e| OpError::value(e.to_string()))?;
    let len = one(len, "dft_length")? as i64;
    let rate = one(rate, "sample_rate")? as i64;
    if len <= 0 || rate <= 0 {
        return Err(OpError::shape(format!(
            "dft_length {len} and sample_rate {rate} must be positive"
        )));
    }
    let f32r = |v: f64| v as f32 as f64;
    let mel_of = |hz: f64| f32r(2595.0 * f32r(f32r(1.0 + f32r(hz / 700.0)).log10()));
    let (lm, hm) = (
        mel_of(one(lo, "lower_edge_hertz")?),
        mel_of(one(hi, "upper_edge_hertz")?),
    );
    let step = f32r((hm - lm) / (nb + 2) as f64);
    let spec = (len / 2 + 1) as usize;
    let edges: Vec<i64> = (0..nb + 2)
        .map(|i| {
            let m = i as f64 * step + lm;
            let hz = 700.0 * (10f64.powf(m / 2595.0) - 1.0);
            (((len + 1) as f64 * hz) / rate as f64).floor() as i64
        })
        .collect();
    let mut out = vec![0.0; spec * nb];
    let mut set = |j: i64, i: usize, v: f64| -> Result<(), OpError> {
        if j < 0 || j as usize >= spec {
            return Err(OpError::value(format!(
                "mel filter edge {j} outside [0, {spec})"
            )));
        }
        out[j as usize * nb + i] = v;
        Ok(())
    };
    for i in 0..nb {
        let (l, c, h) = (edges[i], edges[i + 1], edges[i + 2]);
        if c == l {
            set(c, i, 1.0)?;
        } else {
            for j in l..=c {
                set(j, i, (j - l) as f64 / (c - l) as f64)?;
            }
        }
        if h > c {
            for j in c..h {
                set(j, i, (h - j) as f64 / (h - c) as f64)?;
            }
        }
    }
    Ok(Tensor::from_f64(to, vec![spec, nb], &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn det_of_permutation_and_singular() {
        let x = Tensor::from_vec(vec![2, 2, 2], vec![0f32, 1., 1., 0., 1., 2., 2., 4.]);
        assert_eq!(det(&x).unwrap().to_vec::<f32>(), vec![-1., 0.]);
    }

    #[test]
    fn dft_then_inverse_roundtrips() {
        let x = Tensor::from_vec(vec![1, 4, 1], vec![1f64, 2., 3., 4.]);
        let f = dft(&x, None, 1, false, true).unwrap();
        assert_eq!(f.shape(), [1, 3, 2]);
        let y = dft(&f, Some(4), 1, true, true).unwrap();
        for (a, b) in y.to_vec::<f64>().iter().zip([1., 2., 3., 4.]) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
