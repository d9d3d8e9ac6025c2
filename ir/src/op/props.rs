//! Properties of ops that passes and backends decide by: one table row per op.
//!
//! Every property is read from [`Op::traits`], one exhaustive `match` per family
//! that states, for each variant, all of its properties at once (like Cranelift's
//! instruction table). Passes ask these methods instead of comparing op names, so
//! adding an op fails to compile until its row is written, and a wrong decision is
//! one line to fix. Variants with attributes are matched with `{ .. }` so that
//! attribute changes do not touch this file.
//!
//! A family-wide arm (`Op::Unary(u)`) dispatches to the family's own exhaustive
//! table; no arm is a catch-all over variants.

use super::{
    BinaryOp, CompositeOp, ControlOp, FusedOp, FusedRole, LayoutOp, MiscOp, NnOp, Op, ReduceOp,
    UnaryOp,
};

/// The properties of one op, decided together (see the methods of [`Op`] that read
/// them for what each means).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Traits {
    /// [`Op::fused_role`].
    role: Option<FusedRole>,
    /// [`Op::maps_zero_to_zero`].
    zero_to_zero: bool,
    /// [`Op::moves_data_only`].
    moves_data: bool,
    /// [`Op::shape_operands`].
    shape_operands: Vec<usize>,
}

/// An elementwise op with `f(0, …, 0) = 0`.
fn zero_elementwise() -> Traits {
    Traits {
        role: Some(FusedRole::Elementwise),
        zero_to_zero: true,
        ..Traits::default()
    }
}

/// An elementwise op with `f(0, …, 0) ≠ 0` (or undefined) for some dtype.
fn elementwise() -> Traits {
    Traits {
        role: Some(FusedRole::Elementwise),
        ..Traits::default()
    }
}

/// An op that computes from its operands' data and is no region step.
fn opaque() -> Traits {
    Traits::default()
}

/// An op whose operands at `shape_operands` are control values, otherwise opaque.
fn controlled(shape_operands: Vec<usize>) -> Traits {
    Traits {
        shape_operands,
        ..Traits::default()
    }
}

/// An op that only moves elements of operand 0, the others choosing which.
fn mover(shape_operands: Vec<usize>) -> Traits {
    Traits {
        moves_data: true,
        shape_operands,
        ..Traits::default()
    }
}

/// A region anchor; `prologue` when it reads its first operand in one pass.
fn anchor(prologue: bool) -> Traits {
    Traits {
        role: Some(FusedRole::Anchor { prologue }),
        ..Traits::default()
    }
}

impl Op {
    /// The role the op can play as a step of a fused region ([`FusedOp`]), or `None`
    /// when it cannot be one. `Elementwise`: each output element depends only on
    /// the operand elements at its position after broadcasting (batch norm's
    /// per-channel vectors broadcast along axis 1). `Anchor`: the one non-elementwise
    /// step a region may hold (matmul, convolution, reduction, softmax, log-softmax,
    /// RMS norm). A region itself is never a step of another region.
    pub fn fused_role(&self) -> Option<FusedRole> {
        self.traits().role
    }

    /// True when the op is elementwise in the sense of [`Op::fused_role`].
    pub fn is_elementwise(&self) -> bool {
        self.fused_role() == Some(FusedRole::Elementwise)
    }

    /// True when the op is a region anchor in the sense of [`Op::fused_role`].
    pub fn is_anchor(&self) -> bool {
        matches!(self.fused_role(), Some(FusedRole::Anchor { .. }))
    }

    /// True when the op is elementwise (or a region of such steps) and its output
    /// is all zeros (all `false` for a bool output) whenever every operand is all
    /// zeros, for every dtype it accepts: `f(0, …, 0) = 0`. Relu, Neg, Floor and
    /// Mul do; Exp, Div (0/0), Equal and Softmax do not. A one-operand op with
    /// this property turns zeros into zeros. False for every other op, even where
    /// zeros happen to give zeros (a sum, a matmul).
    pub fn maps_zero_to_zero(&self) -> bool {
        self.traits().zero_to_zero
    }

    /// True when every element of every output is a copy of an element of operand
    /// 0, and the other operands (all among [`Op::shape_operands`]) only choose
    /// which: the op moves, drops or repeats data and computes nothing (reshapes,
    /// transposes, slices, gathers, expands, tiles, splits). Zeros in, zeros out.
    pub fn moves_data_only(&self) -> bool {
        self.traits().moves_data
    }

    /// The operand indices the op reads as control values — target shapes, axes,
    /// indices, slice bounds, repeats, pads, sizes, counts, thresholds — rather than
    /// as data it computes on: `[1]` for `Reshape` (the shape), `[1, 2, 3, 4]` for
    /// `Slice`. A rewrite or a test that binds such an operand must give it a
    /// value of that meaning, not random data. Indices past the node's operand
    /// count mean optional operands it does not have.
    pub fn shape_operands(&self) -> Vec<usize> {
        self.traits().shape_operands
    }

    /// The op's row of the property table.
    fn traits(&self) -> Traits {
        match self {
            Op::Unary(u) => unary_traits(u),
            Op::Binary(b) => binary_traits(b),
            Op::Reduce(r) => reduce_traits(r),
            Op::Layout(l) => layout_traits(l),
            Op::Nn(n) => nn_traits(n),
            Op::Composite(c) => composite_traits(c),
            Op::Misc(m) => misc_traits(m),
            Op::Fused(f) => fused_traits(f),
            Op::Control(c) => control_traits(c),
            Op::List(_) => opaque(),
        }
    }
}

/// Control flow is opaque to regions; the condition and trip count choose how
/// often the subgraphs run.
fn control_traits(op: &ControlOp) -> Traits {
    match op {
        ControlOp::If { .. } => controlled(vec![0]),
        ControlOp::Loop {
            has_trip_count,
            has_cond,
            ..
        } => controlled((0..*has_trip_count as usize + *has_cond as usize).collect()),
        ControlOp::Scan { .. } => opaque(),
    }
}

fn unary_traits(op: &UnaryOp) -> Traits {
    use UnaryOp as U;
    match op {
        U::Neg
        | U::Abs
        | U::Sqrt
        | U::Sin
        | U::Tan
        | U::Asin
        | U::Atan
        | U::Sinh
        | U::Asinh
        | U::Atanh
        | U::Tanh
        | U::Relu
        | U::Erf
        | U::Floor
        | U::Ceil
        | U::Round
        | U::Sign
        | U::Softsign
        | U::Mish
        | U::LeakyRelu { .. }
        | U::Elu { .. }
        | U::Selu { .. }
        | U::Celu { .. }
        | U::HardSwish
        | U::ThresholdedRelu { .. }
        | U::IsNaN
        | U::IsInf { .. } => zero_elementwise(),
        // ¬0 is true, ~0 is −1.
        U::Exp
        | U::Log
        | U::Cos
        | U::Acos
        | U::Cosh
        | U::Acosh
        | U::Sigmoid
        | U::Reciprocal
        | U::Not
        | U::BitwiseNot
        | U::Softplus => elementwise(),
        // max(0, min(1, β)): zero when β ≤ 0.
        U::HardSigmoid { beta, .. } => zero_if(*beta <= 0.0),
        // 0 > λ gives 0 − bias; otherwise 0 lies in [−λ, λ] or below −λ (λ < 0
        // never reaches the second branch first).
        U::Shrink { bias, lambd } => zero_if(*lambd >= 0.0 || *bias == 0.0),
    }
}

/// An elementwise op that maps zeros to zeros exactly when `zero`.
fn zero_if(zero: bool) -> Traits {
    if zero {
        zero_elementwise()
    } else {
        elementwise()
    }
}

fn binary_traits(op: &BinaryOp) -> Traits {
    use BinaryOp as B;
    match op {
        B::Add
        | B::Sub
        | B::Mul
        | B::Max
        | B::Min
        | B::PRelu
        | B::Less
        | B::Greater
        | B::And
        | B::Or
        | B::Xor => zero_elementwise(),
        // 0/0, 0⁰ = 1, 0 mod 0, and the comparisons true on equal operands.
        B::Div | B::Pow | B::Mod { .. } | B::Equal | B::LessOrEqual | B::GreaterOrEqual => {
            elementwise()
        }
        // Integer ops whose float form the interpreter defines as NaN.
        B::BitShiftLeft | B::BitShiftRight | B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor => {
            elementwise()
        }
    }
}

fn reduce_traits(op: &ReduceOp) -> Traits {
    use ReduceOp as R;
    match op {
        R::Reduce { .. } => anchor(true),
        R::ArgMax { .. } | R::ArgMin { .. } | R::CumSum { .. } | R::CumProd { .. } => opaque(),
        // The axes, the axis, or k at operand 1.
        R::ReduceDynamic { .. }
        | R::CumSumDynamic { .. }
        | R::CumProdDynamic { .. }
        | R::TopK { .. } => controlled(vec![1]),
    }
}

fn layout_traits(op: &LayoutOp) -> Traits {
    use LayoutOp as L;
    match op {
        L::Transpose { .. }
        | L::Flatten { .. }
        | L::Identity
        | L::DepthToSpace { .. }
        | L::SpaceToDepth { .. } => mover(vec![]),
        L::Reshape { .. }
        | L::Squeeze { .. }
        | L::Unsqueeze { .. }
        | L::Expand
        | L::Split { .. }
        | L::Gather { .. }
        | L::GatherElements { .. }
        | L::GatherND { .. }
        | L::Tile
        | L::ReverseSequence { .. }
        | L::Compress { .. } => mover(vec![1]),
        L::Slice => mover(vec![1, 2, 3, 4]),
        L::Cast { .. } | L::Where => zero_elementwise(),
        // Concat copies every operand; Unique's later outputs are indices and counts.
        L::Concat { .. }
        | L::Shape { .. }
        | L::Size
        | L::Range
        | L::NonZero
        | L::Unique { .. }
        | L::BitCast { .. }
        | L::EyeLike { .. } => opaque(),
        L::ScatterND { .. } | L::ScatterElements { .. } | L::Trilu { .. } => controlled(vec![1]),
        // The write indices; operands 0 and 1 are both data.
        L::TensorScatter { .. } => controlled(vec![2]),
        // Pads and axes; operand 2 is the fill value.
        L::Pad { .. } => controlled(vec![1, 3]),
        L::ConstantOfShape { .. } => controlled(vec![0]),
        // Indices and depth; operand 2 holds the off/on values.
        L::OneHot { .. } => controlled(vec![0, 1]),
    }
}

fn nn_traits(op: &NnOp) -> Traits {
    use NnOp as N;
    match op {
        // Re-read their operands per output tile: an epilogue only.
        N::MatMul | N::Conv { .. } => anchor(false),
        // Inference batch norm is a per-channel affine map: (0 − 0)/√ε·0 + 0 = 0.
        N::BatchNorm { .. } => zero_elementwise(),
        N::ConvTranspose { .. }
        | N::MaxPool { .. }
        | N::AveragePool { .. }
        | N::LpPool { .. }
        | N::InstanceNorm { .. }
        | N::GroupNorm { .. }
        | N::Lrn { .. }
        | N::LpNormalization { .. }
        | N::MeanVarianceNormalization { .. }
        | N::Einsum { .. } => opaque(),
        // Scales or sizes, then the region of interest.
        N::Resize { .. } => controlled(vec![1, 2]),
    }
}

fn composite_traits(op: &CompositeOp) -> Traits {
    use CompositeOp as C;
    match op {
        C::Softmax { .. } | C::LogSoftmax { .. } | C::RmsNorm { .. } => anchor(true),
        C::Gelu { .. } => zero_elementwise(),
        C::Hardmax { .. } | C::LayerNorm { .. } => opaque(),
        C::Attention {
            mask,
            past,
            kv_lengths,
            ..
        } => controlled(if *kv_lengths {
            vec![3 + *mask as usize + 2 * *past as usize]
        } else {
            vec![]
        }),
        // The class indices.
        C::NllLoss { .. } => controlled(vec![1]),
        C::RotaryEmbedding { .. } => controlled(vec![3]),
    }
}

fn misc_traits(op: &MiscOp) -> Traits {
    use MiscOp as M;
    match op {
        M::QuantizeLinear { .. }
        | M::DequantizeLinear { .. }
        | M::DynamicQuantizeLinear
        | M::MatMulInteger
        | M::ConvInteger { .. }
        | M::QLinearMatMul
        | M::QLinearConv { .. }
        | M::GridSample { .. }
        | M::Det
        | M::LinearAttention { .. }
        | M::DeformConv { .. }
        | M::TreeEnsemble { .. }
        | M::TfIdfVectorizer { .. } => opaque(),
        M::Rnn { optional, .. } => controlled(if optional.sequence_lens {
            vec![3 + optional.bias as usize]
        } else {
            vec![]
        }),
        // The batch index of each region.
        M::RoiAlign { .. } => controlled(vec![2]),
        // The box count and the two thresholds.
        M::NonMaxSuppression { .. } => controlled(vec![2, 3, 4]),
        // The indices and the output shape.
        M::MaxUnpool { .. } => controlled(vec![1, 2]),
        // The image and block shapes.
        M::Col2Im { .. } => controlled(vec![1, 2]),
        // The length (when given), then the axis (when not an attribute).
        M::Dft {
            axis, has_length, ..
        } => {
            let next = 1 + *has_length as usize;
            let mut ops: Vec<usize> = (1..next).collect();
            if axis.is_none() {
                ops.push(next);
            }
            controlled(ops)
        }
        // The frame step and the frame length; operand 2 is the window.
        M::Stft { .. } => controlled(vec![1, 3]),
        M::Window { .. } => controlled(vec![0]),
        M::MelWeightMatrix { .. } => controlled(vec![0, 1, 2, 3, 4]),
        M::AffineGrid { .. } | M::CenterCropPad { .. } => controlled(vec![1]),
    }
}

/// A region is not a step of another region; it maps zeros to zeros when every
/// step does (each step reads region inputs and earlier steps only).
fn fused_traits(op: &FusedOp) -> Traits {
    Traits {
        zero_to_zero: op.steps.iter().all(|s| s.op.maps_zero_to_zero()),
        ..Traits::default()
    }
}
