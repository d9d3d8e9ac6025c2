//! Reference evaluation of ONNX's `DeformConv` (2-D): every kernel tap samples the
//! input bilinearly at its offset position (GridSample's zero padding), scaled by
//! the mask, then the taps are weighted and summed like a grouped convolution.

use crate::error::OpError;
use crate::op::{ConvAttrs, MiscOp};
use crate::Tensor;

/// Bilinear sample of the `h × w` plane `p` at (y, x); neighbours outside are 0.
fn sample(p: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    if !(y.is_finite() && x.is_finite()) {
        return 0.0;
    }
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let mut acc = 0.0;
    for (dy, wy) in [(0.0, 1.0 - ly), (1.0, ly)] {
        for (dx, wx) in [(0.0, 1.0 - lx), (1.0, lx)] {
            let (yy, xx) = (y0 + dy, x0 + dx);
            if yy >= 0.0 && xx >= 0.0 && yy < h as f64 && xx < w as f64 && wy * wx != 0.0 {
                acc += wy * wx * p[yy as usize * w + xx as usize];
            }
        }
    }
    acc
}

/// Evaluates [`MiscOp::DeformConv`].
pub(super) fn eval(op: &MiscOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let MiscOp::DeformConv {
        conv,
        offset_group,
        bias,
        mask,
    } = op
    else {
        return Err(OpError::unsupported("not a DeformConv op"));
    };
    let expected = 3 + *bias as usize + *mask as usize;
    if inputs.len() != expected {
        return Err(OpError::value(format!(
            "DeformConv takes {expected} inputs here, got {}",
            inputs.len()
        )));
    }
    let (x, w, off) = (inputs[0], inputs[1], inputs[2]);
    let b = bias.then(|| inputs[3]);
    let m = mask.then(|| inputs[3 + *bias as usize]);
    deform_conv(x, w, off, b, m, conv, *offset_group).map(|y| vec![y])
}

fn deform_conv(
    x: &Tensor,
    w: &Tensor,
    off: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    conv: &ConvAttrs,
    offset_group: usize,
) -> Result<Tensor, OpError> {
    if !x.dtype().is_float() {
        return Err(OpError::dtype(format!(
            "DeformConv of {} (float types only)",
            x.dtype()
        )));
    }
    let (&[n, ic, ih, iw], &[oc, icg, kh, kw], &[on, oo, oh, ow]) =
        (x.shape(), w.shape(), off.shape())
    else {
        return Err(OpError::unsupported(format!(
            "DeformConv of {:?} with weight {:?} and offset {:?} (2-D only)",
            x.shape(),
            w.shape(),
            off.shape()
        )));
    };
    let group = conv.groups();
    if offset_group == 0 || ic != icg * group || oc % group != 0 || ic % offset_group != 0 {
        return Err(OpError::attribute(format!(
            "DeformConv of {ic} input channels, weight {:?}, group {group}, offset_group {offset_group}",
            w.shape()
        )));
    }
    let taps = kh * kw;
    if on != n || oo != offset_group * 2 * taps {
        return Err(OpError::shape(format!(
            "DeformConv offset {:?}: expected [{n}, {}, oH, oW]",
            off.shape(),
            offset_group * 2 * taps
        )));
    }
    let geometry = conv.output(&[ih, iw], &[kh, kw])?;
    if geometry.output != [oh, ow] {
        return Err(OpError::shape(format!(
            "DeformConv offset spatial dims [{oh}, {ow}] differ from the output {:?}",
            geometry.output
        )));
    }
    if let Some(m) = mask {
        if m.shape() != [n, offset_group * taps, oh, ow] {
            return Err(OpError::shape(format!(
                "DeformConv mask {:?}: expected [{n}, {}, {oh}, {ow}]",
                m.shape(),
                offset_group * taps
            )));
        }
    }
    if let Some(b) = bias {
        if b.shape() != [oc] {
            return Err(OpError::shape(format!(
                "DeformConv bias {:?}: expected [{oc}]",
                b.shape()
            )));
        }
    }
    let (pt, pl) = (geometry.pads[0] as f64, geometry.pads[1] as f64);
    let (sh, sw) = (conv.window.stride(0), conv.window.stride(1));
    let (dh, dw) = (conv.window.dilation(0), conv.window.dilation(1));
    let (xv, wv, offv) = (x.to_f64_vec(), w.to_f64_vec(), off.to_f64_vec());
    let maskv = mask.map(|m| m.to_f64_vec());
    let plane = oh * ow;
    let per_og = ic / offset_group;
    // cols[n][c][tap][i][j]: the masked sample each tap reads for each output.
    let mut cols = vec![0.0f64; n * ic * taps * plane];
    for bi in 0..n {
        for c in 0..ic {
            let og = c / per_og;
            let p = &xv[(bi * ic + c) * ih * iw..][..ih * iw];
            for a in 0..kh {
                for bb in 0..kw {
                    let tap = a * kw + bb;
                    let dy = &offv[((bi * offset_group + og) * taps + tap) * 2 * plane..][..plane];
                    let dx =
                        &offv[(((bi * offset_group + og) * taps + tap) * 2 + 1) * plane..][..plane];
                    let col = &mut cols[((bi * ic + c) * taps + tap) * plane..][..plane];
                    for i in 0..oh {
                        for j in 0..ow {
                            let k = i * ow + j;
                            let y = (i * sh + a * dh) as f64 - pt + dy[k];
                            let xx = (j * sw + bb * dw) as f64 - pl + dx[k];
                            let scale = maskv.as_ref().map_or(1.0, |mv| {
                                mv[((bi * offset_group + og) * taps + tap) * plane + k]
                            });
                            col[k] = scale * sample(p, ih, iw, y, xx);
                        }
                    }
                }
            }
        }
    }
    let bv = bias.map(|b| b.to_f64_vec());
    let ocg = oc / group;
    let mut out = vec![0.0f64; n * oc * plane];
    for bi in 0..n {
        for o in 0..oc {
            let g = o / ocg;
            let y = &mut out[(bi * oc + o) * plane..][..plane];
            y.iter_mut()
                .for_each(|v| *v = bv.as_ref().map_or(0.0, |b| b[o]));
            for cg in 0..icg {
                let c = g * icg + cg;
                for tap in 0..taps {
                    let wt = wv[(o * icg + cg) * taps + tap];
                    let col = &cols[((bi * ic + c) * taps + tap) * plane..][..plane];
                    y.iter_mut().zip(col).for_each(|(v, s)| *v += wt * s);
                }
            }
        }
    }
    Ok(Tensor::from_f64(x.dtype(), vec![n, oc, oh, ow], &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Window;

    fn op(bias: bool, mask: bool) -> MiscOp {
        MiscOp::DeformConv {
            conv: ConvAttrs {
                window: Window::default(),
                group: 1,
            },
            offset_group: 1,
            bias,
            mask,
        }
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    #[test]
    fn zero_offsets_are_a_convolution_and_half_offsets_interpolate() {
        // 1×1 kernel of weight 2 over a 1×2 image.
        let x = f32s(&[1, 1, 1, 2], &[1.0, 3.0]);
        let w = f32s(&[1, 1, 1, 1], &[2.0]);
        let zero = f32s(&[1, 2, 1, 2], &[0.0; 4]);
        let y = &eval(&op(false, false), &[&x, &w, &zero]).unwrap()[0];
        assert_eq!(y.to_vec::<f32>(), vec![2.0, 6.0]);
        // dx = 0.5: halfway between the pixels, and half outside (zero) at the end.
        let half = f32s(&[1, 2, 1, 2], &[0.0, 0.0, 0.5, 0.5]);
        let b = f32s(&[1], &[1.0]);
        let m = f32s(&[1, 1, 1, 2], &[1.0, 0.5]);
        let y = &eval(&op(true, true), &[&x, &w, &half, &b, &m]).unwrap()[0];
        assert_eq!(
            y.to_vec::<f32>(),
            vec![1.0 + 2.0 * 2.0, 1.0 + 0.5 * 2.0 * 1.5]
        );
    }

    #[test]
    fn empty_batch_and_bad_shapes() {
        let x = f32s(&[0, 1, 2, 2], &[]);
        let w = f32s(&[1, 1, 1, 1], &[1.0]);
        let off = f32s(&[0, 2, 2, 2], &[]);
        let y = &eval(&op(false, false), &[&x, &w, &off]).unwrap()[0];
        assert_eq!(y.shape(), &[0, 1, 2, 2]);
        let x = f32s(&[1, 1, 2, 2], &[0.0; 4]);
        // An offset of the wrong channel count, and a 1-D input.
        let off = f32s(&[1, 3, 2, 2], &[0.0; 12]);
        assert!(eval(&op(false, false), &[&x, &w, &off]).is_err());
        let x1 = f32s(&[1, 1, 2], &[0.0; 2]);
        assert!(eval(&op(false, false), &[&x1, &w, &off]).is_err());
        // A missing input.
        assert!(eval(&op(true, false), &[&x, &w, &off]).is_err());
    }
}
