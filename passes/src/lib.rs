//! Optimization passes over the kiln IR (equality saturation with `egg`).
//!
//! So far: the e-graph language of kiln graphs ([`KilnLang`]), its analysis
//! ([`KilnAnalysis`]: types, constness, source names and bricks), the conversion
//! IR → e-graph → IR ([`to_egraph`], [`extract`]), rules as data with a soundness
//! checker ([`rules`]), the roofline cost model ([`cost`]), DAG-cost greedy
//! extraction ([`extract_dag`]) and the phase pipeline ([`pipeline`]).
//! Fusion and brick rules, `kiln explain` and the CLI wiring come next (issue 3).
//!
//! **Architecture invariant:** passes never emit code.
#![warn(missing_docs)]

mod analysis;
mod convert;
pub mod cost;
pub mod explain;
pub mod extract_dag;
#[cfg(feature = "ilp")]
pub mod extract_ilp;
mod lang;
pub mod pipeline;
pub mod rules;
pub mod synthetic;
pub mod synthetic_bricks;
pub mod testing;

pub use analysis::{refine_type, KilnAnalysis, KilnEGraph, Origin, OriginNode, ValueData};
pub use convert::{extract, extract_chosen, extract_with, to_egraph, EGraphModel};
pub use lang::{KilnDiscriminant, KilnLang, Name, OpKey};
