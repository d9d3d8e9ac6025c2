//! Dynamically quantized linear layers (the output of
//! `onnxruntime.quantization.quantize_dynamic` after ONNX Runtime's fusions):
//! `DynamicQuantizeMatMul` and `MatMulIntegerToFloat`, lowered to kiln's
//! `DynamicQuantizeLinear` and `MatMulInteger` followed by the float rescale
//! ONNX Runtime applies (`acc · (a_scale · b_scale) + bias`, the two scales
//! multiplied first, in f32).

use kiln_ir::op::{BinaryOp, LayoutOp, MiscOp};
use kiln_ir::{DType, Op, ValueId};

use crate::onnx::{NodeCtx, OnnxError};

/// `DynamicQuantizeMatMul(A, B, b_scale, b_zero_point?, bias?)`: `A` (f32)
/// quantized to uint8 over its range extended to 0 (ONNX's
/// `DynamicQuantizeLinear`), integer-multiplied with `B` (int8 or uint8,
/// minus its zero point), then `· a_scale · b_scale (+ bias)`.
pub(super) fn convert_dynamic_quantize_matmul(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (a, b, b_scale) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    if cx.dtype(a) != DType::F32 {
        return Err(cx.err(format!("A must be float32, got {}", cx.dtype(a))));
    }
    let q = cx.op_n(Op::Misc(MiscOp::DynamicQuantizeLinear), &[a], 3)?;
    let (aq, a_scale, a_zp) = (q[0], q[1], q[2]);
    let b_zp = zero_point(cx, 3, b)?;
    let acc = cx.op(Op::Misc(MiscOp::MatMulInteger), &[aq, b, a_zp, b_zp])?;
    let y = rescale(cx, acc, a_scale, b_scale, cx.input(4)?)?;
    cx.set_output(0, y);
    Ok(())
}

/// `MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zero_point?,
/// b_zero_point?, bias?)`: `(A − a_zp)·(B − b_zp)` in int32, then
/// `· a_scale · b_scale (+ bias)`.
pub(super) fn convert_matmul_integer_to_float(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (a, b, a_scale, b_scale) = (cx.req(0)?, cx.req(1)?, cx.req(2)?, cx.req(3)?);
    let numel = |cx: &NodeCtx, v: ValueId| -> Option<usize> {
        cx.ty(v)
            .shape
            .0
            .iter()
            .map(kiln_ir::Dim::known)
            .product::<Option<usize>>()
    };
    if numel(cx, a_scale) != Some(1) {
        return Err(cx.err(format!(
            "a_scale {} must be one value (per-tensor quantization of A)",
            cx.ty(a_scale).shape
        )));
    }
    let a_zp = zero_point(cx, 4, a)?;
    let b_zp = zero_point(cx, 5, b)?;
    let acc = cx.op(Op::Misc(MiscOp::MatMulInteger), &[a, b, a_zp, b_zp])?;
    let y = rescale(cx, acc, a_scale, b_scale, cx.input(6)?)?;
    cx.set_output(0, y);
    Ok(())
}

/// Input `i` (a zero point), or a zero scalar of `like`'s type when absent.
fn zero_point(cx: &mut NodeCtx, i: usize, like: ValueId) -> Result<ValueId, OnnxError> {
    let like_dtype = cx.dtype(like);
    if !matches!(like_dtype, DType::U8 | DType::I8) {
        return Err(cx.err(format!(
            "integer operands must be int8 or uint8, got {like_dtype}"
        )));
    }
    Ok(match cx.input(i)? {
        Some(z) => z,
        None => cx.scalar(like_dtype, 0.0),
    })
}

/// `f32(acc) · (a_scale · b_scale) (+ bias)`.
fn rescale(
    cx: &mut NodeCtx,
    acc: ValueId,
    a_scale: ValueId,
    b_scale: ValueId,
    bias: Option<ValueId>,
) -> Result<ValueId, OnnxError> {
    for s in [a_scale, b_scale] {
        if cx.dtype(s) != DType::F32 {
            return Err(cx.err(format!("scales must be float32, got {}", cx.dtype(s))));
        }
    }
    let scale = cx.op(Op::Binary(BinaryOp::Mul), &[a_scale, b_scale])?;
    let acc = cx.op(Op::Layout(LayoutOp::cast(DType::F32)), &[acc])?;
    let mut y = cx.op(Op::Binary(BinaryOp::Mul), &[acc, scale])?;
    if let Some(bias) = bias {
        y = cx.op(Op::Binary(BinaryOp::Add), &[y, bias])?;
    }
    Ok(y)
}
