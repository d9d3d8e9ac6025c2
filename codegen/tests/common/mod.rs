//! Helpers the GPU test files share: the random seed every differential test
//! prints, and NVRTC from the test venv.

// Each test binary uses some of the helpers.
#![allow(dead_code)]

use kiln_codegen::gpu::cuda::nvrtc::Nvrtc;
use kiln_test_support::{require, Resource};

/// A fresh seed per run (or `KILN_TEST_SEED`), printed so a failure can be
/// reproduced.
pub fn seed() -> u64 {
    let s = std::env::var("KILN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {s} (KILN_TEST_SEED)");
    s
}

/// NVRTC with the venv's CUDA headers, or `None` (after a skip line) when the
/// venv lacks them; under CI a missing tool fails the test.
pub fn nvrtc(test: &str) -> Option<Nvrtc> {
    let lib = require(Resource::Nvrtc, test)?;
    let include = require(Resource::CudaHeaders, test)?;
    let nvrtc = Nvrtc::load_from(&[lib]).unwrap_or_else(|e| panic!("{test}: {e}"));
    Some(nvrtc.with_include_dir(include))
}
