"""The error training raises for bad choices or bad data."""

from __future__ import annotations

from onnxgraph.errors import OnnxGraphError


class TrainingError(OnnxGraphError):
    """A user error in building or running training: bad options, data, or a diverged loss."""
