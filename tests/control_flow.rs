//! Control flow (`If`, `Loop`, `Scan`) through every path: the reference
//! interpreter (the oracle), the optimizer, the CPU backend (subgraphs
//! compiled into body programs, no host step) and the simulated GPU, on
//! random inputs from a fixed and a fresh seed (`KILN_TEST_SEED=<n>` reruns
//! one). Also the text form's round trip and the fallbacks: a loop whose
//! carried value grows runs on the interpreter, correctly.

use kiln::cpu::Build;
use kiln::ir::op::{BinaryOp, ControlOp, LayoutOp, NnOp, ReduceKind, ReduceOp, Subgraph, UnaryOp};
use kiln::ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use kiln::{CompileOptions, Model, Target};
use kiln_codegen::program::Step;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("KILN_TEST_SEED") {
        return vec![s.parse().expect("KILN_TEST_SEED must be an integer")];
    }
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh} (reproduce with KILN_TEST_SEED={fresh})");
    vec![0x6b69_6c6e, fresh]
}

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

fn scalar(dtype: DType) -> TensorType {
    TensorType::new(dtype, Shape::default())
}

fn random(rng: &mut StdRng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
}

fn node(g: &mut Graph, op: Op, inputs: &[ValueId], name: &str) -> ValueId {
    nodes(g, op, inputs, &[name])[0]
}

fn nodes(g: &mut Graph, op: Op, inputs: &[ValueId], names: &[&str]) -> Vec<ValueId> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    g.add_node(names[0].clone(), op, inputs.to_vec(), &names, None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `g` on `inputs` through every target and compares with the reference;
/// unless `interpreted`, the CPU build must be native with a compiled control
/// step and no host step.
fn check(case: &str, g: &Graph, inputs: &[(String, Tensor)], interpreted: bool) {
    kiln::ir::verify(g).unwrap_or_else(|e| panic!("{case}: invalid graph: {e}"));
    let want = interp::run(g, inputs).unwrap_or_else(|e| panic!("{case}: reference: {e}"));
    for (target, optimize, threads) in [
        (Target::Cpu, false, 1),
        (Target::Cpu, true, 2),
        (Target::CudaSim, true, 1),
    ] {
        let what = format!("{case} [{target}, optimize {optimize}, {threads} threads]");
        let exe = Model::from_graph(g.clone())
            .compile_with(
                &target,
                &CompileOptions {
                    threads: Some(threads),
                    optimize,
                    isa: None,
                },
            )
            .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
        if target == Target::Cpu {
            let shapes: Vec<Vec<usize>> = inputs.iter().map(|(_, t)| t.shape().to_vec()).collect();
            let build = exe
                .cpu_build(&shapes)
                .unwrap_or_else(|e| panic!("{what}: build: {e}"))
                .expect("a CPU build");
            match (&*build, interpreted) {
                (Build::Native(e), false) => {
                    let steps = &e.program().steps;
                    assert!(
                        steps.iter().any(|s| matches!(s, Step::Control(_))),
                        "{what}: no compiled control step"
                    );
                    let host: Vec<&str> = steps
                        .iter()
                        .filter_map(|s| match s {
                            Step::Host { node, .. } => Some(node.as_str()),
                            _ => None,
                        })
                        .collect();
                    assert!(host.is_empty(), "{what}: host steps {host:?}");
                }
                (Build::Interpreted { .. }, true) => {}
                (Build::Interpreted { reason, .. }, false) => {
                    panic!("{what}: interpreted: {reason}")
                }
                (_, true) => panic!("{what}: compiled, expected the interpreter"),
                _ => panic!("{what}: unexpected build"),
            }
        }
        let got = exe
            .run(inputs)
            .unwrap_or_else(|e| panic!("{what}: run: {e}"));
        assert_eq!(got.len(), want.len(), "{what}: output count");
        for ((name, got), want) in got.iter().zip(&want) {
            assert_eq!(got.shape(), want.shape(), "{what}: `{name}` shape");
            assert_eq!(got.dtype(), want.dtype(), "{what}: `{name}` dtype");
            for (i, (a, b)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
                    "{what}: `{name}` element {i} is {a}, expected {b}"
                );
            }
        }
    }
}

/// `y ← tanh(y·W + x)` for `m` iterations (`W`, `x` captured), each
/// iteration's `y` stacked as a scan output: an RNN cell written as a loop.
fn rnn_loop(m: i64) -> Graph {
    let (b, d) = (4, 8);
    let mut body = Graph::new("rnn_body");
    body.add_input("i", scalar(DType::I64));
    let cond = body.add_input("cond", scalar(DType::Bool));
    let y = body.add_input("y", f32t(&[b, d]));
    let w = body.add_input("w", f32t(&[d, d]));
    let x = body.add_input("x", f32t(&[b, d]));
    let p = node(&mut body, Op::Nn(NnOp::MatMul), &[y, w], "p");
    let s = node(&mut body, Op::Binary(BinaryOp::Add), &[p, x], "s");
    let y2 = node(&mut body, Op::Unary(UnaryOp::Tanh), &[s], "y2");
    let scan = node(&mut body, Op::Unary(UnaryOp::Neg), &[y2], "scan");
    body.outputs = vec![cond, y2, scan];

    let mut g = Graph::new("rnn");
    let x = g.add_input("x", f32t(&[b, d]));
    let w = g.add_input("w", f32t(&[d, d]));
    let y0 = g.add_input("y0", f32t(&[b, d]));
    let trips = g.add_const("m", Tensor::scalar(m));
    let outs = nodes(
        &mut g,
        Op::Control(ControlOp::Loop {
            body: Subgraph::new(body),
            has_trip_count: true,
            has_cond: false,
            num_carried: 1,
        }),
        &[trips, y0, w, x],
        &["y_final", "ys"],
    );
    g.outputs = outs;
    g
}

#[test]
fn an_rnn_loop_matches_the_reference() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        for m in [0, 1, 7] {
            let g = rnn_loop(m);
            let inputs = vec![
                ("x".to_string(), random(&mut rng, &[4, 8])),
                ("w".to_string(), random(&mut rng, &[8, 8])),
                ("y0".to_string(), random(&mut rng, &[4, 8])),
            ];
            check(&format!("rnn loop m={m} seed {seed}"), &g, &inputs, false);
        }
    }
}

/// A while loop: `y ← y·0.5 + x` while `i < limit` (the body computes its
/// condition from the iteration number and an input); no scan output, so
/// the result's shape is known although the count is not.
fn while_loop() -> Graph {
    let mut body = Graph::new("while_body");
    let i = body.add_input("i", scalar(DType::I64));
    body.add_input("cond", scalar(DType::Bool));
    let y = body.add_input("y", f32t(&[3, 5]));
    let x = body.add_input("x", f32t(&[3, 5]));
    let limit = body.add_input("limit", scalar(DType::I64));
    let half = body.add_const("half", Tensor::scalar(0.5f32));
    let one = body.add_const("one", Tensor::scalar(1i64));
    let h = node(&mut body, Op::Binary(BinaryOp::Mul), &[y, half], "h");
    let y2 = node(&mut body, Op::Binary(BinaryOp::Add), &[h, x], "y2");
    let next = node(&mut body, Op::Binary(BinaryOp::Add), &[i, one], "next");
    let c = node(&mut body, Op::Binary(BinaryOp::Less), &[next, limit], "c");
    body.outputs = vec![c, y2];

    let mut g = Graph::new("while");
    let x = g.add_input("x", f32t(&[3, 5]));
    let limit = g.add_input("limit", scalar(DType::I64));
    let y0 = g.add_const("y0", Tensor::zeros(DType::F32, vec![3, 5]));
    let start = g.add_const("start", Tensor::from_i64(DType::Bool, vec![], &[1]));
    let big = g.add_const("max", Tensor::scalar(100i64));
    let out = nodes(
        &mut g,
        Op::Control(ControlOp::Loop {
            body: Subgraph::new(body),
            has_trip_count: true,
            has_cond: true,
            num_carried: 1,
        }),
        &[big, start, y0, x, limit],
        &["y"],
    );
    g.outputs = out;
    g
}

#[test]
fn a_while_loop_stops_on_its_condition() {
    let g = while_loop();
    let mut rng = StdRng::seed_from_u64(7);
    for limit in [1i64, 4, 200] {
        let inputs = vec![
            ("x".to_string(), random(&mut rng, &[3, 5])),
            ("limit".to_string(), Tensor::scalar(limit)),
        ];
        check(&format!("while limit={limit}"), &g, &inputs, false);
    }
}

/// A scan over two inputs (one along axis 1 read backwards, one along axis
/// 0), a state and a capture; the scan output stacked along axis 2, written
/// backwards.
fn scan_graph() -> Graph {
    let mut body = Graph::new("scan_body");
    let s = body.add_input("s", f32t(&[2, 3]));
    let a = body.add_input("a", f32t(&[2, 3]));
    let z = body.add_input("z", f32t(&[3]));
    let c = body.add_input("c", f32t(&[3]));
    let ac = node(&mut body, Op::Binary(BinaryOp::Mul), &[a, c], "ac");
    let t = node(&mut body, Op::Binary(BinaryOp::Add), &[s, ac], "t");
    let s2 = node(&mut body, Op::Binary(BinaryOp::Add), &[t, z], "s2");
    let two = body.add_const("two", Tensor::scalar(2.0f32));
    let y = node(&mut body, Op::Binary(BinaryOp::Mul), &[s2, two], "y");
    body.outputs = vec![s2, y];

    let mut g = Graph::new("scan");
    let s0 = g.add_input("s0", f32t(&[2, 3]));
    let a = g.add_input("a", f32t(&[2, 6, 3]));
    let z = g.add_input("z", f32t(&[6, 3]));
    let c = g.add_input("c", f32t(&[3]));
    let outs = nodes(
        &mut g,
        Op::Control(ControlOp::Scan {
            body: Subgraph::new(body),
            num_state: 1,
            num_scan_inputs: 2,
            input_axes: vec![1, 0],
            input_reverse: vec![true, false],
            output_axes: vec![2],
            output_reverse: vec![true],
        }),
        &[s0, a, z, c],
        &["s_final", "ys"],
    );
    g.outputs = outs;
    g
}

#[test]
fn a_scan_with_axes_and_directions_matches_the_reference() {
    for seed in seeds() {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = vec![
            ("s0".to_string(), random(&mut rng, &[2, 3])),
            ("a".to_string(), random(&mut rng, &[2, 6, 3])),
            ("z".to_string(), random(&mut rng, &[6, 3])),
            ("c".to_string(), random(&mut rng, &[3])),
        ];
        check(&format!("scan seed {seed}"), &scan_graph(), &inputs, false);
    }
}

/// `sum(x) > 0 ? relu(x)·2 : x - w`: a condition known only at run time.
fn if_graph() -> Graph {
    let shape = [4, 33];
    let mut then_b = Graph::new("then");
    let x = then_b.add_input("x", f32t(&shape));
    then_b.add_input("w", f32t(&shape));
    let two = then_b.add_const("two", Tensor::scalar(2.0f32));
    let r = node(&mut then_b, Op::Unary(UnaryOp::Relu), &[x], "r");
    let t = node(&mut then_b, Op::Binary(BinaryOp::Mul), &[r, two], "t");
    then_b.outputs = vec![t];
    let mut else_b = Graph::new("else");
    let x = else_b.add_input("x", f32t(&shape));
    let w = else_b.add_input("w", f32t(&shape));
    let e = node(&mut else_b, Op::Binary(BinaryOp::Sub), &[x, w], "e");
    else_b.outputs = vec![e];

    let mut g = Graph::new("if");
    let x = g.add_input("x", f32t(&shape));
    let w = g.add_input("w", f32t(&shape));
    let sum = node(
        &mut g,
        Op::Reduce(ReduceOp::Reduce {
            kind: ReduceKind::Sum,
            axes: vec![0, 1],
            keepdims: false,
        }),
        &[x],
        "sum",
    );
    let zero = g.add_const("zero", Tensor::scalar(0.0f32));
    let cond = node(&mut g, Op::Binary(BinaryOp::Greater), &[sum, zero], "cond");
    let out = nodes(
        &mut g,
        Op::Control(ControlOp::If {
            then_branch: Subgraph::new(then_b),
            else_branch: Subgraph::new(else_b),
        }),
        &[cond, x, w],
        &["y"],
    );
    g.outputs = out;
    g
}

#[test]
fn an_if_takes_the_branch_its_condition_chooses() {
    let g = if_graph();
    let mut rng = StdRng::seed_from_u64(11);
    for sign in [1.0f32, -1.0] {
        let x = random(&mut rng, &[4, 33]);
        let x = Tensor::from_vec(
            vec![4, 33],
            x.to_f32_vec().iter().map(|v| v.abs() * sign).collect(),
        );
        let inputs = vec![
            ("x".to_string(), x),
            ("w".to_string(), random(&mut rng, &[4, 33])),
        ];
        check(&format!("if sign {sign}"), &g, &inputs, false);
    }
}

#[test]
fn a_loop_inside_a_loop_is_compiled() {
    // The outer body runs the RNN loop (3 steps) on its carried value.
    let inner = rnn_loop(3);
    let mut body = Graph::new("outer_body");
    body.add_input("i", scalar(DType::I64));
    let cond = body.add_input("cond", scalar(DType::Bool));
    let y = body.add_input("y", f32t(&[4, 8]));
    let w = body.add_input("w", f32t(&[8, 8]));
    let x = body.add_input("x", f32t(&[4, 8]));
    let three = body.add_const("three", Tensor::scalar(3i64));
    let Op::Control(inner_loop) = inner.nodes()[0].op.clone() else {
        unreachable!()
    };
    let outs = nodes(
        &mut body,
        Op::Control(inner_loop),
        &[three, y, w, x],
        &["y_in", "ys_in"],
    );
    body.outputs = vec![cond, outs[0]];
    let mut g = Graph::new("nested");
    let x = g.add_input("x", f32t(&[4, 8]));
    let w = g.add_input("w", f32t(&[8, 8]));
    let y0 = g.add_input("y0", f32t(&[4, 8]));
    let trips = g.add_const("m", Tensor::scalar(2i64));
    let out = nodes(
        &mut g,
        Op::Control(ControlOp::Loop {
            body: Subgraph::new(body),
            has_trip_count: true,
            has_cond: false,
            num_carried: 1,
        }),
        &[trips, y0, w, x],
        &["y"],
    );
    g.outputs = out;
    let mut rng = StdRng::seed_from_u64(3);
    let inputs = vec![
        ("x".to_string(), random(&mut rng, &[4, 8])),
        ("w".to_string(), random(&mut rng, &[8, 8])),
        ("y0".to_string(), random(&mut rng, &[4, 8])),
    ];
    check("nested loops", &g, &inputs, false);
}

#[test]
fn a_growing_loop_carried_value_runs_on_the_interpreter() {
    // y ← concat(y, y): the carried shape doubles every iteration.
    let mut body = Graph::new("grow");
    body.add_input("i", scalar(DType::I64));
    let cond = body.add_input("cond", scalar(DType::Bool));
    let y = body.add_input("y", f32t(&[2]));
    let y2 = node(
        &mut body,
        Op::Layout(LayoutOp::Concat { axis: 0 }),
        &[y, y],
        "y2",
    );
    body.outputs = vec![cond, y2];
    let mut g = Graph::new("growing");
    let y0 = g.add_input("y0", f32t(&[2]));
    let trips = g.add_const("m", Tensor::scalar(3i64));
    let out = nodes(
        &mut g,
        Op::Control(ControlOp::Loop {
            body: Subgraph::new(body),
            has_trip_count: true,
            has_cond: false,
            num_carried: 1,
        }),
        &[trips, y0],
        &["y"],
    );
    g.outputs = out;
    assert_eq!(g.value(g.outputs[0]).ty.shape.to_string(), "[?]");
    let inputs = vec![(
        "y0".to_string(),
        Tensor::from_vec(vec![2], vec![1.0f32, 2.0]),
    )];
    let want = interp::run(&g, &inputs).unwrap();
    assert_eq!(want[0].shape(), &[16]);
    check("growing loop", &g, &inputs, true);
}

#[test]
fn control_flow_survives_the_text_form() {
    for g in [rnn_loop(5), while_loop(), scan_graph(), if_graph()] {
        let text = kiln::ir::text::print(&g);
        let back =
            kiln::ir::text::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", g.name));
        assert_eq!(back, g, "{}", g.name);
    }
}

#[test]
fn exported_torch_loops_compile_to_body_programs() {
    // PyTorch's TorchScript exports (scripts/make_control_fixtures.py): the
    // trip count comes from the input's shape, so once specialized the loop
    // has static shapes and runs as compiled bodies, no step on the host.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/control");
    for (name, shapes) in [
        ("rnn_loop", vec![vec![6, 2, 8], vec![2, 8]]),
        (
            "lstm_cell_loop",
            vec![vec![6, 2, 8], vec![2, 8], vec![2, 8]],
        ),
        ("cond_script", vec![vec![2, 8]]),
    ] {
        let model = Model::load(dir.join(format!("{name}.onnx"))).unwrap();
        let exe = model
            .compile_with(&Target::Cpu, &CompileOptions::default())
            .unwrap();
        let build = exe.cpu_build(&shapes).unwrap().expect("a CPU build");
        let Build::Native(e) = &*build else {
            panic!("{name}: not compiled")
        };
        let steps = &e.program().steps;
        assert!(
            steps.iter().any(|s| matches!(s, Step::Control(_))),
            "{name}"
        );
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Host { .. })),
            "{name}: {}",
            e.program().to_text()
        );
    }
}

#[test]
fn artifacts_keep_compiled_loops() {
    // A `.kiln` artifact stores the body programs with the enclosing one
    // (their kernels in the same object, their constants after its own).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/control/lstm_cell_loop.onnx");
    let model = Model::load(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("lstm.kiln");
    let dims = std::collections::HashMap::from([("steps".to_string(), 7usize)]);
    kiln::aot::compile_model(&model, &art, &dims, "native", Some(1)).unwrap();
    let exe = kiln::Executable::load_artifact(&art, Some(1)).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let inputs = vec![
        ("x".to_string(), random(&mut rng, &[7, 2, 8])),
        ("h0".to_string(), random(&mut rng, &[2, 8])),
        ("c0".to_string(), random(&mut rng, &[2, 8])),
    ];
    let want = model.run(&inputs).unwrap();
    let got = exe.run(&inputs).unwrap();
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        for (a, b) in g.to_f64_vec().iter().zip(w.to_f64_vec()) {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
                "`{name}`: {a} vs {b}"
            );
        }
    }
}

#[test]
fn an_if_on_a_shape_is_inlined_once_shapes_are_known() {
    // cond = size(x) > 4: unknown at import (x's dim is symbolic), a constant
    // once the build binds it, when the chosen branch is inlined.
    let mut then_b = Graph::new("then");
    let x = then_b.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![kiln::ir::Dim::sym("n")])),
    );
    let t = node(&mut then_b, Op::Unary(UnaryOp::Neg), &[x], "t");
    then_b.outputs = vec![t];
    let mut else_b = Graph::new("else");
    let x = else_b.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![kiln::ir::Dim::sym("n")])),
    );
    let e = node(&mut else_b, Op::Unary(UnaryOp::Abs), &[x], "e");
    else_b.outputs = vec![e];
    let mut g = Graph::new("shape_if");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![kiln::ir::Dim::sym("n")])),
    );
    let size = node(&mut g, Op::Layout(LayoutOp::Size), &[x], "size");
    let four = g.add_const("four", Tensor::scalar(4i64));
    let cond = node(&mut g, Op::Binary(BinaryOp::Greater), &[size, four], "cond");
    let out = nodes(
        &mut g,
        Op::Control(ControlOp::If {
            then_branch: Subgraph::new(then_b),
            else_branch: Subgraph::new(else_b),
        }),
        &[cond, x],
        &["y"],
    );
    g.outputs = out;
    let exe = Model::from_graph(g.clone())
        .compile_with(&Target::Cpu, &CompileOptions::default())
        .unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    for n in [3usize, 6] {
        let x = random(&mut rng, &[n]);
        let inputs = vec![("x".to_string(), x)];
        let want = interp::run(&g, &inputs).unwrap();
        let build = exe.cpu_build(&[vec![n]]).unwrap().expect("a CPU build");
        let Build::Native(e) = &*build else {
            panic!("n={n}: not compiled")
        };
        assert!(
            e.program()
                .steps
                .iter()
                .all(|s| !matches!(s, Step::Control(_) | Step::Host { .. })),
            "n={n}: the branch was not inlined"
        );
        let got = exe.run(&inputs).unwrap();
        assert_eq!(got[0].1.to_f32_vec(), want[0].to_f32_vec(), "n={n}");
    }
}

#[test]
fn a_trip_count_of_any_integer_type_is_read_as_such() {
    // The importer casts ONNX's trip count to i64; a graph built otherwise may
    // give an i32 one at run time.
    let Op::Control(body_loop) = rnn_loop(1).nodes()[0].op.clone() else {
        unreachable!()
    };
    let mut g = Graph::new("i32_trips");
    let x = g.add_input("x", f32t(&[4, 8]));
    let w = g.add_input("w", f32t(&[8, 8]));
    let y0 = g.add_input("y0", f32t(&[4, 8]));
    let m = g.add_input("m", scalar(DType::I32));
    // No scan output is read: the final carried value only.
    let outs = nodes(&mut g, Op::Control(body_loop), &[m, y0, w, x], &["y_final"]);
    g.outputs = outs;
    let mut rng = StdRng::seed_from_u64(21);
    for trips in [0i32, 5] {
        let inputs = vec![
            ("x".to_string(), random(&mut rng, &[4, 8])),
            ("w".to_string(), random(&mut rng, &[8, 8])),
            ("y0".to_string(), random(&mut rng, &[4, 8])),
            ("m".to_string(), Tensor::scalar(trips)),
        ];
        check(&format!("i32 trip count {trips}"), &g, &inputs, false);
    }
}

#[test]
fn unlisted_scan_outputs_are_computed_and_dropped() {
    // ONNX lets a node leave trailing outputs out: the body still writes them.
    let full = scan_graph();
    let Op::Control(scan) = full.nodes()[0].op.clone() else {
        unreachable!()
    };
    let mut g = Graph::new("scan_state_only");
    let s0 = g.add_input("s0", f32t(&[2, 3]));
    let a = g.add_input("a", f32t(&[2, 6, 3]));
    let z = g.add_input("z", f32t(&[6, 3]));
    let c = g.add_input("c", f32t(&[3]));
    let outs = nodes(&mut g, Op::Control(scan), &[s0, a, z, c], &["s_final"]);
    g.outputs = outs;
    let mut rng = StdRng::seed_from_u64(33);
    let inputs = vec![
        ("s0".to_string(), random(&mut rng, &[2, 3])),
        ("a".to_string(), random(&mut rng, &[2, 6, 3])),
        ("z".to_string(), random(&mut rng, &[6, 3])),
        ("c".to_string(), random(&mut rng, &[3])),
    ];
    check("scan, state only", &g, &inputs, false);
}
