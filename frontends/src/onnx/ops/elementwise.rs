//! ONNX converters of elementwise ops (unary, binary, variadic, Clip, Cast, Where).

use kiln_ir::op::{BinaryOp, LayoutOp, UnaryOp};
use kiln_ir::{DType, Op};

use crate::onnx::{NodeCtx, OnnxError, Registry};

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    for op in [
        "Neg",
        "Abs",
        "Sqrt",
        "Exp",
        "Log",
        "Sin",
        "Cos",
        "Tan",
        "Asin",
        "Acos",
        "Atan",
        "Sinh",
        "Cosh",
        "Asinh",
        "Acosh",
        "Atanh",
        "Tanh",
        "Sigmoid",
        "Relu",
        "Erf",
        "Reciprocal",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Not",
        "BitwiseNot",
        "IsNaN",
        "IsInf",
        "Softplus",
        "Softsign",
        "Mish",
        "LeakyRelu",
        "Elu",
        "Selu",
        "Celu",
        "HardSigmoid",
        "HardSwish",
        "ThresholdedRelu",
        "Shrink",
    ] {
        reg.insert(op, convert_unary);
    }
    for op in [
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Mod",
        "PRelu",
        "Equal",
        "Less",
        "LessOrEqual",
        "Greater",
        "GreaterOrEqual",
        "And",
        "Or",
        "Xor",
        "BitShift",
        "BitwiseAnd",
        "BitwiseOr",
        "BitwiseXor",
    ] {
        reg.insert(op, convert_binary);
    }
    for op in ["Max", "Min", "Sum", "Mean"] {
        reg.insert(op, convert_variadic);
    }
    reg.insert("Swish", convert_swish);
    reg.insert("Clip", convert_clip);
    reg.insert("Cast", convert_cast);
    reg.insert("CastLike", convert_cast);
    reg.insert("Where", convert_where);
    reg.insert("Identity", convert_identity);
    reg.insert("Dropout", convert_identity);
}

fn unary_op(cx: &NodeCtx) -> Result<UnaryOp, OnnxError> {
    let a = &cx.attrs;
    Ok(match cx.node.op_type.as_str() {
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Sqrt" => UnaryOp::Sqrt,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan,
        "Asin" => UnaryOp::Asin,
        "Acos" => UnaryOp::Acos,
        "Atan" => UnaryOp::Atan,
        "Sinh" => UnaryOp::Sinh,
        "Cosh" => UnaryOp::Cosh,
        "Asinh" => UnaryOp::Asinh,
        "Acosh" => UnaryOp::Acosh,
        "Atanh" => UnaryOp::Atanh,
        "Tanh" => UnaryOp::Tanh,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "Erf" => UnaryOp::Erf,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sign" => UnaryOp::Sign,
        "Not" => UnaryOp::Not,
        "BitwiseNot" => UnaryOp::BitwiseNot,
        "IsNaN" => UnaryOp::IsNaN,
        "IsInf" => UnaryOp::IsInf {
            pos: a.int_or("detect_positive", 1) != 0,
            neg: a.int_or("detect_negative", 1) != 0,
        },
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "Mish" => UnaryOp::Mish,
        "LeakyRelu" => UnaryOp::LeakyRelu {
            alpha: a.float_or("alpha", 0.01),
        },
        "Elu" => UnaryOp::Elu {
            alpha: a.float_or("alpha", 1.0),
        },
        "Selu" => UnaryOp::Selu {
            alpha: a.float_or("alpha", 1.673_263_2),
            gamma: a.float_or("gamma", 1.050_701),
        },
        "Celu" => UnaryOp::Celu {
            alpha: a.float_or("alpha", 1.0),
        },
        "HardSigmoid" => UnaryOp::HardSigmoid {
            alpha: a.float_or("alpha", 0.2),
            beta: a.float_or("beta", 0.5),
        },
        "HardSwish" => UnaryOp::HardSwish,
        "ThresholdedRelu" => UnaryOp::ThresholdedRelu {
            alpha: a.float_or("alpha", 1.0),
        },
        "Shrink" => UnaryOp::Shrink {
            bias: a.float_or("bias", 0.0),
            lambd: a.float_or("lambd", 0.5),
        },
        other => return Err(cx.err(format!("{other} is not a unary op"))),
    })
}

fn convert_unary(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let op = unary_op(cx)?;
    let x = cx.req(0)?;
    let y = cx.op(Op::Unary(op), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// Swish (opset 24): `x · sigmoid(alpha · x)`, lowered to Mul and Sigmoid. The
/// ONNX reference rounds the sigmoid to x's type before the product, as this does;
/// with `alpha = 1` it is the SiLU the fusion rules recognize.
fn convert_swish(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let dt = cx.dtype(x);
    if !dt.is_float() {
        return Err(cx.err(format!("Swish of {dt} (float types only)")));
    }
    let alpha = cx.attrs.float_or("alpha", 1.0);
    let scaled = if alpha == 1.0 {
        x
    } else {
        let a = cx.scalar(dt, alpha as f64);
        cx.op(Op::Binary(BinaryOp::Mul), &[x, a])?
    };
    let s = cx.op(Op::Unary(UnaryOp::Sigmoid), &[scaled])?;
    let y = cx.op(Op::Binary(BinaryOp::Mul), &[x, s])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_binary(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let op = match cx.node.op_type.as_str() {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Mod" => BinaryOp::Mod {
            fmod: cx.attrs.int_or("fmod", 0) != 0,
        },
        "PRelu" => BinaryOp::PRelu,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        "BitShift" => match cx.attrs.string("direction").as_deref() {
            Some("LEFT") => BinaryOp::BitShiftLeft,
            Some("RIGHT") => BinaryOp::BitShiftRight,
            d => return Err(cx.err(format!("BitShift direction {d:?}"))),
        },
        "BitwiseAnd" => BinaryOp::BitwiseAnd,
        "BitwiseOr" => BinaryOp::BitwiseOr,
        "BitwiseXor" => BinaryOp::BitwiseXor,
        other => return Err(cx.err(format!("{other} is not a binary op"))),
    };
    let (a, mut b) = (cx.req(0)?, cx.req(1)?);
    // PRelu's slope broadcasts "unidirectionally" to x, numpy-style since opset 7.
    // Exporters of the older convention give a per-channel 1-D slope of length C for
    // an N×C×... input: align it with axis 1.
    if op == BinaryOp::PRelu && cx.rank(b) == 1 && cx.rank(a) > 2 {
        let (xs, ss) = (&cx.ty(a).shape.0, &cx.ty(b).shape.0);
        if ss[0] != kiln_ir::Dim::Known(1) && ss[0] == xs[1] && ss[0] != xs[xs.len() - 1] {
            let axes: Vec<usize> = (1..cx.rank(a) - 1).collect();
            b = cx.op(Op::Layout(LayoutOp::Unsqueeze { axes }), &[b])?;
        }
    }
    if op == BinaryOp::Pow && cx.dtype(a) != cx.dtype(b) {
        b = cx.op(Op::Layout(LayoutOp::cast(cx.dtype(a))), &[b])?;
    }
    let y = cx.op(Op::Binary(op), &[a, b])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_variadic(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let op = match cx.node.op_type.as_str() {
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        _ => BinaryOp::Add,
    };
    let inputs = cx.inputs()?;
    let (&first, rest) = inputs
        .split_first()
        .ok_or_else(|| cx.err("needs at least one input"))?;
    let mut acc = first;
    if rest.is_empty() {
        acc = cx.op(Op::Layout(LayoutOp::Identity), &[acc])?;
    }
    for &x in rest {
        acc = cx.op(Op::Binary(op.clone()), &[acc, x])?;
    }
    if cx.node.op_type == "Mean" {
        let n = cx.scalar(cx.dtype(first), inputs.len() as f64);
        acc = cx.op(Op::Binary(BinaryOp::Div), &[acc, n])?;
    }
    cx.set_output(0, acc);
    Ok(())
}

fn convert_clip(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let dt = cx.dtype(x);
    let (lo, hi) = if cx.opset < 11 {
        let lo = cx.attrs.float("min").map(|v| cx.scalar(dt, v as f64));
        let hi = cx.attrs.float("max").map(|v| cx.scalar(dt, v as f64));
        (lo, hi)
    } else {
        (cx.input(1)?, cx.input(2)?)
    };
    let mut y = x;
    if let Some(lo) = lo {
        y = cx.op(Op::Binary(BinaryOp::Max), &[y, lo])?;
    }
    if let Some(hi) = hi {
        y = cx.op(Op::Binary(BinaryOp::Min), &[y, hi])?;
    }
    if y == x {
        y = cx.op(Op::Layout(LayoutOp::Identity), &[x])?;
    }
    cx.set_output(0, y);
    Ok(())
}

fn convert_cast(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let to = if cx.node.op_type == "CastLike" {
        let like = cx.req(1)?;
        cx.dtype(like)
    } else {
        let code = cx
            .attrs
            .int("to")
            .ok_or_else(|| cx.err("missing attribute `to`"))?;
        crate::onnx::tensor::dtype_of(code as i32).ok_or_else(|| {
            cx.err(format!(
                "cast to unsupported type {}",
                crate::onnx::tensor::onnx_type_name(code as i32)
            ))
        })?
    };
    let saturate = cx.attrs.int_or("saturate", 1) != 0;
    let round_mode = cx.attrs.string_or("round_mode", E8M0_ROUND_MODE);
    if to == DType::F8E8M0 && round_mode != E8M0_ROUND_MODE {
        return Err(cx.err(format!(
            "round_mode `{round_mode}` to FLOAT8E8M0 is not supported (only `{E8M0_ROUND_MODE}`)"
        )));
    }
    let y = cx.op(Op::Layout(LayoutOp::Cast { to, saturate }), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// The one `round_mode` of casts to FLOAT8E8M0 kiln implements (ONNX's default).
const E8M0_ROUND_MODE: &str = "up";

fn convert_where(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (c, a, b) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
    let c = if cx.dtype(c) != DType::Bool {
        cx.op(Op::Layout(LayoutOp::cast(DType::Bool)), &[c])?
    } else {
        c
    };
    let y = cx.op(Op::Layout(LayoutOp::Where), &[c, a, b])?;
    cx.set_output(0, y);
    Ok(())
}

fn convert_identity(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let y = cx.op(Op::Layout(LayoutOp::Identity), &[x])?;
    cx.set_output(0, y);
    if cx.node.op_type == "Dropout" && cx.has_output(1) {
        // Inference: the mask is all true.
        let shape = cx.op(
            Op::Layout(LayoutOp::Shape {
                start: 0,
                end: None,
            }),
            &[x],
        )?;
        let mask = cx.op(
            Op::Layout(LayoutOp::ConstantOfShape {
                dtype: DType::Bool,
                value: 1.0,
            }),
            &[shape],
        )?;
        cx.set_output(1, mask);
    }
    Ok(())
}
