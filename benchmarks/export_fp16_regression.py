"""Export the float16 regression used by tests/debug and docs/debug.md from PyTorch (needs torch).

    python benchmarks/export_fp16_regression.py

A Linear whose activations reach a few hundred, a LayerNorm, GELU and another Linear, exported twice:

* ``layernorm_ts13.onnx``: the TorchScript exporter (``dynamo=False``) at opset 13, which writes the
  LayerNorm out as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div: in float16 the Pow overflows
  (squared deviations of a few hundred pass 65,504);
* ``layernorm_dynamo.onnx``: the dynamo exporter, which emits one LayerNormalization op.

Both with a dynamic batch and sequence. ``layernorm_io.npz`` holds an input ``x`` and PyTorch's output
``y`` for it. Files go to tests/debug/data/ (about 35 KB each).
"""

from __future__ import annotations

import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "debug", "data")
DIM = 64
GAIN = 150.0


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(DIM, DIM)
        with torch.no_grad():
            self.proj.weight.mul_(GAIN)  # activations of a few hundred, as after a badly scaled layer
        self.norm = torch.nn.LayerNorm(DIM)
        self.ff = torch.nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(torch.nn.functional.gelu(self.norm(self.proj(x))))


def main() -> None:
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 8, DIM)
    os.makedirs(OUT, exist_ok=True)
    axes = {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}
    torch.onnx.export(
        net,
        (x,),
        os.path.join(OUT, "layernorm_ts13.onnx"),
        dynamo=False,
        opset_version=13,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes=axes,
    )
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    program = torch.onnx.export(
        net, (x,), dynamo=True, input_names=["x"], output_names=["y"], dynamic_shapes={"x": {0: batch, 1: seq}}
    )
    program.save(os.path.join(OUT, "layernorm_dynamo.onnx"))
    with torch.no_grad():
        y = net(x)
    np.savez(os.path.join(OUT, "layernorm_io.npz"), x=x.numpy(), y=y.numpy())
    print(f"activations before the LayerNorm reach {net.proj(x).abs().max().item():.0f}; wrote {OUT}")


if __name__ == "__main__":
    main()
