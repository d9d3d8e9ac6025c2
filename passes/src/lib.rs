//! Optimization passes over the kiln IR (equality saturation with `egg`).
//!
//! The e-graph language of kiln graphs ([`KilnLang`]) and its analysis
//! ([`KilnAnalysis`]: types, constness, source names and bricks); the conversion
//! IR → e-graph → IR ([`to_egraph`], [`extract`]); rules as data by theme
//! (layout, algebra, bricks, fusion, regions) with Rust conditions and native
//! rules, and a soundness checker ([`rules`]); the roofline cost model per
//! target ([`cost`]); greedy and ILP DAG-cost extraction ([`extract_dag`],
//! `extract_ilp` with feature `ilp`); the ordered phase pipeline with count
//! limits and reports ([`pipeline`]); and the per-brick report behind
//! `kiln explain` ([`explain`]).
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
