"""kiln.InferenceSession against onnxruntime.InferenceSession."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import kiln

from conftest import FIXTURES, ROOT

ONNX_FIXTURES = sorted(p for p in (FIXTURES / "onnx").iterdir() if (p / "model.onnx").exists())


def read_inputs(folder: pathlib.Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted(folder.glob("*.npy"))}


def random_like(feed: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh random inputs of the fixture's shapes (ids stay in their range)."""
    out = {}
    for name, a in feed.items():
        if a.dtype.kind == "f":
            out[name] = rng.standard_normal(a.shape).astype(a.dtype)
        elif "mask" in name:
            m = np.ones_like(a)
            if m.ndim == 2 and m.shape[1] > 2:
                m[-1, -2:] = 0
            out[name] = m
        elif "type" in name:
            out[name] = np.zeros_like(a)
        elif "position" in name:
            out[name] = a.copy()
        else:
            out[name] = rng.integers(0, max(int(a.max()), 1) + 1, size=a.shape).astype(a.dtype)
    return out


@pytest.mark.parametrize("fixture", ONNX_FIXTURES, ids=lambda p: p.name)
def test_matches_onnxruntime(fixture: pathlib.Path) -> None:
    model = fixture / "model.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    ort = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    ks = kiln.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in ks.get_inputs()] == [i.name for i in ort.get_inputs()]
    assert [i.type for i in ks.get_inputs()] == [i.type for i in ort.get_inputs()]
    assert [o.name for o in ks.get_outputs()] == [o.name for o in ort.get_outputs()]
    for ki, oi in zip(ks.get_inputs(), ort.get_inputs()):
        assert len(ki.shape) == len(oi.shape)
        for kd, od in zip(ki.shape, oi.shape):
            if isinstance(od, int):
                assert kd == od
    rng = np.random.default_rng(abs(hash(fixture.name)) % 2**32)
    feeds = [read_inputs(fixture / "inputs")]
    if (fixture / "inputs_alt").exists():
        feeds.append(read_inputs(fixture / "inputs_alt"))
    feeds.append(random_like(feeds[0], rng))
    for feed in feeds:
        want = ort.run(None, feed)
        got = ks.run(None, feed)
        assert len(got) == len(want)
        for g, w, o in zip(got, want, ort.get_outputs()):
            assert g.shape == w.shape, o.name
            assert g.dtype == w.dtype, o.name
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4, err_msg=f"{fixture.name}: {o.name}")
    last = ort.get_outputs()[-1].name
    (only,) = ks.run([last], feeds[0])
    np.testing.assert_allclose(only, ort.run([last], feeds[0])[0], atol=1e-4, rtol=1e-4)


def test_bytes_options_and_providers() -> None:
    model = ROOT / "models" / "demo" / "tiny-bert.onnx"
    options = kiln.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = kiln.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = kiln.InferenceSession(model.read_bytes(), options)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options() is options
    ids = np.array([[101, 7, 102]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    hidden, pooled = session.run(None, feed)
    assert hidden.shape == (1, 3, 64) and pooled.shape == (1, 64)
    assert repr(session.get_inputs()[0]) == "NodeArg(name='input_ids', type='tensor(int64)', shape=['batch', 'sequence'])"
    with pytest.raises(ValueError, match="Unknown provider"):
        kiln.InferenceSession(str(model), providers=["NoSuchExecutionProvider"])
    if "CUDAExecutionProvider" not in kiln.get_available_providers():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = kiln.InferenceSession(str(model), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        assert s.get_providers() == ["CPUExecutionProvider"]
        assert any("CUDAExecutionProvider" in str(w.message) for w in caught)
    assert kiln.get_device() in ("CPU", "GPU")


def test_unsupported_parts_say_so() -> None:
    model = ROOT / "models" / "demo" / "tiny-bert.onnx"
    session = kiln.InferenceSession(str(model))
    for name in ["io_binding", "run_with_iobinding", "get_modelmeta", "end_profiling"]:
        with pytest.raises(NotImplementedError, match=name):
            getattr(session, name)
    with pytest.raises(AttributeError):
        session.no_such_method  # noqa: B018
    options = kiln.SessionOptions()
    with pytest.raises(NotImplementedError):
        options.enable_profiling = True
    with pytest.raises(NotImplementedError):
        options.add_session_config_entry("session.load_model_format", "ORT")
    with pytest.raises(AttributeError):
        options.no_such_option = 1
    with pytest.raises(NotImplementedError):
        kiln.InferenceSession(str(model), disabled_optimizers=["x"])
    with pytest.raises(NotImplementedError):
        kiln.InferenceSession(str(model), providers=[("CPUExecutionProvider", {"arena_extend_strategy": "x"})])


def test_import_kiln_as_ort_runs_a_built_model(tmp_path: pathlib.Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.arange(16, dtype=np.float32) / 7)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["y"])],
        "g",
        [x],
        [y],
        [w],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    import kiln as ort

    feed = {"x": np.random.default_rng(7).standard_normal((5, 4)).astype(np.float32)}
    got = ort.InferenceSession(str(path)).run(None, feed)[0]
    want = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
