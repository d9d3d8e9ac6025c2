//! `__device__` helper functions for the operations whose C spelling does not
//! have the kernel IR's semantics. A translation unit holds each helper it uses
//! once, before its kernels.
//!
//! | IR | plain C | helper |
//! |---|---|---|
//! | float `max`/`min` | `fmaxf` drops a NaN operand | returns the NaN |
//! | integer `+ − ·`, neg, abs | signed overflow undefined, narrow types promote to `int` | computed in the unsigned type of the width, converted back (wraps) |
//! | signed `/`, `%` | `MIN / −1` undefined | `MIN / −1 = MIN`, `MIN % −1 = 0` (wraps) |
//! | `<<`, `>>` | undefined at ≥ width | 0, or the sign for signed `>>` |
//! | float → integer cast | undefined out of range | saturates, NaN → 0 (ONNX `Cast`) |
//! | shuffle at a computed offset | the offset is taken mod 32 | a lane outside the warp keeps its value |

use super::ctype::{int_lit, reg_type, uint_lit, wrap_type};
use crate::kernel::{BinOp, Scalar};

/// One helper function, for one scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Helper {
    /// NaN-propagating maximum of f32 or f64.
    FloatMax(Scalar),
    /// NaN-propagating minimum of f32 or f64.
    FloatMin(Scalar),
    /// Maximum of an integer type.
    IntMax(Scalar),
    /// Minimum of an integer type.
    IntMin(Scalar),
    /// Wrapping `+`, `−` or `·` ([`BinOp::Add`], `Sub`, `Mul`) of an integer type.
    Wrap(BinOp, Scalar),
    /// Wrapping negation of a signed type.
    Neg(Scalar),
    /// Wrapping absolute value of a signed type (`|MIN| = MIN`).
    Abs(Scalar),
    /// Signed division, wrapping at `MIN / −1`.
    Div(Scalar),
    /// Signed remainder, 0 at `MIN % −1`.
    Rem(Scalar),
    /// Left shift, 0 when the count is outside `0..width`.
    Shl(Scalar),
    /// Right shift (arithmetic when signed), the sign when the count is outside
    /// `0..width`.
    Shr(Scalar),
    /// Saturating float (f32/f64) → integer conversion, NaN → 0.
    FloatToInt(Scalar, Scalar),
    /// A full-warp shuffle from a computed lane; lanes outside the warp keep
    /// their own value (a template over the shuffled type).
    ShuffleLane,
}

impl Helper {
    /// The function's C name, unique per helper (`kiln_max_f32`).
    pub(super) fn name(self) -> String {
        let op = |op: BinOp| match op {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            _ => "mul",
        };
        match self {
            Helper::FloatMax(s) | Helper::IntMax(s) => format!("kiln_max_{s}"),
            Helper::FloatMin(s) | Helper::IntMin(s) => format!("kiln_min_{s}"),
            Helper::Wrap(o, s) => format!("kiln_{}_{s}", op(o)),
            Helper::Neg(s) => format!("kiln_neg_{s}"),
            Helper::Abs(s) => format!("kiln_abs_{s}"),
            Helper::Div(s) => format!("kiln_div_{s}"),
            Helper::Rem(s) => format!("kiln_rem_{s}"),
            Helper::Shl(s) => format!("kiln_shl_{s}"),
            Helper::Shr(s) => format!("kiln_shr_{s}"),
            Helper::FloatToInt(f, t) => format!("kiln_{f}_to_{t}"),
            Helper::ShuffleLane => "kiln_shfl_lane".into(),
        }
    }

    /// The function's definition.
    pub(super) fn definition(self) -> String {
        let name = self.name();
        let head = "static __device__ __forceinline__";
        // `T name(T a, T b) { return body; }` over the helper's type.
        let binary = |s: Scalar, body: String| {
            let t = reg_type(s);
            format!("{head} {t} {name}({t} a, {t} b) {{\n    return {body};\n}}\n")
        };
        let unary = |s: Scalar, body: String| {
            let t = reg_type(s);
            format!("{head} {t} {name}({t} a) {{\n    return {body};\n}}\n")
        };
        match self {
            Helper::FloatMax(s) | Helper::FloatMin(s) => {
                let f = if self == Helper::FloatMax(s) {
                    "fmax"
                } else {
                    "fmin"
                };
                let f = if s == Scalar::F32 {
                    format!("{f}f")
                } else {
                    f.into()
                };
                binary(s, format!("a != a ? a : b != b ? b : {f}(a, b)"))
            }
            Helper::IntMax(s) => binary(s, "a > b ? a : b".into()),
            Helper::IntMin(s) => binary(s, "a < b ? a : b".into()),
            Helper::Wrap(op, s) => {
                let (t, u) = (reg_type(s), wrap_type(s));
                let c = match op {
                    BinOp::Add => '+',
                    BinOp::Sub => '-',
                    _ => '*',
                };
                binary(s, format!("({t})(({u})a {c} ({u})b)"))
            }
            Helper::Neg(s) => {
                let (t, u) = (reg_type(s), wrap_type(s));
                unary(s, format!("({t})(({u})0 - ({u})a)"))
            }
            Helper::Abs(s) => {
                let (t, u) = (reg_type(s), wrap_type(s));
                unary(s, format!("a < 0 ? ({t})(({u})0 - ({u})a) : a"))
            }
            Helper::Div(s) => {
                let (t, u) = (reg_type(s), wrap_type(s));
                binary(
                    s,
                    format!("b == -1 ? ({t})(({u})0 - ({u})a) : ({t})(a / b)"),
                )
            }
            Helper::Rem(s) => {
                let t = reg_type(s);
                binary(s, format!("b == -1 ? ({t})0 : ({t})(a % b)"))
            }
            Helper::Shl(s) => {
                let (t, u) = (reg_type(s), wrap_type(s));
                let bits = s.size() * 8;
                let out = if s.is_signed_int() {
                    format!("b < 0 || b >= {bits}")
                } else {
                    format!("b >= {bits}u")
                };
                binary(s, format!("{out} ? ({t})0 : ({t})(({u})a << b)"))
            }
            Helper::Shr(s) => {
                let t = reg_type(s);
                let bits = s.size() * 8;
                if s.is_signed_int() {
                    binary(
                        s,
                        format!("b < 0 || b >= {bits} ? ({t})(a < 0 ? -1 : 0) : ({t})(a >> b)"),
                    )
                } else {
                    binary(s, format!("b >= {bits}u ? ({t})0 : ({t})(a >> b)"))
                }
            }
            Helper::FloatToInt(f, to) => float_to_int(&name, f, to),
            Helper::ShuffleLane => format!(
                "template <typename T>\n\
                 {head} T {name}(T v, long long src) {{\n    \
                 const T other = __shfl_sync(0xffffffffu, v, (int)(src & 31));\n    \
                 return src >= 0 && src < 32 ? other : v;\n}}\n"
            ),
        }
    }
}

/// ONNX `Cast` from float type `f` to integer type `to`: truncation toward zero
/// where the value fits, the type's bound beyond it, 0 for NaN. The bounds are
/// powers of two, exact in every float type.
fn float_to_int(name: &str, f: Scalar, to: Scalar) -> String {
    let bits = (to.size() * 8) as i32;
    let (lo, hi_excl, min, max) = if to.is_signed_int() {
        let lo = -(2f64.powi(bits - 1));
        let max = if bits == 64 {
            i64::MAX
        } else {
            (1i64 << (bits - 1)) - 1
        };
        let min = if bits == 64 { i64::MIN } else { -max - 1 };
        (lo, -lo, int_lit(min, to), int_lit(max, to))
    } else {
        let max = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        (0.0, 2f64.powi(bits), uint_lit(0, to), uint_lit(max, to))
    };
    // Hexadecimal (C++17): the powers of two read as what they are.
    let lit = |x: f64| {
        let suffix = if f == Scalar::F32 { "f" } else { "" };
        let power = x.abs().log2() as i32;
        if x == 0.0 {
            format!("0.0{suffix}")
        } else if x < 0.0 {
            format!("(-0x1p{power}{suffix})")
        } else {
            format!("0x1p{power}{suffix}")
        }
    };
    let (t, ft) = (reg_type(to), reg_type(f));
    let zero = if to.is_signed_int() {
        int_lit(0, to)
    } else {
        uint_lit(0, to)
    };
    format!(
        "static __device__ __forceinline__ {t} {name}({ft} x) {{\n    \
         return x != x ? {zero} : x <= {} ? {min} : x >= {} ? {max} : ({t})x;\n}}\n",
        lit(lo),
        lit(hi_excl),
    )
}
