#!/usr/bin/env bash
# Builds kiln's Python wheel with maturin, installs it into a fresh virtual
# environment (target/python-venv) with the test requirements
# (python/requirements-test.txt), and runs the Python tests (python/tests,
# pytest) against it. Exits non-zero when anything fails.
#
#   bash scripts/test-python.sh [PYTEST ARGS...]
#
# The text tests compare with the `kiln` command (target/release/kiln, built
# here) and the all-MiniLM-L6-v2 folder of .venv (scripts/setup.sh).
set -euo pipefail
repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
venv=target/python-venv
python="${PYTHON:-python3}"

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-test.txt
cargo build --release --quiet --bin kiln
rm -rf target/wheels
"$venv/bin/maturin" build --release --quiet -m python/Cargo.toml --out target/wheels
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps target/wheels/kiln-*.whl
# From the repository root, so that python/kiln (the sources, without the
# extension) never shadows the installed package.
"$venv/bin/python" -m pytest -q python/tests "$@"
