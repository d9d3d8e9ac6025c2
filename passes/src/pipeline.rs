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
use std::time::{Duration, Instant};

use egg::{Rewrite, Runner, StopReason};
use kiln_ir::{Graph, NodeError};

use crate::cost::{CostModel, DimBindings, TargetProfile};
use crate::extract_dag::extract_dag;
use crate::{to_egraph, KilnAnalysis, KilnEGraph, KilnLang};

/// Most e-nodes a phase may grow the e-graph to. A 22-layer Llama graph starts at
/// a few thousand e-nodes; the limit leaves room for two orders of magnitude of
/// growth while keeping a phase well under a second.
pub const NODE_LIMIT: usize = 200_000;

/// Most egg iterations (apply every rule, rebuild) per phase. Rule sets that follow
/// the policy (no rules that only grow the e-graph) saturate in a handful.
pub const ITERATION_LIMIT: usize = 30;

/// Most wall-clock time per phase; a phase that hits it is reported as such.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// The limits of one phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Most e-nodes ([`NODE_LIMIT`] by default).
    pub nodes: usize,
    /// Most iterations ([`ITERATION_LIMIT`] by default).
    pub iterations: usize,
    /// Most wall-clock time ([`TIME_LIMIT`] by default).
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nodes: NODE_LIMIT,
            iterations: ITERATION_LIMIT,
            time: TIME_LIMIT,
        }
    }
}

/// A named phase: its rewrites, run to saturation or to a limit.
pub struct Phase {
    /// The phase's name (what `--dump-after` takes).
    pub name: String,
    /// The rewrites run together in this phase.
    pub rewrites: Vec<Rewrite<KilnLang, KilnAnalysis>>,
    /// The phase's limits.
    pub limits: Limits,
}

impl Phase {
    /// A phase with the default limits.
    pub fn new(name: &str, rewrites: Vec<Rewrite<KilnLang, KilnAnalysis>>) -> Phase {
        Phase {
            name: name.to_string(),
            rewrites,
            limits: Limits::default(),
        }
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
    /// from phase to phase, so later phases see every equivalent found earlier.
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
            phase("regions", &["regions"]),
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
    ) -> Result<(Graph, Report), NodeError> {
        let start = Instant::now();
        let cost = CostModel::new(profile.clone()).with_dims(self.dims.clone());
        let cost_before = cost.graph_cost(graph);
        let t = Instant::now();
        let mut model = to_egraph(graph);
        let to_egraph_time = t.elapsed();
        let mut phases = Vec::with_capacity(self.phases.len());
        for phase in &self.phases {
            let t = Instant::now();
            let egraph =
                std::mem::replace(&mut model.egraph, KilnEGraph::new(KilnAnalysis::default()));
            let (classes_before, nodes_before) =
                (egraph.number_of_classes(), egraph.total_number_of_nodes());
            let runner = Runner::default()
                .with_egraph(egraph)
                .with_node_limit(phase.limits.nodes)
                .with_iter_limit(phase.limits.iterations)
                .with_time_limit(phase.limits.time)
                .run(&phase.rewrites);
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
        // Priced in the e-graph, whose types are at least as precise as the source's
        // (the extracted graph re-infers its value types, and inference can lose
        // dims the source recorded).
        let (out, cost_after) = (extraction.graph, extraction.cost);
        Ok((
            out,
            Report {
                target: profile.name.clone(),
                phases,
                cost_before,
                cost_after,
                to_egraph_time,
                extract_time,
                total_time: start.elapsed(),
            },
        ))
    }
}
