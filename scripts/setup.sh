#!/usr/bin/env bash
# Sets up everything kiln's build and tests need on a fresh Debian 12 machine
# (as root, with only Rust and Python installed): Debian packages, then the
# project-local Python venv with the test dependencies. Idempotent and quick
# when already done.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: python3-venv (venv creation on Debian's own Python),
# pkg-config / a C compiler for crates that build C code, a C++ compiler for
# libFuzzer (scripts/fuzz.sh), the CBC solver and LLVM 19.
need=()
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need+=(python3-venv); fi
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# libCbc for ILP extraction (kiln-passes feature `ilp`, built and tested by
# scripts/test.sh).
pkg-config --exists cbc 2>/dev/null || need+=(coinor-libcbc-dev)
# LLVM 19 for the CPU backend (inkwell/llvm-sys, found through
# LLVM_SYS_191_PREFIX in .cargo/config.toml; the system llvm-config is 14).
# llvm-sys links LLVM statically, which also needs Polly and the libraries
# `llvm-config --link-static --system-libs` lists (z3, zlib, zstd, libxml2;
# llvm-19-dev itself pulls in libz3-dev, libxml2-dev and libffi-dev).
[[ -x /usr/lib/llvm-19/bin/llvm-config ]] || need+=(llvm-19-dev)
[[ -e /usr/lib/llvm-19/lib/libPolly.a ]] || need+=(libpolly-19-dev)
pkg-config --exists libzstd 2>/dev/null || need+=(libzstd-dev)
pkg-config --exists zlib 2>/dev/null || need+=(zlib1g-dev)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages ${need[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
else
    echo "setup: Debian packages present"
fi

bash "$repo_root/scripts/setup-python.sh"
