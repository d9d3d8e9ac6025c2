//! The optimization pipeline: one ordered list of named phases.
//!
//! A [`Pipeline`] converts a graph to an e-graph, runs each [`Phase`]'s rewrites
//! with egg's runner under the phase's explicit [`Limits`], extracts the cheapest
//! program under the roofline [`CostModel`] with DAG cost (greedy,
//! [`crate::extract_dag::extract_dag`], or by ILP with feature `ilp`: see
//! [`Extractor`]) and returns it with a [`Report`]: per phase
//! the stop reason, e-graph size before and after, iterations, time and how often
//! each rule applied; the modelled cost before and after.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egg::{
    Applier, Id, PatternAst, Rewrite, Runner, SearchMatches, Searcher, StopReason, Subst, Symbol,
    Var,
};
use kiln_ir::{BrickId, Graph, NodeError, Op};

use crate::cost::{CostModel, DimBindings, TargetProfile};
use crate::extract_dag::extract_dag;
use crate::{to_egraph, EGraphModel, KilnAnalysis, KilnEGraph, KilnLang};

/// Most e-nodes a phase may grow the e-graph to. A 22-layer Llama graph starts at
/// a few thousand e-nodes; the limit leaves room for two orders of magnitude of
/// growth while keeping a phase well under a second.
pub const NODE_LIMIT: usize = 200_000;

/// Most egg iterations (apply every rule, rebuild) per phase. Rule sets that follow
/// the policy (no rules that only grow the e-graph) saturate in a handful.
pub const ITERATION_LIMIT: usize = 30;

/// Wall-clock time after which a phase aborts the whole optimization with
/// [`PipelineError::Deadline`]. Only counts ([`NODE_LIMIT`], [`ITERATION_LIMIT`])
/// decide *what* is compiled, so the same model gives the same program however
/// loaded the machine is; the deadline can only turn a runaway phase into an error.
/// The standard phases take well under a second on a 22-layer Llama.
pub const PHASE_DEADLINE: Duration = Duration::from_secs(300);

/// Wall-clock time after which a phase logs a warning (and finishes normally).
pub const SLOW_PHASE_WARNING: Duration = Duration::from_secs(10);

/// The limits of one phase. The counts decide where saturation stops; the
/// wall-clock times never change the result (see [`PHASE_DEADLINE`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Most e-nodes ([`NODE_LIMIT`] by default).
    pub nodes: usize,
    /// Most iterations ([`ITERATION_LIMIT`] by default).
    pub iterations: usize,
    /// Wall-clock time after which the phase fails ([`PHASE_DEADLINE`] by default).
    pub deadline: Duration,
    /// Wall-clock time after which the phase warns ([`SLOW_PHASE_WARNING`] by
    /// default).
    pub warn_after: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nodes: NODE_LIMIT,
            iterations: ITERATION_LIMIT,
            deadline: PHASE_DEADLINE,
            warn_after: SLOW_PHASE_WARNING,
        }
    }
}

/// Why a pipeline run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Extraction or re-inference failed at a node.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A phase ran past its wall-clock deadline.
    #[error(
        "optimizer phase `{phase}` ran past its deadline of {} s after {iterations} iterations ({nodes} e-nodes); the model is too large for this phase's rules, or a rule loops",
        deadline.as_secs()
    )]
    Deadline {
        /// The phase.
        phase: String,
        /// Its deadline.
        deadline: Duration,
        /// Iterations completed.
        iterations: usize,
        /// E-nodes when it stopped.
        nodes: usize,
    },
}

/// The message egg's runner stops with when a phase's deadline passes (a hook's
/// `StopReason::Other`).
const DEADLINE_STOP: &str = "deadline";

/// A named phase: its rewrites, run to saturation or to a limit.
pub struct Phase {
    /// The phase's name (what `--dump-after` takes).
    pub name: String,
    /// The rewrites run together in this phase.
    pub rewrites: Vec<Rewrite<KilnLang, KilnAnalysis>>,
    /// The phase's limits.
    pub limits: Limits,
    /// Start from the best program so far: extract it and rebuild the e-graph
    /// from it before the phase runs (a phase barrier). The phase then sees one
    /// program instead of every equivalent found so far, which keeps rules that
    /// combine neighbouring e-nodes (regions) from multiplying alternatives.
    pub from_best: bool,
}

impl Phase {
    /// A phase with the default limits.
    pub fn new(name: &str, rewrites: Vec<Rewrite<KilnLang, KilnAnalysis>>) -> Phase {
        Phase {
            name: name.to_string(),
            rewrites,
            limits: Limits::default(),
            from_best: false,
        }
    }

    /// The phase starting from the best program so far (see [`Phase::from_best`]).
    pub fn from_best(mut self) -> Phase {
        self.from_best = true;
        self
    }

    /// The phase with these limits.
    pub fn with_limits(mut self, limits: Limits) -> Phase {
        self.limits = limits;
        self
    }
}

/// What one phase did.
#[derive(Clone, Debug)]
pub struct PhaseReport {
    /// The phase's name.
    pub name: String,
    /// Why it stopped (`None` only if egg ran no iteration).
    pub stop_reason: Option<StopReason>,
    /// E-classes before the phase.
    pub classes_before: usize,
    /// E-nodes before the phase.
    pub nodes_before: usize,
    /// E-classes after the phase.
    pub classes_after: usize,
    /// E-nodes after the phase.
    pub nodes_after: usize,
    /// Iterations run.
    pub iterations: usize,
    /// Wall-clock time of the phase.
    pub time: Duration,
    /// Applications per rule name (summed over iterations; rules that never applied
    /// are absent).
    pub applied: BTreeMap<String, usize>,
    /// The graph extracted after the phase in the text form, when it was asked for
    /// with [`Pipeline::dump_after`].
    pub dump: Option<String>,
    /// Applications per (rule name, brick of the e-class the rule changed); `None`
    /// when no brick could be found (see [`brick_of`]). Sums to [`Self::applied`].
    pub applied_by_brick: BTreeMap<(String, Option<BrickId>), usize>,
}

/// What a pipeline run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The target the cost is modelled for.
    pub target: String,
    /// One report per phase, in order.
    pub phases: Vec<PhaseReport>,
    /// Modelled seconds of the input graph (priced on its recorded types).
    pub cost_before: f64,
    /// Modelled seconds of the optimized program (its DAG cost in the e-graph).
    pub cost_after: f64,
    /// Why the result is not the last phase's extraction, when it is not: the
    /// program at a phase barrier or the input graph was modelled cheaper.
    pub fallback: Option<String>,
    /// Time to build the e-graph.
    pub to_egraph_time: Duration,
    /// Time of the final extraction.
    pub extract_time: Duration,
    /// Wall-clock time of the whole run.
    pub total_time: Duration,
}

/// How the final program is extracted from the e-graph.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Extractor {
    /// Greedy DAG-cost extraction ([`crate::extract_dag::extract_dag`]): fast, not
    /// always optimal.
    #[default]
    Greedy,
    /// Optimal DAG-cost extraction by ILP with CBC
    /// ([`crate::extract_ilp::extract_ilp`], feature `ilp`), warm-started from the
    /// greedy program and never dearer than it; CBC stops after `timeout` (see
    /// [`crate::extract_ilp::ILP_TIME_LIMIT`]) with its best program so far.
    #[cfg(feature = "ilp")]
    Ilp {
        /// CBC's time limit (whole seconds, at least one).
        timeout: Duration,
    },
}

/// The ordered list of phases, and how to price the result.
#[derive(Default)]
pub struct Pipeline {
    /// The phases, run in order.
    pub phases: Vec<Phase>,
    /// Sizes assumed for symbolic dimensions when pricing.
    pub dims: DimBindings,
    /// Names of the phases after which the graph is dumped into the report.
    pub dump_after: Vec<String>,
    /// How the final program is extracted (dumps after phases always use the
    /// greedy extractor).
    pub extractor: Extractor,
}

impl Pipeline {
    /// A pipeline of these phases.
    pub fn new(phases: Vec<Phase>) -> Pipeline {
        Pipeline {
            phases,
            ..Pipeline::default()
        }
    }

    /// The standard pipeline over the built-in rules, one phase per theme in this
    /// order: `simplify` (layout and algebra rules: cancel, sink and fold), `bricks`
    /// (brick-level rewrites: QKV and gate/up concatenation, LoRA, dead experts and
    /// neurons), `fusion` (recognition of composite ops and matmul epilogues) and
    /// `regions` (elementwise chains into fused regions). The e-graph carries over
    /// from phase to phase, so later phases see every equivalent found earlier,
    /// except that `regions` starts from the best program of the first three
    /// phases (regions combine neighbouring e-nodes: over every alternative they
    /// would multiply, over one program they grow linearly).
    pub fn standard() -> Pipeline {
        Pipeline::from_rules(&crate::rules::RuleSet::builtin())
    }

    /// [`Pipeline::standard`]'s phases over the rules of `rules` (by theme).
    pub fn from_rules(rules: &crate::rules::RuleSet) -> Pipeline {
        let phase = |name: &str, themes: &[&str]| {
            let mut set = crate::rules::RuleSet::default();
            for t in themes {
                set.rules.extend(rules.theme(t).rules);
            }
            Phase::new(name, set.rewrites())
        };
        Pipeline::new(vec![
            phase("simplify", &["layout", "algebra"]),
            phase("bricks", &["bricks"]),
            phase("fusion", &["fusion"]),
            phase("regions", &["regions"]).from_best(),
        ])
    }

    /// The pipeline with this final extractor.
    pub fn with_extractor(mut self, extractor: Extractor) -> Pipeline {
        self.extractor = extractor;
        self
    }

    /// The names of the phases, in order.
    pub fn phase_names(&self) -> Vec<&str> {
        self.phases.iter().map(|p| p.name.as_str()).collect()
    }

    /// Also dump the graph (extracted, in the text form) after phase `name`.
    pub fn dump_after(mut self, name: &str) -> Pipeline {
        self.dump_after.push(name.to_string());
        self
    }

    /// Optimizes `graph` for `profile`: to e-graph, every phase, DAG extraction.
    pub fn run(
        &self,
        graph: &Graph,
        profile: &TargetProfile,
    ) -> Result<(Graph, Report), PipelineError> {
        self.run_keeping_egraph(graph, profile)
            .map(|(g, report, _)| (g, report))
    }

    /// The graph with every control-flow subgraph optimized as a graph of its
    /// own (recursively; the enclosing graph sees the op as opaque), or `None`
    /// when it has no control flow.
    fn optimize_subgraphs(
        &self,
        graph: &Graph,
        profile: &TargetProfile,
    ) -> Result<Option<Graph>, PipelineError> {
        let mut out: Option<Graph> = None;
        for (i, node) in graph.nodes().iter().enumerate() {
            let Op::Control(c) = &node.op else {
                continue;
            };
            let optimized = c.map_subgraphs(|g| self.run(g, profile).map(|(g, _)| g))?;
            out.get_or_insert_with(|| graph.clone())
                .set_node_op(kiln_ir::NodeId(i as u32), Op::Control(optimized));
        }
        Ok(out)
    }

    /// [`Pipeline::run`], also returning the saturated e-graph (for pass developers:
    /// Graphviz dumps, statistics).
    pub fn run_keeping_egraph(
        &self,
        graph: &Graph,
        profile: &TargetProfile,
    ) -> Result<(Graph, Report, EGraphModel), PipelineError> {
        let with_bodies = self.optimize_subgraphs(graph, profile)?;
        let graph = with_bodies.as_ref().unwrap_or(graph);
        let start = Instant::now();
        let cost = CostModel::new(profile.clone()).with_dims(self.dims.clone());
        let cost_before = cost.graph_cost(graph);
        let t = Instant::now();
        let mut model = to_egraph(graph);
        let to_egraph_time = t.elapsed();
        let mut phases = Vec::with_capacity(self.phases.len());
        // The best program at the last phase barrier, and its phase: the result
        // falls back to it if the later phases end up priced higher (a barrier
        // re-infers types, and a region over tensors of unknown dims can be priced
        // above the kernels it replaces).
        let mut at_barrier: Option<(Graph, f64, String)> = None;
        for phase in &self.phases {
            let t = Instant::now();
            if phase.from_best {
                let best = extract_dag(&model, &cost)?;
                model = to_egraph(&best.graph);
                at_barrier = Some((best.graph, best.cost, phase.name.clone()));
            }
            let egraph =
                std::mem::replace(&mut model.egraph, KilnEGraph::new(KilnAnalysis::default()));
            let (classes_before, nodes_before) =
                (egraph.number_of_classes(), egraph.total_number_of_nodes());
            let log: Arc<Mutex<BrickLog>> = Arc::default();
            let rewrites: Vec<_> = phase
                .rewrites
                .iter()
                .map(|rw| recording(rw, &log))
                .collect();
            let deadline = phase.limits.deadline;
            let runner = Runner::default()
                .with_egraph(egraph)
                .with_node_limit(phase.limits.nodes)
                .with_iter_limit(phase.limits.iterations)
                // egg's own time limit would stop saturation at a load-dependent
                // point; the deadline hook below fails instead.
                .with_time_limit(Duration::MAX)
                .with_hook(move |_| {
                    if t.elapsed() > deadline {
                        Err(DEADLINE_STOP.to_string())
                    } else {
                        Ok(())
                    }
                })
                .run(&rewrites);
            if matches!(&runner.stop_reason, Some(StopReason::Other(m)) if m == DEADLINE_STOP) {
                return Err(PipelineError::Deadline {
                    phase: phase.name.clone(),
                    deadline,
                    iterations: runner.iterations.len(),
                    nodes: runner.egraph.total_number_of_nodes(),
                });
            }
            if t.elapsed() > phase.limits.warn_after {
                tracing::warn!(
                    phase = %phase.name,
                    seconds = t.elapsed().as_secs_f64(),
                    nodes = runner.egraph.total_number_of_nodes(),
                    "optimizer phase is slow"
                );
            }
            let applied_by_brick = std::mem::take(&mut *log.lock().expect("log not poisoned"));
            let mut applied = BTreeMap::new();
            for it in &runner.iterations {
                for (rule, n) in &it.applied {
                    *applied.entry(rule.to_string()).or_insert(0) += n;
                }
            }
            let stop_reason = runner.stop_reason.clone();
            let iterations = runner.iterations.len();
            model.egraph = runner.egraph;
            model.egraph.rebuild();
            model.roots = model.roots.iter().map(|&r| model.egraph.find(r)).collect();
            let dump = if self.dump_after.contains(&phase.name) {
                Some(kiln_ir::text::print(&extract_dag(&model, &cost)?.graph))
            } else {
                None
            };
            phases.push(PhaseReport {
                name: phase.name.clone(),
                stop_reason,
                classes_before,
                nodes_before,
                classes_after: model.egraph.number_of_classes(),
                nodes_after: model.egraph.total_number_of_nodes(),
                iterations,
                time: t.elapsed(),
                applied,
                dump,
                applied_by_brick,
            });
        }
        let t = Instant::now();
        let extraction = match self.extractor {
            Extractor::Greedy => extract_dag(&model, &cost)?,
            #[cfg(feature = "ilp")]
            Extractor::Ilp { timeout } => {
                crate::extract_ilp::extract_ilp(&model, &cost, timeout)?.extraction
            }
        };
        let extract_time = t.elapsed();
        // Every e-class's cheapest (tree) cost into the analysis, for tools that
        // inspect the e-graph (priced once, by the extraction).
        for (&class, &seconds) in &extraction.class_costs {
            model.egraph[class].data.cost = Some(seconds);
        }
        // Priced in the e-graph, whose types are at least as precise as the source's
        // (the extracted graph re-infers its value types, and inference can lose
        // dims the source recorded).
        let (mut out, mut cost_after) = (extraction.graph, extraction.cost);
        let mut fallback = None;
        if let Some((g, c, phase)) = at_barrier.filter(|(_, c, _)| *c < cost_after) {
            fallback = Some(format!(
                "kept the program before phase `{phase}` (modelled cheaper)"
            ));
            (out, cost_after) = (g, c);
        }
        if cost_after > cost_before {
            fallback =
                Some("kept the input graph (every program found was modelled dearer)".into());
            (out, cost_after) = (graph.clone(), cost_before);
        }
        Ok((
            out,
            Report {
                target: profile.name.clone(),
                phases,
                cost_before,
                cost_after,
                fallback,
                to_egraph_time,
                extract_time,
                total_time: start.elapsed(),
            },
            model,
        ))
    }
}

/// How deep [`brick_of`] looks through operands for a brick when an e-class has none
/// of its own (an e-class a rule created).
pub const BRICK_SEARCH_DEPTH: usize = 4;

/// Rule applications per (rule, brick), as [`PhaseReport::applied_by_brick`].
type BrickLog = BTreeMap<(String, Option<BrickId>), usize>;

/// The brick an e-class belongs to: its origin's brick, else the first brick found
/// breadth-first among its e-nodes' operands (at most [`BRICK_SEARCH_DEPTH`] deep).
pub fn brick_of(egraph: &KilnEGraph, class: Id) -> Option<BrickId> {
    let mut frontier = vec![egraph.find(class)];
    let mut seen = std::collections::HashSet::new();
    for _ in 0..=BRICK_SEARCH_DEPTH {
        let mut next = vec![];
        for c in frontier {
            if !seen.insert(c) {
                continue;
            }
            if let Some(b) = egraph[c].data.origin.as_ref().and_then(|o| o.brick) {
                return Some(b);
            }
            for n in egraph[c].iter() {
                next.extend(egg::Language::children(n).iter().map(|&k| egraph.find(k)));
            }
        }
        frontier = next;
    }
    None
}

/// `rw` with its applier wrapped in a [`Recording`] applier logging into `log`.
fn recording(
    rw: &Rewrite<KilnLang, KilnAnalysis>,
    log: &Arc<Mutex<BrickLog>>,
) -> Rewrite<KilnLang, KilnAnalysis> {
    let applier = Recording {
        inner: rw.applier.clone(),
        log: log.clone(),
    };
    Rewrite::new(rw.name, SharedSearcher(rw.searcher.clone()), applier)
        .expect("the wrapped rewrite's variables were checked when it was built")
}

/// A rewrite's searcher, shared with the rewrite it came from.
struct SharedSearcher(Arc<dyn Searcher<KilnLang, KilnAnalysis> + Sync + Send>);

impl Searcher<KilnLang, KilnAnalysis> for SharedSearcher {
    fn search_eclass_with_limit(
        &self,
        egraph: &KilnEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, KilnLang>> {
        self.0.search_eclass_with_limit(egraph, eclass, limit)
    }

    fn search_with_limit(
        &self,
        egraph: &KilnEGraph,
        limit: usize,
    ) -> Vec<SearchMatches<'_, KilnLang>> {
        self.0.search_with_limit(egraph, limit)
    }

    fn get_pattern_ast(&self) -> Option<&PatternAst<KilnLang>> {
        self.0.get_pattern_ast()
    }

    fn vars(&self) -> Vec<Var> {
        self.0.vars()
    }
}

/// An applier that applies each match through the rule's own applier and logs each
/// changed e-class under its brick; the rule files stay untouched.
struct Recording {
    inner: Arc<dyn Applier<KilnLang, KilnAnalysis> + Sync + Send>,
    log: Arc<Mutex<BrickLog>>,
}

impl Applier<KilnLang, KilnAnalysis> for Recording {
    fn apply_matches(
        &self,
        egraph: &mut KilnEGraph,
        matches: &[SearchMatches<KilnLang>],
        rule_name: Symbol,
    ) -> Vec<Id> {
        let mut changed = vec![];
        for m in matches {
            // One match at a time, through the inner `apply_matches` (which a native
            // rule may override), so each change is attributed to its own match.
            let ids = self
                .inner
                .apply_matches(egraph, std::slice::from_ref(m), rule_name);
            if !ids.is_empty() {
                // Each changed e-class counts in its own brick (a QKV concatenation
                // matched at the shared input changes the projections' e-classes,
                // which belong to the attention brick); the match's brick when the
                // changed e-class has none.
                let fallback = brick_of(egraph, m.eclass);
                let mut log = self.log.lock().expect("log not poisoned");
                for &id in &ids {
                    let brick = brick_of(egraph, id).or(fallback);
                    *log.entry((rule_name.to_string(), brick)).or_insert(0) += 1;
                }
            }
            changed.extend(ids);
        }
        changed
    }

    fn apply_one(
        &self,
        egraph: &mut KilnEGraph,
        eclass: Id,
        subst: &Subst,
        searcher_ast: Option<&PatternAst<KilnLang>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        self.inner
            .apply_one(egraph, eclass, subst, searcher_ast, rule_name)
    }

    fn get_pattern_ast(&self) -> Option<&PatternAst<KilnLang>> {
        self.inner.get_pattern_ast()
    }

    fn vars(&self) -> Vec<Var> {
        self.inner.vars()
    }
}
