#!/usr/bin/env bash
# Create the project-local Python venv (.venv at the repository root) and
# install the light test dependencies (scripts/requirements-test.txt) into it.
#
#   bash scripts/setup-python.sh        # from any directory
#
# Idempotent: a stamp file in .venv records the hash of the requirements file
# and the interpreter version; when it matches, the script does nothing else.
# Environment: PYTHON picks the interpreter used to create the venv (default
# python3). The heavy fixture-regeneration requirements are NOT installed here;
# see the docstring of scripts/make_onnx_fixtures.py.
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "$script_dir/.." && pwd)"
venv="$repo_root/.venv"
req="$repo_root/scripts/requirements-test.txt"
stamp="$venv/.kiln-requirements-test.stamp"
python="${PYTHON:-python3}"

echo "setup-python: repo root $repo_root"

if [[ ! -f "$req" ]]; then
    echo "setup-python: missing $req" >&2
    exit 1
fi

if [[ -x "$venv/bin/python" ]]; then
    echo "setup-python: venv exists at .venv"
else
    echo "setup-python: creating venv .venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # Keep git from ever seeing the venv, whatever .gitignore says.
    printf '*\n' >"$venv/.gitignore"
fi

want="$(sha256sum "$req" | cut -d' ' -f1) $("$venv/bin/python" --version 2>&1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-python: requirements-test.txt already installed (stamp matches), nothing to do"
    exit 0
fi

echo "setup-python: installing scripts/requirements-test.txt into .venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"

echo "setup-python: checking the installed versions"
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
"$venv/bin/python" - "$req" <<'PY'
import sys
from importlib.metadata import version

for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, pinned = (s.strip() for s in line.split("==", 1))
        got = version(name)
        if got != pinned:
            sys.exit(f"setup-python: {name} is {got}, wanted {pinned}")
PY

printf '%s' "$want" >"$stamp"
echo "setup-python: done ($("$venv/bin/python" -c 'import onnx, numpy; print("onnx", onnx.__version__, "numpy", numpy.__version__)'))"
