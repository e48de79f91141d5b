"""Gradient rules of shape and data-movement ops.

Ops that pick elements (Slice, Gather*, TopK, Pad with reflect/edge/wrap) send the upstream gradient
back with a scatter: a permutation or selection needs no accumulation, repeated picks use
``reduction="add"`` (opset 16+).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxgraph.autodiff.builder import GradBuilder, inverse_permutation, rank_of, static_shape, upstream
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register, register_stop
from onnxgraph.node import Node
from onnxgraph.value import Value

register_stop(
    "Shape",
    "Size",
    "ConstantOfShape",
    "Range",
    "ArgMax",
    "ArgMin",
    "NonZero",
    "OneHot",
    "EyeLike",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    family="shape",
)


def _flat(b, v):
    return b.Reshape(v, b.ints([-1]))


def _positions(b, x):
    """An int64 tensor shaped like ``x`` holding each element's flat position."""
    count = b.Size(x)
    return b.Reshape(b.Range(b.const(np.int64(0)), count, b.const(np.int64(1))), b.shape(x))


def _scatter_add_flat(b, x, flat_positions, g, *, needs_add: bool, why: str):
    """Gradient of ``x`` when output element k came from ``x.flat[flat_positions.flat[k]]``."""
    if needs_add and b.opset < 16:
        raise GradientError(f"the gradient of {why} needs ScatterElements reduction='add' (opset 16+)")
    zeros = _flat(b, b.zeros_like(x))
    extra = {"reduction": "add"} if needs_add else {}
    scattered = b.ScatterElements(zeros, _flat(b, flat_positions), _flat(b, g), axis=0, **extra)
    return b.reshape_like(scattered, x)


@register("Reshape", "Flatten", "Squeeze", "Unsqueeze", differentiable=(0,))
def reshape(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.reshape_like(upstream(grads), node.input(0))]


@register("Transpose")
def transpose(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    perm = node.attr("perm") or list(reversed(range(rank_of(node.input(0)))))
    return [b.Transpose(grads[0], perm=inverse_permutation(perm))]


@register("Expand", differentiable=(0,), broadcast=(0,))
def expand(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [grads[0]]


@register("Trilu", differentiable=(0,))
def trilu(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Trilu keeps a fixed set of elements: the gradient is the same mask applied to ``g``."""
    upper = node.attr("upper", 1)
    return [b.Trilu(grads[0], *node.inputs[1:], upper=upper)]


@register("Concat")
def concat(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    axis, g, xs = node.attr("axis"), grads[0], [node.input(i) for i in range(len(node.inputs))]
    sizes = [static_shape(x) for x in xs]
    known = [s for s in sizes if s is not None]
    if len(known) == len(sizes):
        split = b.ints([s[axis] for s in known])
    else:
        split = b.Concat(*[b.axis_size(x, axis) for x in xs], axis=0)
    parts = b.Split(g, split, axis=axis, _outputs=len(node.inputs))
    return [p if b.wants(x) else None for p, x in zip(parts, node.inputs)]


@register("Split", differentiable=(0,))
def split(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    pieces = [g if g is not None else b.zeros_like(out) for g, out in zip(grads, node.outputs)]
    return [b.Concat(*pieces, axis=node.attr("axis", 0))]


@register("Slice", differentiable=(0,))
def slice_(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    picked = b.Slice(_positions(b, x), *node.inputs[1:])
    return [_scatter_add_flat(b, x, picked, grads[0], needs_add=False, why="Slice")]


@register("Gather", differentiable=(0,))
def gather(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Rows picked by ``indices`` along ``axis`` get the upstream rows added back (ScatterND at
    opset 16+, a one-hot product before)."""
    data, indices, g = node.input(0), node.input(1), grads[0]
    r, q = rank_of(data), rank_of(indices)
    axis = node.attr("axis", 0) % r
    # g: data[:axis] + indices.shape + data[axis+1:]  ->  indices.shape + data[:axis] + data[axis+1:]
    g_perm = [*range(axis, axis + q), *range(axis), *range(axis + q, r + q - 1)]
    g_front = b.Transpose(g, perm=g_perm) if g_perm != list(range(len(g_perm))) else g
    data_perm = [axis, *range(axis), *range(axis + 1, r)]
    front_shape = b.permuted_shape(data, data_perm)
    if b.opset >= 16:
        zeros = b.zeros_like(data, front_shape)
        index = b.unsqueeze(_nonnegative(b, indices, b.axis_size(data, axis)), [-1])
        d_front = b.ScatterND(zeros, index, g_front, reduction="add")
    else:
        depth = b.axis_size(data, axis, scalar=True)
        one_hot = b.one_hot(_flat(b, indices), depth, data, axis=-1)
        rows = b.Reshape(g_front, b.Concat(b.Reshape(b.Size(indices), b.ints([1])), b.ints([-1]), axis=0))
        d_front = b.Reshape(b.MatMul(b.Transpose(one_hot, perm=[1, 0]), rows), front_shape)
    return [b.Transpose(d_front, perm=inverse_permutation(data_perm)) if axis else d_front]


def _nonnegative(b, indices, size):
    """Indices with negative entries wrapped (``i + size`` where ``i < 0``)."""
    index_type = indices.elem_type or onnx.TensorProto.INT64
    size = b.Cast(b.Reshape(size, b.ints([])), to=index_type)
    zero = b.Cast(b.const(np.int64(0)), to=index_type)
    return b.Where(b.Less(indices, zero), b.Add(indices, size), indices)


@register("GatherElements", differentiable=(0,))
def gather_elements(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Scatter-add of g at the indices (opset 16+); before, a one-hot of the indices along the
    gather axis, weighted by g and summed over the picks."""
    data, indices, g = node.input(0), node.input(1), upstream(grads)
    axis = node.attr("axis", 0) % rank_of(data)
    if b.opset >= 16:
        return [b.ScatterElements(b.zeros_like(data), indices, g, axis=axis, reduction="add")]
    data_dims, index_dims = static_shape(data), static_shape(indices)
    if (
        data_dims is None
        or index_dims is None
        or any(d != k for i, (d, k) in enumerate(zip(data_dims, index_dims)) if i != axis)
    ):
        raise GradientError("the gradient of GatherElements before opset 16 needs static shapes equal off the axis")
    depth = b.const(np.int64(data_dims[axis]))
    one_hot = b.one_hot(indices, depth, data, axis=axis + 1)
    return [b.ReduceSum(b.Mul(one_hot, b.unsqueeze(g, [axis + 1])), b.ints([axis]), keepdims=0)]


@register("GatherND", differentiable=(0,))
def gather_nd(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    data, indices, g = node.input(0), node.input(1), grads[0]
    if node.attr("batch_dims", 0):
        raise GradientError("the gradient of GatherND with batch_dims > 0 is not supported")
    if b.opset < 16:
        raise GradientError("the gradient of GatherND needs ScatterND reduction='add' (opset 16+)")
    return [b.ScatterND(b.zeros_like(data), indices, g, reduction="add")]


@register("ScatterElements", differentiable=(0, 2))
def scatter_elements(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    data, indices, updates, g = node.input(0), node.input(1), node.input(2), grads[0]
    axis, reduction = node.attr("axis", 0), node.attr("reduction", "none")
    if reduction not in ("none", "add"):
        raise GradientError(f"the gradient of ScatterElements reduction='{reduction}' is not supported")
    d_data = None
    if b.wants(data):
        d_data = g if reduction == "add" else b.ScatterElements(g, indices, b.zeros_like(updates), axis=axis)
    d_updates = b.GatherElements(g, indices, axis=axis) if b.wants(updates) else None
    return [d_data, None, d_updates]


@register("ScatterND", differentiable=(0, 2))
def scatter_nd(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    data, indices, updates, g = node.input(0), node.input(1), node.input(2), grads[0]
    reduction = node.attr("reduction", "none")
    if reduction not in ("none", "add"):
        raise GradientError(f"the gradient of ScatterND reduction='{reduction}' is not supported")
    d_data = None
    if b.wants(data):
        d_data = g if reduction == "add" else b.ScatterND(g, indices, b.zeros_like(updates))
    return [d_data, None, b.GatherND(g, indices) if b.wants(updates) else None]


@register("Tile", differentiable=(0,))
def tile(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Reshape ``g`` to (r0, d0, r1, d1, ...) and sum over the repeat axes."""
    x, repeats, g = node.input(0), node.input(1), grads[0]
    r = rank_of(x)
    pairs = b.Concat(b.Unsqueeze(repeats, b.ints([1])), b.Unsqueeze(b.shape(x), b.ints([1])), axis=1)
    interleaved = b.Reshape(g, b.Reshape(pairs, b.ints([-1])))
    return [b.sum_to(interleaved, list(range(0, 2 * r, 2)), keepdims=False)]


@register("Pad", differentiable=(0, 2))
def pad(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Constant padding: slice the input's cells back out (or, for negative or dynamic pads, pad
    by the negated pads); the fill value gets the rest of g's sum. Reflect, edge and wrap:
    scatter-add through the same padding applied to element positions."""
    x, g = node.input(0), grads[0]
    mode = node.attr("mode", "constant")
    if mode != "constant":
        folded = _fold_back(b, node, g, mode)
        if folded is not None:
            return [folded, None, None]
        picked = b.Pad(_positions(b, x), node.inputs[1], None, *node.inputs[3:], mode=mode)
        return [_scatter_add_flat(b, x, picked, g, needs_add=True, why=f"Pad mode='{mode}'")]
    dx = _constant_pad_input_grad(b, node, g)
    value = node.inputs[2] if len(node.inputs) > 2 else None
    d_value = None
    if b.wants(value):
        total, kept = b.ReduceSum(g, keepdims=0), b.ReduceSum(dx, keepdims=0)
        d_value = b.Reshape(b.Sub(total, kept), b.shape(value))
    return [dx, None, d_value]


def _fold_back(b, node, g, mode):
    """Reflect/edge/wrap padding with constant, non-negative pads and static dims, undone one axis
    at a time: each padded strip of g is added back onto the input cells it copied (mirrored for
    reflect, summed onto the border for edge, onto the far side for wrap). None when not static
    or when a strip is wider than the axis."""
    x = node.input(0)
    pads, dims = b.constant_ints(node.inputs[1]), static_shape(x)
    axes_input = node.inputs[3] if len(node.inputs) > 3 else None
    axes = b.constant_ints(axes_input) if axes_input is not None else list(range(len(dims or ())))
    if pads is None or dims is None or axes is None or min(pads) < 0:
        return None
    # one fold per side covers a strip no longer than the axis (reflect: shorter); wider strips
    # wrap or mirror more than once, which the scatter-add handles
    if mode != "edge" and any(
        pad >= dims[axis % len(dims)] + (mode == "wrap") for axis, pad in zip([*axes, *axes], pads)
    ):
        return None
    for k, axis in enumerate(axes):
        axis %= len(dims)
        before, after = pads[k], pads[k + len(axes)]
        if before or after:
            g = _fold_axis(b, g, axis, before, after, dims, mode)
    return g


def _fold_axis(b, g, axis, before, after, dims, mode):
    """Undo one axis of reflect/edge/wrap padding (``before``/``after`` cells around ``size``)."""
    size, rank = dims[axis], len(dims)

    def strip(piece, start, stop, step=1):
        return b.Slice(piece, b.ints([start]), b.ints([stop]), b.ints([axis]), b.ints([step]))

    def flipped(piece, length):
        return strip(piece, length - 1, -(2**62), -1)

    def placed(piece, lead, trail):  # zero-padded along the axis to the input's length
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = lead, trail
        return b.Pad(piece, b.ints(pads))

    terms = [strip(g, before, before + size)]
    if before:
        left = strip(g, 0, before)
        if mode == "reflect":  # output cell i < before copied x[before - i]
            terms.append(placed(flipped(left, before), 1, size - 1 - before))
        elif mode == "edge":
            terms.append(placed(b.ReduceSum(left, b.ints([axis]), keepdims=1), 0, size - 1))
        else:  # wrap: output cell i < before copied x[size - before + i]
            terms.append(placed(left, size - before, 0))
    if after:
        right = strip(g, before + size, before + size + after)
        if mode == "reflect":  # output cell before + size + j copied x[size - 2 - j]
            terms.append(placed(flipped(right, after), size - 1 - after, 1))
        elif mode == "edge":
            terms.append(placed(b.ReduceSum(right, b.ints([axis]), keepdims=1), size - 1, 0))
        else:  # wrap: copied x[j]
            terms.append(placed(right, 0, size - after))
    return b.add_all(terms)


def _constant_pad_input_grad(b, node, g):
    x = node.input(0)
    pads = b.constant_ints(node.inputs[1])
    axes_input = node.inputs[3] if len(node.inputs) > 3 else None
    axes = b.constant_ints(axes_input) if axes_input is not None else list(range(len(pads or []) // 2))
    if pads is None or min(pads) < 0 or axes is None:
        # the adjoint of constant padding: pad g by the negated pads (cropping what was added,
        # zero-filling what negative pads cut away); works for dynamic pads too
        return b.Pad(g, b.Neg(node.inputs[1]), None, *node.inputs[3:])
    starts = b.ints(pads[: len(axes)])
    sizes = b.Concat(*[b.axis_size(x, a) for a in axes], axis=0)
    return b.Slice(g, starts, b.Add(starts, sizes), b.ints(axes))


@register("TopK", differentiable=(0,), outputs=(0,))
def top_k(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, g = node.input(0), grads[0]
    indices = b.ensure_output(node, 1, onnx.TensorProto.INT64)
    return [b.ScatterElements(b.zeros_like(x), indices, g, axis=node.attr("axis", -1))]


def _regroup(b, g, x, shape6, perm):
    """Undo a DepthToSpace/SpaceToDepth: view ``g`` as ``shape6`` (static pieces and run-time
    dims), transpose back, take ``x``'s shape."""
    return [b.reshape_like(b.Transpose(b.Reshape(g, b.concat_shape(*shape6)), perm=perm), x)]


@register("DepthToSpace")
def depth_to_space(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Channels and spatial sizes may be known only at run time: the view takes H and W from ``x``
    and leaves the channel count to Reshape (-1)."""
    x, g, bs = node.input(0), grads[0], node.attr("blocksize")
    h, w = b.dims(x, 2, 3), b.dims(x, 3, 4)
    # forward: x -> (N, bs, bs, C/bs^2, H, W) [DCR] or (N, C/bs^2, bs, bs, H, W) [CRD] -> transpose
    perm = [0, 3, 5, 1, 2, 4] if node.attr("mode", "DCR") == "DCR" else [0, 1, 3, 5, 2, 4]
    return _regroup(b, g, x, [[0, -1], h, [bs], w, [bs]], perm)


@register("SpaceToDepth")
def space_to_depth(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, g, bs = node.input(0), upstream(grads), node.attr("blocksize")
    h, w = b.dims(g, 2, 3), b.dims(g, 3, 4)  # H/bs and W/bs
    # forward: x as (N, C, H/bs, bs, W/bs, bs) -> (N, bs, bs, C, ...) [DCR] or (N, C, bs, bs, ...) [CRD]
    if node.attr("mode", "DCR") == "DCR":
        return _regroup(b, g, x, [[0, bs, bs, -1], h, w], [0, 3, 4, 1, 5, 2])
    return _regroup(b, g, x, [[0, -1, bs, bs], h, w], [0, 1, 4, 2, 5, 3])
