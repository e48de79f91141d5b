"""Models, data and optimizers shared by the data-parallel tests and their MPI worker."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from onnxgraph.training import OPTIMIZERS, build_training

_spec = importlib.util.spec_from_file_location(
    "models_build", os.path.join(os.path.dirname(__file__), "..", "..", "models", "build.py")
)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def data_for(model: str) -> dict[str, np.ndarray]:
    """Rows for the named test model with class targets."""
    rng = np.random.default_rng(0)
    if model == "mlp":
        return {"x": rng.standard_normal((64, 32)).astype(np.float32), "target": rng.integers(0, 10, 64)}
    if model == "cnn":
        return {"x": rng.standard_normal((64, 1, 8, 8)).astype(np.float32), "target": rng.integers(0, 10, 64)}
    if model == "transformer":
        return {
            "input_ids": rng.integers(0, 100, (64, 8)),
            "attention_mask": np.ones((64, 8), np.int64),
            "target": rng.standard_normal((64, 8, 32)).astype(np.float32),
        }
    raise ValueError(model)


def artifacts_for(model: str, optimizer: str, accumulate: int, *, separate_update: bool = False):
    """Training artifacts of the named test model with the named optimizer."""
    onnx_model = {"mlp": lambda: build.mlp((32, 16, 10)), "cnn": build.cnn, "transformer": build.transformer}[model]()
    opt = OPTIMIZERS[optimizer](momentum=0.9) if optimizer == "sgd" else OPTIMIZERS[optimizer]()
    return build_training(
        onnx_model,
        loss_fn="mse" if model == "transformer" else "cross_entropy",
        # softmax ignores a key bias: its gradient is rounding noise, which Adam scales up to full steps
        frozen=["*.attention.self.key.bias"] if model == "transformer" else [],
        optimizer=opt,
        grad_accumulation=accumulate,
        separate_update=separate_update,
    )
