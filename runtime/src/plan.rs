//! The device-independent part of an executable: where every buffer of a
//! scheduled program lives.
//!
//! Temporaries share one arena, placed by liveness over the program's steps
//! ([`crate::memory::place`]); aliases resolve to their root's bytes; inputs and
//! constants live outside the arena.

use kiln_codegen::program::{BufferId, BufferKind, Program};
use kiln_codegen::schedule::step_io;

use crate::memory::{place, Lifetime, ARENA_ALIGN};

/// Where one buffer's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// At this offset in the arena.
    Arena(usize),
    /// The caller's input `i`.
    Input(usize),
    /// Constant `i`.
    Const(usize),
    /// Output memory `i` of [`Plan::outputs`] (outputs are written where the
    /// caller receives them, not copied out of the arena).
    Output(usize),
}

/// Buffer locations and the arena size of one program.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The location of every buffer (aliases resolved).
    pub locations: Vec<Location>,
    /// Bytes of the arena.
    pub arena_bytes: usize,
    /// The peak of live bytes (no placement needs fewer).
    pub lower_bound: usize,
    /// Bytes without any reuse (every temporary its own bytes).
    pub unshared_bytes: usize,
    /// The root buffer behind each output memory (a buffer that is two outputs
    /// has one).
    pub outputs: Vec<BufferId>,
}

impl Plan {
    /// Plans `program`'s memory.
    pub fn new(program: &Program) -> Plan {
        let n = program.buffers.len();
        let steps = program.steps.len();
        let mut life: Vec<Option<Lifetime>> = vec![None; n];
        let mut sizes = vec![0usize; n];
        for (i, b) in program.buffers.iter().enumerate() {
            if b.kind == BufferKind::Temp {
                sizes[i] = b.bytes().div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
            }
        }
        let touch = |id: BufferId, step: usize, life: &mut Vec<Option<Lifetime>>| {
            let r = program.root(id);
            if program.buffers[r].kind != BufferKind::Temp {
                return;
            }
            let l = life[r].get_or_insert(Lifetime {
                start: step,
                end: step,
            });
            l.start = l.start.min(step);
            l.end = l.end.max(step);
        };
        for (i, step) in program.steps.iter().enumerate() {
            let (reads, writes) = step_io(program, step);
            for b in reads.into_iter().chain(writes) {
                touch(b, i, &mut life);
            }
        }
        // Temporaries that are outputs live in memory of their own.
        let mut outputs: Vec<BufferId> = Vec::new();
        for &(_, b) in &program.outputs {
            let r = program.root(b);
            if program.buffers[r].kind == BufferKind::Temp && !outputs.contains(&r) {
                outputs.push(r);
                life[r] = None;
            }
        }
        let placement = place(&sizes, &life, steps);
        let locations = (0..n)
            .map(|i| {
                let r = program.root(i);
                match program.buffers[r].kind {
                    BufferKind::Input(k) => Location::Input(k),
                    BufferKind::Const(k) => Location::Const(k),
                    _ => match outputs.iter().position(|&o| o == r) {
                        Some(k) => Location::Output(k),
                        None => Location::Arena(placement.offsets[r].unwrap_or(0)),
                    },
                }
            })
            .collect();
        Plan {
            locations,
            arena_bytes: placement.arena_bytes,
            lower_bound: placement.lower_bound,
            unshared_bytes: sizes.iter().sum(),
            outputs,
        }
    }
}
