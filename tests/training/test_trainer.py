"""Trainer: data checks, the seeded batch order, checkpoints and exact resume, NaN stops, export."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from training_models import scale_model

from onnxgraph.runtime.sessions import create_session
from onnxgraph.training import SGD, AdamW, TrainingError, build_training
from onnxgraph.training.checkpoint import read_tensors
from onnxgraph.training.data import BatchOrder, open_arrays
from onnxgraph.training.trainer import Trainer

MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "models")


@pytest.fixture(scope="module")
def mlp_artifacts():
    return build_training(os.path.join(MODELS, "mlp.onnx"), loss_fn="cross_entropy", optimizer=AdamW())


def test_resume_from_a_checkpoint_continues_exactly(mlp_artifacts, mlp_data, tmp_path):
    whole = Trainer(mlp_artifacts, mlp_data, batch_size=32, seed=3, threads=1)
    expected = whole.fit(steps=10)
    first = Trainer(mlp_artifacts, mlp_data, batch_size=32, seed=3, threads=1, checkpoint_dir=tmp_path)
    head = first.fit(steps=4)  # checkpoints at the end
    resumed = Trainer(mlp_artifacts, mlp_data, batch_size=32, seed=3, threads=1, checkpoint_dir=tmp_path)
    resumed.load_checkpoint()
    assert resumed.step == 4
    tail = resumed.fit(steps=10)
    assert head + tail == expected
    for name, array in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], array)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 11))
    assert [r["loss"] for r in lines] == expected


def test_checkpoint_holds_state_step_and_order(mlp_artifacts, mlp_data, tmp_path):
    trainer = Trainer(mlp_artifacts, mlp_data, batch_size=40, seed=5, checkpoint_dir=tmp_path, checkpoint_every=2)
    trainer.fit(steps=5)
    tensors, metadata = read_tensors(tmp_path / "latest.safetensors")
    assert set(tensors) == set(mlp_artifacts.layout.carried)
    info = {k: json.loads(v) for k, v in metadata.items()}
    assert info["step"] == 5 and info["epoch"] == 1 and info["batch_in_epoch"] == 2  # 3 batches per epoch
    assert info["rng"]["seed"] == 5
    other = Trainer(mlp_artifacts, mlp_data, batch_size=40, seed=6, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="written with seed 5, this run has seed 6"):
        other.load_checkpoint()


def test_a_non_finite_loss_stops_and_keeps_the_last_good_state(mlp_data, tmp_path):
    artifacts = build_training(os.path.join(MODELS, "mlp.onnx"), loss_fn="cross_entropy", optimizer=SGD())
    trainer = Trainer(artifacts, mlp_data, batch_size=32, lr=1e6, checkpoint_dir=tmp_path, checkpoint_every=1)
    with pytest.raises(TrainingError, match=r"the loss is (nan|inf).*last good checkpoint is .*latest.safetensors"):
        trainer.fit(steps=50)
    stopped_at = trainer.step
    before = trainer.state_dict()
    assert all(np.all(np.isfinite(v)) for v in before.values())
    tensors, metadata = read_tensors(tmp_path / "latest.safetensors")
    assert json.loads(metadata["step"]) == stopped_at
    for name, array in before.items():
        np.testing.assert_array_equal(tensors[name], array)


def test_export_writes_the_inference_model_with_trained_weights(mlp_artifacts, mlp_data, tmp_path):
    trainer = Trainer(mlp_artifacts, mlp_data, batch_size=32)
    losses = trainer.fit(steps=30)
    assert losses[-1] < losses[0]
    path = trainer.export(tmp_path / "trained.onnx")
    exported = create_session(path)
    assert [i.name for i in exported.get_inputs()] == ["x"] and [o.name for o in exported.get_outputs()] == ["logits"]
    (logits,) = exported.run(None, {"x": mlp_data["x"]})
    state = trainer.state_dict()
    feeds = {"x": mlp_data["x"], "target": mlp_data["target"], **{n: state[n] for n in mlp_artifacts.layout.parameters}}
    expected_loss, expected = create_session(mlp_artifacts.eval.to_proto()).run(["loss", "logits"], feeds)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert trainer.evaluate(mlp_data) == pytest.approx(float(expected_loss), rel=1e-5)


def test_batch_order_is_a_function_of_seed_and_step():
    order = BatchOrder(10, 4, seed=1)
    assert order.steps_per_epoch == 3
    epochs = [np.concatenate([order.rows_of(e * 3 + k)[1] for k in range(3)]) for e in range(2)]
    for rows in epochs:
        assert sorted(rows) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(BatchOrder(10, 4, seed=1).rows_of(4)[1], order.rows_of(4)[1])
    dropped = BatchOrder(10, 4, seed=1, drop_last=True)
    assert dropped.steps_per_epoch == 2 and len(dropped.rows_of(1)[1]) == 4
    assert len(order.rows_of(2)[1]) == 2  # the last partial batch runs


def test_data_is_memory_mapped_from_npz_and_npy_folders(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.savez(tmp_path / "data.npz", x=x, target=x * 2)
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "target.npy", x * 2)
    for source in (tmp_path / "data.npz", folder):
        arrays = open_arrays(source)
        assert isinstance(arrays["x"], np.memmap)
        np.testing.assert_array_equal(arrays["target"], x * 2)
    np.savez_compressed(tmp_path / "packed.npz", x=x)
    np.testing.assert_array_equal(open_arrays(tmp_path / "packed.npz")["x"], x)
    artifacts = build_training(scale_model(), loss_fn="mse", optimizer=SGD())
    trainer = Trainer(artifacts, folder, batch_size=4, lr=0.0)
    losses = trainer.fit(epochs=1)
    w = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)
    for step, loss in enumerate(losses):  # lr 0: each loss is the mse of that step's rows
        rows = trainer.order.rows_of(step)[1]
        assert loss == pytest.approx(float(np.mean((x[rows] * w - 2 * x[rows]) ** 2)), rel=1e-6)
    assert [len(trainer.order.rows_of(s)[1]) for s in range(len(losses))] == [4, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"x": np.zeros((4, 4), np.float32)}, "no array named 'target'"),
        ({"x": np.zeros((4, 4)), "target": np.zeros((4, 4), np.float32)}, "'x' is float64, the model wants float32"),
        ({"x": np.zeros((4, 3), np.float32), "target": np.zeros((4, 3), np.float32)}, r"'x' has shape \[4, 3\]"),
        ({"x": np.zeros((4, 4), np.float32), "target": np.zeros((5, 4), np.float32)}, "same number of rows"),
    ],
)
def test_data_that_does_not_fit_the_model_is_refused(data, message):
    artifacts = build_training(scale_model(), loss_fn="mse", optimizer=SGD())
    with pytest.raises(TrainingError, match=message):
        Trainer(artifacts, data, batch_size=2)


def test_cross_entropy_targets_must_be_classes(mlp_artifacts, mlp_data):
    bad = dict(mlp_data, target=mlp_data["target"] + 5)
    with pytest.raises(TrainingError, match=r"'target' holds class 14, not in \[0, 10\)"):
        Trainer(mlp_artifacts, bad, batch_size=8)


def test_an_unwritable_checkpoint_folder_is_refused(mlp_artifacts, mlp_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrainingError, match="cannot create the checkpoint folder"):
        Trainer(mlp_artifacts, mlp_data, batch_size=8, checkpoint_dir=blocker / "sub")


def test_gradient_accumulation_equals_one_large_batch(mlp_data, tmp_path):
    path = os.path.join(MODELS, "mlp.onnx")
    large = build_training(path, loss_fn="cross_entropy", optimizer=AdamW(), clip_grad_norm=1.0)
    split = build_training(path, loss_fn="cross_entropy", optimizer=AdamW(), clip_grad_norm=1.0, grad_accumulation=3)
    assert split.grad_step is not None and split.apply_step is not None
    assert split.layout.gradients == ["fc0.weight.grad", "fc0.bias.grad", "fc1.weight.grad", "fc1.bias.grad"]
    for model in (split.grad_step, split.apply_step):
        assert {n.domain for n in model.graph} == {""} and set(model.opset_imports) == {""}
    whole = Trainer(large, mlp_data, batch_size=24, shuffle=False)
    parts = Trainer(split, mlp_data, batch_size=8, shuffle=False, checkpoint_dir=tmp_path)
    np.testing.assert_allclose(parts.fit(steps=4), whole.fit(steps=4), rtol=1e-5)
    for name, array in whole.state_dict().items():
        np.testing.assert_allclose(parts.state_dict()[name], array, rtol=1e-4, atol=1e-6)
    assert parts.epoch == 1  # 4 updates of 3 batches of 8 rows: one epoch of 96 rows
    resumed = Trainer(split, mlp_data, batch_size=8, shuffle=False, checkpoint_dir=tmp_path)
    resumed.load_checkpoint()
    assert resumed.fit(steps=6) == parts.fit(steps=6)
    written = {os.path.basename(p) for p in split.save(tmp_path / "art")}
    assert {"grad_step.onnx", "apply_step.onnx"} <= written


def test_separate_update_splits_gradient_and_update(mlp_data):
    path = os.path.join(MODELS, "mlp.onnx")
    fused = Trainer(build_training(path, loss_fn="cross_entropy"), mlp_data, batch_size=16, seed=2)
    split_artifacts = build_training(path, loss_fn="cross_entropy", separate_update=True)
    split = Trainer(split_artifacts, mlp_data, batch_size=16, seed=2)
    expected = fused.fit(steps=3)
    losses = []
    for _ in range(3):
        losses.append(split.grad_step())
        assert set(split.gradients) == set(split_artifacts.layout.gradients)
        split.apply_step()
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    for name, array in fused.state_dict().items():
        np.testing.assert_allclose(split.state_dict()[name], array, rtol=1e-5, atol=1e-7)


def test_split_artifacts_missing_one_half_are_refused():
    import dataclasses

    artifacts = build_training(scale_model(), loss_fn="mse", optimizer=SGD(), separate_update=True)
    data = {"x": np.ones((4, 4), np.float32), "target": np.zeros((4, 4), np.float32)}
    assert Trainer(artifacts, data, batch_size=2).train_step() > 0
    with pytest.raises(TrainingError, match="both grad_step and apply_step"):
        Trainer(dataclasses.replace(artifacts, apply_step=None), data, batch_size=2)
