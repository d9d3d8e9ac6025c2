//! Reading attention keys and values back to the composite's layout: undoing kᵀ
//! (a transpose, or the flatten–batched transpose–unflatten form) and the GQA head
//! repeat (unsqueeze–expand–reshape).

use egg::Id;
use kiln_ir::op::LayoutOp;
use kiln_ir::{Dim, Op, Tensor};

use super::build::Build;
use super::matching::{dims, ops, shape};
use crate::{KilnEGraph, Name};

/// A key or value tensor: an e-class, or a row-major reshape of one to `dims`.
#[derive(Clone, Debug)]
pub(super) enum Kv {
    /// The e-class itself.
    Class(Id),
    /// A row-major reshape of the e-class to these dims.
    ReshapeOf(Id, Vec<usize>),
}

impl Kv {
    /// The tensor as a plan: the class, or a reshape of it (the class itself when
    /// it has the dims already).
    fn build(&self, eg: &KilnEGraph) -> Build {
        match self {
            Kv::Class(id) => Build::Class(*id),
            Kv::ReshapeOf(y, d) if dims(eg, *y).as_deref() == Some(&d[..]) => Build::Class(*y),
            Kv::ReshapeOf(y, d) => {
                let name = format!(
                    "kiln.fusion.shape{}",
                    d.iter().map(|n| format!(".{n}")).collect::<String>()
                );
                let t = Tensor::from_vec(vec![d.len()], d.iter().map(|&n| n as i64).collect());
                Build::node(
                    Op::Layout(LayoutOp::Reshape { allowzero: false }),
                    vec![Build::Class(*y), Build::Const(Name::from(name), t)],
                )
            }
        }
    }
}

/// The perm that swaps the last two of `rank` axes.
fn swap_last(rank: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..rank).collect();
    p.swap(rank - 2, rank - 1);
    p
}

fn is_transpose(op: &Op) -> bool {
    matches!(op, Op::Layout(LayoutOp::Transpose { .. }))
}

fn is_reshape(op: &Op) -> bool {
    matches!(op, Op::Layout(LayoutOp::Reshape { .. }))
}

/// k for class `kt` = kᵀ (last two axes swapped), without a new transpose when `kt`
/// is a transpose of something, or the flatten–batched transpose–unflatten form.
pub(super) fn untranspose(eg: &KilnEGraph, kt: Id) -> Build {
    let Some(rank) = shape(eg, kt).map(|s| s.len()) else {
        return Build::Class(kt);
    };
    for (op, ch) in ops(eg, kt, is_transpose) {
        if let (Op::Layout(LayoutOp::Transpose { perm }), [y]) = (op, ch) {
            if perm.len() == rank {
                let mut r = perm.clone();
                r.swap(rank - 2, rank - 1);
                if r.iter().enumerate().all(|(i, &p)| i == p) {
                    return Kv::Class(*y).build(eg);
                }
                return Build::node(
                    Op::Layout(LayoutOp::Transpose { perm: r }),
                    vec![Build::Class(*y)],
                );
            }
        }
    }
    if let Some(kv) = dims(eg, kt).and_then(|kd| unflatten_transpose(eg, kt, &kd)) {
        return kv.build(eg);
    }
    Build::node(
        Op::Layout(LayoutOp::Transpose {
            perm: swap_last(rank),
        }),
        vec![Build::Class(kt)],
    )
}

/// For `kt` = reshape(T₀₂₁(reshape(y, [N, s, d])), [..B, d, s]): k = reshape(y, [..B, s, d]).
fn unflatten_transpose(eg: &KilnEGraph, kt: Id, kd: &[usize]) -> Option<Kv> {
    let rank = kd.len();
    let (d, s) = (kd[rank - 2], kd[rank - 1]);
    let n: usize = kd[..rank - 2].iter().product();
    for (_, ch) in ops(eg, kt, is_reshape) {
        for (op, ch2) in ops(eg, ch[0], is_transpose) {
            let Op::Layout(LayoutOp::Transpose { perm }) = op else {
                continue;
            };
            if perm != &[0, 2, 1] || dims(eg, ch[0]).as_deref() != Some(&[n, d, s][..]) {
                continue;
            }
            for (_, ch3) in ops(eg, ch2[0], is_reshape) {
                if dims(eg, ch2[0]).as_deref() == Some(&[n, s, d][..]) && dims(eg, ch3[0]).is_some()
                {
                    let mut want = kd.to_vec();
                    want.swap(rank - 2, rank - 1);
                    return Some(Kv::ReshapeOf(ch3[0], want));
                }
            }
        }
    }
    None
}

/// For a key or value with `h` heads that repeats each of `h/g` heads `g` times
/// (reshape(expand(unsqueeze(y, heads + 1)), [..B, h, s, d])): `y`, whose heads the
/// attention composite repeats itself (GQA).
pub(super) fn ungroup(eg: &KilnEGraph, kv: &Kv) -> Option<Id> {
    let (sources, want): (Vec<Id>, Vec<usize>) = match kv {
        Kv::Class(id) => (
            ops(eg, *id, is_reshape).map(|(_, ch)| ch[0]).collect(),
            dims(eg, *id)?,
        ),
        Kv::ReshapeOf(y, d) => (vec![*y], d.clone()),
    };
    let rank = want.len();
    if rank < 3 {
        return None;
    }
    let h = want[rank - 3];
    for e5 in sources {
        let Some(ed) = dims(eg, e5) else { continue };
        // [..B, h/g, g, s, d]
        if ed.len() != rank + 1
            || ed[..rank - 3] != want[..rank - 3]
            || ed[rank - 3] * ed[rank - 2] != h
            || ed[rank - 1..] != want[rank - 2..]
        {
            continue;
        }
        for (_, ch) in ops(eg, e5, |o| matches!(o, Op::Layout(LayoutOp::Expand))) {
            let u = ch[0];
            let mut ud = ed.clone();
            ud[rank - 2] = 1;
            if dims(eg, u).as_deref() != Some(&ud[..]) {
                continue;
            }
            for (_, ch2) in ops(eg, u, |o| {
                matches!(o, Op::Layout(LayoutOp::Unsqueeze { .. }))
            }) {
                let mut yd = ud.clone();
                yd.remove(rank - 2);
                if dims(eg, ch2[0]).as_deref() == Some(&yd[..]) {
                    return Some(ch2[0]);
                }
            }
        }
    }
    None
}

/// The dims (known sizes or named symbols) of the key or value tensor a plan uses.
pub(super) fn kv_shape(eg: &KilnEGraph, b: &Build) -> Option<Vec<Dim>> {
    match b {
        Build::Class(id) => shape(eg, *id),
        Build::Node(Op::Layout(LayoutOp::Transpose { perm }), args) => {
            let Build::Class(y) = args.first()? else {
                return None;
            };
            let yd = shape(eg, *y)?;
            perm.iter().map(|&p| yd.get(p).cloned()).collect()
        }
        Build::Node(Op::Layout(LayoutOp::Reshape { .. }), args) => match args.get(1)? {
            Build::Const(_, t) => Some(
                t.to_i64_vec()
                    .iter()
                    .map(|&n| Dim::Known(n as usize))
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// The value of a key build as a [`Kv`] when it is an e-class or a reshape.
pub(super) fn as_kv(b: &Build) -> Option<Kv> {
    match b {
        Build::Class(id) => Some(Kv::Class(*id)),
        Build::Node(Op::Layout(LayoutOp::Reshape { .. }), args) => match (&args[0], &args[1]) {
            (Build::Class(y), Build::Const(_, t)) => Some(Kv::ReshapeOf(
                *y,
                t.to_i64_vec().iter().map(|&n| n as usize).collect(),
            )),
            _ => None,
        },
        _ => None,
    }
}
