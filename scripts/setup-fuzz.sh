#!/usr/bin/env bash
# Sets up coverage-guided fuzzing (scripts/fuzz.sh) on a fresh Debian 12 machine
# with Rust's stable toolchain: the engine is libFuzzer, whose C++ sources the
# `libfuzzer-sys` crate builds, so what is needed is a C++ compiler (g++) and the
# fuzz crate's dependencies. No nightly toolchain and no cargo-fuzz binary: the
# sanitizer-coverage flags scripts/fuzz.sh passes are stable rustc flags.
# Idempotent and quick when already done.
set -euo pipefail
repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
# The C++ compiler is one of the Debian packages scripts/setup.sh installs.
command -v c++ >/dev/null 2>&1 || bash scripts/setup.sh
cargo fetch --quiet --manifest-path fuzz/Cargo.toml
echo "setup-fuzz: ready (libFuzzer through libfuzzer-sys, $(c++ --version | head -1))"
