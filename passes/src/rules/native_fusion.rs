//! Native recognition rules of the `fusion` theme: composite ops (softmax, layer and
//! RMS norms, GELU, attention) recovered from the decompositions ONNX exporters emit.
//!
//! Each rule reads attributes off the match (the reduced axes, ε, the score scale)
//! and checks constants by value, so it cannot be a pattern. A rule is one
//! [`FusionNative`]: its `plans` function looks at an e-class and returns what to
//! build ([`Build`]) for every way the class decomposes as the composite; the
//! searcher reports the classes with a plan and the applier builds the plans and
//! unions them with the class (only when the built value has the class's type).
//! Operand orders of commutative ops are tried both ways, so no commutativity rule
//! is needed.
//!
//! Norms are recognized in two steps: the normalization core becomes the composite
//! with an all-ones scale (a shared constant, [`ones_name`]), and `norm-scale` /
//! `layernorm-bias` then absorb a following `Mul` by γ and `Add` of β.

use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use kiln_ir::op::{CompositeOp, LayoutOp, QkOutput, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::Rng;

use crate::{KilnAnalysis, KilnEGraph, KilnLang, OpKey};

/// Relative tolerance when a constant is checked against its exact value (the
/// exporters store √2, √(2/π), 0.044715... rounded to f32, relative error < 1e-7).
pub const CONST_RTOL: f64 = 1e-6;

/// Largest all-ones constant [`is_ones`] reads (a scale vector of a norm).
pub const MAX_ONES_ELEMENTS: usize = 1 << 20;

/// A native rule of the fusion theme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionNative {
    /// `softmax-decomposed`: e/Σe with e = exp(x − max x) or exp(x), along one axis.
    Softmax,
    /// `layernorm-decomposed`: (x − μ)/√(mean((x − μ)²) + ε) over trailing axes.
    LayerNorm,
    /// `rmsnorm-decomposed`: x·1/√(mean(x²) + ε) over trailing axes.
    RmsNorm,
    /// `norm-scale`: a norm with an all-ones scale, times γ.
    NormScale,
    /// `layernorm-bias`: a two-input LayerNorm plus β.
    LayerNormBias,
    /// `gelu-erf`: x·½·(1 + erf(x/√2)).
    GeluErf,
    /// `gelu-tanh`: x·½·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    GeluTanh,
    /// `attention-decomposed`: softmax(q·kᵀ·s + mask)·v, with the exporters' NaN guard.
    Attention,
}

/// Every fusion native, for name lookup.
const ALL: [FusionNative; 8] = [
    FusionNative::Softmax,
    FusionNative::LayerNorm,
    FusionNative::RmsNorm,
    FusionNative::NormScale,
    FusionNative::LayerNormBias,
    FusionNative::GeluErf,
    FusionNative::GeluTanh,
    FusionNative::Attention,
];

impl FusionNative {
    /// The rule's name in the rule files.
    pub fn name(self) -> &'static str {
        match self {
            FusionNative::Softmax => "softmax-decomposed",
            FusionNative::LayerNorm => "layernorm-decomposed",
            FusionNative::RmsNorm => "rmsnorm-decomposed",
            FusionNative::NormScale => "norm-scale",
            FusionNative::LayerNormBias => "layernorm-bias",
            FusionNative::GeluErf => "gelu-erf",
            FusionNative::GeluTanh => "gelu-tanh",
            FusionNative::Attention => "attention-decomposed",
        }
    }

    /// The fusion native named `name`.
    pub fn from_name(name: &str) -> Option<FusionNative> {
        ALL.into_iter().find(|n| n.name() == name)
    }

    /// The `egg` rewrite, named `name`.
    pub fn rewrite(self, name: &str) -> Rewrite<KilnLang, KilnAnalysis> {
        Rewrite::new(name, Recognizer(self), Recognizer(self)).expect("no variables")
    }

    /// What to build for each way e-class `class` decomposes as this rule's composite.
    fn plans(self, eg: &KilnEGraph, class: Id) -> Vec<Build> {
        match self {
            FusionNative::Softmax => softmax_plans(eg, class),
            FusionNative::LayerNorm => layernorm_plans(eg, class),
            FusionNative::RmsNorm => rmsnorm_plans(eg, class),
            FusionNative::NormScale => norm_scale_plans(eg, class),
            FusionNative::LayerNormBias => layernorm_bias_plans(eg, class),
            FusionNative::GeluErf => gelu_plans(eg, class, false),
            FusionNative::GeluTanh => gelu_plans(eg, class, true),
            FusionNative::Attention => attention_plans(eg, class),
        }
    }

    /// A random graph the rule applies to, for the soundness checker.
    pub(crate) fn instance(self, rng: &mut StdRng) -> Graph {
        let mut b = GraphBuilder::new(self.name());
        let out = match self {
            FusionNative::Softmax => softmax_instance(&mut b, rng),
            FusionNative::LayerNorm => layernorm_instance(&mut b, rng),
            FusionNative::RmsNorm => rmsnorm_instance(&mut b, rng),
            FusionNative::NormScale => norm_scale_instance(&mut b, rng),
            FusionNative::LayerNormBias => layernorm_bias_instance(&mut b, rng),
            FusionNative::GeluErf => gelu_instance(&mut b, rng, false),
            FusionNative::GeluTanh => gelu_instance(&mut b, rng, true),
            FusionNative::Attention => attention_instance(&mut b, rng),
        };
        b.g.outputs = vec![out];
        b.g
    }
}

// ---------------------------------------------------------------------------
// Searcher and applier.

/// The searcher and applier of one fusion native.
struct Recognizer(FusionNative);

impl Searcher<KilnLang, KilnAnalysis> for Recognizer {
    fn search_eclass_with_limit(
        &self,
        egraph: &KilnEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, KilnLang>> {
        (limit > 0 && !self.0.plans(egraph, eclass).is_empty()).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::with_capacity(0)],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl Applier<KilnLang, KilnAnalysis> for Recognizer {
    fn apply_one(
        &self,
        egraph: &mut KilnEGraph,
        eclass: Id,
        _subst: &Subst,
        _searcher_ast: Option<&PatternAst<KilnLang>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let mut out = vec![];
        for plan in self.0.plans(egraph, eclass) {
            let id = plan.add(egraph);
            if same_type(egraph, eclass, id) && egraph.union(eclass, id) {
                out.push(egraph.find(eclass));
            }
        }
        out
    }
}

/// Whether e-classes `a` and `b` have one known dtype and compatible shapes (the
/// applier's last guard: a plan whose type differs is not unioned).
fn same_type(eg: &KilnEGraph, a: Id, b: Id) -> bool {
    match (eg[a].data.ty(), eg[b].data.ty()) {
        (Some(x), Some(y)) => {
            x.dtype == y.dtype
                && x.shape.rank() == y.shape.rank()
                && x.shape.0.iter().zip(&y.shape.0).all(|(p, q)| match (p, q) {
                    (Dim::Known(m), Dim::Known(n)) => m == n,
                    _ => true,
                })
        }
        _ => false,
    }
}

/// What a plan builds: an expression over existing e-classes.
#[derive(Clone, Debug)]
enum Build {
    /// An existing e-class.
    Class(Id),
    /// An op applied to operands.
    Node(Op, Vec<Build>),
    /// Output `i` of a multi-output op.
    Proj(usize, Box<Build>),
    /// A constant, added to the side table under this name when missing.
    Const(Symbol, Tensor),
}

impl Build {
    fn node(op: Op, args: Vec<Build>) -> Build {
        Build::Node(op, args)
    }

    /// Adds the expression to the e-graph; returns its e-class.
    fn add(self, eg: &mut KilnEGraph) -> Id {
        match self {
            Build::Class(id) => eg.find(id),
            Build::Node(op, args) => {
                let children = args.into_iter().map(|a| a.add(eg)).collect();
                eg.add(KilnLang::Op(OpKey::new(&op), children))
            }
            Build::Proj(i, x) => {
                let x = x.add(eg);
                eg.add(KilnLang::Proj(i, [x]))
            }
            Build::Const(name, t) => {
                eg.analysis.consts.entry(name).or_insert(t);
                eg.add(KilnLang::Const(name))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the e-graph.

/// The operands of every e-node of class `id` whose op is named `name`.
fn ops<'a>(eg: &'a KilnEGraph, id: Id, name: &'a str) -> impl Iterator<Item = (&'a Op, &'a [Id])> {
    eg[id].iter().filter_map(move |n| match n {
        KilnLang::Op(k, ch) if k.op().name() == name => Some((k.op(), ch.as_slice())),
        _ => None,
    })
}

/// The operands of the binary ops `name` in class `id`, in both orders when
/// `commutative`.
fn pairs(eg: &KilnEGraph, id: Id, name: &str, commutative: bool) -> Vec<(Id, Id)> {
    let mut out = vec![];
    for (_, ch) in ops(eg, id, name) {
        if let [a, b] = ch {
            out.push((*a, *b));
            if commutative {
                out.push((*b, *a));
            }
        }
    }
    out
}

/// The operand of the unary op `name` in class `id`, if any.
fn unary(eg: &KilnEGraph, id: Id, name: &str) -> Vec<Id> {
    ops(eg, id, name)
        .filter(|(_, ch)| ch.len() == 1)
        .map(|(_, ch)| ch[0])
        .collect()
}

/// The constant tensor class `id` equals.
fn constant(eg: &KilnEGraph, id: Id) -> Option<&Tensor> {
    eg[id]
        .data
        .const_name
        .and_then(|n| eg.analysis.consts.get(&n))
}

/// The value of a one-element constant.
fn scalar(eg: &KilnEGraph, id: Id) -> Option<f64> {
    constant(eg, id)
        .filter(|t| t.numel() == 1 && t.dtype().is_float())
        .map(|t| t.to_f64_vec()[0])
}

/// Whether class `id` is a one-element constant within [`CONST_RTOL`] of `want`.
fn scalar_near(eg: &KilnEGraph, id: Id, want: f64) -> bool {
    scalar(eg, id).is_some_and(|v| (v - want).abs() <= CONST_RTOL * want.abs())
}

/// Whether class `id` is a constant of ones only.
fn is_ones(eg: &KilnEGraph, id: Id) -> bool {
    constant(eg, id)
        .is_some_and(|t| t.numel() <= MAX_ONES_ELEMENTS && t.to_f64_vec().iter().all(|&v| v == 1.0))
}

fn same(eg: &KilnEGraph, a: Id, b: Id) -> bool {
    eg.find(a) == eg.find(b)
}

fn ty(eg: &KilnEGraph, id: Id) -> Option<&TensorType> {
    eg[id].data.ty()
}

/// The fully known dims of class `id`.
fn dims(eg: &KilnEGraph, id: Id) -> Option<Vec<usize>> {
    ty(eg, id)?.shape.as_known()
}

/// Whether class `id` is a float tensor.
fn is_float(eg: &KilnEGraph, id: Id) -> bool {
    ty(eg, id).is_some_and(|t| t.dtype.is_float())
}

/// Whether classes `a` and `b` have one known type.
fn same_known_type(eg: &KilnEGraph, a: Id, b: Id) -> bool {
    match (ty(eg, a), dims(eg, a), ty(eg, b), dims(eg, b)) {
        (Some(x), Some(p), Some(y), Some(q)) => x.dtype == y.dtype && p == q,
        _ => false,
    }
}

/// Whether classes `a` and `b` have one type: same dtype and rank, every dim the
/// same known size or the same named symbol (an unknown dim never matches).
fn same_type_sym(eg: &KilnEGraph, a: Id, b: Id) -> bool {
    match (ty(eg, a), ty(eg, b)) {
        (Some(x), Some(y)) => {
            x.dtype == y.dtype
                && x.shape.rank() == y.shape.rank()
                && x.shape.0.iter().zip(&y.shape.0).all(|(p, q)| match (p, q) {
                    (Dim::Known(m), Dim::Known(n)) => m == n,
                    (Dim::Sym(s), Dim::Sym(t)) => s == t,
                    _ => false,
                })
        }
        _ => false,
    }
}

/// The operands of `Reduce{kind, axes, keepdims:true}` e-nodes of class `id`.
fn reduces(eg: &KilnEGraph, id: Id, kind: ReduceKind) -> Vec<(Vec<usize>, Id)> {
    ops(eg, id, "Reduce")
        .filter_map(|(op, ch)| match op {
            Op::Reduce(ReduceOp::Reduce {
                kind: k,
                axes,
                keepdims: true,
            }) if *k == kind && ch.len() == 1 && !axes.is_empty() => Some((axes.clone(), ch[0])),
            _ => None,
        })
        .collect()
}

/// The first axis when `axes` are the trailing axes `a..rank` of class `x`.
fn trailing_from(eg: &KilnEGraph, x: Id, axes: &[usize]) -> Option<usize> {
    let rank = ty(eg, x)?.shape.rank();
    let a = *axes.first()?;
    (axes.iter().copied().eq(a..rank)).then_some(a)
}

/// Name of the shared all-ones scale of `dtype` (one element, broadcast).
pub fn ones_name(dtype: DType) -> Symbol {
    Symbol::from(format!("kiln.fusion.ones.{dtype}"))
}

/// The shared all-ones scale of `dtype`.
fn ones(dtype: DType) -> Build {
    Build::Const(ones_name(dtype), Tensor::from_f64(dtype, vec![1], &[1.0]))
}

// ---------------------------------------------------------------------------
// Softmax.

fn softmax_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (e, s) in pairs(eg, root, "Div", false) {
        for (axes, e2) in reduces(eg, s, ReduceKind::Sum) {
            let [axis] = axes[..] else { continue };
            if !same(eg, e, e2) {
                continue;
            }
            for u in unary(eg, e, "Exp") {
                let mut xs = vec![];
                for (x, m) in pairs(eg, u, "Sub", false) {
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

// ---------------------------------------------------------------------------
// Norms.

/// `(t, ε)` for `t + ε` (either order) in class `id` with ε a scalar constant.
fn plus_eps(eg: &KilnEGraph, id: Id) -> Vec<(Id, f64)> {
    pairs(eg, id, "Add", true)
        .into_iter()
        .filter_map(|(t, e)| scalar(eg, e).map(|v| (t, v)))
        .collect()
}

/// Whether class `sq` is `x²` (`Pow(x, 2)` or `x·x`).
fn is_square_of(eg: &KilnEGraph, sq: Id, x: Id) -> bool {
    pairs(eg, sq, "Pow", false)
        .into_iter()
        .any(|(b, p)| same(eg, b, x) && scalar(eg, p) == Some(2.0))
        || pairs(eg, sq, "Mul", false)
            .into_iter()
            .any(|(a, b)| same(eg, a, x) && same(eg, b, x))
}

/// `(axis, ε)` when class `den` is `√(mean(x²) + ε)` over trailing axes of `x`.
fn rms_denominator(eg: &KilnEGraph, den: Id, x: Id) -> Vec<(usize, f64)> {
    let mut out = vec![];
    for t in unary(eg, den, "Sqrt") {
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

fn layernorm_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (d, den) in pairs(eg, root, "Div", false) {
        for (x, mu) in pairs(eg, d, "Sub", false) {
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

fn rmsnorm_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    // (x, den) with root = x / den.
    let mut cands: Vec<(Id, Id)> = pairs(eg, root, "Div", false);
    for (x, r) in pairs(eg, root, "Mul", true) {
        for den in unary(eg, r, "Reciprocal") {
            cands.push((x, den));
        }
        for (one, den) in pairs(eg, r, "Div", false) {
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

/// The norm e-nodes whose output 0 is class `n`'s value: `(op, operands)` for a
/// LayerNorm (bare, as a source graph has it, or under `proj0`) and an RmsNorm.
fn norms(eg: &KilnEGraph, n: Id) -> Vec<(Op, Vec<Id>)> {
    let mut out = vec![];
    for node in eg[n].iter() {
        match node {
            KilnLang::Proj(0, [ln]) => {
                for (op, ch) in ops(eg, *ln, "LayerNorm") {
                    out.push((op.clone(), ch.to_vec()));
                }
            }
            KilnLang::Op(k, ch) if matches!(k.op().name(), "RmsNorm" | "LayerNorm") => {
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
    let layer = op.name() == "LayerNorm";
    let n = Build::node(op, args);
    if layer {
        Build::Proj(0, Box::new(n))
    } else {
        n
    }
}

fn norm_scale_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (n, g) in pairs(eg, root, "Mul", true) {
        for (op, ch) in norms(eg, n) {
            let [x, one] = ch[..] else { continue };
            if is_ones(eg, one) && broadcasts_into(eg, g, x, root) {
                out.push(norm_build(op, vec![Build::Class(x), Build::Class(g)]));
            }
        }
    }
    out
}

fn layernorm_bias_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (n, beta) in pairs(eg, root, "Add", true) {
        for (op, ch) in norms(eg, n) {
            let [x, g] = ch[..] else { continue };
            if op.name() == "LayerNorm" && broadcasts_into(eg, beta, x, root) {
                let args = vec![Build::Class(x), Build::Class(g), Build::Class(beta)];
                out.push(norm_build(op, args));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// GELU.

/// Every way class `root` is a product of three factors `(p·q)·r` or `r·(p·q)`.
fn triple_products(eg: &KilnEGraph, root: Id) -> Vec<[Id; 3]> {
    let mut out = vec![];
    for (inner, r) in pairs(eg, root, "Mul", true) {
        for (p, q) in pairs(eg, inner, "Mul", false) {
            out.push([p, q, r]);
        }
    }
    out
}

/// Whether class `t` is erf(x/√2) (or erf(x·1/√2)).
fn is_erf_arg(eg: &KilnEGraph, t: Id, x: Id) -> bool {
    unary(eg, t, "Erf").into_iter().any(|z| {
        pairs(eg, z, "Div", false)
            .into_iter()
            .any(|(a, c)| same(eg, a, x) && scalar_near(eg, c, std::f64::consts::SQRT_2))
            || pairs(eg, z, "Mul", true)
                .into_iter()
                .any(|(a, c)| same(eg, a, x) && scalar_near(eg, c, std::f64::consts::FRAC_1_SQRT_2))
    })
}

/// The cubic coefficient of the tanh GELU.
const GELU_CUBIC: f64 = 0.044715;

/// Whether class `t` is tanh(√(2/π)·(x + 0.044715·x³)).
fn is_tanh_arg(eg: &KilnEGraph, t: Id, x: Id) -> bool {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    unary(eg, t, "Tanh").into_iter().any(|z| {
        pairs(eg, z, "Mul", true).into_iter().any(|(w, k)| {
            scalar_near(eg, k, c)
                && pairs(eg, w, "Add", true).into_iter().any(|(x1, m)| {
                    same(eg, x1, x)
                        && pairs(eg, m, "Mul", true).into_iter().any(|(cube, k3)| {
                            scalar_near(eg, k3, GELU_CUBIC)
                                && pairs(eg, cube, "Pow", false)
                                    .into_iter()
                                    .any(|(b, e)| same(eg, b, x) && scalar(eg, e) == Some(3.0))
                        })
                })
        })
    })
}

fn gelu_plans(eg: &KilnEGraph, root: Id, tanh: bool) -> Vec<Build> {
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
            let ok = pairs(eg, bracket, "Add", true).into_iter().any(|(t, one)| {
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

// ---------------------------------------------------------------------------
// Attention.

/// A key or value tensor: an e-class, or a row-major reshape of one to `dims`.
#[derive(Clone, Debug)]
enum Kv {
    Class(Id),
    ReshapeOf(Id, Vec<usize>),
}

impl Kv {
    fn build(&self, eg: &KilnEGraph) -> Build {
        match self {
            Kv::Class(id) => Build::Class(*id),
            Kv::ReshapeOf(y, d) if dims(eg, *y).as_deref() == Some(&d[..]) => Build::Class(*y),
            Kv::ReshapeOf(y, d) => {
                let name = format!(
                    "kiln.fusion.shape{}",
                    d.iter().map(|n| format!(".{n}")).collect::<String>()
                );
                let t = Tensor::from_vec(vec![d.len()], d.iter().map(|&n| n as i64).collect());
                Build::node(
                    Op::Layout(LayoutOp::Reshape { allowzero: false }),
                    vec![Build::Class(*y), Build::Const(Symbol::from(name), t)],
                )
            }
        }
    }
}

/// Ways to read class `a` as `x·c` with `c` a scalar constant: `(x, c)`, with
/// `(a, 1)` when it is not scaled.
fn unscale(eg: &KilnEGraph, a: Id) -> (Id, f64) {
    for (x, c) in pairs(eg, a, "Mul", true) {
        if let Some(v) = scalar(eg, c).filter(|_| same_known_type(eg, x, a)) {
            return (x, v);
        }
    }
    for (x, c) in pairs(eg, a, "Div", false) {
        if let Some(v) = scalar(eg, c).filter(|&v| v != 0.0 && same_known_type(eg, x, a)) {
            return (x, 1.0 / v);
        }
    }
    (a, 1.0)
}

/// `(q, kᵀ, scale)` for class `s` = q·kᵀ·scale in the exporters' forms.
fn scores(eg: &KilnEGraph, s: Id) -> Vec<(Id, Id, f64)> {
    let direct = |m: Id| -> Vec<(Id, Id, f64)> {
        pairs(eg, m, "MatMul", false)
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

/// The perm that swaps the last two of `rank` axes.
fn swap_last(rank: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..rank).collect();
    p.swap(rank - 2, rank - 1);
    p
}

/// k for class `kt` = kᵀ (last two axes swapped), without a new transpose when `kt`
/// is a transpose of something, or the flatten–batched transpose–unflatten form.
fn untranspose(eg: &KilnEGraph, kt: Id) -> Build {
    let Some(kd) = dims(eg, kt) else {
        return Build::Class(kt);
    };
    let rank = kd.len();
    for (op, ch) in ops(eg, kt, "Transpose") {
        if let (Op::Layout(LayoutOp::Transpose { perm }), [y]) = (op, ch) {
            if perm.len() == rank {
                let mut r = perm.clone();
                r.swap(rank - 2, rank - 1);
                if r.iter().enumerate().all(|(i, &p)| i == p) {
                    return Kv::Class(*y).build(eg);
                }
                return Build::node(
                    Op::Layout(LayoutOp::Transpose { perm: r }),
                    vec![Build::Class(*y)],
                );
            }
        }
    }
    if let Some(kv) = unflatten_transpose(eg, kt, &kd) {
        return kv.build(eg);
    }
    Build::node(
        Op::Layout(LayoutOp::Transpose {
            perm: swap_last(rank),
        }),
        vec![Build::Class(kt)],
    )
}

/// For `kt` = reshape(T₀₂₁(reshape(y, [N, s, d])), [..B, d, s]): k = reshape(y, [..B, s, d]).
fn unflatten_transpose(eg: &KilnEGraph, kt: Id, kd: &[usize]) -> Option<Kv> {
    let rank = kd.len();
    let (d, s) = (kd[rank - 2], kd[rank - 1]);
    let n: usize = kd[..rank - 2].iter().product();
    for (_, ch) in ops(eg, kt, "Reshape") {
        for (op, ch2) in ops(eg, ch[0], "Transpose") {
            let Op::Layout(LayoutOp::Transpose { perm }) = op else {
                continue;
            };
            if perm != &[0, 2, 1] || dims(eg, ch[0]).as_deref() != Some(&[n, d, s][..]) {
                continue;
            }
            for (_, ch3) in ops(eg, ch2[0], "Reshape") {
                if dims(eg, ch2[0]).as_deref() == Some(&[n, s, d][..]) && dims(eg, ch3[0]).is_some()
                {
                    let mut want = kd.to_vec();
                    want.swap(rank - 2, rank - 1);
                    return Some(Kv::ReshapeOf(ch3[0], want));
                }
            }
        }
    }
    None
}

/// For a key or value with `h` heads that repeats each of `h/g` heads `g` times
/// (reshape(expand(unsqueeze(y, heads + 1)), [..B, h, s, d])): `y`, whose heads the
/// attention composite repeats itself (GQA).
fn ungroup(eg: &KilnEGraph, kv: &Kv) -> Option<Id> {
    let (sources, want): (Vec<Id>, Vec<usize>) = match kv {
        Kv::Class(id) => (
            ops(eg, *id, "Reshape").map(|(_, ch)| ch[0]).collect(),
            dims(eg, *id)?,
        ),
        Kv::ReshapeOf(y, d) => (vec![*y], d.clone()),
    };
    let rank = want.len();
    if rank < 3 {
        return None;
    }
    let h = want[rank - 3];
    for e5 in sources {
        let Some(ed) = dims(eg, e5) else { continue };
        // [..B, h/g, g, s, d]
        if ed.len() != rank + 1
            || ed[..rank - 3] != want[..rank - 3]
            || ed[rank - 3] * ed[rank - 2] != h
            || ed[rank - 1..] != want[rank - 2..]
        {
            continue;
        }
        for (_, ch) in ops(eg, e5, "Expand") {
            let u = ch[0];
            let mut ud = ed.clone();
            ud[rank - 2] = 1;
            if dims(eg, u).as_deref() != Some(&ud[..]) {
                continue;
            }
            for (_, ch2) in ops(eg, u, "Unsqueeze") {
                let mut yd = ud.clone();
                yd.remove(rank - 2);
                if dims(eg, ch2[0]).as_deref() == Some(&yd[..]) {
                    return Some(ch2[0]);
                }
            }
        }
    }
    None
}

/// The key or value tensor a plan uses: `(build, dims)`.
fn kv_dims(eg: &KilnEGraph, b: &Build) -> Option<Vec<usize>> {
    match b {
        Build::Class(id) => dims(eg, *id),
        Build::Node(Op::Layout(LayoutOp::Transpose { perm }), args) => {
            let Build::Class(y) = args.first()? else {
                return None;
            };
            let yd = dims(eg, *y)?;
            perm.iter().map(|&p| yd.get(p).copied()).collect()
        }
        Build::Node(Op::Layout(LayoutOp::Reshape { .. }), args) => match args.get(1)? {
            Build::Const(_, t) => Some(t.to_i64_vec().iter().map(|&n| n as usize).collect()),
            _ => None,
        },
        _ => None,
    }
}

/// The value of a key build as a [`Kv`] when it is an e-class or a reshape.
fn as_kv(b: &Build) -> Option<Kv> {
    match b {
        Build::Class(id) => Some(Kv::Class(*id)),
        Build::Node(Op::Layout(LayoutOp::Reshape { .. }), args) => match (&args[0], &args[1]) {
            (Build::Class(y), Build::Const(_, t)) => Some(Kv::ReshapeOf(
                *y,
                t.to_i64_vec().iter().map(|&n| n as usize).collect(),
            )),
            _ => None,
        },
        _ => None,
    }
}

/// Whether q, k, v dims fit the composite: one rank ≥ 3, equal batch dims, K/V
/// heads dividing Q heads, matching head and sequence sizes.
fn attention_shapes_fit(q: &[usize], k: &[usize], v: &[usize]) -> bool {
    let r = q.len();
    r >= 3
        && k.len() == r
        && v.len() == r
        && q[..r - 3] == k[..r - 3]
        && q[..r - 3] == v[..r - 3]
        && k[r - 3] == v[r - 3]
        && k[r - 3] > 0
        && q[r - 3].is_multiple_of(k[r - 3])
        && q[r - 1] == k[r - 1]
        && k[r - 2] == v[r - 2]
}

fn attention_plans(eg: &KilnEGraph, root: Id) -> Vec<Build> {
    let mut out = vec![];
    for (g, v) in pairs(eg, root, "MatMul", false) {
        // The NaN guard where(isnan(p), 0, p), or none.
        let mut probs: Vec<(Id, Option<Id>)> = vec![(g, None)];
        for (_, ch) in ops(eg, g, "Where") {
            let [c, z, p] = ch[..] else { continue };
            let guarded = unary(eg, c, "IsNaN").into_iter().any(|p2| same(eg, p, p2));
            if guarded && scalar(eg, z) == Some(0.0) {
                probs.push((p, Some(z)));
            }
        }
        for (p, zero) in probs {
            for (op, ch) in ops(eg, p, "Softmax") {
                let Op::Composite(CompositeOp::Softmax { axis }) = op else {
                    continue;
                };
                let m = ch[0];
                let Some(md) = dims(eg, m) else { continue };
                if *axis + 1 != md.len() {
                    continue;
                }
                let mut masked: Vec<(Id, Option<Id>)> = vec![(m, None)];
                for (s, mask) in pairs(eg, m, "Add", true) {
                    let fits = ty(eg, mask).is_some_and(|t| {
                        t.dtype.is_float()
                            && t.shape.rank() <= md.len()
                            && t.shape.0.last() == Some(&Dim::Known(md[md.len() - 1]))
                    });
                    if fits && same_known_type(eg, s, m) {
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
    let (qd, kd, vd) = (dims(eg, q)?, kv_dims(eg, &k)?, kv_dims(eg, &vb)?);
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

// ---------------------------------------------------------------------------
// Checker instances.

/// Builds instance graphs node by node.
struct GraphBuilder {
    g: Graph,
    n: usize,
}

impl GraphBuilder {
    fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            g: Graph::new(name),
            n: 0,
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}", self.n)
    }

    fn input(&mut self, dims: &[usize]) -> ValueId {
        let name = self.fresh("x");
        self.g
            .add_input(name, TensorType::new(DType::F32, Shape::known(dims)))
    }

    fn scalar(&mut self, v: f32) -> ValueId {
        let name = self.fresh("c");
        self.g.add_const(name, Tensor::from_vec(vec![], vec![v]))
    }

    fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.fresh("c");
        self.g.add_const(name, t)
    }

    fn op(&mut self, text: &str, inputs: Vec<ValueId>) -> ValueId {
        self.op_outputs(text, inputs, 1)
    }

    /// Output 0 of a node declared with `outputs` outputs (a LayerNorm with its
    /// statistics is read through `proj0` in the e-graph, as after `norm-scale`).
    fn op_outputs(&mut self, text: &str, inputs: Vec<ValueId>, outputs: usize) -> ValueId {
        let op = Op::from_text(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let node = self.fresh("n");
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh("v")).collect();
        self.g
            .add_node(node, op, inputs, &outs, None)
            .unwrap_or_else(|e| panic!("{text}: {e}"))[0]
    }

    /// `a ∘ b` or `b ∘ a` at random (for commutative ops).
    fn either(&mut self, rng: &mut StdRng, text: &str, a: ValueId, b: ValueId) -> ValueId {
        if rng.random_bool(0.5) {
            self.op(text, vec![a, b])
        } else {
            self.op(text, vec![b, a])
        }
    }
}

fn random_dims(rng: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=5)).collect()
}

fn reduce_text(kind: &str, axes: &[usize]) -> String {
    format!("Reduce(kind: {kind}, axes: {axes:?}, keepdims: true)")
}

fn softmax_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
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

/// A random float input and its trailing axes `axis..`.
fn norm_input(b: &mut GraphBuilder, rng: &mut StdRng) -> (ValueId, Vec<usize>, Vec<usize>) {
    let rank = rng.random_range(1..=4);
    let dims = random_dims(rng, rank);
    let axis = rng.random_range(0..rank);
    let x = b.input(&dims);
    (x, dims, (axis..rank).collect())
}

fn random_eps(rng: &mut StdRng) -> f32 {
    [1e-5, 1e-6, 1e-12, 0.1][rng.random_range(0..4)]
}

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

fn layernorm_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let (x, _, axes) = norm_input(b, rng);
    let mu = b.op(&reduce_text("Mean", &axes), vec![x]);
    let d = b.op("Sub", vec![x, mu]);
    let den = rms_den(b, rng, d, &axes);
    b.op("Div", vec![d, den])
}

fn rmsnorm_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
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

fn norm_scale_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
    let layer = rng.random_bool(0.5);
    let (n, dims, axis) = norm_node(b, rng, layer, None);
    let g = b.input(&dims[axis..]);
    b.either(rng, "Mul", n, g)
}

fn layernorm_bias_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
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

fn gelu_instance(b: &mut GraphBuilder, rng: &mut StdRng, tanh: bool) -> ValueId {
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

fn attention_instance(b: &mut GraphBuilder, rng: &mut StdRng) -> ValueId {
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
