//! Small rewrites and queries of CPU kernel IR that the specialized GPU
//! lowerings share: renaming registers, replacing sub-expressions, and the
//! buffers a statement reads and writes.

use std::collections::{BTreeSet, HashMap};

use crate::kernel::{BufId, Expr, Stmt, VarId};

/// `e` with every sub-expression `f` replaces (outermost first) replaced, and
/// every other register renamed through `vars` (unmapped registers stay).
pub(super) fn expr(
    e: &Expr,
    vars: &HashMap<VarId, VarId>,
    f: &dyn Fn(&Expr) -> Option<Expr>,
) -> Expr {
    if let Some(r) = f(e) {
        return r;
    }
    let go = |x: &Expr| Box::new(expr(x, vars, f));
    match e {
        Expr::Lit(_) => e.clone(),
        Expr::Var(v) => Expr::Var(*vars.get(v).unwrap_or(v)),
        Expr::Load { buf, index } => Expr::Load {
            buf: *buf,
            index: go(index),
        },
        Expr::Unary(op, x) => Expr::Unary(*op, go(x)),
        Expr::Binary(op, a, b) => Expr::Binary(*op, go(a), go(b)),
        Expr::Select(c, a, b) => Expr::Select(go(c), go(a), go(b)),
        Expr::Cast(s, x) => Expr::Cast(*s, go(x)),
    }
}

/// `body` with its registers (definitions and uses) renamed through `vars` and
/// its expressions rewritten by `f` (see [`expr`]).
pub(super) fn stmts(
    body: &[Stmt],
    vars: &HashMap<VarId, VarId>,
    f: &dyn Fn(&Expr) -> Option<Expr>,
) -> Vec<Stmt> {
    let name = |v: &VarId| *vars.get(v).unwrap_or(v);
    body.iter()
        .map(|s| match s {
            Stmt::For {
                var,
                extent,
                kind,
                body,
            } => Stmt::For {
                var: name(var),
                extent: *extent,
                kind: *kind,
                body: stmts(body, vars, f),
            },
            Stmt::Let { var, value } => Stmt::Let {
                var: name(var),
                value: expr(value, vars, f),
            },
            Stmt::Decl { var, init } => Stmt::Decl {
                var: name(var),
                init: expr(init, vars, f),
            },
            Stmt::Assign { var, value } => Stmt::Assign {
                var: name(var),
                value: expr(value, vars, f),
            },
            Stmt::Store { buf, index, value } => Stmt::Store {
                buf: *buf,
                index: expr(index, vars, f),
                value: expr(value, vars, f),
            },
        })
        .collect()
}

/// Calls `f` on every expression of `body` (not their sub-expressions), in
/// statement order, nested loops included.
pub(super) fn each_expr<'a>(body: &'a [Stmt], f: &mut dyn FnMut(&'a Expr)) {
    for s in body {
        match s {
            Stmt::For { body, .. } => each_expr(body, f),
            Stmt::Let { value: e, .. }
            | Stmt::Decl { init: e, .. }
            | Stmt::Assign { value: e, .. } => f(e),
            Stmt::Store { index, value, .. } => {
                f(index);
                f(value);
            }
        }
    }
}

/// Calls `f` on `e` and every sub-expression of it.
pub(super) fn each_sub<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
    f(e);
    match e {
        Expr::Lit(_) | Expr::Var(_) => {}
        Expr::Load { index, .. } => each_sub(index, f),
        Expr::Unary(_, x) | Expr::Cast(_, x) => each_sub(x, f),
        Expr::Binary(_, a, b) => {
            each_sub(a, f);
            each_sub(b, f);
        }
        Expr::Select(c, a, b) => {
            each_sub(c, f);
            each_sub(a, f);
            each_sub(b, f);
        }
    }
}

/// The buffers `body` loads from and the buffers it stores to.
pub(super) fn buffers(body: &[Stmt]) -> (BTreeSet<BufId>, BTreeSet<BufId>) {
    let mut loads = BTreeSet::new();
    each_expr(body, &mut |e| {
        each_sub(e, &mut |x| {
            if let Expr::Load { buf, .. } = x {
                loads.insert(*buf);
            }
        })
    });
    let mut stores = BTreeSet::new();
    each_store(body, &mut |buf, _| {
        stores.insert(buf);
    });
    (loads, stores)
}

/// Calls `f` with the buffer and index of every store in `body`.
pub(super) fn each_store<'a>(body: &'a [Stmt], f: &mut dyn FnMut(BufId, &'a Expr)) {
    for s in body {
        match s {
            Stmt::For { body, .. } => each_store(body, f),
            Stmt::Store { buf, index, .. } => f(*buf, index),
            _ => {}
        }
    }
}
