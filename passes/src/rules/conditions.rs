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
    /// `(is-zero ?z)`: `?z` is a constant whose elements are all zero, or zeros
    /// written as `Expand(zero constant, constant shape)` ([`is_zero_class`]).
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
    /// `(scalar ?s)`: `?s` is a constant of one element and rank 0 or 1 (so
    /// multiplying by it never broadcasts a rank-1 value up).
    Scalar,
    /// `(lora-fold ?w ?a ?b)`: constant matrices `?w` `[K, N]`, `?a` `[K, r]` and
    /// `?b` `[r, N]`: the folded adapter `?w + s·(?a·?b)` has exactly `?w`'s type
    /// and at most [`MAX_FOLD_ELEMENTS`] elements.
    LoraFold,
}

/// Every condition, for lookup by name.
pub const ALL: [Cond; 10] = [
    Cond::IsZero,
    Cond::IsOne,
    Cond::IsConst,
    Cond::SameTypeAsOutput,
    Cond::SameType,
    Cond::NoZeroDims,
    Cond::Rank2,
    Cond::SmallProduct,
    Cond::Scalar,
    Cond::LoraFold,
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
    /// A random constant of one element, rank 0 or 1.
    Scalar,
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
            Cond::Scalar => "scalar",
            Cond::LoraFold => "lora-fold",
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
            Cond::LoraFold => 3,
            _ => 1,
        }
    }

    /// The constant the checker must make argument `arg` (if it must be one).
    pub fn const_kind(self, arg: usize) -> Option<ConstKind> {
        match (self, arg) {
            (Cond::IsZero, _) => Some(ConstKind::Zeros),
            (Cond::IsOne, _) => Some(ConstKind::Ones),
            (Cond::IsConst, _) | (Cond::SmallProduct, _) | (Cond::LoraFold, _) => {
                Some(ConstKind::Random)
            }
            (Cond::Scalar, _) => Some(ConstKind::Scalar),
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
                .as_ref()
                .and_then(|n| egraph.analysis.consts.get(n))
        };
        let known = |id: Id| -> Option<&TensorType> {
            data(id)
                .ty()
                .filter(|t| t.shape.0.iter().all(|d| matches!(d, Dim::Known(_))))
        };
        let dims = |id: Id| -> Option<Vec<usize>> { known(id)?.shape.as_known() };
        match self {
            Cond::IsZero => is_zero_class(egraph, args[0]),
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
            Cond::Scalar => constant(args[0]).is_some_and(|t| t.numel() == 1 && t.rank() <= 1),
            Cond::LoraFold => {
                let all_const = args.iter().all(|&a| data(a).constant);
                match (dims(args[0]), dims(args[1]), dims(args[2])) {
                    (Some(w), Some(a), Some(b)) if all_const => {
                        let [k, n] = w[..] else { return false };
                        let ([ka, r], [rb, nb]) = (&a[..], &b[..]) else {
                            return false;
                        };
                        (*ka, *r, *nb) == (k, *rb, n) && k * n <= MAX_FOLD_ELEMENTS
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Whether e-class `id` is all zeros: a constant whose elements are all zero (the
/// scan is cached per constant name, [`KilnAnalysis::const_is_all_zero`]), or an
/// `Expand` of such a constant to a constant shape (how brick rules write "zeros of
/// shape S" without materializing them).
pub fn is_zero_class(egraph: &KilnEGraph, id: Id) -> bool {
    let zero_const = |id: Id| {
        egraph[id]
            .data
            .const_name
            .as_ref()
            .is_some_and(|n| egraph.analysis.const_is_all_zero(n))
    };
    if zero_const(id) {
        return true;
    }
    egraph[id].iter().any(|n| match n {
        KilnLang::Op(key, ch) => {
            matches!(key.op(), kiln_ir::Op::Layout(kiln_ir::op::LayoutOp::Expand))
                && ch.len() == 2
                && zero_const(ch[0])
                && egraph[ch[1]].data.constant
        }
        _ => false,
    })
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
