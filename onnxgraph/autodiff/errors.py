"""The error of the gradient builder (defined with every other exception in :mod:`onnxgraph.errors`)."""

from __future__ import annotations

from onnxgraph.errors import GradientError

__all__ = ["GradientError"]
