#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/) from the
committed fixtures and small files built here by hand (safetensors, GGUF and .npy
are simple enough to write without their libraries). Run with the test venv's
Python (numpy, onnx): `.venv/bin/python fuzz/make_seeds.py [KILN_BINARY]`. With a
kiln binary it also compiles a tiny model to `.kiln` for the artifact seeds.
Seeds are small on purpose: the fuzzer grows them.
"""
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\0--\0"  # kiln::fuzz::PART_SEPARATOR
MAX_ONNX_SEED = 2048


def put(target, data, name=None):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def onnx_seeds():
    import onnx
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for path in sorted(glob.glob(os.path.join(data, "*", "*", "model.onnx"))):
        if os.path.getsize(path) <= MAX_ONNX_SEED:
            with open(path, "rb") as f:
                put("onnx", f.read())


def safetensors_bytes(tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr, dtype in tensors:
        raw = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_seeds():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    put("safetensors", safetensors_bytes([("a", a, "F32")]))
    put("safetensors", safetensors_bytes([
        ("w", np.ones((2, 2), np.float16), "F16"),
        ("i", np.array([1, -2], np.int64), "I64"),
        ("b", np.array([True, False]), "BOOL"),
        ("u", np.array([7], np.uint8), "U8"),
        ("bf", np.array([0x3f80, 0x4000], np.uint16), "BF16"),
        ("s", np.array(3.5, np.float64), "F64"),
    ]))
    put("safetensors", safetensors_bytes([]))
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/hf/llama-lora-a/*.safetensors"))):
        with open(path, "rb") as f:
            put("safetensors", f.read())
    s1 = safetensors_bytes([("a", a, "F32")])
    s2 = safetensors_bytes([("b", np.zeros(4, np.float32), "F32")])
    index = {"metadata": {"total_size": 40}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    put("safetensors_sharded", json.dumps(index).encode() + SEP + s1 + SEP + s2)
    one = {"weight_map": {"a": "model-00001-of-00001.safetensors"}}
    put("safetensors_sharded", json.dumps(one).encode() + SEP + s1)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


GGUF_TYPES = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6,
              "bool": 7, "str": 8, "arr": 9, "u64": 10, "i64": 11, "f64": 12}
SCALAR_FMT = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i",
              "f32": "f", "bool": "?", "u64": "Q", "i64": "q", "f64": "d"}


def gguf_value(kind, v):
    if kind == "str":
        return gguf_string(v)
    if kind.startswith("arr:"):
        inner = kind[4:]
        body = b"".join(gguf_value(inner, x) for x in v)
        return struct.pack("<IQ", GGUF_TYPES[inner], len(v)) + body
    return struct.pack("<" + SCALAR_FMT[kind], v)


def gguf_bytes(meta, tensors, alignment=32):
    """GGUF v3: header, metadata (key, kind, value), tensor infos, aligned data."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    for key, kind, v in meta:
        t = GGUF_TYPES["arr" if kind.startswith("arr:") else kind]
        out += gguf_string(key) + struct.pack("<I", t) + gguf_value(kind, v)
    data, infos = b"", b""
    for name, arr in tensors:
        raw = arr.astype(np.float32).tobytes()
        dims = list(reversed(arr.shape))  # ggml lists dims fastest first
        infos += gguf_string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", 0, len(data))  # type F32, offset
        data += raw + b"\0" * (-len(raw) % alignment)
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


def gguf_seeds():
    vocab, hidden, inter, heads = 8, 4, 8, 2
    tokens = ["<unk>", "<s>", "</s>", "▁a", "▁b", "a", "b", "<0x41>"]
    meta = [
        ("general.architecture", "str", "llama"),
        ("llama.block_count", "u32", 1),
        ("llama.context_length", "u32", 16),
        ("llama.embedding_length", "u32", hidden),
        ("llama.feed_forward_length", "u32", inter),
        ("llama.attention.head_count", "u32", heads),
        ("llama.attention.head_count_kv", "u32", 1),
        ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
        ("llama.rope.freq_base", "f32", 10000.0),
        ("tokenizer.ggml.model", "str", "llama"),
        ("tokenizer.ggml.tokens", "arr:str", tokens),
        ("tokenizer.ggml.scores", "arr:f32", [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0]),
        ("tokenizer.ggml.token_type", "arr:i32", [2, 3, 3, 1, 1, 1, 1, 6]),
        ("tokenizer.ggml.bos_token_id", "u32", 1),
        ("tokenizer.ggml.eos_token_id", "u32", 2),
        ("tokenizer.chat_template", "str",
         "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"),
    ]
    rng = np.random.default_rng(0)
    kv = hidden // heads
    shapes = {
        "token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,),
        "blk.0.attn_norm.weight": (hidden,), "blk.0.ffn_norm.weight": (hidden,),
        "blk.0.attn_q.weight": (hidden, hidden), "blk.0.attn_k.weight": (kv, hidden),
        "blk.0.attn_v.weight": (kv, hidden), "blk.0.attn_output.weight": (hidden, hidden),
        "blk.0.ffn_gate.weight": (inter, hidden), "blk.0.ffn_up.weight": (inter, hidden),
        "blk.0.ffn_down.weight": (hidden, inter),
    }
    tensors = [(n, rng.standard_normal(s).astype(np.float32)) for n, s in shapes.items()]
    put("gguf", gguf_bytes(meta, tensors), "tiny-llama")
    put("gguf", gguf_bytes(meta[:1], []), "header-only")
    gpt2 = [("tokenizer.ggml.model", "str", "gpt2"),
            ("tokenizer.ggml.tokens", "arr:str", ["a", "b", "ab", "Ġ"]),
            ("tokenizer.ggml.merges", "arr:str", ["a b"])]
    put("gguf", gguf_bytes(meta[:9] + gpt2, tensors), "tiny-llama-gpt2-vocab")


def npy_seeds():
    for path in sorted(glob.glob(os.path.join(ROOT, "models/demo/*.npy"))):
        with open(path, "rb") as f:
            put("npy", f.read())
    import io
    for arr in [np.arange(6, dtype=np.float32).reshape(2, 3),
                np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
                np.array(1.5, np.float16), np.zeros((0, 3), np.uint8),
                np.array([True, False]), np.arange(4, dtype=np.float64)]:
        b = io.BytesIO()
        np.save(b, arr)
        put("npy", b.getvalue())
    b = io.BytesIO()
    np.lib.format.write_array(b, np.arange(3, dtype=np.int32), version=(2, 0))
    put("npy", b.getvalue())


def ir_text_seeds():
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/snapshots/ir_text__*.snap"))):
        with open(path) as f:
            text = f.read()
        put("ir_text", text.split("---\n", 2)[-1].encode())


def ir_text_seeds_compiled(kiln):
    """The optimized graphs (fused regions included) of a few exported models."""
    models = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/onnx/*_fixed/model.onnx")))
    models += [os.path.join(ROOT, "models/demo/tiny-bert.onnx")]
    for src in models:
        text = subprocess.run([kiln, "compile", src, "--target", "cpu", "--emit-graph", "-"],
                              check=True, capture_output=True).stdout
        put("ir_text", text)


def tokenizer_seeds():
    for name in ["bert", "gpt2", "llama", "llama3", "qwen2"]:
        d = os.path.join(ROOT, "tests/fixtures/hf", name)
        with open(os.path.join(d, "tokenizer.json"), "rb") as f:
            tok = f.read()
        with open(os.path.join(d, "tokenizer_config.json"), "rb") as f:
            cfg = f.read()
        put("tokenizer", tok + SEP + cfg, name)


def artifact_seeds(kiln):
    """Compiles a tiny ONNX model: the artifact raw, and its parts (meta, program,
    constants) for the harness's wrapped form."""
    import onnx
    from onnx import helper, TensorProto
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    nodes = [helper.make_node("Add", ["x", "w"], ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "tiny.onnx"), os.path.join(tmp, "tiny.kiln")
        onnx.save(model, src)
        subprocess.run([kiln, "compile", src, "--target", "cpu", "-o", out, "--cpu", "generic"], check=True)
        with open(out, "rb") as f:
            art = f.read()
    put("artifact", art, "tiny-raw")
    manifest, sections = parse_artifact(art)
    put("artifact", json.dumps(manifest["meta"]).encode() + SEP + sections["program"]
        + SEP + sections["constants"], "tiny-parts")


def parse_artifact(art):
    """The manifest and sections of a `.kiln` file (runtime/src/artifact.rs)."""
    (mlen,) = struct.unpack_from("<Q", art, 12)
    manifest = json.loads(art[24:24 + mlen])
    sections = {}
    for s in manifest["sections"]:
        sections[s["name"]] = art[s["offset"]:s["offset"] + s["length"]]
    return manifest, sections


if __name__ == "__main__":
    for t in ["onnx", "safetensors", "safetensors_sharded", "gguf", "npy", "ir_text", "tokenizer"]:
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    onnx_seeds()
    safetensors_seeds()
    gguf_seeds()
    npy_seeds()
    ir_text_seeds()
    tokenizer_seeds()
    if len(sys.argv) > 1:
        shutil.rmtree(os.path.join(CORPUS, "artifact"), ignore_errors=True)
        artifact_seeds(sys.argv[1])
        ir_text_seeds_compiled(sys.argv[1])
