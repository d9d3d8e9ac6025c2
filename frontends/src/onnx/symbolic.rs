//! Symbolic shape values: what import knows about small integer tensors computed
//! from shapes (`Shape → Gather → Concat → Reshape` with symbolic dims), so that
//! reshapes and expands of models exported with dynamic axes get symbolic output
//! shapes (`[batch, seq, 4, 16]`) instead of unknown ones.

use std::collections::HashMap;

use kiln_ir::op::{BinaryOp, LayoutOp};
use kiln_ir::{Dim, Graph, Op, Shape, TensorType, ValueId};

/// One element of a shape value: a known integer or a dim (symbolic or unknown).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SymInt {
    /// A known value (may be 0 or -1 in reshape targets).
    Int(i64),
    /// A dimension of some tensor.
    Dim(Dim),
}

impl SymInt {
    fn to_dim(&self) -> Dim {
        match self {
            SymInt::Int(n) if *n >= 0 => Dim::Known(*n as usize),
            SymInt::Int(_) => Dim::Any,
            SymInt::Dim(d) => d.clone(),
        }
    }

    fn name(&self) -> Option<String> {
        match self {
            SymInt::Int(n) => Some(n.to_string()),
            SymInt::Dim(Dim::Known(n)) => Some(n.to_string()),
            SymInt::Dim(Dim::Sym(s)) => Some(s.to_string()),
            SymInt::Dim(Dim::Any) => None,
        }
    }
}

/// Shape values known so far, by value (1-D or scalar i64 tensors).
#[derive(Default)]
pub(crate) struct ShapeValues {
    known: HashMap<ValueId, Vec<SymInt>>,
}

impl ShapeValues {
    /// The elements of `v`: tracked, or read from a small integer constant.
    fn get(&self, g: &Graph, v: ValueId) -> Option<Vec<SymInt>> {
        if let Some(s) = self.known.get(&v) {
            return Some(s.clone());
        }
        let t = g.constant(v)?;
        (t.dtype().is_int() && t.rank() <= 1 && t.numel() <= 64)
            .then(|| t.to_i64_vec().into_iter().map(SymInt::Int).collect())
    }

    /// Records what a new node computes and refines its output types where a shape
    /// value decides them.
    pub(crate) fn after_node(
        &mut self,
        g: &mut Graph,
        op: &Op,
        inputs: &[ValueId],
        outputs: &[ValueId],
    ) {
        let Some(&out) = outputs.first() else { return };
        let args: Vec<Option<Vec<SymInt>>> = inputs.iter().map(|&v| self.get(g, v)).collect();
        let arg = |i: usize| args.get(i).cloned().flatten();
        let tracked: Option<Vec<SymInt>> = match op {
            Op::Layout(LayoutOp::Shape { start, end }) => {
                let dims = &g.value(inputs[0]).ty.shape.0;
                let (s, e) = kiln_ir::op::shape_range(dims.len(), *start, *end);
                Some(dims[s..e].iter().cloned().map(SymInt::Dim).collect())
            }
            Op::Layout(LayoutOp::Gather { axis: 0 }) => {
                let (data, idx) = (
                    arg(0),
                    inputs
                        .get(1)
                        .and_then(|&v| g.constant(v))
                        .map(|t| t.to_i64_vec()),
                );
                match (data, idx) {
                    (Some(d), Some(idx)) => idx
                        .iter()
                        .map(|&i| {
                            let i = if i < 0 { i + d.len() as i64 } else { i };
                            d.get(i as usize).cloned()
                        })
                        .collect(),
                    _ => None,
                }
            }
            Op::Layout(LayoutOp::Concat { axis: 0 }) => args
                .iter()
                .cloned()
                .collect::<Option<Vec<_>>>()
                .map(|p| p.concat()),
            Op::Layout(
                LayoutOp::Unsqueeze { .. }
                | LayoutOp::Squeeze { .. }
                | LayoutOp::Identity
                | LayoutOp::Cast { .. }
                | LayoutOp::Reshape { .. },
            ) => arg(0).filter(|v| {
                v.len() == 1 || matches!(op, Op::Layout(LayoutOp::Identity | LayoutOp::Cast { .. }))
            }),
            Op::Layout(LayoutOp::Slice) => match (arg(0), arg(1), arg(2), arg(3), arg(4)) {
                (Some(d), Some(s), Some(e), Some(a), Some(st)) if a == vec![SymInt::Int(0)] => {
                    match (&s[0], &e[0], &st[0]) {
                        (SymInt::Int(s), SymInt::Int(e), SymInt::Int(1)) => {
                            kiln_ir::op::slice_bounds(d.len(), *s, *e, 1)
                                .ok()
                                .map(|(s, e)| d[s as usize..e.max(s) as usize].to_vec())
                        }
                        _ => None,
                    }
                }
                _ => None,
            },
            Op::Binary(b @ (BinaryOp::Mul | BinaryOp::Add | BinaryOp::Sub | BinaryOp::Div)) => {
                match (arg(0), arg(1)) {
                    (Some(x), Some(y)) if x.len() == y.len() || x.len() == 1 || y.len() == 1 => {
                        let n = x.len().max(y.len());
                        (0..n)
                            .map(|i| {
                                let (a, c) = (&x[i.min(x.len() - 1)], &y[i.min(y.len() - 1)]);
                                Some(match (a, c, b) {
                                    (SymInt::Int(p), SymInt::Int(q), _) => SymInt::Int(match b {
                                        BinaryOp::Mul => p * q,
                                        BinaryOp::Add => p + q,
                                        BinaryOp::Sub => p - q,
                                        _ if *q != 0 => p / q,
                                        _ => return None,
                                    }),
                                    (_, SymInt::Int(1), BinaryOp::Mul | BinaryOp::Div) => a.clone(),
                                    (SymInt::Int(1), _, BinaryOp::Mul) => c.clone(),
                                    _ => {
                                        let sym = match b {
                                            BinaryOp::Mul => "*",
                                            BinaryOp::Add => "+",
                                            BinaryOp::Sub => "-",
                                            _ => "/",
                                        };
                                        match (a.name(), c.name()) {
                                            (Some(p), Some(q)) => {
                                                SymInt::Dim(Dim::sym(&format!("({p}{sym}{q})")))
                                            }
                                            _ => SymInt::Dim(Dim::Any),
                                        }
                                    }
                                })
                            })
                            .collect()
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(t) = tracked {
            self.known.insert(out, t);
        }
        // Refine output shapes decided by a tracked shape operand.
        let refined: Option<Shape> = match op {
            Op::Layout(LayoutOp::Reshape { allowzero }) if g.constant(inputs[1]).is_none() => {
                arg(1).map(|target| reshape_dims(&g.value(inputs[0]).ty.shape, &target, *allowzero))
            }
            Op::Layout(LayoutOp::Expand) if g.constant(inputs[1]).is_none() => {
                arg(1).and_then(|target| {
                    let t = Shape(target.iter().map(SymInt::to_dim).collect());
                    Shape::broadcast(&g.value(inputs[0]).ty.shape, &t)
                })
            }
            // `Range(0, n, 1)` over a tracked size `n` (exporters build position
            // ids and masks this way) has `n` elements.
            Op::Layout(LayoutOp::Range) if g.constant(inputs[1]).is_none() => {
                let int = |i: usize| {
                    inputs
                        .get(i)
                        .and_then(|&v| g.constant(v))
                        .filter(|t| t.numel() == 1)
                        .map(|t| t.to_i64_vec()[0])
                };
                match (int(0), arg(1), int(2)) {
                    (Some(0), Some(n), Some(1)) if n.len() == 1 => Some(Shape(vec![n[0].to_dim()])),
                    _ => None,
                }
            }
            Op::Layout(LayoutOp::ConstantOfShape { .. }) if g.constant(inputs[0]).is_none() => {
                arg(0).map(|target| Shape(target.iter().map(SymInt::to_dim).collect()))
            }
            _ => None,
        };
        if let Some(shape) = refined {
            let old = &g.value(out).ty;
            if old.shape.rank() == shape.rank() {
                // Keep what inference knew; fill in what it did not.
                let merged = Shape(
                    old.shape
                        .0
                        .iter()
                        .zip(shape.0)
                        .map(|(o, n)| if o.known().is_some() { o.clone() } else { n })
                        .collect(),
                );
                let ty = TensorType::new(old.dtype, merged);
                g.set_value_type(out, ty);
            }
        }
    }
}

/// The output dims of a reshape of `input` to a tracked target.
fn reshape_dims(input: &Shape, target: &[SymInt], allowzero: bool) -> Shape {
    let mut out: Vec<Dim> = target
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            SymInt::Int(0) if !allowzero => input.0.get(i).cloned().unwrap_or(Dim::Any),
            t => t.to_dim(),
        })
        .collect();
    if let Some(at) = target.iter().position(|t| *t == SymInt::Int(-1)) {
        // The inferred dim is what is left of the input's dims once the output's
        // other dims are taken out of them (as a multiset, known sizes multiplied).
        let mut rest: Vec<Dim> = input.0.clone();
        let mut known_out = 1usize;
        let mut ok = true;
        for (i, d) in out.iter().enumerate() {
            if i == at {
                continue;
            }
            match d {
                Dim::Known(n) => known_out *= n,
                Dim::Sym(_) => match rest.iter().position(|r| r == d) {
                    Some(p) => {
                        rest.remove(p);
                    }
                    None => ok = false,
                },
                Dim::Any => ok = false,
            }
        }
        let syms: Vec<&Dim> = rest.iter().filter(|d| d.known().is_none()).collect();
        let known_in: usize = rest.iter().filter_map(Dim::known).product();
        out[at] = if ok && known_out > 0 && known_in.is_multiple_of(known_out) {
            let k = known_in / known_out;
            match (syms.as_slice(), k) {
                ([], k) => Dim::Known(k),
                ([s], 1) => (*s).clone(),
                _ => Dim::Any,
            }
        } else {
            Dim::Any
        };
    }
    Shape(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_infers_the_missing_dim() {
        let input = Shape(vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Known(64)]);
        let target = [
            SymInt::Dim(Dim::sym("batch")),
            SymInt::Int(-1),
            SymInt::Int(4),
            SymInt::Int(16),
        ];
        assert_eq!(
            reshape_dims(&input, &target, false).to_string(),
            "[batch, seq, 4, 16]"
        );
        let target = [SymInt::Int(0), SymInt::Int(0), SymInt::Int(-1)];
        assert_eq!(
            reshape_dims(&input, &target, false).to_string(),
            "[batch, seq, 64]"
        );
    }
}
