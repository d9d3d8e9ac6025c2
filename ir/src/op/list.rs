//! Sequence and optional ops over list values ([`crate::list`]).
//!
//! A list value is a `List`-typed tensor of unknown length (`[?]`); the ops
//! that read an element out of one carry the element's type as an attribute
//! (the importer knows it from the producers), so inference stays local.

use serde::{Deserialize, Serialize};

use super::{InferInputs, OpFamily};
use crate::{DType, Dim, OpError, Shape, TensorType};

/// The type of every list value: an opaque byte tensor of unknown length.
pub fn list_type() -> TensorType {
    TensorType::new(DType::List, Shape(vec![Dim::Any]))
}

/// Sequence and optional ops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, strum::IntoStaticStr)]
pub enum ListOp {
    /// A sequence with no element.
    SequenceEmpty,
    /// The sequence of the operands, in order.
    SequenceConstruct,
    /// `[seq, x, position?]`: `seq` with `x` inserted before `position`
    /// (negative counts from the end; absent appends).
    SequenceInsert,
    /// `[seq, position?]`: `seq` without the element at `position` (absent:
    /// the last).
    SequenceErase,
    /// `[seq, position]`: the element at `position` (negative counts from the end).
    SequenceAt {
        /// The element's type (its dims may be unknown).
        elem: TensorType,
    },
    /// `[seq]`: the number of elements (i64 scalar).
    SequenceLength,
    /// `[x, split?]`: `x` cut along `axis` into a sequence: pieces of size
    /// `split` (a scalar; the last may be shorter), of the sizes `split` lists
    /// (1-D), or (absent) of size 1, squeezed unless `keepdims`.
    SplitToSequence {
        /// The axis (negative counts from the end).
        axis: i64,
        /// Keep the split axis when `split` is absent.
        keepdims: bool,
    },
    /// `[seq]`: the elements concatenated along `axis` (or, with `new_axis`,
    /// stacked along a new axis there).
    ConcatFromSequence {
        /// The axis (negative counts from the end of the result).
        axis: i64,
        /// Stack along a new axis instead of concatenating.
        new_axis: bool,
        /// The elements' type.
        elem: TensorType,
    },
    /// An optional without a value.
    OptionalNone,
    /// `[x]`: an optional holding `x`.
    OptionalSome,
    /// `[opt]`: whether the optional holds a value (bool scalar).
    OptionalHasElement,
    /// `[opt]`: the optional's value (an error when it has none).
    OptionalGetElement {
        /// The value's type.
        elem: TensorType,
    },
}

fn list_operand(inputs: &InferInputs, i: usize) -> Result<(), OpError> {
    let t = inputs.ty(i)?;
    if t.dtype != DType::List {
        return Err(OpError::dtype(format!(
            "operand {i} must be a sequence or optional, it is {t}"
        )));
    }
    Ok(())
}

fn position_operand(inputs: &InferInputs, i: usize) -> Result<(), OpError> {
    if let Ok(t) = inputs.ty(i) {
        if !matches!(t.dtype, DType::I64 | DType::I32) || t.shape.numel() != Some(1) {
            return Err(OpError::dtype(format!(
                "the position must be one i32 or i64, it is {t}"
            )));
        }
    }
    Ok(())
}

impl OpFamily for ListOp {
    fn name(&self) -> &'static str {
        self.into()
    }

    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        let scalar = |d: DType| TensorType::new(d, Shape::default());
        Ok(match self {
            ListOp::SequenceEmpty | ListOp::OptionalNone => vec![list_type()],
            ListOp::SequenceConstruct => {
                let first = inputs.ty(0)?;
                if let Some(t) = inputs.types.iter().find(|t| t.dtype != first.dtype) {
                    return Err(OpError::dtype(format!(
                        "a sequence's elements share one dtype: {} and {}",
                        first.dtype, t.dtype
                    )));
                }
                vec![list_type()]
            }
            ListOp::SequenceInsert => {
                list_operand(inputs, 0)?;
                inputs.ty(1)?;
                position_operand(inputs, 2)?;
                vec![list_type()]
            }
            ListOp::SequenceErase => {
                list_operand(inputs, 0)?;
                position_operand(inputs, 1)?;
                vec![list_type()]
            }
            ListOp::SequenceAt { elem } => {
                list_operand(inputs, 0)?;
                inputs.ty(1)?;
                position_operand(inputs, 1)?;
                vec![elem.clone()]
            }
            ListOp::SequenceLength => {
                list_operand(inputs, 0)?;
                vec![scalar(DType::I64)]
            }
            ListOp::SplitToSequence { axis, .. } => {
                let x = inputs.ty(0)?;
                if x.dtype == DType::List {
                    return Err(OpError::dtype("SplitToSequence of a list"));
                }
                super::util::axis(*axis, x.shape.rank())?;
                vec![list_type()]
            }
            ListOp::ConcatFromSequence {
                axis,
                new_axis,
                elem,
            } => {
                list_operand(inputs, 0)?;
                let rank = elem.shape.rank() + *new_axis as usize;
                let a = super::util::axis(*axis, rank)?;
                let mut dims = elem.shape.0.clone();
                if *new_axis {
                    dims.insert(a, Dim::Any);
                } else {
                    dims[a] = Dim::Any;
                }
                vec![TensorType::new(elem.dtype, Shape(dims))]
            }
            ListOp::OptionalSome => {
                inputs.ty(0)?;
                vec![list_type()]
            }
            ListOp::OptionalHasElement => {
                list_operand(inputs, 0)?;
                vec![scalar(DType::Bool)]
            }
            ListOp::OptionalGetElement { elem } => {
                list_operand(inputs, 0)?;
                vec![elem.clone()]
            }
        })
    }
}
