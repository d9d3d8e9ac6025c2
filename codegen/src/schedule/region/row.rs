//! Row kernels: a reduction, softmax or RMS-norm anchor as one parallel loop
//! over the kept positions (the anchor operand's dims that are not reduced)
//! with passes over the reduced dims inside ([`Row::pass`]); the anchor's own
//! statistics are in [`super::softmax`], [`super::rms_norm`] and
//! [`super::reduce`].

use kiln_ir::op::{CompositeOp, FusedArg, ReduceOp};
use kiln_ir::{DType, Op};

use super::super::elementwise::compute;
use super::super::nest::{dense_strides, nest, offset};
use super::super::{host, Lowered, Scheduler};
use super::eval::{Reader, StepEval};
use super::{store_result, Region};
use crate::kernel::build::{bin, fc, idx, parallel, var};
use crate::kernel::{Access, BinOp, Expr, Kernel, Scalar, Stmt, VarId};
use crate::program::HostReason;

/// What a pass over the reduced dims does with the anchor operand's value at
/// one position: (kernel, statements, value, position).
pub(super) type PassBody<'a> =
    dyn FnMut(&mut Kernel, &mut Vec<Stmt>, Expr, &[Expr]) -> Result<(), HostReason> + 'a;

/// One row kernel being built: what its passes and epilogue share.
pub(super) struct Row<'r> {
    region: &'r Region<'r>,
    /// The anchor step.
    a: usize,
    /// The compute type of the anchor operand.
    pub cs: Scalar,
    /// The anchor operand's rank.
    pub rank: usize,
    /// The reduced dims of the anchor operand, and their extents.
    reduced: Vec<usize>,
    pub red_ext: Vec<usize>,
    /// Each kept dim with its index expression (from the row number).
    pub kept_idx: Vec<(usize, Expr)>,
    /// Region inputs read at positions of the anchor operand, and of the output.
    x_reader: Reader<'r>,
    out_reader: Reader<'r>,
    /// The output's kernel buffer, dtype, shape and dense strides.
    pub out_buf: usize,
    pub out_dt: DType,
    pub out_shape: &'r [usize],
    out_dense: Vec<i64>,
    /// The number of reduced elements per row, as a compute-typed constant.
    pub n: Expr,
}

impl Row<'_> {
    /// The anchor operand's position for the reduced loop variables `red_vars`.
    pub fn x_pos(&self, red_vars: &[Expr]) -> Vec<Expr> {
        let mut pos = vec![idx(0); self.rank];
        for (d, e) in &self.kept_idx {
            pos[*d] = e.clone();
        }
        for (j, &d) in self.reduced.iter().enumerate() {
            pos[d] = red_vars[j].clone();
        }
        pos
    }

    /// A pass over the reduced dims; `f` gets the anchor operand's value (its
    /// prologue recomputed) at each position.
    pub fn pass(&self, k: &mut Kernel, f: &mut PassBody) -> Result<Vec<Stmt>, HostReason> {
        let anchor = &self.region.steps[self.a];
        let mut failed = None;
        let stmts = nest(k, &self.red_ext, false, |k, rv| {
            let pos = self.x_pos(rv);
            let mut stmts = Vec::new();
            let mut eval = StepEval::new(self.region);
            let load = |i: usize, c: bool| self.x_reader.load(i, c, &pos);
            let xv = match anchor.args[0] {
                FusedArg::Input(i) => load(i, false),
                FusedArg::Step(p) => {
                    if let Err(r) = eval.eval(k, &mut stmts, 0..p + 1, &load) {
                        failed = Some(r);
                        return stmts;
                    }
                    eval.vals[p].clone().expect("evaluated")
                }
            };
            let xvar = k.var(self.cs);
            stmts.push(Stmt::Let {
                var: xvar,
                value: xv,
            });
            if let Err(r) = f(k, &mut stmts, var(xvar), &pos) {
                failed.get_or_insert(r);
            }
            stmts
        });
        match failed {
            Some(r) => Err(r),
            None => Ok(stmts),
        }
    }

    /// Declares an accumulator of the compute type starting at `init`.
    pub fn decl(&self, k: &mut Kernel, body: &mut Vec<Stmt>, init: f64) -> VarId {
        let v = k.var(self.cs);
        body.push(Stmt::Decl {
            var: v,
            init: fc(init, self.cs),
        });
        v
    }

    /// The row's maximum of the anchor operand (one pass): what softmax and
    /// log-sum-exp subtract before exponentiating.
    pub fn running_max(&self, k: &mut Kernel, body: &mut Vec<Stmt>) -> Result<VarId, HostReason> {
        let m = self.decl(k, body, f64::NEG_INFINITY);
        body.extend(self.pass(k, &mut |_, st, x, _| {
            st.push(Stmt::Assign {
                var: m,
                value: bin(BinOp::Max, var(m), x),
            });
            Ok(())
        })?);
        Ok(m)
    }

    /// The anchor's value `y` at position `pos` through the epilogue, stored at
    /// `store_at` of the output.
    pub fn epilogue(
        &self,
        k: &mut Kernel,
        stmts: &mut Vec<Stmt>,
        y: Expr,
        pos: &[Expr],
        store_at: Expr,
    ) -> Result<(), HostReason> {
        let region = self.region;
        let mut eval = StepEval::new(region);
        let yv = k.var(compute(region.step_types[self.a].0));
        stmts.push(Stmt::Let { var: yv, value: y });
        eval.vals[self.a] = Some(var(yv));
        let load = |i: usize, c: bool| self.out_reader.load(i, c, pos);
        eval.eval(k, stmts, self.a + 1..region.steps.len(), &load)?;
        store_result(&eval, stmts, self.out_buf, store_at, self.out_dt);
        Ok(())
    }

    /// The output offset of anchor-operand position `pos` (the anchor keeps
    /// the operand's shape).
    pub fn out_at(&self, pos: &[Expr]) -> Expr {
        offset(pos, &self.out_dense, idx(0))
    }

    /// The anchor's operand `j` (a region input) at `pos`; a step computed in
    /// the region is not supported.
    pub fn anchor_arg(&self, j: usize, pos: &[Expr]) -> Result<Expr, HostReason> {
        match self.region.steps[self.a].args.get(j) {
            Some(FusedArg::Input(i)) => Ok(self.x_reader.load(*i, false, pos)),
            _ => Err(HostReason::RegionShape(format!(
                "the anchor's operand {j} is computed in the region"
            ))),
        }
    }
}

impl Region<'_> {
    /// A reduction, softmax or RMS-norm anchor (step `a`): a parallel loop over
    /// kept positions, passes over the reduced dims inside.
    pub(super) fn row(&self, s: &mut Scheduler, a: usize) -> Lowered {
        let anchor = &self.steps[a];
        let (x_dt, x_shape) = match anchor.args[0] {
            FusedArg::Input(i) => self.input_types[i].clone(),
            FusedArg::Step(p) => self.step_types[p].clone(),
        };
        let cs = compute(x_dt);
        if !cs.is_float() {
            return host(HostReason::UnsupportedDtype {
                what: "the anchor's operand".into(),
                dtype: x_dt,
            });
        }
        let rank = x_shape.len();
        let reduced: Vec<usize> = match &anchor.op {
            Op::Composite(CompositeOp::Softmax { axis } | CompositeOp::LogSoftmax { axis }) => {
                vec![*axis]
            }
            Op::Composite(CompositeOp::RmsNorm { axis, .. }) => (*axis..rank).collect(),
            Op::Reduce(ReduceOp::Reduce { axes, .. }) => axes.clone(),
            op => {
                return host(HostReason::OpNotLowered {
                    op: op.name().to_string(),
                })
            }
        };
        if reduced.is_empty() || reduced.iter().any(|&d| d >= rank || x_shape[d] == 0) {
            return host(HostReason::RegionShape(format!(
                "reducing axes {reduced:?} of {x_shape:?} (none, or empty)"
            )));
        }
        let (out_dt, out_shape) = self.out_type().clone();
        if self.step_types[a].1 != out_shape {
            return host(HostReason::RegionShape(format!(
                "the anchor's shape {:?} differs from the output's {out_shape:?}",
                self.step_types[a].1
            )));
        }
        let kept: Vec<usize> = (0..rank).filter(|d| !reduced.contains(d)).collect();
        let kept_ext: Vec<usize> = kept.iter().map(|&d| x_shape[d]).collect();
        let red_ext: Vec<usize> = reduced.iter().map(|&d| x_shape[d]).collect();
        let n_rows: usize = kept_ext.iter().product();
        let row_len: usize = red_ext.iter().product();

        let mut k = Kernel::new(format!("row_{}", self.node.name));
        let (in_bufs, mut args) = self.input_buffers(s, &mut k);
        // A bare softmax stores its exponentials and scales them in place
        // (one exp per element instead of two).
        let in_place_softmax = matches!(anchor.op, Op::Composite(CompositeOp::Softmax { .. }))
            && a + 1 == self.steps.len()
            && Scalar::of(out_dt) == cs;
        let access = if in_place_softmax {
            Access::ReadWrite
        } else {
            Access::Write
        };
        let out_buf = self.output_buffer(s, &mut k, access, &mut args);

        let o = k.var(Scalar::I64);
        let mut body = Vec::new();
        // Kept indices from the flat row number.
        let mut kept_idx = Vec::new();
        let mut inner = 1i64;
        for (j, &e) in kept_ext.iter().enumerate().rev() {
            let v = k.var(Scalar::I64);
            let q = bin(BinOp::Div, var(o), idx(inner));
            let value = if j == 0 {
                q
            } else {
                bin(BinOp::Rem, q, idx(e as i64))
            };
            body.push(Stmt::Let { var: v, value });
            kept_idx.push((kept[j], var(v)));
            inner *= e as i64;
        }
        let row = Row {
            region: self,
            a,
            cs,
            rank,
            reduced,
            red_ext,
            kept_idx,
            x_reader: self.reader(in_bufs.clone(), &x_shape),
            out_reader: self.reader(in_bufs, &out_shape),
            out_buf,
            out_dt,
            out_shape: &out_shape,
            out_dense: dense_strides(&out_shape),
            n: fc(row_len as f64, cs),
        };
        let emitted = match &anchor.op {
            Op::Composite(CompositeOp::Softmax { .. }) => {
                row.softmax(&mut k, &mut body, false, in_place_softmax)
            }
            Op::Composite(CompositeOp::LogSoftmax { .. }) => {
                row.softmax(&mut k, &mut body, true, false)
            }
            Op::Composite(CompositeOp::RmsNorm { epsilon, .. }) => {
                row.rms_norm(&mut k, &mut body, *epsilon)
            }
            Op::Reduce(ReduceOp::Reduce { kind, .. }) => {
                row.reduce(&mut k, &mut body, *kind, var(o))
            }
            op => Err(HostReason::OpNotLowered {
                op: op.name().to_string(),
            }),
        };
        emitted?;
        k.body = vec![parallel(o, n_rows, body)];
        s.launch(k, args)?;
        Ok(())
    }
}
