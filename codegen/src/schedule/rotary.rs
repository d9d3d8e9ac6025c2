//! Rotary position embedding as one kernel: each (batch, head, position) row
//! rotates its feature pairs by the cos/sin table row of its position and copies
//! the features beyond the rotary dim. Position ids are checked to lie in
//! `0..max_pos` before the kernel reads the tables.

use kiln_ir::op::CompositeOp;
use kiln_ir::{DType, Node, Op};

use super::nest::nest;
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{add, bin, cast, idx, load, mul, var};
use crate::kernel::{Access, BinOp, Kernel, LoopKind, Scalar, Stmt};
use crate::program::{HostReason, Step};

/// Lowers a `RotaryEmbedding` node over f32 tensors.
pub fn lower(s: &mut Scheduler, node: &Node) -> Lowered {
    let Op::Composite(CompositeOp::RotaryEmbedding {
        interleaved,
        rotary_dim,
        num_heads,
        position_ids,
    }) = &node.op
    else {
        return host(HostReason::OpNotLowered {
            op: node.op.name().to_string(),
        });
    };
    let (x, cos, sin, out) = (
        node.inputs[0],
        node.inputs[1],
        node.inputs[2],
        node.outputs[0],
    );
    if let Some(&v) = [x, cos, sin, out]
        .iter()
        .find(|&&v| s.graph.value(v).ty.dtype != DType::F32)
    {
        return host(HostReason::UnsupportedDtype {
            what: format!("`{}`", s.graph.value(v).name),
            dtype: s.graph.value(v).ty.dtype,
        });
    }
    let sh = s.shape(x);
    let (nb, ns, nh, nd, packed) = match (sh.len(), num_heads) {
        (4, None) => (sh[0], sh[2], sh[1], sh[3], false),
        (3, Some(h)) if *h > 0 && sh[2].is_multiple_of(*h) => (sh[0], sh[1], *h, sh[2] / h, true),
        _ => {
            return host(HostReason::RegionShape(format!(
                "input {sh:?} is neither [batch, heads, seq, dim] nor [batch, seq, heads·dim]"
            )))
        }
    };
    let rd = rotary_dim.unwrap_or(nd);
    if rd > nd || !rd.is_multiple_of(2) || rd == 0 {
        return host(HostReason::UnsupportedAttributes(format!(
            "rotary dim {rd} of a head dim {nd}"
        )));
    }
    let half = rd / 2;
    let table = s.shape(cos);
    if s.shape(sin) != table || table.last() != Some(&half) {
        return host(HostReason::RegionShape(format!(
            "cos/sin tables {table:?} and {:?} for a half rotary dim {half}",
            s.shape(sin)
        )));
    }
    let pos = if *position_ids {
        let p = node.inputs[3];
        let pdt = s.graph.value(p).ty.dtype;
        if !matches!(pdt, DType::I64 | DType::I32) {
            return host(HostReason::UnsupportedDtype {
                what: "position ids".into(),
                dtype: pdt,
            });
        }
        if table.len() != 2 || s.shape(p) != [nb, ns] {
            return host(HostReason::RegionShape(format!(
                "position ids {:?} and tables {table:?}",
                s.shape(p)
            )));
        }
        Some((p, pdt, table[0]))
    } else {
        if table != [nb, ns, half] {
            return host(HostReason::RegionShape(format!(
                "tables {table:?} without position ids (expected {:?})",
                [nb, ns, half]
            )));
        }
        None
    };
    if nb * ns * nh * nd == 0 {
        return Ok(());
    }
    if let Some((p, _, max)) = pos {
        let pb = s.buf(p);
        s.prog.steps.push(Step::CheckIndices {
            node: node.name.clone(),
            indices: pb,
            bounds: vec![max as i64],
            wrap_negative: false,
        });
    }
    let numel = nb * ns * nh * nd;
    let mut k = Kernel::new(format!("rotary_{}", node.name));
    let xb = k.buffer(
        s.graph.value(x).name.clone(),
        Scalar::F32,
        numel,
        Access::Read,
    );
    let tlen: usize = table.iter().product();
    let cb = k.buffer(
        s.graph.value(cos).name.clone(),
        Scalar::F32,
        tlen,
        Access::Read,
    );
    let sb = k.buffer(
        s.graph.value(sin).name.clone(),
        Scalar::F32,
        tlen,
        Access::Read,
    );
    let pbuf = pos.map(|(p, pdt, _)| {
        (
            k.buffer(
                s.graph.value(p).name.clone(),
                Scalar::of(pdt),
                nb * ns,
                Access::Read,
            ),
            pdt,
        )
    });
    let ob = k.buffer(
        s.graph.value(out).name.clone(),
        Scalar::F32,
        numel,
        Access::Write,
    );

    // Offset of feature 0 of (b, h, s) in x and out.
    let base = move |b: crate::kernel::Expr, h: crate::kernel::Expr, q: crate::kernel::Expr| {
        if packed {
            mul(
                add(mul(add(mul(b, idx(ns as i64)), q), idx(nh as i64)), h),
                idx(nd as i64),
            )
        } else {
            mul(
                add(mul(add(mul(b, idx(nh as i64)), h), idx(ns as i64)), q),
                idx(nd as i64),
            )
        }
    };
    let interleaved = *interleaved;
    let body = nest(&mut k, &[nb, nh, ns], true, |k, v| {
        let (b, h, q) = (v[0].clone(), v[1].clone(), v[2].clone());
        let token = add(mul(b.clone(), idx(ns as i64)), q.clone());
        let row = k.var(Scalar::I64);
        let row_value = match pbuf {
            Some((pb, pdt)) => {
                let p = load(pb, token);
                let p = if pdt == DType::I64 {
                    p
                } else {
                    cast(Scalar::I64, p)
                };
                mul(p, idx(half as i64))
            }
            None => mul(token, idx(half as i64)),
        };
        let at = k.var(Scalar::I64);
        let j = k.var(Scalar::I64);
        let (i1, i2) = if interleaved {
            let two_j = mul(var(j), idx(2));
            (
                add(var(at), two_j.clone()),
                add(var(at), add(two_j, idx(1))),
            )
        } else {
            (
                add(var(at), var(j)),
                add(var(at), add(var(j), idx(half as i64))),
            )
        };
        let [c, sn, x1, x2] = [0; 4].map(|_| k.var(Scalar::F32));
        let t = add(var(row), var(j));
        let mut stmts = vec![
            Stmt::Let {
                var: row,
                value: row_value,
            },
            Stmt::Let {
                var: at,
                value: base(b, h, q),
            },
            Stmt::For {
                var: j,
                extent: half as i64,
                kind: LoopKind::Serial,
                body: vec![
                    Stmt::Let {
                        var: c,
                        value: load(cb, t.clone()),
                    },
                    Stmt::Let {
                        var: sn,
                        value: load(sb, t),
                    },
                    Stmt::Let {
                        var: x1,
                        value: load(xb, i1.clone()),
                    },
                    Stmt::Let {
                        var: x2,
                        value: load(xb, i2.clone()),
                    },
                    Stmt::Store {
                        buf: ob,
                        index: i1,
                        value: bin(BinOp::Sub, mul(var(c), var(x1)), mul(var(sn), var(x2))),
                    },
                    Stmt::Store {
                        buf: ob,
                        index: i2,
                        value: add(mul(var(sn), var(x1)), mul(var(c), var(x2))),
                    },
                ],
            },
        ];
        if rd < nd {
            // The features beyond the rotary dim pass through.
            let f = k.var(Scalar::I64);
            let src = add(var(at), add(var(f), idx(rd as i64)));
            stmts.push(Stmt::For {
                var: f,
                extent: (nd - rd) as i64,
                kind: LoopKind::Serial,
                body: vec![Stmt::Store {
                    buf: ob,
                    index: src.clone(),
                    value: load(xb, src),
                }],
            });
        }
        stmts
    });
    k.body = body;
    let mut args = vec![s.buf(x), s.buf(cos), s.buf(sin)];
    if let Some((p, _, _)) = pos {
        args.push(s.buf(p));
    }
    args.push(s.buf(out));
    s.launch(k, args)?;
    Ok(())
}
