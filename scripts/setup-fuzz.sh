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
if ! command -v c++ >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup-fuzz: no C++ compiler; run as root or install g++" >&2
        exit 1
    fi
    echo "setup-fuzz: installing g++"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq g++ >/dev/null
fi
cargo fetch --quiet --manifest-path fuzz/Cargo.toml
echo "setup-fuzz: ready (libFuzzer through libfuzzer-sys, $(c++ --version | head -1))"
