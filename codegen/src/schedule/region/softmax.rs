//! Softmax and log-softmax rows: the running maximum, the sum of
//! exponentials, then the normalized values through the epilogue (a bare
//! softmax scales its stored exponentials in place instead).

use super::super::elementwise::load_compute;
use super::super::nest::nest;
use super::row::Row;
use crate::kernel::build::{bin, fc, un, var};
use crate::kernel::{BinOp, Kernel, Stmt, UnOp};
use crate::program::HostReason;

impl Row<'_> {
    /// Emits a (log-)softmax row into `body`; `in_place`: store the
    /// exponentials and scale them where they are (a bare softmax).
    pub(super) fn softmax(
        &self,
        k: &mut Kernel,
        body: &mut Vec<Stmt>,
        log: bool,
        in_place: bool,
    ) -> Result<(), HostReason> {
        let cs = self.cs;
        let m = self.running_max(k, body)?;
        let sum = self.decl(k, body, 0.0);
        body.extend(self.pass(k, &mut |k, st, x, pos| {
            let e = un(UnOp::Exp, bin(BinOp::Sub, x, var(m)));
            if in_place {
                let ev = k.var(cs);
                st.push(Stmt::Let { var: ev, value: e });
                st.push(Stmt::Store {
                    buf: self.out_buf,
                    index: self.out_at(pos),
                    value: var(ev),
                });
                st.push(Stmt::Assign {
                    var: sum,
                    value: bin(BinOp::Add, var(sum), var(ev)),
                });
            } else {
                st.push(Stmt::Assign {
                    var: sum,
                    value: bin(BinOp::Add, var(sum), e),
                });
            }
            Ok(())
        })?);
        let scale = k.var(cs);
        body.push(Stmt::Let {
            var: scale,
            value: if log {
                bin(BinOp::Add, var(m), un(UnOp::Log, var(sum)))
            } else {
                bin(BinOp::Div, fc(1.0, cs), var(sum))
            },
        });
        if in_place {
            let red_ext = self.red_ext.clone();
            body.extend(nest(k, &red_ext, false, |_, rv| {
                let at = self.out_at(&self.x_pos(rv));
                vec![Stmt::Store {
                    buf: self.out_buf,
                    index: at.clone(),
                    value: bin(
                        BinOp::Mul,
                        load_compute(self.out_buf, at, self.out_dt),
                        var(scale),
                    ),
                }]
            }));
        } else {
            body.extend(self.pass(k, &mut |k, st, x, pos| {
                let y = if log {
                    bin(BinOp::Sub, x, var(scale))
                } else {
                    bin(
                        BinOp::Mul,
                        un(UnOp::Exp, bin(BinOp::Sub, x, var(m))),
                        var(scale),
                    )
                };
                self.epilogue(k, st, y, pos, self.out_at(pos))
            })?);
        }
        Ok(())
    }
}
