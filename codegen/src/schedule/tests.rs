//! The scheduler's decisions about what runs where: each host fallback records
//! why, and an invalid kernel is a bug naming its node.

use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, UnaryOp};
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};

use super::*;

fn input(g: &mut Graph, name: &str, dtype: DType, dims: &[usize]) -> ValueId {
    g.add_input(name, TensorType::new(dtype, Shape::known(dims)))
}

fn node(g: &mut Graph, name: &str, op: Op, inputs: &[ValueId]) -> ValueId {
    let out = g
        .add_node(name, op, inputs.to_vec(), &[format!("{name}.y")], None)
        .unwrap()[0];
    g.outputs.push(out);
    out
}

/// The host steps of `g`'s program as `node: reason` lines.
fn host_reasons(g: &Graph) -> Vec<String> {
    schedule(g)
        .unwrap()
        .host_steps()
        .map(|(node, _, reason)| format!("{node}: {reason}"))
        .collect()
}

#[test]
fn low_precision_dtypes_run_on_the_host_and_alias_freely() {
    let mut g = Graph::new("float8");
    let f = input(&mut g, "f", DType::F32, &[2, 3]);
    let q = input(&mut g, "q", DType::I4, &[2, 3]);
    node(
        &mut g,
        "to_f8",
        Op::Layout(LayoutOp::cast(DType::F8E4M3FN)),
        &[f],
    );
    node(
        &mut g,
        "from_i4",
        Op::Layout(LayoutOp::cast(DType::F32)),
        &[q],
    );
    // A view of the same bytes stays an alias.
    node(&mut g, "same", Op::Layout(LayoutOp::Identity), &[q]);
    assert_eq!(
        host_reasons(&g),
        [
            "to_f8: output 0 is f8e4m3fn, which this kernel does not compute",
            "from_i4: input 0 is i4, which this kernel does not compute",
        ]
    );
}

#[test]
fn host_fallbacks_record_their_reason() {
    let mut g = Graph::new("fallbacks");
    let x = input(&mut g, "x", DType::I64, &[2, 3]);
    let f = input(&mut g, "f", DType::F32, &[2, 3]);
    let d = g.add_const("d", Tensor::from_vec(vec![3], vec![2i64, 3, 4]));
    let reps = g.add_const("reps", Tensor::from_vec(vec![2], vec![2i64, 1]));
    let scale = g.add_const("scale", Tensor::from_vec(vec![2, 3], vec![1.0f32; 6]));
    node(&mut g, "div", Op::Binary(BinaryOp::Div), &[x, d]);
    node(&mut g, "tile", Op::Layout(LayoutOp::Tile), &[f, reps]);
    let norm = Op::Composite(CompositeOp::LayerNorm {
        axis: 1,
        epsilon: 1e-5,
    });
    node(&mut g, "norm", norm, &[f, scale]);
    // Generated code: no fallback.
    node(&mut g, "relu", Op::Unary(UnaryOp::Relu), &[f]);
    assert_eq!(
        host_reasons(&g),
        [
            "div: `Div` has no kernel expression for i64",
            "tile: no kernel lowering for `Tile` yet",
            "norm: shape not covered by one kernel: `scale` of shape [2, 3] varies across rows",
        ]
    );
}

#[test]
fn an_invalid_kernel_is_a_bug_naming_its_node() {
    let mut g = Graph::new("bug");
    let x = input(&mut g, "x", DType::F32, &[4]);
    node(&mut g, "relu", Op::Unary(UnaryOp::Relu), &[x]);
    let mut s = Scheduler::new(&g, ScheduleOptions::default()).unwrap();
    // A kernel storing to a buffer it does not declare fails its check.
    let mut k = Kernel::new("bad");
    k.body = vec![crate::kernel::Stmt::Store {
        buf: 0,
        index: crate::kernel::build::idx(0),
        value: crate::kernel::build::idx(0),
    }];
    let bug = s.launch(k, vec![]).unwrap_err();
    let relu = &g.nodes()[0];
    let err = s.settle(relu, Err(NotLowered::Bug(bug))).unwrap_err();
    assert!(matches!(&err, ScheduleError::Bug { node, .. } if node == "relu"));
    assert!(
        err.to_string().starts_with(
            "scheduling node `relu` generated an invalid kernel (a bug in kiln's scheduler): "
        ),
        "{err}"
    );
    // Nothing was scheduled for it: no silent host step.
    assert!(s.prog.steps.is_empty());
}
