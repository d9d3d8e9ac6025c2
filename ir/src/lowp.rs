//! Low-precision element formats: the float8 family, float4 (E2M1), the E8M0
//! scale format and the 2- and 4-bit integers, with ONNX's conversions.
//!
//! Every format is stored **unpacked, one element per byte** inside a
//! [`crate::Tensor`] (a 4-bit integer as its sign-extended value, a float as its
//! bit pattern in the low bits), so every byte-moving primitive works on them
//! unchanged; packing two (or four) elements per byte happens only where data
//! crosses to ONNX ([`pack_sub_byte`], [`unpack_sub_byte`]).
//!
//! Conversions follow the ONNX `Cast` specification: round to nearest even,
//! once, from an f64 (exact for every input kiln reads); `saturate` clamps
//! out-of-range values (and infinities) to the largest finite value, otherwise
//! they become infinity (E5M2) or NaN (the formats without infinity). The FNUZ
//! formats have no negative zero and one NaN, `0x80`.

use crate::tensor::Element;
use crate::DType;

/// How a minifloat spends its top exponent and its sign bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Specials {
    /// IEEE-like: the top exponent holds infinities (mantissa 0) and NaNs (E5M2).
    Ieee,
    /// No infinities; only the all-ones pattern (either sign) is NaN (E4M3FN).
    FiniteNanAllOnes,
    /// No infinities, no negative zero: `0x80` is the one NaN (the FNUZ formats).
    Fnuz,
    /// Neither infinities nor NaN (E2M1): NaN converts to zero.
    FiniteOnly,
}

/// A sign-exponent-mantissa format of at most 8 bits.
#[derive(Clone, Copy, Debug)]
struct MiniFloat {
    /// Exponent bits.
    exp_bits: u32,
    /// Mantissa bits.
    man_bits: u32,
    /// Exponent bias.
    bias: i32,
    /// What the top exponent and the sign bit mean.
    specials: Specials,
}

/// E4M3FN: bias 7, max 448, NaN `S.1111.111`, no infinity.
const E4M3FN: MiniFloat = MiniFloat {
    exp_bits: 4,
    man_bits: 3,
    bias: 7,
    specials: Specials::FiniteNanAllOnes,
};
/// E4M3FNUZ: bias 8, max 240, NaN `0x80`.
const E4M3FNUZ: MiniFloat = MiniFloat {
    exp_bits: 4,
    man_bits: 3,
    bias: 8,
    specials: Specials::Fnuz,
};
/// E5M2: bias 15, max 57344, IEEE infinities and NaNs.
const E5M2: MiniFloat = MiniFloat {
    exp_bits: 5,
    man_bits: 2,
    bias: 15,
    specials: Specials::Ieee,
};
/// E5M2FNUZ: bias 16, max 57344, NaN `0x80`.
const E5M2FNUZ: MiniFloat = MiniFloat {
    exp_bits: 5,
    man_bits: 2,
    bias: 16,
    specials: Specials::Fnuz,
};
/// E2M1 (float4): bias 1, max 6, no NaN or infinity.
const E2M1: MiniFloat = MiniFloat {
    exp_bits: 2,
    man_bits: 1,
    bias: 1,
    specials: Specials::FiniteOnly,
};

/// The FNUZ formats' one NaN.
const FNUZ_NAN: u8 = 0x80;
/// E8M0's NaN.
const E8M0_NAN: u8 = 0xFF;
/// E8M0's exponent bias.
const E8M0_BIAS: i32 = 127;
/// The largest E8M0 exponent field that is a number.
const E8M0_MAX_FIELD: u32 = 0xFE;

impl MiniFloat {
    fn sign_bit(self) -> u8 {
        1 << (self.exp_bits + self.man_bits)
    }

    fn max_exp_field(self) -> u32 {
        (1 << self.exp_bits) - 1
    }

    fn man_mask(self) -> u32 {
        (1 << self.man_bits) - 1
    }

    /// The bits of the largest finite value (positive).
    fn max_bits(self) -> u8 {
        let all = (self.max_exp_field() << self.man_bits) | self.man_mask();
        match self.specials {
            // The top exponent is reserved.
            Specials::Ieee => (all - self.man_mask() - 1) as u8,
            // Only the all-ones pattern is NaN.
            Specials::FiniteNanAllOnes => (all - 1) as u8,
            Specials::Fnuz | Specials::FiniteOnly => all as u8,
        }
    }

    fn nan_bits(self, negative: bool) -> u8 {
        match self.specials {
            Specials::Fnuz => FNUZ_NAN,
            Specials::Ieee | Specials::FiniteNanAllOnes => {
                let all = ((self.max_exp_field() << self.man_bits) | self.man_mask()) as u8;
                all | if negative { self.sign_bit() } else { 0 }
            }
            Specials::FiniteOnly => 0,
        }
    }

    fn decode(self, bits: u8) -> f64 {
        let bits = bits & ((self.sign_bit() << 1).wrapping_sub(1));
        if self.specials == Specials::Fnuz && bits == FNUZ_NAN {
            return f64::NAN;
        }
        let negative = bits & self.sign_bit() != 0;
        let exp = (bits as u32 >> self.man_bits) & self.max_exp_field();
        let man = bits as u32 & self.man_mask();
        let magnitude = match self.specials {
            Specials::Ieee if exp == self.max_exp_field() => {
                if man == 0 {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            }
            Specials::FiniteNanAllOnes if exp == self.max_exp_field() && man == self.man_mask() => {
                f64::NAN
            }
            _ if exp == 0 => man as f64 * pow2(1 - self.bias - self.man_bits as i32),
            _ => (1.0 + man as f64 / pow2(self.man_bits as i32)) * pow2(exp as i32 - self.bias),
        };
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    fn encode(self, x: f64, saturate: bool) -> u8 {
        let negative = x.is_sign_negative();
        let sign = if negative { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan_bits(negative);
        }
        let max = self.decode(self.max_bits());
        let overflow = || {
            if saturate || self.specials == Specials::FiniteOnly {
                sign | self.max_bits()
            } else if self.specials == Specials::Ieee {
                sign | ((self.max_exp_field() << self.man_bits) as u8)
            } else {
                self.nan_bits(negative)
            }
        };
        let a = x.abs();
        if a.is_infinite() {
            return overflow();
        }
        let zero = if self.specials == Specials::Fnuz {
            0
        } else {
            sign
        };
        if a == 0.0 {
            return zero;
        }
        let emin = 1 - self.bias;
        let e = exponent_of(a).max(emin);
        let step = pow2(e - self.man_bits as i32);
        // Exact: a scaled by a power of two; rounding happens once, here.
        let rounded = (a / step).round_ties_even() * step;
        if rounded > max {
            return overflow();
        }
        if rounded == 0.0 {
            return zero;
        }
        let e = exponent_of(rounded);
        let field = if e < emin {
            (rounded / pow2(emin - self.man_bits as i32)) as u32
        } else {
            let exp = (e + self.bias) as u32;
            let man = ((rounded / pow2(e) - 1.0) * pow2(self.man_bits as i32)) as u32;
            (exp << self.man_bits) | man
        };
        sign | field as u8
    }
}

/// 2^e as f64 (exact for every exponent these formats reach).
fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// floor(log2(a)) of a positive finite f64 (subnormal f64s included).
fn exponent_of(a: f64) -> i32 {
    let bits = a.to_bits();
    let field = ((bits >> 52) & 0x7FF) as i32;
    if field == 0 {
        // Subnormal: scale into the normal range first.
        exponent_of(a * pow2(64)) - 64
    } else {
        field - 1023
    }
}

/// The minifloat format of a float8/float4 dtype.
fn minifloat(dtype: DType) -> Option<MiniFloat> {
    Some(match dtype {
        DType::F8E4M3FN => E4M3FN,
        DType::F8E4M3FNUZ => E4M3FNUZ,
        DType::F8E5M2 => E5M2,
        DType::F8E5M2FNUZ => E5M2FNUZ,
        DType::F4E2M1 => E2M1,
        _ => return None,
    })
}

/// The value of the E8M0 bits `b`: 2^(b − 127), NaN for `0xFF`.
fn e8m0_decode(b: u8) -> f64 {
    if b == E8M0_NAN {
        f64::NAN
    } else {
        pow2(b as i32 - E8M0_BIAS)
    }
}

/// `x` as E8M0 the way ONNX's default `round_mode="up"` does: from x's f32
/// exponent, one up when any mantissa bit is set; NaN and infinity give NaN
/// unless saturating clamps the rounding at the largest exponent. The sign is
/// ignored (a negative input is unspecified by ONNX).
fn e8m0_encode(x: f64, saturate: bool) -> u8 {
    let bits = (x as f32).to_bits();
    let exp = (bits >> 23) & 0xFF;
    if exp == 0xFF {
        return E8M0_NAN;
    }
    let fraction = bits & 0x7F_FFFF;
    let up = fraction != 0 && !(saturate && exp == E8M0_MAX_FIELD);
    (exp + up as u32) as u8
}

/// The value of one stored low-precision element (its byte in kiln's unpacked
/// storage) of `dtype`, or `None` when `dtype` is not a low-precision type.
pub fn decode(dtype: DType, byte: u8) -> Option<f64> {
    if let Some(f) = minifloat(dtype) {
        return Some(f.decode(byte));
    }
    Some(match dtype {
        DType::F8E8M0 => e8m0_decode(byte),
        DType::I4 | DType::I2 | DType::U4 | DType::U2 => int_of_byte(dtype, byte) as f64,
        _ => return None,
    })
}

/// `x` converted to a low-precision `dtype` with ONNX `Cast` semantics (see the
/// module doc; `saturate` only matters for the float8 formats), as the byte
/// kiln stores; `None` when `dtype` is not a low-precision type.
pub fn encode(dtype: DType, x: f64, saturate: bool) -> Option<u8> {
    if let Some(f) = minifloat(dtype) {
        return Some(f.encode(x, saturate));
    }
    Some(match dtype {
        DType::F8E8M0 => e8m0_encode(x, saturate),
        // Truncation toward zero, then two's-complement wrap (NaN gives 0).
        DType::I4 | DType::I2 | DType::U4 | DType::U2 => wrap_int(dtype, x as i64),
        _ => return None,
    })
}

/// Bits of one element of a sub-byte integer type (2 or 4), `None` otherwise.
pub fn sub_byte_bits(dtype: DType) -> Option<u32> {
    match dtype {
        DType::I4 | DType::U4 | DType::F4E2M1 => Some(4),
        DType::I2 | DType::U2 => Some(2),
        _ => None,
    }
}

/// The stored byte of `v` wrapped to a 2- or 4-bit integer type.
fn wrap_int(dtype: DType, v: i64) -> u8 {
    let bits = sub_byte_bits(dtype).unwrap_or(8);
    let low = (v as u8) & ((1u16 << bits) - 1) as u8;
    if dtype.is_unsigned() {
        low
    } else {
        sign_extend(low, bits) as u8
    }
}

/// The value of a stored byte of a 2- or 4-bit integer type (only its low bits count).
fn int_of_byte(dtype: DType, byte: u8) -> i64 {
    let bits = sub_byte_bits(dtype).unwrap_or(8);
    let low = byte & ((1u16 << bits) - 1) as u8;
    if dtype.is_unsigned() {
        low as i64
    } else {
        sign_extend(low, bits) as i64
    }
}

fn sign_extend(low: u8, bits: u32) -> i8 {
    let shift = 8 - bits;
    ((low << shift) as i8) >> shift
}

/// The inclusive range of a 2- or 4-bit integer type (what QuantizeLinear clamps to).
pub fn int_range(dtype: DType) -> Option<(i64, i64)> {
    let bits = match dtype {
        DType::I4 | DType::U4 => 4,
        DType::I2 | DType::U2 => 2,
        _ => return None,
    };
    Some(if dtype.is_unsigned() {
        (0, (1 << bits) - 1)
    } else {
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    })
}

/// Unpacks `count` elements of a sub-byte type packed ONNX's way (first element
/// in the least significant bits) into kiln's one byte per element; `None` when
/// `packed` is not exactly the bytes `count` elements take.
pub fn unpack_sub_byte(dtype: DType, packed: &[u8], count: usize) -> Option<Vec<u8>> {
    let bits = sub_byte_bits(dtype)? as usize;
    let per_byte = 8 / bits;
    if packed.len() != count.div_ceil(per_byte) {
        return None;
    }
    let mask = ((1u16 << bits) - 1) as u8;
    let out = (0..count)
        .map(|i| {
            let field = (packed[i / per_byte] >> ((i % per_byte) * bits)) & mask;
            normalize(dtype, field)
        })
        .collect();
    Some(out)
}

/// Packs kiln's one byte per element of a sub-byte type ONNX's way (first element
/// in the least significant bits, the last byte zero-padded); `None` for other types.
pub fn pack_sub_byte(dtype: DType, unpacked: &[u8]) -> Option<Vec<u8>> {
    let bits = sub_byte_bits(dtype)? as usize;
    let per_byte = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    let mut out = vec![0u8; unpacked.len().div_ceil(per_byte)];
    for (i, &b) in unpacked.iter().enumerate() {
        out[i / per_byte] |= (b & mask) << ((i % per_byte) * bits);
    }
    Some(out)
}

/// The stored byte of a sub-byte field: signed integers sign-extended.
fn normalize(dtype: DType, field: u8) -> u8 {
    match dtype {
        DType::I4 | DType::I2 => wrap_int(dtype, int_of_byte(dtype, field)),
        _ => field,
    }
}

macro_rules! lowp_element {
    ($(#[$doc:meta])* $name:ident, $dtype:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub u8);

        impl Element for $name {
            const DTYPE: DType = $dtype;
            fn read_le(bytes: &[u8]) -> Self {
                $name(bytes[0])
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.push(self.0);
            }
            fn to_f64(self) -> f64 {
                decode($dtype, self.0).unwrap_or(f64::NAN)
            }
            fn from_f64(v: f64) -> Self {
                $name(encode($dtype, v, true).unwrap_or(0))
            }
            fn to_i64(self) -> i64 {
                let v = self.to_f64();
                if v.is_nan() {
                    0
                } else {
                    v as i64
                }
            }
            fn from_i64(v: i64) -> Self {
                if $dtype.is_int() {
                    $name(wrap_int($dtype, v))
                } else {
                    Self::from_f64(v as f64)
                }
            }
        }
    };
}

lowp_element!(
    /// One float8 E4M3FN element (its bits).
    F8E4M3FN,
    DType::F8E4M3FN
);
lowp_element!(
    /// One float8 E4M3FNUZ element (its bits).
    F8E4M3FNUZ,
    DType::F8E4M3FNUZ
);
lowp_element!(
    /// One float8 E5M2 element (its bits).
    F8E5M2,
    DType::F8E5M2
);
lowp_element!(
    /// One float8 E5M2FNUZ element (its bits).
    F8E5M2FNUZ,
    DType::F8E5M2FNUZ
);
lowp_element!(
    /// One float8 E8M0 scale element (its bits).
    F8E8M0,
    DType::F8E8M0
);
lowp_element!(
    /// One float4 E2M1 element (its bits in the low nibble).
    F4E2M1,
    DType::F4E2M1
);
lowp_element!(
    /// One signed 4-bit integer (sign-extended into the byte).
    I4,
    DType::I4
);
lowp_element!(
    /// One unsigned 4-bit integer.
    U4,
    DType::U4
);
lowp_element!(
    /// One signed 2-bit integer (sign-extended into the byte).
    I2,
    DType::I2
);
lowp_element!(
    /// One unsigned 2-bit integer.
    U2,
    DType::U2
);

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(d: DType, x: f64) -> u8 {
        encode(d, x, true).unwrap()
    }

    fn enc_ns(d: DType, x: f64) -> u8 {
        encode(d, x, false).unwrap()
    }

    fn dec(d: DType, b: u8) -> f64 {
        decode(d, b).unwrap()
    }

    #[test]
    fn every_minifloat_pattern_round_trips() {
        for d in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
        ] {
            for b in 0..=255u8 {
                let v = dec(d, b);
                if v.is_nan() {
                    assert!(dec(d, enc(d, v)).is_nan());
                } else if v.is_infinite() {
                    assert_eq!(enc_ns(d, v), b, "{d} {b:#x}");
                } else {
                    assert_eq!(enc(d, v), b, "{d} {b:#x} = {v}");
                }
            }
        }
        for b in 0..16u8 {
            assert_eq!(enc(DType::F4E2M1, dec(DType::F4E2M1, b)), b);
        }
    }

    #[test]
    fn largest_values_and_saturation() {
        assert_eq!(dec(DType::F8E4M3FN, 0x7E), 448.0);
        assert_eq!(dec(DType::F8E4M3FNUZ, 0x7F), 240.0);
        assert_eq!(dec(DType::F8E5M2, 0x7B), 57344.0);
        assert_eq!(dec(DType::F8E5M2FNUZ, 0x7F), 57344.0);
        assert_eq!(dec(DType::F4E2M1, 0x7), 6.0);
        // Saturating: out of range and infinities clamp to ±max.
        assert_eq!(enc(DType::F8E4M3FN, 1e6), 0x7E);
        assert_eq!(enc(DType::F8E4M3FN, f64::NEG_INFINITY), 0xFE);
        assert_eq!(enc(DType::F8E5M2, f64::INFINITY), 0x7B);
        assert_eq!(enc(DType::F8E4M3FNUZ, -1e6), 0xFF);
        assert_eq!(enc(DType::F4E2M1, 1e6), 0x7);
        // Not saturating: E5M2 overflows to infinity, the others to NaN.
        assert_eq!(enc_ns(DType::F8E5M2, 1e6), 0x7C);
        assert_eq!(enc_ns(DType::F8E5M2, -1e6), 0xFC);
        assert_eq!(enc_ns(DType::F8E4M3FN, 480.0), 0x7F);
        assert_eq!(enc_ns(DType::F8E4M3FN, -1e6), 0xFF);
        assert_eq!(enc_ns(DType::F8E4M3FNUZ, f64::INFINITY), 0x80);
        assert_eq!(enc_ns(DType::F8E5M2FNUZ, -1e9), 0x80);
        // Values that round down to the largest finite value are not overflows.
        assert_eq!(enc_ns(DType::F8E4M3FN, 464.0), 0x7E);
        assert_eq!(enc_ns(DType::F8E4M3FN, 449.0), 0x7E);
    }

    #[test]
    fn nan_zero_and_negative_zero() {
        assert_eq!(enc(DType::F8E4M3FN, f64::NAN), 0x7F);
        assert_eq!(enc(DType::F8E4M3FN, -f64::NAN), 0xFF);
        assert_eq!(enc(DType::F8E4M3FNUZ, -f64::NAN), 0x80);
        assert!(dec(DType::F8E5M2FNUZ, 0x80).is_nan());
        assert!(dec(DType::F8E5M2, 0x7E).is_nan());
        assert_eq!(dec(DType::F8E5M2, 0x7C), f64::INFINITY);
        assert_eq!(enc(DType::F8E4M3FN, -0.0), 0x80);
        assert_eq!(enc(DType::F8E5M2, -0.0), 0x80);
        // FNUZ has no negative zero.
        assert_eq!(enc(DType::F8E4M3FNUZ, -0.0), 0x00);
        assert_eq!(enc(DType::F8E5M2FNUZ, -1e-30), 0x00);
        assert_eq!(enc(DType::F4E2M1, f64::NAN), 0x0);
    }

    #[test]
    fn rounding_ties_to_even_and_subnormals() {
        // 1 + 1/16 is halfway between 1 and 1.125 in E4M3: to even (1).
        assert_eq!(enc(DType::F8E4M3FN, 1.0625), 0x38);
        // 1 + 3/16 is halfway between 1.125 and 1.25: to even (1.25).
        assert_eq!(enc(DType::F8E4M3FN, 1.1875), 0x3A);
        // Smallest E4M3FN subnormal 2^-9; half of it ties to 0, 3/4 of it rounds up.
        assert_eq!(dec(DType::F8E4M3FN, 0x01), 2f64.powi(-9));
        assert_eq!(enc(DType::F8E4M3FN, 2f64.powi(-10)), 0x00);
        assert_eq!(enc(DType::F8E4M3FN, 3.0 * 2f64.powi(-11)), 0x01);
        assert_eq!(enc(DType::F8E4M3FN, 3.0 * 2f64.powi(-10)), 0x02);
        // E5M2 smallest subnormal 2^-16, FNUZ 2^-17.
        assert_eq!(dec(DType::F8E5M2, 0x01), 2f64.powi(-16));
        assert_eq!(dec(DType::F8E5M2FNUZ, 0x01), 2f64.powi(-17));
        // float4: 0.25 ties to 0, 0.75 to 1, 5 to 4, 2.5 to 2.
        assert_eq!(enc(DType::F4E2M1, 0.25), 0x0);
        assert_eq!(enc(DType::F4E2M1, 0.75), 0x2);
        assert_eq!(enc(DType::F4E2M1, 5.0), 0x6);
        assert_eq!(enc(DType::F4E2M1, 2.5), 0x4);
        assert_eq!(enc(DType::F4E2M1, -3.5), 0xE);
    }

    #[test]
    fn e8m0_rounds_up_and_saturates() {
        assert_eq!(enc(DType::F8E8M0, 1.0), 127);
        assert_eq!(enc(DType::F8E8M0, 1.1), 128);
        assert_eq!(enc(DType::F8E8M0, 0.124), 124);
        assert_eq!(enc(DType::F8E8M0, 0.0), 0);
        assert_eq!(enc(DType::F8E8M0, f64::NAN), 0xFF);
        assert_eq!(enc(DType::F8E8M0, 3.0e38), 0xFE);
        assert_eq!(enc_ns(DType::F8E8M0, 3.0e38), 0xFF);
        assert_eq!(dec(DType::F8E8M0, 127), 1.0);
        assert!(dec(DType::F8E8M0, 0xFF).is_nan());
    }

    #[test]
    fn sub_byte_integers_wrap_and_pack_low_first() {
        assert_eq!(enc(DType::I4, -9.0) as i8, 7);
        assert_eq!(enc(DType::I4, 8.0) as i8, -8);
        assert_eq!(enc(DType::U4, -1.0), 15);
        assert_eq!(enc(DType::I2, 2.0) as i8, -2);
        assert_eq!(enc(DType::I4, f64::NAN), 0);
        assert_eq!(dec(DType::I4, 0x0F), -1.0);
        assert_eq!(int_range(DType::I4), Some((-8, 7)));
        assert_eq!(int_range(DType::U2), Some((0, 3)));
        let unpacked = unpack_sub_byte(DType::I4, &[0xF1, 0x08], 3).unwrap();
        assert_eq!(unpacked, vec![1, 0xFF, 0xF8]);
        assert_eq!(
            pack_sub_byte(DType::I4, &unpacked).unwrap(),
            vec![0xF1, 0x08]
        );
        let u2 = unpack_sub_byte(DType::U2, &[0b1110_0100, 0b01], 5).unwrap();
        assert_eq!(u2, vec![0, 1, 2, 3, 1]);
        assert_eq!(
            pack_sub_byte(DType::U2, &u2).unwrap(),
            vec![0b1110_0100, 0b01]
        );
        assert!(unpack_sub_byte(DType::U4, &[0], 3).is_none());
    }
}
