#!/usr/bin/env python3
"""Batch-1 decode speed of kiln vs PyTorch eager on a TinyLlama-shaped model,
against the memory-bandwidth floor.

    bash scripts/setup-bench.sh                          # once: .venv-bench
    cargo build --release
    .venv-bench/bin/python scripts/bench_decode.py [--dtype f32,bf16] \
        [--threads 2] [--steps 32] [--rounds 3] [--prompt-len 16] [--context 256]

The model is TinyLlama-1.1B's shape (22 layers, hidden 2048, intermediate 5632,
32 heads, 4 KV heads, vocab 32000) with seeded random weights, written once per
dtype to target/bench-models/tinyllama-<dtype>/ by scripts/make_tinyllama_bench.py
(a Hugging Face folder: about 4.4 GB in f32, 2.2 GB in bf16). Nothing is
fetched from a model hub.

In one run it measures, for each dtype:
- the copy bandwidth B of this machine: `dst.copy_(src)` of a 1 GiB tensor with
  torch on the same thread count, median of 9, as bytes copied per second (each
  byte read once and written once; STREAM's convention counts 2B);
- kiln: `kiln bench FOLDER --json` (prefill, then --steps single-token decode
  steps with the KV cache; median ms per token);
- PyTorch eager: transformers' LlamaForCausalLM in the weights' dtype, the same
  prompt length, then --steps single-token forward passes with its KV cache
  (`past_key_values`), median ms per token;
interleaved over --rounds rounds (the order rotates each round), and prints per
dtype the medians, kiln/torch speed ratio, the floor (weight bytes / B) and
the bandwidth reached (weight bytes per token / time per token, over B), then
the prefill of --prompt-len tokens for both (each the median of three warm
prefills after a cold one; `--prompt-len 128` compares the prefill GEMMs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = REPO_ROOT / "target" / "bench-models"

COPY_BYTES = 1 << 30
COPY_REPEATS = 9


def make_model(dtype: str) -> Path:
    """The TinyLlama-shaped folder for `dtype`, written once by
    scripts/make_tinyllama_bench.py."""
    out = MODELS / f"tinyllama-{dtype}"
    if not (out / "config.json").is_file():
        print(f"bench_decode: writing {out}", flush=True)
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "make_tinyllama_bench.py"),
             "--dtype", dtype, "--out", str(out)],
            check=True,
        )
    return out


def weight_bytes(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            for k in st.keys():
                t = st.get_slice(k)
                n = 1
                for d in t.get_shape():
                    n *= d
                total += n * (4 if t.get_dtype() == "F32" else 2)
    return total


def copy_bandwidth(threads: int) -> float:
    """Bytes copied per second by torch over a 1 GiB buffer (median)."""
    import torch

    torch.set_num_threads(threads)
    src = torch.ones(COPY_BYTES // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(COPY_REPEATS):
        t = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t)
    del src, dst
    return COPY_BYTES / statistics.median(times)


def kiln_decode(kiln: str, folder: Path, args) -> dict:
    cmd = [
        kiln, "bench", str(folder), "--json",
        "--threads", str(args.threads),
        "--iters", str(args.steps),
        "--warmup", "2",
        "--prompt-len", str(args.prompt_len),
        "--context", str(args.context),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kiln failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


TORCH_WORKER = r"""
import json, statistics, sys, time, torch
from transformers import AutoModelForCausalLM
folder, dtype, threads, steps, prompt_len = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
dt = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(folder, dtype=dt, attn_implementation="eager").eval()
load_s = time.perf_counter() - t0
vocab = model.config.vocab_size
tok = lambda i: (i * 2654435761) % vocab
ids = torch.tensor([[tok(i) for i in range(prompt_len)]])
with torch.inference_mode():
    # As `kiln bench`: the first prefill cold, the median of three more warm.
    prefills = []
    for _ in range(4):
        t = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        prefills.append((time.perf_counter() - t) * 1e3)
    prefill_first_ms, prefill_ms = prefills[0], statistics.median(prefills[1:])
    past = out.past_key_values
    times = []
    for i in range(steps + 2):
        x = torch.tensor([[tok(prompt_len + i)]])
        t = time.perf_counter()
        out = model(input_ids=x, past_key_values=past, use_cache=True)
        dt_ms = (time.perf_counter() - t) * 1e3
        past = out.past_key_values
        if i >= 2:
            times.append(dt_ms)
times.sort()
print(json.dumps({"decode_median_ms": statistics.median(times), "decode_min_ms": times[0],
                  "prefill_ms": prefill_ms, "prefill_first_ms": prefill_first_ms, "load_s": load_s}))
"""


def torch_decode(folder: Path, dtype: str, args) -> dict:
    """PyTorch eager in its own process (so its memory is gone after)."""
    cmd = [sys.executable, "-c", TORCH_WORKER, str(folder), dtype, str(args.threads),
           str(args.steps), str(args.prompt_len)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"torch failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="f32,bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--kiln", default=str(REPO_ROOT / "target" / "release" / "kiln"))
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    if not Path(args.kiln).is_file():
        print(f"bench_decode: {args.kiln} not found: run `cargo build --release`", file=sys.stderr)
        return 1
    results = {}
    for dtype in args.dtype.split(","):
        folder = make_model(dtype)
        wbytes = weight_bytes(folder)
        rows = {"kiln": [], "torch": [], "copy": []}
        for r in range(args.rounds):
            order = [("copy", None), ("kiln", None), ("torch", None)]
            order = order[r % 3:] + order[: r % 3]
            for name, _ in order:
                if name == "copy":
                    rows["copy"].append(copy_bandwidth(args.threads))
                elif name == "kiln":
                    rows["kiln"].append(kiln_decode(args.kiln, folder, args))
                else:
                    rows["torch"].append(torch_decode(folder, dtype, args))
                time.sleep(1.0)
        bw = statistics.median(rows["copy"])
        k_ms = statistics.median(x["decode_median_ms"] for x in rows["kiln"])
        t_ms = statistics.median(x["decode_median_ms"] for x in rows["torch"])
        floor_ms = wbytes / bw * 1e3
        # Warm prefill medians (both report the cold first prefill apart).
        k_pre = statistics.median(x["prefill_ms"] for x in rows["kiln"])
        t_pre = statistics.median(x["prefill_ms"] for x in rows["torch"])
        res = {
            "weight_bytes": wbytes,
            "copy_bandwidth_gb_s": bw / 1e9,
            "floor_ms_per_token": floor_ms,
            "kiln_ms_per_token": k_ms,
            "torch_ms_per_token": t_ms,
            "kiln_tokens_per_s": 1e3 / k_ms,
            "torch_tokens_per_s": 1e3 / t_ms,
            "kiln_speedup_over_torch": t_ms / k_ms,
            "kiln_bandwidth_fraction": floor_ms / k_ms,
            "torch_bandwidth_fraction": floor_ms / t_ms,
            "kiln_prefill_ms": k_pre,
            "torch_prefill_ms": t_pre,
            "kiln_compile_s": statistics.median(x["compile_s"] for x in rows["kiln"]),
            "rounds": rows,
        }
        results[dtype] = res
        print(
            f"{dtype}: weights {wbytes / 1e9:.2f} GB, copy bandwidth {bw / 1e9:.1f} GB/s "
            f"(bytes copied/s; floor {floor_ms:.1f} ms/token)\n"
            f"  kiln  {k_ms:7.1f} ms/token ({1e3 / k_ms:5.2f} tokens/s): "
            f"{100 * floor_ms / k_ms:5.1f}% of copy bandwidth\n"
            f"  torch {t_ms:7.1f} ms/token ({1e3 / t_ms:5.2f} tokens/s): "
            f"{100 * floor_ms / t_ms:5.1f}% of copy bandwidth\n"
            f"  kiln is {t_ms / k_ms:.2f}x torch eager (medians of {args.rounds} rounds x {args.steps} steps, "
            f"{args.threads} threads)\n"
            f"  prefill of {args.prompt_len} tokens (warm medians): kiln {k_pre:.1f} ms, torch {t_pre:.1f} ms "
            f"= {t_pre / k_pre:.2f}x",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
