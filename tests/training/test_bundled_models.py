"""Every bundled model trains on synthetic data: the loss falls, and the exported inference model
reproduces the trained model's outputs (the eval model run with the trained weights)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from onnxgraph.runtime.sessions import create_session
from onnxgraph.training import AdamW, build_training
from onnxgraph.training.trainer import Trainer

MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "models")
ROWS = 64


def _data(name: str, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, build_training options) per bundled model."""
    if name == "mlp":
        return {"x": rng.standard_normal((ROWS, 784)).astype(np.float32), "target": rng.integers(0, 10, ROWS)}, {
            "loss_fn": "cross_entropy"
        }
    if name == "cnn":
        return {"x": rng.standard_normal((ROWS, 1, 8, 8)).astype(np.float32), "target": rng.integers(0, 10, ROWS)}, {
            "loss_fn": "cross_entropy"
        }
    if name == "transformer_block":
        ids = rng.integers(0, 32, (ROWS, 9))
        # the causal mask and the attention scale are constants, not weights
        return {"ids": ids[:, :-1], "target": ids[:, 1:]}, {
            "loss_fn": "cross_entropy",
            "frozen": ["causal_mask", "attn_scale"],
        }
    if name == "transformer":
        ids, mask = rng.integers(0, 100, (ROWS, 8)), np.ones((ROWS, 8), np.int64)
        target = rng.standard_normal((ROWS, 8, 32)).astype(np.float32)
        return {"input_ids": ids, "attention_mask": mask, "target": target}, {"loss_fn": "mse"}
    return {}, {}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(MODELS, "*.onnx"))), ids=os.path.basename)
def test_bundled_model_trains_and_exports(path, tmp_path):
    name = os.path.basename(path)[:-5]
    data, options = _data(name, np.random.default_rng(0))
    if not data:
        pytest.skip(f"no synthetic data recipe for {name}")
    artifacts = build_training(path, optimizer=AdamW(), **options)
    trainer = Trainer(artifacts, data, batch_size=16, lr=1e-2, threads=1)
    losses = trainer.fit(steps=300)
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20]), (losses[:3], losses[-3:])
    exported = create_session(trainer.export(tmp_path / f"{name}.onnx"))
    feeds = {k: v for k, v in data.items() if k != "target"}
    outputs = exported.run(None, feeds)
    state = trainer.state_dict()
    carried = {n: state[n] for n in [*artifacts.layout.parameters, *artifacts.layout.buffers]}
    eval_session = create_session(artifacts.eval.to_proto())
    expected = eval_session.run(artifacts.layout.outputs, {**data, **carried})
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
