//! Native brick rules (theme `bricks`): rewrites over whole bricks whose right side
//! is computed, not written: sibling matmul concatenation (QKV, gate/up), zeros that
//! flow through products and activations (dead experts), and dead FFN neurons.
//!
//! Each is a [`BrickRule`]; [`super::Native`] dispatches to it. The searchers match
//! on one e-class and the appliers re-derive what they need from it (the matched
//! structures have a variable number of parts, which a [`Subst`] cannot hold).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use egg::{Id, Rewrite};
use kiln_ir::op::{BinaryOp, LayoutOp, NnOp, UnaryOp};
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

use super::class_rule::{class_rewrite, ClassRule};
use super::conditions::is_zero_class;
use crate::{KilnAnalysis, KilnEGraph, KilnLang, Name, OpKey};

/// Most sibling matmuls one concatenation joins (an MoE layer's input feeds every
/// expert; beyond this the weights are left alone).
pub const MAX_SIBLINGS: usize = 16;

/// A native rule of the `bricks` theme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrickRule {
    /// `qkv-gate-up-concat`: `x·W₁, …, x·Wₙ` (constant `Wᵢ` `[K, Nᵢ]`) are the pieces
    /// of `split(x·[W₁ … Wₙ])` along the last axis; with a constant bias `bᵢ` after
    /// each, also of `split(x·[W₁ … Wₙ] + [b₁ … bₙ])`.
    SiblingConcat,
    /// `matmul-zero`: `x·0 = 0` and `0·x = 0` (zeros of the product's shape).
    MatMulZero,
    /// `mul-zero`: `x⊙0 = 0` and `0⊙x = 0` (zeros of the broadcast shape).
    MulZero,
    /// `unary-of-zero`: `f(0) = 0` for activations with `f(0) = 0` (ReLU, GELU, tanh…)
    /// and for data movement of zeros (transpose, reshape, slice, gather…).
    UnaryOfZero,
    /// `ffn-dead-neurons`: in `act(x·W_up + b)·W_down` (or the gated
    /// `(act(x·W_g + b_g) ⊙ (x·W_up + b_up))·W_down`), a neuron whose contribution is
    /// zero (its `W_down` row is zero, or its up/gate column and bias are zero and
    /// `act(0) = 0`) is dropped: smaller constants, same result.
    DeadNeurons,
}

/// Every brick rule.
pub const ALL: [BrickRule; 5] = [
    BrickRule::SiblingConcat,
    BrickRule::MatMulZero,
    BrickRule::MulZero,
    BrickRule::UnaryOfZero,
    BrickRule::DeadNeurons,
];

impl BrickRule {
    /// The rule's name in the rule files.
    pub fn name(self) -> &'static str {
        match self {
            BrickRule::SiblingConcat => "qkv-gate-up-concat",
            BrickRule::MatMulZero => "matmul-zero",
            BrickRule::MulZero => "mul-zero",
            BrickRule::UnaryOfZero => "unary-of-zero",
            BrickRule::DeadNeurons => "ffn-dead-neurons",
        }
    }

    /// The rule named `name`.
    pub fn from_name(name: &str) -> Option<BrickRule> {
        ALL.into_iter().find(|r| r.name() == name)
    }

    /// The `egg` rewrite, named `name`.
    pub fn rewrite(self, name: &str) -> Rewrite<KilnLang, KilnAnalysis> {
        match self {
            BrickRule::SiblingConcat => class_rewrite(name, SiblingConcat),
            BrickRule::DeadNeurons => class_rewrite(name, DeadNeurons),
            kind => class_rewrite(name, Zeros(kind)),
        }
    }

    /// A random graph the rule applies to, for the soundness checker.
    pub(crate) fn instance(self, rng: &mut StdRng) -> Graph {
        match self {
            BrickRule::SiblingConcat => sibling_instance(rng),
            BrickRule::DeadNeurons => dead_neuron_instance(rng),
            kind => zero_instance(kind, rng),
        }
    }
}

// ---------------------------------------------------------------- helpers

/// The op of a test instance node, from its text form.
fn op(text: &str) -> Op {
    Op::from_text(text).expect("valid op text")
}

const MATMUL: Op = Op::Nn(NnOp::MatMul);
const ADD: Op = Op::Binary(BinaryOp::Add);
const MUL: Op = Op::Binary(BinaryOp::Mul);
const SIGMOID: Op = Op::Unary(UnaryOp::Sigmoid);

/// The op and operands of an op e-node.
fn op_node(n: &KilnLang) -> Option<(&Op, &[Id])> {
    match n {
        KilnLang::Op(key, ch) => Some((key.op(), ch)),
        _ => None,
    }
}

/// The fully known dims of e-class `id`.
fn known_dims(egraph: &KilnEGraph, id: Id) -> Option<Vec<usize>> {
    egraph[id].data.ty()?.shape.as_known()
}

/// The named constant e-class `id` is, with its dims.
fn named_const(egraph: &KilnEGraph, id: Id) -> Option<(Name, Vec<usize>)> {
    let name = egraph[id].data.const_name.clone()?;
    let t = egraph.analysis.consts.get(&name)?;
    Some((name, t.shape().to_vec()))
}

/// Adds constant `name` (unless the side table has it: names are never rebound)
/// and returns its e-class.
fn add_const(egraph: &mut KilnEGraph, name: &str, make: impl FnOnce() -> Tensor) -> Id {
    let sym = Name::from(name);
    egraph
        .analysis
        .consts
        .entry(sym.clone())
        .or_insert_with(make);
    egraph.add(KilnLang::Const(sym))
}

fn add_op(egraph: &mut KilnEGraph, op: &Op, children: Vec<Id>) -> Id {
    egraph.add(KilnLang::Op(OpKey::new(op), children))
}

/// "Zeros of type `ty`" as `Expand(zero scalar, constant shape)`: both operands are
/// constants, so the cost model prices it free and [`is_zero_class`] recognizes it.
/// `None` unless the shape is fully known.
fn zeros_of(egraph: &mut KilnEGraph, ty: &TensorType) -> Option<Id> {
    let dims = ty.shape.as_known()?;
    let zero = add_const(egraph, &format!("kiln.zero.{:?}", ty.dtype), || {
        Tensor::zeros(ty.dtype, vec![])
    });
    let text: Vec<String> = dims.iter().map(usize::to_string).collect();
    let shape = add_const(egraph, &format!("kiln.shape.[{}]", text.join(",")), || {
        Tensor::from_vec(vec![dims.len()], dims.iter().map(|&d| d as i64).collect())
    });
    Some(add_op(
        egraph,
        &Op::Layout(LayoutOp::Expand),
        vec![zero, shape],
    ))
}

fn random_tensor(rng: &mut StdRng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
}

fn f32_type(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

/// Adds a node with one output named like the node.
fn node(g: &mut Graph, name: &str, text: &str, inputs: Vec<ValueId>) -> ValueId {
    g.add_node(
        name.to_string(),
        op(text),
        inputs,
        &[name.to_string()],
        None,
    )
    .unwrap_or_else(|e| panic!("instance node {name}: {e}"))[0]
}

// ---------------------------------------------------------------- sibling matmuls

/// One `x·Wᵢ` of a sibling group.
struct Sibling {
    weight: Name,
    w: Id,
    matmul: Id,
    cols: usize,
}

/// The matmuls `x·W` over e-class `x` with a named, rank-2, not all-zero constant
/// `W`, one per weight, sorted by weight name; `None` unless there are 2 to
/// [`MAX_SIBLINGS`] of them and `x` is a run-time value of rank ≥ 2.
fn sibling_group(egraph: &KilnEGraph, x: Id) -> Option<Vec<Sibling>> {
    let x = egraph.find(x);
    let data = &egraph[x].data;
    if data.constant || data.ty()?.shape.rank() < 2 {
        return None;
    }
    let mut group: Vec<Sibling> = vec![];
    for pid in egraph[x].parents() {
        let p = egraph.find(pid);
        for n in egraph[p].iter() {
            let Some((Op::Nn(kiln_ir::op::NnOp::MatMul), [a, w])) = op_node(n) else {
                continue;
            };
            if egraph.find(*a) != x {
                continue;
            }
            let w = egraph.find(*w);
            let Some((weight, dims)) = named_const(egraph, w) else {
                continue;
            };
            if dims.len() != 2 || egraph.analysis.const_is_all_zero(&weight) {
                continue;
            }
            if group.iter().any(|s| s.w == w || s.matmul == p) {
                continue;
            }
            group.push(Sibling {
                weight,
                w,
                matmul: p,
                cols: dims[1],
            });
        }
    }
    group.sort_by(|a, b| a.weight.as_str().cmp(b.weight.as_str()));
    (2..=MAX_SIBLINGS).contains(&group.len()).then_some(group)
}

/// The constant bias `b` of `Add(matmul, b)` (or `Add(b, matmul)`), `[cols]`.
fn bias_after(egraph: &KilnEGraph, matmul: Id, cols: usize) -> Option<(Id, Id)> {
    let mut found: Option<(Name, Id, Id)> = None;
    for pid in egraph[matmul].parents() {
        let p = egraph.find(pid);
        for n in egraph[p].iter() {
            let Some((Op::Binary(kiln_ir::op::BinaryOp::Add), [l, r])) = op_node(n) else {
                continue;
            };
            let (l, r) = (egraph.find(*l), egraph.find(*r));
            let b = if l == matmul {
                r
            } else if r == matmul {
                l
            } else {
                continue;
            };
            let Some((name, dims)) = named_const(egraph, b) else {
                continue;
            };
            if dims == [cols] && found.as_ref().is_none_or(|f| name.as_str() < f.0.as_str()) {
                found = Some((name, b, p));
            }
        }
    }
    found.map(|(_, b, add)| (b, add))
}

/// The rule at an e-class `x` that has sibling matmuls: adds `split(x·concat(Wᵢ))`
/// (and the biased form) and unions each piece with its matmul (or bias add).
struct SiblingConcat;

impl ClassRule for SiblingConcat {
    fn matches(&self, egraph: &KilnEGraph, eclass: Id) -> bool {
        sibling_group(egraph, eclass).is_some()
    }

    fn apply(&self, egraph: &mut KilnEGraph, x: Id) -> Vec<Id> {
        let x = egraph.find(x);
        let Some(group) = sibling_group(egraph, x) else {
            return vec![];
        };
        let Some(rank) = egraph[x].data.ty().map(|t| t.shape.rank()) else {
            return vec![];
        };
        let sizes: Vec<usize> = group.iter().map(|s| s.cols).collect();
        let biases: Option<Vec<(Id, Id)>> = group
            .iter()
            .map(|s| bias_after(egraph, s.matmul, s.cols))
            .collect();
        let targets: Vec<Id> = group.iter().map(|s| s.matmul).collect();
        let split = Op::Layout(LayoutOp::Split {
            axis: rank - 1,
            sizes,
        });
        let concat = add_op(
            egraph,
            &Op::Layout(LayoutOp::Concat { axis: 1 }),
            group.iter().map(|s| s.w).collect(),
        );
        let fused = add_op(egraph, &MATMUL, vec![x, concat]);
        let mut changed = vec![];
        let mut union_pieces = |egraph: &mut KilnEGraph, whole: Id, targets: &[Id]| {
            let parts = add_op(egraph, &split, vec![whole]);
            for (i, &t) in targets.iter().enumerate() {
                let piece = egraph.add(KilnLang::Proj(i, [parts]));
                if egraph.union(t, piece) {
                    changed.push(egraph.find(t));
                }
            }
        };
        union_pieces(egraph, fused, &targets);
        if let Some(biases) = biases {
            let b = add_op(
                egraph,
                &Op::Layout(LayoutOp::Concat { axis: 0 }),
                biases.iter().map(|b| b.0).collect(),
            );
            let biased = add_op(egraph, &ADD, vec![fused, b]);
            let adds: Vec<Id> = biases.iter().map(|b| b.1).collect();
            union_pieces(egraph, biased, &adds);
        }
        changed
    }
}

/// `x` `[m, K]` or `[b, m, K]` times 2–3 weights, some with biases; the pieces are
/// concatenated back into one output so the checker compares them all.
fn sibling_instance(rng: &mut StdRng) -> Graph {
    let mut g = Graph::new("qkv-gate-up-concat");
    let k = rng.random_range(1..=5usize);
    let mut xdims: Vec<usize> = (0..rng.random_range(1..=2usize))
        .map(|_| rng.random_range(1..=4))
        .collect();
    xdims.push(k);
    let x = g.add_input("x", f32_type(&xdims));
    let biased = rng.random_bool(0.5);
    let mut outs = vec![];
    for i in 0..rng.random_range(2..=3usize) {
        let n = rng.random_range(1..=5usize);
        let w = g.add_const(format!("w{i}"), random_tensor(rng, &[k, n]));
        let mut y = node(&mut g, &format!("mm{i}"), "MatMul", vec![x, w]);
        if biased {
            let b = g.add_const(format!("b{i}"), random_tensor(rng, &[n]));
            y = node(&mut g, &format!("add{i}"), "Add", vec![y, b]);
        }
        outs.push(y);
    }
    let axis = xdims.len() - 1;
    let out = node(&mut g, "out", &format!("Concat(axis: {axis})"), outs);
    g.outputs = vec![out];
    g
}

// ---------------------------------------------------------------- zeros

/// Whether e-node `n` is zero because of a zero operand, for rule `kind`.
fn zero_by(egraph: &KilnEGraph, kind: BrickRule, n: &KilnLang) -> bool {
    let Some((o, ch)) = op_node(n) else {
        return false;
    };
    let zero = |i: usize| ch.get(i).is_some_and(|&c| is_zero_class(egraph, c));
    match kind {
        BrickRule::MatMulZero => *o == MATMUL && ch.len() == 2 && (zero(0) || zero(1)),
        BrickRule::MulZero => *o == MUL && ch.len() == 2 && (zero(0) || zero(1)),
        BrickRule::UnaryOfZero => {
            (o.maps_zero_to_zero() && ch.len() == 1 || o.moves_data_only()) && zero(0)
        }
        _ => false,
    }
}

/// The zero rules at an e-class, not yet known to be zeros, of fully known type
/// with an e-node that is zero because of a zero operand: unions it with zeros of
/// its type.
struct Zeros(BrickRule);

impl ClassRule for Zeros {
    fn matches(&self, egraph: &KilnEGraph, eclass: Id) -> bool {
        known_dims(egraph, eclass).is_some()
            && egraph[eclass].data.types.len() == 1
            && egraph[eclass].iter().any(|n| zero_by(egraph, self.0, n))
            && !is_zero_class(egraph, eclass)
    }

    fn apply(&self, egraph: &mut KilnEGraph, eclass: Id) -> Vec<Id> {
        let Some(ty) = egraph[eclass].data.ty().cloned() else {
            return vec![];
        };
        let Some(z) = zeros_of(egraph, &ty) else {
            return vec![];
        };
        if egraph.union(eclass, z) {
            vec![egraph.find(eclass)]
        } else {
            vec![]
        }
    }
}

/// A product or activation of a zero constant, inside a small graph whose output
/// adds a random value (so the zeros then vanish under `add-zero` in the pipeline).
fn zero_instance(kind: BrickRule, rng: &mut StdRng) -> Graph {
    let mut g = Graph::new(kind.name());
    let (m, k, n) = (
        rng.random_range(1..=4usize),
        rng.random_range(1..=4usize),
        rng.random_range(1..=4usize),
    );
    let x = g.add_input("x", f32_type(&[m, k]));
    let y = match kind {
        BrickRule::MatMulZero => {
            let z = g.add_const("zero", Tensor::zeros(DType::F32, vec![k, n]));
            if rng.random_bool(0.5) {
                node(&mut g, "mm", "MatMul", vec![x, z])
            } else {
                let zl = g.add_const("zero_l", Tensor::zeros(DType::F32, vec![n, m]));
                node(&mut g, "mm", "MatMul", vec![zl, x])
            }
        }
        BrickRule::MulZero => {
            let dims = if rng.random_bool(0.5) {
                vec![k]
            } else {
                vec![m, 1]
            };
            let z = g.add_const("zero", Tensor::zeros(DType::F32, dims));
            let mut ins = vec![x, z];
            if rng.random_bool(0.5) {
                ins.reverse();
            }
            node(&mut g, "mul", "Mul", ins)
        }
        _ => {
            let z = g.add_const("zero", Tensor::zeros(DType::F32, vec![m, k]));
            let acts = [
                "Relu",
                "Tanh",
                "Gelu(tanh: false)",
                "Neg",
                "Erf",
                "Transpose(perm: [1, 0])",
            ];
            let a = acts[rng.random_range(0..acts.len())];
            node(&mut g, "act", a, vec![z])
        }
    };
    let dims = g.value(y).ty.shape.as_known().expect("known");
    let r = g.add_const("r", random_tensor(rng, &dims));
    let out = node(&mut g, "out", "Add", vec![y, r]);
    g.outputs = vec![out];
    g
}

// ---------------------------------------------------------------- dead neurons

/// A linear projection `x·W (+ b)` with named constants.
#[derive(Clone)]
struct Linear {
    x: Id,
    w: Name,
    b: Option<Name>,
    /// `Add(mm, b)` (true) or `Add(b, mm)`.
    bias_right: bool,
}

/// How an activation is written.
#[derive(Clone)]
enum Act {
    /// One zero-preserving unary op.
    Unary(Op),
    /// SiLU as `h ⊙ sigmoid(h)` (`h` first when true).
    Silu(bool),
}

/// An FFN ending in the matched down matmul.
#[derive(Clone)]
struct Ffn {
    /// `act(gate)` when gated (with the order of `Mul(act(gate), up)`: act first
    /// when true).
    gate: Option<(Linear, Act, bool)>,
    /// The up projection; its activation when not gated.
    up: (Linear, Option<Act>),
    down: Name,
}

/// The linear projections of e-class `h` (width `f`).
fn linears(egraph: &KilnEGraph, h: Id, f: usize) -> Vec<Linear> {
    let mut out = vec![];
    let mm = |id: Id| -> Vec<(Id, Name)> {
        egraph[id]
            .iter()
            .filter_map(|n| match op_node(n) {
                Some((Op::Nn(kiln_ir::op::NnOp::MatMul), [x, w])) => {
                    let (name, dims) = named_const(egraph, *w)?;
                    (dims.len() == 2 && dims[1] == f).then_some((egraph.find(*x), name))
                }
                _ => None,
            })
            .collect()
    };
    for (x, w) in mm(h) {
        out.push(Linear {
            x,
            w,
            b: None,
            bias_right: true,
        });
    }
    for n in egraph[h].iter() {
        let Some((Op::Binary(kiln_ir::op::BinaryOp::Add), [l, r])) = op_node(n) else {
            continue;
        };
        for (m, b, bias_right) in [(*l, *r, true), (*r, *l, false)] {
            let Some((bname, bdims)) = named_const(egraph, b) else {
                continue;
            };
            if bdims != [f] {
                continue;
            }
            for (x, w) in mm(m) {
                out.push(Linear {
                    x,
                    w,
                    b: Some(bname.clone()),
                    bias_right,
                });
            }
        }
    }
    out
}

/// The activations of e-class `a`: `(act, pre-activation e-class)`.
fn activations(egraph: &KilnEGraph, a: Id) -> Vec<(Act, Id)> {
    let mut out = vec![];
    for n in egraph[a].iter() {
        let Some((o, ch)) = op_node(n) else { continue };
        if ch.len() == 1 && o.maps_zero_to_zero() {
            out.push((Act::Unary(o.clone()), egraph.find(ch[0])));
        }
        if let (Op::Binary(BinaryOp::Mul), [l, r]) = (o, ch) {
            let sigmoid_of = |s: Id, h: Id| {
                egraph[s].iter().any(|m| {
                    matches!(op_node(m), Some((o, [c])) if *o == SIGMOID && egraph.find(*c) == egraph.find(h))
                })
            };
            if sigmoid_of(*r, *l) {
                out.push((Act::Silu(true), egraph.find(*l)));
            } else if sigmoid_of(*l, *r) {
                out.push((Act::Silu(false), egraph.find(*r)));
            }
        }
    }
    out
}

/// The FFNs whose down matmul is an e-node of e-class `c`.
fn ffns(egraph: &KilnEGraph, c: Id) -> Vec<Ffn> {
    let mut out = vec![];
    for n in egraph[c].iter() {
        let Some((Op::Nn(kiln_ir::op::NnOp::MatMul), [a, wd])) = op_node(n) else {
            continue;
        };
        let Some((down, ddims)) = named_const(egraph, *wd) else {
            continue;
        };
        let [f, _] = ddims[..] else { continue };
        let a = egraph.find(*a);
        for (act, h) in activations(egraph, a) {
            for up in linears(egraph, h, f) {
                out.push(Ffn {
                    gate: None,
                    up: (up, Some(act.clone())),
                    down: down.clone(),
                });
            }
        }
        for m in egraph[a].iter() {
            let Some((Op::Binary(kiln_ir::op::BinaryOp::Mul), [l, r])) = op_node(m) else {
                continue;
            };
            for (g, u, act_first) in [(*l, *r, true), (*r, *l, false)] {
                for (act, hg) in activations(egraph, egraph.find(g)) {
                    for gate in linears(egraph, hg, f) {
                        for up in linears(egraph, egraph.find(u), f) {
                            if up.x == gate.x {
                                out.push(Ffn {
                                    gate: Some((gate.clone(), act.clone(), act_first)),
                                    up: (up, None),
                                    down: down.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Whether bias `b` is zero at each of its `f` entries (no bias: all zero).
fn zero_bias(egraph: &KilnEGraph, b: Option<&Name>, f: usize) -> Vec<bool> {
    match b.and_then(|b| egraph.analysis.consts.get(b)) {
        None => vec![true; f],
        Some(t) => t.to_f64_vec().iter().map(|&v| v == 0.0).collect(),
    }
}

/// The neurons of `ffn` to keep (`None` when none is dead, or all are).
fn keep_set(egraph: &KilnEGraph, ffn: &Ffn) -> Option<Vec<usize>> {
    let a = &egraph.analysis;
    let down_rows = a.zero_lines(&ffn.down, 0)?;
    let f = down_rows.len();
    let dead_lin = |l: &Linear| -> Option<Vec<bool>> {
        let cols = a.zero_lines(&l.w, 1)?;
        let b = zero_bias(egraph, l.b.as_ref(), f);
        Some((0..f).map(|j| cols[j] && b[j]).collect())
    };
    let up_dead = dead_lin(&ffn.up.0)?;
    let gate_dead = match &ffn.gate {
        Some((g, _, _)) => Some(dead_lin(g)?),
        None => None,
    };
    let keep: Vec<usize> = (0..f)
        .filter(|&j| {
            let dead = down_rows[j] || up_dead[j] || gate_dead.as_ref().is_some_and(|g| g[j]);
            !dead
        })
        .collect();
    (!keep.is_empty() && keep.len() < f).then_some(keep)
}

/// The name of constant `name` restricted to `keep` along `axis`.
fn pruned_name(name: &Name, axis: usize, keep: &[usize]) -> String {
    let mut h = DefaultHasher::new();
    keep.hash(&mut h);
    format!("{name}.pruned{axis}.{}.{:016x}", keep.len(), h.finish())
}

/// Constant `name` restricted to `keep` along `axis` (rank 1 or 2), as a new
/// constant of the side table.
fn pruned(egraph: &mut KilnEGraph, name: &Name, axis: usize, keep: &[usize]) -> Id {
    let t = egraph.analysis.consts[name].clone();
    add_const(egraph, &pruned_name(name, axis, keep), || {
        let v = t.to_f64_vec();
        let shape = t.shape().to_vec();
        let (vals, dims): (Vec<f64>, Vec<usize>) = match (shape.len(), axis) {
            (1, _) => (keep.iter().map(|&j| v[j]).collect(), vec![keep.len()]),
            (_, 0) => (
                keep.iter()
                    .flat_map(|&r| v[r * shape[1]..(r + 1) * shape[1]].to_vec())
                    .collect(),
                vec![keep.len(), shape[1]],
            ),
            _ => (
                (0..shape[0])
                    .flat_map(|r| keep.iter().map(move |&c| (r, c)))
                    .map(|(r, c)| v[r * shape[1] + c])
                    .collect(),
                vec![shape[0], keep.len()],
            ),
        };
        Tensor::from_f64(t.dtype(), dims, &vals)
    })
}

/// `x·W[:, keep] (+ b[keep])`.
fn pruned_linear(egraph: &mut KilnEGraph, l: &Linear, keep: &[usize]) -> Id {
    let w = pruned(egraph, &l.w, 1, keep);
    let mm = add_op(egraph, &MATMUL, vec![l.x, w]);
    match &l.b {
        None => mm,
        Some(b) => {
            let b = pruned(egraph, b, 0, keep);
            let ch = if l.bias_right {
                vec![mm, b]
            } else {
                vec![b, mm]
            };
            add_op(egraph, &ADD, ch)
        }
    }
}

fn apply_act(egraph: &mut KilnEGraph, act: &Act, h: Id) -> Id {
    match act {
        Act::Unary(o) => add_op(egraph, o, vec![h]),
        Act::Silu(h_first) => {
            let s = add_op(egraph, &SIGMOID, vec![h]);
            let ch = if *h_first { vec![h, s] } else { vec![s, h] };
            add_op(egraph, &MUL, ch)
        }
    }
}

/// The rule at the down matmul of an FFN with dead neurons: adds the pruned FFN
/// and unions it with the down matmul.
struct DeadNeurons;

impl ClassRule for DeadNeurons {
    fn matches(&self, egraph: &KilnEGraph, eclass: Id) -> bool {
        ffns(egraph, eclass)
            .iter()
            .any(|f| keep_set(egraph, f).is_some())
    }

    fn apply(&self, egraph: &mut KilnEGraph, eclass: Id) -> Vec<Id> {
        let mut changed = vec![];
        for ffn in ffns(egraph, eclass) {
            let Some(keep) = keep_set(egraph, &ffn) else {
                continue;
            };
            let up = pruned_linear(egraph, &ffn.up.0, &keep);
            let hidden = match (&ffn.gate, &ffn.up.1) {
                (Some((gate, act, act_first)), _) => {
                    let g = pruned_linear(egraph, gate, &keep);
                    let g = apply_act(egraph, act, g);
                    let ch = if *act_first { vec![g, up] } else { vec![up, g] };
                    add_op(egraph, &MUL, ch)
                }
                (None, Some(act)) => apply_act(egraph, act, up),
                (None, None) => continue,
            };
            let down = pruned(egraph, &ffn.down, 0, &keep);
            let out = add_op(egraph, &MATMUL, vec![hidden, down]);
            if egraph.union(eclass, out) {
                changed.push(egraph.find(eclass));
            }
        }
        changed
    }
}

/// A random FFN (plain or gated, with or without biases, one of ReLU, tanh, GELU,
/// SiLU) with one to two dead neurons of random kind.
fn dead_neuron_instance(rng: &mut StdRng) -> Graph {
    let mut g = Graph::new("ffn-dead-neurons");
    let (m, k, f, n) = (
        rng.random_range(1..=4usize),
        rng.random_range(1..=4usize),
        rng.random_range(3..=6usize),
        rng.random_range(1..=4usize),
    );
    let x = g.add_input("x", f32_type(&[m, k]));
    let gated = rng.random_bool(0.5);
    let biased = rng.random_bool(0.5);
    let mut wu = random_tensor(rng, &[k, f]).to_f32_vec();
    let mut bu = random_tensor(rng, &[f]).to_f32_vec();
    let mut wg = random_tensor(rng, &[k, f]).to_f32_vec();
    let mut bg = random_tensor(rng, &[f]).to_f32_vec();
    let mut wd = random_tensor(rng, &[f, n]).to_f32_vec();
    for _ in 0..rng.random_range(1..=2) {
        let j = rng.random_range(0..f);
        match rng.random_range(0..3) {
            0 => wd[j * n..(j + 1) * n].iter_mut().for_each(|v| *v = 0.0),
            1 if gated => {
                (0..k).for_each(|r| wg[r * f + j] = 0.0);
                bg[j] = 0.0;
            }
            _ => {
                (0..k).for_each(|r| wu[r * f + j] = 0.0);
                bu[j] = 0.0;
            }
        }
    }
    let linear = |g: &mut Graph, name: &str, w: Vec<f32>, b: Vec<f32>| {
        let w = g.add_const(format!("{name}.weight"), Tensor::from_vec(vec![k, f], w));
        let y = node(g, &format!("{name}.matmul"), "MatMul", vec![x, w]);
        if biased {
            let b = g.add_const(format!("{name}.bias"), Tensor::from_vec(vec![f], b));
            node(g, &format!("{name}.add"), "Add", vec![y, b])
        } else {
            y
        }
    };
    let up = linear(&mut g, "up", wu, bu);
    let gate = gated.then(|| linear(&mut g, "gate", wg, bg));
    let acts = ["Relu", "Tanh", "Gelu(tanh: false)", "silu"];
    let act = acts[rng.random_range(0..acts.len())];
    let activate = |g: &mut Graph, h: ValueId| match act {
        "silu" => {
            let s = node(g, "act.sigmoid", "Sigmoid", vec![h]);
            node(g, "act", "Mul", vec![h, s])
        }
        a => node(g, "act", a, vec![h]),
    };
    let hidden = match gate {
        Some(gate) => {
            let a = activate(&mut g, gate);
            node(&mut g, "gated", "Mul", vec![a, up])
        }
        None => activate(&mut g, up),
    };
    let wd = g.add_const("down.weight", Tensor::from_vec(vec![f, n], wd));
    let out = node(&mut g, "down.matmul", "MatMul", vec![hidden, wd]);
    g.outputs = vec![out];
    g
}
