//! Host tensors: the values the reference interpreter computes with, and the
//! storage of weights (memory-mapped, shared, never copied on load).

use bytes::Bytes;
use half::{bf16, f16};
use std::fmt;

use crate::{DType, Shape};

/// A Rust scalar type that is the element of some [`DType`].
pub trait Element: Copy + Send + Sync + 'static {
    /// The dtype whose elements are this type.
    const DTYPE: DType;
    /// Reads one element from little-endian bytes (exactly `DTYPE.size()` of them).
    fn read_le(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of this element.
    fn write_le(self, out: &mut Vec<u8>);
    /// The value as f64 (exact for every float type and for integers up to 2^53).
    fn to_f64(self) -> f64;
    /// The value converted from f64 with ONNX `Cast` semantics (round to nearest for floats,
    /// truncation toward zero for integers, `x != 0` for bool).
    fn from_f64(v: f64) -> Self;
    /// The value as i64 (floats truncated toward zero; u64 reinterpreted).
    fn to_i64(self) -> i64;
    /// The value converted from i64 (wrapping for narrower integers).
    fn from_i64(v: i64) -> Self;
}

macro_rules! int_element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element width"))
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
        }
    };
}

int_element!(i64, DType::I64);
int_element!(i32, DType::I32);
int_element!(i16, DType::I16);
int_element!(i8, DType::I8);
int_element!(u8, DType::U8);
int_element!(u16, DType::U16);
int_element!(u32, DType::U32);
int_element!(u64, DType::U64);

macro_rules! float_element {
    ($t:ty, $d:expr, $to:expr, $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element width"))
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_f64(self) -> f64 {
                $to(self)
            }
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            fn to_i64(self) -> i64 {
                $to(self) as i64
            }
            fn from_i64(v: i64) -> Self {
                $from(v as f64)
            }
        }
    };
}

float_element!(f32, DType::F32, |x: f32| x as f64, |v: f64| v as f32);
float_element!(f64, DType::F64, |x: f64| x, |v: f64| v);
float_element!(f16, DType::F16, |x: f16| x.to_f64(), f16::from_f64);
float_element!(bf16, DType::BF16, |x: bf16| x.to_f64(), bf16::from_f64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
}

/// Calls `$body` with `$T` bound to the Rust element type of `$dtype`.
#[macro_export]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {{
        use $crate::DType as __D;
        match $dtype {
            __D::F32 => {
                type $T = f32;
                $body
            }
            __D::F64 => {
                type $T = f64;
                $body
            }
            __D::F16 => {
                type $T = $crate::half::f16;
                $body
            }
            __D::BF16 => {
                type $T = $crate::half::bf16;
                $body
            }
            __D::I64 => {
                type $T = i64;
                $body
            }
            __D::I32 => {
                type $T = i32;
                $body
            }
            __D::I16 => {
                type $T = i16;
                $body
            }
            __D::I8 => {
                type $T = i8;
                $body
            }
            __D::U8 => {
                type $T = u8;
                $body
            }
            __D::U16 => {
                type $T = u16;
                $body
            }
            __D::U32 => {
                type $T = u32;
                $body
            }
            __D::U64 => {
                type $T = u64;
                $body
            }
            __D::Bool => {
                type $T = bool;
                $body
            }
            __D::F8E4M3FN => {
                type $T = $crate::lowp::F8E4M3FN;
                $body
            }
            __D::F8E4M3FNUZ => {
                type $T = $crate::lowp::F8E4M3FNUZ;
                $body
            }
            __D::F8E5M2 => {
                type $T = $crate::lowp::F8E5M2;
                $body
            }
            __D::F8E5M2FNUZ => {
                type $T = $crate::lowp::F8E5M2FNUZ;
                $body
            }
            __D::F8E8M0 => {
                type $T = $crate::lowp::F8E8M0;
                $body
            }
            __D::F4E2M1 => {
                type $T = $crate::lowp::F4E2M1;
                $body
            }
            __D::I4 => {
                type $T = $crate::lowp::I4;
                $body
            }
            __D::U4 => {
                type $T = $crate::lowp::U4;
                $body
            }
            __D::I2 => {
                type $T = $crate::lowp::I2;
                $body
            }
            __D::U2 => {
                type $T = $crate::lowp::U2;
                $body
            }
            // A list's encoding, moved as bytes (only list ops read it).
            __D::List => {
                type $T = u8;
                $body
            }
        }
    }};
}

/// A dense tensor in host memory, row-major, little-endian.
///
/// The bytes are shared ([`Bytes`]): cloning a tensor never copies its data, and a
/// tensor can view a memory-mapped file directly (that is what a weight handle is).
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Bytes,
}

/// Why bytes could not become a tensor.
#[derive(Debug, thiserror::Error)]
#[error("tensor of {dtype}{shape:?} needs {expected} bytes, got {actual}")]
pub struct SizeMismatch {
    /// The dtype asked for.
    pub dtype: DType,
    /// The shape asked for.
    pub shape: Vec<usize>,
    /// Bytes that shape needs.
    pub expected: usize,
    /// Bytes given.
    pub actual: usize,
}

impl Tensor {
    /// A tensor viewing `data` (which may be a slice of a memory-mapped file).
    pub fn from_bytes(
        dtype: DType,
        shape: Vec<usize>,
        data: Bytes,
    ) -> Result<Tensor, SizeMismatch> {
        // usize::MAX stands for a size that does not fit (no data is that long).
        let expected = crate::shape::checked_product(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .unwrap_or(usize::MAX);
        if expected != data.len() {
            return Err(SizeMismatch {
                dtype,
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// A tensor holding these elements.
    ///
    /// # Panics
    /// If `values.len()` is not the product of `shape` (a bug in the caller).
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Tensor {
        assert_eq!(
            crate::shape::checked_product(&shape),
            Some(values.len()),
            "tensor element count"
        );
        let mut out = Vec::with_capacity(values.len() * T::DTYPE.size());
        for v in values {
            v.write_le(&mut out);
        }
        Tensor {
            dtype: T::DTYPE,
            shape,
            data: Bytes::from(out),
        }
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor::from_vec(vec![], vec![v])
    }

    /// A tensor of `dtype` whose elements are converted from f64 with `Cast` semantics.
    pub fn from_f64(dtype: DType, shape: Vec<usize>, values: &[f64]) -> Tensor {
        let t = with_dtype!(dtype, T => Tensor::from_vec::<T>(shape, values.iter().map(|&v| T::from_f64(v)).collect()));
        t.tagged(dtype)
    }

    /// A tensor of `dtype` whose elements are converted from i64 (wrapping).
    pub fn from_i64(dtype: DType, shape: Vec<usize>, values: &[i64]) -> Tensor {
        let t = with_dtype!(dtype, T => Tensor::from_vec::<T>(shape, values.iter().map(|&v| T::from_i64(v)).collect()));
        t.tagged(dtype)
    }

    /// The same bytes as `dtype` when `self` holds them as the element type
    /// [`with_dtype!`] computes `dtype` in (a list's bytes as `u8`).
    fn tagged(mut self, dtype: DType) -> Tensor {
        if dtype == DType::List {
            self.dtype = DType::List;
        }
        self
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = crate::shape::checked_product(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .expect("the caller checked the tensor's size");
        Tensor {
            dtype,
            shape,
            data: Bytes::from(vec![0u8; n]),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The shape as an IR [`Shape`] (all dims known).
    pub fn ir_shape(&self) -> Shape {
        Shape::known(&self.shape)
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (zero when any dim is, whatever the others are: the
    /// data's length bounds every other product).
    pub fn numel(&self) -> usize {
        crate::shape::checked_product(&self.shape).expect("a tensor's element count fits its bytes")
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Its bytes, taken out of the tensor (without a copy).
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The same data with another shape of equal element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Tensor, SizeMismatch> {
        Tensor::from_bytes(self.dtype, shape, self.data.clone())
    }

    /// Elements as `T`, which must be this tensor's element type.
    ///
    /// # Panics
    /// If `T` is not the element type of this tensor (a bug in the caller).
    pub fn to_vec<T: Element>(&self) -> Vec<T> {
        assert_eq!(T::DTYPE, self.dtype, "to_vec with the wrong element type");
        self.data
            .chunks_exact(self.dtype.size())
            .map(T::read_le)
            .collect()
    }

    /// Elements converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_dtype!(self.dtype, T => self.data.chunks_exact(self.dtype.size()).map(|b| T::read_le(b).to_f64()).collect())
    }

    /// Elements converted to f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        if self.dtype == DType::F32 {
            return self.to_vec::<f32>();
        }
        with_dtype!(self.dtype, T => self.data.chunks_exact(self.dtype.size()).map(|b| T::read_le(b).to_f64() as f32).collect())
    }

    /// Elements converted to i64 (floats truncated toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        with_dtype!(self.dtype, T => self.data.chunks_exact(self.dtype.size()).map(|b| T::read_le(b).to_i64()).collect())
    }

    /// Elements as booleans (non-zero is true).
    pub fn to_bool_vec(&self) -> Vec<bool> {
        self.to_f64_vec().into_iter().map(|v| v != 0.0).collect()
    }

    /// This tensor converted to `dtype` with ONNX `Cast` semantics (float8
    /// targets saturate, ONNX's default).
    pub fn cast(&self, dtype: DType) -> Tensor {
        self.cast_saturating(dtype, true)
    }

    /// This tensor converted to `dtype` with ONNX `Cast` semantics and its
    /// `saturate` attribute, which only changes conversions to the float8
    /// formats (see [`crate::lowp`]).
    pub fn cast_saturating(&self, dtype: DType, saturate: bool) -> Tensor {
        if !saturate && dtype.is_low_precision() && dtype.is_float() && dtype != self.dtype {
            let bytes: Vec<u8> = self
                .to_cast_f64_vec()
                .into_iter()
                .map(|v| crate::lowp::encode(dtype, v, false).unwrap_or(0))
                .collect();
            return Tensor {
                dtype,
                shape: self.shape.clone(),
                data: Bytes::from(bytes),
            };
        }
        if dtype == self.dtype {
            return self.clone();
        }
        if self.dtype.is_int() && dtype.is_int() || self.dtype == DType::Bool && dtype.is_int() {
            return Tensor::from_i64(dtype, self.shape.clone(), &self.to_i64_vec());
        }
        Tensor::from_f64(dtype, self.shape.clone(), &self.to_cast_f64_vec())
    }

    /// Elements as f64 for a cast (u64 read as unsigned).
    fn to_cast_f64_vec(&self) -> Vec<f64> {
        if self.dtype == DType::U64 {
            return self.to_vec::<u64>().into_iter().map(|x| x as f64).collect();
        }
        self.to_f64_vec()
    }

    /// The only element of a one-element tensor, as f64.
    pub fn scalar_f64(&self) -> Option<f64> {
        (self.numel() == 1).then(|| self.to_f64_vec()[0])
    }

    /// The only element of a one-element tensor, as i64.
    pub fn scalar_i64(&self) -> Option<i64> {
        (self.numel() == 1).then(|| self.to_i64_vec()[0])
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}{:?}", self.dtype, self.shape)?;
        if self.numel() <= 16 {
            write!(f, " {:?}", self.to_f64_vec())?;
        }
        f.write_str(")")
    }
}

/// Maps a whole file into memory read-only and returns its bytes without copying.
///
/// The mapping lives as long as any [`Bytes`] (or [`Tensor`]) slicing it.
pub fn map_file(path: &std::path::Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the file is opened read-only; kiln never writes to files it maps, and a
    // model file changed by another process while mapped is outside what kiln supports
    // (the same contract as every memory-mapping model loader).
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Bytes::from_owner(MappedFile(map)))
}

struct MappedFile(memmap2::Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_follows_onnx() {
        let t = Tensor::from_vec(vec![4], vec![-1.7f32, 2.5, 0.0, 300.0]);
        assert_eq!(t.cast(DType::I64).to_vec::<i64>(), vec![-1, 2, 0, 300]);
        assert_eq!(
            t.cast(DType::Bool).to_vec::<bool>(),
            vec![true, true, false, true]
        );
        let i = Tensor::from_vec(vec![2], vec![257i64, -1]);
        assert_eq!(i.cast(DType::U8).to_vec::<u8>(), vec![1, 255]);
    }

    #[test]
    fn mapped_file_is_viewed_not_copied() {
        let dir = std::env::temp_dir().join(format!("kiln-map-{}", std::process::id()));
        std::fs::write(&dir, 1.5f32.to_le_bytes()).unwrap();
        let bytes = map_file(&dir).unwrap();
        let t = Tensor::from_bytes(DType::F32, vec![1], bytes).unwrap();
        assert_eq!(t.to_vec::<f32>(), vec![1.5]);
        std::fs::remove_file(&dir).unwrap();
    }
}
