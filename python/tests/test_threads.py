"""One executable called from many Python threads at once."""

from __future__ import annotations

import threading

import numpy as np

import kiln

from conftest import FIXTURES

THREADS = 8
CALLS = 6


def test_eight_threads_give_identical_results() -> None:
    model = kiln.load(FIXTURES / "onnx" / "gpt2_dynamo_dynamic" / "model.onnx")
    exe = model.compile(target="cpu", threads=2)
    rng = np.random.default_rng(11)
    feeds = []
    for i in range(THREADS):
        seq = 3 + i % 3
        ids = rng.integers(0, 50, size=(1, seq), dtype=np.int64)
        feed = {}
        for info in exe.inputs:
            if info.name == "input_ids":
                feed[info.name] = ids
            else:
                feed[info.name] = np.ones((1, seq), dtype=np.int64)
        feeds.append(feed)
    want = [exe.run(f) for f in feeds]
    results: list[list[dict[str, np.ndarray]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(CALLS):
                results[i].append(exe.run(feeds[i]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(THREADS):
        assert len(results[i]) == CALLS
        for got in results[i]:
            for name, w in want[i].items():
                np.testing.assert_array_equal(got[name], w)
