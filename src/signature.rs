//! A model's interface: what its inputs and outputs are called and typed.
//!
//! Its own module so that the facade (`model`) and the artifact reader (`aot`)
//! both depend on it without depending on each other.

use kiln_ir::Graph;

/// The names, dtypes and declared shapes of a model's inputs, and its output names.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// Inputs in order.
    pub inputs: Vec<(String, kiln_ir::DType, kiln_ir::Shape)>,
    /// Output names in order.
    pub outputs: Vec<String>,
}

impl Signature {
    /// The signature of a graph.
    pub fn of(graph: &Graph) -> Signature {
        Signature {
            inputs: graph
                .inputs
                .iter()
                .map(|&i| {
                    let v = graph.value(i);
                    (v.name.clone(), v.ty.dtype, v.ty.shape.clone())
                })
                .collect(),
            outputs: graph
                .outputs
                .iter()
                .map(|&o| graph.value(o).name.clone())
                .collect(),
        }
    }
}
