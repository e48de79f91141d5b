"""Seeded random inputs for running a model: dtype-aware, with dynamic dimensions filled in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxgraph import types

DEFAULT_DYNAMIC_DIM = 1
"""Size given to a symbolic or unknown dimension that ``--input-shape`` does not fix."""
DEFAULT_INT_RANGE = (0, 10)
"""Integer inputs (often indices such as input_ids) are drawn from ``[low, high)``."""


@dataclass(frozen=True)
class InputSpec:
    """What a model expects for one input."""

    name: str
    elem_type: int
    shape: tuple[types.Dim, ...] | None


def specs_of(model) -> list[InputSpec]:
    """Input specs of a model's graph inputs that are not initializers (accepts an IR Model)."""
    graph = model.graph
    return [
        InputSpec(v.name, v.elem_type or onnx.TensorProto.FLOAT, v.shape)
        for v in graph.inputs
        if v.name not in graph.initializers
    ]


def concrete_shape(spec: InputSpec, fixed: Mapping[str, Sequence[int]], dynamic_dim: int) -> tuple[int, ...]:
    """The shape to generate for ``spec``: from ``fixed`` if given, else static dims and defaults."""
    if spec.name in fixed:
        return tuple(int(d) for d in fixed[spec.name])
    if spec.shape is None:
        return (dynamic_dim,)
    return tuple(d if isinstance(d, int) and d >= 0 else dynamic_dim for d in spec.shape)


def random_array(elem_type: int, shape: tuple[int, ...], rng: np.random.Generator,
                 int_range: tuple[int, int] = DEFAULT_INT_RANGE) -> np.ndarray:
    """Random data of one ONNX element type: normal floats, integers in ``int_range``, random bools."""
    if elem_type == onnx.TensorProto.BOOL:
        return rng.integers(0, 2, size=shape).astype(bool)
    if elem_type == onnx.TensorProto.STRING:
        return np.array(["a"] * int(np.prod(shape)), dtype=object).reshape(shape)
    dtype = types.np_dtype(elem_type)
    if np.issubdtype(dtype, np.integer):
        low, high = int_range
        info = np.iinfo(dtype)
        return rng.integers(max(low, info.min), min(high, int(info.max) + 1), size=shape).astype(dtype)
    return rng.standard_normal(size=shape).astype(dtype)


def random_inputs(
    specs: Iterable[InputSpec],
    *,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    dynamic_dim: int = DEFAULT_DYNAMIC_DIM,
    int_range: tuple[int, int] = DEFAULT_INT_RANGE,
) -> dict[str, np.ndarray]:
    """Seeded random feeds for every input spec (the same seed gives the same data)."""
    rng = np.random.default_rng(seed)
    fixed = shapes or {}
    return {
        s.name: random_array(s.elem_type, concrete_shape(s, fixed, dynamic_dim), rng, int_range)
        for s in specs
    }
