//! Converters of the classical-ML domain (`ai.onnx.ml`) and of
//! `TfIdfVectorizer` (default domain); semantics from ONNX's reference
//! implementations:
//!
//! - `Binarizer`: `x > threshold ? 1 : 0` in x's type, lowered to `Where`;
//! - `ArrayFeatureExtractor`: the flattened indices gathered along the last
//!   axis (a 1-D input gives one row), lowered to `Gather`;
//! - `TreeEnsemble` (opset 5) and `TfIdfVectorizer` onto kiln's own ops.
//!
//! Attribute values kiln does not implement are refused with the node's name.

use kiln_ir::op::{
    BinaryOp, LayoutOp, MiscOp, TfIdfWeighting, TreeAggregate, TreeBranch, TreeMode, TreeNode,
};
use kiln_ir::{DType, Op};

use super::misc::usizes;
use crate::onnx::{NodeCtx, OnnxError, Registry};

/// The classical-ML op domain.
pub const ML: &str = "ai.onnx.ml";

/// Registers this family's converters.
pub fn register(reg: &mut Registry) {
    reg.insert_in(ML, "Binarizer", convert_binarizer);
    reg.insert_in(ML, "ArrayFeatureExtractor", convert_array_feature_extractor);
    reg.insert_in(ML, "TreeEnsemble", convert_tree_ensemble);
    reg.insert("TfIdfVectorizer", convert_tfidf);
}

/// Binarizer: `Where(x > threshold, 1, 0)`. For integer inputs `x > t` is
/// `x > floor(t)`, so the threshold is compared exactly in x's own type.
fn convert_binarizer(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let x = cx.req(0)?;
    let dtype = cx.dtype(x);
    let threshold = cx.attrs.float_or("threshold", 0.0) as f64;
    let (cmp, t) = match dtype {
        DType::F32 | DType::F64 => (BinaryOp::Greater, threshold),
        DType::I32 | DType::I64 => {
            let (lo, hi) = if dtype == DType::I32 {
                (i32::MIN as f64, i32::MAX as f64)
            } else {
                (i64::MIN as f64, i64::MAX as f64)
            };
            let t = threshold.floor();
            if t.is_nan() {
                return Err(cx.err("threshold NaN"));
            }
            if t < lo {
                // Every value is above the threshold.
                (BinaryOp::GreaterOrEqual, lo)
            } else {
                (BinaryOp::Greater, t.min(hi))
            }
        }
        other => {
            return Err(cx.err(format!(
                "Binarizer of {other} (float, double, int32 and int64 only)"
            )))
        }
    };
    let t = cx.scalar(dtype, t);
    let c = cx.op(Op::Binary(cmp), &[x, t])?;
    let (one, zero) = (cx.scalar(dtype, 1.0), cx.scalar(dtype, 0.0));
    let y = cx.op(Op::Layout(LayoutOp::Where), &[c, one, zero])?;
    cx.set_output(0, y);
    Ok(())
}

/// ArrayFeatureExtractor: `x[..., indices.ravel()]`; a 1-D `x` gives `[1, n]`.
fn convert_array_feature_extractor(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let (x, i) = (cx.req(0)?, cx.req(1)?);
    let rank = cx.rank(x);
    if rank == 0 {
        return Err(cx.err("ArrayFeatureExtractor of a scalar"));
    }
    let flat = cx.ints(&[-1]);
    let i = cx.op(
        Op::Layout(LayoutOp::Reshape { allowzero: false }),
        &[i, flat],
    )?;
    let mut y = cx.op(Op::Layout(LayoutOp::Gather { axis: rank - 1 }), &[x, i])?;
    if rank == 1 {
        y = cx.op(Op::Layout(LayoutOp::Unsqueeze { axes: vec![0] }), &[y])?;
    }
    cx.set_output(0, y);
    Ok(())
}

/// The values of tensor attribute `name` (empty when absent).
fn tensor_values(cx: &NodeCtx, name: &str) -> Result<Vec<f64>, OnnxError> {
    Ok(cx
        .attr_tensor(name)?
        .map(|t| t.to_f64_vec())
        .unwrap_or_default())
}

/// TreeEnsemble (ai.onnx.ml opset 5) without post transform.
fn convert_tree_ensemble(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    let post = cx.attrs.int_or("post_transform", 0);
    if post != 0 {
        return Err(cx.err(format!(
            "post_transform {post} is not supported (only 0, NONE)"
        )));
    }
    let aggregate = match cx.attrs.int_or("aggregate_function", 1) {
        0 => TreeAggregate::Average,
        1 => TreeAggregate::Sum,
        2 => TreeAggregate::Min,
        3 => TreeAggregate::Max,
        a => return Err(cx.err(format!("aggregate_function {a} is not supported"))),
    };
    let targets = cx
        .attrs
        .int("n_targets")
        .ok_or_else(|| cx.err("missing n_targets"))?;
    let targets = usize::try_from(targets).map_err(|_| cx.err(format!("n_targets {targets}")))?;
    let features = usizes(cx, "nodes_featureids")?;
    let splits = tensor_values(cx, "nodes_splits")?;
    let modes: Vec<i64> = cx
        .attr_tensor("nodes_modes")?
        .map(|t| t.to_i64_vec())
        .unwrap_or_default();
    let true_ids = usizes(cx, "nodes_truenodeids")?;
    let false_ids = usizes(cx, "nodes_falsenodeids")?;
    let true_leafs = cx.attrs.ints("nodes_trueleafs").unwrap_or_default();
    let false_leafs = cx.attrs.ints("nodes_falseleafs").unwrap_or_default();
    let missing = cx
        .attrs
        .ints("nodes_missing_value_tracks_true")
        .unwrap_or_default();
    let leaf_targets = usizes(cx, "leaf_targetids")?;
    let leaf_weights = tensor_values(cx, "leaf_weights")?;
    let roots = usizes(cx, "tree_roots")?;
    let n = features.len();
    if [
        splits.len(),
        modes.len(),
        true_ids.len(),
        false_ids.len(),
        true_leafs.len(),
        false_leafs.len(),
    ]
    .iter()
    .any(|&l| l != n)
        || !(missing.is_empty() || missing.len() == n)
    {
        return Err(cx.err("the nodes_* attributes differ in length"));
    }
    let leaves = leaf_targets.len();
    if leaf_weights.len() != leaves {
        return Err(cx.err(format!(
            "{leaves} leaf_targetids but {} leaf_weights",
            leaf_weights.len()
        )));
    }
    if let Some(t) = leaf_targets.iter().find(|&&t| t >= targets) {
        return Err(cx.err(format!("leaf target {t} of {targets} targets")));
    }
    let branch = |id: usize, leaf: i64| -> Result<TreeBranch, OnnxError> {
        match leaf {
            0 if id < n => Ok(TreeBranch::Node(id)),
            1 if id < leaves => Ok(TreeBranch::Leaf(id)),
            0 | 1 => Err(cx.err(format!(
                "{} index {id} out of range ({n} nodes, {leaves} leaves)",
                if leaf == 1 { "leaf" } else { "node" }
            ))),
            _ => Err(cx.err(format!("nodes_*leafs value {leaf} (0 or 1)"))),
        }
    };
    // Members of each set-membership node, NaN-delimited in node order.
    let mut sets = Vec::new();
    let mut current = Vec::new();
    for v in tensor_values(cx, "membership_values")? {
        if v.is_nan() {
            sets.push(std::mem::take(&mut current));
        } else {
            current.push(v);
        }
    }
    if !current.is_empty() {
        return Err(cx.err("membership_values do not end with NaN"));
    }
    let mut sets = sets.into_iter();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mode = match modes[i] {
            0 => TreeMode::Leq,
            1 => TreeMode::Lt,
            2 => TreeMode::Gte,
            3 => TreeMode::Gt,
            4 => TreeMode::Eq,
            5 => TreeMode::Neq,
            6 => TreeMode::Member,
            m => return Err(cx.err(format!("nodes_modes value {m}"))),
        };
        let members = if mode == TreeMode::Member {
            sets.next()
                .ok_or_else(|| cx.err("membership_values lack a set for a set-membership node"))?
        } else {
            Vec::new()
        };
        nodes.push(TreeNode {
            feature: features[i],
            mode,
            split: if mode == TreeMode::Member {
                0.0
            } else {
                splits[i]
            },
            members,
            missing_true: missing.get(i).is_some_and(|&m| m != 0),
            on_true: branch(true_ids[i], true_leafs[i])?,
            on_false: branch(false_ids[i], false_leafs[i])?,
        });
    }
    if sets.next().is_some() {
        return Err(cx.err("membership_values has more sets than set-membership nodes"));
    }
    let roots = roots
        .into_iter()
        .map(|r| {
            let node = nodes
                .get(r)
                .ok_or_else(|| cx.err(format!("tree root {r} of {n} nodes")))?;
            // A one-leaf tree: both branches of its root lead to the same leaf.
            Ok(match (node.on_true, node.on_false) {
                (TreeBranch::Leaf(a), TreeBranch::Leaf(b)) if a == b => TreeBranch::Leaf(a),
                _ => TreeBranch::Node(r),
            })
        })
        .collect::<Result<Vec<_>, OnnxError>>()?;
    let x = cx.req(0)?;
    let op = MiscOp::TreeEnsemble {
        nodes,
        roots,
        leaf_targets,
        leaf_weights,
        targets,
        aggregate,
    };
    let y = cx.op(Op::Misc(op), &[x])?;
    cx.set_output(0, y);
    Ok(())
}

/// TfIdfVectorizer over integer tokens (string pools are refused).
fn convert_tfidf(cx: &mut NodeCtx) -> Result<(), OnnxError> {
    if cx.attrs.has("pool_strings") {
        return Err(cx.err("pool_strings is not supported (integer pools only)"));
    }
    let weighting = match cx.attrs.string("mode").as_deref() {
        Some("TF") => TfIdfWeighting::Tf,
        Some("IDF") => TfIdfWeighting::Idf,
        Some("TFIDF") => TfIdfWeighting::TfIdf,
        m => return Err(cx.err(format!("mode {m:?} (TF, IDF or TFIDF)"))),
    };
    let int = |name: &str| -> Result<usize, OnnxError> {
        let v = cx
            .attrs
            .int(name)
            .ok_or_else(|| cx.err(format!("missing {name}")))?;
        usize::try_from(v).map_err(|_| cx.err(format!("{name} {v}")))
    };
    let (min_gram, max_gram, max_skip) = (
        int("min_gram_length")?,
        int("max_gram_length")?,
        int("max_skip_count")?,
    );
    if min_gram == 0 || max_gram < min_gram {
        return Err(cx.err(format!(
            "gram lengths {min_gram}..={max_gram}: expected 1 ≤ min ≤ max"
        )));
    }
    let ngram_counts = usizes(cx, "ngram_counts")?;
    let ngram_indexes = usizes(cx, "ngram_indexes")?;
    if ngram_indexes.is_empty() {
        return Err(cx.err("empty ngram_indexes"));
    }
    let pool = cx.attrs.ints("pool_int64s").unwrap_or_default();
    if ngram_counts.windows(2).any(|w| w[0] > w[1]) || ngram_counts.iter().any(|&c| c > pool.len())
    {
        return Err(cx.err(format!(
            "ngram_counts {ngram_counts:?} do not split a pool of {}",
            pool.len()
        )));
    }
    let weights = cx.attrs.floats("weights").unwrap_or_default();
    let columns = ngram_indexes.iter().max().map_or(0, |m| m + 1);
    if !weights.is_empty() && weights.len() < columns {
        return Err(cx.err(format!(
            "{} weights for {columns} output columns",
            weights.len()
        )));
    }
    let x = cx.req(0)?;
    let op = MiscOp::TfIdfVectorizer {
        min_gram,
        max_gram,
        max_skip,
        weighting,
        ngram_counts,
        ngram_indexes,
        pool,
        weights,
    };
    let y = cx.op(Op::Misc(op), &[x])?;
    cx.set_output(0, y);
    Ok(())
}
