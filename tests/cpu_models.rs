//! The exported transformer fixtures (`tests/fixtures/onnx/`, see
//! `tests/onnx_models.rs`) run through the CPU target — optimized and not — and
//! compared with onnxruntime's outputs under the same tolerance as the
//! reference interpreter's test. Each build must be native code; host
//! fallbacks are printed (and listed in the test output) but allowed. The
//! optimized builds also run on `cuda-sim` (every kernel lowered to a GPU kernel
//! and run on the SIMT interpreter).

use kiln::cpu::Build;
use kiln::{CompileOptions, Model, Target};

mod common;

use common::exported::{check_close, fixtures, read_dir_npys};

fn run_fixture(name: &str, optimize: bool, target: Target) {
    let dir = fixtures().join(name);
    let model = Model::load(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let exe = model
        .compile_with(
            &target,
            &CompileOptions {
                threads: Some(4),
                optimize,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: compile: {e}"));
    for (inputs, expected) in [("inputs", "expected"), ("inputs_alt", "expected_alt")] {
        if !dir.join(inputs).exists() {
            continue;
        }
        let what = format!("{name}/{inputs} [{target}, optimize {optimize}]");
        let feed = read_dir_npys(&dir.join(inputs));
        let outs = exe.run(&feed).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The build these inputs ran on must be native code.
        let graph = exe.graph().expect("a CPU executable has a graph");
        let shapes: Vec<Vec<usize>> = graph
            .inputs
            .iter()
            .map(|&i| {
                let n = &graph.value(i).name;
                feed.iter()
                    .find(|(f, _)| f == n)
                    .unwrap_or_else(|| panic!("{what}: no input {n}"))
                    .1
                    .shape()
                    .to_vec()
            })
            .collect();
        let build = exe.cpu_build(&shapes).unwrap().expect("CPU builds");
        match &*build {
            Build::Native(_) | Build::Gpu(_) => {
                let p = build.program().expect("compiled");
                println!(
                    "{what}: {} steps, {} kernels, {:.1} MFLOP in GEMMs, host ops {:?}",
                    p.steps.len(),
                    p.kernels.len(),
                    p.gemm_flops() / 1e6,
                    p.host_ops()
                );
            }
            Build::Interpreted { reason, .. } => panic!("{what}: not compiled: {reason}"),
        }
        let want = read_dir_npys(&dir.join(expected));
        assert!(!want.is_empty());
        for (oname, w) in &want {
            let (_, g) = outs
                .iter()
                .find(|(n, _)| n == oname)
                .unwrap_or_else(|| panic!("{what}: no output {oname}"));
            let err = check_close(&format!("{what}/{oname}"), g, w);
            println!("{what}/{oname}: max relative error {err:.2e}");
        }
    }
}

macro_rules! fixture_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        mod optimized {
            $(#[test] fn $test() { super::run_fixture($name, true, kiln::Target::Cpu); })*
        }
        mod unoptimized {
            $(#[test] fn $test() { super::run_fixture($name, false, kiln::Target::Cpu); })*
        }
        mod cuda_sim {
            $(#[test] fn $test() { super::run_fixture($name, true, kiln::Target::CudaSim); })*
        }
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
