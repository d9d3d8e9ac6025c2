"""Write test vectors for kiln's GGUF block dequantization: random blocks of
each 5-bit and K-quant type and gguf-py's own dequantization of them.

    .venv-bench/bin/python scripts/make_gguf_quant_vectors.py

(the benchmark venv has gguf-py; scripts/setup-bench.sh). Not needed to build
or test kiln: the file is committed. Deterministic (fixed seed).

Output: frontends/tests/fixtures/gguf-quant-vectors.bin, a sequence of records,
little-endian: u32 ggml type id, u32 block count, u32 byte count, the blocks'
bytes, then block count x block size f32 values (gguf-py's dequantization).
Every f16 scale/minimum field holds a random finite value in [-2, 2) (random
bytes there could be NaN or infinite); every other byte is uniform random.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "frontends/tests/fixtures/gguf-quant-vectors.bin"
BLOCKS = 6

# Byte offsets of the f16 fields of each type's block.
F16_FIELDS = {
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def main() -> None:
    rng = np.random.default_rng(20261208)
    out = bytearray()
    for qtype, fields in F16_FIELDS.items():
        block_size, block_bytes = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS, block_bytes), dtype=np.uint8)
        for at in fields:
            scales = rng.uniform(-2, 2, size=BLOCKS).astype(np.float16)
            raw[:, at : at + 2] = scales.view(np.uint8).reshape(BLOCKS, 2)
        values = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert values.size == BLOCKS * block_size and np.isfinite(values).all()
        out += struct.pack("<III", int(qtype), BLOCKS, raw.size)
        out += raw.tobytes()
        out += values.astype("<f4").tobytes()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(bytes(out))
    print(f"wrote {OUT.relative_to(REPO)} ({len(out)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
