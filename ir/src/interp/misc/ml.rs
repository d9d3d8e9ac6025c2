//! Reference evaluation of the classical-ML ops: ONNX-ML's `TreeEnsemble` and
//! ONNX's `TfIdfVectorizer` (integer tokens).

use std::collections::HashMap;

use crate::error::OpError;
use crate::op::{MiscOp, TfIdfWeighting, TreeAggregate, TreeBranch, TreeMode, TreeNode};
use crate::{DType, Tensor};

/// Evaluates [`MiscOp::TreeEnsemble`] and [`MiscOp::TfIdfVectorizer`].
pub(super) fn eval(op: &MiscOp, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let x = *inputs.first().ok_or(OpError::value("missing input 0"))?;
    match op {
        MiscOp::TreeEnsemble {
            nodes,
            roots,
            leaf_targets,
            leaf_weights,
            targets,
            aggregate,
        } => tree_ensemble(
            x,
            &Trees {
                nodes,
                roots,
                leaf_targets,
                leaf_weights,
                targets: *targets,
                aggregate: *aggregate,
            },
        ),
        MiscOp::TfIdfVectorizer { .. } => tfidf(x, op),
        other => Err(OpError::value(format!("{other:?} is not an ML op"))),
    }
    .map(|t| vec![t])
}

struct Trees<'a> {
    nodes: &'a [TreeNode],
    roots: &'a [TreeBranch],
    leaf_targets: &'a [usize],
    leaf_weights: &'a [f64],
    targets: usize,
    aggregate: TreeAggregate,
}

/// Whether `node` sends the row to its true branch.
fn takes_true(node: &TreeNode, v: f64) -> bool {
    if v.is_nan() && node.missing_true {
        return true;
    }
    let s = node.split;
    match node.mode {
        TreeMode::Leq => v <= s,
        TreeMode::Lt => v < s,
        TreeMode::Gte => v >= s,
        TreeMode::Gt => v > s,
        TreeMode::Eq => v == s,
        TreeMode::Neq => v != s,
        TreeMode::Member => node.members.contains(&v),
    }
}

/// The leaf a row reaches from `root`.
fn walk(t: &Trees, row: &[f64], root: TreeBranch) -> Result<usize, OpError> {
    let mut at = root;
    // A walk through a tree visits each interior node at most once.
    for _ in 0..=t.nodes.len() {
        match at {
            TreeBranch::Leaf(l) => return Ok(l),
            TreeBranch::Node(i) => {
                let node = t.nodes.get(i).ok_or_else(|| {
                    OpError::value(format!("TreeEnsemble node index {i} out of range"))
                })?;
                let v = *row.get(node.feature).ok_or_else(|| {
                    OpError::value(format!(
                        "TreeEnsemble feature {} of rows of {} features",
                        node.feature,
                        row.len()
                    ))
                })?;
                at = if takes_true(node, v) {
                    node.on_true
                } else {
                    node.on_false
                };
            }
        }
    }
    Err(OpError::value("TreeEnsemble nodes form a cycle"))
}

fn tree_ensemble(x: &Tensor, t: &Trees) -> Result<Tensor, OpError> {
    let s = x.shape();
    if s.len() != 2 || !x.dtype().is_float() {
        return Err(OpError::shape(format!(
            "TreeEnsemble of {} {s:?} (a float matrix)",
            x.dtype()
        )));
    }
    let (n, f) = (s[0], s[1]);
    let (lowest, highest) = match x.dtype() {
        DType::F64 => (f64::MIN, f64::MAX),
        DType::F16 => (-65504.0, 65504.0),
        DType::BF16 => (-3.3895313892515355e38, 3.3895313892515355e38),
        _ => (f32::MIN as f64, f32::MAX as f64),
    };
    let init = match t.aggregate {
        TreeAggregate::Average | TreeAggregate::Sum => 0.0,
        TreeAggregate::Min => highest,
        TreeAggregate::Max => lowest,
    };
    let v = x.to_f64_vec();
    let mut out = vec![init; n * t.targets];
    for r in 0..n {
        let row = &v[r * f..(r + 1) * f];
        let acc = &mut out[r * t.targets..(r + 1) * t.targets];
        for &root in t.roots {
            let leaf = walk(t, row, root)?;
            let (target, w) = match (t.leaf_targets.get(leaf), t.leaf_weights.get(leaf)) {
                (Some(&tg), Some(&w)) if tg < t.targets => (tg, w),
                _ => {
                    return Err(OpError::value(format!(
                        "TreeEnsemble leaf {leaf} out of range or of a target out of range"
                    )))
                }
            };
            let a = &mut acc[target];
            *a = match t.aggregate {
                TreeAggregate::Sum => *a + w,
                TreeAggregate::Average => *a + w / t.roots.len() as f64,
                TreeAggregate::Min => a.min(w),
                TreeAggregate::Max => a.max(w),
            };
        }
    }
    Ok(Tensor::from_f64(x.dtype(), vec![n, t.targets], &out))
}

/// A node of the n-gram trie: the n-gram's id (0: none) and its extensions.
#[derive(Default)]
struct Gram {
    id: usize,
    next: HashMap<i64, usize>,
}

/// The trie of the pool's n-grams of lengths `min..=max`; ids count every
/// pool n-gram from 1, in pool order.
fn build_trie(
    pool: &[i64],
    counts: &[usize],
    min: usize,
    max: usize,
) -> Result<Vec<Gram>, OpError> {
    let mut trie = vec![Gram::default()];
    let mut id = 1;
    for (i, &start) in counts.iter().enumerate() {
        let end = counts.get(i + 1).copied().unwrap_or(pool.len());
        if start > end || end > pool.len() {
            return Err(OpError::value(format!(
                "TfIdfVectorizer ngram_counts {counts:?} do not split a pool of {}",
                pool.len()
            )));
        }
        let size = i + 1;
        let grams = (end - start) / size;
        if size < min || size > max {
            id += grams;
            continue;
        }
        for g in 0..grams {
            let mut at = 0;
            for &tok in &pool[start + g * size..start + (g + 1) * size] {
                at = match trie[at].next.get(&tok) {
                    Some(&k) => k,
                    None => {
                        trie.push(Gram::default());
                        let k = trie.len() - 1;
                        trie[at].next.insert(tok, k);
                        k
                    }
                };
            }
            trie[at].id = id;
            id += 1;
        }
    }
    Ok(trie)
}

fn tfidf(x: &Tensor, op: &MiscOp) -> Result<Tensor, OpError> {
    let MiscOp::TfIdfVectorizer {
        min_gram,
        max_gram,
        max_skip,
        weighting,
        ngram_counts,
        ngram_indexes,
        pool,
        weights,
    } = op
    else {
        return Err(OpError::unsupported("not a TfIdfVectorizer op"));
    };
    let (min, max) = (*min_gram, *max_gram);
    if min == 0 || max < min {
        return Err(OpError::attribute(format!(
            "TfIdfVectorizer gram lengths {min}..={max}"
        )));
    }
    if !x.dtype().is_int() {
        return Err(OpError::dtype(format!(
            "TfIdfVectorizer of {} (integer tokens)",
            x.dtype()
        )));
    }
    let s = x.shape();
    let (rows, c, out_shape) = match s.len() {
        0 | 1 => (1, x.numel(), None),
        2 if s[0] > 0 => (s[0], s[1], Some(s[0])),
        _ => {
            return Err(OpError::shape(format!(
                "TfIdfVectorizer input {s:?}: expected [C] or [B, C] with B > 0"
            )))
        }
    };
    let columns = ngram_indexes.iter().max().map_or(0, |m| m + 1);
    if !weights.is_empty() && weights.len() < columns {
        return Err(OpError::attribute(format!(
            "TfIdfVectorizer has {} weights for {columns} columns",
            weights.len()
        )));
    }
    let trie = build_trie(pool, ngram_counts, min, max)?;
    let tokens = x.to_i64_vec();
    let mut freq = vec![0u64; rows * columns];
    for r in 0..rows {
        let row = &tokens[r * c..(r + 1) * c];
        let counts = &mut freq[r * columns..(r + 1) * columns];
        let mut start_size = min;
        for skip in 1..=max_skip + 1 {
            for begin in 0..c {
                if begin + skip * (start_size - 1) >= c {
                    break;
                }
                let (mut at, mut size, mut item) = (0, 1, begin);
                while size <= max && item < c {
                    let Some(&k) = trie[at].next.get(&row[item]) else {
                        break;
                    };
                    let id = trie[k].id;
                    if size >= start_size && id != 0 {
                        let col = *ngram_indexes.get(id - 1).ok_or_else(|| {
                            OpError::attribute(format!(
                                "TfIdfVectorizer n-gram {id} has no ngram_indexes entry"
                            ))
                        })?;
                        counts[col] += 1;
                    }
                    at = k;
                    size += 1;
                    item += skip;
                }
            }
            // Unigrams are counted at the first distance only.
            if start_size == 1 {
                start_size = 2;
                if start_size > max {
                    break;
                }
            }
        }
    }
    let out: Vec<f32> = freq
        .iter()
        .enumerate()
        .map(|(p, &f)| {
            let w = weights.get(p % columns.max(1)).copied();
            match (weighting, w) {
                (TfIdfWeighting::Tf, _) | (TfIdfWeighting::TfIdf, None) => f as f32,
                (TfIdfWeighting::Idf, w) => {
                    if f > 0 {
                        w.unwrap_or(1.0)
                    } else {
                        0.0
                    }
                }
                (TfIdfWeighting::TfIdf, Some(w)) => w * f as f32,
            }
        })
        .collect();
    let shape = match out_shape {
        Some(b) => vec![b, columns],
        None => vec![columns],
    };
    Ok(Tensor::from_vec(shape, out))
}
