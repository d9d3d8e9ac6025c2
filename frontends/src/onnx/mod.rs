//! The ONNX frontend: decodes a `ModelProto` and converts it, node by node through
//! an op registry, into a kiln [`Graph`] with bricks recognized from node scopes.
//!
//! Frontends never optimize; the one exception is what import needs to know shapes:
//! nodes whose inputs are all small constants (shape computations such as
//! `Shape → Gather → Concat → Reshape`) are evaluated at import time.

mod attrs;
mod bricks;
mod import;
mod lists;
mod node_ctx;
pub mod ops;
pub mod proto;
mod registry;
mod symbolic;
pub mod tensor;

pub use attrs::Attrs;
pub use node_ctx::NodeCtx;
pub use registry::{Converter, Registry};

use std::path::Path;

use kiln_ir::{Graph, Tensor};
use prost::Message;

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid protobuf message.
    #[error("`{path}` is not a valid ONNX {what} (malformed or truncated protobuf: {message})")]
    Decode {
        /// The file.
        path: String,
        /// The message expected (model, tensor).
        what: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// The model has no graph or is otherwise structurally broken.
    #[error("malformed model: {0}")]
    Malformed(String),
    /// Ops kiln does not support, all listed at once.
    #[error("unsupported ops: {}", unsupported_list(.0))]
    Unsupported(Vec<(String, Vec<String>)>),
    /// A node could not be converted.
    #[error("node `{node}` ({op_type}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor's data is inconsistent with its type.
    #[error("tensor `{tensor}`: {message}")]
    BadTensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor of a dtype kiln does not support.
    #[error("tensor `{tensor}` has unsupported data type {dtype}")]
    UnsupportedDtype {
        /// Tensor name.
        tensor: String,
        /// The ONNX type name.
        dtype: String,
    },
    /// External data could not be read or was refused.
    #[error("tensor `{tensor}`: {message}")]
    ExternalData {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A value is used but never defined (missing weight or input).
    #[error("node `{node}` uses `{value}`, which is not an input, initializer or output of an earlier node (missing weight?)")]
    MissingValue {
        /// The node.
        node: String,
        /// The missing value's name.
        value: String,
    },
}

/// Reads and decodes an ONNX model file (memory-mapped: initializers' `raw_data`
/// stay views of the mapping).
pub fn read_model(path: &Path) -> Result<proto::ModelProto, OnnxError> {
    let bytes = kiln_ir::map_file(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    proto::decode_model(bytes).map_err(|e| OnnxError::Decode {
        path: path.display().to_string(),
        what: "model",
        message: e.to_string(),
    })
}

/// Loads an ONNX model file: the file is memory-mapped and initializers view it
/// without copying; external data is resolved relative to the file's folder.
pub fn load(path: &Path) -> Result<Graph, OnnxError> {
    let model = read_model(path)?;
    import_from(&model, path)
}

/// Imports a model read from `path` (external data resolves next to it).
pub fn import_from(model: &proto::ModelProto, path: &Path) -> Result<Graph, OnnxError> {
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    import::import_model(model, tensor::DataDir(dir.map(Path::to_path_buf)))
}

/// Imports an already-decoded model (external data is refused: there is no folder).
pub fn import(model: &proto::ModelProto) -> Result<Graph, OnnxError> {
    import::import_model(model, tensor::DataDir(None))
}

/// Reads a serialized `TensorProto` file (`.pb`), as the ONNX test suites store data.
pub fn read_tensor_file(path: &Path) -> Result<Tensor, OnnxError> {
    let bytes = kiln_ir::map_file(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let t = proto::TensorProto::decode(bytes).map_err(|e| OnnxError::Decode {
        path: path.display().to_string(),
        what: "tensor",
        message: e.to_string(),
    })?;
    let dir = path.parent().map(Path::to_path_buf);
    tensor::tensor_from_proto(&t, &tensor::DataDir(dir))
}

/// The kind of each graph input and output of a model: `None` for a tensor,
/// the list kind for a sequence or optional (whose test data files hold a
/// `SequenceProto` or `OptionalProto`, read by [`read_list_file`]).
#[allow(clippy::type_complexity)]
pub fn io_list_kinds(
    model: &proto::ModelProto,
) -> (
    Vec<Option<kiln_ir::list::ListKind>>,
    Vec<Option<kiln_ir::list::ListKind>>,
) {
    let Some(g) = &model.graph else {
        return (vec![], vec![]);
    };
    let initializers: std::collections::HashSet<&str> =
        g.initializer.iter().map(|i| i.name.as_str()).collect();
    let kind = |vi: &proto::ValueInfoProto| {
        vi.r#type
            .as_ref()
            .and_then(lists::info_of_type)
            .map(|i| i.kind)
    };
    (
        g.input
            .iter()
            .filter(|vi| !initializers.contains(vi.name.as_str()))
            .map(kind)
            .collect(),
        g.output.iter().map(kind).collect(),
    )
}

/// Reads a serialized `SequenceProto` (`kind` sequence) or `OptionalProto`
/// file as a list value (`kiln_ir::list`).
pub fn read_list_file(path: &Path, kind: kiln_ir::list::ListKind) -> Result<Tensor, OnnxError> {
    use prost::Message;
    let bytes = kiln_ir::map_file(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let dir = tensor::DataDir(path.parent().map(Path::to_path_buf));
    let decode_err = |e: prost::DecodeError| OnnxError::Decode {
        path: path.display().to_string(),
        what: "sequence or optional",
        message: e.to_string(),
    };
    match kind {
        kiln_ir::list::ListKind::Sequence => list_of_sequence(
            &proto::SequenceProto::decode(bytes).map_err(decode_err)?,
            &dir,
        ),
        kiln_ir::list::ListKind::Optional => list_of_optional(
            &proto::OptionalProto::decode(bytes).map_err(decode_err)?,
            &dir,
        ),
    }
}

fn list_of_sequence(s: &proto::SequenceProto, dir: &tensor::DataDir) -> Result<Tensor, OnnxError> {
    let mut items = Vec::new();
    for t in &s.tensor_values {
        items.push(tensor::tensor_from_proto(t, dir)?);
    }
    for q in &s.sequence_values {
        items.push(list_of_sequence(q, dir)?);
    }
    for o in &s.optional_values {
        items.push(list_of_optional(o, dir)?);
    }
    Ok(kiln_ir::list::encode(
        kiln_ir::list::ListKind::Sequence,
        &items,
    ))
}

fn list_of_optional(o: &proto::OptionalProto, dir: &tensor::DataDir) -> Result<Tensor, OnnxError> {
    let item = if let Some(t) = &o.tensor_value {
        Some(tensor::tensor_from_proto(t, dir)?)
    } else if let Some(s) = &o.sequence_value {
        Some(list_of_sequence(s, dir)?)
    } else if let Some(inner) = &o.optional_value {
        Some(list_of_optional(inner, dir)?)
    } else {
        None
    };
    Ok(kiln_ir::list::encode(
        kiln_ir::list::ListKind::Optional,
        item.as_slice(),
    ))
}

/// The op types (with node names) of a model that kiln cannot convert.
pub fn unsupported_ops(model: &proto::ModelProto) -> Vec<(String, Vec<String>)> {
    let reg = Registry::standard();
    let Some(g) = &model.graph else { return vec![] };
    import::collect_unsupported(&reg, g, &model.functions)
}

/// At most this many node names are named per op in an unsupported-ops message.
const MAX_NODES_NAMED: usize = 5;

fn unsupported_list(ops: &[(String, Vec<String>)]) -> String {
    let one = |(op, nodes): &(String, Vec<String>)| {
        let named: Vec<String> = nodes
            .iter()
            .take(MAX_NODES_NAMED)
            .map(|n| format!("`{n}`"))
            .collect();
        let more = nodes.len().saturating_sub(MAX_NODES_NAMED);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(
            "{op} (node{} {}{tail})",
            if nodes.len() > 1 { "s" } else { "" },
            named.join(", ")
        )
    };
    ops.iter().map(one).collect::<Vec<_>>().join("; ")
}
