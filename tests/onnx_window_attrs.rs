//! The one reader of window and convolution attributes (`frontends/src/onnx/ops/
//! window.rs`): Conv and ConvInteger read the same attributes the same way, and
//! every int list is checked against the spatial rank.

mod common;

use common::{attr_ints, attr_string, model, node, value_info, FLOAT, UINT8};
use kiln_frontends::onnx::proto::{AttributeProto, ValueInfoProto};
use kiln_frontends::onnx::{import, OnnxError};
use kiln_ir::op::{ConvAttrs, MiscOp, NnOp};
use kiln_ir::{Graph, Op};

/// Imports one node `op(x[, w]) -> y` over inputs of `elem` type, x: [1, 2, 6, 6].
fn one_node(
    op: &str,
    elem: i32,
    w: Option<&[i64]>,
    attribute: Vec<AttributeProto>,
) -> Result<Graph, OnnxError> {
    let mut inputs = vec![value_info("x", elem, &[1, 2, 6, 6])];
    inputs.extend(w.map(|d| value_info("w", elem, d)));
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let mut n = node(op, "n", &names, &["y"]);
    n.attribute = attribute;
    let output = ValueInfoProto {
        name: "y".into(),
        ..Default::default()
    };
    import(&model(vec![n], inputs.clone(), vec![output], vec![]))
}

fn conv_attrs_of(g: &Graph) -> ConvAttrs {
    match &g.nodes()[0].op {
        Op::Nn(NnOp::Conv(a)) | Op::Misc(MiscOp::ConvInteger(a)) => a.clone(),
        other => panic!("not a convolution: {other:?}"),
    }
}

#[test]
fn conv_integer_reads_the_attributes_conv_reads() {
    let attrs = || {
        vec![
            attr_string("auto_pad", ""),
            attr_ints("strides", &[2, 2]),
            attr_ints("pads", &[1, 1, 1, 1]),
        ]
    };
    let w = [4, 2, 3, 3];
    let conv = one_node("Conv", FLOAT, Some(&w), attrs()).unwrap();
    let integer = one_node("ConvInteger", UINT8, Some(&w), attrs()).unwrap();
    assert_eq!(conv_attrs_of(&conv), conv_attrs_of(&integer));
    let y = |g: &Graph| g.value(g.outputs[0]).ty.shape.clone();
    assert_eq!(y(&integer), y(&conv));
    assert_eq!(y(&integer).to_string(), "[1, 4, 3, 3]");
}

#[test]
fn every_int_list_is_checked_against_the_spatial_rank() {
    let w = [4, 2, 3, 3];
    for (op, elem, w, attr, expected) in [
        (
            "Conv",
            FLOAT,
            Some(&w[..]),
            attr_ints("strides", &[1, 1, 1]),
            "strides [1, 1, 1]: expected 2 positive values",
        ),
        (
            "ConvInteger",
            UINT8,
            Some(&w[..]),
            attr_ints("pads", &[1, 1]),
            "pads [1, 1]: expected 4 non-negative values",
        ),
        (
            "Conv",
            FLOAT,
            Some(&w[..]),
            attr_ints("dilations", &[0, 1]),
            "dilations [0, 1]: expected 2 positive values",
        ),
        (
            "MaxPool",
            FLOAT,
            None,
            attr_ints("kernel_shape", &[2]),
            "kernel_shape [2]: expected 2 positive values",
        ),
        (
            "AveragePool",
            FLOAT,
            None,
            attr_string("auto_pad", "SAME"),
            "unknown auto_pad `SAME`",
        ),
    ] {
        let e = one_node(op, elem, w, vec![attr, attr_ints("kernel_shape", &[3, 3])])
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{op}: {e}");
    }
    let e = one_node("MaxPool", FLOAT, None, vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel_shape is required"), "{e}");
}
