//! Max and average pooling as one loop nest per output element over its window
//! (padding taps skipped for the max; counted for the average only with
//! `count_include_pad`, as far as the padded extent reaches).

use kiln_ir::op::{NnOp, WindowGeometry};
use kiln_ir::{Node, Op};

use super::elementwise::{compute, load_compute, to_storage};
use super::nest::{dense_strides, nest, offset};
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{add, bin, fc, idx, mul, select, var};
use crate::kernel::{Access, BinOp, Expr, Kernel, LoopKind, Scalar, Stmt};
use crate::program::HostReason;

/// Lowers a `MaxPool` (without its indices output) or `AveragePool` node.
pub fn lower(s: &mut Scheduler, node: &Node) -> Lowered {
    let (win, avg) = match &node.op {
        Op::Nn(NnOp::MaxPool { window, .. }) => {
            if node.outputs.len() > 1 && s.is_used(node.outputs[1]) {
                return host(HostReason::MultipleOutputs {
                    count: node.outputs.len(),
                });
            }
            (window, None)
        }
        Op::Nn(NnOp::AveragePool {
            window,
            count_include_pad,
        }) => (window, Some(*count_include_pad)),
        op => {
            return host(HostReason::OpNotLowered {
                op: op.name().to_string(),
            })
        }
    };
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let xs = s.shape(x);
    let dt = s.graph.value(x).ty.dtype;
    let cs = compute(dt);
    if !cs.is_float() {
        return host(HostReason::UnsupportedDtype {
            what: "the input".into(),
            dtype: dt,
        });
    }
    if xs.len() < 3 || win.kernel.len() != xs.len() - 2 {
        return host(HostReason::RegionShape(format!(
            "input {xs:?} for a {}-d window",
            win.kernel.len()
        )));
    }
    let nd = xs.len() - 2;
    let in_sp = &xs[2..];
    let Ok(WindowGeometry {
        output: out_sp,
        pads,
    }) = win.output(in_sp)
    else {
        return host(HostReason::UnsupportedAttributes(
            "a window whose output size is undefined".into(),
        ));
    };
    if s.shape(y)[2..] != out_sp[..] {
        return host(HostReason::RegionShape(format!(
            "output {:?} differs from the window's {out_sp:?}",
            s.shape(y)
        )));
    }
    let planes = xs[0] * xs[1];
    let p_in: usize = in_sp.iter().product();
    let p_out: usize = out_sp.iter().product();
    if planes * p_out == 0 {
        return Ok(());
    }
    let st = |i: usize| win.stride(i) as i64;
    let dl = |i: usize| win.dilation(i) as i64;
    let mut k = Kernel::new(format!("pool_{}", node.name));
    let sc = Scalar::of(dt);
    let xb = k.buffer(
        s.graph.value(x).name.clone(),
        sc,
        planes * p_in,
        Access::Read,
    );
    let yb = k.buffer(
        s.graph.value(y).name.clone(),
        sc,
        planes * p_out,
        Access::Write,
    );
    let plane = k.var(Scalar::I64);
    let in_strides = dense_strides(in_sp);
    let out_strides = dense_strides(&out_sp);
    let body = nest(&mut k, &out_sp, false, |k, o| {
        let mut st_out = Vec::new();
        let acc = k.var(cs);
        let cnt = k.var(cs);
        let init = if avg.is_some() {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        st_out.push(Stmt::Decl {
            var: acc,
            init: fc(init, cs),
        });
        st_out.push(Stmt::Decl {
            var: cnt,
            init: fc(0.0, cs),
        });
        st_out.extend(nest(k, &win.kernel, false, |k, t| {
            let mut stmts = Vec::new();
            let mut inside: Option<Expr> = None;
            let mut padded: Option<Expr> = None;
            let mut at = mul(var(plane), idx(p_in as i64));
            let and = |a: Option<Expr>, b: Expr| {
                Some(match a {
                    None => b,
                    Some(a) => bin(BinOp::And, a, b),
                })
            };
            for i in 0..nd {
                let p = k.var(Scalar::I64);
                stmts.push(Stmt::Let {
                    var: p,
                    value: bin(
                        BinOp::Sub,
                        add(mul(o[i].clone(), idx(st(i))), mul(t[i].clone(), idx(dl(i)))),
                        idx(pads[i] as i64),
                    ),
                });
                inside = and(
                    inside,
                    bin(
                        BinOp::And,
                        bin(BinOp::Ge, var(p), idx(0)),
                        bin(BinOp::Lt, var(p), idx(in_sp[i] as i64)),
                    ),
                );
                padded = and(
                    padded,
                    bin(
                        BinOp::And,
                        bin(BinOp::Ge, var(p), idx(-(pads[i] as i64))),
                        bin(BinOp::Lt, var(p), idx((in_sp[i] + pads[i + nd]) as i64)),
                    ),
                );
                at = add(at, mul(var(p), idx(in_strides[i])));
            }
            let ok = k.var(Scalar::Bool);
            stmts.push(Stmt::Let {
                var: ok,
                value: inside.expect("spatial dims"),
            });
            let v = k.var(cs);
            stmts.push(Stmt::Let {
                var: v,
                value: load_compute(xb, select(var(ok), at, idx(0)), dt),
            });
            match avg {
                None => stmts.push(Stmt::Assign {
                    var: acc,
                    value: select(
                        bin(BinOp::And, var(ok), bin(BinOp::Gt, var(v), var(acc))),
                        var(v),
                        var(acc),
                    ),
                }),
                Some(include_pad) => {
                    stmts.push(Stmt::Assign {
                        var: acc,
                        value: bin(BinOp::Add, var(acc), select(var(ok), var(v), fc(0.0, cs))),
                    });
                    let counted = if include_pad {
                        bin(BinOp::Or, var(ok), padded.expect("spatial dims"))
                    } else {
                        var(ok)
                    };
                    stmts.push(Stmt::Assign {
                        var: cnt,
                        value: bin(
                            BinOp::Add,
                            var(cnt),
                            select(counted, fc(1.0, cs), fc(0.0, cs)),
                        ),
                    });
                }
            }
            stmts
        }));
        let value = match avg {
            None => var(acc),
            Some(_) => bin(BinOp::Div, var(acc), var(cnt)),
        };
        st_out.push(Stmt::Store {
            buf: yb,
            index: offset(o, &out_strides, mul(var(plane), idx(p_out as i64))),
            value: to_storage(value, dt),
        });
        st_out
    });
    k.body = vec![Stmt::For {
        var: plane,
        extent: planes as i64,
        kind: LoopKind::Parallel,
        body,
    }];
    let args = vec![s.buf(x), s.buf(y)];
    s.launch(k, args)?;
    Ok(())
}
