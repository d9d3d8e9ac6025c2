//! Max and average pooling as one loop nest per output element over its window
//! (padding taps skipped for the max, a NaN tap making the output NaN as in
//! the reference; padding counted for the average only with
//! `count_include_pad`, as far as the padded extent reaches).
//!
//! A 2-D f32/f64 max pool takes a faster form ([`lower_max_2d`]): its input
//! copied once into a buffer bordered with −∞, then the window's taps folded
//! into each output row tap by tap, the innermost loop running along the row
//! with affine, always in-bounds loads (it vectorizes; the general nest tests
//! every tap's bounds and runs scalar).

use kiln_ir::op::{NnOp, WindowGeometry};
use kiln_ir::{DType, Node, Op, ValueId};

use super::elementwise::{compute, load_compute, to_storage};
use super::nest::{dense_strides, nest, offset};
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{add, bin, fc, idx, load, mul, select, var};
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
    if avg.is_none() && nd == 2 && matches!(dt, DType::F32 | DType::F64) {
        return lower_max_2d(
            s,
            &node.name,
            (x, y),
            win,
            [xs[0] * xs[1], in_sp[0], in_sp[1]],
            [out_sp[0], out_sp[1]],
            &pads,
        );
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
                    value: select(var(ok), bin(BinOp::Max, var(acc), var(v)), var(acc)),
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

/// A 2-D max pool of `planes` planes of `h × w` into `oh × ow` (see the module
/// docs): the input bordered with −∞ as far as any window reaches (the begin
/// pads, and at the end what the last window needs, which `ceil_mode` may make
/// more than the end pads), then for each output row, each tap `(ky, kx)`
/// folded into the whole row: `y[ox] = max(y[ox], xp[(oy·sy + ky·dy)·wp + ox·sx + kx·dx])`.
/// A border element is −∞, which never wins a max, so it acts as a skipped
/// tap; a NaN tap makes the output NaN, as the reference computes it.
fn lower_max_2d(
    s: &mut Scheduler,
    name: &str,
    (x, y): (ValueId, ValueId),
    win: &kiln_ir::op::Window,
    [planes, h, w]: [usize; 3],
    [oh, ow]: [usize; 2],
    pads: &[usize],
) -> Lowered {
    let dt = s.graph.value(x).ty.dtype;
    let sc = Scalar::of(dt);
    let (sy, sx) = (win.stride(0), win.stride(1));
    let (dy, dx) = (win.dilation(0), win.dilation(1));
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    // The padded extent every window lies in.
    let reach = |o: usize, st: usize, k: usize, d: usize| (o - 1) * st + (k - 1) * d + 1;
    let end_h = reach(oh, sy, kh, dy).saturating_sub(pads[0] + h);
    let end_w = reach(ow, sx, kw, dx).saturating_sub(pads[1] + w);
    let border = [pads[0], pads[1], end_h, end_w];
    let (hp, wp) = (pads[0] + h + end_h, pads[1] + w + end_w);
    let src = if border.iter().all(|&p| p == 0) {
        s.buf(x)
    } else {
        let xp = s.scratch(
            &format!("{}.bordered", s.graph.value(x).name),
            dt,
            vec![planes, hp, wp],
        );
        let mut pk = Kernel::new("pad");
        let xb = pk.buffer(
            s.graph.value(x).name.clone(),
            sc,
            planes * h * w,
            Access::Read,
        );
        let pb = pk.buffer("bordered", sc, planes * hp * wp, Access::Write);
        pk.body = super::conv::pad_planes_2d(
            &mut pk,
            (xb, pb),
            [h, w],
            &border,
            planes,
            f64::NEG_INFINITY,
        );
        let args = vec![s.buf(x), xp];
        s.launch(pk, args)?;
        xp
    };
    let mut k = Kernel::new(format!("pool_{name}"));
    let xb = k.buffer("bordered", sc, planes * hp * wp, Access::Read);
    let yb = k.buffer(
        s.graph.value(y).name.clone(),
        sc,
        planes * oh * ow,
        Access::ReadWrite,
    );
    let [plane, oy, ky, kx, ox] = [(); 5].map(|_| k.var(Scalar::I64));
    let (ybase, xbase) = (k.var(Scalar::I64), k.var(Scalar::I64));
    let serial = |v, extent: usize, body: Vec<Stmt>| Stmt::For {
        var: v,
        extent: extent as i64,
        kind: LoopKind::Serial,
        body,
    };
    let out_at = add(var(ybase), var(ox));
    let tap = serial(
        ox,
        ow,
        vec![Stmt::Store {
            buf: yb,
            index: out_at.clone(),
            value: {
                let v = load(
                    xb,
                    add(
                        var(xbase),
                        add(mul(var(ox), idx(sx as i64)), mul(var(kx), idx(dx as i64))),
                    ),
                );
                bin(BinOp::Max, load(yb, out_at.clone()), v)
            },
        }],
    );
    let row = vec![
        Stmt::Let {
            var: ybase,
            value: add(
                mul(var(plane), idx((oh * ow) as i64)),
                mul(var(oy), idx(ow as i64)),
            ),
        },
        serial(
            ox,
            ow,
            vec![Stmt::Store {
                buf: yb,
                index: out_at,
                value: fc(f64::NEG_INFINITY, sc),
            }],
        ),
        serial(
            ky,
            kh,
            vec![
                Stmt::Let {
                    var: xbase,
                    value: add(
                        mul(var(plane), idx((hp * wp) as i64)),
                        mul(
                            add(mul(var(oy), idx(sy as i64)), mul(var(ky), idx(dy as i64))),
                            idx(wp as i64),
                        ),
                    ),
                },
                serial(kx, kw, vec![tap]),
            ],
        ),
    ];
    k.body = vec![Stmt::For {
        var: plane,
        extent: planes as i64,
        kind: LoopKind::Parallel,
        body: vec![serial(oy, oh, row)],
    }];
    let args = vec![src, s.buf(y)];
    s.launch(k, args)?;
    Ok(())
}
