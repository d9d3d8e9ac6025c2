//! The LLVM side of the CPU backend: a target machine for the host, the O3
//! pipeline, lowering of the kernel IR and machine code.
//!
//! Kernels are lowered into a [`Module`] ([`lower`]), optimized with
//! [`optimize`] for the chosen CPU (so the loop vectorizer uses its vector
//! width), emitted as an ELF object and linked into the process by ORC's LLJIT
//! ([`object`]); the same object bytes go into `.kiln` artifacts.

pub mod isa;
pub mod lower;
pub mod math;
pub mod object;

use inkwell::attributes::AttributeLoc;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::values::FunctionValue;
use inkwell::OptimizationLevel;

/// The new pass manager's pipeline that [`optimize`] runs.
pub const O3_PIPELINE: &str = "default<O3>";

/// A failure in the LLVM toolchain: target setup, verification, optimization
/// or JIT compilation.
#[derive(Debug, thiserror::Error)]
pub enum LlvmError {
    /// LLVM cannot target the host (the native target is not linked in).
    #[error("LLVM cannot target the host: {0}")]
    Target(String),
    /// A generated module failed LLVM's verifier (a codegen bug).
    #[error("generated LLVM IR is invalid: {0}")]
    Verify(String),
    /// The optimization pipeline failed.
    #[error("LLVM optimization failed: {0}")]
    Optimize(String),
    /// Building an instruction failed (a codegen bug).
    #[error("building LLVM IR failed: {0}")]
    Build(#[from] inkwell::builder::BuilderError),
    /// The JIT could not compile the module or find a function in it.
    #[error("LLVM JIT failed: {0}")]
    Jit(String),
}

/// The host as LLVM sees it: target triple, CPU name and CPU features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpu {
    /// Target triple, e.g. `x86_64-pc-linux-gnu`.
    pub triple: String,
    /// CPU name, e.g. `znver4` or `sapphirerapids`.
    pub cpu: String,
    /// Comma-separated feature string, e.g. `+avx2,+fma,...`.
    pub features: String,
}

impl HostCpu {
    /// Detects the CPU this process runs on.
    pub fn detect() -> Self {
        Self {
            triple: TargetMachine::get_default_triple()
                .as_str()
                .to_string_lossy()
                .into_owned(),
            cpu: TargetMachine::get_host_cpu_name().to_string(),
            features: TargetMachine::get_host_cpu_features().to_string(),
        }
    }

    /// The host as the JIT compiles for it: [`HostCpu::detect`] with the
    /// features above the user's cap ([`isa::ISA_ENV`]) turned off.
    ///
    /// # Errors
    /// A malformed cap.
    pub fn for_jit() -> Result<Self, LlvmError> {
        let mut host = Self::detect();
        if let Some(cap) = isa::isa_cap().map_err(LlvmError::Target)? {
            host.features = isa::cap_features(&host.features, cap);
        }
        Ok(host)
    }
}

/// Builds a target machine for the host CPU at O3 (initializing LLVM's native
/// target first; safe to call repeatedly), within the user's instruction-set cap.
pub fn host_target_machine() -> Result<TargetMachine, LlvmError> {
    Target::initialize_native(&InitializationConfig::default()).map_err(LlvmError::Target)?;
    let host = HostCpu::for_jit()?;
    let triple = TargetTriple::create(&host.triple);
    let target = Target::from_triple(&triple).map_err(|e| LlvmError::Target(e.to_string()))?;
    target
        .create_target_machine(
            &triple,
            &host.cpu,
            &host.features,
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::JITDefault,
        )
        .ok_or_else(|| LlvmError::Target(format!("no target machine for {}", host.triple)))
}

/// Tags `function` with the host's CPU and features, so that the JIT's code
/// generator uses the same vector instructions the optimizer planned for
/// (MCJIT itself would otherwise compile for a generic CPU).
pub fn target_host_cpu(function: FunctionValue<'_>, machine: &TargetMachine) {
    let context = function.get_type().get_context();
    let cpu = machine.get_cpu().to_string();
    let features = machine.get_feature_string().to_string_lossy().into_owned();
    function.add_attribute(
        AttributeLoc::Function,
        context.create_string_attribute("target-cpu", &cpu),
    );
    function.add_attribute(
        AttributeLoc::Function,
        context.create_string_attribute("target-features", &features),
    );
}

/// Verifies `module`, points it at `machine` (triple and data layout) and runs
/// the O3 pipeline ([`O3_PIPELINE`]) on it with the new pass manager.
pub fn optimize(module: &Module<'_>, machine: &TargetMachine) -> Result<(), LlvmError> {
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module
        .verify()
        .map_err(|e| LlvmError::Verify(e.to_string()))?;
    module
        .run_passes(O3_PIPELINE, machine, PassBuilderOptions::create())
        .map_err(|e| LlvmError::Optimize(e.to_string()))
}
