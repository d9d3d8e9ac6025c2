//! Fused regions: the standard pipeline builds them on real exported models, the
//! regions are legal, and the optimized graphs compute what the source graphs do.

use std::path::PathBuf;

use kiln_ir::{interp, Graph, Op};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Every symbolic dim of the random inputs is bound to this size.
const SYMBOLIC_SIZE: usize = 3;
/// Tolerance of the comparison: `|a − b| <= TOL · (1 + |a|)`.
const TOL: f64 = 1e-4;

fn fixture(name: &str) -> Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/onnx")
        .join(name)
        .join("model.onnx");
    kiln_frontends::onnx::load(&path).unwrap()
}

fn regions(g: &Graph) -> Vec<String> {
    g.nodes()
        .iter()
        .filter_map(|n| match &n.op {
            Op::Fused(f) => Some(f.summary()),
            _ => None,
        })
        .collect()
}

#[test]
fn exported_models_get_fused_regions_and_keep_their_values() {
    let fresh: u64 = rand::random();
    println!("fresh seed: {fresh}");
    for name in [
        "bert_torchscript_fixed",
        "llama_torchscript_fixed",
        "gpt2_dynamo_dynamic",
        "vit_dynamo_fixed",
    ] {
        let g = fixture(name);
        let (opt, report) = Pipeline::standard()
            .run(&g, &TargetProfile::h200())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        kiln_ir::verify(&opt).unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = regions(&opt);
        println!(
            "{name}: {} → {} nodes, cost {:.3e} → {:.3e} s, {:?}; regions: {found:?}",
            g.nodes().len(),
            opt.nodes().len(),
            report.cost_before,
            report.cost_after,
            report.total_time
        );
        for p in &report.phases {
            println!(
                "  {}: {:?} {} → {} nodes, {} iterations, {:?}",
                p.name, p.stop_reason, p.nodes_before, p.nodes_after, p.iterations, p.time
            );
        }
        assert!(!found.is_empty(), "{name}: no region");
        assert!(report.cost_after < report.cost_before, "{name}: no gain");
        // The text form carries regions.
        let text = kiln_ir::text::print(&opt);
        let back = kiln_ir::text::parse_with_weights(&text, &kiln_ir::text::weights(&opt))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(regions(&back), found);
        for seed in [3u64, fresh] {
            let inputs = random_inputs(
                &g,
                &mut StdRng::seed_from_u64(seed),
                &InputDims::uniform(SYMBOLIC_SIZE),
            );
            let want = interp::run(&g, &inputs).unwrap();
            let got = interp::run(&opt, &inputs).unwrap();
            assert_close(&format!("{name} (seed {seed})"), &want, &got, TOL);
        }
    }
}
