//! The e-class analysis: value types, constness, origin and (later) cost.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use egg::{Analysis, DidMerge, EGraph, Id};

use crate::Name;
use kiln_ir::op::InferInputs;
use kiln_ir::{BrickId, Dim, Tensor, TensorType};

use crate::KilnLang;

/// The e-graph of a kiln graph.
pub type KilnEGraph = EGraph<KilnLang, KilnAnalysis>;

/// Where an e-class came from in the source graph, so results are reported in the
/// model's own terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// The source value's name.
    pub value: String,
    /// The source node (for a node's e-class; `None` for inputs, constants and
    /// projections).
    pub node: Option<OriginNode>,
    /// The brick of the producing node.
    pub brick: Option<BrickId>,
    /// The source value's position in the source graph (values are numbered in
    /// topological order): when e-classes merge, the earliest origin names the
    /// value (`cast(x) = x` keeps `x`'s name and brick, not the cast's).
    pub order: usize,
}

/// The source node of an e-class.
#[derive(Clone, Debug, PartialEq)]
pub struct OriginNode {
    /// The node's name.
    pub name: String,
    /// The e-node it became (children as they were when it was added; compare after
    /// canonicalizing).
    pub enode: KilnLang,
    /// How many outputs the source node had.
    pub outputs: usize,
}

/// What is known about the values of an e-class.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueData {
    /// The type of each output (one entry for a single value; empty when inference
    /// failed and nothing else is known).
    pub types: Vec<TensorType>,
    /// True when the value depends on constants only (a weight-only subgraph).
    pub constant: bool,
    /// A constant of the side table this e-class equals.
    pub const_name: Option<Name>,
    /// The source graph's names for this e-class.
    pub origin: Option<Origin>,
    /// Modelled seconds of the cheapest program for this e-class (tree cost: an
    /// operand used twice counts twice) under the pipeline's target. Costs depend
    /// on the target, which e-class analysis does not know, so the pipeline fills
    /// this after its last phase (`None` before, and in e-graphs built otherwise).
    pub cost: Option<f64>,
}

impl ValueData {
    /// The type of the value (output 0).
    pub fn ty(&self) -> Option<&TensorType> {
        self.types.first()
    }
}

/// The analysis: holds the side table of constant tensors, keyed by value name.
///
/// The side table is append-only: a name, once bound, keeps its tensor (rules that
/// derive constants give them new names), so facts about a constant can be cached
/// by name.
#[derive(Default)]
pub struct KilnAnalysis {
    /// Constant tensors by value name; `Const` e-nodes refer to them.
    pub consts: HashMap<Name, Tensor>,
    /// Work native rules already did in this e-graph (hashes of the canonical
    /// e-nodes they combined), so that re-searching an unchanged neighbourhood in
    /// the next iteration costs a lookup instead of building the same e-nodes.
    pub tried: std::collections::HashSet<u64>,
    /// Cached "every element is zero" per constant name (see
    /// [`KilnAnalysis::const_is_all_zero`]).
    zero_consts: RefCell<HashMap<Name, bool>>,
    /// Cached all-zero lines of rank-2 constants, per (name, axis) (see
    /// [`KilnAnalysis::zero_lines`]).
    zero_lines: RefCell<HashMap<(Name, usize), ZeroLines>>,
}

/// Per index along an axis of a matrix, whether that row or column is all zero.
pub type ZeroLines = Rc<Vec<bool>>;

impl KilnAnalysis {
    /// Whether constant `name` exists and every element is zero. The tensor is
    /// scanned once (stopping at the first non-zero byte) and the answer cached, so
    /// conditions may ask on every match. A negative zero counts as non-zero (the
    /// answer errs on the safe side).
    pub fn const_is_all_zero(&self, name: &Name) -> bool {
        if let Some(&z) = self.zero_consts.borrow().get(name) {
            return z;
        }
        let z = self
            .consts
            .get(name)
            .is_some_and(|t| t.bytes().iter().all(|&b| b == 0));
        self.zero_consts.borrow_mut().insert(name.clone(), z);
        z
    }

    /// For the rank-2 constant `name`: per index `i` along `axis`, whether the
    /// line at `i` (column `i` for axis 1, row `i` for axis 0) is all zero.
    /// `None` when `name` is not a rank-2 constant. Computed once per (name, axis).
    pub fn zero_lines(&self, name: &Name, axis: usize) -> Option<ZeroLines> {
        if let Some(z) = self.zero_lines.borrow().get(&(name.clone(), axis)) {
            return Some(z.clone());
        }
        let t = self.consts.get(name)?;
        let [rows, cols] = *t.shape() else {
            return None;
        };
        if axis > 1 {
            return None;
        }
        // Raw bytes, stopping early: a real weight has a non-zero element in its
        // first row, so telling it apart costs one row, not a conversion of the
        // whole matrix (a negative zero counts as non-zero, the safe side).
        let bytes = t.bytes();
        let size = t.dtype().size();
        let nonzero = |i: usize| bytes[i * size..(i + 1) * size].iter().any(|&b| b != 0);
        let zero: Vec<bool> = if axis == 0 {
            (0..rows)
                .map(|r| {
                    !bytes[r * cols * size..(r + 1) * cols * size]
                        .iter()
                        .any(|&b| b != 0)
                })
                .collect()
        } else {
            let mut zero = vec![true; cols];
            let mut remaining = cols;
            for r in 0..rows {
                if remaining == 0 {
                    break;
                }
                for (c, z) in zero.iter_mut().enumerate() {
                    if *z && nonzero(r * cols + c) {
                        *z = false;
                        remaining -= 1;
                    }
                }
            }
            zero
        };
        let z = Rc::new(zero);
        self.zero_lines
            .borrow_mut()
            .insert((name.clone(), axis), z.clone());
        Some(z)
    }
}

impl Analysis<KilnLang> for KilnAnalysis {
    type Data = ValueData;

    fn make(egraph: &mut KilnEGraph, enode: &KilnLang, _id: Id) -> ValueData {
        let mut data = ValueData {
            types: vec![],
            constant: false,
            const_name: None,
            origin: None,
            cost: None,
        };
        match enode {
            KilnLang::Input(_) => {}
            KilnLang::Const(name) => {
                if let Some(t) = egraph.analysis.consts.get(name) {
                    data.types = vec![TensorType::new(t.dtype(), t.ir_shape())];
                }
                data.constant = true;
                data.const_name = Some(name.clone());
            }
            KilnLang::Proj(i, [x]) => {
                let x = &egraph[*x].data;
                data.types = x.types.get(*i).cloned().into_iter().collect();
                data.constant = x.constant;
            }
            KilnLang::Op(key, children) => {
                let mut types = Vec::with_capacity(children.len());
                for &c in children {
                    match egraph[c].data.ty() {
                        Some(t) => types.push(t.clone()),
                        None => return data,
                    }
                }
                let consts: Vec<Option<&Tensor>> = children
                    .iter()
                    .map(|&c| {
                        egraph[c]
                            .data
                            .const_name
                            .as_ref()
                            .and_then(|n| egraph.analysis.consts.get(n))
                    })
                    .collect();
                data.types = key
                    .op()
                    .infer(&InferInputs {
                        types: &types,
                        consts: &consts,
                    })
                    .unwrap_or_default();
                data.constant = children.iter().all(|&c| egraph[c].data.constant);
            }
        }
        data
    }

    fn merge(&mut self, a: &mut ValueData, b: ValueData) -> DidMerge {
        let mut changed = DidMerge(false, false);
        if a.types.is_empty() {
            changed.0 |= !b.types.is_empty();
            a.types = b.types;
        } else if b.types.is_empty() {
            changed.1 = true;
        } else {
            for (ta, tb) in a.types.iter_mut().zip(&b.types) {
                changed = changed | merge_type(ta, tb);
            }
            if b.types.len() > a.types.len() {
                a.types.extend_from_slice(&b.types[a.types.len()..]);
                changed.0 = true;
            } else if a.types.len() > b.types.len() {
                changed.1 = true;
            }
        }
        if b.constant && !a.constant {
            a.constant = true;
            changed.0 = true;
        } else if a.constant && !b.constant {
            changed.1 = true;
        }
        if a.const_name.is_none() && b.const_name.is_some() {
            a.const_name = b.const_name.clone();
            changed.0 = true;
        } else if a.const_name.is_some() && b.const_name.is_none() {
            changed.1 = true;
        }
        // The earliest source value names the merged class: an equivalent
        // recomputation later in the model (a no-op cast, an `x + 0`) does not
        // rename its producer or move it to its own brick.
        match (&a.origin, &b.origin) {
            (None, Some(_)) => {
                a.origin = b.origin;
                changed.0 = true;
            }
            (Some(_), None) => changed.1 = true,
            (Some(x), Some(y)) if y.order < x.order => {
                a.origin = b.origin;
                changed = DidMerge(true, true);
            }
            (Some(x), Some(y)) if x.order < y.order => changed.1 = true,
            _ => {}
        }
        changed
    }
}

/// How much a dimension tells: known > symbolic > unknown.
fn rank_of(d: &Dim) -> u8 {
    match d {
        Dim::Known(_) => 2,
        Dim::Sym(_) => 1,
        Dim::Any => 0,
    }
}

/// Keeps the more informative dimension of each pair in `a`.
pub(crate) fn merge_type(a: &mut TensorType, b: &TensorType) -> DidMerge {
    debug_assert_eq!(a.dtype, b.dtype, "merged e-classes disagree on dtype");
    debug_assert_eq!(
        a.shape.rank(),
        b.shape.rank(),
        "merged e-classes disagree on rank: {a} vs {b}"
    );
    let mut changed = DidMerge(false, false);
    for (da, db) in a.shape.0.iter_mut().zip(&b.shape.0) {
        match rank_of(da).cmp(&rank_of(db)) {
            std::cmp::Ordering::Less => {
                *da = db.clone();
                changed.0 = true;
            }
            std::cmp::Ordering::Greater => changed.1 = true,
            std::cmp::Ordering::Equal => {
                debug_assert!(
                    !matches!((&*da, db), (Dim::Known(x), Dim::Known(y)) if x != y),
                    "merged e-classes disagree on a dimension: {a} vs {b}"
                );
            }
        }
    }
    changed
}

/// Merges `ty` (e.g. a type the source graph recorded) into the data of `id`.
pub fn refine_type(egraph: &mut KilnEGraph, id: Id, index: usize, ty: &TensorType) {
    let data = &mut egraph[id].data;
    if index < data.types.len() {
        merge_type(&mut data.types[index], ty);
    } else if index == data.types.len() {
        data.types.push(ty.clone());
    }
}
