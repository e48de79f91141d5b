"""Gradient rules of Conv and ConvTranspose (1-D/2-D/3-D, strides, pads, auto_pad, dilations, groups).

Channels and kernel sizes come from the weight's static shape. When the spatial sizes are static the
pads and output paddings of the backward ops are worked out at build time; when they are known only
at run time (a dynamic length, dims shape inference lost), the backward ConvTranspose keeps its begin
pads and is cropped or zero-padded to the input's run-time size, and reshapes read run-time shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxgraph.autodiff.builder import GradBuilder, dtype_of, static_shape, upstream
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value


def spatial_sizes(value) -> tuple[int, ...] | None:
    """The static spatial dims of an (N, C, ...) value, None when any is unknown."""
    shape = value.shape
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        return None
    return tuple(shape[2:])


def weight_shape(node, w) -> tuple[int, ...]:
    """The weight's static shape (channels and kernel sizes come from it)."""
    dims = static_shape(w)
    if dims is None:
        raise GradientError(f"the gradient of {node.op_type} needs a static weight shape (got {w.shape})")
    return dims


def window(node, kernel, in_sizes):
    """(strides, dilations, pads_begin, pads_end) with auto_pad resolved for these input sizes
    (``in_sizes`` None: known only at run time, which SAME padding allows with unit strides)."""
    n = len(kernel)
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID"):
        pads = list(node.attr("pads") or [0] * 2 * n) if auto_pad == "NOTSET" else [0] * 2 * n
        return strides, dilations, pads[:n], pads[n:]
    if in_sizes is None:
        if any(s != 1 for s in strides):
            raise GradientError(
                f"the gradient of {node.op_type} with auto_pad={auto_pad} and strides needs static spatial dims"
            )
        in_sizes = [1] * n  # with unit strides the padding does not depend on the size
    begins, ends = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return strides, dilations, begins, ends


def transposed_window(in_sizes, out_sizes, kernel, strides, dilations, begins, ends):
    """(pads_begin, pads_end, output_padding) for a ConvTranspose mapping ``out_sizes`` (a window
    op's output) back to ``in_sizes`` (its input); unused trailing input cells crop more at the end."""
    ends, extra = list(ends), []
    for i, (size, out, k, s, d) in enumerate(zip(in_sizes, out_sizes, kernel, strides, dilations)):
        rebuilt = (out - 1) * s + (k - 1) * d + 1 - begins[i] - ends[i]
        if size >= rebuilt:
            extra.append(size - rebuilt)
        else:
            ends[i] += rebuilt - size
            extra.append(0)
    return begins, ends, extra


def spread_back(b, g, kernel_value, x, y, *, group, kernel, strides, dilations, begins, ends):
    """The ConvTranspose that spreads a window op's output gradient ``g`` (shaped like ``y``) back
    onto its input ``x`` through ``kernel_value`` (Conv's weight, or pooling's placement kernel)."""
    in_sizes, out_sizes = spatial_sizes(x), spatial_sizes(y)
    if in_sizes is not None and out_sizes is not None:
        pb, pe, extra = transposed_window(in_sizes, out_sizes, kernel, strides, dilations, begins, ends)
        return b.ConvTranspose(
            g, kernel_value, group=group, strides=strides, dilations=dilations, pads=[*pb, *pe], output_padding=extra
        )
    n = len(kernel)
    # Without end pads the result covers input cells 0 .. F-1 (F >= the last cell a window reads):
    # crop it to the input's size, then zero-fill the trailing cells no window read.
    full = b.ConvTranspose(g, kernel_value, group=group, strides=strides, dilations=dilations, pads=[*begins, *[0] * n])
    sizes = b.dims(x, 2)
    axes = b.ints(list(range(2, 2 + n)))
    cropped = b.Slice(full, b.ints([0] * n), sizes, axes)
    missing = b.Max(b.Sub(sizes, b.dims(cropped, 2)), b.ints([0] * n))
    return b.Pad(cropped, b.concat_shape([0] * (n + 4), missing))


def weight_grad(b, inp, out_grad, out_sizes, c_in, c_out, kernel, groups, strides, dilations, begins, ends):
    """dL/dW of a Conv(inp, W) whose output gradient is ``out_grad`` (static spatial sizes
    ``out_sizes``, None when known only at run time), in the form :func:`weight_grad_form` picks."""
    form = weight_grad_form(kernel, groups, c_out, out_sizes)
    return form(b, inp, out_grad, c_in, c_out, kernel, groups, strides, dilations, begins, ends)


def weight_grad_form(kernel, groups, c_out, out_sizes):
    """The weight-gradient form measured fastest on onnxruntime CPU for this layer
    (``benchmarks/backward_forms.py --conv``; docs/benchmarks.md "Cheaper backward forms").

    Kernels of 25 cells or more (a 7x7 stem) keep the batch-as-channels Conv of
    :func:`_weight_grad_by_conv`: unfolding would copy the input ``K / stride^2`` times. Smaller ones
    unfold the input into its windows (:func:`_unfold`, a temporary K / stride^2 times the input's
    size) and contract with one matrix product: a single Gemm over batch and positions where the
    output has fewer positions than twice its channels (deep stages), else per-image MatMuls summed
    over the batch (early stages, grouped and depthwise convolutions, run-time spatial sizes).
    """
    if int(np.prod(kernel)) >= 25:
        return _weight_grad_by_conv
    if groups == 1 and out_sizes is not None and int(np.prod(out_sizes)) < 2 * c_out:
        return _weight_grad_by_gemm
    return _weight_grad_by_matmul


def _unfold(b, inp, c_in, kernel, strides, dilations, begins, ends):
    """The windows of a Conv over ``inp``: (N, C*K, *out) with channel c's K window cells at
    c*K .. c*K+K-1, by a grouped Conv with a one-hot kernel (``inp`` itself for an unpadded 1x1 stride-1 window)."""
    cells = int(np.prod(kernel))
    if cells == 1 and all(s == 1 for s in strides) and not any([*begins, *ends]):
        return inp
    cell_kernels = np.eye(cells, dtype=dtype_of(inp)).reshape([cells, 1, *kernel])  # cell j: a 1 at offset j
    one_hot = np.tile(cell_kernels, [c_in, 1, *[1] * len(kernel)])
    return b.Conv(inp, b.const(one_hot), group=c_in, strides=strides, dilations=dilations, pads=[*begins, *ends])


def _weight_grad_by_gemm(b, inp, out_grad, c_in, c_out, kernel, groups, strides, dilations, begins, ends):
    """groups == 1: dW (Co, Ci*K) = out_grad (Co, N*P) x windows (Ci*K, N*P)^T, one Gemm."""
    swap = [1, 0, *range(2, 2 + len(kernel))]
    windows = b.Transpose(_unfold(b, inp, c_in, kernel, strides, dilations, begins, ends), perm=swap)
    windows = b.Reshape(windows, b.ints([c_in * int(np.prod(kernel)), -1]))
    grads = b.Reshape(b.Transpose(out_grad, perm=swap), b.ints([c_out, -1]))
    return b.Reshape(b.Gemm(grads, windows, transB=1), b.ints([c_out, c_in, *kernel]))


def _weight_grad_by_matmul(b, inp, out_grad, c_in, c_out, kernel, groups, strides, dilations, begins, ends):
    """dW[g] (Co, Ci*K) = sum over the batch of out_grad[n, g] (Co, P) x windows[n, g]^T (P, Ci*K)."""
    ci, co = c_in // groups, c_out // groups
    windows = _unfold(b, inp, c_in, kernel, strides, dilations, begins, ends)
    windows = b.Transpose(b.Reshape(windows, b.ints([0, groups, ci * int(np.prod(kernel)), -1])), perm=[0, 1, 3, 2])
    products = b.MatMul(b.Reshape(out_grad, b.ints([0, groups, co, -1])), windows)  # (N, G, Co, Ci*K)
    return b.Reshape(b.sum_to(products, [0], keepdims=False), b.ints([c_out, ci, *kernel]))


def _weight_grad_by_conv(b, inp, out_grad, c_in, c_out, kernel, groups, strides, dilations, begins, ends):
    """The batch becomes the channel axis: inp (N, G*Ci, S) -> (Ci, G*N, S) and out_grad
    (N, G*Co, So) -> (G*Co, N, So) as the kernel of one grouped Conv; strides and dilations swap
    roles. Spatial sizes are read at run time where they are not static.
    """
    n = len(kernel)
    ci, co = c_in // groups, c_out // groups
    swap = [1, 0, *range(2, 2 + n)]
    if groups == 1:
        x, k = b.Transpose(inp, perm=swap), b.Transpose(out_grad, perm=swap)
    else:
        s_in, s_out = b.dims(inp, 2), b.dims(out_grad, 2)
        x = b.Reshape(inp, b.concat_shape([0, groups, ci], s_in))
        x = b.Reshape(b.Transpose(x, perm=[2, 1, 0, *range(3, 3 + n)]), b.concat_shape([ci, -1], s_in))
        k = b.Reshape(out_grad, b.concat_shape([0, groups, co], s_out))
        k = b.Reshape(b.Transpose(k, perm=[1, 2, 0, *range(3, 3 + n)]), b.concat_shape([c_out, -1], s_out))
    full = b.Conv(x, k, group=groups, strides=dilations, dilations=strides, pads=[*begins, *ends])
    cropped = b.Slice(full, b.ints([0] * n), b.ints(kernel), b.ints(list(range(2, 2 + n))))
    return b.Transpose(cropped, perm=swap)


@register("Conv")
def conv(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, w = node.input(0), node.input(1)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    g, y = upstream(grads), node.outputs[0]
    w_shape = weight_shape(node, w)
    kernel, groups = list(w_shape[2:]), node.attr("group", 1)
    strides, dilations, begins, ends = window(node, kernel, spatial_sizes(x))
    dx = dw = None
    if b.wants(x):
        dx = spread_back(
            b, g, w, x, y, group=groups, kernel=kernel, strides=strides, dilations=dilations, begins=begins, ends=ends
        )
    if b.wants(w):
        dw = weight_grad(
            b, x, g, spatial_sizes(y), w_shape[1] * groups, w_shape[0], kernel, groups, strides, dilations, begins, ends
        )
    db = b.sum_to(g, [0, *range(2, 2 + len(kernel))], keepdims=False) if b.wants(bias) else None
    return [dx, dw, db]


@register("ConvTranspose")
def conv_transpose(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """ConvTranspose(X, W) is the input-gradient of Conv(., W): its gradients are a Conv and the
    Conv weight gradient with the roles of input and output exchanged."""
    x, w = node.input(0), node.input(1)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    g, y = upstream(grads), node.outputs[0]
    w_shape = weight_shape(node, w)
    kernel, groups, n = list(w_shape[2:]), node.attr("group", 1), len(w_shape) - 2
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    begins, ends = _transpose_pads(node, x, y, kernel, strides, dilations)
    dx = dw = None
    if b.wants(x):
        dx = b.Conv(g, w, group=groups, strides=strides, dilations=dilations, pads=[*begins, *ends])
    if b.wants(w):
        dw = weight_grad(
            b, g, x, spatial_sizes(x), w_shape[1] * groups, w_shape[0], kernel, groups, strides, dilations, begins, ends
        )
    db = b.sum_to(g, [0, *range(2, 2 + n)], keepdims=False) if b.wants(bias) else None
    return [dx, dw, db]


def _transpose_pads(node, x, y, kernel, strides, dilations):
    """Explicit pads of a ConvTranspose, resolving auto_pad / output_shape the way onnxruntime does
    (SAME_UPPER puts the smaller half first, NOTSET and SAME_LOWER the larger)."""
    n = len(kernel)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID") and node.attr("output_shape") is None:
        pads = list(node.attr("pads") or [0] * 2 * n) if auto_pad == "NOTSET" else [0] * 2 * n
        return pads[:n], pads[n:]
    in_sizes, out_sizes = spatial_sizes(x), spatial_sizes(y)
    if in_sizes is None or out_sizes is None:
        raise GradientError("the gradient of ConvTranspose with auto_pad or output_shape needs static spatial dims")
    extra = list(node.attr("output_padding") or [0] * n)
    begins, ends = [], []
    for size, out, k, s, d, e in zip(in_sizes, out_sizes, kernel, strides, dilations, extra):
        total = s * (size - 1) + e + (k - 1) * d + 1 - out
        if total < 0:
            raise GradientError(
                "the gradient of ConvTranspose with an output_shape beyond the full output is not supported"
            )
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins, ends
