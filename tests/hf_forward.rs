//! Hugging Face folders through transformers' forward signature: `input_ids`
//! and an int64 `attention_mask [batch, seq]` (optional `position_ids`,
//! `token_type_ids`), as `kiln run FOLDER` and the Python package take them,
//! against transformers' `forward(use_cache=False)` on a padded batch of 2 (row 0
//! left-padded, row 1 right-padded; bert: right padding). The references are
//! `forward-reference.safetensors` in each fixture folder, written by
//! `scripts/make_hf_forward_references.py` (transformers' default sdpa
//! attention, whose padded query rows that see no key get a zero attention
//! output; kiln matches that too).

use std::path::{Path, PathBuf};

use kiln::{CompileOptions, Model, Target, Tensor};

/// Largest error relative to the largest expected magnitude (as `hf_models`).
const RTOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn reference(dir: &Path) -> kiln_frontends::safetensors::Weights {
    kiln_frontends::safetensors::load(&dir.join("forward-reference.safetensors"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn tensor(r: &kiln_frontends::safetensors::Weights, name: &str) -> Tensor {
    r.get(name)
        .unwrap_or_else(|| panic!("reference has no {name}"))
        .clone()
}

/// Largest |a − b| relative to the largest |b|; NaN counts as infinitely wrong.
fn rel_error(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    let (a, b) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f64::max)
        / scale
}

fn options() -> CompileOptions {
    CompileOptions {
        threads: Some(2),
        ..CompileOptions::default()
    }
}

fn output(out: &[(String, Tensor)], name: &str) -> Tensor {
    out.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .1
        .clone()
}

/// The decoder fixture `name` against transformers: position ids left out
/// (transformers: 0..seq) and, where the reference has them, given; GPT-2 also
/// with token type ids.
fn decoder(name: &str) {
    let dir = fixtures().join(name);
    let r = reference(&dir);
    let model = Model::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let base = vec![
        ("input_ids".to_string(), tensor(&r, "input_ids")),
        ("attention_mask".to_string(), tensor(&r, "attention_mask")),
    ];
    let mut cases = vec![(base.clone(), "logits")];
    if r.get("position_ids").is_some() {
        let mut with = base.clone();
        with.push(("position_ids".to_string(), tensor(&r, "position_ids")));
        cases.push((with, "logits_positioned"));
    }
    if r.get("token_type_ids").is_some() {
        let mut with = base.clone();
        with.push(("token_type_ids".to_string(), tensor(&r, "token_type_ids")));
        cases.push((with, "logits_typed"));
    }
    for target in [Target::reference(), Target::cpu()] {
        let exe = model.compile_with(&target, &options()).unwrap();
        for (inputs, want) in &cases {
            let out = exe
                .run(inputs)
                .unwrap_or_else(|e| panic!("{name} on {target}: {e}"));
            assert_eq!(out.len(), 1, "{name}: only logits");
            let err = rel_error(&output(&out, "logits"), &tensor(&r, want));
            eprintln!("{name} on {target}: {want} rel error {err:.2e}");
            assert!(
                err < RTOL,
                "{name} on {target}: {want} relative error {err:e}"
            );
        }
    }
}

#[test]
fn gpt2_matches_transformers_with_padding() {
    decoder("gpt2");
}

#[test]
fn llama_matches_transformers_with_padding() {
    decoder("llama");
}

#[test]
fn llama_f16_matches_transformers_with_padding() {
    decoder("llama-f16");
}

#[test]
fn llama_bf16_matches_transformers_with_padding() {
    decoder("llama-bf16");
}

#[test]
fn llama3_matches_transformers_with_padding() {
    decoder("llama3");
}

#[test]
fn mistral_matches_transformers_with_padding() {
    decoder("mistral");
}

#[test]
fn mixtral_matches_transformers_with_padding() {
    decoder("mixtral");
}

#[test]
fn qwen2_matches_transformers_with_padding() {
    decoder("qwen2");
}

#[test]
fn qwen2_moe_matches_transformers_with_padding() {
    decoder("qwen2_moe");
}

/// A sliding window joins the causal and padding masks (`i − j < w`): the
/// mistral fixture with `sliding_window: 3`.
#[test]
fn mistral_sliding_window_matches_transformers() {
    let src = fixtures().join("mistral");
    let r = reference(&src);
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["sliding_window"] = 3.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let model = Model::load(dir.path()).unwrap();
    let inputs = vec![
        ("input_ids".to_string(), tensor(&r, "input_ids")),
        ("attention_mask".to_string(), tensor(&r, "attention_mask")),
    ];
    for target in [Target::reference(), Target::cpu()] {
        let out = model
            .compile_with(&target, &options())
            .unwrap()
            .run(&inputs)
            .unwrap();
        let err = rel_error(&output(&out, "logits"), &tensor(&r, "logits_window3"));
        eprintln!("mistral window 3 on {target}: rel error {err:.2e}");
        assert!(err < RTOL, "window 3 on {target}: relative error {err:e}");
    }
}

#[test]
fn bert_matches_transformers_with_and_without_token_types_and_positions() {
    let dir = fixtures().join("bert");
    let r = reference(&dir);
    let model = Model::load(&dir).unwrap();
    let mut inputs: Vec<(String, Tensor)> = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| (n.to_string(), tensor(&r, n)))
        .collect();
    for target in [Target::reference(), Target::cpu()] {
        let exe = model.compile_with(&target, &options()).unwrap();
        let out = exe.run(&inputs).unwrap();
        for name in ["last_hidden_state", "pooler_output"] {
            let err = rel_error(&output(&out, name), &tensor(&r, name));
            eprintln!("bert on {target}: {name} rel error {err:.2e}");
            assert!(err < RTOL, "{name} on {target}: relative error {err:e}");
        }
        let defaults = exe.run(&inputs[..2]).unwrap();
        let err = rel_error(
            &output(&defaults, "last_hidden_state"),
            &tensor(&r, "last_hidden_state_defaults"),
        );
        assert!(err < RTOL, "token types left out on {target}: {err:e}");
        let mut positioned = inputs.clone();
        positioned.push(("position_ids".into(), tensor(&r, "position_ids")));
        let out = exe.run(&positioned).unwrap();
        let err = rel_error(
            &output(&out, "last_hidden_state"),
            &tensor(&r, "last_hidden_state_positioned"),
        );
        eprintln!("bert on {target}: explicit position_ids rel error {err:.2e}");
        assert!(err < RTOL, "explicit position_ids on {target}: {err:e}");
    }
    // A row of padding only: transformers' sdpa gives it a zero attention
    // output, not NaN.
    inputs[1].1 = Tensor::from_vec(vec![2, 8], vec![0i64; 16]);
    let out = model.run(&inputs).unwrap();
    assert!(output(&out, "last_hidden_state")
        .to_f64_vec()
        .iter()
        .all(|v| v.is_finite()));
}

/// The forward signature leaves the KV-cache interface to the generator.
#[test]
fn the_forward_graph_has_transformers_inputs_and_the_cache_graph_stays() {
    let model = Model::load(fixtures().join("llama")).unwrap();
    let names = |g: &kiln_ir::Graph, ids: &[kiln_ir::ValueId]| -> Vec<String> {
        ids.iter().map(|&i| g.value(i).name.clone()).collect()
    };
    let g = model.graph();
    assert_eq!(
        names(g, &g.inputs),
        ["input_ids", "attention_mask", "position_ids"]
    );
    assert_eq!(names(g, &g.outputs), ["logits"]);
    let mask = g.value(g.value_by_name("attention_mask").unwrap());
    assert_eq!(mask.ty.to_string(), "i64[batch, seq]");
    let cached = model.kv_cache().expect("a decoder has a cache graph");
    let c = cached.graph();
    assert!(names(c, &c.inputs).contains(&"past_key.1".to_string()));
    assert!(names(c, &c.outputs).contains(&"present_value.1".to_string()));
    let exe = model.compile(&Target::reference()).unwrap();
    let optional: Vec<String> = exe.optional_inputs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(optional, ["attention_mask", "position_ids"]);
}

/// Named inputs of one bad run.
type Inputs<'a> = Vec<(&'a str, Tensor)>;

fn run_err(model: &Model, target: Target, inputs: &[(&str, Tensor)]) -> String {
    let named: Vec<(String, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    match model.compile_with(&target, &options()).unwrap().run(&named) {
        Ok(_) => panic!("ran on {target}"),
        Err(e) => e.to_string(),
    }
}

/// Bad inputs are refused with the input's name, on the interpreter and the
/// CPU alike, never with a panic or an index error inside the graph.
#[test]
fn bad_forward_inputs_name_the_input() {
    let model = Model::load(fixtures().join("llama")).unwrap();
    let ids = Tensor::from_vec(vec![2, 6], vec![5i64; 12]);
    let ones = Tensor::from_vec(vec![2, 6], vec![1i64; 12]);
    for target in [Target::reference(), Target::cpu()] {
        let cases: Vec<(Inputs, &[&str])> = vec![
            (
                vec![("attention_mask", ones.clone())],
                &["input_ids", "missing"],
            ),
            (
                vec![
                    ("input_ids", ids.clone()),
                    (
                        "attention_mask",
                        Tensor::from_vec(vec![2, 6], vec![1.0f32; 12]),
                    ),
                ],
                &["attention_mask", "dtype i64"],
            ),
            (
                vec![
                    ("input_ids", ids.clone()),
                    (
                        "attention_mask",
                        Tensor::from_vec(vec![2, 5], vec![1i64; 10]),
                    ),
                ],
                &["attention_mask", "seq"],
            ),
            (
                vec![
                    ("input_ids", ids.clone()),
                    (
                        "attention_mask",
                        Tensor::from_vec(vec![2, 1, 6, 6], vec![true; 72]),
                    ),
                ],
                &["attention_mask", "expected dtype i64"],
            ),
            (
                vec![
                    ("input_ids", ids.clone()),
                    (
                        "position_ids",
                        Tensor::from_vec(vec![2, 6], (0..12).map(|i| i * 40).collect::<Vec<i64>>()),
                    ),
                ],
                &["position_ids", "out of range", "256 positions"],
            ),
            (
                vec![("input_ids", Tensor::from_vec(vec![1, 3], vec![1i64, -2, 3]))],
                &["input_ids", "-2", "vocabulary"],
            ),
            (
                vec![("input_ids", Tensor::from_vec(vec![1, 300], vec![1i64; 300]))],
                &["position_ids", "left out", "256 positions"],
            ),
        ];
        for (inputs, parts) in cases {
            let err = run_err(&model, target, &inputs);
            for part in parts {
                assert!(err.contains(part), "{target}: `{part}` missing from: {err}");
            }
        }
    }
    let bert = Model::load(fixtures().join("bert")).unwrap();
    let long = Tensor::from_vec(vec![1, 200], vec![5i64; 200]);
    let err = run_err(&bert, Target::reference(), &[("input_ids", long)]);
    assert!(
        err.contains("input_ids") && err.contains("128 positions"),
        "{err}"
    );
    let types = Tensor::from_vec(vec![1, 2], vec![0i64, 2]);
    let err = run_err(
        &bert,
        Target::reference(),
        &[
            ("input_ids", Tensor::from_vec(vec![1, 2], vec![5i64, 6])),
            ("token_type_ids", types),
        ],
    );
    assert!(
        err.contains("token_type_ids") && err.contains("2 token types"),
        "{err}"
    );
    // GPT-2's token types left out add nothing (filled with −1 internally);
    // a −1 the caller passes is out of range like any negative id.
    let gpt2 = Model::load(fixtures().join("gpt2")).unwrap();
    let err = run_err(
        &gpt2,
        Target::cpu(),
        &[
            ("input_ids", Tensor::from_vec(vec![1, 2], vec![5i64, 6])),
            (
                "token_type_ids",
                Tensor::from_vec(vec![1, 2], vec![0i64, -1]),
            ),
        ],
    );
    assert!(
        err.contains("token_type_ids") && err.contains("-1") && err.contains("token embeddings"),
        "{err}"
    );
}
