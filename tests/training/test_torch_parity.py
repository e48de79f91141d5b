"""Loss curves of onnxgraph training against PyTorch's, from golden files.

benchmarks/train_golden.py exported each network with torch.onnx.export and trained it in PyTorch on
the stored data, in the batch order onnxgraph's Trainer uses; here the exported model trains with the
same hyper-parameters and the losses must agree step by step (the issue's bounds: relative difference
<= 1e-4 at step 1, <= 1e-2 at step 200; observed differences are below 1e-5).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from onnxgraph.training import SGD, AdamW, build_training
from onnxgraph.training.trainer import Trainer

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
CASES = ["mlp", "cnn", "transformer", "llama"]
STEPS = 200


def _optimizer(golden, kind: str):
    if kind == "sgd":
        return SGD(momentum=float(golden["sgd_momentum"]))
    betas = tuple(float(b) for b in golden["adamw_betas"])
    return AdamW(betas=betas, eps=float(golden["adamw_eps"]), weight_decay=float(golden["adamw_weight_decay"]))


def _trainer(name: str, kind: str) -> tuple[Trainer, np.lib.npyio.NpzFile]:
    golden = np.load(os.path.join(GOLDEN, f"{name}.npz"))
    artifacts = build_training(
        os.path.join(GOLDEN, f"{name}.onnx"),
        loss_fn="cross_entropy",
        optimizer=_optimizer(golden, kind),
        trainable=[str(p) for p in golden["parameters"]],  # PyTorch's parameters; not its buffers
    )
    data = {"x": golden["x"], "target": golden["target"]}
    trainer = Trainer(
        artifacts,
        data,
        batch_size=int(golden["batch_size"]),
        lr=float(golden[f"{kind}_lr"]),
        seed=int(golden["seed"]),
        threads=1,
    )
    return trainer, golden


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("name", CASES)
def test_loss_curve_matches_pytorch(name: str, kind: str):
    trainer, golden = _trainer(name, kind)
    expected = golden[f"loss_{kind}"][:STEPS]
    assert len(expected) == STEPS
    losses = np.array(trainer.fit(steps=STEPS))
    relative = np.abs(losses - expected) / np.abs(expected)
    assert relative[0] <= 1e-4, (losses[0], expected[0])
    assert relative[-1] <= 1e-2, (losses[-1], expected[-1])
    state = trainer.state_dict()
    for buffer in golden["buffers"]:  # BatchNorm running statistics, PyTorch's momentum and unbiased var
        np.testing.assert_allclose(state[str(buffer)], golden[f"{kind}/{buffer}"], rtol=1e-3, atol=1e-5)
