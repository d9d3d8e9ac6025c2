//! ONNX converters of the nn family.

use crate::onnx::Registry;

/// Registers this family's converters.
pub fn register(_reg: &mut Registry) {}
