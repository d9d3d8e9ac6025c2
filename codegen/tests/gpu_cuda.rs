//! The CUDA C printer and NVRTC, without a GPU: the CUDA C of the example kernels
//! is pinned (snapshots); every example, and a kernel applying every scalar
//! operation and cast, compiles with NVRTC to cubin for `sm_90a` and `sm_80`;
//! `ptxas -v` reports no spills for them; vector accesses are single
//! instructions; a compile error carries NVRTC's log; a missing NVRTC is an
//! error, not a panic.
//!
//! NVRTC, the CUDA headers and `ptxas` come from the test venv
//! (`scripts/setup-python.sh`); without them these tests fail under CI and skip
//! with one line otherwise.

mod common;

mod gpu_examples;

use common::nvrtc;
use std::path::PathBuf;
use std::time::Instant;

use kiln_codegen::gpu::cuda::nvrtc::{Arch, Compiled, Form, Nvrtc, NvrtcError};
use kiln_codegen::gpu::cuda::{kernel_source, module_source, ptxas, CudaError, CudaModule};
use kiln_codegen::gpu::{GpuKernel, Launch};
use kiln_test_support::{require, Resource};

/// The architectures kiln compiles for: Hopper (with wgmma) and Ampere.
const ARCHS: [Arch; 2] = [Arch::SM_90A, Arch::SM_80];

fn compile(nvrtc: &Nvrtc, source: &str, arch: Arch) -> Compiled {
    nvrtc
        .compile(source, arch, Form::Cubin)
        .unwrap_or_else(|e| panic!("{e}\n--- source ---\n{source}"))
}

#[test]
fn the_cuda_c_of_the_examples_is_pinned() {
    for k in gpu_examples::all() {
        let source = kernel_source(&k).unwrap();
        insta::assert_snapshot!(k.name.clone(), source);
    }
}

#[test]
fn the_cuda_c_of_every_scalar_op_is_pinned() {
    insta::assert_snapshot!(kernel_source(&gpu_examples::every_scalar_op()).unwrap());
}

#[test]
fn a_module_shares_helpers_and_includes() {
    let kernels = gpu_examples::all();
    let source = module_source(&kernels).unwrap();
    for k in &kernels {
        assert_eq!(
            source.matches(&format!(" {}(", k.name)).count(),
            1,
            "{}",
            k.name
        );
    }
    // Helpers (the index arithmetic's, used by every kernel) are defined once.
    let definitions: Vec<&str> = (source.lines())
        .filter(|l| l.starts_with("static __device__"))
        .collect();
    assert!(definitions.iter().any(|d| d.contains("kiln_mul_i64(")));
    for d in &definitions {
        assert_eq!(source.matches(d).count(), 1, "{d}");
    }
    assert_eq!(source.matches("#include <cuda_fp16.h>").count(), 1);
    assert_eq!(source.matches("#include <cuda_bf16.h>").count(), 1);
    // A kernel without halves includes neither header.
    let plain = kernel_source(&gpu_examples::atomic_sum(64)).unwrap();
    assert!(!plain.contains("#include"), "{plain}");
}

#[test]
fn bad_kernel_names_and_duplicates_are_refused() {
    let named = |name: &str| {
        let mut k = gpu_examples::atomic_sum(64);
        k.name = name.into();
        kernel_source(&k)
    };
    for bad in ["2d", "a-b", "kiln_softmax", ""] {
        assert!(matches!(named(bad), Err(CudaError::Name { .. })), "{bad}");
    }
    let mut m = CudaModule::new();
    m.add(&gpu_examples::atomic_sum(64)).unwrap();
    let e = m.add(&gpu_examples::atomic_sum(32)).unwrap_err();
    assert!(matches!(e, CudaError::Duplicate(_)), "{e}");
    // An ill-formed kernel is the checker's error.
    let e = kernel_source(&GpuKernel::new("odd", Launch::linear(1, 100))).unwrap_err();
    assert!(e.to_string().contains("multiple of 32"), "{e}");
}

#[test]
fn every_example_compiles_to_cubin() {
    let Some(nvrtc) = nvrtc("every_example_compiles_to_cubin") else {
        return;
    };
    for arch in ARCHS {
        for k in gpu_examples::all() {
            let c = compile(&nvrtc, &kernel_source(&k).unwrap(), arch);
            let cubin = c.cubin.as_deref().unwrap();
            assert_eq!(&cubin[..4], b"\x7fELF", "{} for {arch}", k.name);
            assert!(c.ptx.contains(&format!(".entry {}(", k.name)), "{}", k.name);
            assert!(c.log.is_empty(), "{} for {arch}: {}", k.name, c.log);
            eprintln!(
                "{arch} {}: {:.0} ms, {} bytes of cubin",
                k.name,
                c.elapsed.as_secs_f64() * 1e3,
                cubin.len()
            );
        }
        // The whole set as one program, as a model's kernels will be.
        let c = compile(&nvrtc, &module_source(&gpu_examples::all()).unwrap(), arch);
        eprintln!(
            "{arch} all {} examples in one program: {:.0} ms",
            gpu_examples::all().len(),
            c.elapsed.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn every_scalar_op_and_cast_compiles() {
    let Some(nvrtc) = nvrtc("every_scalar_op_and_cast_compiles") else {
        return;
    };
    let source = kernel_source(&gpu_examples::every_scalar_op()).unwrap();
    for arch in ARCHS {
        let c = compile(&nvrtc, &source, arch);
        assert!(c.log.is_empty(), "{arch}: {}", c.log);
        eprintln!(
            "{arch} every_scalar_op: {:.0} ms",
            c.elapsed.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn ptxas_reports_no_spills() {
    let test = "ptxas_reports_no_spills";
    let Some(nvrtc) = nvrtc(test) else {
        return;
    };
    let Some(ptxas_path) = require(Resource::Ptxas, test) else {
        return;
    };
    let mut kernels = gpu_examples::all();
    kernels.push(gpu_examples::every_scalar_op());
    let source = module_source(&kernels).unwrap();
    for arch in ARCHS {
        let c = compile(&nvrtc, &source, arch);
        let report = ptxas::resources(&ptxas_path, &c.ptx, arch).unwrap();
        assert_eq!(report.len(), kernels.len(), "{report:?}");
        for k in &kernels {
            let r = report.iter().find(|r| r.name == k.name).unwrap();
            eprintln!(
                "{arch} {}: {} registers, {} B spill stores, {} B spill loads, {} B stack, {} B shared",
                r.name, r.registers, r.spill_stores, r.spill_loads, r.stack_frame, r.shared_bytes
            );
            assert_eq!((r.spill_stores, r.spill_loads), (0, 0), "{arch}: {r:?}");
            assert_eq!(r.stack_frame, 0, "{arch}: {r:?}");
            assert_eq!(r.shared_bytes, k.shared_bytes() as u64, "{arch}: {r:?}");
            // __launch_bounds__ lets ptxas budget registers for the block.
            assert!(r.registers <= 65536 / k.launch.block, "{arch}: {r:?}");
        }
    }
}

#[test]
fn vector_accesses_are_single_instructions() {
    let Some(nvrtc) = nvrtc("vector_accesses_are_single_instructions") else {
        return;
    };
    // Eight bytes of f16 and sixteen of bf16 per access, loads and stores.
    for (k, load, store) in [
        (
            gpu_examples::vectorized_add(1024),
            "ld.global.nc.v4.u16",
            "st.global.v4.u16",
        ),
        (
            gpu_examples::scale_bf16x8(1024),
            "ld.global.nc.v4.u32",
            "st.global.v4.u32",
        ),
    ] {
        let c = compile(&nvrtc, &kernel_source(&k).unwrap(), Arch::SM_90A);
        assert!(c.ptx.contains(load), "{}: no {load}\n{}", k.name, c.ptx);
        assert!(c.ptx.contains(store), "{}: no {store}\n{}", k.name, c.ptx);
    }
}

#[test]
fn ptx_is_the_fallback_for_unknown_architectures() {
    let Some(nvrtc) = nvrtc("ptx_is_the_fallback_for_unknown_architectures") else {
        return;
    };
    let source = kernel_source(&gpu_examples::elementwise(1024, Launch::linear(2, 128))).unwrap();
    let supported = nvrtc.supported_archs().unwrap();
    assert!(
        supported.contains(&80) && supported.contains(&90),
        "{supported:?}"
    );

    let ptx = nvrtc.compile(&source, Arch::SM_90A, Form::Ptx).unwrap();
    assert!(ptx.cubin.is_none());
    assert!(ptx.ptx.contains(".target sm_90a"), "{}", ptx.ptx);

    // A GPU newer than NVRTC knows gets PTX for the newest it does know.
    let future = Arch::parse("sm_990").unwrap();
    let c = nvrtc.compile_for(&source, future).unwrap();
    assert_eq!(c.form, Form::Ptx);
    let newest = supported.last().unwrap();
    assert!(c.ptx.contains(&format!(".target sm_{newest}")), "{}", c.ptx);
    // A known one gets a cubin.
    assert_eq!(
        nvrtc.compile_for(&source, Arch::SM_80).unwrap().form,
        Form::Cubin
    );
    // Nothing at or below: an error naming what NVRTC supports.
    let e = nvrtc
        .compile_for(&source, Arch::parse("sm_20").unwrap())
        .unwrap_err();
    assert!(matches!(e, NvrtcError::Unsupported { .. }), "{e}");
}

#[test]
fn compile_errors_carry_nvrtc_log() {
    let Some(nvrtc) = nvrtc("compile_errors_carry_nvrtc_log") else {
        return;
    };
    let e = nvrtc
        .compile(
            "__global__ void k() { undeclared = 1; }",
            Arch::SM_80,
            Form::Cubin,
        )
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, NvrtcError::Compile { .. }), "{text}");
    assert!(
        text.contains("undeclared") && text.contains("kiln.cu"),
        "{text}"
    );
    assert!(matches!(
        nvrtc.compile("a\0b", Arch::SM_80, Form::Cubin),
        Err(NvrtcError::Nul(1))
    ));
}

/// Set in the child process of [`a_missing_nvrtc_is_an_error_not_a_panic`].
const CHILD: &str = "KILN_TEST_NVRTC_CHILD";

#[test]
fn a_missing_nvrtc_is_an_error_not_a_panic() {
    // In a child process, with nothing pointing at the venv's NVRTC (a process
    // keeps the first NVRTC it loads, so this process cannot unload it).
    let start = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "nvrtc_search_child", "--nocapture"])
        .env(CHILD, "1")
        .env("KILN_NVRTC_LIB", "/nonexistent/libnvrtc.so.13")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CUDA_HOME")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed in {:?}:\n{stdout}\n{stderr}",
        start.elapsed()
    );
}

/// The child of [`a_missing_nvrtc_is_an_error_not_a_panic`] (does nothing in a
/// normal run).
#[test]
fn nvrtc_search_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    match Nvrtc::load_from(&[PathBuf::from("/nonexistent/lib")]) {
        // A system-wide CUDA (on the loader's path or in /usr/local/cuda) is
        // found; that is fine, what matters is that nothing panicked.
        Ok(n) => eprintln!(
            "found a system NVRTC {:?} at {:?}",
            n.version(),
            n.library()
        ),
        Err(e @ NvrtcError::NotFound { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("/nonexistent/libnvrtc.so.13") && text.contains("/nonexistent/lib"),
                "{text}"
            );
            assert!(text.contains("setup-python.sh"), "{text}");
        }
        Err(e) => panic!("{e}"),
    }
}
