//! A scheduled program lowered for the GPU: one [`GpuStep`] per step of the CPU
//! scheduler's [`Program`], so the runtime's memory plan (made from the program's
//! steps) holds unchanged.
//!
//! - a kernel step becomes a launch of its GPU kernel ([`lower_kernel`]: a
//!   block per row for reductions and norms, vectorized elementwise regions,
//!   the generic grid-stride translation otherwise);
//! - a GEMM step stays a library step, run by the device's GEMM (the reference
//!   GEMM on the simulated device);
//! - index checks and host steps (ops kiln generates no code for) run on the
//!   host between copies: the runtime downloads what they read and uploads what
//!   they write.
//!
//! The invariant the runtime relies on: `steps[i]` computes exactly what
//! `program.steps[i]` computes, reading and writing the same buffers.

use serde::{Deserialize, Serialize};

use super::{lower_kernel, GpuKernel};
use crate::program::{BufferId, Program, Step};

/// One step of a GPU program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GpuStep {
    /// Launch kernel `kernel` of [`GpuProgram::kernels`] over these buffers (in
    /// the kernel's buffer order).
    Launch {
        /// The kernel.
        kernel: usize,
        /// Its arguments.
        args: Vec<BufferId>,
    },
    /// The program's step (a GEMM) through the device's matrix library.
    Library,
    /// The program's step (an index check or a host op) on the host, between a
    /// download of what it reads and an upload of what it writes.
    Host,
}

/// A program with its kernels lowered for the GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuProgram {
    /// The scheduled program (buffers, inputs, outputs, constants, and the
    /// steps [`GpuStep::Library`] and [`GpuStep::Host`] refer to).
    pub program: Program,
    /// The GPU kernels, each with a name unique in the program.
    pub kernels: Vec<GpuKernel>,
    /// One step per step of `program`.
    pub steps: Vec<GpuStep>,
}

impl GpuProgram {
    /// Lowers every kernel of `program` and maps its steps.
    pub fn lower(program: Program) -> GpuProgram {
        let kernels: Vec<GpuKernel> = program.kernels.iter().map(lower_kernel).collect();
        let steps = program
            .steps
            .iter()
            .map(|s| match s {
                Step::Kernel { kernel, args } => GpuStep::Launch {
                    kernel: *kernel,
                    args: args.clone(),
                },
                Step::Gemm(_) => GpuStep::Library,
                Step::CheckIndices { .. } | Step::Host { .. } => GpuStep::Host,
            })
            .collect();
        GpuProgram {
            program,
            kernels,
            steps,
        }
    }

    /// Whether every step runs on the device (no host step, so a whole run can
    /// be captured into one CUDA graph).
    pub fn is_device_only(&self) -> bool {
        !self.steps.iter().any(|s| matches!(s, GpuStep::Host))
    }

    /// Kernel launches, library steps and host steps.
    pub fn step_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for s in &self.steps {
            match s {
                GpuStep::Launch { .. } => counts.0 += 1,
                GpuStep::Library => counts.1 += 1,
                GpuStep::Host => counts.2 += 1,
            }
        }
        counts
    }
}
