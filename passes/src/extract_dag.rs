//! Greedy DAG-cost extraction.
//!
//! egg's [`egg::Extractor`] minimizes *tree* cost: an operand shared by two users is
//! paid twice, so it prefers duplicating work over sharing it (e.g. it will not pick
//! a fused form that reuses a value another kernel also reads). Here the cost of a
//! program is its **DAG cost**: each chosen e-class is paid once ([`dag_cost`]).
//!
//! The greedy extractor (the "greedy-dag" of extraction-gym) keeps, per e-class, the
//! set of e-classes its current best program uses (a bitset) and that program's DAG
//! cost, the sum of the own costs of the set's classes. An e-node's candidate set is
//! the union of its children's sets plus its own class (skipped when a child's set
//! already holds the class: a cycle); a class is re-examined whenever a child's set
//! improves, until nothing improves. The result is then compared with egg's
//! tree-cost extraction under the same model and the cheaper DAG is kept, so the
//! greedy result is never worse than egg's default.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use egg::{CostFunction, Extractor, Id, Language};
use kiln_ir::{Graph, NodeError};

use crate::cost::CostModel;
use crate::{extract_chosen, EGraphModel, KilnEGraph, KilnLang};

/// Most e-classes [`extract_dag`] runs the greedy DAG extractor on: its bitsets take
/// `classes² / 8` bytes (128 MiB at this limit). Larger e-graphs get egg's tree-cost
/// choices only.
pub const GREEDY_DAG_CLASS_LIMIT: usize = 32_768;

/// The chosen e-node per e-class (canonical e-class ids, canonical e-nodes).
pub type Choices = HashMap<Id, KilnLang>;

/// The DAG cost of the program `choices` selects for `roots`: the own cost of each
/// reachable e-class's chosen e-node, each e-class counted once. `None` when a
/// reachable e-class has no choice or the choices form a cycle.
pub fn dag_cost(
    egraph: &KilnEGraph,
    choices: &Choices,
    roots: &[Id],
    mut node_cost: impl FnMut(Id, &KilnLang) -> f64,
) -> Option<f64> {
    // 0 = unseen, 1 = on the stack, 2 = done.
    let mut state: HashMap<Id, u8> = HashMap::new();
    let mut total = 0.0;
    for &root in roots {
        let root = egraph.find(root);
        let mut stack = vec![(root, false)];
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                state.insert(c, 2);
                total += node_cost(c, &choices[&c]);
                continue;
            }
            match state.get(&c) {
                Some(2) => continue,
                Some(_) => return None,
                None => {}
            }
            let node = choices.get(&c)?;
            state.insert(c, 1);
            stack.push((c, true));
            for &k in node.children() {
                let k = egraph.find(k);
                match state.get(&k) {
                    Some(2) => {}
                    Some(_) => return None,
                    None => stack.push((k, false)),
                }
            }
        }
    }
    Some(total)
}

/// The e-graph as index tables: e-classes sorted by id, per e-class its e-nodes'
/// own costs and operand indices, and per e-class the e-classes using it.
struct ClassTable {
    ids: Vec<Id>,
    nodes: Vec<Vec<(f64, Vec<usize>)>>,
    parents: Vec<Vec<usize>>,
}

impl ClassTable {
    fn new(egraph: &KilnEGraph, mut node_cost: impl FnMut(Id, &KilnLang) -> f64) -> ClassTable {
        let mut ids: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        ids.sort();
        let index: HashMap<Id, usize> = ids.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let nodes: Vec<Vec<(f64, Vec<usize>)>> = ids
            .iter()
            .map(|&c| {
                egraph[c]
                    .nodes
                    .iter()
                    .map(|nd| {
                        let kids = nd
                            .children()
                            .iter()
                            .map(|&k| index[&egraph.find(k)])
                            .collect();
                        (node_cost(c, nd), kids)
                    })
                    .collect()
            })
            .collect();
        let mut parents: Vec<Vec<usize>> = vec![vec![]; ids.len()];
        for (p, ns) in nodes.iter().enumerate() {
            for (_, kids) in ns {
                for &k in kids {
                    parents[k].push(p);
                }
            }
        }
        ClassTable {
            ids,
            nodes,
            parents,
        }
    }
}

/// Greedy DAG-cost choices for every e-class reachable bottom-up (see the module
/// docs). `node_cost(class, enode)` is an e-node's own cost, operands excluded.
pub fn greedy_dag(egraph: &KilnEGraph, node_cost: impl FnMut(Id, &KilnLang) -> f64) -> Choices {
    let ClassTable {
        ids,
        nodes,
        parents,
    } = ClassTable::new(egraph, node_cost);
    let n = ids.len();
    let words = n.div_ceil(64);
    // Each class's height in its lowest program (leaves 0): classes are examined
    // lowest first, so a class's operands are mostly final when it is examined and
    // improvements rarely ripple up long chains (a 5,000-deep chain examined in id
    // order was re-examined per improvement of every class below it).
    let mut level = vec![usize::MAX; n];
    {
        let mut queued = vec![true; n];
        let mut queue: VecDeque<usize> = (0..n).collect();
        while let Some(c) = queue.pop_front() {
            queued[c] = false;
            let best = nodes[c]
                .iter()
                .filter_map(|(_, kids)| {
                    kids.iter().try_fold(0usize, |m, &k| {
                        (level[k] != usize::MAX).then(|| m.max(level[k] + 1))
                    })
                })
                .min();
            if let Some(b) = best.filter(|&b| b < level[c]) {
                level[c] = b;
                for &p in &parents[c] {
                    if !queued[p] {
                        queued[p] = true;
                        queue.push_back(p);
                    }
                }
            }
        }
    }
    let mut sets: Vec<Option<Vec<u64>>> = vec![None; n];
    let mut cost: Vec<f64> = vec![f64::INFINITY; n];
    let mut own: Vec<f64> = vec![0.0; n];
    let mut choice: Vec<usize> = vec![usize::MAX; n];
    let mut queued = vec![true; n];
    let mut queue: BinaryHeap<Reverse<(usize, usize)>> =
        (0..n).map(|c| Reverse((level[c], c))).collect();
    let mut scratch = vec![0u64; words];
    while let Some(Reverse((_, c))) = queue.pop() {
        queued[c] = false;
        let mut improved = false;
        for (i, (own_cost, kids)) in nodes[c].iter().enumerate() {
            scratch.iter_mut().for_each(|w| *w = 0);
            let mut ok = true;
            for &k in kids {
                match &sets[k] {
                    Some(s) if s[c / 64] & (1 << (c % 64)) == 0 => {
                        scratch.iter_mut().zip(s).for_each(|(a, b)| *a |= b)
                    }
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
            let mut total = *own_cost;
            for (w, &bits) in scratch.iter().enumerate() {
                let mut b = bits;
                while b != 0 {
                    let j = w * 64 + b.trailing_zeros() as usize;
                    total += own[j];
                    b &= b - 1;
                }
            }
            if choice[c] == usize::MAX || total < cost[c] * (1.0 - 1e-12) {
                scratch[c / 64] |= 1 << (c % 64);
                sets[c] = Some(scratch.clone());
                cost[c] = total;
                own[c] = *own_cost;
                choice[c] = i;
                improved = true;
            }
        }
        if improved {
            for &p in &parents[c] {
                if !queued[p] {
                    queued[p] = true;
                    queue.push(Reverse((level[p], p)));
                }
            }
        }
    }
    ids.iter()
        .enumerate()
        .filter(|&(i, _)| choice[i] != usize::MAX)
        .map(|(i, &c)| {
            let nd = egraph[c].nodes[choice[i]].clone();
            (c, nd.map_children(|k| egraph.find(k)))
        })
        .collect()
}

/// egg's tree-cost choices under `cost` for the e-classes the program of `roots`
/// uses.
pub fn tree_choices<CF: CostFunction<KilnLang>>(
    egraph: &KilnEGraph,
    roots: &[Id],
    cost: CF,
) -> Choices {
    let ex = Extractor::new(egraph, cost);
    let mut choices = Choices::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    while let Some(c) = stack.pop() {
        if choices.contains_key(&c) {
            continue;
        }
        let nd = ex
            .find_best_node(c)
            .clone()
            .map_children(|k| egraph.find(k));
        stack.extend(nd.children().iter().filter(|k| !choices.contains_key(k)));
        choices.insert(c, nd);
    }
    choices
}

/// A cost function under which egg's extractor picks exactly `choices` (zero for a
/// chosen e-node, infinite for any other), so [`extract_with`] builds their graph.
pub struct ChoiceCost<'a> {
    /// The e-graph.
    pub egraph: &'a KilnEGraph,
    /// The choices to reproduce.
    pub choices: &'a Choices,
}

impl CostFunction<KilnLang> for ChoiceCost<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &KilnLang, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let canon = enode.clone().map_children(|k| self.egraph.find(k));
        let chosen = self
            .egraph
            .lookup(enode.clone())
            .and_then(|c| self.choices.get(&c))
            .is_some_and(|nd| *nd == canon);
        if !chosen {
            return f64::INFINITY;
        }
        enode.children().iter().fold(0.0, |acc, &c| acc + costs(c))
    }
}

/// Sharing-aware refinement of `choices` (whose DAG cost is `cost`): for each
/// multi-output e-class whose outputs are alternatives (`proj` e-nodes) in two or
/// more e-classes, e.g. the pieces of a QKV matmul's split, picks those projections
/// in all of them at once and keeps the switch when the program's DAG cost drops.
/// Each class alone never prefers its piece (the shared producer is paid in full by
/// whichever class picks it), which is what greedy extraction cannot see. Returns
/// the new cost.
pub fn share_projections(
    egraph: &KilnEGraph,
    choices: &mut Choices,
    roots: &[Id],
    mut cost: f64,
    mut node_cost: impl FnMut(Id, &KilnLang) -> f64,
) -> f64 {
    let mut groups: HashMap<Id, Vec<(Id, KilnLang)>> = HashMap::new();
    for class in egraph.classes() {
        for n in &class.nodes {
            if let KilnLang::Proj(_, [p]) = n {
                let n = n.clone().map_children(|k| egraph.find(k));
                groups
                    .entry(egraph.find(*p))
                    .or_default()
                    .push((class.id, n));
            }
        }
    }
    let mut producers: Vec<Id> = groups.keys().copied().collect();
    producers.sort();
    for p in producers {
        let members = &groups[&p];
        if members.len() < 2 || !choices.contains_key(&p) {
            continue;
        }
        if members.iter().all(|(c, n)| choices.get(c) == Some(n)) {
            continue;
        }
        let mut trial = choices.clone();
        for (c, n) in members {
            trial.insert(*c, n.clone());
        }
        if let Some(t) = dag_cost(egraph, &trial, roots, &mut node_cost) {
            if t < cost * (1.0 - 1e-12) {
                *choices = trial;
                cost = t;
            }
        }
    }
    cost
}

/// Tree-cost choices (an operand paid once per use) for every e-class, computed
/// like [`greedy_dag`]'s, lowest classes first, without egg's extractor (which
/// sweeps every e-class until nothing changes: once per level of a deep graph).
pub fn tree_choices_by_level(
    egraph: &KilnEGraph,
    node_cost: impl Fn(Id, &KilnLang) -> f64,
) -> Choices {
    tree_costs_by_level(egraph, node_cost).0
}

/// [`tree_choices_by_level`] and the tree cost of each e-class's choice.
pub fn tree_costs_by_level(
    egraph: &KilnEGraph,
    node_cost: impl Fn(Id, &KilnLang) -> f64,
) -> (Choices, HashMap<Id, f64>) {
    let ClassTable {
        ids,
        nodes,
        parents,
    } = ClassTable::new(egraph, node_cost);
    let n = ids.len();
    let mut cost = vec![f64::INFINITY; n];
    let mut choice = vec![usize::MAX; n];
    let mut queued = vec![true; n];
    let mut queue: VecDeque<usize> = (0..n).collect();
    while let Some(c) = queue.pop_front() {
        queued[c] = false;
        let mut improved = false;
        for (i, (own, kids)) in nodes[c].iter().enumerate() {
            let total = kids.iter().fold(*own, |acc, &k| acc + cost[k]);
            if total < cost[c] * (1.0 - 1e-12) || (choice[c] == usize::MAX && total.is_finite()) {
                cost[c] = total;
                choice[c] = i;
                improved = true;
            }
        }
        if improved {
            for &p in &parents[c] {
                if !queued[p] {
                    queued[p] = true;
                    queue.push_back(p);
                }
            }
        }
    }
    let chosen = || (0..n).filter(|&i| choice[i] != usize::MAX);
    let choices = chosen()
        .map(|i| {
            let c = ids[i];
            let nd = egraph[c].nodes[choice[i]].clone();
            (c, nd.map_children(|k| egraph.find(k)))
        })
        .collect();
    let costs = chosen().map(|i| (ids[i], cost[i])).collect();
    (choices, costs)
}

/// What [`dag_choices`] picks.
pub struct DagChoices {
    /// The chosen e-node per e-class.
    pub choices: Choices,
    /// The program's DAG cost, seconds.
    pub cost: f64,
    /// Each e-class's cheapest tree cost (an operand used twice counts twice).
    pub class_costs: HashMap<Id, f64>,
}

/// The result of [`extract_dag`].
pub struct DagExtraction {
    /// The extracted graph.
    pub graph: Graph,
    /// Its modelled DAG cost, seconds.
    pub cost: f64,
    /// The chosen e-node per e-class.
    pub choices: Choices,
    /// Each e-class's cheapest tree cost (what the pipeline stores in the analysis).
    pub class_costs: HashMap<Id, f64>,
}

/// Extracts the program of least (greedy) DAG cost under `model` as a graph.
pub fn extract_dag(model: &EGraphModel, cost: &CostModel) -> Result<DagExtraction, NodeError> {
    let egraph = &model.egraph;
    let DagChoices {
        choices,
        cost: dag,
        class_costs,
    } = dag_choices(egraph, &model.roots, cost).expect("a converted graph has an acyclic program");
    let graph = extract_chosen(model, |c| choices[&egraph.find(c)].clone())?;
    Ok(DagExtraction {
        graph,
        cost: dag,
        choices,
        class_costs,
    })
}

/// The choices [`extract_dag`] makes for `roots` and their DAG cost: the cheaper of
/// the greedy DAG and tree-cost programs, refined by [`share_projections`]; `None`
/// when neither is acyclic.
pub fn dag_choices(egraph: &KilnEGraph, roots: &[Id], cost: &CostModel) -> Option<DagChoices> {
    // Every e-node priced once: pricing a region infers its steps' types, and the
    // searches below ask for the same e-nodes many times.
    let own: HashMap<&KilnLang, f64> = egraph
        .classes()
        .flat_map(|c| c.nodes.iter().map(move |n| (n, c.id)))
        .map(|(n, c)| (n, cost.enode_cost(egraph, c, n)))
        .collect();
    let node_cost = |c: Id, nd: &KilnLang| {
        own.get(nd)
            .copied()
            .unwrap_or_else(|| cost.enode_cost(egraph, c, nd))
    };
    let greedy = if egraph.number_of_classes() <= GREEDY_DAG_CLASS_LIMIT {
        greedy_dag(egraph, node_cost)
    } else {
        Choices::new()
    };
    let (tree, class_costs) = tree_costs_by_level(egraph, node_cost);
    let g = dag_cost(egraph, &greedy, roots, node_cost);
    let t = dag_cost(egraph, &tree, roots, node_cost);
    let (mut choices, dag) = match (g, t) {
        (Some(g), Some(t)) if g <= t => (greedy, g),
        (_, Some(t)) => (tree, t),
        (Some(g), None) => (greedy, g),
        (None, None) => return None,
    };
    let dag = share_projections(egraph, &mut choices, roots, dag, node_cost);
    Some(DagChoices {
        choices,
        cost: dag,
        class_costs,
    })
}
