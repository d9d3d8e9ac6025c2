//! ONNX converters of the composite family.

use crate::onnx::Registry;

/// Registers this family's converters.
pub fn register(_reg: &mut Registry) {}
