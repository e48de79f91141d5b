"""Generate PyTorch golden loss curves for tests/training/test_torch_parity.py.

Each case builds a small network in PyTorch, perturbs its weights (so no two tensors are equal and
the exporter deduplicates nothing), exports it with torch.onnx.export, then trains it in PyTorch
with SGD-momentum and with AdamW on fixed synthetic data, in the batch order onnxgraph's Trainer
uses (``BatchOrder``: a seeded permutation per epoch). It saves, per case, ``NAME.onnx`` (the
initial model) and ``NAME.npz`` (data, parameter names, hyper-parameters, loss curves).

Run from the repository root (needs torch, which is never a package dependency):

    python benchmarks/train_golden.py [--steps 200] [--out tests/training/golden]
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
from torch import nn

from onnxgraph.training.data import BatchOrder

SEED = 0
ROWS = 128
BATCH = 16
OPTIMIZERS = {
    "sgd": {"lr": 0.02, "momentum": 0.9},
    "adamw": {"lr": 2e-3, "weight_decay": 0.01, "betas": (0.9, 0.999), "eps": 1e-8},
}


class MLP(nn.Module):
    def __init__(self, n_in: int = 32, hidden: int = 64, classes: int = 10):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class CNN(nn.Module):
    """Conv-BN-ReLU-MaxPool twice, then a linear head: BatchNorm trains with batch statistics.

    The convolutions have no bias, as usual before BatchNorm: its gradient would be zero up to
    rounding noise, which Adam's normalisation turns into arbitrary updates of the running mean."""

    def __init__(self, channels: tuple[int, int, int] = (1, 4, 8), image: int = 8, classes: int = 10):
        super().__init__()
        c0, c1, c2 = channels
        self.conv1, self.bn1 = nn.Conv2d(c0, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1)
        self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2)
        self.fc = nn.Linear(c2 * (image // 4) ** 2, classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


class Block(nn.Module):
    """A pre-norm GPT block: causal self-attention and a GELU MLP."""

    def __init__(self, d: int, heads: int, seq: int, ff: int | None = None):
        super().__init__()
        self.heads = heads
        ff = ff or 2 * d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, ff), nn.Linear(ff, d)
        self.register_buffer("future", torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1), persistent=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d // self.heads))
        scores = scores.masked_fill(self.future[:t, :t], float("-inf"))
        attn = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(attn)
        return x + self.down(nn.functional.gelu(self.up(self.ln2(x))))


class Transformer(nn.Module):
    """GPT blocks (two by default) over token embeddings; logits (batch, vocab, seq) for cross_entropy."""

    def __init__(
        self, vocab: int = 50, d: int = 32, heads: int = 4, seq: int = 8, layers: int = 2, ff: int | None = None
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.1)
        self.blocks = nn.ModuleList([Block(d, heads, seq, ff) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x)).transpose(1, 2)


class Llama(nn.Module):
    """A llama-style block: RMSNorm, rotary position embedding, causal attention, SiLU-gated MLP."""

    def __init__(self, vocab: int = 50, d: int = 32, heads: int = 4, seq: int = 8):
        super().__init__()
        self.heads, half = heads, d // heads // 2
        self.embed = nn.Embedding(vocab, d)
        self.norm1, self.norm2, self.norm = (nn.Parameter(torch.ones(d)) for _ in range(3))
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up, self.down = (
            nn.Linear(d, 2 * d, bias=False),
            nn.Linear(d, 2 * d, bias=False),
            nn.Linear(2 * d, d, bias=False),
        )
        self.head = nn.Linear(d, vocab, bias=False)
        angles = torch.arange(seq)[:, None] * (10000 ** (-torch.arange(half) / half))[None]
        self.register_buffer("cos", torch.cat([angles.cos()] * 2, -1), persistent=False)
        self.register_buffer("sin", torch.cat([angles.sin()] * 2, -1), persistent=False)
        self.register_buffer("future", torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1), persistent=False)

    @staticmethod
    def _rms(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight

    def _rotary(self, x, t):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * self.cos[:t] + rotated * self.sin[:t]

    def forward(self, ids):
        x = self.embed(ids)
        b, t, d = x.shape
        h = self._rms(x, self.norm1)
        q, k, v = (w(h).reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        q, k = self._rotary(q, t), self._rotary(k, t)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d // self.heads))
        scores = scores.masked_fill(self.future[:t, :t], float("-inf"))
        x = x + self.wo((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, d))
        h = self._rms(x, self.norm2)
        x = x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))
        return self.head(self._rms(x, self.norm)).transpose(1, 2)


def _data(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "mlp":
        return {"x": rng.standard_normal((ROWS, 32)).astype(np.float32), "target": rng.integers(0, 10, ROWS)}
    if name.startswith("cnn"):
        return {"x": rng.standard_normal((ROWS, 1, 8, 8)).astype(np.float32), "target": rng.integers(0, 10, ROWS)}
    ids = rng.integers(0, 50, (ROWS, 9))
    return {"x": ids[:, :-1].copy(), "target": ids[:, 1:].copy()}


CASES = {"mlp": MLP, "cnn": CNN, "transformer": Transformer, "llama": Llama, "cnn_dynamo": CNN}
DYNAMO_CASES = {"cnn_dynamo"}  # exported with dynamo=True; the others with the TorchScript exporter


def _perturbed(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return module


def _export(module: nn.Module, example: torch.Tensor, path: str, dynamo: bool = False) -> None:
    dims = {"x": {0: "batch"}, "logits": {0: "batch"}}
    module.eval()  # BatchNorm exports in inference mode: onnxgraph switches it to training mode
    if dynamo:
        # optimize=False: the dynamo exporter's graph optimizer folds BatchNorm into the Conv.
        torch.onnx.export(
            module,
            (example,),
            path,
            dynamo=True,
            optimize=False,
            external_data=False,
            opset_version=18,
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        return
    torch.onnx.export(
        module,
        (example,),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes=dims,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )


def _train(module: nn.Module, data: dict[str, np.ndarray], kind: str, steps: int) -> dict[str, np.ndarray]:
    """The loss curve (``loss_KIND``) and the final running statistics (``KIND/NAME``)."""
    module.train()
    params = list(module.parameters())
    opt = (
        torch.optim.SGD(params, **OPTIMIZERS[kind]) if kind == "sgd" else torch.optim.AdamW(params, **OPTIMIZERS[kind])
    )
    order = BatchOrder(ROWS, BATCH, SEED)
    losses = []
    for step in range(steps):
        _, rows = order.rows_of(step)
        x, t = torch.from_numpy(data["x"][rows]), torch.from_numpy(data["target"][rows])
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    buffers = {
        f"{kind}/{n}": b.numpy().copy()
        for n, b in module.named_buffers()
        if n.endswith(("running_mean", "running_var"))
    }
    return {f"loss_{kind}": np.array(losses), **buffers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=os.path.join("tests", "training", "golden"))
    parser.add_argument("--only", nargs="*", default=list(CASES), help="Regenerate only these cases.")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for index, (name, cls) in enumerate(CASES.items()):
        if name not in args.only:
            continue
        torch.manual_seed(index)
        initial = _perturbed(cls(), index)
        data = _data(name, np.random.default_rng(index))
        state = {k: v.clone() for k, v in initial.state_dict().items()}
        example = torch.from_numpy(data["x"][:BATCH])
        _export(initial, example, os.path.join(args.out, f"{name}.onnx"), dynamo=name in DYNAMO_CASES)
        curves = {}
        for kind in OPTIMIZERS:
            initial.load_state_dict(state)
            curves.update(_train(initial, data, kind, args.steps))
        np.savez(
            os.path.join(args.out, f"{name}.npz"),
            **data,
            **curves,
            parameters=np.array([n for n, _ in initial.named_parameters()]),
            buffers=np.array([n for n, _ in initial.named_buffers() if n.endswith(("running_mean", "running_var"))]),
            batch_size=BATCH,
            seed=SEED,
            **{f"{kind}_{k}": np.array(v) for kind, hp in OPTIMIZERS.items() for k, v in hp.items()},
        )
        print(name, {k: (float(v[0]), float(v[-1])) for k, v in curves.items() if k.startswith("loss")})


if __name__ == "__main__":
    main()
