//! Rule conditions: every `:if (NAME ?var ...)` of the rule files is a [`Cond`] here,
//! checked over the e-class analysis data.

use egg::{Id, Subst, Var};
use kiln_ir::{Dim, Tensor, TensorType};

use crate::{KilnAnalysis, KilnEGraph, KilnLang};

/// The largest constant (in elements) a fold condition lets a rule create.
pub const MAX_FOLD_ELEMENTS: usize = 1 << 24;

/// A named condition of the rule files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `(is-zero ?z)`: `?z` is a constant whose elements are all zero.
    IsZero,
    /// `(is-one ?o)`: `?o` is a constant whose elements are all one.
    IsOne,
    /// `(is-const ?a)`: `?a` depends on constants only.
    IsConst,
    /// `(same-type-as-output ?x)`: `?x` has exactly the (fully known) type of the
    /// matched e-class: same dtype and shape, so replacing the match by `?x` needs no
    /// broadcast or cast.
    SameTypeAsOutput,
    /// `(same-type ?a ?b)`: `?a` and `?b` have the same fully known type.
    SameType,
    /// `(no-zero-dims ?s)`: `?s` is a constant shape with no `0` entry (so a reshape
    /// to it copies no dim of its input).
    NoZeroDims,
    /// `(rank-2 ?a)`: `?a` is a matrix.
    Rank2,
    /// `(small-product ?a ?b)`: the matrices `?a` `[m, k]` and `?b` `[k, n]` have a
    /// product no larger than the two together and at most [`MAX_FOLD_ELEMENTS`].
    SmallProduct,
}

/// Every condition, for lookup by name.
pub const ALL: [Cond; 8] = [
    Cond::IsZero,
    Cond::IsOne,
    Cond::IsConst,
    Cond::SameTypeAsOutput,
    Cond::SameType,
    Cond::NoZeroDims,
    Cond::Rank2,
    Cond::SmallProduct,
];

/// How the soundness checker instantiates a variable a condition constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstKind {
    /// A constant of zeros.
    Zeros,
    /// A constant of ones.
    Ones,
    /// A constant of random values.
    Random,
    /// A constant `i64` shape with the element count of the reshaped value.
    ShapeTarget,
}

impl Cond {
    /// The condition's name in the rule files.
    pub fn name(self) -> &'static str {
        match self {
            Cond::IsZero => "is-zero",
            Cond::IsOne => "is-one",
            Cond::IsConst => "is-const",
            Cond::SameTypeAsOutput => "same-type-as-output",
            Cond::SameType => "same-type",
            Cond::NoZeroDims => "no-zero-dims",
            Cond::Rank2 => "rank-2",
            Cond::SmallProduct => "small-product",
        }
    }

    /// The condition named `name`.
    pub fn from_name(name: &str) -> Option<Cond> {
        ALL.into_iter().find(|c| c.name() == name)
    }

    /// How many variables it takes.
    pub fn arity(self) -> usize {
        match self {
            Cond::SameType | Cond::SmallProduct => 2,
            _ => 1,
        }
    }

    /// The constant the checker must make argument `arg` (if it must be one).
    pub fn const_kind(self, arg: usize) -> Option<ConstKind> {
        match (self, arg) {
            (Cond::IsZero, _) => Some(ConstKind::Zeros),
            (Cond::IsOne, _) => Some(ConstKind::Ones),
            (Cond::IsConst, _) | (Cond::SmallProduct, _) => Some(ConstKind::Random),
            (Cond::NoZeroDims, _) => Some(ConstKind::ShapeTarget),
            _ => None,
        }
    }

    /// Whether the condition holds for the match of e-class `eclass` whose argument
    /// e-classes are `args`.
    pub fn check(self, egraph: &KilnEGraph, eclass: Id, args: &[Id]) -> bool {
        let data = |id: Id| &egraph[id].data;
        let constant = |id: Id| -> Option<&Tensor> {
            data(id)
                .const_name
                .and_then(|n| egraph.analysis.consts.get(&n))
        };
        let known = |id: Id| -> Option<&TensorType> {
            data(id)
                .ty()
                .filter(|t| t.shape.0.iter().all(|d| matches!(d, Dim::Known(_))))
        };
        let dims = |id: Id| -> Option<Vec<usize>> { known(id)?.shape.as_known() };
        match self {
            Cond::IsZero => constant(args[0]).is_some_and(|t| all_equal(t, 0.0)),
            Cond::IsOne => constant(args[0]).is_some_and(|t| all_equal(t, 1.0)),
            Cond::IsConst => data(args[0]).constant,
            Cond::SameTypeAsOutput => known(args[0]).is_some_and(|t| Some(t) == data(eclass).ty()),
            Cond::SameType => known(args[0]).is_some_and(|t| Some(t) == known(args[1])),
            Cond::NoZeroDims => {
                constant(args[0]).is_some_and(|t| t.to_i64_vec().iter().all(|&d| d != 0))
            }
            Cond::Rank2 => data(args[0]).ty().is_some_and(|t| t.shape.rank() == 2),
            Cond::SmallProduct => match (dims(args[0]), dims(args[1])) {
                (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => {
                    let product = a[0] * b[1];
                    product <= a[0] * a[1] + b[0] * b[1] && product <= MAX_FOLD_ELEMENTS
                }
                _ => false,
            },
        }
    }
}

/// Whether every element of `t` equals `v`.
fn all_equal(t: &Tensor, v: f64) -> bool {
    t.numel() <= MAX_FOLD_ELEMENTS && t.to_f64_vec().iter().all(|&x| x == v)
}

/// One condition applied to variables of a rule: `(is-zero ?z)`.
#[derive(Clone, Debug, PartialEq)]
pub struct CondCall {
    /// The condition.
    pub cond: Cond,
    /// Its arguments.
    pub args: Vec<Var>,
}

impl std::fmt::Display for CondCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}", self.cond.name())?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        f.write_str(")")
    }
}

/// All conditions of a rule: holds when every one does.
#[derive(Clone, Debug, Default)]
pub struct Guard(pub Vec<CondCall>);

impl Guard {
    /// Whether every condition holds for the match of `eclass` under `subst`.
    pub fn holds(&self, egraph: &KilnEGraph, eclass: Id, subst: &Subst) -> bool {
        self.0.iter().all(|c| {
            let args: Vec<Id> = c.args.iter().map(|v| subst[*v]).collect();
            c.cond.check(egraph, eclass, &args)
        })
    }
}

impl egg::Condition<KilnLang, KilnAnalysis> for Guard {
    fn check(&self, egraph: &mut KilnEGraph, eclass: Id, subst: &Subst) -> bool {
        self.holds(egraph, eclass, subst)
    }
}
