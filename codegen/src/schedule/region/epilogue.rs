//! A matmul or convolution anchor: the GEMM writes the product, then one kernel
//! applies the region's epilogue (and a convolution's bias) in place, or from a
//! scratch buffer when the output differs in dtype from the product.

use kiln_ir::op::{FusedArg, NnOp};
use kiln_ir::Op;

use super::super::elementwise::{compute, load_compute};
use super::super::nest::{dense_strides, nest, offset};
use super::super::{host, Lowered, Scheduler};
use super::eval::StepEval;
use super::{finish, store_result, Region};
use crate::kernel::build::{bin, idx, var};
use crate::kernel::{Access, BinOp, Kernel, Scalar, Stmt};
use crate::program::HostReason;

impl Region<'_> {
    /// A matmul anchor (step `a`): the GEMM writes the product, then one kernel
    /// applies the epilogue in place (or from a scratch buffer when the output
    /// differs in dtype from the product).
    pub(super) fn matmul_epilogue(&self, s: &mut Scheduler, a: usize) -> Lowered {
        let anchor = &self.steps[a];
        let (FusedArg::Input(x), FusedArg::Input(w)) = (anchor.args[0], anchor.args[1]) else {
            return host(HostReason::RegionShape(
                "a product of prologue steps (the GEMM reads memory)".into(),
            ));
        };
        let (out_dt, out_shape) = self.out_type().clone();
        let (mm_dt, mm_shape) = self.step_types[a].clone();
        if out_shape != mm_shape {
            return host(HostReason::RegionShape(format!(
                "the epilogue's shape {out_shape:?} differs from the product's {mm_shape:?}"
            )));
        }
        let out = s.buf(self.node.outputs[0]);
        let product = if mm_dt == out_dt {
            out
        } else {
            s.scratch(
                &format!("{}.product", self.node.name),
                mm_dt,
                mm_shape.clone(),
            )
        };
        let (xv, wv) = (self.inputs[x], self.inputs[w]);
        let bias = match anchor.args.get(2) {
            Some(FusedArg::Input(b)) => Some(*b),
            Some(FusedArg::Step(_)) => {
                return host(HostReason::RegionShape(
                    "a bias computed in the region".into(),
                ))
            }
            None => None,
        };
        let mut used = vec![false; self.inputs.len()];
        for st in &self.steps[a + 1..] {
            for arg in &st.args {
                if let FusedArg::Input(i) = arg {
                    used[*i] = true;
                }
            }
        }
        if let Some(b) = bias {
            used[b] = true;
        }
        let has_epilogue = !(a + 1 == self.steps.len() && bias.is_none());
        match &anchor.op {
            Op::Nn(NnOp::Conv { .. }) => {
                // A direct convolution kernel applies the epilogue itself.
                let mut fused = FusedEpilogue {
                    region: self,
                    anchor: a,
                    bias,
                    used: used.clone(),
                    out_shape: out_shape.clone(),
                    in_bufs: Vec::new(),
                };
                let epilogue = (has_epilogue && product == out)
                    .then_some(&mut fused as &mut dyn super::super::conv::ElementEpilogue);
                if super::super::conv::emit_conv(
                    s, &anchor.op, xv, wv, product, mm_dt, &mm_shape, epilogue,
                )? {
                    return Ok(());
                }
            }
            _ if bias.is_some() => {
                return host(HostReason::UnsupportedAttributes(
                    "a matrix product with a bias operand".into(),
                ))
            }
            _ => super::super::matmul::emit_gemm(s, xv, wv, product, mm_dt, &mm_shape)?,
        }
        if a + 1 == self.steps.len() && product == out && bias.is_none() {
            return Ok(());
        }
        let mut k = Kernel::new(format!("epi_{}", self.node.name));
        let (in_bufs, mut args) = self.used_input_buffers(s, &mut k, &used);
        let numel: usize = out_shape.iter().product();
        let (prod_buf, out_buf) = if product == out {
            let b = k.buffer("out", Scalar::of(out_dt), numel, Access::ReadWrite);
            args.push(out);
            (b, b)
        } else {
            let p = k.buffer("product", Scalar::of(mm_dt), numel, Access::Read);
            let o = k.buffer("out", Scalar::of(out_dt), numel, Access::Write);
            args.push(product);
            args.push(out);
            (p, o)
        };
        let reader = self.reader(in_bufs, &out_shape);
        let dense = dense_strides(&out_shape);
        let mut failed = None;
        let body = nest(&mut k, &out_shape, true, |k, pos| {
            let mut stmts = Vec::new();
            let mut eval = StepEval::new(self);
            let at = offset(pos, &dense, idx(0));
            let pv = k.var(compute(mm_dt));
            let mut product = load_compute(prod_buf, at.clone(), mm_dt);
            if let Some(b) = bias {
                // A convolution's bias is per output channel (dim 1).
                let bv = load_compute(reader.bufs[b], pos[1].clone(), mm_dt);
                product = bin(BinOp::Add, product, bv);
            }
            stmts.push(Stmt::Let {
                var: pv,
                value: product,
            });
            eval.vals[a] = Some(var(pv));
            let load = |i: usize, c: bool| reader.load(i, c, pos);
            if let Err(r) = eval.eval(k, &mut stmts, a + 1..self.steps.len(), &load) {
                failed = Some(r);
                return stmts;
            }
            store_result(&eval, &mut stmts, out_buf, at, out_dt);
            stmts
        });
        finish(s, k, body, failed, args)
    }
}

/// A region's epilogue applied by a convolution kernel to each element
/// ([`super::super::conv::ElementEpilogue`]): the bias, then the steps after
/// the anchor, stored in the output's dtype.
struct FusedEpilogue<'r, 'a> {
    region: &'r Region<'a>,
    /// The anchor's step.
    anchor: usize,
    /// The region input holding the bias, if any.
    bias: Option<usize>,
    /// Which region inputs the epilogue reads.
    used: Vec<bool>,
    /// The output's shape.
    out_shape: Vec<usize>,
    /// Kernel buffer of each region input (after `declare`).
    in_bufs: Vec<usize>,
}

impl super::super::conv::ElementEpilogue for FusedEpilogue<'_, '_> {
    fn declare(&mut self, s: &mut Scheduler, k: &mut Kernel) -> Vec<crate::program::BufferId> {
        let (in_bufs, args) = self.region.used_input_buffers(s, k, &self.used);
        self.in_bufs = in_bufs;
        args
    }

    fn element(
        &mut self,
        k: &mut Kernel,
        pos: &[crate::kernel::Expr],
        at: crate::kernel::Expr,
        product: crate::kernel::Expr,
        out: usize,
    ) -> Result<Vec<Stmt>, HostReason> {
        let region = self.region;
        let a = self.anchor;
        let mm_dt = region.step_types[a].0;
        let (out_dt, _) = region.out_type().clone();
        let reader = region.reader(self.in_bufs.clone(), &self.out_shape);
        let mut stmts = Vec::new();
        let mut eval = StepEval::new(region);
        let pv = k.var(compute(mm_dt));
        let mut value = product;
        if let Some(b) = self.bias {
            // A convolution's bias is per output channel (dim 1).
            value = bin(
                BinOp::Add,
                value,
                load_compute(reader.bufs[b], pos[1].clone(), mm_dt),
            );
        }
        stmts.push(Stmt::Let { var: pv, value });
        eval.vals[a] = Some(var(pv));
        let load = |i: usize, c: bool| reader.load(i, c, pos);
        eval.eval(k, &mut stmts, a + 1..region.steps.len(), &load)?;
        store_result(&eval, &mut stmts, out, at, out_dt);
        Ok(stmts)
    }
}
