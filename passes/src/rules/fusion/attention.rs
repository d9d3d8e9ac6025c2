//! Attention recognition (`attention-decomposed`): softmax(q·kᵀ·s + mask)·v with
//! the exporters' scale placements and NaN guard; and its checker instance.

use egg::Id;
use kiln_ir::op::{BinaryOp, CompositeOp, LayoutOp, QkOutput, UnaryOp};
use kiln_ir::{Dim, Op, Tensor, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

use super::build::Build;
use super::instance::GraphBuilder;
use super::kv::{as_kv, kv_shape, ungroup, untranspose, Kv};
use super::matching::{
    dims, is_float, matmuls, ops, pairs, same, same_type_sym, scalar, shape, ty, unary,
};
use crate::KilnEGraph;

/// Ways to read class `a` as `x·c` with `c` a scalar constant: `(x, c)`, with
/// `(a, 1)` when it is not scaled.
fn unscale(eg: &KilnEGraph, a: Id) -> (Id, f64) {
    for (x, c) in pairs(eg, a, BinaryOp::Mul, true) {
        if let Some(v) = scalar(eg, c).filter(|_| same_type_sym(eg, x, a)) {
            return (x, v);
        }
    }
    for (x, c) in pairs(eg, a, BinaryOp::Div, false) {
        if let Some(v) = scalar(eg, c).filter(|&v| v != 0.0 && same_type_sym(eg, x, a)) {
            return (x, 1.0 / v);
        }
    }
    (a, 1.0)
}

/// `(q, kᵀ, scale)` for class `s` = q·kᵀ·scale in the exporters' forms.
fn scores(eg: &KilnEGraph, s: Id) -> Vec<(Id, Id, f64)> {
    let direct = |m: Id| -> Vec<(Id, Id, f64)> {
        matmuls(eg, m)
            .into_iter()
            .map(|(a, b)| {
                let ((q, sa), (kt, sb)) = (unscale(eg, a), unscale(eg, b));
                (q, kt, sa * sb)
            })
            .collect()
    };
    let mut out = direct(s);
    if out.is_empty() {
        let (m, c) = unscale(eg, s);
        if m != s {
            out = direct(m)
                .into_iter()
                .map(|(q, kt, v)| (q, kt, v * c))
                .collect();
        }
    }
    out
}

/// Whether q, k, v dims fit the composite: one rank ≥ 3, equal batch dims, K/V
/// heads dividing Q heads, matching head and sequence sizes. Dims compare as known
/// sizes or by symbol name (a symbolic batch or sequence is the same on both
/// sides when it is the same symbol); head counts must be known unless equal.
fn attention_shapes_fit(q: &[Dim], k: &[Dim], v: &[Dim]) -> bool {
    let r = q.len();
    let heads_divide = match (&q[r.max(3) - 3], &k[k.len().max(3) - 3]) {
        (Dim::Known(hq), Dim::Known(hk)) => *hk > 0 && hq.is_multiple_of(*hk),
        (a, b) => a == b,
    };
    r >= 3
        && k.len() == r
        && v.len() == r
        && q[..r - 3] == k[..r - 3]
        && q[..r - 3] == v[..r - 3]
        && k[r - 3] == v[r - 3]
        && heads_divide
        && q[r - 1] == k[r - 1]
        && k[r - 2] == v[r - 2]
}

/// The Attention composites class `root` equals: a `MatMul` of (NaN-guarded)
/// softmax probabilities by v, the softmax over scores with an optional mask.
pub(super) fn attention_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (g, v) in matmuls(eg, root) {
        // The NaN guard where(isnan(p), 0, p), or none.
        let mut probs: Vec<(Id, Option<Id>)> = vec![(g, None)];
        for (_, ch) in ops(eg, g, |o| matches!(o, Op::Layout(LayoutOp::Where))) {
            let [c, z, p] = ch[..] else { continue };
            let guarded = unary(eg, c, UnaryOp::IsNaN)
                .into_iter()
                .any(|p2| same(eg, p, p2));
            if guarded && scalar(eg, z) == Some(0.0) {
                probs.push((p, Some(z)));
            }
        }
        for (p, zero) in probs {
            for (op, ch) in ops(eg, p, |o| {
                matches!(o, Op::Composite(CompositeOp::Softmax { .. }))
            }) {
                let Op::Composite(CompositeOp::Softmax { axis }) = op else {
                    continue;
                };
                let m = ch[0];
                let Some(md) = shape(eg, m) else { continue };
                if *axis + 1 != md.len() {
                    continue;
                }
                let mut masked: Vec<(Id, Option<Id>)> = vec![(m, None)];
                for (s, mask) in pairs(eg, m, BinaryOp::Add, true) {
                    let fits = ty(eg, mask).is_some_and(|t| {
                        t.dtype.is_float()
                            && t.shape.rank() <= md.len()
                            && t.shape.0.last() == md.last()
                    });
                    if fits && same_type_sym(eg, s, m) {
                        masked.push((s, Some(mask)));
                    }
                }
                for (s, mask) in masked {
                    for (q, kt, scale) in scores(eg, s) {
                        if let Some(b) = attention_build(eg, q, kt, v, scale, mask, zero) {
                            out.push(b);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The Attention composite of q, kᵀ, v with `scale` and `mask`, the NaN guard
/// `zero` moved to its output; `None` when the shapes do not fit it.
fn attention_build(
    eg: &KilnEGraph,
    q: Id,
    kt: Id,
    v: Id,
    scale: f64,
    mask: Option<Id>,
    zero: Option<Id>,
) -> Option<Build> {
    if !is_float(eg, q) || !is_float(eg, kt) || !is_float(eg, v) {
        return None;
    }
    let mut k = untranspose(eg, kt);
    let mut vb = Build::Class(v);
    if let (Some(kk), Some(vv)) = (
        as_kv(&k).and_then(|x| ungroup(eg, &x)),
        ungroup(eg, &Kv::Class(v)),
    ) {
        if dims(eg, kk)
            .zip(dims(eg, vv))
            .is_some_and(|(a, b)| a.len() >= 3 && a[a.len() - 3] == b[b.len() - 3])
        {
            k = Build::Class(kk);
            vb = Build::Class(vv);
        }
    }
    let (qd, kd, vd) = (shape(eg, q)?, kv_shape(eg, &k)?, kv_shape(eg, &vb)?);
    if !attention_shapes_fit(&qd, &kd, &vd) {
        return None;
    }
    let op = Op::Composite(CompositeOp::Attention {
        scale: Some(scale as f32),
        causal: false,
        softcap: None,
        mask: mask.is_some(),
        past: false,
        kv_lengths: false,
        qk_output: QkOutput::Raw,
    });
    let mut args = vec![Build::Class(q), k, vb];
    args.extend(mask.map(Build::Class));
    let y = Build::Proj(0, Box::new(Build::node(op, args)));
    // The exporters zero the probabilities of fully masked rows (NaN after the
    // softmax); the composite yields NaN rows there, so the guard moves to its
    // output. Rows are all NaN or NaN-free, so this is the same wherever v is finite.
    Some(match zero {
        None => y,
        Some(z) => Build::node(
            Op::Layout(LayoutOp::Where),
            vec![
                Build::node(Op::Unary(UnaryOp::IsNaN), vec![y.clone()]),
                Build::Class(z),
                y,
            ],
        ),
    })
}

/// Heads and sizes of a random attention instance.
struct AttnDims {
    b: usize,
    hkv: usize,
    group: usize,
    sq: usize,
    skv: usize,
    d: usize,
    dv: usize,
}

/// A `[b, hkv, s, d]` key or value input, repeated to `hkv·group` heads the way the
/// Llama exporters do when `group > 1`.
fn kv_input(b: &mut GraphBuilder, a: &AttnDims, s: usize, d: usize, gqa: bool) -> ValueId {
    let y = b.input(&[a.b, a.hkv, s, d]);
    if !gqa {
        return y;
    }
    let u = b.op("Unsqueeze(axes: [2])", vec![y]);
    let shape5 = [a.b, a.hkv, a.group, s, d].map(|n| n as i64).to_vec();
    let target = b.konst(Tensor::from_vec(vec![5], shape5));
    let e = b.op("Expand", vec![u, target]);
    let shape4 = [a.b, a.hkv * a.group, s, d].map(|n| n as i64).to_vec();
    let target = b.konst(Tensor::from_vec(vec![4], shape4));
    b.op("Reshape(allowzero: false)", vec![e, target])
}

/// kᵀ `[b, h, d, s]` in one of the exporters' forms.
fn key_transposed(b: &mut GraphBuilder, rng: &mut StdRng, a: &AttnDims, gqa: bool) -> ValueId {
    let h = a.hkv * a.group;
    match rng.random_range(0..3) {
        // [b, s, h, d] projected keys, one transpose straight to kᵀ.
        0 if !gqa => {
            let k = b.input(&[a.b, a.skv, h, a.d]);
            b.op("Transpose(perm: [0, 2, 3, 1])", vec![k])
        }
        // Flatten batch and heads, batched transpose, unflatten.
        1 => {
            let k = kv_input(b, a, a.skv, a.d, gqa);
            let flat = [(a.b * h) as i64, a.skv as i64, a.d as i64].to_vec();
            let t = b.konst(Tensor::from_vec(vec![3], flat));
            let r = b.op("Reshape(allowzero: false)", vec![k, t]);
            let tr = b.op("Transpose(perm: [0, 2, 1])", vec![r]);
            let back = [a.b, h, a.d, a.skv].map(|n| n as i64).to_vec();
            let t = b.konst(Tensor::from_vec(vec![4], back));
            b.op("Reshape(allowzero: false)", vec![tr, t])
        }
        _ => {
            let k = kv_input(b, a, a.skv, a.d, gqa);
            b.op("Transpose(perm: [0, 1, 3, 2])", vec![k])
        }
    }
}

/// A random `attention-decomposed` instance: GQA or not, the scale on q·kᵀ or
/// split over both sides, no mask, an additive mask or a −∞ keep-mask, NaN guard
/// or not.
pub(super) fn attention_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let gqa = rng.random_bool(0.3);
    let a = AttnDims {
        b: rng.random_range(1..=2),
        hkv: rng.random_range(1..=2),
        group: if gqa { rng.random_range(1..=3) } else { 1 },
        sq: rng.random_range(1..=4),
        skv: rng.random_range(1..=4),
        d: rng.random_range(1..=4),
        dv: rng.random_range(1..=4),
    };
    let h = a.hkv * a.group;
    let q = b.input(&[a.b, h, a.sq, a.d]);
    let kt = key_transposed(b, rng, &a, gqa);
    let v = kv_input(b, &a, a.skv, a.dv, gqa);
    let c = 1.0 / (a.d as f32).sqrt();
    let s = match rng.random_range(0..4) {
        0 => {
            // SDPA: both sides scaled by √c.
            let r = b.scalar(c.sqrt());
            let qs = b.either(rng, "Mul", q, r);
            let r = b.scalar(c.sqrt());
            let ks = b.either(rng, "Mul", kt, r);
            b.op("MatMul", vec![qs, ks])
        }
        1 => {
            let m = b.op("MatMul", vec![q, kt]);
            let r = b.scalar(1.0 / c);
            b.op("Div", vec![m, r])
        }
        2 => {
            let m = b.op("MatMul", vec![q, kt]);
            let r = b.scalar(c);
            b.either(rng, "Mul", m, r)
        }
        _ => b.op("MatMul", vec![q, kt]),
    };
    let m = match rng.random_range(0..3) {
        0 => s,
        1 => {
            let mask = b.input(&[a.b, 1, a.sq, a.skv]);
            b.either(rng, "Add", s, mask)
        }
        _ => {
            // A boolean keep-mask with some rows fully masked, as −∞ (or the f32
            // minimum) where masked.
            let n = a.b * a.sq * a.skv;
            let keep: Vec<bool> = (0..n)
                .map(|i| (i / a.skv) % 2 == 1 && rng.random_bool(0.7))
                .collect();
            let keep = b.konst(Tensor::from_vec(vec![a.b, 1, a.sq, a.skv], keep));
            let zero = b.konst(Tensor::from_vec(vec![1], vec![0.0f32]));
            let low = if rng.random_bool(0.5) {
                f32::NEG_INFINITY
            } else {
                f32::MIN
            };
            let low = b.konst(Tensor::from_vec(vec![1], vec![low]));
            let mask = b.op("Where", vec![keep, zero, low]);
            b.op("Add", vec![s, mask])
        }
    };
    let p = b.op("Softmax(axis: 3)", vec![m]);
    let p = if rng.random_bool(0.7) {
        let nan = b.op("IsNaN", vec![p]);
        let zero = b.konst(Tensor::from_vec(vec![1], vec![0.0f32]));
        b.op("Where", vec![nan, zero, p])
    } else {
        p
    };
    b.op("MatMul", vec![p, v])
}
