//! Fused regions: the standard pipeline builds them on real exported models, the
//! regions are legal, and the optimized graphs compute what the source graphs do.

use std::path::PathBuf;

use kiln_ir::{interp, DType, Dim, Graph, Op, Tensor};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_inputs(g: &Graph, rng: &mut StdRng) -> Vec<(String, Tensor)> {
    g.inputs
        .iter()
        .map(|&i| {
            let v = g.value(i);
            let dims: Vec<usize> =
                v.ty.shape
                    .0
                    .iter()
                    .map(|d| match d {
                        Dim::Known(n) => *n,
                        _ => 3,
                    })
                    .collect();
            let n: usize = dims.iter().product();
            let t = match v.ty.dtype {
                DType::I64 => {
                    Tensor::from_vec(dims, (0..n).map(|_| rng.random_range(0..2i64)).collect())
                }
                _ => Tensor::from_vec(
                    dims,
                    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                )
                .cast(v.ty.dtype),
            };
            (v.name.clone(), t)
        })
        .collect()
}

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
            let inputs = random_inputs(&g, &mut StdRng::seed_from_u64(seed));
            let want = interp::run(&g, &inputs).unwrap();
            let got = interp::run(&opt, &inputs).unwrap();
            for (w, o) in want.iter().zip(&got) {
                assert_eq!(w.shape(), o.shape(), "{name}");
                for (a, b) in w.to_f64_vec().iter().zip(o.to_f64_vec()) {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                        "{name} (seed {seed}): {a} vs {b}"
                    );
                }
            }
        }
    }
}
