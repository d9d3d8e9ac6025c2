//! Reference evaluation of the sampling and detection ops: GridSample, AffineGrid,
//! RoiAlign, NonMaxSuppression, MaxUnpool, Col2Im, CenterCropPad.

use super::super::strides::row_major_strides;
use crate::error::OpError;
use crate::limits::MAX_TENSOR_BYTES;
use crate::op::{GridMode, GridPadding, MiscOp, Window};
use crate::Tensor;

/// Evaluates a sampling or detection op.
pub(super) fn eval(op: &MiscOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let arg = |i: usize| -> Result<&Tensor, OpError> {
        inputs
            .get(i)
            .copied()
            .ok_or_else(|| OpError::value(format!("missing input {i}")))
    };
    let x = arg(0)?;
    let out = match op {
        MiscOp::GridSample {
            mode,
            padding,
            align_corners,
        } => grid_sample(x, arg(1)?, *mode, *padding, *align_corners)?,
        MiscOp::AffineGrid { align_corners } => affine_grid(x, arg(1)?, *align_corners)?,
        MiscOp::RoiAlign { .. } => roi_align(op, x, arg(1)?, arg(2)?)?,
        MiscOp::NonMaxSuppression { center_point_box } => nms(inputs, *center_point_box)?,
        MiscOp::MaxUnpool { window } => max_unpool(x, arg(1)?, inputs.get(2).copied(), window)?,
        MiscOp::Col2Im {
            dilations,
            pads,
            strides,
        } => col2im(x, arg(1)?, arg(2)?, dilations, pads, strides)?,
        MiscOp::CenterCropPad { axes } => center_crop_pad(x, arg(1)?, axes)?,
        other => return Err(OpError::value(format!("{other:?} is not a sampling op"))),
    };
    Ok(vec![out])
}

/// Reflects `x` into [lo, hi] by folding at the borders.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n as i64 % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n as i64 % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn cubic_coeffs(t: f64) -> [f64; 4] {
    let a = -0.75;
    let x = t.abs();
    [
        ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0,
        ((a * (2.0 - x) - 5.0 * a) * (2.0 - x) + 8.0 * a) * (2.0 - x) - 4.0 * a,
    ]
}

fn grid_sample(
    x: &Tensor,
    grid: &Tensor,
    mode: GridMode,
    padding: GridPadding,
    align_corners: bool,
) -> Result<Tensor, OpError> {
    let xs = x.shape();
    let gs = grid.shape();
    let r = xs.len();
    if r < 3 || gs.len() != r || gs[0] != xs[0] || gs[r - 1] != r - 2 {
        return Err(OpError::shape(format!(
            "GridSample of input {xs:?} with grid {gs:?}"
        )));
    }
    let nd = r - 2;
    let (n, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let isz: usize = dims.iter().product();
    let istr = row_major_strides(dims);
    let opts = &gs[1..r - 1];
    let osz: usize = opts.iter().product();
    let xv = x.to_f64_vec();
    let gv = grid.to_f64_vec();
    let (lo, hi): (Vec<f64>, Vec<f64>) = dims
        .iter()
        .map(|&d| {
            if align_corners {
                (0.0, d as f64 - 1.0)
            } else {
                (-0.5, d as f64 - 0.5)
            }
        })
        .unzip();
    // Maps an integer index along dim `k` to an element index, or None (zero padding).
    let fetch_index = |k: usize, i: i64| -> Option<usize> {
        let d = dims[k] as i64;
        match padding {
            GridPadding::Zeros => (i >= 0 && i < d).then_some(i as usize),
            GridPadding::Border => Some(i.clamp(0, d - 1) as usize),
            GridPadding::Reflection => {
                Some((reflect(i as f64, lo[k], hi[k]) as i64).clamp(0, d - 1) as usize)
            }
        }
    };
    let mut out = vec![0.0; n * c * osz];
    for ni in 0..n {
        for o in 0..osz {
            let g = &gv[(ni * osz + o) * nd..][..nd];
            // Grid's last dim lists x (last spatial axis) first.
            let mut coord: Vec<f64> = (0..nd)
                .map(|k| {
                    let v = g[nd - 1 - k];
                    let d = dims[k] as f64;
                    if align_corners {
                        (v + 1.0) / 2.0 * (d - 1.0)
                    } else {
                        ((v + 1.0) * d - 1.0) / 2.0
                    }
                })
                .collect();
            if mode == GridMode::Nearest {
                for v in &mut coord {
                    *v = v.round_ties_even();
                }
            }
            for k in 0..nd {
                let v = coord[k];
                if v < lo[k] || v > hi[k] {
                    match padding {
                        GridPadding::Border => coord[k] = v.clamp(0.0, dims[k] as f64 - 1.0),
                        GridPadding::Reflection => coord[k] = reflect(v, lo[k], hi[k]),
                        GridPadding::Zeros => {}
                    }
                }
            }
            // Per dim: (index, weight) taps.
            let taps: Vec<Vec<(Option<usize>, f64)>> = (0..nd)
                .map(|k| {
                    let v = coord[k];
                    match mode {
                        GridMode::Nearest => vec![(fetch_index(k, v as i64), 1.0)],
                        GridMode::Linear => {
                            let f = v.floor();
                            let t = v - f;
                            vec![
                                (fetch_index(k, f as i64), 1.0 - t),
                                (fetch_index(k, f as i64 + 1), t),
                            ]
                        }
                        GridMode::Cubic => {
                            let f = v.floor();
                            let cs = cubic_coeffs(v - f);
                            (0..4)
                                .map(|j| (fetch_index(k, f as i64 - 1 + j as i64), cs[j]))
                                .collect()
                        }
                    }
                })
                .collect();
            let ntaps: usize = taps.iter().map(Vec::len).product();
            for ci in 0..c {
                let base = &xv[(ni * c + ci) * isz..][..isz];
                let mut acc = 0.0;
                for mut f in 0..ntaps {
                    let mut w = 1.0;
                    let mut off = Some(0usize);
                    for k in (0..nd).rev() {
                        let (idx, wk) = taps[k][f % taps[k].len()];
                        f /= taps[k].len();
                        w *= wk;
                        off = match (off, idx) {
                            (Some(o), Some(i)) => Some(o + i * istr[k]),
                            _ => None,
                        };
                    }
                    if let Some(o) = off {
                        acc += w * base[o];
                    }
                }
                out[(ni * c + ci) * osz + o] = acc;
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend_from_slice(opts);
    Ok(Tensor::from_f64(x.dtype(), shape, &out))
}

fn affine_grid(theta: &Tensor, size: &Tensor, align_corners: bool) -> Result<Tensor, OpError> {
    let size: Vec<usize> = size
        .to_i64_vec()
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| OpError::shape(format!("negative size {v}"))))
        .collect::<Result<_, _>>()?;
    if size.len() != 4 && size.len() != 5 {
        return Err(OpError::shape(format!(
            "AffineGrid size must have 4 or 5 elements, got {size:?}"
        )));
    }
    let nd = size.len() - 2;
    let n = size[0];
    if theta.shape() != [n, nd, nd + 1] {
        return Err(OpError::shape(format!(
            "theta has shape {:?}, expected {:?}",
            theta.shape(),
            [n, nd, nd + 1]
        )));
    }
    let sp = &size[2..];
    let base = |i: usize, d: usize| -> f64 {
        if align_corners {
            if d <= 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (d - 1) as f64
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / d as f64
        }
    };
    let th = theta.to_f64_vec();
    let osz: usize = sp.iter().product();
    let mut out = Vec::with_capacity(n * osz * nd);
    for ni in 0..n {
        let t = &th[ni * nd * (nd + 1)..][..nd * (nd + 1)];
        for o in 0..osz {
            // Homogeneous point (x, y[, z], 1): x along the last spatial axis.
            let mut idx = vec![0; nd];
            let mut f = o;
            for k in (0..nd).rev() {
                idx[k] = f % sp[k];
                f /= sp[k];
            }
            let mut p: Vec<f64> = (0..nd)
                .map(|j| base(idx[nd - 1 - j], sp[nd - 1 - j]))
                .collect();
            p.push(1.0);
            for row in 0..nd {
                out.push((0..=nd).map(|j| t[row * (nd + 1) + j] * p[j]).sum::<f64>());
            }
        }
    }
    let mut shape = vec![n];
    shape.extend_from_slice(sp);
    shape.push(nd);
    Ok(Tensor::from_f64(theta.dtype(), shape, &out))
}

fn roi_align(op: &MiscOp, x: &Tensor, rois: &Tensor, batch: &Tensor) -> Result<Tensor, OpError> {
    let MiscOp::RoiAlign {
        max,
        output_height: ph,
        output_width: pw,
        sampling_ratio,
        spatial_scale,
        half_pixel,
    } = *op
    else {
        return Err(OpError::value("not RoiAlign"));
    };
    let xs = x.shape();
    if xs.len() != 4 {
        return Err(OpError::shape(format!(
            "RoiAlign input must be 4-D, got {xs:?}"
        )));
    }
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let nr = rois.shape().first().copied().unwrap_or(0);
    if rois.shape() != [nr, 4] || batch.shape() != [nr] {
        return Err(OpError::shape(format!(
            "rois {:?} and batch_indices {:?} must be [num_rois, 4] and [num_rois]",
            rois.shape(),
            batch.shape()
        )));
    }
    let xv = x.to_f64_vec();
    let rv = rois.to_f64_vec();
    let bv = batch.to_i64_vec();
    let scale = spatial_scale as f64;
    let off = if half_pixel { 0.5 } else { 0.0 };
    let mut out = vec![0.0; nr * c * ph * pw];
    for ri in 0..nr {
        let b = bv[ri];
        if b < 0 || b as usize >= n {
            return Err(OpError::value(format!(
                "batch index {b} out of range [0, {n})"
            )));
        }
        let b = b as usize;
        let r = &rv[ri * 4..ri * 4 + 4];
        let (x1, y1) = (r[0] * scale - off, r[1] * scale - off);
        let (x2, y2) = (r[2] * scale - off, r[3] * scale - off);
        let (mut rw, mut rh) = (x2 - x1, y2 - y1);
        if !half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / ph as f64, rw / pw as f64);
        let gh = if sampling_ratio > 0 {
            sampling_ratio
        } else {
            (rh / ph as f64).ceil().max(0.0) as usize
        };
        let gw = if sampling_ratio > 0 {
            sampling_ratio
        } else {
            (rw / pw as f64).ceil().max(0.0) as usize
        };
        let count = (gh * gw).max(1) as f64;
        for ci in 0..c {
            let img = &xv[(b * c + ci) * h * w..][..h * w];
            for py in 0..ph {
                for px in 0..pw {
                    let mut sum = 0.0;
                    let mut best: Option<f64> = None;
                    for iy in 0..gh {
                        let y = y1 + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let xx = x1 + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            // Bilinear taps (weights zero outside [-1, size]).
                            let taps = bilinear_taps(y, xx, h, w);
                            let vals = taps.map(|(i, wt)| wt * img[i]);
                            if max {
                                let v = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                                best = Some(best.map_or(v, |b| b.max(v)));
                            } else {
                                sum += vals.iter().sum::<f64>();
                            }
                        }
                    }
                    out[((ri * c + ci) * ph + py) * pw + px] = if max {
                        best.unwrap_or(0.0)
                    } else {
                        sum / count
                    };
                }
            }
        }
    }
    Ok(Tensor::from_f64(x.dtype(), vec![nr, c, ph, pw], &out))
}

/// The four (element index, weight) taps of RoiAlign's bilinear sample at (y, x).
fn bilinear_taps(y: f64, x: f64, h: usize, w: usize) -> [(usize, f64); 4] {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 || h == 0 || w == 0 {
        return [(0, 0.0); 4];
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let mut yl = y as usize;
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f64;
        yl
    } else {
        yl + 1
    };
    let mut xl = x as usize;
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f64;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        (yl * w + xl, hy * hx),
        (yl * w + xh, hy * lx),
        (yh * w + xl, ly * hx),
        (yh * w + xh, ly * lx),
    ]
}

fn nms(inputs: &[&Tensor], center: bool) -> Result<Tensor, OpError> {
    let (boxes, scores) = match inputs {
        [b, s, ..] => (*b, *s),
        _ => return Err(OpError::value("NonMaxSuppression needs boxes and scores")),
    };
    let bs = boxes.shape();
    let ss = scores.shape();
    if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
        return Err(OpError::shape(format!(
            "boxes {bs:?} must be [batch, boxes, 4] and scores {ss:?} [batch, classes, boxes]"
        )));
    }
    let max_out = inputs
        .get(2)
        .and_then(|t| t.to_i64_vec().first().copied())
        .unwrap_or(0)
        .max(0) as usize;
    let iou_thr = inputs
        .get(3)
        .and_then(|t| t.to_f64_vec().first().copied())
        .unwrap_or(0.0);
    let score_thr = inputs.get(4).and_then(|t| t.to_f64_vec().first().copied());
    let (nb, nc, nbox) = (bs[0], ss[1], bs[1]);
    let bv = boxes.to_f64_vec();
    let sv = scores.to_f64_vec();
    // Corners (y_min, x_min, y_max, x_max) of a box.
    let corners = |b: usize, i: usize| -> [f64; 4] {
        let v = &bv[(b * nbox + i) * 4..][..4];
        if center {
            [
                v[1] - v[3] / 2.0,
                v[0] - v[2] / 2.0,
                v[1] + v[3] / 2.0,
                v[0] + v[2] / 2.0,
            ]
        } else {
            [
                v[0].min(v[2]),
                v[1].min(v[3]),
                v[0].max(v[2]),
                v[1].max(v[3]),
            ]
        }
    };
    let suppress = |a: [f64; 4], b: [f64; 4]| -> bool {
        let ih = a[2].min(b[2]) - a[0].max(b[0]);
        let iw = a[3].min(b[3]) - a[1].max(b[1]);
        if ih <= 0.0 || iw <= 0.0 {
            return false;
        }
        let inter = ih * iw;
        let (a1, a2) = ((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]));
        let union = a1 + a2 - inter;
        if a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
            return false;
        }
        inter / union > iou_thr
    };
    let mut out = Vec::new();
    for b in 0..nb {
        for c in 0..nc {
            let s = &sv[(b * nc + c) * nbox..][..nbox];
            let mut cand: Vec<usize> = (0..nbox)
                .filter(|&i| score_thr.is_none_or(|t| s[i] > t))
                .collect();
            // Highest score first; ties by lower box index.
            cand.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
            let mut kept: Vec<usize> = Vec::new();
            for i in cand {
                if kept.len() >= max_out {
                    break;
                }
                if kept
                    .iter()
                    .all(|&k| !suppress(corners(b, i), corners(b, k)))
                {
                    kept.push(i);
                    out.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    let n = out.len() / 3;
    Ok(Tensor::from_vec(vec![n, 3], out))
}

fn max_unpool(
    x: &Tensor,
    indices: &Tensor,
    output_shape: Option<&Tensor>,
    window: &Window,
) -> Result<Tensor, OpError> {
    let xs = x.shape();
    if xs.len() < 3 || indices.shape() != xs {
        return Err(OpError::shape(format!(
            "MaxUnpool input {xs:?} and indices {:?} must match (rank ≥ 3)",
            indices.shape()
        )));
    }
    // Indices address the inferred output; a larger requested shape pads it at the end.
    let mut inferred = xs[..2].to_vec();
    inferred.extend(window.unpooled_output(&xs[2..])?);
    let total: usize = inferred.iter().product();
    let mut y = vec![0.0; total];
    for (&v, &i) in x.to_f64_vec().iter().zip(&indices.to_i64_vec()) {
        if i < 0 || i as usize >= total {
            return Err(OpError::value(format!(
                "index {i} out of range for output {inferred:?}"
            )));
        }
        y[i as usize] = v;
    }
    let shape: Vec<usize> = match output_shape {
        Some(t) => t
            .to_i64_vec()
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| OpError::shape(format!("negative output size {v}")))
            })
            .collect::<Result<_, _>>()?,
        None => inferred.clone(),
    };
    if shape.len() != xs.len() || shape.iter().zip(&inferred).any(|(a, b)| a < b) {
        return Err(OpError::shape(format!(
            "output_shape {shape:?} is smaller than the unpooled shape {inferred:?}"
        )));
    }
    let ostr = row_major_strides(&shape);
    let istr = row_major_strides(&inferred);
    let mut out = vec![0.0; shape.iter().product()];
    for (i, &v) in y.iter().enumerate() {
        let o: usize = (0..shape.len())
            .map(|d| (i / istr[d]) % inferred[d] * ostr[d])
            .sum();
        out[o] = v;
    }
    Ok(Tensor::from_f64(x.dtype(), shape, &out))
}

fn col2im(
    x: &Tensor,
    image: &Tensor,
    block: &Tensor,
    dilations: &[usize],
    pads: &[usize],
    strides: &[usize],
) -> Result<Tensor, OpError> {
    let to_usize = |t: &Tensor, what: &str| -> Result<Vec<usize>, OpError> {
        t.to_i64_vec()
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| OpError::value(format!("negative {what} {v}")))
            })
            .collect()
    };
    let img = to_usize(image, "image size")?;
    let blk = to_usize(block, "block size")?;
    let nd = img.len();
    let xs = x.shape();
    let bp: usize = blk.iter().product();
    if blk.len() != nd || xs.len() != 3 || bp == 0 || !xs[1].is_multiple_of(bp) {
        return Err(OpError::shape(format!(
            "Col2Im input {xs:?}, image_shape {img:?}, block_shape {blk:?}"
        )));
    }
    for (name, list, len) in [
        ("dilations", dilations, nd),
        ("strides", strides, nd),
        ("pads", pads, 2 * nd),
    ] {
        if !list.is_empty() && list.len() != len {
            return Err(OpError::attribute(format!(
                "Col2Im {name} {list:?}: expected {len} values for {nd} spatial dims"
            )));
        }
    }
    let (n, c, l) = (xs[0], xs[1] / bp, xs[2]);
    let dil = |d: usize| dilations.get(d).copied().unwrap_or(1).max(1);
    let st = |d: usize| strides.get(d).copied().unwrap_or(1).max(1);
    let pb = |d: usize| pads.get(d).copied().unwrap_or(0);
    let pe = |d: usize| pads.get(d + nd).copied().unwrap_or(0);
    let too_large = || {
        OpError::too_large(format!(
            "Col2Im image {img:?}, block {blk:?}, pads {pads:?}, dilations {dilations:?}: \
             sizes overflow"
        ))
    };
    let mut nblocks = Vec::with_capacity(nd);
    for d in 0..nd {
        let span = img[d]
            .checked_add(pb(d))
            .and_then(|s| s.checked_add(pe(d)))
            .ok_or_else(too_large)?;
        let k = dil(d)
            .checked_mul(blk[d] - 1)
            .and_then(|k| k.checked_add(1))
            .ok_or_else(too_large)?;
        if span < k {
            return Err(OpError::value(format!(
                "block {k} larger than padded image {span}"
            )));
        }
        nblocks.push((span - k) / st(d) + 1);
    }
    let blocks = nblocks
        .iter()
        .try_fold(1usize, |acc, &b| acc.checked_mul(b))
        .ok_or_else(too_large)?;
    if blocks != l {
        return Err(OpError::value(format!(
            "input has {l} blocks, the image fits {nblocks:?}"
        )));
    }
    let isz = img
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    let numel = n
        .checked_mul(c)
        .and_then(|nc| nc.checked_mul(isz))
        .filter(|&e| (e as u64).saturating_mul(x.dtype().size() as u64) <= MAX_TENSOR_BYTES)
        .ok_or_else(too_large)?;
    let istr = row_major_strides(&img);
    let xv = x.to_f64_vec();
    let mut out = vec![0.0; numel];
    for ni in 0..n {
        for ci in 0..c {
            for kf in 0..bp {
                let mut kc = vec![0; nd];
                let mut f = kf;
                for d in (0..nd).rev() {
                    kc[d] = f % blk[d];
                    f /= blk[d];
                }
                for li in 0..l {
                    let mut f = li;
                    let mut off = 0usize;
                    let mut inside = true;
                    for d in (0..nd).rev() {
                        let b = f % nblocks[d];
                        f /= nblocks[d];
                        let p = (b * st(d) + kc[d] * dil(d)) as i64 - pb(d) as i64;
                        if p < 0 || p >= img[d] as i64 {
                            inside = false;
                            break;
                        }
                        off += p as usize * istr[d];
                    }
                    if inside {
                        out[(ni * c + ci) * isz + off] += xv[(ni * c * bp + ci * bp + kf) * l + li];
                    }
                }
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend(img);
    Ok(Tensor::from_f64(x.dtype(), shape, &out))
}

fn center_crop_pad(x: &Tensor, shape: &Tensor, axes: &[usize]) -> Result<Tensor, OpError> {
    let target = shape.to_i64_vec();
    if target.len() != axes.len() {
        return Err(OpError::attribute(format!(
            "shape has {} elements for {} axes",
            target.len(),
            axes.len()
        )));
    }
    let xs = x.shape();
    let mut out_shape = xs.to_vec();
    // Per axis: offset into the input (crop) and into the output (pad).
    let mut crop = vec![0usize; xs.len()];
    let mut pad = vec![0usize; xs.len()];
    for (&a, &t) in axes.iter().zip(&target) {
        let t = usize::try_from(t).map_err(|_| OpError::shape(format!("negative size {t}")))?;
        let d = *xs
            .get(a)
            .ok_or_else(|| OpError::attribute(format!("axis {a} out of range")))?;
        out_shape[a] = t;
        if t < d {
            crop[a] = (d - t) / 2;
        } else {
            pad[a] = (t - d) / 2;
        }
    }
    let xv = x.to_f64_vec();
    let total: usize = out_shape.iter().product();
    let ostr = row_major_strides(&out_shape);
    let istr = row_major_strides(xs);
    let mut out = vec![0.0; total];
    for (o, v) in out.iter_mut().enumerate() {
        let mut off = 0usize;
        let mut inside = true;
        for d in 0..xs.len() {
            let i = (o / ostr[d]) % out_shape[d].max(1);
            let src = i as i64 - pad[d] as i64 + crop[d] as i64;
            if src < 0 || src >= xs[d] as i64 {
                inside = false;
                break;
            }
            off += src as usize * istr[d];
        }
        if inside {
            *v = xv[off];
        }
    }
    Ok(Tensor::from_f64(x.dtype(), out_shape, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_folds_back_and_forth() {
        assert_eq!(reflect(-1.0, 0.0, 3.0), 1.0);
        assert_eq!(reflect(4.0, 0.0, 3.0), 2.0);
        assert_eq!(reflect(7.0, 0.0, 3.0), 1.0);
    }

    #[test]
    fn nms_keeps_best_and_drops_overlaps() {
        let boxes = Tensor::from_vec(
            vec![1, 3, 4],
            vec![0f32, 0., 1., 1., 0., 0.1, 1., 1.1, 0., 10., 1., 11.],
        );
        let scores = Tensor::from_vec(vec![1, 1, 3], vec![0.9f32, 0.95, 0.5]);
        let max = Tensor::from_vec(vec![1], vec![3i64]);
        let iou = Tensor::from_vec(vec![1], vec![0.5f32]);
        let y = nms(&[&boxes, &scores, &max, &iou], false).unwrap();
        assert_eq!(y.to_vec::<i64>(), vec![0, 0, 1, 0, 0, 2]);
    }
}
