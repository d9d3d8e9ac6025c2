//! The runtime: executable plans, memory planning and the backends that run them.
//!
//! Built so far: [`memory`], the liveness-based arena planner that places every
//! intermediate value of a graph at an aligned offset in one arena. Executable
//! plans and backends come next.
#![warn(missing_docs)]

pub mod memory;
