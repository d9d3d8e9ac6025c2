//! Tensor elements as text: every dtype, floats bit-exact.

use half::{bf16, f16};

use crate::{DType, Tensor};

/// The elements of `t` in row-major order, each as it prints.
pub(super) fn format_elements(t: &Tensor) -> Vec<String> {
    let size = t.dtype().size();
    t.bytes()
        .chunks_exact(size)
        .map(|b| format_element(t.dtype(), b))
        .collect()
}

fn format_element(dtype: DType, b: &[u8]) -> String {
    // `b` has exactly `dtype.size()` bytes (chunks_exact), so the conversions hold.
    let arr = |n: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&b[..n]);
        a
    };
    let a = arr(dtype.size());
    if dtype.is_low_precision() {
        return fmt_low_precision(dtype, a[0]);
    }
    match dtype {
        DType::F32 => fmt_f32(f32::from_le_bytes([a[0], a[1], a[2], a[3]])),
        DType::F64 => fmt_f64(f64::from_le_bytes(a)),
        DType::F16 => fmt_half(u16::from_le_bytes([a[0], a[1]]), false),
        DType::BF16 => fmt_half(u16::from_le_bytes([a[0], a[1]]), true),
        DType::I64 => i64::from_le_bytes(a).to_string(),
        DType::U64 => u64::from_le_bytes(a).to_string(),
        DType::I32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string(),
        DType::U32 => u32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string(),
        DType::I16 => i16::from_le_bytes([a[0], a[1]]).to_string(),
        DType::U16 => u16::from_le_bytes([a[0], a[1]]).to_string(),
        DType::I8 => (a[0] as i8).to_string(),
        DType::U8 | DType::List => a[0].to_string(),
        DType::Bool => match a[0] {
            0 => "false".into(),
            1 => "true".into(),
            // A byte other than 0/1 keeps its value so the tensor reads back equal.
            x => x.to_string(),
        },
        // Handled above.
        DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F4E2M1
        | DType::I4
        | DType::U4
        | DType::I2
        | DType::U2 => fmt_low_precision(dtype, a[0]),
    }
}

/// A low-precision element from its stored byte: integers as numbers, floats
/// as their exact value (every one is an f64 whose shortest form reads back),
/// NaN as `nan(0xNN)` with its bits (these formats have several).
fn fmt_low_precision(dtype: DType, byte: u8) -> String {
    let v = crate::lowp::decode(dtype, byte).unwrap_or(f64::NAN);
    if dtype.is_int() {
        return (v as i64).to_string();
    }
    if v.is_nan() {
        return format!("nan(0x{byte:02x})");
    }
    fmt_f64(v)
}

/// Parses a low-precision element as [`fmt_low_precision`] prints it: values
/// must be exact (a literal never rounds) and in range.
fn parse_low_precision(dtype: DType, tok: &str) -> Option<u8> {
    if dtype.is_int() {
        let v: i64 = tok.parse().ok()?;
        let (lo, hi) = crate::lowp::int_range(dtype)?;
        return (lo..=hi)
            .contains(&v)
            .then(|| crate::lowp::encode(dtype, v as f64, true))?;
    }
    if let Some(h) = tok.strip_prefix("nan(0x").and_then(|t| t.strip_suffix(')')) {
        let b = u8::from_str_radix(h, 16).ok()?;
        return crate::lowp::decode(dtype, b)?.is_nan().then_some(b);
    }
    let v = parse_float::<f64>(tok)?;
    // The pattern whose value this is exactly (inline literals are short, and
    // a search needs no per-format inverse).
    let width = crate::lowp::sub_byte_bits(dtype).unwrap_or(8);
    (0..1u16 << width).map(|b| b as u8).find(|&b| {
        crate::lowp::decode(dtype, b)
            .is_some_and(|d| d == v && d.is_sign_negative() == v.is_sign_negative())
    })
}

fn fmt_f32(x: f32) -> String {
    if x.is_nan() {
        return fmt_nan(x.to_bits() as u64, f32::NAN.to_bits() as u64, 8);
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Debug is Rust's shortest round-trip form, with an exponent for extreme values.
    format!("{x:?}")
}

fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        return fmt_nan(x.to_bits(), f64::NAN.to_bits(), 16);
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    format!("{x:?}")
}

fn fmt_nan(bits: u64, canonical: u64, hex_digits: usize) -> String {
    if bits == canonical {
        "nan".into()
    } else {
        format!("nan(0x{bits:0hex_digits$x})")
    }
}

/// f16 or bf16 (`brain`) from its bits: the shortest decimal that reads back to them.
fn fmt_half(bits: u16, brain: bool) -> String {
    let (v, canonical) = if brain {
        (bf16::from_bits(bits).to_f64(), bf16::NAN.to_bits())
    } else {
        (f16::from_bits(bits).to_f64(), f16::NAN.to_bits())
    };
    if v.is_nan() {
        return fmt_nan(bits as u64, canonical as u64, 4);
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    for digits in 0..17 {
        let s = format!("{v:.digits$e}");
        if let Ok(d) = s.parse::<f64>() {
            if half_bits(d, brain) == bits {
                return format!("{d:?}");
            }
        }
    }
    // Every half value is exactly an f64, so the exact form always reads back.
    format!("{v:?}")
}

fn half_bits(v: f64, brain: bool) -> u16 {
    if brain {
        bf16::from_f64(v).to_bits()
    } else {
        f16::from_f64(v).to_bits()
    }
}

/// Appends the little-endian bytes of the element written `tok` (as [`format_elements`]
/// prints it) to `out`, or says why `tok` is not an element of `dtype`.
pub(super) fn parse_element(dtype: DType, tok: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = || format!("`{tok}` is not a valid {dtype} element");
    if dtype == DType::List {
        // A list's encoding prints as its bytes.
        return parse_element(DType::U8, tok, out);
    }
    if dtype.is_low_precision() {
        out.push(parse_low_precision(dtype, tok).ok_or_else(bad)?);
        return Ok(());
    }
    if dtype.is_float() {
        let bits = |hex_digits: usize| -> Option<u64> {
            let h = tok.strip_prefix("nan(0x")?.strip_suffix(')')?;
            if h.is_empty() || h.len() > hex_digits {
                return None;
            }
            u64::from_str_radix(h, 16).ok()
        };
        match dtype {
            DType::F32 => {
                let x = match tok {
                    "nan" => f32::NAN,
                    _ if tok.starts_with("nan(") => f32::from_bits(bits(8).ok_or_else(bad)? as u32),
                    _ => parse_float::<f32>(tok).ok_or_else(bad)?,
                };
                out.extend_from_slice(&x.to_le_bytes());
            }
            DType::F64 => {
                let x = match tok {
                    "nan" => f64::NAN,
                    _ if tok.starts_with("nan(") => f64::from_bits(bits(16).ok_or_else(bad)?),
                    _ => parse_float::<f64>(tok).ok_or_else(bad)?,
                };
                out.extend_from_slice(&x.to_le_bytes());
            }
            _ => {
                let brain = dtype == DType::BF16;
                let b = match tok {
                    "nan" if brain => bf16::NAN.to_bits(),
                    "nan" => f16::NAN.to_bits(),
                    _ if tok.starts_with("nan(") => bits(4).ok_or_else(bad)? as u16,
                    _ => half_bits(parse_float::<f64>(tok).ok_or_else(bad)?, brain),
                };
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        return Ok(());
    }
    if dtype == DType::Bool {
        let b = match tok {
            "false" => 0u8,
            "true" => 1,
            _ => tok.parse::<u8>().map_err(|_| bad())?,
        };
        out.push(b);
        return Ok(());
    }
    let v: i128 = tok.parse().map_err(|_| bad())?;
    let range = || format!("{tok} is out of range for {dtype}");
    macro_rules! put {
        ($t:ty) => {
            out.extend_from_slice(&<$t>::try_from(v).map_err(|_| range())?.to_le_bytes())
        };
    }
    match dtype {
        DType::I64 => put!(i64),
        DType::I32 => put!(i32),
        DType::I16 => put!(i16),
        DType::I8 => put!(i8),
        DType::U64 => put!(u64),
        DType::U32 => put!(u32),
        DType::U16 => put!(u16),
        DType::U8 => put!(u8),
        _ => return Err(bad()),
    }
    Ok(())
}

/// A decimal float, `inf` or `-inf` (not Rust's other spellings such as `NaN`).
fn parse_float<T: std::str::FromStr>(tok: &str) -> Option<T> {
    let t = tok.strip_prefix(['-', '+']).unwrap_or(tok);
    let ok = t == "inf"
        || t.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if ok {
        tok.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: &Tensor) -> Tensor {
        let mut bytes = Vec::new();
        for e in format_elements(t) {
            parse_element(t.dtype(), &e, &mut bytes).unwrap();
        }
        Tensor::from_bytes(t.dtype(), t.shape().to_vec(), bytes.into()).unwrap()
    }

    #[test]
    fn floats_print_shortest_and_read_back_bit_exact() {
        let t = Tensor::from_vec(
            vec![9],
            vec![
                0.1f32,
                -0.0,
                1e-30,
                3.4028235e38,
                1.0,
                f32::NAN,
                f32::INFINITY,
                -f32::INFINITY,
                f32::from_bits(1),
            ],
        );
        assert_eq!(
            format_elements(&t).join(" "),
            "0.1 -0.0 1e-30 3.4028235e38 1.0 nan inf -inf 1e-45"
        );
        assert_eq!(round_trip(&t), t);
        let odd_nan = Tensor::from_vec(vec![2], vec![f32::from_bits(0xffc0_0001), -f32::NAN]);
        assert_eq!(
            format_elements(&odd_nan),
            ["nan(0xffc00001)", "nan(0xffc00000)"]
        );
        assert_eq!(round_trip(&odd_nan), odd_nan);
    }

    #[test]
    fn halves_print_their_own_shortest_decimal() {
        let t = Tensor::from_vec(
            vec![4],
            vec![
                f16::from_f32(0.1),
                f16::MIN_POSITIVE_SUBNORMAL,
                f16::MAX,
                f16::NEG_ZERO,
            ],
        );
        assert_eq!(format_elements(&t), ["0.1", "6e-8", "65500.0", "-0.0"]);
        assert_eq!(round_trip(&t), t);
        let b = Tensor::from_vec(
            vec![3],
            vec![bf16::from_f32(0.1), bf16::MAX, bf16::from_bits(0x7fc1)],
        );
        assert_eq!(format_elements(&b), ["0.1", "3.39e38", "nan(0x7fc1)"]);
        assert_eq!(round_trip(&b), b);
        // Exhaustively: every f16 and bf16 bit pattern reads back.
        for bits in 0..=u16::MAX {
            for brain in [false, true] {
                let s = fmt_half(bits, brain);
                let mut out = Vec::new();
                let dt = if brain { DType::BF16 } else { DType::F16 };
                parse_element(dt, &s, &mut out).unwrap();
                assert_eq!(out, bits.to_le_bytes(), "{dt} {bits:#x} printed {s}");
            }
        }
    }

    #[test]
    fn low_precision_elements_print_and_read_back_bit_exact() {
        for dtype in DType::ALL.into_iter().filter(|d| d.is_low_precision()) {
            let bytes: Vec<u8> = match crate::lowp::int_range(dtype) {
                // Integers in kiln's stored form (sign-extended).
                Some((lo, hi)) => (lo..=hi)
                    .map(|v| crate::lowp::encode(dtype, v as f64, true).unwrap())
                    .collect(),
                None => {
                    let width = crate::lowp::sub_byte_bits(dtype).unwrap_or(8);
                    (0..1u16 << width).map(|b| b as u8).collect()
                }
            };
            let t = Tensor::from_bytes(dtype, vec![bytes.len()], bytes.into()).unwrap();
            assert_eq!(round_trip(&t), t, "{dtype}");
        }
        let mut out = Vec::new();
        assert!(parse_element(DType::I4, "8", &mut out).is_err());
        assert!(parse_element(DType::F8E4M3FN, "0.3", &mut out).is_err());
        assert!(parse_element(DType::F8E4M3FNUZ, "-0.0", &mut out).is_err());
        parse_element(DType::F8E5M2, "-inf", &mut out).unwrap();
        assert_eq!(out, vec![0xFC]);
    }

    #[test]
    fn integers_and_bools_cover_their_range() {
        let u = Tensor::from_vec(vec![2], vec![0u64, u64::MAX]);
        assert_eq!(format_elements(&u), ["0", "18446744073709551615"]);
        assert_eq!(round_trip(&u), u);
        let i = Tensor::from_vec(vec![2], vec![i64::MIN, -1]);
        assert_eq!(round_trip(&i), i);
        let mut out = Vec::new();
        assert_eq!(
            parse_element(DType::U8, "256", &mut out).unwrap_err(),
            "256 is out of range for u8"
        );
        assert!(parse_element(DType::I32, "1.5", &mut out).is_err());
        assert!(parse_element(DType::F32, "NaN", &mut out).is_err());
        assert!(parse_element(DType::F32, "nan(0x)", &mut out).is_err());
        let odd = Tensor::from_bytes(DType::Bool, vec![3], vec![0u8, 1, 7].into()).unwrap();
        assert_eq!(format_elements(&odd), ["false", "true", "7"]);
        assert_eq!(round_trip(&odd), odd);
    }
}
