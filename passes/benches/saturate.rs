//! Saturation + extraction time of a 12-layer BERT-base-sized graph (hidden 768):
//! to e-graph, the built-in layout and algebra phases, DAG extraction under the
//! H200 profile.

use criterion::{criterion_group, criterion_main, Criterion};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::{Phase, Pipeline};
use kiln_passes::rules::RuleSet;

fn saturate(c: &mut Criterion) {
    let g = kiln_passes::synthetic::bert_base_like(12);
    let rules = RuleSet::builtin();
    let pipeline = Pipeline::new(vec![
        Phase::new("layout", rules.theme("layout").rewrites()),
        Phase::new("algebra", rules.theme("algebra").rewrites()),
    ]);
    let profile = TargetProfile::h200();
    let (_, report) = pipeline.run(&g, &profile).unwrap();
    eprintln!("{report:#?}");
    let mut group = c.benchmark_group("saturate");
    group.sample_size(10);
    group.bench_function("bert_base_12_layers", |b| {
        b.iter(|| pipeline.run(&g, &profile).unwrap())
    });
    group.finish();
}

criterion_group!(benches, saturate);
criterion_main!(benches);
