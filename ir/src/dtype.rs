//! Element types of tensors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor.
///
/// The set covers what exported models use: the float types kiln computes in,
/// the integer types of indices and quantized weights, and booleans of masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit IEEE float.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean, one byte per element (0 or 1).
    Bool,
    /// float8 E4M3FN (bias 7, no infinity, NaN `S.1111.111`, max 448).
    F8E4M3FN,
    /// float8 E4M3FNUZ (bias 8, no infinity or negative zero, NaN `0x80`, max 240).
    F8E4M3FNUZ,
    /// float8 E5M2 (bias 15, IEEE infinities and NaNs, max 57344).
    F8E5M2,
    /// float8 E5M2FNUZ (bias 16, no infinity or negative zero, NaN `0x80`, max 57344).
    F8E5M2FNUZ,
    /// float8 E8M0: the unsigned power-of-two scale of the MX formats (2^(b−127), NaN `0xFF`).
    F8E8M0,
    /// float4 E2M1 (bias 1, no infinity or NaN, max 6); stored one per byte.
    F4E2M1,
    /// Signed 4-bit integer; stored one per byte, sign-extended.
    I4,
    /// Unsigned 4-bit integer; stored one per byte.
    U4,
    /// Signed 2-bit integer; stored one per byte, sign-extended.
    I2,
    /// Unsigned 2-bit integer; stored one per byte.
    U2,
    /// An opaque list value, an ONNX sequence or optional, whose bytes encode
    /// its elements (`crate::list`): a 1-D tensor only the list ops read.
    List,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 24] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F8E8M0,
        DType::F4E2M1,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
        DType::List,
    ];

    /// Size of one element in bytes, as kiln stores it: the sub-byte types
    /// (4- and 2-bit) take one byte each inside a `Tensor`, unpacked; ONNX's
    /// packed form exists only at the boundary (`lowp::pack_sub_byte`).
    pub const fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2
            | DType::List => 1,
        }
    }

    /// Bits of one element's value (4 or 2 for the sub-byte types, which kiln
    /// still stores one per byte): what `BitCast` compares.
    pub const fn bits(self) -> usize {
        match self {
            DType::I4 | DType::U4 | DType::F4E2M1 => 4,
            DType::I2 | DType::U2 => 2,
            _ => self.size() * 8,
        }
    }

    /// True for the floating-point types (the float8/float4 formats included).
    pub const fn is_float(self) -> bool {
        matches!(
            self,
            DType::F32
                | DType::F16
                | DType::BF16
                | DType::F64
                | DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
                | DType::F8E8M0
                | DType::F4E2M1
        )
    }

    /// True for the signed and unsigned integer types (not bool).
    pub const fn is_int(self) -> bool {
        !self.is_float() && !matches!(self, DType::Bool | DType::List)
    }

    /// True for the unsigned integer types.
    pub const fn is_unsigned(self) -> bool {
        matches!(
            self,
            DType::U8 | DType::U16 | DType::U32 | DType::U64 | DType::U4 | DType::U2
        )
    }

    /// True for the low-precision storage formats (float8, float4, E8M0, the
    /// 4- and 2-bit integers): the reference interpreter converts them
    /// (`crate::lowp`), generated kernels do not compute in them, so the
    /// scheduler leaves their nodes to the host.
    pub const fn is_low_precision(self) -> bool {
        matches!(
            self,
            DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
                | DType::F8E8M0
                | DType::F4E2M1
                | DType::I4
                | DType::U4
                | DType::I2
                | DType::U2
        )
    }

    /// The short name used in the text form (`f32`, `i64`, `bool`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "f8e4m3fn",
            DType::F8E4M3FNUZ => "f8e4m3fnuz",
            DType::F8E5M2 => "f8e5m2",
            DType::F8E5M2FNUZ => "f8e5m2fnuz",
            DType::F8E8M0 => "f8e8m0",
            DType::F4E2M1 => "f4e2m1",
            DType::I4 => "i4",
            DType::U4 => "u4",
            DType::I2 => "i2",
            DType::U2 => "u2",
            DType::List => "list",
        }
    }

    /// Parses a name printed by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
    }
}
