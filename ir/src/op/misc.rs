//! Miscellaneous ops: quantization, integer matmul/convolution, recurrences
//! (RNN/GRU/LSTM), sampling and detection ops, signal processing.
//!
//! These are primitives the rest of the op set cannot express exactly: the
//! quantized ops compute in integer arithmetic with the spec's rounding, the
//! recurrences carry state through time.

use crate::error::OpError;
use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::nn::matmul_shape;
use super::util::any_shape;
use super::{ConvAttrs, InferInputs, OpFamily, RnnDirection, Window};
use crate::{DType, Dim, Shape, TensorType};

/// Which recurrent cell an [`MiscOp::Rnn`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RnnCell {
    /// Elman RNN: one gate, one activation.
    Rnn,
    /// Gated recurrent unit: gates z, r, h; two activations.
    Gru,
    /// Long short-term memory: gates i, o, f, c; three activations.
    Lstm,
}

/// An activation function of a recurrent cell, with its parameters explicit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RnnActivation {
    /// max(x, 0)
    Relu,
    /// tanh x
    Tanh,
    /// 1 / (1 + e^−x)
    Sigmoid,
    /// αx + β
    Affine {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x ≥ 0 ? x : αx
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// x > α ? x : 0
    ThresholdedRelu {
        /// Threshold.
        alpha: f32,
    },
    /// α tanh(βx)
    ScaledTanh {
        /// Output scale.
        alpha: f32,
        /// Input scale.
        beta: f32,
    },
    /// clamp(αx + β, 0, 1)
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x > 0 ? x : α(eˣ − 1)
    Elu {
        /// Negative scale.
        alpha: f32,
    },
    /// x / (1 + |x|)
    Softsign,
    /// ln(1 + eˣ)
    Softplus,
}

impl RnnActivation {
    /// Applies the activation.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            RnnActivation::Relu => x.max(0.0),
            RnnActivation::Tanh => x.tanh(),
            RnnActivation::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            RnnActivation::Affine { alpha, beta } => alpha as f64 * x + beta as f64,
            RnnActivation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x
                }
            }
            RnnActivation::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            RnnActivation::ScaledTanh { alpha, beta } => alpha as f64 * (beta as f64 * x).tanh(),
            RnnActivation::HardSigmoid { alpha, beta } => {
                (alpha as f64 * x + beta as f64).clamp(0.0, 1.0)
            }
            RnnActivation::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha as f64 * x.exp_m1()
                }
            }
            RnnActivation::Softsign => x / (1.0 + x.abs()),
            RnnActivation::Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// Which optional inputs of an [`MiscOp::Rnn`] node are present (the node's inputs
/// are `x, w, r` followed by the present ones, in this order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RnnInputs {
    /// `b`: `[dirs, 2·gates·hidden]`, input biases then recurrence biases.
    pub bias: bool,
    /// `sequence_lens`: `[batch]` integers.
    pub sequence_lens: bool,
    /// `initial_h`: `[dirs, batch, hidden]` (or batch-first).
    pub initial_h: bool,
    /// `initial_c` (LSTM): like `initial_h`.
    pub initial_c: bool,
    /// `p` (LSTM peepholes): `[dirs, 3·hidden]` for gates i, o, f.
    pub peepholes: bool,
}

/// Interpolation of [`MiscOp::GridSample`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GridMode {
    /// Nearest neighbour (round half to even).
    Nearest,
    /// (Bi/tri-)linear.
    Linear,
    /// Bicubic (A = −0.75).
    Cubic,
}

/// How [`MiscOp::GridSample`] treats locations outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GridPadding {
    /// Zero outside.
    Zeros,
    /// Clamp to the border.
    Border,
    /// Reflect at the border.
    Reflection,
}

/// Window function of [`MiscOp::Window`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    /// Hann: 0.5 − 0.5 cos(2πn/N).
    Hann,
    /// Hamming: 25/46 − 21/46 cos(2πn/N).
    Hamming,
    /// Blackman: 0.42 − 0.5 cos(2πn/N) + 0.08 cos(4πn/N).
    Blackman,
}

/// The state update of a [`MiscOp::LinearAttention`] (ONNX's `update_rule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinearUpdate {
    /// S ← S + k ⊗ v.
    Linear,
    /// S ← exp(g) · S + k ⊗ v (needs `decay`).
    Gated,
    /// S ← S + k ⊗ β(v − Sᵀk) (needs `beta`).
    Delta,
    /// S ← exp(g) · S, then the delta update (needs `decay` and `beta`).
    GatedDelta,
}

impl LinearUpdate {
    /// The state decays by `exp(decay)` before each step.
    pub fn gated(self) -> bool {
        matches!(self, LinearUpdate::Gated | LinearUpdate::GatedDelta)
    }

    /// The written value is corrected by what the state already retrieves.
    pub fn delta(self) -> bool {
        matches!(self, LinearUpdate::Delta | LinearUpdate::GatedDelta)
    }
}

/// The comparison of a [`TreeNode`]: the true branch is taken when
/// `x[feature] <mode> split` holds (or x is NaN and `missing_true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeMode {
    /// `x ≤ split`
    Leq,
    /// `x < split`
    Lt,
    /// `x ≥ split`
    Gte,
    /// `x > split`
    Gt,
    /// `x = split`
    Eq,
    /// `x ≠ split`
    Neq,
    /// `x ∈ members`
    Member,
}

/// Where a branch of a [`TreeNode`] (or a tree's root) leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeBranch {
    /// An interior node, by index into the ensemble's nodes.
    Node(usize),
    /// A leaf, by index into the ensemble's leaf targets and weights.
    Leaf(usize),
}

/// An interior node of a [`MiscOp::TreeEnsemble`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The feature (column of the input) compared.
    pub feature: usize,
    /// The comparison.
    pub mode: TreeMode,
    /// The threshold (unused by [`TreeMode::Member`]).
    pub split: f64,
    /// The set of [`TreeMode::Member`] (empty otherwise).
    pub members: Vec<f64>,
    /// A NaN feature takes the true branch (else the comparison decides).
    pub missing_true: bool,
    /// Taken when the comparison holds.
    pub on_true: TreeBranch,
    /// Taken otherwise.
    pub on_false: TreeBranch,
}

/// How a [`MiscOp::TreeEnsemble`] combines the leaf weights reaching a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeAggregate {
    /// The sum divided by the number of trees.
    Average,
    /// The sum (0 where no leaf reaches).
    Sum,
    /// The minimum (the type's largest finite value where no leaf reaches).
    Min,
    /// The maximum (the type's lowest finite value where no leaf reaches).
    Max,
}

/// What a [`MiscOp::TfIdfVectorizer`] outputs per n-gram of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TfIdfWeighting {
    /// The count.
    Tf,
    /// The weight (1 without weights) where the count is positive, else 0.
    Idf,
    /// The count times the weight (the count without weights).
    TfIdf,
}

/// An op of the miscellaneous family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum MiscOp {
    /// `[x, scale]` or `[x, scale, zero_point]`: saturate(round_half_even(x / scale) + zp)
    /// to the integer type `to` (2- and 4-bit ones included); for a float8 `to`,
    /// x / scale cast to it (zero point ignored, `saturate` as `Cast`'s); for
    /// float4, x / scale + zp cast to it. Scale and zero point are per tensor (one element),
    /// per axis (1-D of `x.shape[axis]`) or blocked (`x`'s shape with `axis` divided by
    /// `block_size`, rounded up).
    QuantizeLinear {
        /// Quantization axis.
        axis: usize,
        /// Block size along `axis`; 0 when not blocked.
        block_size: usize,
        /// Output integer type.
        to: DType,
        /// Float type the quotient x / scale is rounded to before rounding to an
        /// integer (the input type unless the model sets `precision`).
        precision: Option<DType>,
        /// ONNX's `saturate` (float8 outputs only; see `Cast`). Omitted from
        /// the text form when true (the default).
        #[serde(
            default = "crate::op::layout::saturate_default",
            skip_serializing_if = "crate::op::layout::is_saturating"
        )]
        saturate: bool,
    },
    /// `[x, scale]` or `[x, scale, zero_point]`: (x − zp) · scale in the float type `to`.
    DequantizeLinear {
        /// Quantization axis.
        axis: usize,
        /// Block size along `axis`; 0 when not blocked.
        block_size: usize,
        /// Output float type.
        to: DType,
    },
    /// `[x]` (f32) → `[y (u8), scale (f32 scalar), zero_point (u8 scalar)]`: asymmetric
    /// uint8 quantization over x's range extended to include 0, in f32 arithmetic.
    DynamicQuantizeLinear,
    /// `[a, b, a_zero_point, b_zero_point]`: numpy matmul of (a − a_zp) and (b − b_zp)
    /// in i32; a_zp is a scalar or per row of a, b_zp a scalar or per column of b.
    MatMulInteger,
    /// `[x, w, x_zero_point, w_zero_point]`: convolution of (x − x_zp) and (w − w_zp)
    /// in i32; w_zp is a scalar or per output channel.
    ConvInteger(ConvAttrs),
    /// `[a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp]`: integer matmul requantized
    /// to y_zp's type: saturate(round_half_even(acc · a_scale·b_scale/y_scale) + y_zp).
    QLinearMatMul,
    /// `[x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp]` plus optional i32 bias:
    /// integer convolution requantized like [`MiscOp::QLinearMatMul`]; w_scale and
    /// w_zp per tensor or per output channel.
    QLinearConv(ConvAttrs),
    /// `[x, w, r, ...optional]`: ONNX RNN / GRU / LSTM; outputs `[y, y_h]` (+ `y_c` for
    /// LSTM). Sequence-major layout `[seq, batch, ...]` unless `batch_first`.
    Rnn {
        /// The cell.
        cell: RnnCell,
        /// Direction.
        direction: RnnDirection,
        /// Hidden size.
        hidden_size: usize,
        /// Activations per direction (forward ones, then reverse ones), parameters explicit.
        activations: Vec<RnnActivation>,
        /// Clip gate pre-activations to [−clip, clip].
        clip: Option<f32>,
        /// GRU: apply the recurrence weight before the reset gate.
        linear_before_reset: bool,
        /// LSTM: couple the input and forget gates (f = 1 − i).
        input_forget: bool,
        /// Layout 1: x is `[batch, seq, input]`, states `[batch, dirs, hidden]`.
        batch_first: bool,
        /// Which optional inputs follow `x, w, r`.
        optional: RnnInputs,
    },
    /// `[x, grid]`: samples `x` (`[N, C, D1.., Dk]`) at the normalized locations of
    /// `grid` (`[N, H1.., Hk, k]`, last dim x then y (then z)).
    GridSample {
        /// Interpolation.
        mode: GridMode,
        /// Out-of-bounds handling.
        padding: GridPadding,
        /// −1 and 1 are the centers of the corner pixels (else their outer edges).
        align_corners: bool,
    },
    /// `[x, rois, batch_indices]`: region-of-interest align (bilinear samples averaged
    /// or maxed per output bin).
    RoiAlign {
        /// Max instead of average of the samples.
        max: bool,
        /// Output bin rows.
        output_height: usize,
        /// Output bin columns.
        output_width: usize,
        /// Samples per bin side; 0: adaptive (⌈roi size / bins⌉).
        sampling_ratio: usize,
        /// Scale from roi coordinates to input coordinates.
        spatial_scale: f32,
        /// Shift coordinates by −0.5 (`half_pixel`, opset 16 default).
        half_pixel: bool,
    },
    /// `[boxes, scores]` plus optional `max_output_boxes_per_class` (i64),
    /// `iou_threshold`, `score_threshold`: greedy non-max suppression; output
    /// `[n, 3]` i64 rows (batch, class, box).
    NonMaxSuppression {
        /// Boxes are (x_center, y_center, width, height) instead of corners.
        center_point_box: bool,
    },
    /// `[x, indices]` or `[x, indices, output_shape]`: scatters x into a zero tensor at
    /// the flat indices MaxPool produced.
    MaxUnpool {
        /// The pooling window (kernel, strides, pads) being inverted.
        window: Window,
    },
    /// `[x, image_shape, block_shape]`: rearranges column blocks into an image, summing
    /// overlaps (the inverse of im2col).
    Col2Im {
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Begin pads, then end pads.
        pads: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
    },
    /// Determinant of the trailing 2 × 2 … n × n matrices.
    Det,
    /// `[x]`, then `dft_length` if `has_length`, then the axis (scalar) when `axis` is
    /// `None`: discrete Fourier transform; x's last dim is 1 (real) or 2 (complex); the
    /// output's last dim is 2 (1 for the inverse of a one-sided transform).
    Dft {
        /// Transformed axis (of x, never the last); `None`: given as the last input.
        axis: Option<usize>,
        /// A `dft_length` input follows x.
        has_length: bool,
        /// Inverse transform (scaled by 1/n).
        inverse: bool,
        /// Keep only the first n/2 + 1 frequencies.
        onesided: bool,
    },
    /// `[signal, frame_step]` plus optional `window`, `frame_length`: short-time Fourier
    /// transform, output `[batch, frames, bins, 2]`.
    Stft {
        /// Keep only the first n/2 + 1 frequencies.
        onesided: bool,
        /// Which optional inputs follow (window, frame_length).
        has_window: bool,
    },
    /// `[size]`: a window function of `size` samples.
    Window {
        /// The function.
        kind: WindowKind,
        /// Periodic (N = size) rather than symmetric (N = size − 1).
        periodic: bool,
        /// Output type.
        to: DType,
    },
    /// `[num_mel_bins, dft_length, sample_rate, lower_hz, upper_hz]`: mel filter bank
    /// weights `[dft_length/2 + 1, num_mel_bins]`.
    MelWeightMatrix {
        /// Output type.
        to: DType,
    },
    /// `[theta, size]`: affine sampling grid for GridSample (2-D or 3-D).
    AffineGrid {
        /// −1 and 1 are the centers of the corner pixels.
        align_corners: bool,
    },
    /// `[x, shape]`: center crop or zero pad the listed axes to `shape`.
    CenterCropPad {
        /// Axes that `shape` lists, in order.
        axes: Vec<usize>,
    },
    /// `[query, key, value]`, then `past_state` when `past_state`, `decay` when
    /// the update is gated, `beta` when it is a delta rule: ONNX's
    /// `LinearAttention`, a recurrent (linear-time) attention. `query [B, T, Hq·dk]`,
    /// `key [B, T, Hkv·dk]`, `value [B, T, Hkv·dv]`; per key/value head a state
    /// `S [dk, dv]` (`past_state [B, Hkv, dk, dv]`, else zeros) is updated at each
    /// step t by `update` (`decay [B, T, Hkv]` or `[B, T, Hkv·dk]` is a log
    /// decay, `beta [B, T, Hkv]` or `[B, T, 1]` the delta rule's step size) and
    /// read by every query head of its group: `o_t = scale · q_tᵀ S`. Outputs:
    /// `output [B, T, Hq·dv]` (query's type) and `present_state [B, Hkv, dk, dv]`
    /// (past_state's type, else query's).
    LinearAttention {
        /// Query heads (a multiple of `kv_heads`).
        q_heads: usize,
        /// Key/value heads.
        kv_heads: usize,
        /// Output scale; `None` is 1/√dk.
        scale: Option<f32>,
        /// The state update.
        update: LinearUpdate,
        /// Whether the `past_state` input is present.
        past_state: bool,
    },
    /// `[x, w, offset]`, then `bias` and `mask` when present: ONNX's
    /// `[x]` of shape `[n, features]` (float types): ONNX-ML's `TreeEnsemble`
    /// without post transform. Each tree walks from its root to a leaf; each
    /// reached leaf contributes its weight to its target, combined by `aggregate`;
    /// output `[n, targets]` in x's type. A feature out of range, or a walk
    /// longer than the node count (a cycle), is an evaluation error.
    TreeEnsemble {
        /// Interior nodes.
        nodes: Vec<TreeNode>,
        /// The root of each tree.
        roots: Vec<TreeBranch>,
        /// The target of each leaf (each below `targets`).
        leaf_targets: Vec<usize>,
        /// The weight of each leaf.
        leaf_weights: Vec<f64>,
        /// Number of targets (output columns).
        targets: usize,
        /// How leaf weights combine.
        aggregate: TreeAggregate,
    },
    /// `[x]` integer tokens, `[c]`, `[b, c]` (or a scalar, one token): ONNX's
    /// `TfIdfVectorizer` over an integer pool. The pool holds, for n = 1, 2, …,
    /// the n-grams of length n from `ngram_counts[n-1]` on; every n-gram of
    /// length `min_gram..=max_gram` of each row, with its tokens `d` apart for
    /// d in `1..=max_skip+1` (unigrams counted once), that is in the pool adds 1
    /// at output column `ngram_indexes[id]`; the counts are weighted by
    /// `weighting`. Output f32 `[b, columns]` (`[columns]` for rank ≤ 1) with
    /// `columns = max(ngram_indexes) + 1`.
    TfIdfVectorizer {
        /// Shortest n-gram counted (at least 1).
        min_gram: usize,
        /// Longest n-gram counted (at least `min_gram`).
        max_gram: usize,
        /// Most tokens skipped between consecutive tokens of an n-gram.
        max_skip: usize,
        /// Output weighting.
        weighting: TfIdfWeighting,
        /// Start in `pool` of the n-grams of each length (non-decreasing).
        ngram_counts: Vec<usize>,
        /// Output column of each pool n-gram, in pool order.
        ngram_indexes: Vec<usize>,
        /// The n-grams' tokens.
        pool: Vec<i64>,
        /// Weight of each output column (empty: no weights).
        weights: Vec<f32>,
    },
    /// `DeformConv` (2-D). Each kernel tap of each output position samples the
    /// input bilinearly (zero outside) at its regular position plus its learned
    /// `offset [N, offset_group·2·kH·kW, oH, oW]` (dy, dx per tap), scaled by
    /// `mask [N, offset_group·kH·kW, oH, oW]` (ones when absent); input channels
    /// share the offsets of their offset group. The output's spatial dims are
    /// the offset's.
    DeformConv {
        /// Strides, pads, dilations and groups, as `Conv`'s.
        conv: ConvAttrs,
        /// Groups of input channels sharing offsets (at least 1).
        offset_group: usize,
        /// Whether the `bias` input is present (the mask follows it).
        bias: bool,
        /// Whether the `mask` input is present.
        mask: bool,
    },
}

fn known_ints(inputs: &InferInputs, i: usize) -> Option<Vec<i64>> {
    inputs.constant(i).map(|t| t.to_i64_vec())
}

impl OpFamily for MiscOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let x = inputs.ty(0)?;
        let rank = x.shape.rank();
        let t = |dtype: DType, shape: Shape| TensorType::new(dtype, shape);
        Ok(match self {
            MiscOp::QuantizeLinear { to, .. } => {
                if !x.dtype.is_float() {
                    return Err(OpError::dtype(format!("QuantizeLinear of {}", x.dtype)));
                }
                vec![t(*to, x.shape.clone())]
            }
            MiscOp::DequantizeLinear { to, .. } => vec![t(*to, x.shape.clone())],
            MiscOp::DynamicQuantizeLinear => {
                if x.dtype != DType::F32 {
                    return Err(OpError::dtype(format!(
                        "DynamicQuantizeLinear of {}",
                        x.dtype
                    )));
                }
                vec![
                    t(DType::U8, x.shape.clone()),
                    t(DType::F32, Shape::default()),
                    t(DType::U8, Shape::default()),
                ]
            }
            MiscOp::MatMulInteger => {
                let b = inputs.ty(1)?;
                vec![t(DType::I32, matmul_shape(&x.shape, &b.shape)?)]
            }
            MiscOp::ConvInteger(a) => {
                vec![t(
                    DType::I32,
                    a.output_shape(&x.shape, &inputs.ty(1)?.shape)?,
                )]
            }
            MiscOp::QLinearMatMul => {
                let b = inputs.ty(3)?;
                vec![t(inputs.ty(7)?.dtype, matmul_shape(&x.shape, &b.shape)?)]
            }
            MiscOp::QLinearConv(a) => vec![t(
                inputs.ty(7)?.dtype,
                a.output_shape(&x.shape, &inputs.ty(3)?.shape)?,
            )],
            MiscOp::Rnn {
                cell,
                direction,
                hidden_size,
                batch_first,
                ..
            } => {
                if rank != 3 {
                    return Err(OpError::shape(format!("recurrence input of rank {rank}")));
                }
                let dirs = Dim::Known(if *direction == RnnDirection::Bidirectional {
                    2
                } else {
                    1
                });
                let h = Dim::Known(*hidden_size);
                let (seq, batch) = if *batch_first {
                    (x.shape.0[1].clone(), x.shape.0[0].clone())
                } else {
                    (x.shape.0[0].clone(), x.shape.0[1].clone())
                };
                let (y, state) = if *batch_first {
                    (
                        Shape(vec![batch.clone(), seq, dirs.clone(), h.clone()]),
                        Shape(vec![batch, dirs, h]),
                    )
                } else {
                    (
                        Shape(vec![seq, dirs.clone(), batch.clone(), h.clone()]),
                        Shape(vec![dirs, batch, h]),
                    )
                };
                let mut out = vec![t(x.dtype, y), t(x.dtype, state.clone())];
                if *cell == RnnCell::Lstm {
                    out.push(t(x.dtype, state));
                }
                out
            }
            MiscOp::GridSample { .. } => {
                let g = inputs.ty(1)?;
                let mut s = vec![
                    x.shape.0[0].clone(),
                    x.shape.0.get(1).cloned().unwrap_or(Dim::Any),
                ];
                let gr = g.shape.rank();
                if gr < 3 || gr != rank {
                    return Err(OpError::shape(format!(
                        "GridSample of {} with grid {}",
                        x.shape, g.shape
                    )));
                }
                s.extend(g.shape.0[1..gr - 1].iter().cloned());
                vec![t(x.dtype, Shape(s))]
            }
            MiscOp::RoiAlign {
                output_height,
                output_width,
                ..
            } => {
                let rois = inputs.ty(1)?;
                vec![t(
                    x.dtype,
                    Shape(vec![
                        rois.shape.0.first().cloned().unwrap_or(Dim::Any),
                        x.shape.0.get(1).cloned().unwrap_or(Dim::Any),
                        Dim::Known(*output_height),
                        Dim::Known(*output_width),
                    ]),
                )]
            }
            MiscOp::NonMaxSuppression { .. } => {
                vec![t(DType::I64, Shape(vec![Dim::Any, Dim::Known(3)]))]
            }
            MiscOp::MaxUnpool { window } => {
                let shape = if let Some(s) = known_ints(inputs, 2) {
                    Shape::known(&s.iter().map(|&v| v.max(0) as usize).collect::<Vec<_>>())
                } else if inputs.len() > 2 || rank < 3 {
                    // An output shape known only at run time.
                    Shape(vec![Dim::Any; rank])
                } else {
                    let spatial: Option<Vec<usize>> =
                        x.shape.0[2..].iter().map(Dim::known).collect();
                    let mut s = x.shape.0[..2].to_vec();
                    match spatial {
                        Some(sp) => {
                            s.extend(window.unpooled_output(&sp)?.into_iter().map(Dim::Known))
                        }
                        None => s.extend(std::iter::repeat_n(Dim::Any, rank - 2)),
                    }
                    Shape(s)
                };
                vec![t(x.dtype, shape)]
            }
            MiscOp::Col2Im { .. } => {
                let batch = x
                    .shape
                    .0
                    .first()
                    .cloned()
                    .ok_or(OpError::shape("Col2Im needs an input of rank 3"))?;
                let mut s = vec![batch, Dim::Any];
                match (known_ints(inputs, 1), known_ints(inputs, 2)) {
                    (Some(img), Some(block)) => {
                        let bp: i64 = block.iter().product();
                        if let Some(c) = x.shape.0.get(1).and_then(Dim::known) {
                            if bp > 0 {
                                s[1] = Dim::Known(c / bp as usize);
                            }
                        }
                        s.extend(img.iter().map(|&v| Dim::Known(v.max(0) as usize)));
                    }
                    _ => {
                        let n = inputs
                            .ty(1)?
                            .shape
                            .0
                            .first()
                            .and_then(Dim::known)
                            .unwrap_or(2);
                        s.extend(std::iter::repeat_n(Dim::Any, n));
                    }
                }
                vec![t(x.dtype, Shape(s))]
            }
            MiscOp::Det => {
                if rank < 2 {
                    return Err(OpError::shape(format!("Det of rank {rank}")));
                }
                vec![t(x.dtype, Shape(x.shape.0[..rank - 2].to_vec()))]
            }
            MiscOp::Dft {
                axis,
                onesided,
                inverse,
                has_length,
            } => {
                let mut s = x.shape.0.clone();
                let Some(axis) = axis else {
                    let mut s = any_shape(rank);
                    s.0[rank - 1] = Dim::Known(if *inverse && *onesided { 1 } else { 2 });
                    return Ok(vec![t(x.dtype, s)]);
                };
                if *axis + 1 >= rank {
                    return Err(OpError::attribute(format!(
                        "DFT axis {axis} of rank {rank}"
                    )));
                }
                let given = if *has_length {
                    known_ints(inputs, 1).and_then(|v| v.first().copied())
                } else {
                    None
                };
                let irfft = *inverse && *onesided;
                s[*axis] = match (given, s[*axis].known()) {
                    (Some(n), _) => Dim::Known(n.max(0) as usize),
                    (None, Some(m)) if irfft => Dim::Known(2 * m.saturating_sub(1)),
                    (None, Some(m)) => Dim::Known(m),
                    _ => Dim::Any,
                };
                if *onesided && !irfft {
                    s[*axis] = s[*axis]
                        .known()
                        .map(|n| Dim::Known(n / 2 + 1))
                        .unwrap_or(Dim::Any);
                }
                s[rank - 1] = Dim::Known(if irfft { 1 } else { 2 });
                vec![t(x.dtype, Shape(s))]
            }
            MiscOp::Stft { .. } => vec![t(x.dtype, any_shape(4))],
            MiscOp::Window { to, .. } => {
                let n = known_ints(inputs, 0).and_then(|v| v.first().copied());
                vec![t(
                    *to,
                    Shape(vec![n
                        .map(|n| Dim::Known(n.max(0) as usize))
                        .unwrap_or(Dim::Any)]),
                )]
            }
            MiscOp::MelWeightMatrix { to } => {
                let bins = known_ints(inputs, 0).and_then(|v| v.first().copied());
                let len = known_ints(inputs, 1).and_then(|v| v.first().copied());
                let d =
                    |v: Option<i64>| v.map(|n| Dim::Known(n.max(0) as usize)).unwrap_or(Dim::Any);
                vec![t(*to, Shape(vec![d(len.map(|n| n / 2 + 1)), d(bins)]))]
            }
            MiscOp::AffineGrid { .. } => match known_ints(inputs, 1) {
                Some(size) if size.len() == 4 || size.len() == 5 => {
                    let sp: Vec<usize> = size[2..].iter().map(|&v| v.max(0) as usize).collect();
                    let mut s = vec![size[0].max(0) as usize];
                    s.extend(&sp);
                    s.push(sp.len());
                    vec![t(x.dtype, Shape::known(&s))]
                }
                _ => {
                    let n = inputs
                        .ty(1)?
                        .shape
                        .0
                        .first()
                        .and_then(Dim::known)
                        .unwrap_or(4);
                    vec![t(x.dtype, any_shape(n))]
                }
            },
            MiscOp::LinearAttention {
                q_heads,
                kv_heads,
                past_state,
                ..
            } => {
                if *q_heads == 0 || *kv_heads == 0 || q_heads % kv_heads != 0 {
                    return Err(OpError::attribute(format!(
                        "LinearAttention q_num_heads {q_heads} is not a positive multiple of kv_num_heads {kv_heads}"
                    )));
                }
                let (k, v) = (inputs.ty(1)?, inputs.ty(2)?);
                if rank != 3 || k.shape.rank() != 3 || v.shape.rank() != 3 {
                    return Err(OpError::shape(format!(
                        "LinearAttention needs rank-3 query, key and value, got {}, {}, {}",
                        x.shape, k.shape, v.shape
                    )));
                }
                let per_head = |d: &Dim, heads: usize| match d {
                    Dim::Known(n) if n % heads == 0 => Ok(Dim::Known(n / heads)),
                    Dim::Known(n) => Err(OpError::shape(format!(
                        "LinearAttention last dim {n} is not divisible by {heads} heads"
                    ))),
                    _ => Ok(Dim::Any),
                };
                let dk = per_head(&x.shape.0[2], *q_heads)?;
                let dv = per_head(&v.shape.0[2], *kv_heads)?;
                let out_last = match &dv {
                    Dim::Known(n) => Dim::Known(n * q_heads),
                    _ => Dim::Any,
                };
                let (b, steps) = (x.shape.0[0].clone(), x.shape.0[1].clone());
                let state_dtype = if *past_state {
                    inputs.ty(3)?.dtype
                } else {
                    x.dtype
                };
                vec![
                    t(x.dtype, Shape(vec![b.clone(), steps, out_last])),
                    t(state_dtype, Shape(vec![b, Dim::Known(*kv_heads), dk, dv])),
                ]
            }
            MiscOp::TreeEnsemble { targets, .. } => {
                if !x.dtype.is_float() || rank != 2 {
                    return Err(OpError::shape(format!(
                        "TreeEnsemble of {} {} (a float matrix)",
                        x.dtype, x.shape
                    )));
                }
                vec![t(
                    x.dtype,
                    Shape(vec![x.shape.0[0].clone(), Dim::Known(*targets)]),
                )]
            }
            MiscOp::TfIdfVectorizer { ngram_indexes, .. } => {
                if !x.dtype.is_int() || rank > 2 {
                    return Err(OpError::shape(format!(
                        "TfIdfVectorizer of {} {} (integer tokens of rank at most 2)",
                        x.dtype, x.shape
                    )));
                }
                let columns = Dim::Known(ngram_indexes.iter().max().map_or(0, |m| m + 1));
                let shape = if rank == 2 {
                    Shape(vec![x.shape.0[0].clone(), columns])
                } else {
                    Shape(vec![columns])
                };
                vec![t(DType::F32, shape)]
            }
            MiscOp::DeformConv { .. } => {
                let (w, off) = (inputs.ty(1)?, inputs.ty(2)?);
                if rank != 4 || w.shape.rank() != 4 || off.shape.rank() != 4 {
                    return Err(OpError::unsupported(format!(
                        "DeformConv of {} with weight {} and offset {} (2-D only)",
                        x.shape, w.shape, off.shape
                    )));
                }
                let mut s = vec![x.shape.0[0].clone(), w.shape.0[0].clone()];
                s.extend(off.shape.0[2..].iter().cloned());
                vec![t(x.dtype, Shape(s))]
            }
            MiscOp::CenterCropPad { axes } => {
                let mut s = x.shape.0.clone();
                match known_ints(inputs, 1) {
                    Some(v) => {
                        for (&a, &n) in axes.iter().zip(&v) {
                            if a < s.len() {
                                s[a] = Dim::Known(n.max(0) as usize);
                            }
                        }
                    }
                    None => {
                        for &a in axes {
                            if a < s.len() {
                                s[a] = Dim::Any;
                            }
                        }
                    }
                }
                vec![t(x.dtype, Shape(s))]
            }
        })
    }
}
