"""Training ONNX models on stock onnxruntime: train-step artifacts, optimizers and the loop.

>>> from onnxgraph.training import AdamW, Trainer, build_training
>>> artifacts = build_training("mlp.onnx", loss_fn="cross_entropy", optimizer=AdamW())  # doctest: +SKIP
>>> artifacts.save("artifacts/")  # doctest: +SKIP
>>> Trainer(artifacts, "train.npz", batch_size=32).fit(epochs=1)  # doctest: +SKIP

See docs/training.md.
"""

from __future__ import annotations

from onnxgraph.errors import TrainingError
from onnxgraph.training.artifacts import Layout, TrainingArtifacts, build_training
from onnxgraph.training.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer
from onnxgraph.training.trainer import Trainer

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "Layout",
    "Optimizer",
    "Trainer",
    "TrainingArtifacts",
    "TrainingError",
    "build_training",
]
