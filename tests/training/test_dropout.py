"""Training-mode Dropout: masks drawn from (seed, step) inside the train step, gradients through them,
and inference mode in the eval and exported models."""

from __future__ import annotations

import numpy as np
import pytest
from training_models import dropout_model

from onnxgraph.runtime.sessions import create_session
from onnxgraph.training import SGD, build_training
from onnxgraph.training.trainer import Trainer

ROWS = 2000


def _step(artifacts, x, seed: int, step: int, lr: float = 1.0):
    layout = artifacts.layout
    session = create_session(artifacts.train_step.to_proto())
    feeds = {
        "x": x,
        "w": artifacts.initial["w"],
        "seed": np.array(seed, np.int64),
        layout.step: np.array(step, np.int64),
        layout.lr: np.array(lr, np.float32),
    }
    return session.run(["y", "loss", "w.new"], feeds)


def test_masks_have_the_ratio_scale_and_gradient():
    artifacts = build_training(dropout_model(0.3), loss_fn="sum", optimizer=SGD())
    assert artifacts.layout.seed == "seed"
    assert "Dropout" not in {n.op_type for n in artifacts.train_step.graph}
    x = np.ones((ROWS, 4), np.float32)
    w = artifacts.initial["w"]
    y, loss, new_w = _step(artifacts, x, seed=7, step=1)
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    for column in range(4):
        assert 1 - kept[:, column].mean() == pytest.approx(0.3, abs=0.04)
    np.testing.assert_allclose(y[kept], np.broadcast_to(w / 0.7, y.shape)[kept], rtol=1e-6)
    np.testing.assert_allclose(new_w, w - (kept * x / 0.7).sum(0), rtol=1e-5)
    assert float(loss) == pytest.approx(float(y.sum()), rel=1e-5)


def test_masks_follow_seed_and_step_only():
    artifacts = build_training(dropout_model(0.5), loss_fn="sum", optimizer=SGD())
    x = np.ones((64, 4), np.float32)
    first = _step(artifacts, x, seed=1, step=3)[0] != 0
    assert np.array_equal(first, _step(artifacts, x, seed=1, step=3)[0] != 0)
    assert not np.array_equal(first, _step(artifacts, x, seed=1, step=4)[0] != 0)
    assert not np.array_equal(first, _step(artifacts, x, seed=2, step=3)[0] != 0)
    # neighbouring elements are not correlated (the hash is not a plain linear sequence)
    flat = first.ravel().astype(float)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.15


def test_eval_and_export_run_dropout_in_inference_mode(tmp_path):
    artifacts = build_training(dropout_model(0.5), loss_fn="sum", optimizer=SGD())
    for model in (artifacts.eval, artifacts.inference):
        assert "Dropout" not in {n.op_type for n in model.graph}
    x = np.ones((8, 4), np.float32)
    trainer = Trainer(artifacts, {"x": x}, batch_size=8, lr=0.0)
    trainer.fit(steps=1)
    (y,) = create_session(trainer.export(tmp_path / "out.onnx")).run(None, {"x": x})
    np.testing.assert_allclose(y, x * artifacts.initial["w"])
