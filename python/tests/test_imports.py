"""kiln beside other native libraries that carry their own LLVM or runtime:
each import order works, and each library still does its work afterwards."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

#: What each library does once imported (numba compiles through llvmlite's LLVM).
WORK = {
    "kiln": """
        import numpy as np, kiln
        exe = kiln.load(r"{demo}").compile(target="cpu", threads=1)
        ids = np.ones((1, 3), dtype=np.int64)
        out = exe.run({{"input_ids": ids, "attention_mask": ids, "token_type_ids": 0 * ids}})
        assert out["pooler_output"].shape == (1, 64)
    """,
    "onnxruntime": """
        import onnxruntime
        s = onnxruntime.InferenceSession(r"{demo}", providers=["CPUExecutionProvider"])
        assert len(s.get_inputs()) == 3
    """,
    "numba": """
        import numba
        @numba.njit
        def total(n):
            s = 0
            for i in range(n):
                s += i
            return s
        assert total(10) == 45
    """,
    "torch": """
        import torch
        assert float(torch.ones(3).sum()) == 3.0
    """,
}


def available(name: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True).returncode == 0


LIBRARIES = [n for n in WORK if n == "kiln" or available(n)]


def test_the_extension_exports_only_its_init() -> None:
    import kiln._kiln as ext

    out = subprocess.run(["nm", "-D", "--defined-only", ext.__file__], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"nm failed: {out.stderr}")
    symbols = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert symbols == ["PyInit__kiln"], symbols[:20]


@pytest.mark.parametrize("order", list(itertools.permutations(LIBRARIES)), ids="-then-".join)
def test_import_order(order: tuple[str, ...]) -> None:
    demo = ROOT / "models" / "demo" / "tiny-bert.onnx"
    script = "\n".join(textwrap.dedent(WORK[name]).format(demo=demo) for name in order)
    script += "\n" + "\n".join(textwrap.dedent(WORK[name]).format(demo=demo) for name in reversed(order))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' then '.join(order)}:\n{out.stderr[-3000:]}"


def test_torch_is_in_the_matrix_or_reported() -> None:
    if "torch" not in LIBRARIES:
        print("test_imports: torch is not installed in this venv: the import matrix ran without it "
              "(scripts/setup-bench.sh's .venv-bench has it; run the tests there to include it)")
