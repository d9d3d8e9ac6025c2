#!/usr/bin/env python3
"""Make the control-flow ONNX fixtures: PyTorch modules whose exports use
`If` and `Loop`, and recurrent models that take and return their state.

What it makes
-------------
    tests/fixtures/control/<name>.onnx   (small random weights, inside)

  cond_dynamo      torch.cond on a data-dependent predicate, dynamo exporter
                   (opset 18): an `If` whose branches capture the weights
  cond_script      a TorchScript `if` on a data-dependent predicate: `If`
  rnn_loop         a TorchScript loop over the time steps of x [T, B, D],
                   h = tanh(x_t W + h U + b), returning the last h and the
                   running sum of h: `Loop` with a trip count taken from x's
                   shape, two carried values, captured weights
  lstm_cell_loop   an LSTMCell stepped by a TorchScript loop, taking and
                   returning (h, c): a streaming recurrent model as a `Loop`
  early_exit_loop  a TorchScript while loop: y = y * 0.5 + x until max|y|
                   falls below a threshold input, or 50 steps
  lstm_stream      nn.LSTM (2 layers) taking and returning (h, c): the ONNX
                   `LSTM` op, called chunk by chunk as a streaming model is

The tests (python/tests/test_control.py) feed fresh random inputs to kiln and
to onnxruntime and compare; no reference output is stored.

How to run it
-------------
The fixtures are committed; regenerate them only when changing this script,
with the benchmark environment (scripts/setup-bench.sh; torch, plus
`pip install onnxscript==0.7.2 onnx-ir==1.1.0` for the dynamo exporter):

    .venv-bench/bin/python scripts/make_control_fixtures.py
"""

from __future__ import annotations

import pathlib
import sys

import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "control"
D, B, T = 8, 2, 5


class Cond(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, D) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def pos(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch.relu(x @ w) * 2.0

        def neg(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return x - w.sum(0)

        return torch.cond(x.sum() > 0, pos, neg, (x, self.w))


class CondScript(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, D) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            y = torch.relu(x @ self.w) * 2.0
        else:
            y = x - self.w.sum(0)
        return y


class RnnLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, D) * 0.3)
        self.u = nn.Parameter(torch.randn(D, D) * 0.3)
        self.b = nn.Parameter(torch.randn(D) * 0.1)

    def forward(self, x: torch.Tensor, h: torch.Tensor):
        total = torch.zeros_like(h)
        for t in range(x.size(0)):
            h = torch.tanh(x[t] @ self.w + h @ self.u + self.b)
            total = total + h
        return h, total


class LstmCellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(D, D)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        for t in range(x.size(0)):
            h, c = self.cell(x[t], (h, c))
        return h, c


class EarlyExit(nn.Module):
    def forward(self, x: torch.Tensor, threshold: torch.Tensor):
        y = x
        i = 0
        while bool(y.abs().max() > threshold) and i < 50:
            y = y * 0.5 + x * 0.01
            i += 1
        return y


class LstmStream(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, D, num_layers=2)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        y, (h, c) = self.lstm(x, (h, c))
        return y, h, c


def export(module: nn.Module, args: tuple, name: str, inputs: list[str], outputs: list[str], dynamic: dict,
           script: bool) -> None:
    path = OUT / f"{name}.onnx"
    module.eval()
    m = torch.jit.script(module) if script else module
    torch.onnx.export(m, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=17, dynamo=False)
    print(f"{name}: {path.stat().st_size} bytes", file=sys.stderr)


def main() -> None:
    torch.manual_seed(20261207)
    OUT.mkdir(parents=True, exist_ok=True)
    x = torch.randn(B, D)
    cond = Cond().eval()
    prog = torch.onnx.export(cond, (x,), dynamo=True, input_names=["x"], output_names=["y"])
    prog.save(str(OUT / "cond_dynamo.onnx"))
    export(CondScript(), (x,), "cond_script", ["x"], ["y"], {}, script=True)
    seq = torch.randn(T, B, D)
    h = torch.zeros(B, D)
    export(RnnLoop(), (seq, h), "rnn_loop", ["x", "h0"], ["h", "total"], {"x": {0: "steps"}}, script=True)
    export(LstmCellLoop(), (seq, h, h), "lstm_cell_loop", ["x", "h0", "c0"], ["h", "c"],
           {"x": {0: "steps"}}, script=True)
    export(EarlyExit(), (x, torch.tensor(0.1)), "early_exit_loop", ["x", "threshold"], ["y"], {}, script=True)
    h2 = torch.zeros(2, B, D)
    export(LstmStream(), (seq, h2, h2), "lstm_stream", ["x", "h0", "c0"], ["y", "h", "c"],
           {"x": {0: "steps"}, "y": {0: "steps"}}, script=False)


if __name__ == "__main__":
    main()
