//! ILP (CBC) extraction: never dearer than the greedy DAG extractor, strictly
//! cheaper where greedy choices miss a sharing, acyclic on cyclic e-graphs, and the
//! extracted graphs compute what their sources do (reference interpreter, random
//! inputs with a fixed and a fresh seed).
#![cfg(feature = "ilp")]

use std::path::PathBuf;
use std::time::Duration;

use kiln_ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::cost::{CostModel, TargetProfile};
use kiln_passes::extract_dag::extract_dag;
use kiln_passes::extract_ilp::{extract_ilp, IlpOutcome, ILP_TIME_LIMIT};
use kiln_passes::pipeline::{Extractor, Pipeline};
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use kiln_passes::{to_egraph, KilnLang, OpKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative slack for cost comparisons (sums in a different order).
const EPS: f64 = 1e-9;
/// Tolerance of output comparisons: `|a − b| <= TOL · (1 + |a|)`.
const TOL: f64 = 1e-4;

fn op(s: &str) -> Op {
    Op::from_text(s).unwrap()
}

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

fn node(g: &mut Graph, name: &str, o: &str, inputs: Vec<kiln_ir::ValueId>) -> kiln_ir::ValueId {
    g.add_node(name, op(o), inputs, &[name.to_string()], None)
        .unwrap()[0]
}

/// `y = Relu(Tᵀᵀ(x)) + Neg(Neg(x))` and a matmul: the standard rules cancel both
/// pairs, which makes cycles in the e-graph (`x ≡ Neg(Neg(x))`).
fn small_graph() -> Graph {
    let mut g = Graph::new("small");
    let x = g.add_input("x", f32s(&[16, 8]));
    let w = g.add_const(
        "w",
        Tensor::from_vec(
            vec![8, 8],
            (0..64).map(|i| (i as f32 * 0.1).cos()).collect(),
        ),
    );
    let t1 = node(&mut g, "t1", "Transpose(perm: [1, 0])", vec![x]);
    let t2 = node(&mut g, "t2", "Transpose(perm: [1, 0])", vec![t1]);
    let r = node(&mut g, "r", "Relu", vec![t2]);
    let n1 = node(&mut g, "n1", "Neg", vec![x]);
    let n2 = node(&mut g, "n2", "Neg", vec![n1]);
    let m = node(&mut g, "m", "MatMul", vec![n2, w]);
    let y = node(&mut g, "y", "Add", vec![r, m]);
    g.outputs = vec![y];
    g
}

fn assert_same_outputs(name: &str, a: &Graph, b: &Graph) {
    let fresh: u64 = rand::random();
    for seed in [7u64, fresh] {
        let inputs = random_inputs(a, &mut StdRng::seed_from_u64(seed), &InputDims::default());
        let want = interp::run(a, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = interp::run(b, &inputs).unwrap_or_else(|e| panic!("{name}: ILP graph: {e}"));
        assert_close(&format!("{name} (seed {seed})"), &want, &got, TOL);
    }
}

/// Runs the standard pipeline with both extractors; checks ILP ≤ greedy and that
/// the ILP graph computes what the source does.
fn check_pipeline(name: &str, g: &Graph) {
    let profile = TargetProfile::cpu_default();
    let greedy = Pipeline::standard();
    let ilp = Pipeline::standard().with_extractor(Extractor::Ilp {
        timeout: ILP_TIME_LIMIT,
    });
    let (_, rg) = greedy.run(g, &profile).unwrap();
    let (out, ri) = ilp.run(g, &profile).unwrap();
    kiln_ir::verify(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
    println!(
        "{name}: greedy {:.6e} s, ILP {:.6e} s (extraction {:?} vs {:?})",
        rg.cost_after, ri.cost_after, rg.extract_time, ri.extract_time
    );
    assert!(
        ri.cost_after <= rg.cost_after * (1.0 + EPS),
        "{name}: ILP {} > greedy {}",
        ri.cost_after,
        rg.cost_after
    );
    assert_same_outputs(name, g, &out);
}

#[test]
fn ilp_matches_the_source_and_never_costs_more_on_a_cyclic_e_graph() {
    let g = small_graph();
    check_pipeline("small", &g);
    // The cancellations made x ≡ Neg(Neg(x)): a cycle the ILP must not choose.
    let (out, _) = Pipeline::standard()
        .with_extractor(Extractor::Ilp {
            timeout: ILP_TIME_LIMIT,
        })
        .run(&g, &TargetProfile::cpu_default())
        .unwrap();
    let names: Vec<String> = out
        .nodes()
        .iter()
        .map(|n| n.op.name().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n == "Neg" || n == "Transpose"),
        "{names:?}"
    );
    // The ILP itself saw the cycle: its classes got order variables.
    let mut model = to_egraph(&g);
    let rules = kiln_passes::rules::RuleSet::builtin();
    let mut set = kiln_passes::rules::RuleSet::default();
    for theme in ["layout", "algebra"] {
        set.rules.extend(rules.theme(theme).rules);
    }
    let runner = egg::Runner::default()
        .with_egraph(std::mem::take(&mut model.egraph))
        .run(&set.rewrites());
    model.egraph = runner.egraph;
    model.egraph.rebuild();
    model.roots = model.roots.iter().map(|&r| model.egraph.find(r)).collect();
    let cost = CostModel::new(TargetProfile::cpu_default());
    let ilp = extract_ilp(&model, &cost, ILP_TIME_LIMIT).unwrap();
    assert!(ilp.size.ordered >= 2, "{:?}", ilp.size);
    assert_eq!(ilp.outcome, IlpOutcome::Optimal);
    kiln_ir::verify(&ilp.extraction.graph).unwrap();
    assert_same_outputs("small (cyclic e-graph)", &g, &ilp.extraction.graph);
}

#[test]
fn ilp_matches_fixture_models_and_never_costs_more() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx");
    for name in ["bert_torchscript_fixed", "gpt2_dynamo_dynamic"] {
        let g = kiln_frontends::onnx::load(&root.join(name).join("model.onnx")).unwrap();
        check_pipeline(name, &g);
    }
}

#[test]
fn ilp_never_costs_more_than_greedy_on_a_synthetic_bert_layer() {
    let g = kiln_passes::synthetic::bert_base_like(1);
    let profile = TargetProfile::h200();
    let (_, rg) = Pipeline::standard().run(&g, &profile).unwrap();
    let (out, ri) = Pipeline::standard()
        .with_extractor(Extractor::Ilp {
            timeout: ILP_TIME_LIMIT,
        })
        .run(&g, &profile)
        .unwrap();
    kiln_ir::verify(&out).unwrap();
    println!(
        "bert_base_like(1): greedy {:.6e} s, ILP {:.6e} s",
        rg.cost_after, ri.cost_after
    );
    assert!(ri.cost_after <= rg.cost_after * (1.0 + EPS));
}

/// `Concat(P, Neg(M2))` where `P ≡ Relu(M1) ≡ Relu(M2)` and `M1` is a cheaper
/// matmul than `M2`. Greedy picks `P`'s locally cheapest program `Relu(M1)` and
/// pays for both matmuls; the optimum shares `M2` (the union stands in for a
/// rewrite: only costs are compared, the graph is not evaluated).
#[test]
fn ilp_finds_a_sharing_the_greedy_choice_misses() {
    let mut g = Graph::new("sharing");
    let a = g.add_input("a", f32s(&[64, 128]));
    let c = g.add_input("c", f32s(&[64, 256]));
    let w1 = g.add_const("w1", Tensor::zeros(DType::F32, vec![128, 256]));
    let w2 = g.add_const("w2", Tensor::zeros(DType::F32, vec![256, 256]));
    let m1 = node(&mut g, "m1", "MatMul", vec![a, w1]);
    let m2 = node(&mut g, "m2", "MatMul", vec![c, w2]);
    let p = node(&mut g, "p", "Relu", vec![m1]);
    let q = node(&mut g, "q", "Neg", vec![m2]);
    let y = node(&mut g, "y", "Concat(axis: 0)", vec![p, q]);
    g.outputs = vec![y];
    let mut model = to_egraph(&g);
    let eg = &mut model.egraph;
    let m2_class = eg
        .lookup_expr(&"(MatMul input:c const:w2)".parse().unwrap())
        .unwrap();
    let p_class = eg
        .lookup_expr(&"(Relu (MatMul input:a const:w1))".parse().unwrap())
        .unwrap();
    let alt = eg.add(KilnLang::Op(OpKey::new(&op("Relu")), vec![m2_class]));
    eg.union(alt, p_class);
    eg.rebuild();
    model.roots = model.roots.iter().map(|&r| eg.find(r)).collect();

    let cost = CostModel::new(TargetProfile::cpu_default());
    let greedy = extract_dag(&model, &cost).unwrap();
    let ilp = extract_ilp(&model, &cost, ILP_TIME_LIMIT).unwrap();
    assert_eq!(ilp.outcome, IlpOutcome::Optimal);
    assert!(
        ilp.extraction.cost < greedy.cost * (1.0 - 1e-3),
        "ILP {} vs greedy {}",
        ilp.extraction.cost,
        greedy.cost
    );
    kiln_ir::verify(&ilp.extraction.graph).unwrap();
    let matmuls = ilp
        .extraction
        .graph
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "MatMul")
        .count();
    assert_eq!(matmuls, 1, "the ILP program shares one matmul");
    assert_eq!(
        ilp.heuristic_cost.map(|h| h > ilp.extraction.cost),
        Some(true)
    );
    // The graph's modelled cost is the extraction's DAG cost.
    let priced = cost.graph_cost(&ilp.extraction.graph);
    assert!((priced - ilp.extraction.cost).abs() <= 1e-9 * priced.max(1e-12));
}

/// A time limit shorter than a second still solves (CBC rounds it up) and keeps a
/// valid program.
#[test]
fn a_tiny_time_limit_still_gives_a_valid_program() {
    let g = small_graph();
    let (out, _) = Pipeline::standard()
        .with_extractor(Extractor::Ilp {
            timeout: Duration::from_millis(1),
        })
        .run(&g, &TargetProfile::cpu_default())
        .unwrap();
    kiln_ir::verify(&out).unwrap();
    assert_same_outputs("small (1 ms limit)", &g, &out);
}

/// A random graph over `x, y: [8, 8]`: `nodes` ops drawn from negations,
/// transposes, ReLUs, sums, products with constants (some of them one or zero) and
/// matmuls with constant matrices, each reading earlier values; the last two
/// values are the outputs. The built-in rules cancel, fold and reassociate these,
/// giving e-graphs with cycles and real alternatives.
fn random_graph(seed: u64, nodes: usize) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new("random");
    let mut vals = vec![
        g.add_input("x", f32s(&[8, 8])),
        g.add_input("y", f32s(&[8, 8])),
    ];
    let mut consts = 0;
    let mut constant = |g: &mut Graph, rng: &mut StdRng, kind: u32| {
        consts += 1;
        let data: Vec<f32> = match kind {
            0 => vec![0.0; 64],
            1 => vec![1.0; 64],
            _ => (0..64).map(|_| rng.random_range(-0.5f32..0.5)).collect(),
        };
        g.add_const(format!("c{consts}"), Tensor::from_vec(vec![8, 8], data))
    };
    for i in 0..nodes {
        let pick = |rng: &mut StdRng, vals: &[kiln_ir::ValueId]| {
            // Prefer recent values, so chains form.
            let n = vals.len();
            vals[n - 1 - rng.random_range(0..n.min(4))]
        };
        let a = pick(&mut rng, &vals);
        let name = format!("v{i}");
        let v = match rng.random_range(0..8u32) {
            0 => node(&mut g, &name, "Neg", vec![a]),
            1 => node(&mut g, &name, "Transpose(perm: [1, 0])", vec![a]),
            2 => node(&mut g, &name, "Relu", vec![a]),
            3 => {
                let b = pick(&mut rng, &vals);
                node(&mut g, &name, "Add", vec![a, b])
            }
            4 => {
                let k = rng.random_range(0..3u32);
                let c = constant(&mut g, &mut rng, k);
                node(
                    &mut g,
                    &name,
                    if k == 0 { "Add" } else { "Mul" },
                    vec![a, c],
                )
            }
            _ => {
                let c = constant(&mut g, &mut rng, 2);
                node(&mut g, &name, "MatMul", vec![a, c])
            }
        };
        vals.push(v);
    }
    let n = vals.len();
    g.outputs = vec![vals[n - 2], vals[n - 1]];
    g
}

#[test]
fn ilp_matches_random_graphs_and_never_costs_more() {
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    let mut better = 0;
    let seeds: Vec<u64> = (0..16).chain([fresh]).collect();
    for seed in seeds {
        let g = random_graph(seed, 14);
        let name = format!("random graph (seed {seed})");
        let profile = TargetProfile::cpu_default();
        let (_, rg) = Pipeline::standard().run(&g, &profile).unwrap();
        let (out, ri) = Pipeline::standard()
            .with_extractor(Extractor::Ilp {
                timeout: ILP_TIME_LIMIT,
            })
            .run(&g, &profile)
            .unwrap();
        kiln_ir::verify(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            ri.cost_after <= rg.cost_after * (1.0 + EPS),
            "{name}: ILP {} > greedy {}",
            ri.cost_after,
            rg.cost_after
        );
        if ri.cost_after < rg.cost_after * (1.0 - 1e-6) {
            better += 1;
        }
        assert_same_outputs(&name, &g, &out);
    }
    println!("ILP strictly cheaper than greedy on {better} of 17 random graphs");
}

/// A zero-cost cycle: the root `Relu(x)` is also `Identity(C)` with
/// `C = Identity(root)`. Identities are free, so without the order constraints
/// the ILP's cheapest "program" would be the cycle; it must pick `Relu(x)`.
#[test]
fn a_free_cycle_is_never_chosen() {
    let mut g = Graph::new("cycle");
    let x = g.add_input("x", f32s(&[4, 4]));
    let y = node(&mut g, "y", "Relu", vec![x]);
    g.outputs = vec![y];
    let mut model = to_egraph(&g);
    let eg = &mut model.egraph;
    let root = model.roots[0];
    let id = OpKey::new(&op("Identity"));
    let c = eg.add(KilnLang::Op(id.clone(), vec![root]));
    let back = eg.add(KilnLang::Op(id, vec![c]));
    eg.union(back, root);
    eg.rebuild();
    model.roots = model.roots.iter().map(|&r| eg.find(r)).collect();
    let cost = CostModel::new(TargetProfile::cpu_default());
    let ilp = extract_ilp(&model, &cost, ILP_TIME_LIMIT).unwrap();
    assert_eq!(ilp.outcome, IlpOutcome::Optimal);
    assert!(ilp.size.ordered >= 2, "{:?}", ilp.size);
    let greedy = extract_dag(&model, &cost).unwrap();
    assert!((ilp.extraction.cost - greedy.cost).abs() <= EPS * greedy.cost);
    kiln_ir::verify(&ilp.extraction.graph).unwrap();
    assert_same_outputs("free cycle", &g, &ilp.extraction.graph);
}
