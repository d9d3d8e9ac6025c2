//! The analysis: types from `Op::infer`, constness, merges keep what is known.

use egg::RecExpr;
use kiln_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::{to_egraph, KilnLang};

fn graph() -> Graph {
    let mut g = Graph::new("small");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![Dim::sym("batch"), Dim::Known(4)])),
    );
    let w = g.add_const("w", Tensor::zeros(DType::F32, vec![4, 3]));
    let b = g.add_const("b", Tensor::zeros(DType::F32, vec![4, 3]));
    let op = |s: &str| Op::from_text(s).unwrap();
    let wb = g
        .add_node("wb", op("Add"), vec![w, b], &["wb".into()], None)
        .unwrap()[0];
    let y = g
        .add_node("mm", op("MatMul"), vec![x, wb], &["y".into()], None)
        .unwrap()[0];
    g.outputs = vec![y];
    g
}

#[test]
fn types_and_constness_come_from_the_ops() {
    let model = to_egraph(&graph());
    let eg = &model.egraph;
    let y = &eg[model.roots[0]].data;
    assert_eq!(
        y.ty().unwrap(),
        &TensorType::new(DType::F32, Shape(vec![Dim::sym("batch"), Dim::Known(3)]))
    );
    assert!(!y.constant);
    let e: RecExpr<KilnLang> = "(Add const:w const:b)".parse().unwrap();
    let wb = eg.lookup_expr(&e).unwrap();
    assert!(eg[wb].data.constant, "a weight-only subgraph is constant");
    assert_eq!(eg[wb].data.origin.as_ref().unwrap().value, "wb");
}

#[test]
fn a_union_keeps_the_more_informative_type() {
    let mut model = to_egraph(&graph());
    let eg = &mut model.egraph;
    // An input of unknown batch, unioned with one whose batch is known.
    let known = eg.add(KilnLang::Input("x2".into()));
    kiln_passes::refine_type(
        eg,
        known,
        0,
        &TensorType::new(DType::F32, Shape::known(&[2, 4])),
    );
    let x = eg.lookup(KilnLang::Input("x".into())).unwrap();
    eg.union(x, known);
    eg.rebuild();
    assert_eq!(
        eg[x].data.ty().unwrap(),
        &TensorType::new(DType::F32, Shape::known(&[2, 4]))
    );
    assert_eq!(eg[x].data.origin.as_ref().unwrap().value, "x");
}
