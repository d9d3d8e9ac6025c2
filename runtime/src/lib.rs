//! The runtime: executable plans, memory planning and the backends that run them.
//!
//! Not built yet: the foundation issue only lays out the crate.
#![warn(missing_docs)]
