//! Norm recognition: `layernorm-decomposed` and `rmsnorm-decomposed` (the core,
//! with the shared all-ones scale), `norm-scale` (times γ) and `layernorm-bias`
//! (plus β); and their checker instances.

use egg::Id;
use kiln_ir::op::{BinaryOp, CompositeOp, ReduceKind, UnaryOp};
use kiln_ir::{DType, Op, Tensor, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

use super::build::Build;
use super::instance::{random_dims, reduce_text, GraphBuilder};
use super::matching::{
    is_float, is_ones, ops, pairs, reduces, same, same_type_sym, scalar, trailing_from, ty, unary,
};
use crate::{KilnEGraph, KilnLang, Name};

/// Name of the shared all-ones scale of `dtype` (one element, broadcast).
pub fn ones_name(dtype: DType) -> Name {
    Name::from(format!("kiln.fusion.ones.{dtype}"))
}

/// The shared all-ones scale of `dtype`.
fn ones(dtype: DType) -> Build {
    Build::Const(ones_name(dtype), Tensor::from_f64(dtype, vec![1], &[1.0]))
}

/// `(t, ε)` for `t + ε` (either order) in class `id` with ε a scalar constant.
fn plus_eps(eg: &KilnEGraph, id: Id) -> Vec<(Id, f64)> {
    pairs(eg, id, BinaryOp::Add, true)
        .into_iter()
        .filter_map(|(t, e)| scalar(eg, e).map(|v| (t, v)))
        .collect()
}

/// Whether class `sq` is `x²` (`Pow(x, 2)` or `x·x`).
fn is_square_of(eg: &KilnEGraph, sq: Id, x: Id) -> bool {
    pairs(eg, sq, BinaryOp::Pow, false)
        .into_iter()
        .any(|(b, p)| same(eg, b, x) && scalar(eg, p) == Some(2.0))
        || pairs(eg, sq, BinaryOp::Mul, false)
            .into_iter()
            .any(|(a, b)| same(eg, a, x) && same(eg, b, x))
}

/// `(axis, ε)` when class `den` is `√(mean(x²) + ε)` over trailing axes of `x`.
fn rms_denominator(eg: &KilnEGraph, den: Id, x: Id) -> Vec<(usize, f64)> {
    let mut out = vec![];
    for t in unary(eg, den, UnaryOp::Sqrt) {
        for (ms, eps) in plus_eps(eg, t) {
            for (axes, sq) in reduces(eg, ms, ReduceKind::Mean) {
                if let Some(a) = trailing_from(eg, x, &axes) {
                    if is_square_of(eg, sq, x) {
                        out.push((a, eps));
                    }
                }
            }
        }
    }
    out
}

/// The core LayerNorm composites (all-ones scale) class `root` equals:
/// (x − μ)/√(mean((x − μ)²) + ε) over trailing axes.
pub(super) fn layernorm_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (d, den) in pairs(eg, root, BinaryOp::Div, false) {
        for (x, mu) in pairs(eg, d, BinaryOp::Sub, false) {
            for (mu_axes, x2) in reduces(eg, mu, ReduceKind::Mean) {
                let Some(a) = trailing_from(eg, x, &mu_axes) else {
                    continue;
                };
                if !same(eg, x, x2) || !is_float(eg, x) || !same_type_sym(eg, x, root) {
                    continue;
                }
                for (axis, eps) in rms_denominator(eg, den, d) {
                    if axis != a {
                        continue;
                    }
                    let dtype = ty(eg, x).expect("typed").dtype;
                    let op = Op::Composite(CompositeOp::LayerNorm {
                        axis,
                        epsilon: eps as f32,
                    });
                    let ln = Build::node(op, vec![Build::Class(x), ones(dtype)]);
                    out.push(Build::Proj(0, Box::new(ln)));
                }
            }
        }
    }
    out
}

/// The core RmsNorm composites (all-ones scale) class `root` equals:
/// x/√(mean(x²) + ε), x·reciprocal(...) or x·(1/...), over trailing axes.
pub(super) fn rmsnorm_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    // (x, den) with root = x / den.
    let mut cands: Vec<(Id, Id)> = pairs(eg, root, BinaryOp::Div, false);
    for (x, r) in pairs(eg, root, BinaryOp::Mul, true) {
        for den in unary(eg, r, UnaryOp::Reciprocal) {
            cands.push((x, den));
        }
        for (one, den) in pairs(eg, r, BinaryOp::Div, false) {
            if scalar(eg, one) == Some(1.0) {
                cands.push((x, den));
            }
        }
    }
    let mut out = vec![];
    for (x, den) in cands {
        if !is_float(eg, x) || !same_type_sym(eg, x, root) {
            continue;
        }
        for (axis, eps) in rms_denominator(eg, den, x) {
            let dtype = ty(eg, x).expect("typed").dtype;
            let op = Op::Composite(CompositeOp::RmsNorm {
                axis,
                epsilon: eps as f32,
            });
            out.push(Build::node(op, vec![Build::Class(x), ones(dtype)]));
        }
    }
    out
}

fn is_layer_norm(op: &Op) -> bool {
    matches!(op, Op::Composite(CompositeOp::LayerNorm { .. }))
}

/// The norm e-nodes whose output 0 is class `n`'s value: `(op, operands)` for a
/// LayerNorm (bare, as a source graph has it, or under `proj0`) and an RmsNorm.
fn norms(eg: &KilnEGraph, n: Id) -> Vec<(Op, Vec<Id>)> {
    let mut out = vec![];
    for node in eg[n].iter() {
        match node {
            KilnLang::Proj(0, [ln]) => {
                for (op, ch) in ops(eg, *ln, is_layer_norm) {
                    out.push((op.clone(), ch.to_vec()));
                }
            }
            KilnLang::Op(k, ch)
                if is_layer_norm(k.op())
                    || matches!(k.op(), Op::Composite(CompositeOp::RmsNorm { .. })) =>
            {
                out.push((k.op().clone(), ch.clone()));
            }
            _ => {}
        }
    }
    out
}

/// Whether `root = n ∘ p` keeps the norm's input type (`p` broadcasts into `x`).
fn broadcasts_into(eg: &KilnEGraph, p: Id, x: Id, root: Id) -> bool {
    same_type_sym(eg, x, root)
        && ty(eg, p).is_some_and(|t| {
            ty(eg, x).is_some_and(|xt| t.dtype == xt.dtype && t.shape.rank() <= xt.shape.rank())
        })
}

/// The norm `op` of `args`: LayerNorm under `proj0` (its other outputs are the
/// statistics), RmsNorm bare.
fn norm_build(op: Op, args: Vec<Build>) -> Build {
    let layer = is_layer_norm(&op);
    let n = Build::node(op, args);
    if layer {
        Build::Proj(0, Box::new(n))
    } else {
        n
    }
}

/// The norms with scale γ class `root` equals: a norm with an all-ones scale,
/// times γ.
pub(super) fn norm_scale_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (n, g) in pairs(eg, root, BinaryOp::Mul, true) {
        for (op, ch) in norms(eg, n) {
            let [x, one] = ch[..] else { continue };
            if is_ones(eg, one) && broadcasts_into(eg, g, x, root) {
                out.push(norm_build(op, vec![Build::Class(x), Build::Class(g)]));
            }
        }
    }
    out
}

/// The three-input LayerNorms class `root` equals: a two-input LayerNorm plus β.
pub(super) fn layernorm_bias_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (n, beta) in pairs(eg, root, BinaryOp::Add, true) {
        for (op, ch) in norms(eg, n) {
            let [x, g] = ch[..] else { continue };
            if is_layer_norm(&op) && broadcasts_into(eg, beta, x, root) {
                let args = vec![Build::Class(x), Build::Class(g), Build::Class(beta)];
                out.push(norm_build(op, args));
            }
        }
    }
    out
}

/// A random float input and its trailing axes `axis..`.
fn norm_input(b: &mut GraphBuilder, rng: &mut StdRng) -> (ValueId, Vec<usize>, Vec<usize>) {
    let rank = rng.random_range(1..=4);
    let dims = random_dims(rng, rank);
    let axis = rng.random_range(0..rank);
    let x = b.input(&dims);
    (x, dims, (axis..rank).collect())
}

/// A random ε of the sizes exporters use.
fn random_eps(rng: &mut StdRng) -> f32 {
    [1e-5, 1e-6, 1e-12, 0.1][rng.random_range(0..4)]
}

/// `x²` as `Pow(x, 2)` or `x·x`, at random.
fn square(b: &mut GraphBuilder, rng: &mut StdRng, x: ValueId) -> ValueId {
    if rng.random_bool(0.8) {
        let two = b.scalar(2.0);
        b.op("Pow", vec![x, two])
    } else {
        b.op("Mul", vec![x, x])
    }
}

/// √(mean(t²) + ε) over `axes`.
fn rms_den(b: &mut GraphBuilder, rng: &mut StdRng, t: ValueId, axes: &[usize]) -> ValueId {
    let sq = square(b, rng, t);
    let ms = b.op(&reduce_text("Mean", axes), vec![sq]);
    let eps = b.scalar(random_eps(rng));
    let a = b.either(rng, "Add", ms, eps);
    b.op("Sqrt", vec![a])
}

/// A random `layernorm-decomposed` instance.
pub(super) fn layernorm_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let (x, _, axes) = norm_input(b, rng);
    let mu = b.op(&reduce_text("Mean", &axes), vec![x]);
    let d = b.op("Sub", vec![x, mu]);
    let den = rms_den(b, rng, d, &axes);
    b.op("Div", vec![d, den])
}

/// A random `rmsnorm-decomposed` instance, in one of its three division forms.
pub(super) fn rmsnorm_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let (x, _, axes) = norm_input(b, rng);
    let den = rms_den(b, rng, x, &axes);
    match rng.random_range(0..3) {
        0 => b.op("Div", vec![x, den]),
        1 => {
            let r = b.op("Reciprocal", vec![den]);
            b.either(rng, "Mul", x, r)
        }
        _ => {
            let one = b.scalar(1.0);
            let r = b.op("Div", vec![one, den]);
            b.either(rng, "Mul", x, r)
        }
    }
}

/// A LayerNorm or RmsNorm of a random input with scale `scale` (ones when `None`).
fn norm_node(
    b: &mut GraphBuilder,
    rng: &mut StdRng,
    layer: bool,
    scale: Option<ValueId>,
) -> (ValueId, Vec<usize>, usize) {
    let (x, dims, axes) = norm_input(b, rng);
    let scale = scale.unwrap_or_else(|| {
        let n = rng.random_range(1..=2);
        b.konst(Tensor::from_vec(vec![1; n], vec![1.0f32]))
    });
    let eps = random_eps(rng);
    let (kind, outputs) = if layer {
        ("LayerNorm", 1 + 2 * rng.random_range(0..=1))
    } else {
        ("RmsNorm", 1)
    };
    let text = format!("{kind}(axis: {}, epsilon: {eps:?})", axes[0]);
    (b.op_outputs(&text, vec![x, scale], outputs), dims, axes[0])
}

/// A random `norm-scale` instance: a LayerNorm or RmsNorm with ones, times γ.
pub(super) fn norm_scale_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let layer = rng.random_bool(0.5);
    let (n, dims, axis) = norm_node(b, rng, layer, None);
    let g = b.input(&dims[axis..]);
    b.either(rng, "Mul", n, g)
}

/// A random `layernorm-bias` instance: a two-input LayerNorm plus β.
pub(super) fn layernorm_bias_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let (x, dims, axes) = norm_input(b, rng);
    let g = if rng.random_bool(0.5) {
        b.input(&dims[axes[0]..])
    } else {
        b.konst(Tensor::from_vec(vec![1], vec![1.0f32]))
    };
    let text = format!(
        "LayerNorm(axis: {}, epsilon: {:?})",
        axes[0],
        random_eps(rng)
    );
    let n = b.op_outputs(&text, vec![x, g], 3);
    let beta = b.input(&dims[axes[0]..]);
    b.either(rng, "Add", n, beta)
}
