//! The verifier: every ill-formed graph is reported, naming the node (or the value,
//! brick or graph output) at fault.

mod common;

use common::*;
use kiln_ir::op::{BinaryOp, NnOp, UnaryOp};
use kiln_ir::text::parse;
use kiln_ir::{verify, Brick, BrickId, BrickKind, DType, Graph, Op, Tensor, TensorType, ValueId};

/// The verifier's message for `g`, which must be ill-formed.
fn error(g: &Graph) -> String {
    match verify(g) {
        Ok(()) => panic!("verified:\n{g}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn well_formed_graphs_verify() {
    for g in [
        mlp(),
        bert_layer(),
        nested_bricks(),
        symbolic_dims(),
        every_dtype(),
        multi_output(),
    ] {
        verify(&g).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    }
}

#[test]
fn use_before_definition() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["4"]));
    // Value 2 is the output of the node added next.
    let e = g
        .add_node_typed(
            "early".into(),
            Op::Unary(UnaryOp::Neg),
            vec![ValueId(2)],
            &["e".into()],
            vec![f32_ty(&["4"])],
            None,
        )
        .unwrap();
    let l = node(&mut g, "late", Op::Unary(UnaryOp::Abs), &[x], "later", None);
    assert_eq!(l, ValueId(2));
    g.outputs = e;
    assert_eq!(
        error(&g),
        "node `early`: input 0 (`later`) is used before it is defined"
    );
    // A node reading its own output.
    let mut g = Graph::new("g");
    g.add_node_typed(
        "loop".into(),
        Op::Unary(UnaryOp::Neg),
        vec![ValueId(0)],
        &["y".into()],
        vec![f32_ty(&["4"])],
        None,
    )
    .unwrap();
    assert_eq!(
        error(&g),
        "node `loop`: input 0 (`y`) is used before it is defined"
    );
}

#[test]
fn use_before_definition_written_as_text() {
    // The parser resolves names; ordering is the verifier's to check.
    let g = parse(
        r#"graph "g" {
  input %x: f32[4]
  %a: f32[4] = Neg(%b) "first"
  %b: f32[4] = Abs(%x) "second"
  output %a
}"#,
    )
    .unwrap();
    assert_eq!(
        error(&g),
        "node `first`: input 0 (`b`) is used before it is defined"
    );
}

#[test]
fn duplicate_value_name() {
    let mut g = mlp();
    let h = g.value_by_name("h").unwrap();
    g.rename_value(h, "x".into());
    assert_eq!(
        error(&g),
        "node `relu`: value name `x` used twice (values 0 and 5)"
    );
    // Between an input and a constant no node is at fault: the values are named.
    let mut g = Graph::new("g");
    g.add_input("w", f32_ty(&["2"]));
    let c = g.add_const("c", Tensor::from_vec(vec![2], vec![1.0f32, 2.0]));
    g.rename_value(c, "w".into());
    assert_eq!(
        error(&g),
        "graph: value name `w` used twice (values 0 and 1)"
    );
}

#[test]
fn output_type_disagreeing_with_inference() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["batch", "8"]));
    let w = weight(&mut g, "w", &[8, 4]);
    let y = g
        .add_node_typed(
            "mm".into(),
            Op::Nn(NnOp::MatMul),
            vec![x, w],
            &["y".into()],
            vec![f32_ty(&["batch", "5"])],
            None,
        )
        .unwrap();
    g.outputs = y;
    assert_eq!(
        error(&g),
        "node `mm`: output `y` is typed f32[batch, 5] but MatMul gives f32[batch, 4]"
    );
    // Dtype and rank must agree too.
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["n"]));
    g.add_node_typed(
        "neg".into(),
        Op::Unary(UnaryOp::Neg),
        vec![x],
        &["y".into()],
        vec![TensorType::new(DType::F16, shape(&["n"]))],
        None,
    )
    .unwrap();
    assert_eq!(
        error(&g),
        "node `neg`: output `y` is typed f16[n] but Neg gives f32[n]"
    );
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["n"]));
    g.add_node_typed(
        "neg".into(),
        Op::Unary(UnaryOp::Neg),
        vec![x],
        &["y".into()],
        vec![f32_ty(&["n", "1"])],
        None,
    )
    .unwrap();
    assert_eq!(
        error(&g),
        "node `neg`: output `y` is typed f32[n, 1] but Neg gives f32[n]"
    );
}

#[test]
fn op_rejecting_its_inputs() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["3"]));
    let i = g.add_input("i", TensorType::new(DType::I64, shape(&["3"])));
    g.add_node_typed(
        "add".into(),
        Op::Binary(BinaryOp::Add),
        vec![x, i],
        &["y".into()],
        vec![f32_ty(&["3"])],
        None,
    )
    .unwrap();
    let e = error(&g);
    assert!(e.starts_with("node `add`: Add: "), "{e}");
    // More outputs than the op produces.
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["3"]));
    g.add_node_typed(
        "relu".into(),
        Op::Unary(UnaryOp::Relu),
        vec![x],
        &["a".into(), "b".into()],
        vec![f32_ty(&["3"]), f32_ty(&["3"])],
        None,
    )
    .unwrap();
    assert_eq!(
        error(&g),
        "node `relu`: Relu produces 1 outputs, node lists 2"
    );
}

#[test]
fn dangling_graph_output() {
    let mut g = mlp();
    g.outputs.push(ValueId(99));
    assert_eq!(
        error(&g),
        "graph: graph output 1 refers to a missing value (id 99)"
    );
}

#[test]
fn graph_inputs_must_be_input_values() {
    let mut g = mlp();
    let w = g.value_by_name("fc1.weight").unwrap();
    g.inputs.push(w);
    assert_eq!(
        error(&g),
        "graph: graph input 1 (`fc1.weight`) is not an input value"
    );
    let mut g = mlp();
    g.inputs.push(ValueId(1000));
    assert_eq!(
        error(&g),
        "graph: graph input 1 refers to a missing value (id 1000)"
    );
    let mut g = mlp();
    g.inputs.clear();
    assert_eq!(
        error(&g),
        "graph: value `x` is an input not listed in the graph inputs"
    );
}

#[test]
fn brick_before_its_parent() {
    let mut g = Graph::new("g");
    g.push_brick(Brick {
        kind: BrickKind::Attention,
        name: "layer.attn".into(),
        parent: Some(BrickId(1)),
    });
    g.push_brick(Brick {
        kind: BrickKind::Layer,
        name: "layer".into(),
        parent: None,
    });
    assert_eq!(
        error(&g),
        "graph: brick `layer.attn` (#0) comes before its parent `layer` (#1)"
    );
    let mut g = Graph::new("g");
    g.push_brick(Brick {
        kind: BrickKind::Norm,
        name: "orphan".into(),
        parent: Some(BrickId(7)),
    });
    assert_eq!(
        error(&g),
        "graph: brick `orphan` (#0) comes before its parent #7 (missing)"
    );
}

#[test]
fn node_in_a_missing_brick() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["3"]));
    g.add_node_typed(
        "relu".into(),
        Op::Unary(UnaryOp::Relu),
        vec![x],
        &["y".into()],
        vec![f32_ty(&["3"])],
        Some(BrickId(3)),
    )
    .unwrap();
    assert_eq!(error(&g), "node `relu`: belongs to a missing brick");
}

#[test]
fn node_with_a_missing_input_value() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32_ty(&["3"]));
    let y = g
        .add_node_typed(
            "add".into(),
            Op::Binary(BinaryOp::Add),
            vec![x, ValueId(42)],
            &["y".into()],
            vec![f32_ty(&["3"])],
            None,
        )
        .unwrap();
    g.outputs = y;
    assert_eq!(
        error(&g),
        "node `add`: input 1 refers to a missing value (id 42)"
    );
}

#[test]
fn constant_typed_unlike_its_tensor() {
    let mut g = Graph::new("g");
    let c = g.add_const("c", Tensor::from_vec(vec![2], vec![1i64, 2]));
    g.set_value_type(c, TensorType::new(DType::I64, shape(&["3"])));
    assert_eq!(
        error(&g),
        "graph: constant `c` holds i64[2] but is typed i64[3]"
    );
}

#[test]
fn col2im_of_a_scalar_is_an_error_not_a_panic() {
    use kiln_ir::op::{InferInputs, MiscOp};
    use kiln_ir::Shape;
    let op = Op::Misc(MiscOp::Col2Im {
        dilations: vec![],
        pads: vec![],
        strides: vec![],
    });
    let types = vec![
        TensorType::new(DType::F32, Shape::known(&[])),
        TensorType::new(DType::I64, Shape::known(&[2])),
        TensorType::new(DType::I64, Shape::known(&[2])),
    ];
    let consts = vec![None, None, None];
    let err = op
        .infer(&InferInputs {
            types: &types,
            consts: &consts,
        })
        .unwrap_err();
    assert!(err.message.contains("rank"), "{err}");
    assert_eq!(err.kind, kiln_ir::ErrorKind::Shape, "{err}");
}
