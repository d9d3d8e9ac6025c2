//! A scheduled program lowered for the GPU: one [`GpuStep`] per step of the CPU
//! scheduler's [`Program`], so the runtime's memory plan (made from the program's
//! steps) holds unchanged.
//!
//! - a kernel step becomes a launch of its GPU kernel ([`lower_kernel`]: a
//!   block per row for reductions and norms, vectorized elementwise regions,
//!   the generic grid-stride translation otherwise);
//! - a GEMM step becomes a launch of a GEMM kernel ([`gemm_kernel`]: matrix-vector
//!   for decode, tiled otherwise), or — above a size the caller chooses — a
//!   library step, run by the device's GEMM library (on the simulated device,
//!   the reference GEMM on the host: the SIMT interpreter does a few million
//!   multiply-adds a second);
//! - an attention's three steps (scores GEMM, softmax kernel, `P·V` GEMM),
//!   recorded in [`Program::attentions`], become one fused kernel
//!   ([`attention`]) launched at the softmax step, and two [`GpuStep::Skip`]s;
//! - an index check becomes a device check ([`check_indices_kernel`]: counts
//!   and neutralizes bad indices; the runtime fails the run after it);
//! - host steps (ops kiln generates no code for, and index checks of forms the
//!   device check does not take) run on the host between copies: the runtime
//!   downloads what they read and uploads what they write.
//!
//! The invariant the runtime relies on: `steps[i]` computes exactly what
//! `program.steps[i]` computes, reading and writing the same buffers.

use serde::{Deserialize, Serialize};

use super::attention;
use super::check_indices::check_indices_kernel;
use super::gemm::gemm_kernel;
use super::{lower_kernel, GpuKernel};
use crate::program::{BufferId, GemmStep, Program, Step};
use kiln_ir::DType;

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
    /// The program's index check on the device
    /// ([`check_indices_kernel`]): launch `kernel` over the index buffer and
    /// status word `slot` (i64) of the run's status buffer; the runtime fails
    /// the run when the word is non-zero after it.
    Check {
        /// The check kernel.
        kernel: usize,
        /// The index buffer.
        indices: BufferId,
        /// Its status word.
        slot: usize,
    },
    /// Nothing: another step's kernel computes this step's result (a GEMM of
    /// an attention fused into the launch at its softmax step).
    Skip,
}

/// `name`, or `name` with `_`s appended until no kernel has it; recorded.
fn unique(names: &mut std::collections::HashSet<String>, mut name: String) -> String {
    while names.contains(&name) {
        name.push('_');
    }
    names.insert(name.clone());
    name
}

/// Whether `g` becomes a kiln GEMM kernel (not a library call) under `options`:
/// kiln's kernels take f32, f64 and f16.
fn gemm_is_kernel(g: &GemmStep, options: LowerOptions) -> bool {
    matches!(g.dtype, DType::F32 | DType::F64 | DType::F16)
        && options
            .library_gemm_min_macs
            .is_none_or(|min| gemm_macs(g) < min)
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

/// Choices of [`GpuProgram::lower_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LowerOptions {
    /// GEMM steps of at least this many multiply-adds go to the device's GEMM
    /// library instead of a kiln kernel (`None`: every GEMM is a kernel).
    pub library_gemm_min_macs: Option<u64>,
}

/// On the simulated GPU, GEMMs of at least this many multiply-adds run on the
/// host's reference GEMM instead of the SIMT interpreter (about 6 million
/// multiply-adds a second there: this keeps one product under a second, while
/// every GEMM of the test fixtures still runs as a kernel).
pub const SIM_LIBRARY_GEMM_MIN_MACS: u64 = 1 << 22;

/// Multiply-adds of a GEMM step.
pub fn gemm_macs(g: &GemmStep) -> u64 {
    (g.batch_count() as u64)
        .saturating_mul(g.m as u64)
        .saturating_mul(g.n as u64)
        .saturating_mul(g.k as u64)
}

impl GpuProgram {
    /// Lowers every kernel and every GEMM of `program` to GPU kernels.
    pub fn lower(program: Program) -> GpuProgram {
        GpuProgram::lower_with(program, LowerOptions::default())
    }

    /// Lowers `program` with `options`, each attention it records as one fused
    /// kernel where the kernel takes its form.
    pub fn lower_with(program: Program, options: LowerOptions) -> GpuProgram {
        GpuProgram::lower_steps(program, options, true)
    }

    /// Lowers `program` with `options`, attentions as their three steps (what
    /// the fused kernel is compared with).
    pub fn lower_three_step(program: Program, options: LowerOptions) -> GpuProgram {
        GpuProgram::lower_steps(program, options, false)
    }

    fn lower_steps(program: Program, options: LowerOptions, fuse: bool) -> GpuProgram {
        assert!(
            program
                .steps
                .iter()
                .all(|s| !matches!(s, Step::Gemm(g) if g.b_stored.is_some())),
            "a CPU-only program (GEMMs reading half-precision weights) reached the GPU lowering: schedule it with the default options"
        );
        let mut kernels: Vec<GpuKernel> = program.kernels.iter().map(lower_kernel).collect();
        let mut names: std::collections::HashSet<String> =
            kernels.iter().map(|k| k.name.clone()).collect();
        let mut steps = Vec::with_capacity(program.steps.len());
        let mut slots = 0;
        let fused = if fuse {
            fuse_attentions(&program, &mut kernels, &mut names)
        } else {
            Vec::new()
        };
        for (i, s) in program.steps.iter().enumerate() {
            if let Some(step) = fused[..]
                .iter()
                .find_map(|(at, step)| (*at == i).then_some(step))
            {
                steps.push(step.clone());
                continue;
            }
            steps.push(match s {
                Step::Kernel { kernel, args } => GpuStep::Launch {
                    kernel: *kernel,
                    args: args.clone(),
                },
                Step::Gemm(g) if gemm_is_kernel(g, options) => {
                    let name = unique(&mut names, format!("gemm{i}"));
                    let lens = [g.a, g.b, g.c].map(|b| program.buffers[b].numel());
                    kernels.push(gemm_kernel(&name, g, lens));
                    GpuStep::Launch {
                        kernel: kernels.len() - 1,
                        args: vec![g.a, g.b, g.c],
                    }
                }
                Step::Gemm(_) => GpuStep::Library,
                Step::CheckIndices {
                    indices,
                    bounds,
                    wrap_negative,
                    ..
                } => {
                    let buf = &program.buffers[*indices];
                    let name = unique(&mut names, format!("check{i}"));
                    let scalar = crate::kernel::Scalar::of(buf.dtype);
                    match check_indices_kernel(&name, scalar, buf.numel(), bounds, *wrap_negative) {
                        Some(k) => {
                            kernels.push(k);
                            slots += 1;
                            GpuStep::Check {
                                kernel: kernels.len() - 1,
                                indices: *indices,
                                slot: slots - 1,
                            }
                        }
                        None => GpuStep::Host,
                    }
                }
                Step::Host { .. } | Step::Control(_) => GpuStep::Host,
            });
        }
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

    /// Status words the device index checks need (one per [`GpuStep::Check`]).
    pub fn check_slots(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, GpuStep::Check { .. }))
            .count()
    }

    /// Kernel launches (device index checks included), library steps and host
    /// steps (skipped steps are none).
    pub fn step_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for s in &self.steps {
            match s {
                GpuStep::Launch { .. } | GpuStep::Check { .. } => counts.0 += 1,
                GpuStep::Library => counts.1 += 1,
                GpuStep::Host => counts.2 += 1,
                GpuStep::Skip => {}
            }
        }
        counts
    }
}

/// The fused kernels of `program`'s attention records (see [`attention`]),
/// appended to `kernels`, and the GPU step each of their program steps
/// becomes: the kernel's launch at the softmax step, where the program keeps
/// every operand live (see [`crate::program::AttentionSteps`]), and
/// [`GpuStep::Skip`] at the two GEMMs. A record whose form the kernel does not
/// take, or that claims a step another record claimed, keeps its three steps.
fn fuse_attentions(
    program: &Program,
    kernels: &mut Vec<GpuKernel>,
    names: &mut std::collections::HashSet<String>,
) -> Vec<(usize, GpuStep)> {
    let mut out: Vec<(usize, GpuStep)> = Vec::new();
    for a in &program.attentions {
        if a.steps.iter().any(|s| out.iter().any(|(at, _)| at == s)) {
            continue;
        }
        let mut name = format!("attention{}", a.steps[1]);
        while names.contains(&name) {
            name.push('_');
        }
        let Some(kernel) = attention::attention_kernel(&name, a, program) else {
            continue;
        };
        names.insert(name);
        kernels.push(kernel);
        let launch = GpuStep::Launch {
            kernel: kernels.len() - 1,
            args: attention::attention_args(a),
        };
        out.extend([
            (a.steps[0], GpuStep::Skip),
            (a.steps[1], launch),
            (a.steps[2], GpuStep::Skip),
        ]);
    }
    out
}
