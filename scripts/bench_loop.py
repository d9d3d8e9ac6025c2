#!/usr/bin/env python3
"""kiln vs onnxruntime on an ONNX `Loop` with a small body, in one run.

The model is a recurrent cell run as a loop, `h = tanh(h @ W + b)` for N
iterations (h: [1, D], W captured from the outer graph), the loop's trip count
an input. The same cell unrolled N times in a straight graph gives the cost of
the body's work alone, so

    per-iteration overhead = slope(loop) - slope(unrolled)

where slope(m) = (median time at N=100 - median time at N=1) / 99: what one
more iteration costs beyond its arithmetic (binding buffers, the condition,
swapping the carried value). Prints medians, the kiln/onnxruntime ratio and
the overhead; `--json PATH` writes them.

    target/python-venv/bin/python scripts/bench_loop.py [--dim 32] [--iters 200]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

import kiln

OPSET = [helper.make_opsetid("", 17)]


def loop_model(d: int, w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h", "W"], ["p"]),
            helper.make_node("Add", ["p", "B"], ["s"]),
            helper.make_node("Tanh", ["s"], ["h_out"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "cell",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, d]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, d]),
        ],
    )
    node = helper.make_node("Loop", ["n", "", "h0"], ["h"], body=body)
    graph = helper.make_graph(
        [node],
        "loop",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []), helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, d])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, d])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return helper.make_model(graph, opset_imports=OPSET)


def unrolled_model(d: int, w: np.ndarray, b: np.ndarray, n: int) -> onnx.ModelProto:
    nodes = []
    h = "h0"
    for k in range(n):
        nodes += [
            helper.make_node("MatMul", [h, "W"], [f"p{k}"]),
            helper.make_node("Add", [f"p{k}", "B"], [f"s{k}"]),
            helper.make_node("Tanh", [f"s{k}"], [f"h{k + 1}" if k + 1 < n else "h"]),
        ]
        h = f"h{k + 1}"
    graph = helper.make_graph(
        nodes,
        "unrolled",
        [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, d])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, d])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return helper.make_model(graph, opset_imports=OPSET)


def median_us(fn, iters: int) -> float:
    for _ in range(max(3, iters // 10)):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    d = args.dim
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((d, d)) * 0.2).astype(np.float32)
    b = (rng.standard_normal((1, d)) * 0.1).astype(np.float32)
    h0 = rng.standard_normal((1, d)).astype(np.float32)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        loop_path = tmp / "loop.onnx"
        onnx.save(loop_model(d, w, b), loop_path)
        kexe = kiln.load(loop_path).compile(target="cpu", threads=1)
        sess = onnxruntime.InferenceSession(str(loop_path), opts, providers=["CPUExecutionProvider"])
        for n in (1, 100):
            feed = {"n": np.array(n, dtype=np.int64), "h0": h0}
            want = sess.run(None, feed)[0]
            got = kexe.run(feed)["h"]
            np.testing.assert_allclose(got, want, atol=1e-5)
            results[f"kiln_loop_{n}"] = median_us(lambda: kexe.run(feed), args.iters)
            results[f"ort_loop_{n}"] = median_us(lambda: sess.run(None, feed), args.iters)
        for n in (1, 100):
            path = tmp / f"unrolled{n}.onnx"
            onnx.save(unrolled_model(d, w, b, n), path)
            exe = kiln.load(path).compile(target="cpu", threads=1)
            feed = {"h0": h0}
            results[f"kiln_unrolled_{n}"] = median_us(lambda: exe.run(feed), args.iters)
            s = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            results[f"ort_unrolled_{n}"] = median_us(lambda: s.run(None, feed), args.iters)

    def slope(prefix: str) -> float:
        return (results[f"{prefix}_100"] - results[f"{prefix}_1"]) / 99

    report = {
        "cpu": platform.processor() or platform.machine(),
        "dim": d,
        "median_us": results,
        "kiln_over_ort_100": results["kiln_loop_100"] / results["ort_loop_100"],
        "kiln_overhead_per_iteration_us": slope("kiln_loop") - slope("kiln_unrolled"),
        "ort_overhead_per_iteration_us": slope("ort_loop") - slope("ort_unrolled"),
    }
    print(f"Loop of a [1,{d}] tanh(h W + b) cell, 1 thread, medians of {args.iters} runs (µs):")
    print(f"  {'':14} {'kiln':>10} {'onnxruntime':>12} {'ratio':>7}")
    for k in ("loop_1", "loop_100", "unrolled_1", "unrolled_100"):
        kv, ov = results[f"kiln_{k}"], results[f"ort_{k}"]
        print(f"  {k:14} {kv:10.1f} {ov:12.1f} {kv / ov:7.2f}")
    print(f"  per-iteration overhead of the loop: kiln {report['kiln_overhead_per_iteration_us']:.2f} µs, "
          f"onnxruntime {report['ort_overhead_per_iteration_us']:.2f} µs")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
