//! What a fusion plan builds: an expression over existing e-classes, added to
//! the e-graph by the applier.

use egg::Id;
use kiln_ir::{Op, Tensor};

use crate::{KilnEGraph, KilnLang, Name, OpKey};

/// What a plan builds: an expression over existing e-classes.
#[derive(Clone, Debug)]
pub(super) enum Build {
    /// An existing e-class.
    Class(Id),
    /// An op applied to operands.
    Node(Op, Vec<Build>),
    /// Output `i` of a multi-output op.
    Proj(usize, Box<Build>),
    /// A constant, added to the side table under this name when missing.
    Const(Name, Tensor),
}

impl Build {
    /// An op applied to operands.
    pub(super) fn node(op: Op, args: Vec<Build>) -> Build {
        Build::Node(op, args)
    }

    /// Adds the expression to the e-graph; returns its e-class.
    pub(super) fn add(self, eg: &mut KilnEGraph) -> Id {
        match self {
            Build::Class(id) => eg.find(id),
            Build::Node(op, args) => {
                let children = args.into_iter().map(|a| a.add(eg)).collect();
                eg.add(KilnLang::Op(OpKey::new(&op), children))
            }
            Build::Proj(i, x) => {
                let x = x.add(eg);
                eg.add(KilnLang::Proj(i, [x]))
            }
            Build::Const(name, t) => {
                eg.analysis.consts.entry(name.clone()).or_insert(t);
                eg.add(KilnLang::Const(name))
            }
        }
    }
}
