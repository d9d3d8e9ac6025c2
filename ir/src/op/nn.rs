//! Neural-network ops: matmul, convolution, pooling, normalization, resize, einsum.

use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::util::any_shape;
use super::{InferInputs, OpFamily};
use crate::{DType, Dim, Shape, TensorType};

/// How convolution and pooling pad when explicit pads are not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    NotSet,
    /// No padding.
    Valid,
    /// Output size ⌈in/stride⌉, extra padding at the end.
    SameUpper,
    /// Output size ⌈in/stride⌉, extra padding at the beginning.
    SameLower,
}

/// Interpolation mode of `Resize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// Nearest neighbour.
    Nearest,
    /// (Multi-)linear.
    Linear,
    /// Cubic.
    Cubic,
}

/// How `Resize` maps output coordinates to input coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeCoord {
    /// (x + 0.5) / scale − 0.5
    HalfPixel,
    /// Like half_pixel but 0 when the output length is 1.
    PytorchHalfPixel,
    /// x · (in − 1) / (out − 1)
    AlignCorners,
    /// x / scale
    Asymmetric,
    /// Crop-and-resize with a region of interest.
    TfCropAndResize,
    /// Half pixel with the symmetric offset of opset 19.
    HalfPixelSymmetric,
}

/// How `Resize` in nearest mode rounds a coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeNearest {
    /// Round half down.
    RoundPreferFloor,
    /// Round half up.
    RoundPreferCeil,
    /// Floor.
    Floor,
    /// Ceil.
    Ceil,
}

/// How `Resize` honours `sizes` that would change the aspect ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepAspect {
    /// Every axis gets its requested size.
    Stretch,
    /// One scale for all resized axes, the smallest of the requested ones.
    NotLarger,
    /// One scale for all resized axes, the largest of the requested ones.
    NotSmaller,
}

/// Per-axis scales and output sizes of a `Resize` of `shape`, from the values of
/// its second input (`sizes` when `by_sizes`, else `scales`) for `axes` (empty:
/// all axes).
pub fn resize_plan(
    shape: &[usize],
    values: &[f64],
    by_sizes: bool,
    axes: &[usize],
    keep_aspect: KeepAspect,
) -> Result<(Vec<f64>, Vec<usize>), String> {
    let r = shape.len();
    let axes: Vec<usize> = if axes.is_empty() {
        (0..r).collect()
    } else {
        axes.to_vec()
    };
    if values.len() != axes.len() || axes.iter().any(|&a| a >= r) {
        return Err(format!(
            "Resize of {shape:?}: {} {} for axes {axes:?}",
            values.len(),
            if by_sizes { "sizes" } else { "scales" }
        ));
    }
    let mut scales = vec![1.0; r];
    let mut sizes = shape.to_vec();
    if by_sizes {
        for (&a, &v) in axes.iter().zip(values) {
            if v < 0.0 {
                return Err(format!("Resize to negative size {v}"));
            }
            sizes[a] = v as usize;
            scales[a] = v / shape[a] as f64;
        }
        if keep_aspect != KeepAspect::Stretch {
            let it = axes.iter().map(|&a| scales[a]);
            let s = if keep_aspect == KeepAspect::NotLarger {
                it.fold(f64::INFINITY, f64::min)
            } else {
                it.fold(f64::NEG_INFINITY, f64::max)
            };
            for &a in &axes {
                scales[a] = s;
                sizes[a] = (s * shape[a] as f64 + 0.5) as usize;
            }
        }
    } else {
        for (&a, &v) in axes.iter().zip(values) {
            if v.is_nan() || v <= 0.0 {
                return Err(format!("Resize with scale {v}"));
            }
            scales[a] = v;
            sizes[a] = (v * shape[a] as f64) as usize;
        }
    }
    Ok((scales, sizes))
}

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
    Conv {
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// Begin pads of every spatial axis, then end pads.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Groups.
        group: usize,
        /// Automatic padding.
        auto_pad: AutoPad,
    },
    /// `[x, w]` or `[x, w, bias]`: transposed convolution, w is `[C, M/group, k...]`.
    ConvTranspose {
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// Begin pads, then end pads.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Groups.
        group: usize,
        /// Extra size added at the end of each spatial axis.
        output_padding: Vec<usize>,
        /// Requested spatial output shape (pads are then computed).
        output_shape: Option<Vec<usize>>,
        /// Automatic padding.
        auto_pad: AutoPad,
    },
    /// Max pooling; a second output (i64 flat indices) when the node has two outputs.
    MaxPool {
        /// Window per spatial axis.
        kernel: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// Begin pads, then end pads.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Round the output size up.
        ceil_mode: bool,
        /// Automatic padding.
        auto_pad: AutoPad,
        /// Column-major indices (1) instead of row-major (0).
        storage_order: usize,
    },
    /// Average pooling.
    AveragePool {
        /// Window per spatial axis.
        kernel: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// Begin pads, then end pads.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Round the output size up.
        ceil_mode: bool,
        /// Count padding elements in the divisor.
        count_include_pad: bool,
        /// Automatic padding.
        auto_pad: AutoPad,
    },
    /// Lp pooling: (Σ|x|ᵖ)^(1/p) over each window.
    LpPool {
        /// The norm's p.
        p: i64,
        /// Window per spatial axis.
        kernel: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// Begin pads, then end pads.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Round the output size up.
        ceil_mode: bool,
        /// Automatic padding.
        auto_pad: AutoPad,
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
    /// x / ‖x‖ₚ along `axis`.
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
    Resize {
        /// Interpolation.
        mode: ResizeMode,
        /// Coordinate transformation.
        coord: ResizeCoord,
        /// Rounding in nearest mode.
        nearest: ResizeNearest,
        /// Cubic coefficient.
        cubic_coeff_a: f32,
        /// Exclude samples outside the input (weights renormalized).
        exclude_outside: bool,
        /// Value outside the input in crop-and-resize.
        extrapolation_value: f32,
        /// The second input is `sizes` (i64) instead of `scales`.
        by_sizes: bool,
        /// Widen the filter when downsampling (linear and cubic modes).
        antialias: bool,
        /// How `sizes` are honoured when they would change the aspect ratio.
        keep_aspect: KeepAspect,
        /// The axes the second input's values refer to (empty: all axes, in order).
        axes: Vec<usize>,
    },
    /// Einstein summation over the inputs.
    Einsum {
        /// The equation, e.g. `bij,bjk->bik`.
        equation: String,
    },
}

/// Spatial output sizes and the effective (begin, end) pads of a window op.
#[allow(clippy::too_many_arguments)]
pub fn window_output(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    ceil_mode: bool,
    auto_pad: AutoPad,
) -> Result<(Vec<usize>, Vec<usize>), String> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut eff_pads = vec![0; 2 * n];
    for i in 0..n {
        let s = strides.get(i).copied().unwrap_or(1).max(1);
        let d = dilations.get(i).copied().unwrap_or(1).max(1);
        if kernel.get(i).is_none_or(|&k| k == 0) {
            return Err(format!("kernel {kernel:?} for {n} spatial axes"));
        }
        let k = (kernel[i] - 1) * d + 1;
        match auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => {
                let o = input[i].div_ceil(s);
                let total = (o.saturating_sub(1) * s + k).saturating_sub(input[i]);
                let (b, e) = if auto_pad == AutoPad::SameUpper {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                eff_pads[i] = b;
                eff_pads[i + n] = e;
                out.push(o);
            }
            AutoPad::Valid | AutoPad::NotSet => {
                let (b, e) = if auto_pad == AutoPad::Valid {
                    (0, 0)
                } else {
                    (
                        pads.get(i).copied().unwrap_or(0),
                        pads.get(i + n).copied().unwrap_or(0),
                    )
                };
                eff_pads[i] = b;
                eff_pads[i + n] = e;
                let span = input[i] + b + e;
                if span < k {
                    return Err(format!("window {k} larger than padded input {span}"));
                }
                let mut o = if ceil_mode {
                    (span - k).div_ceil(s) + 1
                } else {
                    (span - k) / s + 1
                };
                // With ceil_mode the last window must start inside the input or its begin pad.
                if ceil_mode && (o - 1) * s >= input[i] + b {
                    o -= 1;
                }
                out.push(o);
            }
        }
    }
    Ok((out, eff_pads))
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

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, String> {
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
                    return Err(format!("matmul of {} and {}", x.dtype, b.dtype));
                }
                Ok(vec![TensorType::new(
                    x.dtype,
                    matmul_shape(&x.shape, &b.shape)?,
                )])
            }
            NnOp::Conv {
                strides,
                pads,
                dilations,
                auto_pad,
                ..
            } => {
                let w = inputs.ty(1)?;
                if rank < 3 || w.shape.rank() != rank {
                    return Err(format!("conv of input {} with weight {}", x.shape, w.shape));
                }
                let kernel =
                    spatial_known(&w.shape).ok_or("conv weight with unknown spatial dims")?;
                let spatial = spatial_known(&x.shape)
                    .map(|s| {
                        window_output(&s, &kernel, strides, pads, dilations, false, *auto_pad)
                            .map(|r| r.0)
                    })
                    .transpose()?;
                Ok(vec![TensorType::new(
                    x.dtype,
                    with_spatial(w.shape.0[0].clone(), spatial),
                )])
            }
            NnOp::ConvTranspose {
                strides,
                pads,
                dilations,
                group,
                output_padding,
                output_shape,
                auto_pad,
            } => {
                let w = inputs.ty(1)?;
                let kernel =
                    spatial_known(&w.shape).ok_or("conv weight with unknown spatial dims")?;
                let c = w.shape.0[1]
                    .known()
                    .map(|m| Dim::Known(m * group))
                    .unwrap_or(Dim::Any);
                let spatial = match output_shape {
                    Some(s) => Some(s.clone()),
                    None => spatial_known(&x.shape).map(|s| {
                        conv_transpose_output(
                            &s,
                            &kernel,
                            strides,
                            pads,
                            dilations,
                            output_padding,
                            *auto_pad,
                        )
                    }),
                };
                Ok(vec![TensorType::new(x.dtype, with_spatial(c, spatial))])
            }
            NnOp::MaxPool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
                auto_pad,
                ..
            }
            | NnOp::AveragePool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
                auto_pad,
                ..
            }
            | NnOp::LpPool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
                auto_pad,
                ..
            } => {
                if rank < 3 {
                    return Err(format!("pooling needs rank ≥ 3, got {}", x.shape));
                }
                let spatial = spatial_known(&x.shape)
                    .map(|s| {
                        window_output(&s, kernel, strides, pads, dilations, *ceil_mode, *auto_pad)
                            .map(|r| r.0)
                    })
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
            NnOp::Resize {
                by_sizes,
                axes,
                keep_aspect,
                ..
            } => {
                let shape = match (inputs.constant(1), x.shape.as_known()) {
                    (Some(t), Some(dims)) => Shape::known(
                        &resize_plan(&dims, &t.to_f64_vec(), *by_sizes, axes, *keep_aspect)?.1,
                    ),
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

/// Spatial output sizes of a transposed convolution.
pub fn conv_transpose_output(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    output_padding: &[usize],
    auto_pad: AutoPad,
) -> Vec<usize> {
    let n = input.len();
    (0..n)
        .map(|i| {
            let s = strides.get(i).copied().unwrap_or(1);
            let d = dilations.get(i).copied().unwrap_or(1);
            let op = output_padding.get(i).copied().unwrap_or(0);
            match auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => input[i] * s,
                _ => {
                    let total = (input[i] - 1) * s + op + (kernel[i] - 1) * d + 1;
                    let p =
                        pads.get(i).copied().unwrap_or(0) + pads.get(i + n).copied().unwrap_or(0);
                    total.saturating_sub(p)
                }
            }
        })
        .collect()
}

/// The output shape of numpy `matmul`.
pub fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, String> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err("matmul of a scalar".into());
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
            return Err(format!("matmul inner dims differ: {a} × {b}"));
        }
    }
    let batch = Shape::broadcast(
        &Shape(a2.0[..ra - 2].to_vec()),
        &Shape(b2.0[..rb - 2].to_vec()),
    )
    .ok_or_else(|| format!("matmul batch dims do not broadcast: {a} × {b}"))?;
    let mut out = batch.0;
    if a.rank() > 1 {
        out.push(a2.0[ra - 2].clone());
    }
    if b.rank() > 1 {
        out.push(b2.0[rb - 1].clone());
    }
    Ok(Shape(out))
}

/// Parses an einsum equation into input subscripts and the output subscript
/// (implicit output: the letters used once, sorted). `...` becomes `*`.
pub fn parse_einsum(
    equation: &str,
    ranks: &[usize],
) -> Result<(Vec<Vec<char>>, Vec<char>), String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!(
            "einsum `{equation}` has {} operands, got {}",
            terms.len(),
            ranks.len()
        ));
    }
    // Ellipsis dims are named by upper-case-free private chars '0'..'9'.
    let mut ell_rank = 0;
    for (t, &r) in terms.iter().zip(ranks) {
        if t.contains("...") {
            let letters = t.replace("...", "").chars().count();
            ell_rank = ell_rank.max(r.saturating_sub(letters));
        }
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
            return Err(format!(
                "einsum operand {i} has rank {r}, subscripts `{}`",
                terms[i]
            ));
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

fn einsum_shape(equation: &str, types: &[TensorType]) -> Result<Shape, String> {
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
                .ok_or_else(|| format!("einsum output letter `{c}` not in inputs"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Shape)
}
