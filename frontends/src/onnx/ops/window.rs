//! The one reader of ONNX window attributes (`kernel_shape`, `strides`, `pads`,
//! `dilations`, `ceil_mode`, `auto_pad`) and convolution attributes (`group`), so
//! that every convolution (`Conv`, `ConvTranspose`, `ConvInteger`, `QLinearConv`)
//! and every pooling op (`MaxPool`, `AveragePool`, `LpPool`, `MaxUnpool`) accepts
//! exactly the same forms. Every int list is checked against the spatial rank.

use kiln_ir::op::{AutoPad, ConvAttrs, Window};

use crate::onnx::{NodeCtx, OnnxError};

/// Whether an op needs `kernel_shape` or takes its kernel from a weight.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KernelAttr {
    /// Pooling: `kernel_shape` is required.
    Required,
    /// Convolution: `kernel_shape` is optional (checked against the weight later).
    FromWeight,
}

/// The spatial rank of a window op: input 0's rank minus N and C.
pub(super) fn spatial_rank(cx: &NodeCtx) -> Result<usize, OnnxError> {
    let r = cx.rank(cx.req(0)?);
    if r < 3 {
        return Err(cx.err(format!("input of rank {r}: needs N, C and spatial axes")));
    }
    Ok(r - 2)
}

/// `auto_pad`; absent or empty means `NOTSET`.
fn auto_pad(cx: &NodeCtx) -> Result<AutoPad, OnnxError> {
    Ok(match cx.attrs.string_or("auto_pad", "NOTSET").as_str() {
        "NOTSET" | "" => AutoPad::NotSet,
        "VALID" => AutoPad::Valid,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        other => return Err(cx.err(format!("unknown auto_pad `{other}`"))),
    })
}

/// An int-list attribute of exactly `n` values of at least `min`; `None` when absent
/// or empty.
pub(super) fn uint_list(
    cx: &NodeCtx,
    name: &str,
    n: usize,
    min: i64,
) -> Result<Option<Vec<usize>>, OnnxError> {
    match cx.attrs.ints(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() != n || v.iter().any(|&x| x < min) => {
            let what = if min > 0 { "positive" } else { "non-negative" };
            Err(cx.err(format!("{name} {v:?}: expected {n} {what} values")))
        }
        Some(v) => Ok(Some(v.into_iter().map(|x| x as usize).collect())),
    }
}

/// The window of a convolution or pooling node, every list filled to the spatial
/// rank (the kernel of a convolution only when `kernel_shape` states it).
pub(super) fn window(cx: &NodeCtx, kernel: KernelAttr) -> Result<Window, OnnxError> {
    let nd = spatial_rank(cx)?;
    let kernel = match (uint_list(cx, "kernel_shape", nd, 1)?, kernel) {
        (Some(k), _) => k,
        (None, KernelAttr::FromWeight) => Vec::new(),
        (None, KernelAttr::Required) => return Err(cx.err("kernel_shape is required")),
    };
    Ok(Window {
        kernel,
        strides: uint_list(cx, "strides", nd, 1)?.unwrap_or_else(|| vec![1; nd]),
        pads: uint_list(cx, "pads", 2 * nd, 0)?.unwrap_or_else(|| vec![0; 2 * nd]),
        dilations: uint_list(cx, "dilations", nd, 1)?.unwrap_or_else(|| vec![1; nd]),
        ceil_mode: cx.attrs.int_or("ceil_mode", 0) != 0,
        auto_pad: auto_pad(cx)?,
    })
}

/// The attributes of a convolution node.
pub(super) fn conv_attrs(cx: &NodeCtx) -> Result<ConvAttrs, OnnxError> {
    let group = cx.attrs.int_or("group", 1);
    if group < 1 {
        return Err(cx.err(format!("group {group}: expected a positive count")));
    }
    Ok(ConvAttrs {
        window: window(cx, KernelAttr::FromWeight)?,
        group: group as usize,
    })
}
