//! The text form of GPU kernels, for snapshots and `--emit-kernels`:
//!
//! ```text
//! gpu kernel scale<<<[4, 1, 1], 128>>>(b0 x: in f32[1024], b1 y: out f32[1024]) {
//!   for v0 in add(mul(block.x, block_dim), thread)..1024 step mul(grid_dim.x, block_dim) {
//!     b1[v0] = mul(b0[v0], 2.0f32)
//!   }
//! }
//! ```
//!
//! Scalar expressions print as in the CPU kernel IR; shared arrays are `sN`,
//! global buffers `bN`, registers `vN`.

use std::fmt::{self, Write};

use super::{Access, GExpr, GStmt, GpuKernel, Mem, ShuffleMode, Special};
use crate::kernel::print::{binary_name, literal, unary_name};

/// Writes `kernel` in its text form.
pub(super) fn print(k: &GpuKernel, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let l = k.launch;
    write!(f, "gpu kernel {}<<<{:?}, {}>>>(", k.name, l.grid, l.block)?;
    for (i, b) in k.buffers.iter().enumerate() {
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
    f.write_str(")")?;
    if let Some(n) = k.min_blocks {
        write!(f, " min_blocks {n}")?;
    }
    f.write_str(" {\n")?;
    for (i, s) in k.shared.iter().enumerate() {
        writeln!(f, "  shared s{i} {}: {}[{}]", s.name, s.scalar, s.len)?;
    }
    for s in &k.body {
        stmt(k, s, 1, f)?;
    }
    f.write_str("}\n")
}

fn mem(m: Mem) -> String {
    match m {
        Mem::Global(b) => format!("b{b}"),
        Mem::Shared(s) => format!("s{s}"),
    }
}

fn block(k: &GpuKernel, body: &[GStmt], depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for s in body {
        stmt(k, s, depth, f)?;
    }
    Ok(())
}

fn stmt(k: &GpuKernel, s: &GStmt, depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let pad = "  ".repeat(depth);
    match s {
        GStmt::Let { var, value } => {
            writeln!(f, "{pad}let v{var}: {} = {}", k.vars[*var], expr(value))
        }
        GStmt::Decl { var, init } => {
            writeln!(f, "{pad}var v{var}: {} = {}", k.vars[*var], expr(init))
        }
        GStmt::Assign { var, value } => writeln!(f, "{pad}v{var} = {}", expr(value)),
        GStmt::Store {
            mem: m,
            index,
            value,
        } => writeln!(f, "{pad}{}[{}] = {}", mem(*m), expr(index), expr(value)),
        GStmt::For {
            var,
            start,
            end,
            step,
            body,
        } => {
            writeln!(
                f,
                "{pad}for v{var} in {}..{} step {} {{",
                expr(start),
                expr(end),
                expr(step)
            )?;
            block(k, body, depth + 1, f)?;
            writeln!(f, "{pad}}}")
        }
        GStmt::If {
            cond,
            then,
            otherwise,
        } => {
            writeln!(f, "{pad}if {} {{", expr(cond))?;
            block(k, then, depth + 1, f)?;
            if !otherwise.is_empty() {
                writeln!(f, "{pad}}} else {{")?;
                block(k, otherwise, depth + 1, f)?;
            }
            writeln!(f, "{pad}}}")
        }
        GStmt::Barrier => writeln!(f, "{pad}barrier"),
        GStmt::Shuffle {
            dst,
            src,
            mode,
            arg,
        } => {
            let m = match mode {
                ShuffleMode::Xor => "xor",
                ShuffleMode::Down => "down",
                ShuffleMode::Up => "up",
                ShuffleMode::Index => "idx",
            };
            writeln!(
                f,
                "{pad}let v{dst}: {} = shuffle.{m}(v{src}, {})",
                k.vars[*dst],
                expr(arg)
            )
        }
        GStmt::LoadVec {
            dsts,
            mem: m,
            index,
        } => {
            let names: Vec<String> = dsts.iter().map(|d| format!("v{d}")).collect();
            writeln!(
                f,
                "{pad}let ({}): {}x{} = {}[{}..+{}]",
                names.join(", "),
                k.mem_scalar(*m),
                dsts.len(),
                mem(*m),
                expr(index),
                dsts.len()
            )
        }
        GStmt::StoreVec {
            mem: m,
            index,
            values,
        } => {
            let vals: Vec<String> = values.iter().map(expr).collect();
            writeln!(
                f,
                "{pad}{}[{}..+{}] = ({})",
                mem(*m),
                expr(index),
                values.len(),
                vals.join(", ")
            )
        }
        GStmt::AtomicAdd {
            mem: m,
            index,
            value,
        } => writeln!(
            f,
            "{pad}atomic {}[{}] += {}",
            mem(*m),
            expr(index),
            expr(value)
        ),
    }
}

/// The text of one expression.
pub(crate) fn expr(e: &GExpr) -> String {
    let mut out = String::new();
    write_expr(e, &mut out);
    out
}

fn write_expr(e: &GExpr, out: &mut String) {
    match e {
        GExpr::Lit(l) => out.push_str(&literal(l)),
        GExpr::Var(v) => {
            let _ = write!(out, "v{v}");
        }
        GExpr::Special(s) => {
            let _ = match s {
                Special::Thread => write!(out, "thread"),
                Special::Block(a) => write!(out, "block.{}", a.name()),
                Special::BlockDim => write!(out, "block_dim"),
                Special::GridDim(a) => write!(out, "grid_dim.{}", a.name()),
                Special::Lane => write!(out, "lane"),
                Special::Warp => write!(out, "warp"),
            };
        }
        GExpr::Load { mem: m, index } => {
            out.push_str(&mem(*m));
            out.push('[');
            write_expr(index, out);
            out.push(']');
        }
        GExpr::Unary(op, x) => {
            out.push_str(unary_name(*op));
            out.push('(');
            write_expr(x, out);
            out.push(')');
        }
        GExpr::Binary(op, a, b) => {
            out.push_str(&binary_name(*op));
            out.push('(');
            write_expr(a, out);
            out.push_str(", ");
            write_expr(b, out);
            out.push(')');
        }
        GExpr::Select(c, a, b) => {
            out.push_str("select(");
            write_expr(c, out);
            out.push_str(", ");
            write_expr(a, out);
            out.push_str(", ");
            write_expr(b, out);
            out.push(')');
        }
        GExpr::Cast(s, x) => {
            let _ = write!(out, "{s}(");
            write_expr(x, out);
            out.push(')');
        }
    }
}
