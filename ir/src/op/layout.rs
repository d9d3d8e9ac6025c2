//! Data movement, shape computation, casts, selection and tensor creation.

use crate::error::OpError;
use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::util::{any_shape, broadcast_all};
use super::{InferInputs, OpFamily};
use crate::{DType, Dim, Shape, TensorType};

/// How `Pad` fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PadMode {
    /// A constant value (the third input).
    Constant,
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge.
    Edge,
    /// Wrap around.
    Wrap,
}

/// How scatter ops combine an update with the existing element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScatterReduction {
    /// Replace.
    None,
    /// Add.
    Add,
    /// Multiply.
    Mul,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// An op of the layout family. Inputs named in brackets are tensors (i64 unless said).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum LayoutOp {
    /// `[data, shape]`: same elements, new shape (`0` copies the input dim unless
    /// `allowzero`, `-1` is inferred).
    Reshape {
        /// A `0` in `shape` means size zero instead of "copy".
        allowzero: bool,
    },
    /// Permutes axes: output axis i is input axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Removes the size-1 `axes` (sorted). With a second input (i64, possibly negative)
    /// the axes are read from it at run time instead and `axes` is empty.
    Squeeze {
        /// Axes of the input.
        axes: Vec<usize>,
        /// Axes kept on the condition that they are not 1: ONNX's Squeeze without
        /// axes removes every size-1 dim, so a dim unknown at import would change
        /// the output's rank if it were 1. The importer squeezes the dims known
        /// to be 1 and lists the unknown ones here; inference (at specialization)
        /// and evaluation refuse a listed dim of size 1 instead of answering with
        /// the wrong rank. Omitted from the text form when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_one: Vec<usize>,
    },
    /// Inserts size-1 axes at `axes` (sorted, axes of the output). With a second input
    /// (i64, possibly negative) the axes are read from it at run time and `axes` is empty.
    Unsqueeze {
        /// Axes of the output.
        axes: Vec<usize>,
    },
    /// To 2-D: dims before `axis` multiply into rows, the rest into columns.
    Flatten {
        /// Split point.
        axis: usize,
    },
    /// `[data, shape]`: broadcasts data to `shape` (numpy rules, both ways).
    Expand,
    /// Joins inputs along `axis`.
    Concat {
        /// Axis.
        axis: usize,
    },
    /// Cuts along `axis` into pieces of `sizes`; one output per piece. With a second
    /// input the sizes are read from it at run time and `sizes` is empty.
    Split {
        /// Axis.
        axis: usize,
        /// Size of each output along the axis.
        sizes: Vec<usize>,
    },
    /// `[data, starts, ends, axes, steps]`: ONNX `Slice` (clamped, negative steps allowed).
    Slice,
    /// `[data, indices]`: picks along `axis` (negative indices wrap).
    Gather {
        /// Axis.
        axis: usize,
    },
    /// `[data, indices]`: output[i][j] = data[index][j] along `axis`.
    GatherElements {
        /// Axis.
        axis: usize,
    },
    /// `[data, indices]`: ONNX `GatherND`.
    GatherND {
        /// Leading batch dims shared by data and indices.
        batch_dims: usize,
    },
    /// `[data, indices, updates]`: ONNX `ScatterND`.
    ScatterND {
        /// How updates combine.
        reduction: ScatterReduction,
    },
    /// `[data, indices, updates]`: ONNX `ScatterElements`.
    ScatterElements {
        /// Axis.
        axis: usize,
        /// How updates combine.
        reduction: ScatterReduction,
    },
    /// `[data, repeats]`: repeats the data along each axis.
    Tile,
    /// `[data, pads, value]`: pads has 2·rank entries (all begins, then all ends; negative crops).
    /// An optional fourth input `axes` (i64, possibly negative) says which axes `pads`
    /// (then 2·len(axes) entries) applies to.
    Pad {
        /// Border mode.
        mode: PadMode,
    },
    /// The input's shape as a 1-D i64 tensor, axes `start..end` (negative wrap, clamped).
    Shape {
        /// First axis.
        start: i64,
        /// One past the last axis (`None`: rank).
        end: Option<i64>,
    },
    /// The input's element count as an i64 scalar.
    Size,
    /// `[shape]`: a tensor of that shape filled with `value`.
    ConstantOfShape {
        /// Output dtype.
        dtype: DType,
        /// Fill value.
        value: f64,
    },
    /// `[start, limit, delta]` scalars: start, start+delta, ... up to limit (exclusive).
    Range,
    /// `[x, k]`: keeps the upper (or lower) triangle of the last two axes, diagonal offset k.
    Trilu {
        /// Upper (true) or lower triangle.
        upper: bool,
    },
    /// `[indices, depth, values]`: one-hot along `axis` of the output (values = [off, on]).
    OneHot {
        /// Axis of the output (`-1`: last).
        axis: i64,
    },
    /// Indices of non-zero elements, shape `[rank, n]`.
    NonZero,
    /// Returns the input.
    Identity,
    /// Converts elements to `to` (truncation toward zero for float → int).
    Cast {
        /// Target dtype.
        to: DType,
        /// ONNX's `saturate` (float8 targets only): out-of-range values clamp
        /// to the largest finite value instead of becoming infinity or NaN.
        /// Omitted from the text form when true (the default).
        #[serde(default = "saturate_default", skip_serializing_if = "is_saturating")]
        saturate: bool,
    },
    /// `[cond, x, y]`: x where cond else y, broadcasting all three.
    Where,
    /// Moves depth into spatial blocks (NCHW).
    DepthToSpace {
        /// Block size.
        blocksize: usize,
        /// Column-row-depth order (`CRD`) instead of `DCR`.
        crd: bool,
    },
    /// Moves spatial blocks into depth (NCHW).
    SpaceToDepth {
        /// Block size.
        blocksize: usize,
    },
    /// `[x, lengths]`: reverses each sequence's first `lengths[b]` steps.
    ReverseSequence {
        /// Batch axis (0 or 1).
        batch_axis: usize,
        /// Time axis (0 or 1).
        time_axis: usize,
    },
    /// `[x, condition]`: the slices along `axis` (or the flattened elements) where condition holds.
    Compress {
        /// Axis, or `None` to flatten.
        axis: Option<usize>,
    },
    /// The distinct slices along `axis` (or distinct elements of the flattened input).
    ///
    /// Outputs `[y, indices, inverse, counts]`: the distinct slices (in ascending
    /// lexicographic order when `sorted`, else in order of first occurrence), the i64
    /// index of each one's first occurrence, for every input slice the i64 position of
    /// its distinct slice in y, and the i64 number of occurrences of each. NaNs are
    /// equal to each other and greater than every number; −0 equals +0.
    Unique {
        /// Axis, or `None` to flatten.
        axis: Option<usize>,
        /// Sort the distinct slices.
        sorted: bool,
    },
    /// Reinterprets the bytes of each element as `to`, a dtype of the same size.
    BitCast {
        /// Target dtype.
        to: DType,
    },
    /// A 2-D identity-like matrix with the input's shape, ones on diagonal `k`.
    EyeLike {
        /// Diagonal offset.
        k: i64,
        /// Output dtype.
        dtype: DType,
    },
    /// `[past_cache, update]` or `[past_cache, update, write_indices]`: ONNX's
    /// `TensorScatter` (a KV-cache write). The cache `[batch, …, max_seq, …]` and
    /// the update `[batch, …, seq, …]` differ only along `axis` (≥ 1); for every
    /// prefix index `(b, …)` before `axis`, update position `s` is written at
    /// cache position `write_indices[b] + s` (i64 `[batch]`, zeros when absent),
    /// which must lie inside the cache, or, when `circular`, wraps modulo
    /// `max_seq`. Only the sequence index wraps (ONNX's pseudocode applies the
    /// modulo to the whole index tuple, which differs only for prefix indices
    /// ≥ `max_seq`, clearly not the intent).
    TensorScatter {
        /// The sequence axis (≥ 1; axis 0 is the batch).
        axis: usize,
        /// Write positions wrap around the cache (`mode = "circular"`).
        circular: bool,
    },
}

/// The default of [`LayoutOp::Cast`]'s `saturate` (ONNX's).
pub(crate) fn saturate_default() -> bool {
    true
}

/// True when `Cast` saturates, the default the text form leaves out.
pub(crate) fn is_saturating(saturate: &bool) -> bool {
    *saturate
}

impl LayoutOp {
    /// A saturating `Cast` to `to` (ONNX's default).
    pub fn cast(to: DType) -> LayoutOp {
        LayoutOp::Cast { to, saturate: true }
    }
}

/// Reads a 1-D i64 constant input as a Vec.
fn const_ints(inputs: &InferInputs, i: usize) -> Option<Vec<i64>> {
    inputs.constant(i).map(|t| t.to_i64_vec())
}

/// The length of the 1-D input `i`, which must be known.
fn runtime_len(inputs: &InferInputs, i: usize) -> Result<usize, OpError> {
    let t = inputs.ty(i)?;
    match t.shape.0.as_slice() {
        [d] => d
            .known()
            .ok_or_else(|| OpError::shape(format!("input {i} has unknown length"))),
        _ => Err(OpError::shape(format!("input {i} must be 1-D, got {t}"))),
    }
}

/// The target of a `Reshape` from the input shape and the requested dims.
pub(crate) fn reshape_target(
    input: &Shape,
    target: &[i64],
    allowzero: bool,
) -> Result<Shape, OpError> {
    let mut out: Vec<Dim> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(OpError::shape("more than one -1 in reshape target"));
                }
                out.push(Dim::Any);
            }
            0 if !allowzero => out.push(input.0.get(i).cloned().ok_or_else(|| {
                format!("reshape copies dim {i} of a rank-{} input", input.rank())
            })?),
            t if t < 0 => return Err(OpError::shape(format!("invalid reshape dim {t}"))),
            t => out.push(Dim::Known(t as usize)),
        }
    }
    if let Some(at) = infer_at {
        let known_out: Option<usize> = out
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .try_fold(1usize, |n, (_, d)| n.checked_mul(d.known()?));
        if let (Some(total), Some(part)) = (input.numel(), known_out) {
            if part == 0 || total % part != 0 {
                return Err(OpError::shape(format!(
                    "cannot reshape {input} to {target:?}"
                )));
            }
            out[at] = Dim::Known(total / part);
        } else if input.rank() == target.len() {
            // Same rank and every other dim copied or equal: the inferred dim is the one left.
            let others_equal = (0..input.rank())
                .filter(|&i| i != at)
                .all(|i| input.0[i] == out[i]);
            if others_equal {
                out[at] = input.0[at].clone();
            }
        }
    } else if Shape(out.clone()).overflows() {
        return Err(OpError::too_large(format!(
            "reshape target {target:?} has more elements than fit in memory"
        )));
    } else if let (Some(a), Some(b)) = (input.numel(), Shape(out.clone()).numel()) {
        if a != b {
            return Err(OpError::shape(format!(
                "cannot reshape {input} ({a} elements) to {target:?} ({b} elements)"
            )));
        }
    }
    Ok(Shape(out))
}

impl OpFamily for LayoutOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let x = inputs.ty(0)?;
        let rank = x.shape.rank();
        let same_dtype = |shape: Shape| Ok(vec![TensorType::new(x.dtype, shape)]);
        match self {
            LayoutOp::Reshape { allowzero } => match const_ints(inputs, 1) {
                Some(t) => same_dtype(reshape_target(&x.shape, &t, *allowzero)?),
                None => {
                    let n = inputs
                        .ty(1)?
                        .shape
                        .0
                        .first()
                        .and_then(Dim::known)
                        .ok_or(OpError::shape("reshape target of unknown length"))?;
                    same_dtype(any_shape(n))
                }
            },
            LayoutOp::Transpose { perm } => {
                if perm.len() != rank || !(0..rank).all(|i| perm.contains(&i)) {
                    return Err(OpError::attribute(format!(
                        "perm {perm:?} is not a permutation of rank {rank}"
                    )));
                }
                same_dtype(Shape(perm.iter().map(|&p| x.shape.0[p].clone()).collect()))
            }
            LayoutOp::Squeeze { .. } if inputs.len() > 1 => {
                let n = runtime_len(inputs, 1)?;
                same_dtype(any_shape(
                    rank.checked_sub(n)
                        .ok_or(OpError::attribute("too many squeeze axes"))?,
                ))
            }
            LayoutOp::Unsqueeze { .. } if inputs.len() > 1 => {
                same_dtype(any_shape(rank + runtime_len(inputs, 1)?))
            }
            LayoutOp::Split { axis, .. } if inputs.len() > 1 => {
                if *axis >= rank {
                    return Err(OpError::attribute(format!(
                        "split axis {axis} out of range for rank {rank}"
                    )));
                }
                let mut sh = x.shape.clone();
                sh.0[*axis] = Dim::Any;
                Ok(vec![TensorType::new(x.dtype, sh); runtime_len(inputs, 1)?])
            }
            LayoutOp::Pad { .. } if inputs.len() > 3 => same_dtype(any_shape(rank)),
            LayoutOp::Squeeze { axes, not_one } => {
                for &a in not_one {
                    match x.shape.0.get(a) {
                        Some(Dim::Known(1)) => {
                            return Err(OpError::shape(format!(
                                "Squeeze without axes: dim {a} of {} is 1, which ONNX would \
                                 remove, but the graph was built for the rank with it kept \
                                 (its size was unknown at import)",
                                x.shape
                            )))
                        }
                        Some(_) if !axes.contains(&a) => {}
                        _ => {
                            return Err(OpError::attribute(format!(
                                "not_one axis {a} out of range for rank {rank} or also squeezed"
                            )))
                        }
                    }
                }
                for &a in axes {
                    match x.shape.0.get(a) {
                        Some(Dim::Known(1)) | Some(Dim::Sym(_)) | Some(Dim::Any) => {}
                        Some(d) => {
                            return Err(OpError::attribute(format!(
                                "cannot squeeze axis {a} of size {d}"
                            )))
                        }
                        None => {
                            return Err(OpError::attribute(format!(
                                "squeeze axis {a} out of range for rank {rank}"
                            )))
                        }
                    }
                }
                same_dtype(Shape(
                    x.shape
                        .0
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, d)| d.clone())
                        .collect(),
                ))
            }
            LayoutOp::Unsqueeze { axes } => {
                let out_rank = rank + axes.len();
                let mut src = x.shape.0.iter();
                let mut out = Vec::with_capacity(out_rank);
                for i in 0..out_rank {
                    if axes.contains(&i) {
                        out.push(Dim::Known(1));
                    } else {
                        out.push(
                            src.next()
                                .ok_or(OpError::attribute("unsqueeze axes out of range"))?
                                .clone(),
                        );
                    }
                }
                if axes.iter().any(|&a| a >= out_rank) {
                    return Err(OpError::attribute(format!(
                        "unsqueeze axes {axes:?} out of range for output rank {out_rank}"
                    )));
                }
                same_dtype(Shape(out))
            }
            LayoutOp::Flatten { axis } => {
                if *axis > rank {
                    return Err(OpError::attribute(format!(
                        "flatten axis {axis} out of range for rank {rank}"
                    )));
                }
                let prod = |ds: &[Dim]| -> Dim {
                    ds.iter()
                        .map(Dim::known)
                        .product::<Option<usize>>()
                        .map(Dim::Known)
                        .unwrap_or(Dim::Any)
                };
                same_dtype(Shape(vec![
                    prod(&x.shape.0[..*axis]),
                    prod(&x.shape.0[*axis..]),
                ]))
            }
            LayoutOp::Expand => {
                let target = match const_ints(inputs, 1) {
                    Some(t) => {
                        Shape::known(&t.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>())
                    }
                    None => any_shape(
                        inputs
                            .ty(1)?
                            .shape
                            .0
                            .first()
                            .and_then(Dim::known)
                            .ok_or(OpError::shape("expand target of unknown length"))?,
                    ),
                };
                let s = Shape::broadcast(&x.shape, &target).ok_or_else(|| {
                    OpError::shape(format!("cannot expand {} to {}", x.shape, target))
                })?;
                same_dtype(s)
            }
            LayoutOp::Concat { axis } => {
                if *axis >= rank {
                    return Err(OpError::attribute(format!(
                        "concat axis {axis} out of range for rank {rank}"
                    )));
                }
                let mut out = x.shape.clone();
                let mut total = Some(0usize);
                for t in inputs.types {
                    if t.shape.rank() != rank || t.dtype != x.dtype {
                        return Err(OpError::shape(format!("concat of {x} and {t}")));
                    }
                    total = total.zip(t.shape.0[*axis].known()).map(|(a, b)| a + b);
                }
                out.0[*axis] = total.map(Dim::Known).unwrap_or(Dim::Any);
                same_dtype(out)
            }
            LayoutOp::Split { axis, sizes } => {
                if *axis >= rank {
                    return Err(OpError::attribute(format!(
                        "split axis {axis} out of range for rank {rank}"
                    )));
                }
                if let Some(n) = x.shape.0[*axis].known() {
                    if sizes.iter().sum::<usize>() != n {
                        return Err(OpError::shape(format!(
                            "split sizes {sizes:?} do not add up to {n}"
                        )));
                    }
                }
                Ok(sizes
                    .iter()
                    .map(|&s| {
                        let mut sh = x.shape.clone();
                        sh.0[*axis] = Dim::Known(s);
                        TensorType::new(x.dtype, sh)
                    })
                    .collect())
            }
            LayoutOp::Slice => {
                let (Some(starts), Some(ends), Some(axes), Some(steps)) = (
                    const_ints(inputs, 1),
                    const_ints(inputs, 2),
                    const_ints(inputs, 3),
                    const_ints(inputs, 4),
                ) else {
                    return same_dtype(any_shape(rank));
                };
                if ends.len() != starts.len()
                    || axes.len() != starts.len()
                    || steps.len() != starts.len()
                {
                    return Err(OpError::attribute(format!(
                        "starts, ends, axes and steps differ in length ({}, {}, {}, {})",
                        starts.len(),
                        ends.len(),
                        axes.len(),
                        steps.len()
                    )));
                }
                let mut out = x.shape.clone();
                for i in 0..starts.len() {
                    let a = super::util::axis(axes[i], rank)?;
                    if let Some(n) = x.shape.0[a].known() {
                        out.0[a] = Dim::Known(slice_len(n, starts[i], ends[i], steps[i])?);
                    } else if starts[i] == 0 && steps[i] == 1 && ends[i] >= i64::MAX / 2 {
                        // Whole axis kept.
                    } else {
                        out.0[a] = Dim::Any;
                    }
                }
                same_dtype(out)
            }
            LayoutOp::Gather { axis } => {
                let idx = inputs.ty(1)?;
                if *axis >= rank {
                    return Err(OpError::attribute(format!(
                        "gather axis {axis} out of range for rank {rank}"
                    )));
                }
                let mut out = x.shape.0[..*axis].to_vec();
                out.extend(idx.shape.0.iter().cloned());
                out.extend(x.shape.0[*axis + 1..].iter().cloned());
                same_dtype(Shape(out))
            }
            LayoutOp::GatherElements { .. } => same_dtype(inputs.ty(1)?.shape.clone()),
            LayoutOp::GatherND { batch_dims } => {
                let idx = inputs.ty(1)?;
                let q = idx.shape.rank();
                let Some(last) = idx.shape.0.last().and_then(Dim::known) else {
                    return Err(OpError::shape("GatherND indices need a known last dim"));
                };
                let mut out = idx.shape.0[..q - 1].to_vec();
                out.extend(x.shape.0.iter().skip(batch_dims + last).cloned());
                same_dtype(Shape(out))
            }
            LayoutOp::ScatterND { .. } | LayoutOp::ScatterElements { .. } => {
                same_dtype(x.shape.clone())
            }
            LayoutOp::TensorScatter { axis, .. } => {
                let u = inputs.ty(1)?;
                if u.dtype != x.dtype {
                    return Err(OpError::dtype(format!(
                        "TensorScatter update is {}, the cache {}",
                        u.dtype, x.dtype
                    )));
                }
                if *axis == 0 || *axis >= rank || u.shape.rank() != rank {
                    return Err(OpError::shape(format!(
                        "TensorScatter of cache {} and update {} on axis {axis} (1 to rank − 1)",
                        x.shape, u.shape
                    )));
                }
                if let Some(w) = inputs.types.get(2) {
                    if !w.dtype.is_int() || w.shape.rank() != 1 {
                        return Err(OpError::dtype(format!(
                            "TensorScatter write_indices must be a 1-D integer tensor, got {w}"
                        )));
                    }
                }
                same_dtype(x.shape.clone())
            }
            LayoutOp::Tile => match const_ints(inputs, 1) {
                Some(reps) => {
                    if reps.len() != rank {
                        return Err(OpError::shape(format!(
                            "Tile repeats {reps:?} for an input of rank {rank}"
                        )));
                    }
                    let dims = x
                        .shape
                        .0
                        .iter()
                        .zip(&reps)
                        .map(|(d, &r)| {
                            let r = usize::try_from(r).map_err(|_| {
                                OpError::value(format!("Tile repeats {reps:?}: negative"))
                            })?;
                            Ok(match d.known() {
                                Some(n) => Dim::Known(n.checked_mul(r).ok_or_else(|| {
                                    OpError::too_large(format!(
                                        "Tile of {} by {reps:?} overflows",
                                        x.shape
                                    ))
                                })?),
                                None => Dim::Any,
                            })
                        })
                        .collect::<Result<Vec<_>, OpError>>()?;
                    same_dtype(Shape(dims))
                }
                None => same_dtype(any_shape(rank)),
            },
            LayoutOp::Pad { .. } => match const_ints(inputs, 1) {
                Some(p) if p.len() == 2 * rank => same_dtype(Shape(
                    (0..rank)
                        .map(|i| {
                            x.shape.0[i]
                                .known()
                                .map(|n| Dim::Known((n as i64 + p[i] + p[i + rank]) as usize))
                                .unwrap_or(Dim::Any)
                        })
                        .collect(),
                )),
                Some(p) => Err(OpError::shape(format!(
                    "pads has {} entries, expected {}",
                    p.len(),
                    2 * rank
                ))),
                None => same_dtype(any_shape(rank)),
            },
            LayoutOp::Shape { start, end } => {
                let (s, e) = shape_range(rank, *start, *end);
                Ok(vec![TensorType::new(DType::I64, Shape::known(&[e - s]))])
            }
            LayoutOp::Size => Ok(vec![TensorType::new(DType::I64, Shape::default())]),
            LayoutOp::ConstantOfShape { dtype, .. } => {
                let shape = match const_ints(inputs, 0) {
                    Some(d) => Shape::known(&d.iter().map(|&v| v as usize).collect::<Vec<_>>()),
                    None => any_shape(
                        x.shape
                            .0
                            .first()
                            .and_then(Dim::known)
                            .ok_or(OpError::shape("ConstantOfShape of unknown rank"))?,
                    ),
                };
                Ok(vec![TensorType::new(*dtype, shape)])
            }
            LayoutOp::Range => {
                let n = match (inputs.constant(0), inputs.constant(1), inputs.constant(2)) {
                    (Some(s), Some(l), Some(d)) => {
                        let (s, l, d) = (
                            s.scalar_f64().unwrap_or(0.0),
                            l.scalar_f64().unwrap_or(0.0),
                            d.scalar_f64().unwrap_or(1.0),
                        );
                        Dim::Known(((l - s) / d).ceil().max(0.0) as usize)
                    }
                    _ => Dim::Any,
                };
                same_dtype(Shape(vec![n]))
            }
            LayoutOp::Trilu { .. } | LayoutOp::Identity => same_dtype(x.shape.clone()),
            LayoutOp::OneHot { axis } => {
                let depth = inputs
                    .constant(1)
                    .and_then(|d| d.scalar_f64())
                    .map(|d| Dim::Known(d as usize))
                    .unwrap_or(Dim::Any);
                let vals = inputs.ty(2)?;
                let out_rank = rank + 1;
                let a = super::util::axis(*axis, out_rank)?;
                let mut out = x.shape.0.clone();
                out.insert(a, depth);
                Ok(vec![TensorType::new(vals.dtype, Shape(out))])
            }
            LayoutOp::NonZero => Ok(vec![TensorType::new(
                DType::I64,
                Shape(vec![Dim::Known(rank), Dim::Any]),
            )]),
            LayoutOp::Cast { to, .. } => Ok(vec![TensorType::new(*to, x.shape.clone())]),
            LayoutOp::Where => {
                let (a, b) = (inputs.ty(1)?, inputs.ty(2)?);
                if a.dtype != b.dtype {
                    return Err(OpError::dtype(format!(
                        "Where branches differ in dtype: {} and {}",
                        a.dtype, b.dtype
                    )));
                }
                Ok(vec![TensorType::new(a.dtype, broadcast_all(inputs.types)?)])
            }
            LayoutOp::DepthToSpace { blocksize, .. } => {
                let b = *blocksize;
                let s = &x.shape.0;
                if rank != 4 {
                    return Err(OpError::shape("DepthToSpace needs rank 4"));
                }
                let m = |d: &Dim, f: &dyn Fn(usize) -> usize| {
                    d.known().map(|n| Dim::Known(f(n))).unwrap_or(Dim::Any)
                };
                same_dtype(Shape(vec![
                    s[0].clone(),
                    m(&s[1], &|n| n / (b * b)),
                    m(&s[2], &|n| n * b),
                    m(&s[3], &|n| n * b),
                ]))
            }
            LayoutOp::SpaceToDepth { blocksize } => {
                let b = *blocksize;
                let s = &x.shape.0;
                if rank != 4 {
                    return Err(OpError::shape("SpaceToDepth needs rank 4"));
                }
                let m = |d: &Dim, f: &dyn Fn(usize) -> usize| {
                    d.known().map(|n| Dim::Known(f(n))).unwrap_or(Dim::Any)
                };
                same_dtype(Shape(vec![
                    s[0].clone(),
                    m(&s[1], &|n| n * b * b),
                    m(&s[2], &|n| n / b),
                    m(&s[3], &|n| n / b),
                ]))
            }
            LayoutOp::ReverseSequence { .. } => same_dtype(x.shape.clone()),
            LayoutOp::Compress { axis } => match axis {
                Some(a) => {
                    let mut s = x.shape.clone();
                    s.0[*a] = Dim::Any;
                    same_dtype(s)
                }
                None => same_dtype(Shape(vec![Dim::Any])),
            },
            LayoutOp::EyeLike { dtype, .. } => Ok(vec![TensorType::new(*dtype, x.shape.clone())]),
            LayoutOp::Unique { axis, .. } => {
                let (y, n) = match axis {
                    Some(a) if *a < rank => {
                        let mut y = x.shape.clone();
                        y.0[*a] = Dim::Any;
                        (y, x.shape.0[*a].clone())
                    }
                    Some(a) => {
                        return Err(OpError::attribute(format!(
                            "axis {a} out of range for rank {rank}"
                        )))
                    }
                    None => {
                        let n = x
                            .shape
                            .0
                            .iter()
                            .try_fold(1usize, |acc, d| d.known().map(|d| acc * d));
                        (Shape(vec![Dim::Any]), n.map_or(Dim::Any, Dim::Known))
                    }
                };
                let any = || TensorType::new(DType::I64, Shape(vec![Dim::Any]));
                Ok(vec![
                    TensorType::new(x.dtype, y),
                    any(),
                    TensorType::new(DType::I64, Shape(vec![n])),
                    any(),
                ])
            }
            LayoutOp::BitCast { to } => {
                if x.dtype.bits() != to.bits() {
                    return Err(OpError::dtype(format!(
                        "BitCast from {} to {to}: the element sizes differ",
                        x.dtype
                    )));
                }
                Ok(vec![TensorType::new(*to, x.shape.clone())])
            }
        }
    }
}

/// The axes `Shape(start, end)` selects, clamped like ONNX does.
pub fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let clamp = |v: i64| -> usize {
        let v = if v < 0 { v + rank as i64 } else { v };
        v.clamp(0, rank as i64) as usize
    };
    let s = clamp(start);
    let e = clamp(end.unwrap_or(rank as i64));
    (s, e.max(s))
}

/// Number of elements ONNX `Slice` keeps from an axis of length `n`.
pub fn slice_len(n: usize, start: i64, end: i64, step: i64) -> Result<usize, OpError> {
    let (s, e) = slice_bounds(n, start, end, step)?;
    Ok(if step > 0 {
        ((e - s).max(0) as usize).div_ceil(step as usize)
    } else {
        ((s - e).max(0) as usize).div_ceil((-step) as usize)
    })
}

/// The clamped (start, end) ONNX `Slice` uses for an axis of length `n`.
pub fn slice_bounds(n: usize, start: i64, end: i64, step: i64) -> Result<(i64, i64), OpError> {
    if step == 0 {
        return Err(OpError::value("slice step 0"));
    }
    let n = n as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = (norm(start), norm(end));
    Ok(if step > 0 {
        (s.clamp(0, n), e.clamp(0, n))
    } else {
        (s.clamp(-1, n - 1), e.clamp(-1, n - 1))
    })
}
