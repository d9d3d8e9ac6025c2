//! Fuzz harnesses: the whole path a hostile file takes through kiln, one plain
//! function per file format, each taking the file's bytes.
//!
//! The coverage-guided fuzz targets in `fuzz/` (libFuzzer) call these functions,
//! and so does `tests/fuzz_regressions.rs`, which replays the committed seed and
//! regression corpora: CI runs exactly the code the fuzzer ran. A harness returns
//! normally whatever the file holds (kiln answers bad files with errors); a panic,
//! an abort, a hang or an allocation over the fuzzer's limit is a bug.
//!
//! After a successful load a harness goes on as a user's command would: shape
//! inference and verification, then a reference-interpreter run on small
//! deterministic inputs (symbolic dims bound to [`SYMBOLIC_DIM`]) with every tensor
//! capped at [`HARNESS_TENSOR_BYTES`], so shapes that explode in inference or
//! evaluation are caught too.

use std::path::Path;

use kiln_ir::{Dim, Graph, Tensor};

/// The size every symbolic (or unknown) input dim is bound to for the reference run.
pub const SYMBOLIC_DIM: usize = 2;

/// The largest tensor a harness's reference run may create (inputs included):
/// small enough that one run stays well under the fuzzer's memory and time limits.
/// Time, not only memory: an op's work can grow with the square of its operands
/// (a pooling window as long as its input: a 1-D MaxPool over 220,000 elements with
/// a 12,000-tap window took 85 s under instrumentation with the earlier 1 MiB).
pub const HARNESS_TENSOR_BYTES: u64 = 64 << 10;

/// The largest tensor whose data a harness reads back element by element.
const HARNESS_READ_ELEMENTS: usize = 1 << 16;

/// Separates the parts of a multi-file input (index and shards, tokenizer and its
/// config, manifest and sections).
pub const PART_SEPARATOR: &[u8] = b"\0--\0";

/// A harness: the bytes of one hostile input.
pub type Harness = fn(&[u8]);

/// Every harness by target name (the names of `fuzz/fuzz_targets/*.rs` and of the
/// corpus folders).
pub const TARGETS: &[(&str, Harness)] = &[
    ("onnx", onnx),
    ("safetensors", safetensors),
    ("safetensors_sharded", safetensors_sharded),
    ("gguf", gguf),
    ("npy", npy),
    ("artifact", artifact),
    ("ir_text", ir_text),
    ("tokenizer", tokenizer),
];

/// A fresh folder holding `files` (name, bytes); `None` when the scratch space
/// cannot be written (not the input's fault).
fn folder(files: &[(&str, &[u8])]) -> Option<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-fuzz")
        .tempdir()
        .ok()?;
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).ok()?;
    }
    Some(dir)
}

/// The parts of `data` split at [`PART_SEPARATOR`].
fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest
        .windows(PART_SEPARATOR.len())
        .position(|w| w == PART_SEPARATOR)
    {
        out.push(&rest[..at]);
        rest = &rest[at + PART_SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

/// Verifies a loaded graph and runs it on the reference interpreter with small
/// deterministic inputs. Errors are fine; only a panic or runaway is a bug.
pub fn exercise(graph: &Graph) {
    if kiln_ir::verify(graph).is_err() {
        return;
    }
    let mut inputs = Vec::with_capacity(graph.inputs.len());
    for &id in &graph.inputs {
        let v = graph.value(id);
        let shape: Vec<usize> =
            v.ty.shape
                .0
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    Dim::Sym(_) | Dim::Any => SYMBOLIC_DIM,
                })
                .collect();
        let bytes = shape.iter().try_fold(v.ty.dtype.size() as u64, |acc, &n| {
            acc.checked_mul(n as u64)
        });
        if bytes.is_none_or(|b| b > HARNESS_TENSOR_BYTES) {
            return;
        }
        let numel: usize = shape.iter().product();
        // Small non-negative values: valid indices, ids and lengths for most ops.
        let values: Vec<f64> = (0..numel).map(|i| (i % 3) as f64).collect();
        inputs.push((v.name.clone(), Tensor::from_f64(v.ty.dtype, shape, &values)));
    }
    let _ = kiln_ir::interp::run_limited(graph, &inputs, HARNESS_TENSOR_BYTES);
}

/// Reads every small tensor's values (the bytes a mapping or decoder produced).
fn touch(t: &Tensor) {
    if t.numel() <= HARNESS_READ_ELEMENTS {
        std::hint::black_box(t.to_f64_vec());
    }
}

/// An ONNX model file: decode, import (constant folding, function inlining),
/// verify, run.
pub fn onnx(data: &[u8]) {
    let Some(dir) = folder(&[("model.onnx", data)]) else {
        return;
    };
    if let Ok(model) = crate::Model::load(dir.path().join("model.onnx")) {
        exercise(model.graph());
    }
}

/// The tensors of a safetensors file, each read.
fn read_weights(w: &kiln_frontends::safetensors::Weights) {
    for (_, t) in w.iter() {
        touch(t);
    }
}

/// A single safetensors file: header, tensor views, every tensor read.
pub fn safetensors(data: &[u8]) {
    let Some(dir) = folder(&[("model.safetensors", data)]) else {
        return;
    };
    if let Ok(w) = kiln_frontends::safetensors::load(&dir.path().join("model.safetensors")) {
        read_weights(&w);
    }
}

/// A sharded safetensors folder: the first part is `model.safetensors.index.json`,
/// the others are `model-0000i-of-0000n.safetensors` (i from 1).
pub fn safetensors_sharded(data: &[u8]) {
    let parts = parts(data);
    let n = parts.len() - 1;
    let names: Vec<String> = (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect();
    let mut files = vec![("model.safetensors.index.json", parts[0])];
    files.extend(
        names
            .iter()
            .map(String::as_str)
            .zip(parts[1..].iter().copied()),
    );
    let Some(dir) = folder(&files) else {
        return;
    };
    let index = dir.path().join("model.safetensors.index.json");
    if let Ok(w) = kiln_frontends::safetensors::load_sharded(&index) {
        read_weights(&w);
    }
}

/// A GGUF file: header, metadata, every tensor decoded, then the whole model
/// (config, Llama builder, reference run) and its tokenizer.
pub fn gguf(data: &[u8]) {
    let Some(dir) = folder(&[("model.gguf", data)]) else {
        return;
    };
    let path = dir.path().join("model.gguf");
    let Ok(file) = kiln_frontends::gguf::GgufFile::open(&path) else {
        return;
    };
    for info in file.tensors() {
        if info.numel() <= HARNESS_READ_ELEMENTS {
            if let Ok(t) = file.tensor(info.name()) {
                touch(&t);
            }
        }
    }
    drop(file);
    if let Ok((model, vocab)) = crate::gguf::load(&path, &[]) {
        exercise(&model.graph);
        if let Ok(tok) = kiln_frontends::tokenizer::TextTokenizer::from_gguf_parts(vocab) {
            use_tokenizer(&tok);
        }
    }
}

/// A `.npy` file: read, and when kiln can write its dtype, written and read back
/// to the same tensor.
pub fn npy(data: &[u8]) {
    let Some(dir) = folder(&[("x.npy", data)]) else {
        return;
    };
    let Ok(t) = crate::io::npy::read(&dir.path().join("x.npy")) else {
        return;
    };
    touch(&t);
    let Ok(bytes) = crate::io::npy::to_bytes(&t) else {
        return;
    };
    let again = dir.path().join("again.npy");
    std::fs::write(&again, bytes).expect("scratch folder is writable");
    let back = crate::io::npy::read(&again).expect("kiln reads the .npy files it writes");
    assert_eq!(back.shape(), t.shape(), "a .npy round trip keeps the shape");
    assert_eq!(back.bytes(), t.bytes(), "a .npy round trip keeps the data");
}

/// A `.kiln` artifact, checked as loading checks it (container, manifest, program
/// structure, constants) short of linking its object code, which is native code
/// the user chose to run. Bytes that do not start with the artifact magic are
/// taken as parts (manifest `meta` JSON, `program` JSON, `constants` bytes)
/// wrapped in a well-formed container, so the fuzzer reaches the checks behind
/// the container's CRCs.
pub fn artifact(data: &[u8]) {
    let bytes = if data.starts_with(&kiln_runtime::artifact::MAGIC) {
        data.to_vec()
    } else {
        let parts = parts(data);
        let Ok(meta) = serde_json::from_slice(parts[0]) else {
            return;
        };
        let mut w = kiln_runtime::artifact::ArtifactWriter::new(meta);
        let sections = ["program", "constants"];
        for (name, part) in sections.iter().zip(parts[1..].iter().copied()) {
            let _ = w.add_section(name, part);
        }
        let _ = w.add_section("object", Vec::new());
        let Some(dir) = folder(&[]) else {
            return;
        };
        let path = dir.path().join("wrapped.kiln");
        if w.write(&path).is_err() {
            return;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        bytes
    };
    let Some(dir) = folder(&[("model.kiln", &bytes)]) else {
        return;
    };
    if let Ok(checked) = crate::aot::check(&dir.path().join("model.kiln")) {
        checked.constants().iter().for_each(touch);
    }
}

/// kiln's IR text: parse, verify, run.
pub fn ir_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(graph) = kiln_ir::text::parse(text) {
        exercise(&graph);
    }
}

/// A tokenizer folder: `tokenizer.json`, then (after [`PART_SEPARATOR`])
/// `tokenizer_config.json`; encoding, decoding, streaming and the chat template.
pub fn tokenizer(data: &[u8]) {
    let parts = parts(data);
    let mut files = vec![("tokenizer.json", parts[0])];
    if let Some(config) = parts.get(1) {
        files.push(("tokenizer_config.json", config));
    }
    let Some(dir) = folder(&files) else {
        return;
    };
    if let Ok(tok) = kiln_frontends::tokenizer::TextTokenizer::from_folder(dir.path()) {
        use_tokenizer(&tok);
    }
}

/// What a user's text commands do with a tokenizer.
fn use_tokenizer(tok: &kiln_frontends::tokenizer::TextTokenizer) {
    use kiln_frontends::tokenizer::ChatMessage;
    let Ok(ids) = tok.encode("Hello, wörld! 12 + 3 = <s> ✓", true) else {
        return;
    };
    let _ = tok.decode(&ids, false);
    let _ = tok.decode(&ids, true);
    let mut stream = tok.stream();
    for &id in &ids {
        let _ = stream.push(id);
    }
    let chat = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    let _ = tok.encode_chat(&chat);
}

/// Runs `harness` on the file at `path` (the regression replay's entry point).
pub fn replay(harness: Harness, path: &Path) -> std::io::Result<()> {
    harness(&std::fs::read(path)?);
    Ok(())
}
