"""Gradient rules of Conv and ConvTranspose (1-D/2-D/3-D, strides, pads, auto_pad, dilations, groups).

Spatial dims and channels must be static (batch may be symbolic): explicit pads and output paddings
are worked out at build time, so the backward ops are plain Conv / ConvTranspose.
"""

from __future__ import annotations

from onnxgraph.autodiff.builder import static_shape
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register


def spatial(value, what: str) -> tuple[int, ...]:
    """Static channel and spatial dims of an (N, C, ...) value (N may be symbolic)."""
    shape = value.shape
    if shape is None or not all(isinstance(d, int) for d in shape[1:]):
        raise GradientError(
            f"the gradient of {what} needs static channel and spatial dims (got {shape})"
        )
    return tuple(shape[1:])


def window(node, kernel, in_sizes):
    """(strides, dilations, pads_begin, pads_end) with auto_pad resolved for these input sizes."""
    n = len(kernel)
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID"):
        pads = list(node.attr("pads") or [0] * 2 * n) if auto_pad == "NOTSET" else [0] * 2 * n
        return strides, dilations, pads[:n], pads[n:]
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


def weight_grad(
    b, inp, out_grad, in_dims, out_dims, kernel, groups, strides, dilations, begins, ends
):
    """dL/dW of a Conv(inp, W) whose output gradient is ``out_grad``, as one grouped Conv.

    The batch becomes the channel axis: inp (N, G*Ci, S) -> (Ci, G*N, S) and out_grad
    (N, G*Co, So) -> (G*Co, N, So) as the kernel; strides and dilations swap roles.
    """
    c_in, s_in = in_dims[0], list(in_dims[1:])
    c_out, s_out = out_dims[0], list(out_dims[1:])
    n = len(kernel)
    ci, co = c_in // groups, c_out // groups
    x = b.Reshape(inp, b.ints([0, groups, ci, *s_in]))
    x = b.Reshape(b.Transpose(x, perm=[2, 1, 0, *range(3, 3 + n)]), b.ints([ci, -1, *s_in]))
    k = b.Reshape(out_grad, b.ints([0, groups, co, *s_out]))
    k = b.Reshape(b.Transpose(k, perm=[1, 2, 0, *range(3, 3 + n)]), b.ints([c_out, -1, *s_out]))
    full = b.Conv(x, k, group=groups, strides=dilations, dilations=strides, pads=[*begins, *ends])
    cropped = b.Slice(full, b.ints([0] * n), b.ints(kernel), b.ints(list(range(2, 2 + n))))
    return b.Transpose(cropped, perm=[1, 0, *range(2, 2 + n)])


@register("Conv")
def conv(b, node, grads):
    x, w = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    g, y = grads[0], node.outputs[0]
    in_dims, out_dims = spatial(x, "Conv"), spatial(y, "Conv")
    w_shape = static_shape(w)
    if w_shape is None:
        raise GradientError("the gradient of Conv needs a static weight shape")
    kernel, groups = list(w_shape[2:]), node.attr("group", 1)
    strides, dilations, begins, ends = window(node, kernel, in_dims[1:])
    dx = dw = None
    if b.wants(x):
        pb, pe, extra = transposed_window(
            in_dims[1:], out_dims[1:], kernel, strides, dilations, begins, ends
        )
        dx = b.ConvTranspose(
            g,
            w,
            group=groups,
            strides=strides,
            dilations=dilations,
            pads=[*pb, *pe],
            output_padding=extra,
        )
    if b.wants(w):
        dw = weight_grad(
            b, x, g, in_dims, out_dims, kernel, groups, strides, dilations, begins, ends
        )
    db = b.sum_to(g, [0, *range(2, 2 + len(kernel))], keepdims=False) if b.wants(bias) else None
    return [dx, dw, db]


@register("ConvTranspose")
def conv_transpose(b, node, grads):
    """ConvTranspose(X, W) is the input-gradient of Conv(., W): its gradients are a Conv and the
    Conv weight gradient with the roles of input and output exchanged."""
    x, w = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    g, y = grads[0], node.outputs[0]
    in_dims, out_dims = spatial(x, "ConvTranspose"), spatial(y, "ConvTranspose")
    w_shape = static_shape(w)
    if w_shape is None:
        raise GradientError("the gradient of ConvTranspose needs a static weight shape")
    kernel, groups, n = list(w_shape[2:]), node.attr("group", 1), len(w_shape) - 2
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    begins, ends = _transpose_pads(node, in_dims[1:], out_dims[1:], kernel, strides, dilations)
    dx = dw = None
    if b.wants(x):
        dx = b.Conv(g, w, group=groups, strides=strides, dilations=dilations, pads=[*begins, *ends])
    if b.wants(w):
        dw = weight_grad(
            b, g, x, out_dims, in_dims, kernel, groups, strides, dilations, begins, ends
        )
    db = b.sum_to(g, [0, *range(2, 2 + n)], keepdims=False) if b.wants(bias) else None
    return [dx, dw, db]


def _transpose_pads(node, in_sizes, out_sizes, kernel, strides, dilations):
    """Explicit pads of a ConvTranspose, resolving auto_pad / output_shape the way onnxruntime does
    (SAME_UPPER puts the smaller half first, NOTSET and SAME_LOWER the larger)."""
    n = len(kernel)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID") and node.attr("output_shape") is None:
        pads = list(node.attr("pads") or [0] * 2 * n) if auto_pad == "NOTSET" else [0] * 2 * n
        return pads[:n], pads[n:]
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
