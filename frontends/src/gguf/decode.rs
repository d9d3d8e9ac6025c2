//! Tensor data of a GGUF file as kiln tensors: plain types as views of the
//! mapping, the supported block-quantized types dequantized to f32 (the
//! 32-element formats here, the 5-bit and K-quant formats in [`super::kquant`]).

use std::path::Path;

use bytes::Bytes;
use kiln_ir::half::f16;
use kiln_ir::{DType, Tensor};
use rayon::prelude::*;

use super::kquant;
use super::types::GgmlType;
use super::{GgufError, TensorInfo};

/// Elements per block of the 32-element quantized types (`Q8_0`, `Q4_0`,
/// `Q4_1`, `Q5_0`, `Q5_1`; the K-quants' blocks hold 256).
pub const QUANT_BLOCK: usize = 32;

/// Blocks from which dequantization is split over the rayon thread pool
/// (smaller tensors are not worth the task overhead).
pub const PARALLEL_MIN_BLOCKS: usize = 1 << 12;

/// Elements dequantized by one rayon task.
const ELEMENTS_PER_TASK: usize = QUANT_BLOCK << 10;

/// The tensor `info` describes, from the mapped file `file`.
pub(crate) fn decode(path: &Path, file: &Bytes, info: &TensorInfo) -> Result<Tensor, GgufError> {
    let data = file.slice(info.file_range.clone());
    let dequantized = |block: fn(&[u8], &mut [f32])| {
        tensor(
            path,
            info,
            DType::F32,
            dequantize(&data, info.ggml_type, block),
        )
    };
    match info.ggml_type {
        GgmlType::F32 => tensor(path, info, DType::F32, view(data, 4)),
        GgmlType::F16 => tensor(path, info, DType::F16, view(data, 2)),
        GgmlType::BF16 => tensor(path, info, DType::BF16, view(data, 2)),
        GgmlType::F64 => tensor(path, info, DType::F64, view(data, 8)),
        GgmlType::I8 => tensor(path, info, DType::I8, data),
        GgmlType::I16 => tensor(path, info, DType::I16, view(data, 2)),
        GgmlType::I32 => tensor(path, info, DType::I32, view(data, 4)),
        GgmlType::I64 => tensor(path, info, DType::I64, view(data, 8)),
        GgmlType::Q8_0 => dequantized(q8_0_block),
        GgmlType::Q4_0 => dequantized(q4_0_block),
        GgmlType::Q4_1 => dequantized(q4_1_block),
        GgmlType::Q5_0 => dequantized(kquant::q5_0_block),
        GgmlType::Q5_1 => dequantized(kquant::q5_1_block),
        GgmlType::Q2K => dequantized(kquant::q2_k_block),
        GgmlType::Q3K => dequantized(kquant::q3_k_block),
        GgmlType::Q4K => dequantized(kquant::q4_k_block),
        GgmlType::Q5K => dequantized(kquant::q5_k_block),
        GgmlType::Q6K => dequantized(kquant::q6_k_block),
        other => Err(GgufError::UnsupportedTensorType {
            path: path.to_owned(),
            tensor: info.name.clone(),
            ggml_type: other,
        }),
    }
}

fn tensor(path: &Path, info: &TensorInfo, dtype: DType, data: Bytes) -> Result<Tensor, GgufError> {
    // The parser sized the data from the shape, so this cannot fail; checked all
    // the same so that no input can panic here.
    Tensor::from_bytes(dtype, info.shape.clone(), data).map_err(|e| GgufError::Corrupt {
        path: path.to_owned(),
        reason: format!("tensor `{}`: {e}", info.name),
    })
}

/// `data` itself when it starts at a multiple of `align` bytes in memory (always,
/// in a well-formed file: the mapping is page-aligned and tensor offsets are
/// multiples of the file's alignment), else a copy.
fn view(data: Bytes, align: usize) -> Bytes {
    if (data.as_ptr() as usize).is_multiple_of(align) {
        data
    } else {
        Bytes::copy_from_slice(&data)
    }
}

/// Dequantizes whole blocks of `ty` (`block` decodes one into its
/// `ty.block_size()` values) to little-endian f32 bytes, in parallel for large
/// tensors.
fn dequantize(data: &[u8], ty: GgmlType, block: fn(&[u8], &mut [f32])) -> Bytes {
    let (block_bytes, block_size) = (ty.block_bytes(), ty.block_size());
    let out_block_bytes = block_size * 4;
    let n_blocks = data.len() / block_bytes;
    let mut out = vec![0u8; n_blocks * out_block_bytes];
    let work = |(src, dst): (&[u8], &mut [u8])| {
        let mut values = vec![0f32; block_size];
        for (b, o) in src
            .chunks_exact(block_bytes)
            .zip(dst.chunks_exact_mut(out_block_bytes))
        {
            block(b, &mut values);
            for (v, o) in values.iter().zip(o.chunks_exact_mut(4)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    };
    // Same element count per task whatever the block size.
    let per_task = (ELEMENTS_PER_TASK / block_size).max(1);
    if n_blocks * block_size >= PARALLEL_MIN_BLOCKS * QUANT_BLOCK {
        data.par_chunks(per_task * block_bytes)
            .zip(out.par_chunks_mut(per_task * out_block_bytes))
            .for_each(work);
    } else {
        work((data, &mut out));
    }
    Bytes::from(out)
}

/// The little-endian f16 at byte `at` of `b`, as f32.
pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// `Q8_0`: an f16 scale `d`, then 32 `i8` quants `q`; `x = d·q`.
fn q8_0_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..2 + QUANT_BLOCK]) {
        *o = f32::from(q as i8) * d;
    }
}

/// `Q4_0`: an f16 scale `d`, then 16 bytes of 4-bit quants `q`, the low nibbles
/// elements 0..16 and the high nibbles elements 16..32; `x = d·(q − 8)`.
fn q4_0_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let (low, high) = out.split_at_mut(QUANT_BLOCK / 2);
    for ((l, h), &q) in low.iter_mut().zip(high).zip(&b[2..2 + QUANT_BLOCK / 2]) {
        *l = f32::from(i16::from(q & 0x0f) - 8) * d;
        *h = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// `Q4_1`: an f16 scale `d` and an f16 minimum `m`, then 16 bytes of 4-bit quants
/// `q` laid out as in `Q4_0`; `x = d·q + m`.
fn q4_1_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (low, high) = out.split_at_mut(QUANT_BLOCK / 2);
    for ((l, h), &q) in low.iter_mut().zip(high).zip(&b[4..4 + QUANT_BLOCK / 2]) {
        *l = f32::from(q & 0x0f) * d + m;
        *h = f32::from(q >> 4) * d + m;
    }
}
