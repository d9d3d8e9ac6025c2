//! Reference evaluation of layout ops (data movement, shapes, casts, creation).
//!
//! Pure data movement is dtype-agnostic: an op computes, for every output element,
//! which input element it copies (or that it takes a fill value), and the bytes are
//! moved element by element. Only scatter reductions and `Range` look at values.

use super::broadcast::{broadcast_shapes, BroadcastIndex};
use crate::op::{shape_range, slice_bounds, slice_len, LayoutOp, PadMode, ScatterReduction};
use crate::{with_dtype, DType, Element, Tensor};

/// Row-major strides of `shape`, in elements.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Calls `f` with every multi-index of `shape`, in row-major order.
fn for_each_index(
    shape: &[usize],
    mut f: impl FnMut(&[usize]) -> Result<(), String>,
) -> Result<(), String> {
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&idx)?;
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Ok(())
}

/// A tensor of `shape` whose elements are copied from `src` at `index(out_index)`,
/// or set to `fill` where `index` returns `None`.
fn gather_with(
    src: &Tensor,
    dtype: DType,
    shape: Vec<usize>,
    fill: Option<&[u8]>,
    mut index: impl FnMut(&[usize]) -> Result<Option<usize>, String>,
) -> Result<Tensor, String> {
    let es = dtype.size();
    let n: usize = shape.iter().product();
    let data = src.bytes();
    let mut out = Vec::with_capacity(n * es);
    for_each_index(&shape, |idx| {
        match index(idx)? {
            Some(i) => out.extend_from_slice(&data[i * es..(i + 1) * es]),
            None => out.extend_from_slice(fill.ok_or("internal: no fill value")?),
        }
        Ok(())
    })?;
    Tensor::from_bytes(dtype, shape, out.into()).map_err(|e| e.to_string())
}

/// A tensor copying `src`'s elements at the flat `indices`.
fn take(src: &Tensor, shape: Vec<usize>, indices: &[usize]) -> Result<Tensor, String> {
    let es = src.dtype().size();
    let data = src.bytes();
    let mut out = Vec::with_capacity(indices.len() * es);
    for &i in indices {
        out.extend_from_slice(&data[i * es..(i + 1) * es]);
    }
    Tensor::from_bytes(src.dtype(), shape, out.into()).map_err(|e| e.to_string())
}

/// The bytes of one element of `dtype` with value `v`.
fn element_bytes(dtype: DType, v: f64) -> Vec<u8> {
    Tensor::from_f64(dtype, vec![], &[v]).bytes().to_vec()
}

/// Integer index values of an index tensor (floats are rejected).
fn index_values(t: &Tensor, what: &str) -> Result<Vec<i64>, String> {
    if !t.dtype().is_int() {
        return Err(format!("{what} must be integers, got {}", t.dtype()));
    }
    Ok(t.to_i64_vec())
}

/// Normalizes a possibly negative index into `0..n`, or reports it.
fn wrap_index(i: i64, n: usize, what: &str) -> Result<usize, String> {
    let r = if i < 0 { i + n as i64 } else { i };
    if r < 0 || r >= n as i64 {
        return Err(format!("{what} index {i} out of range for size {n}"));
    }
    Ok(r as usize)
}

fn input<'a>(inputs: &[&'a Tensor], i: usize, op: &str) -> Result<&'a Tensor, String> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| format!("{op}: missing input {i}"))
}

/// Evaluates a layout-family op.
pub(super) fn eval(
    op: &LayoutOp,
    inputs: &[&Tensor],
    _n_outputs: usize,
) -> Result<Vec<Tensor>, String> {
    let name = crate::op::OpFamily::name(op);
    let x = input(inputs, 0, name)?;
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        LayoutOp::Identity => one(x.clone()),
        LayoutOp::Cast { to } => one(x.cast(*to)),
        LayoutOp::Reshape { allowzero } => {
            let target = index_values(input(inputs, 1, name)?, "reshape shape")?;
            let dims = reshape_dims(x.shape(), &target, *allowzero)?;
            one(x.reshaped(dims).map_err(|e| e.to_string())?)
        }
        LayoutOp::Transpose { perm } => one(transpose(x, perm)?),
        LayoutOp::Squeeze { axes } => {
            let axes = &runtime_axes(inputs, axes, x.rank())?;
            for &a in axes {
                if x.shape().get(a) != Some(&1) {
                    return Err(format!("cannot squeeze axis {a} of shape {:?}", x.shape()));
                }
            }
            let dims = x
                .shape()
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            one(x.reshaped(dims).map_err(|e| e.to_string())?)
        }
        LayoutOp::Unsqueeze { axes } => {
            let out_rank = x.rank() + inputs.get(1).map_or(axes.len(), |a| a.numel());
            let axes = &runtime_axes(inputs, axes, out_rank)?;
            if axes.iter().any(|&a| a >= out_rank) {
                return Err(format!("unsqueeze axes {axes:?} out of range"));
            }
            let mut src = x.shape().iter();
            let dims = (0..out_rank)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        src.next().copied().unwrap_or(1)
                    }
                })
                .collect();
            one(x.reshaped(dims).map_err(|e| e.to_string())?)
        }
        LayoutOp::Flatten { axis } => {
            if *axis > x.rank() {
                return Err(format!("flatten axis {axis} out of range"));
            }
            let rows = x.shape()[..*axis].iter().product();
            let cols = x.shape()[*axis..].iter().product();
            one(x.reshaped(vec![rows, cols]).map_err(|e| e.to_string())?)
        }
        LayoutOp::Expand => {
            let target = index_values(input(inputs, 1, name)?, "expand shape")?;
            if target.iter().any(|&d| d < 0) {
                return Err(format!("invalid expand shape {target:?}"));
            }
            let target: Vec<usize> = target.iter().map(|&d| d as usize).collect();
            let out = broadcast_shapes(&[x.shape(), &target])
                .ok_or_else(|| format!("cannot expand {:?} to {target:?}", x.shape()))?;
            let idx = BroadcastIndex::new(x.shape(), &out).indices();
            one(take(x, out, &idx)?)
        }
        LayoutOp::Concat { axis } => one(concat(inputs, *axis)?),
        LayoutOp::Split { axis, sizes } => match inputs.get(1) {
            Some(s) => {
                let s = index_values(s, "split sizes")?;
                if s.iter().any(|&v| v < 0) {
                    return Err(format!("negative split sizes {s:?}"));
                }
                split(x, *axis, &s.iter().map(|&v| v as usize).collect::<Vec<_>>())
            }
            None => split(x, *axis, sizes),
        },
        LayoutOp::Slice => one(slice(inputs)?),
        LayoutOp::Gather { axis } => one(gather(x, input(inputs, 1, name)?, *axis)?),
        LayoutOp::GatherElements { axis } => {
            one(gather_elements(x, input(inputs, 1, name)?, *axis)?)
        }
        LayoutOp::GatherND { batch_dims } => {
            one(gather_nd(x, input(inputs, 1, name)?, *batch_dims)?)
        }
        LayoutOp::ScatterND { reduction } => one(scatter_nd(
            x,
            input(inputs, 1, name)?,
            input(inputs, 2, name)?,
            *reduction,
        )?),
        LayoutOp::ScatterElements { axis, reduction } => one(scatter_elements(
            x,
            input(inputs, 1, name)?,
            input(inputs, 2, name)?,
            *axis,
            *reduction,
        )?),
        LayoutOp::Tile => {
            let reps = index_values(input(inputs, 1, name)?, "tile repeats")?;
            if reps.len() != x.rank() || reps.iter().any(|&r| r < 0) {
                return Err(format!(
                    "tile repeats {reps:?} invalid for shape {:?}",
                    x.shape()
                ));
            }
            let shape: Vec<usize> = x
                .shape()
                .iter()
                .zip(&reps)
                .map(|(&d, &r)| d * r as usize)
                .collect();
            let st = strides(x.shape());
            let dims = x.shape().to_vec();
            one(gather_with(x, x.dtype(), shape, None, |idx| {
                Ok(Some(
                    idx.iter()
                        .zip(&dims)
                        .zip(&st)
                        .map(|((&i, &d), &s)| (i % d) * s)
                        .sum(),
                ))
            })?)
        }
        LayoutOp::Pad { mode } => one(pad(inputs, *mode)?),
        LayoutOp::Shape { start, end } => {
            let (s, e) = shape_range(x.rank(), *start, *end);
            one(Tensor::from_vec(
                vec![e - s],
                x.shape()[s..e].iter().map(|&d| d as i64).collect(),
            ))
        }
        LayoutOp::Size => one(Tensor::scalar(x.numel() as i64)),
        LayoutOp::ConstantOfShape { dtype, value } => {
            let dims = index_values(x, "ConstantOfShape shape")?;
            if dims.iter().any(|&d| d < 0) {
                return Err(format!("negative dim in ConstantOfShape shape {dims:?}"));
            }
            let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            let n: usize = shape.iter().product();
            let bytes = element_bytes(*dtype, *value).repeat(n);
            one(Tensor::from_bytes(*dtype, shape, bytes.into()).map_err(|e| e.to_string())?)
        }
        LayoutOp::Range => one(range(inputs)?),
        LayoutOp::Trilu { upper } => {
            let k = match inputs.get(1) {
                Some(k) => k.scalar_i64().ok_or("Trilu k must be a scalar")?,
                None => 0,
            };
            if x.rank() < 2 {
                return Err("Trilu needs rank >= 2".into());
            }
            let r = x.rank();
            let st = strides(x.shape());
            let zero = element_bytes(x.dtype(), 0.0);
            let upper = *upper;
            one(gather_with(
                x,
                x.dtype(),
                x.shape().to_vec(),
                Some(&zero),
                |idx| {
                    let d = idx[r - 1] as i64 - idx[r - 2] as i64;
                    let keep = if upper { d >= k } else { d <= k };
                    Ok(keep.then(|| idx.iter().zip(&st).map(|(i, s)| i * s).sum()))
                },
            )?)
        }
        LayoutOp::OneHot { axis } => one(one_hot(inputs, *axis)?),
        LayoutOp::NonZero => {
            let vals = x.to_f64_vec();
            let nz: Vec<usize> = (0..vals.len()).filter(|&i| vals[i] != 0.0).collect();
            let st = strides(x.shape());
            let r = x.rank();
            let mut out = vec![0i64; r * nz.len()];
            for (j, &flat) in nz.iter().enumerate() {
                for ax in 0..r {
                    out[ax * nz.len() + j] = ((flat / st[ax]) % x.shape()[ax]) as i64;
                }
            }
            one(Tensor::from_vec(vec![r, nz.len()], out))
        }
        LayoutOp::Where => {
            let (a, b) = (input(inputs, 1, name)?, input(inputs, 2, name)?);
            if a.dtype() != b.dtype() {
                return Err("Where branches differ in dtype".into());
            }
            let out = broadcast_shapes(&[x.shape(), a.shape(), b.shape()]).ok_or_else(|| {
                format!(
                    "shapes {:?}, {:?} and {:?} do not broadcast",
                    x.shape(),
                    a.shape(),
                    b.shape()
                )
            })?;
            let cond = x.to_bool_vec();
            let ci = BroadcastIndex::new(x.shape(), &out).indices();
            let ai = BroadcastIndex::new(a.shape(), &out).indices();
            let bi = BroadcastIndex::new(b.shape(), &out).indices();
            let es = a.dtype().size();
            let (ad, bd) = (a.bytes(), b.bytes());
            let mut bytes = Vec::with_capacity(ci.len() * es);
            for k in 0..ci.len() {
                if cond[ci[k]] {
                    bytes.extend_from_slice(&ad[ai[k] * es..(ai[k] + 1) * es]);
                } else {
                    bytes.extend_from_slice(&bd[bi[k] * es..(bi[k] + 1) * es]);
                }
            }
            one(Tensor::from_bytes(a.dtype(), out, bytes.into()).map_err(|e| e.to_string())?)
        }
        LayoutOp::DepthToSpace { blocksize, crd } => {
            let (b, crd) = (*blocksize, *crd);
            let [n, c, h, w] = dims4(x, name)?;
            if b == 0 || c % (b * b) != 0 {
                return Err(format!("channels {c} not divisible by blocksize² ({b})"));
            }
            let oc = c / (b * b);
            one(gather_with(
                x,
                x.dtype(),
                vec![n, oc, h * b, w * b],
                None,
                |i| {
                    let (bi, bj) = (i[2] % b, i[3] % b);
                    let ch = if crd {
                        i[1] * b * b + bi * b + bj
                    } else {
                        (bi * b + bj) * oc + i[1]
                    };
                    Ok(Some(((i[0] * c + ch) * h + i[2] / b) * w + i[3] / b))
                },
            )?)
        }
        LayoutOp::SpaceToDepth { blocksize } => {
            let b = *blocksize;
            let [n, c, h, w] = dims4(x, name)?;
            if b == 0 || h % b != 0 || w % b != 0 {
                return Err(format!("spatial dims {h}x{w} not divisible by {b}"));
            }
            one(gather_with(
                x,
                x.dtype(),
                vec![n, c * b * b, h / b, w / b],
                None,
                |i| {
                    let (blk, ch) = (i[1] / c, i[1] % c);
                    let (bi, bj) = (blk / b, blk % b);
                    Ok(Some(
                        ((i[0] * c + ch) * h + i[2] * b + bi) * w + i[3] * b + bj,
                    ))
                },
            )?)
        }
        LayoutOp::ReverseSequence {
            batch_axis,
            time_axis,
        } => {
            let lens = index_values(input(inputs, 1, name)?, "sequence lengths")?;
            let (ba, ta) = (*batch_axis, *time_axis);
            if ba >= x.rank() || ta >= x.rank() || ba == ta {
                return Err("invalid batch/time axes".into());
            }
            if lens.len() != x.shape()[ba] {
                return Err(format!(
                    "{} sequence lengths for batch size {}",
                    lens.len(),
                    x.shape()[ba]
                ));
            }
            let tmax = x.shape()[ta] as i64;
            if lens.iter().any(|&l| l < 0 || l > tmax) {
                return Err(format!("sequence lengths {lens:?} out of range 0..={tmax}"));
            }
            let st = strides(x.shape());
            one(gather_with(x, x.dtype(), x.shape().to_vec(), None, |i| {
                let l = lens[i[ba]] as usize;
                let mut flat: usize = i.iter().zip(&st).map(|(a, s)| a * s).sum();
                if i[ta] < l {
                    flat = flat - i[ta] * st[ta] + (l - 1 - i[ta]) * st[ta];
                }
                Ok(Some(flat))
            })?)
        }
        LayoutOp::Compress { axis } => {
            let cond = input(inputs, 1, name)?.to_bool_vec();
            match axis {
                None => {
                    if cond.len() > x.numel() {
                        return Err("compress condition longer than the input".into());
                    }
                    let idx: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
                    one(take(x, vec![idx.len()], &idx)?)
                }
                Some(a) => {
                    let a = *a;
                    if a >= x.rank() || cond.len() > x.shape()[a] {
                        return Err("compress condition longer than the axis".into());
                    }
                    let keep: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
                    let mut shape = x.shape().to_vec();
                    shape[a] = keep.len();
                    let st = strides(x.shape());
                    one(gather_with(x, x.dtype(), shape, None, |i| {
                        Ok(Some(
                            i.iter()
                                .enumerate()
                                .map(|(d, &v)| if d == a { keep[v] } else { v } * st[d])
                                .sum(),
                        ))
                    })?)
                }
            }
        }
        LayoutOp::EyeLike { k, dtype } => {
            if x.rank() != 2 {
                return Err("EyeLike needs a 2-D input".into());
            }
            let (r, c) = (x.shape()[0], x.shape()[1]);
            let mut v = vec![0.0f64; r * c];
            for i in 0..r {
                let j = i as i64 + k;
                if j >= 0 && (j as usize) < c {
                    v[i * c + j as usize] = 1.0;
                }
            }
            one(Tensor::from_f64(*dtype, vec![r, c], &v))
        }
        LayoutOp::Unique { axis, sorted } => unique(x, *axis, *sorted),
        LayoutOp::BitCast { to } => {
            if x.dtype().size() != to.size() {
                return Err(format!(
                    "BitCast from {} to {to}: the element sizes differ",
                    x.dtype()
                ));
            }
            if *to == DType::Bool && x.bytes().iter().any(|&b| b > 1) {
                return Err("BitCast to bool of a byte other than 0 or 1".into());
            }
            let t = Tensor::from_bytes(*to, x.shape().to_vec(), x.bytes().to_vec().into())
                .map_err(|e| e.to_string())?;
            one(t)
        }
    }
}

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
fn unique(x: &Tensor, axis: Option<usize>, sorted: bool) -> Result<Vec<Tensor>, String> {
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
            return Err(format!(
                "Unique: axis {a} out of range for rank {}",
                x.rank()
            ))
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
        Some(a) => {
            let mut shape = x.shape().to_vec();
            shape[a] = firsts.len();
            let st = strides(x.shape());
            gather_with(x, x.dtype(), shape, None, |i| {
                Ok(Some(
                    i.iter()
                        .enumerate()
                        .map(|(d, &v)| if d == a { firsts[v] } else { v } * st[d])
                        .sum(),
                ))
            })?
        }
    };
    let i64s = |v: Vec<usize>| {
        let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
        Tensor::from_vec(vec![v.len()], v)
    };
    let inverse: Vec<usize> = group_of.iter().map(|&g| rank_of[g]).collect();
    let counts: Vec<usize> = groups.iter().map(|g| g.1).collect();
    Ok(vec![y, i64s(firsts), i64s(inverse), i64s(counts)])
}

/// The concrete target of ONNX `Reshape` (`0` copies unless `allowzero`, one `-1` inferred).
fn reshape_dims(input: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let bad = || format!("cannot reshape {input:?} to {target:?}");
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                1
            }
            0 if !allowzero => *input.get(i).ok_or_else(bad)?,
            t if t < 0 => return Err(bad()),
            t => t as usize,
        });
    }
    let total: usize = input.iter().product();
    let known: usize = out.iter().product();
    if let Some(at) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad());
        }
        out[at] = total / known;
    } else if known != total {
        return Err(bad());
    }
    Ok(out)
}

/// The op's axes, or those of its second input (normalized against `rank`, sorted).
fn runtime_axes(inputs: &[&Tensor], axes: &[usize], rank: usize) -> Result<Vec<usize>, String> {
    let Some(t) = inputs.get(1) else {
        return Ok(axes.to_vec());
    };
    let mut out = index_values(t, "axes")?
        .into_iter()
        .map(|a| crate::op::util::axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err("repeated axis".into());
    }
    Ok(out)
}

fn dims4(x: &Tensor, op: &str) -> Result<[usize; 4], String> {
    x.shape()
        .try_into()
        .map_err(|_| format!("{op} needs a rank-4 input, got {:?}", x.shape()))
}

fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, String> {
    let r = x.rank();
    if perm.len() != r || !(0..r).all(|i| perm.contains(&i)) {
        return Err(format!("perm {perm:?} is not a permutation of rank {r}"));
    }
    let st = strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    gather_with(x, x.dtype(), shape, None, |i| {
        Ok(Some(i.iter().zip(&pst).map(|(a, s)| a * s).sum()))
    })
}

fn concat(inputs: &[&Tensor], axis: usize) -> Result<Tensor, String> {
    let first = inputs.first().ok_or("Concat of no inputs")?;
    let r = first.rank();
    if axis >= r {
        return Err(format!("concat axis {axis} out of range for rank {r}"));
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for t in inputs {
        let ok = t.rank() == r
            && t.dtype() == first.dtype()
            && (0..r).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
        if !ok {
            return Err(format!(
                "cannot concat {}{:?} with {}{:?} on axis {axis}",
                first.dtype(),
                first.shape(),
                t.dtype(),
                t.shape()
            ));
        }
        shape[axis] += t.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * first.dtype().size();
    let mut out = Vec::with_capacity(shape.iter().product::<usize>() * first.dtype().size());
    for o in 0..outer {
        for t in inputs {
            let chunk = t.shape()[axis] * inner;
            out.extend_from_slice(&t.bytes()[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor::from_bytes(first.dtype(), shape, out.into()).map_err(|e| e.to_string())
}

fn split(x: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>, String> {
    if axis >= x.rank() {
        return Err(format!("split axis {axis} out of range"));
    }
    let n = x.shape()[axis];
    if sizes.iter().sum::<usize>() != n {
        return Err(format!("split sizes {sizes:?} do not add up to {n}"));
    }
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product::<usize>() * x.dtype().size();
    let mut start = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &s in sizes {
        let mut bytes = Vec::with_capacity(outer * s * inner);
        for o in 0..outer {
            let base = (o * n + start) * inner;
            bytes.extend_from_slice(&x.bytes()[base..base + s * inner]);
        }
        let mut shape = x.shape().to_vec();
        shape[axis] = s;
        outs.push(Tensor::from_bytes(x.dtype(), shape, bytes.into()).map_err(|e| e.to_string())?);
        start += s;
    }
    Ok(outs)
}

fn slice(inputs: &[&Tensor]) -> Result<Tensor, String> {
    let x = inputs[0];
    let r = x.rank();
    let ints = |i: usize, what: &str| -> Result<Option<Vec<i64>>, String> {
        inputs.get(i).map(|t| index_values(t, what)).transpose()
    };
    let starts = ints(1, "slice starts")?.ok_or("Slice needs starts")?;
    let ends = ints(2, "slice ends")?.ok_or("Slice needs ends")?;
    let axes = ints(3, "slice axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = ints(4, "slice steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("slice starts, ends, axes and steps differ in length".into());
    }
    let mut begin = vec![0i64; r];
    let mut step = vec![1i64; r];
    let mut shape = x.shape().to_vec();
    let mut seen = vec![false; r];
    for i in 0..starts.len() {
        let a = crate::op::util::axis(axes[i], r)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("slice axis {a} repeated"));
        }
        let n = x.shape()[a];
        let (s, _) = slice_bounds(n, starts[i], ends[i], steps[i])?;
        shape[a] = slice_len(n, starts[i], ends[i], steps[i])?;
        begin[a] = s;
        step[a] = steps[i];
    }
    let st = strides(x.shape());
    gather_with(x, x.dtype(), shape, None, |i| {
        let mut flat = 0i64;
        for d in 0..r {
            flat += (begin[d] + i[d] as i64 * step[d]) * st[d] as i64;
        }
        Ok(Some(flat as usize))
    })
}

fn gather(x: &Tensor, indices: &Tensor, axis: usize) -> Result<Tensor, String> {
    if axis >= x.rank() {
        return Err(format!("gather axis {axis} out of range"));
    }
    let idx = index_values(indices, "gather indices")?;
    let n = x.shape()[axis];
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product::<usize>() * x.dtype().size();
    let wrapped = idx
        .iter()
        .map(|&i| wrap_index(i, n, "gather"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(outer * wrapped.len() * inner);
    for o in 0..outer {
        for &i in &wrapped {
            let base = (o * n + i) * inner;
            out.extend_from_slice(&x.bytes()[base..base + inner]);
        }
    }
    let mut shape = x.shape()[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&x.shape()[axis + 1..]);
    Tensor::from_bytes(x.dtype(), shape, out.into()).map_err(|e| e.to_string())
}

fn gather_elements(x: &Tensor, indices: &Tensor, axis: usize) -> Result<Tensor, String> {
    let r = x.rank();
    if axis >= r || indices.rank() != r {
        return Err(format!(
            "GatherElements of {:?} with indices {:?} on axis {axis}",
            x.shape(),
            indices.shape()
        ));
    }
    let idx = index_values(indices, "GatherElements indices")?;
    let st = strides(x.shape());
    let mut k = 0;
    gather_with(x, x.dtype(), indices.shape().to_vec(), None, |i| {
        let mut flat = 0;
        for d in 0..r {
            let v = if d == axis {
                wrap_index(idx[k], x.shape()[d], "GatherElements")?
            } else if i[d] < x.shape()[d] {
                i[d]
            } else {
                return Err("GatherElements indices larger than data".into());
            };
            flat += v * st[d];
        }
        k += 1;
        Ok(Some(flat))
    })
}

/// For ND gather/scatter: the flat element offset (into the data) of each index
/// tuple, and the number of elements each tuple addresses.
fn nd_offsets(
    data_shape: &[usize],
    indices: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), String> {
    let q = indices.rank();
    let k = *indices
        .shape()
        .last()
        .ok_or("ND indices must have rank >= 1")?;
    if batch_dims >= q || batch_dims + k > data_shape.len() {
        return Err(format!(
            "ND indices {:?} (batch_dims {batch_dims}) do not fit data {:?}",
            indices.shape(),
            data_shape
        ));
    }
    if indices.shape()[..batch_dims] != data_shape[..batch_dims] {
        return Err("ND batch dims of data and indices differ".into());
    }
    let idx = index_values(indices, "ND indices")?;
    let st = strides(data_shape);
    let inner: usize = data_shape[batch_dims + k..].iter().product();
    let batch_size: usize = data_shape[batch_dims..].iter().product();
    let per_batch: usize = indices.shape()[batch_dims..q - 1].iter().product();
    let tuples = idx
        .len()
        .checked_div(k)
        .unwrap_or_else(|| indices.shape()[..q - 1].iter().product());
    let mut offsets = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = t.checked_div(per_batch).unwrap_or(0) * batch_size;
        for j in 0..k {
            let d = batch_dims + j;
            off += wrap_index(idx[t * k + j], data_shape[d], "ND")? * st[d];
        }
        offsets.push(off);
    }
    Ok((offsets, inner))
}

fn gather_nd(x: &Tensor, indices: &Tensor, batch_dims: usize) -> Result<Tensor, String> {
    let (offsets, inner) = nd_offsets(x.shape(), indices, batch_dims)?;
    let k = indices.shape()[indices.rank() - 1];
    let mut shape = indices.shape()[..indices.rank() - 1].to_vec();
    shape.extend_from_slice(&x.shape()[batch_dims + k..]);
    let es = x.dtype().size();
    let mut out = Vec::with_capacity(offsets.len() * inner * es);
    for off in offsets {
        out.extend_from_slice(&x.bytes()[off * es..(off + inner) * es]);
    }
    Tensor::from_bytes(x.dtype(), shape, out.into()).map_err(|e| e.to_string())
}

/// Combines `u` into `dst` with a scatter reduction, in the element's own arithmetic
/// (integers wrap; floats compute in f64 and round once).
fn combine<T: Element>(dst: &mut T, u: T, red: ScatterReduction) {
    let float = T::DTYPE.is_float();
    *dst = match red {
        ScatterReduction::None => u,
        ScatterReduction::Add if float => T::from_f64(dst.to_f64() + u.to_f64()),
        ScatterReduction::Add => T::from_i64(dst.to_i64().wrapping_add(u.to_i64())),
        ScatterReduction::Mul if float => T::from_f64(dst.to_f64() * u.to_f64()),
        ScatterReduction::Mul => T::from_i64(dst.to_i64().wrapping_mul(u.to_i64())),
        ScatterReduction::Max => {
            if u.to_f64() > dst.to_f64() {
                u
            } else {
                *dst
            }
        }
        ScatterReduction::Min => {
            if u.to_f64() < dst.to_f64() {
                u
            } else {
                *dst
            }
        }
    };
}

/// Applies `updates[j]` to `data[targets[j]]` for every j.
fn scatter_apply(
    data: &Tensor,
    updates: &Tensor,
    targets: &[usize],
    red: ScatterReduction,
) -> Result<Tensor, String> {
    if updates.dtype() != data.dtype() {
        return Err(format!(
            "scatter updates are {}, data is {}",
            updates.dtype(),
            data.dtype()
        ));
    }
    if targets.len() != updates.numel() {
        return Err("scatter updates do not match the indices".into());
    }
    with_dtype!(data.dtype(), T => {
        let mut d = data.to_vec::<T>();
        let u = updates.to_vec::<T>();
        for (j, &t) in targets.iter().enumerate() {
            combine(&mut d[t], u[j], red);
        }
        Ok(Tensor::from_vec(data.shape().to_vec(), d))
    })
}

fn scatter_nd(
    x: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    red: ScatterReduction,
) -> Result<Tensor, String> {
    let (offsets, inner) = nd_offsets(x.shape(), indices, 0)?;
    let k = indices.shape()[indices.rank() - 1];
    let mut ushape = indices.shape()[..indices.rank() - 1].to_vec();
    ushape.extend_from_slice(&x.shape()[k..]);
    if updates.shape() != ushape.as_slice() {
        return Err(format!(
            "ScatterND updates have shape {:?}, expected {ushape:?}",
            updates.shape()
        ));
    }
    let targets: Vec<usize> = offsets
        .iter()
        .flat_map(|&o| o..o + inner)
        .collect::<Vec<_>>();
    scatter_apply(x, updates, &targets, red)
}

fn scatter_elements(
    x: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: usize,
    red: ScatterReduction,
) -> Result<Tensor, String> {
    let r = x.rank();
    if axis >= r || indices.rank() != r || indices.shape() != updates.shape() {
        return Err(format!(
            "ScatterElements of {:?} with indices {:?} and updates {:?} on axis {axis}",
            x.shape(),
            indices.shape(),
            updates.shape()
        ));
    }
    let idx = index_values(indices, "ScatterElements indices")?;
    let st = strides(x.shape());
    let mut targets = Vec::with_capacity(idx.len());
    let mut k = 0;
    for_each_index(indices.shape(), |i| {
        let mut flat = 0;
        for d in 0..r {
            let v = if d == axis {
                wrap_index(idx[k], x.shape()[d], "ScatterElements")?
            } else if i[d] < x.shape()[d] {
                i[d]
            } else {
                return Err("ScatterElements indices larger than data".into());
            };
            flat += v * st[d];
        }
        k += 1;
        targets.push(flat);
        Ok(())
    })?;
    scatter_apply(x, updates, &targets, red)
}

fn pad(inputs: &[&Tensor], mode: PadMode) -> Result<Tensor, String> {
    let x = inputs[0];
    let r = x.rank();
    let mut pads = index_values(inputs.get(1).ok_or("Pad needs pads")?, "pads")?;
    if let Some(axes) = inputs.get(3) {
        let axes = index_values(axes, "pad axes")?;
        if pads.len() != 2 * axes.len() {
            return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
        }
        let mut full = vec![0i64; 2 * r];
        for (k, &a) in axes.iter().enumerate() {
            let a = crate::op::util::axis(a, r)?;
            full[a] = pads[k];
            full[a + r] = pads[k + axes.len()];
        }
        pads = full;
    }
    if pads.len() != 2 * r {
        return Err(format!(
            "pads has {} entries, expected {}",
            pads.len(),
            2 * r
        ));
    }
    let fill = match inputs.get(2) {
        Some(v) if v.numel() == 1 => {
            if v.dtype() != x.dtype() {
                return Err("pad value dtype differs from the data".into());
            }
            v.bytes().to_vec()
        }
        Some(v) if v.numel() != 0 => return Err("pad value must be a scalar".into()),
        _ => element_bytes(x.dtype(), 0.0),
    };
    // Negative pads crop first; the cropped range [lo, lo+len) is then padded.
    let mut lo = vec![0usize; r];
    let mut len = vec![0usize; r];
    let mut before = vec![0usize; r];
    let mut shape = vec![0usize; r];
    for d in 0..r {
        let n = x.shape()[d] as i64;
        let (pb, pe) = (pads[d], pads[d + r]);
        let l = n + pb.min(0) + pe.min(0);
        if l < 0 {
            return Err(format!("pads {pads:?} crop more than axis {d} holds"));
        }
        lo[d] = (-pb.min(0)) as usize;
        len[d] = l as usize;
        before[d] = pb.max(0) as usize;
        shape[d] = (l + pb.max(0) + pe.max(0)) as usize;
        if mode != PadMode::Constant && l == 0 && shape[d] > 0 {
            return Err(format!("cannot {mode:?}-pad an empty axis"));
        }
    }
    let st = strides(x.shape());
    gather_with(x, x.dtype(), shape, Some(&fill), |i| {
        let mut flat = 0;
        for d in 0..r {
            let j = i[d] as i64 - before[d] as i64;
            let n = len[d] as i64;
            let j = if (0..n).contains(&j) {
                j
            } else {
                match mode {
                    PadMode::Constant => return Ok(None),
                    PadMode::Edge => j.clamp(0, n - 1),
                    PadMode::Wrap => j.rem_euclid(n),
                    PadMode::Reflect => {
                        if n == 1 {
                            0
                        } else {
                            let m = j.rem_euclid(2 * (n - 1));
                            if m >= n {
                                2 * (n - 1) - m
                            } else {
                                m
                            }
                        }
                    }
                }
            };
            flat += (lo[d] + j as usize) * st[d];
        }
        Ok(Some(flat))
    })
}

fn range(inputs: &[&Tensor]) -> Result<Tensor, String> {
    let (s, l, d) = (
        inputs[0],
        input(inputs, 1, "Range")?,
        input(inputs, 2, "Range")?,
    );
    let dtype = s.dtype();
    if l.dtype() != dtype || d.dtype() != dtype {
        return Err("Range inputs differ in dtype".into());
    }
    let scalar = |t: &Tensor| t.scalar_f64().ok_or("Range inputs must be scalars");
    if dtype.is_int() {
        let ints = |t: &Tensor| t.scalar_i64().ok_or("Range inputs must be scalars");
        let (s, l, d) = (ints(s)?, ints(l)?, ints(d)?);
        if d == 0 {
            return Err("Range delta is 0".into());
        }
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        return Ok(Tensor::from_i64(dtype, vec![n], &v));
    }
    let (s, l, d) = (scalar(s)?, scalar(l)?, scalar(d)?);
    if d == 0.0 || !d.is_finite() {
        return Err(format!("Range delta {d} is invalid"));
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if !n.is_finite() || n > 1e10 {
        return Err("Range has too many elements".into());
    }
    let v: Vec<f64> = (0..n as usize).map(|i| s + i as f64 * d).collect();
    Ok(Tensor::from_f64(dtype, vec![n as usize], &v))
}

fn one_hot(inputs: &[&Tensor], axis: i64) -> Result<Tensor, String> {
    let (ind, depth, values) = (
        inputs[0],
        input(inputs, 1, "OneHot")?,
        input(inputs, 2, "OneHot")?,
    );
    let depth = depth.scalar_f64().ok_or("OneHot depth must be a scalar")?;
    if depth < 1.0 || !depth.is_finite() {
        return Err(format!("OneHot depth {depth} is invalid"));
    }
    let depth = depth as usize;
    if values.numel() != 2 {
        return Err("OneHot values must have two elements".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: LayoutOp, inputs: &[&Tensor]) -> Vec<Tensor> {
        eval(&op, inputs, 1).unwrap()
    }

    fn ints(v: &[i64]) -> Tensor {
        Tensor::from_vec(vec![v.len()], v.to_vec())
    }

    #[test]
    fn unique_sorted_unsorted_and_axis() {
        let x = Tensor::from_vec(vec![6], vec![2.0f32, 1.0, f32::NAN, 1.0, f32::NAN, -0.0]);
        let out = eval(
            &LayoutOp::Unique {
                axis: None,
                sorted: true,
            },
            &[&x],
            4,
        )
        .unwrap();
        let y = out[0].to_vec::<f32>();
        assert_eq!(&y[..3], &[-0.0, 1.0, 2.0]);
        assert!(y[3].is_nan());
        assert_eq!(out[1].to_vec::<i64>(), vec![5, 1, 0, 2]);
        assert_eq!(out[2].to_vec::<i64>(), vec![2, 1, 3, 1, 3, 0]);
        assert_eq!(out[3].to_vec::<i64>(), vec![1, 2, 1, 2]);
        let x = Tensor::from_vec(vec![4], vec![3i64, 1, 3, 0]);
        let out = eval(
            &LayoutOp::Unique {
                axis: None,
                sorted: false,
            },
            &[&x],
            4,
        )
        .unwrap();
        assert_eq!(out[0].to_vec::<i64>(), vec![3, 1, 0]);
        assert_eq!(out[1].to_vec::<i64>(), vec![0, 1, 3]);
        assert_eq!(out[2].to_vec::<i64>(), vec![0, 1, 0, 2]);
        assert_eq!(out[3].to_vec::<i64>(), vec![2, 1, 1]);
        // Columns of [[1, 0, 1], [2, 5, 2]]: (1, 2) twice and (0, 5).
        let x = Tensor::from_vec(vec![2, 3], vec![1u8, 0, 1, 2, 5, 2]);
        let out = eval(
            &LayoutOp::Unique {
                axis: Some(1),
                sorted: true,
            },
            &[&x],
            4,
        )
        .unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_eq!(out[0].to_vec::<u8>(), vec![0, 1, 5, 2]);
        assert_eq!(out[2].to_vec::<i64>(), vec![1, 0, 1]);
    }

    #[test]
    fn bitcast_reinterprets_bytes() {
        let x = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]);
        let y = &ev(LayoutOp::BitCast { to: DType::I32 }, &[&x])[0];
        assert_eq!(y.to_vec::<i32>(), vec![0x3f80_0000, 0xc000_0000u32 as i32]);
        let b = Tensor::from_vec(vec![1], vec![2u8]);
        assert!(eval(&LayoutOp::BitCast { to: DType::Bool }, &[&b], 1).is_err());
        assert!(eval(&LayoutOp::BitCast { to: DType::I64 }, &[&x], 1).is_err());
    }

    #[test]
    fn slice_negative_step_and_clamping() {
        let x = Tensor::from_vec(vec![2, 5], (0..10).map(|v| v as f32).collect());
        let y = &ev(
            LayoutOp::Slice,
            &[&x, &ints(&[-1]), &ints(&[-100]), &ints(&[1]), &ints(&[-2])],
        )[0];
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_vec::<f32>(), vec![4., 2., 0., 9., 7., 5.]);
        let y = &ev(
            LayoutOp::Slice,
            &[
                &x,
                &ints(&[1, 1000]),
                &ints(&[1000, 1000]),
                &ints(&[0, 1]),
                &ints(&[1, 1]),
            ],
        )[0];
        assert_eq!(y.shape(), &[1, 0]);
    }

    #[test]
    fn pad_modes() {
        let x = Tensor::from_vec(vec![3], vec![1i32, 2, 3]);
        let p = ints(&[2, 2]);
        let run = |mode| ev(LayoutOp::Pad { mode }, &[&x, &p])[0].to_vec::<i32>();
        assert_eq!(run(PadMode::Constant), vec![0, 0, 1, 2, 3, 0, 0]);
        assert_eq!(run(PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(run(PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(run(PadMode::Wrap), vec![2, 3, 1, 2, 3, 1, 2]);
        let crop = ev(
            LayoutOp::Pad {
                mode: PadMode::Constant,
            },
            &[&x, &ints(&[-1, 1])],
        );
        assert_eq!(crop[0].to_vec::<i32>(), vec![2, 3, 0]);
    }

    #[test]
    fn gather_rejects_out_of_range() {
        let x = Tensor::from_vec(vec![3], vec![1.0f32, 2., 3.]);
        let y = ev(LayoutOp::Gather { axis: 0 }, &[&x, &ints(&[-1, 0])]);
        assert_eq!(y[0].to_vec::<f32>(), vec![3., 1.]);
        assert!(eval(&LayoutOp::Gather { axis: 0 }, &[&x, &ints(&[3])], 1).is_err());
    }

    #[test]
    fn scatter_elements_reduces() {
        let x = Tensor::from_vec(vec![1, 5], vec![1i64, 2, 3, 4, 5]);
        let i = Tensor::from_vec(vec![1, 2], vec![1i64, 1]);
        let u = Tensor::from_vec(vec![1, 2], vec![10i64, 20]);
        let y = ev(
            LayoutOp::ScatterElements {
                axis: 1,
                reduction: ScatterReduction::Add,
            },
            &[&x, &i, &u],
        );
        assert_eq!(y[0].to_vec::<i64>(), vec![1, 32, 3, 4, 5]);
    }

    #[test]
    fn gather_nd_with_batch_dims() {
        let x = Tensor::from_vec(vec![2, 2, 2], (0..8).collect());
        let i = Tensor::from_vec(vec![2, 1], vec![1i64, 0]);
        let y = ev(LayoutOp::GatherND { batch_dims: 1 }, &[&x, &i]);
        assert_eq!(y[0].shape(), &[2, 2]);
        assert_eq!(y[0].to_vec::<i32>(), vec![2, 3, 4, 5]);
    }

    #[test]
    fn one_hot_and_depth_to_space() {
        let ind = Tensor::from_vec(vec![2], vec![1i64, -1]);
        let y = ev(
            LayoutOp::OneHot { axis: -1 },
            &[
                &ind,
                &Tensor::scalar(3i64),
                &Tensor::from_vec(vec![2], vec![0f32, 5.]),
            ],
        );
        assert_eq!(y[0].to_vec::<f32>(), vec![0., 5., 0., 0., 0., 5.]);
        let x = Tensor::from_vec(vec![1, 4, 1, 1], vec![0u8, 1, 2, 3]);
        let d = ev(
            LayoutOp::DepthToSpace {
                blocksize: 2,
                crd: false,
            },
            &[&x],
        );
        assert_eq!(d[0].shape(), &[1, 1, 2, 2]);
        let s = ev(LayoutOp::SpaceToDepth { blocksize: 2 }, &[&d[0]]);
        assert_eq!(s[0], x);
    }

    #[test]
    fn reshape_and_runtime_axes() {
        assert_eq!(
            reshape_dims(&[2, 3, 4], &[0, -1], false).unwrap(),
            vec![2, 12]
        );
        assert_eq!(reshape_dims(&[0, 3], &[0, 3], true).unwrap(), vec![0, 3]);
        assert!(reshape_dims(&[2, 3], &[4, -1], false).is_err());
        let x = Tensor::from_vec(vec![3], vec![1u8, 2, 3]);
        let u = ev(LayoutOp::Unsqueeze { axes: vec![] }, &[&x, &ints(&[-1, 0])]);
        assert_eq!(u[0].shape(), &[1, 3, 1]);
        let s = ev(LayoutOp::Squeeze { axes: vec![] }, &[&u[0], &ints(&[2])]);
        assert_eq!(s[0].shape(), &[1, 3]);
        let parts = eval(
            &LayoutOp::Split {
                axis: 0,
                sizes: vec![],
            },
            &[&x, &ints(&[2, 1])],
            2,
        )
        .unwrap();
        assert_eq!(parts[1].to_vec::<u8>(), vec![3]);
    }
}
