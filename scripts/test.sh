#!/usr/bin/env bash
# Sets up and runs every check of the project: formatting, lints, and all tests
# (unit, snapshot, CLI errors, model fixtures, the Python package, a fuzz smoke
# per file format, the GPU check on the simulated GPU, the ONNX conformance
# suites).
# Exits non-zero when anything fails.
set -euo pipefail
repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
bash scripts/setup.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# Each stage is announced and, when the next begins, timed (wall seconds), so
# the log shows where the suite's time goes.
stage_name="" stage_start=$SECONDS
stage() {
    if [ -n "$stage_name" ]; then
        echo "test: ${stage_name%% (*} took $((SECONDS - stage_start)) s"
    fi
    stage_name="$1" stage_start=$SECONDS
    [ -z "$1" ] || echo "test: $1"
}
stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy"
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
stage "cargo test (unit, snapshot, CLI, model fixtures, robustness, doc tests)"
cargo test --release --workspace --no-fail-fast -- --skip onnx_backend_suites
stage "Python package (maturin wheel in a fresh venv, pytest: scripts/test-python.sh)"
bash scripts/test-python.sh
stage "ILP extraction (kiln-passes feature ilp, CBC)"
cargo clippy --release -p kiln-passes --features ilp --all-targets --quiet -- -D warnings
cargo test --release -p kiln-passes --features ilp --test extract_ilp
stage "fuzz smoke (libFuzzer, every target; the corpus replay runs in cargo test: tests/fuzz_regressions.rs)"
# 500 inputs a target: new code paths get a first shake here; long runs are
# `scripts/fuzz.sh run`, and every crash found so far replays in cargo test.
bash scripts/fuzz.sh smoke "${KILN_FUZZ_SMOKE_RUNS:-500}"
stage "scripts/gpu-check.sh (the GPU machine's check, run here on the simulated GPU)"
bash scripts/gpu-check.sh prepare
OUT=target/gpu-check/out-sim KILN_GPU_CHECK_TARGET=cuda-sim KILN_GPU_CHECK_N=4096 KILN_GPU_CHECK_PROMPT=8 KILN_GPU_CHECK_ITERS=3 KILN_GPU_CHECK_SAMPLE=4 KILN_GPU_CHECK_PYTHON=.venv/bin/python \
    bash scripts/gpu-check.sh run
python3 -c "import json,sys; s=json.load(open('target/gpu-check/out-sim/summary.json')); sys.exit(1 if s['failed'] or s['passed'] < 8 or 'tinyllama' not in s or 'kiln_chain_kernel_ms' not in s else 0)"
stage "ONNX conformance suites (reference interpreter)"
cargo test --release --test onnx_conformance -- --nocapture
stage ""
echo "test: all stages passed in $SECONDS s"
