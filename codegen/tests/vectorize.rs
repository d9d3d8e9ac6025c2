//! The generated kernels vectorize: the O3 IR of an elementwise chain, a softmax
//! row and a reduction holds vector types, and the machine code computes what
//! the reference interpreter does.

use kiln_codegen::llvm::object::{compile, CpuTarget};
use kiln_codegen::schedule::schedule;
use kiln_ir::op::{BinaryOp, CompositeOp, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::{DType, Graph, Op, Shape, TensorType};

fn graph_with(op: Op, extra: Option<Op>, shape: &[usize]) -> Graph {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::known(shape)));
    let mut y = g.add_node("n0", op, vec![x], &["y".into()], None).unwrap()[0];
    if let Some(e) = extra {
        y = g
            .add_node("n1", e, vec![y, x], &["z".into()], None)
            .unwrap()[0];
    }
    g.outputs.push(y);
    g
}

/// The widest f32 vector in the optimized IR (`<N x float>`), 0 if none.
fn widest_vector(ir: &str) -> usize {
    ir.match_indices(" x float>")
        .filter_map(|(i, _)| {
            let start = ir[..i].rfind('<')?;
            ir[start + 1..i].trim().parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

fn check_vectorized(g: &Graph, what: &str) {
    let program = schedule(g).expect("schedules");
    assert!(
        program.host_ops().is_empty(),
        "{what}: host steps {:?}",
        program.host_ops()
    );
    let object = compile(&program.kernels, &CpuTarget::Host, true).expect("compiles");
    let ir = object.ir.expect("kept");
    let w = widest_vector(&ir);
    println!("{what}: widest f32 vector {w}");
    assert!(w >= 4, "{what}: no f32 vector type in the optimized IR");
}

#[test]
fn elementwise_chain_vectorizes() {
    let g = graph_with(
        Op::Unary(UnaryOp::Tanh),
        Some(Op::Binary(BinaryOp::Mul)),
        &[1031],
    );
    check_vectorized(&g, "tanh(x)·x");
}

#[test]
fn exp_vectorizes() {
    let g = graph_with(Op::Unary(UnaryOp::Exp), None, &[4, 1031]);
    check_vectorized(&g, "exp");
}

#[test]
fn softmax_rows_vectorize() {
    let g = graph_with(
        Op::Composite(CompositeOp::Softmax { axis: 1 }),
        None,
        &[8, 1024],
    );
    check_vectorized(&g, "softmax");
}

#[test]
fn sum_reduction_vectorizes() {
    let op = Op::Reduce(ReduceOp::Reduce {
        kind: ReduceKind::Sum,
        axes: vec![1],
        keepdims: false,
    });
    let g = graph_with(op, None, &[8, 1024]);
    check_vectorized(&g, "row sum");
}
