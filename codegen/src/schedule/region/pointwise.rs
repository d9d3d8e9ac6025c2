//! A region without an anchor: one nest over the output, dims merged where
//! every access allows.

use kiln_ir::op::FusedArg;

use super::super::elementwise::load_compute;
use super::super::nest::{collapse, dense_strides, nest, offset};
use super::super::{Lowered, Scheduler};
use super::eval::{reads_per_channel, StepEval};
use super::{finish, store_result, Region};
use crate::kernel::build::idx;
use crate::kernel::{Access, Kernel};

impl Region<'_> {
    /// No anchor: one nest over the output, dims merged where every access allows.
    pub(super) fn elementwise(&self, s: &mut Scheduler) -> Lowered {
        let (out_dt, out_shape) = self.out_type().clone();
        let mut k = Kernel::new(format!("ew_{}", self.node.name));
        let (in_bufs, mut args) = self.input_buffers(s, &mut k);
        let out_buf = self.output_buffer(s, &mut k, Access::Write, &mut args);
        let reader = self.reader(in_bufs, &out_shape);
        // Every access pattern (input × channel mode) and the output's, merged.
        let mut patterns: Vec<(usize, bool)> = Vec::new();
        for st in self.steps {
            let channel = reads_per_channel(&st.op);
            for (ai, a) in st.args.iter().enumerate() {
                if let FusedArg::Input(i) = *a {
                    let p = (i, channel && ai > 0);
                    if !patterns.contains(&p) {
                        patterns.push(p);
                    }
                }
            }
        }
        let mut strides: Vec<Vec<i64>> = vec![dense_strides(&out_shape)];
        strides.extend(patterns.iter().map(|&(i, c)| reader.strides(i, c)));
        let (extents, merged) = collapse(&out_shape, &strides);
        let mut failed = None;
        let body = nest(&mut k, &extents, true, |k, vars| {
            let mut stmts = Vec::new();
            let mut eval = StepEval::new(self);
            let load = |i: usize, c: bool| {
                let p = patterns
                    .iter()
                    .position(|&q| q == (i, c))
                    .expect("collected");
                load_compute(
                    reader.bufs[i],
                    offset(vars, &merged[p + 1], idx(0)),
                    reader.dtypes[i],
                )
            };
            if let Err(r) = eval.eval(k, &mut stmts, 0..self.steps.len(), &load) {
                failed = Some(r);
                return stmts;
            }
            store_result(
                &eval,
                &mut stmts,
                out_buf,
                offset(vars, &merged[0], idx(0)),
                out_dt,
            );
            stmts
        });
        finish(s, k, body, failed, args)
    }
}
