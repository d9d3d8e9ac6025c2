//! The sliding window shared by convolutions and pooling: its attributes
//! ([`Window`], [`ConvAttrs`]) and its geometry. [`Window::output`] (and
//! [`ConvAttrs::output`] for a kernel taken from a weight) is the one computation of
//! output sizes and effective pads that type inference, the reference interpreter
//! and the scheduler all use.

use crate::error::OpError;
use serde::{Deserialize, Serialize};

use crate::{Dim, Shape};

/// How convolution and pooling pad when explicit pads are not used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    #[default]
    NotSet,
    /// No padding.
    Valid,
    /// Output size ⌈in/stride⌉, extra padding at the end.
    SameUpper,
    /// Output size ⌈in/stride⌉, extra padding at the beginning.
    SameLower,
}

/// A window sliding over the spatial axes of an `[N, C, d...]` tensor. Every list
/// is either empty (its default for every axis) or has one entry per spatial axis
/// (`pads`: two, begins then ends); [`Window::check`] enforces it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Window {
    /// Window size per spatial axis; empty for a convolution whose weight gives it.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis (default 1).
    pub strides: Vec<usize>,
    /// Begin pads of every spatial axis, then end pads (default 0).
    pub pads: Vec<usize>,
    /// Dilation per spatial axis (default 1).
    pub dilations: Vec<usize>,
    /// Round output sizes up (pooling).
    pub ceil_mode: bool,
    /// Automatic padding.
    pub auto_pad: AutoPad,
}

/// Output sizes and effective pads of a window over one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
    /// Output size per spatial axis.
    pub output: Vec<usize>,
    /// Effective begin pads of every spatial axis, then end pads.
    pub pads: Vec<usize>,
}

impl Window {
    /// A window of `kernel` with unit strides and dilations and no padding.
    pub fn of_kernel(kernel: Vec<usize>) -> Window {
        Window {
            kernel,
            ..Window::default()
        }
    }

    /// Checks every list against `nd` spatial axes.
    pub fn check(&self, nd: usize) -> Result<(), OpError> {
        for (name, list, len) in [
            ("kernel_shape", &self.kernel, nd),
            ("strides", &self.strides, nd),
            ("pads", &self.pads, 2 * nd),
            ("dilations", &self.dilations, nd),
        ] {
            if !list.is_empty() && list.len() != len {
                return Err(OpError::attribute(format!(
                    "{name} {list:?}: expected {len} values for {nd} spatial axes"
                )));
            }
        }
        Ok(())
    }

    /// The stride of spatial axis `axis` (at least 1).
    pub fn stride(&self, axis: usize) -> usize {
        self.strides.get(axis).copied().unwrap_or(1).max(1)
    }

    /// The dilation of spatial axis `axis` (at least 1).
    pub fn dilation(&self, axis: usize) -> usize {
        self.dilations.get(axis).copied().unwrap_or(1).max(1)
    }

    /// The explicit (begin, end) pads of spatial axis `axis` of `nd`.
    pub fn explicit_pads(&self, axis: usize, nd: usize) -> (usize, usize) {
        let p = |i: usize| self.pads.get(i).copied().unwrap_or(0);
        (p(axis), p(axis + nd))
    }

    /// Output sizes and effective pads of this window's own kernel over `input`
    /// (the spatial dims).
    pub fn output(&self, input: &[usize]) -> Result<WindowGeometry, OpError> {
        self.geometry(input, &self.kernel)
    }

    /// Output sizes and effective pads of sliding `kernel` over `input`.
    fn geometry(&self, input: &[usize], kernel: &[usize]) -> Result<WindowGeometry, OpError> {
        let n = input.len();
        self.check(n)?;
        if kernel.len() != n || kernel.contains(&0) {
            return Err(OpError::attribute(format!(
                "kernel {kernel:?} for {n} spatial axes"
            )));
        }
        let mut output = Vec::with_capacity(n);
        let mut pads = vec![0; 2 * n];
        for i in 0..n {
            let (s, span_k) = (self.stride(i), (kernel[i] - 1) * self.dilation(i) + 1);
            let (b, e, o) = match self.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = input[i].div_ceil(s);
                    let total = (o.saturating_sub(1) * s + span_k).saturating_sub(input[i]);
                    let (small, large) = (total / 2, total - total / 2);
                    let (b, e) = if self.auto_pad == AutoPad::SameUpper {
                        (small, large)
                    } else {
                        (large, small)
                    };
                    (b, e, o)
                }
                AutoPad::Valid | AutoPad::NotSet => {
                    let (b, e) = if self.auto_pad == AutoPad::Valid {
                        (0, 0)
                    } else {
                        self.explicit_pads(i, n)
                    };
                    let span = input[i] + b + e;
                    if span < span_k {
                        return Err(OpError::value(format!(
                            "window {span_k} larger than padded input {span}"
                        )));
                    }
                    let mut o = if self.ceil_mode {
                        (span - span_k).div_ceil(s) + 1
                    } else {
                        (span - span_k) / s + 1
                    };
                    // With ceil_mode the last window must start inside the input or its begin pad.
                    if self.ceil_mode && (o - 1) * s >= input[i] + b {
                        o -= 1;
                    }
                    (b, e, o)
                }
            };
            pads[i] = b;
            pads[i + n] = e;
            output.push(o);
        }
        Ok(WindowGeometry { output, pads })
    }

    /// Output sizes of the `MaxUnpool` inverting a max pooling by this window of
    /// `input` (the pooled spatial dims).
    pub fn unpooled_output(&self, input: &[usize]) -> Result<Vec<usize>, OpError> {
        let n = input.len();
        self.check(n)?;
        if self.kernel.len() != n {
            return Err(OpError::attribute(format!(
                "kernel_shape {:?} for {n} spatial axes",
                self.kernel
            )));
        }
        Ok((0..n)
            .map(|i| {
                let (b, e) = self.explicit_pads(i, n);
                ((input[i].max(1) - 1) * self.stride(i) + self.kernel[i]).saturating_sub(b + e)
            })
            .collect())
    }
}

/// The attributes of every convolution (`Conv`, `ConvTranspose`, `ConvInteger`,
/// `QLinearConv`): a window whose kernel, when given, must match the weight's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvAttrs {
    /// Strides, pads, dilations and automatic padding (and the kernel shape if the
    /// model states it).
    pub window: Window,
    /// Groups (at least 1).
    pub group: usize,
}

impl Default for ConvAttrs {
    fn default() -> Self {
        ConvAttrs {
            window: Window::default(),
            group: 1,
        }
    }
}

impl ConvAttrs {
    /// The number of groups (at least 1).
    pub fn groups(&self) -> usize {
        self.group.max(1)
    }

    /// The kernel: `weight` (the weight's spatial dims), which a stated kernel shape
    /// must equal.
    fn kernel<'a>(&self, weight: &'a [usize]) -> Result<&'a [usize], OpError> {
        let stated = &self.window.kernel;
        if !stated.is_empty() && stated[..] != weight[..] {
            return Err(OpError::shape(format!(
                "kernel_shape {stated:?} differs from the weight's spatial dims {weight:?}"
            )));
        }
        Ok(weight)
    }

    /// Output sizes and effective pads of the convolution of `input` (spatial dims)
    /// by a weight of spatial dims `weight`.
    pub fn output(&self, input: &[usize], weight: &[usize]) -> Result<WindowGeometry, OpError> {
        self.window.geometry(input, self.kernel(weight)?)
    }

    /// The output shape `[N, M, out...]` of the convolution of `x` by `w`
    /// (`[M, C/group, k...]`); spatial dims are unknown unless both spatial shapes are
    /// known.
    pub fn output_shape(&self, x: &Shape, w: &Shape) -> Result<Shape, OpError> {
        let rank = x.rank();
        if rank < 3 || w.rank() != rank {
            return Err(OpError::shape(format!("conv of input {x} with weight {w}")));
        }
        let mut out = vec![x.0[0].clone(), w.0[0].clone()];
        let kernel: Option<Vec<usize>> = w.0[2..].iter().map(Dim::known).collect();
        let spatial: Option<Vec<usize>> = x.0[2..].iter().map(Dim::known).collect();
        match (kernel, spatial) {
            (Some(k), Some(s)) => {
                let g = self.output(&s, &k)?;
                out.extend(g.output.into_iter().map(Dim::Known));
            }
            _ => {
                self.window.check(rank - 2)?;
                out.extend(std::iter::repeat_n(Dim::Any, rank - 2));
            }
        }
        Ok(Shape(out))
    }

    /// Output sizes and begin pads (negative when the output is cropped less than
    /// the kernel overhangs) of the transposed convolution of `input` by a weight of
    /// spatial dims `weight`, with `output_padding` added at the end and the output
    /// size forced to `output_shape` when given.
    pub fn transposed_output(
        &self,
        input: &[usize],
        weight: &[usize],
        output_padding: &[usize],
        output_shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, Vec<i64>), OpError> {
        let nd = input.len();
        let w = &self.window;
        w.check(nd)?;
        let kernel = self.kernel(weight)?;
        if kernel.len() != nd || kernel.contains(&0) {
            return Err(OpError::attribute(format!(
                "kernel {kernel:?} for {nd} spatial axes"
            )));
        }
        let check = |name: &str, list: &[usize]| {
            if list.is_empty() || list.len() == nd {
                Ok(())
            } else {
                Err(OpError::attribute(format!(
                    "{name} {list:?}: expected {nd} values"
                )))
            }
        };
        check("output_padding", output_padding)?;
        if let Some(os) = output_shape {
            check("output_shape", os)?;
        }
        let same = matches!(w.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
        let mut out = Vec::with_capacity(nd);
        let mut begin = Vec::with_capacity(nd);
        for i in 0..nd {
            let (s, d) = (w.stride(i) as i64, w.dilation(i) as i64);
            let op = output_padding.get(i).copied().unwrap_or(0) as i64;
            let full = s * (input[i] as i64 - 1) + op + (kernel[i] as i64 - 1) * d + 1;
            let (pb, pe) = w.explicit_pads(i, nd);
            let o = match output_shape {
                Some(os) => os[i] as i64,
                None if same => input[i] as i64 * s,
                None => full - pb as i64 - pe as i64,
            };
            if o < 0 {
                return Err(OpError::attribute(format!(
                    "transposed convolution output size {o} on axis {i}"
                )));
            }
            let b = if output_shape.is_some() || same {
                let total = full - o;
                if w.auto_pad == AutoPad::SameUpper {
                    total.div_euclid(2)
                } else {
                    total - total.div_euclid(2)
                }
            } else {
                pb as i64
            };
            out.push(o as usize);
            begin.push(b);
        }
        Ok((out, begin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kernel: &[usize], strides: &[usize], pads: &[usize], auto_pad: AutoPad) -> Window {
        Window {
            kernel: kernel.to_vec(),
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            auto_pad,
            ..Window::default()
        }
    }

    #[test]
    fn notset_uses_explicit_pads() {
        let w = window(&[3], &[2], &[1, 2], AutoPad::NotSet);
        let g = w.output(&[7]).unwrap();
        // (7 + 1 + 2 − 3) / 2 + 1 = 4
        assert_eq!(g.output, vec![4]);
        assert_eq!(g.pads, vec![1, 2]);
    }

    #[test]
    fn valid_ignores_pads() {
        let w = window(&[3, 2], &[1, 2], &[5, 5, 5, 5], AutoPad::Valid);
        let g = w.output(&[5, 6]).unwrap();
        assert_eq!(g.output, vec![3, 3]);
        assert_eq!(g.pads, vec![0, 0, 0, 0]);
    }

    #[test]
    fn same_upper_and_lower_put_the_odd_pad_at_opposite_ends() {
        // in 6, stride 2, kernel 5: out ⌈6/2⌉ = 3, total pad (3 − 1)·2 + 5 − 6 = 3.
        let upper = window(&[5], &[2], &[], AutoPad::SameUpper)
            .output(&[6])
            .unwrap();
        assert_eq!(upper.output, vec![3]);
        assert_eq!(upper.pads, vec![1, 2]);
        let lower = window(&[5], &[2], &[], AutoPad::SameLower)
            .output(&[6])
            .unwrap();
        assert_eq!(lower.output, vec![3]);
        assert_eq!(lower.pads, vec![2, 1]);
    }

    #[test]
    fn ceil_mode_rounds_up_but_never_starts_a_window_in_the_end_pad() {
        let mut w = window(&[2], &[2], &[], AutoPad::NotSet);
        assert_eq!(w.output(&[5]).unwrap().output, vec![2]);
        w.ceil_mode = true;
        assert_eq!(w.output(&[5]).unwrap().output, vec![3]);
        // in 4, end pad 1, kernel 2, stride 2: ⌈3/2⌉ + 1 = 3, but the third window
        // would start at 4 = the end pad: dropped.
        w.pads = vec![0, 1];
        assert_eq!(w.output(&[4]).unwrap().output, vec![2]);
    }

    #[test]
    fn dilations_widen_the_window() {
        let mut w = window(&[3], &[], &[], AutoPad::NotSet);
        w.dilations = vec![2];
        // effective kernel (3 − 1)·2 + 1 = 5
        assert_eq!(w.output(&[9]).unwrap().output, vec![5]);
        assert!(w
            .output(&[4])
            .unwrap_err()
            .message
            .contains("larger than padded input"));
    }

    #[test]
    fn arity_is_checked() {
        let w = window(&[3, 3], &[1, 1, 1], &[], AutoPad::NotSet);
        let e = w.output(&[8, 8]).unwrap_err();
        assert!(
            e.message.contains("strides [1, 1, 1]: expected 2 values"),
            "{e}"
        );
        let e = window(&[3], &[], &[], AutoPad::NotSet)
            .output(&[8, 8])
            .unwrap_err();
        assert!(e.message.contains("kernel_shape [3]"), "{e}");
    }

    #[test]
    fn conv_kernel_comes_from_the_weight_and_must_match_a_stated_one() {
        let mut c = ConvAttrs::default();
        assert_eq!(c.output(&[5, 5], &[3, 3]).unwrap().output, vec![3, 3]);
        c.window.kernel = vec![3, 2];
        assert!(c
            .output(&[5, 5], &[3, 3])
            .unwrap_err()
            .message
            .contains("kernel_shape"));
    }

    #[test]
    fn transposed_output_inverts_the_strided_window() {
        let c = ConvAttrs {
            window: window(&[], &[2], &[1, 1], AutoPad::NotSet),
            group: 1,
        };
        // 2·(4 − 1) + 3 − 2 = 7, begin pad 1
        assert_eq!(
            c.transposed_output(&[4], &[3], &[], None).unwrap(),
            (vec![7], vec![1])
        );
        assert_eq!(
            c.transposed_output(&[4], &[3], &[1], None).unwrap().0,
            vec![8]
        );
        assert_eq!(
            c.transposed_output(&[4], &[3], &[], Some(&[9])).unwrap().0,
            vec![9]
        );
    }

    #[test]
    fn unpooled_output_inverts_the_pool() {
        let w = window(&[2, 2], &[2, 2], &[], AutoPad::NotSet);
        assert_eq!(w.unpooled_output(&[2, 3]).unwrap(), vec![4, 6]);
    }

    #[test]
    fn ops_carrying_windows_print_and_parse_back() {
        use crate::op::{NnOp, Op};
        let conv = Op::Nn(NnOp::Conv(ConvAttrs {
            window: window(&[], &[2, 2], &[1, 1, 1, 1], AutoPad::NotSet),
            group: 2,
        }));
        let pool = Op::Nn(NnOp::MaxPool {
            window: window(&[3, 3], &[1, 1], &[], AutoPad::SameLower),
            storage_order: 0,
        });
        for op in [conv, pool] {
            let text = op.to_text();
            assert_eq!(Op::from_text(&text).unwrap(), op, "{text}");
        }
        assert_eq!(
            Op::from_text("Conv((group: 1))").unwrap(),
            Op::Nn(NnOp::Conv(ConvAttrs::default()))
        );
    }

    #[test]
    fn text_form_defaults_omitted_lists() {
        let w: Window = ron::from_str("(kernel: [2])").unwrap();
        assert_eq!(w, Window::of_kernel(vec![2]));
    }
}
