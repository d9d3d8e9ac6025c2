//! Composite ops: each equals a decomposition into primitive ops, and backends may
//! implement it directly (the optimizer chooses by cost).

use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::{InferInputs, OpFamily};
use crate::TensorType;

/// A composite op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum CompositeOp {
    /// eˣ / Σeˣ along `axis`.
    Softmax {
        /// Axis.
        axis: usize,
    },
    /// ln softmax(x) along `axis`.
    LogSoftmax {
        /// Axis.
        axis: usize,
    },
    /// One-hot of the (first) maximum along `axis`.
    Hardmax {
        /// Axis.
        axis: usize,
    },
    /// `[x, scale]` or `[x, scale, bias]`: (x − mean)/√(var + ε)·scale + bias over axes `axis..`.
    LayerNorm {
        /// First normalized axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// `[x, scale]`: x/√(mean(x²) + ε)·scale over axes `axis..`.
    RmsNorm {
        /// First normalized axis.
        axis: usize,
        /// Added to the mean square.
        epsilon: f32,
    },
    /// x·Φ(x), exact (erf) or with the tanh approximation.
    Gelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// `[q, k, v]` or `[q, k, v, mask]` with q `[..., s_q, d]`, k/v `[..., s_kv, d]` and an
    /// additive (float) or boolean mask broadcast to `[..., s_q, s_kv]`:
    /// softmax(q·kᵀ·scale + mask)·v. K/V heads may be fewer than Q heads (GQA, axis −3).
    Attention {
        /// Score scale (1/√d when `None`).
        scale: Option<f32>,
        /// Apply a causal (lower-triangular) mask.
        causal: bool,
    },
}

impl OpFamily for CompositeOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, String> {
        let x = inputs.ty(0)?;
        let rank = x.shape.rank();
        match self {
            CompositeOp::Softmax { axis }
            | CompositeOp::LogSoftmax { axis }
            | CompositeOp::Hardmax { axis } => {
                if *axis >= rank.max(1) {
                    return Err(format!("axis {axis} out of range for rank {rank}"));
                }
                Ok(vec![x.clone()])
            }
            CompositeOp::LayerNorm { axis, .. } | CompositeOp::RmsNorm { axis, .. } => {
                if *axis > rank {
                    return Err(format!("axis {axis} out of range for rank {rank}"));
                }
                Ok(vec![x.clone()])
            }
            CompositeOp::Gelu { .. } => Ok(vec![x.clone()]),
            CompositeOp::Attention { .. } => {
                let v = inputs.ty(2)?;
                let mut shape = x.shape.clone();
                if let (Some(last), Some(vd)) = (shape.0.last_mut(), v.shape.0.last()) {
                    *last = vd.clone();
                }
                Ok(vec![TensorType::new(x.dtype, shape)])
            }
        }
    }
}
