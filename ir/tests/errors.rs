//! Typed errors: inference and evaluation failures carry an `ErrorKind` that
//! callers match on (shape vs dtype vs value vs a tensor over the size limit)
//! instead of parsing messages, and the node is named where a graph is involved.

use kiln_ir::interp::{eval_op, run, EvalError};
use kiln_ir::op::{BinaryOp, LayoutOp, NnOp};
use kiln_ir::{DType, ErrorKind, Graph, Op, Shape, Tensor, TensorType};

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

#[test]
fn a_node_whose_operands_do_not_broadcast_is_a_shape_error() {
    let mut g = Graph::new("g");
    let a = g.add_input("a", f32s(&[2, 3]));
    let b = g.add_input("b", f32s(&[4]));
    let err = g
        .add_node(
            "add",
            Op::Binary(BinaryOp::Add),
            vec![a, b],
            &["y".to_string()],
            None,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Shape, "{err}");
    assert_eq!(err.node, "add");
    assert!(err.to_string().starts_with("node `add` (Add): "), "{err}");
}

#[test]
fn operands_of_different_dtypes_are_a_dtype_error() {
    let a = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]);
    let b = Tensor::from_vec(vec![2, 1], vec![1i64, 2]);
    let err = eval_op(&Op::Nn(NnOp::MatMul), &[&a, &b], 1).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DType, "{err}");
}

#[test]
fn integer_division_by_zero_is_a_value_error() {
    let a = Tensor::from_vec(vec![2], vec![1i64, 2]);
    let b = Tensor::from_vec(vec![2], vec![1i64, 0]);
    let err = eval_op(&Op::Binary(BinaryOp::Div), &[&a, &b], 1).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Value, "{err}");
}

#[test]
fn a_tensor_over_the_size_limit_is_too_large_and_names_its_node() {
    // ConstantOfShape of a shape that is a graph input: inference cannot see
    // the size, evaluation refuses it before allocating.
    let mut g = Graph::new("g");
    let shape = g.add_input("shape", TensorType::new(DType::I64, Shape::known(&[3])));
    let y = g
        .add_node(
            "fill",
            Op::Layout(LayoutOp::ConstantOfShape {
                dtype: DType::F32,
                value: 1.0,
            }),
            vec![shape],
            &["y".to_string()],
            None,
        )
        .unwrap();
    g.outputs.push(y[0]);
    let huge = Tensor::from_vec(vec![3], vec![1i64 << 20, 1 << 20, 1 << 20]);
    let err = run(&g, &[("shape".to_string(), huge)]).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::TooLarge), "{err}");
    assert!(
        matches!(&err, EvalError::Node { node, .. } if node == "fill"),
        "{err}"
    );
}

#[test]
fn input_errors_have_no_node_kind() {
    let mut g = Graph::new("g");
    let a = g.add_input("a", f32s(&[2]));
    g.outputs.push(a);
    let err = run(&g, &[]).unwrap_err();
    assert!(matches!(err, EvalError::MissingInput(_)), "{err}");
    assert_eq!(err.kind(), None);
}

#[test]
fn every_kind_has_a_name() {
    for kind in [
        ErrorKind::Unsupported,
        ErrorKind::Shape,
        ErrorKind::DType,
        ErrorKind::Attribute,
        ErrorKind::Value,
        ErrorKind::TooLarge,
    ] {
        assert!(!kind.name().is_empty());
    }
}
