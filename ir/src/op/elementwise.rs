//! Elementwise ops of one and two operands (two with numpy broadcasting).

use crate::error::OpError;
use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::util::broadcast_all;
use super::{InferInputs, OpFamily};
use crate::{DType, TensorType};

/// An elementwise op of one operand. The output has the operand's shape and, unless
/// the op is a predicate, its dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// |x|
    Abs,
    /// √x
    Sqrt,
    /// eˣ
    Exp,
    /// ln x
    Log,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// tan x
    Tan,
    /// asin x
    Asin,
    /// acos x
    Acos,
    /// atan x
    Atan,
    /// sinh x
    Sinh,
    /// cosh x
    Cosh,
    /// asinh x
    Asinh,
    /// acosh x
    Acosh,
    /// atanh x
    Atanh,
    /// tanh x
    Tanh,
    /// 1 / (1 + e⁻ˣ)
    Sigmoid,
    /// max(x, 0)
    Relu,
    /// The error function.
    Erf,
    /// 1 / x
    Reciprocal,
    /// ⌊x⌋
    Floor,
    /// ⌈x⌉
    Ceil,
    /// Round half to even.
    Round,
    /// -1, 0 or 1.
    Sign,
    /// Logical not (bool).
    Not,
    /// Bitwise not (integers).
    BitwiseNot,
    /// x is NaN (output bool).
    IsNaN,
    /// x is +∞ (when `pos`) or -∞ (when `neg`) (output bool).
    IsInf {
        /// Detect +∞.
        pos: bool,
        /// Detect -∞.
        neg: bool,
    },
    /// ln(1 + eˣ)
    Softplus,
    /// x / (1 + |x|)
    Softsign,
    /// x · tanh(softplus(x))
    Mish,
    /// x if x ≥ 0 else alpha·x
    LeakyRelu {
        /// Slope for negative x.
        alpha: f32,
    },
    /// x if x > 0 else alpha·(eˣ − 1)
    Elu {
        /// Scale of the negative part.
        alpha: f32,
    },
    /// gamma·(x if x > 0 else alpha·(eˣ − 1))
    Selu {
        /// Scale of the negative part.
        alpha: f32,
        /// Overall scale.
        gamma: f32,
    },
    /// max(0, x) + min(0, alpha·(e^(x/alpha) − 1))
    Celu {
        /// Scale.
        alpha: f32,
    },
    /// max(0, min(1, alpha·x + beta))
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x · max(0, min(1, x/6 + 1/2))
    HardSwish,
    /// x if x > alpha else 0
    ThresholdedRelu {
        /// Threshold.
        alpha: f32,
    },
    /// x − bias if x > lambd; x + bias if x < −lambd; else 0
    Shrink {
        /// Shift.
        bias: f32,
        /// Threshold.
        lambd: f32,
    },
}

impl OpFamily for UnaryOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let x = inputs.ty(0)?;
        let dtype = match self {
            UnaryOp::IsNaN | UnaryOp::IsInf { .. } => DType::Bool,
            _ => x.dtype,
        };
        Ok(vec![TensorType::new(dtype, x.shape.clone())])
    }
}

/// An elementwise op of two operands, numpy broadcasting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b (integer division truncates toward zero)
    Div,
    /// aᵇ (output has a's dtype)
    Pow,
    /// max(a, b) (NaN propagates)
    Max,
    /// min(a, b) (NaN propagates)
    Min,
    /// Remainder: sign of the divisor (Python) unless `fmod`, then sign of the dividend (C).
    Mod {
        /// C `fmod` semantics.
        fmod: bool,
    },
    /// a if a ≥ 0 else b·a (b is the slope)
    PRelu,
    /// a == b (output bool)
    Equal,
    /// a < b (output bool)
    Less,
    /// a ≤ b (output bool)
    LessOrEqual,
    /// a > b (output bool)
    Greater,
    /// a ≥ b (output bool)
    GreaterOrEqual,
    /// a ∧ b
    And,
    /// a ∨ b
    Or,
    /// a ⊕ b
    Xor,
    /// a << b
    BitShiftLeft,
    /// a >> b
    BitShiftRight,
    /// a & b
    BitwiseAnd,
    /// a | b
    BitwiseOr,
    /// a ^ b
    BitwiseXor,
}

impl BinaryOp {
    /// True for the comparisons, whose output is bool.
    pub fn is_comparison(&self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
        )
    }
}

impl OpFamily for BinaryOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        if inputs.len() != 2 {
            return Err(OpError::shape(format!(
                "expects 2 inputs, got {}",
                inputs.len()
            )));
        }
        let (a, b) = (inputs.ty(0)?, inputs.ty(1)?);
        if a.dtype != b.dtype
            && !matches!(
                self,
                BinaryOp::Pow | BinaryOp::BitShiftLeft | BinaryOp::BitShiftRight
            )
        {
            return Err(OpError::dtype(format!(
                "operand dtypes differ: {} and {}",
                a.dtype, b.dtype
            )));
        }
        let shape = broadcast_all(inputs.types)?;
        let dtype = if self.is_comparison() {
            DType::Bool
        } else {
            a.dtype
        };
        Ok(vec![TensorType::new(dtype, shape)])
    }
}
