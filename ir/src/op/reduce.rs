//! Reductions, arg-reductions, scans and top-k along axes.

use crate::error::OpError;
use serde::{Deserialize, Serialize};
use strum::IntoStaticStr;

use super::{InferInputs, OpFamily};
use crate::{DType, Dim, Shape, TensorType};

/// How a reduction combines the elements along its axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    /// Σx
    Sum,
    /// Σx / n
    Mean,
    /// max x (−∞ for an empty reduction of floats)
    Max,
    /// min x (+∞ for an empty reduction of floats)
    Min,
    /// Πx
    Prod,
    /// Σ|x|
    L1,
    /// √Σx²
    L2,
    /// ln Σx
    LogSum,
    /// ln Σeˣ
    LogSumExp,
    /// Σx²
    SumSquare,
}

/// An op of the reduction family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, IntoStaticStr)]
pub enum ReduceOp {
    /// Reduces `axes` (sorted, distinct, non-negative) with `kind`.
    Reduce {
        /// The combining function.
        kind: ReduceKind,
        /// Reduced axes. Empty makes every element its own group: the output is the
        /// kind's function of one element (x for Sum, x² for SumSquare, |x| for L2, ...).
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keepdims: bool,
    },
    /// `[x, axes]`: [`ReduceOp::Reduce`] with the axes an i64 tensor known only at run
    /// time (negative axes wrap; empty axes reduce everything, or nothing when
    /// `noop_with_empty_axes`).
    ReduceDynamic {
        /// The combining function.
        kind: ReduceKind,
        /// Keep reduced axes as size 1.
        keepdims: bool,
        /// Empty `axes` reduce nothing instead of everything.
        noop_with_empty_axes: bool,
    },
    /// Index of the largest element along `axis` (i64 output).
    ArgMax {
        /// Axis.
        axis: usize,
        /// Keep the axis as size 1.
        keepdims: bool,
        /// On ties, the last index instead of the first.
        select_last_index: bool,
    },
    /// Index of the smallest element along `axis` (i64 output).
    ArgMin {
        /// Axis.
        axis: usize,
        /// Keep the axis as size 1.
        keepdims: bool,
        /// On ties, the last index instead of the first.
        select_last_index: bool,
    },
    /// Running sum along `axis`.
    CumSum {
        /// Axis.
        axis: usize,
        /// Exclude the current element.
        exclusive: bool,
        /// Sum from the end.
        reverse: bool,
    },
    /// `[x, axis]`: [`ReduceOp::CumSum`] with the axis a one-element integer tensor
    /// known only at run time (negative wraps).
    CumSumDynamic {
        /// Exclude the current element.
        exclusive: bool,
        /// Sum from the end.
        reverse: bool,
    },
    /// Running product along `axis` (exclusive products start at 1).
    CumProd {
        /// Axis.
        axis: usize,
        /// Exclude the current element.
        exclusive: bool,
        /// Multiply from the end.
        reverse: bool,
    },
    /// `[x, axis]`: [`ReduceOp::CumProd`] with the axis a one-element integer tensor
    /// known only at run time (negative wraps).
    CumProdDynamic {
        /// Exclude the current element.
        exclusive: bool,
        /// Multiply from the end.
        reverse: bool,
    },
    /// The k largest (or smallest) elements along `axis` and their i64 indices;
    /// inputs `[x, k]` with `k` an i64 tensor of one element.
    TopK {
        /// Axis.
        axis: usize,
        /// Largest (true) or smallest.
        largest: bool,
        /// Outputs sorted by value.
        sorted: bool,
    },
}

/// The shape after reducing `axes`.
pub(crate) fn reduced_shape(shape: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    let mut out = Vec::new();
    for (i, d) in shape.0.iter().enumerate() {
        if axes.contains(&i) {
            if keepdims {
                out.push(Dim::Known(1));
            }
        } else {
            out.push(d.clone());
        }
    }
    Shape(out)
}

impl OpFamily for ReduceOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let x = inputs.ty(0)?;
        let rank = x.shape.rank();
        let check = |a: usize| {
            if a >= rank {
                Err(OpError::attribute(format!(
                    "axis {a} out of range for rank {rank}"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            ReduceOp::Reduce { axes, keepdims, .. } => {
                for &a in axes {
                    check(a)?;
                }
                Ok(vec![TensorType::new(
                    x.dtype,
                    reduced_shape(&x.shape, axes, *keepdims),
                )])
            }
            ReduceOp::ReduceDynamic {
                keepdims,
                noop_with_empty_axes,
                ..
            } => {
                let n_axes = inputs.ty(1)?.shape.0.first().and_then(Dim::known);
                let shape = match (n_axes, keepdims) {
                    (Some(0), _) if *noop_with_empty_axes => x.shape.clone(),
                    (Some(0), true) => Shape(vec![Dim::Known(1); rank]),
                    (Some(0), false) => Shape::default(),
                    (_, true) => Shape(vec![Dim::Any; rank]),
                    (Some(n), false) if n <= rank => Shape(vec![Dim::Any; rank - n]),
                    _ => {
                        return Err(
                            "ReduceDynamic: output rank unknown (axes of unknown length)".into(),
                        )
                    }
                };
                Ok(vec![TensorType::new(x.dtype, shape)])
            }
            ReduceOp::CumSumDynamic { .. } | ReduceOp::CumProdDynamic { .. } => Ok(vec![x.clone()]),
            ReduceOp::ArgMax { axis, keepdims, .. } | ReduceOp::ArgMin { axis, keepdims, .. } => {
                check(*axis)?;
                Ok(vec![TensorType::new(
                    DType::I64,
                    reduced_shape(&x.shape, &[*axis], *keepdims),
                )])
            }
            ReduceOp::CumSum { axis, .. } | ReduceOp::CumProd { axis, .. } => {
                check(*axis)?;
                Ok(vec![x.clone()])
            }
            ReduceOp::TopK { axis, .. } => {
                check(*axis)?;
                let mut shape = x.shape.clone();
                shape.0[*axis] = match inputs.constant(1).and_then(|k| k.scalar_i64()) {
                    Some(k) => Dim::Known(k as usize),
                    None => Dim::Any,
                };
                Ok(vec![
                    TensorType::new(x.dtype, shape.clone()),
                    TensorType::new(DType::I64, shape),
                ])
            }
        }
    }
}
