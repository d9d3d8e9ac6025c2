//! Optimization passes over the kiln IR (equality saturation with `egg`).
//!
//! Not built yet: the foundation issue only lays out the crate. Passes never emit code.
#![warn(missing_docs)]
