//! Why a node runs on the host (the reference interpreter) instead of as
//! generated code.
//!
//! Every lowering in [`crate::schedule`] that declines a node says why with a
//! [`HostReason`]; the reason is stored on the program's [`crate::program::Step::Host`]
//! (so artifacts keep it) and printed per node by `kiln explain` and
//! `kiln bench --profile`, so a user sees why an op is slow.

use kiln_ir::DType;
use serde::{Deserialize, Serialize};

/// Why the scheduler left a node to the reference interpreter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HostReason {
    /// No lowering exists for this op (it is not generated yet).
    OpNotLowered {
        /// The op's name.
        op: String,
    },
    /// An operand or result has a dtype the lowering does not compute.
    UnsupportedDtype {
        /// Which value (`input 1`, `indices`, `output`, …).
        what: String,
        /// Its dtype.
        dtype: DType,
    },
    /// An operand that decides the kernel's layout (slice bounds, positions) is
    /// not a constant, so the copy is only known at run time.
    DataDependent {
        /// Which operand.
        what: String,
    },
    /// The node has more results than the lowering writes.
    MultipleOutputs {
        /// How many results it has.
        count: usize,
    },
    /// The op's attributes take a form the kernel does not cover.
    UnsupportedAttributes(String),
    /// The shapes of a region (or a row kernel's operands) are outside what one
    /// kernel covers.
    RegionShape(String),
    /// An elementwise step has no kernel expression for its dtypes (integer
    /// division, integer `Pow`, shifts: the interpreter reports their errors).
    NoKernelExpression {
        /// The step's op.
        op: String,
        /// The step's result dtype.
        dtype: DType,
    },
    /// Type inference fails on the node's concrete shapes (the interpreter
    /// reports the error when the node runs).
    Inference(String),
    /// A control-flow subgraph could not be compiled at these shapes (a value
    /// whose shape is only known at run time, a loop-carried value whose shape
    /// changes between iterations); the interpreter runs the whole op.
    Subgraph(String),
}

impl std::fmt::Display for HostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostReason::OpNotLowered { op } => write!(f, "no kernel lowering for `{op}` yet"),
            HostReason::UnsupportedDtype { what, dtype } => {
                write!(f, "{what} is {dtype}, which this kernel does not compute")
            }
            HostReason::DataDependent { what } => {
                write!(f, "{what} is not a constant (known only at run time)")
            }
            HostReason::MultipleOutputs { count } => {
                write!(f, "{count} results; the kernel writes one")
            }
            HostReason::UnsupportedAttributes(d) => write!(f, "attributes not generated: {d}"),
            HostReason::RegionShape(d) => write!(f, "shape not covered by one kernel: {d}"),
            HostReason::NoKernelExpression { op, dtype } => {
                write!(f, "`{op}` has no kernel expression for {dtype}")
            }
            HostReason::Inference(m) => write!(f, "type inference failed: {m}"),
            HostReason::Subgraph(m) => write!(f, "subgraph not compiled: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per kind of reason, as `kiln explain` prints them.
    #[test]
    fn reasons_read_as_sentences() {
        let reasons = [
            HostReason::OpNotLowered { op: "TopK".into() },
            HostReason::UnsupportedDtype {
                what: "indices".into(),
                dtype: DType::I8,
            },
            HostReason::DataDependent {
                what: "starts (input 1)".into(),
            },
            HostReason::MultipleOutputs { count: 2 },
            HostReason::UnsupportedAttributes("ceil mode".into()),
            HostReason::RegionShape("the anchor's shape differs from the output's".into()),
            HostReason::NoKernelExpression {
                op: "Div".into(),
                dtype: DType::I32,
            },
            HostReason::Inference("rank mismatch".into()),
            HostReason::Subgraph("value `y` has a data-dependent shape".into()),
        ];
        let text: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            [
                "no kernel lowering for `TopK` yet",
                "indices is i8, which this kernel does not compute",
                "starts (input 1) is not a constant (known only at run time)",
                "2 results; the kernel writes one",
                "attributes not generated: ceil mode",
                "shape not covered by one kernel: the anchor's shape differs from the output's",
                "`Div` has no kernel expression for i32",
                "type inference failed: rank mismatch",
                "subgraph not compiled: value `y` has a data-dependent shape",
            ]
        );
    }
}
