//! Which inner loops of a row may be split between the threads of a block: the
//! proof obligations of [`super`]'s module doc, checked syntactically and
//! conservatively (anything the analysis cannot read is "not distributable").

use std::collections::{BTreeMap, HashMap, HashSet};

use super::super::rewrite::{each_expr, each_store, each_sub};
use crate::kernel::{BinOp, BufId, Expr, Kernel, Literal, Scalar, Stmt, VarId};

/// A register the loop folds its iterations into with `op`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reduction {
    /// The register (declared before the loop).
    pub var: VarId,
    /// The combining operation (associative and commutative for its type).
    pub op: BinOp,
    /// `op`'s identity for the register's type.
    pub identity: Literal,
}

/// The reductions of the loop `for var in 0..extent { body }` when its
/// iterations may run on different threads in any order, `None` otherwise.
pub(crate) fn distributable(
    k: &Kernel,
    var: VarId,
    extent: i64,
    body: &[Stmt],
) -> Option<Vec<Reduction>> {
    let mut scope = Scope::default();
    scope.loops.insert(var, extent);
    scope.collect(body);
    let reductions = scope.reductions(k, body)?;
    let stored = stored_buffers(body);
    let outer: HashSet<VarId> = reductions.iter().map(|r| r.var).collect();
    let lin = Linearizer {
        scope: &scope,
        reduced: &outer,
        stored: &stored,
    };
    // Every access to a stored buffer at one index, which no two iterations share.
    let mut indices: HashMap<BufId, Vec<&Expr>> = HashMap::new();
    each_store(body, &mut |buf, index| {
        indices.entry(buf).or_default().push(index)
    });
    each_expr(body, &mut |e| {
        each_sub(e, &mut |x| {
            if let Expr::Load { buf, index } = x {
                if stored.contains(buf) {
                    indices.entry(*buf).or_default().push(index);
                }
            }
        })
    });
    for list in indices.values() {
        let first = lin.linear(list[0])?;
        for other in &list[1..] {
            if !first.same(&lin.linear(other)?) {
                return None;
            }
        }
        if extent > 1 && !first.separates(var, &scope.loops) {
            return None;
        }
    }
    Some(reductions)
}

fn stored_buffers(body: &[Stmt]) -> HashSet<BufId> {
    let mut stored = HashSet::new();
    each_store(body, &mut |buf, _| {
        stored.insert(buf);
    });
    stored
}

/// The registers a loop body defines.
#[derive(Default)]
struct Scope {
    /// Loop variables (the distributed loop's and nested loops') and extents.
    loops: HashMap<VarId, i64>,
    /// Immutable bindings and their values.
    lets: HashMap<VarId, Expr>,
    /// Mutable registers declared inside (private to an iteration).
    decls: HashSet<VarId>,
}

impl Scope {
    fn collect(&mut self, body: &[Stmt]) {
        for s in body {
            match s {
                Stmt::For {
                    var, extent, body, ..
                } => {
                    self.loops.insert(*var, *extent);
                    self.collect(body);
                }
                Stmt::Let { var, value } => {
                    self.lets.insert(*var, value.clone());
                }
                Stmt::Decl { var, .. } => {
                    self.decls.insert(*var);
                }
                Stmt::Assign { .. } | Stmt::Store { .. } => {}
            }
        }
    }

    fn local(&self, v: VarId) -> bool {
        self.loops.contains_key(&v) || self.lets.contains_key(&v) || self.decls.contains(&v)
    }

    /// The registers declared outside the body that it assigns, each of which
    /// must be a reduction: only ever updated as `r = op(r, e)` (or `op(e, r)`)
    /// with one `op` and read nowhere else.
    fn reductions(&self, k: &Kernel, body: &[Stmt]) -> Option<Vec<Reduction>> {
        let mut found: BTreeMap<VarId, (BinOp, usize)> = BTreeMap::new();
        let mut ok = true;
        each_assign(body, &mut |var, value| {
            if self.local(var) {
                return;
            }
            let op = match value {
                Expr::Binary(op, a, b) if **a == Expr::Var(var) || **b == Expr::Var(var) => *op,
                _ => {
                    ok = false;
                    return;
                }
            };
            let entry = found.entry(var).or_insert((op, 0));
            ok &= entry.0 == op;
            entry.1 += 1;
        });
        if !ok {
            return None;
        }
        // Each update reads its register once; any other read would see a
        // partial value.
        let mut reads: HashMap<VarId, usize> = HashMap::new();
        each_expr(body, &mut |e| {
            each_sub(e, &mut |x| {
                if let Expr::Var(v) = x {
                    if found.contains_key(v) {
                        *reads.entry(*v).or_default() += 1;
                    }
                }
            })
        });
        found
            .into_iter()
            .map(|(var, (op, updates))| {
                (reads.get(&var) == Some(&updates)).then_some(())?;
                Some(Reduction {
                    var,
                    op,
                    identity: identity(op, k.vars[var])?,
                })
            })
            .collect()
    }
}

fn each_assign<'a>(body: &'a [Stmt], f: &mut dyn FnMut(VarId, &'a Expr)) {
    for s in body {
        match s {
            Stmt::For { body, .. } => each_assign(body, f),
            Stmt::Assign { var, value } => f(*var, value),
            _ => {}
        }
    }
}

/// The identity of `op` over `s` where `op` is associative and commutative in
/// the kernel IR's semantics: wrapping integer add; float add up to rounding
/// (the identity is −0, so a sum of −0s stays −0); NaN-propagating max and min.
pub(crate) fn identity(op: BinOp, s: Scalar) -> Option<Literal> {
    let int = |n: i64| Some(Literal::Int(n, s));
    let (lo, hi): (i64, i64) = match s {
        Scalar::I8 => (i8::MIN.into(), i8::MAX.into()),
        Scalar::I16 => (i16::MIN.into(), i16::MAX.into()),
        Scalar::I32 => (i32::MIN.into(), i32::MAX.into()),
        Scalar::I64 => (i64::MIN, i64::MAX),
        Scalar::U8 => (0, u8::MAX.into()),
        Scalar::U16 => (0, u16::MAX.into()),
        Scalar::U32 => (0, u32::MAX.into()),
        // u64's maximum has no i64 literal; its `min` is not distributed.
        Scalar::U64 => (0, -1),
        _ => (0, 0),
    };
    match (op, s) {
        (BinOp::Add, s) if s.is_float() => Some(Literal::Float(-0.0, s)),
        (BinOp::Max, s) if s.is_float() => Some(Literal::Float(f64::NEG_INFINITY, s)),
        (BinOp::Min, s) if s.is_float() => Some(Literal::Float(f64::INFINITY, s)),
        (BinOp::Add, s) if s.is_int() => int(0),
        (BinOp::Max, s) if s.is_int() => int(lo),
        (BinOp::Min, s) if s.is_int() && hi > lo => int(hi),
        _ => None,
    }
}

/// An index as `Σ cᵥ·v + constant + Σ terms`: `v` loop variables, terms
/// expressions that are the same in every iteration.
#[derive(Debug)]
struct Linear {
    coefs: BTreeMap<VarId, i64>,
    constant: i64,
    terms: Vec<(i64, Expr)>,
}

impl Linear {
    fn constant(c: i64) -> Linear {
        Linear {
            coefs: BTreeMap::new(),
            constant: c,
            terms: Vec::new(),
        }
    }

    fn term(e: Expr) -> Linear {
        Linear {
            terms: vec![(1, e)],
            ..Linear::constant(0)
        }
    }

    fn scaled(mut self, c: i64) -> Linear {
        self.coefs.values_mut().for_each(|x| *x = x.wrapping_mul(c));
        self.constant = self.constant.wrapping_mul(c);
        self.terms
            .iter_mut()
            .for_each(|t| t.0 = t.0.wrapping_mul(c));
        self.normalized()
    }

    fn plus(mut self, other: Linear) -> Linear {
        for (v, c) in other.coefs {
            let x = self.coefs.entry(v).or_default();
            *x = x.wrapping_add(c);
        }
        self.constant = self.constant.wrapping_add(other.constant);
        self.terms.extend(other.terms);
        self.normalized()
    }

    /// Merges equal terms and drops zero coefficients, so equal sums compare equal.
    fn normalized(mut self) -> Linear {
        self.coefs.retain(|_, c| *c != 0);
        let mut terms: Vec<(i64, Expr)> = Vec::new();
        for (c, e) in self.terms {
            match terms.iter_mut().find(|t| t.1 == e) {
                Some(t) => t.0 = t.0.wrapping_add(c),
                None => terms.push((c, e)),
            }
        }
        terms.retain(|t| t.0 != 0);
        self.terms = terms;
        self
    }

    fn is_constant(&self) -> Option<i64> {
        (self.coefs.is_empty() && self.terms.is_empty()).then_some(self.constant)
    }

    fn same(&self, other: &Linear) -> bool {
        self.coefs == other.coefs
            && self.constant == other.constant
            && self.terms.len() == other.terms.len()
            && self.terms.iter().all(|t| other.terms.contains(t))
    }

    /// True when two iterations of loop `var` never reach the same index: its
    /// coefficient outweighs everything the nested loops add (`|c| > Σ |cₖ|·(nₖ − 1)`).
    fn separates(&self, var: VarId, loops: &HashMap<VarId, i64>) -> bool {
        let Some(&c) = self.coefs.get(&var) else {
            return false;
        };
        let mut spread: i128 = 0;
        for (v, &ck) in &self.coefs {
            if *v != var {
                spread += (ck as i128).abs() * (loops[v].max(1) - 1) as i128;
            }
        }
        (c as i128).abs() > spread
    }
}

/// Reads index expressions of one loop body as [`Linear`] sums.
struct Linearizer<'a> {
    scope: &'a Scope,
    /// Reduction registers (their value differs between threads).
    reduced: &'a HashSet<VarId>,
    /// Buffers the loop stores to (a load of one may differ between iterations).
    stored: &'a HashSet<BufId>,
}

impl Linearizer<'_> {
    /// `e` as a linear sum, or `None` when it is not affine in the loop
    /// variables with constant coefficients.
    fn linear(&self, e: &Expr) -> Option<Linear> {
        match e {
            Expr::Lit(Literal::Int(n, Scalar::I64)) => Some(Linear::constant(*n)),
            Expr::Var(v) if self.scope.loops.contains_key(v) => Some(Linear {
                coefs: BTreeMap::from([(*v, 1)]),
                ..Linear::constant(0)
            }),
            Expr::Var(v) if self.scope.lets.contains_key(v) => self.linear(&self.scope.lets[v]),
            Expr::Binary(BinOp::Add, a, b) => Some(self.linear(a)?.plus(self.linear(b)?)),
            Expr::Binary(BinOp::Sub, a, b) => {
                Some(self.linear(a)?.plus(self.linear(b)?.scaled(-1)))
            }
            Expr::Binary(BinOp::Mul, a, b) => {
                let (la, lb) = (self.linear(a), self.linear(b));
                match (la, lb) {
                    (Some(la), Some(lb)) => match (la.is_constant(), lb.is_constant()) {
                        (Some(c), _) => Some(lb.scaled(c)),
                        (_, Some(c)) => Some(la.scaled(c)),
                        _ => self.invariant(e),
                    },
                    _ => self.invariant(e),
                }
            }
            _ => self.invariant(e),
        }
    }

    /// `e` as one term when it has the same value in every iteration: it reads
    /// no loop variable, no register the body declares or reduces into, and no
    /// buffer the loop stores to (the lets of the body are expanded).
    fn invariant(&self, e: &Expr) -> Option<Linear> {
        self.expand(e).map(Linear::term)
    }

    fn expand(&self, e: &Expr) -> Option<Expr> {
        let go = |x: &Expr| self.expand(x).map(Box::new);
        Some(match e {
            Expr::Lit(_) => e.clone(),
            Expr::Var(v) if self.scope.lets.contains_key(v) => self.expand(&self.scope.lets[v])?,
            Expr::Var(v) if self.scope.local(*v) || self.reduced.contains(v) => return None,
            Expr::Var(_) => e.clone(),
            Expr::Load { buf, .. } if self.stored.contains(buf) => return None,
            Expr::Load { buf, index } => Expr::Load {
                buf: *buf,
                index: go(index)?,
            },
            Expr::Unary(op, x) => Expr::Unary(*op, go(x)?),
            Expr::Binary(op, a, b) => Expr::Binary(*op, go(a)?, go(b)?),
            Expr::Select(c, a, b) => Expr::Select(go(c)?, go(a)?, go(b)?),
            Expr::Cast(s, x) => Expr::Cast(*s, go(x)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::distributable;
    use crate::kernel::build::{add, bin, f32c, idx, load, mul, var};
    use crate::kernel::{Access, BinOp, Expr, Kernel, LoopKind, Scalar, Stmt};

    /// A kernel with `x`, `y` (f32, 64 elements), an i64 `idx` buffer, an f32
    /// accumulator `acc` (v0), an index `i` (v1), the loop variable `j` (v2) and a
    /// nested one `k` (v3).
    fn kernel() -> Kernel {
        let mut k = Kernel::new("t");
        k.buffer("x", Scalar::F32, 64, Access::Read);
        k.buffer("y", Scalar::F32, 64, Access::ReadWrite);
        k.buffer("idx", Scalar::I64, 64, Access::Read);
        k.var(Scalar::F32);
        k.var(Scalar::I64);
        k.var(Scalar::I64);
        k.var(Scalar::I64);
        k
    }
    const ACC: usize = 0;
    const J: usize = 2;
    const K: usize = 3;

    fn store(index: Expr, value: Expr) -> Stmt {
        Stmt::Store {
            buf: 1,
            index,
            value,
        }
    }

    fn assign(value: Expr) -> Stmt {
        Stmt::Assign { var: ACC, value }
    }

    fn split(body: Vec<Stmt>) -> bool {
        distributable(&kernel(), J, 8, &body).is_some()
    }

    #[test]
    fn sums_and_maxima_are_reductions_running_sums_are_not() {
        let x = || load(0, var(J));
        assert!(split(vec![assign(bin(BinOp::Add, var(ACC), x()))]));
        assert!(split(vec![assign(bin(BinOp::Max, x(), var(ACC)))]));
        // Stored after each step: every prefix is observed.
        assert!(!split(vec![
            assign(bin(BinOp::Add, var(ACC), x())),
            store(var(J), var(ACC)),
        ]));
        // Not associative, or reads itself twice.
        assert!(!split(vec![assign(bin(BinOp::Sub, var(ACC), x()))]));
        assert!(!split(vec![assign(bin(BinOp::Mul, var(ACC), x()))]));
        assert!(!split(vec![assign(bin(BinOp::Add, var(ACC), var(ACC)))]));
        // Two operations on one register.
        assert!(!split(vec![
            assign(bin(BinOp::Add, var(ACC), x())),
            assign(bin(BinOp::Max, var(ACC), x())),
        ]));
        // A plain overwrite keeps the last iteration's value.
        assert!(!split(vec![assign(x())]));
    }

    #[test]
    fn stores_must_be_at_an_index_no_two_iterations_share() {
        let one = || f32c(1.0);
        assert!(split(vec![store(add(mul(var(J), idx(2)), idx(1)), one())]));
        // Every iteration writes one element.
        assert!(!split(vec![store(idx(3), one())]));
        // Scatter through loaded indices.
        assert!(!split(vec![store(load(2, var(J)), one())]));
        // Reads a neighbour another iteration writes.
        assert!(!split(vec![store(var(J), load(1, add(var(J), idx(1))))]));
        // Reads and writes its own element: fine.
        assert!(split(vec![store(var(J), load(1, var(J)))]));
        // j·c + k over k < n: disjoint iff c ≥ n.
        let nested = |c: i64, n: i64| {
            vec![Stmt::For {
                var: K,
                extent: n,
                kind: LoopKind::Serial,
                body: vec![store(add(mul(var(J), idx(c)), var(K)), one())],
            }]
        };
        assert!(split(nested(4, 4)));
        assert!(!split(nested(4, 5)));
        // A let of the index is read through.
        assert!(split(vec![
            Stmt::Let {
                var: 1,
                value: mul(var(J), idx(3)),
            },
            store(var(1), one()),
        ]));
    }
}
