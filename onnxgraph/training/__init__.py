"""Training ONNX models on stock onnxruntime: train-step artifacts, optimizers and the loop.

>>> from onnxgraph.training import AdamW, build_training
>>> artifacts = build_training("mlp.onnx", loss_fn="cross_entropy", optimizer=AdamW())  # doctest: +SKIP
>>> artifacts.save("artifacts/")  # doctest: +SKIP

See docs/training.md.
"""

from __future__ import annotations

from onnxgraph.training.artifacts import Layout, TrainingArtifacts, build_training
from onnxgraph.training.errors import TrainingError
from onnxgraph.training.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "Layout",
    "Optimizer",
    "TrainingArtifacts",
    "TrainingError",
    "build_training",
]
