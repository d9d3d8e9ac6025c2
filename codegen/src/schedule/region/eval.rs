//! A region's steps as kernel expressions at one nest position: [`Reader`]
//! loads the region's inputs there, [`StepEval`] binds each step's value to a
//! variable.

use kiln_ir::op::{FusedArg, NnOp};
use kiln_ir::{DType, Op};

use super::super::elementwise::{compute, load_compute, op_expr};
use super::super::nest::{broadcast_strides, offset};
use super::Region;
use crate::kernel::build::{idx, var};
use crate::kernel::{Expr, Kernel, Stmt};
use crate::program::HostReason;

/// Whether a step reads its operands after the first per channel (batch norm's
/// `[C]` parameters follow axis 1 of its `[N, C, ...]` operand).
pub(super) fn reads_per_channel(op: &Op) -> bool {
    matches!(op, Op::Nn(NnOp::BatchNorm { .. }))
}

/// How one region input is read at a nest position: its kernel buffer, and for
/// each use mode (plain, or a batch-norm parameter indexed by channel) its strides
/// over the nest's dims.
pub(super) struct Reader<'a> {
    /// Kernel buffer of each region input.
    pub bufs: Vec<usize>,
    /// Shape of each region input.
    pub shapes: Vec<Vec<usize>>,
    /// Dtype of each region input.
    pub dtypes: Vec<DType>,
    /// Dims of the nest positions are given in.
    pub nest: &'a [usize],
}

impl Reader<'_> {
    /// Strides of region input `input` over the nest's dims (`channel`: read as
    /// a batch-norm parameter).
    pub fn strides(&self, input: usize, channel: bool) -> Vec<i64> {
        let shape = &self.shapes[input];
        if channel && shape.len() == 1 && self.nest.len() >= 2 {
            // A batch-norm parameter `[C]` follows axis 1 of its `[N, C, ...]`
            // operand (the nest's last `rank` dims; here the whole nest).
            let mut st = vec![0i64; self.nest.len()];
            if shape[0] != 1 {
                st[1] = 1;
            }
            return st;
        }
        broadcast_strides(shape, self.nest)
    }

    /// Region input `input` at nest position `pos`, in its compute type.
    pub fn load(&self, input: usize, channel: bool, pos: &[Expr]) -> Expr {
        let st = self.strides(input, channel);
        load_compute(
            self.bufs[input],
            offset(pos, &st, idx(0)),
            self.dtypes[input],
        )
    }
}

/// Evaluates steps at one position, binding each value to a variable.
pub(super) struct StepEval<'r> {
    region: &'r Region<'r>,
    /// The value of each step evaluated so far at this position.
    pub vals: Vec<Option<Expr>>,
}

impl<'r> StepEval<'r> {
    pub fn new(region: &'r Region<'r>) -> Self {
        StepEval {
            region,
            vals: vec![None; region.steps.len()],
        }
    }

    /// Binds steps `range` (all elementwise) at `pos`, loading inputs with `load`;
    /// fails when a step has no kernel expression.
    pub fn eval(
        &mut self,
        k: &mut Kernel,
        out: &mut Vec<Stmt>,
        range: std::ops::Range<usize>,
        load: &dyn Fn(usize, bool) -> Expr,
    ) -> Result<(), HostReason> {
        for j in range {
            let step = &self.region.steps[j];
            let channel = reads_per_channel(&step.op);
            let mut args = Vec::new();
            let mut dtypes = Vec::new();
            for (ai, a) in step.args.iter().enumerate() {
                match *a {
                    FusedArg::Input(i) => {
                        args.push(load(i, channel && ai > 0));
                        dtypes.push(self.region.input_dtype(i));
                    }
                    FusedArg::Step(p) => {
                        // An epilogue reading a prologue step: the pass that
                        // computes the epilogue does not compute the prologue.
                        let v = self.vals[p].clone().ok_or_else(|| {
                            HostReason::RegionShape(format!(
                                "step {j} reads step {p} outside the anchor's pass"
                            ))
                        })?;
                        args.push(v);
                        dtypes.push(self.region.step_types[p].0);
                    }
                }
            }
            let out_dt = self.region.step_types[j].0;
            let e = op_expr(&step.op, args, &dtypes, out_dt).ok_or_else(|| {
                HostReason::NoKernelExpression {
                    op: step.op.name().to_string(),
                    dtype: out_dt,
                }
            })?;
            let v = k.var(compute(out_dt));
            out.push(Stmt::Let { var: v, value: e });
            self.vals[j] = Some(var(v));
        }
        Ok(())
    }
}
