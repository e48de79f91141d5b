"""Seeded random inputs for running a model: dtype-aware, with dynamic dimensions filled in."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.errors import InputError

DEFAULT_DYNAMIC_DIM = 1
"""Size given to a symbolic or unknown dimension that ``--input-shape`` does not fix."""
INPUT_ELEMENT_BUDGET = 1 << 28
"""Most elements :func:`random_inputs` generates for one model (1 GiB of float32): a declared input
of 100000 x 100000 is refused with a message instead of exhausting memory."""
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


def defaulted_dims(
    specs: Iterable[InputSpec], fixed: Mapping[str, Sequence[int]] | None = None, sizes: str = str(DEFAULT_DYNAMIC_DIM)
) -> str:
    """The dynamic dimensions :func:`random_inputs` fills with a default size, for a message.

    ``sizes`` says which size(s) were tried (default :data:`DEFAULT_DYNAMIC_DIM`). Returns "" when
    every input's size is known, else a clause such as ``dynamic dimensions set to 1 (input_values:
    batch, samples); give real sizes with --input-shape NAME=D1,D2,...``.
    """
    named = []
    for spec in specs:
        if spec.name in (fixed or {}):
            continue
        if spec.shape is None:
            named.append(f"{spec.name}: unknown rank")
            continue
        dims = [str(d) if isinstance(d, str) else "?" for d in spec.shape if not (isinstance(d, int) and d >= 0)]
        if dims:
            named.append(f"{spec.name}: {', '.join(dims)}")
    if not named:
        return ""
    return f"dynamic dimensions set to {sizes} ({'; '.join(named)}); give real sizes with --input-shape NAME=D1,D2,..."


def random_array(
    elem_type: int, shape: tuple[int, ...], rng: np.random.Generator, int_range: tuple[int, int] = DEFAULT_INT_RANGE
) -> np.ndarray:
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
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded random feeds for every input spec (the same seed gives the same data).

    ``int_ranges`` maps input names to their own ``[low, high)``, overriding ``int_range``.
    """
    rng = np.random.default_rng(seed)
    fixed = shapes or {}
    ranges = int_ranges or {}
    planned = [(s, concrete_shape(s, fixed, dynamic_dim)) for s in specs]
    total = 0
    for spec, shape in planned:  # refuse before allocating anything
        total += math.prod(shape)
        if total > INPUT_ELEMENT_BUDGET:
            raise InputError(
                f"input '{spec.name}' of shape {list(shape)} brings the generated inputs to "
                f"{total:,} elements, over the budget of {INPUT_ELEMENT_BUDGET:,}: fix smaller "
                "sizes with --input-shape"
            )
    return {s.name: random_array(s.elem_type, shape, rng, ranges.get(s.name, int_range)) for s, shape in planned}


def check_shapes(specs: Iterable[InputSpec], shapes: Mapping[str, Sequence[int]]) -> None:
    """Check ``--input-shape`` values against the model: known names, declared rank, fixed dimensions.

    Raises:
        InputError: naming the first input that does not fit.
    """
    by_name = {s.name: s for s in specs}
    for name, dims in shapes.items():
        if name not in by_name:
            raise InputError(f"--input-shape names '{name}', which is not a model input ({_names(by_name)})")
        declared = by_name[name].shape
        if declared is None:
            continue
        if len(dims) != len(declared):
            raise InputError(f"input '{name}' has rank {len(declared)}, --input-shape gives {len(dims)} dims")
        for axis, (want, got) in enumerate(zip(declared, dims)):
            if isinstance(want, int) and got != want:
                raise InputError(f"input '{name}' has fixed size {want} on axis {axis}, --input-shape gives {got}")


def load_npz(path: str | os.PathLike, specs: Iterable[InputSpec]) -> dict[str, np.ndarray]:
    """Feeds from an ``.npz`` file whose array names are the model's input names.

    Raises:
        InputError: the file is missing or not an npz archive, an input is missing or unknown, or an
            array's dtype differs from the model's.
    """
    path = os.fspath(path)
    by_name = {s.name: s for s in specs}
    try:
        with np.load(path, allow_pickle=False) as archive:
            feeds = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    missing = [n for n in by_name if n not in feeds]
    unknown = [n for n in feeds if n not in by_name]
    if missing or unknown:
        problem = f"lacks input '{missing[0]}'" if missing else f"has '{unknown[0]}', which is not a model input"
        raise InputError(f"{path}: {problem} (model inputs: {_names(by_name)}; file has: {_names(feeds)})")
    for name, array in feeds.items():
        expected = _expected_dtype(by_name[name])
        if expected is not None and array.dtype != expected:
            raise InputError(f"{path}: input '{name}' is {array.dtype}, the model expects {expected}")
    return feeds


def adapt_feeds(feeds: Mapping[str, np.ndarray], specs: Iterable[InputSpec]) -> dict[str, np.ndarray]:
    """The same feeds for another model with the same inputs, floats cast to its precision (say fp16).

    Raises:
        InputError: the other model's input names differ, or a non-float input changed its dtype.
    """
    specs = list(specs)
    if sorted(s.name for s in specs) != sorted(feeds):
        raise InputError(f"the models' inputs differ: {_names(feeds)} vs {_names({s.name: s for s in specs})}")
    adapted = {}
    for spec in specs:
        array, expected = feeds[spec.name], _expected_dtype(spec)
        if expected is not None and array.dtype != expected:
            if not (np.issubdtype(array.dtype, np.floating) and np.issubdtype(expected, np.floating)):
                raise InputError(f"input '{spec.name}' is {array.dtype} in one model and {expected} in the other")
            array = array.astype(expected)
        adapted[spec.name] = array
    return adapted


def _expected_dtype(spec: InputSpec) -> np.dtype | None:
    if spec.elem_type == onnx.TensorProto.STRING:
        return None
    try:
        return np.dtype(types.np_dtype(spec.elem_type))
    except (KeyError, ValueError, TypeError):
        return None


def _names(items: Iterable[str]) -> str:
    return ", ".join(items) or "none"
