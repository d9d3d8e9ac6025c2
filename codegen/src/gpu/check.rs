//! The GPU kernel verifier: launch and shared-memory limits, every register
//! defined once before use with its declared type, the scalar typing rules of the
//! CPU kernel IR, memory accesses that name existing memory with the right access
//! and stay in bounds where the index is a constant, vector widths, and barriers
//! reached uniformly.
//!
//! **Uniformity.** A barrier must be reached by every thread of the block or by
//! none, so it may not stand under an `if` whose condition, or in a loop whose
//! bounds, differ between threads of a block. A value *varies* when it depends on
//! the thread, lane or warp index, on a shuffle, or on a register assigned a
//! varying value or assigned under varying control flow; the analysis iterates
//! to a fixpoint (a loop may assign a register used before the assignment).
//! Loads at a uniform index count as uniform: threads that read different values
//! there race with a writer, which the SIMT interpreter reports.

use std::collections::HashSet;

use super::{
    Access, GExpr, GStmt, GpuKernel, Literal, Mem, Scalar, MAX_BLOCK_THREADS, MAX_GRID_X,
    MAX_GRID_YZ, MAX_SHARED_BYTES, MAX_VECTOR_BYTES, WARP_SIZE,
};
use crate::kernel::check::{binary_type, select_type, unary_type};

/// A malformed GPU kernel (always a scheduler bug; the message says where).
#[derive(Debug, thiserror::Error)]
#[error("GPU kernel `{kernel}`: {message}")]
pub struct GpuKernelError {
    /// The kernel's name.
    pub kernel: String,
    /// What is wrong.
    pub message: String,
}

pub(super) fn check(k: &GpuKernel) -> Result<(), GpuKernelError> {
    let fail = |message: String| GpuKernelError {
        kernel: k.name.clone(),
        message,
    };
    launch(k).map_err(fail)?;
    let mut types = TypeChecker {
        k,
        scope: vec![None; k.vars.len()],
    };
    types.block(&k.body).map_err(fail)?;
    let varying = varying_registers(k);
    barriers(&k.body, &varying, None).map_err(fail)
}

fn launch(k: &GpuKernel) -> Result<(), String> {
    let l = k.launch;
    if l.block == 0 || l.block > MAX_BLOCK_THREADS || !l.block.is_multiple_of(WARP_SIZE) {
        return Err(format!(
            "a block of {} threads (a multiple of {WARP_SIZE}, at most {MAX_BLOCK_THREADS})",
            l.block
        ));
    }
    let limits = [MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ];
    for (axis, (&g, &max)) in l.grid.iter().zip(&limits).enumerate() {
        if g == 0 || g > max {
            return Err(format!("grid axis {axis} of {g} blocks (1 to {max})"));
        }
    }
    let bytes = k.shared_bytes();
    if bytes > MAX_SHARED_BYTES {
        return Err(format!(
            "{bytes} bytes of shared memory per block, over {MAX_SHARED_BYTES}"
        ));
    }
    Ok(())
}

struct TypeChecker<'k> {
    k: &'k GpuKernel,
    /// Whether each register is in scope, and whether it is mutable.
    scope: Vec<Option<bool>>,
}

impl TypeChecker<'_> {
    fn block(&mut self, body: &[GStmt]) -> Result<(), String> {
        let saved = self.scope.clone();
        for s in body {
            self.stmt(s)?;
        }
        self.scope = saved;
        Ok(())
    }

    fn define(&mut self, var: usize, mutable: bool, ty: Scalar) -> Result<(), String> {
        let declared = *self
            .k
            .vars
            .get(var)
            .ok_or_else(|| format!("register v{var} is not declared"))?;
        if declared != ty {
            return Err(format!("v{var} is {declared} but is given a {ty}"));
        }
        if self.scope[var].is_some() {
            return Err(format!("v{var} is defined twice"));
        }
        self.scope[var] = Some(mutable);
        Ok(())
    }

    fn stmt(&mut self, s: &GStmt) -> Result<(), String> {
        match s {
            GStmt::Let { var, value } => {
                let t = self.expr(value)?;
                self.define(*var, false, t)
            }
            GStmt::Decl { var, init } => {
                let t = self.expr(init)?;
                self.define(*var, true, t)
            }
            GStmt::Assign { var, value } => {
                let t = self.expr(value)?;
                match self.scope.get(*var).copied().flatten() {
                    Some(true) if self.k.vars[*var] == t => Ok(()),
                    Some(true) => Err(format!(
                        "v{var} is {} but is assigned a {t}",
                        self.k.vars[*var]
                    )),
                    Some(false) => Err(format!("v{var} is immutable")),
                    None => Err(format!("v{var} is assigned before it is declared")),
                }
            }
            GStmt::Store { mem, index, value } => {
                self.access(*mem, index, 1, true)?;
                let t = self.expr(value)?;
                let m = self.k.mem_scalar(*mem);
                if t != m {
                    return Err(format!(
                        "store of a {t} into {m} memory {}",
                        self.name(*mem)
                    ));
                }
                Ok(())
            }
            GStmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                for (what, e) in [("start", start), ("end", end), ("step", step)] {
                    if self.expr(e)? != Scalar::I64 {
                        return Err(format!("loop v{var}: {what} is not i64"));
                    }
                }
                if let GExpr::Lit(Literal::Int(n, _)) = step {
                    if *n <= 0 {
                        return Err(format!("loop v{var}: step {n} is not positive"));
                    }
                }
                let saved = self.scope.clone();
                self.define(*var, false, Scalar::I64)?;
                self.block(body)?;
                self.scope = saved;
                Ok(())
            }
            GStmt::If {
                cond,
                then,
                otherwise,
            } => {
                if self.expr(cond)? != Scalar::Bool {
                    return Err("if condition is not bool".into());
                }
                self.block(then)?;
                self.block(otherwise)
            }
            GStmt::Barrier => Ok(()),
            GStmt::Shuffle { dst, src, arg, .. } => {
                let t = self.expr(&GExpr::Var(*src))?;
                if t.is_half() || t == Scalar::Bool {
                    return Err(format!("shuffle of a {t}"));
                }
                if self.expr(arg)? != Scalar::I64 {
                    return Err("shuffle operand is not i64".into());
                }
                self.define(*dst, false, t)
            }
            GStmt::LoadVec { dsts, mem, index } => {
                self.access(*mem, index, dsts.len(), false)?;
                let t = self.k.mem_scalar(*mem);
                for &d in dsts {
                    self.define(d, false, t)?;
                }
                Ok(())
            }
            GStmt::StoreVec { mem, index, values } => {
                self.access(*mem, index, values.len(), true)?;
                let m = self.k.mem_scalar(*mem);
                for v in values {
                    let t = self.expr(v)?;
                    if t != m {
                        return Err(format!(
                            "vector store of a {t} into {m} memory {}",
                            self.name(*mem)
                        ));
                    }
                }
                Ok(())
            }
            GStmt::AtomicAdd { mem, index, value } => {
                let Mem::Global(_) = mem else {
                    return Err("atomic add to shared memory".into());
                };
                self.access(*mem, index, 1, true)?;
                let m = self.k.mem_scalar(*mem);
                if !matches!(
                    m,
                    Scalar::F32
                        | Scalar::F64
                        | Scalar::I32
                        | Scalar::U32
                        | Scalar::I64
                        | Scalar::U64
                ) {
                    return Err(format!("atomic add on {m} memory"));
                }
                let t = self.expr(value)?;
                if t != m {
                    return Err(format!("atomic add of a {t} to {m} memory"));
                }
                Ok(())
            }
        }
    }

    fn name(&self, mem: Mem) -> String {
        match mem {
            Mem::Global(b) => format!("b{b}"),
            Mem::Shared(s) => format!("s{s}"),
        }
    }

    /// Checks an access of `width` consecutive elements at `index`: the memory
    /// exists with the right access, the width fits one aligned vector access,
    /// and a constant index is in bounds.
    fn access(&mut self, mem: Mem, index: &GExpr, width: usize, write: bool) -> Result<(), String> {
        let (len, scalar) = match mem {
            Mem::Global(b) => {
                let buf = self
                    .k
                    .buffers
                    .get(b)
                    .ok_or_else(|| format!("access to missing buffer b{b}"))?;
                let forbidden = if write { Access::Read } else { Access::Write };
                if buf.access == forbidden {
                    let what = if write {
                        "store to read-only"
                    } else {
                        "load from write-only"
                    };
                    return Err(format!("{what} buffer b{b} `{}`", buf.name));
                }
                (buf.len, buf.scalar)
            }
            Mem::Shared(s) => {
                let arr = self
                    .k
                    .shared
                    .get(s)
                    .ok_or_else(|| format!("access to missing shared array s{s}"))?;
                (arr.len, arr.scalar)
            }
        };
        if width == 0 || !width.is_power_of_two() || width * scalar.size() > MAX_VECTOR_BYTES {
            return Err(format!(
                "a vector of {width} {scalar} (a power of two, at most {MAX_VECTOR_BYTES} bytes)"
            ));
        }
        if self.expr(index)? != Scalar::I64 {
            return Err(format!("index into {} is not i64", self.name(mem)));
        }
        if let GExpr::Lit(Literal::Int(i, _)) = index {
            let fits = usize::try_from(*i).is_ok_and(|i| i.saturating_add(width) <= len);
            if !fits {
                return Err(format!(
                    "constant index {i} (width {width}) outside {} of {len} elements",
                    self.name(mem)
                ));
            }
        }
        Ok(())
    }

    fn expr(&mut self, e: &GExpr) -> Result<Scalar, String> {
        match e {
            GExpr::Lit(l) => Ok(l.scalar()),
            GExpr::Var(v) => match self.scope.get(*v).copied().flatten() {
                Some(_) => Ok(self.k.vars[*v]),
                None => Err(format!("v{v} is used out of scope")),
            },
            GExpr::Special(_) => Ok(Scalar::I64),
            GExpr::Load { mem, index } => {
                self.access(*mem, index, 1, false)?;
                Ok(self.k.mem_scalar(*mem))
            }
            GExpr::Unary(op, x) => {
                let t = self.expr(x)?;
                unary_type(*op, t)
            }
            GExpr::Binary(op, a, b) => {
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                binary_type(*op, ta, tb)
            }
            GExpr::Select(c, a, b) => {
                let tc = self.expr(c)?;
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                select_type(tc, ta, tb)
            }
            GExpr::Cast(s, x) => {
                self.expr(x)?;
                Ok(*s)
            }
        }
    }
}

/// Registers whose value may differ between threads of one block.
fn varying_registers(k: &GpuKernel) -> HashSet<usize> {
    let mut varying = HashSet::new();
    loop {
        let before = varying.len();
        mark(&k.body, false, &mut varying);
        if varying.len() == before {
            return varying;
        }
    }
}

/// One pass of the uniformity analysis over `body`, run under varying control
/// flow when `divergent`.
fn mark(body: &[GStmt], divergent: bool, varying: &mut HashSet<usize>) {
    for s in body {
        match s {
            GStmt::Let { var, value: e }
            | GStmt::Decl { var, init: e }
            | GStmt::Assign { var, value: e } => {
                if divergent || expr_varies(e, varying) {
                    varying.insert(*var);
                }
            }
            GStmt::Shuffle { dst, .. } => {
                varying.insert(*dst);
            }
            GStmt::LoadVec { dsts, index, .. } => {
                if divergent || expr_varies(index, varying) {
                    varying.extend(dsts);
                }
            }
            GStmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let bounds_vary = [start, end, step].iter().any(|e| expr_varies(e, varying));
                if divergent || bounds_vary {
                    varying.insert(*var);
                }
                mark(body, divergent || bounds_vary, varying);
            }
            GStmt::If {
                cond,
                then,
                otherwise,
            } => {
                let d = divergent || expr_varies(cond, varying);
                mark(then, d, varying);
                mark(otherwise, d, varying);
            }
            GStmt::Store { .. }
            | GStmt::StoreVec { .. }
            | GStmt::AtomicAdd { .. }
            | GStmt::Barrier => {}
        }
    }
}

fn expr_varies(e: &GExpr, varying: &HashSet<usize>) -> bool {
    match e {
        GExpr::Lit(_) => false,
        GExpr::Var(v) => varying.contains(v),
        GExpr::Special(s) => s.varies_in_block(),
        GExpr::Load { index, .. } => expr_varies(index, varying),
        GExpr::Unary(_, x) | GExpr::Cast(_, x) => expr_varies(x, varying),
        GExpr::Binary(_, a, b) => expr_varies(a, varying) || expr_varies(b, varying),
        GExpr::Select(c, a, b) => {
            expr_varies(c, varying) || expr_varies(a, varying) || expr_varies(b, varying)
        }
    }
}

/// Refuses a barrier under control flow that varies within a block; `under`
/// names the innermost varying construct around `body`.
fn barriers(body: &[GStmt], varying: &HashSet<usize>, under: Option<&str>) -> Result<(), String> {
    for s in body {
        match s {
            GStmt::Barrier => {
                if let Some(what) = under {
                    return Err(format!(
                        "a barrier under {what} that differs between threads of a block \
                         (every thread must reach it)"
                    ));
                }
            }
            GStmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let vary = [start, end, step].iter().any(|e| expr_varies(e, varying));
                let label = format!("loop v{var}, whose bounds");
                barriers(body, varying, if vary { Some(&label) } else { under })?;
            }
            GStmt::If {
                cond,
                then,
                otherwise,
            } => {
                let vary = expr_varies(cond, varying);
                let label = "an `if` whose condition";
                let inner = if vary { Some(label) } else { under };
                barriers(then, varying, inner)?;
                barriers(otherwise, varying, inner)?;
            }
            _ => {}
        }
    }
    Ok(())
}
