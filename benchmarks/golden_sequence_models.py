"""Write the PyTorch golden files of tests/autodiff/test_golden_exports.py: tiny models exported by
torch.onnx.export as a user would, with PyTorch's own gradients.

    python benchmarks/golden_sequence_models.py

* ``sdpa_opset23``: a llama-style attention block (RMSNorm, rotary embedding, grouped-query causal
  ``F.scaled_dot_product_attention``) exported by the dynamo exporter at opset 23, which writes
  RMSNormalization and Attention nodes.
* ``rnn_torchscript``, ``rnn_dynamo``: ``nn.LSTM(batch_first=True, bidirectional=True)`` then
  ``nn.GRU`` and a Linear, exported with dynamic batch and time axes by the TorchScript exporter
  (``dynamo=False``) at opset 17 and by the dynamo exporter at opset 23 (both write LSTM and GRU
  nodes).
* ``loop_torchscript``: a scripted ``for`` loop over a run-time count, exported by the TorchScript
  exporter as a Loop node.

Each model goes to ``tests/autodiff/golden/sequence/NAME.onnx`` and its inputs, upstream weights
``w`` and PyTorch's gradients of ``sum(w * output)`` (``grad.<input or parameter>``) to ``NAME.npz``. Needs
torch (never a package or test dependency); the test reads only the files.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "autodiff", "golden", "sequence")


class AttentionBlock(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4, kv_heads: int = 2):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.norm = nn.RMSNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def rotate(self, t, cos, sin):
        half = t.shape[-1] // 2
        rotated = torch.cat([-t[..., half:], t[..., :half]], dim=-1)
        return t * cos + rotated * sin

    def forward(self, x):
        b, s, _ = x.shape
        h = self.norm(x)
        q = self.q(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        freqs = 10000.0 ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        angles = torch.arange(s, dtype=torch.float32)[:, None] * freqs[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return x + self.o(y.transpose(1, 2).reshape(b, s, -1))


class RecurrentClassifier(nn.Module):
    def __init__(self, features: int = 3, hidden: int = 5, classes: int = 4):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(2 * hidden, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        y, _ = self.lstm(x)
        _, h = self.gru(y)
        return self.fc(h[0])


class LoopModel(nn.Module):
    def __init__(self, dim: int = 4):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, dim) * 0.5)

    def forward(self, x, steps: torch.Tensor):
        h = x
        for _ in range(int(steps)):
            h = torch.tanh(h @ self.w) + x
        return h


def save(name: str, module: nn.Module, inputs: dict[str, torch.Tensor], export) -> None:
    path = os.path.join(OUT, f"{name}.onnx")
    export(module, tuple(inputs.values()), path)
    float_inputs = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
    output = module(*float_inputs.values())
    w = torch.randn_like(output)
    params = dict(module.named_parameters())
    differentiated = {**{k: v for k, v in float_inputs.items() if v.requires_grad}, **params}
    grads = torch.autograd.grad((output * w).sum(), list(differentiated.values()))
    arrays = {k: v.detach().numpy() for k, v in inputs.items()}
    arrays["w"] = w.detach().numpy()
    arrays.update({f"grad.{k}": g.numpy() for k, g in zip(differentiated, grads)})
    np.savez_compressed(os.path.join(OUT, f"{name}.npz"), **arrays)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and {name}.npz")


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    def dynamo23(module, args, path):
        program = torch.onnx.export(
            module, args, dynamo=True, opset_version=23, input_names=["x"], output_names=["y"], external_data=False
        )
        program.save(path, external_data=False)

    def torchscript(names, dynamic):
        def export(module, args, path):
            torch.onnx.export(
                module,
                args,
                path,
                dynamo=False,
                opset_version=17,
                input_names=names,
                output_names=["y"],
                dynamic_axes=dynamic,
            )

        return export

    save("sdpa_opset23", AttentionBlock().eval(), {"x": torch.randn(2, 5, 16)}, dynamo23)
    save(
        "rnn_torchscript",
        RecurrentClassifier().eval(),
        {"x": torch.randn(3, 6, 3)},
        torchscript(["x"], {"x": {0: "batch", 1: "time"}}),
    )

    def dynamo_dynamic(module, args, path):
        batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=23,
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: batch, 1: time},),
        )
        program.save(path, external_data=False)

    save("rnn_dynamo", RecurrentClassifier().eval(), {"x": torch.randn(3, 6, 3)}, dynamo_dynamic)
    loop = torch.jit.script(LoopModel())
    save(
        "loop_torchscript", loop, {"x": torch.randn(2, 4), "steps": torch.tensor(3)}, torchscript(["x", "steps"], None)
    )


if __name__ == "__main__":
    main()
