//! The constant-folding rule: a weight-only subexpression equals its value.
//!
//! `fold-constant` states `f(c₁, …, cₙ) = c` where every operand is a constant and
//! `c` is `f` evaluated by the reference interpreter. Guarded by size (policy 3 of
//! `passes/rules/README.md`): the value may not be larger than the operands it
//! replaces, nor larger than [`FOLD_MAX_ELEMENTS`], so saturation never spends its
//! time budget materializing weights (larger weight-only subgraphs are priced as
//! free and folded once when the program is built).

use egg::{Id, Rewrite};
use kiln_ir::{interp, DType, Graph, Op, Shape, Tensor, TensorType};
use rand::rngs::StdRng;
use rand::Rng;

use super::class_rule::{class_rewrite, ClassRule};
use crate::{KilnAnalysis, KilnEGraph, KilnLang, Name};

/// Largest value (in elements) the rule materializes during saturation.
pub const FOLD_MAX_ELEMENTS: usize = 1 << 16;

/// The `egg` rewrite of `fold-constant`, named `name`.
pub(crate) fn rewrite(name: &str) -> Rewrite<KilnLang, KilnAnalysis> {
    class_rewrite(name, FoldConstant)
}

/// The e-node of `class` to evaluate: an op over constant leaves, with a value no
/// larger than its operands or the limit.
fn foldable(egraph: &KilnEGraph, class: Id) -> Option<(Op, Vec<Name>)> {
    let data = &egraph[class].data;
    if !data.constant || data.const_name.is_some() || data.types.len() != 1 {
        return None;
    }
    let out = data.types[0].shape.as_known()?.iter().product::<usize>();
    if out > FOLD_MAX_ELEMENTS {
        return None;
    }
    egraph[class].iter().find_map(|n| {
        let KilnLang::Op(key, children) = n else {
            return None;
        };
        // Control flow may run for long: it runs when the model does.
        if matches!(key.op(), Op::Control(_)) {
            return None;
        }
        let names: Vec<Name> = children
            .iter()
            .map(|&c| egraph[c].data.const_name.clone())
            .collect::<Option<_>>()?;
        let operand_elements: usize = names
            .iter()
            .map(|n| egraph.analysis.consts.get(n).map_or(0, Tensor::numel))
            .sum();
        (!children.is_empty() && out <= operand_elements).then(|| (key.op().clone(), names))
    })
}

/// The rule: at a constant e-class with a foldable e-node and no constant leaf
/// yet, evaluates the e-node and unions the e-class with a new constant leaf.
struct FoldConstant;

impl ClassRule for FoldConstant {
    fn matches(&self, egraph: &KilnEGraph, eclass: Id) -> bool {
        foldable(egraph, eclass).is_some()
    }

    fn apply(&self, egraph: &mut KilnEGraph, eclass: Id) -> Vec<Id> {
        let Some((op, names)) = foldable(egraph, eclass) else {
            return vec![];
        };
        let operands: Vec<&Tensor> = names
            .iter()
            .filter_map(|n| egraph.analysis.consts.get(n))
            .collect();
        let Ok(mut values) = interp::eval_op(&op, &operands, 1) else {
            return vec![];
        };
        let value = values.remove(0);
        // Named after the source value, or after the first operand and the op.
        let base = egraph[eclass].data.origin.as_ref().map_or_else(
            || format!("{}.{}", names[0], op.name()),
            |o| o.value.clone(),
        );
        let mut name = Name::from(format!("{base}.folded"));
        let mut k = 1;
        while egraph.analysis.consts.contains_key(&name) {
            k += 1;
            name = Name::from(format!("{base}.folded{k}"));
        }
        egraph.analysis.consts.insert(name.clone(), value);
        let leaf = egraph.add(KilnLang::Const(name));
        if egraph.union(eclass, leaf) {
            vec![egraph.find(eclass)]
        } else {
            vec![]
        }
    }
}

/// A random weight-only subexpression feeding a matmul with an input, for the
/// soundness checker: `x · f(W₁, W₂)` with `f` one of a few ops.
pub(crate) fn instance(rng: &mut StdRng) -> Graph {
    let (m, k, n) = (
        rng.random_range(1..=4usize),
        rng.random_range(1..=5usize),
        rng.random_range(1..=5usize),
    );
    let f32s = |dims: &[usize]| TensorType::new(DType::F32, Shape::known(dims));
    let random = |rng: &mut StdRng, dims: &[usize]| {
        let len = dims.iter().product();
        Tensor::from_vec(
            dims.to_vec(),
            (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        )
    };
    let mut g = Graph::new("fold-constant");
    let x = g.add_input("x", f32s(&[m, k]));
    let (w, f) = match rng.random_range(0..3) {
        0 => {
            let w = g.add_const("w", random(rng, &[n, k]));
            (vec![w], "Transpose(perm: [1, 0])")
        }
        1 => {
            let a = g.add_const("a", random(rng, &[k, n]));
            let b = g.add_const("b", random(rng, &[k, n]));
            (vec![a, b], "Add")
        }
        _ => {
            let a = g.add_const("a", random(rng, &[k, n]));
            let s = g.add_const("s", random(rng, &[1]));
            (vec![a, s], "Mul")
        }
    };
    let op = Op::from_text(f).expect("valid op text");
    let folded = g
        .add_node("f", op, w, &["f".into()], None)
        .expect("well-typed instance")[0];
    let y = g
        .add_node(
            "y",
            Op::from_text("MatMul").expect("valid op text"),
            vec![x, folded],
            &["y".into()],
            None,
        )
        .expect("well-typed instance")[0];
    g.outputs = vec![y];
    g
}
