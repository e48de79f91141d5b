"""Reverse-mode automatic differentiation of ONNX models, emitting standard ONNX ops only.

>>> from onnxgraph.autodiff import build_gradient
>>> grad_model = build_gradient("mlp.onnx", loss_fn="cross_entropy", output="logits")  # doctest: +SKIP

See docs/gradients.md for the contract and the op coverage table (generated from the registry).
"""

from __future__ import annotations

from onnxgraph.autodiff.api import METADATA_KEY, build_gradient, remove_dead_nodes
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.losses import LOSS_FUNCTIONS
from onnxgraph.autodiff.registry import RULES, GradRule, register

__all__ = [
    "LOSS_FUNCTIONS",
    "METADATA_KEY",
    "RULES",
    "GradRule",
    "GradientError",
    "build_gradient",
    "register",
    "remove_dead_nodes",
]
