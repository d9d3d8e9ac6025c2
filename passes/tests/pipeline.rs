//! The phase pipeline: stop reasons, rule counts, lower cost, same outputs; and every
//! fixture model through a rule-less pipeline.

use std::path::Path;

use egg::StopReason;
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::{Limits, Phase, Pipeline, ITERATION_LIMIT};
use kiln_passes::{KilnAnalysis, KilnLang};
use rand::{Rng, SeedableRng};

type Rw = egg::Rewrite<KilnLang, KilnAnalysis>;

/// Test rules (not kiln's rule set, which lives in `passes/rules/`).
fn layout_rules() -> Vec<Rw> {
    vec![
        egg::rewrite!("transpose-twice"; "(Transpose{perm:[1,0]} (Transpose{perm:[1,0]} ?x))" => "?x"),
        egg::rewrite!("neg-neg"; "(Neg (Neg ?x))" => "?x"),
    ]
}

/// `y = Relu(Tᵀᵀ(x)) + Neg(Neg(x))` on `[64, 32]`.
fn small_graph() -> Graph {
    let op = |s: &str| Op::from_text(s).unwrap();
    let mut g = Graph::new("small");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::known(&[64, 32])));
    let mut add = |name: &str, o: &str, inputs| {
        g.add_node(name, op(o), inputs, &[name.to_string()], None)
            .unwrap()[0]
    };
    let t1 = add("t1", "Transpose(perm: [1, 0])", vec![x]);
    let t2 = add("t2", "Transpose(perm: [1, 0])", vec![t1]);
    let r = add("r", "Relu", vec![t2]);
    let n1 = add("n1", "Neg", vec![x]);
    let n2 = add("n2", "Neg", vec![n1]);
    let y = add("y", "Add", vec![r, n2]);
    g.outputs = vec![y];
    g
}

fn random_inputs(g: &Graph, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    g.inputs
        .iter()
        .map(|&v| {
            let val = g.value(v);
            let dims = val.ty.shape.as_known().unwrap();
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
            (val.name.clone(), Tensor::from_vec(dims, data))
        })
        .collect()
}

#[test]
fn phases_report_and_lower_the_cost() {
    let g = small_graph();
    let pipeline = Pipeline::new(vec![
        Phase::new("layout", layout_rules()),
        Phase::new("limited", layout_rules()).with_limits(Limits {
            iterations: 1,
            ..Limits::default()
        }),
    ])
    .dump_after("layout");
    let (out, report) = pipeline.run(&g, &TargetProfile::cpu_default()).unwrap();
    kiln_ir::verify(&out).unwrap();
    let layout = &report.phases[0];
    assert_eq!(layout.name, "layout");
    assert!(
        matches!(layout.stop_reason, Some(StopReason::Saturated)),
        "{layout:?}"
    );
    assert_eq!(layout.applied.get("transpose-twice"), Some(&1));
    assert_eq!(layout.applied.get("neg-neg"), Some(&1));
    assert!(layout.iterations <= ITERATION_LIMIT);
    assert_eq!(layout.nodes_before, 7);
    assert!(layout.classes_after < layout.classes_before);
    let dump = layout.dump.as_deref().unwrap();
    assert!(!dump.contains("Transpose"), "{dump}");
    assert!(report.phases[1].dump.is_none());
    assert!(report.cost_after < report.cost_before, "{report:?}");
    // Relu(x) + x: two kernels left.
    assert_eq!(out.nodes().len(), 2, "{}", kiln_ir::text::print(&out));
    for seed in 0..3 {
        let inputs = random_inputs(&g, seed);
        let want = kiln_ir::interp::run(&g, &inputs).unwrap();
        let got = kiln_ir::interp::run(&out, &inputs).unwrap();
        assert_eq!(want[0].to_f32_vec(), got[0].to_f32_vec());
    }
}

#[test]
fn iteration_limit_is_reported() {
    // A rule that always makes a new e-node never saturates.
    let grow: Vec<Rw> = vec![egg::rewrite!("grow"; "(Relu ?x)" => "(Relu (Neg (Neg ?x)))")];
    let pipeline = Pipeline::new(vec![Phase::new("grow", grow).with_limits(Limits {
        iterations: 3,
        ..Limits::default()
    })]);
    let (out, report) = pipeline
        .run(&small_graph(), &TargetProfile::h200())
        .unwrap();
    kiln_ir::verify(&out).unwrap();
    let p = &report.phases[0];
    assert!(
        matches!(p.stop_reason, Some(StopReason::IterationLimit(3))),
        "{p:?}"
    );
    assert!(p.applied["grow"] >= 3);
    assert!(report.cost_after <= report.cost_before * (1.0 + 1e-12));
}

#[test]
fn a_phase_past_its_deadline_is_an_error_not_a_different_program() {
    // A rule that never saturates, a deadline it is sure to pass: the run fails
    // with an error naming the phase instead of returning whatever saturation
    // reached by then (which would depend on the machine's load).
    let grow: Vec<Rw> = vec![egg::rewrite!("grow"; "(Relu ?x)" => "(Relu (Neg (Neg ?x)))")];
    let pipeline = Pipeline::new(vec![Phase::new("grow", grow).with_limits(Limits {
        iterations: usize::MAX,
        deadline: std::time::Duration::ZERO,
        ..Limits::default()
    })]);
    let err = pipeline
        .run(&small_graph(), &TargetProfile::h200())
        .unwrap_err();
    assert!(
        matches!(&err, kiln_passes::pipeline::PipelineError::Deadline { phase, .. } if phase == "grow"),
        "{err}"
    );
    assert!(err.to_string().contains("phase `grow`"), "{err}");
}

#[test]
fn limits_that_decide_the_program_are_counts() {
    // The default limits stop on e-nodes and iterations only; egg's wall-clock
    // limit is never what ends a phase (a load-dependent stop would make the
    // compiled program depend on the machine's load).
    let g = kiln_passes::synthetic::bert_base_like(2);
    let (first, report) = Pipeline::standard()
        .run(&g, &TargetProfile::cpu_default())
        .unwrap();
    for p in &report.phases {
        assert!(
            !matches!(p.stop_reason, Some(StopReason::TimeLimit(_))),
            "{p:?}"
        );
    }
    let (second, _) = Pipeline::standard()
        .run(&g, &TargetProfile::cpu_default())
        .unwrap();
    assert_eq!(kiln_ir::text::print(&first), kiln_ir::text::print(&second));
}

#[test]
fn every_fixture_goes_through_a_ruleless_pipeline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    names.sort();
    assert!(names.len() >= 16);
    let pipeline = Pipeline::new(vec![Phase::new("none", vec![])]);
    for path in names {
        let g = kiln_frontends::onnx::load(&path.join("model.onnx")).unwrap();
        let (out, report) = pipeline.run(&g, &TargetProfile::h200()).unwrap();
        kiln_ir::verify(&out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let p = &report.phases[0];
        assert!(matches!(p.stop_reason, Some(StopReason::Saturated)));
        assert_eq!(p.nodes_before, p.nodes_after);
        // No rules: the same program (identical nodes shared once), priced the same.
        assert!(
            report.cost_after <= report.cost_before * (1.0 + 1e-9),
            "{}: {} > {}",
            path.display(),
            report.cost_after,
            report.cost_before
        );
        println!(
            "{}: {} nodes, cost {:.1} µs -> {:.1} µs, total {:?}",
            path.file_name().unwrap().to_string_lossy(),
            g.nodes().len(),
            report.cost_before * 1e6,
            report.cost_after * 1e6,
            report.total_time
        );
    }
}

#[test]
fn the_analysis_holds_each_classes_cheapest_cost_after_a_run() {
    let g = small_graph();
    let (_, report, model) = Pipeline::standard()
        .run_keeping_egraph(&g, &TargetProfile::h200())
        .unwrap();
    let root = model.egraph.find(model.roots[0]);
    let root_cost = model.egraph[root].data.cost.expect("the root is priced");
    // Tree cost counts shared operands once per use: never below the DAG cost.
    assert!(root_cost >= report.cost_after * (1.0 - 1e-9) && root_cost > 0.0);
    assert!(model.egraph.classes().all(|c| c.data.cost.is_some()));
}
