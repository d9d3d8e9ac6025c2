//! Optimization passes over the kiln IR (equality saturation with `egg`).
//!
//! So far: the e-graph language of kiln graphs ([`KilnLang`]), its analysis
//! ([`KilnAnalysis`]: types, constness, source names and bricks) and the conversion
//! IR → e-graph → IR ([`to_egraph`], [`extract`]). Rewrite rules come next.
//!
//! **Architecture invariant:** passes never emit code.
#![warn(missing_docs)]

mod analysis;
mod convert;
pub mod cost;
pub mod extract_dag;
mod lang;
pub mod pipeline;
pub mod rules;

pub use analysis::{refine_type, KilnAnalysis, KilnEGraph, Origin, OriginNode, ValueData};
pub use convert::{extract, extract_with, to_egraph, EGraphModel};
pub use lang::{KilnDiscriminant, KilnLang, OpKey};
