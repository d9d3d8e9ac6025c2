//! The kernel verifier: every variable defined before use with its declared type,
//! operand types agree, loads and stores name existing buffers with the right
//! access, indices are `i64`, parallel loops only at the top.

use super::{Access, BinOp, Expr, Kernel, LoopKind, Scalar, Stmt, UnOp};

/// A malformed kernel (always a scheduler bug; the message says where).
#[derive(Debug, thiserror::Error)]
#[error("kernel `{kernel}`: {message}")]
pub struct KernelError {
    /// The kernel's name.
    pub kernel: String,
    /// What is wrong.
    pub message: String,
}

struct Checker<'k> {
    k: &'k Kernel,
    /// Whether each variable is in scope, and whether it is mutable.
    scope: Vec<Option<bool>>,
}

pub(super) fn check(k: &Kernel) -> Result<(), KernelError> {
    let mut c = Checker {
        k,
        scope: vec![None; k.vars.len()],
    };
    c.block(&k.body, true).map_err(|message| KernelError {
        kernel: k.name.clone(),
        message,
    })
}

impl Checker<'_> {
    fn block(&mut self, body: &[Stmt], top: bool) -> Result<(), String> {
        let saved = self.scope.clone();
        for s in body {
            self.stmt(s, top && body.len() == 1)?;
        }
        self.scope = saved;
        Ok(())
    }

    fn define(&mut self, var: usize, mutable: bool, ty: Scalar) -> Result<(), String> {
        let declared = *self
            .k
            .vars
            .get(var)
            .ok_or_else(|| format!("variable v{var} is not declared"))?;
        if declared != ty {
            return Err(format!("v{var} is {declared} but is given a {ty}"));
        }
        if self.scope[var].is_some() {
            return Err(format!("v{var} is defined twice"));
        }
        self.scope[var] = Some(mutable);
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, may_be_parallel: bool) -> Result<(), String> {
        match s {
            Stmt::For {
                var,
                extent,
                kind,
                body,
            } => {
                if *kind == LoopKind::Parallel && !may_be_parallel {
                    return Err(format!(
                        "loop v{var}: only the kernel's single outermost loop may be parallel"
                    ));
                }
                if *extent < 0 {
                    return Err(format!("loop v{var}: negative extent {extent}"));
                }
                let saved = self.scope.clone();
                self.define(*var, false, Scalar::I64)?;
                self.block(body, false)?;
                self.scope = saved;
                Ok(())
            }
            Stmt::Let { var, value } => {
                let t = self.expr(value)?;
                self.define(*var, false, t)
            }
            Stmt::Decl { var, init } => {
                let t = self.expr(init)?;
                self.define(*var, true, t)
            }
            Stmt::Assign { var, value } => {
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
            Stmt::Store { buf, index, value } => {
                let b = self
                    .k
                    .buffers
                    .get(*buf)
                    .ok_or_else(|| format!("store to missing buffer b{buf}"))?;
                if b.access == Access::Read {
                    return Err(format!("store to read-only buffer b{buf} `{}`", b.name));
                }
                self.index(index)?;
                let t = self.expr(value)?;
                if t != b.scalar {
                    return Err(format!("store of a {t} into {} buffer b{buf}", b.scalar));
                }
                Ok(())
            }
        }
    }

    fn index(&mut self, e: &Expr) -> Result<(), String> {
        match self.expr(e)? {
            Scalar::I64 => Ok(()),
            t => Err(format!("index of type {t}")),
        }
    }

    fn expr(&mut self, e: &Expr) -> Result<Scalar, String> {
        match e {
            Expr::Lit(l) => Ok(l.scalar()),
            Expr::Var(v) => match self.scope.get(*v).copied().flatten() {
                Some(_) => Ok(self.k.vars[*v]),
                None => Err(format!("v{v} is used out of scope")),
            },
            Expr::Load { buf, index } => {
                let b = self
                    .k
                    .buffers
                    .get(*buf)
                    .ok_or_else(|| format!("load from missing buffer b{buf}"))?;
                if b.access == Access::Write {
                    return Err(format!("load from write-only buffer b{buf} `{}`", b.name));
                }
                self.index(index)?;
                Ok(b.scalar)
            }
            Expr::Unary(op, x) => {
                let t = self.expr(x)?;
                unary_type(*op, t)
            }
            Expr::Binary(op, a, b) => {
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                binary_type(*op, ta, tb)
            }
            Expr::Select(c, a, b) => {
                let tc = self.expr(c)?;
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                select_type(tc, ta, tb)
            }
            Expr::Cast(s, x) => {
                self.expr(x)?;
                Ok(*s)
            }
        }
    }
}

/// The type of `op(x)` for an operand of type `t`, or why it is ill typed (the
/// rules every kernel IR shares: the CPU's and the GPU's).
pub(crate) fn unary_type(op: UnOp, t: Scalar) -> Result<Scalar, String> {
    let ok = match op {
        UnOp::Neg | UnOp::Abs => t.is_float() || t.is_signed_int(),
        UnOp::Not => t.is_int() || t == Scalar::Bool,
        _ => t.is_float(),
    };
    if !ok {
        return Err(format!("{op:?} of a {t}"));
    }
    Ok(if op == UnOp::IsNan { Scalar::Bool } else { t })
}

/// The type of `op(a, b)` for operands of types `ta` and `tb`, or why it is ill
/// typed.
pub(crate) fn binary_type(op: BinOp, ta: Scalar, tb: Scalar) -> Result<Scalar, String> {
    if ta != tb {
        return Err(format!("{op:?} of a {ta} and a {tb}"));
    }
    if ta.is_half() {
        return Err(format!("{op:?} of {ta} (storage-only type)"));
    }
    let ok = match op {
        BinOp::Pow => ta.is_float(),
        BinOp::And | BinOp::Or | BinOp::Xor => ta.is_int() || ta == Scalar::Bool,
        BinOp::Shl | BinOp::Shr => ta.is_int(),
        BinOp::Eq | BinOp::Ne => true,
        _ => ta != Scalar::Bool,
    };
    if !ok {
        return Err(format!("{op:?} of a {ta}"));
    }
    Ok(if op.is_comparison() { Scalar::Bool } else { ta })
}

/// The type of `cond ? a : b`, or why it is ill typed.
pub(crate) fn select_type(cond: Scalar, ta: Scalar, tb: Scalar) -> Result<Scalar, String> {
    if cond != Scalar::Bool {
        return Err("select condition is not bool".into());
    }
    if ta != tb {
        return Err(format!("select of a {ta} and a {tb}"));
    }
    Ok(ta)
}
