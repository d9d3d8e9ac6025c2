//! Brick rules through the standard pipeline on small synthetic layers: LoRA merge,
//! QKV concatenation, the zero expert of an MoE layer and dead neurons; each
//! optimized graph equals the unoptimized one on random inputs (fresh seeds).

use kiln_ir::{DType, Graph, Shape, Tensor, TensorType, ValueDef, ValueId};
use kiln_passes::cost::{CostModel, TargetProfile};
use kiln_passes::pipeline::{Pipeline, Report};
use kiln_passes::synthetic_bricks::{
    lora_linear, moe_layer, tiny_attention, MOE_DEAD_NEURONS, MOE_PRUNABLE_EXPERT, MOE_ZERO_EXPERT,
};
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use kiln_passes::to_egraph;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative tolerance of the comparison (f32, reassociated sums).
const RTOL: f64 = 1e-4;

fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn optimize(g: &Graph) -> (Graph, Report) {
    Pipeline::standard()
        .run(g, &TargetProfile::h200())
        .expect("the pipeline extracts a graph")
}

/// Runs both graphs on random inputs from three fresh seeds and compares outputs.
fn assert_same(before: &Graph, after: &Graph) {
    let base = fresh_seed();
    for seed in [base, base ^ 0x9e37_79b9, base.wrapping_add(7)] {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs: Vec<(String, Tensor)> = before
            .inputs
            .iter()
            .map(|&v| {
                let val = before.value(v);
                let dims = val.ty.shape.as_known().expect("known input shape");
                let n: usize = dims.iter().product();
                let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                (val.name.clone(), Tensor::from_vec(dims, data))
            })
            .collect();
        let a = kiln_ir::interp::run(before, &inputs).expect("the source runs");
        let b = kiln_ir::interp::run(after, &inputs).expect("the optimized graph runs");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.shape(), y.shape(), "seed {seed}");
            for (i, (p, q)) in x.to_f64_vec().iter().zip(y.to_f64_vec()).enumerate() {
                let tol = RTOL * 1f64.max(p.abs()).max(q.abs());
                assert!((p - q).abs() <= tol, "seed {seed}: element {i}: {p} vs {q}");
            }
        }
    }
}

/// Names of the constants some node of `g` reads.
fn consts_read(g: &Graph) -> Vec<String> {
    let mut out: Vec<String> = g
        .nodes()
        .iter()
        .flat_map(|n| n.inputs.iter())
        .filter(|&&v| matches!(g.value(v).def, ValueDef::Const(_)))
        .map(|&v| g.value(v).name.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Nodes of `op` reading graph input `input`.
/// Nodes applying `op` (alone, or as a fused region's step) that read `input`.
fn ops_reading(g: &Graph, op: &str, input: &str) -> usize {
    let reads = |v: &ValueId| g.value(*v).name == input;
    let is = |o: &kiln_ir::Op| match o {
        kiln_ir::Op::Fused(f) => f.steps.iter().any(|s| s.op.name() == op),
        o => o.name() == op,
    };
    g.nodes()
        .iter()
        .filter(|n| is(&n.op) && n.inputs.iter().any(reads))
        .count()
}

fn applied(report: &Report, rule: &str) -> usize {
    report
        .phases
        .iter()
        .map(|p| p.applied.get(rule).copied().unwrap_or(0))
        .sum()
}

#[test]
fn lora_adapter_is_merged_into_the_base_weight() {
    let g = lora_linear(fresh_seed(), 16, 64);
    assert_eq!(ops_reading(&g, "MatMul", "hidden_states"), 2);
    let (opt, report) = optimize(&g);
    assert!(applied(&report, "lora-merge-biased") > 0, "{report:?}");
    assert_eq!(
        ops_reading(&opt, "MatMul", "hidden_states"),
        1,
        "{}",
        kiln_ir::text::print(&opt)
    );
    assert!(report.cost_after < report.cost_before, "{report:?}");
    assert_same(&g, &opt);
}

#[test]
fn qkv_projections_are_concatenated() {
    let g = tiny_attention(fresh_seed(), 8, 32, 4);
    assert_eq!(ops_reading(&g, "MatMul", "hidden_states"), 3);
    let (opt, report) = optimize(&g);
    assert!(applied(&report, "qkv-gate-up-concat") > 0, "{report:?}");
    let text = kiln_ir::text::print(&opt);
    assert_eq!(ops_reading(&opt, "MatMul", "hidden_states"), 1, "{text}");
    assert!(opt.nodes().iter().any(|n| n.op.name() == "Split"), "{text}");
    assert!(report.cost_after < report.cost_before, "{report:?}");
    assert_same(&g, &opt);
}

#[test]
fn moe_zero_expert_disappears_and_dead_neurons_are_pruned() {
    let g = moe_layer(fresh_seed(), 8, 32, 64);
    let (opt, report) = optimize(&g);
    let text = kiln_ir::text::print(&opt);
    let read = consts_read(&opt);
    let zero = format!("experts.{MOE_ZERO_EXPERT}.");
    assert!(
        read.iter().all(|c| !c.contains(&zero)),
        "the zero expert's weights are still read: {read:?}\n{text}"
    );
    assert!(
        !opt.nodes().iter().any(|n| n.op.name() == "Expand"),
        "zeros left in the program:\n{text}"
    );
    assert!(applied(&report, "ffn-dead-neurons") > 0, "{report:?}");
    let pruned = format!("experts.{MOE_PRUNABLE_EXPERT}.w2.weight.pruned");
    let w2 = opt
        .values()
        .iter()
        .find(|v| v.name.contains(&pruned))
        .unwrap_or_else(|| panic!("no pruned down weight: {read:?}\n{text}"));
    assert_eq!(w2.ty.shape.as_known().unwrap()[0], 64 - MOE_DEAD_NEURONS);
    assert!(report.cost_after < report.cost_before, "{report:?}");
    assert_same(&g, &opt);
}

#[test]
fn weight_only_subgraphs_are_free_at_run_time() {
    // x·concat(W1, W2) costs what x·W costs for a W of the concatenated shape: the
    // concatenation of constants is folded at compile time.
    let f32s = |d: &[usize]| TensorType::new(DType::F32, Shape::known(d));
    let op = |s: &str| kiln_ir::Op::from_text(s).unwrap();
    let mut a = Graph::new("concat");
    let x = a.add_input("x", f32s(&[16, 32]));
    let w1 = a.add_const("w1", Tensor::zeros(DType::F32, vec![32, 8]));
    let w2 = a.add_const("w2", Tensor::zeros(DType::F32, vec![32, 24]));
    let c = a
        .add_node(
            String::from("c"),
            op("Concat(axis: 1)"),
            vec![w1, w2],
            &["c".into()],
            None,
        )
        .unwrap()[0];
    let m = a
        .add_node(
            String::from("m"),
            op("MatMul"),
            vec![x, c],
            &["m".into()],
            None,
        )
        .unwrap()[0];
    a.outputs = vec![m];
    let mut b = Graph::new("folded");
    let x = b.add_input("x", f32s(&[16, 32]));
    let w = b.add_const("w", Tensor::zeros(DType::F32, vec![32, 32]));
    let m = b
        .add_node(
            String::from("m"),
            op("MatMul"),
            vec![x, w],
            &["m".into()],
            None,
        )
        .unwrap()[0];
    b.outputs = vec![m];
    let model = CostModel::new(TargetProfile::h200());
    assert_eq!(model.graph_cost(&a), model.graph_cost(&b));
    let eg = to_egraph(&a);
    let concat = eg
        .egraph
        .classes()
        .find(|cl| cl.nodes.iter().any(|n| n.to_string().starts_with("Concat")))
        .expect("the concat e-class");
    assert!(concat.data.constant);
    assert_eq!(
        model.enode_cost(&eg.egraph, concat.id, &concat.nodes[0]),
        0.0
    );
}

#[test]
fn fixtures_through_the_standard_pipeline_match() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let seed = fresh_seed();
    println!("fresh seed: {seed}");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let g = kiln_frontends::onnx::load(&dir.join("model.onnx")).unwrap();
        let (opt, report) = optimize(&g);
        kiln_ir::verify(&opt).unwrap_or_else(|e| panic!("{name}: optimized graph: {e}"));
        assert!(
            report.cost_after <= report.cost_before * (1.0 + 1e-9),
            "{name}: cost rose"
        );
        let bricks = report.phases.iter().find(|p| p.name == "bricks").unwrap();
        println!(
            "{name}: {} → {} nodes ({} splits), cost {:.3e} → {:.3e} s, bricks phase {:?} in {:?}: {:?}",
            g.nodes().len(),
            opt.nodes().len(),
            opt.nodes().iter().filter(|n| n.op.name() == "Split").count(),
            report.cost_before,
            report.cost_after,
            bricks.stop_reason,
            bricks.time,
            bricks.applied
        );
        // Symbolic dims bound to 2 (batch) and 5 (rest), ids and masks in {0, 1}.
        let inputs = random_inputs(&g, &mut StdRng::seed_from_u64(seed), &InputDims::default());
        let want = kiln_ir::interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = kiln_ir::interp::run(&opt, &inputs)
            .unwrap_or_else(|e| panic!("{name}: optimized: {e}"));
        assert_close(&format!("{name} (seed {seed})"), &want, &got, RTOL);
    }
}
