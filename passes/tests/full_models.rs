//! Whole-model runs at real sizes (2 layers of BERT-base and of TinyLlama 1.1B, the
//! layer structure of the benchmark's 12- and 22-layer graphs): the standard
//! pipeline stays within its limits, reports a stop reason per phase, lowers the
//! modelled cost, and fuses every attention, FFN and norm brick with the composites
//! recognized and the sibling projections concatenated.

use kiln_passes::cost::{CostModel, TargetProfile};
use kiln_passes::explain::{explain, KindCoverage};
use kiln_passes::pipeline::{Pipeline, NODE_LIMIT};
use kiln_passes::synthetic::{bert, llama, BertConfig, LlamaConfig, Weights};

/// Layers of the full-size test models (the benchmark runs 12 and 22).
const LAYERS: usize = 2;

fn coverage(g: &kiln_ir::Graph) -> std::collections::BTreeMap<String, KindCoverage> {
    let profile = TargetProfile::h200();
    let (opt, report) = Pipeline::standard().run(g, &profile).unwrap();
    for p in &report.phases {
        assert!(p.stop_reason.is_some(), "{}: no stop reason", p.name);
        assert!(p.nodes_after <= NODE_LIMIT, "{}: {}", p.name, p.nodes_after);
    }
    assert!(report.cost_after < report.cost_before, "{report:?}");
    let e = explain(g, &opt, &report, &CostModel::new(profile));
    let c = e.coverage();
    println!("{}: {c:#?}", g.name);
    c
}

fn has(c: &KindCoverage, label: &str, at_least: usize) -> bool {
    c.chosen
        .iter()
        .filter(|(l, _)| l.contains(label))
        .map(|(_, n)| n)
        .sum::<usize>()
        >= at_least
}

#[test]
fn bert_base_layers_are_fused_with_attention_layernorm_gelu_and_qkv_concatenated() {
    let c = coverage(&bert(&BertConfig::base(LAYERS), Weights::Shared));
    let (attn, ffn, norm) = (&c["attention"], &c["ffn"], &c["norm"]);
    assert_eq!((attn.fused, attn.bricks), (LAYERS, LAYERS), "{attn:?}");
    assert!(has(attn, "Attention", LAYERS), "{attn:?}");
    assert!(has(attn, "Split", LAYERS), "QKV: {attn:?}");
    assert_eq!(ffn.fused, ffn.bricks, "{ffn:?}");
    assert!(has(ffn, "Gelu", LAYERS), "{ffn:?}");
    assert_eq!(
        (norm.fused, norm.bricks),
        (2 * LAYERS, 2 * LAYERS),
        "{norm:?}"
    );
    assert!(has(norm, "LayerNorm", 2 * LAYERS), "{norm:?}");
}

#[test]
fn tinyllama_layers_are_fused_with_attention_rmsnorm_and_qkv_gate_up_concatenated() {
    let c = coverage(&llama(&LlamaConfig::tinyllama(LAYERS), Weights::Shared));
    let (attn, ffn, norm) = (&c["attention"], &c["ffn"], &c["norm"]);
    assert_eq!((attn.fused, attn.bricks), (LAYERS, LAYERS), "{attn:?}");
    assert!(has(attn, "Attention", LAYERS), "{attn:?}");
    assert!(has(attn, "Split", LAYERS), "QKV: {attn:?}");
    assert_eq!((ffn.fused, ffn.bricks), (LAYERS, LAYERS), "{ffn:?}");
    assert!(has(ffn, "Split", LAYERS), "gate/up: {ffn:?}");
    assert!(has(ffn, "Fused", LAYERS), "{ffn:?}");
    // Two per layer and the final one.
    assert_eq!(norm.fused, norm.bricks, "{norm:?}");
    assert!(has(norm, "RmsNorm", 2 * LAYERS + 1), "{norm:?}");
}
