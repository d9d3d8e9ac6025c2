//! Kernel IR → LLVM IR.
//!
//! Each kernel becomes two functions: an internal, always-inlined body taking one
//! `noalias` pointer per buffer plus the chunk `[begin, end)` of its parallel
//! loop, and the exported entry `void NAME(ptr* buffers, i64 begin, i64 end)` the
//! runtime calls, which loads the pointers and calls the body (after inlining,
//! LLVM keeps the no-alias facts as scoped metadata, so loops vectorize without
//! run-time overlap checks).
//!
//! Variables live in entry-block allocas (mem2reg turns them into SSA values);
//! `let` bindings are SSA values directly. Float additions, subtractions and
//! multiplications carry the `reassoc` and `contract` fast-math flags, so that
//! reductions vectorize and products fuse into FMAs; NaN and infinity semantics
//! are kept (no `nnan`/`ninf`).

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicType, BasicTypeEnum};
use inkwell::values::{
    BasicValue, BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue,
};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};

use super::{math, LlvmError};
use crate::kernel::{Access, BinOp, Expr, Kernel, Literal, LoopKind, Scalar, Stmt, UnOp};

/// The signature of every generated kernel entry:
/// `void kernel(void** buffers, i64 begin, i64 end)`.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64);

/// Adds `kernel` to `module` as an exported function named `kernel.name`.
pub fn lower_kernel<'ctx>(
    context: &'ctx Context,
    module: &Module<'ctx>,
    kernel: &Kernel,
) -> Result<FunctionValue<'ctx>, LlvmError> {
    let ptr = context.ptr_type(AddressSpace::default());
    let i64t = context.i64_type();
    // The body: one pointer per buffer, then begin, end.
    let mut params: Vec<inkwell::types::BasicMetadataTypeEnum> =
        kernel.buffers.iter().map(|_| ptr.into()).collect();
    params.push(i64t.into());
    params.push(i64t.into());
    let body_ty = context.void_type().fn_type(&params, false);
    let body = module.add_function(
        &format!("{}.body", kernel.name),
        body_ty,
        Some(Linkage::Internal),
    );
    let attr =
        |name: &str| context.create_enum_attribute(Attribute::get_named_enum_kind_id(name), 0);
    for (i, b) in kernel.buffers.iter().enumerate() {
        body.add_attribute(AttributeLoc::Param(i as u32), attr("noalias"));
        if b.access == Access::Read {
            body.add_attribute(AttributeLoc::Param(i as u32), attr("readonly"));
        }
    }
    body.add_attribute(AttributeLoc::Function, attr("alwaysinline"));
    body.add_attribute(AttributeLoc::Function, attr("nounwind"));
    let builder = context.create_builder();
    let entry = context.append_basic_block(body, "entry");
    builder.position_at_end(entry);
    let n = kernel.buffers.len() as u32;
    let bufs: Vec<PointerValue> = (0..n)
        .map(|i| {
            body.get_nth_param(i)
                .expect("declared")
                .into_pointer_value()
        })
        .collect();
    let begin = body.get_nth_param(n).expect("declared").into_int_value();
    let end = body
        .get_nth_param(n + 1)
        .expect("declared")
        .into_int_value();
    let mut l = Lower {
        context,
        module,
        builder: &builder,
        function: body,
        bufs,
        kernel,
        slots: vec![None; kernel.vars.len()],
        range: (begin, end),
    };
    for s in &kernel.body {
        l.stmt(s)?;
    }
    builder.build_return(None)?;

    // The exported entry.
    let entry_ty = context
        .void_type()
        .fn_type(&[ptr.into(), i64t.into(), i64t.into()], false);
    let function = module.add_function(&kernel.name, entry_ty, Some(Linkage::External));
    function.add_attribute(AttributeLoc::Function, attr("nounwind"));
    let bb = context.append_basic_block(function, "entry");
    builder.position_at_end(bb);
    let table = function
        .get_nth_param(0)
        .expect("declared")
        .into_pointer_value();
    let mut args: Vec<inkwell::values::BasicMetadataValueEnum> = Vec::new();
    for i in 0..n {
        // SAFETY (of the IR): the runtime passes one pointer per buffer.
        let slot = unsafe {
            builder.build_in_bounds_gep(ptr, table, &[i64t.const_int(i as u64, false)], "slot")?
        };
        args.push(builder.build_load(ptr, slot, "buf")?.into());
    }
    args.push(function.get_nth_param(1).expect("declared").into());
    args.push(function.get_nth_param(2).expect("declared").into());
    builder.build_call(body, &args, "")?;
    builder.build_return(None)?;
    Ok(function)
}

#[derive(Clone, Copy)]
enum Slot<'ctx> {
    /// A `let` value.
    Value(BasicValueEnum<'ctx>),
    /// A loop variable or mutable variable.
    Alloca(PointerValue<'ctx>),
}

struct Lower<'a, 'ctx> {
    context: &'ctx Context,
    module: &'a Module<'ctx>,
    builder: &'a Builder<'ctx>,
    function: FunctionValue<'ctx>,
    bufs: Vec<PointerValue<'ctx>>,
    kernel: &'a Kernel,
    slots: Vec<Option<Slot<'ctx>>>,
    /// The chunk of the parallel loop this call runs.
    range: (IntValue<'ctx>, IntValue<'ctx>),
}

/// The LLVM type a scalar is computed in (bool as `i1`).
fn compute_type<'ctx>(c: &'ctx Context, s: Scalar) -> BasicTypeEnum<'ctx> {
    match s {
        Scalar::F32 => c.f32_type().into(),
        Scalar::F64 => c.f64_type().into(),
        Scalar::F16 => c.f16_type().into(),
        Scalar::BF16 => c.i16_type().into(), // bit pattern; converted by hand
        Scalar::I8 | Scalar::U8 => c.i8_type().into(),
        Scalar::I16 | Scalar::U16 => c.i16_type().into(),
        Scalar::I32 | Scalar::U32 => c.i32_type().into(),
        Scalar::I64 | Scalar::U64 => c.i64_type().into(),
        Scalar::Bool => c.bool_type().into(),
    }
}

/// The LLVM type a scalar is stored as (bool as a byte).
fn memory_type<'ctx>(c: &'ctx Context, s: Scalar) -> BasicTypeEnum<'ctx> {
    match s {
        Scalar::Bool => c.i8_type().into(),
        other => compute_type(c, other),
    }
}

impl<'ctx> Lower<'_, 'ctx> {
    fn entry_alloca(
        &self,
        ty: BasicTypeEnum<'ctx>,
        name: &str,
    ) -> Result<PointerValue<'ctx>, LlvmError> {
        let entry = self.function.get_first_basic_block().expect("has entry");
        let b = self.context.create_builder();
        match entry.get_first_instruction() {
            Some(i) => b.position_before(&i),
            None => b.position_at_end(entry),
        }
        Ok(b.build_alloca(ty, name)?)
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), LlvmError> {
        let b = self.builder;
        match s {
            Stmt::Let { var, value } => {
                let v = self.expr(value)?;
                self.slots[*var] = Some(Slot::Value(v));
            }
            Stmt::Decl { var, init } => {
                let v = self.expr(init)?;
                let p = self.entry_alloca(v.get_type(), &format!("v{var}"))?;
                b.build_store(p, v)?;
                self.slots[*var] = Some(Slot::Alloca(p));
            }
            Stmt::Assign { var, value } => {
                let v = self.expr(value)?;
                let Some(Slot::Alloca(p)) = self.slots[*var] else {
                    return Err(LlvmError::Verify(format!(
                        "v{var} assigned but not declared"
                    )));
                };
                b.build_store(p, v)?;
            }
            Stmt::Store { buf, index, value } => {
                let i = self.expr(index)?.into_int_value();
                let v = self.expr(value)?;
                let sc = self.kernel.buffers[*buf].scalar;
                let v = if sc == Scalar::Bool {
                    b.build_int_z_extend(v.into_int_value(), self.context.i8_type(), "b8")?
                        .into()
                } else {
                    v
                };
                let ty = memory_type(self.context, sc);
                // SAFETY (of the IR): the scheduler keeps indices inside the buffer.
                let p = unsafe { b.build_in_bounds_gep(ty, self.bufs[*buf], &[i], "p")? };
                let st = b.build_store(p, v)?;
                st.set_alignment(sc.size() as u32)
                    .map_err(|e| LlvmError::Verify(e.to_string()))?;
            }
            Stmt::For {
                var,
                extent,
                kind,
                body,
            } => {
                let i64t = self.context.i64_type();
                let (lo, hi) = if *kind == LoopKind::Parallel {
                    self.range
                } else {
                    (i64t.const_zero(), i64t.const_int(*extent as u64, true))
                };
                let slot = self.entry_alloca(i64t.into(), &format!("v{var}"))?;
                b.build_store(slot, lo)?;
                let header = self.context.append_basic_block(self.function, "loop");
                let body_bb = self.context.append_basic_block(self.function, "body");
                let exit = self.context.append_basic_block(self.function, "exit");
                b.build_unconditional_branch(header)?;
                b.position_at_end(header);
                let i = b.build_load(i64t, slot, "i")?.into_int_value();
                let go = b.build_int_compare(IntPredicate::SLT, i, hi, "go")?;
                b.build_conditional_branch(go, body_bb, exit)?;
                b.position_at_end(body_bb);
                let saved = self.slots[*var];
                self.slots[*var] = Some(Slot::Value(i.into()));
                for s in body {
                    self.stmt(s)?;
                }
                self.slots[*var] = saved;
                let next = b.build_int_nsw_add(i, i64t.const_int(1, false), "next")?;
                b.build_store(slot, next)?;
                b.build_unconditional_branch(header)?;
                b.position_at_end(exit);
            }
        }
        Ok(())
    }

    fn intrinsic(
        &self,
        name: &str,
        types: &[BasicTypeEnum<'ctx>],
        args: &[BasicValueEnum<'ctx>],
    ) -> Result<BasicValueEnum<'ctx>, LlvmError> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, types))
            .ok_or_else(|| LlvmError::Verify(format!("no intrinsic {name}")))?;
        let args: Vec<inkwell::values::BasicMetadataValueEnum> =
            args.iter().map(|&a| a.into()).collect();
        self.builder
            .build_call(f, &args, "call")?
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| LlvmError::Verify(format!("{name} returns nothing")))
    }

    fn flagged(&self, v: FloatValue<'ctx>) -> FloatValue<'ctx> {
        if let Some(inst) = v.as_instruction_value() {
            let flags = inkwell::values::FastMathFlags::AllowReassoc
                | inkwell::values::FastMathFlags::AllowContract;
            let _ = inst.set_fast_math_flags(flags);
        }
        v
    }

    fn expr(&mut self, e: &Expr) -> Result<BasicValueEnum<'ctx>, LlvmError> {
        let b = self.builder;
        let c = self.context;
        Ok(match e {
            Expr::Lit(Literal::Float(x, s)) => match s {
                Scalar::F64 => c.f64_type().const_float(*x).into(),
                _ => c.f32_type().const_float(*x as f32 as f64).into(),
            },
            Expr::Lit(Literal::Int(n, s)) => compute_type(c, *s)
                .into_int_type()
                .const_int(*n as u64, s.is_signed_int())
                .into(),
            Expr::Var(v) => match self.slots[*v] {
                Some(Slot::Value(x)) => x,
                Some(Slot::Alloca(p)) => {
                    b.build_load(compute_type(c, self.kernel.vars[*v]), p, "v")?
                }
                None => return Err(LlvmError::Verify(format!("v{v} used before definition"))),
            },
            Expr::Load { buf, index } => {
                let i = self.expr(index)?.into_int_value();
                let sc = self.kernel.buffers[*buf].scalar;
                let ty = memory_type(c, sc);
                // SAFETY (of the IR): the scheduler keeps indices inside the buffer.
                let p = unsafe { b.build_in_bounds_gep(ty, self.bufs[*buf], &[i], "p")? };
                let v = b.build_load(ty, p, "x")?;
                v.as_instruction_value()
                    .expect("a load")
                    .set_alignment(sc.size() as u32)
                    .map_err(|e| LlvmError::Verify(e.to_string()))?;
                if sc == Scalar::Bool {
                    b.build_int_compare(
                        IntPredicate::NE,
                        v.into_int_value(),
                        c.i8_type().const_zero(),
                        "b",
                    )?
                    .into()
                } else {
                    v
                }
            }
            Expr::Unary(op, x) => {
                let s = self.kernel.type_of(x);
                let v = self.expr(x)?;
                self.unary(*op, s, v)?
            }
            Expr::Binary(op, x, y) => {
                let s = self.kernel.type_of(x);
                let (a, bv) = (self.expr(x)?, self.expr(y)?);
                self.binary(*op, s, a, bv)?
            }
            Expr::Select(cond, x, y) => {
                let cv = self.expr(cond)?.into_int_value();
                let (a, bv) = (self.expr(x)?, self.expr(y)?);
                b.build_select(cv, a, bv, "sel")?
            }
            Expr::Cast(to, x) => {
                let from = self.kernel.type_of(x);
                let v = self.expr(x)?;
                self.cast(from, *to, v)?
            }
        })
    }

    fn unary(
        &self,
        op: UnOp,
        s: Scalar,
        v: BasicValueEnum<'ctx>,
    ) -> Result<BasicValueEnum<'ctx>, LlvmError> {
        let b = self.builder;
        let m = self.module;
        if s.is_float() {
            let x = v.into_float_value();
            let ty = x.get_type().as_basic_type_enum();
            let f32 = s == Scalar::F32;
            let libm = |name: &str| math::libm_call(b, m, name, x).map(Into::into);
            return match op {
                UnOp::Neg => Ok(b.build_float_neg(x, "neg")?.into()),
                UnOp::Abs => self.intrinsic("llvm.fabs", &[ty], &[v]),
                UnOp::Sqrt => self.intrinsic("llvm.sqrt", &[ty], &[v]),
                UnOp::Floor => self.intrinsic("llvm.floor", &[ty], &[v]),
                UnOp::Ceil => self.intrinsic("llvm.ceil", &[ty], &[v]),
                UnOp::Round => self.intrinsic("llvm.roundeven", &[ty], &[v]),
                UnOp::IsNan => Ok(b
                    .build_float_compare(FloatPredicate::UNO, x, x, "nan")?
                    .into()),
                UnOp::Exp if f32 => Ok(math::exp_f32(b, m, x)?.into()),
                UnOp::Log if f32 => Ok(math::log_f32(b, m, x)?.into()),
                UnOp::Tanh if f32 => Ok(math::tanh_f32(b, m, x)?.into()),
                UnOp::Erf if f32 => Ok(math::erf_f32(b, m, x)?.into()),
                UnOp::Sigmoid if f32 => Ok(math::sigmoid_f32(b, m, x)?.into()),
                UnOp::Sigmoid => {
                    // 1 / (1 + e^−x) in f64 through libm.
                    let e = math::libm_call(b, m, "exp", b.build_float_neg(x, "nx")?)?;
                    let one = x.get_type().const_float(1.0);
                    let d = b.build_float_add(one, e, "d")?;
                    Ok(b.build_float_div(one, d, "sig")?.into())
                }
                UnOp::Exp => libm("exp"),
                UnOp::Log => libm("log"),
                UnOp::Tanh => libm("tanh"),
                UnOp::Erf => libm("erf"),
                UnOp::Sin => libm("sin"),
                UnOp::Cos => libm("cos"),
                UnOp::Tan => libm("tan"),
                UnOp::Asin => libm("asin"),
                UnOp::Acos => libm("acos"),
                UnOp::Atan => libm("atan"),
                UnOp::Sinh => libm("sinh"),
                UnOp::Cosh => libm("cosh"),
                UnOp::Asinh => libm("asinh"),
                UnOp::Acosh => libm("acosh"),
                UnOp::Atanh => libm("atanh"),
                UnOp::Not => Err(LlvmError::Verify("not of a float".into())),
            };
        }
        let x = v.into_int_value();
        let ty = x.get_type();
        match op {
            UnOp::Neg => Ok(b.build_int_neg(x, "neg")?.into()),
            UnOp::Abs => self.intrinsic(
                "llvm.abs",
                &[ty.into()],
                &[v, self.context.bool_type().const_zero().into()],
            ),
            UnOp::Not => Ok(b.build_not(x, "not")?.into()),
            _ => Err(LlvmError::Verify(format!("{op:?} of an integer"))),
        }
    }

    fn binary(
        &self,
        op: BinOp,
        s: Scalar,
        a: BasicValueEnum<'ctx>,
        v: BasicValueEnum<'ctx>,
    ) -> Result<BasicValueEnum<'ctx>, LlvmError> {
        let b = self.builder;
        if s.is_float() {
            let (x, y) = (a.into_float_value(), v.into_float_value());
            let ty = x.get_type().as_basic_type_enum();
            let cmp = |p: FloatPredicate| -> Result<BasicValueEnum<'ctx>, LlvmError> {
                Ok(b.build_float_compare(p, x, y, "cmp")?.into())
            };
            return match op {
                BinOp::Add => Ok(self.flagged(b.build_float_add(x, y, "add")?).into()),
                BinOp::Sub => Ok(self.flagged(b.build_float_sub(x, y, "sub")?).into()),
                BinOp::Mul => Ok(self.flagged(b.build_float_mul(x, y, "mul")?).into()),
                BinOp::Div => Ok(b.build_float_div(x, y, "div")?.into()),
                BinOp::Rem => Ok(b.build_float_rem(x, y, "rem")?.into()),
                BinOp::Max => self.intrinsic("llvm.maximum", &[ty], &[a, v]),
                BinOp::Min => self.intrinsic("llvm.minimum", &[ty], &[a, v]),
                BinOp::Pow => Ok(math::libm_call2(b, self.module, "pow", x, y)?.into()),
                BinOp::Eq => cmp(FloatPredicate::OEQ),
                BinOp::Ne => cmp(FloatPredicate::UNE),
                BinOp::Lt => cmp(FloatPredicate::OLT),
                BinOp::Le => cmp(FloatPredicate::OLE),
                BinOp::Gt => cmp(FloatPredicate::OGT),
                BinOp::Ge => cmp(FloatPredicate::OGE),
                _ => Err(LlvmError::Verify(format!("{op:?} of floats"))),
            };
        }
        let (x, y) = (a.into_int_value(), v.into_int_value());
        let signed = s.is_signed_int();
        let ty = x.get_type().as_basic_type_enum();
        let cmp = |sp: IntPredicate, up: IntPredicate| -> Result<BasicValueEnum<'ctx>, LlvmError> {
            Ok(
                b.build_int_compare(if signed { sp } else { up }, x, y, "cmp")?
                    .into(),
            )
        };
        match op {
            BinOp::Add => Ok(b.build_int_add(x, y, "add")?.into()),
            BinOp::Sub => Ok(b.build_int_sub(x, y, "sub")?.into()),
            BinOp::Mul => Ok(b.build_int_mul(x, y, "mul")?.into()),
            BinOp::Div if signed => Ok(b.build_int_signed_div(x, y, "div")?.into()),
            BinOp::Div => Ok(b.build_int_unsigned_div(x, y, "div")?.into()),
            BinOp::Rem if signed => Ok(b.build_int_signed_rem(x, y, "rem")?.into()),
            BinOp::Rem => Ok(b.build_int_unsigned_rem(x, y, "rem")?.into()),
            BinOp::Max => self.intrinsic(
                if signed { "llvm.smax" } else { "llvm.umax" },
                &[ty],
                &[a, v],
            ),
            BinOp::Min => self.intrinsic(
                if signed { "llvm.smin" } else { "llvm.umin" },
                &[ty],
                &[a, v],
            ),
            BinOp::Eq => cmp(IntPredicate::EQ, IntPredicate::EQ),
            BinOp::Ne => cmp(IntPredicate::NE, IntPredicate::NE),
            BinOp::Lt => cmp(IntPredicate::SLT, IntPredicate::ULT),
            BinOp::Le => cmp(IntPredicate::SLE, IntPredicate::ULE),
            BinOp::Gt => cmp(IntPredicate::SGT, IntPredicate::UGT),
            BinOp::Ge => cmp(IntPredicate::SGE, IntPredicate::UGE),
            BinOp::And => Ok(b.build_and(x, y, "and")?.into()),
            BinOp::Or => Ok(b.build_or(x, y, "or")?.into()),
            BinOp::Xor => Ok(b.build_xor(x, y, "xor")?.into()),
            BinOp::Shl => Ok(b.build_left_shift(x, y, "shl")?.into()),
            BinOp::Shr => Ok(b.build_right_shift(x, y, signed, "shr")?.into()),
            BinOp::Pow => Err(LlvmError::Verify("integer pow".into())),
        }
    }

    /// ONNX `Cast` semantics between compute types (see [`Expr::Cast`]).
    fn cast(
        &self,
        from: Scalar,
        to: Scalar,
        v: BasicValueEnum<'ctx>,
    ) -> Result<BasicValueEnum<'ctx>, LlvmError> {
        let b = self.builder;
        let c = self.context;
        if from == to {
            return Ok(v);
        }
        // bf16 is an i16 bit pattern: widen to f32 by shifting, narrow with
        // round-to-nearest-even (NaN stays a quiet NaN).
        if from == Scalar::BF16 {
            let w = b.build_int_z_extend(v.into_int_value(), c.i32_type(), "w")?;
            let sh = b.build_left_shift(w, c.i32_type().const_int(16, false), "sh")?;
            let f = b.build_bit_cast(sh, c.f32_type(), "f")?;
            return self.cast(Scalar::F32, to, f);
        }
        if to == Scalar::BF16 {
            let f = self.cast(from, Scalar::F32, v)?.into_float_value();
            let i32t = c.i32_type();
            let bits = b.build_bit_cast(f, i32t, "bits")?.into_int_value();
            let lsb = b.build_and(
                b.build_right_shift(bits, i32t.const_int(16, false), false, "hi")?,
                i32t.const_int(1, false),
                "lsb",
            )?;
            let rounded = b.build_int_add(
                bits,
                b.build_int_add(i32t.const_int(0x7FFF, false), lsb, "bias")?,
                "r",
            )?;
            let hi = b.build_right_shift(rounded, i32t.const_int(16, false), false, "top")?;
            let nan = b.build_float_compare(FloatPredicate::UNO, f, f, "nan")?;
            let q = b
                .build_select(nan, i32t.const_int(0x7FC0, false), hi, "q")?
                .into_int_value();
            return Ok(b.build_int_truncate(q, c.i16_type(), "bf")?.into());
        }
        let fty = |s: Scalar| compute_type(c, s).into_float_type();
        let ity = |s: Scalar| compute_type(c, s).into_int_type();
        let float_like = |s: Scalar| s.is_float() || s == Scalar::F16;
        match (float_like(from), float_like(to)) {
            (true, true) => {
                let x = v.into_float_value();
                if from.size() < to.size() {
                    Ok(b.build_float_ext(x, fty(to), "ext")?.into())
                } else {
                    Ok(b.build_float_trunc(x, fty(to), "trunc")?.into())
                }
            }
            (true, false) => {
                let x = v.into_float_value();
                if to == Scalar::Bool {
                    return Ok(b
                        .build_float_compare(
                            FloatPredicate::UNE,
                            x,
                            x.get_type().const_zero(),
                            "nz",
                        )?
                        .into());
                }
                // Saturating conversions: out-of-range values clamp, NaN gives 0
                // (never LLVM's poison).
                let name = if to.is_signed_int() {
                    "llvm.fptosi.sat"
                } else {
                    "llvm.fptoui.sat"
                };
                self.intrinsic(name, &[ity(to).into(), x.get_type().into()], &[v])
            }
            (false, true) => {
                let x = v.into_int_value();
                if from.is_signed_int() {
                    Ok(b.build_signed_int_to_float(x, fty(to), "sitofp")?.into())
                } else {
                    Ok(b.build_unsigned_int_to_float(x, fty(to), "uitofp")?.into())
                }
            }
            (false, false) => {
                let x = v.into_int_value();
                if to == Scalar::Bool {
                    return Ok(b
                        .build_int_compare(IntPredicate::NE, x, x.get_type().const_zero(), "nz")?
                        .into());
                }
                let target = ity(to);
                let (fw, tw) = (x.get_type().get_bit_width(), target.get_bit_width());
                Ok(if fw == tw {
                    x.into()
                } else if fw > tw {
                    b.build_int_truncate(x, target, "trunc")?.into()
                } else if from.is_signed_int() {
                    b.build_int_s_extend(x, target, "sext")?.into()
                } else {
                    b.build_int_z_extend(x, target, "zext")?.into()
                })
            }
        }
    }
}
