//! Reduction rows: one accumulator per kept position (log-sum-exp subtracts
//! the row's maximum first), its final value through the epilogue.

use kiln_ir::op::ReduceKind;

use super::row::Row;
use crate::kernel::build::{bin, fc, idx, select, un, var};
use crate::kernel::{BinOp, Expr, Kernel, Stmt, UnOp};
use crate::program::HostReason;

impl Row<'_> {
    /// Emits a reduction row into `body`; `row` is the flat output index of the
    /// kept position.
    pub(super) fn reduce(
        &self,
        k: &mut Kernel,
        body: &mut Vec<Stmt>,
        kind: ReduceKind,
        row: Expr,
    ) -> Result<(), HostReason> {
        let cs = self.cs;
        let acc = k.var(cs);
        let lse_max = if kind == ReduceKind::LogSumExp {
            let m = self.running_max(k, body)?;
            // An infinite maximum: subtract 0 instead (ln Σ e^−∞ = −∞ and a row
            // holding +∞ sums to +∞, where ∞ − ∞ would be NaN).
            let safe = k.var(cs);
            body.push(Stmt::Let {
                var: safe,
                value: select(
                    bin(BinOp::Eq, un(UnOp::Abs, var(m)), fc(f64::INFINITY, cs)),
                    fc(0.0, cs),
                    var(m),
                ),
            });
            Some(safe)
        } else {
            None
        };
        let init = match kind {
            ReduceKind::Max => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
            ReduceKind::Prod => 1.0,
            _ => 0.0,
        };
        body.push(Stmt::Decl {
            var: acc,
            init: fc(init, cs),
        });
        body.extend(self.pass(k, &mut |_, st, x, _| {
            let value = match kind {
                ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => {
                    bin(BinOp::Add, var(acc), x)
                }
                ReduceKind::L1 => bin(BinOp::Add, var(acc), un(UnOp::Abs, x)),
                ReduceKind::L2 | ReduceKind::SumSquare => {
                    bin(BinOp::Add, var(acc), bin(BinOp::Mul, x.clone(), x))
                }
                ReduceKind::Max => bin(BinOp::Max, var(acc), x),
                ReduceKind::Min => bin(BinOp::Min, var(acc), x),
                ReduceKind::Prod => bin(BinOp::Mul, var(acc), x),
                ReduceKind::LogSumExp => bin(
                    BinOp::Add,
                    var(acc),
                    un(UnOp::Exp, bin(BinOp::Sub, x, var(lse_max.expect("set")))),
                ),
            };
            st.push(Stmt::Assign { var: acc, value });
            Ok(())
        })?);
        let y = match kind {
            ReduceKind::Mean => bin(BinOp::Div, var(acc), self.n.clone()),
            ReduceKind::L2 => un(UnOp::Sqrt, var(acc)),
            ReduceKind::LogSum => un(UnOp::Log, var(acc)),
            ReduceKind::LogSumExp => bin(
                BinOp::Add,
                var(lse_max.expect("set")),
                un(UnOp::Log, var(acc)),
            ),
            _ => var(acc),
        };
        let out_pos = self.output_position();
        if out_pos.len() != self.out_shape.len() {
            return Err(HostReason::RegionShape(format!(
                "a reduction of rank {} into an output {:?}",
                out_pos.len(),
                self.out_shape
            )));
        }
        self.epilogue(k, body, y, &out_pos, row)
    }

    /// The output position of the kept indices (size-1 reduced dims when the
    /// output keeps them).
    fn output_position(&self) -> Vec<Expr> {
        let rank = self.rank;
        if self.out_shape.len() == rank {
            let mut p = vec![idx(0); rank];
            for (d, e) in &self.kept_idx {
                p[*d] = e.clone();
            }
            p
        } else {
            let mut ki = self.kept_idx.clone();
            ki.sort_by_key(|(d, _)| *d);
            ki.into_iter().map(|(_, e)| e).collect()
        }
    }
}
