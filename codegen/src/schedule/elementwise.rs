//! IR elementwise ops as kernel expressions.
//!
//! Values are computed in their *compute type*: `f16`/`bf16` widen to `f32`
//! (rounded back on store, and on a `Cast` to them); every other dtype computes
//! as itself. An op this module cannot express exactly (integer division, whose
//! divide-by-zero the reference reports as an error; integer `Pow`; shifts) returns
//! `None` and the scheduler runs its node on the host instead.

use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, NnOp, UnaryOp};
use kiln_ir::{DType, Op};

use crate::kernel::build::{bin, cast, fc, select, un};
use crate::kernel::{BinOp, Expr, Literal, Scalar, UnOp};

/// The type a value of `dtype` is computed in.
pub fn compute(dtype: DType) -> Scalar {
    match Scalar::of(dtype) {
        Scalar::F16 | Scalar::BF16 => Scalar::F32,
        s => s,
    }
}

/// Loads element `index` of a buffer of `dtype`, in its compute type.
pub fn load_compute(buf: usize, index: Expr, dtype: DType) -> Expr {
    let raw = crate::kernel::build::load(buf, index);
    let s = Scalar::of(dtype);
    if s.is_half() {
        cast(Scalar::F32, raw)
    } else {
        raw
    }
}

/// A compute-typed value converted to `dtype`'s storage type.
pub fn to_storage(value: Expr, dtype: DType) -> Expr {
    let s = Scalar::of(dtype);
    if s.is_half() {
        cast(s, value)
    } else {
        value
    }
}

/// A constant of compute type `s` (floats as floats, integers truncated).
pub fn konst(x: f64, s: Scalar) -> Expr {
    if s.is_float() {
        fc(x, s)
    } else {
        Expr::Lit(Literal::Int(x as i64, s))
    }
}

/// Whether `op` is elementwise in the scheduler's sense (one output element from
/// the operands' elements at the same broadcast position).
pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::Binary(_)
            | Op::Layout(LayoutOp::Cast { .. } | LayoutOp::Where)
            | Op::Composite(CompositeOp::Gelu { .. })
            | Op::Nn(NnOp::BatchNorm { .. })
    )
}

/// The expression of elementwise `op` over compute-typed operands `args` whose
/// IR dtypes are `dtypes`, producing `out` (its IR dtype). `None` when the op or
/// dtype combination is not generated (the node then runs on the host).
pub fn op_expr(op: &Op, args: Vec<Expr>, dtypes: &[DType], out: DType) -> Option<Expr> {
    let mut args = args.into_iter();
    let mut next = || args.next();
    match op {
        Op::Unary(u) => unary(u, next()?, compute(dtypes[0])),
        Op::Binary(b) => {
            if dtypes.len() != 2 || dtypes[0] != dtypes[1] {
                return None;
            }
            let (a, c) = (next()?, next()?);
            binary(b, a, c, compute(dtypes[0]))
        }
        Op::Layout(LayoutOp::Where) => {
            let (c, a, b) = (next()?, next()?, next()?);
            Some(select(c, a, b))
        }
        Op::Layout(LayoutOp::Cast { to, .. }) => {
            // To a half type from a source wider than f32's 24-bit significand
            // the f32 step would round twice: the host rounds once.
            let wide = matches!(
                dtypes[0],
                DType::F64 | DType::I32 | DType::I64 | DType::U32 | DType::U64
            );
            if Scalar::of(*to).is_half() && wide {
                return None;
            }
            let x = next()?;
            Some(cast_value(x, dtypes[0], *to))
        }
        Op::Composite(CompositeOp::Gelu { tanh }) => {
            let s = compute(out);
            if !s.is_float() {
                return None;
            }
            let x = next()?;
            Some(gelu(x, s, *tanh))
        }
        Op::Nn(NnOp::BatchNorm { epsilon }) => {
            let s = compute(out);
            if !s.is_float() || dtypes.iter().any(|&d| d != dtypes[0]) {
                return None;
            }
            let (x, scale, bias, mean, var) = (next()?, next()?, next()?, next()?, next()?);
            // (x − mean) / √(var + ε) · scale + bias
            let inv = bin(
                BinOp::Div,
                fc(1.0, s),
                un(UnOp::Sqrt, bin(BinOp::Add, var, fc(*epsilon as f64, s))),
            );
            let norm = bin(BinOp::Mul, bin(BinOp::Sub, x, mean), inv);
            Some(bin(BinOp::Add, bin(BinOp::Mul, norm, scale), bias))
        }
        _ => None,
    }
}

/// `x` (compute type of `from`) converted with ONNX `Cast` semantics to `to`'s
/// compute type (through `to`'s storage type when that is a half type, so the
/// rounding is the cast's).
pub fn cast_value(x: Expr, from: DType, to: DType) -> Expr {
    let target = Scalar::of(to);
    let from_c = compute(from);
    if target.is_half() {
        let x = if from_c == Scalar::F32 {
            x
        } else {
            cast(Scalar::F32, x)
        };
        return cast(Scalar::F32, cast(target, x));
    }
    if from_c == target {
        x
    } else {
        cast(target, x)
    }
}

fn gelu(x: Expr, s: Scalar, tanh: bool) -> Expr {
    let half_x = bin(BinOp::Mul, fc(0.5, s), x.clone());
    let inner = if tanh {
        // √(2/π)·(x + 0.044715·x³)
        let x3 = bin(BinOp::Mul, bin(BinOp::Mul, x.clone(), x.clone()), x.clone());
        let poly = bin(BinOp::Add, x, bin(BinOp::Mul, fc(0.044715, s), x3));
        un(
            UnOp::Tanh,
            bin(BinOp::Mul, fc((2.0 / std::f64::consts::PI).sqrt(), s), poly),
        )
    } else {
        un(
            UnOp::Erf,
            bin(BinOp::Mul, x, fc(std::f64::consts::FRAC_1_SQRT_2, s)),
        )
    };
    bin(BinOp::Mul, half_x, bin(BinOp::Add, fc(1.0, s), inner))
}

fn unary(op: &UnaryOp, x: Expr, s: Scalar) -> Option<Expr> {
    use UnaryOp as U;
    let zero = || konst(0.0, s);
    let one = || konst(1.0, s);
    if s == Scalar::Bool {
        return match op {
            U::Not => Some(un(UnOp::Not, x)),
            _ => None,
        };
    }
    if s.is_int() {
        return match op {
            U::BitwiseNot => Some(un(UnOp::Not, x)),
            U::Neg if s.is_signed_int() => Some(un(UnOp::Neg, x)),
            U::Abs if s.is_signed_int() => Some(un(UnOp::Abs, x)),
            U::Abs => Some(x),
            U::Relu if s.is_signed_int() => Some(bin(BinOp::Max, x, zero())),
            U::Sign if s.is_signed_int() => Some(select(
                bin(BinOp::Gt, x.clone(), zero()),
                one(),
                select(bin(BinOp::Lt, x, zero()), konst(-1.0, s), zero()),
            )),
            _ => None,
        };
    }
    let f = |c: f64| fc(c, s);
    let direct = |u: UnOp, x: Expr| Some(un(u, x));
    match op {
        U::Neg => direct(UnOp::Neg, x),
        U::Abs => direct(UnOp::Abs, x),
        U::Sqrt => direct(UnOp::Sqrt, x),
        U::Exp => direct(UnOp::Exp, x),
        U::Log => direct(UnOp::Log, x),
        U::Sin => direct(UnOp::Sin, x),
        U::Cos => direct(UnOp::Cos, x),
        U::Tan => direct(UnOp::Tan, x),
        U::Asin => direct(UnOp::Asin, x),
        U::Acos => direct(UnOp::Acos, x),
        U::Atan => direct(UnOp::Atan, x),
        U::Sinh => direct(UnOp::Sinh, x),
        U::Cosh => direct(UnOp::Cosh, x),
        U::Asinh => direct(UnOp::Asinh, x),
        U::Acosh => direct(UnOp::Acosh, x),
        U::Atanh => direct(UnOp::Atanh, x),
        U::Tanh => direct(UnOp::Tanh, x),
        U::Erf => direct(UnOp::Erf, x),
        U::Sigmoid => direct(UnOp::Sigmoid, x),
        U::Floor => direct(UnOp::Floor, x),
        U::Ceil => direct(UnOp::Ceil, x),
        U::Round => direct(UnOp::Round, x),
        U::IsNaN => direct(UnOp::IsNan, x),
        // x < 0 ? 0 : x (NaN stays NaN, as in the reference)
        U::Relu => Some(select(bin(BinOp::Lt, x.clone(), f(0.0)), f(0.0), x)),
        U::Reciprocal => Some(bin(BinOp::Div, f(1.0), x)),
        U::Sign => Some(select(
            bin(BinOp::Gt, x.clone(), f(0.0)),
            f(1.0),
            select(bin(BinOp::Lt, x.clone(), f(0.0)), f(-1.0), x),
        )),
        U::IsInf { pos, neg } => {
            let p = bin(BinOp::Eq, x.clone(), f(f64::INFINITY));
            let n = bin(BinOp::Eq, x, f(f64::NEG_INFINITY));
            let no = Expr::Lit(Literal::Int(0, Scalar::Bool));
            Some(match (pos, neg) {
                (true, true) => bin(BinOp::Or, p, n),
                (true, false) => p,
                (false, true) => n,
                (false, false) => no,
            })
        }
        U::Softsign => Some(bin(
            BinOp::Div,
            x.clone(),
            bin(BinOp::Add, f(1.0), un(UnOp::Abs, x)),
        )),
        U::LeakyRelu { alpha } => Some(select(
            bin(BinOp::Ge, x.clone(), f(0.0)),
            x.clone(),
            bin(BinOp::Mul, f(*alpha as f64), x),
        )),
        U::Elu { alpha } => Some(select(
            bin(BinOp::Gt, x.clone(), f(0.0)),
            x.clone(),
            bin(BinOp::Mul, f(*alpha as f64), expm1(x, s)),
        )),
        U::Selu { alpha, gamma } => Some(bin(
            BinOp::Mul,
            f(*gamma as f64),
            select(
                bin(BinOp::Gt, x.clone(), f(0.0)),
                x.clone(),
                bin(BinOp::Mul, f(*alpha as f64), expm1(x, s)),
            ),
        )),
        U::Celu { alpha } => {
            let a = *alpha as f64;
            let neg = bin(BinOp::Mul, f(a), expm1(bin(BinOp::Div, x.clone(), f(a)), s));
            Some(bin(
                BinOp::Add,
                bin(BinOp::Max, x, f(0.0)),
                bin(BinOp::Min, neg, f(0.0)),
            ))
        }
        U::HardSigmoid { alpha, beta } => Some(clamp01(
            bin(
                BinOp::Add,
                bin(BinOp::Mul, f(*alpha as f64), x),
                f(*beta as f64),
            ),
            s,
        )),
        U::HardSwish => Some(bin(
            BinOp::Mul,
            x.clone(),
            clamp01(bin(BinOp::Add, bin(BinOp::Div, x, f(6.0)), f(0.5)), s),
        )),
        U::ThresholdedRelu { alpha } => Some(select(
            bin(BinOp::Gt, x.clone(), f(*alpha as f64)),
            x,
            f(0.0),
        )),
        U::Shrink { bias, lambd } => {
            let (b, l) = (*bias as f64, *lambd as f64);
            Some(select(
                bin(BinOp::Lt, x.clone(), f(-l)),
                bin(BinOp::Add, x.clone(), f(b)),
                select(
                    bin(BinOp::Gt, x.clone(), f(l)),
                    bin(BinOp::Sub, x, f(b)),
                    f(0.0),
                ),
            ))
        }
        // ln(1 + eˣ) and friends lose accuracy in f32 without log1p: the host
        // computes them exactly.
        U::Softplus | U::Mish | U::Not | U::BitwiseNot => None,
    }
}

/// eˣ − 1, accurate near 0 (x + x²/2 + x³/6 below |x| < 1e-3, where the
/// difference of exponentials would cancel).
fn expm1(x: Expr, s: Scalar) -> Expr {
    let f = |c: f64| fc(c, s);
    let x2 = bin(BinOp::Mul, x.clone(), x.clone());
    let series = bin(
        BinOp::Add,
        x.clone(),
        bin(
            BinOp::Mul,
            x2,
            bin(BinOp::Add, f(0.5), bin(BinOp::Mul, x.clone(), f(1.0 / 6.0))),
        ),
    );
    select(
        bin(BinOp::Lt, un(UnOp::Abs, x.clone()), f(1e-3)),
        series,
        bin(BinOp::Sub, un(UnOp::Exp, x), f(1.0)),
    )
}

fn clamp01(x: Expr, s: Scalar) -> Expr {
    bin(BinOp::Min, bin(BinOp::Max, x, fc(0.0, s)), fc(1.0, s))
}

fn binary(op: &BinaryOp, a: Expr, b: Expr, s: Scalar) -> Option<Expr> {
    use BinaryOp as B;
    let simple = |o: BinOp| Some(bin(o, a.clone(), b.clone()));
    if s == Scalar::Bool {
        return match op {
            B::And => simple(BinOp::And),
            B::Or => simple(BinOp::Or),
            B::Xor => simple(BinOp::Xor),
            B::Equal => simple(BinOp::Eq),
            _ => None,
        };
    }
    let common = match op {
        B::Add => simple(BinOp::Add),
        B::Sub => simple(BinOp::Sub),
        B::Mul => simple(BinOp::Mul),
        B::Max => simple(BinOp::Max),
        B::Min => simple(BinOp::Min),
        B::Equal => simple(BinOp::Eq),
        B::Less => simple(BinOp::Lt),
        B::LessOrEqual => simple(BinOp::Le),
        B::Greater => simple(BinOp::Gt),
        B::GreaterOrEqual => simple(BinOp::Ge),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    if s.is_int() {
        return match op {
            B::BitwiseAnd => simple(BinOp::And),
            B::BitwiseOr => simple(BinOp::Or),
            B::BitwiseXor => simple(BinOp::Xor),
            B::PRelu if s.is_signed_int() => Some(select(
                bin(BinOp::Ge, a.clone(), konst(0.0, s)),
                a.clone(),
                bin(BinOp::Mul, a, b),
            )),
            _ => None,
        };
    }
    match op {
        B::Div => simple(BinOp::Div),
        B::Pow => simple(BinOp::Pow),
        B::PRelu => Some(select(
            bin(BinOp::Ge, a.clone(), fc(0.0, s)),
            a.clone(),
            bin(BinOp::Mul, a, b),
        )),
        B::Mod { fmod } => {
            let r = bin(BinOp::Rem, a, b.clone());
            if *fmod {
                Some(r)
            } else {
                // Python's sign rule: r + b when r ≠ 0 and r, b differ in sign.
                let zero = fc(0.0, s);
                let fix = bin(
                    BinOp::And,
                    bin(BinOp::Ne, r.clone(), zero.clone()),
                    bin(
                        BinOp::Ne,
                        bin(BinOp::Lt, r.clone(), zero.clone()),
                        bin(BinOp::Lt, b.clone(), zero),
                    ),
                );
                Some(select(fix, bin(BinOp::Add, r.clone(), b), r))
            }
        }
        _ => None,
    }
}
