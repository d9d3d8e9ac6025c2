//! The 5-bit (`Q5_0`, `Q5_1`) and K-quant (`Q2_K` … `Q6_K`) block formats of
//! GGUF files, decoded to f32 (the layouts of ggml's `ggml-common.h`; the
//! values agree exactly with gguf-py's reference dequantization, see
//! `tests/fixtures/gguf/kquant-vectors.bin`).
//!
//! A K-quant block holds [`K_BLOCK`] = 256 elements as 8 or 16 sub-blocks,
//! each with its own scale (and minimum), the scales themselves quantized
//! against the block's f16 `d` (and `dmin`).

use super::decode::f16_at;

/// Elements of a K-quant block.
pub const K_BLOCK: usize = 256;

/// Bytes of the packed 6-bit scales and minimums of `Q4_K` and `Q5_K`.
const K_SCALE_BYTES: usize = 12;

/// `Q5_0`: an f16 scale `d`, 4 bytes of fifth bits `qh` (bit `j` for element
/// `j`), then 16 bytes of low nibbles laid out as in `Q4_0`; `x = d·(q − 16)`.
pub(super) fn q5_0_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let lo = (q & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
        let hi = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
        out[j] = f32::from(i16::from(lo) - 16) * d;
        out[j + 16] = f32::from(i16::from(hi) - 16) * d;
    }
}

/// `Q5_1`: f16 `d` and minimum `m`, the fifth bits and nibbles as in `Q5_0`;
/// `x = d·q + m`.
pub(super) fn q5_1_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let lo = (q & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
        let hi = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
        out[j] = f32::from(lo) * d + m;
        out[j + 16] = f32::from(hi) * d + m;
    }
}

/// Scale and minimum of sub-block `j` (0..8) of `Q4_K`/`Q5_K`: 6-bit values,
/// the first four sub-blocks' in the low 6 bits of bytes `j` and `j + 4`, the
/// last four's low 4 bits in byte `j + 4` and high 2 bits in the top bits of
/// bytes `j − 4` (scale) and `j` (minimum).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// `Q4_K`: f16 `d` and `dmin`, 12 bytes of 6-bit sub-block scales and
/// minimums, then 128 bytes of nibbles: each 32-byte group holds two 32-element
/// sub-blocks (low nibbles, then high); `x = d·sc·q − dmin·m`.
pub(super) fn q4_k_block(b: &[u8], out: &mut [f32]) {
    let qs = &b[4 + K_SCALE_BYTES..4 + K_SCALE_BYTES + K_BLOCK / 2];
    scaled_nibbles(b, None, qs, out);
}

/// `Q5_K`: as `Q4_K` with 32 bytes of fifth bits `qh` before the nibbles:
/// element `l` of 32-element sub-block `s` takes bit `s` of `qh[l]` as its 16s.
pub(super) fn q5_k_block(b: &[u8], out: &mut [f32]) {
    let qh = &b[4 + K_SCALE_BYTES..4 + K_SCALE_BYTES + 32];
    let qs = &b[4 + K_SCALE_BYTES + 32..4 + K_SCALE_BYTES + 32 + K_BLOCK / 2];
    scaled_nibbles(b, Some(qh), qs, out);
}

/// The values of a `Q4_K` (no `qh`) or `Q5_K` block `b` whose nibbles are `qs`.
fn scaled_nibbles(b: &[u8], qh: Option<&[u8]>, qs: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..4 + K_SCALE_BYTES];
    // The fifth bit of element `l` of sub-block `s`, as its 16s.
    let high = |l: usize, s: usize| match qh {
        Some(qh) if qh[l] & (1 << s) != 0 => 16,
        _ => 0,
    };
    for (g, (q, y)) in qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let (s1, m1) = scale_min_k4(2 * g, scales);
        let (s2, m2) = scale_min_k4(2 * g + 1, scales);
        let (y1, y2) = y.split_at_mut(32);
        for (l, ((a, b), &q)) in y1.iter_mut().zip(y2).zip(q).enumerate() {
            *a = d * s1 * f32::from((q & 0x0f) + high(l, 2 * g)) - dmin * m1;
            *b = d * s2 * f32::from((q >> 4) + high(l, 2 * g + 1)) - dmin * m2;
        }
    }
}

/// `Q6_K`: 128 bytes of low nibbles `ql`, 64 bytes of high 2-bit pairs `qh`,
/// 16 signed 8-bit sub-block scales, f16 `d`. Each 128-element half takes 64
/// bytes of `ql` and 32 of `qh`; element `l + 32·i` (i < 4) of a half is a
/// 6-bit value less 32, scaled by `d · scale[8·half + l/16 + 2·i]`.
pub(super) fn q6_k_block(b: &[u8], out: &mut [f32]) {
    let (ql, rest) = b.split_at(K_BLOCK / 2);
    let (qh, rest) = rest.split_at(K_BLOCK / 4);
    let sc = &rest[..K_BLOCK / 16];
    let d = f16_at(rest, K_BLOCK / 16);
    for half in 0..2 {
        let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
        let sc = &sc[8 * half..];
        let y = &mut out[128 * half..];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0f) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (i, &q) in q.iter().enumerate() {
                let s = f32::from(sc[is + 2 * i] as i8);
                y[l + 32 * i] = d * s * f32::from(i16::from(q) - 32);
            }
        }
    }
}

/// `Q2_K`: 16 bytes of sub-block scale (low nibble) and minimum (high nibble),
/// 64 bytes of 2-bit quants, f16 `d` and `dmin`. Each 128-element half takes
/// 32 bytes of quants, read four times at shifts 0, 2, 4, 6; each shift gives
/// two 16-element sub-blocks; `x = d·sc·q − dmin·m`.
pub(super) fn q2_k_block(b: &[u8], out: &mut [f32]) {
    let scales = &b[..16];
    let qs = &b[16..16 + K_BLOCK / 4];
    let d = f16_at(b, 16 + K_BLOCK / 4);
    let dmin = f16_at(b, 18 + K_BLOCK / 4);
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[32 * half..32 * half + 32];
        for shift in 0..4 {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * f32::from(sc & 0x0f), dmin * f32::from(sc >> 4));
                let base = 128 * half + 32 * shift + 16 * part;
                for l in 0..16 {
                    let v = (q[16 * part + l] >> (2 * shift)) & 3;
                    out[base + l] = dl * f32::from(v) - ml;
                }
            }
        }
    }
}

/// `Q3_K`: 32 bytes of high bits `hmask`, 64 bytes of 2-bit quants, 12 bytes
/// of 6-bit sub-block scales (16 of them, stored less 32), f16 `d`. Laid out
/// as `Q2_K`'s quants; a quant whose `hmask` bit (bit `4·half + shift` of
/// `hmask[l]`) is clear has 4 subtracted; `x = d·(sc − 32)·q`.
pub(super) fn q3_k_block(b: &[u8], out: &mut [f32]) {
    let hmask = &b[..32];
    let qs = &b[32..32 + K_BLOCK / 4];
    let packed = &b[32 + K_BLOCK / 4..32 + K_BLOCK / 4 + 12];
    let d = f16_at(b, 32 + K_BLOCK / 4 + 12);
    // Scale i: low 4 bits from byte i (i < 8: low nibble; else byte i − 8's
    // high nibble), high 2 bits from byte 8 + i % 4 at bit 2·(i / 4).
    let scale = |i: usize| -> f32 {
        let low = if i < 8 {
            packed[i] & 0x0f
        } else {
            packed[i - 8] >> 4
        };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        f32::from(i16::from(low | (high << 4)) - 32)
    };
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[32 * half..32 * half + 32];
        for shift in 0..4 {
            let bit = 1u8 << (4 * half + shift);
            for part in 0..2 {
                let dl = d * scale(is);
                is += 1;
                let base = 128 * half + 32 * shift + 16 * part;
                for l in 0..16 {
                    let k = 16 * part + l;
                    let v = i16::from((q[k] >> (2 * shift)) & 3)
                        - if hmask[k] & bit != 0 { 0 } else { 4 };
                    out[base + l] = dl * f32::from(v);
                }
            }
        }
    }
}
