//! The exported transformer fixtures (`tests/fixtures/onnx/`, see
//! `tests/onnx_models.rs`) run through the CPU target — optimized and not — and
//! compared with onnxruntime's outputs under the same tolerance as the
//! reference interpreter's test. Each build must be native code; host
//! fallbacks are printed (and listed in the test output) but allowed. The
//! optimized builds also run on `cuda-sim` (every kernel lowered to a GPU kernel
//! and run on the SIMT interpreter), and their GPU kernels compile with NVRTC,
//! as the one module per model `--target cuda` loads, for sm_90a and sm_80.

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
                isa: None,
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
        if let Build::Gpu(gpu) = &*build {
            compile_with_nvrtc(&what, &gpu.gpu_program().kernels);
        }
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

/// Compiles a cuda-sim build's GPU kernels as one NVRTC program (the module
/// `--target cuda` would load) to cubin for sm_90a and sm_80, and checks with
/// `ptxas -v` that no kernel spills registers or uses more than the 48 KiB of
/// shared memory a block gets by default; skips with a line where the venv
/// lacks the tools (fails under CI).
fn compile_with_nvrtc(what: &str, kernels: &[kiln_codegen::gpu::GpuKernel]) {
    use kiln_codegen::gpu::cuda::nvrtc::{Arch, Form, Nvrtc};
    use kiln_codegen::gpu::cuda::{module_source, ptxas};
    use kiln_codegen::gpu::MAX_SHARED_BYTES;
    use kiln_test_support::{require, Resource};
    let (Some(lib), Some(include), Some(ptxas_path)) = (
        require(Resource::Nvrtc, what),
        require(Resource::CudaHeaders, what),
        require(Resource::Ptxas, what),
    ) else {
        return;
    };
    let nvrtc = Nvrtc::load_from(&[lib])
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .with_include_dir(include);
    let source = module_source(kernels).unwrap_or_else(|e| panic!("{what}: CUDA C: {e}"));
    for arch in [Arch::SM_90A, Arch::SM_80] {
        let c = nvrtc
            .compile(&source, arch, Form::Cubin)
            .unwrap_or_else(|e| panic!("{what}: NVRTC: {e}"));
        let report = ptxas::resources(&ptxas_path, &c.ptx, arch)
            .unwrap_or_else(|e| panic!("{what}: ptxas: {e}"));
        assert_eq!(report.len(), kernels.len(), "{what}: ptxas report");
        for k in &report {
            assert!(
                k.spill_stores == 0 && k.spill_loads == 0,
                "{what}: {} spills on {arch}: {k:?}",
                k.name
            );
            assert!(
                k.shared_bytes <= MAX_SHARED_BYTES as u64,
                "{what}: {} uses {} bytes of shared memory",
                k.name,
                k.shared_bytes
            );
        }
        let most = report.iter().map(|k| k.registers).max().unwrap_or(0);
        println!(
            "{what}: {} GPU kernels compiled for {arch} in {:.2} s; no spills, at most {most} registers",
            kernels.len(),
            c.elapsed.as_secs_f64()
        );
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
