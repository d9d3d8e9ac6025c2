"""Write a Llama-architecture Hugging Face folder with random weights using
only numpy (no torch, no transformers): for machines that have neither, such
as the lent GPU machine of `scripts/gpu-check.sh`.

    python3 scripts/make_llama_random.py OUT_DIR                 # TinyLlama-1.1B's shape, bf16
    python3 scripts/make_llama_random.py OUT_DIR --layers 2 --hidden 64 --intermediate 128 \\
        --heads 4 --kv-heads 2 --vocab 512                       # a tiny one (for tests)

The shape defaults are TinyLlama-1.1B's (22 layers, hidden 2048, intermediate
5632, 32 heads, 4 KV heads, vocab 32000), as in scripts/make_tinyllama_bench.py.
Weights are N(0, 0.02²) from a fixed seed, RMSNorm weights 1; bf16 is written
as the top 16 bits of the f32 values (round to nearest even). One
model.safetensors file (about 2.2 GB at the default shape), written tensor by
tensor so memory stays near one tensor's size.
"""

import argparse
import json
import struct
from pathlib import Path

import numpy as np

STD = 0.02


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    bits = x.astype(np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype(np.uint16)


def tensors(a):
    h, i, v = a.hidden, a.intermediate, a.vocab
    hd = h // a.heads
    yield "model.embed_tokens.weight", (v, h), True
    for l in range(a.layers):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (h,), False
        yield p + "self_attn.q_proj.weight", (a.heads * hd, h), True
        yield p + "self_attn.k_proj.weight", (a.kv_heads * hd, h), True
        yield p + "self_attn.v_proj.weight", (a.kv_heads * hd, h), True
        yield p + "self_attn.o_proj.weight", (h, a.heads * hd), True
        yield p + "post_attention_layernorm.weight", (h,), False
        yield p + "mlp.gate_proj.weight", (i, h), True
        yield p + "mlp.up_proj.weight", (i, h), True
        yield p + "mlp.down_proj.weight", (h, i), True
    yield "model.norm.weight", (h,), False
    yield "lm_head.weight", (v, h), True


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.hidden // a.heads,
        "vocab_size": a.vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    size = 2 if a.dtype == "bf16" else 4
    header, offset = {}, 0
    for name, shape, _ in tensors(a):
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": "BF16" if a.dtype == "bf16" else "F32",
                        "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    rng = np.random.default_rng(0)
    tmp = out / "model.safetensors.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape, random in tensors(a):
            x = (rng.standard_normal(shape, dtype=np.float32) * STD) if random \
                else np.ones(shape, dtype=np.float32)
            f.write((to_bf16_bits(x) if a.dtype == "bf16" else x.astype("<f4")).tobytes())
    tmp.rename(out / "model.safetensors")
    print(f"wrote {out}: {offset / 1e9:.2f} GB of {a.dtype} weights")


if __name__ == "__main__":
    main()
