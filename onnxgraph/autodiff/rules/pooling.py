"""Gradient rules of pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import onnx

from onnxgraph.autodiff.builder import GradBuilder, dtype_of, rank_of, upstream
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.autodiff.rules.conv import spatial_sizes, spread_back, transposed_window, window
from onnxgraph.autodiff.rules.reduction import count_ratio
from onnxgraph.node import Node
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value


@register("MaxPool", outputs=(0,))
def max_pool(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Three forms, one result: windows tiling the input compare with the upsampled maxima (keeping
    the fast forward MaxPool); from opset 16 other windows scatter-add through the Indices output;
    before (or with storage_order=1) every window offset is compared with the maxima and a grouped
    ConvTranspose puts the shares back. The comparison forms share ties evenly."""
    x, g = node.input(0), upstream(grads)
    if _tiles(node, x):
        return [_max_pool_tiled(b, node, g)]
    if b.opset < 16 or node.attr("storage_order", 0):
        return [_max_pool_by_offsets(b, node, g)]
    indices = b.ensure_output(node, 1, onnx.TensorProto.INT64)  # flat positions of the maxima
    flat = b.Reshape(b.zeros_like(x), b.ints([-1]))
    scattered = b.ScatterElements(
        flat, b.Reshape(indices, b.ints([-1])), b.Reshape(g, b.ints([-1])), axis=0, reduction="add"
    )
    return [b.reshape_like(scattered, x)]


def _max_pool_by_offsets(b, node, g):
    x, y = node.input(0), node.outputs[0]
    in_sizes, out_sizes = spatial_sizes(x), spatial_sizes(y)
    channels = x.shape[1] if x.shape is not None else None
    if in_sizes is None or out_sizes is None or not isinstance(channels, int):
        raise GradientError(
            "the gradient of MaxPool before opset 16 (or with storage_order=1) needs static channel and spatial dims"
        )
    kernel = list(node.attr("kernel_shape"))
    strides, dilations, begins, ends = window(node, kernel, in_sizes)
    n = len(kernel)
    # pad with the lowest value (never a maximum) far enough for every window, ceil_mode included
    reach = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out_sizes, strides, kernel, dilations)]
    tails = [max(e, r - size - pb) for e, r, size, pb in zip(ends, reach, in_sizes, begins)]
    lowest = b.scalar(np.finfo(dtype_of(x)).min, x)
    padded = b.Pad(x, b.ints([0, 0, *begins, 0, 0, *tails]), lowest)
    offsets = list(itertools.product(*[range(k) for k in kernel]))
    hits = []
    for offset in offsets:
        starts = [o * d for o, d in zip(offset, dilations)]
        stops = [st + r - (k - 1) * d for st, r, k, d in zip(starts, reach, kernel, dilations)]
        seen = b.Slice(padded, b.ints(starts), b.ints(stops), b.ints(range(2, 2 + n)), b.ints(strides))
        hits.append(b.Unsqueeze(b.Cast(b.Equal(seen, y), to=x.elem_type), b.ints([2])))
    hit = b.Concat(*hits, axis=2)  # (N, C, K, *out)
    share = b.Div(b.Mul(hit, b.Unsqueeze(g, b.ints([2]))), b.ReduceSum(hit, b.ints([2]), keepdims=1))
    stacked = b.Reshape(share, b.ints([0, channels * len(offsets), *out_sizes]))
    placement = np.zeros([channels * len(offsets), 1, *kernel], dtype=dtype_of(x))
    for c in range(channels):
        for j, offset in enumerate(offsets):
            index = (c * len(offsets) + j, 0, *offset)
            placement[index] = 1
    pb, pe, extra = transposed_window(in_sizes, out_sizes, kernel, strides, dilations, begins, tails)
    return b.ConvTranspose(
        stacked,
        b.const(placement),
        group=channels,
        strides=strides,
        dilations=dilations,
        pads=[*pb, *pe],
        output_padding=extra,
    )


def _tiles(node, x) -> bool:
    """True when the windows are disjoint, unpadded and undilated and tile the input, but for the
    trailing cells of a floor-mode pool that no window reads."""
    kernel = list(node.attr("kernel_shape"))
    sizes = spatial_sizes(x)
    if sizes is None:
        return False
    return (
        list(node.attr("strides") or [1] * len(kernel)) == kernel
        and not any(node.attr("pads") or [])
        and all(d == 1 for d in node.attr("dilations") or [])
        and node.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and all(size >= k for size, k in zip(sizes, kernel))
        and (not node.attr("ceil_mode", 0) or all(size % k == 0 for size, k in zip(sizes, kernel)))
    )


def _max_pool_tiled(b, node, g):
    """Compare the (cropped) input with the upsampled maxima; trailing cells no window reads get zero."""
    x, y = node.input(0), node.outputs[0]
    kernel = list(node.attr("kernel_shape"))
    sizes = spatial_sizes(x)
    assert sizes is not None  # _tiles checked
    covered = [size // k * k for size, k in zip(sizes, kernel)]
    seen = (
        x
        if covered == list(sizes)
        else b.Slice(x, b.ints([0] * len(kernel)), b.ints(covered), b.ints(range(2, 2 + len(kernel))))
    )
    scales = b.const(np.array([1, 1, *kernel], dtype=np.float32))

    def upsample(v):
        return b.Resize(
            v,
            None,
            scales,
            mode="nearest",
            nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        )

    hit = b.Cast(b.Equal(seen, upsample(y)), to=x.elem_type)
    ties = b.Mul(b.AveragePool(hit, kernel_shape=kernel, strides=kernel), b.scalar(np.prod(kernel), x))
    dx = b.Mul(hit, upsample(b.Div(g, ties)))
    if seen is x:
        return dx
    return b.Pad(dx, b.ints([0] * (2 + len(kernel)) + [0, 0] + [size - c for size, c in zip(sizes, covered)]))


@register("AveragePool")
def average_pool(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Each output's gradient, divided by its window's divisor, spread over the window: a
    ConvTranspose with a ones kernel, grouped per channel (or over channels folded into the batch
    when shape inference could not tell their number)."""
    x, y, g = node.input(0), node.outputs[0], upstream(grads)
    kernel = list(node.attr("kernel_shape"))
    strides, dilations, begins, ends = window(node, kernel, spatial_sizes(x))
    spread = b.Div(g, _divisor(b, node, x, y, kernel, strides, dilations, begins, ends))
    dim1 = x.shape[1] if x.shape is not None else None
    folded = not isinstance(dim1, int)
    channels = dim1 if isinstance(dim1, int) else 1
    if folded:  # (N, C, S) -> (N*C, 1, S), one channel at a time
        spread = b.Reshape(spread, b.concat_shape([-1, 1], b.dims(spread, 2)))
    ones = b.const(np.ones([channels, 1, *kernel], dtype=dtype_of(x)))
    window_args = {"kernel": kernel, "strides": strides, "dilations": dilations, "begins": begins, "ends": ends}
    if folded:
        x_like = b.Reshape(x, b.concat_shape([-1, 1], b.dims(x, 2)))
        y_like = b.Reshape(y, b.concat_shape([-1, 1], b.dims(y, 2)))
        dx = spread_back(b, spread, ones, x_like, y_like, group=1, **window_args)
        return [b.reshape_like(dx, x)]
    return [spread_back(b, spread, ones, x, y, group=channels, **window_args)]


def _divisor(b, node, x, y, kernel, strides, dilations, begins, ends):
    """The per-output divisors of AveragePool: computed at build time for static spatial dims,
    the kernel size where every window lies inside the (counted) padding, else counted at run time."""
    in_sizes, out_sizes = spatial_sizes(x), spatial_sizes(y)
    include_pad = node.attr("count_include_pad", 0)
    if in_sizes is not None and out_sizes is not None:
        divisor = _divisors(in_sizes, out_sizes, kernel, strides, dilations, begins, ends, include_pad)
        return b.const(divisor.astype(dtype_of(x)))
    if node.attr("ceil_mode", 0):
        raise GradientError("the gradient of AveragePool with ceil_mode needs static spatial dims")
    if include_pad or not any([*begins, *ends]):
        return b.scalar(int(np.prod(kernel)), x)
    ones = b.ConstantOfShape(b.concat_shape([1, 1], b.dims(x, 2)), value=Tensor(np.ones([1], dtype=dtype_of(x))))
    counts = b.Conv(
        ones,
        b.const(np.ones([1, 1, *kernel], dtype=dtype_of(x))),
        strides=strides,
        dilations=dilations,
        pads=[*begins, *ends],
    )
    return counts


def _divisors(in_sizes, out_sizes, kernel, strides, dilations, begins, ends, include_pad):
    """Per output position, the number of window cells averaged (separable over axes)."""
    total = np.ones([], dtype=np.float64)
    for size, out, k, s, d, pb, pe in zip(in_sizes, out_sizes, kernel, strides, dilations, begins, ends):
        lo, hi = (-pb, size + pe) if include_pad else (0, size)
        starts = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - pb
        counts = ((starts >= lo) & (starts < hi)).sum(axis=1)
        total = np.multiply.outer(total, counts)
    return total


@register("GlobalAveragePool")
def global_average_pool(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, y = node.input(0), node.outputs[0]
    return [b.Div(b.expand_like(upstream(grads), x), count_ratio(b, x, y))]


@register("GlobalMaxPool")
def global_max_pool(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, y = node.input(0), node.outputs[0]
    hit = b.Cast(b.Equal(x, y), to=x.elem_type)
    axes = b.ints(list(range(2, rank_of(x))))
    return [b.Div(b.Mul(hit, upstream(grads)), b.ReduceSum(hit, axes, keepdims=1))]
