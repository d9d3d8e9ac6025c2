//! Typed errors of type inference and evaluation.
//!
//! Every op's [`crate::Op::infer`] and the interpreter's [`crate::interp::eval_op`]
//! fail with an [`OpError`]: a [`ErrorKind`] callers can match on (an op the
//! interpreter cannot evaluate is not a shape mismatch, and neither is a tensor
//! over the size limit) and a message for people. The node is added by the
//! callers that know it ([`crate::NodeError`], [`crate::interp::EvalError`]).

use std::fmt;

/// What kind of failure an [`OpError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The op, or this combination of op, dtypes and attributes, is valid ONNX
    /// but not implemented.
    Unsupported,
    /// Operand shapes (ranks, dims, broadcasting) do not fit the op.
    Shape,
    /// Operand dtypes do not fit the op.
    DType,
    /// An attribute is out of its range or inconsistent with the operands.
    Attribute,
    /// Operand values are invalid (indices out of range, a shape operand that
    /// is not a constant, a division of integers by zero...).
    Value,
    /// The result would exceed a resource limit ([`crate::limits`]).
    TooLarge,
}

impl ErrorKind {
    /// A short lower-case name (`unsupported`, `shape`...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Shape => "shape",
            ErrorKind::DType => "dtype",
            ErrorKind::Attribute => "attribute",
            ErrorKind::Value => "value",
            ErrorKind::TooLarge => "too large",
        }
    }
}

/// A failure of one op's inference or evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What went wrong, for people (one line).
    pub message: String,
}

impl OpError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::Unsupported, message)
    }

    /// [`ErrorKind::Shape`].
    pub fn shape(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::Shape, message)
    }

    /// [`ErrorKind::DType`].
    pub fn dtype(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::DType, message)
    }

    /// [`ErrorKind::Attribute`].
    pub fn attribute(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::Attribute, message)
    }

    /// [`ErrorKind::Value`].
    pub fn value(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::Value, message)
    }

    /// [`ErrorKind::TooLarge`].
    pub fn too_large(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::TooLarge, message)
    }

    /// The same error with `context` before its message (`step 2 (Add): ...`).
    pub fn context(self, context: impl fmt::Display) -> OpError {
        OpError {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpError {}

/// Messages built without a kind (helpers that describe operand values) are
/// [`ErrorKind::Value`] errors.
impl From<String> for OpError {
    fn from(message: String) -> OpError {
        OpError::value(message)
    }
}

impl From<&str> for OpError {
    fn from(message: &str) -> OpError {
        OpError::value(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind() {
        let e = OpError::shape("dims 3 and 4 differ").context("step 1 (Add)");
        assert_eq!(e.kind, ErrorKind::Shape);
        assert_eq!(e.to_string(), "step 1 (Add): dims 3 and 4 differ");
    }
}
