//! The one reader of ONNX window attributes (`kernel_shape`, `strides`, `pads`,
//! `dilations`, `ceil_mode`, `auto_pad`) and convolution attributes (`group`), so
//! that every convolution (`Conv`, `ConvTranspose`, `ConvInteger`, `QLinearConv`)
//! and every pooling op (`MaxPool`, `AveragePool`, `LpPool`, `MaxUnpool`) accepts
//! exactly the same forms. Every int list is checked against the spatial rank.

use kiln_ir::op::{AutoPad, ConvAttrs, Window};

use crate::onnx::{NodeCtx, OnnxError};

/// Whether an op needs `kernel_shape` or takes its kernel from a weight.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KernelAttr {
    /// Pooling: `kernel_shape` is required.
    Required,
    /// Convolution: `kernel_shape` is optional (checked against the weight later).
    FromWeight,
}

/// The spatial rank of a window op: input 0's rank minus N and C.
pub(super) fn spatial_rank(cx: &NodeCtx) -> Result<usize, OnnxError> {
    let r = cx.rank(cx.req(0)?);
    if r < 3 {
        return Err(cx.err(format!("input of rank {r}: needs N, C and spatial axes")));
    }
    Ok(r - 2)
}

/// `auto_pad`; absent or empty means `NOTSET`.
fn auto_pad(cx: &NodeCtx) -> Result<AutoPad, OnnxError> {
    Ok(match cx.attrs.string_or("auto_pad", "NOTSET").as_str() {
        "NOTSET" | "" => AutoPad::NotSet,
        "VALID" => AutoPad::Valid,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        other => return Err(cx.err(format!("unknown auto_pad `{other}`"))),
    })
}

/// An int-list attribute of exactly `n` values of at least `min`; `None` when absent
/// or empty.
pub(super) fn uint_list(
    cx: &NodeCtx,
    name: &str,
    n: usize,
    min: i64,
) -> Result<Option<Vec<usize>>, OnnxError> {
    match cx.attrs.ints(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() != n || v.iter().any(|&x| x < min) => {
            let what = if min > 0 { "positive" } else { "non-negative" };
            Err(cx.err(format!("{name} {v:?}: expected {n} {what} values")))
        }
        Some(v) => Ok(Some(v.into_iter().map(|x| x as usize).collect())),
    }
}

/// The window of a convolution or pooling node, every list filled to the spatial
/// rank (the kernel of a convolution only when `kernel_shape` states it).
pub(super) fn window(cx: &NodeCtx, kernel: KernelAttr) -> Result<Window, OnnxError> {
    let nd = spatial_rank(cx)?;
    let kernel = match (uint_list(cx, "kernel_shape", nd, 1)?, kernel) {
        (Some(k), _) => k,
        (None, KernelAttr::FromWeight) => Vec::new(),
        (None, KernelAttr::Required) => return Err(cx.err("kernel_shape is required")),
    };
    Ok(Window {
        kernel,
        strides: uint_list(cx, "strides", nd, 1)?.unwrap_or_else(|| vec![1; nd]),
        pads: uint_list(cx, "pads", 2 * nd, 0)?.unwrap_or_else(|| vec![0; 2 * nd]),
        dilations: uint_list(cx, "dilations", nd, 1)?.unwrap_or_else(|| vec![1; nd]),
        ceil_mode: cx.attrs.int_or("ceil_mode", 0) != 0,
        auto_pad: auto_pad(cx)?,
    })
}

/// The attributes of a convolution node.
pub(super) fn conv_attrs(cx: &NodeCtx) -> Result<ConvAttrs, OnnxError> {
    let group = cx.attrs.int_or("group", 1);
    if group < 1 {
        return Err(cx.err(format!("group {group}: expected a positive count")));
    }
    Ok(ConvAttrs {
        window: window(cx, KernelAttr::FromWeight)?,
        group: group as usize,
    })
}

#[cfg(test)]
mod tests {
    use kiln_ir::op::{MiscOp, NnOp};
    use kiln_ir::{Graph, Op};

    use crate::onnx::proto::{
        tensor_shape_proto::{dimension::Value, Dimension},
        type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
        TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use crate::onnx::{import, OnnxError};

    const FLOAT: i32 = 1;
    const UINT8: i32 = 2;

    fn input(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| Dimension {
                value: Some(Value::DimValue(d)),
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

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            r#type: 7,
            ..Default::default()
        }
    }

    fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            s: Some(v.as_bytes().to_vec().into()),
            r#type: 3,
            ..Default::default()
        }
    }

    /// Imports one node `op(x[, w]) -> y` over inputs of `elem` type.
    fn one_node(
        op: &str,
        elem: i32,
        w: Option<&[i64]>,
        attribute: Vec<AttributeProto>,
    ) -> Result<Graph, OnnxError> {
        let mut inputs = vec![input("x", elem, &[1, 2, 6, 6])];
        inputs.extend(w.map(|d| input("w", elem, d)));
        let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: op.into(),
                    name: "n".into(),
                    input: names,
                    output: vec!["y".into()],
                    attribute,
                    ..Default::default()
                }],
                name: "g".into(),
                input: inputs,
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        import(&model)
    }

    fn conv_attrs_of(g: &Graph) -> kiln_ir::op::ConvAttrs {
        match &g.nodes()[0].op {
            Op::Nn(NnOp::Conv(a)) | Op::Misc(MiscOp::ConvInteger(a)) => a.clone(),
            other => panic!("not a convolution: {other:?}"),
        }
    }

    #[test]
    fn conv_integer_reads_the_attributes_conv_reads() {
        let attrs = || {
            vec![
                string("auto_pad", ""),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
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
                ints("strides", &[1, 1, 1]),
                "strides [1, 1, 1]: expected 2 positive values",
            ),
            (
                "ConvInteger",
                UINT8,
                Some(&w[..]),
                ints("pads", &[1, 1]),
                "pads [1, 1]: expected 4 non-negative values",
            ),
            (
                "Conv",
                FLOAT,
                Some(&w[..]),
                ints("dilations", &[0, 1]),
                "dilations [0, 1]: expected 2 positive values",
            ),
            (
                "MaxPool",
                FLOAT,
                None,
                ints("kernel_shape", &[2]),
                "kernel_shape [2]: expected 2 positive values",
            ),
            (
                "AveragePool",
                FLOAT,
                None,
                string("auto_pad", "SAME"),
                "unknown auto_pad `SAME`",
            ),
        ] {
            let e = one_node(op, elem, w, vec![attr, ints("kernel_shape", &[3, 3])])
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{op}: {e}");
        }
        let e = one_node("MaxPool", FLOAT, None, vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel_shape is required"), "{e}");
    }
}
