//! kiln's intermediate representation.
//!
//! A model is a [`Graph`]: SSA dataflow of [`Node`]s applying [`Op`]s to typed
//! [`Value`]s, grouped into nested [`Brick`]s (attention, FFN, experts, norms...).
//! Weights are constants that view memory-mapped files ([`Tensor`] over shared
//! bytes). The crate also holds the verifier, the text form and the reference
//! interpreter ([`interp`]), the oracle every pass and backend is tested against.
//!
//! **Architecture invariant:** this crate knows nothing of ONNX, LLVM or CUDA.
#![warn(missing_docs)]

mod brick;
mod dtype;
mod error;
mod graph;
pub mod interp;
pub mod limits;
pub mod list;
pub mod lowp;
pub mod op;
mod shape;
mod tensor;
pub mod text;
mod verify;

pub use brick::{Brick, BrickId, BrickKind};
pub use dtype::DType;
pub use error::{ErrorKind, OpError};
pub use graph::{
    is_parameter, BrickInterface, Graph, Node, NodeError, NodeId, Value, ValueDef, ValueId,
};
pub use op::Op;
pub use shape::{checked_product, Dim, Shape, TensorType};
pub use tensor::{map_file, Element, SizeMismatch, Tensor};
pub use verify::{verify, VerifyError};

#[doc(hidden)]
pub use half;
