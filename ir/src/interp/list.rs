//! Reference evaluation of the sequence and optional ops.

use crate::error::OpError;
use crate::list::{decode, encode, sequence, ListKind};
use crate::op::{LayoutOp, ListOp, Op};
use crate::{DType, Tensor};

/// A position operand as an index into `len` elements (`len` itself allowed
/// when `insert`).
fn position(t: &Tensor, len: usize, insert: bool) -> Result<usize, OpError> {
    let p = t
        .scalar_i64()
        .ok_or_else(|| OpError::value("the position must be one integer"))?;
    let n = len as i64;
    let at = if p < 0 { p + n } else { p };
    let limit = if insert { n } else { n - 1 };
    if at < 0 || at > limit {
        return Err(OpError::value(format!(
            "position {p} is out of range for a sequence of {len} elements"
        )));
    }
    Ok(at as usize)
}

/// Evaluates a list op.
pub(super) fn eval(op: &ListOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let arg = |i: usize| -> Result<&Tensor, OpError> {
        inputs
            .get(i)
            .copied()
            .ok_or_else(|| OpError::value(format!("missing input {i}")))
    };
    let seq = |items: Vec<Tensor>| encode(ListKind::Sequence, &items);
    Ok(vec![match op {
        ListOp::SequenceEmpty => seq(vec![]),
        ListOp::SequenceConstruct => seq(inputs.iter().map(|&t| t.clone()).collect()),
        ListOp::SequenceInsert => {
            let mut items = sequence(arg(0)?)?;
            let at = match inputs.get(2) {
                Some(p) => position(p, items.len(), true)?,
                None => items.len(),
            };
            items.insert(at, arg(1)?.clone());
            seq(items)
        }
        ListOp::SequenceErase => {
            let mut items = sequence(arg(0)?)?;
            if items.is_empty() {
                return Err(OpError::value("SequenceErase of an empty sequence"));
            }
            let at = match inputs.get(1) {
                Some(p) => position(p, items.len(), false)?,
                None => items.len() - 1,
            };
            items.remove(at);
            seq(items)
        }
        ListOp::SequenceAt { .. } => {
            let items = sequence(arg(0)?)?;
            let at = position(arg(1)?, items.len(), false)?;
            items[at].clone()
        }
        ListOp::SequenceLength => Tensor::scalar(sequence(arg(0)?)?.len() as i64),
        ListOp::SplitToSequence { axis, keepdims } => {
            let x = arg(0)?;
            let a = crate::op::util::axis(*axis, x.rank())?;
            let n = x.shape()[a];
            let (sizes, squeeze) = match inputs.get(1) {
                None => (vec![1; n], !keepdims),
                Some(s) if s.rank() == 0 => {
                    let k = s.scalar_i64().unwrap_or(0);
                    if k <= 0 {
                        return Err(OpError::value(format!("split size {k} must be positive")));
                    }
                    let k = k as usize;
                    let mut sizes = vec![k; n / k];
                    if n % k != 0 {
                        sizes.push(n % k);
                    }
                    (sizes, false)
                }
                Some(s) => {
                    let sizes: Vec<usize> = s
                        .to_i64_vec()
                        .into_iter()
                        .map(|v| {
                            usize::try_from(v).map_err(|_| OpError::value("negative split size"))
                        })
                        .collect::<Result<_, _>>()?;
                    if sizes.iter().sum::<usize>() != n {
                        return Err(OpError::value(format!(
                            "split sizes {sizes:?} do not add up to the axis' {n}"
                        )));
                    }
                    (sizes, false)
                }
            };
            let pieces = crate::interp::eval_op(
                &Op::Layout(LayoutOp::Split {
                    axis: a,
                    sizes: sizes.clone(),
                }),
                &[x],
                sizes.len(),
            )?;
            let pieces = if squeeze {
                pieces
                    .into_iter()
                    .map(|p| {
                        let mut dims = p.shape().to_vec();
                        dims.remove(a);
                        p.reshaped(dims).map_err(|e| OpError::shape(e.to_string()))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                pieces
            };
            seq(pieces)
        }
        ListOp::ConcatFromSequence {
            axis,
            new_axis,
            elem,
        } => {
            let items = sequence(arg(0)?)?;
            let Some(first) = items.first() else {
                // ONNX leaves an empty sequence undefined: an empty tensor.
                let dims: Vec<usize> = (0..elem.shape.rank() + *new_axis as usize)
                    .map(|_| 0)
                    .collect();
                return Ok(vec![Tensor::zeros(elem.dtype, dims)]);
            };
            let rank = first.rank() + *new_axis as usize;
            let a = crate::op::util::axis(*axis, rank)?;
            let items: Vec<Tensor> = if *new_axis {
                items
                    .into_iter()
                    .map(|t| {
                        let mut dims = t.shape().to_vec();
                        dims.insert(a, 1);
                        t.reshaped(dims).map_err(|e| OpError::shape(e.to_string()))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                items
            };
            let refs: Vec<&Tensor> = items.iter().collect();
            crate::interp::eval_op(&Op::Layout(LayoutOp::Concat { axis: a }), &refs, 1)?.remove(0)
        }
        ListOp::OptionalNone => encode(ListKind::Optional, &[]),
        ListOp::OptionalSome => encode(ListKind::Optional, &[arg(0)?.clone()]),
        ListOp::OptionalHasElement => {
            let has = match decode(arg(0)?)? {
                (ListKind::Optional, items) => !items.is_empty(),
                (ListKind::Sequence, _) => true,
            };
            Tensor::from_i64(DType::Bool, vec![], &[has as i64])
        }
        ListOp::OptionalGetElement { .. } => match decode(arg(0)?)? {
            (ListKind::Optional, mut items) => items.pop().ok_or_else(|| {
                OpError::value("OptionalGetElement of an optional without a value")
            })?,
            (ListKind::Sequence, _) => arg(0)?.clone(),
        },
    }])
}
