//! The command line: `kiln run` and `kiln inspect` on good input, and a clear
//! one-line error (never a panic) for every kind of bad input.

mod common;

use common::*;
use kiln::ir::Tensor;
use prost::Message;

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "m.onnx", &add_relu_model());
    let x = dir.path().join("x.npy");
    write_npy(
        &x,
        "<f4",
        &[2, 3],
        &f32_bytes(&[1.0, 2.0, -3.0, -0.25, 0.5, 0.0]),
    );
    (dir, m, x)
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn run_writes_outputs_to_safetensors() {
    let (dir, m, x) = setup();
    let out = dir.path().join("out.safetensors");
    let r = kiln(&[
        "run",
        s(&m),
        "--input",
        &format!("x={}", s(&x)),
        "--output",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let y = st.tensor("y").unwrap();
    assert_eq!(y.shape(), &[2, 3]);
    let v: Vec<f32> = y
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v, vec![1.5, 1.0, 0.0, 0.25, 0.0, 2.0]);
    assert!(String::from_utf8_lossy(&r.stdout).contains("wrote 1 output"));
}

#[test]
fn run_reads_tensorproto_inputs() {
    let (dir, m, _) = setup();
    let pb = dir.path().join("x.pb");
    std::fs::write(&pb, f32_init("x", &[2, 3], &[0.0; 6]).encode_to_vec()).unwrap();
    let r = kiln(&["run", s(&m), "--input", &format!("x={}", s(&pb))]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("y  f32[2, 3]"));
}

#[test]
fn malformed_protobuf_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.onnx");
    std::fs::write(&p, b"\x0a\xff\xff\xff\xff\x0fgarbage").unwrap();
    let err = kiln_fails(&["inspect", s(&p)]);
    assert!(
        err.contains("bad.onnx` is not a valid ONNX model (malformed or truncated protobuf"),
        "{err}"
    );
}

#[test]
fn truncated_model_is_reported() {
    let (dir, m, x) = setup();
    let bytes = std::fs::read(&m).unwrap();
    let t = dir.path().join("trunc.onnx");
    std::fs::write(&t, &bytes[..bytes.len() - 7]).unwrap();
    let err = kiln_fails(&["run", s(&t), "--input", &format!("x={}", s(&x))]);
    assert!(
        err.contains("trunc.onnx` is not a valid ONNX model"),
        "{err}"
    );
}

#[test]
fn truncated_raw_data_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = add_relu_model();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.raw_data = w.raw_data.slice(..8);
    let p = write_model(dir.path(), "m.onnx", &m);
    let err = kiln_fails(&["inspect", s(&p)]);
    assert!(
        err.contains("tensor `w`: raw_data has 8 bytes, f32[3] needs 12"),
        "{err}"
    );
}

#[test]
fn wrong_input_name_lists_the_real_ones() {
    let (_dir, m, x) = setup();
    let err = kiln_fails(&["run", s(&m), "--input", &format!("nope={}", s(&x))]);
    assert!(
        err.contains("the model has no input named `nope` (its inputs: x)"),
        "{err}"
    );
}

#[test]
fn missing_input_is_named() {
    let (_dir, m, _) = setup();
    let err = kiln_fails(&["run", s(&m)]);
    assert!(err.contains("missing input `x`"), "{err}");
}

#[test]
fn dtype_mismatch_is_reported() {
    let (dir, m, _) = setup();
    let x = dir.path().join("xi.npy");
    write_npy(&x, "<i8", &[2, 3], &[0u8; 48]);
    let err = kiln_fails(&["run", s(&m), "--input", &format!("x={}", s(&x))]);
    assert!(
        err.contains("input `x`: expected dtype f32, got i64"),
        "{err}"
    );
}

#[test]
fn shape_mismatch_is_reported() {
    let (dir, m, _) = setup();
    let x = dir.path().join("xs.npy");
    write_npy(&x, "<f4", &[3, 2], &[0u8; 24]);
    let err = kiln_fails(&["run", s(&m), "--input", &format!("x={}", s(&x))]);
    assert!(
        err.contains("input `x`: expected shape [2, 3], got [3, 2] (dim 0 is 3, expected 2)"),
        "{err}"
    );
}

#[test]
fn missing_weight_names_node_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = add_relu_model();
    m.graph.as_mut().unwrap().initializer.clear();
    let p = write_model(dir.path(), "m.onnx", &m);
    let err = kiln_fails(&["inspect", s(&p)]);
    assert!(err.contains("node `add` uses `w`, which is not an input, initializer or output of an earlier node (missing weight?)"), "{err}");
}

#[test]
fn missing_external_data_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = add_relu_model();
    m.graph.as_mut().unwrap().initializer = vec![external_init("w", &[3], "weights.bin", 12)];
    let p = write_model(dir.path(), "m.onnx", &m);
    let err = kiln_fails(&["inspect", s(&p)]);
    assert!(
        err.contains("tensor `w`: cannot open external data file"),
        "{err}"
    );
}

#[test]
fn external_data_is_read_and_checked() {
    let (dir, _, x) = setup();
    let mut m = add_relu_model();
    m.graph.as_mut().unwrap().initializer = vec![external_init("w", &[3], "weights.bin", 12)];
    let p = write_model(dir.path(), "ext.onnx", &m);
    std::fs::write(dir.path().join("weights.bin"), f32_bytes(&[0.5, -1.0, 2.0])).unwrap();
    let r = kiln(&["run", s(&p), "--input", &format!("x={}", s(&x))]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::write(dir.path().join("weights.bin"), f32_bytes(&[0.5])).unwrap();
    let err = kiln_fails(&["run", s(&p), "--input", &format!("x={}", s(&x))]);
    assert!(
        err.contains("tensor `w`: needs 12 bytes at offset 0"),
        "{err}"
    );
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(dir.path().join("secret.bin"), [0u8; 12]).unwrap();
    for location in ["../secret.bin", "/etc/passwd"] {
        let mut m = add_relu_model();
        m.graph.as_mut().unwrap().initializer = vec![external_init("w", &[3], location, 12)];
        let p = write_model(&inner, "m.onnx", &m);
        let err = kiln_fails(&["inspect", s(&p)]);
        assert!(err.contains(&format!("tensor `w`: external data location `{location}` leaves the model's folder; refused")), "{err}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("secret.bin"), inner.join("link.bin")).unwrap();
        let mut m = add_relu_model();
        m.graph.as_mut().unwrap().initializer = vec![external_init("w", &[3], "link.bin", 12)];
        let p = write_model(&inner, "m.onnx", &m);
        let err = kiln_fails(&["inspect", s(&p)]);
        assert!(
            err.contains("resolves outside the model's folder; refused"),
            "{err}"
        );
    }
}

#[test]
fn unsupported_ops_are_listed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(
        vec![
            node("FancyOp", "first", &["x"], &["a"]),
            node("Relu", "r", &["a"], &["b"]),
            node("OtherOp", "second", &["b"], &["c"]),
            node("FancyOp", "third", &["c"], &["y"]),
        ],
        vec![value_info("x", FLOAT, &[2])],
        vec![value_info("y", FLOAT, &[2])],
        vec![],
    );
    let p = write_model(dir.path(), "m.onnx", &m);
    let x = dir.path().join("x.npy");
    write_npy(&x, "<f4", &[2], &f32_bytes(&[1.0, 2.0]));
    let err = kiln_fails(&["run", s(&p), "--input", &format!("x={}", s(&x))]);
    assert!(
        err.contains("unsupported ops: FancyOp (nodes `first`, `third`); OtherOp (node `second`)"),
        "{err}"
    );
    // inspect lists them too (and exits non-zero).
    let out = kiln(&["inspect", s(&p)]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unsupported ops (2):") && text.contains("FancyOp  (2 nodes: first, third)"),
        "{text}"
    );
}

/// `--target cuda` on a machine without an NVIDIA driver (CI's) is one line and
/// exit status 1, for every command that takes a target; an unknown target is
/// named.
#[test]
fn cuda_without_a_driver_is_one_clean_line() {
    let (_dir, m, x) = setup();
    if kiln_runtime::cuda::driver_present() {
        println!("skipped: this machine has a CUDA driver");
    } else {
        let x_arg = format!("x={}", s(&x));
        for args in [
            vec!["run", s(&m), "--input", &x_arg, "--target", "cuda"],
            vec!["bench", s(&m), "--target", "cuda", "--iters", "1"],
        ] {
            let out = common::kiln(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.starts_with("error: no CUDA driver found (libcuda.so.1): "),
                "{args:?}: {err}"
            );
        }
    }
    let err = kiln_fails(&["run", s(&m), "--target", "tpu"]);
    assert!(err.contains("unknown target `tpu`"), "{err}");
}

#[test]
fn run_on_the_cpu_target_matches_the_reference() {
    let (_dir, m, x) = setup();
    for t in ["cpu", "ref"] {
        let r = kiln(&[
            "run",
            s(&m),
            "--input",
            &format!("x={}", s(&x)),
            "--target",
            t,
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(
            out.contains("y  f32[2, 3]  [1.50000, 1.00000, 0.00000, 0.25000"),
            "{t}: {out}"
        );
    }
}

#[test]
fn bad_input_files_are_reported() {
    let (dir, m, _) = setup();
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"hello").unwrap();
    let err = kiln_fails(&["run", s(&m), "--input", &format!("x={}", s(&junk))]);
    assert!(
        err.contains("junk.npy`: not a .npy file (bad magic)"),
        "{err}"
    );
    let short = dir.path().join("short.npy");
    write_npy(&short, "<f4", &[2, 3], &[0u8; 20]);
    let err = kiln_fails(&["run", s(&m), "--input", &format!("x={}", s(&short))]);
    assert!(err.contains("holds 20 data bytes"), "{err}");
    let err = kiln_fails(&["run", s(&m), "--input", "x"]);
    assert!(err.contains("--input `x`: expected NAME=FILE"), "{err}");
    let err = kiln_fails(&["run", s(&m), "--input", "x=/nonexistent/x.npy"]);
    assert!(err.contains("cannot read `/nonexistent/x.npy`"), "{err}");
    let err = kiln_fails(&["run", "/nonexistent/model.onnx"]);
    assert!(
        err.contains("`/nonexistent/model.onnx` does not exist"),
        "{err}"
    );
}

#[test]
fn output_is_written_atomically() {
    let (dir, m, x) = setup();
    let out = dir.path().join("out.safetensors");
    std::fs::write(&out, b"previous").unwrap();
    // A failing run leaves the previous file untouched.
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, "<f4", &[3, 2], &[0u8; 24]);
    kiln_fails(&[
        "run",
        s(&m),
        "--input",
        &format!("x={}", s(&bad)),
        "--output",
        s(&out),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    let r = kiln(&[
        "run",
        s(&m),
        "--input",
        &format!("x={}", s(&x)),
        "--output",
        s(&out),
    ]);
    assert!(r.status.success());
    assert!(safetensors::SafeTensors::deserialize(&std::fs::read(&out).unwrap()).is_ok());
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

#[test]
fn inspect_json_is_machine_readable() {
    let (_dir, m, _) = setup();
    let out = kiln(&["inspect", s(&m), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"], "[2, 3]");
    assert_eq!(v["parameters"], 3);
    assert_eq!(v["onnx_ops"]["Relu"], 1);
}

#[test]
fn library_api_runs_models() {
    let (_dir, m, _) = setup();
    let model = kiln::Model::load(&m).unwrap();
    let exe = model.compile(&kiln::Target::reference()).unwrap();
    let x = Tensor::from_vec(vec![2, 3], vec![0f32; 6]);
    let out = exe.run(&[("x".into(), x)]).unwrap();
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.to_vec::<f32>(), vec![0.5, 0.0, 2.0, 0.5, 0.0, 2.0]);
    let cpu = model.compile(&kiln::Target::cpu()).unwrap();
    let x = Tensor::from_vec(vec![2, 3], vec![1f32, -1.0, 0.0, 2.0, -2.0, 0.5]);
    let out = cpu.run(&[("x".into(), x)]).unwrap();
    assert_eq!(out[0].1.to_vec::<f32>(), vec![1.5, 0.0, 2.0, 2.5, 0.0, 2.5]);
    if !kiln_runtime::cuda::driver_present() {
        assert!(matches!(
            model.compile(&kiln::Target::cuda()),
            Err(kiln::Error::Run(kiln_runtime::RunError::NoDevice(_)))
        ));
    }
}

#[test]
fn executables_are_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<kiln::Executable>();
}

#[test]
fn inspect_shows_the_brick_tree_of_exported_models() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    for (model, lines) in [
        (
            "bert_torchscript_dynamic",
            &[
                "encoder.layer.0 (layer)",
                "encoder.layer.0.attention (attention)",
                "encoder.layer.0.intermediate (ffn)",
                "embeddings (embedding)",
            ][..],
        ),
        (
            "llama_dynamo_dynamic",
            &[
                "model.layers.1 (layer)",
                "model.layers.1.self_attn (attention)",
                "model.layers.1.mlp (ffn)",
                "model.norm (norm)",
                "lm_head (head)",
            ][..],
        ),
    ] {
        let out = kiln(&[
            "inspect",
            fixtures.join(model).join("model.onnx").to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for l in lines {
            assert!(text.contains(l), "{model}: no `{l}` in\n{text}");
        }
        assert!(text.contains("unsupported ops: none"), "{text}");
    }
}

#[test]
fn inspect_ir_prints_the_text_form() {
    let (_dir, m, _) = setup();
    let out = kiln(&["inspect", s(&m), "--ir"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("input %x: f32[2, 3]")
            && text.contains("= Relu(%s)")
            && text.contains("output %y"),
        "{text}"
    );
    let graph = kiln::Model::load(&m).unwrap();
    assert!(kiln::ir::text::parse(&text).unwrap() == *graph.graph());
}

#[test]
fn absurd_tensor_sizes_are_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(
        vec![node("Expand", "/huge/Expand", &["x", "shape"], &["y"])],
        vec![
            value_info("x", FLOAT, &[1]),
            value_info("shape", INT64, &[2]),
        ],
        vec![value_info("y", FLOAT, &[-1, -1])],
        vec![],
    );
    let p = write_model(dir.path(), "m.onnx", &m);
    let x = dir.path().join("x.npy");
    write_npy(&x, "<f4", &[1], &f32_bytes(&[1.0]));
    let shape = dir.path().join("shape.npy");
    let dims: Vec<u8> = [1i64 << 20, 1 << 20]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_npy(&shape, "<i8", &[2], &dims);
    let err = kiln_fails(&[
        "run",
        s(&p),
        "--input",
        &format!("x={}", s(&x)),
        "--input",
        &format!("shape={}", s(&shape)),
    ]);
    assert!(err.contains("node `/huge/Expand` (Expand): would create a tensor f32[1048576, 1048576] of 4398046511104 bytes"), "{err}");
}

#[test]
fn cpu_target_refuses_values_too_large_for_memory() {
    // y = x[:, None] · x[None, :]: a 100,000² f32 outer product (40 GB).
    let dir = tempfile::tempdir().unwrap();
    let axis = |name: &str, v: i64| kiln_frontends::onnx::proto::TensorProto {
        name: name.into(),
        dims: vec![1],
        data_type: 7, // INT64
        raw_data: v.to_le_bytes().to_vec().into(),
        ..Default::default()
    };
    let m = model(
        vec![
            node("Unsqueeze", "col", &["x", "a1"], &["xc"]),
            node("Unsqueeze", "row", &["x", "a0"], &["xr"]),
            node("Mul", "outer", &["xc", "xr"], &["y"]),
        ],
        vec![value_info("x", FLOAT, &[100_000])],
        vec![value_info("y", FLOAT, &[100_000, 100_000])],
        vec![axis("a1", 1), axis("a0", 0)],
    );
    let path = write_model(dir.path(), "big.onnx", &m);
    let model = kiln::Model::load(&path).unwrap();
    let err = model.compile(&kiln::Target::cpu()).unwrap_err().to_string();
    assert!(
        err.contains("`y`") && err.contains("would take more than"),
        "{err}"
    );
}

#[test]
fn bench_profile_names_each_host_fallback_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "div.onnx", &int_div_model(2));
    let x = dir.path().join("x.npy");
    let xs: Vec<u8> = [7i64, -8, 9, 10, 11, -12]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_npy(&x, "<i8", &[2, 3], &xs);
    let r = kiln(&[
        "bench",
        s(&m),
        "--input",
        &format!("x={}", s(&x)),
        "--iters",
        "2",
        "--warmup",
        "1",
        "--profile",
    ]);
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        out.contains("on the reference interpreter (why each host step is slow):"),
        "{out}"
    );
    assert!(out.contains(INT_DIV_FALLBACK), "{out}");
}

/// The GPU path on the SIMT interpreter answers as the CPU does: the same greedy
/// text from a decoder (prefill and decode steps, KV cache), the same outputs from
/// the demo BERT.
#[test]
fn cuda_sim_matches_the_cpu_on_a_decoder_and_an_encoder() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let llama = root.join("tests/fixtures/hf/llama");
    let generate = |target: &str| {
        let out = common::kiln(&[
            "generate",
            s(&llama),
            "-p",
            "hello world",
            "--max-tokens",
            "6",
            "--raw",
            "--target",
            target,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(generate("cuda-sim"), generate("cpu"));

    let demo = root.join("models/demo");
    let input = |name: &str| format!("{name}={}", demo.join(format!("{name}.npy")).display());
    let (ids, mask, types) = (
        input("input_ids"),
        input("attention_mask"),
        input("token_type_ids"),
    );
    let model = demo.join("tiny-bert.onnx");
    let out = common::kiln(&[
        "run",
        s(&model),
        "--target",
        "cuda-sim",
        "--compare",
        "cpu",
        "--tolerance",
        "1e-5",
        "--input",
        &ids,
        "--input",
        &mask,
        "--input",
        &types,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("with cpu: ok").count(), 2, "{text}");
}

/// `kiln run --compare` runs a second target and compares every output: the
/// GPU program on the simulated GPU agrees with the reference interpreter; an
/// unknown comparison target is named.
#[test]
fn run_compare_checks_one_target_against_another() {
    let (_dir, m, x) = setup();
    let x_arg = format!("x={}", s(&x));
    let out = common::kiln(&[
        "run",
        s(&m),
        "--input",
        &x_arg,
        "--target",
        "cuda-sim",
        "--compare",
        "ref",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("with ref: ok"), "{text}");
    let err = kiln_fails(&["run", s(&m), "--input", &x_arg, "--compare", "tpu"]);
    assert!(err.contains("--compare: unknown target `tpu`"), "{err}");
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A Hugging Face decoder folder through transformers' signature: `kiln run
/// FOLDER --input input_ids=… --input attention_mask=…` (int64 `[batch, seq]`,
/// position ids left out) writes transformers' logits for a padded batch, and
/// `kiln inspect FOLDER` shows that signature; a bad mask is named.
#[test]
fn run_and_inspect_a_folder_with_transformers_inputs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let llama = root.join("tests/fixtures/hf/llama");
    let reference =
        kiln_frontends::safetensors::load(&llama.join("forward-reference.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for name in ["input_ids", "attention_mask"] {
        let t = reference.get(name).unwrap();
        let path = dir.path().join(format!("{name}.npy"));
        write_npy(&path, "<i8", t.shape(), &i64_bytes(&t.to_i64_vec()));
        args.push(format!("{name}={}", s(&path)));
    }
    let out = dir.path().join("out.safetensors");
    for target in ["ref", "cpu"] {
        let r = kiln(&[
            "run",
            s(&llama),
            "--input",
            &args[0],
            "--input",
            &args[1],
            "--target",
            target,
            "-o",
            s(&out),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert!(
            String::from_utf8_lossy(&r.stdout).contains("logits  f32[2, 6, 512]"),
            "{}",
            String::from_utf8_lossy(&r.stdout)
        );
        let got = kiln_frontends::safetensors::load(&out).unwrap();
        let (got, want) = (
            got.get("logits").unwrap().to_f64_vec(),
            reference.get("logits").unwrap().to_f64_vec(),
        );
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err / scale < 1e-4,
            "{target}: relative error {}",
            err / scale
        );
    }

    let r = kiln(&["inspect", s(&llama)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout);
    for part in [
        "input_ids       i64[batch, seq]\n",
        "attention_mask  i64[batch, seq]  (optional: all ones)",
        "position_ids    i64[batch, seq]  (optional: 0..seq in each row)",
        "logits          f32[batch, seq, 512]",
    ] {
        assert!(text.contains(part), "`{part}` missing from:\n{text}");
    }
    assert!(!text.contains("past_key"), "{text}");

    let bad = dir.path().join("mask.npy");
    write_npy(&bad, "<f4", &[2, 6], &f32_bytes(&[1.0; 12]));
    let err = kiln_fails(&[
        "run",
        s(&llama),
        "--input",
        &args[0],
        "--input",
        &format!("attention_mask={}", s(&bad)),
    ]);
    assert!(
        err.contains("attention_mask") && err.contains("i64"),
        "{err}"
    );
}
