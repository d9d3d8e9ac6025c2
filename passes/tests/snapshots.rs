//! Snapshots of the optimized text of small models (reviewed by hand when they
//! change: a diff here is a change in what the optimizer produces). Each model is
//! also checked against its source on random inputs.

use kiln_ir::{interp, DType, Dim, Graph, Tensor};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use kiln_passes::synthetic::{bert, llama, BertConfig, LlamaConfig, Weights};
use kiln_passes::synthetic_bricks::{lora_linear, moe_layer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed of every snapshot model's weights (snapshots must be reproducible).
const SEED: u64 = 11;

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
                        _ => 4,
                    })
                    .collect();
            let n: usize = dims.iter().product();
            let t = match v.ty.dtype {
                DType::I64 => {
                    Tensor::from_vec(dims, (0..n).map(|_| rng.random_range(0..4i64)).collect())
                }
                _ => Tensor::from_vec(
                    dims,
                    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                ),
            };
            (v.name.clone(), t)
        })
        .collect()
}

/// The optimized graph's text, after checking it computes what `g` does.
fn optimized_text(g: &Graph) -> String {
    let (opt, _) = Pipeline::standard()
        .run(g, &TargetProfile::h200())
        .expect("the pipeline runs");
    kiln_ir::verify(&opt).expect("a valid optimized graph");
    let inputs = random_inputs(g, &mut StdRng::seed_from_u64(rand::random()));
    let want = interp::run(g, &inputs).expect("source runs");
    let got = interp::run(&opt, &inputs).expect("optimized runs");
    for (w, o) in want.iter().zip(&got) {
        for (a, b) in w.to_f64_vec().iter().zip(o.to_f64_vec()) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
    kiln_ir::text::print(&opt)
}

#[test]
fn bert_layer() {
    insta::assert_snapshot!(optimized_text(&bert(
        &BertConfig::tiny(1),
        Weights::Seeded(SEED)
    )));
}

#[test]
fn llama_layer() {
    insta::assert_snapshot!(optimized_text(&llama(
        &LlamaConfig::tiny(1),
        Weights::Seeded(SEED)
    )));
}

#[test]
fn lora_adapted_linear() {
    insta::assert_snapshot!(optimized_text(&lora_linear(SEED, 4, 32)));
}

#[test]
fn moe_layer_with_a_zero_expert() {
    insta::assert_snapshot!(optimized_text(&moe_layer(SEED, 4, 16, 32)));
}
