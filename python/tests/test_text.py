"""kiln.generate and kiln.embed against the kiln command's results."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kiln

from conftest import FIXTURES, minilm_dir, require, run_cli

DECODERS = ["llama", "llama-bf16", "llama-f16", "llama3", "mistral", "qwen2", "gpt2", "mixtral", "qwen2_moe"]
PROMPT = "The keeper lit the lamp"
MAX_TOKENS = 8


@pytest.mark.parametrize("name", DECODERS)
def test_generate_matches_the_cli(kiln_bin, name: str) -> None:
    folder = FIXTURES / "hf" / name
    cli = run_cli(kiln_bin, "generate", str(folder), "-p", PROMPT, "--max-tokens", str(MAX_TOKENS), "--threads", "1")
    text = kiln.generate(str(folder), PROMPT, max_tokens=MAX_TOKENS, threads=1)
    assert text == cli.removesuffix("\n")


def test_streaming_reuse_sampling_and_adapters(kiln_bin) -> None:
    folder = FIXTURES / "hf" / "llama"
    model = kiln.load(folder)
    assert model.kind == "decoder"
    whole = kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS)
    pieces = list(kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS, stream=True))
    assert "".join(pieces) == whole
    # Sampling is seeded: the same seed gives the same text, as the CLI does.
    args = dict(max_tokens=MAX_TOKENS, temperature=0.8, top_p=0.9, seed=5)
    sampled = kiln.generate(model, PROMPT, **args)
    assert sampled == kiln.generate(model, PROMPT, **args)
    cli = run_cli(
        kiln_bin, "generate", str(folder), "-p", PROMPT, "--max-tokens", str(MAX_TOKENS),
        "--temperature", "0.8", "--top-p", "0.9", "--seed", "5",
    )
    assert sampled == cli.removesuffix("\n")
    adapter = FIXTURES / "hf" / "llama-lora-a"
    with_adapter = kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS, adapters=[adapter])
    cli = run_cli(kiln_bin, "generate", str(folder), "-p", PROMPT, "--max-tokens", str(MAX_TOKENS), "--adapter", str(adapter))
    assert with_adapter == cli.removesuffix("\n")
    # A stream dropped half-way stops its generation; the model is still usable.
    stream = kiln.generate(model, PROMPT, max_tokens=64, ignore_eos=True, stream=True)
    next(stream)
    del stream
    assert kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS) == whole
    # A stream left unread does not hold up other generations on the model,
    # and generations from several threads at once agree.
    held = kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS, stream=True)
    first = next(held)
    assert kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS) == whole
    assert first + "".join(held) == whole
    import threading

    texts: list[str] = []
    threads = [
        threading.Thread(target=lambda: texts.append(kiln.generate(model, PROMPT, max_tokens=MAX_TOKENS)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert texts == [whole] * 4
    with pytest.raises(kiln.InputError, match="temperature"):
        kiln.generate(model, PROMPT, temperature=-1.0)
    with pytest.raises(kiln.InputError, match="max_tokens"):
        kiln.generate(model, PROMPT, max_tokens=0)


def test_embed_matches_the_cli(kiln_bin) -> None:
    folder = require(minilm_dir(), "all-MiniLM-L6-v2 (scripts/setup.sh installs it into .venv)")
    sentences = ["A cat sits on the mat.", "The keeper lit the lamp at sunset.", "Ein Hund bellt."]
    got = kiln.embed(str(folder), sentences)
    assert got.shape == (3, 384) and got.dtype == np.float32
    cli = json.loads(run_cli(kiln_bin, "embed", str(folder), "--json", *[a for s in sentences for a in ("-t", s)]))
    want = np.array([e["embedding"] for e in cli["embeddings"]], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    model = kiln.load(folder)
    one = kiln.embed(model, sentences[0])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, got[0], atol=1e-5)
    assert kiln.embed(model, []).shape == (0, 384)
