//! A model's interface: what its inputs and outputs are called and typed.
//!
//! Its own module so that the facade (`model`) and the artifact reader (`aot`)
//! both depend on it without depending on each other.

use kiln_frontends::hf::InputRule;
use kiln_ir::Graph;

/// The names, dtypes and declared shapes of a model's inputs, its output names,
/// and (Hugging Face models) which inputs a caller may leave out.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// Inputs in order.
    pub inputs: Vec<(String, kiln_ir::DType, kiln_ir::Shape)>,
    /// Output names in order.
    pub outputs: Vec<String>,
    /// Inputs a caller may leave out (with what fills them) and the ranges of
    /// inputs' values: transformers' defaults for Hugging Face models, none
    /// for ONNX files. Artifacts keep them, so a compiled folder takes the
    /// same inputs as the folder.
    pub rules: Vec<InputRule>,
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
            rules: Vec::new(),
        }
    }

    /// The signature of a graph whose inputs follow `rules`.
    pub fn with_rules(graph: &Graph, rules: &[InputRule]) -> Signature {
        Signature {
            rules: rules.to_vec(),
            ..Signature::of(graph)
        }
    }
}
