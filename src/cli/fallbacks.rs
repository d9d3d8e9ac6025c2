//! The nodes a scheduled program leaves to the reference interpreter, and why:
//! what `kiln explain` and `kiln bench --profile` print so a user sees why an
//! op is slow.
//!
//! A program exists only for concrete input shapes. `kiln explain` schedules the
//! optimized graph for the model's own input shapes, with symbolic dims bound by
//! `--dim NAME=SIZE`; when a dim is left unbound, or a shape is data-dependent
//! (the whole model then runs on the interpreter), it reports "not scheduled"
//! and says what to give, instead of guessing sizes (a fallback can depend on
//! them: a reduction over an empty axis, a GEMM of an odd layout).

use std::collections::HashMap;

use kiln_codegen::program::Program;
use kiln_ir::Graph;
use serde::Serialize;

use crate::Error;

/// One host step of a program.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostFallback {
    /// The IR node.
    pub node: String,
    /// Its op's name.
    pub op: String,
    /// Why it runs on the interpreter.
    pub reason: String,
}

/// What scheduling the optimized graph found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Scheduling {
    /// A program was built for `shapes`; these steps run on the host.
    Scheduled {
        /// The input shapes scheduled for.
        shapes: Vec<Vec<usize>>,
        /// Steps of the program.
        steps: usize,
        /// The host steps, in program order.
        host: Vec<HostFallback>,
    },
    /// No program: why (an unbound dim, a data-dependent shape).
    NotScheduled {
        /// Why, and what to give.
        reason: String,
    },
}

/// The host steps of `program`.
pub fn host_fallbacks(program: &Program) -> Vec<HostFallback> {
    program
        .host_steps()
        .map(|(node, op, reason)| HostFallback {
            node: node.to_string(),
            op: op.name().to_string(),
            reason: reason.to_string(),
        })
        .collect()
}

/// Schedules `graph` for its input shapes with symbolic dims bound by `dims`.
/// Bad input (a value too large for the shapes given) is an error; an unbound
/// dim or a data-dependent shape is [`Scheduling::NotScheduled`].
pub fn schedule_for_dims(
    graph: &Graph,
    dims: &HashMap<String, usize>,
) -> Result<Scheduling, Error> {
    let shapes = match super::compile::input_shapes(graph, dims) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Scheduling::NotScheduled {
                reason: e.to_string(),
            })
        }
    };
    match crate::cpu::program_for(graph, &shapes)? {
        Ok((program, _)) => Ok(Scheduling::Scheduled {
            shapes,
            steps: program.steps.len(),
            host: host_fallbacks(&program),
        }),
        Err((_, reason)) => Ok(Scheduling::NotScheduled {
            reason: format!("{reason}: the whole model runs on the interpreter"),
        }),
    }
}

/// Text lines `  node (Op): reason`, one per host step, under a heading.
pub fn render(s: &Scheduling) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    match s {
        Scheduling::NotScheduled { reason } => {
            let _ = writeln!(out, "host fallbacks: not scheduled ({reason})");
        }
        Scheduling::Scheduled {
            shapes,
            steps,
            host,
        } if host.is_empty() => {
            let _ = writeln!(
                out,
                "host fallbacks: none of {steps} steps (scheduled for inputs {shapes:?})"
            );
        }
        Scheduling::Scheduled {
            shapes,
            steps,
            host,
        } => {
            let _ = writeln!(
                out,
                "host fallbacks: {} of {steps} steps run on the reference interpreter \
                 (scheduled for inputs {shapes:?})",
                host.len()
            );
            out.push_str(&render_lines(host));
        }
    }
    out
}

/// One line per host step: `  node (Op): reason`.
pub fn render_lines(host: &[HostFallback]) -> String {
    host.iter()
        .map(|h| format!("  {} ({}): {}\n", h.node, h.op, h.reason))
        .collect()
}
