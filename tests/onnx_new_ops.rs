//! Import of the opset 22–27 ops added for the ONNX node tests (Swish,
//! TensorScatter, CausalConvWithState, LinearAttention, DeformConv): bad
//! attributes and missing inputs are refused with the node's name, never a panic.
//! Their numerics are checked by the conformance manifest. Also the `If` whose
//! branches return different ranks (AffineGrid's function body).

mod common;

use common::{attr_int, attr_string, f32_init, model, node, value_info, FLOAT, INT64};
use kiln_frontends::onnx::import;
use kiln_frontends::onnx::proto::{
    attribute_proto, AttributeProto, GraphProto, ModelProto, ValueInfoProto,
};
use kiln_ir::Tensor;

/// One node `op` named `bad` over `inputs`, with one output per name in `outputs`.
fn one_node(
    op: &str,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> ModelProto {
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let mut n = node(op, "bad", &names, outputs);
    n.attribute = attribute;
    let outs = outputs
        .iter()
        .map(|o| ValueInfoProto {
            name: o.to_string(),
            ..Default::default()
        })
        .collect();
    let mut m = model(vec![n], inputs, outs, vec![]);
    m.opset_import[0].version = 27;
    m
}

/// The import error, which must name the node and contain `expected`.
fn refused(m: &ModelProto, expected: &str) {
    let err = import(m).expect_err("imported").to_string();
    assert!(err.contains("bad"), "{err}");
    assert!(err.contains(expected), "{err}");
}

fn qkv(d: i64) -> Vec<ValueInfoProto> {
    ["q", "k", "v"]
        .map(|n| value_info(n, FLOAT, &[1, 2, d]))
        .to_vec()
}

#[test]
fn linear_attention_attributes_and_inputs() {
    let heads = || vec![attr_int("q_num_heads", 2), attr_int("kv_num_heads", 2)];
    let linear = |mut a: Vec<AttributeProto>| {
        a.push(attr_string("update_rule", "linear"));
        a
    };
    let outs = ["y", "s"];
    assert!(import(&one_node("LinearAttention", qkv(4), &outs, linear(heads()))).is_ok());
    refused(
        &one_node(
            "LinearAttention",
            qkv(4),
            &outs,
            vec![attr_int("kv_num_heads", 2)],
        ),
        "q_num_heads",
    );
    let mut three = heads();
    three[0] = attr_int("q_num_heads", 3);
    refused(
        &one_node("LinearAttention", qkv(4), &outs, linear(three)),
        "multiple",
    );
    // The default rule, gated_delta, needs decay and beta.
    refused(
        &one_node("LinearAttention", qkv(4), &outs, heads()),
        "decay",
    );
    let mut rule = heads();
    rule.push(attr_string("update_rule", "fast"));
    refused(&one_node("LinearAttention", qkv(4), &outs, rule), "fast");
    // Key and value heads that do not divide the last dim.
    refused(
        &one_node("LinearAttention", qkv(3), &outs, linear(heads())),
        "divisible",
    );
}

#[test]
fn tensor_scatter_mode_and_axis() {
    let inputs = || {
        vec![
            value_info("cache", FLOAT, &[2, 4, 3]),
            value_info("update", FLOAT, &[2, 1, 3]),
            value_info("idx", INT64, &[2]),
        ]
    };
    let axis1 = || vec![attr_int("axis", 1)];
    assert!(import(&one_node("TensorScatter", inputs(), &["y"], axis1())).is_ok());
    let mut ring = axis1();
    ring.push(attr_string("mode", "ring"));
    refused(&one_node("TensorScatter", inputs(), &["y"], ring), "ring");
    refused(
        &one_node("TensorScatter", inputs(), &["y"], vec![attr_int("axis", 0)]),
        "batch axis",
    );
    refused(
        &one_node("TensorScatter", inputs(), &["y"], vec![attr_int("axis", 3)]),
        "axis",
    );
}

#[test]
fn causal_conv_with_state_activation_and_weight() {
    let inputs = |k: i64| {
        vec![
            value_info("x", FLOAT, &[1, 2, 5]),
            value_info("w", FLOAT, &[2, 1, k]),
        ]
    };
    let outs = ["y", "s"];
    assert!(import(&one_node("CausalConvWithState", inputs(3), &outs, vec![])).is_ok());
    // k = 1 keeps no state: an empty present_state.
    let g = import(&one_node("CausalConvWithState", inputs(1), &outs, vec![])).unwrap();
    assert_eq!(g.value(g.outputs[1]).ty.shape.to_string(), "[1, 2, 0]");
    let relu = vec![attr_string("activation", "relu")];
    refused(
        &one_node("CausalConvWithState", inputs(3), &outs, relu),
        "relu",
    );
    refused(
        &one_node("CausalConvWithState", inputs(0), &outs, vec![]),
        "weight",
    );
}

#[test]
fn swish_and_deform_conv_attributes() {
    let x = || vec![value_info("x", INT64, &[3])];
    refused(&one_node("Swish", x(), &["y"], vec![]), "float");
    let inputs = || {
        vec![
            value_info("x", FLOAT, &[1, 2, 4, 4]),
            value_info("w", FLOAT, &[2, 2, 3, 3]),
            value_info("off", FLOAT, &[1, 18, 2, 2]),
        ]
    };
    assert!(import(&one_node("DeformConv", inputs(), &["y"], vec![])).is_ok());
    refused(
        &one_node(
            "DeformConv",
            inputs(),
            &["y"],
            vec![attr_int("offset_group", 0)],
        ),
        "offset_group",
    );
}

/// `s = If(c) then s0 (f32[]) else s1 (f32[1])`, then `tail` reads `s`.
fn if_of_two_ranks(tail: Vec<kiln_frontends::onnx::proto::NodeProto>, out: &str) -> ModelProto {
    let branch = |name: &str, src: &str| AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Graph as i32,
        g: Some(GraphProto {
            node: vec![node("Identity", "", &[src], &["r"])],
            output: vec![ValueInfoProto {
                name: "r".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut cond = node("If", "pick", &["c"], &["s"]);
    cond.attribute = vec![branch("then_branch", "s0"), branch("else_branch", "s1")];
    let mut nodes = vec![cond];
    nodes.extend(tail);
    let inputs = vec![value_info("c", 9, &[]), value_info("a", FLOAT, &[3])];
    let output = ValueInfoProto {
        name: out.into(),
        ..Default::default()
    };
    let inits = vec![f32_init("s0", &[], &[2.0]), f32_init("s1", &[1], &[3.0])];
    model(nodes, inputs, vec![output], inits)
}

#[test]
fn if_branches_of_different_ranks_feed_a_broadcast() {
    let m = if_of_two_ranks(vec![node("Mul", "scale", &["a", "s"], &["y"])], "y");
    let g = import(&m).unwrap();
    let a = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]);
    for (c, expected) in [(true, [2.0f32, 4.0, 6.0]), (false, [3.0, 6.0, 9.0])] {
        let inputs = [
            ("c".to_string(), Tensor::from_vec(vec![], vec![c])),
            ("a".to_string(), a.clone()),
        ];
        let y = kiln_ir::interp::run(&g, &inputs).unwrap();
        assert_eq!(y[0].shape(), &[3]);
        assert_eq!(y[0].to_vec::<f32>(), expected);
    }
    // As a graph output, or read by an op that sees its rank, it is refused.
    for (tail, out) in [
        (vec![], "s"),
        (vec![node("Shape", "size_of", &["s"], &["n"])], "n"),
        (vec![node("Neg", "neg", &["s"], &["n"])], "n"),
    ] {
        let err = import(&if_of_two_ranks(tail, out)).unwrap_err().to_string();
        assert!(
            err.contains("pick") && err.contains("different ranks"),
            "{err}"
        );
    }
}
