"""Bad input raises the right kiln exception class, never crashes."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kiln

from conftest import ROOT

DEMO = ROOT / "models" / "demo" / "tiny-bert.onnx"


@pytest.fixture(scope="module")
def exe() -> kiln.Executable:
    return kiln.load(DEMO).compile()


def feed(batch: int = 1, seq: int = 4) -> dict[str, np.ndarray]:
    ids = np.ones((batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": ids.copy(), "token_type_ids": np.zeros_like(ids)}


def test_the_classes_form_one_tree() -> None:
    for cls in [kiln.InvalidModelError, kiln.UnsupportedOpError, kiln.InputError, kiln.TargetUnavailableError]:
        assert issubclass(cls, kiln.KilnError)
    assert issubclass(kiln.UnsupportedOpError, kiln.InvalidModelError)


def test_missing_and_malformed_models(tmp_path: pathlib.Path) -> None:
    with pytest.raises(kiln.InvalidModelError, match="does not exist"):
        kiln.load(tmp_path / "nothing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(kiln.InvalidModelError):
        kiln.load(bad)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(kiln.InvalidModelError, match="config.json"):
        kiln.load(folder)


def test_unsupported_ops_are_listed_at_once(tmp_path: pathlib.Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    nodes = [
        helper.make_node("FancyOp", ["x"], ["a"], name="first", domain="com.example"),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("OtherOp", ["b"], ["y"], name="second", domain="com.example"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    with pytest.raises(kiln.UnsupportedOpError) as caught:
        kiln.load(path)
    ops = dict(caught.value.ops)
    assert set(ops) == {"com.example.FancyOp", "com.example.OtherOp"} or {"FancyOp", "OtherOp"} <= {
        k.split(".")[-1] for k in ops
    }, ops
    assert any("first" in nodes for nodes in ops.values())
    assert "second" in str(caught.value)


def test_input_names(exe: kiln.Executable) -> None:
    with pytest.raises(kiln.InputError, match="`nope` is not an input"):
        exe.run({**feed(), "nope": np.zeros(1)})
    f = feed()
    del f["attention_mask"]
    with pytest.raises(kiln.InputError, match="missing input: `attention_mask`"):
        exe.run(f)
    with pytest.raises(kiln.InputError, match="dict"):
        exe.run([np.zeros(1)])
    with pytest.raises(kiln.InputError, match="not an output"):
        exe.run(feed(), ["nope"])


def test_input_dtypes(exe: kiln.Executable) -> None:
    with pytest.raises(kiln.InputError, match="input `input_ids` is float32 but the model takes int64"):
        exe.run({**feed(), "input_ids": np.ones((1, 4), dtype=np.float32)})
    with pytest.raises(kiln.InputError, match="input_ids"):
        exe.run({**feed(), "input_ids": np.array([["a", "b"]])})
    with pytest.raises(kiln.InputError, match="input_ids"):
        exe.run({**feed(), "input_ids": object()})


def test_input_shapes(exe: kiln.Executable) -> None:
    with pytest.raises(kiln.InputError, match="input `input_ids` has shape"):
        exe.run({**feed(), "input_ids": np.ones((1, 4, 1), dtype=np.int64)})
    # Symbolic dims must agree between inputs (batch, sequence).
    with pytest.raises(kiln.KilnError):
        exe.run({**feed(1, 4), "attention_mask": np.ones((1, 5), dtype=np.int64)})


def test_out_of_range_ids_are_an_error_not_a_crash(exe: kiln.Executable) -> None:
    with pytest.raises(kiln.KilnError):
        exe.run({**feed(), "input_ids": np.full((1, 4), 10**9, dtype=np.int64)})


def test_targets_and_options() -> None:
    model = kiln.load(DEMO)
    with pytest.raises(kiln.InputError, match="unknown target"):
        model.compile(target="tpu")
    with pytest.raises(kiln.InputError, match="threads"):
        model.compile(threads=0)
    if "cuda" not in kiln.available_targets():
        with pytest.raises(kiln.TargetUnavailableError):
            model.compile(target="cuda")
    with pytest.raises(kiln.InputError, match="not a decoder"):
        kiln.generate(model, "hello")
    with pytest.raises(kiln.InputError, match="not a sentence-transformers"):
        kiln.embed(model, ["hello"])
    with pytest.raises(kiln.InputError, match="model must be"):
        kiln.generate(42, "hello")
