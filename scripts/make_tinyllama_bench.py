"""Write a TinyLlama-1.1B-shaped Hugging Face folder with random weights, for
benchmarks (kiln's Hugging Face loader and decoder at a realistic size).

    .venv-bench/bin/python scripts/make_tinyllama_bench.py                # target/bench-models/tinyllama-f32
    .venv-bench/bin/python scripts/make_tinyllama_bench.py --dtype bf16   # target/bench-models/tinyllama-bf16
    .venv-bench/bin/python scripts/make_tinyllama_bench.py --out DIR --check

Never committed (target/ is ignored by git). The shape is TinyLlama-1.1B's:
LlamaForCausalLM, 22 layers, hidden 2048, intermediate 5632, 32 heads, 4 KV
heads (head_dim 64), vocab 32000, max_position_embeddings 2048, rope_theta
10000, rms_norm_eps 1e-5, untied lm_head, bos 1, eos 2. Written with
save_pretrained(max_shard_size="2GB"): config.json, generation_config.json,
model-0000N-of-0000M.safetensors and model.safetensors.index.json (f32: about
4.4 GB in 3 shards; bf16: about 2.2 GB in 2). config.json is rewritten in the
Hub's older form (rope_theta / rope_scaling / torch_dtype at top level), like
the real TinyLlama's. No tokenizer (the real one is not available offline);
benchmarks feed token ids.

Memory: the model is built on the meta device and materialized once, directly
in the target dtype; every weight is drawn in place from N(0, 0.02^2) with a
fixed generator (seed 0), RMSNorm weights are 1. Peak RSS is about the size of
the model plus one shard being serialized. --check reloads the folder with
transformers and runs one short forward pass (needs the model's size in RAM
again, after the first copy is freed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
STD = 0.02


def tinyllama_config(dtype: torch.dtype) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        hidden_act="silu",
        initializer_range=STD,
        dtype=dtype,
    )


def build(dtype: torch.dtype, seed: int) -> LlamaForCausalLM:
    cfg = tinyllama_config(dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    model.to_empty(device="cpu")  # the one allocation, already in dtype
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # RMSNorm weights
                p.fill_(1.0)
            else:
                p.normal_(0.0, STD, generator=g)
    model.eval()
    return model


def to_hub_config(folder: Path) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rp = dict(cfg.pop("rope_parameters", None) or {"rope_theta": 10000.0, "rope_type": "default"})
    cfg["rope_theta"] = rp.pop("rope_theta")
    cfg["rope_scaling"] = None if rp in ({}, {"rope_type": "default"}) else rp
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def check(folder: Path, dtype: torch.dtype) -> None:
    from transformers import AutoModelForCausalLM

    t = time.time()
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    n = sum(p.numel() for p in model.parameters())
    ids = torch.tensor([[1, 450, 4996, 17354, 1701, 29916]])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 32000), logits.shape
    assert torch.isfinite(logits.float()).all()
    print(f"check: reloaded {n / 1e9:.3f} B parameters in {time.time() - t:.1f} s; "
          f"logits {tuple(logits.shape)} std {float(logits.float().std()):.3f}, "
          f"argmax {logits[0].argmax(-1).tolist()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default target/bench-models/tinyllama-<dtype>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="reload with transformers and run one forward pass")
    args = ap.parse_args()
    dtype = DTYPES[args.dtype]
    out = args.out or REPO / "target" / "bench-models" / f"tinyllama-{args.dtype}"
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    t = time.time()
    model = build(dtype, args.seed)
    n = sum(p.numel() for p in model.parameters())
    print(f"built {n / 1e9:.3f} B parameters in {args.dtype} in {time.time() - t:.1f} s")

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t = time.time()
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="2GB")
    del model
    to_hub_config(out)
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out} ({total / 1e9:.2f} GB) in {time.time() - t:.1f} s: "
          f"{', '.join(sorted(f.name for f in out.iterdir()))}")
    if args.check:
        check(out, dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
