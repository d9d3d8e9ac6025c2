//! Layer norm `[x, scale, bias?]` over axes `axis..`, with its optional mean and
//! inverse-standard-deviation outputs: two passes (mean, then the centred sum
//! of squares, for accuracy), then the normalized rows.

use kiln_ir::Node;

use super::super::elementwise::{compute, load_compute, to_storage};
use super::super::nest::{broadcast_strides, dense_strides, nest};
use super::super::{host, Lowered, Scheduler};
use super::inverse_sqrt_mean;
use crate::kernel::build::{add, bin, fc, idx, parallel, var};
use crate::kernel::{Access, BinOp, Expr, Kernel, Scalar, Stmt};
use crate::program::HostReason;

/// Lowers a `LayerNorm` node as one row kernel.
pub fn lower(s: &mut Scheduler, node: &Node, axis: usize, epsilon: f32) -> Lowered {
    let x = node.inputs[0];
    let x_shape = s.shape(x);
    let x_dt = s.graph.value(x).ty.dtype;
    let cs = compute(x_dt);
    let rank = x_shape.len();
    if !cs.is_float() {
        return host(HostReason::UnsupportedDtype {
            what: "the input".into(),
            dtype: x_dt,
        });
    }
    if axis >= rank || node.inputs.len() < 2 {
        return host(HostReason::RegionShape(format!(
            "axis {axis} of an input {x_shape:?} with {} operands",
            node.inputs.len()
        )));
    }
    let n_rows: usize = x_shape[..axis].iter().product();
    let row_len: usize = x_shape[axis..].iter().product();
    if row_len == 0 {
        return host(HostReason::RegionShape("empty rows".into()));
    }
    // Scale and bias must span only the normalized axes (the same for every row).
    if let Some(&p) = node.inputs[1..].iter().find(|&&p| {
        broadcast_strides(&s.shape(p), &x_shape)[..axis]
            .iter()
            .any(|&z| z != 0)
    }) {
        return host(HostReason::RegionShape(format!(
            "`{}` of shape {:?} varies across rows",
            s.graph.value(p).name,
            s.shape(p)
        )));
    }
    let mut k = Kernel::new(format!("ln_{}", node.name));
    let mut args = Vec::new();
    let mut in_bufs = Vec::new();
    let mut shapes = Vec::new();
    let mut dtypes = Vec::new();
    for &v in &node.inputs {
        let dt = s.graph.value(v).ty.dtype;
        let sh = s.shape(v);
        in_bufs.push(k.buffer(
            s.graph.value(v).name.clone(),
            Scalar::of(dt),
            sh.iter().product(),
            Access::Read,
        ));
        args.push(s.buf(v));
        shapes.push(sh);
        dtypes.push(dt);
    }
    let mut outs = Vec::new();
    for &o in &node.outputs {
        let dt = s.graph.value(o).ty.dtype;
        let sh = s.shape(o);
        outs.push((
            k.buffer(
                s.graph.value(o).name.clone(),
                Scalar::of(dt),
                sh.iter().product(),
                Access::Write,
            ),
            dt,
        ));
        args.push(s.buf(o));
    }
    let row_shape = x_shape[axis..].to_vec();
    let dense_row = dense_strides(&row_shape);
    // scale and bias broadcast to x; rows repeat, so they are indexed by the
    // flat row offset `r`, decomposed into row dims only when they broadcast
    // within the row.
    let param = |i: usize, r: &Expr| -> Expr {
        let rs = broadcast_strides(&shapes[i], &x_shape)[axis..].to_vec();
        if rs == dense_row {
            return load_compute(in_bufs[i], r.clone(), dtypes[i]);
        }
        let mut off = idx(0);
        let mut inner = 1i64;
        for d in (0..row_shape.len()).rev() {
            let q = bin(BinOp::Div, r.clone(), idx(inner));
            let id = bin(BinOp::Rem, q, idx(row_shape[d] as i64));
            if rs[d] != 0 {
                off = add(off, crate::kernel::build::mul(id, idx(rs[d])));
            }
            inner *= row_shape[d] as i64;
        }
        load_compute(in_bufs[i], off, dtypes[i])
    };
    let o = k.var(Scalar::I64);
    let base = k.var(Scalar::I64);
    let mut body = vec![Stmt::Let {
        var: base,
        value: crate::kernel::build::mul(var(o), idx(row_len as i64)),
    }];
    let n = fc(row_len as f64, cs);
    let sum = k.var(cs);
    body.push(Stmt::Decl {
        var: sum,
        init: fc(0.0, cs),
    });
    body.extend(nest(&mut k, &[row_len], false, |_, r| {
        vec![Stmt::Assign {
            var: sum,
            value: bin(
                BinOp::Add,
                var(sum),
                load_compute(in_bufs[0], add(var(base), r[0].clone()), x_dt),
            ),
        }]
    }));
    let mean = k.var(cs);
    body.push(Stmt::Let {
        var: mean,
        value: bin(BinOp::Div, var(sum), n.clone()),
    });
    let sq = k.var(cs);
    body.push(Stmt::Decl {
        var: sq,
        init: fc(0.0, cs),
    });
    body.extend(nest(&mut k, &[row_len], false, |k, r| {
        let d = k.var(cs);
        vec![
            Stmt::Let {
                var: d,
                value: bin(
                    BinOp::Sub,
                    load_compute(in_bufs[0], add(var(base), r[0].clone()), x_dt),
                    var(mean),
                ),
            },
            Stmt::Assign {
                var: sq,
                value: bin(BinOp::Add, var(sq), bin(BinOp::Mul, var(d), var(d))),
            },
        ]
    }));
    let inv = k.var(cs);
    body.push(Stmt::Let {
        var: inv,
        value: inverse_sqrt_mean(var(sq), n, epsilon, cs),
    });
    let (y_buf, y_dt) = outs[0];
    body.extend(nest(&mut k, &[row_len], false, |_, r| {
        let xv = load_compute(in_bufs[0], add(var(base), r[0].clone()), x_dt);
        let mut y = bin(
            BinOp::Mul,
            bin(BinOp::Mul, bin(BinOp::Sub, xv, var(mean)), var(inv)),
            param(1, &r[0]),
        );
        if node.inputs.len() > 2 {
            y = bin(BinOp::Add, y, param(2, &r[0]));
        }
        vec![Stmt::Store {
            buf: y_buf,
            index: add(var(base), r[0].clone()),
            value: to_storage(y, y_dt),
        }]
    }));
    for (j, stat) in [(1usize, mean), (2, inv)] {
        if let Some(&(b, dt)) = outs.get(j) {
            let v = crate::kernel::build::cast(Scalar::of(dt), var(stat));
            let v = if Scalar::of(dt) == cs { var(stat) } else { v };
            body.push(Stmt::Store {
                buf: b,
                index: var(o),
                value: v,
            });
        }
    }
    k.body = vec![parallel(o, n_rows, body)];
    s.launch(k, args)?;
    Ok(())
}
