//! Bad Hugging Face folders and adapters give a clear error naming the file,
//! tensor or key (never a panic, never a wrong answer): each case damages a copy
//! of the llama fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::{LoadOptions, Model};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// A copy of a fixture folder in a temporary directory.
fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    tmp
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

fn assert_has(err: &str, parts: &[&str]) {
    println!("{err}");
    for p in parts {
        assert!(err.contains(p), "error {err:?} lacks {p:?}");
    }
}

#[test]
fn missing_config() {
    let d = copy_of("llama");
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    assert_has(&load_err(d.path()), &["without config.json"]);
    let e = kiln_frontends::hf::load_folder(d.path(), &[])
        .unwrap_err()
        .to_string();
    assert_has(&e, &["no config.json"]);
}

#[test]
fn malformed_config() {
    let d = copy_of("llama");
    std::fs::write(
        d.path().join("config.json"),
        "{\"architectures\": [\"LlamaForCausalLM\"",
    )
    .unwrap();
    assert_has(&load_err(d.path()), &["config.json", "not valid JSON"]);
    let d = copy_of("llama");
    edit_config(d.path(), |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    assert_has(&load_err(d.path()), &["config.json", "hidden_size"]);
    let d = copy_of("llama");
    edit_config(d.path(), |v| v["num_key_value_heads"] = 3.into());
    assert_has(
        &load_err(d.path()),
        &["not a multiple of num_key_value_heads"],
    );
}

#[test]
fn unknown_architecture() {
    let d = copy_of("llama");
    edit_config(d.path(), |v| {
        v["architectures"] = serde_json::json!(["FalconForCausalLM"])
    });
    assert_has(
        &load_err(d.path()),
        &[
            "unknown architecture",
            "FalconForCausalLM",
            "LlamaForCausalLM",
        ],
    );
}

/// Rewrites model.safetensors with `f` applied to the tensors (name, dtype, shape, bytes).
fn rewrite_weights(
    dir: &Path,
    f: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    f(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&p, out).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let d = copy_of("llama");
    let gone = "model.layers.1.mlp.up_proj.weight";
    rewrite_weights(d.path(), |t| t.retain(|x| x.0 != gone));
    assert_has(&load_err(d.path()), &["missing tensor", gone, "[128, 64]"]);
}

#[test]
fn misshaped_tensor_is_named() {
    let d = copy_of("llama");
    let name = "model.layers.0.self_attn.k_proj.weight";
    rewrite_weights(d.path(), |t| {
        let x = t.iter_mut().find(|x| x.0 == name).unwrap();
        x.2 = vec![x.2[1], x.2[0]];
    });
    assert_has(
        &load_err(d.path()),
        &[name, "has shape [64, 32]", "implies [32, 64]"],
    );
}

#[test]
fn corrupt_safetensors_header() {
    let d = copy_of("llama");
    let p = d.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8] = b'#';
    std::fs::write(&p, bytes).unwrap();
    assert_has(&load_err(d.path()), &["model.safetensors"]);
}

#[test]
fn header_claiming_more_bytes_than_the_file() {
    let d = copy_of("llama");
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    // Cut the data: the header's offsets now point past the end.
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    assert_has(&load_err(d.path()), &["model.safetensors"]);
    // And a header length beyond the file.
    let mut b2 = bytes.clone();
    b2[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    std::fs::write(&p, b2).unwrap();
    assert_has(&load_err(d.path()), &["model.safetensors"]);
}

#[test]
fn missing_weights_file() {
    let d = copy_of("llama");
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    assert_has(&load_err(d.path()), &["no weights", "model.safetensors"]);
}

#[test]
fn bad_adapters_are_refused() {
    let base = fixture("llama");
    let load = |dir: &Path| {
        Model::load_with(
            &base,
            &LoadOptions {
                adapters: vec![dir.to_path_buf()],
            },
        )
        .err()
        .map(|e| e.to_string())
        .expect("loaded")
    };
    let empty = tempfile::tempdir().unwrap();
    assert_has(&load(empty.path()), &["adapter", "no adapter_config.json"]);
    // An adapter for another model: its rank-8 updates do not fit these layers.
    let a = copy_of("llama-lora-a");
    rewrite_weights_at(&a.path().join("adapter_model.safetensors"));
    assert_has(&load(a.path()), &["adapter", "lora_A"]);
    // An adapter targeting a module the model does not have.
    let gpt2 = Model::load_with(
        fixture("gpt2"),
        &LoadOptions {
            adapters: vec![fixture("llama-lora-a")],
        },
    );
    assert_has(&gpt2.err().unwrap().to_string(), &["adapter", "q_proj"]);
}

/// Makes every lora_A of an adapter one column wider.
fn rewrite_weights_at(p: &Path) {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let mut shape = v.shape().to_vec();
            let mut data = v.data().to_vec();
            if n.contains("lora_A") {
                let extra = shape[0] * v.dtype().bitsize() / 8;
                shape[1] += 1;
                data.extend(std::iter::repeat_n(0u8, extra));
            }
            (n, shape, data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(p, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn cli_errors_are_one_line_and_exit_1() {
    let d = copy_of("llama");
    edit_config(d.path(), |v| {
        v["architectures"] = serde_json::json!(["NopeForCausalLM"])
    });
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["generate"])
        .arg(d.path())
        .args(["--prompt", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("NopeForCausalLM"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A prompt token outside a smaller context.
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["generate"])
        .arg(fixture("llama"))
        .args([
            "--prompt",
            "hello there, this is a long prompt",
            "--context",
            "4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context holds 4"), "{err}");
}

#[test]
fn inspect_shows_a_folder_as_bricks() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(fixture("mixtral"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "Hugging Face folder (Mixtral decoder)",
        "(moe)",
        "(router)",
        "(expert)",
        "(attention)",
        "attention_mask  i64[batch, seq]  (optional: all ones)",
    ] {
        assert!(text.contains(part), "{part} missing from:\n{text}");
    }
    // The KV-cache interface is the generator's, not the folder's signature.
    assert!(!text.contains("past_key"), "{text}");
}
