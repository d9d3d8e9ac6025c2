//! GELU recognition (`gelu-erf`, `gelu-tanh`): x·½·(1 + erf(x/√2)) and
//! x·½·(1 + tanh(√(2/π)·(x + 0.044715·x³))) in any grouping of the product; and
//! their checker instance.

use egg::Id;
use kiln_ir::op::{BinaryOp, CompositeOp, UnaryOp};
use kiln_ir::{Op, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

use super::build::Build;
use super::instance::{random_dims, GraphBuilder};
use super::matching::{is_float, pairs, same, same_type_sym, scalar, scalar_near, unary};
use crate::KilnEGraph;

/// Every way class `root` is a product of three factors `(p·q)·r` or `r·(p·q)`.
fn triple_products(eg: &KilnEGraph, root: Id) -> Vec<[Id; 3]> {
    let mut out = vec![];
    for (inner, r) in pairs(eg, root, BinaryOp::Mul, true) {
        for (p, q) in pairs(eg, inner, BinaryOp::Mul, false) {
            out.push([p, q, r]);
        }
    }
    out
}

/// Whether class `t` is erf(x/√2) (or erf(x·1/√2)).
fn is_erf_arg(eg: &KilnEGraph, t: Id, x: Id) -> bool {
    unary(eg, t, UnaryOp::Erf).into_iter().any(|z| {
        pairs(eg, z, BinaryOp::Div, false)
            .into_iter()
            .any(|(a, c)| same(eg, a, x) && scalar_near(eg, c, std::f64::consts::SQRT_2))
            || pairs(eg, z, BinaryOp::Mul, true)
                .into_iter()
                .any(|(a, c)| same(eg, a, x) && scalar_near(eg, c, std::f64::consts::FRAC_1_SQRT_2))
    })
}

/// The cubic coefficient of the tanh GELU.
const GELU_CUBIC: f64 = 0.044715;

/// Whether class `t` is tanh(√(2/π)·(x + 0.044715·x³)).
fn is_tanh_arg(eg: &KilnEGraph, t: Id, x: Id) -> bool {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    unary(eg, t, UnaryOp::Tanh).into_iter().any(|z| {
        pairs(eg, z, BinaryOp::Mul, true).into_iter().any(|(w, k)| {
            scalar_near(eg, k, c)
                && pairs(eg, w, BinaryOp::Add, true)
                    .into_iter()
                    .any(|(x1, m)| {
                        same(eg, x1, x)
                            && pairs(eg, m, BinaryOp::Mul, true)
                                .into_iter()
                                .any(|(cube, k3)| {
                                    scalar_near(eg, k3, GELU_CUBIC)
                                        && pairs(eg, cube, BinaryOp::Pow, false).into_iter().any(
                                            |(b, e)| same(eg, b, x) && scalar(eg, e) == Some(3.0),
                                        )
                                })
                    })
        })
    })
}

/// The GELU composites class `root` equals (the tanh form when `tanh`): every
/// assignment of x, ½ and (1 + t) to the three factors of a product is tried.
pub(super) fn gelu_plans(eg: &KilnEGraph, root: Id, tanh: bool) -> Vec<Build> {
    /// Every order of three factors.
    const PERMS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let mut out = vec![];
    for f in triple_products(eg, root) {
        for [ix, ih, ib] in PERMS {
            let (x, half, bracket) = (f[ix], f[ih], f[ib]);
            if !scalar_near(eg, half, 0.5) || !is_float(eg, x) || !same_type_sym(eg, x, root) {
                continue;
            }
            let ok = pairs(eg, bracket, BinaryOp::Add, true)
                .into_iter()
                .any(|(t, one)| {
                    scalar_near(eg, one, 1.0)
                        && if tanh {
                            is_tanh_arg(eg, t, x)
                        } else {
                            is_erf_arg(eg, t, x)
                        }
                });
            if ok {
                out.push(Build::node(
                    Op::Composite(CompositeOp::Gelu { tanh }),
                    vec![Build::Class(x)],
                ));
            }
        }
    }
    out
}

/// A random `gelu-erf` (or `gelu-tanh` when `tanh`) instance.
pub(super) fn gelu_instance(b: &mut GraphBuilder, rng: &mut StdRng, tanh: bool) -> ValueId {
    let rank = rng.random_range(1..=4);
    let x = b.input(&random_dims(rng, rank));
    let t = if tanh {
        let three = b.scalar(3.0);
        let cube = b.op("Pow", vec![x, three]);
        let k3 = b.scalar(GELU_CUBIC as f32);
        let m = b.either(rng, "Mul", cube, k3);
        let w = b.either(rng, "Add", x, m);
        let k = b.scalar((2.0 / std::f32::consts::PI).sqrt());
        let z = b.either(rng, "Mul", w, k);
        b.op("Tanh", vec![z])
    } else {
        let z = if rng.random_bool(0.7) {
            let c = b.scalar(std::f32::consts::SQRT_2);
            b.op("Div", vec![x, c])
        } else {
            let c = b.scalar(std::f32::consts::FRAC_1_SQRT_2);
            b.either(rng, "Mul", x, c)
        };
        b.op("Erf", vec![z])
    };
    let one = b.scalar(1.0);
    let bracket = b.either(rng, "Add", t, one);
    let half = b.scalar(0.5);
    // One of the groupings (x·½)·B, (x·B)·½, (½·B)·x, in random operand orders.
    let mut f = [x, half, bracket];
    let first = rng.random_range(0..3);
    f.swap(0, first);
    let inner = b.either(rng, "Mul", f[1], f[2]);
    b.either(rng, "Mul", inner, f[0])
}
