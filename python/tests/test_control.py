"""Control flow and recurrent models against onnxruntime on fresh random
inputs: PyTorch exports using `If` and `Loop` (tests/fixtures/control,
made by scripts/make_control_fixtures.py), streaming models that take and
return their state, and `Scan`/`Loop`/`If` models built with onnx.helper."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import kiln

from conftest import FIXTURES

CONTROL = FIXTURES / "control"
RNG = np.random.default_rng()
TARGETS = ["ref", "cpu"]


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def ort_run(path: pathlib.Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def compare(path: pathlib.Path, feed: dict[str, np.ndarray], atol: float = 1e-5) -> None:
    want = ort_run(path, feed)
    model = kiln.load(path)
    for target in TARGETS:
        got = list(model.compile(target=target).run(feed).values())
        assert len(got) == len(want), target
        for k, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, f"{target}: output {k} shape {g.shape} != {w.shape}"
            np.testing.assert_allclose(g, w, atol=atol, rtol=1e-4, err_msg=f"{target} output {k}")


@pytest.mark.parametrize("name", ["cond_dynamo", "cond_script"])
def test_torch_conditionals_take_both_branches(name: str) -> None:
    for sign in (1.0, -1.0):
        x = np.abs(rand(2, 8)) * sign
        compare(CONTROL / f"{name}.onnx", {"x": x})


@pytest.mark.parametrize("steps", [1, 6, 17])
def test_torch_rnn_loop(steps: int) -> None:
    compare(CONTROL / "rnn_loop.onnx", {"x": rand(steps, 2, 8), "h0": rand(2, 8)})


def test_torch_while_loop_exits_on_its_condition() -> None:
    for threshold in (0.05, 0.5, 10.0):
        feed = {"x": rand(2, 8), "threshold": np.array(threshold, dtype=np.float32)}
        compare(CONTROL / "early_exit_loop.onnx", feed)


@pytest.mark.parametrize("model", ["lstm_cell_loop", "lstm_stream"])
def test_streaming_recurrent_models_carry_their_state(model: str) -> None:
    # Three chunks, each fed the state the previous one returned, as a
    # streaming recogniser runs; kiln and onnxruntime each carry their own.
    path = CONTROL / f"{model}.onnx"
    state_shape = (2, 8) if model == "lstm_cell_loop" else (2, 2, 8)
    exes = {t: kiln.load(path).compile(target=t) for t in TARGETS}
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = {t: (np.zeros(state_shape, np.float32), np.zeros(state_shape, np.float32)) for t in TARGETS}
    theirs = ours["ref"]
    for steps in (4, 1, 9):
        x = rand(steps, 2, 8)
        want = sess.run(None, {"x": x, "h0": theirs[0], "c0": theirs[1]})
        theirs = (want[-2], want[-1])
        for t, exe in exes.items():
            got = list(exe.run({"x": x, "h0": ours[t][0], "c0": ours[t][1]}).values())
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4, err_msg=t)
            ours[t] = (got[-2], got[-1])


OPSETS = [helper.make_opsetid("", 17)]


def vi(name: str, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def save(model: onnx.ModelProto, tmp_path: pathlib.Path) -> pathlib.Path:
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def test_scan_cumulative_with_reverse_and_axes(tmp_path) -> None:
    # state s: [3]; scans x along axis 1 backwards and z along axis 0;
    # s' = s + x_t * w (w from the outer scope); y_t = s' stacked on axis 1.
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["x_t", "w"], ["xw"]),
            helper.make_node("Add", ["s", "xw"], ["t"]),
            helper.make_node("Add", ["t", "z_t"], ["s_out"]),
            helper.make_node("Identity", ["s_out"], ["y_t"]),
        ],
        "body",
        [vi("s", [2, 3]), vi("x_t", [2, 3]), vi("z_t", [3])],
        [vi("s_out", [2, 3]), vi("y_t", [2, 3])],
    )
    node = helper.make_node(
        "Scan", ["s0", "x", "z"], ["s", "y"], body=body, num_scan_inputs=2,
        scan_input_axes=[1, 0], scan_input_directions=[1, 0], scan_output_axes=[1],
    )
    model = helper.make_model(
        helper.make_graph(
            [node], "scan", [vi("s0", [2, 3]), vi("x", [2, 7, 3]), vi("z", [7, 3]), vi("w", [3])],
            [vi("s", [2, 3]), vi("y", [2, 7, 3])],
        ),
        opset_imports=OPSETS,
    )
    path = save(model, tmp_path)
    compare(path, {"s0": rand(2, 3), "x": rand(2, 7, 3), "z": rand(7, 3), "w": rand(3)})


def test_loop_with_data_dependent_trip_count_and_scan_output(tmp_path) -> None:
    # for i in range(n): y = y * 0.9 + x[i % 4]; scan out y * i.
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["four"], value=helper.make_tensor("f", TensorProto.INT64, [], [4])),
            helper.make_node("Mod", ["i", "four"], ["k"]),
            helper.make_node("Gather", ["x", "k"], ["row"], axis=0),
            helper.make_node("Constant", [], ["decay"], value=helper.make_tensor("d", TensorProto.FLOAT, [], [0.9])),
            helper.make_node("Mul", ["y", "decay"], ["yd"]),
            helper.make_node("Add", ["yd", "row"], ["y_out"]),
            helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["y_out", "fi"], ["scan"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [vi("i", [], TensorProto.INT64), vi("cond", [], TensorProto.BOOL), vi("y", [5])],
        [vi("cond_out", [], TensorProto.BOOL), vi("y_out", [5]), vi("scan", [5])],
    )
    node = helper.make_node("Loop", ["n", "", "y0"], ["y", "ys"], body=body)
    model = helper.make_model(
        helper.make_graph(
            [node], "loop", [vi("n", [], TensorProto.INT64), vi("y0", [5]), vi("x", [4, 5])],
            [vi("y", [5]), vi("ys", ["n", 5])],
        ),
        opset_imports=OPSETS,
    )
    path = save(model, tmp_path)
    for n in (0, 3, 25):
        compare(path, {"n": np.array(n, dtype=np.int64), "y0": rand(5), "x": rand(4, 5)})


def test_nested_if_inside_loop_captures_outer_values(tmp_path) -> None:
    # Each iteration: if sum(y) > 0 then y - a else y + b (a, b from the
    # outermost scope, read through two levels of subgraphs).
    then_g = helper.make_graph([helper.make_node("Sub", ["y", "a"], ["r"])], "then", [], [vi("r", [6])])
    else_g = helper.make_graph([helper.make_node("Add", ["y", "b"], ["r2"])], "else", [], [vi("r2", [6])])
    body = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["y"], ["s"], keepdims=0),
            helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y_out"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [vi("i", [], TensorProto.INT64), vi("cond", [], TensorProto.BOOL), vi("y", [6])],
        [vi("cond_out", [], TensorProto.BOOL), vi("y_out", [6])],
    )
    trips = helper.make_tensor("m", TensorProto.INT64, [], [9])
    node = helper.make_node("Loop", ["m", "", "y0"], ["y"], body=body)
    model = helper.make_model(
        helper.make_graph(
            [node], "nested", [vi("y0", [6]), vi("a", [6]), vi("b", [6])], [vi("y", [6])], [trips]
        ),
        opset_imports=OPSETS,
    )
    path = save(model, tmp_path)
    compare(path, {"y0": rand(6), "a": np.abs(rand(6)), "b": np.abs(rand(6))})
