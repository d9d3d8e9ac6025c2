//! The smallest CPU kernel, `out[i] = a[i] + b[i]` over f32: a smoke test of
//! the LLVM chain (build IR with inkwell, O3 for the host, JIT, call).

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::context::Context;
use inkwell::execution_engine::{ExecutionEngine, JitFunction};
use inkwell::module::{Linkage, Module};
use inkwell::AddressSpace;
use inkwell::IntPredicate;

use super::{host_target_machine, jit, optimize, target_host_cpu, LlvmError};

/// Symbol name of the generated function.
pub const ADD_F32: &str = "add_f32";

/// Signature of the generated `void add_f32(float* a, float* b, float* out, i64 n)`.
pub type AddF32Fn = unsafe extern "C" fn(*const f32, *const f32, *mut f32, i64);

/// Builds (unoptimized) a module holding `add_f32`: a counted loop writing
/// `out[i] = a[i] + b[i]` for `i < n`. The pointers are `noalias`, as kiln's
/// buffers never overlap, which lets the vectorizer skip runtime alias checks.
pub fn build_add_f32(context: &Context) -> Result<Module<'_>, LlvmError> {
    let module = context.create_module("kiln_add_f32");
    let f32_ty = context.f32_type();
    let i64_ty = context.i64_type();
    let ptr_ty = context.ptr_type(AddressSpace::default());
    let fn_ty = context.void_type().fn_type(
        &[ptr_ty.into(), ptr_ty.into(), ptr_ty.into(), i64_ty.into()],
        false,
    );
    let function = module.add_function(ADD_F32, fn_ty, Some(Linkage::External));
    let noalias = context.create_enum_attribute(Attribute::get_named_enum_kind_id("noalias"), 0);
    for param in 0..3 {
        function.add_attribute(AttributeLoc::Param(param), noalias);
    }
    let [a, b, out, n] = [0, 1, 2, 3].map(|i| function.get_nth_param(i).expect("declared param"));
    let (a, b, out, n) = (
        a.into_pointer_value(),
        b.into_pointer_value(),
        out.into_pointer_value(),
        n.into_int_value(),
    );

    let entry = context.append_basic_block(function, "entry");
    let body = context.append_basic_block(function, "loop");
    let exit = context.append_basic_block(function, "exit");
    let builder = context.create_builder();

    builder.position_at_end(entry);
    let zero = i64_ty.const_zero();
    let nonempty = builder.build_int_compare(IntPredicate::SGT, n, zero, "nonempty")?;
    builder.build_conditional_branch(nonempty, body, exit)?;

    builder.position_at_end(body);
    let i = builder.build_phi(i64_ty, "i")?;
    let index = i.as_basic_value().into_int_value();
    // SAFETY (of the IR, not of this Rust code): `index < n`, and callers pass
    // buffers of at least `n` elements.
    let (pa, pb, po) = unsafe {
        (
            builder.build_in_bounds_gep(f32_ty, a, &[index], "pa")?,
            builder.build_in_bounds_gep(f32_ty, b, &[index], "pb")?,
            builder.build_in_bounds_gep(f32_ty, out, &[index], "po")?,
        )
    };
    let va = builder.build_load(f32_ty, pa, "va")?.into_float_value();
    let vb = builder.build_load(f32_ty, pb, "vb")?.into_float_value();
    let sum = builder.build_float_add(va, vb, "sum")?;
    builder.build_store(po, sum)?;
    let next = builder.build_int_nuw_add(index, i64_ty.const_int(1, false), "next")?;
    i.add_incoming(&[(&zero, entry), (&next, body)]);
    let done = builder.build_int_compare(IntPredicate::EQ, next, n, "done")?;
    builder.build_conditional_branch(done, exit, body)?;

    builder.position_at_end(exit);
    builder.build_return(None)?;
    Ok(module)
}

/// `add_f32` optimized for the host CPU and compiled in process.
pub struct CompiledAdd<'ctx> {
    /// Keeps the machine code alive for `function`.
    _engine: ExecutionEngine<'ctx>,
    function: JitFunction<'ctx, AddF32Fn>,
    optimized_ir: String,
}

impl<'ctx> CompiledAdd<'ctx> {
    /// Builds, optimizes (O3, host CPU) and JIT-compiles `add_f32` in `context`.
    pub fn compile(context: &'ctx Context) -> Result<Self, LlvmError> {
        let machine = host_target_machine()?;
        let module = build_add_f32(context)?;
        let function = module.get_function(ADD_F32).expect("just built");
        target_host_cpu(function, &machine);
        optimize(&module, &machine)?;
        let optimized_ir = module.print_to_string().to_string();
        let engine = jit(&module)?;
        // SAFETY: `AddF32Fn` is the signature `build_add_f32` declared.
        let function = unsafe { engine.get_function::<AddF32Fn>(ADD_F32) }
            .map_err(|e| LlvmError::Jit(e.to_string()))?;
        Ok(Self {
            _engine: engine,
            function,
            optimized_ir,
        })
    }

    /// The module's LLVM IR after optimization (shows whether it vectorized).
    pub fn optimized_ir(&self) -> &str {
        &self.optimized_ir
    }

    /// Writes `a[i] + b[i]` into `out[i]` with the compiled code.
    ///
    /// # Panics
    /// When the three slices differ in length.
    pub fn run(&self, a: &[f32], b: &[f32], out: &mut [f32]) {
        assert!(
            a.len() == out.len() && b.len() == out.len(),
            "add_f32: lengths differ ({}, {}, {})",
            a.len(),
            b.len(),
            out.len()
        );
        let n = i64::try_from(out.len()).expect("slice length fits i64");
        // SAFETY: all three buffers hold `n` elements; `out` is borrowed
        // mutably, so it cannot overlap `a` or `b` (the `noalias` promise).
        unsafe {
            self.function
                .call(a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), n)
        }
    }
}
