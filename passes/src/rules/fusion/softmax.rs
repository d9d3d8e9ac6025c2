//! Softmax recognition (`softmax-decomposed`): e/Σe with e = exp(x − max x) or
//! exp(x), along one axis; and its checker instance.

use egg::Id;
use kiln_ir::op::{BinaryOp, CompositeOp, ReduceKind, UnaryOp};
use kiln_ir::{Op, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

use super::build::Build;
use super::instance::{random_dims, reduce_text, GraphBuilder};
use super::matching::{is_float, pairs, reduces, same, same_type_sym, unary};
use crate::KilnEGraph;

/// The Softmax composites class `root` equals: e/Σe along one axis, with
/// e = exp(x − max x) or exp(x).
pub(super) fn softmax_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (e, s) in pairs(eg, root, BinaryOp::Div, false) {
        for (axes, e2) in reduces(eg, s, ReduceKind::Sum) {
            let [axis] = axes[..] else { continue };
            if !same(eg, e, e2) {
                continue;
            }
            for u in unary(eg, e, UnaryOp::Exp) {
                let mut xs = vec![];
                for (x, m) in pairs(eg, u, BinaryOp::Sub, false) {
                    for (max_axes, x2) in reduces(eg, m, ReduceKind::Max) {
                        if max_axes == [axis] && same(eg, x, x2) {
                            xs.push(x);
                        }
                    }
                }
                if xs.is_empty() {
                    // exp(x)/Σexp(x): equal to softmax(x) wherever exp(x) does not
                    // overflow (the composite subtracts the max itself).
                    xs.push(u);
                }
                for x in xs {
                    if is_float(eg, x) && same_type_sym(eg, x, root) {
                        out.push(Build::node(
                            Op::Composite(CompositeOp::Softmax { axis }),
                            vec![Build::Class(x)],
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A random `softmax-decomposed` instance, with or without the max subtracted.
pub(super) fn softmax_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let rank = rng.random_range(1..=4);
    let x = b.input(&random_dims(rng, rank));
    let axis = rng.random_range(0..rank);
    let u = if rng.random_bool(0.7) {
        let m = b.op(&reduce_text("Max", &[axis]), vec![x]);
        b.op("Sub", vec![x, m])
    } else {
        x
    };
    let e = b.op("Exp", vec![u]);
    let s = b.op(&reduce_text("Sum", &[axis]), vec![e]);
    b.op("Div", vec![e, s])
}
