//! Greedy DAG vs ILP (CBC) extraction on synthetic BERT-base graphs of 1 and 12
//! layers after the `simplify` phase (layout and algebra rules), of 12 layers after
//! `simplify`, `bricks` and `fusion` (the e-graph the standard pipeline extracts at
//! its barrier before `regions`), and the standard pipeline's final e-graph, priced
//! for the H200: extraction time of each, and both modelled costs (on stderr).
//! Needs feature `ilp`: `cargo bench -p kiln-passes --features ilp --bench extract`.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use egg::Runner;
use kiln_passes::cost::{CostModel, TargetProfile};
use kiln_passes::extract_dag::extract_dag;
use kiln_passes::extract_ilp::{extract_ilp, ILP_TIME_LIMIT};
use kiln_passes::pipeline::{Limits, Pipeline};
use kiln_passes::rules::RuleSet;
use kiln_passes::{to_egraph, EGraphModel};

/// Phases as theme lists: `simplify` alone, and the standard phases before the
/// `regions` barrier.
const SIMPLIFY: &[&[&str]] = &[&["layout", "algebra"]];
const UP_TO_FUSION: &[&[&str]] = &[&["layout", "algebra"], &["bricks"], &["fusion"]];

/// `bert_base_like(layers)` in an e-graph saturated phase by phase (each phase
/// the rules of its themes, under the default limits), as the pipeline does.
fn saturated(layers: usize, phases: &[&[&str]]) -> EGraphModel {
    let rules = RuleSet::builtin();
    let mut model = to_egraph(&kiln_passes::synthetic::bert_base_like(layers));
    let limits = Limits::default();
    for themes in phases {
        let mut set = RuleSet::default();
        for theme in *themes {
            set.rules.extend(rules.theme(theme).rules);
        }
        let egraph = std::mem::take(&mut model.egraph);
        let runner = Runner::default()
            .with_egraph(egraph)
            .with_node_limit(limits.nodes)
            .with_iter_limit(limits.iterations)
            .run(&set.rewrites());
        model.egraph = runner.egraph;
        model.egraph.rebuild();
        model.roots = model.roots.iter().map(|&r| model.egraph.find(r)).collect();
    }
    model
}

fn extract(c: &mut Criterion) {
    let cost = CostModel::new(TargetProfile::h200());
    let mut group = c.benchmark_group("extract");
    group.sample_size(10);
    for (layers, phases, after) in [
        (1, SIMPLIFY, "simplify"),
        (12, SIMPLIFY, "simplify"),
        (12, UP_TO_FUSION, "fusion"),
        (12, &[], "regions"),
    ] {
        let model = if phases.is_empty() {
            // The standard pipeline's own final e-graph (regions after the barrier).
            let g = kiln_passes::synthetic::bert_base_like(layers);
            Pipeline::standard()
                .run_keeping_egraph(&g, &TargetProfile::h200())
                .expect("the pipeline runs")
                .2
        } else {
            saturated(layers, phases)
        };
        let greedy = extract_dag(&model, &cost).unwrap();
        let t = Instant::now();
        let ilp = extract_ilp(&model, &cost, ILP_TIME_LIMIT).unwrap();
        eprintln!(
            "bert_base_like({layers}) after {after}: {} classes, {} nodes; greedy DAG cost {:.6e} s, \
             ILP cost {:.6e} s ({:?}, {:?}, solve {:.3} s, total {:.3} s)",
            model.egraph.number_of_classes(),
            model.egraph.total_number_of_nodes(),
            greedy.cost,
            ilp.extraction.cost,
            ilp.outcome,
            ilp.size,
            ilp.solve_time.as_secs_f64(),
            t.elapsed().as_secs_f64(),
        );
        group.bench_function(format!("greedy_bert_{layers}_{after}"), |b| {
            b.iter(|| extract_dag(&model, &cost).unwrap())
        });
        group.bench_function(format!("ilp_bert_{layers}_{after}"), |b| {
            b.iter(|| extract_ilp(&model, &cost, ILP_TIME_LIMIT).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, extract);
criterion_main!(benches);
