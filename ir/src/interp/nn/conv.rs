//! Convolution (im2col + [`gemm`](super::gemm)) and transposed convolution
//! (gemm + col2im), N-d, grouped, strided, dilated, padded.

use crate::error::OpError;
use rayon::prelude::*;

use super::gemm::{gemm, gemm_rows, PackedB};
use crate::op::ConvAttrs;
use crate::Tensor;

use super::super::strides::row_major_strides;

/// Multi-index of every position of `shape`, row-major.
pub(super) fn all_indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0; shape.len()];
    for _ in 0..n {
        out.push(idx.clone());
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

fn float_check(x: &Tensor, w: &Tensor, what: &str) -> Result<(), OpError> {
    if !x.dtype().is_float() || x.dtype() != w.dtype() {
        return Err(OpError::dtype(format!(
            "{what} of {} input and {} weight (floats of one dtype needed)",
            x.dtype(),
            w.dtype()
        )));
    }
    Ok(())
}

fn bias_of(bias: Option<&Tensor>, m: usize) -> Result<Vec<f64>, OpError> {
    match bias {
        None => Ok(vec![0.0; m]),
        Some(b) if b.numel() == m => Ok(b.to_f64_vec()),
        Some(b) => Err(OpError::shape(format!(
            "bias of shape {:?}, expected [{m}]",
            b.shape()
        ))),
    }
}

/// Convolution of `x` `[N, C, d...]` with `w` `[M, C/group, k...]`.
pub(super) fn conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    attrs: &ConvAttrs,
) -> Result<Tensor, OpError> {
    float_check(x, w, "conv")?;
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(OpError::shape(format!(
            "conv of input {xs:?} with weight {ws:?}"
        )));
    }
    let nd = xs.len() - 2;
    let (batch, c, m) = (xs[0], xs[1], ws[0]);
    let g = attrs.groups();
    if c % g != 0 || m % g != 0 || ws[1] * g != c {
        return Err(OpError::attribute(format!(
            "conv with {g} groups: input {xs:?}, weight {ws:?} do not agree"
        )));
    }
    let (cg, mg) = (c / g, m / g);
    let kernel = &ws[2..];
    let in_sp = &xs[2..];
    let geometry = attrs.output(in_sp, kernel)?;
    let (out_sp, eff_pads) = (geometry.output, geometry.pads);
    let kvol: usize = kernel.iter().product();
    let k = cg * kvol;
    let p_in: usize = in_sp.iter().product();
    let p_out: usize = out_sp.iter().product();
    let bias = bias_of(bias, m)?;
    let xv = x.to_f64_vec();
    let wv = w.to_f64_vec();
    let packed: Vec<PackedB> = (0..g)
        .map(|gi| PackedB::new(k, mg, |p, j| wv[(gi * mg + j) * k + p]))
        .collect();
    let taps = all_indices(kernel);
    let in_strides = row_major_strides(in_sp);
    let dil = |i: usize| attrs.window.dilation(i);
    let st = |i: usize| attrs.window.stride(i);
    // Flat spatial input offset of every (output position, tap), or usize::MAX in padding.
    let out_idx = all_indices(&out_sp);
    let (eff_pads, in_strides) = (&eff_pads, &in_strides);
    let offsets: Vec<usize> = out_idx
        .par_iter()
        .flat_map_iter(|o| {
            taps.iter().map(move |t| {
                let mut off = 0usize;
                for ax in 0..nd {
                    let pos = (o[ax] * st(ax) + t[ax] * dil(ax)) as i64 - eff_pads[ax] as i64;
                    if pos < 0 || pos >= in_sp[ax] as i64 {
                        return usize::MAX;
                    }
                    off += pos as usize * in_strides[ax];
                }
                off
            })
        })
        .collect();
    let rows_per_task = (32768 / k.max(1)).clamp(16, 512);
    let chunks = p_out.div_ceil(rows_per_task);
    let tasks: Vec<(usize, usize, usize)> = (0..batch)
        .flat_map(|n| (0..g).flat_map(move |gi| (0..chunks).map(move |ch| (n, gi, ch))))
        .collect();
    let results: Vec<Vec<f64>> = tasks
        .par_iter()
        .map(|&(n, gi, ch)| {
            let r0 = ch * rows_per_task;
            let rows = rows_per_task.min(p_out - r0);
            let mut col = vec![0.0; rows * k];
            for r in 0..rows {
                let offs = &offsets[(r0 + r) * kvol..(r0 + r + 1) * kvol];
                for ci in 0..cg {
                    let plane = &xv[(n * c + gi * cg + ci) * p_in..][..p_in];
                    let dst = &mut col[r * k + ci * kvol..r * k + (ci + 1) * kvol];
                    for (d, &off) in dst.iter_mut().zip(offs) {
                        if off != usize::MAX {
                            *d = plane[off];
                        }
                    }
                }
            }
            let mut out = vec![0.0; rows * mg];
            gemm_rows(&col, rows, &packed[gi], &mut out);
            out
        })
        .collect();
    let mut y = vec![0.0; batch * m * p_out];
    for (&(n, gi, ch), part) in tasks.iter().zip(&results) {
        let r0 = ch * rows_per_task;
        let rows = part.len() / mg.max(1);
        for j in 0..mg {
            let oc = gi * mg + j;
            let dst = &mut y[(n * m + oc) * p_out + r0..][..rows];
            for (r, d) in dst.iter_mut().enumerate() {
                *d = part[r * mg + j] + bias[oc];
            }
        }
    }
    let mut shape = vec![batch, m];
    shape.extend(&out_sp);
    Ok(Tensor::from_f64(x.dtype(), shape, &y))
}

/// Transposed convolution of `x` `[N, C, d...]` with `w` `[C, M/group, k...]`.
pub(super) fn conv_transpose(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    attrs: &ConvAttrs,
    output_padding: &[usize],
    output_shape: Option<&[usize]>,
) -> Result<Tensor, OpError> {
    float_check(x, w, "transposed convolution")?;
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() < 3 || ws.len() != xs.len() || ws[0] != xs[1] {
        return Err(OpError::shape(format!(
            "transposed convolution of input {xs:?} with weight {ws:?}"
        )));
    }
    let nd = xs.len() - 2;
    let g = attrs.groups();
    let (batch, c) = (xs[0], xs[1]);
    if c % g != 0 {
        return Err(OpError::attribute(format!(
            "{c} input channels in {g} groups"
        )));
    }
    let (cg, mg) = (c / g, ws[1]);
    let m = mg * g;
    let kernel = &ws[2..];
    let in_sp = &xs[2..];
    let (out_sp, begin) = attrs.transposed_output(in_sp, kernel, output_padding, output_shape)?;
    let kvol: usize = kernel.iter().product();
    let p_in: usize = in_sp.iter().product();
    let p_out: usize = out_sp.iter().product();
    let bias = bias_of(bias, m)?;
    let xv = x.to_f64_vec();
    let wv = w.to_f64_vec();
    let taps = all_indices(kernel);
    let in_idx = all_indices(in_sp);
    let out_strides = row_major_strides(&out_sp);
    let (begin_r, out_sp_r, out_strides) = (&begin, &out_sp, &out_strides);
    // Flat output offset of every (input position, tap), or usize::MAX when cropped.
    let targets: Vec<usize> = in_idx
        .iter()
        .flat_map(|i| {
            taps.iter().map(move |t| {
                let mut off = 0usize;
                for ax in 0..nd {
                    let s = attrs.window.stride(ax) as i64;
                    let d = attrs.window.dilation(ax) as i64;
                    let pos = i[ax] as i64 * s + t[ax] as i64 * d - begin_r[ax];
                    if pos < 0 || pos >= out_sp_r[ax] as i64 {
                        return usize::MAX;
                    }
                    off += pos as usize * out_strides[ax];
                }
                off
            })
        })
        .collect();
    let mut y = vec![0.0; batch * m * p_out];
    for n in 0..batch {
        for gi in 0..g {
            // cols[p_in × (mg·kvol)] = Xᵀ[p_in × cg] · W[cg × (mg·kvol)].
            let mut xt = vec![0.0; p_in * cg];
            for ci in 0..cg {
                let plane = &xv[(n * c + gi * cg + ci) * p_in..][..p_in];
                for (p, &v) in plane.iter().enumerate() {
                    xt[p * cg + ci] = v;
                }
            }
            let width = mg * kvol;
            let packed = PackedB::new(cg, width, |ci, j| wv[(gi * cg + ci) * width + j]);
            let cols = gemm(&xt, p_in, &packed);
            let ys = &mut y[(n * m + gi * mg) * p_out..(n * m + gi * mg + mg) * p_out];
            ys.par_chunks_mut(p_out.max(1))
                .enumerate()
                .for_each(|(j, plane)| {
                    for p in 0..p_in {
                        let row = &cols[p * width + j * kvol..p * width + (j + 1) * kvol];
                        let tg = &targets[p * kvol..(p + 1) * kvol];
                        for (&v, &t) in row.iter().zip(tg) {
                            if t != usize::MAX {
                                plane[t] += v;
                            }
                        }
                    }
                    let b = bias[gi * mg + j];
                    plane.iter_mut().for_each(|v| *v += b);
                });
        }
    }
    let mut shape = vec![batch, m];
    shape.extend(&out_sp);
    Ok(Tensor::from_f64(x.dtype(), shape, &y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_matches_hand_computation() {
        // 1×1×3×3 input, 2×2 kernel of ones, pad 1 on the begin side only.
        let x = Tensor::from_vec(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32; 4]);
        let y = conv(&x, &w, None, &ConvAttrs::default()).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_f64_vec(), vec![12.0, 16.0, 24.0, 28.0]);
    }

    #[test]
    fn conv_transpose_is_adjoint_of_conv() {
        // ConvTranspose with stride 2 scatters each input into a 2×2 block.
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32; 4]);
        let mut attrs = ConvAttrs::default();
        attrs.window.strides = vec![2, 2];
        let y = conv_transpose(&x, &w, None, &attrs, &[], None).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        assert_eq!(
            y.to_f64_vec(),
            vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
        );
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -p kiln-ir conv_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn conv_speed() {
        let x = Tensor::from_vec(vec![1, 64, 224, 224], vec![0.5f32; 64 * 224 * 224]);
        let w = Tensor::from_vec(vec![64, 64, 3, 3], vec![0.25f32; 64 * 64 * 9]);
        let t = std::time::Instant::now();
        let mut attrs = ConvAttrs::default();
        attrs.window.pads = vec![1, 1, 1, 1];
        let y = conv(&x, &w, None, &attrs).unwrap();
        let s = t.elapsed().as_secs_f64();
        let flops = 2.0 * 64.0 * 64.0 * 9.0 * 224.0 * 224.0;
        println!(
            "conv 64→64 3×3 @224²: {s:.3} s, {:.2} GFLOP/s",
            flops / s / 1e9
        );
        assert_eq!(y.shape(), &[1, 64, 224, 224]);
    }
}
