//! Reference evaluation of the miscellaneous ops: quantization and integer
//! arithmetic here, recurrences (RNN/GRU/LSTM, linear attention), sampling,
//! deformable convolution and signal ops in submodules.

use crate::error::OpError;
mod deform;
mod linear_attention;
mod ml;
mod rnn;
mod sample;
mod signal;

use rayon::prelude::*;

use super::broadcast::BroadcastIndex;
use crate::op::{ConvAttrs, MiscOp};
use crate::{DType, Tensor};

/// Evaluates a misc-family op.
pub(super) fn eval(
    op: &MiscOp,
    inputs: &[&Tensor],
    _n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    let x = *inputs.first().ok_or(OpError::value("missing input 0"))?;
    let arg = |i: usize| -> Result<&Tensor, OpError> {
        inputs
            .get(i)
            .copied()
            .ok_or_else(|| OpError::value(format!("missing input {i}")))
    };
    match op {
        MiscOp::QuantizeLinear {
            axis,
            block_size,
            to,
            precision,
            saturate,
        } => quantize(
            x,
            arg(1)?,
            inputs.get(2).copied(),
            QuantParams {
                axis: *axis,
                block_size: *block_size,
                to: *to,
                precision: *precision,
                saturate: *saturate,
            },
        )
        .map(|t| vec![t]),
        MiscOp::DequantizeLinear {
            axis,
            block_size,
            to,
        } => {
            dequantize(x, arg(1)?, inputs.get(2).copied(), *axis, *block_size, *to).map(|t| vec![t])
        }
        MiscOp::DynamicQuantizeLinear => Ok(dynamic_quantize(x)),
        MiscOp::MatMulInteger => {
            let (a, b) = (x, arg(1)?);
            let y = int_matmul(a, b, inputs.get(2).copied(), inputs.get(3).copied())?;
            Ok(vec![Tensor::from_i64(DType::I32, y.1, &y.0)])
        }
        MiscOp::ConvInteger(attrs) => {
            let (acc, shape) = int_conv(
                x,
                arg(1)?,
                inputs.get(2).copied(),
                inputs.get(3).copied(),
                attrs,
            )?;
            Ok(vec![Tensor::from_i64(DType::I32, shape, &acc)])
        }
        MiscOp::QLinearMatMul => qlinear_matmul(inputs).map(|t| vec![t]),
        MiscOp::QLinearConv(attrs) => qlinear_conv(inputs, attrs).map(|t| vec![t]),
        MiscOp::Rnn { .. } => rnn::eval(op, inputs),
        MiscOp::LinearAttention { .. } => linear_attention::eval(op, inputs),
        MiscOp::DeformConv { .. } => deform::eval(op, inputs),
        MiscOp::TreeEnsemble { .. } | MiscOp::TfIdfVectorizer { .. } => ml::eval(op, inputs),
        MiscOp::GridSample { .. }
        | MiscOp::RoiAlign { .. }
        | MiscOp::NonMaxSuppression { .. }
        | MiscOp::MaxUnpool { .. }
        | MiscOp::Col2Im { .. }
        | MiscOp::AffineGrid { .. }
        | MiscOp::CenterCropPad { .. } => sample::eval(op, inputs),
        MiscOp::Det
        | MiscOp::Dft { .. }
        | MiscOp::Stft { .. }
        | MiscOp::Window { .. }
        | MiscOp::MelWeightMatrix { .. } => signal::eval(op, inputs),
    }
}

/// Rounds `v` to the precision of the float type `dt` (identity for f64).
pub(super) fn round_to(dt: DType, v: f64) -> f64 {
    match dt {
        DType::F32 => v as f32 as f64,
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// The value range of an integer quantized type.
fn int_range(dt: DType) -> Result<(i64, i64), OpError> {
    Ok(match dt {
        DType::U8 => (0, u8::MAX as i64),
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::U32 => (0, u32::MAX as i64),
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => crate::lowp::int_range(dt)
            .ok_or_else(|| OpError::dtype(format!("{dt} has no range")))?,
        other => {
            return Err(OpError::dtype(format!(
                "{other} is not a quantized integer type"
            )))
        }
    })
}

/// For every element of a tensor of shape `x`, the index of its quantization
/// parameter in a tensor of shape `p`: per tensor (one element), per axis (1-D of
/// `x[axis]`) or blocked (`x` with `axis` divided by `block_size`, rounded up).
fn qparam_index(
    x: &[usize],
    axis: usize,
    block_size: usize,
    p: &[usize],
    what: &str,
) -> Result<Vec<usize>, OpError> {
    let n: usize = x.iter().product();
    let pn: usize = p.iter().product();
    if pn == 1 && (block_size == 0 || p.len() <= 1) {
        return Ok(vec![0; n]);
    }
    if axis >= x.len() {
        return Err(OpError::attribute(format!(
            "{what} of shape {p:?} needs an axis, but axis {axis} is out of range for input {x:?}"
        )));
    }
    let d = x[axis];
    let inner: usize = x[axis + 1..].iter().product();
    if block_size == 0 {
        if p.len() != 1 || p[0] != d {
            return Err(OpError::attribute(format!(
                "per-axis {what} must be 1-D of length {d} (input {x:?}, axis {axis}), got {p:?}"
            )));
        }
        return Ok((0..n).map(|i| (i / inner.max(1)) % d.max(1)).collect());
    }
    let nb = d.div_ceil(block_size);
    let ok = p.len() == x.len()
        && p.iter()
            .zip(x)
            .enumerate()
            .all(|(i, (&a, &b))| if i == axis { a == nb } else { a == b });
    if !ok {
        return Err(OpError::attribute(format!(
            "blocked {what} of shape {p:?} does not match input {x:?} with block size {block_size} on axis {axis}"
        )));
    }
    Ok((0..n)
        .map(|i| {
            let r = i % inner.max(1);
            let a = (i / inner.max(1)) % d;
            let o = i / (inner * d).max(1);
            (o * nb + a / block_size) * inner + r
        })
        .collect())
}

/// The attributes of a `QuantizeLinear`.
#[derive(Clone, Copy)]
struct QuantParams {
    axis: usize,
    block_size: usize,
    to: DType,
    precision: Option<DType>,
    saturate: bool,
}

fn quantize(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    params: QuantParams,
) -> Result<Tensor, OpError> {
    let QuantParams {
        axis,
        block_size,
        to,
        precision,
        saturate: _,
    } = params;
    if to.is_float() {
        return quantize_to_float(x, scale, zp, params);
    }
    let (lo, hi) = int_range(to)?;
    if let Some(z) = zp {
        if z.dtype() != to {
            return Err(OpError::dtype(format!(
                "zero point is {}, output is {to}",
                z.dtype()
            )));
        }
    }
    let si = qparam_index(x.shape(), axis, block_size, scale.shape(), "scale")?;
    let s = scale.to_f64_vec();
    let (zi, z) = match zp {
        Some(z) => (
            qparam_index(x.shape(), axis, block_size, z.shape(), "zero point")?,
            z.to_i64_vec(),
        ),
        None => (vec![0; x.numel()], vec![0]),
    };
    let prec = precision.unwrap_or(x.dtype());
    let v: Vec<i64> = x
        .to_f64_vec()
        .iter()
        .zip(si.iter().zip(&zi))
        .map(|(&v, (&si, &zi))| {
            let q = round_to(prec, v / s[si]).round_ties_even();
            // Saturate in f64 first: the quotient may not fit an i64 (or be ±inf).
            let q = q.clamp((lo - z[zi]) as f64, (hi - z[zi]) as f64);
            if q.is_nan() {
                z[zi]
            } else {
                q as i64 + z[zi]
            }
        })
        .collect();
    Ok(Tensor::from_i64(to, x.shape().to_vec(), &v))
}

/// QuantizeLinear to float8 (x / scale cast with `saturate`; the zero point,
/// zero by the spec, is ignored) or float4 (x / scale + zp, cast).
fn quantize_to_float(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    params: QuantParams,
) -> Result<Tensor, OpError> {
    let QuantParams {
        axis,
        block_size,
        to,
        precision,
        saturate,
    } = params;
    if !to.is_low_precision() {
        return Err(OpError::dtype(format!("{to} is not a quantized type")));
    }
    let si = qparam_index(x.shape(), axis, block_size, scale.shape(), "scale")?;
    let s = scale.to_f64_vec();
    let prec = precision.unwrap_or(x.dtype());
    let (zi, z) = match zp {
        Some(z) if to == DType::F4E2M1 => (
            qparam_index(x.shape(), axis, block_size, z.shape(), "zero point")?,
            z.to_f64_vec(),
        ),
        _ => (vec![0; x.numel()], vec![0.0]),
    };
    let v: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .zip(si.iter().zip(&zi))
        .map(|(&v, (&si, &zi))| {
            let q = round_to(prec, v / s[si]);
            if z[zi] == 0.0 {
                q
            } else {
                round_to(prec, q + z[zi])
            }
        })
        .collect();
    let q = Tensor::from_f64(DType::F64, x.shape().to_vec(), &v);
    Ok(q.cast_saturating(to, saturate))
}

fn dequantize(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: usize,
    block_size: usize,
    to: DType,
) -> Result<Tensor, OpError> {
    let float_x = x.dtype().is_float() && x.dtype().is_low_precision();
    if !x.dtype().is_int() && !float_x {
        return Err(OpError::dtype(format!("DequantizeLinear of {}", x.dtype())));
    }
    if float_x {
        // Float8/float4 zero points are zero by the spec: refuse any other.
        if zp.is_some_and(|z| z.to_f64_vec().iter().any(|&v| v != 0.0)) {
            return Err(OpError::value(format!(
                "the zero point of a {} DequantizeLinear must be zero",
                x.dtype()
            )));
        }
        let si = qparam_index(x.shape(), axis, block_size, scale.shape(), "scale")?;
        let s = scale.to_f64_vec();
        let v: Vec<f64> = x
            .to_f64_vec()
            .iter()
            .zip(&si)
            .map(|(&v, &si)| v * s[si])
            .collect();
        return Ok(Tensor::from_f64(to, x.shape().to_vec(), &v));
    }
    if let Some(z) = zp {
        if z.dtype() != x.dtype() {
            return Err(OpError::dtype(format!(
                "zero point is {}, input is {}",
                z.dtype(),
                x.dtype()
            )));
        }
    }
    let si = qparam_index(x.shape(), axis, block_size, scale.shape(), "scale")?;
    let s = scale.to_f64_vec();
    let (zi, z) = match zp {
        Some(z) => (
            qparam_index(x.shape(), axis, block_size, z.shape(), "zero point")?,
            z.to_i64_vec(),
        ),
        None => (vec![0; x.numel()], vec![0]),
    };
    let v: Vec<f64> = x
        .to_i64_vec()
        .iter()
        .zip(si.iter().zip(&zi))
        .map(|(&v, (&si, &zi))| (v - z[zi]) as f64 * s[si])
        .collect();
    Ok(Tensor::from_f64(to, x.shape().to_vec(), &v))
}

/// Asymmetric uint8 quantization over [min(x, 0), max(x, 0)], in f32 like the spec.
fn dynamic_quantize(x: &Tensor) -> Vec<Tensor> {
    let v = x.to_f32_vec();
    let max = v.iter().copied().fold(0f32, f32::max);
    let min = v.iter().copied().fold(0f32, f32::min);
    let scale = if max == min { 1.0 } else { max - min } / 255f32;
    let zp = (0f32 - min / scale).clamp(0.0, 255.0).round_ties_even();
    let y: Vec<u8> = v
        .iter()
        .map(|&e| ((e / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
        .collect();
    vec![
        Tensor::from_vec(x.shape().to_vec(), y),
        Tensor::scalar(scale),
        Tensor::scalar(zp as u8),
    ]
}

/// Values of an integer tensor minus its zero point, where `index(i)` picks the zero
/// point of element `i` among `zp`'s elements.
fn minus_zp(
    t: &Tensor,
    zp: Option<&Tensor>,
    index: impl Fn(usize) -> usize,
    what: &str,
    per: usize,
) -> Result<Vec<i64>, OpError> {
    if !t.dtype().is_int() {
        return Err(OpError::dtype(format!(
            "{what} is {}, expected an integer type",
            t.dtype()
        )));
    }
    let v = t.to_i64_vec();
    let Some(z) = zp else { return Ok(v) };
    let z = z.to_i64_vec();
    match z.len() {
        1 => Ok(v.into_iter().map(|e| e - z[0]).collect()),
        n if n == per => Ok(v
            .into_iter()
            .enumerate()
            .map(|(i, e)| e - z[index(i)])
            .collect()),
        n => Err(OpError::value(format!(
            "{what} zero point has {n} elements, expected 1 or {per}"
        ))),
    }
}

/// numpy `matmul` of i64 matrices (1-D operands promoted then squeezed).
fn matmul_i64(
    a: &[i64],
    ashape: &[usize],
    b: &[i64],
    bshape: &[usize],
) -> Result<(Vec<i64>, Vec<usize>), OpError> {
    if ashape.is_empty() || bshape.is_empty() {
        return Err(OpError::shape("matmul of a scalar"));
    }
    let a2: Vec<usize> = if ashape.len() == 1 {
        vec![1, ashape[0]]
    } else {
        ashape.to_vec()
    };
    let b2: Vec<usize> = if bshape.len() == 1 {
        vec![bshape[0], 1]
    } else {
        bshape.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(OpError::shape(format!(
            "matmul inner dims differ: {ashape:?} × {bshape:?}"
        )));
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = super::broadcast_shapes(&[ab, bb]).ok_or_else(|| {
        OpError::shape(format!(
            "matmul batch dims do not broadcast: {ashape:?} × {bshape:?}"
        ))
    })?;
    let ia = BroadcastIndex::new(ab, &batch).indices();
    let ib = BroadcastIndex::new(bb, &batch).indices();
    let mut out = vec![0i64; ia.len() * m * n];
    out.par_chunks_mut((m * n).max(1))
        .enumerate()
        .for_each(|(bi, o)| {
            if m * n == 0 {
                return;
            }
            let ao = &a[ia[bi] * m * k..][..m * k];
            let bo = &b[ib[bi] * k * n..][..k * n];
            for i in 0..m {
                for p in 0..k {
                    let av = ao[i * k + p];
                    for j in 0..n {
                        o[i * n + j] += av * bo[p * n + j];
                    }
                }
            }
        });
    let mut shape = batch;
    if ashape.len() > 1 {
        shape.push(m);
    }
    if bshape.len() > 1 {
        shape.push(n);
    }
    Ok((out, shape))
}

/// (a − a_zp) × (b − b_zp) with a_zp per tensor or per row, b_zp per tensor or per column.
fn int_matmul(
    a: &Tensor,
    b: &Tensor,
    a_zp: Option<&Tensor>,
    b_zp: Option<&Tensor>,
) -> Result<(Vec<i64>, Vec<usize>), OpError> {
    let (ar, br) = (a.rank(), b.rank());
    if ar == 0 || br == 0 {
        return Err(OpError::shape("matmul of a scalar"));
    }
    let k = a.shape()[ar - 1];
    let m = if ar > 1 { a.shape()[ar - 2] } else { 1 };
    let n = if br > 1 { b.shape()[br - 1] } else { 1 };
    let av = minus_zp(a, a_zp, |i| (i / k.max(1)) % m.max(1), "a", m)?;
    let bv = minus_zp(b, b_zp, |i| i % n.max(1), "b", n)?;
    matmul_i64(&av, a.shape(), &bv, b.shape())
}

/// N-d integer convolution with groups; returns the accumulators and output shape.
fn conv_i64(
    x: &[i64],
    xs: &[usize],
    w: &[i64],
    ws: &[usize],
    a: &ConvAttrs,
) -> Result<(Vec<i64>, Vec<usize>), OpError> {
    let rank = xs.len();
    if rank < 3 || ws.len() != rank {
        return Err(OpError::shape(format!(
            "conv of input {xs:?} with weight {ws:?}"
        )));
    }
    let (nb, c) = (xs[0], xs[1]);
    let (m, cg) = (ws[0], ws[1]);
    let g = a.groups();
    if c != cg * g || m % g != 0 {
        return Err(OpError::attribute(format!(
            "conv channels: input {xs:?}, weight {ws:?}, group {g}"
        )));
    }
    let sp = &xs[2..];
    let k = &ws[2..];
    let geometry = a.output(sp, k)?;
    let (out_sp, pads) = (geometry.output, geometry.pads);
    let nd = sp.len();
    let osz: usize = out_sp.iter().product();
    let isz: usize = sp.iter().product();
    let ksz: usize = k.iter().product();
    // Kernel offsets as coordinates.
    let kcoords: Vec<Vec<usize>> = (0..ksz)
        .map(|mut f| {
            let mut c = vec![0; nd];
            for d in (0..nd).rev() {
                c[d] = f % k[d];
                f /= k[d];
            }
            c
        })
        .collect();
    let stride = |d: usize| a.window.stride(d) as i64;
    let dil = |d: usize| a.window.dilation(d) as i64;
    let mg = m / g;
    let mut out = vec![0i64; nb * m * osz];
    out.par_chunks_mut(osz.max(1))
        .enumerate()
        .for_each(|(nm, o)| {
            if osz == 0 {
                return;
            }
            let (ni, mi) = (nm / m, nm % m);
            let gi = mi / mg;
            let mut oc = vec![0usize; nd];
            for (of, ov) in o.iter_mut().enumerate() {
                let mut f = of;
                for d in (0..nd).rev() {
                    oc[d] = f % out_sp[d];
                    f /= out_sp[d];
                }
                let mut acc = 0i64;
                for (kf, kc) in kcoords.iter().enumerate() {
                    let mut off = 0usize;
                    let mut inside = true;
                    for d in 0..nd {
                        let p = oc[d] as i64 * stride(d) - pads[d] as i64 + kc[d] as i64 * dil(d);
                        if p < 0 || p >= sp[d] as i64 {
                            inside = false;
                            break;
                        }
                        off = off * sp[d] + p as usize;
                    }
                    if !inside {
                        continue;
                    }
                    for ci in 0..cg {
                        let xv = x[(ni * c + gi * cg + ci) * isz + off];
                        let wv = w[(mi * cg + ci) * ksz + kf];
                        acc += xv * wv;
                    }
                }
                *ov = acc;
            }
        });
    let mut shape = vec![nb, m];
    shape.extend(out_sp);
    Ok((out, shape))
}

/// (x − x_zp) ⊛ (w − w_zp) with w_zp per tensor or per output channel.
fn int_conv(
    x: &Tensor,
    w: &Tensor,
    x_zp: Option<&Tensor>,
    w_zp: Option<&Tensor>,
    a: &ConvAttrs,
) -> Result<(Vec<i64>, Vec<usize>), OpError> {
    if let Some(z) = x_zp {
        if z.numel() != 1 {
            return Err(OpError::shape(format!(
                "x zero point must be a scalar, got {:?}",
                z.shape()
            )));
        }
    }
    let xv = minus_zp(x, x_zp, |_| 0, "x", 1)?;
    let m = w.shape().first().copied().unwrap_or(0);
    let per: usize = w.shape().iter().skip(1).product();
    let wv = minus_zp(w, w_zp, |i| i / per.max(1), "w", m)?;
    conv_i64(&xv, x.shape(), &wv, w.shape(), a)
}

/// Requantizes i64 accumulators: saturate(round_half_even(acc · mult) + zp).
fn requantize(
    acc: &[i64],
    mult: impl Fn(usize) -> f64,
    zp: impl Fn(usize) -> i64,
    to: DType,
) -> Result<Vec<i64>, OpError> {
    let (lo, hi) = int_range(to)?;
    Ok(acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let r = (v as f64 * mult(i)).round_ties_even() + zp(i) as f64;
            r.clamp(lo as f64, hi as f64) as i64
        })
        .collect())
}

/// The elements of a quantization parameter that is per tensor or has `per` elements.
fn qparam(t: &Tensor, per: usize, what: &str) -> Result<Vec<f64>, OpError> {
    let n = t.numel();
    if n != 1 && n != per {
        return Err(OpError::value(format!(
            "{what} has {n} elements, expected 1 or {per}"
        )));
    }
    Ok(t.to_f64_vec())
}

fn pick(v: &[f64], i: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[i]
    }
}

fn qlinear_matmul(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let [a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp] = inputs else {
        return Err(OpError::shape(format!(
            "QLinearMatMul expects 8 inputs, got {}",
            inputs.len()
        )));
    };
    let (acc, shape) = int_matmul(a, b, Some(a_zp), Some(b_zp))?;
    let ar = a.rank();
    let m = if ar > 1 { a.shape()[ar - 2] } else { 1 };
    let n = if b.rank() > 1 {
        b.shape()[b.rank() - 1]
    } else {
        1
    };
    let sdt = a_s.dtype();
    let (asv, bsv, ysv) = (
        qparam(a_s, m, "a_scale")?,
        qparam(b_s, n, "b_scale")?,
        qparam(y_s, m, "y_scale")?,
    );
    let yz = y_zp.to_i64_vec();
    if yz.len() != 1 && yz.len() != m {
        return Err(OpError::shape(format!(
            "y_zero_point has {} elements, expected 1 or {m}",
            yz.len()
        )));
    }
    let row = |i: usize| (i / n.max(1)) % m.max(1);
    let col = |i: usize| i % n.max(1);
    // The multiplier is computed in the scales' float type, like the spec's reference.
    let mult = |i: usize| {
        let ab = round_to(sdt, pick(&asv, row(i)) * pick(&bsv, col(i)));
        round_to(sdt, ab / pick(&ysv, row(i)))
    };
    let zp = |i: usize| if yz.len() == 1 { yz[0] } else { yz[row(i)] };
    let v = requantize(&acc, mult, zp, y_zp.dtype())?;
    Ok(Tensor::from_i64(y_zp.dtype(), shape, &v))
}

fn qlinear_conv(inputs: &[&Tensor], attrs: &ConvAttrs) -> Result<Tensor, OpError> {
    let (x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp) = match inputs {
        [x, xs, xz, w, ws, wz, ys, yz] | [x, xs, xz, w, ws, wz, ys, yz, _] => {
            (*x, *xs, *xz, *w, *ws, *wz, *ys, *yz)
        }
        _ => {
            return Err(OpError::shape(format!(
                "QLinearConv expects 8 or 9 inputs, got {}",
                inputs.len()
            )))
        }
    };
    let (mut acc, shape) = int_conv(x, w, Some(x_zp), Some(w_zp), attrs)?;
    let m = shape[1];
    let osz: usize = shape[2..].iter().product();
    if let Some(bias) = inputs.get(8) {
        let bv = bias.to_i64_vec();
        if bv.len() != m {
            return Err(OpError::shape(format!(
                "bias has {} elements, expected {m}",
                bv.len()
            )));
        }
        for (i, v) in acc.iter_mut().enumerate() {
            *v += bv[(i / osz.max(1)) % m];
        }
    }
    let sdt = x_s.dtype();
    let (xsv, wsv, ysv) = (
        qparam(x_s, 1, "x_scale")?,
        qparam(w_s, m, "w_scale")?,
        qparam(y_s, 1, "y_scale")?,
    );
    let yz = y_zp
        .scalar_i64()
        .ok_or(OpError::value("y_zero_point must be a scalar"))?;
    let mult = |i: usize| {
        let ch = (i / osz.max(1)) % m.max(1);
        round_to(sdt, round_to(sdt, xsv[0] * pick(&wsv, ch)) / ysv[0])
    };
    let v = requantize(&acc, mult, |_| yz, y_zp.dtype())?;
    Ok(Tensor::from_i64(y_zp.dtype(), shape, &v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(to: DType, saturate: bool) -> QuantParams {
        QuantParams {
            axis: 0,
            block_size: 0,
            to,
            precision: None,
            saturate,
        }
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let x = Tensor::from_vec(vec![6], vec![0.5f32, 1.5, 2.5, -0.5, 300.0, -300.0]);
        let s = Tensor::scalar(1f32);
        let q = quantize(&x, &s, None, params(DType::U8, true)).unwrap();
        assert_eq!(q.to_vec::<u8>(), vec![0, 2, 2, 0, 255, 0]);
        let z = Tensor::scalar(-1i8);
        let q = quantize(&x, &s, Some(&z), params(DType::I8, true)).unwrap();
        assert_eq!(q.to_vec::<i8>(), vec![-1, 1, 1, -1, 127, -128]);
    }

    #[test]
    fn quantize_to_low_precision_types() {
        let x = Tensor::from_vec(vec![4], vec![2.5f32, -20.0, 1000.0, 9.0]);
        let s = Tensor::scalar(1f32);
        let q = quantize(&x, &s, None, params(DType::I4, true)).unwrap();
        assert_eq!(q.to_i64_vec(), vec![2, -8, 7, 7]);
        let q = quantize(&x, &s, None, params(DType::U2, true)).unwrap();
        assert_eq!(q.to_i64_vec(), vec![2, 0, 3, 3]);
        let q = quantize(&x, &s, None, params(DType::F8E4M3FN, true)).unwrap();
        assert_eq!(q.to_f64_vec(), vec![2.5, -20.0, 448.0, 9.0]);
        let q = quantize(&x, &s, None, params(DType::F8E4M3FN, false)).unwrap();
        assert!(q.to_f64_vec()[2].is_nan());
        let q = quantize(&x, &s, None, params(DType::F4E2M1, true)).unwrap();
        assert_eq!(q.to_f64_vec(), vec![2.0, -6.0, 6.0, 6.0]);
    }

    #[test]
    fn dequantize_float8_and_int4() {
        let x = Tensor::from_f64(DType::F8E5M2, vec![3], &[1.5, -0.25, 57344.0]);
        let s = Tensor::scalar(2f32);
        let y = dequantize(&x, &s, None, 0, 0, DType::F32).unwrap();
        assert_eq!(y.to_vec::<f32>(), vec![3.0, -0.5, 114688.0]);
        let z = Tensor::from_f64(DType::F8E5M2, vec![], &[1.0]);
        assert!(dequantize(&x, &s, Some(&z), 0, 0, DType::F32).is_err());
        let x = Tensor::from_i64(DType::I4, vec![3], &[-8, 7, 0]);
        let z = Tensor::from_i64(DType::I4, vec![], &[1]);
        let y = dequantize(&x, &s, Some(&z), 0, 0, DType::F32).unwrap();
        assert_eq!(y.to_vec::<f32>(), vec![-18.0, 12.0, -2.0]);
    }

    #[test]
    fn blocked_parameters_index_by_block() {
        // x [2, 5], blocks of 2 along axis 1: 3 blocks (the last one short).
        let idx = qparam_index(&[2, 5], 1, 2, &[2, 3], "scale").unwrap();
        assert_eq!(idx, vec![0, 0, 1, 1, 2, 3, 3, 4, 4, 5]);
        assert!(qparam_index(&[2, 5], 1, 2, &[2, 2], "scale").is_err());
        let idx = qparam_index(&[2, 3], 1, 0, &[3], "scale").unwrap();
        assert_eq!(idx, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn int_matmul_uses_per_row_zero_points() {
        let a = Tensor::from_vec(vec![2, 2], vec![3u8, 4, 5, 6]);
        let b = Tensor::from_vec(vec![2, 1], vec![1u8, 1]);
        let az = Tensor::from_vec(vec![2], vec![1u8, 2]);
        let (v, s) = int_matmul(&a, &b, Some(&az), None).unwrap();
        assert_eq!((v, s), (vec![5, 7], vec![2, 1]));
    }
}
