//! Helpers shared by the integration tests: tiny ONNX models built in code,
//! running the `kiln` binary, and the exported-model fixtures.

#![allow(dead_code)]

pub mod exported;

use std::path::Path;
use std::process::{Command, Output};

use kiln_frontends::onnx::proto::{
    tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use prost::Message;

/// ONNX data type codes.
pub const FLOAT: i32 = 1;
/// ONNX UINT8.
pub const UINT8: i32 = 2;
/// ONNX INT64.
pub const INT64: i32 = 7;

/// A value info of a tensor with dims (negative: symbolic `d{i}`).
pub fn value_info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| tensor_shape_proto::Dimension {
            value: Some(if d >= 0 {
                tensor_shape_proto::dimension::Value::DimValue(d)
            } else {
                tensor_shape_proto::dimension::Value::DimParam(format!("d{i}"))
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A node.
pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// An int attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: Some(v),
        r#type: 2,
        ..Default::default()
    }
}

/// An ints attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: Some(v.as_bytes().to_vec().into()),
        r#type: 3,
        ..Default::default()
    }
}

/// An f32 initializer in raw_data.
pub fn f32_init(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        raw_data: data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}

/// An f32 initializer stored in an external file.
pub fn external_init(name: &str, dims: &[i64], location: &str, length: usize) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        data_location: 1,
        external_data: vec![
            StringStringEntryProto {
                key: "location".into(),
                value: location.into(),
            },
            StringStringEntryProto {
                key: "offset".into(),
                value: "0".into(),
            },
            StringStringEntryProto {
                key: "length".into(),
                value: length.to_string(),
            },
        ],
        ..Default::default()
    }
}

/// A model of one graph at opset 17.
pub fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "kiln-tests".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `y = relu(x + w)` with x: f32[2, 3].
pub fn add_relu_model() -> ModelProto {
    model(
        vec![
            node("Add", "add", &["x", "w"], &["s"]),
            node("Relu", "relu", &["s"], &["y"]),
        ],
        vec![value_info("x", FLOAT, &[2, 3])],
        vec![value_info("y", FLOAT, &[2, 3])],
        vec![f32_init("w", &[3], &[0.5, -1.0, 2.0])],
    )
}

/// Writes a model to `dir/name`.
pub fn write_model(dir: &Path, name: &str, m: &ModelProto) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// Writes a little-endian `.npy` file of f32 or i64 data.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

/// f32 values as bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Runs the kiln binary.
pub fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs kiln with extra environment variables.
pub fn kiln_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Runs kiln, expecting failure; returns stderr, checking it is one clean line.
pub fn kiln_fails(args: &[&str]) -> String {
    let out = kiln(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "kiln {args:?} succeeded; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !err.contains("panicked")
            && !err.contains("internal error")
            && !err.contains("RUST_BACKTRACE"),
        "kiln {args:?} panicked: {err}"
    );
    assert!(err.starts_with("error: "), "no error line: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err}"
    );
    err
}

/// `y = x / d` over int64 with x: i64[rows, 3] (`rows` < 0: the symbolic dim
/// `d0`) and the constant d = [2, 3, 4]: integer division has no kernel
/// expression, so the scheduler leaves the node to the interpreter (a model
/// with a host fallback and its reason).
pub fn int_div_model(rows: i64) -> ModelProto {
    let d = TensorProto {
        name: "d".into(),
        dims: vec![3],
        data_type: INT64,
        int64_data: vec![2, 3, 4],
        ..Default::default()
    };
    model(
        vec![node("Div", "div", &["x", "d"], &["y"])],
        vec![value_info("x", INT64, &[rows, 3])],
        vec![value_info("y", INT64, &[rows, 3])],
        vec![d],
    )
}

/// What `kiln explain` and `kiln bench --profile` print for [`int_div_model`]'s
/// host step.
pub const INT_DIV_FALLBACK: &str = "div (Div): `Div` has no kernel expression for i64";
