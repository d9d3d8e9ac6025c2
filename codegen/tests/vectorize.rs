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

/// Code capped at AVX2 (`CpuTarget::HostAt(V3)`) is compiled without any
/// 512-bit feature, whatever the CPU has; uncapped host code keeps AVX-512
/// where the CPU has it. Both portable levels compile.
#[test]
fn isa_caps_reach_the_code_generator() {
    use kiln_codegen::llvm::isa::{cpu_has, IsaLevel};
    let g = graph_with(
        Op::Unary(UnaryOp::Tanh),
        Some(Op::Binary(BinaryOp::Mul)),
        &[1031],
    );
    let program = schedule(&g).expect("schedules");
    let capped = compile(&program.kernels, &CpuTarget::HostAt(IsaLevel::V3), true).unwrap();
    assert!(
        !capped.features.contains("+avx512") && !capped.features.contains("+amx"),
        "{}",
        capped.features
    );
    assert!(!capped.ir.unwrap().contains("+avx512f"));
    let host = compile(&program.kernels, &CpuTarget::Host, false).unwrap();
    if cpu_has("avx512f") {
        assert!(host.features.contains("+avx512f"), "{}", host.features);
    } else {
        eprintln!("NOTE: this CPU has no AVX-512: uncapped code was not checked to use it");
    }
    for level in [IsaLevel::V3, IsaLevel::V4] {
        let o = compile(
            &program.kernels,
            &CpuTarget::Named(level.llvm_cpu().into()),
            false,
        )
        .unwrap();
        assert_eq!(o.cpu, level.llvm_cpu());
        assert!(!o.object.is_empty());
    }
}

/// Kernels that differ only in their names and their buffers' names (a
/// model's layers) are compiled once: one kernel body in the module, every
/// symbol present, and each symbol runs the shared code on its own buffers.
#[test]
fn identical_kernels_are_compiled_once() {
    use kiln_codegen::llvm::object::LoadedObject;
    let mut g = Graph::new("layers");
    let mut x = g.add_input("x", TensorType::new(DType::F32, Shape::known(&[64])));
    for l in 0..4 {
        // tanh then square: two kinds of kernel, four of each.
        let t = g
            .add_node(
                format!("tanh{l}"),
                Op::Unary(UnaryOp::Tanh),
                vec![x],
                &[format!("t{l}")],
                None,
            )
            .unwrap()[0];
        x = g
            .add_node(
                format!("add{l}"),
                Op::Binary(BinaryOp::Mul),
                vec![t, t],
                &[format!("y{l}")],
                None,
            )
            .unwrap()[0];
    }
    g.outputs.push(x);
    let program = schedule(&g).expect("schedules");
    let names: Vec<&str> = program.kernels.iter().map(|k| k.name.as_str()).collect();
    assert!(names.len() >= 4, "{names:?}");
    let object = compile(&program.kernels, &CpuTarget::Host, true).expect("compiles");
    let ir = object.ir.expect("kept");
    // Two kinds of kernel (tanh, square): each other symbol is a forwarder.
    let forwarders = ir.matches("tail call void @k").count();
    assert_eq!(
        forwarders,
        names.len() - 2,
        "{} kernels:\n{ir}",
        names.len()
    );
    let loaded = LoadedObject::load(&object.object).unwrap();
    let input: Vec<f32> = (0..64).map(|i| i as f32 / 32.0 - 1.0).collect();
    for name in names {
        let f = loaded.kernel(name).unwrap();
        let mut out = vec![0f32; 64];
        let table = [input.as_ptr() as *mut u8, out.as_mut_ptr() as *mut u8];
        let k = program.kernels.iter().find(|k| k.name == name).unwrap();
        // SAFETY: each kernel reads 64 floats from its first buffer (twice for
        // the square: the same buffer bound to both operands below) and writes
        // 64 to its last.
        let table: Vec<*mut u8> = match k.buffers.len() {
            2 => table.to_vec(),
            _ => vec![table[0], table[0], table[1]],
        };
        unsafe { f(table.as_ptr(), 0, k.parallel_extent()) };
        let square = k.buffers.len() == 3;
        for (o, &v) in out.iter().zip(&input) {
            let want = if square { v * v } else { v.tanh() };
            assert!((o - want).abs() <= 1e-6, "{name}: {o} vs {want}");
        }
    }
}
