//! ONNX protobuf messages, written by hand with `prost`'s derive macros.
//!
//! These mirror the messages of `onnx.proto` (the proto2 schema that ONNX
//! files are written with) field for field and tag for tag, for the parts
//! kiln reads. Fields that kiln does not model (training info, device
//! configurations, quantization annotations) are skipped by the decoder as
//! unknown fields, so files that carry them still decode.
//!
//! Proto2 notes:
//! - A proto2 scalar that is absent decodes to its default (0, "", empty);
//!   only where absence is meaningful (the values of an [`AttributeProto`])
//!   is the field an `Option`.
//! - Repeated numeric fields decode from both packed and unpacked encodings,
//!   whatever the schema declares; exporters write either.
//! - `bytes` fields are [`bytes::Bytes`]: decoding from a `Bytes` buffer
//!   (for example one that owns a memory map) slices it without copying.

use bytes::Bytes;
use prost::Message;

/// Decodes a serialized `ModelProto` (the contents of a `.onnx` file).
///
/// Passing a [`Bytes`] that owns the file's memory (for example one made with
/// `Bytes::from_owner` over a memory map) makes every `raw_data` payload a
/// zero-copy slice of it.
pub fn decode_model(buf: Bytes) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(buf)
}

/// The top-level ONNX model: metadata, the operator sets it uses, and its graph.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// Version of the ONNX IR the model was written against (0 if absent).
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Operator sets imported by the model; an empty domain means `ai.onnx`.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Name of the tool that produced the model.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Version of the tool that produced the model.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Reverse-DNS namespace of the model (e.g. `com.example`).
    #[prost(string, tag = "4")]
    pub domain: String,
    /// Version of the model itself.
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// Human-readable documentation.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The model's main graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Model-local functions that nodes may call.
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
}

/// A key/value pair of strings.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// An operator set (domain and version) imported by a model or function.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// Operator set domain; empty (or `ai.onnx`) is the default ONNX domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Operator set version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// A computation graph: nodes in topological order, initializers and the
/// typed values that flow in, out and between nodes.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes of the graph, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Name of the graph.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights), named like the values they define.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Constant sparse tensors.
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// Human-readable documentation.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Graph inputs (may include initializers in older IR versions).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Type information for intermediate values (optional, partial).
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One operator application in a graph.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Names of the input values; an empty name marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Names of the output values; an empty name marks an unused optional output.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Name of the node (optional, for diagnostics).
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator name, e.g. `Conv`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Operator domain; empty means the default ONNX domain.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// Overload of a model-local function to call, if any.
    #[prost(string, tag = "8")]
    pub overload: String,
    /// Attributes of the operator.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Human-readable documentation.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A named attribute value of a node (or a default in a function).
///
/// `type` says which value field is in use; models of IR version 1 may omit
/// it, which is why the single-value fields keep their presence.
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Inside a function body: the name of the caller's attribute this one refers to.
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    /// Human-readable documentation.
    #[prost(string, tag = "13")]
    pub doc_string: String,
    /// Which value field below is in use.
    #[prost(enumeration = "attribute_proto::AttributeType", tag = "20")]
    pub r#type: i32,
    /// Float value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// Integer value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// String value (UTF-8 by convention, raw bytes on the wire).
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub s: Option<Bytes>,
    /// Tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Graph value (a subgraph, e.g. a loop body).
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// Sparse tensor value.
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
    /// Type value.
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    /// List of floats.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// List of integers.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// List of strings (raw bytes).
    #[prost(bytes = "bytes", repeated, tag = "9")]
    pub strings: Vec<Bytes>,
    /// List of tensors.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// List of graphs.
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    /// List of sparse tensors.
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensorProto>,
    /// List of types.
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
}

/// Types nested in [`AttributeProto`].
pub mod attribute_proto {
    /// The kind of value an attribute holds.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        /// Not set.
        Undefined = 0,
        /// A single float (`f`).
        Float = 1,
        /// A single integer (`i`).
        Int = 2,
        /// A single string (`s`).
        String = 3,
        /// A single tensor (`t`).
        Tensor = 4,
        /// A single graph (`g`).
        Graph = 5,
        /// A single sparse tensor (`sparse_tensor`).
        SparseTensor = 11,
        /// A single type (`tp`).
        TypeProto = 13,
        /// A list of floats (`floats`).
        Floats = 6,
        /// A list of integers (`ints`).
        Ints = 7,
        /// A list of strings (`strings`).
        Strings = 8,
        /// A list of tensors (`tensors`).
        Tensors = 9,
        /// A list of graphs (`graphs`).
        Graphs = 10,
        /// A list of sparse tensors (`sparse_tensors`).
        SparseTensors = 12,
        /// A list of types (`type_protos`).
        TypeProtos = 14,
    }
}

/// A named value with its type (a graph input, output or intermediate).
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Name of the value.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type of the value.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Human-readable documentation.
    #[prost(string, tag = "3")]
    pub doc_string: String,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A dense tensor: element type, shape and data.
///
/// The data is in exactly one of `raw_data` (little-endian bytes), the typed
/// `*_data` fields, or an external file described by `external_data`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape; empty for a scalar.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type, a [`tensor_proto::DataType`] value.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Which chunk of a larger tensor this is, if segmented.
    #[prost(message, optional, tag = "3")]
    pub segment: Option<tensor_proto::Segment>,
    /// Data of FLOAT and COMPLEX64 tensors.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Data of INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16, BFLOAT16,
    /// FLOAT8*, 4-bit and 2-bit tensors (one widened element or packed pair per entry).
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Data of STRING tensors.
    #[prost(bytes = "bytes", repeated, tag = "6")]
    pub string_data: Vec<Bytes>,
    /// Data of INT64 tensors.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Name of the tensor (the value it defines, for initializers).
    #[prost(string, tag = "8")]
    pub name: String,
    /// Human-readable documentation.
    #[prost(string, tag = "12")]
    pub doc_string: String,
    /// Data as packed little-endian bytes (empty if absent).
    #[prost(bytes = "bytes", tag = "9")]
    pub raw_data: Bytes,
    /// Location of externally stored data (`location`, `offset`, `length`, `checksum`).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// Where the data lives, a [`tensor_proto::DataLocation`] value.
    #[prost(enumeration = "tensor_proto::DataLocation", tag = "14")]
    pub data_location: i32,
    /// Data of DOUBLE and COMPLEX128 tensors.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Data of UINT32 and UINT64 tensors.
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Types nested in [`TensorProto`].
pub mod tensor_proto {
    /// Element types of tensors.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Undefined = 0,
        /// 32-bit IEEE float.
        Float = 1,
        /// Unsigned 8-bit integer.
        Uint8 = 2,
        /// Signed 8-bit integer.
        Int8 = 3,
        /// Unsigned 16-bit integer.
        Uint16 = 4,
        /// Signed 16-bit integer.
        Int16 = 5,
        /// Signed 32-bit integer.
        Int32 = 6,
        /// Signed 64-bit integer.
        Int64 = 7,
        /// Byte string.
        String = 8,
        /// Boolean.
        Bool = 9,
        /// 16-bit IEEE float.
        Float16 = 10,
        /// 64-bit IEEE float.
        Double = 11,
        /// Unsigned 32-bit integer.
        Uint32 = 12,
        /// Unsigned 64-bit integer.
        Uint64 = 13,
        /// Complex with 32-bit float parts.
        Complex64 = 14,
        /// Complex with 64-bit float parts.
        Complex128 = 15,
        /// Brain float 16 (8-bit exponent, 7-bit mantissa).
        Bfloat16 = 16,
        /// 8-bit float E4M3, finite only (NaN, no infinity).
        Float8e4m3fn = 17,
        /// 8-bit float E4M3, finite only, no negative zero.
        Float8e4m3fnuz = 18,
        /// 8-bit float E5M2 (IEEE-like, with infinity and NaN).
        Float8e5m2 = 19,
        /// 8-bit float E5M2, finite only, no negative zero.
        Float8e5m2fnuz = 20,
        /// Unsigned 4-bit integer, two per byte.
        Uint4 = 21,
        /// Signed 4-bit integer, two per byte.
        Int4 = 22,
        /// 4-bit float E2M1, two per byte.
        Float4e2m1 = 23,
        /// 8-bit exponent-only float E8M0 (scales).
        Float8e8m0 = 24,
        /// Unsigned 2-bit integer, four per byte.
        Uint2 = 25,
        /// Signed 2-bit integer, four per byte.
        Int2 = 26,
    }

    /// Where a tensor's data is stored.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataLocation {
        /// In the tensor message itself.
        Default = 0,
        /// In an external file named by `external_data`.
        External = 1,
    }

    /// A chunk `[begin, end)` of a tensor split across several messages.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Segment {
        /// First element index of the chunk.
        #[prost(int64, tag = "1")]
        pub begin: i64,
        /// One past the last element index of the chunk.
        #[prost(int64, tag = "2")]
        pub end: i64,
    }
}

/// A sparse tensor in coordinate form (sparse initializers and attributes are
/// decoded, so a model holding them gets a clear "unsupported" error rather than
/// a protobuf error; kept for sequences of sparse tensors too).
#[derive(Clone, PartialEq, Message)]
pub struct SparseTensorProto {
    /// The non-zero values, a 1-D tensor of length NNZ (its name names the sparse tensor).
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// INT64 indices: `[NNZ, rank]` coordinates or `[NNZ]` linear indices.
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// Shape of the dense tensor.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// The shape of a tensor type: one entry per dimension.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// The dimensions, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Types nested in [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension: a known size, a symbolic name, or unknown (neither set).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The size or symbol, if any.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// Standard denotation of the dimension (e.g. `DATA_BATCH`).
        #[prost(string, tag = "3")]
        pub denotation: String,
    }

    /// Types nested in [`Dimension`].
    pub mod dimension {
        /// The size of a dimension.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A known size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A symbolic size, e.g. `batch`.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// The type of a value.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// Which kind of type this is.
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 9, 8")]
    pub value: Option<type_proto::Value>,
    /// Standard denotation of the type (e.g. `IMAGE`).
    #[prost(string, tag = "6")]
    pub denotation: String,
}

/// Types nested in [`TypeProto`].
pub mod type_proto {
    use super::{TensorShapeProto, TypeProto};

    /// A dense tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// Element type, a [`super::tensor_proto::DataType`] value.
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// Shape; absent means the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// A sequence type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        /// Type of the elements.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// A map type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        /// Key type, a [`super::tensor_proto::DataType`] value (integral or string).
        #[prost(int32, tag = "1")]
        pub key_type: i32,
        /// Type of the values.
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }

    /// An optional type (a value that may be absent).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Optional {
        /// Type of the value when present.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// A sparse tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SparseTensor {
        /// Element type, a [`super::tensor_proto::DataType`] value.
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// Shape; absent means the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// The kind of a type.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        /// A sequence.
        #[prost(message, tag = "4")]
        SequenceType(Sequence),
        /// A map.
        #[prost(message, tag = "5")]
        MapType(Map),
        /// An optional.
        #[prost(message, tag = "9")]
        OptionalType(Optional),
        /// A sparse tensor.
        #[prost(message, tag = "8")]
        SparseTensorType(SparseTensor),
    }
}

/// A model-local function: a named subgraph that nodes can call like an operator.
#[derive(Clone, PartialEq, Message)]
pub struct FunctionProto {
    /// Name of the function (the `op_type` that calls it).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Names of the formal inputs.
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    /// Names of the formal outputs.
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// Names of attributes without defaults.
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// Attributes with default values.
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    /// The function body, in topological order.
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    /// Human-readable documentation.
    #[prost(string, tag = "8")]
    pub doc_string: String,
    /// Operator sets used by the body.
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Domain of the function (the `domain` of calling nodes).
    #[prost(string, tag = "10")]
    pub domain: String,
    /// Overload name, to tell apart functions of the same domain and name.
    #[prost(string, tag = "13")]
    pub overload: String,
    /// Type information for values of the body.
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A sequence value, as stored in `input_*.pb` / `output_*.pb` test data
/// files of sequence-typed values (from `onnx-data.proto`).
///
/// Not read by the importer yet: kept (with [`MapProto`], [`OptionalProto`] and
/// [`SparseTensorProto`]) for the sequence and optional values that control flow
/// (`Loop` scan outputs, `SequenceInsert`) and the conformance data of those ops
/// need; the decoding tests below pin them against the ONNX test data.
#[derive(Clone, PartialEq, Message)]
pub struct SequenceProto {
    /// Name of the value.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Kind of the elements, a [`sequence_proto::DataType`] value.
    #[prost(int32, tag = "2")]
    pub elem_type: i32,
    /// Elements, when they are tensors.
    #[prost(message, repeated, tag = "3")]
    pub tensor_values: Vec<TensorProto>,
    /// Elements, when they are sparse tensors.
    #[prost(message, repeated, tag = "4")]
    pub sparse_tensor_values: Vec<SparseTensorProto>,
    /// Elements, when they are sequences.
    #[prost(message, repeated, tag = "5")]
    pub sequence_values: Vec<SequenceProto>,
    /// Elements, when they are maps.
    #[prost(message, repeated, tag = "6")]
    pub map_values: Vec<MapProto>,
    /// Elements, when they are optionals.
    #[prost(message, repeated, tag = "7")]
    pub optional_values: Vec<OptionalProto>,
}

/// Types nested in [`SequenceProto`].
pub mod sequence_proto {
    /// Kinds of sequence elements.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Undefined = 0,
        /// Tensors (`tensor_values`).
        Tensor = 1,
        /// Sparse tensors (`sparse_tensor_values`).
        SparseTensor = 2,
        /// Sequences (`sequence_values`).
        Sequence = 3,
        /// Maps (`map_values`).
        Map = 4,
        /// Optionals (`optional_values`).
        Optional = 5,
    }
}

/// A map value (from `onnx-data.proto`): keys and a sequence of values.
#[derive(Clone, PartialEq, Message)]
pub struct MapProto {
    /// Name of the value.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Key type, a [`tensor_proto::DataType`] value.
    #[prost(int32, tag = "2")]
    pub key_type: i32,
    /// Integer keys.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub keys: Vec<i64>,
    /// String keys.
    #[prost(bytes = "bytes", repeated, tag = "4")]
    pub string_keys: Vec<Bytes>,
    /// Values, in key order.
    #[prost(message, optional, tag = "5")]
    pub values: Option<SequenceProto>,
}

/// An optional value, as stored in test data files of optional-typed values
/// (from `onnx-data.proto`). `elem_type` 0 with no value set means "none".
#[derive(Clone, PartialEq, Message)]
pub struct OptionalProto {
    /// Name of the value.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Kind of the contained value, an [`optional_proto::DataType`] value.
    #[prost(int32, tag = "2")]
    pub elem_type: i32,
    /// The value, when it is a tensor.
    #[prost(message, optional, tag = "3")]
    pub tensor_value: Option<TensorProto>,
    /// The value, when it is a sparse tensor.
    #[prost(message, optional, tag = "4")]
    pub sparse_tensor_value: Option<SparseTensorProto>,
    /// The value, when it is a sequence.
    #[prost(message, optional, tag = "5")]
    pub sequence_value: Option<SequenceProto>,
    /// The value, when it is a map.
    #[prost(message, optional, tag = "6")]
    pub map_value: Option<MapProto>,
    /// The value, when it is an optional.
    #[prost(message, optional, boxed, tag = "7")]
    pub optional_value: Option<Box<OptionalProto>>,
}

/// Types nested in [`OptionalProto`].
pub mod optional_proto {
    /// Kinds of optional contents.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set (an empty optional).
        Undefined = 0,
        /// A tensor (`tensor_value`).
        Tensor = 1,
        /// A sparse tensor (`sparse_tensor_value`).
        SparseTensor = 2,
        /// A sequence (`sequence_value`).
        Sequence = 3,
        /// A map (`map_value`).
        Map = 4,
        /// An optional (`optional_value`).
        Optional = 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The ONNX backend test data of the test venv: a failure under CI when
    /// missing, a one-line skip locally.
    fn data_or_skip(test: &str) -> Option<PathBuf> {
        kiln_test_support::require(kiln_test_support::Resource::OnnxTestData, test)
    }

    /// A file of the test data (present whenever the data folder is).
    fn read(path: &Path) -> Bytes {
        match std::fs::read(path) {
            Ok(v) => Bytes::from(v),
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
    }

    fn dims_of(vi: &ValueInfoProto) -> Vec<Option<i64>> {
        match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => panic!("{} is not a tensor type", vi.name),
        }
    }

    #[test]
    fn decodes_abs_node_test() {
        let Some(data) = data_or_skip("decodes_abs_node_test") else {
            return;
        };
        let dir = data.join("node/test_abs");
        let buf = read(&dir.join("model.onnx"));
        let model = decode_model(buf).expect("decode model.onnx");
        assert!(model.ir_version >= 3);
        assert_eq!(model.opset_import.len(), 1);
        let opset = &model.opset_import[0];
        assert!(opset.domain.is_empty() || opset.domain == "ai.onnx");
        assert!(opset.version >= 6, "opset {}", opset.version);

        let graph = model.graph.as_ref().expect("graph");
        assert_eq!(graph.node.len(), 1);
        let node = &graph.node[0];
        assert_eq!(node.op_type, "Abs");
        assert_eq!(node.input, vec!["x".to_string()]);
        assert_eq!(node.output, vec!["y".to_string()]);
        assert_eq!(graph.input.len(), 1);
        assert_eq!(graph.output.len(), 1);
        assert_eq!(graph.input[0].name, "x");
        assert_eq!(graph.output[0].name, "y");
        assert_eq!(dims_of(&graph.input[0]), vec![Some(3), Some(4), Some(5)]);
        match graph.input[0].r#type.as_ref().unwrap().value.as_ref() {
            Some(type_proto::Value::TensorType(t)) => {
                assert_eq!(t.elem_type, tensor_proto::DataType::Float as i32)
            }
            other => panic!("unexpected type {other:?}"),
        }

        let buf = read(&dir.join("test_data_set_0/input_0.pb"));
        let t = TensorProto::decode(buf.clone()).expect("decode input_0.pb");
        assert_eq!(t.dims, vec![3, 4, 5]);
        assert_eq!(t.data_type, tensor_proto::DataType::Float as i32);
        assert_eq!(t.raw_data.len(), 3 * 4 * 5 * 4);
        // Decoding from `Bytes` slices the input buffer instead of copying.
        let range = buf.as_ptr_range();
        assert!(range.contains(&t.raw_data.as_ptr()));
    }

    #[test]
    fn decodes_light_resnet50() {
        let Some(data) = data_or_skip("decodes_light_resnet50") else {
            return;
        };
        let buf = read(&data.join("light/light_resnet50.onnx"));
        let model = decode_model(buf).expect("decode light_resnet50.onnx");
        let graph = model.graph.as_ref().expect("graph");
        assert!(graph.node.len() > 100, "only {} nodes", graph.node.len());
        assert!(!graph.initializer.is_empty());
        assert!(graph.node.iter().any(|n| n.op_type == "Conv"));
        let conv = graph.node.iter().find(|n| n.op_type == "Conv").unwrap();
        let ks = conv
            .attribute
            .iter()
            .find(|a| a.name == "kernel_shape")
            .expect("kernel_shape");
        assert_eq!(ks.r#type(), attribute_proto::AttributeType::Ints);
        assert_eq!(ks.ints.len(), 2);
    }

    #[test]
    fn truncated_model_is_an_error() {
        let Some(data) = data_or_skip("truncated_model_is_an_error") else {
            return;
        };
        let buf = read(&data.join("node/test_abs/model.onnx"));
        // Cut in the middle of the graph: a length-delimited field overruns.
        let cut = buf.slice(..buf.len() - 7);
        assert!(decode_model(cut).is_err());
        assert!(decode_model(buf.slice(..buf.len() / 2)).is_err());
    }

    #[test]
    fn truncated_buffer_is_an_error_without_files() {
        let t = TensorProto {
            dims: vec![2, 3],
            data_type: tensor_proto::DataType::Float as i32,
            raw_data: Bytes::from(vec![0u8; 24]),
            name: "w".into(),
            ..Default::default()
        };
        let bytes = t.encode_to_vec();
        assert_eq!(TensorProto::decode(&bytes[..]).unwrap(), t);
        assert!(TensorProto::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Appends a varint.
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn repeated_scalars_decode_packed_and_unpacked() {
        // dims (tag 1, int64), int32_data (tag 5), float_data (tag 4),
        // written both unpacked (one key per element) and packed (one
        // length-delimited run), mixed in a single message.
        let mut buf = Vec::new();
        // Unpacked dims 2, 3.
        for d in [2u64, 3] {
            buf.push(1 << 3);
            varint(&mut buf, d);
        }
        // Packed dims 4, 300.
        let mut run = Vec::new();
        varint(&mut run, 4);
        varint(&mut run, 300);
        buf.push((1 << 3) | 2);
        varint(&mut buf, run.len() as u64);
        buf.extend_from_slice(&run);
        // Unpacked int32_data -1 (sign-extended to 10 bytes).
        buf.push(5 << 3);
        varint(&mut buf, -1i64 as u64);
        // Packed int32_data 7, 8.
        buf.extend_from_slice(&[(5 << 3) | 2, 2, 7, 8]);
        // Unpacked float_data 1.5 (fixed32).
        buf.push((4 << 3) | 5);
        buf.extend_from_slice(&1.5f32.to_le_bytes());
        // Packed float_data 2.0, -0.5.
        buf.extend_from_slice(&[(4 << 3) | 2, 8]);
        buf.extend_from_slice(&2.0f32.to_le_bytes());
        buf.extend_from_slice(&(-0.5f32).to_le_bytes());
        // Unpacked double_data 3.25 (fixed64) and uint64_data 9.
        buf.push((10 << 3) | 1);
        buf.extend_from_slice(&3.25f64.to_le_bytes());
        buf.push(11 << 3);
        varint(&mut buf, 9);

        let t = TensorProto::decode(&buf[..]).expect("mixed packing");
        assert_eq!(t.dims, vec![2, 3, 4, 300]);
        assert_eq!(t.int32_data, vec![-1, 7, 8]);
        assert_eq!(t.float_data, vec![1.5, 2.0, -0.5]);
        assert_eq!(t.double_data, vec![3.25]);
        assert_eq!(t.uint64_data, vec![9]);

        // Attribute ints (tag 8), packed and unpacked.
        let mut buf = Vec::new();
        buf.extend_from_slice(&[8 << 3, 1, (8 << 3) | 2, 2, 2, 3]);
        let a = AttributeProto::decode(&buf[..]).expect("attribute ints");
        assert_eq!(a.ints, vec![1, 2, 3]);
        assert_eq!(a.i, None);
    }

    #[test]
    fn round_trips_nested_types() {
        let seq = TypeProto {
            value: Some(type_proto::Value::SequenceType(type_proto::Sequence {
                elem_type: Some(Box::new(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: tensor_proto::DataType::Float8e4m3fn as i32,
                        shape: Some(TensorShapeProto {
                            dim: vec![
                                tensor_shape_proto::Dimension {
                                    value: Some(tensor_shape_proto::dimension::Value::DimParam(
                                        "batch".into(),
                                    )),
                                    denotation: String::new(),
                                },
                                tensor_shape_proto::Dimension {
                                    value: Some(tensor_shape_proto::dimension::Value::DimValue(0)),
                                    denotation: String::new(),
                                },
                            ],
                        }),
                    })),
                    denotation: String::new(),
                })),
            })),
            denotation: String::new(),
        };
        let bytes = seq.encode_to_vec();
        assert_eq!(TypeProto::decode(&bytes[..]).unwrap(), seq);
        // A present zero attribute value stays distinguishable from absent.
        let a = AttributeProto {
            name: "alpha".into(),
            f: Some(0.0),
            ..Default::default()
        };
        let back = AttributeProto::decode(&a.encode_to_vec()[..]).unwrap();
        assert_eq!(back.f, Some(0.0));
        assert_eq!(back.i, None);
    }

    #[test]
    fn decodes_sequence_and_optional_data_files() {
        let Some(data) = data_or_skip("decodes_sequence_and_optional_data_files") else {
            return;
        };
        let node = data.join("node");
        let buf = read(&node.join("test_sequence_insert_at_back/test_data_set_0/input_0.pb"));
        let s = SequenceProto::decode(buf).expect("decode SequenceProto");
        assert_eq!(s.elem_type, sequence_proto::DataType::Tensor as i32);
        let dims: Vec<_> = s.tensor_values.iter().map(|t| t.dims.clone()).collect();
        assert_eq!(dims, vec![vec![4], vec![3], vec![2]]);
        assert_eq!(
            s.tensor_values[0].data_type,
            tensor_proto::DataType::Int64 as i32
        );

        let buf = read(
            &node.join("test_optional_get_element_optional_sequence/test_data_set_0/input_0.pb"),
        );
        let o = OptionalProto::decode(buf).expect("decode OptionalProto");
        assert_eq!(o.elem_type, optional_proto::DataType::Sequence as i32);
        let seq = o.sequence_value.as_ref().expect("sequence value");
        assert_eq!(seq.tensor_values.len(), 1);

        let buf = read(
            &node.join("test_optional_has_element_empty_optional_input/test_data_set_0/input_0.pb"),
        );
        let o = OptionalProto::decode(buf).expect("decode empty OptionalProto");
        assert_eq!(o.elem_type, optional_proto::DataType::Undefined as i32);
        assert!(o.tensor_value.is_none() && o.sequence_value.is_none());
    }
}
