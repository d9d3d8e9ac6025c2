"""Write transformers' padded-batch forward outputs for every Hugging Face fixture.

    .venv-bench/bin/python scripts/make_hf_forward_references.py

(the benchmark venv: torch and transformers; scripts/setup-bench.sh). Not needed
to build or test kiln: the files are committed. Deterministic (fixed ids, CPU,
float32), no network.

For each folder under tests/fixtures/hf/ with a model (the decoders and bert) it
writes `forward-reference.safetensors`: what transformers' forward returns with
`use_cache=False` on a batch of 2 with padding, which `tests/hf_forward.rs`
compares kiln's forward signature (`kiln run FOLDER`) with.

Decoders (SEQ = 6 tokens per row):
  input_ids, attention_mask   row 0 left-padded by 2, row 1 right-padded by 1
  logits                      model(input_ids, attention_mask), position_ids
                              left out: transformers uses 0..seq in every row
  position_ids, logits_positioned
                              only for gpt2 and llama: with explicit position ids
                              as generate() derives them from the mask
                              (cumsum - 1, padding set to 1)
  token_type_ids, logits_typed
                              only for gpt2: with token type ids (transformers
                              adds their token embeddings), positions left out
  logits_window3              only for mistral: its config with sliding_window 3
                              (the fixture's is null), ids and mask as above
Bert:
  input_ids, attention_mask, token_type_ids
                              row 0 right-padded by 3, row 1 full, two segments
  last_hidden_state, pooler_output
                              with every input given
  last_hidden_state_defaults  token_type_ids left out (transformers: zeros)
  position_ids, last_hidden_state_positioned
                              with explicit position ids (row 0 starts at 5,
                              row 1 counts down), every other input given

The reference runs the default attention implementation (sdpa). The one place
implementations differ is a query row that sees no key at all (the left-padding
positions of row 0): sdpa returns 0 for its attention, eager the mean of the
values. The script checks that eager agrees with sdpa on every other row and
records the largest difference in the file's metadata.

Low-precision folders (llama-f16, llama-bf16) are computed in float32 on the
weights rounded to the file's dtype, like their reference.json.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, BertModel

REPO = Path(__file__).resolve().parent.parent
HF = Path("tests/fixtures/hf")
SEQ = 6
DECODERS = ["gpt2", "llama", "llama-bf16", "llama-f16", "llama3", "mistral", "mixtral", "qwen2", "qwen2_moe"]
POSITIONED = {"gpt2", "llama"}


def ids(vocab: int, rows: int, seq: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (rows, seq), generator=g)


def generate_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids as transformers' generate() derives them from a padding mask."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def blind_rows(mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq] True where a causal query sees no unpadded key."""
    seen = mask.long().cumsum(-1) > 0
    return ~seen


def decoder(name: str) -> dict:
    folder = HF / name
    outs = {}
    meta = {"model": name, "transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "attn_implementation": "sdpa"}
    models = {
        impl: AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation=impl).eval()
        for impl in ("sdpa", "eager")
    }
    vocab = models["sdpa"].config.vocab_size
    x = ids(vocab, 2, SEQ, 7001)
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[0, :2] = 0
    mask[1, -1:] = 0
    x[0, :2] = 0  # padding ids (any id: the mask hides them)
    x[1, -1:] = 0
    outs["input_ids"] = x
    outs["attention_mask"] = mask
    runs = [("logits", None)]
    if name in POSITIONED:
        outs["position_ids"] = generate_positions(mask)
        runs.append(("logits_positioned", outs["position_ids"]))
    blind = blind_rows(mask)
    for key, pos in runs:
        got = {}
        for impl, m in models.items():
            with torch.no_grad():
                got[impl] = m(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=False).logits
        assert torch.isfinite(got["sdpa"]).all(), name
        seen_diff = float((got["sdpa"] - got["eager"])[~blind].abs().max())
        blind_diff = float((got["sdpa"] - got["eager"])[blind].abs().max())
        assert seen_diff < 1e-4, (name, key, seen_diff)
        meta[f"{key}_eager_vs_sdpa_seen_rows"] = f"{seen_diff:.3e}"
        meta[f"{key}_eager_vs_sdpa_blind_rows"] = f"{blind_diff:.3e}"
        outs[key] = got["sdpa"].contiguous()
    if name == "gpt2":
        types = ids(vocab, 2, SEQ, 7003) % 3
        with torch.no_grad():
            typed = models["sdpa"](input_ids=x, attention_mask=mask, token_type_ids=types, use_cache=False).logits
        outs["token_type_ids"] = types
        outs["logits_typed"] = typed.contiguous()
    if name == "mistral":
        cfg = copy.deepcopy(models["sdpa"].config)
        cfg.sliding_window = 3
        windowed = AutoModelForCausalLM.from_pretrained(
            str(folder), config=cfg, dtype=torch.float32, attn_implementation="sdpa").eval()
        with torch.no_grad():
            w = windowed(input_ids=x, attention_mask=mask, use_cache=False).logits
        assert float((w - outs["logits"]).abs().max()) > 1e-2, "the window changes nothing"
        outs["logits_window3"] = w.contiguous()
    # Rows without padding positions agree with an unpadded run of their tokens.
    with torch.no_grad():
        alone = models["sdpa"](input_ids=x[1:, :-1], use_cache=False).logits
    assert float((alone[0] - outs["logits"][1, :-1]).abs().max()) < 1e-4, name
    save_file(outs, str(folder / "forward-reference.safetensors"), metadata=meta)
    return meta


def bert() -> dict:
    folder = HF / "bert"
    meta = {"model": "bert", "transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "attn_implementation": "sdpa"}
    m = BertModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="sdpa").eval()
    e = BertModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    seq = 8
    x = ids(m.config.vocab_size, 2, seq, 7002)
    mask = torch.ones(2, seq, dtype=torch.long)
    mask[0, -3:] = 0
    x[0, -3:] = 0
    types = torch.zeros(2, seq, dtype=torch.long)
    types[0, 3:5] = 1
    types[1, 4:] = 1
    with torch.no_grad():
        out = m(input_ids=x, attention_mask=mask, token_type_ids=types)
        eager = e(input_ids=x, attention_mask=mask, token_type_ids=types)
        defaults = m(input_ids=x, attention_mask=mask)
        positions = torch.stack([torch.arange(5, 5 + seq), torch.arange(seq - 1, -1, -1)])
        positioned = m(input_ids=x, attention_mask=mask, token_type_ids=types, position_ids=positions)
    diff = float((out.last_hidden_state - eager.last_hidden_state).abs().max())
    assert diff < 1e-4, diff
    meta["eager_vs_sdpa"] = f"{diff:.3e}"
    outs = {
        "input_ids": x,
        "attention_mask": mask,
        "token_type_ids": types,
        "last_hidden_state": out.last_hidden_state.contiguous(),
        "pooler_output": out.pooler_output.contiguous(),
        "last_hidden_state_defaults": defaults.last_hidden_state.contiguous(),
        "position_ids": positions.contiguous(),
        "last_hidden_state_positioned": positioned.last_hidden_state.contiguous(),
    }
    save_file(outs, str(folder / "forward-reference.safetensors"), metadata=meta)
    return meta


def main() -> None:
    os.chdir(REPO)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    transformers.logging.set_verbosity_error()
    for name in DECODERS:
        print(decoder(name))
    print(bert())


if __name__ == "__main__":
    sys.exit(main())
