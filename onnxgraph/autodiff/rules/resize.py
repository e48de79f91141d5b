"""Gradient rule of Resize (every mode): Resize is linear in X and separable over axes, so each
resized axis is a fixed matrix, computed at build time by resizing an identity matrix with the
same attributes (onnx.reference), and the gradient multiplies by its transpose."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from onnxgraph.autodiff.builder import dtype_of, inverse_permutation, rank_of
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register

_PER_AXIS_ATTRS = ("axes", "keep_aspect_ratio_policy")


@register("Resize", differentiable=(0,))
def resize(b, node, grads):
    x, y, g = node.inputs[0], node.outputs[0], grads[0]
    if node.attr("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
        raise GradientError("the gradient of Resize with tf_crop_and_resize is not supported")
    in_dims, out_dims = x.shape, y.shape
    if (
        in_dims is None
        or out_dims is None
        or not all(isinstance(d, int) for d in (*in_dims, *out_dims))
    ):
        raise GradientError("the gradient of Resize needs static input and output shapes")
    scales = _per_axis(b, node, 2, rank_of(x), 1.0)
    for axis, (n_in, n_out) in enumerate(zip(in_dims, out_dims)):
        scale = None if scales is None else scales[axis]
        if n_in == n_out and scale in (None, 1.0):
            continue
        matrix = _axis_matrix(node, b.opset, n_in, n_out, scale).T.astype(dtype_of(x))  # (out, in)
        g = _along_axis(b, g, b.const(matrix), axis, len(in_dims))
    return [g]


def _per_axis(b, node, index, rank, fill):
    """Input ``index`` (scales) as one entry per axis, None when absent."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None or (value.const_value is not None and value.const_value.size == 0):
        return None
    if value.const_value is None:  # the coordinate transform depends on the scale itself
        raise GradientError("the gradient of Resize needs constant scales")
    data = [float(v) for v in np.asarray(value.const_value.numpy()).reshape(-1)]
    axes = node.attr("axes") or list(range(rank))
    full = [fill] * rank
    for a, v in zip(axes, data):
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

    (matrix,) = ReferenceEvaluator(model).run(None, {"x": np.eye(n_in)})
    if matrix.shape != (n_in, n_out):
        raise GradientError(
            f"Resize gradient: axis matrix came out {matrix.shape}, expected {(n_in, n_out)}"
        )
    return matrix


def _along_axis(b, g, matrix, axis, rank):
    """Contract ``g``'s ``axis`` with ``matrix`` (out, in), keeping the axis position."""
    if axis == rank - 1:
        return b.MatMul(g, matrix)
    perm = [*range(axis), *range(axis + 1, rank), axis]
    moved = b.MatMul(b.Transpose(g, perm=perm), matrix)
    return b.Transpose(moved, perm=inverse_permutation(perm))
