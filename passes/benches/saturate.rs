//! Equality saturation at model scale: [`Pipeline::standard`] (to e-graph, every
//! phase, DAG extraction) under the H200 profile on the exporter-shaped synthetic
//! 12-layer BERT-base and 22-layer TinyLlama. Each model's report is printed once
//! before timing.

use criterion::{criterion_group, criterion_main, Criterion};
use kiln_ir::Graph;
use kiln_passes::cost::{CostModel, TargetProfile};
use kiln_passes::explain::explain;
use kiln_passes::pipeline::{Pipeline, Report};

/// Samples per model: the 22-layer run takes about a second, and the whole bench
/// must stay well under two minutes on a loaded 2-core machine.
const SAMPLES: usize = 10;

/// Prints a pipeline report: per phase the stop reason, e-nodes, iterations and time.
fn print_report(name: &str, g: &Graph, report: &Report) {
    eprintln!(
        "{name}: {} nodes, target {}",
        g.nodes().len(),
        report.target
    );
    eprintln!("  to e-graph {:?}", report.to_egraph_time);
    for p in &report.phases {
        eprintln!(
            "  {:<9} stop {:<28} e-nodes {:>7} → {:>7}  iterations {:>2}  {:?}",
            p.name,
            format!("{:?}", p.stop_reason),
            p.nodes_before,
            p.nodes_after,
            p.iterations,
            p.time
        );
    }
    eprintln!("  extract {:?}", report.extract_time);
    eprintln!(
        "  cost {:.1} µs → {:.1} µs; total {:?}",
        report.cost_before * 1e6,
        report.cost_after * 1e6,
        report.total_time
    );
}

fn saturate(c: &mut Criterion) {
    let models = [
        (
            "bert_base_12_layers",
            kiln_passes::synthetic::bert_base_like(12),
        ),
        (
            "tinyllama_22_layers",
            kiln_passes::synthetic::tinyllama_like(22),
        ),
    ];
    let pipeline = Pipeline::standard();
    let profile = TargetProfile::h200();
    let mut group = c.benchmark_group("saturate");
    group.sample_size(SAMPLES);
    for (name, g) in &models {
        let (opt, report) = pipeline
            .run(g, &profile)
            .expect("synthetic model optimizes");
        print_report(name, g, &report);
        let e = explain(g, &opt, &report, &CostModel::new(profile.clone()));
        for (kind, c) in e.coverage() {
            eprintln!(
                "  fused {kind:<10} {:>3}/{:<3} {:?}",
                c.fused, c.bricks, c.chosen
            );
        }
        group.bench_function(*name, |b| b.iter(|| pipeline.run(g, &profile).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, saturate);
criterion_main!(benches);
