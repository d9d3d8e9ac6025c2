//! The region rule: a producer computed inside its consumer's kernel.
//!
//! `fuse-region` states `c(…, p(y…), …) = Fused[p, c](…, y…, …)`: a consumer that
//! can host steps (an elementwise op, a reduction/softmax/norm that accepts a
//! prologue, or a region already built) takes in one producer (an elementwise op,
//! an anchor, or a region) that one of its operand e-classes holds. Applied
//! repeatedly, chains grow into regions one producer per iteration; the legality
//! of each region is [`kiln_ir::op::FusedOp`]'s (at most one anchor, one loop nest
//! per side, [`MAX_FUSED_STEPS`]). Whether a region is worth it is left to the
//! cost model: a region is one kernel whose inputs and output cross memory, so it
//! wins over separate kernels unless it recomputes expensive work (a matmul
//! inlined into two consumers).
//!
//! Growth control (policy 2 of `passes/rules/README.md`): per e-class only the
//! plain fusible e-nodes and the largest region with and without an anchor are
//! used as consumers and producers, so each e-class gains a handful of region
//! e-nodes, not every subset.

use std::hash::{Hash, Hasher};

use egg::{Id, Language, Rewrite};
use kiln_ir::op::{FusedArg, FusedOp, FusedStep, InferInputs, MAX_FUSED_STEPS};
use kiln_ir::{DType, Graph, Op, Shape, TensorType};
use rand::rngs::StdRng;
use rand::Rng;

use super::class_rule::{class_rewrite, ClassRule};
use crate::{KilnAnalysis, KilnEGraph, KilnLang, OpKey};

/// The `egg` rewrite of `fuse-region`, named `name`.
pub(crate) fn rewrite(name: &str) -> Rewrite<KilnLang, KilnAnalysis> {
    class_rewrite(name, FuseRegion)
}

/// A region view of an e-node: its steps over its operand e-classes.
#[derive(Clone)]
struct Region {
    op: FusedOp,
    inputs: Vec<Id>,
}

impl Region {
    /// The e-node as a region: a `Fused` e-node, or a fusible op as one step.
    fn of(egraph: &KilnEGraph, n: &KilnLang) -> Option<Region> {
        let KilnLang::Op(key, children) = n else {
            return None;
        };
        let inputs: Vec<Id> = children.iter().map(|&c| egraph.find(c)).collect();
        match key.op() {
            Op::Fused(f) => Some(Region {
                op: f.clone(),
                inputs,
            }),
            op => {
                op.fused_role()?;
                // A one-step region reads each operand e-class once.
                let mut uniq: Vec<Id> = vec![];
                let args = inputs
                    .iter()
                    .map(|&c| {
                        let i = uniq.iter().position(|&u| u == c).unwrap_or_else(|| {
                            uniq.push(c);
                            uniq.len() - 1
                        });
                        FusedArg::Input(i)
                    })
                    .collect();
                Some(Region {
                    op: FusedOp {
                        steps: vec![FusedStep {
                            op: op.clone(),
                            args,
                        }],
                    },
                    inputs: uniq,
                })
            }
        }
    }

    fn has_anchor(&self) -> bool {
        self.op.anchor().is_some()
    }

    /// The consumer with `producer` computed in place of its input `i`. Steps keep
    /// the canonical order: the part holding the anchor first, so prologue steps
    /// precede it and epilogue steps follow. `None` when the result is not a legal
    /// region (checked by type inference over the operand types).
    fn inline(&self, i: usize, producer: &Region, egraph: &KilnEGraph) -> Option<Region> {
        let steps = self.op.steps.len() + producer.op.steps.len();
        if steps > 2 * MAX_FUSED_STEPS {
            return None;
        }
        // The merged region's inputs: the consumer's (without i), then the
        // producer's that are new; shared e-classes become one input.
        let mut inputs: Vec<Id> = self
            .inputs
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != i)
            .map(|(_, &c)| c)
            .collect();
        let index_of = |inputs: &mut Vec<Id>, c: Id| {
            inputs.iter().position(|&u| u == c).unwrap_or_else(|| {
                inputs.push(c);
                inputs.len() - 1
            })
        };
        let consumer_input: Vec<usize> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                if k == i {
                    usize::MAX
                } else {
                    index_of(&mut inputs, c)
                }
            })
            .collect();
        let producer_input: Vec<usize> = producer
            .inputs
            .iter()
            .map(|&c| index_of(&mut inputs, c))
            .collect();
        // The producer's steps go first unless the consumer holds the anchor and
        // the producer does not feed it (then the producer is epilogue-side work).
        let anchor_feed = self.op.anchor().is_some_and(|a| {
            self.op.steps[a].args.first() == Some(&FusedArg::Input(i))
                || self.op.steps[..a]
                    .iter()
                    .any(|s| s.args.contains(&FusedArg::Input(i)))
        });
        let producer_first = !self.has_anchor() || anchor_feed || producer.has_anchor();
        let mut steps: Vec<FusedStep> = Vec::with_capacity(steps);
        let p_len = producer.op.steps.len();
        let map_producer = |steps: &mut Vec<FusedStep>, offset: usize| {
            for s in &producer.op.steps {
                steps.push(FusedStep {
                    op: s.op.clone(),
                    args: s
                        .args
                        .iter()
                        .map(|a| match *a {
                            FusedArg::Input(k) => FusedArg::Input(producer_input[k]),
                            FusedArg::Step(k) => FusedArg::Step(k + offset),
                        })
                        .collect(),
                });
            }
        };
        if producer_first {
            map_producer(&mut steps, 0);
            let out = FusedArg::Step(p_len - 1);
            for s in &self.op.steps {
                steps.push(FusedStep {
                    op: s.op.clone(),
                    args: s
                        .args
                        .iter()
                        .map(|a| match *a {
                            FusedArg::Input(k) if k == i => out,
                            FusedArg::Input(k) => FusedArg::Input(consumer_input[k]),
                            FusedArg::Step(k) => FusedArg::Step(k + p_len),
                        })
                        .collect(),
                });
            }
        } else {
            // Consumer steps up to (not including) the first reader of input i,
            // then the producer, then the rest.
            let first_reader = self
                .op
                .steps
                .iter()
                .position(|s| s.args.contains(&FusedArg::Input(i)))?;
            let remap = |a: &FusedArg, out: FusedArg| match *a {
                FusedArg::Input(k) if k == i => out,
                FusedArg::Input(k) => FusedArg::Input(consumer_input[k]),
                FusedArg::Step(k) if k < first_reader => FusedArg::Step(k),
                FusedArg::Step(k) => FusedArg::Step(k + p_len),
            };
            for s in &self.op.steps[..first_reader] {
                steps.push(FusedStep {
                    op: s.op.clone(),
                    args: s.args.iter().map(|a| remap(a, a.to_owned())).collect(),
                });
            }
            map_producer(&mut steps, first_reader);
            let out = FusedArg::Step(first_reader + p_len - 1);
            for s in &self.op.steps[first_reader..] {
                steps.push(FusedStep {
                    op: s.op.clone(),
                    args: s.args.iter().map(|a| remap(a, out)).collect(),
                });
            }
        }
        // Both sides may compute the same step (a softmax and its NaN guard both
        // read the softmax): keep one, so the region has one anchor.
        let op = dedup_steps(steps);
        if op.steps.len() > MAX_FUSED_STEPS {
            return None;
        }
        let types: Vec<TensorType> = inputs
            .iter()
            .map(|&c| egraph[c].data.ty().cloned())
            .collect::<Option<_>>()?;
        let consts: Vec<_> = inputs
            .iter()
            .map(|&c| {
                egraph[c]
                    .data
                    .const_name
                    .as_ref()
                    .and_then(|n| egraph.analysis.consts.get(n))
            })
            .collect();
        op.step_types(&InferInputs {
            types: &types,
            consts: &consts,
        })
        .ok()?;
        Some(Region { op, inputs })
    }
}

/// Merges identical steps (same op over the same operands), keeping the first;
/// later steps read the kept one.
fn dedup_steps(steps: Vec<FusedStep>) -> FusedOp {
    let mut kept: Vec<FusedStep> = Vec::with_capacity(steps.len());
    let mut new_index: Vec<usize> = Vec::with_capacity(steps.len());
    for s in steps {
        let args: Vec<FusedArg> = s
            .args
            .iter()
            .map(|a| match *a {
                FusedArg::Step(k) => FusedArg::Step(new_index[k]),
                a => a,
            })
            .collect();
        let step = FusedStep { op: s.op, args };
        match kept.iter().position(|k| *k == step) {
            Some(j) => new_index.push(j),
            None => {
                new_index.push(kept.len());
                kept.push(step);
            }
        }
    }
    FusedOp { steps: kept }
}

/// The regions e-class `class` offers: its plain fusible e-nodes, its largest
/// region without an anchor and its largest region with one (ties: the first).
/// Offering both largest kinds lets an elementwise chain keep growing into an
/// anchor's prologue while the same values also grow as some matmul's epilogue.
fn offered(egraph: &KilnEGraph, class: Id) -> Vec<(KilnLang, Region)> {
    let mut plain = vec![];
    let mut largest: [Option<(KilnLang, Region)>; 2] = [None, None];
    let class = egraph.find(class);
    for n in egraph[class].iter() {
        let Some(r) = Region::of(egraph, n) else {
            continue;
        };
        // `x + 0 ∈ [x]`: an e-node reading its own e-class is not a producer.
        if r.inputs.contains(&class) {
            continue;
        }
        let fused = matches!(n, KilnLang::Op(k, _) if matches!(k.op(), Op::Fused(_)));
        let n = n.clone().map_children(|c| egraph.find(c));
        if !fused {
            plain.push((n, r));
            continue;
        }
        let slot = &mut largest[usize::from(r.has_anchor())];
        if slot
            .as_ref()
            .is_none_or(|(_, l)| l.op.steps.len() < r.op.steps.len())
        {
            *slot = Some((n, r));
        }
    }
    plain.extend(largest.into_iter().flatten());
    plain
}

/// The rule: at every e-class with a fusible e-node that has an operand, adds,
/// for each consumer region the e-class offers and each operand whose e-class
/// offers a producer, the merged region (when legal), unioned with the e-class.
struct FuseRegion;

impl ClassRule for FuseRegion {
    fn matches(&self, egraph: &KilnEGraph, eclass: Id) -> bool {
        !egraph[eclass].data.constant
            && egraph[eclass].iter().any(|n| match n {
                KilnLang::Op(k, ch) => !ch.is_empty() && k.op().fused_role().is_some(),
                _ => false,
            })
    }

    fn apply(&self, egraph: &mut KilnEGraph, eclass: Id) -> Vec<Id> {
        let mut merged = vec![];
        let mut tried = vec![];
        for (consumer_node, consumer) in offered(egraph, eclass) {
            for (i, &input) in consumer.inputs.iter().enumerate() {
                // Constants are folded or read as weights, never recomputed per use.
                if egraph[input].data.constant || input == egraph.find(eclass) {
                    continue;
                }
                for (producer_node, producer) in offered(egraph, input) {
                    if producer.inputs.contains(&egraph.find(eclass)) {
                        continue;
                    }
                    let key = {
                        let mut h = std::hash::DefaultHasher::new();
                        (&consumer_node, i, &producer_node).hash(&mut h);
                        h.finish()
                    };
                    if egraph.analysis.tried.contains(&key) {
                        continue;
                    }
                    tried.push(key);
                    if let Some(r) = consumer.inline(i, &producer, egraph) {
                        merged.push(r);
                    }
                }
            }
        }
        egraph.analysis.tried.extend(tried);
        let mut changed = vec![];
        for r in merged {
            let key = OpKey::new(&Op::Fused(r.op));
            let id = egraph.add(KilnLang::Op(key, r.inputs));
            if egraph.union(eclass, id) {
                changed.push(egraph.find(eclass));
            }
        }
        changed
    }
}

/// A random chain for the soundness checker: a few elementwise ops after an anchor
/// (a matmul or a convolution with a bias epilogue, a row reduction with a
/// prologue, or a softmax), over random shapes.
pub(crate) fn instance(rng: &mut StdRng) -> Graph {
    let op = |s: &str| Op::from_text(s).expect("valid op text");
    let mut g = Graph::new("fuse-region");
    let (m, k, n) = (
        rng.random_range(1..=4usize),
        rng.random_range(1..=5usize),
        rng.random_range(1..=5usize),
    );
    let f32s = |dims: &[usize]| TensorType::new(DType::F32, Shape::known(dims));
    let mut count = 0;
    let mut add = |g: &mut Graph, o: &str, ins: Vec<kiln_ir::ValueId>| {
        count += 1;
        let name = format!("n{count}");
        g.add_node(name.clone(), op(o), ins, &[name], None)
            .expect("well-typed instance")[0]
    };
    const UNARY: [&str; 5] = ["Relu", "Tanh", "Sigmoid", "Neg", "Gelu(tanh: false)"];
    const BINARY: [&str; 4] = ["Add", "Sub", "Mul", "Max"];
    let mut y = match rng.random_range(0..4) {
        3 => {
            // A 3×3 convolution with a bias and activation epilogue.
            let x = g.add_input("x", f32s(&[1, k, m + 2, n + 2]));
            let w = g.add_input("w", f32s(&[n, k, 3, 3]));
            add(&mut g, "Conv((group: 1))", vec![x, w])
        }
        0 => {
            let x = g.add_input("x", f32s(&[m, k]));
            let w = g.add_input("w", f32s(&[k, n]));
            add(&mut g, "MatMul", vec![x, w])
        }
        1 => {
            let x = g.add_input("x", f32s(&[m, k]));
            let e = add(&mut g, "Exp", vec![x]);
            let s = add(
                &mut g,
                "Reduce(kind: Sum, axes: [1], keepdims: true)",
                vec![e],
            );
            add(&mut g, "Div", vec![e, s])
        }
        _ => {
            let x = g.add_input("x", f32s(&[m, k]));
            add(&mut g, "Softmax(axis: 1)", vec![x])
        }
    };
    let width = g.value(y).ty.shape.clone();
    let dims = width.as_known().expect("known");
    let b = g.add_input("b", f32s(&dims[dims.len() - 1..]));
    y = add(&mut g, "Add", vec![y, b]);
    for _ in 0..rng.random_range(1..=4) {
        y = if rng.random_bool(0.5) {
            add(&mut g, UNARY[rng.random_range(0..UNARY.len())], vec![y])
        } else {
            add(
                &mut g,
                BINARY[rng.random_range(0..BINARY.len())],
                vec![y, b],
            )
        };
    }
    g.outputs = vec![y];
    g
}
