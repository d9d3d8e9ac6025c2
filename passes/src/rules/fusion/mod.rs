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
//!
//! The submodules: `matching` reads the e-graph (shared by every rule),
//! `build` holds what a plan builds, `softmax`, `norms`, `gelu` and
//! `attention` (with `kv` for its keys and values) hold one composite's rules
//! with their checker instances, and `instance` the instances' shared builder.

mod attention;
mod build;
mod gelu;
mod instance;
mod kv;
mod matching;
mod norms;
mod softmax;

use egg::{Id, Rewrite};
use kiln_ir::{Dim, Graph};
use rand::rngs::StdRng;

use super::class_rule::{class_rewrite, ClassRule};
use crate::{KilnAnalysis, KilnEGraph, KilnLang};

use attention::{attention_instance, attention_plans};
use build::Build;
use gelu::{gelu_instance, gelu_plans};
use instance::GraphBuilder;
use norms::{
    layernorm_bias_instance, layernorm_bias_plans, layernorm_instance, layernorm_plans,
    norm_scale_instance, norm_scale_plans, rmsnorm_instance, rmsnorm_plans,
};
use softmax::{softmax_instance, softmax_plans};

pub use matching::{CONST_RTOL, MAX_ONES_ELEMENTS};
pub use norms::ones_name;

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
        class_rewrite(name, Recognizer(self))
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

impl ClassRule for Recognizer {
    fn matches(&self, egraph: &KilnEGraph, eclass: Id) -> bool {
        !self.0.plans(egraph, eclass).is_empty()
    }

    fn apply(&self, egraph: &mut KilnEGraph, eclass: Id) -> Vec<Id> {
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
