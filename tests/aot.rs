//! Ahead-of-time artifacts: `kiln compile --target cpu -o` then `kiln run` of the
//! artifact gives the interpreter's answers, and every bad artifact or bad use
//! gets a clear one-line error.

mod common;

use std::process::Output;

use common::*;
use kiln::ir::Tensor;

const DEMO: &str = "models/demo/tiny-bert.onnx";

fn demo_inputs() -> Vec<String> {
    ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| format!("--input={n}=models/demo/{n}.npy"))
        .collect()
}

fn compile_demo(dir: &std::path::Path) -> std::path::PathBuf {
    compile_demo_as(dir, "tiny-bert.kiln", &[])
}

/// Compiles the demo for the CPU at [2, 16] into `dir/name`, with `extra` arguments.
fn compile_demo_as(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "compile",
        DEMO,
        "--target",
        "cpu",
        "--dim",
        "batch=2",
        "--dim",
        "sequence=16",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = kiln(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("kernels"));
    out
}

fn read_outputs(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let f = t
                .data()
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, f)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Runs `exe` (the demo BERT compiled for [2, 16]) on fixed inputs and
/// compares with the reference interpreter.
fn assert_answers_as_the_reference(exe: &kiln::Executable) {
    let ids: Vec<i64> = (0..32).map(|i| (i * 37 % 1000) as i64).collect();
    let inputs = vec![
        ("input_ids".to_string(), Tensor::from_vec(vec![2, 16], ids)),
        (
            "attention_mask".to_string(),
            Tensor::from_vec(vec![2, 16], vec![1i64; 32]),
        ),
        (
            "token_type_ids".to_string(),
            Tensor::from_vec(vec![2, 16], vec![0i64; 32]),
        ),
    ];
    let got = exe.run(&inputs).unwrap();
    let want = kiln::Model::load(DEMO).unwrap().run(&inputs).unwrap();
    assert_same_outputs(&got, &want);
}

/// Asserts two runs' outputs have the same names and agree within 1e-4.
fn assert_same_outputs(got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    assert_eq!(got.len(), want.len());
    for ((n, g), (m, w)) in got.iter().zip(want) {
        assert_eq!(n, m);
        let worst = g
            .to_f32_vec()
            .iter()
            .zip(w.to_f32_vec())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{n}: {worst}");
    }
}

/// The reference interpreter's outputs on the demo inputs (written under `dir`).
fn reference_outputs(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let out = dir.join("ref.safetensors");
    let mut args: Vec<String> = vec!["run".into(), DEMO.into(), "--target".into(), "ref".into()];
    args.extend(demo_inputs());
    args.extend(["-o".into(), out.to_str().unwrap().into()]);
    let r = kiln(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    read_outputs(&out)
}

/// Runs the artifact `art` on the demo inputs under `env`, writing `out`.
fn run_artifact(art: &std::path::Path, out: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut args: Vec<String> = vec!["run".into(), art.to_str().unwrap().into()];
    args.extend(demo_inputs());
    args.extend(["-o".into(), out.to_str().unwrap().into()]);
    kiln_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

/// Runs `art` under `env` and checks its outputs against `want` (`what` names the run).
fn assert_artifact_answers(
    art: &std::path::Path,
    env: &[(&str, &str)],
    want: &[(String, Vec<f32>)],
    what: &str,
) {
    let out = art.with_extension(format!("{what}.safetensors"));
    let r = run_artifact(art, &out, env);
    assert!(
        r.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let got = read_outputs(&out);
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for ((n, g), (m, w)) in got.iter().zip(want) {
        assert_eq!(n, m);
        let worst = g
            .iter()
            .zip(w)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{what}: {n}: max difference {worst}");
    }
}

#[test]
fn artifact_runs_and_matches_the_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let art = compile_demo(dir.path());
    assert_artifact_answers(&art, &[], &reference_outputs(dir.path()), "aot");
}

/// A portable artifact holds an x86-64-v3 (AVX2) and an x86-64-v4 (AVX-512)
/// object; the loader links the best one this CPU runs, the AVX2 one under
/// `KILN_CPU_ISA=avx2`, and both answer as the interpreter.
#[test]
fn portable_artifacts_hold_one_object_per_isa_level() {
    use kiln::IsaLevel;
    let dir = tempfile::tempdir().unwrap();
    let art = compile_demo(dir.path());
    let raw = kiln_runtime::artifact::Artifact::open(&art).unwrap();
    assert!(raw.section("object").is_ok());
    assert!(raw.section("object x86-64-v4").is_ok());
    let best = IsaLevel::detect().expect("CI machines run x86-64-v3");
    let checked = kiln::aot::check(&art).unwrap();
    assert_eq!(checked.object_cpu(), best.llvm_cpu());
    if best < IsaLevel::V4 {
        eprintln!(
            "NOTE: this CPU lacks {:?}: the AVX-512 object was built but not run here",
            IsaLevel::V4.missing_here()
        );
    }
    let want = reference_outputs(dir.path());
    for isa in ["native", "avx2"] {
        assert_artifact_answers(&art, &[("KILN_CPU_ISA", isa)], &want, isa);
    }
    let out = dir.path().join("bad.safetensors");
    let r = run_artifact(&art, &out, &[("KILN_CPU_ISA", "sse9")]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("avx2"), "{err}");
}

/// An artifact compiled for this CPU (`--cpu native`) records its features;
/// where it uses AVX-512, capping the loader at AVX2 refuses it with the
/// missing features named.
#[test]
fn native_artifacts_name_the_features_a_cpu_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let art = compile_demo_as(dir.path(), "native.kiln", &["--cpu", "native"]);
    let out = dir.path().join("out.safetensors");
    let r = run_artifact(&art, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    if !kiln_codegen::llvm::isa::cpu_has("avx512f") {
        eprintln!("NOTE: this CPU has no AVX-512: the refusal of an AVX-512 artifact under an AVX2 cap was not checked");
        return;
    }
    let r = run_artifact(&art, &out, &[("KILN_CPU_ISA", "avx2")]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success(),
        "an AVX-512 artifact ran under an AVX2 cap"
    );
    assert!(
        err.contains("avx512f") && err.contains("recompile"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn library_loads_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let art = compile_demo(dir.path());
    let exe = kiln::Executable::load_artifact(&art, Some(1)).unwrap();
    assert_answers_as_the_reference(&exe);
    // The artifact is compiled for [2, 16]: other shapes are refused by name.
    let err = exe
        .run(&[
            (
                "input_ids".to_string(),
                Tensor::from_vec(vec![1, 16], vec![0i64; 16]),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_vec(vec![1, 16], vec![1i64; 16]),
            ),
            (
                "token_type_ids".to_string(),
                Tensor::from_vec(vec![1, 16], vec![0i64; 16]),
            ),
        ])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input_ids") && err.contains("expected shape"),
        "{err}"
    );
}

#[test]
fn damaged_artifacts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let art = compile_demo(dir.path());
    let bytes = std::fs::read(&art).unwrap();
    let run = |p: &std::path::Path| {
        let mut args: Vec<String> = vec!["run".into(), p.to_str().unwrap().into()];
        args.extend(demo_inputs());
        kiln_fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // A flipped byte in the middle (inside a section).
    let flipped = dir.path().join("flipped.kiln");
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&flipped, &b).unwrap();
    let err = run(&flipped);
    assert!(err.contains("checksum") || err.contains("corrupt"), "{err}");
    // Truncated.
    let cut = dir.path().join("cut.kiln");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = run(&cut);
    assert!(err.contains("cut.kiln"), "{err}");
    // Another CPU's code: rewrite the manifest's CPU through the container API.
    let foreign = dir.path().join("foreign.kiln");
    let a = kiln_runtime::artifact::Artifact::open(&art).unwrap();
    let mut meta = a.meta().clone();
    meta["cpu"] = "some-future-cpu".into();
    meta["extra_cpus"] = serde_json::Value::Array(Vec::new());
    let mut w = kiln_runtime::artifact::ArtifactWriter::new(meta);
    for name in a.section_names() {
        w.add_section(name, a.section(name).unwrap().to_vec())
            .unwrap();
    }
    w.write(&foreign).unwrap();
    let err = run(&foreign);
    assert!(
        err.contains("some-future-cpu") && err.contains("recompile"),
        "{err}"
    );
}

#[test]
fn compile_to_an_artifact_needs_the_cpu_target_and_known_dims() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.kiln");
    let o = out.to_str().unwrap();
    let err = kiln_fails(&["compile", DEMO, "--target", "h200", "-o", o]);
    assert!(err.contains("--target cpu"), "{err}");
    let err = kiln_fails(&["compile", DEMO, "--target", "cpu", "-o", o]);
    assert!(err.contains("--dim batch=SIZE"), "{err}");
    assert!(!out.exists(), "nothing is written on failure");
    let err = kiln_fails(&[
        "compile", DEMO, "--target", "cpu", "--dim", "batch", "-o", o,
    ]);
    assert!(err.contains("expected NAME=SIZE"), "{err}");
}

/// `kiln compile --target cuda -o` writes GPU code with NVRTC alone (no GPU):
/// its GPU program, run on the simulated GPU, gives the interpreter's answers;
/// without a driver, running it on the GPU is one clean error; on the CPU it is
/// refused by name.
#[test]
fn cuda_artifacts_are_compiled_without_a_gpu() {
    use kiln_test_support::{require, Resource};
    let test = "cuda_artifacts_are_compiled_without_a_gpu";
    let (Some(lib), Some(include)) = (
        require(Resource::Nvrtc, test),
        require(Resource::CudaHeaders, test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("tiny-bert-cuda.kiln");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "compile",
            DEMO,
            "--target",
            "cuda",
            "--arch",
            "sm_90a,sm_80",
            "--dim",
            "batch=2",
            "--dim",
            "sequence=16",
            "-o",
            art.to_str().unwrap(),
        ])
        .env("KILN_NVRTC_LIB", &lib)
        .env("KILN_CUDA_INCLUDE", &include)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("GPU code for sm_90a, sm_80"), "{err}");
    let a = kiln_runtime::artifact::Artifact::open(&art).unwrap();
    for section in [
        "gpu_program",
        "cubin sm_90a",
        "cubin sm_80",
        "ptx",
        "constants",
    ] {
        assert!(a.has_section(section), "no section `{section}`");
    }
    assert!(a.section("cubin sm_90a").unwrap().starts_with(b"\x7fELF"));
    assert!(std::str::from_utf8(a.section("ptx").unwrap())
        .unwrap()
        .contains(".target sm_80"));

    let exe = kiln::Executable::load_artifact_on(&art, None, Some(kiln::Target::CudaSim)).unwrap();
    assert_answers_as_the_reference(&exe);

    let art_s = art.to_str().unwrap();
    let mut args = vec!["run".to_string(), art_s.to_string()];
    args.extend(demo_inputs());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if !kiln_runtime::cuda::driver_present() {
        let err = kiln_fails(&args);
        assert!(err.contains("no CUDA driver found (libcuda.so.1)"), "{err}");
    }
    let mut on_cpu = args.clone();
    on_cpu.extend(["--target", "cpu"]);
    let err = kiln_fails(&on_cpu);
    assert!(err.contains("compiled artifact for cuda"), "{err}");
    let err = kiln_fails(&[
        "compile", DEMO, "--target", "cuda", "--arch", "sm_9x", "-o", art_s,
    ]);
    assert!(
        err.contains("--arch: `sm_9x` is not a GPU architecture"),
        "{err}"
    );
}

/// An artifact compiled from a Hugging Face folder keeps the folder's input
/// rules: inputs transformers defaults (the mask, token types) may be left out,
/// and out-of-range token ids are refused by name, as with the folder itself.
#[test]
fn folder_artifacts_keep_the_inputs_a_caller_may_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let folder = "tests/fixtures/hf/bert";
    let art = dir.path().join("bert.kiln");
    let r = kiln(&[
        "compile",
        folder,
        "--target",
        "cpu",
        "--dim",
        "batch=2",
        "--dim",
        "seq=5",
        "-o",
        art.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let exe = kiln::Executable::load_artifact(&art, Some(1)).unwrap();
    let names: Vec<String> = exe.optional_inputs().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"attention_mask".to_string())
            && names.contains(&"token_type_ids".to_string()),
        "{names:?}"
    );
    let ids: Vec<i64> = (0..10).map(|i| (i * 41 % 500) as i64).collect();
    let only_ids = vec![("input_ids".to_string(), Tensor::from_vec(vec![2, 5], ids))];
    let got = exe.run(&only_ids).unwrap();
    let want = kiln::Model::load(folder).unwrap().run(&only_ids).unwrap();
    assert_same_outputs(&got, &want);
    let err = exe
        .run(&[(
            "input_ids".to_string(),
            Tensor::from_vec(vec![2, 5], vec![9999i64; 10]),
        )])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input_ids") && err.contains("vocabulary"),
        "{err}"
    );
}
