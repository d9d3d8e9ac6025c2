//! C spellings of the kernel IR's scalars: type names, literals and identifiers.

use crate::gpu::sim::Value;
use crate::kernel::{Literal, Scalar};

/// The C type of a register of type `s` (`bool` for truth values).
pub(super) fn reg_type(s: Scalar) -> &'static str {
    match s {
        Scalar::F32 => "float",
        Scalar::F64 => "double",
        Scalar::F16 => "__half",
        Scalar::BF16 => "__nv_bfloat16",
        Scalar::I8 => "signed char",
        Scalar::I16 => "short",
        Scalar::I32 => "int",
        Scalar::I64 => "long long",
        Scalar::U8 => "unsigned char",
        Scalar::U16 => "unsigned short",
        Scalar::U32 => "unsigned int",
        Scalar::U64 => "unsigned long long",
        Scalar::Bool => "bool",
    }
}

/// The C type of an element of type `s` in memory: a truth value is one byte
/// holding 0 or 1 (a C++ `bool` holding any other byte would be undefined).
pub(super) fn mem_type(s: Scalar) -> &'static str {
    match s {
        Scalar::Bool => "unsigned char",
        other => reg_type(other),
    }
}

/// The unsigned C type integer arithmetic of type `s` wraps in: `unsigned int`
/// up to 32 bits (C promotes narrower operands to it anyway), else
/// `unsigned long long`.
pub(super) fn wrap_type(s: Scalar) -> &'static str {
    if s.size() == 8 {
        "unsigned long long"
    } else {
        "unsigned int"
    }
}

/// Integers narrower than `int`, whose C arithmetic yields an `int` that must be
/// converted back.
pub(super) fn is_narrow(s: Scalar) -> bool {
    s.is_int() && s.size() < 4
}

/// A literal of the IR, normalized as the interpreter normalizes it (wrapped
/// or rounded to its type), as a C expression of exactly its C type.
pub(super) fn literal(l: &Literal) -> String {
    value(Value::of_literal(l), l.scalar())
}

/// `v`, a value of type `s`, as a C expression of type [`reg_type`]`(s)`.
pub(super) fn value(v: Value, s: Scalar) -> String {
    match s {
        Scalar::F32 => f32_lit(v.as_f64() as f32),
        Scalar::F64 => f64_lit(v.as_f64()),
        // Exact: the value is an f16/bf16, which an f32 holds exactly.
        Scalar::F16 => format!("__float2half_rn({})", f32_lit(v.as_f64() as f32)),
        Scalar::BF16 => format!("__float2bfloat16_rn({})", f32_lit(v.as_f64() as f32)),
        Scalar::Bool => if v.as_bool() { "true" } else { "false" }.into(),
        Scalar::U64 | Scalar::U32 | Scalar::U16 | Scalar::U8 => {
            let n = match v {
                Value::Uint(n) => n,
                other => other.as_i64() as u64,
            };
            uint_lit(n, s)
        }
        Scalar::I64 | Scalar::I32 | Scalar::I16 | Scalar::I8 => int_lit(v.as_i64(), s),
    }
}

/// A signed integer constant of type `s` (`-5LL`, `(short)3`); the most
/// negative value of a type is spelled as a difference (C has no negative
/// literals, and `2147483648` would not be an `int`).
pub(super) fn int_lit(n: i64, s: Scalar) -> String {
    let (suffix, min) = match s {
        Scalar::I64 => ("LL", i64::MIN),
        Scalar::I32 => ("", i32::MIN as i64),
        // Narrow types: an int constant converted.
        _ => return format!("({}){}", reg_type(s), int_lit(n, Scalar::I32)),
    };
    if n == min {
        format!("({}{suffix} - 1)", n + 1)
    } else if n < 0 {
        format!("({n}{suffix})")
    } else {
        format!("{n}{suffix}")
    }
}

/// An unsigned integer constant of type `s` (`7u`, `7ull`, `(unsigned char)7u`).
pub(super) fn uint_lit(n: u64, s: Scalar) -> String {
    match s {
        Scalar::U64 => format!("{n}ull"),
        Scalar::U32 => format!("{n}u"),
        _ => format!("({}){n}u", reg_type(s)),
    }
}

/// An f32 constant: the shortest decimal that reads back as `x` (Rust's `{:?}`,
/// which C parses to the same float), `f`-suffixed; infinities and NaN by
/// their bits (C has no literal for them).
pub(super) fn f32_lit(x: f32) -> String {
    if x.is_nan() {
        "__int_as_float(0x7fc00000)".into()
    } else if x.is_infinite() {
        let bits = if x > 0.0 {
            "0x7f800000"
        } else {
            "(int)0xff800000u"
        };
        format!("__int_as_float({bits})")
    } else if x.is_sign_negative() {
        format!("({x:?}f)")
    } else {
        format!("{x:?}f")
    }
}

/// An f64 constant, as [`f32_lit`].
pub(super) fn f64_lit(x: f64) -> String {
    if x.is_nan() {
        "__longlong_as_double(0x7ff8000000000000LL)".into()
    } else if x.is_infinite() {
        let bits = if x > 0.0 {
            "0x7ff0000000000000LL"
        } else {
            "(long long)0xfff0000000000000ull"
        };
        format!("__longlong_as_double({bits})")
    } else if x.is_sign_negative() {
        format!("({x:?})")
    } else {
        format!("{x:?}")
    }
}

/// `name` as a C identifier fragment: characters outside `[A-Za-z0-9_]` become
/// `_`, runs of `_` collapse, at most [`MAX_NAME_CHARS`] characters.
pub(super) fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        if out.len() == MAX_NAME_CHARS {
            break;
        }
        out.push(c);
    }
    out.trim_matches('_').to_string()
}

/// Longest readable suffix kept from a buffer or shared array name.
const MAX_NAME_CHARS: usize = 32;

/// Whether `name` is a C identifier (ASCII letters, digits and `_`, not
/// starting with a digit).
pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_back_exactly() {
        assert_eq!(f32_lit(0.1), "0.1f");
        assert_eq!(f32_lit(-2.0), "(-2.0f)");
        assert_eq!(f32_lit(1e-7), "1e-7f");
        assert_eq!(
            f32_lit(f32::NEG_INFINITY),
            "__int_as_float((int)0xff800000u)"
        );
        assert_eq!(f64_lit(1e300), "1e300");
        assert_eq!(
            int_lit(i64::MIN, Scalar::I64),
            "(-9223372036854775807LL - 1)"
        );
        assert_eq!(int_lit(i32::MIN as i64, Scalar::I32), "(-2147483647 - 1)");
        assert_eq!(int_lit(-3, Scalar::I8), "(signed char)(-3)");
        assert_eq!(uint_lit(u64::MAX, Scalar::U64), "18446744073709551615ull");
        // Literals are normalized to their type first, as the interpreter does.
        assert_eq!(
            literal(&Literal::Int(300, Scalar::U8)),
            "(unsigned char)44u"
        );
        assert_eq!(literal(&Literal::Int(-1, Scalar::U32)), "4294967295u");
        assert_eq!(literal(&Literal::Float(0.1, Scalar::F32)), "0.1f");
        assert_eq!(literal(&Literal::Int(2, Scalar::Bool)), "true");
    }

    #[test]
    fn names_become_identifiers() {
        assert_eq!(sanitize("layers.3.mlp/out"), "layers_3_mlp_out");
        assert_eq!(sanitize("..x"), "x");
        assert_eq!(sanitize(&"a".repeat(40)).len(), MAX_NAME_CHARS);
        assert!(is_identifier("softmax_rows2"));
        assert!(!is_identifier("2d") && !is_identifier("a-b") && !is_identifier(""));
    }
}
