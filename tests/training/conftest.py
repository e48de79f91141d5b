"""Shared fixtures of the training tests; the model builders live in training_models.py."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def mlp_data() -> dict[str, np.ndarray]:
    """Rows for models/mlp.onnx (784 -> 10) with class targets."""
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((96, 784)).astype(np.float32), "target": rng.integers(0, 10, 96)}
