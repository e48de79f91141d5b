"""The bundled MLP, CNN and transformer: full gradients against finite differences, and training.

The training tests run plain SGD with the gradient model on onnxruntime on synthetic data and
assert the loss falls by a stated factor.
"""

from __future__ import annotations

import model_builders as models
import numpy as np
import onnx
import pytest
from gradcheck import check_gradients
from onnx import numpy_helper

from onnxgraph.autodiff import build_gradient
from onnxgraph.runtime.sessions import create_session


def initializers_as_inputs(model: onnx.ModelProto, names: list[str]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model with these initializers turned into graph inputs, and their values."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    values = {}
    keep = []
    for init in model.graph.initializer:
        if init.name in names:
            array = numpy_helper.to_array(init)
            values[init.name] = array
            model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, array.shape))
        else:
            keep.append(init)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model, values


def _float_params(model):
    return [
        i.name
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT and i.dims and i.name not in ("causal_mask",)
    ]


SMALL = {
    "mlp": lambda: models.mlp((6, 5, 3)),
    "cnn": lambda: models.cnn(channels=2, image=6, classes=3),
    "transformer": lambda: models.transformer_block(vocab=7, seq=4, dim=8, heads=2, ff=8),
    "llama": lambda: models.llama_block(vocab=7, seq=4, dim=8, heads=2, kv_heads=1, ff=8),
}


def _inputs(name, rng, batch):
    if name == "mlp":
        return {"x": rng.standard_normal((batch, 6))}
    if name == "cnn":
        return {"x": rng.standard_normal((batch, 1, 6, 6))}
    return {"ids": rng.integers(0, 7, (batch, 4)).astype(np.int64)}


@pytest.mark.parametrize("name", list(SMALL))
def test_full_gradient_matches_finite_differences(name):
    model = SMALL[name]()
    params = _float_params(model)
    model, values = initializers_as_inputs(model, params)
    rng = np.random.default_rng(0)
    feeds = {**_inputs(name, rng, 3), **{k: v.astype(np.float64) for k, v in values.items()}}
    wrt = params + (["x"] if "x" in feeds else [])
    # onnx.reference's Erf (inside Gelu) is ~1e-8 off, so the transformer needs a larger step.
    eps, fd_tol = (1e-3, (1e-3, 1e-4)) if name == "transformer" else (1e-6, (1e-5, 1e-6))
    check_gradients(model, feeds, wrt, coords_per_input=8, eps=eps, fd_tol=fd_tol, ort_tol=5e-3)


class Trainer:
    """SGD on onnxruntime with the gradient model: parameters are fed in and updated each step."""

    def __init__(self, model: onnx.ModelProto, params: list[str], loss_fn: str, output: str):
        grad = build_gradient(model, loss_fn=loss_fn, output=output, wrt=params)
        import json

        self.mapping = json.loads(grad.metadata_props["onnxgraph.gradients"])
        proto, self.params = initializers_as_inputs(grad.to_proto(), params)
        self.session = create_session(proto.SerializeToString(), threads=1)
        self.outputs = ["loss", *[self.mapping[p] for p in params]]

    def step(self, feeds: dict, lr: float) -> float:
        loss, *grads = self.session.run(self.outputs, {**feeds, **self.params})
        for (name, value), g in zip(self.params.items(), grads):
            self.params[name] = (value - lr * g).astype(np.float32)
        return float(loss)


def _train(trainer, feeds, lr, steps=200):
    losses = [trainer.step(feeds, lr) for _ in range(steps)]
    return losses[0], losses[-1]


def test_mlp_training_reduces_loss_twentyfold():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    labels = np.argmax(x @ rng.standard_normal((8, 4)), axis=1).astype(np.int64)
    model = models.mlp((8, 32, 4))
    trainer = Trainer(model, _float_params(model), "cross_entropy", "logits")
    first, last = _train(trainer, {"x": x, "target": labels}, lr=0.5)
    assert last < first / 20, (first, last)


def test_cnn_training_reduces_loss_twentyfold():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 1, 8, 8)).astype(np.float32) * 0.1
    labels = rng.integers(0, 4, 32).astype(np.int64)
    for i, label in enumerate(labels):  # a bright 4x4 patch in the quadrant the label names
        r, c = divmod(int(label), 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
    model = models.cnn(channels=4, image=8, classes=4)
    params = [p for p in _float_params(model) if "running" not in p]
    trainer = Trainer(model, params, "cross_entropy", "logits")
    first, last = _train(trainer, {"x": x, "target": labels}, lr=0.2)
    assert last < first / 20, (first, last)


def test_transformer_training_reduces_loss_twentyfold():
    """Next-token prediction on fixed sequences: the causal model must learn them."""
    rng = np.random.default_rng(3)
    seqs = rng.integers(0, 16, (8, 9)).astype(np.int64)
    model = models.transformer_block(vocab=16, seq=8, dim=16, heads=2, ff=32)
    trainer = Trainer(model, _float_params(model), "cross_entropy", "logits")
    first, last = _train(trainer, {"ids": seqs[:, :-1], "target": seqs[:, 1:]}, lr=0.3)
    assert last < first / 20, (first, last)


def test_llama_training_reduces_loss_twentyfold():
    """The opset-23 block (RMSNormalization, RotaryEmbedding, grouped-query Attention) learns fixed
    next-token sequences; the rotary caches stay fixed, as buffers do in PyTorch."""
    rng = np.random.default_rng(4)
    seqs = rng.integers(0, 16, (8, 9)).astype(np.int64)
    model = models.llama_block(vocab=16, seq=8, dim=16, heads=4, kv_heads=2, ff=32)
    params = [p for p in _float_params(model) if not p.startswith("rope.")]
    trainer = Trainer(model, params, "cross_entropy", "logits")
    first, last = _train(trainer, {"ids": seqs[:, :-1], "target": seqs[:, 1:]}, lr=0.3)
    assert last < first / 20, (first, last)
