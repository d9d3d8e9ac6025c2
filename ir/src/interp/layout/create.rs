//! Ops that make a tensor from sizes and values rather than from an input's
//! elements: ConstantOfShape, Range, OneHot, EyeLike.

use super::elements::{element_bytes, gather_with, index_values, input};
use crate::error::OpError;
use crate::{DType, Tensor};

/// [`crate::op::LayoutOp::ConstantOfShape`]: `value` at the shape in `x`.
pub(super) fn constant_of_shape(x: &Tensor, dtype: DType, value: f64) -> Result<Tensor, OpError> {
    let dims = index_values(x, "ConstantOfShape shape")?;
    if dims.iter().any(|&d| d < 0) {
        return Err(OpError::shape(format!(
            "negative dim in ConstantOfShape shape {dims:?}"
        )));
    }
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    let bytes = element_bytes(dtype, value).repeat(n);
    Tensor::from_bytes(dtype, shape, bytes.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// [`crate::op::LayoutOp::Range`]: `start, start + delta, …` below `limit`.
pub(super) fn range(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let (s, l, d) = (
        inputs[0],
        input(inputs, 1, "Range")?,
        input(inputs, 2, "Range")?,
    );
    let dtype = s.dtype();
    if l.dtype() != dtype || d.dtype() != dtype {
        return Err(OpError::dtype("Range inputs differ in dtype"));
    }
    let scalar = |t: &Tensor| {
        t.scalar_f64()
            .ok_or(OpError::shape("Range inputs must be scalars"))
    };
    if dtype.is_int() {
        let ints = |t: &Tensor| {
            t.scalar_i64()
                .ok_or(OpError::shape("Range inputs must be scalars"))
        };
        let (s, l, d) = (ints(s)?, ints(l)?, ints(d)?);
        if d == 0 {
            return Err(OpError::value("Range delta is 0"));
        }
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        return Ok(Tensor::from_i64(dtype, vec![n], &v));
    }
    let (s, l, d) = (scalar(s)?, scalar(l)?, scalar(d)?);
    if d == 0.0 || !d.is_finite() {
        return Err(OpError::value(format!("Range delta {d} is invalid")));
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if !n.is_finite() || n > 1e10 {
        return Err(OpError::value("Range has too many elements"));
    }
    let v: Vec<f64> = (0..n as usize).map(|i| s + i as f64 * d).collect();
    Ok(Tensor::from_f64(dtype, vec![n as usize], &v))
}

/// [`crate::op::LayoutOp::OneHot`]: `values[1]` at each index along `axis`, `values[0]` elsewhere.
pub(super) fn one_hot(inputs: &[&Tensor], axis: i64) -> Result<Tensor, OpError> {
    let (ind, depth, values) = (
        inputs[0],
        input(inputs, 1, "OneHot")?,
        input(inputs, 2, "OneHot")?,
    );
    let depth = depth
        .scalar_f64()
        .ok_or(OpError::value("OneHot depth must be a scalar"))?;
    if depth < 1.0 || !depth.is_finite() {
        return Err(OpError::value(format!("OneHot depth {depth} is invalid")));
    }
    let depth = depth as usize;
    if values.numel() != 2 {
        return Err(OpError::value("OneHot values must have two elements"));
    }
    let a = crate::op::util::axis(axis, ind.rank() + 1)?;
    let idx: Vec<i64> = ind.to_f64_vec().iter().map(|&v| v as i64).collect();
    let mut shape = ind.shape().to_vec();
    shape.insert(a, depth);
    gather_with(values, values.dtype(), shape, None, |i| {
        let mut flat = 0;
        for (d, &v) in i.iter().enumerate() {
            if d != a {
                flat = flat * ind.shape()[if d < a { d } else { d - 1 }] + v;
            }
        }
        let mut k = idx[flat];
        if k < 0 {
            k += depth as i64;
        }
        Ok(Some((k == i[a] as i64) as usize))
    })
}

/// [`crate::op::LayoutOp::EyeLike`]: ones on diagonal `k` of `x`'s 2-D shape.
pub(super) fn eye_like(x: &Tensor, k: i64, dtype: DType) -> Result<Tensor, OpError> {
    if x.rank() != 2 {
        return Err(OpError::shape("EyeLike needs a 2-D input"));
    }
    let (r, c) = (x.shape()[0], x.shape()[1]);
    let mut v = vec![0.0f64; r * c];
    for i in 0..r {
        let j = i as i64 + k;
        if j >= 0 && (j as usize) < c {
            v[i * c + j as usize] = 1.0;
        }
    }
    Ok(Tensor::from_f64(dtype, vec![r, c], &v))
}
