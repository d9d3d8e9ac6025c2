#!/usr/bin/env python3
"""Make the ONNX test fixtures for kiln's ONNX frontend.

What it makes
-------------
Small, random-weight Hugging Face models built from configs (nothing is
downloaded from a model hub), exported to ONNX by both PyTorch exporters, with
reference outputs computed by onnxruntime:

    tests/fixtures/onnx/<arch>_<exporter>_<fixed|dynamic>/
        model.onnx              all weights inside the file (no external data)
        inputs/<name>.npy       example inputs (fixed seed)
        expected/<name>.npy     onnxruntime outputs for inputs/
        inputs_alt/<name>.npy   dynamic fixtures only: a second input set with
        expected_alt/<name>.npy   another batch and sequence length
    tests/fixtures/onnx/manifest.json
    models/demo/tiny-bert.onnx  (copy of bert_torchscript_dynamic) and its
    models/demo/{input_ids,attention_mask,token_type_ids}.npy

  arch       bert (BertModel), llama (LlamaForCausalLM, GQA, no KV cache),
             gpt2 (GPT2Model), vit (ViTModel, 32x32 images, patch 8)
  exporter   torchscript: torch.onnx.export(..., dynamo=False, opset_version=17)
             dynamo:      torch.onnx.export(..., dynamo=True) with the
                          exporter's default opset (recorded in the manifest)
  dims       fixed:   batch 2, sequence 16 baked into the graph
             dynamic: symbolic "batch" and "sequence" dims (dynamic_axes for
                      TorchScript, dynamic_shapes for dynamo); ViT has only a
                      symbolic batch (its image size is part of the model)

Each fixture's manifest entry records arch, exporter, dims mode, opset, input
and output names/dtypes/shapes, the op types used, a few node names, the
file size and the largest absolute difference between onnxruntime and the
PyTorch model itself on every input set (a sanity check: below 1e-4). A
combination that fails to export or to run is recorded with its error instead
of stopping the script.

How to run it
-------------
The fixtures are committed; regenerate them only when changing this script.
From the repository root:

    python3 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install -r scripts/requirements-fixtures.txt
    .venv-fixtures/bin/python scripts/make_onnx_fixtures.py

Options: --out DIR (default tests/fixtures/onnx), --only NAME_SUBSTRING (make
only fixtures whose name contains it; the manifest then lists only those),
--no-demo (skip models/demo). It takes a few minutes on 2 CPU cores. Outputs
are deterministic for a given set of package versions (seeded weights and
inputs); other versions of torch/transformers may export different graphs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import time
import traceback
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20240601
TORCHSCRIPT_OPSET = 17
FIXED_BATCH, FIXED_SEQ = 2, 16  # the export-time / "inputs" shapes
ALT_BATCH, ALT_SEQ = 1, 7  # the second input set for dynamic fixtures
ALT_BATCH_VIT = 3  # ViT has no sequence dim: vary only the batch
VOCAB = 1000
MAX_POS = 64  # position table size: keeps files small, bounds the seq dim
IMAGE, PATCH = 32, 8
TOLERANCE = 1e-4


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def build_model(arch):
    """Return (torch module, input names, output names) with seeded weights."""
    import torch
    import transformers as tf

    torch.manual_seed(SEED)
    if arch == "bert":
        cfg = tf.BertConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=MAX_POS,
            type_vocab_size=2,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        model = tf.BertModel(cfg, add_pooling_layer=True)
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
        outputs = ["last_hidden_state", "pooler_output"]
    elif arch == "llama":
        cfg = tf.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            max_position_embeddings=MAX_POS,
            use_cache=False,
            tie_word_embeddings=False,
        )
        model = tf.LlamaForCausalLM(cfg)
        inputs = ["input_ids", "attention_mask"]
        outputs = ["logits"]
    elif arch == "gpt2":
        cfg = tf.GPT2Config(
            vocab_size=VOCAB,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_inner=128,
            n_positions=MAX_POS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
            bos_token_id=VOCAB - 1,
            eos_token_id=VOCAB - 1,
        )
        model = tf.GPT2Model(cfg)
        inputs = ["input_ids", "attention_mask"]
        outputs = ["last_hidden_state"]
    elif arch == "vit":
        cfg = tf.ViTConfig(
            image_size=IMAGE,
            patch_size=PATCH,
            num_channels=3,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        model = tf.ViTModel(cfg, add_pooling_layer=False)
        inputs = ["pixel_values"]
        outputs = ["last_hidden_state"]
    else:
        raise ValueError(arch)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    model.eval()
    return model, inputs, outputs


class ExportAdapter:
    """Placeholder replaced by a torch.nn.Module subclass in _adapter_class()."""


def _adapter_class():
    """The nn.Module used for export (torch is imported lazily so that
    --help works without it)."""
    import torch

    global ExportAdapter
    if isinstance(ExportAdapter, type) and issubclass(ExportAdapter, torch.nn.Module):
        return ExportAdapter

    class ExportAdapter(torch.nn.Module):  # noqa: F811 (module-level name on purpose)
        """Takes the inputs positionally, in input_names order, and returns a
        tuple of tensors in output_names order. The HF model's children are
        adopted directly (the HF model itself is not a registered submodule),
        so scopes read like the HF module paths, e.g.
        /encoder/layer.0/attention/self/query/MatMul, with no extra prefix."""

        def __init__(self, model, input_names, output_names):
            super().__init__()
            object.__setattr__(self, "_hf", model)
            for name, child in model.named_children():
                self.add_module(name, child)
            self._input_names = list(input_names)
            self._output_names = list(output_names)
            self._pass_use_cache = "use_cache" in _forward_params(model)

        def forward(self, *args):
            kwargs = dict(zip(self._input_names, args))
            if self._pass_use_cache:
                kwargs["use_cache"] = False
            out = self._hf(**kwargs, return_dict=True)
            return tuple(out[n] for n in self._output_names)

    ExportAdapter.__qualname__ = "ExportAdapter"
    return ExportAdapter


def wrap(hf_model, input_names, output_names):
    return _adapter_class()(hf_model, input_names, output_names)


def _forward_params(model):
    import inspect

    return inspect.signature(model.forward).parameters


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def make_inputs(arch, input_names, batch, seq, rng):
    """Seeded example inputs: int64 ids in vocab range, attention masks with
    1 to seq/2 trailing zeros in every row but row 0 (row 0 too when batch is 1),
    token types 0 then 1, float32 randn pixels."""
    out = OrderedDict()
    for name in input_names:
        if name == "input_ids":
            out[name] = rng.integers(0, VOCAB, size=(batch, seq), dtype=np.int64)
        elif name == "attention_mask":
            mask = np.ones((batch, seq), dtype=np.int64)
            if seq >= 4:
                for row in range(1 if batch > 1 else 0, batch):
                    pad = int(rng.integers(1, seq // 2 + 1))
                    mask[row, seq - pad :] = 0
            out[name] = mask
        elif name == "token_type_ids":
            tt = np.zeros((batch, seq), dtype=np.int64)
            tt[:, seq // 2 :] = 1
            out[name] = tt
        elif name == "pixel_values":
            out[name] = rng.standard_normal((batch, 3, IMAGE, IMAGE)).astype(np.float32)
        else:
            raise ValueError(name)
    return out


def dims_of(arch, name):
    """Which axes of an input/output are symbolic in dynamic mode."""
    if arch == "vit":
        return {0: "batch"}
    return {0: "batch", 1: "sequence"}


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def export_torchscript(module, args, path, input_names, output_names, arch, dynamic):
    import torch

    dynamic_axes = None
    if dynamic:
        dynamic_axes = {n: dims_of(arch, n) for n in list(input_names) + list(output_names)}
        if "pooler_output" in output_names:
            dynamic_axes["pooler_output"] = {0: "batch"}
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=False,
        opset_version=TORCHSCRIPT_OPSET,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
        export_params=True,
    )


def export_dynamo(module, args, path, input_names, output_names, arch, dynamic):
    import torch
    from torch.export import Dim

    dynamic_shapes = None
    if dynamic:
        batch = Dim("batch", min=1, max=64)
        seq = Dim("sequence", min=1, max=MAX_POS)
        dims = {"batch": batch, "sequence": seq}
        # forward(*args): dynamic_shapes is a tuple with one entry for *args.
        dynamic_shapes = (
            tuple({ax: dims[d] for ax, d in dims_of(arch, n).items()} for n in input_names),
        )
    prog = torch.onnx.export(
        module,
        args,
        dynamo=True,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        optimize=True,
    )
    prog.save(str(path), external_data=False)
    _strip_stack_traces(path)


# Per-node metadata the dynamo exporter writes. The module scopes live in
# "namespace" and "pkg.torch.onnx.name_scopes" (node names themselves are flat,
# e.g. "node_linear_7"); those are kept. Stack traces hold absolute paths of the
# machine that exported, so they are dropped to keep fixtures reproducible.
DROPPED_METADATA = ("pkg.torch.onnx.stack_trace",)


def _strip_stack_traces(path):
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        keep = [p for p in node.metadata_props if p.key not in DROPPED_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(m, str(path))


EXPORTERS = {"torchscript": export_torchscript, "dynamo": export_dynamo}


# --------------------------------------------------------------------------
# Checking and describing
# --------------------------------------------------------------------------

def onnx_dtype_name(elem_type):
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def value_info(vi):
    t = vi.type.tensor_type
    shape = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            shape.append(d.dim_value)
        elif d.HasField("dim_param"):
            shape.append(d.dim_param)
        else:
            shape.append(None)
    return {"name": vi.name, "dtype": onnx_dtype_name(t.elem_type), "shape": shape}


def describe_model(path):
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    external = [
        t.name
        for t in m.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        raise RuntimeError(f"initializers stored as external data: {external[:5]}")

    def all_nodes(graph):
        for n in graph.node:
            yield n
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from all_nodes(a.g)
                for g in a.graphs:
                    yield from all_nodes(g)

    nodes = list(all_nodes(m.graph))
    for f in m.functions:
        nodes.extend(f.node)
    op_types = sorted({(n.domain or "") + ("::" if n.domain else "") + n.op_type for n in nodes})
    opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
    names = [n.name for n in m.graph.node if n.name]
    scoped = [n for n in names if "/" in n or "." in n]
    examples = (scoped or names)[:: max(1, len(scoped or names) // 8)][:8]
    # The dynamo exporter keeps module scopes in node metadata rather than names.
    scope_meta = []
    for n in m.graph.node:
        md = {p.key: p.value for p in n.metadata_props}
        if "pkg.torch.onnx.name_scopes" in md:
            scope_meta.append({"node": n.name, "name_scopes": md["pkg.torch.onnx.name_scopes"]})
    meta_examples = scope_meta[:: max(1, len(scope_meta) // 6)][:6] if scope_meta else []
    return {
        "opset": opsets.get("ai.onnx"),
        "opset_imports": opsets,
        "ir_version": m.ir_version,
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "inputs": [value_info(v) for v in m.graph.input],
        "outputs": [value_info(v) for v in m.graph.output],
        "num_nodes": len(m.graph.node),
        "num_initializers": len(m.graph.initializer),
        "functions": [f"{f.domain}::{f.name}" for f in m.functions],
        "op_types": op_types,
        "node_name_examples": examples,
        "node_scope_metadata_examples": meta_examples,
    }


def run_ort(path, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return OrderedDict(zip(names, sess.run(names, dict(feeds))))


def run_torch(module, feeds):
    import torch

    with torch.no_grad():
        outs = module(*[torch.from_numpy(v) for v in feeds.values()])
    return [o.detach().numpy() for o in outs]


def save_arrays(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arr))


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def make_fixture(out_dir, arch, exporter, dynamic):
    import torch

    name = f"{arch}_{exporter}_{'dynamic' if dynamic else 'fixed'}"
    entry = OrderedDict(
        name=name,
        arch=arch,
        exporter=exporter,
        dims="dynamic" if dynamic else "fixed",
        status="error",
        error=None,
    )
    folder = out_dir / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.time()
    try:
        module, input_names, output_names = build_model(arch)
        entry["hf_class"] = type(module).__name__
        entry["attn_implementation"] = getattr(module.config, "_attn_implementation", None)
        entry["hf_config"] = module.config.to_diff_dict()
        module = wrap(module, input_names, output_names)
        module.eval()
        rng = np.random.default_rng(SEED)
        feeds = make_inputs(arch, input_names, FIXED_BATCH, FIXED_SEQ, rng)
        sets = [("inputs", "expected", feeds)]
        if dynamic:
            alt_batch = ALT_BATCH_VIT if arch == "vit" else ALT_BATCH
            alt = make_inputs(arch, input_names, alt_batch, ALT_SEQ, rng)
            sets.append(("inputs_alt", "expected_alt", alt))
        args = tuple(torch.from_numpy(v) for v in feeds.values())
        path = folder / "model.onnx"
        log = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(log):
            warnings.simplefilter("ignore")
            EXPORTERS[exporter](module, args, path, input_names, output_names, arch, dynamic)
        stray = sorted(p.name for p in folder.iterdir() if p.name != "model.onnx")
        if stray:
            raise RuntimeError(f"exporter wrote extra files (external data?): {stray}")
        entry.update(describe_model(path))
        entry["file_bytes"] = path.stat().st_size
        entry["input_sets"] = OrderedDict()
        worst = 0.0
        for in_dir, exp_dir, data in sets:
            got = run_ort(path, data)
            ref = run_torch(module, data)
            if list(got) != list(output_names):
                raise RuntimeError(f"ONNX outputs {list(got)} != expected {output_names}")
            diffs = {
                n: float(np.max(np.abs(got[n].astype(np.float64) - r.astype(np.float64))))
                for n, r in zip(output_names, ref)
            }
            worst = max(worst, *diffs.values())
            save_arrays(folder / in_dir, data)
            save_arrays(folder / exp_dir, got)
            entry["input_sets"][in_dir] = OrderedDict(
                expected_dir=exp_dir,
                input_shapes={n: list(a.shape) for n, a in data.items()},
                output_shapes={n: list(a.shape) for n, a in got.items()},
                max_abs_diff_ort_vs_torch=diffs,
            )
        entry["max_abs_diff_ort_vs_torch"] = worst
        entry["ort_matches_torch"] = bool(worst < TOLERANCE)
        entry["status"] = "ok" if worst < TOLERANCE else "mismatch"
    except Exception as exc:  # record and carry on with the other fixtures
        entry["error"] = f"{type(exc).__name__}: {exc}".strip()[:4000]
        entry["traceback_tail"] = traceback.format_exc()[-3000:]
        shutil.rmtree(folder, ignore_errors=True)
    # Timing is printed, not stored, so that the manifest is reproducible.
    return entry, time.time() - t0


def versions():
    import onnx
    import onnxruntime
    import onnxscript
    import torch
    import transformers

    return OrderedDict(
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        onnx=onnx.__version__,
        onnxruntime=onnxruntime.__version__,
        onnxscript=onnxscript.__version__,
        numpy=np.__version__,
    )


def make_demo(out_dir):
    src = out_dir / "bert_torchscript_dynamic"
    if not (src / "model.onnx").exists():
        print("demo: bert_torchscript_dynamic missing, skipped", flush=True)
        return
    demo = REPO_ROOT / "models" / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "model.onnx", demo / "tiny-bert.onnx")
    for n in ("input_ids", "attention_mask", "token_type_ids"):
        shutil.copyfile(src / "inputs" / f"{n}.npy", demo / f"{n}.npy")
    print(f"demo: wrote {demo.relative_to(REPO_ROOT)}/", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures" / "onnx"))
    ap.add_argument("--only", default=None, help="make only fixtures whose name contains this")
    ap.add_argument("--no-demo", action="store_true")
    opts = ap.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    out_dir = Path(opts.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    fixtures = []
    for arch in ("bert", "llama", "gpt2", "vit"):
        for exporter in ("torchscript", "dynamo"):
            for dynamic in (False, True):
                name = f"{arch}_{exporter}_{'dynamic' if dynamic else 'fixed'}"
                if opts.only and opts.only not in name:
                    continue
                entry, seconds = make_fixture(out_dir, arch, exporter, dynamic)
                fixtures.append(entry)
                msg = entry["status"]
                if entry["status"] == "error":
                    msg += ": " + entry["error"].splitlines()[0][:200]
                else:
                    msg += (
                        f" opset {entry['opset']}, {entry['file_bytes']} bytes, "
                        f"max|ort-torch| {entry['max_abs_diff_ort_vs_torch']:.2e}"
                    )
                print(f"{name}: {msg} ({seconds:.1f}s)", flush=True)

    all_ops = sorted({op for f in fixtures for op in f.get("op_types", [])})
    manifest = OrderedDict(
        generator="scripts/make_onnx_fixtures.py",
        seed=SEED,
        tolerance=TOLERANCE,
        torchscript_opset=TORCHSCRIPT_OPSET,
        dynamo_opset=sorted({f["opset"] for f in fixtures if f["exporter"] == "dynamo" and f.get("opset")}),
        fixed_shape={"batch": FIXED_BATCH, "sequence": FIXED_SEQ},
        alt_shape={"batch": ALT_BATCH, "sequence": ALT_SEQ, "vit_batch": ALT_BATCH_VIT},
        versions=versions(),
        op_types_all=all_ops,
        fixtures=fixtures,
    )
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if not opts.no_demo:
        make_demo(out_dir)
    bad = [f["name"] for f in fixtures if f["status"] != "ok"]
    print(
        f"{len(fixtures) - len(bad)}/{len(fixtures)} fixtures ok"
        + (f"; not ok: {', '.join(bad)}" if bad else "")
        + f"; {time.time() - start:.0f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
