//! ONNX `Resize`: separable nearest / linear / cubic interpolation along each
//! resized axis, every coordinate transformation, antialiasing, crop-and-resize.

use crate::error::OpError;
use crate::op::{ResizeAttrs, ResizeCoord, ResizeMode, ResizeNearest};
use crate::Tensor;

fn coeffs(a: &ResizeAttrs, ratio: f64, scale: f64) -> Vec<f64> {
    let aa = a.cubic_coeff_a as f64;
    match a.mode {
        ResizeMode::Nearest => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let up = match a.nearest {
                ResizeNearest::RoundPreferFloor => ratio > 0.5,
                ResizeNearest::RoundPreferCeil => ratio >= 0.5,
                ResizeNearest::Floor => false,
                ResizeNearest::Ceil => true,
            };
            vec![(!up) as u8 as f64, up as u8 as f64]
        }
        ResizeMode::Linear if a.antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let n = 2 - 2 * start;
            let c: Vec<f64> = (start..start + n)
                .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                .collect();
            let sum: f64 = c.iter().sum();
            c.into_iter().map(|v| v / sum).collect()
        }
        ResizeMode::Linear => vec![1.0 - ratio, ratio],
        ResizeMode::Cubic if a.antialias => {
            let s = scale.min(1.0);
            let f = |x: f64| {
                let x = x.abs();
                if x <= 1.0 {
                    (aa + 2.0) * x * x * x - (aa + 3.0) * x * x + 1.0
                } else if x < 2.0 {
                    aa * x * x * x - 5.0 * aa * x * x + 8.0 * aa * x - 4.0 * aa
                } else {
                    0.0
                }
            };
            let start = (-2.0 / s).floor() as i64 + 1;
            let end = 2 - start;
            let c: Vec<f64> = (start..end).map(|i| f(s * (i as f64 - ratio))).collect();
            let sum: f64 = c.iter().sum();
            c.into_iter().map(|v| v / sum).collect()
        }
        ResizeMode::Cubic => {
            let r = ratio;
            let q = 1.0 - r;
            vec![
                ((aa * (r + 1.0) - 5.0 * aa) * (r + 1.0) + 8.0 * aa) * (r + 1.0) - 4.0 * aa,
                ((aa + 2.0) * r - (aa + 3.0)) * r * r + 1.0,
                ((aa + 2.0) * q - (aa + 3.0)) * q * q + 1.0,
                ((aa * (q + 1.0) - 5.0 * aa) * (q + 1.0) + 8.0 * aa) * (q + 1.0) - 4.0 * aa,
            ]
        }
    }
}

/// For each output coordinate: the taps (input index, weight), or `None` when
/// crop-and-resize extrapolates.
fn taps(
    a: &ResizeAttrs,
    scale: f64,
    in_len: usize,
    out_len: usize,
    roi: (f64, f64),
) -> Vec<Option<Vec<(usize, f64)>>> {
    let out_w = scale * in_len as f64;
    let inf = in_len as f64;
    (0..out_len)
        .map(|y| {
            let y = y as f64;
            let x = match a.coord {
                ResizeCoord::AlignCorners => {
                    if out_w == 1.0 {
                        0.0
                    } else {
                        y * (inf - 1.0) / (out_w - 1.0)
                    }
                }
                ResizeCoord::Asymmetric => y / scale,
                ResizeCoord::TfCropAndResize => {
                    let x = if out_w == 1.0 {
                        (roi.1 - roi.0) * (inf - 1.0) / 2.0
                    } else {
                        y * (roi.1 - roi.0) * (inf - 1.0) / (out_w - 1.0)
                    };
                    x + roi.0 * (inf - 1.0)
                }
                ResizeCoord::PytorchHalfPixel => {
                    if out_w == 1.0 {
                        -0.5
                    } else {
                        (y + 0.5) / scale - 0.5
                    }
                }
                ResizeCoord::HalfPixel => (y + 0.5) / scale - 0.5,
                ResizeCoord::HalfPixelSymmetric => {
                    let adjustment = out_len as f64 / out_w;
                    let offset = inf / 2.0 * (1.0 - adjustment);
                    offset + (y + 0.5) / scale - 0.5
                }
            };
            if a.coord == ResizeCoord::TfCropAndResize && (x < 0.0 || x > inf - 1.0) {
                return None;
            }
            let fl = x.floor();
            let frac = x - fl;
            let ratio = if frac == 0.0 { 1.0 } else { frac };
            let mut c = coeffs(a, ratio, scale);
            let n = c.len() as i64;
            let offset = if n % 2 == 0 {
                if frac == 0.0 {
                    -(n / 2)
                } else {
                    -(n / 2) + 1
                }
            } else if frac <= 0.5 {
                -((n - 1) / 2)
            } else {
                -((n - 1) / 2) + 1
            };
            let start = fl as i64 + offset;
            if a.exclude_outside {
                for (i, w) in c.iter_mut().enumerate() {
                    let idx = start + i as i64;
                    if idx < 0 || idx >= in_len as i64 {
                        *w = 0.0;
                    }
                }
                let s: f64 = c.iter().sum();
                let s = if s == 0.0 { 1.0 } else { s };
                c.iter_mut().for_each(|w| *w /= s);
            }
            Some(
                c.into_iter()
                    .enumerate()
                    .filter(|(_, w)| *w != 0.0)
                    .map(|(i, w)| {
                        let idx = (start + i as i64).clamp(0, in_len as i64 - 1) as usize;
                        (idx, w)
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Resizes `data` (of `shape`) along `axis` to `out_len`.
fn along_axis(
    a: &ResizeAttrs,
    data: &[f64],
    shape: &[usize],
    axis: usize,
    scale: f64,
    out_len: usize,
    roi: (f64, f64),
) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let in_len = shape[axis];
    let t = taps(a, scale, in_len, out_len, roi);
    let mut out = vec![0.0; outer * out_len * inner];
    for o in 0..outer {
        for (y, tap) in t.iter().enumerate() {
            let dst = &mut out[(o * out_len + y) * inner..(o * out_len + y + 1) * inner];
            match tap {
                None => dst
                    .iter_mut()
                    .for_each(|d| *d = a.extrapolation_value as f64),
                Some(tap) => {
                    for &(idx, w) in tap {
                        let src = &data[(o * in_len + idx) * inner..(o * in_len + idx + 1) * inner];
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += w * s;
                        }
                    }
                }
            }
        }
    }
    out
}

/// `[x, scales]` or `[x, sizes]` (values for `axes`).
pub(super) fn resize(
    x: &Tensor,
    param: &Tensor,
    roi: Option<&Tensor>,
    a: &ResizeAttrs,
) -> Result<Tensor, OpError> {
    if x.dtype() == crate::DType::Bool {
        return Err(OpError::shape("Resize of bool"));
    }
    let r = x.rank();
    let values = param.to_f64_vec();
    let (scales, sizes) = a.plan(x.shape(), &values)?;
    // The region of interest of every axis (only crop-and-resize reads it).
    let mut full_roi = vec![(0.0, 1.0); r];
    if let (Some(t), ResizeCoord::TfCropAndResize) = (roi, a.coord) {
        let listed: Vec<usize> = if a.axes.is_empty() {
            (0..r).collect()
        } else {
            a.axes.to_vec()
        };
        let v = t.to_f64_vec();
        if v.len() != 2 * listed.len() {
            return Err(OpError::attribute(format!(
                "roi of {} values for {} axes",
                v.len(),
                listed.len()
            )));
        }
        for (i, &ax) in listed.iter().enumerate() {
            full_roi[ax] = (v[i], v[listed.len() + i]);
        }
    }
    let roi = |ax: usize| full_roi[ax];
    let mut shape = x.shape().to_vec();
    let mut data = x.to_f64_vec();
    let order: Vec<usize> = if a.axes.is_empty() {
        (0..r).collect()
    } else {
        a.axes.to_vec()
    };
    for &ax in &order {
        let (s, o) = (scales[ax], sizes[ax]);
        let (r0, r1) = roi(ax);
        let trivial_roi = a.coord != ResizeCoord::TfCropAndResize
            || ((r0).abs() < 1e-9 && (r1 - 1.0).abs() < 1e-9);
        if (s - 1.0).abs() < 1e-9 && o == shape[ax] && trivial_roi {
            continue;
        }
        data = along_axis(a, &data, &shape, ax, s, o, (r0, r1));
        shape[ax] = o;
    }
    Ok(Tensor::from_f64(x.dtype(), shape, &data))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::op::KeepAspect;

    fn attrs(mode: ResizeMode, coord: ResizeCoord) -> ResizeAttrs {
        ResizeAttrs {
            mode,
            coord,
            nearest: ResizeNearest::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            by_sizes: false,
            antialias: false,
            keep_aspect: KeepAspect::Stretch,
            axes: Vec::new(),
        }
    }

    #[test]
    fn linear_half_pixel_upsample() {
        let x = Tensor::from_vec(vec![1, 2], vec![0.0f32, 4.0]);
        let s = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]);
        let y = resize(
            &x,
            &s,
            None,
            &attrs(ResizeMode::Linear, ResizeCoord::HalfPixel),
        )
        .unwrap();
        assert_eq!(y.to_f64_vec(), vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn nearest_asymmetric_repeats() {
        let x = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]);
        let s = Tensor::from_vec(vec![1], vec![2.0f32]);
        let mut a = attrs(ResizeMode::Nearest, ResizeCoord::Asymmetric);
        a.nearest = ResizeNearest::Floor;
        let y = resize(&x, &s, None, &a).unwrap();
        assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
    }
}
