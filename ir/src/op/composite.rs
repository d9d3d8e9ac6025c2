//! Composite ops: each equals a decomposition into primitive ops, and backends may
//! implement it directly (the optimizer chooses by cost).

use crate::error::OpError;
use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::{InferInputs, OpFamily};
use crate::{DType, Dim, Shape, TensorType};

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
    /// `[x, scale]` or `[x, scale, bias]`: (x − mean)/√(var + ε)·scale + bias over axes
    /// `axis..` (scale and bias broadcast to x). Outputs `[y, mean, inv_std_dev]`, the
    /// statistics shaped like x with axes `axis..` of size 1, in f32 (f64 for f64 x).
    LayerNorm {
        /// First normalized axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// `[x, scale]`: x/√(mean(x²) + ε)·scale over axes `axis..` (scale broadcast to x).
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
    /// Scaled dot-product attention over `[..., heads, seq, dim]` tensors.
    ///
    /// Inputs, in order: q `[..., h_q, s_q, d]`, k `[..., h_kv, s_kv, d]`,
    /// v `[..., h_kv, s_kv, d_v]`; then `mask` when `mask` is set, `past_key`
    /// `[..., h_kv, s_past, d]` and `past_value` when `past` is set, and an i64
    /// `kv_lengths` `[batch]` when `kv_lengths` is set.
    ///
    /// Keys and values are the past ones followed by the new ones. Scores are
    /// q·kᵀ·scale, then softcapped (c·tanh(s/c)), then the mask added (a float mask adds,
    /// a bool mask keeps where true; it broadcasts to `[..., h_q, s_q, s_total]`, and a
    /// mask narrower than `s_total` masks the keys beyond it out), then causal masking
    /// (query i sees keys j ≤ i + s_past), then keys ≥ `kv_lengths[b]` masked out;
    /// softmax over keys, times v. With fewer K/V heads than Q heads (GQA), Q head i
    /// uses K/V head i / (h_q / h_kv).
    ///
    /// Outputs `[y, present_key, present_value, qk]`: y `[..., h_q, s_q, d_v]`, the
    /// concatenated keys and values, and the scores at the stage `qk_output` names.
    Attention {
        /// Score scale (1/√d when `None`).
        scale: Option<f32>,
        /// Apply a causal (upper-left aligned, shifted by the past length) mask.
        causal: bool,
        /// Soft cap c of the scores (none when `None`).
        softcap: Option<f32>,
        /// A mask input follows v.
        mask: bool,
        /// `past_key` and `past_value` inputs follow.
        past: bool,
        /// A `kv_lengths` input comes last.
        kv_lengths: bool,
        /// Which scores the fourth output holds.
        qk_output: QkOutput,
    },
    /// `[log_prob, target]` or `[log_prob, target, weight]`: negative log-likelihood loss.
    /// log_prob is `[n, c, d...]`, target (integer) `[n, d...]`, weight `[c]`;
    /// loss = −log_prob[n, target, d...]·weight[target], zero where target equals
    /// `ignore_index`, then reduced.
    NllLoss {
        /// How the per-element losses are combined.
        reduction: LossReduction,
        /// Target value that contributes nothing.
        ignore_index: Option<i64>,
    },
    /// Rotary position embedding: `[x, cos, sin]` or `[x, cos, sin, position_ids]`.
    ///
    /// x is `[batch, heads, seq, head_dim]`, or `[batch, seq, heads·head_dim]` when
    /// `num_heads` is set. The first `rotary_dim` features of each head (all when
    /// `None`) are rotated in pairs: (x₁, x₂) → (c·x₁ − s·x₂, s·x₁ + c·x₂), the pairs
    /// being adjacent features (`interleaved`) or the two halves of the rotated block.
    /// With position ids (`[batch, seq]`, integer), cos and sin are `[max_pos, rd/2]`
    /// tables indexed by them; without, they are `[batch, seq, rd/2]`.
    RotaryEmbedding {
        /// Pairs are adjacent features (2j, 2j+1) rather than (j, j + rd/2).
        interleaved: bool,
        /// Number of rotated features per head (the whole head when `None`).
        rotary_dim: Option<usize>,
        /// Heads packed in the last axis of a 3-D x (`None` for 4-D x).
        num_heads: Option<usize>,
        /// A `position_ids` input follows sin.
        position_ids: bool,
    },
}

/// Which attention scores [`CompositeOp::Attention`] returns as its fourth output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QkOutput {
    /// q·kᵀ·scale.
    Raw,
    /// After the soft cap.
    Softcapped,
    /// After the soft cap and the masks.
    Masked,
    /// After the softmax (the attention probabilities).
    Softmax,
}

/// How a loss combines its per-element values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossReduction {
    /// Per-element losses, shaped like the target.
    None,
    /// Their sum (a scalar).
    Sum,
    /// Their weighted mean: the sum divided by the sum of the applied weights.
    Mean,
}

impl OpFamily for CompositeOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let x = inputs.ty(0)?;
        let rank = x.shape.rank();
        match self {
            CompositeOp::Softmax { axis }
            | CompositeOp::LogSoftmax { axis }
            | CompositeOp::Hardmax { axis } => {
                if *axis >= rank {
                    return Err(OpError::attribute(format!(
                        "axis {axis} out of range for rank {rank}"
                    )));
                }
                Ok(vec![x.clone()])
            }
            CompositeOp::LayerNorm { axis, .. } | CompositeOp::RmsNorm { axis, .. } => {
                if *axis > rank {
                    return Err(OpError::attribute(format!(
                        "axis {axis} out of range for rank {rank}"
                    )));
                }
                let mut out = vec![x.clone()];
                if matches!(self, CompositeOp::LayerNorm { .. }) {
                    let mut shape = x.shape.clone();
                    for d in &mut shape.0[*axis..] {
                        *d = Dim::Known(1);
                    }
                    let dt = if x.dtype == DType::F64 {
                        DType::F64
                    } else {
                        DType::F32
                    };
                    out.push(TensorType::new(dt, shape.clone()));
                    out.push(TensorType::new(dt, shape));
                }
                Ok(out)
            }
            CompositeOp::Gelu { .. } => Ok(vec![x.clone()]),
            CompositeOp::Attention { mask, past, .. } => {
                let (k, v) = (inputs.ty(1)?, inputs.ty(2)?);
                if rank < 2 || k.shape.rank() != rank || v.shape.rank() != rank {
                    return Err(OpError::shape(format!(
                        "q, k and v must have one rank of at least 2, got {}, {} and {}",
                        x.shape, k.shape, v.shape
                    )));
                }
                let mut y = x.shape.clone();
                y.0[rank - 1] = v.shape.0[rank - 1].clone();
                let (mut pk, mut pv) = (k.shape.clone(), v.shape.clone());
                let mut total = k.shape.0[rank - 2].clone();
                if *past {
                    let at = 3 + *mask as usize;
                    let past_k = inputs.ty(at)?;
                    inputs.ty(at + 1)?;
                    total = match (&total, &past_k.shape.0.get(rank - 2)) {
                        (Dim::Known(a), Some(Dim::Known(b))) => Dim::Known(a + b),
                        _ => Dim::Any,
                    };
                    pk.0[rank - 2] = total.clone();
                    pv.0[rank - 2] = total.clone();
                }
                let mut qk = x.shape.clone();
                qk.0[rank - 1] = total;
                Ok(vec![
                    TensorType::new(x.dtype, y),
                    TensorType::new(k.dtype, pk),
                    TensorType::new(v.dtype, pv),
                    TensorType::new(x.dtype, qk),
                ])
            }
            CompositeOp::NllLoss { reduction, .. } => {
                let t = inputs.ty(1)?;
                if rank < 2 || t.shape.rank() != rank - 1 {
                    return Err(OpError::shape(format!(
                        "log_prob {} must be [n, c, d...] and target {} [n, d...]",
                        x.shape, t.shape
                    )));
                }
                let shape = match reduction {
                    LossReduction::None => t.shape.clone(),
                    _ => Shape::default(),
                };
                Ok(vec![TensorType::new(x.dtype, shape)])
            }
            CompositeOp::RotaryEmbedding {
                num_heads,
                position_ids,
                ..
            } => {
                match (rank, num_heads) {
                    (4, None) => {}
                    (3, Some(h)) if *h > 0 => {}
                    _ => {
                        return Err(OpError::shape(format!(
                            "x {} must be [batch, heads, seq, dim], or [batch, seq, hidden] \
                             with num_heads",
                            x.shape
                        )))
                    }
                }
                inputs.ty(1)?;
                inputs.ty(2)?;
                if *position_ids {
                    inputs.ty(3)?;
                }
                Ok(vec![x.clone()])
            }
        }
    }
}
