//! The op registry: ONNX op type (and domain) → converter.

use std::collections::HashMap;

use super::node_ctx::NodeCtx;
use super::OnnxError;

/// Converts one ONNX node into kiln nodes through its [`NodeCtx`].
pub type Converter = fn(&mut NodeCtx) -> Result<(), OnnxError>;

/// The converters kiln knows, by domain and op type.
#[derive(Clone, Default)]
pub struct Registry {
    map: HashMap<(String, String), Converter>,
}

impl Registry {
    /// Every converter of every op family.
    pub fn standard() -> Registry {
        let mut reg = Registry::default();
        super::ops::register_all(&mut reg);
        reg
    }

    /// Registers an op of the default (`ai.onnx`) domain.
    pub fn insert(&mut self, op_type: &str, conv: Converter) {
        self.map.insert((String::new(), op_type.to_string()), conv);
    }

    /// Registers an op of another domain.
    pub fn insert_in(&mut self, domain: &str, op_type: &str, conv: Converter) {
        self.map
            .insert((domain.to_string(), op_type.to_string()), conv);
    }

    /// The converter for an op.
    pub fn get(&self, domain: &str, op_type: &str) -> Option<Converter> {
        self.map
            .get(&(domain.to_string(), op_type.to_string()))
            .copied()
    }

    /// Registered op types of the default domain, sorted.
    pub fn op_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .keys()
            .filter(|(d, _)| d.is_empty())
            .map(|(_, o)| o.clone())
            .collect();
        v.sort();
        v
    }
}
