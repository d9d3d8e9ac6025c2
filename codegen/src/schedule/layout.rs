//! Data movement as strided copy kernels: `out[p] = in[base + Σ pᵢ·strideᵢ]`.
//! Transpose, slice and expand are one copy each; concat and split one per piece;
//! gather indexes its axis through the index buffer after a bounds check.

use kiln_ir::op::{slice_bounds, slice_len, LayoutOp};
use kiln_ir::{DType, Node, Op, ValueId};

use super::nest::{broadcast_strides, collapse, dense_strides, nest, offset};
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{add, bin, cast, idx, load, mul, select};
use crate::kernel::{Access, BinOp, Kernel, Scalar, Stmt};
use crate::program::{BufferId, HostReason, Step};

/// Lowers a data-movement node, or says why it is left to the host.
pub fn lower(s: &mut Scheduler, node: &Node) -> Lowered {
    let not_lowered = || {
        host(HostReason::OpNotLowered {
            op: node.op.name().to_string(),
        })
    };
    let Op::Layout(op) = &node.op else {
        return not_lowered();
    };
    let x = node.inputs[0];
    let x_shape = s.shape(x);
    match op {
        LayoutOp::Transpose { perm } => {
            let st = dense_strides(&x_shape);
            let src: Vec<i64> = perm.iter().map(|&p| st[p]).collect();
            let out = node.outputs[0];
            copy(s, node, x, out, &src, 0, None)
        }
        LayoutOp::Expand => {
            let out = node.outputs[0];
            let src = broadcast_strides(&x_shape, &s.shape(out));
            copy(s, node, x, out, &src, 0, None)
        }
        LayoutOp::Slice => {
            // Slice operand `i` as constant integers (`None` when absent).
            let ints = |i: usize, what: &str| -> Result<Option<Vec<i64>>, HostReason> {
                let Some(&v) = node.inputs.get(i) else {
                    return Ok(None);
                };
                match s.graph.constant(v) {
                    Some(t) => Ok(Some(t.to_i64_vec())),
                    None => Err(HostReason::DataDependent {
                        what: format!("{what} (input {i})"),
                    }),
                }
            };
            let (Some(starts), Some(ends)) = (ints(1, "starts")?, ints(2, "ends")?) else {
                return host(HostReason::UnsupportedAttributes(
                    "a slice without starts or ends".into(),
                ));
            };
            let r = x_shape.len() as i64;
            let axes = ints(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = ints(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
            if ends.len() != starts.len()
                || axes.len() != starts.len()
                || steps.len() != starts.len()
            {
                return host(HostReason::UnsupportedAttributes(
                    "starts, ends, axes and steps of different lengths".into(),
                ));
            }
            let dense = dense_strides(&x_shape);
            let mut src = dense.clone();
            let mut base = 0i64;
            for i in 0..starts.len() {
                let a = if axes[i] < 0 { axes[i] + r } else { axes[i] };
                if a < 0 || a >= r {
                    return host(HostReason::UnsupportedAttributes(format!(
                        "slice axis {} of a rank-{r} input",
                        axes[i]
                    )));
                }
                let a = a as usize;
                let n = x_shape[a];
                let bounds = slice_bounds(n, starts[i], ends[i], steps[i]);
                let len = slice_len(n, starts[i], ends[i], steps[i]).ok();
                let (Ok((b, _)), true) = (bounds, len == Some(s.shape(node.outputs[0])[a])) else {
                    return host(HostReason::RegionShape(format!(
                        "slice of axis {a} disagrees with the output's shape {:?}",
                        s.shape(node.outputs[0])
                    )));
                };
                base += b * dense[a];
                src[a] = dense[a] * steps[i];
            }
            let out = node.outputs[0];
            copy(s, node, x, out, &src, base, None)
        }
        LayoutOp::Concat { axis } => {
            let out = node.outputs[0];
            let out_shape = s.shape(out);
            let out_dense = dense_strides(&out_shape);
            let mut at = 0usize;
            for &v in &node.inputs {
                let sh = s.shape(v);
                let src = dense_strides(&sh);
                copy(
                    s,
                    node,
                    v,
                    out,
                    &src,
                    0,
                    Some((at as i64 * out_dense[*axis], &out_dense, &sh)),
                )?;
                at += sh[*axis];
            }
            Ok(())
        }
        LayoutOp::Split { axis, sizes }
            if node.inputs.len() == 1 && sizes.len() == node.outputs.len() =>
        {
            let dense = dense_strides(&x_shape);
            let mut at = 0i64;
            for (j, &o) in node.outputs.iter().enumerate() {
                copy(s, node, x, o, &dense, at * dense[*axis], None)?;
                at += sizes[j] as i64;
            }
            Ok(())
        }
        LayoutOp::Split { .. } => host(HostReason::UnsupportedAttributes(
            "split sizes given as an input, or not one per output".into(),
        )),
        LayoutOp::Gather { axis } => gather(s, node, *axis),
        LayoutOp::GatherND { batch_dims: 0 } => gather_nd(s, node),
        LayoutOp::GatherND { batch_dims } => host(HostReason::UnsupportedAttributes(format!(
            "{batch_dims} batch dims"
        ))),
        _ => not_lowered(),
    }
}

/// One kernel copying `x` (read at `src_base + Σ pos·src_strides`, over the dims
/// of the destination region) into `out`. With `dst = Some((base, strides,
/// extents))` it writes a sub-block of `out` (a concat piece) instead of all of it.
fn copy(
    s: &mut Scheduler,
    node: &Node,
    x: ValueId,
    out: ValueId,
    src_strides: &[i64],
    src_base: i64,
    dst: Option<(i64, &[i64], &[usize])>,
) -> Lowered {
    let dt = s.graph.value(x).ty.dtype;
    if s.graph.value(out).ty.dtype != dt {
        return host(HostReason::UnsupportedAttributes(format!(
            "a copy from {dt} to {}",
            s.graph.value(out).ty.dtype
        )));
    }
    let out_shape = s.shape(out);
    let (dst_base, dst_strides, extents): (i64, Vec<i64>, Vec<usize>) = match dst {
        Some((b, st, ext)) => (b, st.to_vec(), ext.to_vec()),
        None => (0, dense_strides(&out_shape), out_shape.clone()),
    };
    if extents.iter().product::<usize>() == 0 {
        return Ok(());
    }
    let mut k = Kernel::new(format!("copy_{}", node.name));
    let sc = Scalar::of(dt);
    let xb = k.buffer(
        s.graph.value(x).name.clone(),
        sc,
        s.shape(x).iter().product(),
        Access::Read,
    );
    let ob = k.buffer(
        s.graph.value(out).name.clone(),
        sc,
        out_shape.iter().product(),
        Access::Write,
    );
    let (ext, st) = collapse(&extents, &[dst_strides, src_strides.to_vec()]);
    k.body = nest(&mut k, &ext, true, |_, vars| {
        vec![Stmt::Store {
            buf: ob,
            index: offset(vars, &st[0], idx(dst_base)),
            value: load(xb, offset(vars, &st[1], idx(src_base))),
        }]
    });
    let args = vec![s.buf(x), s.buf(out)];
    s.launch(k, args)?;
    Ok(())
}

/// `out[o, j..., i] = x[o, idx[j...], i]` with negative indices wrapped; a
/// [`Step::CheckIndices`] before the kernel rejects indices out of range.
fn gather(s: &mut Scheduler, node: &Node, axis: usize) -> Lowered {
    let (x, ind, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let x_shape = s.shape(x);
    let i_shape = s.shape(ind);
    let idt = s.graph.value(ind).ty.dtype;
    if !matches!(idt, DType::I64 | DType::I32) {
        return host(HostReason::UnsupportedDtype {
            what: "the indices".into(),
            dtype: idt,
        });
    }
    if axis >= x_shape.len() {
        return host(HostReason::RegionShape(format!(
            "axis {axis} of an input {x_shape:?}"
        )));
    }
    let dt = s.graph.value(x).ty.dtype;
    let outer: usize = x_shape[..axis].iter().product();
    let n = x_shape[axis];
    let inner: usize = x_shape[axis + 1..].iter().product();
    let count: usize = i_shape.iter().product();
    if outer * count * inner == 0 {
        return Ok(());
    }
    let ib = s.buf(ind);
    s.prog.steps.push(Step::CheckIndices {
        node: node.name.clone(),
        indices: ib,
        bounds: vec![n as i64],
        wrap_negative: true,
    });
    let mut k = Kernel::new(format!("gather_{}", node.name));
    let sc = Scalar::of(dt);
    let xb = k.buffer(
        s.graph.value(x).name.clone(),
        sc,
        x_shape.iter().product(),
        Access::Read,
    );
    let kb = k.buffer(
        s.graph.value(ind).name.clone(),
        Scalar::of(idt),
        count,
        Access::Read,
    );
    let ob = k.buffer(
        s.graph.value(out).name.clone(),
        sc,
        outer * count * inner,
        Access::Write,
    );
    let body = nest(&mut k, &[outer * count, inner], true, |k, v| {
        let (oj, i) = (v[0].clone(), v[1].clone());
        let o = bin(BinOp::Div, oj.clone(), idx(count as i64));
        let j = bin(BinOp::Rem, oj.clone(), idx(count as i64));
        let raw = load(kb, j);
        let raw = if idt == DType::I64 {
            raw
        } else {
            cast(Scalar::I64, raw)
        };
        let r = k.var(Scalar::I64);
        let wrapped = select(
            bin(BinOp::Lt, crate::kernel::build::var(r), idx(0)),
            add(crate::kernel::build::var(r), idx(n as i64)),
            crate::kernel::build::var(r),
        );
        let src = add(
            mul(add(mul(o, idx(n as i64)), wrapped), idx(inner as i64)),
            i.clone(),
        );
        vec![
            Stmt::Let { var: r, value: raw },
            Stmt::Store {
                buf: ob,
                index: add(mul(oj, idx(inner as i64)), i),
                value: load(xb, src),
            },
        ]
    });
    k.body = body;
    let args: Vec<BufferId> = vec![s.buf(x), ib, s.buf(out)];
    s.launch(k, args)?;
    Ok(())
}

/// `out[o, r] = x[indices[o, 0], ..., indices[o, m-1], r]` (batch dims 0),
/// negative indices wrapped, each checked against its axis first.
fn gather_nd(s: &mut Scheduler, node: &Node) -> Lowered {
    let (x, ind, out) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let xs = s.shape(x);
    let is = s.shape(ind);
    let idt = s.graph.value(ind).ty.dtype;
    if idt != DType::I64 {
        return host(HostReason::UnsupportedDtype {
            what: "the indices".into(),
            dtype: idt,
        });
    }
    let m = is.last().copied().unwrap_or(0);
    if m == 0 || m > xs.len() {
        return host(HostReason::RegionShape(format!(
            "index tuples of length {m} into an input {xs:?}"
        )));
    }
    let tuples: usize = is[..is.len() - 1].iter().product();
    let rest: usize = xs[m..].iter().product();
    if tuples * rest == 0 {
        return Ok(());
    }
    let ib = s.buf(ind);
    s.prog.steps.push(Step::CheckIndices {
        node: node.name.clone(),
        indices: ib,
        bounds: xs[..m].iter().map(|&d| d as i64).collect(),
        wrap_negative: true,
    });
    let dt = s.graph.value(x).ty.dtype;
    let sc = Scalar::of(dt);
    let xstr = dense_strides(&xs);
    let mut k = Kernel::new(format!("gather_nd_{}", node.name));
    let xb = k.buffer(
        s.graph.value(x).name.clone(),
        sc,
        xs.iter().product(),
        Access::Read,
    );
    let kb = k.buffer(
        s.graph.value(ind).name.clone(),
        Scalar::I64,
        tuples * m,
        Access::Read,
    );
    let ob = k.buffer(
        s.graph.value(out).name.clone(),
        sc,
        tuples * rest,
        Access::Write,
    );
    let body = nest(&mut k, &[tuples, rest], true, |k, v| {
        let (o, r) = (v[0].clone(), v[1].clone());
        let mut stmts = Vec::new();
        let mut src = r.clone();
        for j in 0..m {
            let raw = k.var(Scalar::I64);
            stmts.push(Stmt::Let {
                var: raw,
                value: load(kb, add(mul(o.clone(), idx(m as i64)), idx(j as i64))),
            });
            let rv = crate::kernel::build::var(raw);
            let wrapped = select(
                bin(BinOp::Lt, rv.clone(), idx(0)),
                add(rv.clone(), idx(xs[j] as i64)),
                rv,
            );
            src = add(src, mul(wrapped, idx(xstr[j])));
        }
        stmts.push(Stmt::Store {
            buf: ob,
            index: add(mul(o, idx(rest as i64)), r),
            value: load(xb, src),
        });
        stmts
    });
    k.body = body;
    let args = vec![s.buf(x), ib, s.buf(out)];
    s.launch(k, args)?;
    Ok(())
}
