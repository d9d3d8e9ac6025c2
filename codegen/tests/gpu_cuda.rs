//! The CUDA C printer: the CUDA C of the example kernels and of a kernel applying
//! every scalar operation and cast is pinned (snapshots); a module shares its
//! helpers; bad kernel names are refused.

mod gpu_examples;

use kiln_codegen::gpu::cuda::{kernel_source, module_source, CudaError, CudaModule};
use kiln_codegen::gpu::{GpuKernel, Launch};

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
