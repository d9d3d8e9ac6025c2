//! Scalar values of the SIMT interpreter and the kernel IR's operations on them,
//! with the semantics the CPU backend gives them: float results rounded to their
//! type, integers wrapping at their width, NaN-propagating `max`/`min`, `rem` with
//! the dividend's sign, round half to even, and ONNX `Cast` (saturating float →
//! integer, NaN → 0, anything → bool is `≠ 0`).

use half::{bf16, f16};

use crate::kernel::{BinOp, Literal, Scalar, UnOp};

/// One scalar of a known [`Scalar`] type, kept normalized to that type (an `f32`
/// holds an f32-representable value, an `i8` a value in `-128..=127`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// f32, f64, f16 or bf16.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A truth value.
    Bool(bool),
}

impl Value {
    /// The zero of type `s`.
    pub fn zero(s: Scalar) -> Value {
        Value::from_f64(s, 0.0)
    }

    /// A literal's value.
    pub fn of_literal(l: &Literal) -> Value {
        match *l {
            Literal::Float(x, s) => Value::from_f64(s, x),
            Literal::Int(n, s) => Value::from_i64(s, n),
        }
    }

    /// `x` converted to type `s` (rounded, saturated or wrapped as a cast would).
    pub fn from_f64(s: Scalar, x: f64) -> Value {
        Value::Float(x).cast(Scalar::F64, s)
    }

    /// `n` as type `s`, wrapped to its width.
    pub fn from_i64(s: Scalar, n: i64) -> Value {
        Value::Int(n).cast(Scalar::I64, s)
    }

    /// The value as an f64 (exact for every type but 64-bit integers beyond 2⁵³).
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Float(x) => x,
            Value::Int(n) => n as f64,
            Value::Uint(n) => n as f64,
            Value::Bool(b) => b as u8 as f64,
        }
    }

    /// The value as an i64 (floats truncated and saturated; u64 wrapped).
    pub fn as_i64(self) -> i64 {
        match self {
            Value::Float(x) => x as i64,
            Value::Int(n) => n,
            Value::Uint(n) => n as i64,
            Value::Bool(b) => b as i64,
        }
    }

    /// The value as a bool (the interpreter only asks this of bool values).
    pub fn as_bool(self) -> bool {
        match self {
            Value::Bool(b) => b,
            other => other.as_f64() != 0.0,
        }
    }

    /// Converts from type `from` to type `to` with ONNX `Cast` semantics.
    pub fn cast(self, from: Scalar, to: Scalar) -> Value {
        let _ = from;
        match to {
            Scalar::Bool => Value::Bool(match self {
                Value::Float(x) => x != 0.0,
                Value::Int(n) => n != 0,
                Value::Uint(n) => n != 0,
                Value::Bool(b) => b,
            }),
            Scalar::F64 => Value::Float(self.as_f64()),
            Scalar::F32 => Value::Float(self.as_f64() as f32 as f64),
            Scalar::F16 => Value::Float(f16::from_f64(self.as_f64()).to_f64()),
            Scalar::BF16 => Value::Float(bf16::from_f64(self.as_f64()).to_f64()),
            Scalar::I8 => Value::Int(self.to_int::<i8>()),
            Scalar::I16 => Value::Int(self.to_int::<i16>()),
            Scalar::I32 => Value::Int(self.to_int::<i32>()),
            Scalar::I64 => Value::Int(self.to_int::<i64>()),
            Scalar::U8 => Value::Uint(self.to_uint::<u8>()),
            Scalar::U16 => Value::Uint(self.to_uint::<u16>()),
            Scalar::U32 => Value::Uint(self.to_uint::<u32>()),
            Scalar::U64 => Value::Uint(self.to_uint::<u64>()),
        }
    }

    /// A signed integer of type `T`: floats saturate (NaN → 0), integers wrap.
    fn to_int<T: WrapInt>(self) -> i64 {
        match self {
            Value::Float(x) => T::saturate(x),
            Value::Int(n) => T::wrap(n as u64),
            Value::Uint(n) => T::wrap(n),
            Value::Bool(b) => b as i64,
        }
    }

    /// An unsigned integer of type `T`: floats saturate (NaN → 0), integers wrap.
    fn to_uint<T: WrapInt>(self) -> u64 {
        match self {
            Value::Float(x) => T::saturate(x) as u64,
            Value::Int(n) => T::wrap(n as u64) as u64,
            Value::Uint(n) => T::wrap(n) as u64,
            Value::Bool(b) => b as u64,
        }
    }
}

/// The integer types' wrapping and saturating conversions.
trait WrapInt {
    /// The low bits of `bits` as this type, then as an i64 (unsigned types of 64
    /// bits come back as their bit pattern).
    fn wrap(bits: u64) -> i64;
    /// `x` rounded toward zero and clamped to this type's range (NaN → 0).
    fn saturate(x: f64) -> i64;
}

macro_rules! wrap_int {
    ($($t:ty),*) => {$(
        impl WrapInt for $t {
            fn wrap(bits: u64) -> i64 {
                bits as $t as i64
            }
            fn saturate(x: f64) -> i64 {
                x as $t as i64
            }
        }
    )*};
}
wrap_int!(i8, i16, i32, i64, u8, u16, u32, u64);

/// `op(x)` for a value of type `t` (the kernel checker has verified the types).
pub fn unary(op: UnOp, t: Scalar, x: Value) -> Value {
    match x {
        Value::Float(v) => {
            let r = match op {
                UnOp::Neg => -v,
                UnOp::Abs => v.abs(),
                UnOp::Sqrt => v.sqrt(),
                UnOp::Exp => v.exp(),
                UnOp::Log => v.ln(),
                UnOp::Tanh => v.tanh(),
                UnOp::Erf => erf(v),
                UnOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                UnOp::Sin => v.sin(),
                UnOp::Cos => v.cos(),
                UnOp::Tan => v.tan(),
                UnOp::Asin => v.asin(),
                UnOp::Acos => v.acos(),
                UnOp::Atan => v.atan(),
                UnOp::Sinh => v.sinh(),
                UnOp::Cosh => v.cosh(),
                UnOp::Asinh => v.asinh(),
                UnOp::Acosh => v.acosh(),
                UnOp::Atanh => v.atanh(),
                UnOp::Floor => v.floor(),
                UnOp::Ceil => v.ceil(),
                UnOp::Round => v.round_ties_even(),
                UnOp::IsNan => return Value::Bool(v.is_nan()),
                UnOp::Not => v,
            };
            Value::from_f64(t, r)
        }
        Value::Int(n) => match op {
            UnOp::Neg => Value::from_i64(t, n.wrapping_neg()),
            UnOp::Abs => Value::from_i64(t, n.wrapping_abs()),
            UnOp::Not => Value::from_i64(t, !n),
            _ => x,
        },
        Value::Uint(n) => match op {
            UnOp::Not => Value::Uint(!n).cast(Scalar::U64, t),
            _ => x,
        },
        Value::Bool(b) => match op {
            UnOp::Not => Value::Bool(!b),
            _ => x,
        },
    }
}

/// Why a binary operation has no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithError {
    /// Integer division or remainder by zero.
    DivisionByZero,
}

/// `op(a, b)` for operands of type `t`.
pub fn binary(op: BinOp, t: Scalar, a: Value, b: Value) -> Result<Value, ArithError> {
    use BinOp::*;
    let cmp = |o: std::cmp::Ordering| -> bool {
        match op {
            Eq => o.is_eq(),
            Ne => o.is_ne(),
            Lt => o.is_lt(),
            Le => o.is_le(),
            Gt => o.is_gt(),
            Ge => o.is_ge(),
            _ => unreachable!("not a comparison"),
        }
    };
    Ok(match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            if op.is_comparison() {
                // Every comparison with NaN is false except ≠.
                return Ok(Value::Bool(match x.partial_cmp(&y) {
                    Some(o) => cmp(o),
                    None => op == Ne,
                }));
            }
            let r = match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                Div => x / y,
                Rem => x % y,
                Max if x.is_nan() || y.is_nan() => f64::NAN,
                Min if x.is_nan() || y.is_nan() => f64::NAN,
                Max => x.max(y),
                Min => x.min(y),
                Pow => x.powf(y),
                _ => f64::NAN,
            };
            Value::from_f64(t, r)
        }
        (Value::Int(x), Value::Int(y)) => {
            if op.is_comparison() {
                return Ok(Value::Bool(cmp(x.cmp(&y))));
            }
            let bits = (t.size() * 8) as i64;
            let r = match op {
                Add => x.wrapping_add(y),
                Sub => x.wrapping_sub(y),
                Mul => x.wrapping_mul(y),
                Div | Rem if y == 0 => return Err(ArithError::DivisionByZero),
                Div => x.wrapping_div(y),
                Rem => x.wrapping_rem(y),
                Max => x.max(y),
                Min => x.min(y),
                And => x & y,
                Or => x | y,
                Xor => x ^ y,
                Shl if !(0..bits).contains(&y) => 0,
                Shl => x.wrapping_shl(y as u32),
                Shr if !(0..bits).contains(&y) => x >> 63,
                Shr => x >> y,
                _ => 0,
            };
            Value::from_i64(t, r)
        }
        (Value::Uint(x), Value::Uint(y)) => {
            if op.is_comparison() {
                return Ok(Value::Bool(cmp(x.cmp(&y))));
            }
            let bits = (t.size() * 8) as u64;
            let r = match op {
                Add => x.wrapping_add(y),
                Sub => x.wrapping_sub(y),
                Mul => x.wrapping_mul(y),
                Div | Rem if y == 0 => return Err(ArithError::DivisionByZero),
                Div => x / y,
                Rem => x % y,
                Max => x.max(y),
                Min => x.min(y),
                And => x & y,
                Or => x | y,
                Xor => x ^ y,
                Shl if y >= bits => 0,
                Shl => x << y,
                Shr if y >= bits => 0,
                Shr => x >> y,
                _ => 0,
            };
            Value::Uint(r).cast(Scalar::U64, t)
        }
        (Value::Bool(x), Value::Bool(y)) => Value::Bool(match op {
            And => x & y,
            Or => x | y,
            Xor => x ^ y,
            _ if op.is_comparison() => cmp(x.cmp(&y)),
            _ => false,
        }),
        // Operands of different kinds do not pass the checker.
        _ => Value::zero(t),
    })
}

/// The error function: its Taylor series below 2.5, the continued fraction of
/// erfc above (accurate to about 1e-14 everywhere).
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Taylor series: erf x = 2/√π Σ (−1)ⁿ x²ⁿ⁺¹ / (n! (2n+1)).
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        for n in 1..60 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // Continued fraction of erfc for large arguments.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / ((ax + f) * std::f64::consts::PI.sqrt())
    };
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_follow_onnx() {
        assert_eq!(
            Value::Float(3.7).cast(Scalar::F32, Scalar::I32),
            Value::Int(3)
        );
        assert_eq!(
            Value::Float(-1e20).cast(Scalar::F32, Scalar::I8),
            Value::Int(-128)
        );
        assert_eq!(
            Value::Float(f64::NAN).cast(Scalar::F32, Scalar::I32),
            Value::Int(0)
        );
        assert_eq!(
            Value::Int(300).cast(Scalar::I32, Scalar::U8),
            Value::Uint(44)
        );
        assert_eq!(
            Value::Int(-1).cast(Scalar::I32, Scalar::U32),
            Value::Uint(u32::MAX as u64)
        );
        assert_eq!(
            Value::Float(0.5).cast(Scalar::F32, Scalar::Bool),
            Value::Bool(true)
        );
        assert_eq!(
            Value::from_f64(Scalar::F32, 0.1),
            Value::Float(0.1f32 as f64)
        );
        assert_eq!(Value::from_f64(Scalar::BF16, 1.00390625), Value::Float(1.0));
    }

    #[test]
    fn arithmetic_wraps_and_propagates_nan() {
        let i8 = Scalar::I8;
        let add = binary(BinOp::Add, i8, Value::Int(127), Value::Int(1)).unwrap();
        assert_eq!(add, Value::Int(-128));
        let m = binary(
            BinOp::Max,
            Scalar::F32,
            Value::Float(f64::NAN),
            Value::Float(1.0),
        );
        assert!(m.unwrap().as_f64().is_nan());
        let r = binary(
            BinOp::Rem,
            Scalar::F32,
            Value::Float(-7.0),
            Value::Float(3.0),
        );
        assert_eq!(r.unwrap(), Value::Float(-1.0));
        let d = binary(BinOp::Div, Scalar::I32, Value::Int(1), Value::Int(0));
        assert_eq!(d, Err(ArithError::DivisionByZero));
        let lt = binary(
            BinOp::Lt,
            Scalar::F32,
            Value::Float(f64::NAN),
            Value::Float(1.0),
        );
        assert_eq!(lt.unwrap(), Value::Bool(false));
        let round = unary(UnOp::Round, Scalar::F32, Value::Float(2.5));
        assert_eq!(round, Value::Float(2.0));
        let not = unary(UnOp::Not, Scalar::U8, Value::Uint(1));
        assert_eq!(not, Value::Uint(254));
    }

    #[test]
    fn erf_is_accurate() {
        for (x, want) in [
            (0.5, 0.5204998778130465),
            (1.5, 0.9661051464753108),
            (3.0, 0.9999779095030014),
        ] {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-13);
        }
    }
}
