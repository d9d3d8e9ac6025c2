//! The GPU runtime on the simulated device: the same executable code that runs
//! on a GPU (resident device buffers, uploads, launches, host and library
//! steps between copies, graph capture and replay), checked against the
//! reference interpreter over several runs with fresh inputs.

use kiln::cpu::Build;
use kiln::ir::op::{BinaryOp, CompositeOp, NnOp, UnaryOp};
use kiln::ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType};
use kiln_codegen::gpu::program::LowerOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
    Tensor::from_vec(shape.to_vec(), v)
}

/// `softmax(relu(x) + y)` (kernels only, no matrix product when `matmul` is
/// false), or `softmax(x · w)` (a GEMM step).
fn graph(matmul: bool) -> Graph {
    let mut g = Graph::new("gpu-runtime");
    let f32_of = |s: &[usize]| TensorType::new(DType::F32, Shape::known(s));
    let x = g.add_input("x", f32_of(&[6, 40]));
    let z = if matmul {
        let w = g.add_input("w", f32_of(&[40, 24]));
        g.add_node("mm", Op::Nn(NnOp::MatMul), vec![x, w], &["mm".into()], None)
            .unwrap()[0]
    } else {
        let y = g.add_input("y", f32_of(&[6, 40]));
        let r = g
            .add_node(
                "relu",
                Op::Unary(UnaryOp::Relu),
                vec![x],
                &["relu".into()],
                None,
            )
            .unwrap()[0];
        g.add_node(
            "add",
            Op::Binary(BinaryOp::Add),
            vec![r, y],
            &["sum".into()],
            None,
        )
        .unwrap()[0]
    };
    let s = g
        .add_node(
            "softmax",
            Op::Composite(CompositeOp::Softmax { axis: 1 }),
            vec![z],
            &["probs".into()],
            None,
        )
        .unwrap()[0];
    g.outputs.push(s);
    g
}

fn inputs(rng: &mut StdRng, matmul: bool) -> Vec<(String, Tensor)> {
    let second = if matmul {
        ("w", [40, 24])
    } else {
        ("y", [6, 40])
    };
    vec![
        ("x".into(), random(rng, &[6, 40])),
        (second.0.into(), random(rng, &second.1)),
    ]
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    assert_eq!(g.len(), w.len(), "{what}");
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// Runs `graph` three times on the simulated GPU with fresh inputs (GEMMs as
/// library steps when `library`); returns whether the executable ended up
/// replaying a captured graph.
fn three_runs(matmul: bool, library: bool) -> bool {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let g = graph(matmul);
    let shapes = [vec![6, 40], if matmul { vec![40, 24] } else { vec![6, 40] }];
    let options = LowerOptions {
        library_gemm_min_macs: library.then_some(0),
    };
    let build = kiln::cpu::build_simulated_with(&g, &shapes, 2, options).unwrap();
    let Build::Gpu(exe) = &build else {
        panic!("not a GPU build")
    };
    let (_, library_steps, _) = exe.gpu_program().step_counts();
    assert_eq!(library_steps, usize::from(matmul && library));
    let mut graphs = Vec::new();
    for run in 0..3 {
        let named = inputs(&mut rng, matmul);
        let want = interp::run(&g, &named).unwrap();
        let ordered: Vec<Tensor> = named.iter().map(|(_, t)| t.clone()).collect();
        let got = exe.run(&ordered).unwrap();
        assert_close(&got[0], &want[0], &format!("run {run}"));
        graphs.push(exe.uses_graph());
    }
    assert!(!graphs[0], "the first run is never captured");
    assert_eq!(graphs[1], graphs[2]);
    graphs[2]
}

#[test]
fn a_kernel_only_program_is_captured_at_the_second_run_and_replayed_with_new_inputs() {
    assert!(three_runs(false, false));
    assert!(three_runs(true, false), "a GEMM kernel is captured too");
}

#[test]
fn a_program_with_a_library_step_runs_step_by_step() {
    assert!(!three_runs(true, true));
}
