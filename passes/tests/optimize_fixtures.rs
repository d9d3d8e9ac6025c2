//! Every optimized graph computes what the unoptimized one does: the standard
//! pipeline (every built-in rule, phase by phase) runs on each ONNX fixture model, and both graphs are evaluated
//! on the reference interpreter with random inputs (fixed seeds plus a fresh one).

use std::path::PathBuf;

use kiln_ir::interp;
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Tolerance of the comparison: `|a − b| <= TOL · (1 + |a|)`.
const TOL: f64 = 1e-4;

#[test]
fn optimized_fixtures_match_the_unoptimized_graphs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let pipeline = Pipeline::standard();
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let g = kiln_frontends::onnx::load(&dir.join("model.onnx")).unwrap();
        let (opt, report) = pipeline
            .run(&g, &TargetProfile::cpu_default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        kiln_ir::verify(&opt).unwrap_or_else(|e| panic!("{name}: optimized graph: {e}"));
        assert!(
            report.cost_after <= report.cost_before * (1.0 + 1e-9),
            "{name}: cost rose"
        );
        let applied: usize = report.phases.iter().flat_map(|p| p.applied.values()).sum();
        println!(
            "{name}: {} → {} nodes, modelled cost {:.3e} → {:.3e} s, {applied} rewrites, {:?}",
            g.nodes().len(),
            opt.nodes().len(),
            report.cost_before,
            report.cost_after,
            report.total_time
        );
        for seed in [1u64, fresh] {
            let inputs = random_inputs(&g, &mut StdRng::seed_from_u64(seed), &InputDims::default());
            let want = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got =
                interp::run(&opt, &inputs).unwrap_or_else(|e| panic!("{name}: optimized: {e}"));
            assert_close(&format!("{name} (seed {seed})"), &want, &got, TOL);
        }
    }
}
