//! [`crate::op::LayoutOp::Pad`]: constant, reflect, edge and wrap padding.

use super::super::strides::row_major_strides;
use super::elements::{element_bytes, gather_with, index_values};
use crate::error::OpError;
use crate::op::PadMode;
use crate::Tensor;

/// [`crate::op::LayoutOp::Pad`] by the pads (and axes, fill value) in the operands.
pub(super) fn pad(inputs: &[&Tensor], mode: PadMode) -> Result<Tensor, OpError> {
    let x = inputs[0];
    let r = x.rank();
    let mut pads = index_values(
        inputs.get(1).ok_or(OpError::value("Pad needs pads"))?,
        "pads",
    )?;
    if let Some(axes) = inputs.get(3) {
        let axes = index_values(axes, "pad axes")?;
        if pads.len() != 2 * axes.len() {
            return Err(OpError::attribute(format!(
                "{} pads for {} axes",
                pads.len(),
                axes.len()
            )));
        }
        let mut full = vec![0i64; 2 * r];
        for (k, &a) in axes.iter().enumerate() {
            let a = crate::op::util::axis(a, r)?;
            full[a] = pads[k];
            full[a + r] = pads[k + axes.len()];
        }
        pads = full;
    }
    if pads.len() != 2 * r {
        return Err(OpError::value(format!(
            "pads has {} entries, expected {}",
            pads.len(),
            2 * r
        )));
    }
    let fill = match inputs.get(2) {
        Some(v) if v.numel() == 1 => {
            if v.dtype() != x.dtype() {
                return Err(OpError::dtype("pad value dtype differs from the data"));
            }
            v.bytes().to_vec()
        }
        Some(v) if v.numel() != 0 => return Err(OpError::value("pad value must be a scalar")),
        _ => element_bytes(x.dtype(), 0.0),
    };
    // Negative pads crop first; the cropped range [lo, lo+len) is then padded.
    let mut lo = vec![0usize; r];
    let mut len = vec![0usize; r];
    let mut before = vec![0usize; r];
    let mut shape = vec![0usize; r];
    for d in 0..r {
        let n = x.shape()[d] as i64;
        let (pb, pe) = (pads[d], pads[d + r]);
        let l = n + pb.min(0) + pe.min(0);
        if l < 0 {
            return Err(OpError::attribute(format!(
                "pads {pads:?} crop more than axis {d} holds"
            )));
        }
        lo[d] = (-pb.min(0)) as usize;
        len[d] = l as usize;
        before[d] = pb.max(0) as usize;
        shape[d] = (l + pb.max(0) + pe.max(0)) as usize;
        if mode != PadMode::Constant && l == 0 && shape[d] > 0 {
            return Err(OpError::attribute(format!(
                "cannot {mode:?}-pad an empty axis"
            )));
        }
    }
    let st = row_major_strides(x.shape());
    gather_with(x, x.dtype(), shape, Some(&fill), |i| {
        let mut flat = 0;
        for d in 0..r {
            let j = i[d] as i64 - before[d] as i64;
            let n = len[d] as i64;
            let j = if (0..n).contains(&j) {
                j
            } else {
                match mode {
                    PadMode::Constant => return Ok(None),
                    PadMode::Edge => j.clamp(0, n - 1),
                    PadMode::Wrap => j.rem_euclid(n),
                    PadMode::Reflect => {
                        if n == 1 {
                            0
                        } else {
                            let m = j.rem_euclid(2 * (n - 1));
                            if m >= n {
                                2 * (n - 1) - m
                            } else {
                                m
                            }
                        }
                    }
                }
            };
            flat += (lo[d] + j as usize) * st[d];
        }
        Ok(Some(flat))
    })
}
