//! Conversion between [`kiln_ir::Graph`] and the e-graph.

use std::collections::HashMap;

use egg::{CostFunction, Extractor, Id, Language};
use kiln_ir::{Brick, Graph, NodeError, TensorType, ValueDef, ValueId};

use crate::analysis::{refine_type, KilnEGraph, Origin, OriginNode};
use crate::{KilnAnalysis, KilnLang, Name, OpKey};

/// A graph in e-graph form, with what is needed to turn it back into a graph.
pub struct EGraphModel {
    /// The e-graph (constant tensors are in `egraph.analysis.consts`).
    pub egraph: KilnEGraph,
    /// The e-class of each graph output, in order.
    pub roots: Vec<Id>,
    /// The graph's name.
    pub name: String,
    /// The graph inputs (name and type), in order; kept even when unused.
    pub inputs: Vec<(String, TensorType)>,
    /// The source graph's bricks (origins refer to them by index).
    pub bricks: Vec<Brick>,
}

/// Builds the e-graph of `graph`: one e-class per value (identical nodes are shared),
/// each remembering its source names and brick in its [`Origin`].
///
/// A node with several outputs is one e-class, each output a `proj` e-class over it;
/// a node with one output is that output's e-class.
pub fn to_egraph(graph: &Graph) -> EGraphModel {
    let mut egraph = KilnEGraph::new(KilnAnalysis::default());
    let mut class: Vec<Option<Id>> = vec![None; graph.values().len()];
    let origin = |value: &str, node: Option<OriginNode>, brick, order: ValueId| Origin {
        value: value.to_string(),
        node,
        brick,
        order: order.0 as usize,
    };
    for (i, v) in graph.values().iter().enumerate() {
        let enode = match &v.def {
            ValueDef::Input => KilnLang::Input(Name::from(&v.name)),
            ValueDef::Const(t) => {
                let name = Name::from(&v.name);
                egraph.analysis.consts.insert(name.clone(), t.clone());
                KilnLang::Const(name)
            }
            ValueDef::Node { .. } => continue,
        };
        let id = egraph.add(enode);
        refine_type(&mut egraph, id, 0, &v.ty);
        egraph[id]
            .data
            .origin
            .get_or_insert_with(|| origin(&v.name, None, None, ValueId(i as u32)));
        class[i] = Some(id);
    }
    for node in graph.nodes() {
        let children: Vec<Id> = node
            .inputs
            .iter()
            .map(|v| class[v.0 as usize].expect("inputs are defined before use"))
            .collect();
        let enode = KilnLang::Op(OpKey::new(&node.op), children);
        let id = egraph.add(enode.clone());
        let first = &graph.value(node.outputs[0]).name;
        let src = Some(OriginNode {
            name: node.name.clone(),
            enode,
            outputs: node.outputs.len(),
        });
        egraph[id]
            .data
            .origin
            .get_or_insert_with(|| origin(first, src, node.brick, node.outputs[0]));
        if let [out] = node.outputs[..] {
            refine_type(&mut egraph, id, 0, &graph.value(out).ty);
            class[out.0 as usize] = Some(id);
            continue;
        }
        for (index, &out) in node.outputs.iter().enumerate() {
            let v = graph.value(out);
            refine_type(&mut egraph, id, index, &v.ty);
            let p = egraph.add(KilnLang::Proj(index, [id]));
            egraph[p]
                .data
                .origin
                .get_or_insert_with(|| origin(&v.name, None, node.brick, out));
            class[out.0 as usize] = Some(p);
        }
    }
    egraph.rebuild();
    let roots = graph
        .outputs
        .iter()
        .map(|v| egraph.find(class[v.0 as usize].expect("outputs are defined")))
        .collect();
    EGraphModel {
        egraph,
        roots,
        name: graph.name.clone(),
        inputs: graph
            .inputs
            .iter()
            .map(|&v| (graph.value(v).name.clone(), graph.value(v).ty.clone()))
            .collect(),
        bricks: graph.bricks.clone(),
    }
}

/// Extracts the smallest program (egg's `AstSize`) of the model as a graph.
pub fn extract(model: &EGraphModel) -> Result<Graph, NodeError> {
    extract_with(model, egg::AstSize)
}

/// Extracts the cheapest program under `cost` as a graph.
///
/// A node keeps its source name when the chosen e-node is the source node's; every
/// node is put in the brick of the e-class it computes and every value keeps its
/// e-class's source name, so reports stay in the model's terms.
pub fn extract_with<CF: CostFunction<KilnLang>>(
    model: &EGraphModel,
    cost: CF,
) -> Result<Graph, NodeError> {
    let extractor = Extractor::new(&model.egraph, cost);
    extract_chosen(model, |c| extractor.find_best_node(c).clone())
}

/// Builds the graph of the program that `choose` picks: the e-node computing each
/// e-class the roots need (see [`extract_with`] for names and bricks).
pub fn extract_chosen(
    model: &EGraphModel,
    choose: impl Fn(Id) -> KilnLang,
) -> Result<Graph, NodeError> {
    let egraph = &model.egraph;
    let mut g = Graph::new(model.name.clone());
    g.bricks = model.bricks.clone();
    let mut memo: HashMap<Id, Vec<ValueId>> = HashMap::new();
    for (name, ty) in &model.inputs {
        let v = g.add_input(name.clone(), ty.clone());
        if let Some(id) = egraph.lookup(KilnLang::Input(Name::from(name))) {
            memo.insert(id, vec![v]);
        }
    }
    let canon = |n: &KilnLang| n.clone().map_children(|c| egraph.find(c));
    let value_name = |id: Id, fallback: &str| {
        egraph[id]
            .data
            .origin
            .as_ref()
            .map_or_else(|| fallback.to_string(), |o| o.value.clone())
    };
    // Nodes a rule created whose e-classes have no source origin: they join the
    // brick of their consumers once the graph is built.
    let mut orphans: Vec<usize> = vec![];
    let mut outputs = Vec::with_capacity(model.roots.len());
    for &root in &model.roots {
        // Post-order without recursion: graphs are thousands of nodes deep.
        let mut stack = vec![egraph.find(root)];
        while let Some(&c) = stack.last() {
            if memo.contains_key(&c) {
                stack.pop();
                continue;
            }
            let best = canon(&choose(c));
            let missing: Vec<Id> = best
                .children()
                .iter()
                .copied()
                .filter(|k| !memo.contains_key(k))
                .collect();
            if !missing.is_empty() {
                stack.extend(missing);
                continue;
            }
            stack.pop();
            let values = match &best {
                KilnLang::Input(name) => {
                    // An input that is not a graph input of the source: impossible for
                    // a converted graph, kept as a fresh input otherwise.
                    let ty = egraph[c].data.ty().cloned().expect("typed input");
                    vec![g.add_input(name.as_str(), ty)]
                }
                KilnLang::Const(name) => {
                    let t = egraph.analysis.consts[name].clone();
                    vec![g.add_const(name.as_str(), t)]
                }
                KilnLang::Proj(i, [x]) => vec![memo[x][*i]],
                KilnLang::Op(key, children) => {
                    let data = &egraph[c].data;
                    // A multi-output node a rule created (a recognized attention, a
                    // split of concatenated projections) has no origin of its own:
                    // it takes its first named output's.
                    let origin = data.origin.as_ref().or_else(|| {
                        (0..data.types.len()).find_map(|i| {
                            let p = egraph.lookup(KilnLang::Proj(i, [c]))?;
                            egraph[p].data.origin.as_ref()
                        })
                    });
                    let same = origin
                        .and_then(|o| o.node.as_ref())
                        .filter(|n| canon(&n.enode) == best);
                    let brick = origin.and_then(|o| o.brick);
                    let (name, n_out) = match same {
                        Some(n) => (n.name.clone(), n.outputs),
                        None => {
                            let base = origin.map_or(key.op().name(), |o| o.value.as_str());
                            (format!("{base}.x"), data.types.len().max(1))
                        }
                    };
                    let names: Vec<String> = if n_out == 1 {
                        vec![value_name(c, &name)]
                    } else {
                        (0..n_out)
                            .map(|i| {
                                let fallback = format!("{name}:{i}");
                                egraph
                                    .lookup(KilnLang::Proj(i, [c]))
                                    .map_or(fallback.clone(), |p| value_name(p, &fallback))
                            })
                            .collect()
                    };
                    let inputs: Vec<ValueId> = children.iter().map(|k| memo[k][0]).collect();
                    if origin.is_none() {
                        orphans.push(g.nodes().len());
                    }
                    let outs = g.add_node(name, key.op().clone(), inputs, &names, brick)?;
                    // Re-inference alone can lose what the e-graph knew (symbolic dims
                    // the frontend derived from shape values): merge it back.
                    for (&v, known) in outs.iter().zip(&data.types) {
                        let mut ty = g.value(v).ty.clone();
                        crate::analysis::merge_type(&mut ty, known);
                        g.set_value_type(v, ty);
                    }
                    outs
                }
            };
            memo.insert(c, values);
        }
        outputs.push(memo[&egraph.find(root)][0]);
    }
    g.outputs = outputs;
    adopt_orphans(&mut g, &orphans);
    Ok(g)
}

/// Puts each orphan node (ascending indices) in the brick of a consumer, latest
/// first so chains of orphans follow the brick of the node they feed.
fn adopt_orphans(g: &mut Graph, orphans: &[usize]) {
    if orphans.is_empty() {
        return;
    }
    let mut consumer_brick: HashMap<ValueId, kiln_ir::BrickId> = HashMap::new();
    let mut next_orphan = orphans.iter().rev().peekable();
    for i in (0..g.nodes().len()).rev() {
        let id = kiln_ir::NodeId(i as u32);
        if next_orphan.peek() == Some(&&i) {
            next_orphan.next();
            let node = g.node(id);
            if node.brick.is_none() {
                let b = node
                    .outputs
                    .iter()
                    .find_map(|o| consumer_brick.get(o).copied());
                g.set_node_brick(id, b);
            }
        }
        let node = g.node(id);
        if let Some(b) = node.brick {
            for &v in &node.inputs {
                consumer_brick.entry(v).or_insert(b);
            }
        }
    }
}
