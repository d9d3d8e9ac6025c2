//! What the importer knows about list values (ONNX sequences and
//! optionals): their kind and their elements' type, which the ops reading
//! an element out of a list need (the IR's list values are opaque).

use kiln_ir::list::ListKind;
use kiln_ir::op::list_type;
use kiln_ir::{DType, Dim, Shape, TensorType};

use super::proto::{self, TypeProto};
use super::tensor::dtype_of;

/// The element of a list value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ListElem {
    /// Tensors of this type (dims unknown where elements differ).
    Tensor(TensorType),
    /// Lists (an optional sequence, a sequence of sequences).
    List(Box<ListInfo>),
    /// Tensors of this dtype, rank not known yet (an empty sequence).
    Unknown(DType),
}

/// A list value's kind and element.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ListInfo {
    /// Sequence or optional.
    pub kind: ListKind,
    /// What it holds.
    pub elem: ListElem,
}

impl ListElem {
    /// The element of a value of type `ty` (a list's own info when `info`).
    pub fn of(ty: &TensorType, info: Option<&ListInfo>) -> ListElem {
        match info {
            Some(i) => ListElem::List(Box::new(i.clone())),
            None => ListElem::Tensor(ty.clone()),
        }
    }

    /// The element type as the IR types it, or `None` when its rank is unknown.
    pub fn ir_type(&self) -> Option<TensorType> {
        match self {
            ListElem::Tensor(t) => Some(t.clone()),
            ListElem::List(_) => Some(list_type()),
            ListElem::Unknown(_) => None,
        }
    }

    /// The element that holds both `self`'s and `other`'s values.
    pub fn merge(&self, other: &ListElem) -> ListElem {
        match (self, other) {
            (ListElem::Tensor(a), ListElem::Tensor(b)) if a.dtype == b.dtype => {
                if a.shape.rank() != b.shape.rank() {
                    return ListElem::Unknown(a.dtype);
                }
                let dims = a
                    .shape
                    .0
                    .iter()
                    .zip(&b.shape.0)
                    .map(|(x, y)| if x == y { x.clone() } else { Dim::Any })
                    .collect();
                ListElem::Tensor(TensorType::new(a.dtype, Shape(dims)))
            }
            (ListElem::Unknown(d), ListElem::Tensor(t))
            | (ListElem::Tensor(t), ListElem::Unknown(d))
                if *d == t.dtype =>
            {
                ListElem::Tensor(t.clone())
            }
            (ListElem::List(a), ListElem::List(_)) => ListElem::List(a.clone()),
            (a, _) => a.clone(),
        }
    }
}

/// The list info of a sequence or optional type, `None` for a tensor type.
pub(crate) fn info_of_type(tp: &TypeProto) -> Option<ListInfo> {
    let (kind, elem) = match tp.value.as_ref()? {
        proto::type_proto::Value::SequenceType(s) => (ListKind::Sequence, s.elem_type.as_deref()),
        proto::type_proto::Value::OptionalType(o) => (ListKind::Optional, o.elem_type.as_deref()),
        _ => return None,
    };
    let elem = match elem {
        None => ListElem::Unknown(DType::F32),
        Some(e) => match info_of_type(e) {
            Some(inner) => ListElem::List(Box::new(inner)),
            None => match e.value.as_ref() {
                Some(proto::type_proto::Value::TensorType(tt)) => {
                    let dtype = dtype_of(tt.elem_type).unwrap_or(DType::F32);
                    match &tt.shape {
                        None => ListElem::Unknown(dtype),
                        Some(s) => ListElem::Tensor(TensorType::new(
                            dtype,
                            Shape(
                                s.dim
                                    .iter()
                                    .map(|d| match d.value {
                                        Some(
                                            proto::tensor_shape_proto::dimension::Value::DimValue(
                                                v,
                                            ),
                                        ) if v >= 0 => Dim::Known(v as usize),
                                        _ => Dim::Any,
                                    })
                                    .collect(),
                            ),
                        )),
                    }
                }
                _ => ListElem::Unknown(DType::F32),
            },
        },
    };
    Some(ListInfo { kind, elem })
}
