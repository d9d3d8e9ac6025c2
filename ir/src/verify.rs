//! The verifier: reports ill-formed graphs, naming the node at fault.

use std::collections::HashSet;

use crate::op::InferInputs;
use crate::{Graph, Tensor, TensorType, ValueDef};

/// An ill-formed graph.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}: {message}", node.as_deref().map(|n| format!("node `{n}`")).unwrap_or_else(|| "graph".into()))]
pub struct VerifyError {
    /// The node at fault, if one is.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn at(node: &str, message: String) -> VerifyError {
    VerifyError {
        node: Some(node.to_string()),
        message,
    }
}

/// Checks the graph invariants (see [`Graph`]).
pub fn verify(graph: &Graph) -> Result<(), VerifyError> {
    let mut defined: HashSet<u32> = HashSet::new();
    let mut names = std::collections::HashMap::new();
    for (i, v) in graph.values().iter().enumerate() {
        if let Some(first) = names.insert(v.name.as_str(), i) {
            // Name the node defining the second value, when a node does.
            let node = match &v.def {
                ValueDef::Node { node, .. } => graph.nodes().get(node.0 as usize),
                _ => None,
            };
            return Err(VerifyError {
                node: node.map(|n| n.name.clone()),
                message: format!(
                    "value name `{}` used twice (values {first} and {i})",
                    v.name
                ),
            });
        }
        match &v.def {
            ValueDef::Input => {
                if !graph.inputs.iter().any(|x| x.0 as usize == i) {
                    return Err(VerifyError {
                        node: None,
                        message: format!(
                            "value `{}` is an input not listed in the graph inputs",
                            v.name
                        ),
                    });
                }
                defined.insert(i as u32);
            }
            ValueDef::Const(t) => {
                if t.dtype() != v.ty.dtype || Some(t.shape().to_vec()) != v.ty.shape.as_known() {
                    return Err(VerifyError {
                        node: None,
                        message: format!(
                            "constant `{}` holds {}{:?} but is typed {}",
                            v.name,
                            t.dtype(),
                            t.shape(),
                            v.ty
                        ),
                    });
                }
                defined.insert(i as u32);
            }
            ValueDef::Node { node, index } => {
                let n = graph
                    .nodes()
                    .get(node.0 as usize)
                    .ok_or_else(|| VerifyError {
                        node: None,
                        message: format!("value `{}` defined by a missing node", v.name),
                    })?;
                if n.outputs.get(*index).map(|o| o.0 as usize) != Some(i) {
                    return Err(at(
                        &n.name,
                        format!("does not list `{}` as its output {index}", v.name),
                    ));
                }
            }
        }
    }
    for (bi, b) in graph.bricks.iter().enumerate() {
        if let Some(p) = b.parent.filter(|p| p.0 as usize >= bi) {
            let parent = match graph.bricks.get(p.0 as usize) {
                Some(pb) => format!("`{}` (#{})", pb.name, p.0),
                None => format!("#{} (missing)", p.0),
            };
            return Err(VerifyError {
                node: None,
                message: format!(
                    "brick `{}` (#{bi}) comes before its parent {parent}",
                    b.name
                ),
            });
        }
    }
    for n in graph.nodes() {
        for (k, i) in n.inputs.iter().enumerate() {
            if i.0 as usize >= graph.values().len() {
                return Err(at(
                    &n.name,
                    format!("input {k} refers to a missing value (id {})", i.0),
                ));
            }
            if !defined.contains(&i.0) {
                return Err(at(
                    &n.name,
                    format!(
                        "input {k} (`{}`) is used before it is defined",
                        graph.value(*i).name
                    ),
                ));
            }
        }
        if n.brick.is_some_and(|b| b.0 as usize >= graph.bricks.len()) {
            return Err(at(&n.name, "belongs to a missing brick".into()));
        }
        if let crate::Op::Control(c) = &n.op {
            for sub in c.subgraphs() {
                verify(sub.graph()).map_err(|e| {
                    at(
                        &n.name,
                        format!("{}: in subgraph `{}`: {e}", n.op.name(), sub.graph().name),
                    )
                })?;
            }
        }
        let types: Vec<TensorType> = n
            .inputs
            .iter()
            .map(|&i| graph.value(i).ty.clone())
            .collect();
        let consts: Vec<Option<&Tensor>> = n.inputs.iter().map(|&i| graph.constant(i)).collect();
        let inferred =
            n.op.infer(&InferInputs {
                types: &types,
                consts: &consts,
            })
            .map_err(|m| at(&n.name, format!("{}: {m}", n.op.name())))?;
        if inferred.len() < n.outputs.len() {
            return Err(at(
                &n.name,
                format!(
                    "{} produces {} outputs, node lists {}",
                    n.op.name(),
                    inferred.len(),
                    n.outputs.len()
                ),
            ));
        }
        for (o, t) in n.outputs.iter().zip(&inferred) {
            let declared = &graph.value(*o).ty;
            if !compatible(declared, t) {
                return Err(at(
                    &n.name,
                    format!(
                        "output `{}` is typed {declared} but {} gives {t}",
                        graph.value(*o).name,
                        n.op.name()
                    ),
                ));
            }
            defined.insert(o.0);
        }
    }
    for (k, i) in graph.inputs.iter().enumerate() {
        match graph.values().get(i.0 as usize) {
            None => {
                return Err(VerifyError {
                    node: None,
                    message: format!("graph input {k} refers to a missing value (id {})", i.0),
                })
            }
            Some(v) if !matches!(v.def, ValueDef::Input) => {
                return Err(VerifyError {
                    node: None,
                    message: format!("graph input {k} (`{}`) is not an input value", v.name),
                })
            }
            Some(_) => {}
        }
    }
    for (k, o) in graph.outputs.iter().enumerate() {
        if o.0 as usize >= graph.values().len() {
            return Err(VerifyError {
                node: None,
                message: format!("graph output {k} refers to a missing value (id {})", o.0),
            });
        }
        if !defined.contains(&o.0) {
            return Err(VerifyError {
                node: None,
                message: format!("graph output `{}` is never defined", graph.value(*o).name),
            });
        }
    }
    Ok(())
}

/// A declared type agrees with an inferred one when dtype and rank match and every
/// dim known on both sides is equal (inference may know less or more than a frontend).
fn compatible(declared: &TensorType, inferred: &TensorType) -> bool {
    declared.dtype == inferred.dtype
        && declared.shape.rank() == inferred.shape.rank()
        && declared
            .shape
            .0
            .iter()
            .zip(&inferred.shape.0)
            .all(|(a, b)| match (a.known(), b.known()) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            })
}
