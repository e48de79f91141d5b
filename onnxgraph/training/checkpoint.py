"""Checkpoints: safetensors files (tensors plus string metadata), written atomically."""

from __future__ import annotations

import json
import os

import numpy as np

from onnxgraph.errors import TrainingError
from onnxgraph.fsutil import atomic_write

LATEST = "latest.safetensors"
"""The checkpoint a run writes and ``--resume`` reads, in the checkpoint directory."""


def write_tensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write ``tensors`` and ``metadata`` as one safetensors file, replacing ``path`` only when complete.

    Raises:
        TrainingError: the destination cannot be written.
    """
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as exc:
        raise TrainingError(f"{os.fspath(path)}: cannot write the checkpoint ({exc.strerror or exc})") from exc


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a safetensors file.

    Raises:
        TrainingError: the file is missing or not a safetensors file.
    """
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise TrainingError(f"{os.fspath(path)}: no checkpoint to resume from") from None
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise TrainingError(f"{os.fspath(path)}: not a readable safetensors checkpoint ({exc})") from exc


def encode(info: dict) -> dict[str, str]:
    """Checkpoint metadata: safetensors stores only strings, so every value is JSON text."""
    return {k: json.dumps(v) for k, v in info.items()}


def decode(metadata: dict[str, str]) -> dict:
    return {k: json.loads(v) for k, v in metadata.items()}
