//! Extraction after unions: names, bricks and multi-output nodes.

use egg::{CostFunction, Id, Language, RecExpr};
use kiln_ir::{BrickKind, DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::{extract, extract_with, to_egraph, KilnLang};

fn op(s: &str) -> Op {
    Op::from_text(s).unwrap()
}

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

fn inputs(g: &Graph) -> Vec<(String, Tensor)> {
    g.inputs
        .iter()
        .map(|&v| {
            let val = g.value(v);
            let dims = val.ty.shape.as_known().unwrap();
            let n: usize = dims.iter().product();
            let data = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            (val.name.clone(), Tensor::from_vec(dims, data))
        })
        .collect()
}

fn same_outputs(a: &Graph, b: &Graph) {
    let ins = inputs(a);
    let (x, y) = (
        kiln_ir::interp::run(a, &ins).unwrap(),
        kiln_ir::interp::run(b, &ins).unwrap(),
    );
    assert_eq!(x.len(), y.len());
    for (x, y) in x.iter().zip(&y) {
        assert_eq!(x.shape(), y.shape());
        assert_eq!(x.to_f64_vec(), y.to_f64_vec());
    }
}

#[test]
fn multi_output_nodes_round_trip_through_projections() {
    let mut g = Graph::new("split");
    let x = g.add_input("x", f32s(&[2, 6]));
    let parts = g
        .add_node(
            "split",
            op("Split(axis: 1, sizes: [2, 4])"),
            vec![x],
            &["left".into(), "right".into()],
            None,
        )
        .unwrap();
    let k = g.add_const("k", Tensor::from_vec(vec![1], vec![2i64]));
    let top = g
        .add_node(
            "top",
            op("TopK(axis: 1, largest: true, sorted: true)"),
            vec![parts[1], k],
            &["values".into(), "indices".into()],
            None,
        )
        .unwrap();
    g.outputs = vec![parts[0], top[0], top[1]];
    let model = to_egraph(&g);
    let back = extract(&model).unwrap();
    kiln_ir::verify(&back).unwrap();
    let names: Vec<&str> = back
        .outputs
        .iter()
        .map(|&v| back.value(v).name.as_str())
        .collect();
    assert_eq!(names, ["left", "values", "indices"]);
    assert_eq!(back.nodes().len(), 2);
    same_outputs(&g, &back);
}

/// `relu(transpose(transpose(x)))` in brick `block`.
fn double_transpose() -> Graph {
    let mut g = Graph::new("tt");
    let block = g.brick("block", BrickKind::Module);
    let x = g.add_input("x", f32s(&[2, 3]));
    let mut v = x;
    for name in ["t1", "t2"] {
        v = g
            .add_node(
                name,
                op("Transpose(perm: [1, 0])"),
                vec![v],
                &[name.into()],
                Some(block),
            )
            .unwrap()[0];
    }
    let y = g
        .add_node("relu", op("Relu"), vec![v], &["y".into()], Some(block))
        .unwrap()[0];
    g.outputs = vec![y];
    g
}

#[test]
fn a_union_with_a_smaller_program_drops_nodes_and_keeps_names() {
    let g = double_transpose();
    let mut model = to_egraph(&g);
    let eg = &mut model.egraph;
    let tt: RecExpr<KilnLang> = "(Transpose{perm:[1,0]} (Transpose{perm:[1,0]} input:x))"
        .parse()
        .unwrap();
    let tt = eg.lookup_expr(&tt).unwrap();
    let x = eg.lookup(KilnLang::Input("x".into())).unwrap();
    eg.union(tt, x);
    eg.rebuild();
    let back = extract(&model).unwrap();
    kiln_ir::verify(&back).unwrap();
    assert_eq!(back.nodes().len(), 1);
    let relu = &back.nodes()[0];
    assert_eq!(relu.name, "relu");
    assert_eq!(back.bricks[relu.brick.unwrap().0 as usize].name, "block");
    assert_eq!(back.value(back.outputs[0]).name, "y");
    same_outputs(&g, &back);
}

/// Prefers `Abs` to anything else: stands in for a cost model choosing a new node.
struct PreferAbs;
impl CostFunction<KilnLang> for PreferAbs {
    type Cost = usize;
    fn cost<C: FnMut(Id) -> usize>(&mut self, enode: &KilnLang, mut costs: C) -> usize {
        let own = match enode {
            KilnLang::Op(k, _) if k.op().name() == "Abs" => 0,
            _ => 10,
        };
        enode.fold(own, |s, c| s.saturating_add(costs(c)))
    }
}

#[test]
fn a_new_node_is_named_after_its_value_and_put_in_its_brick() {
    let g = double_transpose();
    let mut model = to_egraph(&g);
    let eg = &mut model.egraph;
    // relu(x) == abs(x) is false in general, but extraction does not care: the
    // union only stands in for a rewrite.
    let relu: RecExpr<KilnLang> = "(Relu (Transpose{perm:[1,0]} (Transpose{perm:[1,0]} input:x)))"
        .parse()
        .unwrap();
    let relu = eg.lookup_expr(&relu).unwrap();
    let t2: RecExpr<KilnLang> = "(Transpose{perm:[1,0]} (Transpose{perm:[1,0]} input:x))"
        .parse()
        .unwrap();
    let t2 = eg.lookup_expr(&t2).unwrap();
    let abs = eg.add(KilnLang::Op(kiln_passes::OpKey::new(&op("Abs")), vec![t2]));
    eg.union(relu, abs);
    eg.rebuild();
    let back = extract_with(&model, PreferAbs).unwrap();
    kiln_ir::verify(&back).unwrap();
    let last = back.nodes().last().unwrap();
    assert_eq!(last.op.name(), "Abs");
    assert_eq!(last.name, "y.x", "named after the value it computes");
    assert_eq!(back.bricks[last.brick.unwrap().0 as usize].name, "block");
    assert_eq!(back.value(back.outputs[0]).name, "y");
    let kept: Vec<&str> = back.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(kept, ["t1", "t2", "y.x"]);
}

#[test]
fn egg_rewrites_match_kiln_patterns() {
    // Not a kiln rule (rules come with the rule files): it checks that patterns
    // written in the op syntax match e-nodes and that the runner works on the language.
    let rules: Vec<egg::Rewrite<KilnLang, kiln_passes::KilnAnalysis>> = vec![egg::rewrite!(
        "transpose-twice"; "(Transpose{perm:[1,0]} (Transpose{perm:[1,0]} ?x))" => "?x"
    )];
    let g = double_transpose();
    let mut model = to_egraph(&g);
    let runner = egg::Runner::default()
        .with_egraph(std::mem::take(&mut model.egraph))
        .run(&rules);
    model.egraph = runner.egraph;
    let back = extract(&model).unwrap();
    kiln_ir::verify(&back).unwrap();
    assert_eq!(back.nodes().len(), 1);
    same_outputs(&g, &back);
}
