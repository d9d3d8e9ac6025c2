//! RMS-norm rows: the sum of squares, then `x / sqrt(mean(x²) + ε) · scale`
//! through the epilogue.

use super::inverse_sqrt_mean;
use super::row::Row;
use crate::kernel::build::{bin, var};
use crate::kernel::{BinOp, Kernel, Stmt};
use crate::program::HostReason;

impl Row<'_> {
    /// Emits an RMS-norm row into `body`.
    pub(super) fn rms_norm(
        &self,
        k: &mut Kernel,
        body: &mut Vec<Stmt>,
        epsilon: f32,
    ) -> Result<(), HostReason> {
        let cs = self.cs;
        let ss = self.decl(k, body, 0.0);
        body.extend(self.pass(k, &mut |_, st, x, _| {
            st.push(Stmt::Assign {
                var: ss,
                value: bin(BinOp::Add, var(ss), bin(BinOp::Mul, x.clone(), x)),
            });
            Ok(())
        })?);
        let inv = k.var(cs);
        body.push(Stmt::Let {
            var: inv,
            value: inverse_sqrt_mean(var(ss), self.n.clone(), epsilon, cs),
        });
        body.extend(self.pass(k, &mut |k, st, x, pos| {
            let scale = self.anchor_arg(1, pos)?;
            let y = bin(BinOp::Mul, bin(BinOp::Mul, x, var(inv)), scale);
            self.epilogue(k, st, y, pos, self.out_at(pos))
        })?);
        Ok(())
    }
}
