"""Gradient rule of Resize (every mode): Resize is linear in X and separable over axes, so each
resized axis is a fixed matrix, computed at build time by resizing an identity matrix with the
same attributes (onnx.reference), and the gradient multiplies by its transpose."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
from onnx import TensorProto, helper

from onnxgraph.autodiff.builder import GradBuilder, dtype_of, inverse_permutation, known_shape
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value

_PER_AXIS_ATTRS = ("axes", "keep_aspect_ratio_policy")
_SAME = "same"
"""A ``sizes`` entry equal to the input's own (possibly symbolic) dim: the axis is not resized."""


@register("Resize", differentiable=(0,))
def resize(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, y, g = node.input(0), node.outputs[0], grads[0]
    if node.attr("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
        raise GradientError("the gradient of Resize with tf_crop_and_resize is not supported")
    x_dims = known_shape(x)
    rank = len(x_dims)
    scales = _per_axis(b, node, 2, rank, 1.0, "scales")
    sizes = _known_sizes(b, node, rank) if scales is None else None
    factors = _repeats(node, scales, rank)
    if factors is not None and any(not isinstance(d, int) for d in x_dims[2:]):
        # each input cell is repeated: its gradient sums its block, whatever the run-time size
        pooled = b.AveragePool(g, kernel_shape=factors, strides=factors)
        return [b.Mul(pooled, b.scalar(int(np.prod(factors)), x))]
    out_dims = y.shape if y.shape is not None and len(y.shape) == rank else (None,) * rank
    for axis, (n_in, n_out) in enumerate(zip(x_dims, out_dims)):
        scale = None if scales is None else scales[axis]
        if scale is not None:
            if scale == 1.0:
                continue  # an axis Resize leaves as it is
            if isinstance(n_in, int) and not isinstance(n_out, int):
                n_out = int(np.floor(n_in * scale))
        else:
            if sizes is not None and sizes[axis] is not None:
                n_out = n_in if sizes[axis] is _SAME else sizes[axis]
            if sizes is not None and sizes[axis] is _SAME or (n_in is not None and n_in == n_out):
                continue
        if not isinstance(n_in, int) or not isinstance(n_out, int):
            raise GradientError(
                f"the gradient of Resize needs static sizes along each resized axis (axis {axis}: {n_in} -> {n_out})"
            )
        matrix = _axis_matrix(node, b.opset, n_in, n_out, scale).T.astype(dtype_of(x))  # (out, in)
        g = _along_axis(b, g, b.const(matrix), axis, rank)
    return [g]


def _repeats(node, scales, rank):
    """The integer factors over the spatial axes when this Resize only repeats cells (nearest
    neighbour, integer scales, asymmetric coordinates rounded down or half-pixel ones rounded to
    nearest, batch and channels left alone: ``F.interpolate(scale_factor=k)`` as both torch
    exporters write it), else None."""
    if scales is None or rank < 3 or node.attr("mode", "nearest") != "nearest" or scales[:2] != [1.0, 1.0]:
        return None
    if not all(float(s).is_integer() and s >= 1 for s in scales[2:]):
        return None
    transform = node.attr("coordinate_transformation_mode", "half_pixel")
    rounding = node.attr("nearest_mode", "round_prefer_floor")
    floor = transform == "asymmetric" and rounding == "floor"
    nearest = transform in ("half_pixel", "pytorch_half_pixel") and rounding.startswith("round")
    return [int(s) for s in scales[2:]] if floor or nearest else None


def _known_sizes(b, node, rank):
    """Per axis, the output size ``sizes`` asks for: an int, ``x``'s own dim (``sizes`` built from
    ``Shape(x)``, as the TorchScript exporter writes ``F.interpolate(size=...)``), or None."""
    from onnxgraph.optimizers.shapes import symbolic_elements

    value = node.inputs[3] if len(node.inputs) > 3 else None
    if value is None or node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        return None
    array = b.constant_array(value)
    elements = array.reshape(-1).tolist() if array is not None else symbolic_elements(value)
    if not elements:
        return None
    x = node.input(0)
    full: list[int | str | None] = [None] * rank
    for a, v in zip(node.attr("axes") or range(rank), elements):
        a %= rank
        full[a] = int(v) if isinstance(v, int) else _SAME if v == _symbol(x, a) else None
    return full


def _symbol(x, axis):
    """``x.shape[axis]`` as :func:`~onnxgraph.optimizers.shapes.symbolic_elements` names it."""
    dim = x.shape[axis]
    return dim if isinstance(dim, int) else ("dim", dim) if dim else ("unknown", id(x), axis)


def _per_axis(b, node, index, rank, fill, what):
    """Input ``index`` (scales or sizes) as one entry per axis (``fill`` for axes it leaves out),
    None when absent; read through initializers and Constant nodes."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        return None
    array = b.constant_array(value)
    if array is None:  # the coordinate transform depends on the scale itself
        raise GradientError(f"the gradient of Resize needs constant {what} ('{value.name}' is computed at run time)")
    if array.size == 0:
        return None
    axes = node.attr("axes") or list(range(rank))
    full = [fill] * rank
    for a, v in zip(axes, array.reshape(-1).tolist()):
        full[a % rank] = v
    return full


def _axis_matrix(node, opset, n_in, n_out, scale):
    """R (n_in x n_out): row i is Resize applied to the i-th unit vector along one axis."""
    attrs = {k: a.value for k, a in node.attributes.items() if k not in _PER_AXIS_ATTRS}
    if scale is not None:
        extra = [helper.make_tensor("scales", TensorProto.FLOAT, [2], [1.0, scale])]
        inputs = ["x", "", "scales"]
    else:
        extra = [helper.make_tensor("sizes", TensorProto.INT64, [2], [n_in, n_out])]
        inputs = ["x", "", "", "sizes"]
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **attrs)],
        "resize_axis",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [n_in, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
        extra,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    from onnx.reference import ReferenceEvaluator

    outputs = ReferenceEvaluator(model).run(None, {"x": np.eye(n_in)})
    (matrix,) = cast("list[np.ndarray]", outputs)  # run() gives a list unless asked for intermediates
    if matrix.shape != (n_in, n_out):
        raise GradientError(f"Resize gradient: axis matrix came out {matrix.shape}, expected {(n_in, n_out)}")
    return matrix


def _along_axis(b, g, matrix, axis, rank):
    """Contract ``g``'s ``axis`` with ``matrix`` (out, in), keeping the axis position."""
    if axis == rank - 1:
        return b.MatMul(g, matrix)
    perm = [*range(axis), *range(axis + 1, rank), axis]
    moved = b.MatMul(b.Transpose(g, perm=perm), matrix)
    return b.Transpose(moved, perm=inverse_permutation(perm))
