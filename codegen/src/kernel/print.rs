//! The text form of kernels, for snapshots and `--emit-kernels`:
//!
//! ```text
//! kernel relu(x: in f32[1024], y: out f32[1024]) {
//!   parallel for v0 in 0..1024 {
//!     y[v0] = max(x[v0], 0f32)
//!   }
//! }
//! ```

use std::fmt::{self, Write};

use super::{Access, BinOp, Expr, Kernel, Literal, LoopKind, Stmt, UnOp};

/// Writes `kernel` in its text form.
pub(super) fn print(kernel: &Kernel, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "kernel {}(", kernel.name)?;
    for (i, b) in kernel.buffers.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        let access = match b.access {
            Access::Read => "in",
            Access::Write => "out",
            Access::ReadWrite => "inout",
        };
        write!(f, "b{i} {}: {access} {}[{}]", b.name, b.scalar, b.len)?;
    }
    f.write_str(") {\n")?;
    for s in &kernel.body {
        stmt(kernel, s, 1, f)?;
    }
    f.write_str("}\n")
}

fn stmt(k: &Kernel, s: &Stmt, depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let pad = "  ".repeat(depth);
    match s {
        Stmt::For {
            var,
            extent,
            kind,
            body,
        } => {
            let par = if *kind == LoopKind::Parallel {
                "parallel "
            } else {
                ""
            };
            writeln!(f, "{pad}{par}for v{var} in 0..{extent} {{")?;
            for s in body {
                stmt(k, s, depth + 1, f)?;
            }
            writeln!(f, "{pad}}}")
        }
        Stmt::Let { var, value } => {
            writeln!(f, "{pad}let v{var}: {} = {}", k.vars[*var], expr(value))
        }
        Stmt::Decl { var, init } => {
            writeln!(f, "{pad}var v{var}: {} = {}", k.vars[*var], expr(init))
        }
        Stmt::Assign { var, value } => writeln!(f, "{pad}v{var} = {}", expr(value)),
        Stmt::Store { buf, index, value } => {
            writeln!(f, "{pad}b{buf}[{}] = {}", expr(index), expr(value))
        }
    }
}

/// The text of one expression.
pub(crate) fn expr(e: &Expr) -> String {
    let mut out = String::new();
    write_expr(e, &mut out);
    out
}

fn write_expr(e: &Expr, out: &mut String) {
    match e {
        Expr::Lit(l) => out.push_str(&literal(l)),
        Expr::Var(v) => {
            let _ = write!(out, "v{v}");
        }
        Expr::Load { buf, index } => {
            let _ = write!(out, "b{buf}[");
            write_expr(index, out);
            out.push(']');
        }
        Expr::Unary(op, x) => {
            out.push_str(unary_name(*op));
            out.push('(');
            write_expr(x, out);
            out.push(')');
        }
        Expr::Binary(op, a, b) => {
            out.push_str(&binary_name(*op));
            out.push('(');
            write_expr(a, out);
            out.push_str(", ");
            write_expr(b, out);
            out.push(')');
        }
        Expr::Select(c, a, b) => {
            out.push_str("select(");
            write_expr(c, out);
            out.push_str(", ");
            write_expr(a, out);
            out.push_str(", ");
            write_expr(b, out);
            out.push(')');
        }
        Expr::Cast(s, x) => {
            let _ = write!(out, "{s}(");
            write_expr(x, out);
            out.push(')');
        }
    }
}

/// The text of a literal: `2.0f32`, `7` (an `i64`), `7i32`.
pub(crate) fn literal(l: &Literal) -> String {
    match l {
        Literal::Float(x, s) => format!("{x:?}{s}"),
        Literal::Int(n, s) if *s == super::Scalar::I64 => n.to_string(),
        Literal::Int(n, s) => format!("{n}{s}"),
    }
}

/// The name a binary operation prints as (`add`, `max`, `lt`).
pub(crate) fn binary_name(op: BinOp) -> String {
    format!("{op:?}").to_lowercase()
}

/// The name a unary operation prints as (`neg`, `exp`, `isnan`).
pub(crate) fn unary_name(op: UnOp) -> &'static str {
    match op {
        UnOp::Neg => "neg",
        UnOp::Abs => "abs",
        UnOp::Sqrt => "sqrt",
        UnOp::Exp => "exp",
        UnOp::Log => "log",
        UnOp::Tanh => "tanh",
        UnOp::Erf => "erf",
        UnOp::Sigmoid => "sigmoid",
        UnOp::Sin => "sin",
        UnOp::Cos => "cos",
        UnOp::Tan => "tan",
        UnOp::Asin => "asin",
        UnOp::Acos => "acos",
        UnOp::Atan => "atan",
        UnOp::Sinh => "sinh",
        UnOp::Cosh => "cosh",
        UnOp::Asinh => "asinh",
        UnOp::Acosh => "acosh",
        UnOp::Atanh => "atanh",
        UnOp::Floor => "floor",
        UnOp::Ceil => "ceil",
        UnOp::Round => "round",
        UnOp::Not => "not",
        UnOp::IsNan => "isnan",
    }
}
