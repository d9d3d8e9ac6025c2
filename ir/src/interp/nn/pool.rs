//! Max, average and Lp pooling over N-d windows.

use crate::error::OpError;
use rayon::prelude::*;

use super::super::strides::row_major_strides;
use super::conv::all_indices;
use crate::op::Window;
use crate::{DType, Tensor};

/// What a pooling window computes.
#[derive(Clone, Copy)]
pub(super) enum PoolKind {
    /// Maximum (with the index of the first maximum).
    Max {
        /// Column-major indices.
        col_major: bool,
    },
    /// Mean.
    Avg {
        /// Padding counts in the divisor.
        count_include_pad: bool,
    },
    /// (Σ|x|ᵖ)^(1/p).
    Lp(i64),
}

/// Pools `x` `[N, C, d...]`; returns the output and, for max pooling, the indices.
pub(super) fn pool(x: &Tensor, win: &Window, kind: PoolKind) -> Result<Vec<Tensor>, OpError> {
    let xs = x.shape();
    if xs.len() < 3 {
        return Err(OpError::shape(format!(
            "pooling needs rank ≥ 3, got {xs:?}"
        )));
    }
    if x.dtype() == DType::Bool {
        return Err(OpError::dtype("pooling of bool"));
    }
    if !matches!(kind, PoolKind::Max { .. }) && !x.dtype().is_float() {
        return Err(OpError::dtype(format!(
            "average/Lp pooling of {}",
            x.dtype()
        )));
    }
    let nd = xs.len() - 2;
    if win.kernel.len() != nd {
        return Err(OpError::attribute(format!(
            "kernel {:?} for {nd} spatial axes",
            win.kernel
        )));
    }
    let in_sp = &xs[2..];
    let geometry = win.output(in_sp)?;
    let (out_sp, pads) = (geometry.output, geometry.pads);
    let planes = xs[0] * xs[1];
    let p_in: usize = in_sp.iter().product();
    let p_out: usize = out_sp.iter().product();
    let taps = all_indices(&win.kernel);
    let outs = all_indices(&out_sp);
    let row_strides = row_major_strides(in_sp);
    let index_strides = match kind {
        PoolKind::Max { col_major: true } => {
            let mut s = vec![1; nd];
            for i in 1..nd {
                s[i] = s[i - 1] * in_sp[i - 1];
            }
            s
        }
        _ => row_strides.clone(),
    };
    let st = |i: usize| win.stride(i) as i64;
    let dl = |i: usize| win.dilation(i) as i64;
    // Per tap of one output position: (data offset, index offset) inside the
    // input, or None in padding; plus whether the tap lies in the padded extent.
    // Computed per output position (a table over all of them would hold
    // outputs × taps entries: gigabytes for a long 1-D window).
    let geometry = |o: &[usize]| -> Vec<(Option<(usize, usize)>, bool)> {
        taps.iter()
            .map(|t| {
                let (mut off, mut ioff, mut inside, mut padded) = (0, 0, true, true);
                for ax in 0..nd {
                    let pos = o[ax] as i64 * st(ax) + t[ax] as i64 * dl(ax) - pads[ax] as i64;
                    if pos < 0 || pos >= in_sp[ax] as i64 {
                        inside = false;
                    }
                    if pos < -(pads[ax] as i64) || pos >= (in_sp[ax] + pads[ax + nd]) as i64 {
                        padded = false;
                    }
                    if inside {
                        off += pos as usize * row_strides[ax];
                        ioff += pos as usize * index_strides[ax];
                    }
                }
                (inside.then_some((off, ioff)), padded)
            })
            .collect()
    };
    let xv = x.to_f64_vec();
    // One output position at a time (in parallel), every plane of it.
    let per_output: Vec<(Vec<f64>, Vec<i64>)> = outs
        .par_iter()
        .map(|o| {
            let g = geometry(o);
            let mut ys = Vec::with_capacity(planes);
            let mut is = Vec::with_capacity(planes);
            for pl in 0..planes {
                let plane = &xv[pl * p_in..(pl + 1) * p_in];
                let (v, i) = pool_window(plane, &g, kind);
                ys.push(v);
                is.push((pl * p_in + i) as i64);
            }
            (ys, is)
        })
        .collect();
    let mut y = vec![0.0; planes * p_out];
    let mut idx = vec![0i64; planes * p_out];
    for (o, (ys, is)) in per_output.into_iter().enumerate() {
        for pl in 0..planes {
            y[pl * p_out + o] = ys[pl];
            idx[pl * p_out + o] = is[pl];
        }
    }
    let mut shape = vec![xs[0], xs[1]];
    shape.extend(&out_sp);
    let mut out = vec![Tensor::from_f64(x.dtype(), shape.clone(), &y)];
    if matches!(kind, PoolKind::Max { .. }) {
        out.push(Tensor::from_vec(shape, idx));
    }
    Ok(out)
}

/// The pooled value of one window of `plane` (taps as [`pool`] computes them),
/// with the offset of the maximum for max pooling.
fn pool_window(
    plane: &[f64],
    g: &[(Option<(usize, usize)>, bool)],
    kind: PoolKind,
) -> (f64, usize) {
    match kind {
        PoolKind::Max { .. } => {
            let mut best: Option<(f64, usize)> = None;
            for &(t, _) in g {
                if let Some((off, ioff)) = t {
                    let v = plane[off];
                    // A NaN tap makes the window's maximum NaN (numpy's
                    // and PyTorch's max), its index the first NaN's.
                    if best.is_none_or(|(b, _)| v > b || (v.is_nan() && !b.is_nan())) {
                        best = Some((v, ioff));
                    }
                }
            }
            best.unwrap_or((f64::NEG_INFINITY, 0))
        }
        PoolKind::Avg { count_include_pad } => {
            let (mut s, mut n) = (0.0, 0usize);
            for &(t, padded) in g {
                if let Some((off, _)) = t {
                    s += plane[off];
                    n += 1;
                } else if count_include_pad && padded {
                    n += 1;
                }
            }
            (if n == 0 { f64::NAN } else { s / n as f64 }, 0)
        }
        PoolKind::Lp(p) => {
            let s: f64 = g
                .iter()
                .filter_map(|&(t, _)| t)
                .map(|(off, _)| plane[off].abs().powi(p as i32))
                .sum();
            (s.powf(1.0 / p as f64), 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(k: &[usize], s: &[usize], p: &[usize], ceil: bool) -> Window {
        Window {
            kernel: k.to_vec(),
            strides: s.to_vec(),
            pads: p.to_vec(),
            ceil_mode: ceil,
            ..Window::default()
        }
    }

    #[test]
    fn avg_pool_divisor_follows_count_include_pad() {
        let x = Tensor::from_vec(vec![1, 1, 2], vec![2.0f32, 4.0]);
        let w = win(&[2], &[1], &[1, 0], false);
        let excl = pool(
            &x,
            &w,
            PoolKind::Avg {
                count_include_pad: false,
            },
        )
        .unwrap();
        assert_eq!(excl[0].to_f64_vec(), vec![2.0, 3.0]);
        let incl = pool(
            &x,
            &w,
            PoolKind::Avg {
                count_include_pad: true,
            },
        )
        .unwrap();
        assert_eq!(incl[0].to_f64_vec(), vec![1.0, 3.0]);
    }

    #[test]
    fn max_pool_indices_and_ceil_mode() {
        let x = Tensor::from_vec(vec![1, 1, 2, 3], vec![1u8, 9, 3, 4, 5, 6]);
        let w = win(&[2, 2], &[2, 2], &[0, 0, 0, 0], true);
        let r = pool(&x, &w, PoolKind::Max { col_major: false }).unwrap();
        assert_eq!(r[0].to_vec::<u8>(), vec![9, 6]);
        assert_eq!(r[1].to_vec::<i64>(), vec![1, 5]);
        let r = pool(&x, &w, PoolKind::Max { col_major: true }).unwrap();
        assert_eq!(r[1].to_vec::<i64>(), vec![2, 5]);
    }
}
