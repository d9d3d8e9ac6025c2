//! `Resize`'s attributes ([`ResizeAttrs`]) and its plan: the scales and output
//! sizes that type inference and the reference interpreter share.

use crate::error::OpError;
use serde::{Deserialize, Serialize};

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

/// The attributes of ONNX `Resize` (and `Upsample`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResizeAttrs {
    /// Interpolation.
    pub mode: ResizeMode,
    /// Coordinate transformation.
    pub coord: ResizeCoord,
    /// Rounding in nearest mode.
    pub nearest: ResizeNearest,
    /// Cubic coefficient.
    pub cubic_coeff_a: f32,
    /// Exclude samples outside the input (weights renormalized).
    pub exclude_outside: bool,
    /// Value outside the input in crop-and-resize.
    pub extrapolation_value: f32,
    /// The second input is `sizes` (i64) instead of `scales`.
    pub by_sizes: bool,
    /// Widen the filter when downsampling (linear and cubic modes).
    pub antialias: bool,
    /// How `sizes` are honoured when they would change the aspect ratio.
    pub keep_aspect: KeepAspect,
    /// The axes the second input's values refer to (empty: all axes, in order).
    pub axes: Vec<usize>,
}

impl ResizeAttrs {
    /// Per-axis scales and output sizes of resizing `shape` by the values of the
    /// second input.
    pub fn plan(&self, shape: &[usize], values: &[f64]) -> Result<(Vec<f64>, Vec<usize>), OpError> {
        resize_plan(shape, values, self.by_sizes, &self.axes, self.keep_aspect)
    }
}

/// Per-axis scales and output sizes of a `Resize` of `shape`, from the values of
/// its second input (`sizes` when `by_sizes`, else `scales`) for `axes` (empty:
/// all axes).
fn resize_plan(
    shape: &[usize],
    values: &[f64],
    by_sizes: bool,
    axes: &[usize],
    keep_aspect: KeepAspect,
) -> Result<(Vec<f64>, Vec<usize>), OpError> {
    let r = shape.len();
    let axes: Vec<usize> = if axes.is_empty() {
        (0..r).collect()
    } else {
        axes.to_vec()
    };
    if values.len() != axes.len() || axes.iter().any(|&a| a >= r) {
        return Err(OpError::attribute(format!(
            "Resize of {shape:?}: {} {} for axes {axes:?}",
            values.len(),
            if by_sizes { "sizes" } else { "scales" }
        )));
    }
    let mut scales = vec![1.0; r];
    let mut sizes = shape.to_vec();
    if by_sizes {
        for (&a, &v) in axes.iter().zip(values) {
            if v < 0.0 {
                return Err(OpError::shape(format!("Resize to negative size {v}")));
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
                return Err(OpError::shape(format!("Resize with scale {v}")));
            }
            scales[a] = v;
            sizes[a] = (v * shape[a] as f64) as usize;
        }
    }
    Ok((scales, sizes))
}
