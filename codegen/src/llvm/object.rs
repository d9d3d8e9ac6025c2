//! Kernels to machine code and back: [`compile`] lowers a program's kernels into
//! one LLVM module, runs O3 for a chosen CPU and emits an ELF object (the same
//! bytes serve the JIT and `.kiln` artifacts); [`LoadedObject`] links such an
//! object into this process with LLVM's ORC JIT linker and resolves the kernels'
//! addresses. Calls the code makes (libm, `memcpy`) resolve against the process.
//!
//! Kernels are hash-consed: a kernel whose IR is another's but for its name and
//! its buffers' names (the same layer's kernel in each of a model's layers) is
//! not lowered and optimized again; its symbol is a forwarder to the first
//! one's ([`forward_kernel`]). A 30-layer decoder compiles each kind of kernel
//! once instead of 30 times.

use std::ffi::{CStr, CString};

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::OptimizationLevel;
use llvm_sys::error::{LLVMDisposeErrorMessage, LLVMErrorRef, LLVMGetErrorMessage};
use llvm_sys::orc2::lljit::{
    LLVMOrcCreateLLJIT, LLVMOrcCreateLLJITBuilder, LLVMOrcDisposeLLJIT, LLVMOrcLLJITAddObjectFile,
    LLVMOrcLLJITGetGlobalPrefix, LLVMOrcLLJITGetMainJITDylib, LLVMOrcLLJITLookup, LLVMOrcLLJITRef,
};
use llvm_sys::orc2::{
    LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess, LLVMOrcJITDylibAddGenerator,
};

use super::lower::{lower_kernel, KernelFn};
use super::{optimize, HostCpu, LlvmError};
use crate::kernel::Kernel;

/// The CPU that ahead-of-time artifacts are compiled for when not the host:
/// x86-64-v3 (AVX2, FMA, F16C: every x86 server CPU since 2015).
pub const GENERIC_X86_CPU: &str = "x86-64-v3";

/// Which CPU the machine code is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuTarget {
    /// This machine's CPU with all its features (JIT), within the user's cap
    /// ([`super::isa::ISA_ENV`]).
    Host,
    /// This machine's CPU with the features above a level turned off (the
    /// AVX2 code on an AVX-512 machine; also within the user's cap).
    HostAt(super::isa::IsaLevel),
    /// A named CPU (for artifacts that move between machines), e.g. [`GENERIC_X86_CPU`].
    Named(String),
}

/// Machine code for a set of kernels.
#[derive(Clone, Debug)]
pub struct CompiledObject {
    /// The ELF object.
    pub object: Vec<u8>,
    /// CPU name it was compiled for.
    pub cpu: String,
    /// LLVM features it was compiled with beyond the CPU's own (`+a,-b,...`;
    /// the host's, within the user's cap, for [`CpuTarget::Host`]; empty for a
    /// named CPU).
    pub features: String,
    /// Target triple.
    pub triple: String,
    /// The optimized LLVM IR (only when asked for).
    pub ir: Option<String>,
}

fn machine_for(cpu: &CpuTarget) -> Result<(TargetMachine, String), LlvmError> {
    Target::initialize_native(&InitializationConfig::default()).map_err(LlvmError::Target)?;
    let host = HostCpu::for_jit()?;
    let triple = TargetTriple::create(&host.triple);
    let target = Target::from_triple(&triple).map_err(|e| LlvmError::Target(e.to_string()))?;
    let (name, features) = match cpu {
        CpuTarget::Host => (host.cpu.clone(), host.features.clone()),
        CpuTarget::HostAt(level) => (
            host.cpu.clone(),
            super::isa::cap_features(&host.features, *level),
        ),
        CpuTarget::Named(n) => (n.clone(), String::new()),
    };
    let machine = target
        .create_target_machine(
            &triple,
            &name,
            &features,
            OptimizationLevel::Aggressive,
            RelocMode::PIC,
            CodeModel::Small,
        )
        .ok_or_else(|| {
            LlvmError::Target(format!("no target machine for {} / {name}", host.triple))
        })?;
    Ok((machine, name))
}

/// Lowers, optimizes (O3) and compiles `kernels` to one object for `cpu`.
pub fn compile(
    kernels: &[Kernel],
    cpu: &CpuTarget,
    keep_ir: bool,
) -> Result<CompiledObject, LlvmError> {
    let (machine, cpu_name) = machine_for(cpu)?;
    let context = Context::create();
    let module = context.create_module("kiln_kernels");
    let mut lowered: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for k in kernels {
        match lowered.entry(content_key(k)) {
            std::collections::hash_map::Entry::Occupied(first) => {
                forward_kernel(&context, &module, &k.name, first.get())?
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                lower_kernel(&context, &module, k)?;
                slot.insert(&k.name);
            }
        }
    }
    let cpu_attr = context.create_string_attribute("target-cpu", &machine.get_cpu().to_string());
    let features = machine.get_feature_string().to_string_lossy().into_owned();
    let feat_attr = context.create_string_attribute("target-features", &features);
    let mut f = module.get_first_function();
    while let Some(func) = f {
        if func.count_basic_blocks() > 0 {
            func.add_attribute(inkwell::attributes::AttributeLoc::Function, cpu_attr);
            if !features.is_empty() {
                func.add_attribute(inkwell::attributes::AttributeLoc::Function, feat_attr);
            }
        }
        f = func.get_next_function();
    }
    optimize(&module, &machine)?;
    let ir = keep_ir.then(|| module.print_to_string().to_string());
    Ok(CompiledObject {
        object: emit_object(&module, &machine)?,
        cpu: cpu_name,
        features,
        triple: machine.get_triple().as_str().to_string_lossy().into_owned(),
        ir,
    })
}

/// What makes two kernels the same code: the kernel with its name and its
/// buffers' names (which only say what values they hold) left out.
fn content_key(k: &Kernel) -> String {
    let mut anonymous = k.clone();
    anonymous.name.clear();
    for b in &mut anonymous.buffers {
        b.name.clear();
    }
    format!("{anonymous:?}")
}

/// Adds the exported kernel `name` as a call of the already lowered kernel
/// `target` (the same code under another symbol). `target` is kept out of
/// line so that each forwarder stays a single call.
fn forward_kernel(
    context: &Context,
    module: &Module<'_>,
    name: &str,
    target: &str,
) -> Result<(), LlvmError> {
    use inkwell::attributes::{Attribute, AttributeLoc};
    let callee = module
        .get_function(target)
        .expect("the first kernel of a kind is lowered before its copies");
    let attr = |n: &str| context.create_enum_attribute(Attribute::get_named_enum_kind_id(n), 0);
    callee.add_attribute(AttributeLoc::Function, attr("noinline"));
    let function = module.add_function(
        name,
        callee.get_type(),
        Some(inkwell::module::Linkage::External),
    );
    function.add_attribute(AttributeLoc::Function, attr("nounwind"));
    let builder = context.create_builder();
    builder.position_at_end(context.append_basic_block(function, "entry"));
    let args: Vec<inkwell::values::BasicMetadataValueEnum> =
        function.get_params().into_iter().map(Into::into).collect();
    let call = builder.build_call(callee, &args, "")?;
    call.set_tail_call(true);
    builder.build_return(None)?;
    Ok(())
}

/// The ELF object of an (optimized) `module` for `machine`: what [`LoadedObject`]
/// links and artifacts store.
pub fn emit_object(module: &Module<'_>, machine: &TargetMachine) -> Result<Vec<u8>, LlvmError> {
    machine
        .write_to_memory_buffer(module, FileType::Object)
        .map(|buf| buf.as_slice().to_vec())
        .map_err(|e| LlvmError::Jit(e.to_string()))
}

/// An object linked into this process; its functions stay valid while it lives.
pub struct LoadedObject {
    jit: LLVMOrcLLJITRef,
}

// SAFETY: the LLJIT instance is only used for lookups (which ORC synchronizes)
// and disposal; the machine code it owns is immutable once linked.
unsafe impl Send for LoadedObject {}
// SAFETY: as above.
unsafe impl Sync for LoadedObject {}

fn check(err: LLVMErrorRef) -> Result<(), LlvmError> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: `err` is a live error; its message is owned until disposed.
    unsafe {
        let msg = LLVMGetErrorMessage(err);
        let text = CStr::from_ptr(msg).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(msg);
        Err(LlvmError::Jit(text))
    }
}

impl LoadedObject {
    /// Links `object` (from [`compile`]) into the process.
    pub fn load(object: &[u8]) -> Result<LoadedObject, LlvmError> {
        Target::initialize_native(&InitializationConfig::default()).map_err(LlvmError::Target)?;
        // SAFETY: the ORC C API is used as documented: the builder is consumed by
        // CreateLLJIT, the generator and the memory buffer are owned by the JIT
        // once added, and the JIT is disposed in Drop.
        unsafe {
            let mut jit: LLVMOrcLLJITRef = std::ptr::null_mut();
            check(LLVMOrcCreateLLJIT(&mut jit, LLVMOrcCreateLLJITBuilder()))?;
            let loaded = LoadedObject { jit };
            let dylib = LLVMOrcLLJITGetMainJITDylib(jit);
            let mut generator = std::ptr::null_mut();
            check(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                &mut generator,
                LLVMOrcLLJITGetGlobalPrefix(jit),
                None,
                std::ptr::null_mut(),
            ))?;
            LLVMOrcJITDylibAddGenerator(dylib, generator);
            let name = CString::new("kiln_kernels").expect("no NUL");
            let buf = llvm_sys::core::LLVMCreateMemoryBufferWithMemoryRangeCopy(
                object.as_ptr() as *const CChar,
                object.len(),
                name.as_ptr(),
            );
            check(LLVMOrcLLJITAddObjectFile(jit, dylib, buf))?;
            Ok(loaded)
        }
    }

    /// The address of kernel `name`.
    pub fn kernel(&self, name: &str) -> Result<KernelFn, LlvmError> {
        let addr = self.symbol(name)?;
        // SAFETY: every kernel entry has the `KernelFn` signature (see `lower`).
        Ok(unsafe { std::mem::transmute::<usize, KernelFn>(addr) })
    }

    /// The (non-zero) address of symbol `name`; calling it needs the signature
    /// it was built with.
    pub fn symbol(&self, name: &str) -> Result<usize, LlvmError> {
        let cname =
            CString::new(name).map_err(|_| LlvmError::Jit(format!("bad symbol name {name:?}")))?;
        let mut addr = 0u64;
        // SAFETY: `self.jit` is live; the lookup links the object on first use.
        check(unsafe { LLVMOrcLLJITLookup(self.jit, &mut addr, cname.as_ptr()) })?;
        if addr == 0 {
            return Err(LlvmError::Jit(format!(
                "kernel {name} resolved to address 0"
            )));
        }
        Ok(addr as usize)
    }
}

type CChar = std::ffi::c_char;

impl Drop for LoadedObject {
    fn drop(&mut self) {
        // SAFETY: created by LLVMOrcCreateLLJIT and not disposed elsewhere.
        let err = unsafe { LLVMOrcDisposeLLJIT(self.jit) };
        let _ = check(err);
    }
}
