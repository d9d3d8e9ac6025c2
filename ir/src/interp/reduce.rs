//! Reference evaluation of reductions, arg-reductions, scans and top-k.
//!
//! Floats are combined in f64 and rounded once to the output dtype; integers are
//! combined in i128 and wrapped to the output dtype (numpy's behaviour for sums and
//! products that overflow).

use crate::error::OpError;
use crate::op::{ReduceKind, ReduceOp};
use crate::{DType, Tensor};

/// Evaluates a reduction-family op.
pub(super) fn eval(op: &ReduceOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let x = *inputs.first().ok_or(OpError::value("missing input"))?;
    match op {
        ReduceOp::Reduce {
            kind,
            axes,
            keepdims,
        } => reduce(*kind, x, axes, *keepdims).map(|t| vec![t]),
        ReduceOp::ReduceDynamic {
            kind,
            keepdims,
            noop_with_empty_axes,
        } => {
            let listed = inputs
                .get(1)
                .ok_or(OpError::attribute("missing axes input"))?
                .to_i64_vec();
            let rank = x.rank();
            let mut axes = Vec::with_capacity(listed.len());
            for a in listed {
                axes.push(wrap_axis(a, rank)?);
            }
            if axes.is_empty() && !noop_with_empty_axes {
                axes = (0..rank).collect();
            }
            axes.sort_unstable();
            axes.dedup();
            reduce(*kind, x, &axes, *keepdims).map(|t| vec![t])
        }
        ReduceOp::CumSumDynamic { exclusive, reverse }
        | ReduceOp::CumProdDynamic { exclusive, reverse } => {
            let a = inputs
                .get(1)
                .ok_or(OpError::attribute("missing axis input"))?
                .scalar_i64()
                .ok_or(OpError::attribute(
                    "cumulative op: axis must have exactly one element",
                ))?;
            let prod = matches!(op, ReduceOp::CumProdDynamic { .. });
            scan(x, wrap_axis(a, x.rank())?, *exclusive, *reverse, prod).map(|t| vec![t])
        }
        ReduceOp::ArgMax {
            axis,
            keepdims,
            select_last_index,
        } => arg_reduce(x, *axis, *keepdims, *select_last_index, true).map(|t| vec![t]),
        ReduceOp::ArgMin {
            axis,
            keepdims,
            select_last_index,
        } => arg_reduce(x, *axis, *keepdims, *select_last_index, false).map(|t| vec![t]),
        ReduceOp::CumSum {
            axis,
            exclusive,
            reverse,
        } => scan(x, *axis, *exclusive, *reverse, false).map(|t| vec![t]),
        ReduceOp::CumProd {
            axis,
            exclusive,
            reverse,
        } => scan(x, *axis, *exclusive, *reverse, true).map(|t| vec![t]),
        ReduceOp::TopK {
            axis,
            largest,
            sorted: _,
        } => {
            let k = inputs
                .get(1)
                .ok_or(OpError::value("TopK needs the k input"))?
                .scalar_i64()
                .ok_or(OpError::value("TopK: k must have exactly one element"))?;
            top_k(x, *axis, k, *largest)
        }
    }
}

/// A possibly negative run-time axis, checked against `rank`.
fn wrap_axis(a: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let w = if a < 0 { a + r } else { a };
    if w < 0 || w >= r.max(1) {
        return Err(OpError::attribute(format!(
            "axis {a} out of range for rank {rank}"
        )));
    }
    Ok(w as usize)
}

/// Splits `shape` around `axis` into (outer, n, inner) extents.
pub(crate) fn split_at_axis(
    shape: &[usize],
    axis: usize,
) -> Result<(usize, usize, usize), OpError> {
    if shape.is_empty() && axis == 0 {
        return Ok((1, 1, 1));
    }
    if axis >= shape.len() {
        return Err(OpError::attribute(format!(
            "axis {axis} out of range for shape {shape:?} (rank {})",
            shape.len()
        )));
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

/// The output shape of a reduction of `shape` over `axes`.
fn out_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// For every input element (row-major), the flat index of the output element it
/// reduces into, and the number of outputs.
fn group_of(shape: &[usize], axes: &[usize]) -> (Vec<usize>, usize) {
    let rank = shape.len();
    let mut strides = vec![0usize; rank];
    let mut acc = 1;
    for i in (0..rank).rev() {
        if !axes.contains(&i) {
            strides[i] = acc;
            acc *= shape[i];
        }
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let mut flat = 0usize;
    for _ in 0..n {
        out.push(flat);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            flat += strides[ax];
            if idx[ax] < shape[ax] {
                break;
            }
            flat -= strides[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
    (out, acc)
}

/// The smallest and largest values of an integer (or bool) dtype.
fn int_bounds(dt: DType) -> (i128, i128) {
    match dt {
        DType::I8 => (i8::MIN as i128, i8::MAX as i128),
        DType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DType::I64 => (i64::MIN as i128, i64::MAX as i128),
        DType::U8 => (0, u8::MAX as i128),
        DType::U16 => (0, u16::MAX as i128),
        DType::U32 => (0, u32::MAX as i128),
        DType::U64 => (0, u64::MAX as i128),
        _ => (0, 1),
    }
}

/// Integer elements widened to i128 (u64 read as unsigned).
fn to_i128_vec(x: &Tensor) -> Vec<i128> {
    if x.dtype() == DType::U64 {
        x.to_vec::<u64>().into_iter().map(|v| v as i128).collect()
    } else {
        x.to_i64_vec().into_iter().map(|v| v as i128).collect()
    }
}

/// An i128 result as a tensor of `dt`, wrapping like a C cast.
fn from_i128(dt: DType, shape: Vec<usize>, v: &[i128]) -> Tensor {
    let w: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Tensor::from_i64(dt, shape, &w)
}

fn reduce(kind: ReduceKind, x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor, OpError> {
    let shape = x.shape();
    if let Some(&a) = axes.iter().find(|&&a| a >= shape.len().max(1)) {
        return Err(OpError::attribute(format!(
            "axis {a} out of range for shape {shape:?}"
        )));
    }
    let oshape = out_shape(shape, axes, keepdims);
    let (group, n_out) = group_of(shape, axes);
    let mut count = vec![0usize; n_out];
    for &g in &group {
        count[g] += 1;
    }
    let dt = x.dtype();
    let exact_int = (dt.is_int() || dt == DType::Bool)
        && matches!(
            kind,
            ReduceKind::Sum
                | ReduceKind::Prod
                | ReduceKind::Max
                | ReduceKind::Min
                | ReduceKind::L1
                | ReduceKind::SumSquare
                | ReduceKind::Mean
        );
    if exact_int {
        let v = to_i128_vec(x);
        let (lo, hi) = int_bounds(dt);
        let init = match kind {
            ReduceKind::Prod => 1,
            ReduceKind::Max => lo,
            ReduceKind::Min => hi,
            _ => 0,
        };
        let mut acc = vec![init; n_out];
        for (&x, &g) in v.iter().zip(&group) {
            let a = &mut acc[g];
            *a = match kind {
                ReduceKind::Prod => a.wrapping_mul(x),
                ReduceKind::Max => (*a).max(x),
                ReduceKind::Min => (*a).min(x),
                ReduceKind::L1 => a.wrapping_add(x.abs()),
                ReduceKind::SumSquare => a.wrapping_add(x.wrapping_mul(x)),
                _ => a.wrapping_add(x),
            };
        }
        if kind == ReduceKind::Mean {
            for (a, &c) in acc.iter_mut().zip(&count) {
                if c == 0 {
                    return Err(OpError::value("integer mean of an empty set"));
                }
                *a /= c as i128;
            }
        }
        return Ok(from_i128(dt, oshape, &acc));
    }
    let v = x.to_f64_vec();
    // ln Σeˣ is computed as m + ln Σe^(x−m) with m the largest finite element.
    let mut shift = vec![0.0f64; n_out];
    if kind == ReduceKind::LogSumExp {
        let mut m = vec![f64::NEG_INFINITY; n_out];
        for (&x, &g) in v.iter().zip(&group) {
            if x.is_finite() && x > m[g] {
                m[g] = x;
            }
        }
        for (s, m) in shift.iter_mut().zip(m) {
            *s = if m.is_finite() { m } else { 0.0 };
        }
    }
    let init = match kind {
        ReduceKind::Prod => 1.0,
        ReduceKind::Max => f64::NEG_INFINITY,
        ReduceKind::Min => f64::INFINITY,
        _ => 0.0,
    };
    let mut acc = vec![init; n_out];
    for (&x, &g) in v.iter().zip(&group) {
        let a = &mut acc[g];
        *a = match kind {
            ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => *a + x,
            ReduceKind::Prod => *a * x,
            ReduceKind::Max => {
                if x.is_nan() || x > *a {
                    x
                } else {
                    *a
                }
            }
            ReduceKind::Min => {
                if x.is_nan() || x < *a {
                    x
                } else {
                    *a
                }
            }
            ReduceKind::L1 => *a + x.abs(),
            ReduceKind::L2 | ReduceKind::SumSquare => *a + x * x,
            ReduceKind::LogSumExp => *a + (x - shift[g]).exp(),
        };
        // Max/Min propagate NaN: once NaN, stay NaN.
        if matches!(kind, ReduceKind::Max | ReduceKind::Min) && x.is_nan() {
            *a = f64::NAN;
        }
    }
    for (g, a) in acc.iter_mut().enumerate() {
        *a = match kind {
            ReduceKind::Mean => *a / count[g] as f64,
            ReduceKind::L2 => a.sqrt(),
            ReduceKind::LogSum => a.ln(),
            ReduceKind::LogSumExp => a.ln() + shift[g],
            _ => *a,
        };
    }
    if dt.is_int() {
        // Float-valued reductions of integers (L2, LogSum, LogSumExp) truncate like a cast,
        // saturating the infinities of empty sets to the dtype's bounds.
        let (lo, hi) = int_bounds(dt);
        let w: Vec<i128> = acc
            .iter()
            .map(|&a| {
                if a.is_nan() {
                    0
                } else {
                    (a.trunc() as i128).clamp(lo, hi)
                }
            })
            .collect();
        return Ok(from_i128(dt, oshape, &w));
    }
    Ok(Tensor::from_f64(dt, oshape, &acc))
}

/// Comparable keys of a tensor's elements: exact for every dtype.
enum Keys {
    Float(Vec<f64>),
    Int(Vec<i128>),
}

fn keys(x: &Tensor) -> Keys {
    if x.dtype().is_float() {
        Keys::Float(x.to_f64_vec())
    } else {
        Keys::Int(to_i128_vec(x))
    }
}

/// Index along the line (start `base`, stride `step`, length `n`) of the best
/// element; NaN counts as the best, like numpy.
fn best_index<T: PartialOrd + Copy>(
    v: &[T],
    base: usize,
    step: usize,
    n: usize,
    max: bool,
    last: bool,
    is_nan: impl Fn(T) -> bool,
) -> usize {
    let mut best = 0;
    for i in 1..n {
        let (b, x) = (v[base + best * step], v[base + i * step]);
        if is_nan(b) {
            if last && is_nan(x) {
                best = i;
            }
            continue;
        }
        let better = is_nan(x)
            || if max {
                x > b || (last && x == b)
            } else {
                x < b || (last && x == b)
            };
        if better {
            best = i;
        }
    }
    best
}

fn arg_reduce(
    x: &Tensor,
    axis: usize,
    keepdims: bool,
    last: bool,
    max: bool,
) -> Result<Tensor, OpError> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis)?;
    if n == 0 {
        return Err(OpError::attribute(format!(
            "arg-reduction over an empty axis {axis} of shape {:?}",
            x.shape()
        )));
    }
    let keys = keys(x);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * n * inner + i;
            let idx = match &keys {
                Keys::Float(v) => best_index(v, base, inner, n, max, last, f64::is_nan),
                Keys::Int(v) => best_index(v, base, inner, n, max, last, |_| false),
            };
            out.push(idx as i64);
        }
    }
    let shape = if x.rank() == 0 {
        vec![]
    } else {
        out_shape(x.shape(), &[axis], keepdims)
    };
    Ok(Tensor::from_vec(shape, out))
}

/// Running sum (or product, when `prod`) along `axis`.
fn scan(
    x: &Tensor,
    axis: usize,
    exclusive: bool,
    reverse: bool,
    prod: bool,
) -> Result<Tensor, OpError> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis)?;
    let order: Vec<usize> = if reverse {
        (0..n).rev().collect()
    } else {
        (0..n).collect()
    };
    let dt = x.dtype();
    if dt.is_float() {
        let v = x.to_f64_vec();
        let out = scan_lines(
            &v,
            outer,
            n,
            inner,
            &order,
            exclusive,
            prod as u8 as f64,
            |a, b| {
                if prod {
                    a * b
                } else {
                    a + b
                }
            },
        );
        Ok(Tensor::from_f64(dt, x.shape().to_vec(), &out))
    } else {
        let v = to_i128_vec(x);
        // Wrapping to the dtype after every step keeps i128 products from overflowing
        // and gives the same result as wrapping once at the end.
        let (lo, hi) = int_bounds(dt);
        let wrap = move |a: i128| {
            let span = hi - lo + 1;
            (a - lo).rem_euclid(span) + lo
        };
        let out = scan_lines(
            &v,
            outer,
            n,
            inner,
            &order,
            exclusive,
            prod as i128,
            |a, b| {
                if prod {
                    wrap(a.wrapping_mul(b))
                } else {
                    wrap(a.wrapping_add(b))
                }
            },
        );
        Ok(from_i128(dt, x.shape().to_vec(), &out))
    }
}

/// Scans every line along the middle axis of an (outer, n, inner) block in `order`.
#[allow(clippy::too_many_arguments)]
fn scan_lines<T: Copy>(
    v: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    order: &[usize],
    exclusive: bool,
    identity: T,
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    let mut out = vec![identity; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = identity;
            for &k in order {
                let at = (o * n + k) * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = f(acc, v[at]);
                } else {
                    acc = f(acc, v[at]);
                    out[at] = acc;
                }
            }
        }
    }
    out
}

fn top_k(x: &Tensor, axis: usize, k: i64, largest: bool) -> Result<Vec<Tensor>, OpError> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis)?;
    if k < 0 || k as usize > n {
        return Err(OpError::attribute(format!(
            "TopK: k = {k} is out of range for axis {axis} of size {n}"
        )));
    }
    let k = k as usize;
    let keys = keys(x);
    // Orders line positions: larger (or smaller) first, NaN first when largest,
    // equal values by lower index (the sort is stable).
    let cmp = |a: usize, b: usize| -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        let o = match &keys {
            Keys::Float(v) => {
                let (x, y) = (v[a], v[b]);
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Equal,
                    (true, false) => Greater,
                    (false, true) => Less,
                    _ => x.partial_cmp(&y).unwrap_or(Equal),
                }
            }
            Keys::Int(v) => v[a].cmp(&v[b]),
        };
        if largest {
            o.reverse()
        } else {
            o
        }
    };
    let mut idx_out = vec![0i64; outer * k * inner];
    let mut src = vec![0usize; outer * k * inner];
    let mut line: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            line.clear();
            line.extend((0..n).map(|j| (o * n + j) * inner + i));
            line.sort_by(|&a, &b| cmp(a, b));
            for (r, &at) in line.iter().take(k).enumerate() {
                let dst = (o * k + r) * inner + i;
                src[dst] = at;
                idx_out[dst] = ((at - o * n * inner - i) / inner) as i64;
            }
        }
    }
    let mut shape = x.shape().to_vec();
    if !shape.is_empty() {
        shape[axis] = k;
    }
    let values = crate::with_dtype!(x.dtype(), T => {
        let all = x.to_vec::<T>();
        Tensor::from_vec::<T>(shape.clone(), src.iter().map(|&s| all[s]).collect())
    });
    Ok(vec![values, Tensor::from_vec(shape, idx_out)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: ReduceOp, x: Tensor) -> Vec<Tensor> {
        eval(&op, &[&x]).unwrap()
    }

    fn red(kind: ReduceKind, axes: &[usize], keepdims: bool) -> ReduceOp {
        ReduceOp::Reduce {
            kind,
            axes: axes.to_vec(),
            keepdims,
        }
    }

    #[test]
    fn reductions_over_axes() {
        let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        type Case = (ReduceKind, &'static [usize], Vec<usize>, Vec<f64>);
        let cases: &[Case] = &[
            (ReduceKind::Sum, &[1], vec![2], vec![6.0, 15.0]),
            (ReduceKind::Mean, &[0], vec![3], vec![2.5, 3.5, 4.5]),
            (ReduceKind::Max, &[0, 1], vec![], vec![6.0]),
            (ReduceKind::Prod, &[1], vec![2], vec![6.0, 120.0]),
            (ReduceKind::SumSquare, &[1], vec![2], vec![14.0, 77.0]),
            // Empty axes: each element is its own group.
            (
                ReduceKind::SumSquare,
                &[],
                vec![2, 3],
                vec![1., 4., 9., 16., 25., 36.],
            ),
        ];
        for (kind, axes, shape, want) in cases {
            let y = &run(red(*kind, axes, false), x.clone())[0];
            assert_eq!(y.shape(), &shape[..], "{kind:?}");
            assert_eq!(y.to_f64_vec(), *want, "{kind:?}");
        }
    }

    #[test]
    fn empty_set_reductions_give_identities() {
        let x = Tensor::from_vec(vec![2, 0, 4], Vec::<f32>::new());
        let max = &run(red(ReduceKind::Max, &[1], true), x.clone())[0];
        assert_eq!(max.shape(), &[2, 1, 4]);
        assert!(max.to_f64_vec().iter().all(|&v| v == f64::NEG_INFINITY));
        let prod = &run(red(ReduceKind::Prod, &[1], false), x.clone())[0];
        assert!(prod.to_f64_vec().iter().all(|&v| v == 1.0));
        let xi = Tensor::from_vec(vec![0, 2], Vec::<i32>::new());
        let min = &run(red(ReduceKind::Min, &[0], false), xi)[0];
        assert_eq!(min.to_vec::<i32>(), vec![i32::MAX, i32::MAX]);
    }

    #[test]
    fn arg_reductions_break_ties() {
        let x = Tensor::from_vec(vec![2, 2], vec![2i32, 2, 3, 1]);
        let first = ReduceOp::ArgMax {
            axis: 1,
            keepdims: false,
            select_last_index: false,
        };
        assert_eq!(run(first, x.clone())[0].to_vec::<i64>(), vec![0, 0]);
        let last = ReduceOp::ArgMax {
            axis: 1,
            keepdims: true,
            select_last_index: true,
        };
        let y = &run(last, x)[0];
        assert_eq!(y.shape(), &[2, 1]);
        assert_eq!(y.to_vec::<i64>(), vec![1, 0]);
    }

    #[test]
    fn cumsum_exclusive_reverse() {
        let x = Tensor::from_vec(vec![4], vec![1i64, 2, 3, 4]);
        let op = |exclusive, reverse| ReduceOp::CumSum {
            axis: 0,
            exclusive,
            reverse,
        };
        assert_eq!(
            run(op(false, false), x.clone())[0].to_vec::<i64>(),
            vec![1, 3, 6, 10]
        );
        assert_eq!(
            run(op(true, false), x.clone())[0].to_vec::<i64>(),
            vec![0, 1, 3, 6]
        );
        assert_eq!(run(op(true, true), x)[0].to_vec::<i64>(), vec![9, 7, 4, 0]);
    }

    #[test]
    fn cumprod_exclusive_reverse_and_wrapping() {
        let x = Tensor::from_vec(vec![4], vec![1i64, 2, 3, 4]);
        let op = |exclusive, reverse| ReduceOp::CumProd {
            axis: 0,
            exclusive,
            reverse,
        };
        assert_eq!(
            run(op(false, false), x.clone())[0].to_vec::<i64>(),
            vec![1, 2, 6, 24]
        );
        assert_eq!(
            run(op(true, true), x)[0].to_vec::<i64>(),
            vec![24, 12, 4, 1]
        );
        let big = Tensor::from_vec(vec![3], vec![1i32 << 20, 1 << 20, 3]);
        assert_eq!(
            run(op(false, false), big)[0].to_vec::<i32>(),
            vec![1 << 20, 0, 0]
        );
    }

    #[test]
    fn top_k_prefers_lower_index_on_ties() {
        let x = Tensor::from_vec(vec![5], vec![1.0f32, 3.0, 3.0, 0.0, 3.0]);
        let k = Tensor::from_vec(vec![1], vec![2i64]);
        let op = ReduceOp::TopK {
            axis: 0,
            largest: true,
            sorted: true,
        };
        let out = eval(&op, &[&x, &k]).unwrap();
        assert_eq!(out[0].to_vec::<f32>(), vec![3.0, 3.0]);
        assert_eq!(out[1].to_vec::<i64>(), vec![1, 2]);
        let bad = Tensor::from_vec(vec![1], vec![9i64]);
        assert!(eval(&op, &[&x, &bad]).is_err());
    }
}
