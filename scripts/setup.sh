#!/usr/bin/env bash
# Sets up everything kiln's build and tests need on a fresh Debian 12 machine
# (as root, with only Rust and Python installed): Debian packages, then the
# project-local Python venv with the test dependencies. Idempotent and quick
# when already done.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: python3-venv (venv creation on Debian's own Python),
# pkg-config / a C compiler for crates that build C code, and the CBC solver.
need=()
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need+=(python3-venv); fi
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# libCbc for ILP extraction (kiln-passes feature `ilp`, built and tested by
# scripts/test.sh).
pkg-config --exists cbc 2>/dev/null || need+=(coinor-libcbc-dev)
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
