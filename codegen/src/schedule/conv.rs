//! Convolutions as GEMMs: `y[n, g] = W[g] · col[n, g]`, where `col` holds, for
//! every output position, the input patch it sees (im2col, zeros where the
//! window hangs over the padding). A 1×1 convolution with unit strides and no
//! padding reads its input directly as the GEMM operand (no copy). Any number
//! of spatial dims; groups are a GEMM batch dim, except a 2-D depthwise
//! convolution (one input channel per output channel), which is one direct
//! kernel that also applies the region's epilogue ([`ElementEpilogue`]). With
//! padding, the input is first copied into a zero-bordered buffer (2-D: whole
//! rows copied between zero borders, every loop affine).

use kiln_ir::op::{NnOp, WindowGeometry};
use kiln_ir::{DType, Op, ValueId};

use super::nest::{dense_strides, nest, offset};
use super::{host, NotLowered, Scheduler};
use crate::kernel::build::{add, bin, fc, idx, load, mul, select, var};
use crate::kernel::{Access, BinOp, Expr, Kernel, LoopKind, Scalar, Stmt};
use crate::program::{BufferId, GemmStep, HostReason, Step};

/// Adds the steps computing `conv(x, w)` (no bias) into `c`, a dense buffer of
/// `out_shape`, or why the form is not supported.
///
/// A direct kernel (depthwise) also applies `epilogue` to each element before
/// storing it, and the result says so: `Ok(true)` when the epilogue is done,
/// `Ok(false)` when the caller still has to apply it to `c`.
#[allow(clippy::too_many_arguments)]
pub fn emit_conv(
    s: &mut Scheduler,
    op: &Op,
    x: ValueId,
    w: ValueId,
    c: BufferId,
    dt: DType,
    out_shape: &[usize],
    epilogue: Option<&mut dyn ElementEpilogue>,
) -> Result<bool, NotLowered> {
    let Op::Nn(NnOp::Conv(attrs)) = op else {
        return host(HostReason::OpNotLowered {
            op: op.name().to_string(),
        });
    };
    let wdt = s.graph.value(w).ty.dtype;
    if !matches!(dt, DType::F32 | DType::F64) || wdt != dt {
        let (what, dtype) = if wdt != dt {
            ("the weight", wdt)
        } else {
            ("the product", dt)
        };
        return host(HostReason::UnsupportedDtype {
            what: what.into(),
            dtype,
        });
    }
    let xs = s.shape(x);
    let ws = s.shape(w);
    let r = xs.len().saturating_sub(2);
    if r == 0 || ws.len() != xs.len() || out_shape.len() != xs.len() || attrs.group == 0 {
        return host(HostReason::RegionShape(format!(
            "input {xs:?}, weight {ws:?}, output {out_shape:?}, {} groups",
            attrs.group
        )));
    }
    let (n, cin, m) = (xs[0], xs[1], ws[0]);
    let g = attrs.group;
    if !cin.is_multiple_of(g) || !m.is_multiple_of(g) || ws[1] != cin / g {
        return host(HostReason::RegionShape(format!(
            "{cin} input and {m} output channels in {g} groups, weight {ws:?}"
        )));
    }
    let kernel = &ws[2..];
    let Ok(WindowGeometry {
        output: out_sp,
        pads: eff,
    }) = attrs.output(&xs[2..], kernel)
    else {
        return host(HostReason::UnsupportedAttributes(
            "a window whose output size is undefined".into(),
        ));
    };
    if out_sp != out_shape[2..] {
        return host(HostReason::RegionShape(format!(
            "output {out_shape:?} differs from the window's {out_sp:?}"
        )));
    }
    let stride = |i: usize| attrs.window.stride(i);
    let dil = |i: usize| attrs.window.dilation(i);
    let cg = cin / g;
    let kk: usize = cg * kernel.iter().product::<usize>();
    let ohw: usize = out_sp.iter().product();
    let hw: usize = xs[2..].iter().product();
    let pointwise = kernel.iter().all(|&k| k == 1)
        && (0..r).all(|i| stride(i) == 1)
        && eff.iter().all(|&p| p == 0);
    let (b_buf, b_batch, b_strides) = if pointwise {
        // x is [N, G, C/G, HW] already.
        (
            s.buf(x),
            vec![(cin * hw) as isize, (cg * hw) as isize],
            [hw as isize, 1],
        )
    } else {
        let col = s.scratch(
            &format!("{}.im2col", s.graph.value(x).name),
            dt,
            vec![n, g, kk, ohw],
        );
        let sc = Scalar::of(dt);
        // With padding, the input is first copied once into a zero-bordered
        // buffer, so the im2col gather (K times bigger) reads affine, always
        // in-bounds addresses and vectorizes.
        let padded = eff.iter().any(|&p| p > 0);
        let src_shape: Vec<usize> = if padded {
            let mut sh = xs[..2].to_vec();
            sh.extend((0..r).map(|i| xs[2 + i] + eff[i] + eff[i + r]));
            sh
        } else {
            xs.clone()
        };
        let src_buf = if padded {
            let xp = s.scratch(
                &format!("{}.padded", s.graph.value(x).name),
                dt,
                src_shape.clone(),
            );
            let mut pk = Kernel::new("pad");
            let xb = pk.buffer(
                s.graph.value(x).name.clone(),
                sc,
                xs.iter().product(),
                Access::Read,
            );
            let pb = pk.buffer("padded", sc, src_shape.iter().product(), Access::Write);
            let in_strides = dense_strides(&xs);
            let pad_strides = dense_strides(&src_shape);
            pk.body = if r == 2 {
                pad_planes_2d(&mut pk, (xb, pb), [xs[2], xs[3]], &eff, xs[0] * xs[1], 0.0)
            } else {
                nest(&mut pk, &src_shape, true, |k, p| {
                    let mut st = Vec::new();
                    let mut valid: Option<Expr> = None;
                    let mut at = add(
                        mul(p[0].clone(), idx(in_strides[0])),
                        mul(p[1].clone(), idx(in_strides[1])),
                    );
                    for i in 0..r {
                        let v = k.var(Scalar::I64);
                        st.push(Stmt::Let {
                            var: v,
                            value: bin(BinOp::Sub, p[2 + i].clone(), idx(eff[i] as i64)),
                        });
                        let ok = bin(
                            BinOp::And,
                            bin(BinOp::Ge, var(v), idx(0)),
                            bin(BinOp::Lt, var(v), idx(xs[2 + i] as i64)),
                        );
                        valid = Some(match valid {
                            None => ok,
                            Some(q) => bin(BinOp::And, q, ok),
                        });
                        at = add(at, mul(var(v), idx(in_strides[2 + i])));
                    }
                    let okv = k.var(Scalar::Bool);
                    st.push(Stmt::Let {
                        var: okv,
                        value: valid.expect("spatial dims"),
                    });
                    st.push(Stmt::Store {
                        buf: pb,
                        index: offset(p, &pad_strides, idx(0)),
                        value: select(
                            var(okv),
                            load(xb, select(var(okv), at, idx(0))),
                            fc(0.0, sc),
                        ),
                    });
                    st
                })
            };
            let args = vec![s.buf(x), xp];
            s.launch(pk, args)?;
            xp
        } else {
            s.buf(x)
        };
        if cg == 1 && r == 2 {
            let wbuf = s.buf(w);
            // Depthwise (each output channel reads one input channel): a
            // direct kernel, no im2col and no GEMM of one row per group.
            return emit_depthwise(
                s,
                src_buf,
                &src_shape,
                wbuf,
                c,
                sc,
                epilogue,
                Depthwise {
                    n,
                    cin,
                    m,
                    kernel: [kernel[0], kernel[1]],
                    out: [out_sp[0], out_sp[1]],
                    stride: [stride(0), stride(1)],
                    dilation: [dil(0), dil(1)],
                },
            );
        }
        let mut k = Kernel::new("im2col");
        let xb = k.buffer("input", sc, src_shape.iter().product(), Access::Read);
        let cb = k.buffer("col", sc, n * g * kk * ohw, Access::Write);
        let row = k.var(Scalar::I64);
        let mut body = Vec::new();
        // row = (n·G + g)·K + kk; kk = c·Πk + Σ kᵢ·(Π k_{>i}).
        let mut parts: Vec<Expr> = Vec::new();
        let mut inner = 1i64;
        let mut dims: Vec<i64> = vec![n as i64, cin as i64];
        dims.extend(kernel.iter().map(|&v| v as i64));
        // Decompose row into (n, c, k_0..k_{r-1}), with c = g·C/G + c_local.
        let sizes: Vec<i64> = [
            vec![n as i64, g as i64, cg as i64],
            kernel.iter().map(|&v| v as i64).collect(),
        ]
        .concat();
        for (j, &e) in sizes.iter().enumerate().rev() {
            let v = k.var(Scalar::I64);
            let q = bin(BinOp::Div, var(row), idx(inner));
            body.push(Stmt::Let {
                var: v,
                value: if j == 0 {
                    q
                } else {
                    bin(BinOp::Rem, q, idx(e))
                },
            });
            parts.push(var(v));
            inner *= e;
        }
        parts.reverse(); // [n, g, c_local, k...]
        let chan = add(mul(parts[1].clone(), idx(cg as i64)), parts[2].clone());
        let x_strides = dense_strides(&src_shape);
        let base = add(
            mul(parts[0].clone(), idx(x_strides[0])),
            mul(chan, idx(x_strides[1])),
        );
        let basev = k.var(Scalar::I64);
        body.push(Stmt::Let {
            var: basev,
            value: base,
        });
        let kpos: Vec<Expr> = parts[3..].to_vec();
        let row_base = k.var(Scalar::I64);
        body.push(Stmt::Let {
            var: row_base,
            value: mul(var(row), idx(ohw as i64)),
        });
        let out_strides = dense_strides(&out_sp);
        body.extend(nest(&mut k, &out_sp, false, |k, o| {
            let mut st = Vec::new();
            let mut at = var(basev);
            for i in 0..r {
                // in (padded coordinates) = o·stride + k·dilation
                let v = k.var(Scalar::I64);
                let e = add(
                    mul(o[i].clone(), idx(stride(i) as i64)),
                    mul(kpos[i].clone(), idx(dil(i) as i64)),
                );
                st.push(Stmt::Let { var: v, value: e });
                at = add(at, mul(var(v), idx(x_strides[2 + i])));
            }
            let value = load(xb, at);
            st.push(Stmt::Store {
                buf: cb,
                index: offset(o, &out_strides, var(row_base)),
                value,
            });
            st
        }));
        k.body = vec![Stmt::For {
            var: row,
            extent: (n * g * kk) as i64,
            kind: LoopKind::Parallel,
            body,
        }];
        let args = vec![src_buf, col];
        s.launch(k, args)?;
        (
            col,
            vec![(g * kk * ohw) as isize, (kk * ohw) as isize],
            [ohw as isize, 1],
        )
    };
    let a = s.buf(w);
    // A GEMM has no per-element hook: the caller applies the epilogue.
    let _ = epilogue;
    s.prog.steps.push(Step::Gemm(GemmStep {
        a,
        b: b_buf,
        c,
        dtype: dt,
        m: m / g,
        n: ohw,
        k: kk,
        batch: vec![n, g],
        a_batch_strides: vec![0, ((m / g) * kk) as isize],
        b_batch_strides: b_batch,
        a_strides: [kk as isize, 1],
        b_strides,
        alpha: 1.0,
        b_stored: None,
    }));
    Ok(false)
}

/// An elementwise epilogue a convolution kernel applies to each output element
/// before storing it (a fused region's steps after its convolution anchor).
pub(crate) trait ElementEpilogue {
    /// Declares the kernel buffers the epilogue reads; returns the program
    /// buffers to launch the kernel with, in declaration order.
    fn declare(&mut self, s: &mut Scheduler, k: &mut Kernel) -> Vec<BufferId>;

    /// Statements that compute the epilogue of `product` (the convolution's
    /// value at output position `pos`, dims `[batch, channel, spatial...]`) and
    /// store it at `at` of kernel buffer `out`; why not when it cannot.
    fn element(
        &mut self,
        k: &mut Kernel,
        pos: &[Expr],
        at: Expr,
        product: Expr,
        out: usize,
    ) -> Result<Vec<Stmt>, HostReason>;
}

/// The geometry of a depthwise convolution ([`emit_depthwise`]).
struct Depthwise {
    /// Batch.
    n: usize,
    /// Input channels (= groups).
    cin: usize,
    /// Output channels (a multiple of `cin`: output `o` reads input `o / (m / cin)`).
    m: usize,
    /// Window height and width.
    kernel: [usize; 2],
    /// Output height and width.
    out: [usize; 2],
    /// Strides.
    stride: [usize; 2],
    /// Dilations.
    dilation: [usize; 2],
}

/// A 2-D depthwise convolution as one direct kernel over `src` (the input, or
/// its zero-bordered copy, so every window is in bounds): one output plane per
/// parallel iteration; each output element sums its window in a register
/// (`y[i, j] = Σ w[a, b] · x[i·s + a·d, j·s + b·d]`). The window loops have
/// constant extents and unroll, leaving the loop along the row innermost for
/// the vectorizer (and the weights loop-invariant).
#[allow(clippy::too_many_arguments)]
fn emit_depthwise(
    s: &mut Scheduler,
    src: BufferId,
    src_shape: &[usize],
    w: BufferId,
    c: BufferId,
    sc: Scalar,
    mut epilogue: Option<&mut dyn ElementEpilogue>,
    d: Depthwise,
) -> Result<bool, NotLowered> {
    let [kh, kw] = d.kernel;
    let [oh, ow] = d.out;
    let (sh, sw) = (d.stride[0] as i64, d.stride[1] as i64);
    let (dh, dw) = (d.dilation[0] as i64, d.dilation[1] as i64);
    let (hp, wp) = (src_shape[2] as i64, src_shape[3] as i64);
    let mult = (d.m / d.cin) as i64;
    let mut k = Kernel::new("dwconv");
    let xb = k.buffer("input", sc, src_shape.iter().product(), Access::Read);
    let wb = k.buffer("weight", sc, d.m * kh * kw, Access::Read);
    let yb = k.buffer("output", sc, d.n * d.m * oh * ow, Access::Write);
    let plane = k.var(Scalar::I64);
    let (xbase, ybase, wbase) = (k.var(Scalar::I64), k.var(Scalar::I64), k.var(Scalar::I64));
    let (i, j, a, b) = (
        k.var(Scalar::I64),
        k.var(Scalar::I64),
        k.var(Scalar::I64),
        k.var(Scalar::I64),
    );
    let acc = k.var(sc);
    let m = d.m as i64;
    let mut args = vec![src, w, c];
    if let Some(e) = epilogue.as_deref_mut() {
        args.extend(e.declare(s, &mut k));
    }
    let serial = |v, extent: usize, body: Vec<Stmt>| Stmt::For {
        var: v,
        extent: extent as i64,
        kind: LoopKind::Serial,
        body,
    };
    // plane = batch·M + o; input plane = batch·C + o / mult.
    let in_plane = add(
        mul(bin(BinOp::Div, var(plane), idx(m)), idx(d.cin as i64)),
        bin(BinOp::Div, bin(BinOp::Rem, var(plane), idx(m)), idx(mult)),
    );
    // x[i·s + a·d, j·s + b·d] and w[a, b] of this plane.
    let x_at = add(
        var(xbase),
        add(
            mul(add(mul(var(i), idx(sh)), mul(var(a), idx(dh))), idx(wp)),
            add(mul(var(j), idx(sw)), mul(var(b), idx(dw))),
        ),
    );
    let w_at = add(var(wbase), add(mul(var(a), idx(kw as i64)), var(b)));
    let window = serial(
        a,
        kh,
        vec![serial(
            b,
            kw,
            vec![Stmt::Assign {
                var: acc,
                value: add(var(acc), mul(load(xb, x_at), load(wb, w_at))),
            }],
        )],
    );
    let y_at = add(var(ybase), add(mul(var(i), idx(ow as i64)), var(j)));
    let mut element_body = vec![
        Stmt::Decl {
            var: acc,
            init: fc(0.0, sc),
        },
        window,
    ];
    match epilogue.as_deref_mut() {
        Some(e) => {
            // Output position [batch, channel, i, j].
            let pos = [
                bin(BinOp::Div, var(plane), idx(m)),
                bin(BinOp::Rem, var(plane), idx(m)),
                var(i),
                var(j),
            ];
            let stmts = e
                .element(&mut k, &pos, y_at, var(acc), yb)
                .map_err(NotLowered::Host)?;
            element_body.extend(stmts);
        }
        None => element_body.push(Stmt::Store {
            buf: yb,
            index: y_at,
            value: var(acc),
        }),
    }
    let element = serial(j, ow, element_body);
    k.body = vec![Stmt::For {
        var: plane,
        extent: (d.n * d.m) as i64,
        kind: LoopKind::Parallel,
        body: vec![
            Stmt::Let {
                var: xbase,
                value: mul(in_plane, idx(hp * wp)),
            },
            Stmt::Let {
                var: ybase,
                value: mul(var(plane), idx((oh * ow) as i64)),
            },
            Stmt::Let {
                var: wbase,
                value: mul(bin(BinOp::Rem, var(plane), idx(m)), idx((kh * kw) as i64)),
            },
            serial(i, oh, vec![element]),
        ],
    }];
    s.launch(k, args)?;
    Ok(epilogue.is_some())
}

/// The body of a 2-D pad kernel: for each of `planes` planes of `hw`, the
/// border rows above and below (every element `fill`), then each input row
/// copied between its borders — every loop affine with a constant extent (so
/// each vectorizes), instead of one select per padded element. `pads` are the
/// begin pads of both axes, then the end pads.
pub(super) fn pad_planes_2d(
    k: &mut Kernel,
    (xb, pb): (usize, usize),
    [h, w]: [usize; 2],
    pads: &[usize],
    planes: usize,
    fill: f64,
) -> Vec<Stmt> {
    let (ph, pw, pe, pwe) = (pads[0], pads[1], pads[2], pads[3]);
    let (hp, wp) = (h + ph + pe, w + pw + pwe);
    let sc = k.buffers[pb].scalar;
    let (plane, rr, i, j) = (
        k.var(Scalar::I64),
        k.var(Scalar::I64),
        k.var(Scalar::I64),
        k.var(Scalar::I64),
    );
    let (ibase, pbase, prow) = (k.var(Scalar::I64), k.var(Scalar::I64), k.var(Scalar::I64));
    let serial = |v, extent: usize, body: Vec<Stmt>| Stmt::For {
        var: v,
        extent: extent as i64,
        kind: LoopKind::Serial,
        body,
    };
    // `fill` at `base + j` for j < len.
    let zeros = |base: Expr, len: usize| {
        serial(
            j,
            len,
            vec![Stmt::Store {
                buf: pb,
                index: add(base, var(j)),
                value: fc(fill, sc),
            }],
        )
    };
    let mut body = vec![
        Stmt::Let {
            var: ibase,
            value: mul(var(plane), idx((h * w) as i64)),
        },
        Stmt::Let {
            var: pbase,
            value: mul(var(plane), idx((hp * wp) as i64)),
        },
    ];
    for (first, rows) in [(0, ph), (ph + h, pe)] {
        if rows > 0 {
            let row = add(
                var(pbase),
                mul(add(var(rr), idx(first as i64)), idx(wp as i64)),
            );
            body.push(serial(rr, rows, vec![zeros(row, wp)]));
        }
    }
    let mut row = vec![Stmt::Let {
        var: prow,
        value: add(var(pbase), mul(add(var(i), idx(ph as i64)), idx(wp as i64))),
    }];
    if pw > 0 {
        row.push(zeros(var(prow), pw));
    }
    row.push(serial(
        j,
        w,
        vec![Stmt::Store {
            buf: pb,
            index: add(var(prow), add(var(j), idx(pw as i64))),
            value: load(xb, add(var(ibase), add(mul(var(i), idx(w as i64)), var(j)))),
        }],
    ));
    if pwe > 0 {
        row.push(zeros(add(var(prow), idx((pw + w) as i64)), pwe));
    }
    body.push(serial(i, h, row));
    vec![Stmt::For {
        var: plane,
        extent: planes as i64,
        kind: LoopKind::Parallel,
        body,
    }]
}
