//! Loop nests over dense row-major shapes, with broadcast operands read through
//! strides (0 along broadcast dims).

use crate::kernel::build::{add, idx, mul, var};
use crate::kernel::{Expr, Kernel, LoopKind, Scalar, Stmt};

/// Row-major element strides of a dense shape.
pub fn dense_strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d] as i64;
    }
    s
}

/// The strides with which an operand of shape `operand` is read at each position
/// of a nest over `nest` (numpy broadcasting: dims aligned on the right, size-1
/// and missing dims read with stride 0).
pub fn broadcast_strides(operand: &[usize], nest: &[usize]) -> Vec<i64> {
    let dense = dense_strides(operand);
    let lead = nest.len() - operand.len();
    (0..nest.len())
        .map(|d| {
            if d < lead {
                0
            } else {
                let od = d - lead;
                if operand[od] == 1 && nest[d] != 1 {
                    0
                } else {
                    dense[od]
                }
            }
        })
        .collect()
}

/// Merges adjacent dims that every stride vector walks contiguously (including
/// dims of size 1), so a nest has as few, as long loops as possible. Returns the
/// merged extents and each operand's merged strides.
pub fn collapse(extents: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let mut ext: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for d in 0..extents.len() {
        if extents[d] == 1 {
            continue; // a size-1 dim contributes nothing to any offset
        }
        let mergeable = !ext.is_empty()
            && strides.iter().enumerate().all(|(o, s)| {
                let last = *st[o].last().expect("non-empty");
                last == s[d] * extents[d] as i64
            });
        if mergeable {
            let n = ext.len() - 1;
            ext[n] *= extents[d];
            for (o, s) in strides.iter().enumerate() {
                *st[o].last_mut().expect("non-empty") = s[d];
            }
        } else {
            ext.push(extents[d]);
            for (o, s) in strides.iter().enumerate() {
                st[o].push(s[d]);
            }
        }
    }
    (ext, st)
}

/// `Σ vars[d] · strides[d]` plus `base`.
pub fn offset(vars: &[Expr], strides: &[i64], base: Expr) -> Expr {
    vars.iter().zip(strides).fold(base, |acc, (v, &s)| {
        if s == 0 {
            acc
        } else {
            add(acc, mul(v.clone(), idx(s)))
        }
    })
}

/// Wraps `body` in one loop per extent (outermost first); the outermost loop is
/// parallel when `parallel` is set. Dims of size 1 get no loop (their index is
/// the constant 0), so a leading batch dim of 1 does not leave the parallel loop
/// with nothing to split. `make_body` receives the index of every dim.
pub fn nest(
    k: &mut Kernel,
    extents: &[usize],
    parallel: bool,
    make_body: impl FnOnce(&mut Kernel, &[Expr]) -> Vec<Stmt>,
) -> Vec<Stmt> {
    let vars: Vec<Option<usize>> = extents
        .iter()
        .map(|&e| (e != 1).then(|| k.var(Scalar::I64)))
        .collect();
    let var_exprs: Vec<Expr> = vars.iter().map(|v| v.map_or_else(|| idx(0), var)).collect();
    let mut body = make_body(k, &var_exprs);
    let looped: Vec<(usize, usize)> = vars
        .iter()
        .zip(extents)
        .filter_map(|(v, &e)| v.map(|v| (v, e)))
        .collect();
    for (d, &(v, e)) in looped.iter().enumerate().rev() {
        let kind = if d == 0 && parallel {
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        body = vec![Stmt::For {
            var: v,
            extent: e as i64,
            kind,
            body,
        }];
    }
    body
}
