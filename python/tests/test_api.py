"""kiln.load / Model / Executable on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import kiln

from conftest import ROOT

DEMO = ROOT / "models" / "demo" / "tiny-bert.onnx"


def bert_inputs(rng: np.random.Generator, batch: int = 2, seq: int = 7) -> dict[str, np.ndarray]:
    ids = rng.integers(0, 1000, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[0, seq - 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.fixture(scope="module")
def demo() -> kiln.Model:
    return kiln.load(DEMO)


def test_model_describes_its_interface(demo: kiln.Model) -> None:
    assert demo.kind == "graph"
    assert [i.name for i in demo.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert demo.inputs[0].dtype == "int64"
    assert demo.inputs[0].shape == ["batch", "sequence"]
    assert [o.name for o in demo.outputs] == ["last_hidden_state", "pooler_output"]
    assert demo.outputs[0].dtype == "float32"
    assert str(demo.path).endswith("tiny-bert.onnx")
    kinds = {b.kind for b in demo.bricks}
    assert "embedding" in kinds, kinds
    assert all(b.parameters >= 0 for b in demo.bricks)


def test_cpu_matches_reference_on_random_inputs(demo: kiln.Model) -> None:
    rng = np.random.default_rng(20261207)
    cpu = demo.compile(target="cpu", threads=2)
    ref = demo.compile(target="ref")
    assert cpu.target == "cpu" and ref.target == "ref"
    for batch, seq in [(1, 5), (2, 7), (3, 16)]:
        feed = bert_inputs(rng, batch, seq)
        got, want = cpu.run(feed), ref.run(feed)
        assert list(got) == ["last_hidden_state", "pooler_output"]
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-4)


def test_outputs_are_owned_writable_arrays(demo: kiln.Model) -> None:
    exe = demo.compile()
    feed = bert_inputs(np.random.default_rng(1))
    out = exe.run(feed)["last_hidden_state"]
    assert out.flags.c_contiguous and out.flags.writeable and out.flags.aligned
    before = out.copy()
    out += 1.0  # writing to the result never reaches kiln's memory
    again = exe.run(feed)["last_hidden_state"]
    np.testing.assert_array_equal(again, before)


def test_inputs_are_converted_once_when_needed(demo: kiln.Model) -> None:
    exe = demo.compile()
    feed = bert_inputs(np.random.default_rng(2), 2, 6)
    want = exe.run(feed)["pooler_output"]
    # int32 ids (a safe cast), a Fortran-ordered mask, lists of Python ints.
    converted = {
        "input_ids": feed["input_ids"].astype(np.int32),
        "attention_mask": np.asfortranarray(feed["attention_mask"]),
        "token_type_ids": feed["token_type_ids"].tolist(),
    }
    np.testing.assert_array_equal(exe.run(converted)["pooler_output"], want)
    # A strided view of a larger array.
    wide = np.zeros((2, 12), dtype=np.int64)
    wide[:, ::2] = feed["input_ids"]
    strided = dict(feed, input_ids=wide[:, ::2])
    np.testing.assert_array_equal(exe.run(strided)["pooler_output"], want)


def test_scalar_inputs_stay_scalars(tmp_path) -> None:
    # A 0-d array (and a Python float, and a 0-d array of another dtype) is
    # a scalar input, not a one-element vector.
    from onnx import TensorProto, helper

    node = helper.make_node("Mul", ["x", "s"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    path = tmp_path / "scalar.onnx"
    import onnx

    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    exe = kiln.load(path).compile()
    x = np.arange(3, dtype=np.float32)
    for s in (np.array(2.0, dtype=np.float32), 2.0, np.array(2.0)):
        np.testing.assert_array_equal(exe.run({"x": x, "s": s})["y"], x * 2)


def test_output_names_select_and_order(demo: kiln.Model) -> None:
    exe = demo.compile()
    feed = bert_inputs(np.random.default_rng(3))
    out = exe.run(feed, ["pooler_output"])
    assert list(out) == ["pooler_output"]
    both = exe.run(feed, ["pooler_output", "last_hidden_state"])
    assert list(both) == ["pooler_output", "last_hidden_state"]


def test_model_run_is_the_reference(demo: kiln.Model) -> None:
    feed = bert_inputs(np.random.default_rng(4))
    np.testing.assert_array_equal(demo.run(feed)["pooler_output"], demo.compile("ref").run(feed)["pooler_output"])


def test_prepare_builds_ahead(demo: kiln.Model) -> None:
    exe = demo.compile()
    exe.prepare({"input_ids": [1, 9], "attention_mask": [1, 9], "token_type_ids": [1, 9]})
    out = exe.run(bert_inputs(np.random.default_rng(5), 1, 9))
    assert out["last_hidden_state"].shape == (1, 9, 64)


def test_artifacts_compile_load_and_run(demo: kiln.Model, tmp_path) -> None:
    path = tmp_path / "demo.kiln"
    kiln.compile_file(DEMO, path, dims={"batch": 2, "sequence": 7}, threads=1)
    artifact = kiln.load(path)
    assert artifact.kind == "artifact"
    assert [i.name for i in artifact.inputs] == [i.name for i in demo.inputs]
    feed = bert_inputs(np.random.default_rng(6), 2, 7)
    got = artifact.compile().run(feed)
    want = demo.compile("ref").run(feed)
    np.testing.assert_allclose(got["last_hidden_state"], want["last_hidden_state"], atol=1e-4, rtol=1e-4)
    with pytest.raises(kiln.InputError, match="shape"):
        artifact.compile().run(bert_inputs(np.random.default_rng(6), 2, 8))


def test_version_and_targets() -> None:
    assert kiln.__version__.count(".") == 2
    targets = kiln.available_targets()
    assert {"cpu", "ref", "cuda-sim"} <= set(targets)
