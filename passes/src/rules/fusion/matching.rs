//! Shared e-graph matching for the fusion natives: reading the e-nodes of a class
//! (ops, operand pairs in both orders, reductions), its type and shape, and
//! constants checked by value.

use egg::Id;
use kiln_ir::op::{BinaryOp, NnOp, ReduceKind, ReduceOp, UnaryOp};
use kiln_ir::{Dim, Op, Tensor, TensorType};

use crate::{KilnEGraph, KilnLang};

/// Relative tolerance when a constant is checked against its exact value (the
/// exporters store √2, √(2/π), 0.044715... rounded to f32, relative error < 1e-7).
pub const CONST_RTOL: f64 = 1e-6;

/// Largest all-ones constant [`is_ones`] reads (a scale vector of a norm).
pub const MAX_ONES_ELEMENTS: usize = 1 << 20;

/// The op and operands of every e-node of class `id` whose op satisfies `is`
/// (a typed match such as `|o| matches!(o, Op::Layout(LayoutOp::Expand))`).
pub(super) fn ops<'a>(
    eg: &'a KilnEGraph,
    id: Id,
    is: impl Fn(&Op) -> bool + 'a,
) -> impl Iterator<Item = (&'a Op, &'a [Id])> {
    eg[id].iter().filter_map(move |n| match n {
        KilnLang::Op(k, ch) if is(k.op()) => Some((k.op(), ch.as_slice())),
        _ => None,
    })
}

/// The operand pairs of the two-operand e-nodes of class `id` whose op satisfies
/// `is`, in both orders when `commutative`.
fn pairs_of(eg: &KilnEGraph, id: Id, is: impl Fn(&Op) -> bool, commutative: bool) -> Vec<(Id, Id)> {
    let mut out = vec![];
    for (_, ch) in ops(eg, id, is) {
        if let [a, b] = ch {
            out.push((*a, *b));
            if commutative {
                out.push((*b, *a));
            }
        }
    }
    out
}

/// The operands of the binary ops `kind` in class `id`, in both orders when
/// `commutative`.
pub(super) fn pairs(eg: &KilnEGraph, id: Id, kind: BinaryOp, commutative: bool) -> Vec<(Id, Id)> {
    pairs_of(
        eg,
        id,
        |o| matches!(o, Op::Binary(b) if *b == kind),
        commutative,
    )
}

/// The operands `(a, b)` of the matmuls `a·b` in class `id`.
pub(super) fn matmuls(eg: &KilnEGraph, id: Id) -> Vec<(Id, Id)> {
    pairs_of(eg, id, |o| matches!(o, Op::Nn(NnOp::MatMul)), false)
}

/// The operand of each unary op `kind` in class `id`.
pub(super) fn unary(eg: &KilnEGraph, id: Id, kind: UnaryOp) -> Vec<Id> {
    ops(eg, id, |o| matches!(o, Op::Unary(u) if *u == kind))
        .filter(|(_, ch)| ch.len() == 1)
        .map(|(_, ch)| ch[0])
        .collect()
}

/// The constant tensor class `id` equals.
fn constant(eg: &KilnEGraph, id: Id) -> Option<&Tensor> {
    eg[id]
        .data
        .const_name
        .as_ref()
        .and_then(|n| eg.analysis.consts.get(n))
}

/// The value of a one-element constant.
pub(super) fn scalar(eg: &KilnEGraph, id: Id) -> Option<f64> {
    constant(eg, id)
        .filter(|t| t.numel() == 1 && t.dtype().is_float())
        .map(|t| t.to_f64_vec()[0])
}

/// Whether class `id` is a one-element constant within [`CONST_RTOL`] of `want`.
pub(super) fn scalar_near(eg: &KilnEGraph, id: Id, want: f64) -> bool {
    scalar(eg, id).is_some_and(|v| (v - want).abs() <= CONST_RTOL * want.abs())
}

/// Whether class `id` is a constant of ones only.
pub(super) fn is_ones(eg: &KilnEGraph, id: Id) -> bool {
    constant(eg, id)
        .is_some_and(|t| t.numel() <= MAX_ONES_ELEMENTS && t.to_f64_vec().iter().all(|&v| v == 1.0))
}

/// Whether classes `a` and `b` are one e-class.
pub(super) fn same(eg: &KilnEGraph, a: Id, b: Id) -> bool {
    eg.find(a) == eg.find(b)
}

/// The type of class `id`, when known.
pub(super) fn ty(eg: &KilnEGraph, id: Id) -> Option<&TensorType> {
    eg[id].data.ty()
}

/// The fully known dims of class `id`.
pub(super) fn dims(eg: &KilnEGraph, id: Id) -> Option<Vec<usize>> {
    ty(eg, id)?.shape.as_known()
}

/// The dims of class `id`, known sizes or named symbols (`None` when a dim is
/// unknown: it could not be compared).
pub(super) fn shape(eg: &KilnEGraph, id: Id) -> Option<Vec<Dim>> {
    let t = ty(eg, id)?;
    (!t.shape.0.iter().any(|d| matches!(d, Dim::Any))).then(|| t.shape.0.clone())
}

/// Whether class `id` is a float tensor.
pub(super) fn is_float(eg: &KilnEGraph, id: Id) -> bool {
    ty(eg, id).is_some_and(|t| t.dtype.is_float())
}

/// Whether classes `a` and `b` have one type: same dtype and rank, every dim the
/// same known size or the same named symbol (an unknown dim never matches).
pub(super) fn same_type_sym(eg: &KilnEGraph, a: Id, b: Id) -> bool {
    match (ty(eg, a), ty(eg, b)) {
        (Some(x), Some(y)) => {
            x.dtype == y.dtype
                && x.shape.rank() == y.shape.rank()
                && x.shape.0.iter().zip(&y.shape.0).all(|(p, q)| match (p, q) {
                    (Dim::Known(m), Dim::Known(n)) => m == n,
                    (Dim::Sym(s), Dim::Sym(t)) => s == t,
                    _ => false,
                })
        }
        _ => false,
    }
}

/// The operands of `Reduce{kind, axes, keepdims:true}` e-nodes of class `id`.
pub(super) fn reduces(eg: &KilnEGraph, id: Id, kind: ReduceKind) -> Vec<(Vec<usize>, Id)> {
    ops(eg, id, |o| matches!(o, Op::Reduce(_)))
        .filter_map(|(op, ch)| match op {
            Op::Reduce(ReduceOp::Reduce {
                kind: k,
                axes,
                keepdims: true,
            }) if *k == kind && ch.len() == 1 && !axes.is_empty() => Some((axes.clone(), ch[0])),
            _ => None,
        })
        .collect()
}

/// The first axis when `axes` are the trailing axes `a..rank` of class `x`.
pub(super) fn trailing_from(eg: &KilnEGraph, x: Id, axes: &[usize]) -> Option<usize> {
    let rank = ty(eg, x)?.shape.rank();
    let a = *axes.first()?;
    (axes.iter().copied().eq(a..rank)).then_some(a)
}
