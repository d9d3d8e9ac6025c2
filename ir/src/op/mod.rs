//! The op set: primitive ops grouped in families, plus composite ops.
//!
//! Each family lives in its own module and owns three things for its ops: the
//! definition (an enum whose variants carry the op's attributes), type inference
//! ([`OpFamily::infer`]) and — in [`crate::interp`] — the reference evaluation.
//! [`Op`] only dispatches; adding an op means adding a variant to one family enum
//! and following the compiler's exhaustive `match` errors (see ARCHITECTURE.md,
//! "Adding an op").

use crate::error::OpError;
mod composite;
mod control;
mod elementwise;
mod fused;
mod layout;
mod list;
mod misc;
mod nn;
mod props;
mod reduce;
mod resize;
mod window;

pub use composite::{CompositeOp, LossReduction, QkOutput};
pub use control::{ControlOp, Subgraph, MAX_LOOP_ITERATIONS};
pub use elementwise::{BinaryOp, UnaryOp};
pub use fused::{FusedArg, FusedOp, FusedRole, FusedStep, MAX_FUSED_STEPS};
pub use layout::{shape_range, slice_bounds, slice_len, LayoutOp, PadMode, ScatterReduction};
pub use list::{list_type, ListOp};
pub use misc::{
    GridMode, GridPadding, LinearUpdate, MiscOp, RnnActivation, RnnCell, RnnInputs, TfIdfWeighting,
    TreeAggregate, TreeBranch, TreeMode, TreeNode, WindowKind,
};
pub use nn::{matmul_shape, parse_einsum, NnOp, RnnDirection};
pub use reduce::{ReduceKind, ReduceOp};
pub use resize::{KeepAspect, ResizeAttrs, ResizeCoord, ResizeMode, ResizeNearest};
pub use window::{AutoPad, ConvAttrs, Window, WindowGeometry};

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Tensor, TensorType};

/// What type inference knows about a node's inputs.
pub struct InferInputs<'a> {
    /// The type of each input.
    pub types: &'a [TensorType],
    /// The value of each input that is a compile-time constant.
    pub consts: &'a [Option<&'a Tensor>],
}

impl InferInputs<'_> {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True when the node has no inputs.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The type of input `i`, or an error naming the missing input.
    pub fn ty(&self, i: usize) -> Result<&TensorType, OpError> {
        self.types
            .get(i)
            .ok_or_else(|| OpError::shape(format!("missing input {i}")))
    }

    /// The constant value of input `i`, if it is one.
    pub fn constant(&self, i: usize) -> Option<&Tensor> {
        self.consts.get(i).copied().flatten()
    }
}

/// What every op family provides.
pub trait OpFamily {
    /// The op's name in the text form (the variant name, e.g. `MatMul`).
    fn name(&self) -> &'static str;
    /// Output types from input types (and constant inputs), or why the inputs are invalid.
    fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError>;
}

/// One operation of the IR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Elementwise op of one operand.
    Unary(UnaryOp),
    /// Elementwise op of two operands with numpy broadcasting.
    Binary(BinaryOp),
    /// Reductions and scans along axes.
    Reduce(ReduceOp),
    /// Data movement, shape computation, casts and tensor creation.
    Layout(LayoutOp),
    /// Neural-network ops: matmul, convolution, pooling, normalization, resize, recurrences.
    Nn(NnOp),
    /// Composite ops that backends implement directly (softmax, norms, GELU, attention).
    Composite(CompositeOp),
    /// Quantization, recurrences, sampling, detection and signal ops.
    Misc(MiscOp),
    /// A fused region: several elementwise steps around at most one anchor, one kernel.
    Fused(FusedOp),
    /// Control flow: `If`, `Loop` and `Scan`, which own subgraphs.
    Control(ControlOp),
    /// Sequences and optionals (list values).
    List(ListOp),
}

impl Op {
    fn family(&self) -> &dyn OpFamily {
        match self {
            Op::Unary(o) => o,
            Op::Binary(o) => o,
            Op::Reduce(o) => o,
            Op::Layout(o) => o,
            Op::Nn(o) => o,
            Op::Composite(o) => o,
            Op::Misc(o) => o,
            Op::Fused(o) => o,
            Op::Control(o) => o,
            Op::List(o) => o,
        }
    }

    /// The op's name (the variant name of its family enum).
    pub fn name(&self) -> &'static str {
        self.family().name()
    }

    /// Output types for these inputs.
    pub fn infer(&self, inputs: &InferInputs) -> Result<Vec<TensorType>, OpError> {
        // A list (sequence, optional) is opaque bytes: only list ops, control
        // flow (which passes values through) and Identity may take one.
        let takes_lists = matches!(
            self,
            Op::List(_) | Op::Control(_) | Op::Layout(LayoutOp::Identity)
        );
        if !takes_lists && inputs.types.iter().any(|t| t.dtype == crate::DType::List) {
            return Err(OpError::dtype(format!(
                "{} does not take a sequence or optional",
                self.name()
            )));
        }
        self.family().infer(inputs)
    }

    /// The op with its attributes in the text form (RON syntax of the family variant,
    /// e.g. `Relu`, `Transpose(perm: [1, 0])`).
    pub fn to_text(&self) -> String {
        // One line, a space after each separator: `TopK(axis: 1, largest: true, sorted: true)`.
        let cfg = || {
            ron::ser::PrettyConfig::new()
                .new_line("")
                .indentor("")
                .separator(" ")
                .compact_structs(true)
                .compact_arrays(true)
        };
        let r = match self {
            Op::Unary(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Binary(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Reduce(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Layout(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Nn(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Composite(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Misc(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::Control(o) => ron::ser::to_string_pretty(o, cfg()),
            Op::List(o) => ron::ser::to_string_pretty(o, cfg()),
            // Struct names are omitted by the compact form: name the region.
            Op::Fused(o) => ron::ser::to_string_pretty(o, cfg()).map(|s| format!("Fused{s}")),
        };
        r.expect("op attributes always serialize")
    }

    /// Parses the text printed by [`Op::to_text`].
    pub fn from_text(s: &str) -> Result<Op, String> {
        fn try_parse<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
            ron::from_str(s).ok()
        }
        try_parse(s)
            .map(Op::Unary)
            .or_else(|| try_parse(s).map(Op::Binary))
            .or_else(|| try_parse(s).map(Op::Reduce))
            .or_else(|| try_parse(s).map(Op::Layout))
            .or_else(|| try_parse(s).map(Op::Nn))
            .or_else(|| try_parse(s).map(Op::Composite))
            .or_else(|| try_parse(s).map(Op::Misc))
            .or_else(|| try_parse(s).map(Op::Control))
            .or_else(|| try_parse(s).map(Op::List))
            .or_else(|| {
                s.trim_start()
                    .strip_prefix("Fused")
                    .and_then(|rest| try_parse(rest).map(Op::Fused))
            })
            .ok_or_else(|| format!("unknown op or malformed attributes: `{s}`"))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Helpers shared by the families' type inference.
pub(crate) mod util {
    use crate::{Dim, OpError, Shape, TensorType};

    /// Normalizes a possibly negative axis against `rank`.
    pub fn axis(axis: i64, rank: usize) -> Result<usize, OpError> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r {
            return Err(OpError::attribute(format!(
                "axis {axis} out of range for rank {rank}"
            )));
        }
        Ok(a as usize)
    }

    /// The broadcast of several input shapes.
    pub fn broadcast_all(types: &[TensorType]) -> Result<Shape, OpError> {
        let mut out = Shape::default();
        for t in types {
            out = Shape::broadcast(&out, &t.shape).ok_or_else(|| {
                OpError::shape(format!("shapes {} and {} do not broadcast", out, t.shape))
            })?;
        }
        Ok(out)
    }

    /// A shape of all-unknown dims of this rank.
    pub fn any_shape(rank: usize) -> Shape {
        Shape(vec![Dim::Any; rank])
    }
}
