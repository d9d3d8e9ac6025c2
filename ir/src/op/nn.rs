//! Neural-network ops: matmul, convolution, pooling, normalization, resize, einsum.

use crate::error::OpError;
use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::util::any_shape;
use super::{ConvAttrs, InferInputs, OpFamily, ResizeAttrs, Window};
use crate::{DType, Dim, Shape, TensorType};

/// Direction of a recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RnnDirection {
    /// Forward in time.
    Forward,
    /// Backward in time.
    Reverse,
    /// Both, outputs stacked.
    Bidirectional,
}

/// An op of the neural-network family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum NnOp {
    /// `[a, b]`: numpy `matmul` (batch dims broadcast; 1-D operands promoted then squeezed).
    MatMul,
    /// `[x, w]` or `[x, w, bias]`: N-d convolution, NC... layout, w is `[M, C/group, k...]`.
    Conv(ConvAttrs),
    /// `[x, w]` or `[x, w, bias]`: transposed convolution, w is `[C, M/group, k...]`.
    ConvTranspose {
        /// Strides, pads, dilations, groups, automatic padding.
        conv: ConvAttrs,
        /// Extra size added at the end of each spatial axis.
        output_padding: Vec<usize>,
        /// Requested spatial output shape (pads are then computed).
        output_shape: Option<Vec<usize>>,
    },
    /// Max pooling; a second output (i64 flat indices) when the node has two outputs.
    MaxPool {
        /// The window.
        window: Window,
        /// Column-major indices (1) instead of row-major (0).
        storage_order: usize,
    },
    /// Average pooling.
    AveragePool {
        /// The window.
        window: Window,
        /// Count padding elements in the divisor.
        count_include_pad: bool,
    },
    /// Lp pooling: (Σ|x|ᵖ)^(1/p) over each window.
    LpPool {
        /// The window.
        window: Window,
        /// The norm's p.
        p: i64,
    },
    /// `[x, scale, bias, mean, var]`: inference batch normalization over axis 1.
    BatchNorm {
        /// Added to the variance.
        epsilon: f32,
    },
    /// `[x, scale, bias]`: normalization over the spatial axes of each (n, c).
    InstanceNorm {
        /// Added to the variance.
        epsilon: f32,
    },
    /// `[x, scale, bias]`: normalization over groups of channels (scale/bias per channel).
    GroupNorm {
        /// Added to the variance.
        epsilon: f32,
        /// Number of groups.
        num_groups: usize,
    },
    /// Local response normalization across channels.
    Lrn {
        /// Window size.
        size: usize,
        /// Scale.
        alpha: f32,
        /// Exponent.
        beta: f32,
        /// Offset.
        bias: f32,
    },
    /// x / ‖x‖ₚ along `axis`; 0 where the norm is 0.
    LpNormalization {
        /// Axis.
        axis: usize,
        /// 1 or 2.
        p: i64,
    },
    /// (x − mean) / std over `axes`.
    MeanVarianceNormalization {
        /// Axes.
        axes: Vec<usize>,
    },
    /// `[x, scales]` (f32) or `[x, sizes]` (i64) for `axes`: ONNX `Resize`; crop-and-resize
    /// takes a third input, `roi` (starts of the axes, then ends).
    Resize(ResizeAttrs),
    /// Einstein summation over the inputs.
    Einsum {
        /// The equation, e.g. `bij,bjk->bik`.
        equation: String,
    },
}

fn spatial_known(shape: &Shape) -> Option<Vec<usize>> {
    shape
        .0
        .get(2..)
        .and_then(|s| s.iter().map(Dim::known).collect())
}

impl OpFamily for NnOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let x = inputs.ty(0)?;
        let rank = x.shape.rank();
        let with_spatial = |c: Dim, spatial: Option<Vec<usize>>| -> Shape {
            let mut out = vec![x.shape.0[0].clone(), c];
            match spatial {
                Some(s) => out.extend(s.into_iter().map(Dim::Known)),
                None => out.extend(std::iter::repeat_n(Dim::Any, rank - 2)),
            }
            Shape(out)
        };
        match self {
            NnOp::MatMul => {
                let b = inputs.ty(1)?;
                if x.dtype != b.dtype {
                    return Err(OpError::dtype(format!(
                        "matmul of {} and {}",
                        x.dtype, b.dtype
                    )));
                }
                Ok(vec![TensorType::new(
                    x.dtype,
                    matmul_shape(&x.shape, &b.shape)?,
                )])
            }
            NnOp::Conv(conv) => Ok(vec![TensorType::new(
                x.dtype,
                conv.output_shape(&x.shape, &inputs.ty(1)?.shape)?,
            )]),
            NnOp::ConvTranspose {
                conv,
                output_padding,
                output_shape,
            } => {
                let w = inputs.ty(1)?;
                if rank < 3 || w.shape.rank() != rank {
                    return Err(OpError::shape(format!(
                        "transposed convolution of input {} with weight {}",
                        x.shape, w.shape
                    )));
                }
                let c = w.shape.0[1]
                    .known()
                    .map(|m| Dim::Known(m * conv.groups()))
                    .unwrap_or(Dim::Any);
                let spatial = match (
                    output_shape,
                    spatial_known(&x.shape),
                    spatial_known(&w.shape),
                ) {
                    (Some(s), _, _) => Some(s.clone()),
                    (None, Some(s), Some(k)) => {
                        Some(conv.transposed_output(&s, &k, output_padding, None)?.0)
                    }
                    _ => None,
                };
                Ok(vec![TensorType::new(x.dtype, with_spatial(c, spatial))])
            }
            NnOp::MaxPool { window, .. }
            | NnOp::AveragePool { window, .. }
            | NnOp::LpPool { window, .. } => {
                if rank < 3 {
                    return Err(OpError::shape(format!(
                        "pooling needs rank ≥ 3, got {}",
                        x.shape
                    )));
                }
                let spatial = spatial_known(&x.shape)
                    .map(|s| window.output(&s).map(|g| g.output))
                    .transpose()?;
                let y = TensorType::new(x.dtype, with_spatial(x.shape.0[1].clone(), spatial));
                let indices = TensorType::new(DType::I64, y.shape.clone());
                Ok(vec![y, indices])
            }
            NnOp::BatchNorm { .. }
            | NnOp::InstanceNorm { .. }
            | NnOp::GroupNorm { .. }
            | NnOp::Lrn { .. }
            | NnOp::LpNormalization { .. }
            | NnOp::MeanVarianceNormalization { .. } => Ok(vec![x.clone()]),
            NnOp::Resize(attrs) => {
                let shape = match (inputs.constant(1), x.shape.as_known()) {
                    (Some(t), Some(dims)) => Shape::known(&attrs.plan(&dims, &t.to_f64_vec())?.1),
                    _ => any_shape(rank),
                };
                Ok(vec![TensorType::new(x.dtype, shape)])
            }
            NnOp::Einsum { equation } => {
                einsum_shape(equation, inputs.types).map(|s| vec![TensorType::new(x.dtype, s)])
            }
        }
    }
}

/// The output shape of numpy `matmul`.
pub fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, OpError> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err(OpError::shape("matmul of a scalar"));
    }
    let a2 = if a.rank() == 1 {
        Shape(vec![Dim::Known(1), a.0[0].clone()])
    } else {
        a.clone()
    };
    let b2 = if b.rank() == 1 {
        Shape(vec![b.0[0].clone(), Dim::Known(1)])
    } else {
        b.clone()
    };
    let (ra, rb) = (a2.rank(), b2.rank());
    let (k1, k2) = (&a2.0[ra - 1], &b2.0[rb - 2]);
    if let (Some(x), Some(y)) = (k1.known(), k2.known()) {
        if x != y {
            return Err(OpError::shape(format!(
                "matmul inner dims differ: {a} × {b}"
            )));
        }
    }
    let batch = Shape::broadcast(
        &Shape(a2.0[..ra - 2].to_vec()),
        &Shape(b2.0[..rb - 2].to_vec()),
    )
    .ok_or_else(|| OpError::shape(format!("matmul batch dims do not broadcast: {a} × {b}")))?;
    let mut out = batch.0;
    if a.rank() > 1 {
        out.push(a2.0[ra - 2].clone());
    }
    if b.rank() > 1 {
        out.push(b2.0[rb - 1].clone());
    }
    Ok(Shape(out))
}

/// Most dims one einsum ellipsis may stand for (they are named '0'..'9').
const MAX_EINSUM_ELLIPSIS_DIMS: usize = 10;

/// Parses an einsum equation into input subscripts and the output subscript
/// (implicit output: the letters used once, sorted). `...` becomes `*`.
pub fn parse_einsum(
    equation: &str,
    ranks: &[usize],
) -> Result<(Vec<Vec<char>>, Vec<char>), OpError> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(OpError::shape(format!(
            "einsum `{equation}` has {} operands, got {}",
            terms.len(),
            ranks.len()
        )));
    }
    // Ellipsis dims are named by the private chars '0'..'9'.
    let mut ell_rank = 0;
    if let Some(t) = terms.iter().copied().chain(rhs.as_deref()).find(|t| {
        t.matches("...").count() > 1
            || !t
                .replacen("...", "", 1)
                .chars()
                .all(|c| c.is_ascii_alphabetic())
    }) {
        return Err(OpError::attribute(format!(
            "einsum `{equation}`: term `{t}` is not letters with at most one `...`"
        )));
    }
    if let Some(r) = &rhs {
        let letters: Vec<char> = r.chars().filter(char::is_ascii_alphabetic).collect();
        if let Some(c) = letters
            .iter()
            .find(|c| letters.iter().filter(|d| d == c).count() > 1)
        {
            return Err(OpError::attribute(format!(
                "einsum `{equation}`: output letter `{c}` appears twice"
            )));
        }
    }
    for (t, &r) in terms.iter().zip(ranks) {
        let letters = t.replace("...", "").chars().count();
        let fits = if t.contains("...") {
            letters <= r
        } else {
            letters == r
        };
        if !fits {
            return Err(OpError::shape(format!(
                "einsum `{equation}`: term `{t}` for an operand of rank {r}"
            )));
        }
        if t.contains("...") {
            ell_rank = ell_rank.max(r - letters);
        }
    }
    if ell_rank > MAX_EINSUM_ELLIPSIS_DIMS {
        return Err(OpError::unsupported(format!(
            "einsum `{equation}`: an ellipsis of {ell_rank} dims (at most \
             {MAX_EINSUM_ELLIPSIS_DIMS})"
        )));
    }
    let expand = |t: &str, rank: Option<usize>| -> Vec<char> {
        let mut out = Vec::new();
        if let Some((pre, post)) = t.split_once("...") {
            out.extend(pre.chars());
            let n = match rank {
                Some(r) => r - pre.chars().count() - post.chars().count(),
                None => ell_rank,
            };
            out.extend((ell_rank - n..ell_rank).map(|i| char::from(b'0' + i as u8)));
            out.extend(post.chars());
        } else {
            out.extend(t.chars());
        }
        out
    };
    let ins: Vec<Vec<char>> = terms
        .iter()
        .zip(ranks)
        .map(|(t, &r)| expand(t, Some(r)))
        .collect();
    for (i, (t, &r)) in ins.iter().zip(ranks).enumerate() {
        if t.len() != r {
            return Err(OpError::shape(format!(
                "einsum operand {i} has rank {r}, subscripts `{}`",
                terms[i]
            )));
        }
    }
    let out = match rhs {
        Some(r) => expand(&r, None),
        None => {
            let mut counts = std::collections::BTreeMap::new();
            for t in &ins {
                for &c in t {
                    *counts.entry(c).or_insert(0) += 1;
                }
            }
            let mut out: Vec<char> = (0..ell_rank).map(|i| char::from(b'0' + i as u8)).collect();
            out.extend(
                counts
                    .into_iter()
                    .filter(|(c, n)| *n == 1 && c.is_alphabetic())
                    .map(|(c, _)| c),
            );
            out
        }
    };
    Ok((ins, out))
}

fn einsum_shape(equation: &str, types: &[TensorType]) -> Result<Shape, OpError> {
    let ranks: Vec<usize> = types.iter().map(|t| t.shape.rank()).collect();
    let (ins, out) = parse_einsum(equation, &ranks)?;
    let mut dims: std::collections::HashMap<char, Dim> = Default::default();
    for (t, ty) in ins.iter().zip(types) {
        for (c, d) in t.iter().zip(&ty.shape.0) {
            let e = dims.entry(*c).or_insert(d.clone());
            if *e == Dim::Known(1) {
                *e = d.clone();
            }
        }
    }
    out.iter()
        .map(|c| {
            dims.get(c)
                .cloned()
                .ok_or_else(|| OpError::shape(format!("einsum output letter `{c}` not in inputs")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Shape)
}
