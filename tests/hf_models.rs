//! Hugging Face decoder folders against transformers: the fixtures in
//! `tests/fixtures/hf/` (random 2-layer models of each architecture, made by
//! `scripts/make_hf_fixtures.py`) hold transformers' prefill logits for a prompt and
//! its greedy 16-token continuation. kiln must match both, with the KV cache, on
//! the reference interpreter and on the compiled CPU path.

use std::path::{Path, PathBuf};

use kiln::generate::{GenerateOptions, Generator, Sampling};
use kiln::{CompileOptions, LoadOptions, Model, Target};
use serde_json::Value;

/// Largest relative error of the prefill logits (f32 weights and compute).
const LOGITS_RTOL: f64 = 1e-4;

fn fixture_dir() -> PathBuf {
    std::env::var_os("KILN_HF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf"))
}

struct Reference {
    input_ids: Vec<u32>,
    logits: Vec<f64>,
    greedy: Vec<u32>,
}

fn reference(path: &Path) -> Reference {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r: Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        r[k].as_array()
            .unwrap_or_else(|| panic!("{k}"))
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let logits = match r.get("logits_file").and_then(Value::as_str) {
        Some(file) => {
            let w = kiln_frontends::safetensors::load(&path.with_file_name(file)).unwrap();
            let name = r["logits_tensor"].as_str().unwrap_or("logits");
            w.get(name)
                .unwrap_or_else(|| panic!("{file}: no {name}"))
                .to_f64_vec()
        }
        None => r["logits"]
            .as_array()
            .expect("logits")
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .expect("a row")
                    .iter()
                    .map(|v| v.as_f64().unwrap())
            })
            .collect(),
    };
    Reference {
        input_ids: ids("input_ids"),
        logits,
        greedy: ids("greedy_ids"),
    }
}

/// Largest |a − b| relative to the largest |b|.
fn rel_error(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "logit counts differ");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
        / scale
}

fn check(model_dir: &Path, adapters: &[PathBuf], reference_file: &Path, target: Target) {
    let model = Model::load_with(
        model_dir,
        &LoadOptions {
            adapters: adapters.to_vec(),
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", model_dir.display()));
    let r = reference(reference_file);
    let options = CompileOptions {
        threads: Some(2),
        ..CompileOptions::default()
    };
    let capacity = 64;
    let mut g = Generator::new(&model, &target, &options, capacity).unwrap();
    let logits = g.forward(&r.input_ids).unwrap();
    let err = rel_error(&logits, &r.logits);
    eprintln!(
        "{} on {target}: logits rel error {err:.2e}",
        model_dir.display()
    );
    assert!(
        err < LOGITS_RTOL,
        "{} on {target}: prefill logits relative error {err:e}",
        model_dir.display()
    );
    let opts = GenerateOptions {
        max_tokens: r.greedy.len(),
        sampling: Sampling::Greedy,
        stop_tokens: vec![],
    };
    let out = g.generate(&r.input_ids, &opts, |_| true).unwrap();
    assert_eq!(
        out.tokens,
        r.greedy,
        "{} on {target}: greedy continuation",
        model_dir.display()
    );
}

/// The fixture on the interpreter, the CPU, and the GPU path on the SIMT
/// interpreter (prefill and decode steps through every lowered GPU kernel).
fn both(name: &str) {
    let dir = fixture_dir().join(name);
    for target in [Target::reference(), Target::cpu(), Target::cuda_sim()] {
        check(&dir, &[], &dir.join("reference.json"), target);
    }
}

#[test]
fn llama() {
    both("llama");
}

#[test]
fn llama3_rope_scaling_and_tied_embeddings() {
    both("llama3");
}

#[test]
fn mistral() {
    both("mistral");
}

#[test]
fn qwen2_with_qkv_biases() {
    both("qwen2");
}

#[test]
fn mixtral_experts() {
    both("mixtral");
}

#[test]
fn qwen2_moe_with_shared_expert() {
    both("qwen2_moe");
}

#[test]
fn gpt2() {
    both("gpt2");
}

#[test]
fn llama_f16_weights() {
    both("llama-f16");
}

#[test]
fn llama_bf16_weights() {
    both("llama-bf16");
}

/// A PEFT adapter (r = 8 on q_proj and v_proj, random A and B) changes the
/// output exactly as PEFT's merged model does.
#[test]
fn lora_adapter_matches_peft_merged() {
    let base = fixture_dir().join("llama");
    for adapter in ["llama-lora-a", "llama-lora-b"] {
        let dir = fixture_dir().join(adapter);
        for target in [Target::reference(), Target::cpu()] {
            check(
                &base,
                std::slice::from_ref(&dir),
                &dir.join("reference.json"),
                target,
            );
        }
    }
}

/// Two adapters at once: their updates add, as merging one after the other does.
#[test]
fn two_lora_adapters_stack() {
    let base = fixture_dir().join("llama");
    let adapters = [
        fixture_dir().join("llama-lora-a"),
        fixture_dir().join("llama-lora-b"),
    ];
    for target in [Target::reference(), Target::cpu()] {
        check(
            &base,
            &adapters,
            &fixture_dir().join("llama-lora-ab-reference.json"),
            target,
        );
    }
}

/// Sampling is reproducible by seed, the cache refuses what does not fit, and
/// token ids outside the vocabulary are an error, not a wrong answer.
#[test]
fn generator_sampling_and_limits() {
    let model = Model::load(fixture_dir().join("llama")).unwrap();
    let options = CompileOptions {
        threads: Some(2),
        ..CompileOptions::default()
    };
    let mut g = Generator::new(&model, &Target::cpu(), &options, 24).unwrap();
    let prompt = [1u32, 40, 41, 42];
    let sampled = |g: &mut Generator, seed| {
        let opts = GenerateOptions {
            max_tokens: 12,
            sampling: Sampling::Sample {
                temperature: 0.8,
                top_p: 0.9,
                seed,
            },
            stop_tokens: vec![],
        };
        g.generate(&prompt, &opts, |_| true).unwrap().tokens
    };
    let a = sampled(&mut g, 7);
    assert_eq!(a, sampled(&mut g, 7), "same seed, same tokens");
    assert_eq!(a.len(), 12);
    assert_ne!(a, sampled(&mut g, 8), "another seed, other tokens");
    // A stop token ends generation and is returned.
    let greedy = GenerateOptions {
        max_tokens: 12,
        sampling: Sampling::Greedy,
        stop_tokens: vec![],
    };
    let first = g.generate(&prompt, &greedy, |_| true).unwrap().tokens;
    let stop = GenerateOptions {
        stop_tokens: vec![first[2]],
        ..greedy.clone()
    };
    let out = g.generate(&prompt, &stop, |_| true).unwrap();
    assert!(out.stopped);
    assert_eq!(
        out.tokens,
        first[..=first.iter().position(|&t| t == first[2]).unwrap()]
    );
    // Limits.
    g.reset();
    let too_long = vec![5u32; 25];
    let err = g.forward(&too_long).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
    let err = g.forward(&[512]).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    assert!(Generator::new(&model, &Target::cpu(), &options, 100_000).is_err());
}
