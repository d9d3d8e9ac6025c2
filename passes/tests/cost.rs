//! The roofline cost model against hand computation, and DAG-cost extraction.

use egg::Language;
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::cost::{CostModel, DimBindings, TargetProfile, OVERLAP_LOSS};
use kiln_passes::extract_dag::{dag_cost, extract_dag, greedy_dag, tree_choices};
use kiln_passes::{to_egraph, KilnLang, OpKey};

fn ty(dtype: DType, dims: &[usize]) -> TensorType {
    TensorType::new(dtype, Shape::known(dims))
}

fn op(s: &str) -> Op {
    Op::from_text(s).unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-9 * a.abs().max(b.abs()), "{a} vs {b}");
}

#[test]
fn profiles_load_from_data_files() {
    let h = TargetProfile::h200();
    assert_eq!(h.name, "h200");
    close(h.mem_bandwidth, 4.1e12);
    close(h.peak_flops(DType::BF16), 779e12);
    close(h.peak_flops(DType::F32), 49e12);
    close(h.launch_overhead, 3e-6);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/cpu-default.toml");
    assert_eq!(
        TargetProfile::load(&path).unwrap(),
        TargetProfile::cpu_default()
    );
    assert!(TargetProfile::from_toml("name = 1").is_err());
}

#[test]
fn matmul_conv_and_elementwise_match_hand_computation() {
    let m = CostModel::new(TargetProfile::cpu_default());
    let f = DType::F32;
    // [64, 128] x [128, 256]: 2·M·N·K flops, every operand and the result once.
    let k = m.kernel(
        &op("MatMul"),
        &[ty(f, &[64, 128]), ty(f, &[128, 256])],
        &[ty(f, &[64, 256])],
    );
    close(k.flops, 2.0 * 64.0 * 256.0 * 128.0);
    close(k.bytes, 4.0 * (64.0 * 128.0 + 128.0 * 256.0 + 64.0 * 256.0));
    let (compute, memory) = (k.flops / 200e9, k.bytes / 20e9);
    close(
        k.seconds,
        compute.max(memory) + OVERLAP_LOSS * compute.min(memory) + 1e-6,
    );
    // Conv 3→16 channels, 3x3, 32x32 → 30x30: 2·N·Cout·HW·Cin·k².
    let k = m.kernel(
        &op("Conv((group: 1))"),
        &[ty(f, &[1, 3, 32, 32]), ty(f, &[16, 3, 3, 3])],
        &[ty(f, &[1, 16, 30, 30])],
    );
    close(k.flops, 2.0 * 16.0 * 900.0 * 3.0 * 9.0);
    // Elementwise: one flop per element, memory bound.
    let k = m.kernel(
        &op("Add"),
        &[ty(f, &[1000]), ty(f, &[1000])],
        &[ty(f, &[1000])],
    );
    close(k.flops, 1000.0);
    close(k.bytes, 12000.0);
    close(
        k.seconds,
        12000.0 / 20e9 + OVERLAP_LOSS * 1000.0 / 200e9 + 1e-6,
    );
    // Shape ops are free.
    let k = m.kernel(
        &op("Unsqueeze(axes: [0])"),
        &[ty(f, &[1000])],
        &[ty(f, &[1, 1000])],
    );
    assert_eq!(k.seconds, 0.0);
}

#[test]
fn symbolic_dims_take_their_bindings() {
    let m =
        CostModel::new(TargetProfile::cpu_default()).with_dims(DimBindings::new(7).bind("seq", 10));
    let t = TensorType::new(
        DType::F32,
        Shape(vec![kiln_ir::Dim::sym("seq"), kiln_ir::Dim::sym("other")]),
    );
    let k = m.kernel(
        &op("Relu"),
        std::slice::from_ref(&t),
        std::slice::from_ref(&t),
    );
    close(k.flops, 70.0);
}

#[test]
fn memory_bound_and_compute_bound_flip_with_the_profile() {
    // A 256³ bf16 matmul does ~85 flops per byte: under the H200's bf16 ridge
    // (~190 flops/byte), above the CPU's (~10).
    let b = DType::BF16;
    let (ins, outs) = (
        [ty(b, &[256, 256]), ty(b, &[256, 256])],
        [ty(b, &[256, 256])],
    );
    let bound = |p: TargetProfile| {
        let m = CostModel::new(p.clone());
        let k = m.kernel(&op("MatMul"), &ins, &outs);
        k.flops / p.peak_flops(b) > k.bytes / p.mem_bandwidth
    };
    assert!(!bound(TargetProfile::h200()), "memory bound on the H200");
    assert!(
        bound(TargetProfile::cpu_default()),
        "compute bound on the CPU"
    );
}

/// `Concat(Relu(S), Neg(S))` with `S` an expensive matmul, unioned with
/// `Concat(Relu(T1), Neg(T2))` where `T1` and `T2` are distinct matmuls each
/// cheaper than `S`: as a tree the second is cheaper (2·T < 2·S), as a DAG the
/// first is (S < 2·T).
#[test]
fn dag_extraction_counts_a_shared_subterm_once() {
    let f = DType::F32;
    let mut g = Graph::new("shared");
    let x = g.add_input("x", ty(f, &[64, 256]));
    let a = g.add_input("a", ty(f, &[64, 160]));
    let c = g.add_input("c", ty(f, &[64, 160]));
    let w = g.add_const("w", Tensor::zeros(f, vec![256, 256]));
    let bw = g.add_const("b", Tensor::zeros(f, vec![160, 256]));
    let dw = g.add_const("d", Tensor::zeros(f, vec![160, 256]));
    let _ = (a, c, bw, dw);
    let s = g
        .add_node("s", op("MatMul"), vec![x, w], &["s".to_string()], None)
        .unwrap()[0];
    let r = g
        .add_node("r", op("Relu"), vec![s], &["r".to_string()], None)
        .unwrap()[0];
    let n = g
        .add_node("n", op("Neg"), vec![s], &["n".to_string()], None)
        .unwrap()[0];
    let y = g
        .add_node(
            "y",
            op("Concat(axis: 0)"),
            vec![r, n],
            &["y".to_string()],
            None,
        )
        .unwrap()[0];
    g.outputs = vec![y];
    let mut model = to_egraph(&g);
    let eg = &mut model.egraph;
    let leaf = |eg: &mut kiln_passes::KilnEGraph, s: &str| eg.add_expr(&s.parse().unwrap());
    let t1 = leaf(eg, "(MatMul input:a const:b)");
    let t2 = leaf(eg, "(MatMul input:c const:d)");
    let relu = eg.add(KilnLang::Op(OpKey::new(&op("Relu")), vec![t1]));
    let neg = eg.add(KilnLang::Op(OpKey::new(&op("Neg")), vec![t2]));
    let alt = eg.add(KilnLang::Op(
        OpKey::new(&op("Concat(axis: 0)")),
        vec![relu, neg],
    ));
    eg.union(alt, model.roots[0]);
    eg.rebuild();
    model.roots = vec![eg.find(model.roots[0])];

    let cm = CostModel::new(TargetProfile::cpu_default());
    let eg = &model.egraph;
    let cost = |c, nd: &KilnLang| cm.enode_cost(eg, c, nd);
    let tree = tree_choices(
        eg,
        &model.roots,
        kiln_passes::cost::RooflineCost {
            egraph: eg,
            model: &cm,
        },
    );
    let dag = greedy_dag(eg, cost);
    let root = model.roots[0];
    assert_eq!(
        eg.find(tree[&root].children()[0]),
        relu,
        "tree cost shares nothing"
    );
    assert_ne!(eg.find(dag[&root].children()[0]), relu, "DAG cost shares S");
    let (tc, dc) = (
        dag_cost(eg, &tree, &model.roots, cost).unwrap(),
        dag_cost(eg, &dag, &model.roots, cost).unwrap(),
    );
    assert!(dc < tc, "{dc} < {tc}");
    // S counted once: the DAG cost is the sum of the source graph's kernels.
    close(dc, cm.graph_cost(&g));

    let out = extract_dag(&model, &cm).unwrap();
    kiln_ir::verify(&out.graph).unwrap();
    close(out.cost, dc);
    close(cm.graph_cost(&out.graph), dc);
    let names: Vec<&str> = out.graph.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
}

/// A scan over `t` rows of `[4, 8]` whose body adds each row to the state.
fn scan_over(t: usize) -> Graph {
    use kiln_ir::op::{BinaryOp, ControlOp, Subgraph};
    let f = DType::F32;
    let mut body = Graph::new("body");
    let s = body.add_input("s", ty(f, &[4, 8]));
    let x = body.add_input("x", ty(f, &[4, 8]));
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let y = body
        .add_node(
            "y",
            Op::Binary(BinaryOp::Add),
            vec![s, x],
            &names(&["y"]),
            None,
        )
        .unwrap()[0];
    body.outputs = vec![y, y];
    let mut g = Graph::new("scan");
    let s0 = g.add_input("s0", ty(f, &[4, 8]));
    let xs = g.add_input("xs", ty(f, &[t, 4, 8]));
    let outs = g
        .add_node(
            "scan",
            Op::Control(ControlOp::Scan {
                body: Subgraph::new(body),
                num_state: 1,
                num_scan_inputs: 1,
                input_axes: vec![0],
                input_reverse: vec![false],
                output_axes: vec![0],
                output_reverse: vec![false],
            }),
            vec![s0, xs],
            &names(&["s_final", "ys"]),
            None,
        )
        .unwrap();
    g.outputs = outs;
    g
}

#[test]
fn control_flow_costs_its_body_times_its_iterations() {
    let m = CostModel::new(TargetProfile::cpu_default());
    let f = DType::F32;
    let add = m
        .kernel(
            &op("Add"),
            &[ty(f, &[4, 8]), ty(f, &[4, 8])],
            &[ty(f, &[4, 8])],
        )
        .seconds;
    let launch = TargetProfile::cpu_default().launch_overhead;
    for t in [1, 5, 40] {
        close(m.graph_cost(&scan_over(t)), t as f64 * add + launch);
    }
}
