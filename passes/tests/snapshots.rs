//! Snapshots of the optimized text of small models (reviewed by hand when they
//! change: a diff here is a change in what the optimizer produces). Each model is
//! also checked against its source on random inputs.

use kiln_ir::{interp, Graph};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::Pipeline;
use kiln_passes::synthetic::{bert, llama, BertConfig, LlamaConfig, Weights};
use kiln_passes::synthetic_bricks::{lora_linear, moe_layer};
use kiln_passes::testing::{assert_close, random_inputs, InputDims};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The seed of every snapshot model's weights (snapshots must be reproducible).
const SEED: u64 = 11;
/// Random inputs: every symbolic dim 4, ids in `0..4` (below every snapshot
/// model's vocabulary).
const DIMS: InputDims = InputDims::uniform(4).with_ids(4);
/// Tolerance of the comparison: `|a − b| <= TOL · (1 + |a|)`.
const TOL: f64 = 1e-4;

/// The optimized graph's text, after checking it computes what `g` does.
fn optimized_text(g: &Graph) -> String {
    // The test's thread is named after the test (the model), as the snapshot is.
    let name = std::thread::current()
        .name()
        .unwrap_or("snapshot")
        .to_owned();
    let (opt, _) = Pipeline::standard()
        .run(g, &TargetProfile::h200())
        .expect("the pipeline runs");
    kiln_ir::verify(&opt).expect("a valid optimized graph");
    let seed: u64 = rand::random();
    let inputs = random_inputs(g, &mut StdRng::seed_from_u64(seed), &DIMS);
    let want = interp::run(g, &inputs).expect("source runs");
    let got = interp::run(&opt, &inputs).expect("optimized runs");
    assert_close(&format!("{name} (seed {seed})"), &want, &got, TOL);
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
