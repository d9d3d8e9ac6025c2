//! Shapes whose dimensions may be symbolic.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::DType;

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dim {
    /// A dimension known at compile time.
    Known(usize),
    /// A named dimension bound at run time (`batch`, `seq`); equal names are equal sizes.
    Sym(Arc<str>),
    /// A dimension nothing is known about (it equals no other dimension).
    Any,
}

impl Dim {
    /// A symbolic dimension with this name.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }

    /// The size if it is known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Any => f.write_str("?"),
        }
    }
}

/// A shape: one [`Dim`] per axis. The rank is always known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of known dims.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// Rank (number of axes).
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims if every one is known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// Number of elements if every dim is known and their product fits a `usize`
    /// (a shape from a hostile file may not: [`Shape::overflows`] tells).
    pub fn numel(&self) -> Option<usize> {
        checked_product(&self.as_known()?)
    }

    /// Whether every dim is known and their product does not fit a `usize`.
    pub fn overflows(&self) -> bool {
        self.as_known().is_some() && self.numel().is_none()
    }

    /// The shape numpy broadcasting gives for two operands, or `None` when known dims clash.
    pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
        let rank = a.rank().max(b.rank());
        let mut out = Vec::with_capacity(rank);
        for i in 0..rank {
            let da = dim_from_right(a, rank - 1 - i);
            let db = dim_from_right(b, rank - 1 - i);
            out.push(broadcast_dim(&da, &db)?);
        }
        Some(Shape(out))
    }
}

fn dim_from_right(s: &Shape, from_right: usize) -> Dim {
    if from_right < s.rank() {
        s.0[s.rank() - 1 - from_right].clone()
    } else {
        Dim::Known(1)
    }
}

fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    Some(match (a, b) {
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        (Dim::Known(x), Dim::Known(y)) => {
            if x != y {
                return None;
            }
            Dim::Known(*x)
        }
        // A known dim other than 1 fixes the result (the other side must match at run time).
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Dim::Sym(x.clone()),
        (Dim::Sym(x), Dim::Any) | (Dim::Any, Dim::Sym(x)) => Dim::Sym(x.clone()),
        _ => Dim::Any,
    })
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of a tensor value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape, possibly with symbolic dims.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type.
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// The product of `dims`, or `None` when it does not fit a `usize`. A zero dim
/// makes it zero whatever the others are (multiplying in order could overflow
/// before reaching it).
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_dim_empties_a_shape_whatever_the_others_are() {
        let huge = usize::MAX / 2;
        assert_eq!(checked_product(&[huge, huge, 0]), Some(0));
        assert_eq!(checked_product(&[huge, 3]), None);
        assert_eq!(checked_product(&[]), Some(1));
        assert_eq!(Shape::known(&[huge, huge, 0]).numel(), Some(0));
    }

    #[test]
    fn broadcasting_follows_numpy() {
        let a = Shape(vec![Dim::sym("batch"), Dim::Known(1), Dim::Known(4)]);
        let b = Shape::known(&[3, 1]);
        let c = Shape::broadcast(&a, &b).unwrap();
        assert_eq!(c.to_string(), "[batch, 3, 4]");
        assert!(Shape::broadcast(&Shape::known(&[2]), &Shape::known(&[3])).is_none());
    }
}
