//! Replays the fuzz corpora through the same harnesses the fuzzer runs
//! (`kiln::fuzz`): every committed seed (`fuzz/corpus/TARGET/`) and every input
//! that once crashed kiln (`fuzz/regressions/TARGET/`). A harness panics on a bug,
//! so a regression fails this test with the file's name.

use std::path::{Path, PathBuf};

fn corpus_files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one target's harness on every file of its seed and regression corpora.
fn replay(target: &str) {
    let harness = kiln::fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, h)| *h)
        .unwrap_or_else(|| panic!("no harness named {target}"));
    let seeds = corpus_files("corpus", target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds");
    for file in seeds.iter().chain(&corpus_files("regressions", target)) {
        let outcome = std::panic::catch_unwind(|| kiln::fuzz::replay(harness, file));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("cannot read {}: {e}", file.display()),
            Err(_) => panic!("{target} harness panicked on {}", file.display()),
        }
    }
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = kiln::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "onnx",
            "safetensors",
            "safetensors_sharded",
            "gguf",
            "npy",
            "artifact",
            "ir_text",
            "tokenizer"
        ]
    );
}

#[test]
fn onnx_corpus() {
    replay("onnx");
}

#[test]
fn safetensors_corpus() {
    replay("safetensors");
}

#[test]
fn safetensors_sharded_corpus() {
    replay("safetensors_sharded");
}

#[test]
fn gguf_corpus() {
    replay("gguf");
}

#[test]
fn npy_corpus() {
    replay("npy");
}

#[test]
fn artifact_corpus() {
    replay("artifact");
}

#[test]
fn ir_text_corpus() {
    replay("ir_text");
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer");
}
