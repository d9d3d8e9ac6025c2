//! Optimal DAG-cost extraction by integer linear programming (feature `ilp`).
//!
//! The greedy extractor ([`crate::extract_dag`]) is fast but not optimal: choosing
//! the cheapest program per e-class in isolation misses choices that only pay off
//! when two users share an operand. This module states extraction as a 0-1 program
//! and solves it with CBC (through `good_lp`), under a time limit:
//!
//! - one binary `a_c` per e-class reachable from the roots ("the program computes
//!   `c`") and one binary `x_n` per e-node ("`n` is `c`'s chosen e-node");
//! - `Σ x_n = a_c` over the e-nodes of `c` (an active class picks exactly one);
//! - `x_n ≤ a_k` for each child class `k` of `n` (its operands are computed);
//! - `a_r = 1` for every root;
//! - minimise `Σ cost(n)·x_n` with the roofline [`CostModel::enode_cost`]: every
//!   active class is paid once, which is the DAG cost.
//!
//! **Cycles.** An e-node whose child is its own class is never chosen. Other cycles
//! run through a strongly connected component of the class graph; for each
//! component of more than one class, every class gets an order variable
//! `o_c ∈ [0, |S|-1]` and each e-node `n` of `c` with a child `k` in the same
//! component the constraint `o_c ≥ o_k + 1 - |S|·(1 - x_n)`: chosen edges must go
//! down the order, so the chosen program is acyclic. Edges between components
//! cannot close a cycle and get no constraint. This is exact (unlike pruning the
//! back edges of one depth-first search, which can forbid the best program).
//!
//! **Warm start and fallback.** The greedy DAG program (or egg's tree-cost one,
//! whichever is cheaper) is given to CBC as its initial solution, so a solve cut
//! short by the time limit still has an incumbent at least as good. The solver's
//! answer is decoded, checked (one choice per reached class, acyclic) and priced
//! with [`dag_cost`]; if it is missing, invalid or dearer, the greedy program is
//! kept and the outcome says why. So the ILP result never costs more than
//! [`crate::extract_dag::extract_dag`]'s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use egg::{Id, Language};
use good_lp::solvers::{SolutionStatus, WithTimeLimit};
use good_lp::{coin_cbc, variable, Expression, ProblemVariables, Solution, SolverModel, Variable};
use kiln_ir::NodeError;

use crate::cost::CostModel;
use crate::extract_dag::{dag_cost, ChoiceCost, Choices, DagChoices, DagExtraction};
use crate::{extract_with, EGraphModel, KilnEGraph, KilnLang};

/// Default wall-clock limit of one ILP solve. CBC takes whole seconds (a shorter
/// limit is rounded up to one second).
pub const ILP_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Objective scale: costs are modelled in seconds (kernels of 1e-6 … 1e-2 s); the
/// objective is stated in microseconds so that CBC's absolute tolerances (about
/// 1e-7 to 1e-10) stay far below one kernel's cost.
const OBJECTIVE_SCALE: f64 = 1e6;

/// Relative slack when comparing the ILP's cost with the greedy one (floating-point
/// sums in a different order).
const COST_EPSILON: f64 = 1e-9;

/// How an ILP extraction ended.
#[derive(Clone, Debug, PartialEq)]
pub enum IlpOutcome {
    /// CBC proved its program optimal.
    Optimal,
    /// The time limit stopped CBC; its best program so far was used.
    TimeLimit,
    /// The heuristic (greedy DAG or tree-cost) program was kept, for this reason
    /// (solver error, no valid program decoded, or not cheaper).
    HeuristicKept(String),
}

/// Size of the ILP that was solved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IlpSize {
    /// E-classes reachable from the roots (one activity variable each).
    pub classes: usize,
    /// E-nodes of those classes (one choice variable each).
    pub nodes: usize,
    /// Classes in cyclic strongly connected components (one order variable each).
    pub ordered: usize,
    /// Constraints.
    pub constraints: usize,
}

/// The result of [`extract_ilp`].
pub struct IlpExtraction {
    /// The extracted graph, its DAG cost and the choices (as [`extract_dag`] gives).
    ///
    /// [`extract_dag`]: crate::extract_dag::extract_dag
    pub extraction: DagExtraction,
    /// How the solve ended.
    pub outcome: IlpOutcome,
    /// The DAG cost of the heuristic program CBC was warm-started with (`None` when
    /// the heuristics found no acyclic program).
    pub heuristic_cost: Option<f64>,
    /// The ILP's size.
    pub size: IlpSize,
    /// Time spent in CBC.
    pub solve_time: Duration,
}

/// The program [`crate::extract_dag::extract_dag`] picks (greedy DAG or tree cost,
/// refined for shared projections) and its DAG cost; `None` when none is acyclic.
pub fn heuristic_choices(
    egraph: &KilnEGraph,
    roots: &[Id],
    cost: &CostModel,
) -> Option<DagChoices> {
    crate::extract_dag::dag_choices(egraph, roots, cost)
}

/// The e-classes reachable from `roots` through any e-node, canonical, in
/// discovery order.
fn reachable(egraph: &KilnEGraph, roots: &[Id]) -> Vec<Id> {
    let mut seen: HashMap<Id, ()> = HashMap::new();
    let mut order = Vec::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    while let Some(c) = stack.pop() {
        if seen.insert(c, ()).is_some() {
            continue;
        }
        order.push(c);
        for nd in &egraph[c].nodes {
            for &k in nd.children() {
                let k = egraph.find(k);
                if !seen.contains_key(&k) {
                    stack.push(k);
                }
            }
        }
    }
    order
}

/// Strongly connected components of the graph `edges` (node `i` → `edges[i]`):
/// the component index of every node (Tarjan's algorithm, iterative).
fn components(edges: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let (mut index, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSEEN; n];
    let (mut next_index, mut next_comp) = (0, 0);
    let mut stack = Vec::new();
    // (node, position of the next edge to look at)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for start in 0..n {
        if index[start] != UNSEEN {
            continue;
        }
        calls.push((start, 0));
        index[start] = next_index;
        low[start] = next_index;
        next_index += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut e)) = calls.last_mut() {
            if let Some(&w) = edges[v].get(*e) {
                *e += 1;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

/// The reached part of an e-graph, indexed: classes `0..n`, their e-nodes with own
/// costs and child class indices.
struct Problem {
    classes: Vec<Id>,
    index: HashMap<Id, usize>,
    /// Per class: per e-node, (own cost, distinct child class indices, self-loop).
    nodes: Vec<Vec<(f64, Vec<usize>, bool)>>,
    /// Component of every class, and the size of every component.
    comp: Vec<usize>,
    comp_size: Vec<usize>,
}

impl Problem {
    fn new(egraph: &KilnEGraph, roots: &[Id], cost: &CostModel) -> Problem {
        let classes = reachable(egraph, roots);
        let index: HashMap<Id, usize> = classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let nodes: Vec<Vec<(f64, Vec<usize>, bool)>> = classes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                egraph[c]
                    .nodes
                    .iter()
                    .map(|nd| {
                        let mut kids: Vec<usize> = nd
                            .children()
                            .iter()
                            .map(|&k| index[&egraph.find(k)])
                            .collect();
                        kids.sort_unstable();
                        kids.dedup();
                        let self_loop = kids.contains(&i);
                        (cost.enode_cost(egraph, c, nd), kids, self_loop)
                    })
                    .collect()
            })
            .collect();
        let edges: Vec<Vec<usize>> = nodes
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let mut e: Vec<usize> = ns
                    .iter()
                    .filter(|(_, _, self_loop)| !self_loop)
                    .flat_map(|(_, kids, _)| kids.iter().copied())
                    .filter(|&k| k != i)
                    .collect();
                e.sort_unstable();
                e.dedup();
                e
            })
            .collect();
        let comp = components(&edges);
        let mut comp_size = vec![0; comp.iter().max().map_or(0, |m| m + 1)];
        for &c in &comp {
            comp_size[c] += 1;
        }
        Problem {
            classes,
            index,
            nodes,
            comp,
            comp_size,
        }
    }

    /// Whether class `i` needs an order variable.
    fn ordered(&self, i: usize) -> bool {
        self.comp_size[self.comp[i]] > 1
    }
}

/// A warm start: per class, the chosen e-node index (or none) and its order value.
struct Start {
    choice: Vec<Option<usize>>,
    order: Vec<f64>,
}

impl Start {
    /// The start of the program `choices` selects for `roots` (classes the program
    /// does not use are inactive); `None` when `choices` does not match the e-graph.
    fn new(p: &Problem, egraph: &KilnEGraph, choices: &Choices, roots: &[Id]) -> Option<Start> {
        let n = p.classes.len();
        let mut choice = vec![None; n];
        // Post-order over the program: operands before users.
        let mut post = Vec::new();
        let mut state = vec![0u8; n];
        for &r in roots {
            let mut stack = vec![(p.index[&egraph.find(r)], false)];
            while let Some((c, done)) = stack.pop() {
                if done {
                    state[c] = 2;
                    post.push(c);
                    continue;
                }
                if state[c] != 0 {
                    continue;
                }
                state[c] = 1;
                let nd = choices.get(&p.classes[c])?;
                let i = egraph[p.classes[c]]
                    .nodes
                    .iter()
                    .position(|m| m.clone().map_children(|k| egraph.find(k)) == *nd)?;
                choice[c] = Some(i);
                stack.push((c, true));
                for &k in &p.nodes[c][i].1 {
                    if state[k] == 0 {
                        stack.push((k, false));
                    }
                }
            }
        }
        let mut order = vec![0.0; n];
        let mut rank = vec![0usize; p.comp_size.len()];
        for c in post {
            let r = &mut rank[p.comp[c]];
            order[c] = *r as f64;
            *r += 1;
        }
        Some(Start { choice, order })
    }
}

/// Solves the extraction ILP for `roots` (see the module docs) within `time_limit`,
/// warm-started from `start` (choices of a valid program) when given. Returns the
/// decoded choices for the classes the program uses (unchecked), whether CBC proved
/// them optimal, and the ILP's size.
pub fn ilp_choices(
    egraph: &KilnEGraph,
    roots: &[Id],
    cost: &CostModel,
    time_limit: Duration,
    start: Option<&Choices>,
) -> Result<(Choices, bool, IlpSize), String> {
    let p = Problem::new(egraph, roots, cost);
    let warm = start.and_then(|s| Start::new(&p, egraph, s, roots));
    let mut vars = ProblemVariables::new();
    let mut size = IlpSize {
        classes: p.classes.len(),
        ..IlpSize::default()
    };
    let binary = |on: Option<bool>| {
        let v = variable().binary();
        match on {
            Some(on) => v.initial(if on { 1.0 } else { 0.0 }),
            None => v,
        }
    };
    let mut active: Vec<Variable> = Vec::with_capacity(p.classes.len());
    let mut chosen: Vec<Vec<Variable>> = Vec::with_capacity(p.classes.len());
    let mut order: Vec<Option<Variable>> = Vec::with_capacity(p.classes.len());
    let mut objective = Expression::with_capacity(p.nodes.iter().map(Vec::len).sum());
    for (c, ns) in p.nodes.iter().enumerate() {
        let pick = warm.as_ref().map(|w| w.choice[c]);
        active.push(vars.add(binary(pick.map(|i| i.is_some()))));
        let xs: Vec<Variable> = ns
            .iter()
            .enumerate()
            .map(|(i, (own, _, self_loop))| {
                let mut def = binary(pick.map(|chosen| chosen == Some(i)));
                if *self_loop {
                    def = def.max(0.0);
                }
                let x = vars.add(def);
                objective.add_mul(own * OBJECTIVE_SCALE, x);
                x
            })
            .collect();
        size.nodes += xs.len();
        chosen.push(xs);
        order.push(p.ordered(c).then(|| {
            size.ordered += 1;
            let top = (p.comp_size[p.comp[c]] - 1) as f64;
            let def = variable().min(0.0).max(top);
            vars.add(match &warm {
                Some(w) => def.initial(w.order[c]),
                None => def,
            })
        }));
    }
    let mut model = vars
        .minimise(objective)
        .using(coin_cbc)
        .with_time_limit(time_limit.as_secs_f64().max(1.0));
    // Quiet: CBC's own log is off already; this silences its LP solver's messages.
    model.set_parameter("slogLevel", "0");
    for (c, ns) in p.nodes.iter().enumerate() {
        let mut one = Expression::with_capacity(ns.len() + 1);
        for &x in &chosen[c] {
            one.add_mul(1.0, x);
        }
        one.add_mul(-1.0, active[c]);
        model.add_constraint(one.eq(0.0));
        size.constraints += 1;
        for (i, (_, kids, self_loop)) in ns.iter().enumerate() {
            if *self_loop {
                continue;
            }
            let x = chosen[c][i];
            for &k in kids {
                model.add_constraint((x - active[k]).leq(0.0));
                size.constraints += 1;
                if let (Some(oc), Some(ok)) = (order[c], order[k]) {
                    if p.comp[c] == p.comp[k] {
                        let m = p.comp_size[p.comp[c]] as f64;
                        let mut e = Expression::with_capacity(3);
                        e.add_mul(1.0, oc);
                        e.add_mul(-1.0, ok);
                        e.add_mul(-m, x);
                        model.add_constraint(e.geq(1.0 - m));
                        size.constraints += 1;
                    }
                }
            }
        }
    }
    for &r in roots {
        model.add_constraint(Expression::from(active[p.index[&egraph.find(r)]]).geq(1.0));
        size.constraints += 1;
    }
    let solution = model.solve().map_err(|e| format!("CBC: {e}"))?;
    let optimal = matches!(solution.status(), SolutionStatus::Optimal);
    // Decode the program the roots use.
    let mut choices = Choices::new();
    let mut stack: Vec<usize> = roots.iter().map(|&r| p.index[&egraph.find(r)]).collect();
    while let Some(c) = stack.pop() {
        let id = p.classes[c];
        if choices.contains_key(&id) {
            continue;
        }
        let i = chosen[c]
            .iter()
            .position(|&x| solution.value(x) > 0.5)
            .ok_or_else(|| format!("CBC chose no e-node for used class {id}"))?;
        let nd = egraph[id].nodes[i].clone().map_children(|k| egraph.find(k));
        stack.extend(p.nodes[c][i].1.iter().copied());
        choices.insert(id, nd);
    }
    Ok((choices, optimal, size))
}

/// Extracts the program of least DAG cost under `cost` by ILP (see the module
/// docs), never worse than the heuristic programs; CBC stops after `time_limit`.
pub fn extract_ilp(
    model: &EGraphModel,
    cost: &CostModel,
    time_limit: Duration,
) -> Result<IlpExtraction, NodeError> {
    let egraph = &model.egraph;
    let roots: Vec<Id> = model.roots.iter().map(|&r| egraph.find(r)).collect();
    let node_cost = |c: Id, nd: &KilnLang| cost.enode_cost(egraph, c, nd);
    let heuristic = heuristic_choices(egraph, &roots, cost);
    let t = Instant::now();
    let solved = ilp_choices(
        egraph,
        &roots,
        cost,
        time_limit,
        heuristic.as_ref().map(|h| &h.choices),
    );
    let solve_time = t.elapsed();
    let heuristic_cost = heuristic.as_ref().map(|h| h.cost);
    let class_costs = heuristic
        .as_ref()
        .map(|h| h.class_costs.clone())
        .unwrap_or_default();
    let (choices, dag, outcome, size) = match solved {
        Ok((choices, optimal, size)) => match dag_cost(egraph, &choices, &roots, node_cost) {
            Some(ilp) if heuristic_cost.is_none_or(|h| ilp <= h * (1.0 + COST_EPSILON)) => {
                let outcome = if optimal {
                    IlpOutcome::Optimal
                } else {
                    IlpOutcome::TimeLimit
                };
                (choices, ilp, outcome, size)
            }
            found => {
                let DagChoices {
                    choices: h,
                    cost: hc,
                    ..
                } = heuristic.expect("a dearer ILP program implies a heuristic one");
                let why = match found {
                    Some(ilp) => format!("ILP program costs {ilp:e} s > {hc:e} s"),
                    None => "ILP program is cyclic or incomplete".to_string(),
                };
                (h, hc, IlpOutcome::HeuristicKept(why), size)
            }
        },
        Err(e) => {
            let Some(h) = heuristic else {
                panic!("no acyclic program for the roots ({e})");
            };
            (
                h.choices,
                h.cost,
                IlpOutcome::HeuristicKept(e),
                IlpSize::default(),
            )
        }
    };
    let graph = extract_with(
        model,
        ChoiceCost {
            egraph,
            choices: &choices,
        },
    )?;
    Ok(IlpExtraction {
        extraction: DagExtraction {
            graph,
            cost: dag,
            choices,
            class_costs,
        },
        outcome,
        heuristic_cost,
        size,
        solve_time,
    })
}
