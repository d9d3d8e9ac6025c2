//! Fused regions: text round trip, legality and reference semantics.

use kiln_ir::interp::eval_op;
use kiln_ir::op::{FusedArg, FusedOp, FusedStep, InferInputs};
use kiln_ir::{DType, Op, Shape, Tensor, TensorType};

fn op(s: &str) -> Op {
    Op::from_text(s).expect("valid op text")
}

fn step(o: &str, args: &[FusedArg]) -> FusedStep {
    FusedStep {
        op: op(o),
        args: args.to_vec(),
    }
}

use FusedArg::{Input as In, Step as St};

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

fn infer(f: &FusedOp, types: &[TensorType]) -> Result<Vec<TensorType>, String> {
    let consts = vec![None; types.len()];
    Op::Fused(f.clone())
        .infer(&InferInputs {
            types,
            consts: &consts,
        })
        .map_err(|e| e.message)
}

/// MatMul → Add bias → Relu.
fn epilogue() -> FusedOp {
    FusedOp {
        steps: vec![
            step("MatMul", &[In(0), In(1)]),
            step("Add", &[St(0), In(2)]),
            step("Relu", &[St(1)]),
        ],
    }
}

#[test]
fn text_round_trips() {
    let f = Op::Fused(epilogue());
    let text = f.to_text();
    assert!(text.starts_with("Fused("), "{text}");
    assert_eq!(Op::from_text(&text).unwrap(), f);
    assert_eq!(f.name(), "Fused");
}

#[test]
fn epilogue_infers_and_evaluates_like_its_steps() {
    let f = epilogue();
    let types = [f32s(&[2, 3, 4]), f32s(&[4, 5]), f32s(&[5])];
    assert_eq!(infer(&f, &types).unwrap(), vec![f32s(&[2, 3, 5])]);
    let x = Tensor::from_vec(
        vec![2, 3, 4],
        (0..24).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    let w = Tensor::from_vec(
        vec![4, 5],
        (0..20).map(|i| (i as f32 * 0.71).cos()).collect(),
    );
    let b = Tensor::from_vec(vec![5], vec![0.1f32, -0.2, 0.3, -0.4, 0.5]);
    let fused = eval_op(&Op::Fused(f), &[&x, &w, &b], 1).unwrap();
    let m = eval_op(&op("MatMul"), &[&x, &w], 1).unwrap();
    let a = eval_op(&op("Add"), &[&m[0], &b], 1).unwrap();
    let r = eval_op(&op("Relu"), &[&a[0]], 1).unwrap();
    assert_eq!(fused[0], r[0]);
}

#[test]
fn prologue_feeds_a_softmax() {
    // softmax(x / c + mask)
    let f = FusedOp {
        steps: vec![
            step("Div", &[In(0), In(1)]),
            step("Add", &[St(0), In(2)]),
            step("Softmax(axis: 2)", &[St(1)]),
        ],
    };
    let types = [f32s(&[2, 4, 4]), f32s(&[]), f32s(&[1, 1, 4])];
    assert_eq!(infer(&f, &types).unwrap(), vec![f32s(&[2, 4, 4])]);
}

#[test]
fn illegal_regions_are_refused() {
    let types = [f32s(&[2, 4]), f32s(&[4, 4]), f32s(&[4])];
    let two_anchors = FusedOp {
        steps: vec![
            step("MatMul", &[In(0), In(1)]),
            step("MatMul", &[St(0), In(1)]),
        ],
    };
    assert!(infer(&two_anchors, &types[..2])
        .unwrap_err()
        .contains("at most one anchor"));
    let matmul_prologue = FusedOp {
        steps: vec![step("Relu", &[In(0)]), step("MatMul", &[St(0), In(1)])],
    };
    assert!(infer(&matmul_prologue, &types[..2])
        .unwrap_err()
        .contains("prologue"));
    let unused = FusedOp {
        steps: vec![step("Relu", &[In(0)])],
    };
    assert!(infer(&unused, &types[..2]).unwrap_err().contains("input 1"));
    let dead = FusedOp {
        steps: vec![step("Relu", &[In(0)]), step("Neg", &[In(0)])],
    };
    assert!(infer(&dead, &types[..1]).unwrap_err().contains("step 0"));
    let forward = FusedOp {
        steps: vec![step("Add", &[In(0), St(1)]), step("Neg", &[St(0)])],
    };
    assert!(infer(&forward, &types[..1]).is_err());
    // An elementwise step that broadcasts beyond the output's loop nest.
    // RMS-norm shape: reduce, then per-row statistics broadcast over the rows.
    let rms = FusedOp {
        steps: vec![
            step("Mul", &[In(0), In(0)]),
            step("Reduce(kind: Mean, axes: [1], keepdims: true)", &[St(0)]),
            step("Add", &[St(1), In(1)]),
            step("Sqrt", &[St(2)]),
            step("Div", &[In(0), St(3)]),
        ],
    };
    assert_eq!(
        infer(&rms, &[f32s(&[2, 4]), f32s(&[])]).unwrap(),
        vec![f32s(&[2, 4])]
    );
    // A prologue value that does not fit the anchor's operand's loop nest.
    let misfit = FusedOp {
        steps: vec![
            step("Neg", &[In(0)]),
            step("Neg", &[In(1)]),
            step("Reduce(kind: Sum, axes: [1], keepdims: false)", &[St(0)]),
            step("Add", &[St(2), St(1)]),
        ],
    };
    assert!(infer(&misfit, &[f32s(&[2, 4]), f32s(&[5, 1])])
        .unwrap_err()
        .contains("loop nest"));
    let not_fusible = FusedOp {
        steps: vec![step("Transpose(perm: [1, 0])", &[In(0)])],
    };
    assert!(infer(&not_fusible, &types[..1])
        .unwrap_err()
        .contains("cannot be fused"));
}
