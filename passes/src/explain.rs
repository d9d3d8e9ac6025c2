//! What the optimizer did, in the model's terms: per brick the modelled cost before
//! and after, the rules that fired on it and the fused regions and composite ops
//! chosen in it; per phase the e-graph statistics. The data behind `kiln explain`
//! (serializable, so `--json` prints the same thing the text table shows).
//!
//! Attribution: a source node belongs to its brick; an extracted node to the brick
//! of the source node it is (same op on the same named values), else to the brick
//! of the e-class it computes (extraction keeps origins); a rule application to the
//! brick of the e-class it changed ([`crate::pipeline::brick_of`]). Costs are
//! priced per node by the same [`CostModel`] the pipeline extracts with, so a
//! brick's before and after are comparable; their sums are the graph costs of the
//! source and extracted graphs (the pipeline's own `cost_after` prices the program
//! in the e-graph, whose types can be more precise, and may differ slightly).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use egg::{Language, StopReason};
use kiln_ir::op::{CompositeOp, LayoutOp};
use kiln_ir::{BrickId, Graph, Op, TensorType, ValueDef};
use serde::Serialize;

use crate::cost::CostModel;
use crate::pipeline::Report;
use crate::KilnEGraph;

/// Whether `op` is a composite op reported as chosen, and named inside a fused
/// region's label when the region computes it.
fn is_reported_composite(op: &Op) -> bool {
    matches!(
        op,
        Op::Composite(
            CompositeOp::Softmax { .. }
                | CompositeOp::LayerNorm { .. }
                | CompositeOp::RmsNorm { .. }
                | CompositeOp::Gelu { .. }
                | CompositeOp::Attention { .. }
        )
    )
}

/// Whether `op` is reported as chosen: fused regions, the composites of
/// [`is_reported_composite`], and the `Split` that hands out the pieces of
/// concatenated sibling projections (QKV, gate/up).
pub fn is_chosen(op: &Op) -> bool {
    matches!(op, Op::Fused(_) | Op::Layout(LayoutOp::Split { .. })) || is_reported_composite(op)
}

/// Seconds to the microseconds reports are written in.
const MICROS: f64 = 1e6;

/// Name of the row of nodes that belong to no brick.
pub const NO_BRICK: &str = "(no brick)";

/// The whole explanation of one pipeline run.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The graph's name.
    pub model: String,
    /// The target profile the cost is modelled for.
    pub target: String,
    /// Modelled µs of the source graph (the pipeline's figure).
    pub cost_before_us: f64,
    /// Modelled µs of the optimized program (the pipeline's figure, priced in the
    /// e-graph).
    pub cost_after_us: f64,
    /// Nodes of the source graph.
    pub nodes_before: usize,
    /// Nodes of the optimized graph.
    pub nodes_after: usize,
    /// One row per brick with nodes or rule applications, and its ancestors, in
    /// model order (the order bricks first appear in the source graph, parents
    /// before children), then [`NO_BRICK`].
    pub bricks: Vec<BrickReport>,
    /// One row per phase, in order.
    pub phases: Vec<PhaseSummary>,
    /// Milliseconds to build the e-graph.
    pub to_egraph_ms: f64,
    /// Milliseconds of the final extraction.
    pub extract_ms: f64,
    /// Milliseconds of the whole pipeline run.
    pub total_ms: f64,
    /// Why the result is not the last phase's program, when it is not
    /// ([`Report::fallback`]).
    pub fallback: Option<String>,
}

/// How many bricks of one kind the optimized program computes with fused regions
/// or composite ops, and which.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindCoverage {
    /// Bricks of this kind that had nodes in the source.
    pub bricks: usize,
    /// Of those, bricks with at least one chosen region or composite op.
    pub fused: usize,
    /// The chosen labels summed over the kind's bricks.
    pub chosen: BTreeMap<String, usize>,
}

impl Explanation {
    /// Per brick kind (`attention`, `ffn`, `norm`...), how many bricks were fused
    /// and with what: the figure "every attention and FFN brick fused" is read here.
    pub fn coverage(&self) -> BTreeMap<String, KindCoverage> {
        let mut out: BTreeMap<String, KindCoverage> = BTreeMap::new();
        for b in &self.bricks {
            let (Some(kind), true) = (&b.kind, b.nodes_before > 0) else {
                continue;
            };
            let k = out.entry(kind.clone()).or_default();
            k.bricks += 1;
            k.fused += usize::from(!b.chosen.is_empty());
            for (label, n) in &b.chosen {
                *k.chosen.entry(label.clone()).or_insert(0) += n;
            }
        }
        out
    }
}

/// What happened in one brick (its own nodes; nested bricks have their own rows).
#[derive(Clone, Debug, Serialize)]
pub struct BrickReport {
    /// The brick's path (`encoder.layer.0.attention`), or [`NO_BRICK`].
    pub name: String,
    /// The brick's kind (`attention`, `ffn`...); `None` for [`NO_BRICK`].
    pub kind: Option<String>,
    /// How deeply it is nested (0 = top level).
    pub depth: usize,
    /// Source nodes in the brick.
    pub nodes_before: usize,
    /// Optimized nodes in the brick.
    pub nodes_after: usize,
    /// Modelled µs of its source nodes.
    pub cost_before_us: f64,
    /// Modelled µs of its optimized nodes.
    pub cost_after_us: f64,
    /// Applications per rule, over all phases.
    pub rules: BTreeMap<String, usize>,
    /// Fused regions and composite ops in the optimized graph, per label
    /// (`Softmax`, `Fused[MatMul]`...; see [`chosen_label`]).
    pub chosen: BTreeMap<String, usize>,
}

/// One phase's e-graph statistics.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseSummary {
    /// The phase's name.
    pub name: String,
    /// Why it stopped ([`stop_reason_text`]).
    pub stop_reason: String,
    /// E-classes before.
    pub classes_before: usize,
    /// E-classes after.
    pub classes_after: usize,
    /// E-nodes before.
    pub nodes_before: usize,
    /// E-nodes after.
    pub nodes_after: usize,
    /// Iterations run.
    pub iterations: usize,
    /// Milliseconds.
    pub time_ms: f64,
    /// Applications per rule.
    pub applied: BTreeMap<String, usize>,
}

/// A stop reason in words: `saturated`, `node limit 200000`...
pub fn stop_reason_text(reason: Option<&StopReason>) -> String {
    match reason {
        None => "no iteration".into(),
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit {n}"),
        Some(StopReason::NodeLimit(n)) => format!("node limit {n}"),
        Some(StopReason::TimeLimit(s)) => format!("time limit {s}s"),
        Some(StopReason::Other(s)) => s.clone(),
    }
}

/// The label of a chosen fused region or composite op, `None` for other ops: the
/// op's name, and for a fused region what it is anchored on and the composites it
/// computes: `Fused[MatMul+Gelu]` is a matmul with a GELU epilogue,
/// `Fused[elementwise]` a chain of elementwise ops.
pub fn chosen_label(op: &Op) -> Option<String> {
    if !is_chosen(op) {
        return None;
    }
    let Op::Fused(f) = op else {
        return Some(op.name().to_string());
    };
    let mut parts: Vec<&str> = vec![];
    if let Some(a) = f.anchor() {
        parts.push(f.steps[a].op.name());
    }
    for s in f.steps.iter().filter(|s| is_reported_composite(&s.op)) {
        let n = s.op.name();
        if !parts.contains(&n) {
            parts.push(n);
        }
    }
    if parts.is_empty() {
        parts.push("elementwise");
    }
    Some(format!("Fused[{}]", parts.join("+")))
}

/// The modelled seconds of each node of `graph` under `cost`, in node order (as
/// [`CostModel::graph_cost`] prices them: nodes over constants only are free).
pub fn node_costs(graph: &Graph, cost: &CostModel) -> Vec<f64> {
    let mut constant: Vec<bool> = graph
        .values()
        .iter()
        .map(|v| matches!(v.def, ValueDef::Const(_)))
        .collect();
    let mut out = Vec::with_capacity(graph.nodes().len());
    for n in graph.nodes() {
        let folded = !n.inputs.is_empty() && n.inputs.iter().all(|v| constant[v.0 as usize]);
        for o in &n.outputs {
            constant[o.0 as usize] = folded;
        }
        if folded {
            out.push(0.0);
            continue;
        }
        let ty = |v: &kiln_ir::ValueId| graph.value(*v).ty.clone();
        let inputs: Vec<TensorType> = n.inputs.iter().map(ty).collect();
        let outputs: Vec<TensorType> = n.outputs.iter().map(ty).collect();
        out.push(cost.kernel(&n.op, &inputs, &outputs).seconds);
    }
    out
}

/// Per-brick accumulator.
#[derive(Default)]
struct Row {
    nodes_before: usize,
    nodes_after: usize,
    cost_before: f64,
    cost_after: f64,
    rules: BTreeMap<String, usize>,
    chosen: BTreeMap<String, usize>,
}

/// Explains the run that optimized `source` into `optimized` with `report`, pricing
/// nodes with `cost` (the pipeline's model).
pub fn explain(
    source: &Graph,
    optimized: &Graph,
    report: &Report,
    cost: &CostModel,
) -> Explanation {
    let mut rows: BTreeMap<Option<BrickId>, Row> = BTreeMap::new();
    // Model order: first appearance among the source's nodes, then the optimized
    // graph's, then rule applications'.
    let mut order: Vec<Option<BrickId>> = vec![];
    // A brick's ancestors come before it, so the rows read as a tree.
    let see = |b: Option<BrickId>, order: &mut Vec<Option<BrickId>>| {
        let mut chain = vec![b];
        let mut p = b.and_then(|id| source.bricks[id.0 as usize].parent);
        while let Some(q) = p {
            chain.push(Some(q));
            p = source.bricks[q.0 as usize].parent;
        }
        for c in chain.into_iter().rev() {
            if !order.contains(&c) {
                order.push(c);
            }
        }
    };
    for (n, c) in source.nodes().iter().zip(node_costs(source, cost)) {
        see(n.brick, &mut order);
        let row = rows.entry(n.brick).or_default();
        row.nodes_before += 1;
        row.cost_before += c;
    }
    // An optimized node that is a source node (same op on the same named values)
    // keeps that node's brick: the e-class's origin can be another member's after
    // a union (`cast(x) = x` makes x's producer look like the cast's).
    let key = |g: &Graph, n: &kiln_ir::Node| {
        let inputs: Vec<String> = n.inputs.iter().map(|&v| g.value(v).name.clone()).collect();
        (n.op.to_text(), inputs)
    };
    let source_brick: HashMap<(String, Vec<String>), Option<BrickId>> = source
        .nodes()
        .iter()
        .map(|n| (key(source, n), n.brick))
        .collect();
    for (n, c) in optimized.nodes().iter().zip(node_costs(optimized, cost)) {
        let brick = source_brick
            .get(&key(optimized, n))
            .copied()
            .unwrap_or(n.brick);
        see(brick, &mut order);
        let row = rows.entry(brick).or_default();
        row.nodes_after += 1;
        row.cost_after += c;
        if let Some(label) = chosen_label(&n.op) {
            *row.chosen.entry(label).or_insert(0) += 1;
        }
    }
    for phase in &report.phases {
        for ((rule, brick), &count) in &phase.applied_by_brick {
            see(*brick, &mut order);
            *rows
                .entry(*brick)
                .or_default()
                .rules
                .entry(rule.clone())
                .or_insert(0) += count;
        }
    }
    // The brickless row goes last.
    order.sort_by_key(|b| b.is_none());
    let bricks = order
        .into_iter()
        .map(|b| {
            let row = rows.remove(&b).unwrap_or_default();
            let (name, kind, depth) = match b {
                Some(id) => {
                    let brick = &source.bricks[id.0 as usize];
                    let mut depth = 0;
                    let mut p = brick.parent;
                    while let Some(q) = p {
                        depth += 1;
                        p = source.bricks[q.0 as usize].parent;
                    }
                    (
                        brick.name.clone(),
                        Some(brick.kind.name().to_string()),
                        depth,
                    )
                }
                None => (NO_BRICK.to_string(), None, 0),
            };
            BrickReport {
                name,
                kind,
                depth,
                nodes_before: row.nodes_before,
                nodes_after: row.nodes_after,
                cost_before_us: row.cost_before * MICROS,
                cost_after_us: row.cost_after * MICROS,
                rules: row.rules,
                chosen: row.chosen,
            }
        })
        .collect();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Explanation {
        model: source.name.clone(),
        target: report.target.clone(),
        cost_before_us: report.cost_before * MICROS,
        cost_after_us: report.cost_after * MICROS,
        fallback: report.fallback.clone(),
        nodes_before: source.nodes().len(),
        nodes_after: optimized.nodes().len(),
        bricks,
        phases: report
            .phases
            .iter()
            .map(|p| PhaseSummary {
                name: p.name.clone(),
                stop_reason: stop_reason_text(p.stop_reason.as_ref()),
                classes_before: p.classes_before,
                classes_after: p.classes_after,
                nodes_before: p.nodes_before,
                nodes_after: p.nodes_after,
                iterations: p.iterations,
                time_ms: ms(p.time),
                applied: p.applied.clone(),
            })
            .collect(),
        to_egraph_ms: ms(report.to_egraph_time),
        extract_ms: ms(report.extract_time),
        total_ms: ms(report.total_time),
    }
}

/// `s` as the inside of a Graphviz double-quoted string.
fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The e-graph as Graphviz: one dotted cluster per e-class (labelled with its id,
/// source value name and type), one box per e-node, an edge from each e-node to each
/// operand's e-class. Labels are escaped (op attributes can hold quotes).
pub fn egraph_dot(egraph: &KilnEGraph) -> String {
    let mut out = String::from("digraph egraph {\n  compound=true\n  clusterrank=local\n");
    let mut classes: Vec<_> = egraph.classes().collect();
    classes.sort_by_key(|c| c.id);
    for class in &classes {
        let d = &class.data;
        let name = d.origin.as_ref().map_or("", |o| o.value.as_str());
        let ty = d.ty().map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "  subgraph cluster_{} {{\n    style=dotted\n    label=\"#{} {} {}\"",
            class.id,
            class.id,
            dot_escape(name),
            dot_escape(&ty)
        );
        for (i, node) in class.iter().enumerate() {
            let _ = writeln!(
                out,
                "    n{}_{i} [shape=box, label=\"{}\"]",
                class.id,
                dot_escape(&node.to_string())
            );
        }
        out.push_str("  }\n");
    }
    for class in &classes {
        for (i, node) in class.iter().enumerate() {
            for (k, &child) in node.children().iter().enumerate() {
                let child = egraph.find(child);
                let _ = writeln!(
                    out,
                    "  n{}_{i} -> n{child}_0 [lhead=cluster_{child}, label=\"{k}\"]",
                    class.id
                );
            }
        }
    }
    out.push_str("}\n");
    out
}
