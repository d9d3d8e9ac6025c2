//! The synthetic exporter-shaped models: full-size BERT-base and TinyLlama layers go
//! through the standard pipeline within its limits, and small seeded versions
//! compute the same before and after optimization on the reference interpreter.

use kiln_ir::{interp, DType, Graph, Tensor};
use kiln_passes::cost::TargetProfile;
use kiln_passes::pipeline::{Pipeline, NODE_LIMIT};
use kiln_passes::synthetic::{self, BertConfig, LlamaConfig, SeqLen, Weights};
use kiln_passes::testing::{assert_close, random_tensor, InputDims};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Length the symbolic sequence dim is bound to for evaluation.
const SYMBOLIC_SEQ: usize = 6;

/// Tolerance of optimized vs unoptimized outputs (relative, plus as much absolute).
const TOL: f64 = 1e-4;

/// Random inputs for a synthetic model: token ids below `vocab`, positions
/// `0..S`, a causal additive mask (`0` / `-inf`), other floats in ±1.
fn inputs(g: &Graph, vocab: usize, rng: &mut StdRng) -> Vec<(String, Tensor)> {
    let dims = InputDims::uniform(SYMBOLIC_SEQ).with_ids(vocab as i64);
    g.inputs
        .iter()
        .map(|&i| {
            let v = g.value(i);
            let t = match (v.name.as_str(), v.ty.dtype) {
                ("position_ids", _) => {
                    let shape = dims.bind(&v.ty.shape);
                    let n = shape.iter().product::<usize>() as i64;
                    Tensor::from_vec(shape, (0..n).collect())
                }
                ("attention_mask", _) => {
                    let shape = dims.bind(&v.ty.shape);
                    let n: usize = shape.iter().product();
                    let s = shape[3];
                    let data = (0..n)
                        .map(|k| {
                            if k % s <= (k / s) % s {
                                0.0f32
                            } else {
                                f32::NEG_INFINITY
                            }
                        })
                        .collect();
                    Tensor::from_vec(shape, data)
                }
                ("input_ids", DType::I64) | (_, DType::F32) => random_tensor(&v.ty, rng, &dims),
                (name, dt) => panic!("no random input for {name}: {dt}"),
            };
            (v.name.clone(), t)
        })
        .collect()
}

/// Runs the standard pipeline, checks the report and returns the optimized graph.
fn optimize(name: &str, g: &Graph) -> Graph {
    kiln_ir::verify(g).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (out, report) = Pipeline::standard()
        .run(g, &TargetProfile::h200())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    kiln_ir::verify(&out).unwrap_or_else(|e| panic!("{name}: optimized: {e}"));
    for p in &report.phases {
        assert!(
            p.stop_reason.is_some(),
            "{name}: phase {} has no stop reason",
            p.name
        );
        assert!(
            p.nodes_after <= NODE_LIMIT,
            "{name}: phase {} over the node limit",
            p.name
        );
        println!(
            "{name}: {:<8} {:?}, {} → {} e-nodes, {} iterations, {:?}",
            p.name, p.stop_reason, p.nodes_before, p.nodes_after, p.iterations, p.time
        );
    }
    assert!(
        report.cost_after <= report.cost_before * (1.0 + 1e-9),
        "{name}: cost rose: {report:?}"
    );
    println!(
        "{name}: {} → {} nodes, cost {:.1} → {:.1} µs, {:?}",
        g.nodes().len(),
        out.nodes().len(),
        report.cost_before * 1e6,
        report.cost_after * 1e6,
        report.total_time
    );
    out
}

fn assert_same(name: &str, g: &Graph, opt: &Graph, vocab: usize) {
    let fresh: u64 = rand::random();
    for seed in [7, fresh] {
        let inputs = inputs(g, vocab, &mut StdRng::seed_from_u64(seed));
        let want = interp::run(g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = interp::run(opt, &inputs).unwrap_or_else(|e| panic!("{name}: optimized: {e}"));
        assert!(
            want.iter()
                .all(|w| w.to_f64_vec().iter().all(|a| a.is_finite())),
            "{name} (seed {seed}): non-finite reference output"
        );
        assert_close(&format!("{name} (seed {seed})"), &want, &got, TOL);
    }
}

#[test]
fn full_size_two_layer_models_go_through_the_standard_pipeline() {
    optimize("bert_base_2", &synthetic::bert_base_like(2));
    optimize("tinyllama_2", &synthetic::tinyllama_like(2));
    let mut cfg = LlamaConfig::tinyllama(2);
    cfg.seq = SeqLen::Symbolic;
    optimize(
        "tinyllama_2_symbolic",
        &synthetic::llama(&cfg, Weights::Shared),
    );
}

#[test]
fn seeded_small_models_compute_the_same_after_optimization() {
    let bert = synthetic::bert(&BertConfig::tiny(2), Weights::Seeded(1));
    assert_same("bert_tiny", &bert, &optimize("bert_tiny", &bert), 0);
    let mut cfg = BertConfig::tiny(2);
    cfg.seq = SeqLen::Symbolic;
    let bert = synthetic::bert(&cfg, Weights::Seeded(2));
    assert_same(
        "bert_tiny_symbolic",
        &bert,
        &optimize("bert_tiny_symbolic", &bert),
        0,
    );
    let cfg = LlamaConfig::tiny(2);
    let llama = synthetic::llama(&cfg, Weights::Seeded(3));
    assert_same(
        "llama_tiny",
        &llama,
        &optimize("llama_tiny", &llama),
        cfg.vocab,
    );
    let mut cfg = LlamaConfig::tiny(2);
    cfg.seq = SeqLen::Symbolic;
    let llama = synthetic::llama(&cfg, Weights::Seeded(4));
    assert_same(
        "llama_tiny_symbolic",
        &llama,
        &optimize("llama_tiny_symbolic", &llama),
        cfg.vocab,
    );
}

#[test]
fn models_have_the_exporters_bricks_and_composites() {
    let g = synthetic::tinyllama_like(22);
    let kinds = |g: &Graph, k: kiln_ir::BrickKind| g.bricks.iter().filter(|b| b.kind == k).count();
    use kiln_ir::BrickKind::*;
    assert_eq!(kinds(&g, Layer), 22);
    assert_eq!(kinds(&g, Attention), 22);
    assert_eq!(kinds(&g, Ffn), 22);
    assert_eq!(kinds(&g, Norm), 45);
    assert_eq!(kinds(&g, Embedding), 1);
    assert_eq!(kinds(&g, Head), 1);
    let count = |g: &Graph, op: &str| g.nodes().iter().filter(|n| n.op.name() == op).count();
    // 7 projections per layer and the head; RMSNorm's Pow per norm; RoPE's Neg twice
    // per layer; no composite op is given away.
    assert_eq!(count(&g, "MatMul"), 22 * 9 + 1);
    assert_eq!(count(&g, "Pow"), 45);
    assert_eq!(count(&g, "Neg"), 44);
    assert_eq!(count(&g, "LayerNorm") + count(&g, "Gelu"), 0);
    let out = g.value(g.outputs[0]);
    assert_eq!(out.name, "logits");
    assert_eq!(out.ty.shape.as_known(), Some(vec![1, 128, 32000]));

    let g = synthetic::bert_base_like(12);
    assert_eq!(kinds(&g, Norm), 24);
    assert_eq!(count(&g, "Erf"), 12);
    assert_eq!(count(&g, "Pow"), 24);
    assert_eq!(count(&g, "LayerNorm") + count(&g, "Gelu"), 0);
}
