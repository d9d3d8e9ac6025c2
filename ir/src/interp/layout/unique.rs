//! [`crate::op::LayoutOp::Unique`]: distinct elements or slices, sorted or in
//! first-occurrence order, with indices, inverse and counts.

use super::elements::{take, take_slices};
use crate::error::OpError;
use crate::{DType, Tensor};

/// Sort keys of a tensor's elements, exact for every dtype.
enum UniqueKeys {
    Float(Vec<f64>),
    Int(Vec<i128>),
}

impl UniqueKeys {
    fn of(x: &Tensor) -> Self {
        match x.dtype() {
            DType::U64 => UniqueKeys::Int(x.to_vec::<u64>().into_iter().map(i128::from).collect()),
            d if d.is_float() => UniqueKeys::Float(x.to_f64_vec()),
            _ => UniqueKeys::Int(x.to_i64_vec().into_iter().map(i128::from).collect()),
        }
    }

    /// Compares elements `i` and `j`: NaNs equal each other and exceed every number.
    fn cmp(&self, i: usize, j: usize) -> std::cmp::Ordering {
        match self {
            UniqueKeys::Int(v) => v[i].cmp(&v[j]),
            UniqueKeys::Float(v) => match (v[i].is_nan(), v[j].is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => v[i].partial_cmp(&v[j]).unwrap_or(std::cmp::Ordering::Equal),
            },
        }
    }
}

/// [`LayoutOp::Unique`].
pub(super) fn unique(
    x: &Tensor,
    axis: Option<usize>,
    sorted: bool,
) -> Result<Vec<Tensor>, OpError> {
    // Slices are `n` lines of `len` elements; element e of slice k is at
    // (o·n + k)·inner + i for e = o·inner + i.
    let (outer, n, inner) = match axis {
        None => (1, x.numel(), 1),
        Some(a) if a < x.rank() => {
            let sh = x.shape();
            (
                sh[..a].iter().product(),
                sh[a],
                sh[a + 1..].iter().product(),
            )
        }
        Some(a) => {
            return Err(OpError::attribute(format!(
                "Unique: axis {a} out of range for rank {}",
                x.rank()
            )))
        }
    };
    let keys = UniqueKeys::of(x);
    let cmp_slices = |a: usize, b: usize| {
        for o in 0..outer {
            for i in 0..inner {
                let c = keys.cmp((o * n + a) * inner + i, (o * n + b) * inner + i);
                if c.is_ne() {
                    return c;
                }
            }
        }
        std::cmp::Ordering::Equal
    };
    let mut order: Vec<usize> = (0..n).collect();
    // Stable: equal slices keep their input order, so each group starts with its first.
    order.sort_by(|&a, &b| cmp_slices(a, b));
    // Groups of equal slices: (first occurrence, count), in sorted order.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut group_of = vec![0usize; n];
    for (p, &k) in order.iter().enumerate() {
        if p == 0 || cmp_slices(order[p - 1], k).is_ne() {
            groups.push((k, 0));
        }
        let g = groups.len() - 1;
        groups[g].1 += 1;
        group_of[k] = g;
    }
    let mut rank_of: Vec<usize> = (0..groups.len()).collect();
    if !sorted {
        let mut by_first: Vec<usize> = (0..groups.len()).collect();
        by_first.sort_by_key(|&g| groups[g].0);
        for (r, &g) in by_first.iter().enumerate() {
            rank_of[g] = r;
        }
        let old = groups.clone();
        for (g, &r) in rank_of.iter().enumerate() {
            groups[r] = old[g];
        }
    }
    let firsts: Vec<usize> = groups.iter().map(|g| g.0).collect();
    let y = match axis {
        None => take(x, vec![firsts.len()], &firsts)?,
        Some(a) => take_slices(x, a, &firsts)?,
    };
    let i64s = |v: Vec<usize>| {
        let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
        Tensor::from_vec(vec![v.len()], v)
    };
    let inverse: Vec<usize> = group_of.iter().map(|&g| rank_of[g]).collect();
    let counts: Vec<usize> = groups.iter().map(|g| g.1).collect();
    Ok(vec![y, i64s(firsts), i64s(inverse), i64s(counts)])
}
