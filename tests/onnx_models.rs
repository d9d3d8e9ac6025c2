//! Transformer exports from both `torch.onnx.export` paths (TorchScript and dynamo),
//! with fixed and with symbolic batch/sequence dims, run through the reference
//! interpreter and compared with onnxruntime's outputs (committed fixtures made by
//! `scripts/make_onnx_fixtures.py`; no Python at test time).

use kiln::ir::BrickKind;
use kiln::Model;

mod common;

use common::exported::{check_close, fixtures, read_dir_npys};

fn run_fixture(name: &str) {
    let dir = fixtures().join(name);
    let model = Model::load(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (inputs, expected) in [("inputs", "expected"), ("inputs_alt", "expected_alt")] {
        if !dir.join(inputs).exists() {
            continue;
        }
        let outs = model
            .run(&read_dir_npys(&dir.join(inputs)))
            .unwrap_or_else(|e| panic!("{name}/{inputs}: {e}"));
        let want = read_dir_npys(&dir.join(expected));
        assert!(!want.is_empty());
        for (oname, w) in &want {
            let (_, g) = outs
                .iter()
                .find(|(n, _)| n == oname)
                .unwrap_or_else(|| panic!("{name}: no output {oname}"));
            let err = check_close(&format!("{name}/{inputs}/{oname}"), g, w);
            println!("{name}/{inputs}/{oname}: max relative error {err:.2e}");
        }
    }
}

/// Kinds of the bricks of a model.
fn brick_kinds(name: &str) -> Vec<(String, BrickKind)> {
    let model = Model::load(fixtures().join(name).join("model.onnx")).unwrap();
    model
        .graph()
        .bricks
        .iter()
        .map(|b| (b.name.clone(), b.kind.clone()))
        .collect()
}

macro_rules! fixture_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { run_fixture($name); })*
    };
}

fixture_tests! {
    bert_torchscript_fixed => "bert_torchscript_fixed",
    bert_torchscript_dynamic => "bert_torchscript_dynamic",
    bert_dynamo_fixed => "bert_dynamo_fixed",
    bert_dynamo_dynamic => "bert_dynamo_dynamic",
    llama_torchscript_fixed => "llama_torchscript_fixed",
    llama_torchscript_dynamic => "llama_torchscript_dynamic",
    llama_dynamo_fixed => "llama_dynamo_fixed",
    llama_dynamo_dynamic => "llama_dynamo_dynamic",
    gpt2_torchscript_fixed => "gpt2_torchscript_fixed",
    gpt2_torchscript_dynamic => "gpt2_torchscript_dynamic",
    gpt2_dynamo_fixed => "gpt2_dynamo_fixed",
    gpt2_dynamo_dynamic => "gpt2_dynamo_dynamic",
    vit_torchscript_fixed => "vit_torchscript_fixed",
    vit_torchscript_dynamic => "vit_torchscript_dynamic",
    vit_dynamo_fixed => "vit_dynamo_fixed",
    vit_dynamo_dynamic => "vit_dynamo_dynamic",
}

#[test]
fn bert_exports_show_layers_attention_and_ffn() {
    for name in ["bert_torchscript_dynamic", "bert_dynamo_dynamic"] {
        let kinds = brick_kinds(name);
        for want in ["encoder.layer.0", "encoder.layer.1"] {
            assert!(
                kinds
                    .iter()
                    .any(|(n, k)| n == want && *k == BrickKind::Layer),
                "{name}: no layer {want} in {kinds:?}"
            );
        }
        assert!(
            kinds
                .iter()
                .any(|(n, k)| n == "encoder.layer.1.attention" && *k == BrickKind::Attention),
            "{name}: {kinds:?}"
        );
        assert!(
            kinds
                .iter()
                .any(|(n, k)| n == "encoder.layer.1.intermediate" && *k == BrickKind::Ffn),
            "{name}: {kinds:?}"
        );
        assert!(
            kinds.iter().any(|(_, k)| *k == BrickKind::Embedding),
            "{name}: {kinds:?}"
        );
    }
}

#[test]
fn llama_exports_show_layers_attention_and_ffn() {
    for name in ["llama_torchscript_dynamic", "llama_dynamo_dynamic"] {
        let kinds = brick_kinds(name);
        assert!(
            kinds
                .iter()
                .any(|(n, k)| n.ends_with("layers.1") && *k == BrickKind::Layer),
            "{name}: {kinds:?}"
        );
        assert!(
            kinds
                .iter()
                .any(|(n, k)| n.ends_with("layers.0.self_attn") && *k == BrickKind::Attention),
            "{name}: {kinds:?}"
        );
        assert!(
            kinds
                .iter()
                .any(|(n, k)| n.ends_with("layers.0.mlp") && *k == BrickKind::Ffn),
            "{name}: {kinds:?}"
        );
        assert!(
            kinds.iter().any(|(_, k)| *k == BrickKind::Norm),
            "{name}: {kinds:?}"
        );
    }
}

#[test]
fn dynamic_exports_keep_symbolic_output_shapes() {
    for (name, want) in [
        ("bert_torchscript_dynamic", "f32[batch, sequence, 64]"),
        ("bert_dynamo_dynamic", "f32[batch, sequence, 64]"),
        ("llama_torchscript_dynamic", "f32[batch, sequence, 1000]"),
    ] {
        let model = Model::load(fixtures().join(name).join("model.onnx")).unwrap();
        let g = model.graph();
        let ty = &g.value(g.outputs[0]).ty;
        assert_eq!(ty.to_string(), want, "{name}");
    }
}

/// Weights are views of the memory-mapped model file, not copies.
#[cfg(target_os = "linux")]
#[test]
fn weights_are_memory_mapped_not_copied() {
    let path = fixtures()
        .join("bert_torchscript_fixed/model.onnx")
        .canonicalize()
        .unwrap();
    let model = Model::load(&path).unwrap();
    let g = model.graph();
    let (addr, len) = g
        .values()
        .iter()
        .filter_map(|v| match &v.def {
            kiln::ir::ValueDef::Const(t) => Some((t.bytes().as_ptr() as usize, t.bytes().len())),
            _ => None,
        })
        .max_by_key(|&(_, len)| len)
        .unwrap();
    assert!(len > 10_000);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapped = maps
        .lines()
        .filter(|l| l.ends_with(path.to_str().unwrap()))
        .any(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            lo <= addr && addr + len <= hi
        });
    assert!(
        mapped,
        "the largest weight does not point into a mapping of {}",
        path.display()
    );
}
