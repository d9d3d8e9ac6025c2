//! The rule files: they load, every rule is sound, wrong rules are caught, and the
//! rules simplify a small graph under egg's runner.

use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_passes::rules::{check_all, check_rule, CheckFailure, RuleSet};
use kiln_passes::{extract, to_egraph};

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

#[test]
fn every_builtin_rule_loads_with_a_theme_and_a_comment() {
    let set = RuleSet::builtin();
    let names = set.names();
    for expected in [
        "transpose-transpose-2d",
        "reshape-reshape",
        "identity",
        "add-zero",
        "mul-one",
        "cast-same-f32",
        "matmul-distribute",
        "matmul-reassoc-const",
        "matmul-unassoc-const",
        "transpose-compose",
    ] {
        assert!(names.contains(&expected), "missing {expected}: {names:?}");
    }
    assert_eq!(set.themes(), ["layout", "algebra", "bricks"]);
    assert!(set.rules.iter().all(|r| !r.doc.is_empty()));
    assert_eq!(set.rewrites().len(), set.rules.len());
}

#[test]
fn every_builtin_rule_is_sound() {
    let set = RuleSet::builtin();
    let failures: Vec<String> = check_all(&set)
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Fixed seeds too, so a failure there reproduces.
    for rule in &set.rules {
        let report = check_rule(rule, &[1, 2, 3]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.instances, 12, "{report:?}");
        eprintln!(
            "{}: {} instances, e.g. {}",
            report.rule, report.instances, report.example
        );
    }
}

fn load(text: &str) -> RuleSet {
    let mut set = RuleSet::default();
    set.load_from_str("test.rules", "test", text).unwrap();
    set
}

#[test]
fn a_wrong_rule_is_caught_and_named() {
    let set = load(
        ";; wrong on purpose: a - b = b - a\n\
         (rule bad-sub (Sub ?a ?b) (Sub ?b ?a))\n\
         \n\
         ;; wrong on purpose: a 3-D perm is not its own inverse\n\
         (rule bad-perm (Transpose{perm:[0,2,3,1]} (Transpose{perm:[0,2,3,1]} ?x)) ?x)\n",
    );
    for rule in &set.rules {
        match check_rule(rule, &[7]) {
            Err(CheckFailure::Unsound(u)) => {
                assert_eq!(u.rule, rule.name);
                assert_eq!(u.seed, 7);
                assert!(!u.bindings.is_empty());
                assert!(u.to_string().contains(&rule.name), "{u}");
            }
            other => panic!("{} not caught: {other:?}", rule.name),
        }
    }
}

#[test]
fn a_wrong_condition_is_caught() {
    // Without `same-type-as-output`, x + 0 may broadcast x to a larger shape.
    let set = load(";; wrong on purpose\n(rule bad-add-zero (Add ?x ?z) ?x :if (is-zero ?z))\n");
    let err = check_rule(&set.rules[0], &[1, 2, 3, 4]).unwrap_err();
    assert_eq!(err.rule(), "bad-add-zero");
    assert!(matches!(err, CheckFailure::Unsound(_)), "{err}");
}

#[test]
fn syntax_errors_name_file_line_and_rule() {
    let cases = [
        (
            ";; ok\n(rule fine (Identity ?x) ?x)\n\n;; broken\n(rule broken (Identity ?x) ?y)\n",
            5,
            Some("broken"),
            "?y is not bound",
        ),
        (
            ";; c\n(rule cond (Add ?x ?z) ?x :if (is-zer ?z))\n",
            2,
            Some("cond"),
            "unknown condition `is-zer`",
        ),
        (
            ";; c\n(rule op (Frobnicate ?x) ?x)\n",
            2,
            Some("op"),
            "left pattern",
        ),
        (
            "(rule nodoc (Identity ?x) ?x)\n",
            1,
            Some("nodoc"),
            "comment",
        ),
        (";; c\n\n(rule open (Identity ?x) ?x\n", 3, None, "unclosed"),
        (";; c\n(native nope)\n", 2, Some("nope"), "no native rule"),
        (
            ";; c\n(rule dup (Identity ?x) ?x)\n;; c\n(rule dup (Neg (Neg ?x)) ?x)\n",
            4,
            Some("dup"),
            "exists already",
        ),
    ];
    for (text, line, rule, message) in cases {
        let mut set = RuleSet::default();
        let e = set.load_from_str("t.rules", "t", text).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("t.rules", line), "{e}");
        assert_eq!(e.rule.as_deref(), rule, "{e}");
        assert!(e.message.contains(message), "{e}");
        assert!(
            e.to_string().starts_with(&format!("t.rules:{line}: ")),
            "{e}"
        );
    }
}

#[test]
fn saturation_simplifies_transposes_identity_and_add_zero() {
    let mut g = Graph::new("simplify");
    let x = g.add_input("x", f32s(&[3, 4]));
    let zero = g.add_const("zero", Tensor::from_vec(vec![1, 4], vec![0.0f32; 4]));
    let op = |s: &str| Op::from_text(s).unwrap();
    let t1 = g
        .add_node(
            "t1",
            op("Transpose(perm: [1, 0])"),
            vec![x],
            &["t1".into()],
            None,
        )
        .unwrap()[0];
    let t2 = g
        .add_node(
            "t2",
            op("Transpose(perm: [1, 0])"),
            vec![t1],
            &["t2".into()],
            None,
        )
        .unwrap()[0];
    let id = g
        .add_node("id", op("Identity"), vec![t2], &["id".into()], None)
        .unwrap()[0];
    let add = g
        .add_node("add", op("Add"), vec![id, zero], &["y".into()], None)
        .unwrap()[0];
    let relu = g
        .add_node("relu", op("Relu"), vec![add], &["out".into()], None)
        .unwrap()[0];
    g.outputs = vec![relu];

    let mut model = to_egraph(&g);
    let rules = RuleSet::builtin().rewrites();
    let runner = egg::Runner::default()
        .with_egraph(std::mem::take(&mut model.egraph))
        .run(&rules);
    model.egraph = runner.egraph;
    model.roots = model.roots.iter().map(|&r| model.egraph.find(r)).collect();
    let out = extract(&model).unwrap();
    let ops: Vec<&str> = out.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Relu"], "{out:?}");
    assert_eq!(out.nodes()[0].inputs, [out.inputs[0]]);
}

fn saturate(g: &Graph) -> Graph {
    let mut model = to_egraph(g);
    let rules = RuleSet::builtin().rewrites();
    let runner = egg::Runner::default()
        .with_egraph(std::mem::take(&mut model.egraph))
        .run(&rules);
    model.egraph = runner.egraph;
    model.roots = model.roots.iter().map(|&r| model.egraph.find(r)).collect();
    extract(&model).unwrap()
}

#[test]
fn general_transposes_compose_or_cancel() {
    let op = |s: &str| Op::from_text(s).unwrap();
    for (p, q, expected) in [
        ("[2, 0, 1]", "[1, 2, 0]", vec![]),
        ("[1, 0, 2]", "[0, 2, 1]", vec!["Transpose(perm: [1, 2, 0])"]),
    ] {
        let mut g = Graph::new("t");
        let x = g.add_input("x", f32s(&[2, 3, 4]));
        let a = g
            .add_node(
                "a",
                op(&format!("Transpose(perm: {p})")),
                vec![x],
                &["a".into()],
                None,
            )
            .unwrap()[0];
        let b = g
            .add_node(
                "b",
                op(&format!("Transpose(perm: {q})")),
                vec![a],
                &["b".into()],
                None,
            )
            .unwrap()[0];
        g.outputs = vec![b];
        let out = saturate(&g);
        let ops: Vec<String> = out.nodes().iter().map(|n| n.op.to_text()).collect();
        assert_eq!(ops, expected, "{p} then {q}");
        let xs = vec![(
            "x".to_string(),
            Tensor::from_vec(vec![2, 3, 4], (0..24).map(|i| i as f32).collect()),
        )];
        let run = |g: &Graph| kiln_ir::interp::run(g, &xs).unwrap()[0].to_f64_vec();
        assert_eq!(run(&g), run(&out));
    }
}

#[test]
fn quoted_ir_op_text_is_accepted_and_checked() {
    let set = load(
        ";; (xᵀ)ᵀ = x, the op written in IR text form\n\
         (rule tt (\"Transpose(perm: [1, 0])\" (\"Transpose(perm: [1, 0])\" ?x)) ?x)\n",
    );
    let report = check_rule(&set.rules[0], &[5]).unwrap();
    assert_eq!(report.instances, 4);
}

#[test]
fn saturation_merges_two_projections_of_one_input() {
    let op = |s: &str| Op::from_text(s).unwrap();
    let mut g = Graph::new("distribute");
    let x = g.add_input("x", f32s(&[2, 3]));
    let w = |i: usize| Tensor::from_vec(vec![3, 4], (0..12).map(|k| (k * i) as f32).collect());
    let (w1, w2) = (g.add_const("w1", w(1)), g.add_const("w2", w(2)));
    let a = g
        .add_node("a", op("MatMul"), vec![x, w1], &["a".into()], None)
        .unwrap()[0];
    let b = g
        .add_node("b", op("MatMul"), vec![x, w2], &["b".into()], None)
        .unwrap()[0];
    let y = g
        .add_node("y", op("Add"), vec![a, b], &["y".into()], None)
        .unwrap()[0];
    g.outputs = vec![y];
    let out = saturate(&g);
    let ops: Vec<&str> = out.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Add", "MatMul"], "{out:?}");
    let xs = vec![(
        "x".to_string(),
        Tensor::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()),
    )];
    let run = |g: &Graph| kiln_ir::interp::run(g, &xs).unwrap()[0].to_f64_vec();
    assert_eq!(run(&g), run(&out));
}
