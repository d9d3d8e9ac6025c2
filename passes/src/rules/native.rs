//! Native rules: rules whose right side computes attributes from the left side's
//! attributes, which a pattern cannot express. A rule file names one with
//! `(native NAME)` (under its `;;` algebra comment, like any rule); its searcher,
//! applier and checker instances live here.

use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use kiln_ir::op::LayoutOp;
use kiln_ir::{DType, Graph, Op, Shape, TensorType};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::fusion::FusionNative;
use crate::{KilnAnalysis, KilnEGraph, KilnLang, OpKey};

/// A rule implemented in Rust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Native {
    /// `transpose-compose`: `T_q(T_p x) = T_r x` with `r[i] = p[q[i]]`, and `x`
    /// itself when `r` is the identity.
    TransposeCompose,
    /// `fuse-region`: a producer computed inside its consumer's kernel (see
    /// [`super::native_regions`]).
    FuseRegion,
    /// `fold-constant`: a small weight-only subexpression equals its value (see
    /// [`super::native_fold`]).
    FoldConstant,
    /// A composite-op recognition rule of the fusion theme (`fusion/`).
    Fusion(FusionNative),
    /// A brick rule (`passes/src/rules/native_bricks.rs`).
    Bricks(super::native_bricks::BrickRule),
}

impl Native {
    /// The native rule named `name`.
    pub fn from_name(name: &str) -> Option<Native> {
        match name {
            "transpose-compose" => Some(Native::TransposeCompose),
            "fuse-region" => Some(Native::FuseRegion),
            "fold-constant" => Some(Native::FoldConstant),
            _ => FusionNative::from_name(name)
                .map(Native::Fusion)
                .or_else(|| super::native_bricks::BrickRule::from_name(name).map(Native::Bricks)),
        }
    }

    /// The `egg` rewrite, named `name`.
    pub fn rewrite(self, name: &str) -> Rewrite<KilnLang, KilnAnalysis> {
        match self {
            Native::TransposeCompose => {
                Rewrite::new(name, TransposePair, ComposeTransposes).expect("variables bound")
            }
            Native::FuseRegion => super::native_regions::rewrite(name),
            Native::FoldConstant => super::native_fold::rewrite(name),
            Native::Fusion(f) => f.rewrite(name),
            Native::Bricks(b) => b.rewrite(name),
        }
    }

    /// A random graph the rule applies to, for the soundness checker.
    pub(crate) fn instance(self, rng: &mut StdRng) -> Graph {
        match self {
            Native::FuseRegion => super::native_regions::instance(rng),
            Native::FoldConstant => super::native_fold::instance(rng),
            Native::Fusion(f) => f.instance(rng),
            Native::Bricks(b) => b.instance(rng),
            Native::TransposeCompose => {
                let rank = rng.random_range(1..=4usize);
                let dims: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=5)).collect();
                let mut p: Vec<usize> = (0..rank).collect();
                p.shuffle(rng);
                let q: Vec<usize> = if rng.random_bool(0.3) {
                    // The inverse of p: the pair cancels.
                    let mut inv = vec![0; rank];
                    for (i, &pi) in p.iter().enumerate() {
                        inv[pi] = i;
                    }
                    inv
                } else {
                    let mut q: Vec<usize> = (0..rank).collect();
                    q.shuffle(rng);
                    q
                };
                let mut g = Graph::new("transpose-compose");
                let x = g.add_input("x", TensorType::new(DType::F32, Shape::known(&dims)));
                let t = |perm: Vec<usize>| Op::Layout(LayoutOp::Transpose { perm });
                let a = g
                    .add_node("tp", t(p), vec![x], &["a".into()], None)
                    .expect("a permutation of x's axes")[0];
                let b = g
                    .add_node("tq", t(q), vec![a], &["b".into()], None)
                    .expect("a permutation of a's axes")[0];
                g.outputs = vec![b];
                g
            }
        }
    }
}

/// The permutation of a `Transpose` e-node with one operand.
fn transpose_perm(n: &KilnLang) -> Option<(&[usize], Id)> {
    match n {
        KilnLang::Op(key, ch) if ch.len() == 1 => match key.op() {
            Op::Layout(LayoutOp::Transpose { perm }) if !perm.is_empty() => Some((perm, ch[0])),
            _ => None,
        },
        _ => None,
    }
}

fn var(name: &str) -> Var {
    name.parse().expect("a variable name")
}

/// Matches `(Transpose{perm:q} (Transpose{perm:p} ?x))` for any `p`, `q`.
struct TransposePair;

impl Searcher<KilnLang, KilnAnalysis> for TransposePair {
    fn search_eclass_with_limit(
        &self,
        egraph: &KilnEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, KilnLang>> {
        let mut substs: Vec<Subst> = vec![];
        for n in egraph[eclass].iter() {
            let Some((_, inner)) = transpose_perm(n) else {
                continue;
            };
            for m in egraph[inner].iter() {
                let Some((_, x)) = transpose_perm(m) else {
                    continue;
                };
                let mut s = Subst::with_capacity(2);
                s.insert(var("?inner"), egraph.find(inner));
                s.insert(var("?x"), egraph.find(x));
                if !substs.contains(&s) && substs.len() < limit {
                    substs.push(s);
                }
            }
        }
        (!substs.is_empty()).then_some(SearchMatches {
            eclass,
            substs,
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![var("?inner"), var("?x")]
    }
}

/// Adds `T_{p∘q} x` (or `x`) for each matched pair of permutations and unions it
/// with the match (egg's custom appliers union themselves).
struct ComposeTransposes;

impl Applier<KilnLang, KilnAnalysis> for ComposeTransposes {
    fn apply_one(
        &self,
        egraph: &mut KilnEGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<KilnLang>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let (inner, x) = (subst[var("?inner")], subst[var("?x")]);
        let mut pairs: Vec<(Vec<usize>, Vec<usize>)> = vec![];
        for n in egraph[eclass].iter() {
            let Some((q, i)) = transpose_perm(n) else {
                continue;
            };
            if egraph.find(i) != egraph.find(inner) {
                continue;
            }
            for m in egraph[inner].iter() {
                if let Some((p, y)) = transpose_perm(m) {
                    if egraph.find(y) == egraph.find(x) && p.len() == q.len() {
                        pairs.push((p.to_vec(), q.to_vec()));
                    }
                }
            }
        }
        let mut out = vec![];
        let mut union = |egraph: &mut KilnEGraph, id: Id| {
            if egraph.union(eclass, id) {
                out.push(egraph.find(eclass));
            }
        };
        for (p, q) in pairs {
            let r: Option<Vec<usize>> = q.iter().map(|&qi| p.get(qi).copied()).collect();
            let Some(r) = r else { continue };
            if r.iter().enumerate().all(|(i, &ri)| i == ri) {
                union(egraph, x);
            } else {
                let key = OpKey::new(&Op::Layout(LayoutOp::Transpose { perm: r }));
                let id = egraph.add(KilnLang::Op(key, vec![x]));
                union(egraph, id);
            }
        }
        out
    }
}
