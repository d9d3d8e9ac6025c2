//! Scaled dot-product attention as GEMM → softmax kernel → GEMM.
//!
//! The scores `S = scale · Q·Kᵀ` go to a scratch buffer `[..., h_q, s_q, s_kv]`;
//! one kernel applies the soft cap, the mask (additive float or keep-where-true
//! bool, broadcast; keys beyond a narrow mask are masked out) and the causal mask,
//! then the softmax, in place; `Y = P·V`. Grouped-query attention splits the query
//! heads into `[h_kv, group]` batch dims and reads K and V with stride 0 along
//! `group`. Q, K and V produced by transposes are read through strides.
//! Past keys, `kv_lengths` and the optional score outputs are left to the host.

use kiln_ir::op::CompositeOp;
use kiln_ir::{DType, Node, Op};

use super::matmul::operand;
use super::nest::broadcast_strides;
use super::{host, Lowered, Scheduler};
use crate::kernel::build::{add, bin, fc, idx, load, mul, parallel, select, un, var};
use crate::kernel::{Access, BinOp, Kernel, LoopKind, Scalar, Stmt, UnOp};
use crate::program::{AttentionMask, AttentionOperand, AttentionSteps, GemmStep, HostReason, Step};

/// Lowers an `Attention` node when its form is supported.
pub fn lower(s: &mut Scheduler, node: &Node) -> Lowered {
    let Op::Composite(CompositeOp::Attention {
        scale,
        causal,
        softcap,
        mask,
        past,
        kv_lengths,
        ..
    }) = &node.op
    else {
        return host(HostReason::OpNotLowered {
            op: node.op.name().to_string(),
        });
    };
    if *past || *kv_lengths {
        return host(HostReason::UnsupportedAttributes(
            "attention over past keys or with kv_lengths".into(),
        ));
    }
    if node.outputs[1..].iter().any(|&o| s.is_used(o)) {
        return host(HostReason::MultipleOutputs {
            count: node.outputs.len(),
        });
    }
    let (qv, kv, vv) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    let dt = s.graph.value(qv).ty.dtype;
    if let Some(&v) = [qv, kv, vv]
        .iter()
        .find(|&&v| s.graph.value(v).ty.dtype != DType::F32)
    {
        return host(HostReason::UnsupportedDtype {
            what: format!("`{}`", s.graph.value(v).name),
            dtype: s.graph.value(v).ty.dtype,
        });
    }
    let (qb, q_shape, q_st) = operand(s, qv);
    let (kb, k_shape, k_st) = operand(s, kv);
    let (vb, v_shape, v_st) = operand(s, vv);
    let rank = q_shape.len();
    if rank < 3 || k_shape.len() != rank || v_shape.len() != rank {
        return host(HostReason::RegionShape(format!(
            "Q, K and V of ranks {}, {}, {} (one rank ≥ 3 expected)",
            rank,
            k_shape.len(),
            v_shape.len()
        )));
    }
    let lead = rank - 3;
    let batch = q_shape[..lead].to_vec();
    if k_shape[..lead] != batch[..] || v_shape[..lead] != batch[..] {
        return host(HostReason::RegionShape(
            "Q, K and V with different batch dims".into(),
        ));
    }
    let (hq, sq, d) = (q_shape[lead], q_shape[lead + 1], q_shape[lead + 2]);
    let (hkv, skv, dk) = (k_shape[lead], k_shape[lead + 1], k_shape[lead + 2]);
    let dv = v_shape[lead + 2];
    if dk != d
        || v_shape[lead] != hkv
        || v_shape[lead + 1] != skv
        || hkv == 0
        || !hq.is_multiple_of(hkv)
        || skv == 0
    {
        return host(HostReason::RegionShape(format!(
            "Q {q_shape:?}, K {k_shape:?} and V {v_shape:?} do not form grouped-query heads"
        )));
    }
    let group = hq / hkv;
    let scale = scale.map(f64::from).unwrap_or(1.0 / (d as f64).sqrt());

    // Batch dims [batch..., h_kv, group] with each operand's strides.
    let mut gbatch = batch.clone();
    gbatch.extend([hkv, group]);
    let split = |st: &[isize], grouped: bool| -> Vec<isize> {
        let mut b: Vec<isize> = st[..lead].to_vec();
        if grouped {
            b.extend([st[lead] * group as isize, st[lead]]);
        } else {
            b.extend([st[lead], 0]);
        }
        b
    };
    let mut score_shape = batch.clone();
    score_shape.extend([hq, sq, skv]);
    let scores = s.scratch(&format!("{}.scores", node.name), dt, score_shape.clone());
    let first_step = s.prog.steps.len();
    s.prog.steps.push(Step::Gemm(GemmStep {
        a: qb,
        b: kb,
        c: scores,
        dtype: dt,
        m: sq,
        n: skv,
        k: d,
        batch: gbatch.clone(),
        a_batch_strides: split(&q_st, true),
        b_batch_strides: split(&k_st, false),
        a_strides: [q_st[lead + 1], q_st[lead + 2]],
        // Kᵀ: rows along d, columns along keys.
        b_strides: [k_st[lead + 2], k_st[lead + 1]],
        alpha: scale,
        b_stored: None,
    }));

    // Soft cap, masks and softmax over each row of scores, in place.
    let rows: usize = score_shape[..rank - 1].iter().product();
    let mut k = Kernel::new(format!("attn_softmax_{}", node.name));
    let sb = k.buffer("scores", Scalar::F32, rows * skv, Access::ReadWrite);
    let mut args = vec![scores];
    let mask_in = if *mask {
        let m = node.inputs[3];
        let mdt = s.graph.value(m).ty.dtype;
        let m_shape = s.shape(m);
        let mw = m_shape.last().copied().unwrap_or(1);
        let mut narrow = score_shape.clone();
        narrow[rank - 1] = mw.min(skv);
        if !(mdt == DType::F32 || mdt == DType::Bool) {
            return host(HostReason::UnsupportedDtype {
                what: "the mask".into(),
                dtype: mdt,
            });
        }
        if mw > skv || m_shape.len() > rank {
            return host(HostReason::RegionShape(format!(
                "mask {m_shape:?} wider than the scores"
            )));
        }
        let mst = broadcast_strides(&m_shape, &narrow);
        let mbuf = k.buffer(
            s.graph.value(m).name.clone(),
            Scalar::of(mdt),
            m_shape.iter().product(),
            Access::Read,
        );
        args.push(s.buf(m));
        Some((mbuf, mdt, mst, mw))
    } else {
        None
    };
    // Q, K, V and Y as arguments the CPU kernel never touches: the memory plan
    // then keeps them live, in distinct bytes, at this step, where a GPU runs
    // the whole attention as one kernel (`AttentionSteps`).
    let y = s.buf(node.outputs[0]);
    for (name, b, access) in [
        ("q", qb, Access::Read),
        ("k", kb, Access::Read),
        ("v", vb, Access::Read),
        ("y", y, Access::Write),
    ] {
        let len = s.prog.buffers[b].numel();
        k.buffer(format!("fused_{name}"), Scalar::F32, len, access);
        args.push(b);
    }
    let mask_rec = mask_in.as_ref().map(|(_, mdt, mst, mw)| AttentionMask {
        buf: args[1],
        dtype: *mdt,
        strides: mst.iter().map(|&x| x as isize).collect(),
        width: (*mw).min(skv),
    });
    let r = k.var(Scalar::I64);
    let mut body = Vec::new();
    // Position of the row in the score dims (for the mask) and its query index.
    let mut pos = vec![idx(0); rank];
    let mut inner = 1i64;
    for dim in (0..rank - 1).rev() {
        let v = k.var(Scalar::I64);
        let q = bin(BinOp::Div, var(r), idx(inner));
        body.push(Stmt::Let {
            var: v,
            value: if dim == 0 {
                q
            } else {
                bin(BinOp::Rem, q, idx(score_shape[dim] as i64))
            },
        });
        pos[dim] = var(v);
        inner *= score_shape[dim] as i64;
    }
    let query = pos[rank - 2].clone();
    let base = k.var(Scalar::I64);
    body.push(Stmt::Let {
        var: base,
        value: mul(var(r), idx(skv as i64)),
    });
    let neg_inf = fc(f64::NEG_INFINITY, Scalar::F32);
    let m = k.var(Scalar::F32);
    body.push(Stmt::Decl {
        var: m,
        init: neg_inf.clone(),
    });
    let j = k.var(Scalar::I64);
    let mut first = Vec::new();
    let sv = k.var(Scalar::F32);
    let mut score = load(sb, add(var(base), var(j)));
    if let Some(c) = softcap.filter(|&c| c > 0.0) {
        let c = c as f64;
        score = bin(
            BinOp::Mul,
            fc(c, Scalar::F32),
            un(UnOp::Tanh, bin(BinOp::Div, score, fc(c, Scalar::F32))),
        );
    }
    if let Some((mbuf, mdt, mst, mw)) = &mask_in {
        let mut mpos = pos.clone();
        mpos[rank - 1] = var(j);
        let at = super::nest::offset(&mpos, mst, idx(0));
        // Keys beyond a narrow mask are masked out; clamp the read inside it.
        let inside = bin(BinOp::Lt, var(j), idx(*mw as i64));
        let safe_at = select(inside.clone(), at, idx(0));
        let bias = if *mdt == DType::Bool {
            select(
                bin(
                    BinOp::Ne,
                    load(*mbuf, safe_at),
                    crate::kernel::Expr::Lit(crate::kernel::Literal::Int(0, Scalar::Bool)),
                ),
                fc(0.0, Scalar::F32),
                neg_inf.clone(),
            )
        } else {
            load(*mbuf, safe_at)
        };
        score = select(inside, bin(BinOp::Add, score, bias), neg_inf.clone());
    }
    if *causal {
        score = select(bin(BinOp::Gt, var(j), query), neg_inf.clone(), score);
    }
    first.push(Stmt::Let {
        var: sv,
        value: score,
    });
    first.push(Stmt::Store {
        buf: sb,
        index: add(var(base), var(j)),
        value: var(sv),
    });
    first.push(Stmt::Assign {
        var: m,
        value: bin(BinOp::Max, var(m), var(sv)),
    });
    body.push(Stmt::For {
        var: j,
        extent: skv as i64,
        kind: LoopKind::Serial,
        body: first,
    });
    let sum = k.var(Scalar::F32);
    body.push(Stmt::Decl {
        var: sum,
        init: fc(0.0, Scalar::F32),
    });
    let j2 = k.var(Scalar::I64);
    let e = k.var(Scalar::F32);
    body.push(Stmt::For {
        var: j2,
        extent: skv as i64,
        kind: LoopKind::Serial,
        body: vec![
            Stmt::Let {
                var: e,
                value: un(
                    UnOp::Exp,
                    bin(BinOp::Sub, load(sb, add(var(base), var(j2))), var(m)),
                ),
            },
            Stmt::Store {
                buf: sb,
                index: add(var(base), var(j2)),
                value: var(e),
            },
            Stmt::Assign {
                var: sum,
                value: bin(BinOp::Add, var(sum), var(e)),
            },
        ],
    });
    let inv = k.var(Scalar::F32);
    body.push(Stmt::Let {
        var: inv,
        value: bin(BinOp::Div, fc(1.0, Scalar::F32), var(sum)),
    });
    let j3 = k.var(Scalar::I64);
    body.push(Stmt::For {
        var: j3,
        extent: skv as i64,
        kind: LoopKind::Serial,
        body: vec![Stmt::Store {
            buf: sb,
            index: add(var(base), var(j3)),
            value: bin(BinOp::Mul, load(sb, add(var(base), var(j3))), var(inv)),
        }],
    });
    k.body = vec![parallel(r, rows, body)];
    s.launch(k, args)?;

    // Y = P · V.
    let p_row = (skv) as isize;
    let mut p_batch: Vec<isize> = Vec::new();
    let mut acc = (sq * skv) as isize;
    for &dim in gbatch.iter().rev() {
        p_batch.push(acc);
        acc *= dim as isize;
    }
    p_batch.reverse();
    s.prog.steps.push(Step::Gemm(GemmStep {
        a: scores,
        b: vb,
        c: y,
        dtype: dt,
        m: sq,
        n: dv,
        k: skv,
        batch: gbatch,
        a_batch_strides: p_batch,
        b_batch_strides: split(&v_st, false),
        a_strides: [p_row, 1],
        b_strides: [v_st[lead + 1], v_st[lead + 2]],
        alpha: 1.0,
        b_stored: None,
    }));

    s.prog.attentions.push(AttentionSteps {
        node: node.name.clone(),
        steps: [first_step, first_step + 1, first_step + 2],
        batch,
        heads_q: hq,
        heads_kv: hkv,
        seq_q: sq,
        seq_kv: skv,
        head_dim: d,
        v_head_dim: dv,
        q: AttentionOperand {
            buf: qb,
            strides: q_st,
        },
        k: AttentionOperand {
            buf: kb,
            strides: k_st,
        },
        v: AttentionOperand {
            buf: vb,
            strides: v_st,
        },
        out: y,
        scores,
        scale,
        causal: *causal,
        softcap: softcap.filter(|&c| c > 0.0).map(f64::from),
        mask: mask_rec,
    });
    Ok(())
}
