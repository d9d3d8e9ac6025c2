//! Tests of the arena planner: exact plans of small graphs, and the placement
//! invariants on random DAGs and an imported ONNX model.

use std::collections::HashMap;
use std::path::Path;

use kiln_ir::op::{BinaryOp, NnOp, UnaryOp};
use kiln_ir::{DType, Graph, Op, Shape, TensorType, ValueDef, ValueId};
use kiln_runtime::memory::{
    plan, plan_from_types, type_size, Lifetime, MemoryPlan, PlanError, ARENA_ALIGN,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Fixed seeds of the random-DAG property test (a fresh one is added each run).
const FIXED_SEEDS: u64 = 40;
/// Nodes per random DAG.
const RANDOM_NODES: usize = 60;
/// Dims the random shapes draw from (few, so matmul partners exist).
const RANDOM_DIMS: [usize; 5] = [8, 16, 24, 48, 64];
/// The greedy placement must stay within this factor of the lower bound there.
const MAX_RATIO: f64 = 2.0;

fn f32_2d(m: usize, n: usize) -> TensorType {
    TensorType::new(DType::F32, Shape::known(&[m, n]))
}

fn unary(g: &mut Graph, name: &str, op: UnaryOp, x: ValueId) -> ValueId {
    g.add_node(name, Op::Unary(op), vec![x], &[name.to_string()], None)
        .expect("valid unary node")[0]
}

fn binary(g: &mut Graph, name: &str, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
    g.add_node(name, Op::Binary(op), vec![a, b], &[name.to_string()], None)
        .expect("valid binary node")[0]
}

/// Lifetimes computed directly from the definition: defining node to last reader,
/// graph outputs to the end; `None` for inputs and constants.
fn expected_lifetimes(g: &Graph) -> Vec<Option<Lifetime>> {
    let end = g.nodes().len();
    g.values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ValueDef::Node { node, .. } = v.def else {
                return None;
            };
            let id = ValueId(i as u32);
            let start = node.0 as usize;
            let last_read = g
                .nodes()
                .iter()
                .enumerate()
                .filter(|(_, n)| n.inputs.contains(&id))
                .map(|(s, _)| s)
                .max()
                .unwrap_or(start);
            let end = if g.outputs.contains(&id) {
                end
            } else {
                last_read
            };
            Some(Lifetime { start, end })
        })
        .collect()
}

/// Checks the plan's invariants against lifetimes computed independently.
fn check_plan(g: &Graph, p: &MemoryPlan) {
    let lifetimes = expected_lifetimes(g);
    assert_eq!(p.lifetimes, lifetimes, "lifetimes of {}", g.name);
    let placed: Vec<usize> = (0..g.values().len())
        .filter(|&i| lifetimes[i].is_some())
        .collect();
    for (i, (offset, life)) in p.offsets.iter().zip(&lifetimes).enumerate() {
        assert_eq!(offset.is_some(), life.is_some(), "value {i}");
    }
    assert_eq!(p.offsets.len(), g.values().len());
    for &i in &placed {
        let off = p.offsets[i].unwrap();
        assert_eq!(off % ARENA_ALIGN, 0, "value {i} at {off} is not aligned");
        assert!(
            off + p.sizes[i] <= p.arena_bytes,
            "value {i} past the arena"
        );
    }
    for (a, &i) in placed.iter().enumerate() {
        for &j in &placed[a + 1..] {
            if p.sizes[i] == 0 || p.sizes[j] == 0 {
                continue;
            }
            let (li, lj) = (lifetimes[i].unwrap(), lifetimes[j].unwrap());
            if !li.intersects(&lj) {
                continue;
            }
            let (oi, oj) = (p.offsets[i].unwrap(), p.offsets[j].unwrap());
            assert!(
                oi + p.sizes[i] <= oj || oj + p.sizes[j] <= oi,
                "values {i} [{oi}, +{}) and {j} [{oj}, +{}) overlap while both alive",
                p.sizes[i],
                p.sizes[j]
            );
        }
    }
    assert!(p.lower_bound <= p.arena_bytes, "{p}");
}

#[test]
fn chain_with_given_sizes() {
    let mut g = Graph::new("chain");
    let x = g.add_input("x", f32_2d(1, 16));
    let a = unary(&mut g, "a", UnaryOp::Relu, x);
    let b = unary(&mut g, "b", UnaryOp::Neg, a);
    let c = unary(&mut g, "c", UnaryOp::Exp, b);
    let d = unary(&mut g, "d", UnaryOp::Abs, c);
    g.outputs.push(d);
    let sizes: HashMap<ValueId, usize> = [(a, 100), (b, 200), (c, 50), (d, 10)].into();
    let p = plan(&g, |v| sizes.get(&v).copied()).unwrap();
    check_plan(&g, &p);
    // b (largest) at 0; a and c overlap b's lifetime: after it, aligned; d only
    // meets c, so it fits below it.
    assert_eq!(p.offset(x), None);
    assert_eq!(p.offset(b), Some(0));
    assert_eq!(p.offset(a), Some(256));
    assert_eq!(p.offset(c), Some(256));
    assert_eq!(p.offset(d), Some(0));
    assert_eq!(p.arena_bytes, 356);
    assert_eq!(p.lower_bound, 300);
}

#[test]
fn chain_from_types_ping_pongs() {
    let mut g = Graph::new("chain");
    let x = g.add_input("x", f32_2d(1, 16));
    let a = unary(&mut g, "a", UnaryOp::Relu, x);
    let b = unary(&mut g, "b", UnaryOp::Relu, a);
    let c = unary(&mut g, "c", UnaryOp::Relu, b);
    g.outputs.push(c);
    let p = plan_from_types(&g).unwrap();
    check_plan(&g, &p);
    assert_eq!(
        [p.offset(a), p.offset(b), p.offset(c)],
        [Some(0), Some(64), Some(0)]
    );
    assert_eq!((p.arena_bytes, p.lower_bound), (128, 128));
}

#[test]
fn diamond() {
    let mut g = Graph::new("diamond");
    let x = g.add_input("x", f32_2d(1, 16));
    let a = unary(&mut g, "a", UnaryOp::Relu, x);
    let b = unary(&mut g, "b", UnaryOp::Neg, a);
    let c = unary(&mut g, "c", UnaryOp::Exp, a);
    let d = binary(&mut g, "d", BinaryOp::Add, b, c);
    g.outputs.push(d);
    let p = plan_from_types(&g).unwrap();
    check_plan(&g, &p);
    assert_eq!(
        p.lifetimes[a.0 as usize],
        Some(Lifetime { start: 0, end: 2 })
    );
    assert_eq!(
        [p.offset(a), p.offset(b), p.offset(c), p.offset(d)],
        [Some(0), Some(64), Some(128), Some(0)]
    );
    // a, b and c are alive together at node c.
    assert_eq!((p.arena_bytes, p.lower_bound), (192, 192));
}

#[test]
fn graph_output_lives_to_the_end() {
    let build = |a_is_output: bool| {
        let mut g = Graph::new("early_output");
        let x = g.add_input("x", f32_2d(1, 16));
        let a = unary(&mut g, "a", UnaryOp::Relu, x);
        let b = unary(&mut g, "b", UnaryOp::Neg, a);
        let c = unary(&mut g, "c", UnaryOp::Exp, b);
        let d = unary(&mut g, "d", UnaryOp::Abs, c);
        if a_is_output {
            g.outputs.push(a);
        }
        g.outputs.push(d);
        (g, a, [b, c, d])
    };
    let (g, a, rest) = build(true);
    let p = plan_from_types(&g).unwrap();
    check_plan(&g, &p);
    assert_eq!(
        p.lifetimes[a.0 as usize],
        Some(Lifetime { start: 0, end: 4 })
    );
    let oa = p.offset(a).unwrap();
    for v in rest {
        let ov = p.offset(v).unwrap();
        assert!(
            ov + 64 <= oa || oa + 64 <= ov,
            "{v:?} overlaps the output a"
        );
    }
    assert_eq!((p.arena_bytes, p.lower_bound), (192, 192));
    // Without a as an output, two buffers suffice.
    let (g, _, _) = build(false);
    let p = plan_from_types(&g).unwrap();
    check_plan(&g, &p);
    assert_eq!((p.arena_bytes, p.lower_bound), (128, 128));
}

#[test]
fn unknown_size_is_an_error_naming_the_value() {
    let mut g = Graph::new("unknown");
    let x = g.add_input("x", f32_2d(1, 16));
    let a = unary(&mut g, "first", UnaryOp::Relu, x);
    let b = unary(&mut g, "second", UnaryOp::Relu, a);
    g.outputs.push(b);
    let err = plan(&g, |v| (v == a).then_some(64)).unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownSize {
            name: "second".into(),
            id: b.0
        }
    );
    assert!(err.to_string().contains("`second`"), "{err}");
    // Symbolic dims have no size from the type.
    let mut g = Graph::new("symbolic");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![kiln_ir::Dim::sym("n")])),
    );
    let a = unary(&mut g, "a", UnaryOp::Relu, x);
    g.outputs.push(a);
    assert!(matches!(
        plan_from_types(&g),
        Err(PlanError::UnknownSize { name, .. }) if name == "a"
    ));
}

#[test]
fn zero_sized_values_take_no_space() {
    let mut g = Graph::new("empty");
    let x = g.add_input("x", f32_2d(0, 16));
    let a = unary(&mut g, "a", UnaryOp::Relu, x);
    let b = unary(&mut g, "b", UnaryOp::Relu, a);
    g.outputs.push(b);
    assert_eq!(type_size(&g.value(a).ty), Some(0));
    let p = plan_from_types(&g).unwrap();
    check_plan(&g, &p);
    assert!(p.offset(a).is_some() && p.offset(b).is_some());
    assert_eq!((p.arena_bytes, p.lower_bound), (0, 0));
}

/// A random DAG of elementwise and matmul nodes over 2-D f32 values.
fn random_dag(seed: u64) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new(format!("random_{seed}"));
    let dim = |rng: &mut StdRng| RANDOM_DIMS[rng.random_range(0..RANDOM_DIMS.len())];
    let mut values: Vec<ValueId> = Vec::new();
    for i in 0..rng.random_range(1..4) {
        let (m, n) = (dim(&mut rng), dim(&mut rng));
        values.push(g.add_input(format!("in{i}"), f32_2d(m, n)));
    }
    let shape = |g: &Graph, v: ValueId| g.value(v).ty.shape.as_known().expect("known shape");
    for i in 0..RANDOM_NODES {
        // Prefer recent values, so lifetimes vary between short and long.
        let pick = |rng: &mut StdRng, values: &[ValueId]| {
            let back = rng.random_range(0..values.len().min(8));
            values[values.len() - 1 - back]
        };
        let x = pick(&mut rng, &values);
        let name = format!("n{i}");
        let out = match rng.random_range(0..3) {
            0 => {
                let op =
                    [UnaryOp::Relu, UnaryOp::Neg, UnaryOp::Exp][rng.random_range(0..3)].clone();
                unary(&mut g, &name, op, x)
            }
            1 => {
                let sx = shape(&g, x);
                let partners: Vec<ValueId> = values
                    .iter()
                    .copied()
                    .filter(|&v| shape(&g, v) == sx)
                    .collect();
                let y = partners[rng.random_range(0..partners.len())];
                binary(&mut g, &name, BinaryOp::Add, x, y)
            }
            _ => {
                let k = shape(&g, x)[1];
                let partners: Vec<ValueId> = values
                    .iter()
                    .copied()
                    .filter(|&v| shape(&g, v)[0] == k)
                    .collect();
                let y = if partners.is_empty() || rng.random_bool(0.3) {
                    let n = dim(&mut rng);
                    g.add_input(format!("w{i}"), f32_2d(k, n))
                } else {
                    partners[rng.random_range(0..partners.len())]
                };
                g.add_node(
                    name.as_str(),
                    Op::Nn(NnOp::MatMul),
                    vec![x, y],
                    std::slice::from_ref(&name),
                    None,
                )
                .expect("valid matmul")[0]
            }
        };
        values.push(out);
    }
    g.outputs.push(*values.last().expect("nodes were added"));
    for _ in 0..rng.random_range(0..3) {
        let v = values[rng.random_range(0..values.len())];
        if matches!(g.value(v).def, ValueDef::Node { .. }) && !g.outputs.contains(&v) {
            g.outputs.push(v);
        }
    }
    kiln_ir::verify(&g).expect("random DAG verifies");
    g
}

#[test]
fn random_dags_keep_the_invariants() {
    let fresh: u64 = rand::rng().random();
    println!("fresh seed: {fresh}");
    let mut worst = (1.0f64, 0u64);
    for seed in (0..FIXED_SEEDS).chain([fresh]) {
        let g = random_dag(seed);
        let p = plan_from_types(&g).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        check_plan(&g, &p);
        assert!(
            p.ratio() <= MAX_RATIO,
            "seed {seed}: arena {} vs lower bound {}",
            p.arena_bytes,
            p.lower_bound
        );
        if p.ratio() > worst.0 {
            worst = (p.ratio(), seed);
        }
    }
    println!(
        "worst arena / lower bound over {} DAGs: {:.3} (seed {})",
        FIXED_SEEDS + 1,
        worst.0,
        worst.1
    );
}

#[test]
fn bert_fixture_plan() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/onnx/bert_torchscript_fixed/model.onnx");
    let g = kiln_frontends::onnx::load(&path).expect("fixture loads");
    let p = plan_from_types(&g).expect("fixed shapes give every size");
    check_plan(&g, &p);
    println!("{}: {} nodes; {p}", g.name, g.nodes().len());
    assert!(p.ratio() <= MAX_RATIO, "{p}");
}
