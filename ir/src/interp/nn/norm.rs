//! Normalizations: batch (inference), instance, group, LRN, Lp, mean-variance.

use crate::error::OpError;
use rayon::prelude::*;

use crate::Tensor;

fn float_only(x: &Tensor, what: &str) -> Result<(), OpError> {
    if x.dtype().is_float() {
        Ok(())
    } else {
        Err(OpError::dtype(format!("{what} of {}", x.dtype())))
    }
}

/// A per-channel parameter: `len` values, or an error naming it.
fn per_channel(t: &Tensor, len: usize, name: &str) -> Result<Vec<f64>, OpError> {
    if t.numel() != len {
        return Err(OpError::shape(format!(
            "{name} of shape {:?}, expected {len} elements",
            t.shape()
        )));
    }
    Ok(t.to_f64_vec())
}

/// `[x, scale, bias, mean, var]`: inference batch normalization over axis 1.
pub(super) fn batch_norm(inputs: &[&Tensor], epsilon: f32) -> Result<Tensor, OpError> {
    let [x, scale, bias, mean, var] = inputs else {
        return Err(OpError::shape(format!(
            "BatchNorm takes 5 inputs, got {}",
            inputs.len()
        )));
    };
    float_only(x, "BatchNorm")?;
    let xs = x.shape();
    let c = *xs.get(1).unwrap_or(&1);
    let inner: usize = xs.iter().skip(2).product();
    let (s, b, m, v) = (
        per_channel(scale, c, "scale")?,
        per_channel(bias, c, "bias")?,
        per_channel(mean, c, "mean")?,
        per_channel(var, c, "var")?,
    );
    let eps = epsilon as f64;
    let mut y = x.to_f64_vec();
    y.par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(i, chunk)| {
            let ch = i % c.max(1);
            let k = s[ch] / (v[ch] + eps).sqrt();
            for e in chunk {
                *e = (*e - m[ch]) * k + b[ch];
            }
        });
    Ok(Tensor::from_f64(x.dtype(), xs.to_vec(), &y))
}

/// Normalizes each chunk of `group` consecutive elements to zero mean and unit
/// variance (population variance plus `eps`), in place.
fn normalize_chunks(y: &mut [f64], group: usize, eps: f64) {
    y.par_chunks_mut(group.max(1)).for_each(|ch| {
        let n = ch.len() as f64;
        let mean = ch.iter().sum::<f64>() / n;
        let var = ch.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        ch.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    });
}

/// `[x, scale, bias]`: normalization over the spatial axes of each (n, c).
pub(super) fn instance_norm(inputs: &[&Tensor], epsilon: f32) -> Result<Tensor, OpError> {
    let [x, scale, bias] = inputs else {
        return Err(OpError::shape(format!(
            "InstanceNorm takes 3 inputs, got {}",
            inputs.len()
        )));
    };
    float_only(x, "InstanceNorm")?;
    let xs = x.shape();
    if xs.len() < 2 {
        return Err(OpError::shape(format!("InstanceNorm of rank {}", xs.len())));
    }
    let c = xs[1];
    let inner: usize = xs[2..].iter().product();
    let (s, b) = (
        per_channel(scale, c, "scale")?,
        per_channel(bias, c, "bias")?,
    );
    let mut y = x.to_f64_vec();
    normalize_chunks(&mut y, inner, epsilon as f64);
    y.par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(i, ch)| ch.iter_mut().for_each(|v| *v = *v * s[i % c] + b[i % c]));
    Ok(Tensor::from_f64(x.dtype(), xs.to_vec(), &y))
}

/// `[x, scale, bias]`: normalization over groups of channels; scale and bias hold
/// one value per channel, or one per group (opset-18 `GroupNormalization`).
pub(super) fn group_norm(
    inputs: &[&Tensor],
    epsilon: f32,
    num_groups: usize,
) -> Result<Tensor, OpError> {
    let [x, scale, bias] = inputs else {
        return Err(OpError::attribute(format!(
            "GroupNorm takes 3 inputs, got {}",
            inputs.len()
        )));
    };
    float_only(x, "GroupNorm")?;
    let xs = x.shape();
    if xs.len() < 2 || num_groups == 0 || xs[1] % num_groups != 0 {
        return Err(OpError::attribute(format!(
            "GroupNorm of {xs:?} into {num_groups} groups"
        )));
    }
    let c = xs[1];
    let inner: usize = xs[2..].iter().product();
    let per_group = scale.numel() == num_groups && num_groups != c;
    let len = if per_group { num_groups } else { c };
    let (s, b) = (
        per_channel(scale, len, "scale")?,
        per_channel(bias, len, "bias")?,
    );
    let mut y = x.to_f64_vec();
    normalize_chunks(&mut y, c / num_groups * inner, epsilon as f64);
    y.par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(i, ch)| {
            let ci = i % c;
            let k = if per_group { ci / (c / num_groups) } else { ci };
            ch.iter_mut().for_each(|v| *v = *v * s[k] + b[k]);
        });
    Ok(Tensor::from_f64(x.dtype(), xs.to_vec(), &y))
}

/// Local response normalization across channels.
pub(super) fn lrn(
    x: &Tensor,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
) -> Result<Tensor, OpError> {
    float_only(x, "LRN")?;
    let xs = x.shape();
    if xs.len() < 2 || size == 0 {
        return Err(OpError::shape(format!("LRN of {xs:?} with size {size}")));
    }
    let c = xs[1];
    let inner: usize = xs[2..].iter().product();
    let xv = x.to_f64_vec();
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let (alpha, beta, bias) = (alpha as f64, beta as f64, bias as f64);
    let mut y = vec![0.0; xv.len()];
    y.par_chunks_mut((c * inner).max(1))
        .enumerate()
        .for_each(|(n, yb)| {
            let xb = &xv[n * c * inner..(n + 1) * c * inner];
            for ci in 0..c {
                let (c0, c1) = (ci.saturating_sub(lo), (ci + hi).min(c - 1));
                for p in 0..inner {
                    let sq: f64 = (c0..=c1).map(|k| xb[k * inner + p].powi(2)).sum();
                    yb[ci * inner + p] =
                        xb[ci * inner + p] / (bias + alpha / size as f64 * sq).powf(beta);
                }
            }
        });
    Ok(Tensor::from_f64(x.dtype(), xs.to_vec(), &y))
}

/// For every element, the index of its group when `axes` are reduced; and the count.
fn groups(shape: &[usize], axes: &[usize]) -> (Vec<usize>, usize) {
    let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0; shape.len()];
    for _ in 0..n {
        let mut g = 0;
        for &a in &kept {
            g = g * shape[a] + idx[a];
        }
        out.push(g);
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    let count = kept.iter().map(|&a| shape[a]).product();
    (out, count)
}

/// x / ‖x‖ₚ along `axis` (p = 1 or 2); 0 where the norm is 0 (an all-zero
/// slice), as the ONNX reference defines it, instead of 0/0.
pub(super) fn lp_normalization(x: &Tensor, axis: usize, p: i64) -> Result<Tensor, OpError> {
    float_only(x, "LpNormalization")?;
    if axis >= x.rank() || !(p == 1 || p == 2) {
        return Err(OpError::attribute(format!(
            "LpNormalization with axis {axis}, p {p} of {:?}",
            x.shape()
        )));
    }
    let (gid, ng) = groups(x.shape(), &[axis]);
    let xv = x.to_f64_vec();
    let mut norm = vec![0.0; ng];
    for (v, &g) in xv.iter().zip(&gid) {
        norm[g] += if p == 1 { v.abs() } else { v * v };
    }
    if p == 2 {
        norm.iter_mut().for_each(|n| *n = n.sqrt());
    }
    let y: Vec<f64> = xv
        .iter()
        .zip(&gid)
        .map(|(v, &g)| if norm[g] == 0.0 { 0.0 } else { v / norm[g] })
        .collect();
    Ok(Tensor::from_f64(x.dtype(), x.shape().to_vec(), &y))
}

/// (x − mean) / (std + 1e-9) over `axes`, std from E[x²] − E[x]².
pub(super) fn mean_variance(x: &Tensor, axes: &[usize]) -> Result<Tensor, OpError> {
    float_only(x, "MeanVarianceNormalization")?;
    if let Some(a) = axes.iter().find(|&&a| a >= x.rank()) {
        return Err(OpError::attribute(format!(
            "axis {a} out of range for {:?}",
            x.shape()
        )));
    }
    let (gid, ng) = groups(x.shape(), axes);
    let xv = x.to_f64_vec();
    let per = (xv.len() / ng.max(1)).max(1) as f64;
    let (mut s, mut s2) = (vec![0.0; ng], vec![0.0; ng]);
    for (v, &g) in xv.iter().zip(&gid) {
        s[g] += v;
        s2[g] += v * v;
    }
    let y: Vec<f64> = xv
        .iter()
        .zip(&gid)
        .map(|(v, &g)| {
            let mean = s[g] / per;
            let var = (s2[g] / per - mean * mean).max(0.0);
            (v - mean) / (var.sqrt() + 1e-9)
        })
        .collect();
    Ok(Tensor::from_f64(x.dtype(), x.shape().to_vec(), &y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_norm_accepts_per_group_and_per_channel_params() {
        let x = Tensor::from_vec(vec![1, 4, 1], vec![1.0f32, 3.0, 5.0, 9.0]);
        let ones = |n| Tensor::from_vec(vec![n], vec![1.0f32; n]);
        let zeros = |n| Tensor::from_vec(vec![n], vec![0.0f32; n]);
        let a = group_norm(&[&x, &ones(2), &zeros(2)], 0.0, 2).unwrap();
        let b = group_norm(&[&x, &ones(4), &zeros(4)], 0.0, 2).unwrap();
        assert_eq!(a.to_f64_vec(), vec![-1.0, 1.0, -1.0, 1.0]);
        assert_eq!(a, b);
    }

    #[test]
    fn lrn_window_is_asymmetric_for_even_sizes() {
        // size 2: channel c sums c and c+1.
        let x = Tensor::from_vec(vec![1, 2, 1], vec![1.0f32, 2.0]);
        let y = lrn(&x, 2, 2.0, 1.0, 1.0).unwrap();
        assert_eq!(y.to_vec::<f32>(), vec![1.0 / 6.0, 2.0 / 5.0]);
    }

    #[test]
    fn lp_normalization_of_a_zero_slice_is_zero() {
        // Axis 0: the column (0, 0) has norm 0 and stays 0, not NaN.
        let x = Tensor::from_vec(vec![2, 2], vec![3.0f32, 0.0, 4.0, 0.0]);
        let y = lp_normalization(&x, 0, 2).unwrap();
        assert_eq!(y.to_vec::<f32>(), vec![0.6, 0.0, 0.8, 0.0]);
        let y = lp_normalization(&x, 0, 1).unwrap();
        assert_eq!(y.to_vec::<f32>(), vec![3.0 / 7.0, 0.0, 4.0 / 7.0, 0.0]);
    }

    #[test]
    fn lp_normalization_of_an_empty_tensor_is_empty() {
        let x = Tensor::from_vec(vec![0, 3], Vec::<f32>::new());
        assert_eq!(lp_normalization(&x, 1, 2).unwrap().shape(), &[0, 3]);
    }
}
