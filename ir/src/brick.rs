//! Bricks: named functional modules of a model (attention, FFN, experts, norms...).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a brick does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BrickKind {
    /// Token or position embedding lookup.
    Embedding,
    /// A repeated block (transformer layer, residual block).
    Layer,
    /// Self- or cross-attention with its projections.
    Attention,
    /// Feed-forward network (MLP), gated or not.
    Ffn,
    /// Mixture of experts (router + experts).
    Moe,
    /// The router (gate) of a mixture of experts.
    Router,
    /// One expert of a mixture.
    Expert,
    /// A low-rank adapter attached to a linear layer.
    Lora,
    /// A normalization layer.
    Norm,
    /// The output head (LM head, pooler, classifier).
    Head,
    /// Any other named module (its name says what it is).
    Module,
}

impl BrickKind {
    /// The lower-case name used in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            BrickKind::Embedding => "embedding",
            BrickKind::Layer => "layer",
            BrickKind::Attention => "attention",
            BrickKind::Ffn => "ffn",
            BrickKind::Moe => "moe",
            BrickKind::Router => "router",
            BrickKind::Expert => "expert",
            BrickKind::Lora => "lora",
            BrickKind::Norm => "norm",
            BrickKind::Head => "head",
            BrickKind::Module => "module",
        }
    }

    /// Parses [`BrickKind::name`].
    pub fn from_name(s: &str) -> Option<BrickKind> {
        use BrickKind::*;
        [
            Embedding, Layer, Attention, Ffn, Moe, Router, Expert, Lora, Norm, Head, Module,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

impl fmt::Display for BrickKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of a brick in [`crate::Graph::bricks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrickId(pub u32);

/// A named module: a kind, its path in the model and its parent.
///
/// The nodes of a brick are those whose `brick` is it or one of its descendants;
/// its interface (inputs and outputs) is derived from them by
/// [`crate::Graph::brick_interface`], so it can never go stale.
#[derive(Clone, Debug, PartialEq)]
pub struct Brick {
    /// What it does.
    pub kind: BrickKind,
    /// Its path in the model, dot-separated (`encoder.layer.0.attention`).
    pub name: String,
    /// The brick it is part of.
    pub parent: Option<BrickId>,
}
