//! The op property table ([`Op::maps_zero_to_zero`], [`Op::fused_role`],
//! [`Op::moves_data_only`], [`Op::shape_operands`]) checked against the reference
//! interpreter and against itself.

use kiln_ir::interp::eval_op;
use kiln_ir::op::FusedRole;
use kiln_ir::{DType, Op, Tensor};

/// Every unary op without attributes.
const PLAIN_UNARY: &str = "Neg Abs Sqrt Exp Log Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh \
    Acosh Atanh Tanh Sigmoid Relu Erf Reciprocal Floor Ceil Round Sign Not BitwiseNot IsNaN \
    Softplus Softsign Mish HardSwish";

/// Every unary op with attributes, on both sides of each attribute-dependent case.
const UNARY_WITH_ATTRIBUTES: &[&str] = &[
    "IsInf(pos: true, neg: true)",
    "LeakyRelu(alpha: 0.1)",
    "Elu(alpha: 1.0)",
    "Selu(alpha: 1.67, gamma: 1.05)",
    "Celu(alpha: 1.0)",
    "HardSigmoid(alpha: 0.2, beta: 0.5)",
    "HardSigmoid(alpha: 0.2, beta: 0.0)",
    "HardSigmoid(alpha: 0.2, beta: -0.5)",
    "ThresholdedRelu(alpha: 1.0)",
    "ThresholdedRelu(alpha: -1.0)",
    "Shrink(bias: 0.5, lambd: 0.5)",
    "Shrink(bias: 0.5, lambd: -1.0)",
    "Shrink(bias: 0.0, lambd: -1.0)",
    "Gelu(tanh: false)",
    "Gelu(tanh: true)",
];

/// Every binary op.
const BINARY: &str = "Add Sub Mul Div Pow Max Min Mod(fmod:false) Mod(fmod:true) PRelu Equal \
    Less LessOrEqual Greater GreaterOrEqual And Or Xor BitShiftLeft BitShiftRight BitwiseAnd \
    BitwiseOr BitwiseXor";

/// The unary ops' texts.
fn unary() -> Vec<&'static str> {
    PLAIN_UNARY
        .split_whitespace()
        .chain(UNARY_WITH_ATTRIBUTES.iter().copied())
        .collect()
}

/// The binary ops' texts.
fn binary() -> Vec<&'static str> {
    BINARY.split_whitespace().collect()
}

/// The dtypes each op is tried on (those the interpreter refuses are skipped).
const DTYPES: [DType; 4] = [DType::F32, DType::F64, DType::I64, DType::Bool];

fn op(text: &str) -> Op {
    Op::from_text(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// For each dtype the interpreter accepts: whether `op` of `arity` all-zero operands
/// gives all zeros.
fn zeros_give_zeros(op: &Op, arity: usize) -> Vec<(DType, bool)> {
    DTYPES
        .iter()
        .filter_map(|&dt| {
            let zero = Tensor::zeros(dt, vec![3]);
            let inputs = vec![&zero; arity];
            let out = eval_op(op, &inputs, 1).ok()?;
            Some((dt, out[0].to_f64_vec().iter().all(|&v| v == 0.0)))
        })
        .collect()
}

#[test]
fn maps_zero_to_zero_agrees_with_the_interpreter() {
    for (texts, arity) in [(unary(), 1), (binary(), 2)] {
        for text in texts {
            let op = op(text);
            let seen = zeros_give_zeros(&op, arity);
            assert!(!seen.is_empty(), "{text}: no dtype evaluates");
            let all_zero = seen.iter().all(|(_, z)| *z);
            assert_eq!(
                op.maps_zero_to_zero(),
                all_zero,
                "{text}: f(0) = 0 per dtype {seen:?}"
            );
        }
    }
}

#[test]
fn floor_ceil_round_map_zero_to_zero() {
    for text in ["Floor", "Ceil", "Round"] {
        assert!(op(text).maps_zero_to_zero(), "{text}");
    }
}

#[test]
fn every_unary_and_binary_op_is_elementwise() {
    for text in unary().into_iter().chain(binary()) {
        assert!(op(text).is_elementwise(), "{text}");
        assert!(!op(text).is_anchor(), "{text}");
    }
}

#[test]
fn anchors_and_their_prologues() {
    let cases = [
        ("MatMul", Some(FusedRole::Anchor { prologue: false })),
        (
            "Reduce(kind: Sum, axes: [1], keepdims: true)",
            Some(FusedRole::Anchor { prologue: true }),
        ),
        (
            "Softmax(axis: 1)",
            Some(FusedRole::Anchor { prologue: true }),
        ),
        ("Cast(to: F16)", Some(FusedRole::Elementwise)),
        ("Where", Some(FusedRole::Elementwise)),
        ("Concat(axis: 0)", None),
        ("Transpose(perm: [1, 0])", None),
    ];
    for (text, role) in cases {
        assert_eq!(op(text).fused_role(), role, "{text}");
        assert_eq!(
            op(text).is_anchor(),
            matches!(role, Some(FusedRole::Anchor { .. }))
        );
    }
}

#[test]
fn movers_read_only_operand_zero_as_data() {
    let movers = [
        ("Reshape(allowzero: false)", 2),
        ("Transpose(perm: [1, 0])", 1),
        ("Expand", 2),
        ("Slice", 5),
        ("Gather(axis: 0)", 2),
        ("Tile", 2),
        ("Identity", 1),
    ];
    for (text, arity) in movers {
        let op = op(text);
        assert!(op.moves_data_only(), "{text}");
        let controls = op.shape_operands();
        assert!(
            (1..arity).all(|i| controls.contains(&i)),
            "{text}: operands 1..{arity} are control values, got {controls:?}"
        );
        assert!(!controls.contains(&0), "{text}");
    }
    for text in ["Concat(axis: 0)", "Add", "MatMul", "Relu"] {
        assert!(!op(text).moves_data_only(), "{text}");
    }
}

#[test]
fn reshape_reads_its_shape_operand_as_a_shape() {
    assert_eq!(op("Reshape(allowzero: false)").shape_operands(), vec![1]);
    assert_eq!(op("MatMul").shape_operands(), Vec::<usize>::new());
}
