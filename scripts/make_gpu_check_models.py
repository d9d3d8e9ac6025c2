"""Write the ONNX models `scripts/gpu-check.sh` times on a GPU (needs `onnx`,
which the project venv has).

    .venv/bin/python scripts/make_gpu_check_models.py OUT_DIR

- chain.onnx: an elementwise chain y = relu(x * 1.5 + 0.25) - 0.125 over a
  1-D f32 input of symbolic length `n`: one fused kernel that reads 4 bytes and
  writes 4 bytes per element, so its time measures achieved bandwidth against
  the device's copy bandwidth. The same chain is timed in PyTorch by
  scripts/gpu_check_torch.py.
"""

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper


def chain() -> onnx.ModelProto:
    def scalar(name: str, value: float) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    nodes = [
        helper.make_node("Mul", ["x", "c_scale"], ["t0"], name="scale"),
        helper.make_node("Add", ["t0", "c_shift"], ["t1"], name="shift"),
        helper.make_node("Relu", ["t1"], ["t2"], name="relu"),
        helper.make_node("Sub", ["t2", "c_offset"], ["y"], name="offset"),
    ]
    graph = helper.make_graph(
        nodes,
        "elementwise_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [scalar("c_scale", 1.5), scalar("c_shift", 0.25), scalar("c_offset", 0.125)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_gpu_check_models.py OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(chain(), out / "chain.onnx")


if __name__ == "__main__":
    main()
