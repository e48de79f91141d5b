"""Sizes for a model's dynamic dimensions when it is run on seeded inputs (verification, checks).

Every dynamic dimension first gets :data:`DYNAMIC_DIMS` (2, then 1). A model with a convolution or
pooling front end over a dynamic axis (raw audio into wav2vec2's strided Conv1d stack) runs with
neither: its axis must cover the receptive field of the whole chain. :func:`min_spatial_length`
derives that length from the ops (kernel, stride, dilation, padding of every Conv, ConvTranspose
and pooling node), and :func:`size_plans` then tries it on one dynamic dimension at a time (the
last axes first, where audio and sequence lengths sit), then on all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from onnxgraph.errors import InputError, RunBudgetExceeded, SizingFailed, one_line
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.runtime.inputs import InputSpec, random_inputs, specs_of

DYNAMIC_DIMS = (2, 1)
"""Sizes tried, in order, for every dynamic dimension that ``input_shapes`` does not fix: 2 first, so
a rewrite that wrongly fixes a dimension to 1 (a common export size) cannot pass unnoticed."""
MAX_DERIVED_LENGTH = 1 << 20
"""Largest length :func:`min_spatial_length` proposes (a deeper chain is left to ``--input-shape``)."""

_WINDOWED = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"}

Outputs = TypeVar("Outputs")


def min_spatial_length(model: Model) -> int:
    """The shortest spatial length that every windowed op of the main graph, chained, can consume.

    The windowed ops (Conv, ConvTranspose, pooling) are composed in reverse topological order as if
    they formed one chain, which over-estimates for parallel branches (a longer input still runs).

    Returns:
        At least 1; capped at :data:`MAX_DERIVED_LENGTH`.
    """
    length = 1
    for node in reversed(list(model.graph.nodes)):
        if node.domain not in ("", "ai.onnx") or node.op_type not in _WINDOWED:
            continue
        length = min(_input_length(node, length), MAX_DERIVED_LENGTH)
    return max(length, 1)


def _input_length(node: Node, out_length: int) -> int:
    """The shortest input length (over all spatial axes) giving ``node`` an output of ``out_length``."""
    kernel = node.attr("kernel_shape")
    if not kernel:
        weight = node.inputs[1] if len(node.inputs) > 1 else None
        shape = weight.shape if weight is not None else None
        kernel = [d for d in (shape or ())[2:] if isinstance(d, int)]
    if not kernel:
        return out_length
    rank = len(kernel)
    strides = node.attr("strides") or [1] * rank
    dilations = node.attr("dilations") or [1] * rank
    pads = node.attr("pads") or [0] * (2 * rank)
    auto_pad = node.attr("auto_pad") or "NOTSET"
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    needed = 1
    for axis in range(rank):
        span = dilations[axis] * (kernel[axis] - 1) + 1
        if node.op_type == "ConvTranspose":
            if node.attr("output_shape") or auto_pad != "NOTSET":
                length = out_length  # the output size is set otherwise; no smaller than the input's
            else:
                extra = (node.attr("output_padding") or [0] * rank)[axis]
                grown = out_length - extra - span + pads[axis] + pads[axis + rank]
                length = -(-grown // strides[axis]) + 1
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            length = (out_length - 1) * strides[axis] + 1
        else:
            padding = 0 if auto_pad == "VALID" else pads[axis] + pads[axis + rank]
            length = (out_length - 1) * strides[axis] + span - padding
        needed = max(needed, length)
    return needed


@dataclass(frozen=True)
class SizePlan:
    """Sizes for dynamic dimensions: ``named`` ones (``{"samples": 400}``), ``default`` for the rest."""

    description: str
    named: dict[str, int] = field(default_factory=dict)
    default: int = DYNAMIC_DIMS[0]

    def inputs(
        self, specs: Sequence[InputSpec], input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Seeded random inputs for ``specs`` with these sizes (``input_shapes`` first)."""
        return random_inputs(specs, shapes=input_shapes, seed=seed, dynamic_dim=self.default, dim_sizes=self.named)


def size_plans(model: Model, specs: Sequence[InputSpec]) -> Iterator[SizePlan]:
    """The dynamic-dimension sizes to try, in order.

    First every dynamic dimension at each size of :data:`DYNAMIC_DIMS`; then, when the model's
    windowed ops need a longer axis (:func:`min_spatial_length`), that length on one named dynamic
    dimension at a time (later axes first), then on every dynamic dimension.
    """
    for size in DYNAMIC_DIMS:
        yield SizePlan(f"{size}", {}, size)
    length = min_spatial_length(model)
    if length <= DYNAMIC_DIMS[0]:
        return
    for name in _dim_names_by_axis(specs):
        yield SizePlan(f"{length} for '{name}'", {name: length}, DYNAMIC_DIMS[0])
    yield SizePlan(f"{length}", {}, length)


def _dim_names_by_axis(specs: Sequence[InputSpec]) -> list[str]:
    """Named dynamic dimensions of the inputs, those found on later axes first."""
    deepest: dict[str, int] = {}
    for spec in specs:
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str) and dim:
                deepest[dim] = max(deepest.get(dim, -1), axis)
    return sorted(deepest, key=lambda name: -deepest[name])


def run_sized(
    model: Model,
    run: Callable[[dict[str, np.ndarray]], Outputs],
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], Outputs]:
    """Run ``run`` on seeded inputs of the first size plan it accepts; returns ``(feeds, outputs)``.

    Raises:
        RunBudgetExceeded: a run took too long (larger sizes would take longer still).
        SizingFailed: every plan failed; says which sizes were tried, the first error and how to
            give sizes with ``--input-shape``.
    """
    _, feeds, outputs = runnable_plan(model, run, input_shapes=input_shapes, seed=seed)
    return feeds, outputs


def runnable_plan(
    model: Model,
    run: Callable[[dict[str, np.ndarray]], Outputs],
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[SizePlan, dict[str, np.ndarray], Outputs]:
    """:func:`run_sized` with the plan that ran, to size another model's inputs alike (a result with
    the same dimension names)."""
    specs = specs_of(model)
    tried: list[str] = []
    first_error = ""
    for plan in size_plans(model, specs):
        try:
            feeds = plan.inputs(specs, input_shapes, seed)
        except InputError as exc:
            first_error = first_error or str(exc)
            continue
        try:
            return plan, feeds, run(feeds)
        except RunBudgetExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            tried.append(plan.description)
            first_error = first_error or one_line(exc)
        if not any(_is_dynamic(s, input_shapes or {}) for s in specs):
            break  # every dimension is fixed: other plans give the same inputs
    sizes = ", ".join(tried) or "none"
    raise SizingFailed(
        f"{first_error} (dynamic dimensions tried with sizes {sizes}; give sizes that fit with "
        "--input-shape NAME=D1,D2,...)"
    )


def _is_dynamic(spec: InputSpec, input_shapes: Mapping[str, Sequence[int]]) -> bool:
    if spec.name in input_shapes:
        return False
    return spec.shape is None or any(not (isinstance(d, int) and d >= 0) for d in spec.shape)
